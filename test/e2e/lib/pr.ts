/**
 * SPC-4 persistent reservation vocabulary for the e2e suite: service actions, types,
 * parameter lists the basic builders do not cover (REGISTER AND MOVE, TransportIDs), and
 * parsers of PR IN data. Written from the standard (SPC-4 §6.15, §6.16, §7.6.4), not from
 * the helper's code.
 */
import { openSync, closeSync, constants } from 'node:fs';
import type { PrClient } from '../../support/client.js';
import { prInCdb, prOutCdb, prOutParams, type Response } from '../../support/builders.js';

export const PR_IN = {
  READ_KEYS: 0x00,
  READ_RESERVATION: 0x01,
  REPORT_CAPABILITIES: 0x02,
  READ_FULL_STATUS: 0x03,
} as const;

export const PR_OUT = {
  REGISTER: 0x00,
  RESERVE: 0x01,
  RELEASE: 0x02,
  CLEAR: 0x03,
  PREEMPT: 0x04,
  PREEMPT_AND_ABORT: 0x05,
  REGISTER_AND_IGNORE: 0x06,
  REGISTER_AND_MOVE: 0x07,
} as const;

/** PERSISTENT RESERVATION TYPE codes (SPC-4 table 180). */
export const PR_TYPE = {
  WRITE_EXCLUSIVE: 1,
  EXCLUSIVE_ACCESS: 3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 8,
} as const;

export const TYPE_NAMES: Record<number, string> = {
  1: 'Write Exclusive',
  3: 'Exclusive Access',
  5: 'Write Exclusive, registrants only',
  6: 'Exclusive Access, registrants only',
  7: 'Write Exclusive, all registrants',
  8: 'Exclusive Access, all registrants',
};

export const STATUS = { GOOD: 0x00, CHECK_CONDITION: 0x02, RESERVATION_CONFLICT: 0x18 } as const;

const dvOf = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

export interface KeyList {
  generation: number;
  additionalLength: number;
  keys: bigint[];
}

export function parseReadKeys(data: Uint8Array): KeyList {
  const dv = dvOf(data);
  const additionalLength = dv.getUint32(4);
  const keys: bigint[] = [];
  for (let at = 8; at + 8 <= Math.min(data.length, 8 + additionalLength); at += 8) keys.push(dv.getBigUint64(at));
  return { generation: dv.getUint32(0), additionalLength, keys };
}

export interface Reservation {
  generation: number;
  holder: { key: bigint; scope: number; type: number } | null;
}

export function parseReadReservation(data: Uint8Array): Reservation {
  const dv = dvOf(data);
  const additionalLength = dv.getUint32(4);
  if (additionalLength < 16 || data.length < 24) return { generation: dv.getUint32(0), holder: null };
  const scopeType = data[21] ?? 0;
  return { generation: dv.getUint32(0), holder: { key: dv.getBigUint64(8), scope: scopeType >> 4, type: scopeType & 0x0f } };
}

export interface Capabilities {
  length: number;
  crh: boolean;
  sipC: boolean;
  atpC: boolean;
  ptplC: boolean;
  tmv: boolean;
  allowCommands: number;
  ptplA: boolean;
  /** Reservation types the type mask says are supported. */
  types: number[];
}

export function parseCapabilities(data: Uint8Array): Capabilities {
  const dv = dvOf(data);
  const b2 = data[2] ?? 0;
  const b3 = data[3] ?? 0;
  const mask = dv.getUint16(4);
  // type mask bits (SPC-4 table 196): byte 4 bit7 WR_EX_AR(7), bit6 EX_AC_RO(6),
  // bit5 WR_EX_RO(5), bit3 EX_AC(3), bit1 WR_EX(1); byte 5 bit0 EX_AC_AR(8)
  const bits: [number, number][] = [[0x8000, 7], [0x4000, 6], [0x2000, 5], [0x0800, 3], [0x0200, 1], [0x0001, 8]];
  return {
    length: dv.getUint16(0),
    crh: (b2 & 0x10) !== 0,
    sipC: (b2 & 0x08) !== 0,
    atpC: (b2 & 0x04) !== 0,
    ptplC: (b2 & 0x01) !== 0,
    tmv: (b3 & 0x80) !== 0,
    allowCommands: (b3 >> 4) & 0x07,
    ptplA: (b3 & 0x01) !== 0,
    types: bits.filter(([bit]) => (mask & bit) !== 0).map(([, t]) => t).sort((a, b) => a - b),
  };
}

export interface FullStatusEntry {
  key: bigint;
  allTgPt: boolean;
  holder: boolean;
  scope: number;
  type: number;
  relativeTargetPort: number;
  transportId: Uint8Array;
}

export function parseFullStatus(data: Uint8Array): { generation: number; additionalLength: number; entries: FullStatusEntry[] } {
  const dv = dvOf(data);
  const additionalLength = dv.getUint32(4);
  const end = Math.min(data.length, 8 + additionalLength);
  const entries: FullStatusEntry[] = [];
  let at = 8;
  while (at + 24 <= end) {
    const flags = data[at + 12] ?? 0;
    const scopeType = data[at + 13] ?? 0;
    const tidLen = dv.getUint32(at + 20);
    entries.push({
      key: dv.getBigUint64(at),
      allTgPt: (flags & 0x02) !== 0,
      holder: (flags & 0x01) !== 0,
      scope: scopeType >> 4,
      type: scopeType & 0x0f,
      relativeTargetPort: dv.getUint16(at + 18),
      transportId: data.slice(at + 24, at + 24 + tidLen),
    });
    at += 24 + tidLen;
  }
  return { generation: dv.getUint32(0), additionalLength, entries };
}

