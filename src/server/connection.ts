/**
 * Runs one client connection: the pure Session over raw socket calls. Data flows one way:
 * socket → session → executor → session → socket. One request at a time, as QEMU's helper
 * does: reading stops while a request executes and its response is written, and resumes
 * afterwards (pipelined requests wait in the socket buffer).
 *
 * fd ownership: the connection owns its socket and every fd received on it until closed.
 * A request's fd is closed as soon as its execution settles, before the response is sent
 * (spec §3.5 row 7), even if the connection is gone by then. Every one of them, the socket
 * included (it may hold fds in flight), is closed through the FdCloser, off the main
 * thread: a client's fd whose close() blocks holds only its own connection.
 */
import { Session, type PrRequest, type Step } from '../protocol/session.js';
import { PR_HELPER_DATA_SIZE } from '../protocol/constants.js';
import type { FdCloser, ScsiExecutor } from '../exec/executor.js';
import type { ScsiOutcome } from '../scsi/constants.js';
import { FdWatcher, type Readiness } from '../sys/poll.js';
import { MessageReceiver, queuedBytes, sendBytes, shutdownReading } from '../sys/socket.js';
import { closeFd } from '../sys/fd.js';
import { SyscallError, peerGoneErrno } from '../sys/errors.js';
import type { ConnectionInfo, DeviceInfo, ServerObserver } from './events.js';
import { describeDevice } from './device-info.js';
import type { FastPath, FastPathClient, FastPathTicket } from './fast-path.js';
import { FDS_LOST_MESSAGE, type Handback, type ReceivedChunk } from './fast-path-shared.js';

export interface ConnectionDeps {
  executor: ScsiExecutor;
  /** Closes the client's fds and the socket itself. */
  closer: FdCloser;
  /** Receives request, response and close events (the log and trace points). */
  observer: ServerObserver;
  info: ConnectionInfo;
  /** Called once, after the socket is closed. */
  onClosed: (connection: Connection) => void;
  /** Called after each request's execution settles (its fd is closed by then). */
  onSettled: () => void;
  /** Where idle connections wait for their next request, if anywhere (fast-path.ts). */
  fastPath?: FastPath | null;
}

