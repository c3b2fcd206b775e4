/**
 * Runs one client connection: the pure Session over raw socket calls. Data flows one way:
 * socket → session → executor → session → socket. One request at a time, as QEMU's helper
 * does: reading stops while a request executes and its response is written, and resumes
 * afterwards (pipelined requests wait in the socket buffer).
 *
 * fd ownership: the connection owns its socket and every fd received on it until closed.
 * A request's fd is the executor's, closed even if the connection is gone by then: before
 * the response, or on the threadpool lane right after it (src/exec/executor.ts,
 * docs/protocol.md §3.5 row 7). Every fd, the socket included (it may hold fds in flight),
 * is closed through the FdCloser, off the main thread: a client's fd whose close() blocks
 * holds only its own connection.
 */
import { Session, type PrRequest, type Step } from '../protocol/session.js';
import type { FdCloser, ScsiExecutor } from '../exec/executor.js';
import type { ScsiOutcome } from '../scsi/constants.js';
import { FdWatcher, type Readiness } from '../sys/poll.js';
import { errorMessage } from '../util/error-message.js';
import type { ConnectionInfo, DeviceInfo, ServerObserver } from './events.js';
import { describeDevice } from './device-info.js';
import type { FastPath, FastPathClient, FastPathTicket } from './fast-path.js';
import { handbackFds, type Handback, type ReceivedChunk } from './fast-path-shared.js';
import { closeClientSocket, mainThreadReceiver, receive, send, type Failure } from './wire.js';
import { monotonicMs } from '../util/clock.js';

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
  /** The feature set announced in the greeting (src/protocol/constants.ts). */
  features: number;
}

/** Reads per wake-up before yielding to other connections. */
const MAX_READS_PER_WAKEUP = 64;
/**
 * QEMU answers the greeting at once. A peer that has not within this time is closed, so
 * that idle connections cannot hold the helper's fds (docs/security.md "Threat model").
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

export class Connection implements FastPathClient {
  readonly fd: number;
  readonly #deps: ConnectionDeps;
  readonly #session: Session;
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
    this.#session = new Session(deps.features);
    this.#watcher = new FdWatcher(fd, (r) => this.#onReady(r));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True while a request executes or its response is being written. */
  get busy(): boolean {
    return this.#executing || this.#pending !== null;
  }

  /** Sends the feature word (docs/protocol.md §3.2) and starts reading. */
  start(): void {
    this.#handshakeTimer = setTimeout(() => {
      this.#handshakeTimer = null;
      if (this.#session.phase === 'handshake') {
        this.#fail({ reason: `No handshake within ${HANDSHAKE_TIMEOUT_MS / 1000} s, closing socket.`, peerGone: false });
      }
    }, HANDSHAKE_TIMEOUT_MS);
    this.#handshakeTimer.unref();
    this.#write(this.#session.greeting());
  }

  /**
   * Shutdown: no new request is read. An idle connection closes now; a busy one closes
   * after its response is written (docs/protocol.md §1.8).
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

  /** The fast path's workers have loaded: an idle connection goes over now (see #handOver). */
  offer(): void {
    if (this.#away || this.#closed || this.busy) return;
    try {
      this.#handOver();
    } catch (error) {
      this.#fail(internalError(this.fd, error));
    }
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
      this.#release(handbackFds(handback));
      return;
    }
    try {
      switch (handback.kind) {
        case 'close':
          this.#fail(handback);
          break;
        case 'execute':
          this.#session.adopt(handback.request);
          this.#execute(handback.request);
          break;
        case 'replay':
          this.#replay(handback.chunks);
          // Shutdown may have begun meanwhile: a partial request is not waited for (drain()).
          if (this.#draining && !this.busy) this.close();
          break;
        case 'write':
          this.#write(handback.bytes);
          break;
        case 'read':
          if (this.#draining) this.close();
          // Level-triggered: whatever the worker left queued wakes the read at once.
          else this.#watcher.set({ readable: true, writable: false });
      }
    } catch (error) {
      this.#fail(internalError(this.fd, error));
    }
  }

  #onReady(r: Readiness): void {
    if (this.#closed) return;
    try {
      if (r.writable && this.#pending !== null) this.#flush();
      else if (r.readable || r.hangup || r.failed) this.#read();
    } catch (error) {
      // A bug must cost one connection, not the helper.
      this.#fail(internalError(this.fd, error));
    }
  }

  #read(): void {
    for (let i = 0; i < MAX_READS_PER_WAKEUP && !this.#closed && !this.busy && !this.#draining; i++) {
      const need = this.#session.need();
      if (need === null) return;
      const got = receive(mainThreadReceiver(), this.fd, need.length, need.acceptsFds);
      switch (got.kind) {
        case 'again':
          return;
        case 'failed':
          this.#release(got.fds);
          this.#fail(got.failure);
          return;
        case 'eof': {
          const end = this.#session.end();
          this.#release([...got.fds, ...end.discardFds]);
          if (end.error) this.#fail({ reason: end.error.message, peerGone: true });
          else this.#closeAfterEof();
          return;
        }
        case 'data':
          this.#handle(this.#session.feed(got.bytes, got.fds));
          if (this.#handOver()) return;
      }
    }
  }

  #handle(step: Step): void {
    this.#release(step.discardFds);
    if (step.kind === 'close') {
      this.#fail({ reason: step.error.message, peerGone: false });
    } else if (step.kind === 'execute') {
      this.#execute(step.request);
    }
  }

  #execute(request: PrRequest): void {
    this.#executing = true;
    this.#requests++;
    this.#watcher.pause();
    const { observer, info } = this.#deps;
    // Read while the fd is still open: it is closed as soon as the request settles.
    const device = observer.wantsDevices ? describeDevice(request.fd) : null;
    const started = monotonicMs();
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
        this.#fail({ reason: `Internal error executing a request: ${errorMessage(error)}`, peerGone: false });
      },
    ).catch((error: unknown) => {
      // Never an unhandled rejection (it would end the process): a bug costs this connection.
      this.#fail({ reason: `Internal error answering a request: ${errorMessage(error)}`, peerGone: false });
    }).finally(() => this.#deps.onSettled());
  }

  /** Answers a request whose fd the executor has closed. */
  #executed(request: PrRequest, outcome: ScsiOutcome, device: DeviceInfo | null, started: number): void {
    this.#executing = false;
    if (this.#closed) return;
    const response = this.#session.respond(request, outcome);
    this.#deps.observer.notify({
      type: 'response', connection: this.#deps.info, request, device, outcome,
      bytesOut: response.length, elapsedMs: monotonicMs() - started,
    });
    this.#write(response);
  }

  #write(bytes: Uint8Array): void {
    this.#pending = bytes;
    this.#flush();
  }

  #flush(): void {
    const pending = this.#pending;
    if (pending === null) return;
    const sent = send(this.fd, pending);
    if (sent.kind === 'again') {
      this.#pending = sent.rest;
      this.#watcher.set({ readable: false, writable: true });
      return;
    }
    if (sent.kind === 'failed') {
      this.#pending = null;
      this.#fail(sent.failure);
      return;
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

  /** Closes the connection because of `failure` (the first reason is the one reported). */
  #fail(failure: Failure): void {
    if (this.#reason === null) {
      this.#reason = failure.reason;
      this.#peerGone = failure.peerGone;
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

function internalError(fd: number, error: unknown): Failure {
  return { reason: `Internal error on connection ${fd}: ${errorMessage(error)}`, peerGone: false };
}
