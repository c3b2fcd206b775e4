/**
 * The per-connection protocol state machine, pure: bytes and fds in, typed steps out
 * (docs/protocol.md §3.2-3.6). It never does I/O. The driver asks `need()` how many bytes to read next
 * and whether fds may come with them, reads at most that many, and calls `feed()`.
 *
 * fd ownership: every fd passed to `feed()` belongs to the session until it is handed back,
 * either as `request.fd` (the driver closes it after execution) or in `discardFds` (the
 * driver closes it at once). Nothing is kept after `end()`.
 */
import { Opcode, type ScsiOutcome } from '../scsi/constants.js';
import { cdbTransferLength } from '../scsi/cdb.js';
import {
  DEFAULT_FEATURES, HANDSHAKE_SIZE, PR_HELPER_CDB_SIZE, PR_HELPER_CLEANUP, PR_HELPER_DATA_SIZE, PR_HELPER_FEATURE_CLEANUP,
} from './constants.js';
import { ProtocolError } from './errors.js';
import { encodeResponse } from './response.js';

export type Phase = 'handshake' | 'cdb' | 'parameters' | 'executing' | 'closed';

/** What the driver should read next. */
export interface Need {
  length: number;
  /** Whether SCM_RIGHTS fds are part of this read (only while reading a CDB). */
  acceptsFds: boolean;
}

/** A validated request, ready for an executor. */
export interface PrRequest {
  /** CDB byte 0: PERSISTENT RESERVE IN/OUT or the CLEANUP pseudo-opcode. */
  opcode: number;
  /** All 16 CDB bytes as received (a copy). */
  cdb: Uint8Array;
  /** The device fd that came with the CDB; owned by the driver from now on. */
  fd: number;
  /** PR IN allocation length or PR OUT parameter list length (docs/protocol.md §3.4), ≤ 8192. */
  transferLength: number;
  /** PR OUT parameter list (transferLength bytes); empty otherwise. */
  parameters: Uint8Array;
}

export type Step =
  | { kind: 'need-more'; discardFds: number[] }
  | { kind: 'execute'; request: PrRequest; discardFds: number[] }
  | { kind: 'close'; error: ProtocolError; discardFds: number[] };

export interface SessionEnd {
  /** Set when the peer left in the middle of a request; null for a clean EOF. */
  error: ProtocolError | null;
  discardFds: number[];
}

