/**
 * The fast path: idle connections wait in one epoll set shared by a few worker threads,
 * and whichever worker the kernel wakes serves the next request from start to end on its
 * own thread (read, SG_IO, respond), without the main thread. This removes the two
 * cross-thread hand-offs per request of the main-thread path; see docs/performance.md.
 *
 * Ownership: a connection belongs to the main thread (its Connection object) except while
 * it is handed over here. Each one then has a slot whose state word (fast-path-shared.ts)
 * says who may touch it: armed in the epoll set, or taken by exactly one worker (a
 * compare-and-swap, and EPOLLONESHOT). A worker returns it with a Handback message for
 * anything it cannot finish without waiting or without the main thread: partial or
 * invalid input, end of file, a multipath device, a full socket buffer, shutdown.
 *
 * Stuck devices (docs/protocol.md §9 item 11): a worker inside SG_IO for two checks in a row and
 * asleep in the kernel is stuck. The other workers keep serving every other connection;
 * while fewer than `workers` are free, more are started, up to `maxWorkers`. Extra
 * workers leave once no worker has been stuck for `idleMs`.
 *
 * On demand (docs/performance.md "One VM"): the workers exist only while there is
 * concurrency to serve, that is while `minConnections` or more connections are attached.
 * One QEMU (libvirt's per-VM helper) holds one connection and sends one request at a
 * time, which the main thread serves with no thread of ours at all; two workers would
 * only cost it memory and a thread hand-off per request. They start when a second
 * connection is attached (at its greeting: they load meanwhile, ~0.1-0.3 s, so they are
 * there when the load is), take connections only once one has loaded (until then the
 * main thread serves them), and leave when fewer than `minConnections` have been
 * attached for `idleMs`: every connection comes back to the main thread (Handback
 * 'read'), and each worker ends after its current wait.
 */
import type { Worker } from 'node:worker_threads';
import { OneShotEpoll } from '../sys/epoll.js';
import { threadSleeping } from '../sys/sgio.js';
import { workerThreads } from '../util/builtins.js';
import {
  Flag, GENERATION_MASK, MAX_SLOTS, Owner, WorkerControl, slotTag, stateWord, tagGeneration, tagSlot,
  type Handback, type WorkerData, type WorkerMessage,
} from './fast-path-shared.js';
import { workerEntry } from '../util/worker-entry.js';
import { monotonicMs } from '../util/clock.js';

export interface FastPathOptions {
  /** Workers kept free for new requests. */
  workers: number;
  maxWorkers: number;
  /** SG_IO timeout in milliseconds (docs/protocol.md §9 item 1). */
  timeoutMs: number;
  /** The feature set the connections were greeted with: it decides which opcodes are valid. */
  features: number;
  /** Interval of the stuck-worker check. */
  checkMs: number;
  /**
   * Extra workers leave once no worker has been stuck for this long; all of them once
   * fewer than `minConnections` have been attached for this long.
   */
  idleMs: number;
  /** Attached connections from which the workers are wanted (see the header). */
  minConnections: number;
}

export const DEFAULT_FAST_PATH_OPTIONS: Omit<FastPathOptions, 'timeoutMs' | 'features'> = {
  workers: 2, maxWorkers: 64, checkMs: 50, idleMs: 60_000, minConnections: 2,
};

/** What the fast path needs from a connection. */
export interface FastPathClient {
  readonly fd: number;
  /** The connection is the main thread's again (see Handback); `requests` were served meanwhile. */
  resume(handback: Handback, requests: number): void;
  /** The workers have loaded: hand the connection over now if it is idle on the main thread. */
  offer(): void;
}

/** A connection's place on the fast path. */
export interface FastPathTicket {
  readonly slot: number;
  readonly generation: number;
}

interface WorkerState {
  index: number;
  worker: Worker;
  control: Int32Array;
  ready: boolean;
  extra: boolean;
  /** SEQ as last seen inside an ioctl, for the two-checks rule. */
  seenSeq: number | null;
  stuck: boolean;
}

const WORKER_MODULE = new URL('./fast-path-worker.js', import.meta.url);

