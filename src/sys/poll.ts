/**
 * Readiness for our own nonblocking sockets from libuv itself: koffi.node.poll is a uv_poll_t
 * on Node's main loop (docs/internals.md#readiness-with-uv_poll). It is undocumented in koffi 3.3.4, which is pinned;
 * this adapter is the only user. Quirks handled here:
 * - the callback is called as (status, events), not (events) as koffi's .d.ts says;
 * - it is level-triggered, so interest must be dropped while a request executes;
 * - the handle must be closed before the fd (uv_close before close(2));
 * - uv_poll_init makes the fd nonblocking, so never poll an fd a client sent us.
 */
import { pollFd, type PollHandle } from './libc.js';

export interface Readiness {
  readable: boolean;
  writable: boolean;
  /** Peer hung up or the fd is in error; reading reports the details. */
  hangup: boolean;
  /** A negative libuv status: polling itself failed. */
  failed: boolean;
}

export interface Interest {
  readable: boolean;
  writable: boolean;
}

/**
 * koffi calls the poll callback from libuv without a Node callback scope. Node 20-24 still run
 * the microtasks queued in it (promises it resolves) when it returns; Node 26 leaves them
 * until something else makes Node drain its queue (a timer, a socket event), so an awaited
 * readiness could stall for seconds (the client, src/client/connection.ts, waits so). Called
 * from such a callback, this schedules a no-op immediate (one per loop turn), after which
 * Node drains them in the same turn (its check phase follows the poll phase).
 */
let drainScheduled = false;
/** Node 20-24 need no drain: there, every poll callback stays exactly as it was. */
const DRAIN_AFTER_POLL = Number(process.versions.node.split('.')[0]) >= 26;
function drained(): void {
  drainScheduled = false;
}
export function drainMicrotasksSoon(): void {
  if (drainScheduled) return;
  drainScheduled = true;
  setImmediate(drained);
}

/** Watches one fd for readiness on Node's event loop. */
export class FdWatcher {
  readonly fd: number;
  #handle: PollHandle | null = null;
  #readable = false;
  #writable = false;
  #closed = false;
  /** Paused by pause(): interest dropped, the poll still armed until it fires. */
  #paused = false;
  readonly #onReady: (status: number, ev: { readable: boolean; writable: boolean; disconnect: boolean }) => void;

  constructor(fd: number, onReady: (r: Readiness) => void) {
    this.fd = fd;
    this.#onReady = (status, ev) => {
      if (this.#paused) {
        // Something arrived while paused (a pipelined request, EOF): only now stop for real.
        this.#paused = false;
        this.#handle?.stop();
        return;
      }
      onReady({
        readable: status >= 0 && ev.readable,
        writable: status >= 0 && ev.writable,
        hangup: status >= 0 && ev.disconnect,
        failed: status < 0,
      });
      if (DRAIN_AFTER_POLL) drainMicrotasksSoon();
    };
  }

  /**
   * No interest for a while (a request executing), without stopping the poll now: stopping
   * and starting a uv_poll costs an epoll_ctl each, twice a request. Since the poll is
   * level-triggered, whatever arrives meanwhile fires it once, and it is stopped then; the
   * next set() with interest starts it again, or finds it still armed.
   */
  pause(): void {
    if (this.#closed || (!this.#readable && !this.#writable)) return;
    if (this.#writable) {
      this.set({ readable: false, writable: false });
      return;
    }
    this.#readable = false;
    this.#paused = true;
  }

  /** Changes what wakes us; no interest at all stops the poll (it stays allocated). */
  set(interest: Interest): void {
    if (this.#closed) return;
    if (this.#paused) {
      this.#paused = false;
      // Still armed for reading, and nothing arrived meanwhile: nothing to change.
      if (interest.readable && !interest.writable) {
        this.#readable = true;
        return;
      }
      this.#handle?.stop();
    }
    if (interest.readable === this.#readable && interest.writable === this.#writable) return;
    this.#readable = interest.readable;
    this.#writable = interest.writable;
    if (!interest.readable && !interest.writable) {
      this.#handle?.stop();
      return;
    }
    const opts = { readable: interest.readable, writable: interest.writable };
    if (this.#handle === null) this.#handle = pollFd(this.fd, opts, this.#onReady);
    else this.#handle.start(opts, this.#onReady);
  }

  /** Keeps (or stops keeping) the process alive while watching. */
  ref(keepAlive: boolean): void {
    if (keepAlive) this.#handle?.ref();
    else this.#handle?.unref();
  }

  /** Stops for good; must be called before the fd itself is closed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handle?.close();
    this.#handle = null;
  }
}