/** The operation codes a session accepts: CLEANUP only when the helper announces it. */
const PR_OPCODES: ReadonlySet<number> = new Set([Opcode.PERSISTENT_RESERVE_IN, Opcode.PERSISTENT_RESERVE_OUT]);
const PR_AND_CLEANUP_OPCODES: ReadonlySet<number> = new Set([...PR_OPCODES, PR_HELPER_CLEANUP]);

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`;
}

/** Transfer length of a helper request; CLEANUP carries none (docs/protocol.md §3.4). */
export function requestTransferLength(cdb: Uint8Array): number {
  return cdb[0] === PR_HELPER_CLEANUP ? 0 : cdbTransferLength(cdb);
}

export class Session {
  #phase: Phase = 'handshake';
  /**
   * The handshake reply, then each PR OUT parameter list, sized exactly: nothing of up to
   * 8 KiB stays allocated per idle connection.
   */
  #buf = new Uint8Array(HANDSHAKE_SIZE);
  #got = 0;
  #cdb = new Uint8Array(PR_HELPER_CDB_SIZE);
  #fd: number | null = null;
  #transferLength = 0;
  #clientFeatures: number | null = null;
  /** The feature set this helper announces (the greeting). */
  readonly #features: number;
  readonly #opcodes: ReadonlySet<number>;

  constructor(features: number = DEFAULT_FEATURES) {
    this.#features = features;
    this.#opcodes = (features & PR_HELPER_FEATURE_CLEANUP) !== 0 ? PR_AND_CLEANUP_OPCODES : PR_OPCODES;
  }

  /**
   * A session whose handshake was completed by another Session of the same connection
   * (the fast path moves idle connections between threads; only this state crosses).
   */
  static afterHandshake(clientFeatures: number, features: number = DEFAULT_FEATURES): Session {
    const session = new Session(features);
    session.#clientFeatures = clientFeatures;
    session.#startCdb();
    return session;
  }

  /** Bytes the helper sends first, right after accept: its feature set, big-endian. */
  greeting(): Uint8Array {
    const out = new Uint8Array(HANDSHAKE_SIZE);
    new DataView(out.buffer).setUint32(0, this.#features);
    return out;
  }

  get phase(): Phase {
    return this.#phase;
  }

  /** Between requests after the handshake, holding no byte or fd of the next request. */
  get atRest(): boolean {
    return this.#phase === 'cdb' && this.#got === 0 && this.#fd === null;
  }

  /** The features the client accepted in the handshake; null until then. */
  get clientFeatures(): number | null {
    return this.#clientFeatures;
  }

  need(): Need | null {
    switch (this.#phase) {
      case 'handshake':
        return { length: HANDSHAKE_SIZE - this.#got, acceptsFds: false };
      case 'cdb':
        return { length: PR_HELPER_CDB_SIZE - this.#got, acceptsFds: true };
      case 'parameters':
        return { length: this.#transferLength - this.#got, acceptsFds: false };
      default:
        return null;
    }
  }

  /** Feeds at most `need().length` bytes, with any fds that arrived alongside. */
  feed(bytes: Uint8Array, fds: readonly number[]): Step {
    const need = this.need();
    if (need === null) throw new Error(`Cannot feed the session: it is ${this.#phase}`);
    if (bytes.length > need.length) {
      throw new RangeError(`Cannot feed ${bytes.length} bytes: the session needs ${need.length}`);
    }
    if (!need.acceptsFds) {
      // fds sent with the handshake or PR OUT parameters are dropped, as the reference's
      // reads without a control buffer make the kernel do (docs/protocol.md §3.2, §3.3).
      const step = this.#feedBytes(bytes);
      return { ...step, discardFds: [...fds, ...step.discardFds] };
    }
    // QEMU prh_read: keep the first fd of a request; any other one, in this read or a
    // later read of the same CDB, closes the connection (docs/protocol.md §3.5 row 2).
    const extra: number[] = [];
    for (const fd of fds) {
      if (this.#fd === null) this.#fd = fd;
      else extra.push(fd);
    }
    if (extra.length > 0) {
      return this.#close(new ProtocolError('too-many-fds',
        'More than one file descriptor in request, closing socket.'), extra);
    }
    return this.#feedBytes(bytes);
  }

  #feedBytes(bytes: Uint8Array): Step {
    switch (this.#phase) {
      case 'handshake':
        this.#buf.set(bytes, this.#got);
        this.#got += bytes.length;
        return this.#got < HANDSHAKE_SIZE ? more() : this.#handshakeDone();
      case 'cdb':
        this.#cdb.set(bytes, this.#got);
        this.#got += bytes.length;
        return this.#got < PR_HELPER_CDB_SIZE ? more() : this.#cdbDone();
      case 'parameters':
        this.#buf.set(bytes, this.#got);
        this.#got += bytes.length;
        return this.#got < this.#transferLength ? more() : this.#execute();
      default:
        throw new Error(`Cannot feed the session: it is ${this.#phase}`);
    }
  }

  #handshakeDone(): Step {
    const reply = new DataView(this.#buf.buffer, this.#buf.byteOffset, HANDSHAKE_SIZE).getUint32(0);
    // A reply may hold only bits we announced: by default none, so only 0, as upstream
    // requires. It does not gate CLEANUP: little-endian QEMU clients of the patch series
    // always answer 0 (docs/protocol.md §3.2, §9 item 14).
    if ((reply & ~this.#features) >>> 0 !== 0) {
      return this.#close(new ProtocolError('bad-handshake',
        `Invalid handshake reply 0x${reply.toString(16).padStart(8, '0')}, closing socket.`), []);
    }
    this.#clientFeatures = reply;
    this.#startCdb();
    return more();
  }

  #cdbDone(): Step {
    // Checks in the reference's order (docs/protocol.md §3.5 rows 3-5).
    if (this.#fd === null) {
      return this.#close(new ProtocolError('missing-fd', 'No file descriptor in request.'), []);
    }
    const opcode = this.#cdb[0] ?? 0;
    if (!this.#opcodes.has(opcode)) {
      return this.#close(new ProtocolError('invalid-opcode',
        `Invalid CDB (operation code ${hex(opcode)}), closing socket.`), []);
    }
    const transferLength = requestTransferLength(this.#cdb);
    if (transferLength > PR_HELPER_DATA_SIZE) {
      return this.#close(new ProtocolError('transfer-too-long',
        `Invalid CDB (transfer length ${transferLength} exceeds ${PR_HELPER_DATA_SIZE}), closing socket.`), []);
    }
    this.#transferLength = transferLength;
    this.#got = 0;
    if (opcode === Opcode.PERSISTENT_RESERVE_OUT && transferLength > 0) {
      this.#phase = 'parameters';
      this.#buf = new Uint8Array(transferLength);
      return more();
    }
    return this.#execute();
  }

  #execute(): Step {
    const fd = this.#fd;
    if (fd === null) throw new Error('Cannot execute: no fd');
    const opcode = this.#cdb[0] ?? 0;
    const request: PrRequest = {
      opcode,
      cdb: this.#cdb.slice(),
      fd,
      transferLength: this.#transferLength,
      parameters: opcode === Opcode.PERSISTENT_RESERVE_OUT
        ? this.#takeParameters()
        : new Uint8Array(0),
    };
    this.#fd = null;
    this.#phase = 'executing';
    return { kind: 'execute', request, discardFds: [] };
  }

  /**
   * Takes over `request`, read and validated by another Session of this connection (see
   * afterHandshake): this session is then executing it and answers it with respond().
   * Only an idle session (between requests) can adopt one.
   */
  adopt(request: PrRequest): void {
    if (this.#phase !== 'cdb' || this.#got !== 0 || this.#fd !== null) {
      throw new Error(`Cannot adopt a request: the session is ${this.#phase}${this.#got > 0 ? ' with a partial request' : ''}`);
    }
    this.#phase = 'executing';
  }

  /**
   * Encodes the response to the request being executed and readies the next request.
   * The data size invariants of docs/protocol.md §3.6 are enforced by encodeResponse.
   */
  respond(request: PrRequest, outcome: ScsiOutcome, into: Uint8Array | null = null): Uint8Array {
    if (this.#phase !== 'executing') throw new Error(`Cannot respond: the session is ${this.#phase}`);
    this.#startCdb();
    return encodeResponse(request, outcome, into);
  }

  /** The peer is gone (EOF or a read error). Returns the fds still held. */
  end(): SessionEnd {
    const phase = this.#phase;
    const partial = this.#got > 0 || this.#fd !== null;
    const discardFds = this.#fd === null ? [] : [this.#fd];
    this.#fd = null;
    this.#phase = 'closed';
    if (phase === 'parameters') {
      return { error: new ProtocolError('eof-in-parameters', 'Unexpected end-of-file before all data were read'), discardFds };
    }
    if (phase === 'cdb' && partial) {
      return { error: new ProtocolError('eof-in-cdb', 'Unexpected end-of-file in the middle of a request'), discardFds };
    }
    return { error: null, discardFds };
  }

  #takeParameters(): Uint8Array {
    const parameters = this.#buf.subarray(0, this.#transferLength);
    this.#buf = new Uint8Array(0);
    return parameters;
  }

  #startCdb(): void {
    this.#phase = 'cdb';
    this.#got = 0;
    this.#cdb.fill(0);
  }

  #close(error: ProtocolError, extraFds: number[]): Step {
    const discardFds = this.#fd === null ? extraFds : [this.#fd, ...extraFds];
    this.#fd = null;
    this.#phase = 'closed';
    return { kind: 'close', error, discardFds };
  }
}

function more(): Step {
  return { kind: 'need-more', discardFds: [] };
}
