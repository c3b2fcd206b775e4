const ULONG_MAX = (1n << 64n) - 1n;

/**
 * strtoul(s, &end, 10) over the whole string, as QEMU's qemu_strtoul with a NULL end
 * pointer: leading white space and one sign are allowed, a '-' wraps modulo 2^64, nothing
 * may follow the digits. Null on any error (no digits, trailing text, ERANGE).
 */
export function parseStrtoul(text: string): bigint | null {
  const m = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)$/.exec(text);
  if (!m) return null;
  const value = BigInt(m[2] ?? '');
  if (value > ULONG_MAX) return null;
  return m[1] === '-' ? (ULONG_MAX + 1n - value) & ULONG_MAX : value;
}