export class FastPath {
  readonly #options: FastPathOptions;
  readonly #epoll = new OneShotEpoll();
  readonly #slots = new Int32Array(new SharedArrayBuffer(4 * MAX_SLOTS));
  readonly #owners = new Int32Array(new SharedArrayBuffer(4 * MAX_SLOTS));
  readonly #served = new Int32Array(new SharedArrayBuffer(4 * MAX_SLOTS));
  readonly #flags = new Int32Array(new SharedArrayBuffer(4 * Flag.SIZE));
  readonly #clients: (FastPathClient | null)[] = new Array<FastPathClient | null>(MAX_SLOTS).fill(null);
  readonly #generations = new Int32Array(MAX_SLOTS);
  /**
   * Slots given back, reused last-in first-out; below them, the slots never used yet, from
   * #fresh up. (Filling this with all MAX_SLOTS at construction, a 4096-turn loop, had V8
   * compile the constructor with TurboFan on stack replacement: 3 MB more RSS at idle.)
   */
  readonly #free: number[] = [];
  #fresh = 0;
  readonly #workers: WorkerState[] = [];
  #nextIndex = 0;
  #attached = 0;
  #timer: NodeJS.Timeout | null = null;
  #disabled = false;
  #closed = false;
  /** When workers died unasked in the last minute (monotonicMs()). */
  #deaths: number[] = [];
  /** When a worker was last seen stuck (monotonicMs()). */
  #lastStuck = -Infinity;
  /** Connections are handed over: a worker has loaded since the workers were last wanted. */
  #active = false;
  /** Ends the workers once fewer than minConnections have been attached for idleMs. */
  #leaveTimer: NodeJS.Timeout | null = null;
  /** Starts the workers if minConnections are still attached one check later. */
  #startDelay: NodeJS.Timeout | null = null;
  /** Called when the fast path stops working (a worker failed to load): connections stay on the main thread. */
  onDisabled: ((reason: string) => void) | null = null;

  constructor(options: FastPathOptions) {
    this.#options = options;
  }

  /** True while connections may be attached (whether or not the workers are there). */
  get enabled(): boolean {
    return !this.#disabled && !this.#closed && Atomics.load(this.#flags, Flag.DRAINING) === 0;
  }

  /** True while connections are handed over: the workers are wanted and one has loaded. */
  get active(): boolean {
    return this.#active && this.enabled;
  }

