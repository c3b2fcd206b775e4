/**
 * Schedules SG_IO commands on dedicated threads we create (never the libuv threadpool,
 * which fs and dns share). A slow or hung device must cost other connections nothing
 * (docs/protocol.md §9 item 11), so the pool grows when threads get stuck:
 *
 * - One thread is started with the helper.
 * - Throughput: when commands queue while every thread is loaded and busy, a second thread
 *   starts. With two, one thread's ioctl overlaps the main thread's work on the other's
 *   result (measured: 1.7x the requests/s at 64 connections, bench/compare.ts).
 * - Stuck devices: a thread is stuck when it has been inside its ioctl for `stallMs`, as
 *   seen by two checks `stallMs` apart, and is asleep in the kernel there (a thread that is
 * only waiting for a CPU, as under heavy load, is not stuck). While any thread is stuck, the pool
 * keeps one thread free (idle or loading), up to `maxThreads`, so that the next command
 * does not wait for a thread to load (~50 ms; seconds under emulation). Not one per queued
 * command: a loaded thread runs a queue of quick commands in microseconds each, while
 * isolates loading at once share the CPUs (ten took 1.8 s on two loaded cores). A queued
 * command that hangs too makes its thread stuck at a later check, which starts the next.
 * - A starting thread gets no command until it has loaded; the queue goes to whichever
 *   thread is free first. Threads beyond the first stop after `idleMs` idle.
 *
 * With `threadpool`, the threads above are the second resort: a job first goes to the
 * threadpool lane, one koffi async call at a time on libuv's threadpool, which needs no
 * thread of ours (docs/internals.md#the-threadpool-lane). An SG_IO job there is answered
 * once its ioctl returns; the close of its fd follows on the lane, as the next job. A job
 * that finds the lane busy with an ioctl goes to the threads, which then start on demand;
 * one that finds it closing waits for the close (microseconds) unless that is stuck, when
 * a thread starts for the waiting jobs. A lane job outstanding for `stallMs`
 * is stuck: the threads started meanwhile stay while it is, as they do while one of them
 * is stuck; but none is started ahead for it, as for a stuck thread: one connection sends
 * nothing more until it is answered, and more connections are the fast path's
 * (src/server/fast-path.ts), so a spare would mostly idle (and under emulation a slow
 * command would start one). Every thread, the first included, stops after `idleMs` idle.
 * One VM's helper, one request at a time, so runs with no thread of ours at all.
 */
import { EventCounter } from '../sys/fd.js';
import { FdWatcher } from '../sys/poll.js';
import { SgIoThread, ThreadpoolSgIo, type SgIoCommand, type SgIoResult } from '../sys/sgio.js';

export interface SgIoPoolOptions {
  maxThreads: number;
  stallMs: number;
  idleMs: number;
  /** Start the first thread with the first command instead of with the pool. */
  lazy?: boolean;
  /** Run one job at a time on libuv's threadpool first (see the header); implies lazy. */
  threadpool?: boolean;
}

/** Threads started for plain concurrency, without any device being slow. */
const THROUGHPUT_THREADS = 2;

export const DEFAULT_POOL_OPTIONS: SgIoPoolOptions = { maxThreads: 64, stallMs: 20, idleMs: 60_000 };

/** A command as the hooks see it: `id` numbers commands from 1 in submission order. */
export interface SgIoJobInfo {
  readonly id: number;
  readonly fd: number;
  readonly command: SgIoCommand;
}

/**
 * Optional observers of submissions and completions (the trace points, src/trace). They
 * run synchronously, must not keep the fd, and cannot change what the pool does: whatever
 * they throw is ignored. `result` is null when the command failed without one.
 */
export interface SgIoPoolHooks {
  submitted(job: SgIoJobInfo): void;
  completed(job: SgIoJobInfo, result: SgIoResult | null): void;
}

interface SgIoJob extends SgIoJobInfo {
  kind: 'sg-io';
  /** The pool owns the fd and closes it on the thread right after the ioctl. */
  thenClose: boolean;
  resolve: (result: SgIoResult) => void;
  reject: (error: Error) => void;
}

/** close() of a client's fd, which may block (see src/sys/sgio-control.ts Op). */
interface CloseJob {
  kind: 'close';
  fd: number;
  resolve: () => void;
}

