/**
 * libmpathpersist on its own thread (src/sys/mpath-thread-main.ts): typed requests in,
 * return codes and typed responses out. The descriptor bytes are exactly what the library
 * structures hold (spec §5.3-5.4); translation to and from SCSI is src/mpath/translation.ts.
 */
import { Worker } from 'node:worker_threads';
import { existsSync, readFileSync } from 'node:fs';
import { PRIN_FULLDESCR, PRIN_FULLDESCR_LIST } from './abi.js';

export interface MpathTransportId {
  formatCode: number;
  protocolId: number;
  /** n_port_name / sas_address (8 bytes) or iscsi_name (length bytes, then the name). */
  name: Uint8Array;
}

export type MpathRequest =
  | { id: number; op: 'in'; fd: number; sa: number; noisy: number; verbose: number }
  | {
    id: number; op: 'out'; fd: number; sa: number; scope: number; type: number; key: Uint8Array; saKey: Uint8Array;
    saFlags: number; transportIds: MpathTransportId[]; noisy: number; verbose: number;
  }
  | { id: number; op: 'multipathd'; commands: string[]; timeoutMs: number };

export interface MpathReply {
  id: number;
  code: number;
  /** struct prin_resp (8200 bytes) for PR IN other than READ FULL STATUS, null for PR OUT. */
  response: Uint8Array | null;
  /** READ FULL STATUS that succeeded, decoded on the multipath thread (decodeFullStatus). */
  fullStatus?: PrinResponse | null;
  /** For multipathd commands: why they failed, null when every reply was "ok". */
  failure?: string | null;
}

/** One `struct prin_fulldescr`, as mpath_format_readfullstatus() left it. */
export interface PrinFullDescriptor {
  /** RESERVATION KEY, the device's 8 bytes. */
  key: Uint8Array;
  /** Status descriptor byte 12 as the device sent it (ALL_TG_PT 0x02, R_HOLDER 0x01). */
  flags: number;
  /** Status descriptor byte 13 as the device sent it (SCOPE << 4 | TYPE). */
  scopeType: number;
  /** RELATIVE TARGET PORT IDENTIFIER (the library converts it to host order). */
  relativeTargetPortId: number;
  transportId: {
    /** FORMAT CODE, 0-3: the library stores byte 0 >> 6, not byte 0 & 0xC0 as for PR OUT. */
    formatCode: number;
    protocolId: number;
    /** N_PORT_NAME or SAS ADDRESS (8 bytes), or the iSCSI name without its terminating NUL. */
    name: Uint8Array;
  };
}

/** struct prin_resp, decoded (host byte order) for the service action that filled it. */
export type PrinResponse =
  | { kind: 'list'; generation: number; additionalLength: number; body: Uint8Array }
  | { kind: 'capabilities'; length: number; flags0: number; flags1: number; typeMask: number }
  | { kind: 'full-status'; generation: number; descriptors: PrinFullDescriptor[] }
  /** READ FULL STATUS the library answered but could not represent faithfully: why. */
  | { kind: 'unusable'; reason: string };

const REPORT_CAPABILITIES = 2;

export function decodePrinResponse(bytes: Uint8Array, sa: number): PrinResponse {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (sa === REPORT_CAPABILITIES) {
    return {
      kind: 'capabilities', length: view.getUint16(0, true), flags0: bytes[2] ?? 0, flags1: bytes[3] ?? 0,
      typeMask: view.getUint16(4, true),
    };
  }
  // prin_readdescr / prin_resvdescr: generation, additional_length, then the SPC bytes.
  return { kind: 'list', generation: view.getUint32(0, true), additionalLength: view.getUint32(4, true), body: bytes.subarray(8) };
}

