/**
 * One connection to a running helper, used exactly as QEMU's pr-manager-helper uses it
 * (docs/protocol.md §3, §6): read the helper's feature word, answer in a sendmsg of its own, then send
 * the 16-byte CDB with the device fd as SCM_RIGHTS on the same sendmsg, the PR OUT parameter
 * list after it, and read the 104-byte header and the data.
 *
 * Node's `net` cannot be used: a client must pass an fd, which only sendmsg(2) can
 * (src/sys/socket.ts). The socket is nonblocking and watched on Node's loop (src/sys/poll.ts).
 */
import {
  HANDSHAKE_SIZE, PR_HELPER_DATA_SIZE, PR_HELPER_FEATURE_CLEANUP, RESPONSE_HEADER_SIZE, RESPONSE_RESULT_OFFSET, RESPONSE_SENSE_OFFSET,
  RESPONSE_SIZE_OFFSET,
} from '../protocol/constants.js';
import type { ScsiOutcome } from '../scsi/constants.js';
import { SyscallError } from '../sys/errors.js';
import { closeFd } from '../sys/fd.js';
import { FdWatcher, drainMicrotasksSoon } from '../sys/poll.js';
import { MessageReceiver, SocketPathTooLongError, connectUnix, sendWithFds, unixStreamSocket } from '../sys/socket.js';
import { HelperClosedError, HelperProtocolError, HelperTimeoutError, HelperUnreachableError } from './errors.js';

/** Feature bits this client understands; the handshake reply is the offered set masked by them. */
export const CLIENT_FEATURES = PR_HELPER_FEATURE_CLEANUP;

/** errno codes after which the helper has gone: the connection is closed, not failing. */
const CLOSED_CODES = new Set(['EPIPE', 'ECONNRESET']);

export interface HelperRequest {
  /** 16 bytes. */
  cdb: Uint8Array;
  /** The device descriptor, passed with the CDB; the caller keeps and closes it. */
  deviceFd: number;
  /** PR OUT parameter list (empty for PR IN and CLEANUP). */
  parameters: Uint8Array;
  /** Largest data size the helper may answer: the allocation length for PR IN, else 0. */
  maxData: number;
}

function connectError(socketPath: string, error: unknown): HelperUnreachableError {
  if (error instanceof SocketPathTooLongError) {
    return new HelperUnreachableError(socketPath, null, 'the path is too long for a Unix socket', { cause: error });
  }
  if (!(error instanceof SyscallError)) throw error;
  const detail: Record<string, string> = {
    ENOENT: 'no such socket (is the helper running? -k gives its socket path)',
    ENOTDIR: 'no such socket (a component of the path is not a directory)',
    EACCES: 'Permission denied (connecting needs search permission on the directories and write permission on the socket)',
    EPERM: 'Operation not permitted (a security module refused the connection)',
    ECONNREFUSED: 'Connection refused (nothing listens there: a stale socket, or not a socket at all)',
    EAGAIN: "the helper's listen backlog is full; try again",
  };
  return new HelperUnreachableError(socketPath, error.code, detail[error.code] ?? error.description, { cause: error });
}

export class HelperConnection {
  readonly socketPath: string;
  /** The feature word the helper sent (big-endian on the wire). */
  features = 0;
  /** What this client answered: features & CLIENT_FEATURES. */
  reply = 0;
  readonly #fd: number;
  readonly #timeoutMs: number;
  readonly #receiver = new MessageReceiver(RESPONSE_HEADER_SIZE + PR_HELPER_DATA_SIZE);
  readonly #watcher: FdWatcher;
  #buffered = new Uint8Array(0);
  #eof = false;
  #failure: SyscallError | null = null;
  #wake: (() => void) | null = null;
  #closed = false;