type Job = SgIoJob | CloseJob;

interface Slot {
  thread: SgIoThread;
  /** Loaded and waiting for work. */
  ready: boolean;
  job: Job | null;
  /** When the slot became idle (for the reaper). */
  idleSince: number;
  /** When a check first saw the worker inside the current job's ioctl. */
  enteredSeenAt: number | null;
}

export class SgIoPool {
  readonly #options: SgIoPoolOptions;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  readonly #completions = new EventCounter();
  readonly #watcher: FdWatcher;
  #checkTimer: NodeJS.Timeout | null = null;
  #reapTimer: NodeJS.Timeout;
  #running = 0;
  /** Close jobs queued or running: not requests, so not in inFlight. */
  #closing = 0;
  #closed = false;
  readonly #hooks: SgIoPoolHooks | null;
  #submitted = 0;
  /** The threadpool lane and its job (see the header), or null without `threadpool`. */
  readonly #lane: ThreadpoolSgIo | null;
  #laneJob: Job | null = null;
  /** When the lane's job started (Date.now()). */
  #laneSince = 0;

  constructor(options: SgIoPoolOptions = DEFAULT_POOL_OPTIONS, hooks: SgIoPoolHooks | null = null) {
    this.#options = options;
    this.#hooks = hooks;
    this.#watcher = new FdWatcher(this.#completions.fd, () => this.#collect());
    this.#watcher.set({ readable: true, writable: false });
    this.#watcher.ref(false);
    this.#lane = options.threadpool === true ? new ThreadpoolSgIo() : null;
    if (options.lazy !== true && this.#lane === null) this.#spawn();
    this.#reapTimer = setInterval(() => this.#reap(), Math.max(1000, options.idleMs / 2));
    this.#reapTimer.unref();
  }

  /** Commands executing or waiting for a thread. */
  get inFlight(): number {
    return this.#running + this.#queue.length - this.#closing;
  }

  /** Runs `command` on `fd` (borrowed until the promise settles). */
  run(fd: number, command: SgIoCommand): Promise<SgIoResult> {
    return this.#run(fd, command, false);
  }

  /**
   * Runs `command` on `fd`, which the pool owns from now on, and closes it right after the
   * ioctl (see release()): a thread of the pool before the promise settles; the lane after
   * it, as its next job (docs/protocol.md §3.5 row 7).
   */
  runAndRelease(fd: number, command: SgIoCommand): Promise<SgIoResult> {
    if (this.#closed) {
      return this.release(fd).then(() => Promise.reject(new Error('Cannot run SG_IO: the pool is closed')));
    }
    return this.#run(fd, command, true);
  }

  #run(fd: number, command: SgIoCommand, thenClose: boolean): Promise<SgIoResult> {
    if (this.#closed) return Promise.reject(new Error('Cannot run SG_IO: the pool is closed'));
    return new Promise((resolve, reject) => {
      const id = ++this.#submitted;
      const job: SgIoJob = this.#hooks === null ? { kind: 'sg-io', thenClose, id, fd, command, resolve, reject } : {
        kind: 'sg-io', thenClose, id, fd, command,
        resolve: (result) => {
          this.#notify(() => this.#hooks?.completed(job, result));
          resolve(result);
        },
        reject: (error) => {
          this.#notify(() => this.#hooks?.completed(job, null));
          reject(error);
        },
      };
      this.#notify(() => this.#hooks?.submitted(job));
      this.#submit(job);
    });
  }