// ---------------------------------------------------------------------------------------------
// READ FULL STATUS (multipath-tools 0.9.4, mpath_pr_ioctl.c mpath_format_readfullstatus and
// decode_transport_id, checked against the installed binary)
//
// The device's data lands in prin_resp (PRGENERATION at 0, ADDITIONAL LENGTH at 4, the status
// descriptors in private_buffer at 8; mpath_mx_alloc_len = 8192, so at most 8184 descriptor
// bytes). Both header fields are converted to host order. Then:
// - ADDITIONAL LENGTH 0: nothing else happens; number_of_descriptor is 0.
// - ADDITIONAL LENGTH > 8192: the library logs "PRIN length exceeds max length" and returns
//   MPATH_PR_SUCCESS with the device's bytes left in private_buffer and number_of_descriptor
//   still holding the length, not a count. A count never exceeds 8192, so the two are told
//   apart by value.
// - Otherwise private_buffer is copied aside and zeroed, and for each descriptor i (walking
//   24 + ADDITIONAL DESCRIPTOR LENGTH bytes, clipped at the end of the data) the library fills
//   one stack `struct prin_fulldescr` - zeroed once before the loop, never between
//   descriptors - and copies it to private_buffer + 270·i, then stores that address in
//   descriptors[i] = prin_resp + 8200 + 8·i, in that order; number_of_descriptor becomes the
//   count. Key, byte 12 (flag) and byte 13 (scope_type) are copied raw, the RELATIVE TARGET
//   PORT IDENTIFIER converted to host order. The TransportID keeps format_code = byte0 >> 6
//   and protocol_id = byte0 & 0x0F; FC copies N_PORT_NAME (bytes 8-15), SAS the SAS ADDRESS
//   (bytes 4-11), iSCSI the first min(ADDITIONAL LENGTH, 256) name bytes (no length is kept);
//   other protocols copy nothing, so the union keeps the previous descriptor's bytes.
// Nothing bounds the count: from the 31st descriptor on, descriptor copies overwrite
// descriptors[] (pointers already stored), and from the 32nd on each pointer overwrites part
// of a copy already stored (its own descriptor's first). decodeFullStatus() replays that
// write order and uses only bytes that survived it; the block is sized for the most
// descriptors the loop can store (FULL_STATUS_RESP_SIZE). Not guarded against, because it
// happens inside the library: an ADDITIONAL DESCRIPTOR LENGTH of 2^32 - 24 makes the loop
// stop advancing, so a broken or hostile target can make it write until the process faults.

const FULL = PRIN_FULLDESCR_LIST;
const DESC = PRIN_FULLDESCR;
/** Offsets of struct transportid's members inside struct prin_fulldescr. */
const TID_FORMAT_CODE = DESC.TRNPTID;
const TID_PROTOCOL_ID = DESC.TRNPTID + 1;
const TID_NAME = DESC.TRNPTID + 2;
const TID_NAME_SIZE = 256;
const FIXED_NAME_SIZE = 8;
const PROTOCOL_FC = 0x0;
const PROTOCOL_ISCSI = 0x5;
const PROTOCOL_SAS = 0x6;

/** Where the library copies descriptor i. */
function descriptorOffset(i: number): number {
  return FULL.PRIVATE_BUFFER + DESC.SIZE * i;
}

/** Where the library stores the pointer to descriptor i. */
function pointerOffset(i: number): number {
  return FULL.DESCRIPTORS + FULL.POINTER_SIZE * i;
}

/** Which descriptor copy covers byte `offset` of the block (-1 before private_buffer). */
function descriptorAt(offset: number): number {
  return offset < FULL.PRIVATE_BUFFER ? -1 : Math.floor((offset - FULL.PRIVATE_BUFFER) / DESC.SIZE);
}

/** descriptors[i] survives unless a descriptor copied after it (k > i) lies over it. */
function pointerSurvives(i: number, count: number): boolean {
  const first = descriptorAt(pointerOffset(i));
  const last = descriptorAt(pointerOffset(i) + FULL.POINTER_SIZE - 1);
  return !((first > i && first < count) || (last > i && last < count));
}

/**
 * The first byte of descriptor i's copy that a pointer stored after it (descriptors[k],
 * k ≥ i) overwrote, relative to the copy; DESC.SIZE when none did.
 */
function firstOverwrittenByte(i: number, count: number): number {
  const start = descriptorOffset(i);
  const end = start + DESC.SIZE;
  // The first pointer slot that ends after `start`, but never one stored before the copy.
  const k = Math.max(i, Math.floor((start - FULL.DESCRIPTORS - FULL.POINTER_SIZE) / FULL.POINTER_SIZE) + 1);
  if (k >= count || pointerOffset(k) >= end) return DESC.SIZE;
  return Math.max(start, pointerOffset(k)) - start;
}

type DecodedDescriptor = { descriptor: PrinFullDescriptor } | { reason: string };