/** SAS TransportID (SPC-4 §7.6.4.7; PROTOCOL IDENTIFIER 6), 24 bytes. */
export function sasTransportId(address: bigint): Uint8Array {
  const t = new Uint8Array(24);
  t[0] = 0x06;
  dvOf(t).setBigUint64(4, address);
  return t;
}

/** The SAS address inside a SAS TransportID, or null. */
export function sasAddressOf(tid: Uint8Array): bigint | null {
  if (tid.length < 12 || ((tid[0] ?? 0) & 0x0f) !== 0x06) return null;
  return dvOf(tid).getBigUint64(4);
}

/** REGISTER AND MOVE parameter list (SPC-4 table 212) followed by one TransportID. */
export function registerAndMoveParams(opts: { key: bigint; saKey: bigint; relativeTargetPort: number; transportId: Uint8Array; unreg?: boolean; aptpl?: boolean }): Uint8Array {
  const p = new Uint8Array(24 + opts.transportId.length);
  const dv = dvOf(p);
  dv.setBigUint64(0, opts.key);
  dv.setBigUint64(8, opts.saKey);
  p[17] = (opts.unreg ? 0x02 : 0) | (opts.aptpl ? 0x01 : 0);
  dv.setUint16(18, opts.relativeTargetPort);
  dv.setUint32(20, opts.transportId.length);
  p.set(opts.transportId, 24);
  return p;
}

/** Sense key / ASC / ASCQ from fixed (70h/71h) or descriptor (72h/73h) sense. */
export function senseTriple(sense: Uint8Array): [number, number, number] {
  const code = (sense[0] ?? 0) & 0x7f;
  if (code === 0x72 || code === 0x73) return [(sense[1] ?? 0) & 0x0f, sense[2] ?? 0, sense[3] ?? 0];
  return [(sense[2] ?? 0) & 0x0f, sense[12] ?? 0, sense[13] ?? 0];
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function keyHex(key: bigint): string {
  return `0x${key.toString(16)}`;
}

/** A device node opened for the test: the fd travels to the helper with each request. */
export class DeviceFd {
  readonly fd: number;
  constructor(readonly path: string, readonly mode: 'rw' | 'ro' = 'rw') {
    this.fd = openSync(path, mode === 'rw' ? constants.O_RDWR : constants.O_RDONLY);
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** PR commands through a helper connection, as QEMU would send them. */
export class PrOps {
  constructor(readonly client: PrClient) {}

  in(dev: DeviceFd, sa: number, allocationLength = 1024): Promise<Response> {
    return this.client.request(prInCdb({ sa, allocationLength }), dev.fd);
  }

  out(dev: DeviceFd, sa: number, params: Uint8Array, opts: { type?: number; scope?: number } = {}): Promise<Response> {
    const cdb = prOutCdb({ sa, type: opts.type ?? 0, scope: opts.scope ?? 0, paramLength: params.length });
    return this.client.request(cdb, dev.fd, params);
  }

  register(dev: DeviceFd, saKey: bigint, key = 0n): Promise<Response> {
    return this.out(dev, PR_OUT.REGISTER, prOutParams({ key, saKey }));
  }

  registerIgnore(dev: DeviceFd, saKey: bigint): Promise<Response> {
    return this.out(dev, PR_OUT.REGISTER_AND_IGNORE, prOutParams({ saKey }));
  }

  reserve(dev: DeviceFd, key: bigint, type: number): Promise<Response> {
    return this.out(dev, PR_OUT.RESERVE, prOutParams({ key }), { type });
  }

  release(dev: DeviceFd, key: bigint, type: number): Promise<Response> {
    return this.out(dev, PR_OUT.RELEASE, prOutParams({ key }), { type });
  }

  clear(dev: DeviceFd, key: bigint): Promise<Response> {
    return this.out(dev, PR_OUT.CLEAR, prOutParams({ key }));
  }

  preempt(dev: DeviceFd, key: bigint, victim: bigint, type: number, abort = false): Promise<Response> {
    return this.out(dev, abort ? PR_OUT.PREEMPT_AND_ABORT : PR_OUT.PREEMPT, prOutParams({ key, saKey: victim }), { type });
  }

  async readKeys(dev: DeviceFd): Promise<KeyList> {
    return parseReadKeys(good(await this.in(dev, PR_IN.READ_KEYS)).data);
  }

  async readReservation(dev: DeviceFd): Promise<Reservation> {
    return parseReadReservation(good(await this.in(dev, PR_IN.READ_RESERVATION)).data);
  }
}

/** Asserts GOOD status (with a readable message) and returns the response. */
export function good(r: Response): Response {
  if (r.status !== STATUS.GOOD) {
    const [k, asc, ascq] = senseTriple(r.sense);
    throw new Error(`expected GOOD, got status 0x${r.status.toString(16)} sense ${k.toString(16)}/${asc.toString(16)}/${ascq.toString(16)}`);
  }
  return r;
}