  private constructor(socketPath: string, fd: number, timeoutMs: number) {
    this.socketPath = socketPath;
    this.#fd = fd;
    this.#timeoutMs = timeoutMs;
    this.#watcher = new FdWatcher(fd, (ready) => {
      if (ready.readable || ready.hangup || ready.failed) this.#pump();
      const wake = this.#wake;
      this.#wake = null;
      wake?.();
      drainMicrotasksSoon(); // Node 26: runs what wake() resolved (src/sys/poll.ts)
    });
  }

  /**
   * Connects and completes the handshake. `timeoutMs` (0: none) bounds every later wait too.
   * Throws HelperUnreachableError, HelperClosedError or HelperTimeoutError.
   */
  static async open(socketPath: string, timeoutMs: number): Promise<HelperConnection> {
    const fd = unixStreamSocket();
    try {
      connectUnix(fd, socketPath);
    } catch (error) {
      closeFd(fd);
      throw connectError(socketPath, error);
    }
    const connection = new HelperConnection(socketPath, fd, timeoutMs);
    try {
      const greeting = await connection.#read(HANDSHAKE_SIZE, "reading the helper's feature word");
      connection.features = new DataView(greeting.buffer, greeting.byteOffset, HANDSHAKE_SIZE).getUint32(0);
      // Answer the subset we understand, big-endian, in its own sendmsg (docs/protocol.md §3.2, §3.3).
      connection.reply = (connection.features & CLIENT_FEATURES) >>> 0;
      const answer = new Uint8Array(HANDSHAKE_SIZE);
      new DataView(answer.buffer, answer.byteOffset, answer.byteLength).setUint32(0, connection.reply);
      await connection.#send(answer, [], 'answering the handshake');
    } catch (error) {
      connection.close();
      throw error;
    }
    return connection;
  }

  /** Sends one request and returns the helper's answer. */
  async execute(request: HelperRequest): Promise<ScsiOutcome> {
    await this.#send(request.cdb, [request.deviceFd], 'sending the CDB');
    if (request.parameters.length > 0) await this.#send(request.parameters, [], 'sending the parameter list');
    const header = await this.#read(RESPONSE_HEADER_SIZE, 'waiting for the response');
    const dv = new DataView(header.buffer, header.byteOffset, header.byteLength);
    const status = dv.getInt32(RESPONSE_RESULT_OFFSET);
    const size = dv.getInt32(RESPONSE_SIZE_OFFSET);
    const sense = header.slice(RESPONSE_SENSE_OFFSET, RESPONSE_HEADER_SIZE);
    // QEMU asserts sz <= dxfer_len (unsigned) for PR IN and sz == 0 otherwise (docs/protocol.md §6).
    if (size < 0 || size > request.maxData) {
      const limit = request.maxData === 0 ? 'none are allowed for this command' : `the allocation length is ${request.maxData}`;
      throw new HelperProtocolError(`${size} data bytes, but ${limit} (QEMU would abort)`);
    }
    const data = size > 0 ? await this.#read(size, `reading ${size} data bytes`) : new Uint8Array(0);
    return { status, sense, data };
  }

  async #send(bytes: Uint8Array, fds: readonly number[], what: string): Promise<void> {
    let offset = 0;
    let attached = fds;
    while (offset < bytes.length) {
      let sent: number;
      try {
        sent = sendWithFds(this.#fd, bytes.subarray(offset), attached);
      } catch (error) {
        if (error instanceof SyscallError && error.code === 'EAGAIN') {
          await this.#waitFor(() => false, { readable: false, writable: true }, what, true);
          continue;
        }
        if (error instanceof SyscallError && CLOSED_CODES.has(error.code)) throw new HelperClosedError(what, { cause: error });
        throw error;
      }
      // The fd went with the first bytes; the helper collects it across partial CDB reads.
      offset += sent;
      attached = [];
    }
  }

  #pump(): void {
    for (;;) {
      const got = this.#receiver.receive(this.#fd, this.#receiver.capacity);
      if (got.kind === 'again') return;
      if (got.kind === 'error') {
        this.#failure = got.error;
      } else {
        // The helper never sends descriptors; close any so that none leaks.
        for (const fd of got.fds) closeFd(fd);
        if (got.kind === 'data') {
          const merged = new Uint8Array(this.#buffered.length + got.bytes.length);
          merged.set(this.#buffered);
          merged.set(got.bytes, this.#buffered.length);
          this.#buffered = merged;
          continue;
        }
      }
      this.#eof = true;
      this.#watcher.set({ readable: false, writable: false });
      return;
    }
  }

  /**
   * Waits until `ready()` or, with `onceWritable`, the socket is writable. Throws when the
   * helper has closed the connection or the timeout passes.
   */
  async #waitFor(
    ready: () => boolean, interest: { readable: boolean; writable: boolean }, what: string, onceWritable = false,
  ): Promise<void> {
    const deadline = this.#timeoutMs > 0 ? Date.now() + this.#timeoutMs : Number.POSITIVE_INFINITY;
    let woke = false;
    while (!ready() && !woke) {
      if (this.#eof) {
        const cause = this.#failure;
        if (cause !== null && !CLOSED_CODES.has(cause.code)) throw cause;
        throw new HelperClosedError(what, cause === null ? undefined : { cause });
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new HelperTimeoutError(what, this.#timeoutMs);
      this.#watcher.set(interest);
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(left) ? setTimeout(resolve, left) : null;
        this.#wake = () => {
          if (timer !== null) clearTimeout(timer);
          if (onceWritable) woke = true;
          resolve();
        };
      });
      this.#wake = null;
    }
    this.#watcher.set({ readable: false, writable: false });
  }

  async #read(n: number, what: string): Promise<Uint8Array> {
    await this.#waitFor(() => this.#buffered.length >= n, { readable: true, writable: false }, what);
    const out = this.#buffered.slice(0, n);
    this.#buffered = this.#buffered.slice(n);
    return out;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watcher.close();
    this.#receiver.free();
    closeFd(this.#fd);
  }
}