function decodeDescriptor(block: Uint8Array, view: DataView, at: number, i: number, count: number): DecodedDescriptor {
  const intact = firstOverwrittenByte(i, count);
  const overwritten = {
    reason: `descriptor ${i + 1} of ${count} was overwritten by the library's own pointer array ` +
      '(more status descriptors than struct prin_resp holds)',
  };
  if (intact < TID_NAME) return overwritten;
  const protocolId = block[at + TID_PROTOCOL_ID] ?? 0;
  let name: Uint8Array;
  if (protocolId === PROTOCOL_FC || protocolId === PROTOCOL_SAS) {
    if (intact < TID_NAME + FIXED_NAME_SIZE) return overwritten;
    name = block.slice(at + TID_NAME, at + TID_NAME + FIXED_NAME_SIZE);
  } else if (protocolId === PROTOCOL_ISCSI) {
    // The name ends at its first NUL (SPC-4 7.6.4.6); what follows may be a longer name's
    // remains from an earlier descriptor.
    const field = block.subarray(at + TID_NAME, at + Math.min(TID_NAME + TID_NAME_SIZE, intact));
    const nul = field.indexOf(0);
    if (nul < 0) {
      if (intact < TID_NAME + TID_NAME_SIZE) return overwritten;
      return { reason: `descriptor ${i + 1} of ${count} has an iSCSI name the library cut at ${TID_NAME_SIZE} bytes` };
    }
    name = field.slice(0, nul);
  } else {
    return {
      reason: `descriptor ${i + 1} of ${count} has a TransportID with protocol identifier ${protocolId}, ` +
        'whose identifier libmpathpersist does not keep',
    };
  }
  return {
    descriptor: {
      key: block.slice(at + DESC.KEY, at + DESC.KEY + 8),
      flags: block[at + DESC.FLAG] ?? 0,
      scopeType: block[at + DESC.SCOPE_TYPE] ?? 0,
      relativeTargetPortId: view.getUint16(at + DESC.RTPI, true),
      transportId: { formatCode: block[at + TID_FORMAT_CODE] ?? 0, protocolId, name },
    },
  };
}

/**
 * READ FULL STATUS as the library left it in the native block at `base` (`block` is a view
 * of that block from its start): the descriptors[] pointers become offsets into the block,
 * checked against where the library stores each descriptor; pointers the library itself
 * overwrote are replaced by that position. Never reads outside `block`.
 */
export function decodeFullStatus(block: Uint8Array, base: bigint): PrinResponse {
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const generation = view.getUint32(FULL.PRGENERATION, true);
  const count = view.getUint32(FULL.NUMBER_OF_DESCRIPTOR, true);
  if (count > FULL.PRIVATE_BUFFER_SIZE) {
    // The length the library refused to parse: private_buffer holds the device's bytes.
    return {
      kind: 'list', generation, additionalLength: count,
      body: block.slice(FULL.PRIVATE_BUFFER, FULL.PRIVATE_BUFFER + FULL.PRIVATE_BUFFER_SIZE),
    };
  }
  const descriptors: PrinFullDescriptor[] = [];
  for (let i = 0; i < count; i++) {
    const at = descriptorOffset(i);
    if (pointerOffset(i) + FULL.POINTER_SIZE > block.length || at + DESC.SIZE > block.length) {
      return { kind: 'unusable', reason: `descriptor ${i + 1} of ${count} lies beyond the response block` };
    }
    if (pointerSurvives(i, count)) {
      const offset = view.getBigUint64(pointerOffset(i), true) - base;
      if (offset !== BigInt(at)) {
        return {
          kind: 'unusable',
          reason: `descriptors[${i}] points to offset ${offset} of the response, not to ${at} where the library stores it`,
        };
      }
    }
    const decoded = decodeDescriptor(block, view, at, i, count);
    if ('reason' in decoded) return { kind: 'unusable', reason: decoded.reason };
    descriptors.push(decoded.descriptor);
  }
  return { kind: 'full-status', generation, descriptors };
}

/** Where distributions install the library (the soname alone would also search ld.so.cache). */
const LIBRARY_DIRECTORIES = [
  '/lib', '/usr/lib', '/lib64', '/usr/lib64', '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu',
  '/lib/aarch64-linux-gnu', '/usr/lib/aarch64-linux-gnu',
];
export const MPATH_LIBRARY_SONAME = 'libmpathpersist.so.0';

