/**
 * Test fixtures built from meaning (style habit 12): independent of the code under test.
 * Byte layouts from SPC-4 §6.15-6.16 and the helper protocol (docs/protocol.md §3.3-3.6).
 */

export const CDB_SIZE = 16;
export const SENSE_SIZE = 96;
export const HEADER_SIZE = 104;

export function prInCdb(opts: { sa: number; allocationLength: number }): Uint8Array {
  const cdb = new Uint8Array(CDB_SIZE);
  cdb[0] = 0x5e; // OPERATION CODE: PERSISTENT RESERVE IN
  cdb[1] = opts.sa & 0x1f; // SERVICE ACTION
  cdb[7] = (opts.allocationLength >> 8) & 0xff; // ALLOCATION LENGTH (MSB)
  cdb[8] = opts.allocationLength & 0xff; // ALLOCATION LENGTH (LSB)
  return cdb;
}

export function prOutCdb(opts: { sa: number; scope?: number; type?: number; paramLength: number }): Uint8Array {
  const cdb = new Uint8Array(CDB_SIZE);
  cdb[0] = 0x5f; // OPERATION CODE: PERSISTENT RESERVE OUT
  cdb[1] = opts.sa & 0x1f; // SERVICE ACTION
  cdb[2] = ((opts.scope ?? 0) << 4) | ((opts.type ?? 0) & 0x0f); // SCOPE | TYPE
  cdb[5] = (opts.paramLength >>> 24) & 0xff; // PARAMETER LIST LENGTH (32 bits, bytes 5-8)
  cdb[6] = (opts.paramLength >>> 16) & 0xff;
  cdb[7] = (opts.paramLength >>> 8) & 0xff;
  cdb[8] = opts.paramLength & 0xff;
  return cdb;
}

export function cleanupCdb(): Uint8Array {
  const cdb = new Uint8Array(CDB_SIZE);
  cdb[0] = 0xff; // PR_HELPER_CLEANUP
  return cdb;
}

/** The basic PR OUT parameter list (24 bytes). */
export function prOutParams(opts: { key?: bigint; saKey?: bigint; aptpl?: boolean; allTgPt?: boolean } = {}): Uint8Array {
  const p = new Uint8Array(24);
  const dv = new DataView(p.buffer);
  dv.setBigUint64(0, opts.key ?? 0n); // RESERVATION KEY
  dv.setBigUint64(8, opts.saKey ?? 0n); // SERVICE ACTION RESERVATION KEY
  p[20] = (opts.allTgPt ? 0x04 : 0) | (opts.aptpl ? 0x01 : 0); // SPEC_I_PT | ALL_TG_PT | APTPL
  return p;
}

export interface Response {
  status: number;
  size: number;
  sense: Uint8Array;
  data: Uint8Array;
}

/** Fixed-format sense with the given key/asc/ascq, padded to 96 bytes. */
export function fixedSense96(key: number, asc: number, ascq: number): Uint8Array {
  const s = new Uint8Array(SENSE_SIZE);
  s[0] = 0x70;
  s[2] = key;
  s[7] = 10;
  s[12] = asc;
  s[13] = ascq;
  return s;
}

export function decodeHeader(bytes: Uint8Array): { status: number; size: number; sense: Uint8Array } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { status: dv.getInt32(0), size: dv.getInt32(4), sense: bytes.slice(8, HEADER_SIZE) };
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