  /** Connections being served by a worker right now. */
  get busy(): number {
    let n = 0;
    for (let slot = 0; slot < MAX_SLOTS; slot++) if (((this.#slots[slot] ?? 0) & 3) === Owner.WORKER) n++;
    return n;
  }

  get workerCount(): number {
    return this.#workers.length;
  }

  /** A slot for `client`, or null when none is free (it stays on the main thread). */
  attach(client: FastPathClient): FastPathTicket | null {
    if (!this.enabled) return null;
    const slot = this.#free.pop() ?? (this.#fresh < MAX_SLOTS ? this.#fresh++ : undefined);
    if (slot === undefined) return null;
    const generation = ((this.#generations[slot] ?? 0) + 1) & GENERATION_MASK;
    this.#generations[slot] = generation;
    Atomics.store(this.#slots, slot, stateWord(generation, Owner.MAIN));
    Atomics.store(this.#served, slot, 0);
    this.#clients[slot] = client;
    this.#attached++;
    this.#demand();
    return { slot, generation };
  }

  /**
   * Hands an idle connection (between requests, nothing buffered) to the workers. False
   * when the fast path cannot take it; the caller keeps serving it.
   */
  handOver(ticket: FastPathTicket, fd: number): boolean {
    if (!this.active) return false;
    Atomics.store(this.#slots, ticket.slot, stateWord(ticket.generation, Owner.ARMED));
    try {
      this.#epoll.arm(fd, slotTag(ticket.slot, ticket.generation));
      return true;
    } catch {
      Atomics.store(this.#slots, ticket.slot, stateWord(ticket.generation, Owner.MAIN));
      return false;
    }
  }

  /**
   * Takes a handed-over connection back, if no worker has it. True: the caller owns it
   * again now; false: a worker has it and will hand it back (resume) soon.
   */
  reclaim(ticket: FastPathTicket): boolean {
    const armed = stateWord(ticket.generation, Owner.ARMED);
    return Atomics.compareExchange(this.#slots, ticket.slot, armed, stateWord(ticket.generation, Owner.MAIN)) === armed;
  }

  /** Requests workers served on this connection since the last call. */
  takeServed(ticket: FastPathTicket): number {
    return Atomics.exchange(this.#served, ticket.slot, 0);
  }

  /** Frees the slot of a connection the main thread owns and is closing (before it closes the fd). */
  detach(ticket: FastPathTicket, fd: number): void {
    if (this.#clients[ticket.slot] === null) return;
    this.#epoll.remove(fd);
    this.#clients[ticket.slot] = null;
    Atomics.store(this.#slots, ticket.slot, stateWord(ticket.generation, Owner.MAIN));
    this.#free.push(ticket.slot);
    --this.#attached;
    this.#demand();
  }

  /**
   * Starts the workers, or plans their leaving, as the attached connections call for (see
   * the header). `settled`: called from the start delay, one check after they were wanted.
   */
  #demand(settled = false): void {
    if (this.#closed || this.#disabled) return;
    if (this.#attached >= this.#options.minConnections) {
      if (this.#leaveTimer !== null) clearTimeout(this.#leaveTimer);
      this.#leaveTimer = null;
      if (Atomics.load(this.#flags, Flag.LEAVING) !== 0 || this.#workers.length === 0) {
        // A second connection only for a moment (a readiness probe closing as QEMU
        // connects) does not start them: it must still be there one check later.
        if (!settled) {
          this.#startDelay ??= setTimeout(() => {
            this.#startDelay = null;
            this.#demand(true);
          }, this.#options.checkMs);
          this.#startDelay.unref();
          return;
        }
        Atomics.store(this.#flags, Flag.LEAVING, 0);
        // Workers still leaving from last time are not counted: they end after their wait.
        const staying = this.#workers.filter((w) => Atomics.load(w.control, WorkerControl.EXIT) === 0).length;
        for (let i = staying; i < this.#options.workers; i++) this.#spawn(false);
        if (this.#workers.some((w) => w.ready && Atomics.load(w.control, WorkerControl.EXIT) === 0)) this.#activate();
      }
      this.#startTimer();
      return;
    }
    if (this.#leaveTimer === null && this.#workers.length > 0 && Atomics.load(this.#flags, Flag.LEAVING) === 0) {
      this.#leaveTimer = setTimeout(() => {
        this.#leaveTimer = null;
        if (this.#attached < this.#options.minConnections) this.#leave();
      }, this.#options.idleMs);
      this.#leaveTimer.unref();
    }
  }

  /** A worker has loaded while the workers are wanted: connections idle on the main thread come over. */
  #activate(): void {
    if (this.#active || !this.enabled) return;
    this.#active = true;
    for (const client of this.#clients) client?.offer();
  }

  /** Too few connections for idleMs: every connection back to the main thread, every worker gone. */
  #leave(): void {
    this.#active = false;
    Atomics.store(this.#flags, Flag.LEAVING, 1);
    // From here a worker hands back whatever it serves instead of re-arming it; the armed
    // ones come back now.
    this.#returnArmed();
    for (const w of this.#workers) Atomics.store(w.control, WorkerControl.EXIT, 1);
  }

  /**
   * Every connection armed in the epoll set (no worker has it) back to the main thread,
   * out of the set, so that a later handOver can arm it again.
   */
  #returnArmed(): void {
    for (let slot = 0; slot < MAX_SLOTS; slot++) {
      const client = this.#clients[slot];
      const generation = this.#generations[slot] ?? 0;
      if (client && this.reclaim({ slot, generation })) {
        this.#epoll.remove(client.fd);
        client.resume({ kind: 'read' }, Atomics.exchange(this.#served, slot, 0));
      }
    }
  }

  /** Shutdown: workers hand connections back instead of re-arming them. */
  drain(): void {
    Atomics.store(this.#flags, Flag.DRAINING, 1);
  }

  /**
   * Stops the workers as #leave does, by their EXIT flag: each leaves at its next look (a
   * second at most while idle; one still loading, once loaded; one inside SG_IO, after it).
   * Not Worker.terminate(): a thread terminated inside a koffi call, as while it loads,
   * aborts the whole process (napi_throw during termination; seen in the on-demand test).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopTimer();
    if (this.#leaveTimer !== null) clearTimeout(this.#leaveTimer);
    if (this.#startDelay !== null) clearTimeout(this.#startDelay);
    Atomics.store(this.#flags, Flag.LEAVING, 1);
    for (const w of this.#workers) {
      w.worker.removeAllListeners();
      // Whatever it still reports is of no use now; an 'error' with no listener would throw here.
      w.worker.on('error', () => undefined);
      Atomics.store(w.control, WorkerControl.EXIT, 1);
    }
    this.#workers.length = 0;
  }

  #spawn(extra: boolean): void {
    const control = new Int32Array(new SharedArrayBuffer(4 * WorkerControl.SIZE));
    const index = this.#nextIndex++;
    const workerData: WorkerData = {
      index, epollFd: this.#epoll.fd, slots: this.#slots.buffer as SharedArrayBuffer, owners: this.#owners.buffer as SharedArrayBuffer,
      requests: this.#served.buffer as SharedArrayBuffer, flags: this.#flags.buffer as SharedArrayBuffer,
      control: control.buffer as SharedArrayBuffer, timeoutMs: this.#options.timeoutMs, features: this.#options.features, extra,
    };
    const worker = new (workerThreads().Worker)(workerEntry(WORKER_MODULE), {
      workerData,
      // The thread serves sockets and ioctls with small, short-lived objects.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
      stdout: false,
      stderr: false,
    });
    worker.unref();
    const state: WorkerState = { index, worker, control, ready: false, extra, seenSeq: null, stuck: false };
    worker.on('message', (message: WorkerMessage) => this.#message(state, message));
    worker.on('error', (error: Error) => this.#died(state, error.message));
    worker.on('exit', () => this.#died(state, 'the thread exited'));
    this.#workers.push(state);
  }

  #message(state: WorkerState, message: WorkerMessage): void {
    if (message.type === 'ready') {
      state.ready = true;
      if (Atomics.load(state.control, WorkerControl.EXIT) === 0 && Atomics.load(this.#flags, Flag.LEAVING) === 0) this.#activate();
      return;
    }
    const slot = tagSlot(message.tag);
    const client = this.#clients[slot];
    if (client === null || client === undefined || this.#generations[slot] !== tagGeneration(message.tag)) return;
    client.resume(message.handback, Atomics.exchange(this.#served, slot, 0));
  }

  #died(state: WorkerState, reason: string): void {
    const index = this.#workers.indexOf(state);
    if (index < 0) return;
    this.#workers.splice(index, 1);
    if (this.#closed) return;
    const leaving = Atomics.load(state.control, WorkerControl.EXIT) !== 0;
    // A connection the thread was serving is lost with it: close it, with the reason.
    for (let slot = 0; slot < MAX_SLOTS; slot++) {
      const client = this.#clients[slot];
      const generation = this.#generations[slot] ?? 0;
      if (client && this.#slots[slot] === stateWord(generation, Owner.WORKER) && this.#owners[slot] === state.index) {
        Atomics.store(this.#slots, slot, stateWord(generation, Owner.MAIN));
        client.resume({ kind: 'close', reason: `Internal error: fast-path thread failed (${reason})`, peerGone: false },
          Atomics.exchange(this.#served, slot, 0));
      }
    }
    if (leaving) return;
    const now = monotonicMs();
    this.#deaths = this.#deaths.filter((t) => now - t < 60_000);
    this.#deaths.push(now);
    if (!state.ready || this.#deaths.length > 3) {
      // It never loaded, or threads keep failing: stop handing connections over and give
      // back the armed ones; the main thread serves everything from now on.
      this.#disable(`fast-path threads fail (${reason})`);
      return;
    }
    this.#spawn(state.extra);
  }

  #disable(reason: string): void {
    if (this.#disabled) return;
    this.#disabled = true;
    this.onDisabled?.(reason);
    this.#returnArmed();
  }

  #startTimer(): void {
    if (this.#timer !== null || this.#closed) return;
    this.#timer = setInterval(() => this.#check(), this.#options.checkMs);
    this.#timer.unref();
  }

  #stopTimer(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** The stuck-worker check (see the header); it runs while workers exist. */
  #check(): void {
    if (this.#workers.length === 0) {
      this.#stopTimer();
      return;
    }
    if (Atomics.load(this.#flags, Flag.LEAVING) !== 0) return;
    let stuck = 0;
    for (const w of this.#workers) {
      const entered = Atomics.load(w.control, WorkerControl.ENTERED) === 1;
      const seq = Atomics.load(w.control, WorkerControl.SEQ);
      if (!entered) {
        w.seenSeq = null;
        w.stuck = false;
        continue;
      }
      if (w.seenSeq === seq) {
        w.stuck = w.stuck || threadSleeping(Atomics.load(w.control, WorkerControl.TID));
      } else {
        w.seenSeq = seq;
        w.stuck = false;
      }
      if (w.stuck) stuck++;
    }
    const free = this.#workers.filter((w) => !w.stuck && Atomics.load(w.control, WorkerControl.EXIT) === 0).length;
    const now = monotonicMs();
    if (stuck > 0) {
      this.#lastStuck = now;
      for (let n = free; n < this.#options.workers && this.#workers.length < this.#options.maxWorkers; n++) this.#spawn(true);
      return;
    }
    // A slow command (seconds under emulation) can look stuck now and then: extra workers
    // stay until no worker has been stuck for idleMs, rather than load again each time.
    if (now - this.#lastStuck < this.#options.idleMs) return;
    // No device has been stuck for a while: let extra workers go, down to `workers`.
    let surplus = free - this.#options.workers;
    for (const w of this.#workers) {
      if (surplus <= 0) break;
      if (w.extra && w.ready && Atomics.load(w.control, WorkerControl.EXIT) === 0) {
        Atomics.store(w.control, WorkerControl.EXIT, 1);
        surplus--;
      }
    }
  }
}
