/**
 * One epoll set shared by threads (the fast path, src/server/fast-path.ts). Every fd is
 * registered EPOLLONESHOT: an event goes to exactly one waiting thread and the fd stays
 * disarmed until that thread re-arms it, so two threads never serve one connection at once.
 * Each registration carries a 32-bit tag beside the fd (the event's u64 data: fd in the low
 * half, tag in the high half).
 */
import { libc, lastErrno } from './libc.js';
import { Errno, SyscallError } from './errors.js';
import {
  EPOLL_EVENT, EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, EPOLLIN, EPOLLRDHUP, EPOLLONESHOT,
} from './layouts.js';

const INTEREST = (EPOLLIN | EPOLLRDHUP | EPOLLONESHOT) >>> 0;

export class OneShotEpoll {
  readonly fd: number;
  readonly #event = new Uint8Array(EPOLL_EVENT.SIZE);
  readonly #eventView = new DataView(this.#event.buffer);

  /** Creates a new set, or adopts `fd` (an epoll fd created by another thread's instance). */
  constructor(fd?: number) {
    if (fd !== undefined) {
      this.fd = fd;
      return;
    }
    const created = libc.epoll_create1(EPOLL_CLOEXEC);
    if (created < 0) throw new SyscallError('epoll_create1', lastErrno());
    this.fd = created;
  }

  #control(op: number, fd: number, tag: number): void {
    const v = this.#eventView;
    v.setUint32(EPOLL_EVENT.EVENTS, INTEREST, true);
    v.setUint32(EPOLL_EVENT.DATA, fd >>> 0, true);
    v.setUint32(EPOLL_EVENT.DATA + 4, tag >>> 0, true);
    if (libc.epoll_ctl(this.fd, op, fd, this.#event) < 0) {
      throw new SyscallError(op === EPOLL_CTL_ADD ? 'epoll_ctl(ADD)' : op === EPOLL_CTL_MOD ? 'epoll_ctl(MOD)' : 'epoll_ctl', lastErrno());
    }
  }

  /** Arms `fd` for one readable (or hang-up) event carrying `tag`; adds it if new. */
  arm(fd: number, tag: number): void {
    try {
      this.#control(EPOLL_CTL_MOD, fd, tag);
    } catch (error) {
      if (!(error instanceof SyscallError) || error.code !== 'ENOENT') throw error;
      this.#control(EPOLL_CTL_ADD, fd, tag);
    }
  }

  /** Removes `fd` (no error if it is not registered). */
  remove(fd: number): void {
    libc.epoll_ctl(this.fd, EPOLL_CTL_DEL, fd, this.#event);
  }

  close(): void {
    libc.close(this.fd);
  }
}

/** A thread's receiving end of a OneShotEpoll: waits and reads the events' fd and tag. */
export class EpollWaiter {
  readonly #epfd: number;
  readonly #events: Uint8Array;
  readonly #view: DataView;
  readonly #max: number;

  constructor(epfd: number, maxEvents: number) {
    this.#epfd = epfd;
    this.#max = maxEvents;
    this.#events = new Uint8Array(EPOLL_EVENT.SIZE * maxEvents);
    this.#view = new DataView(this.#events.buffer);
  }

  /** Blocks up to `timeoutMs` (-1: forever); returns the number of events (0 on timeout or EINTR). */
  wait(timeoutMs: number): number {
    const n = libc.epoll_wait(this.#epfd, this.#events, this.#max, timeoutMs);
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno === Errno.EINTR) return 0;
    throw new SyscallError('epoll_wait', errno);
  }

  fd(index: number): number {
    return this.#view.getInt32(EPOLL_EVENT.SIZE * index + EPOLL_EVENT.DATA, true);
  }

  tag(index: number): number {
    return this.#view.getUint32(EPOLL_EVENT.SIZE * index + EPOLL_EVENT.DATA + 4, true);
  }
}