/** The library file to load, or null when it is not installed. `override` wins (tests). */
export function findMpathLibrary(override: string | undefined): string | null {
  if (override !== undefined) return existsSync(override) ? override : null;
  for (const dir of LIBRARY_DIRECTORIES) {
    const path = `${dir}/${MPATH_LIBRARY_SONAME}`;
    if (existsSync(path)) return path;
  }
  return null;
}

/**
 * The library's ABI version, from its ELF symbol versions (LIBMPATHPERSIST_x.y.z; 2.1.0 in
 * multipath-tools 0.9.4), or null when unreadable. The library has no version call.
 */
export function mpathLibraryAbi(path: string): string | null {
  try {
    const text = readFileSync(path).toString('latin1');
    const versions = [...text.matchAll(/LIBMPATHPERSIST_(\d+)\.(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])]);
    versions.sort((a, b) => ((a[0] ?? 0) - (b[0] ?? 0)) || ((a[1] ?? 0) - (b[1] ?? 0)) || ((a[2] ?? 0) - (b[2] ?? 0)));
    const last = versions.at(-1);
    return last ? `LIBMPATHPERSIST_${last.join('.')}` : null;
  } catch {
    return null;
  }
}

const WORKER_URL = new URL('../sys/mpath-thread-main.js', import.meta.url);

type Pending = (reply: MpathReply) => void;

export class MpathLibrary {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on('message', (message: { type: string; reply?: MpathReply }) => {
      if (message.type !== 'reply' || !message.reply) return;
      const done = this.#pending.get(message.reply.id);
      this.#pending.delete(message.reply.id);
      done?.(message.reply);
    });
    worker.on('exit', () => {
      // The thread died: every waiting request gets the library's "other error".
      for (const [id, done] of this.#pending) done({ id, code: -1, response: null });
      this.#pending.clear();
    });
  }

  /** Starts the thread and initialises the library; rejects with the reason it cannot. */
  /** `logToSyslog`: send the library's own messages to syslog (stderr is the journal). */
  static open(path: string, logToSyslog = false): Promise<MpathLibrary> {
    const worker = new Worker(WORKER_URL, { workerData: { path, logToSyslog }, stdout: false, stderr: false });
    return new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error('the multipath thread exited during start-up'));
      worker.once('exit', onExit);
      worker.once('error', (error) => reject(error));
      worker.once('message', (message: { type: string; message?: string }) => {
        worker.off('exit', onExit);
        if (message.type === 'ready') {
          worker.unref();
          resolve(new MpathLibrary(worker));
        } else {
          reject(new Error(message.message ?? 'initialisation failed'));
          void worker.terminate();
        }
      });
    });
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  #call(request: MpathRequest): Promise<MpathReply> {
    return new Promise((resolve) => {
      this.#pending.set(request.id, resolve);
      this.#worker.postMessage(request);
    });
  }

  async reserveIn(fd: number, sa: number, noisy: number, verbose: number): Promise<{ code: number; response: PrinResponse | null }> {
    const reply = await this.#call({ id: this.#nextId++, op: 'in', fd, sa, noisy, verbose });
    if (reply.fullStatus) return { code: reply.code, response: reply.fullStatus };
    return { code: reply.code, response: reply.response ? decodePrinResponse(reply.response, sa) : null };
  }

  async reserveOut(
    fd: number,
    call: { sa: number; scope: number; type: number; key: Uint8Array; saKey: Uint8Array; saFlags: number; transportIds: MpathTransportId[] },
    noisy: number,
    verbose: number,
  ): Promise<number> {
    const reply = await this.#call({ id: this.#nextId++, op: 'out', fd, ...call, noisy, verbose });
    return reply.code;
  }

  /**
   * Sends commands to multipathd one by one (spec §5.6), stopping at the first whose reply
   * is not "ok". Resolves with null on success, else the failure in words.
   */
  async multipathd(commands: string[], timeoutMs: number): Promise<string | null> {
    const reply = await this.#call({ id: this.#nextId++, op: 'multipathd', commands, timeoutMs });
    return reply.code === 0 ? null : reply.failure ?? 'the multipath thread ended';
  }

  close(): void {
    void this.#worker.terminate();
  }
}