  /**
   * Closes a client's fd (owned by the pool from now on) on one of the pool's threads: the
   * last close of a socket with SO_LINGER, a FUSE file or a tty may block, and must cost
   * only a thread, which the stuck check replaces, never the main thread (docs/security.md "Threat
   * model"). Resolves once it is closed. After close(), the fd is left to the process's exit.
   */
  release(fd: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#closing++;
      this.#submit({ kind: 'close', fd, resolve });
    });
  }

  /** Threads started and not yet stopped (loading or loaded). */
  get threadCount(): number {
    return this.#slots.length;
  }

  /** True while a job is on the threadpool lane. */
  get laneBusy(): boolean {
    return this.#laneJob !== null;
  }

  #submit(job: Job): void {
    if (this.#lane !== null && this.#laneJob === null && this.#toLane(this.#lane, job)) return;
    const slot = this.#slots.find((s) => s.ready && s.job === null);
    if (slot) {
      this.#dispatch(slot, job);
      return;
    }
    this.#queue.push(job);
    // A close takes microseconds unless it blocks: wait behind it, not for a thread to
    // load, until it counts as stuck (#check then starts a thread for the queue).
    if (this.#laneJob?.kind === 'close' && !this.#laneStuck(Date.now())) {
      this.#armCheck();
      return;
    }
    this.#addThroughputThread();
    this.#check();
  }

  /** Starts a thread when every one is loaded and busy, up to THROUGHPUT_THREADS (see the header). */
  #addThroughputThread(): void {
    if (this.#slots.every((s) => s.ready && s.job !== null) && this.#slots.length < Math.min(THROUGHPUT_THREADS, this.#options.maxThreads)) {
      this.#spawn();
    }
  }

  /** Starts `job` on the lane; false when it cannot (it then goes to the threads). */
  #toLane(lane: ThreadpoolSgIo, job: Job): boolean {
    const finished = (closeNext: number | null = null): void => {
      this.#laneJob = null;
      this.#running--;
      if (closeNext !== null) {
        this.#closeOnLane(lane, closeNext);
      } else {
        // A job queued for a thread still loading takes the lane instead.
        const next = this.#closed ? undefined : this.#queue.shift();
        if (next !== undefined && !this.#toLane(lane, next)) this.#queue.unshift(next);
      }
      if (this.#running === 0) this.#watcher.ref(false);
    };
    try {
      if (job.kind === 'close') {
        lane.close(job.fd, () => {
          finished();
          this.#closing--;
          job.resolve();
        });
      } else {
        lane.run(job.fd, job.command, (result) => {
          // The answer does not wait for the close (docs/protocol.md §3.5 row 7): one
          // threadpool round trip less on its path. The close takes the lane first, ahead
          // of any job queued meanwhile; the pool owns the fd until it is closed.
          finished(job.thenClose ? job.fd : null);
          job.resolve(result);
        });
      }
    } catch {
      // Out of range for the area or not queued: the threads give the same answer or run it.
      return false;
    }
    this.#laneJob = job;
    this.#laneSince = Date.now();
    this.#running++;
    this.#armCheck();
    return true;
  }

  /** Closes `fd` (the pool's) on the free lane; on a thread if koffi cannot queue it. */
  #closeOnLane(lane: ThreadpoolSgIo, fd: number): void {
    this.#closing++;
    const job: CloseJob = { kind: 'close', fd, resolve: () => {} };
    if (this.#toLane(lane, job)) return;
    if (this.#closed) this.#closing--; // left to the process's exit, as after close()
    else this.#submit(job);
  }

  /** Runs a hook; a throwing hook costs nothing. */
  #notify(call: () => void): void {
    try {
      call();
    } catch {
      // an observer's bug must not change the pool's behaviour
    }
  }

  #spawn(): void {
    const slot: Slot = {
      thread: new SgIoThread(this.#completions.fd), ready: false, job: null, idleSince: Date.now(), enteredSeenAt: null,
    };
    slot.thread.onExit = (error) => this.#threadDied(slot, error);
    slot.thread.onReady = () => {
      slot.ready = true;
      slot.idleSince = Date.now();
      this.#next(slot);
    };
    this.#slots.push(slot);
  }

  /** Gives an idle, loaded slot the oldest queued command, if any. */
  #next(slot: Slot): void {
    const job = this.#closed ? undefined : this.#queue.shift();
    if (job) this.#dispatch(slot, job);
  }

  #dispatch(slot: Slot, job: Job): void {
    slot.job = job;
    slot.enteredSeenAt = null;
    this.#running++;
    this.#watcher.ref(true);
    try {
      if (job.kind === 'close') slot.thread.startClose(job.fd);
      else slot.thread.start(job.fd, job.command, job.thenClose);
    } catch (error) {
      slot.job = null;
      this.#running--;
      this.#settle(job, error instanceof Error ? error : new Error(String(error)));
      return;
    }
    this.#armCheck();
  }

  #collect(): void {
    this.#completions.drain();
    for (const slot of this.#slots) {
      const job = slot.job;
      if (job === null || !slot.thread.done) continue;
      // Taken before the thread is given its next job, which reuses its area.
      let settle: () => void;
      if (job.kind === 'close') {
        slot.thread.takeClosed();
        settle = () => {
          this.#closing--;
          job.resolve();
        };
      } else {
        const result = slot.thread.takeResult();
        settle = () => job.resolve(result);
      }
      slot.job = null;
      slot.idleSince = Date.now();
      this.#running--;
      this.#next(slot);
      settle();
    }
    if (this.#running === 0) this.#watcher.ref(false);
  }

  /** Runs #check every stallMs while any command is executing or queued. */
  #armCheck(): void {
    if (this.#checkTimer !== null || this.#closed) return;
    this.#checkTimer = setTimeout(() => {
      this.#checkTimer = null;
      // A busy main thread may simply not have collected finished commands yet.
      this.#collect();
      this.#check();
      if (this.#running > 0 || this.#queue.length > 0) this.#armCheck();
    }, this.#options.stallMs);
  }

  /** Starts threads while stuck ones leave too few free (see the header). */
  #check(): void {
    if (this.#closed) return;
    const now = Date.now();
    let stuck = 0;
    let free = 0;
    for (const s of this.#slots) {
      if (!s.ready || s.job === null) {
        free++;
      } else if (!s.thread.done && s.thread.entered) {
        s.enteredSeenAt ??= now;
        if (now - s.enteredSeenAt >= this.#options.stallMs && s.thread.sleeping) stuck++;
      }
    }
    if (stuck === 0) {
      // Jobs queued behind a close on the lane (#submit) go to the threads once it is
      // stuck, as they would have gone at once had it been an ioctl.
      if (this.#laneStuck(now) && this.#queue.length > 0) this.#addThroughputThread();
      return;
    }
    if (free === 0 && this.#slots.length < this.#options.maxThreads) this.#spawn();
  }

  /** The lane's job has been outstanding for stallMs (see the header). */
  #laneStuck(now: number): boolean {
    return this.#laneJob !== null && now - this.#laneSince >= this.#options.stallMs;
  }

  #reap(): void {
    const now = Date.now();
    const stuck = this.#laneStuck(now) || this.#slots.some((s) => s.enteredSeenAt !== null && s.job !== null);
    if (stuck) return; // keep the spare while a device hangs
    // With the lane, no thread is needed when nothing runs concurrently: the first goes too.
    const keep = this.#lane === null ? 1 : 0;
    for (let i = this.#slots.length - 1; i >= keep; i--) {
      const slot = this.#slots[i];
      if (slot && slot.ready && slot.job === null && now - slot.idleSince >= this.#options.idleMs) {
        this.#slots.splice(i, 1);
        slot.thread.onExit = null;
        slot.thread.stop();
      }
    }
  }

  /** Ends a job that did not complete: a close job's fd is left to the process's exit. */
  #settle(job: Job, error: Error): void {
    if (job.kind === 'sg-io') {
      job.reject(error);
      return;
    }
    this.#closing--;
    job.resolve();
  }

  #threadDied(slot: Slot, error: Error | null): void {
    const index = this.#slots.indexOf(slot);
    if (index < 0) return;
    this.#slots.splice(index, 1);
    const job = slot.job;
    if (job !== null) {
      this.#running--;
      this.#settle(job, new Error('SG_IO thread exited during a command', { cause: error ?? undefined }));
    }
    if (!this.#closed && ((this.#slots.length === 0 && this.#lane === null) || this.#queue.length > 0)) this.#spawn();
  }

  /** Stops idle threads; busy ones finish first. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#reapTimer);
    if (this.#checkTimer) clearTimeout(this.#checkTimer);
    for (const job of this.#queue.splice(0)) this.#settle(job, new Error('Cannot run SG_IO: the pool is closed'));
    for (const slot of this.#slots) {
      slot.thread.onExit = null;
      slot.thread.onReady = null;
      slot.thread.stop();
    }
    this.#watcher.close();
    this.#completions.close();
  }
}
