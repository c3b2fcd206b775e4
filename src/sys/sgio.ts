/**
 * ioctl(SG_IO) on dedicated threads. Each SgIoThread is one worker_thread that owns one
 * native request area (sg_io_hdr, CDB, sense, data). The main thread fills the area, hands
 * the worker the fd and the area's address through a SharedArrayBuffer, and the worker runs
 * the ioctl synchronously, stores errno and bumps a shared eventfd. SG_IO may block for the
 * whole SCSI timeout; only its own thread waits (docs/internals.md#sg_io-threads).
 */
import { readFileSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { allocNative, freeNative, libc, lastErrno, type NativeBlock } from './libc.js';
import { errnoCode } from './errors.js';
import {
  SG_IO, SG_IO_HDR, SG_INTERFACE_ID, SG_DXFER_NONE, SG_DXFER_TO_DEV, SG_DXFER_FROM_DEV,
} from './layouts.js';
import { Control, Op, State } from './sgio-control.js';
import { workerEntry } from '../util/worker-entry.js';
import { workerThreads } from '../util/builtins.js';

/** Sizes of the request area; the protocol layer never asks for more. */
export const SGIO_MAX_CDB = 16;
export const SGIO_SENSE_SIZE = 96;
export const SGIO_MAX_DATA = 8192;

const HDR_OFF = 0;
const CDB_OFF = 96;
const SENSE_OFF = CDB_OFF + SGIO_MAX_CDB;
const DATA_OFF = SENSE_OFF + SGIO_SENSE_SIZE;
const AREA_SIZE = DATA_OFF + SGIO_MAX_DATA;

export type SgIoDirection = 'none' | 'to-device' | 'from-device';

export interface SgIoCommand {
  /** The CDB bytes to send; its length is cmd_len. */
  cdb: Uint8Array;
  direction: SgIoDirection;
  /** dxfer_len. For 'to-device', `data` holds exactly this many bytes. */
  transferLength: number;
  data?: Uint8Array;
  timeoutMs: number;
}

export interface SgIoResult {
  /** Symbolic errno (e.g. 'ENOTTY') when the ioctl itself failed, else null. */
  error: string | null;
  status: number;
  hostStatus: number;
  driverStatus: number;
  resid: number;
  /** All 96 sense bytes; zero beyond what the kernel wrote (docs/protocol.md §9 item 5). */
  sense: Uint8Array;
  /** The bytes transferred from the device: dxfer_len − resid ('from-device' only, else empty). */
  data: Uint8Array;
}

const DIRECTION: Record<SgIoDirection, number> = {
  'none': SG_DXFER_NONE,
  'to-device': SG_DXFER_TO_DEV,
  'from-device': SG_DXFER_FROM_DEV,
};

/**
 * One native request area (sg_io_hdr, CDB, sense, data): filled for a command, handed to
 * ioctl(SG_IO) by address, then read back. Used by one thread at a time.
 */
export class SgIoArea {
  readonly #block: NativeBlock;
  readonly #u8: Uint8Array;
  readonly #dv: DataView;
  #direction: SgIoDirection = 'none';
  #transferLength = 0;

  constructor() {
    this.#block = allocNative(AREA_SIZE);
    this.#u8 = new Uint8Array(this.#block.view);
    this.#dv = new DataView(this.#block.view);
  }

  /** Address of the sg_io_hdr, for ioctl's third argument. */
  get address(): number {
    return this.#block.address + HDR_OFF;
  }

  /** Fills the area for `command`; throws RangeError for sizes beyond the area. */
  prepare(command: SgIoCommand): void {
    const { cdb, transferLength } = command;
    if (cdb.length < 1 || cdb.length > SGIO_MAX_CDB || transferLength < 0 || transferLength > SGIO_MAX_DATA) {
      throw new RangeError(`Cannot start SG_IO: CDB length ${cdb.length} or transfer length ${transferLength} out of range`);
    }
    const base = this.#block.address;
    const u8 = this.#u8;
    const dv = this.#dv;
    u8.fill(0, HDR_OFF, DATA_OFF);
    u8.set(cdb, CDB_OFF);
    if (command.direction === 'to-device' && command.data) u8.set(command.data.subarray(0, transferLength), DATA_OFF);
    else u8.fill(0, DATA_OFF, DATA_OFF + transferLength);
    dv.setInt32(HDR_OFF + SG_IO_HDR.INTERFACE_ID, SG_INTERFACE_ID, true);
    dv.setInt32(HDR_OFF + SG_IO_HDR.DXFER_DIRECTION, DIRECTION[command.direction], true);
    dv.setUint8(HDR_OFF + SG_IO_HDR.CMD_LEN, cdb.length);
    dv.setUint8(HDR_OFF + SG_IO_HDR.MX_SB_LEN, SGIO_SENSE_SIZE);
    dv.setUint32(HDR_OFF + SG_IO_HDR.DXFER_LEN, transferLength, true);
    dv.setBigUint64(HDR_OFF + SG_IO_HDR.DXFERP, BigInt(base + DATA_OFF), true);
    dv.setBigUint64(HDR_OFF + SG_IO_HDR.CMDP, BigInt(base + CDB_OFF), true);
    dv.setBigUint64(HDR_OFF + SG_IO_HDR.SBP, BigInt(base + SENSE_OFF), true);
    dv.setUint32(HDR_OFF + SG_IO_HDR.TIMEOUT, command.timeoutMs, true);
    this.#direction = command.direction;
    this.#transferLength = transferLength;
  }

  /**
   * The finished command's result; `errno` is the ioctl's, 0 on success. Its sense and data
   * are copied out, or with `views` are views of this area, valid until the next prepare().
   */
  result(errno: number, views = false): SgIoResult {
    const dv = this.#dv;
    const resid = dv.getInt32(HDR_OFF + SG_IO_HDR.RESID, true);
    const transferred = Math.max(0, Math.min(this.#transferLength, this.#transferLength - resid));
    return {
      error: errno === 0 ? null : errnoCode(errno),
      status: dv.getUint8(HDR_OFF + SG_IO_HDR.STATUS),
      hostStatus: dv.getUint16(HDR_OFF + SG_IO_HDR.HOST_STATUS, true),
      driverStatus: dv.getUint16(HDR_OFF + SG_IO_HDR.DRIVER_STATUS, true),
      resid,
      sense: views ? this.#u8.subarray(SENSE_OFF, SENSE_OFF + SGIO_SENSE_SIZE) : this.#u8.slice(SENSE_OFF, SENSE_OFF + SGIO_SENSE_SIZE),
      // A failed ioctl transferred nothing (and its resid means nothing).
      data: this.#direction === 'from-device' && errno === 0
        ? (views ? this.#u8.subarray(DATA_OFF, DATA_OFF + transferred) : this.#u8.slice(DATA_OFF, DATA_OFF + transferred))
        : new Uint8Array(0),
    };
  }

  free(): void {
    freeNative(this.#block);
  }
}

/**
 * ioctl(SG_IO) on the calling thread, which it blocks for as long as the device takes (up
 * to the command's timeout; longer on a dm map queueing without paths). Only threads made
 * for that call it: the fast-path workers. `entered` is set to 1 while the call runs, so
 * that another thread can tell a stuck device from a busy thread. The result's sense and
 * data are views of `area` (no copy): the caller is done with them before its next command.
 */
export function runSgIoHere(area: SgIoArea, fd: number, command: SgIoCommand, entered: Int32Array, slot: number): SgIoResult {
  area.prepare(command);
  Atomics.store(entered, slot, 1);
  const rc = libc.ioctl(fd, SG_IO, area.address);
  const errno = rc < 0 ? lastErrno() : 0;
  Atomics.store(entered, slot, 0);
  return area.result(errno, true);
}

/**
 * True when thread `tid` of this process is asleep in the kernel (scheduler state other
 * than running or runnable); false when it is not, or cannot be told.
 */
export function threadSleeping(tid: number): boolean {
  if (tid <= 0) return false;
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
    return stat.charAt(stat.lastIndexOf(')') + 2) !== 'R';
  } catch {
    return false;
  }
}

/**
 * ioctl(SG_IO), and close of a client's fd, as koffi async calls on libuv's threadpool: no
 * thread of ours, no isolate. The threadpool is shared with Node itself (fs, dns, the
 * module loader), so the caller keeps at most one call on it at a time: a hung device then
 * holds one of its threads, never all of them (docs/internals.md#the-threadpool-lane). The
 * callbacks run on the main thread's loop.
 */
export class ThreadpoolSgIo {
  readonly #area = new SgIoArea();
  /** True from a start until its callback has run. */
  #busy = false;

  /**
   * Runs `command` on `fd` (borrowed). Throws, with nothing started, when busy, when the
   * command does not fit the area, or when koffi cannot queue the call.
   */
  run(fd: number, command: SgIoCommand, done: (result: SgIoResult) => void): void {
    if (this.#busy) throw new Error('Cannot start SG_IO: the threadpool call is busy');
    this.#area.prepare(command);
    libc.ioctlAsync(fd, SG_IO, this.#area.address, (_rc, errno) => {
      // Copied out before anything can reuse the area.
      const result = this.#area.result(errno);
      this.#busy = false;
      done(result);
    });
    this.#busy = true;
  }

  /** Closes `fd` (owned from now on) on the threadpool; throws, with nothing started, like run(). */
  close(fd: number, done: () => void): void {
    if (this.#busy) throw new Error('Cannot close on the threadpool: the call is busy');
    libc.closeAsync(fd, () => {
      this.#busy = false;
      done();
    });
    this.#busy = true;
  }
}

const WORKER_MODULE = new URL('./sgio-thread-main.js', import.meta.url);

/** One SG_IO worker thread with its request area. */
export class SgIoThread {
  readonly #worker: Worker;
  readonly #control: Int32Array;
  readonly #area = new SgIoArea();
  #freed = false;
  /** Called if the thread dies (it never should); the pool fails its request. */
  onExit: ((error: Error | null) => void) | null = null;
  /** Called once the thread has loaded and waits for work. */
  onReady: (() => void) | null = null;

  constructor(completionFd: number) {
    this.#control = new Int32Array(new SharedArrayBuffer(Control.SIZE * 4));
    this.#worker = new (workerThreads().Worker)(workerEntry(WORKER_MODULE), {
      workerData: { control: this.#control.buffer, completionFd },
      // The thread does nothing but wait and ioctl: keep its heap small.
      resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
      stdout: false,
      stderr: false,
    });
    this.#worker.unref();
    this.#worker.once('message', () => this.onReady?.());
    this.#worker.on('error', (err) => this.onExit?.(err));
    this.#worker.on('exit', () => this.onExit?.(null));
  }

  /**
   * Starts `command` on `fd`: borrowed (the caller closes it after completion), or with
   * `thenClose`, owned by the thread, which closes it right after the ioctl.
   */
  start(fd: number, command: SgIoCommand, thenClose = false): void {
    if (Atomics.load(this.#control, Control.STATE) !== State.IDLE) {
      throw new Error('Cannot start SG_IO: the thread is busy');
    }
    this.#area.prepare(command);
    const c = this.#control;
    c[Control.FD] = fd;
    c[Control.OP] = thenClose ? Op.SG_IO_THEN_CLOSE : Op.SG_IO;
    const address = this.#area.address;
    c[Control.ADDR_LO] = address % 0x1_0000_0000 | 0;
    c[Control.ADDR_HI] = Math.floor(address / 0x1_0000_0000);
    c[Control.ERRNO] = 0;
    c[Control.ENTERED] = 0;
    Atomics.store(c, Control.STATE, State.REQUEST);
    Atomics.notify(c, Control.STATE);
  }

  /**
   * Closes `fd` (which the thread now owns) on this thread: close() on the last reference
   * to a client's fd may block (see Op), and must not block the caller.
   */
  startClose(fd: number): void {
    if (Atomics.load(this.#control, Control.STATE) !== State.IDLE) {
      throw new Error('Cannot close on the thread: it is busy');
    }
    const c = this.#control;
    c[Control.FD] = fd;
    c[Control.OP] = Op.CLOSE;
    c[Control.ERRNO] = 0;
    c[Control.ENTERED] = 0;
    Atomics.store(c, Control.STATE, State.REQUEST);
    Atomics.notify(c, Control.STATE);
  }

  /** Makes a thread whose close() has returned idle again. */
  takeClosed(): void {
    const c = this.#control;
    if (Atomics.load(c, Control.STATE) !== State.DONE) throw new Error('Cannot take the close result: not done');
    Atomics.store(c, Control.STATE, State.IDLE);
  }

  /** True once the worker is inside (or past) the started ioctl or close, not merely woken. */
  get entered(): boolean {
    return Atomics.load(this.#control, Control.ENTERED) === 1;
  }

  /**
   * True when the thread is asleep in the kernel (scheduler state other than running or
   * runnable): a thread merely waiting for a CPU inside a quick ioctl is not stuck.
   */
  get sleeping(): boolean {
    return threadSleeping(Atomics.load(this.#control, Control.TID));
  }

  /** True once the started ioctl has returned. */
  get done(): boolean {
    return Atomics.load(this.#control, Control.STATE) === State.DONE;
  }

  /** The result of the finished ioctl (copied out); the thread becomes idle. */
  takeResult(): SgIoResult {
    const c = this.#control;
    if (Atomics.load(c, Control.STATE) !== State.DONE) throw new Error('Cannot take the SG_IO result: not done');
    const result = this.#area.result(c[Control.ERRNO] ?? 0);
    Atomics.store(c, Control.STATE, State.IDLE);
    return result;
  }

  /**
   * Asks an idle thread to end. A busy one is left alone: its ioctl holds the request area,
   * which is freed only when the thread is gone.
   */
  stop(): void {
    if (this.#freed) return;
    if (Atomics.compareExchange(this.#control, Control.STATE, State.IDLE, State.EXIT) === State.IDLE) {
      Atomics.notify(this.#control, Control.STATE);
      this.#freed = true;
      this.#worker.once('exit', () => this.#area.free());
    }
  }
}