/** Reads per wake-up before yielding to other connections. */
const MAX_READS_PER_WAKEUP = 64;
/**
 * QEMU answers the greeting at once. A peer that has not within this time is closed, so
 * that idle connections cannot hold the helper's fds (README "Threat model").
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

export class Connection implements FastPathClient {
  readonly fd: number;
  readonly #deps: ConnectionDeps;
  readonly #session = new Session();
  readonly #watcher: FdWatcher;
  #pending: Uint8Array | null = null;
  #executing = false;
  #draining = false;
  #closed = false;
  /** Why the connection is being closed, when it is not a plain end of file. */
  #reason: string | null = null;
  /** The peer ended the connection (see the 'closed' event). */
  #peerGone = false;
  #requests = 0;
  #ticket: FastPathTicket | null = null;
  /** Handed over to the fast path: a worker may be serving it; the main thread does not touch it. */
  #away = false;
  #handshakeTimer: NodeJS.Timeout | null = null;

  constructor(fd: number, deps: ConnectionDeps) {
    this.fd = fd;
    this.#deps = deps;
    this.#watcher = new FdWatcher(fd, (r) => this.#onReady(r));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True while a request executes or its response is being written. */
  get busy(): boolean {
    return this.#executing || this.#pending !== null;
  }

  /** Sends the feature word (spec §3.2) and starts reading. */
  start(): void {
    this.#handshakeTimer = setTimeout(() => {
      this.#handshakeTimer = null;
      if (this.#session.phase === 'handshake') this.#fail(`No handshake within ${HANDSHAKE_TIMEOUT_MS / 1000} s, closing socket.`);
    }, HANDSHAKE_TIMEOUT_MS);
    this.#handshakeTimer.unref();
    this.#write(Session.greeting());
  }

  /**
   * Shutdown: no new request is read. An idle connection closes now; a busy one closes
   * after its response is written (spec §1.8).
   */
  drain(): void {
    this.#draining = true;
    if (this.#away && !this.#takeBack()) return; // a worker answers first, then hands it back
    if (!this.busy) this.close();
  }

  /** Hands the idle connection to the fast path; false when it stays here. */
  #handOver(): boolean {
    const fastPath = this.#deps.fastPath;
    if (!fastPath || this.#closed || this.#draining || this.#pending !== null || !this.#session.atRest) return false;
    this.#ticket ??= fastPath.attach(this);
    if (this.#ticket === null) return false;
    // Our watch stops first: from the moment it is armed, a worker may be reading it.
    this.#watcher.set({ readable: false, writable: false });
    if (!fastPath.handOver(this.#ticket, this.fd)) {
      this.#watcher.set({ readable: true, writable: false });
      return false;
    }
    this.#away = true;
    return true;
  }

  /** Takes the connection back from the fast path unless a worker is serving it. */
  #takeBack(): boolean {
    if (!this.#away) return true;
    if (this.#ticket === null || !this.#deps.fastPath?.reclaim(this.#ticket)) return false;
    this.#away = false;
    this.#requests += this.#deps.fastPath.takeServed(this.#ticket);
    return true;
  }

  /** Feeds the start of a request a worker read, as if read here, then reads on. */
  #replay(chunks: readonly ReceivedChunk[]): void {
    for (const chunk of chunks) {
      if (this.#closed || this.busy) {
        this.#release(chunk.fds);
        continue;
      }
      this.#handle(this.#session.feed(chunk.bytes, chunk.fds));
    }
    if (!this.#closed && !this.busy) this.#watcher.set({ readable: true, writable: false });
  }

  /** A fast-path worker gives the connection back (see Handback). */
  resume(handback: Handback, requests: number): void {
    this.#away = false;
    this.#requests += requests;
    if (this.#closed) {
      if (handback.request) this.#release([handback.request.fd]);
      return;
    }
    try {
      if (handback.failure !== undefined) {
        if (handback.request) this.#release([handback.request.fd]);
        this.#fail(handback.failure, handback.peerGone === true);
      } else if (handback.request) {
        this.#session.adopt(handback.request);
        this.#execute(handback.request);
      } else if (handback.replay) {
        this.#replay(handback.replay);
        // Shutdown may have begun meanwhile: a partial request is not waited for (drain()).
        if (this.#draining && !this.busy) this.close();
      } else if (handback.pending) {
        this.#write(handback.pending);
      } else if (this.#draining) {
        this.close();
      } else {
        // Level-triggered: whatever the worker left queued wakes the read at once.
        this.#watcher.set({ readable: true, writable: false });
      }
    } catch (error) {
      this.#fail(`Internal error on connection ${this.fd}: ${describe(error)}`);
    }
  }

  #onReady(r: Readiness): void {
    if (this.#closed) return;
    try {
      if (r.writable && this.#pending !== null) this.#flush();
      else if (r.readable || r.hangup || r.failed) this.#read();
    } catch (error) {
      // A bug must cost one connection, not the helper.
      this.#fail(`Internal error on connection ${this.fd}: ${describe(error)}`);
    }
  }

  #read(): void {
    for (let i = 0; i < MAX_READS_PER_WAKEUP && !this.#closed && !this.busy && !this.#draining; i++) {
      const need = this.#session.need();
      if (need === null) return;
      const got = sharedReceiver().receive(this.fd, need.length);
      switch (got.kind) {
        case 'again':
          return;
        case 'eof':
        case 'error': {
          const fds = got.kind === 'eof' ? got.fds : [];
          const end = this.#session.end();
          this.#release([...fds, ...end.discardFds]);
          if (got.kind === 'error') this.#fail(`Unable to read from socket: ${got.error.description}`, peerGoneErrno(got.error.errno));
          else if (end.error) this.#fail(end.error.message, true);
          else this.#closeAfterEof();
          return;
        }
        case 'data':
          if (got.truncated && need.acceptsFds) {
            this.#release(got.fds);
            this.#fail(FDS_LOST_MESSAGE);
            return;
          }
          this.#handle(this.#session.feed(got.bytes, got.fds));
          if (this.#handOver()) return;
      }
    }
  }

  #handle(step: Step): void {
    this.#release(step.discardFds);
    if (step.kind === 'close') {
      this.#fail(step.error.message);
    } else if (step.kind === 'execute') {
      this.#execute(step.request);
    }
  }

  #execute(request: PrRequest): void {
    this.#executing = true;
    this.#requests++;
    this.#watcher.set({ readable: false, writable: false });
    const { observer, info } = this.#deps;
    // Read while the fd is still open: it is closed as soon as the request settles.
    const device = observer.wantsDevices ? describeDevice(request.fd) : null;
    const started = performance.now();
    observer.notify({ type: 'request', connection: info, request, device });
    let settled: Promise<ScsiOutcome>;
    try {
      settled = this.#deps.executor.execute(request);
    } catch (error) {
      settled = Promise.reject(error);
    }
    settled.then(
      (outcome) => this.#executed(request, outcome, device, started),
      (error: unknown) => {
        // The executor closed the fd either way (ScsiExecutor).
        this.#executing = false;
        this.#fail(`Internal error executing a request: ${describe(error)}`);
      },
    ).catch((error: unknown) => {
      // Never an unhandled rejection (it would end the process): a bug costs this connection.
      this.#fail(`Internal error answering a request: ${describe(error)}`);
    }).finally(() => this.#deps.onSettled());
  }

  /** Answers a request whose fd the executor has closed. */
  #executed(request: PrRequest, outcome: ScsiOutcome, device: DeviceInfo | null, started: number): void {
    this.#executing = false;
    if (this.#closed) return;
    const response = this.#session.respond(request, outcome);
    this.#deps.observer.notify({
      type: 'response', connection: this.#deps.info, request, device, outcome,
      bytesOut: response.length, elapsedMs: performance.now() - started,
    });
    this.#write(response);
  }

  #write(bytes: Uint8Array): void {
    this.#pending = bytes;
    this.#flush();
  }

  #flush(): void {
    let pending = this.#pending;
    while (pending !== null && pending.length > 0) {
      let sent;
      try {
        sent = sendBytes(this.fd, pending);
      } catch (error) {
        this.#pending = null;
        const reason = error instanceof SyscallError ? error.description : describe(error);
        this.#fail(`Unable to write to socket: ${reason}`, error instanceof SyscallError && peerGoneErrno(error.errno));
        return;
      }
      if (sent.kind === 'again') {
        this.#pending = pending;
        this.#watcher.set({ readable: false, writable: true });
        return;
      }
      pending = pending.subarray(sent.count);
    }
    this.#pending = null;
    if (this.#draining) {
      this.close();
      return;
    }
    if (this.#handOver()) return;
    // Level-triggered: a pipelined request already queued wakes us at once.
    this.#watcher.set({ readable: true, writable: false });
  }

  /** Closes client fds off this thread; nothing waits for them. */
  #release(fds: readonly number[]): void {
    for (const fd of fds) void this.#deps.closer.release(fd);
  }

  /** Closes the connection because of `reason` (the first reason is the one reported). */
  #fail(reason: string, peerGone = false): void {
    if (this.#reason === null) {
      this.#reason = reason;
      this.#peerGone = peerGone;
    }
    this.close();
  }

  /** A clean end of file from the peer. */
  #closeAfterEof(): void {
    if (this.#reason === null) this.#peerGone = true;
    this.close();
  }

  /** Closes the socket (idempotent). An executing request's fd is closed when it settles. */
  close(): void {
    if (this.#closed) return;
    if (!this.#takeBack()) {
      // A worker is serving it: close when it comes back.
      this.#draining = true;
      return;
    }
    this.#closed = true;
    if (this.#handshakeTimer !== null) clearTimeout(this.#handshakeTimer);
    if (this.#ticket !== null) this.#deps.fastPath?.detach(this.#ticket, this.fd);
    this.#pending = null;
    this.#release(this.#session.end().discardFds);
    this.#watcher.close();
    closeClientSocket(this.fd, this.#deps.closer);
    this.#deps.observer.notify({
      type: 'closed', connection: this.#deps.info, reason: this.#reason, requests: this.#requests, peerGone: this.#peerGone,
    });
    this.#deps.onClosed(this);
  }
}

/** Reads while draining a closing socket, at most this many times (the peer's send buffer). */
const MAX_DRAIN_READS = 256;

/**
 * Closes an accepted socket. Unread messages may carry fds in flight, and the last close of
 * one of those may block (README "Threat model"). Once reading is shut down nothing more
 * can be queued, so what is queued is read here: the fds it brings go to the closer, and
 * the socket, now empty, is closed at once (no thread is needed unless fds came). A peer
 * that queued more than MAX_DRAIN_READS reads' worth leaves the socket to the closer.
 */
export function closeClientSocket(fd: number, closer: FdCloser): void {
  if (!shutdownReading(fd)) {
    void closer.release(fd);
    return;
  }
  // (SCM_RIGHTS fds travel with at least one byte on a stream socket.)
  for (let i = 0; i < MAX_DRAIN_READS && queuedBytes(fd) !== 0; i++) {
    const got = sharedReceiver().receive(fd, sharedReceiver().capacity);
    if (got.kind === 'data' || got.kind === 'eof') for (const received of got.fds) void closer.release(received);
    if (got.kind !== 'data') break;
  }
  if (queuedBytes(fd) === 0) closeFd(fd);
  else void closer.release(fd);
}

let receiver: MessageReceiver | null = null;

/**
 * One receive area for every connection on the main thread: it is single-threaded and the
 * Session copies what it is fed, so nothing is kept per connection (10 KiB each otherwise).
 */
function sharedReceiver(): MessageReceiver {
  receiver ??= new MessageReceiver(PR_HELPER_DATA_SIZE);
  return receiver;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
