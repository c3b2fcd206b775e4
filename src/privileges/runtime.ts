/**
 * What may reach a Node image of the helper from outside: its flags, its environment and
 * the files it loads. Pure. bin/qemu-pr-helper applies the same rules before the first
 * image starts; the -d launcher and the privilege drop's re-exec apply these.
 *
 * Node opens an unauthenticated inspector on SIGUSR1 (or when told to by NODE_OPTIONS),
 * through which anyone able to signal the helper would run code with its capabilities.
 */

/**
 * The inspector's address if SIGUSR1 ever reaches Node's own handler (before our listener
 * replaces it, in a Node too old for --disable-sigusr1): a link-local IPv6 address without
 * an interface, which bind(2) refuses (EINVAL) whatever ip_nonlocal_bind or
 * ip_unprivileged_port_start say, and which getaddrinfo parses without NSS.
 */
export const UNBINDABLE_INSPECTOR = '--inspect-port=[fe80::1]:9229';
export const DISABLE_SIGUSR1 = '--disable-sigusr1';
export const MINIMUM_NODE_MAJOR = 20;

/** Node accepts --disable-sigusr1 from 22.14 and 23.7 (a "bad option" before). */
export function supportsDisableSigusr1(version: string): boolean {
  const m = /^v?(\d+)\.(\d+)\./.exec(version);
  if (!m) return false;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major >= 24 || (major === 23 && minor >= 7) || (major === 22 && minor >= 14);
}

/**
 * The memory flags bin/qemu-pr-helper gives Node (its comment says why): young-generation
 * sizes, no second mapping of the builtins.
 */
const MEMORY_FLAG = /^(--m(ax|in)-semi-space-size=\d+|--no-short-builtin-calls)$/;

/**
 * The Node flags for an image we start: the memory settings the launcher chose, and the
 * inspector lock-out. Nothing else from our own execArgv is passed on (an --inspect or
 * --require given by hand to the first image stops there).
 */
export function hardenedNodeFlags(execArgv: readonly string[], version: string): string[] {
  const flags = execArgv.filter((a) => MEMORY_FLAG.test(a));
  flags.push(UNBINDABLE_INSPECTOR);
  if (supportsDisableSigusr1(version)) flags.push(DISABLE_SIGUSR1);
  return flags;
}

/**
 * Variables that make Node, the dynamic loader, OpenSSL or glibc load code or open an
 * inspector: NODE_OPTIONS, NODE_* (NODE_COMPILE_CACHE, NODE_PATH, NODE_V8_COVERAGE…), LD_*,
 * OPENSSL_CONF/OPENSSL_MODULES (providers are shared objects), GCONV_PATH.
 */
export function isCodeLoadingVariable(name: string): boolean {
  return /^(NODE_|LD_|OPENSSL_)/.test(name) || name === 'GCONV_PATH';
}

export function withoutCodeLoadingVariables(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && !isCodeLoadingVariable(name)) out[name] = value;
  }
  return out;
}

export interface FileOwner {
  uid: number;
  /** st_mode */
  mode: number;
}

/**
 * Why a file the helper executes or loads while privileged cannot be trusted, or null:
 * it and every directory above it must belong to root and be writable by nobody else
 * (like sudo's secure_path). `chain` is the file first, then each parent up to /.
 */
export function untrustedReason(chain: readonly { path: string; owner: FileOwner }[]): string | null {
  for (const { path, owner } of chain) {
    if (owner.uid !== 0) return `${path} belongs to uid ${owner.uid}, not root`;
    // Sticky directories (/tmp) still let others replace their own entries: refused too.
    if ((owner.mode & 0o022) !== 0) return `${path} is writable by ${(owner.mode & 0o002) !== 0 ? 'everyone' : 'its group'}`;
  }
  return null;
}
