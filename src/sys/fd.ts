/**
 * Typed wrappers for the descriptor-level calls. Each wrapper either returns a plain value
 * or throws SyscallError; no caller sees errno numbers or pointers.
 */
import { libc, lastErrno } from './libc.js';
import { Errno, SyscallError } from './errors.js';
import {
  EFD_CLOEXEC, EFD_NONBLOCK, F_GETFL, F_SETFL, F_GETFD, F_SETFD, FD_CLOEXEC, O_ACCMODE, O_RDONLY,
  O_WRONLY, O_NONBLOCK, O_CLOEXEC,
} from './layouts.js';

/** Closes a descriptor. EINTR and EBADF are not retried: on Linux the fd is gone either way. */
export function closeFd(fd: number): void {
  libc.close(fd);
}

export type AccessMode = 'read-only' | 'write-only' | 'read-write';

/** The fd's open mode (fcntl F_GETFL & O_ACCMODE). */
export function accessMode(fd: number): AccessMode {
  const flags = libc.fcntl(fd, F_GETFL, 0);
  if (flags < 0) throw new SyscallError('fcntl', lastErrno());
  const mode = flags & O_ACCMODE;
  if (mode === O_RDONLY) return 'read-only';
  if (mode === O_WRONLY) return 'write-only';
  return 'read-write';
}

/** Sets FD_CLOEXEC, which also proves the fd is open (EBADF otherwise). */
export function setCloseOnExec(fd: number): void {
  const flags = libc.fcntl(fd, F_GETFD, 0);
  if (flags < 0 || libc.fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
    throw new SyscallError('fcntl', lastErrno());
  }
}

export function setNonBlocking(fd: number): void {
  const flags = libc.fcntl(fd, F_GETFL, 0);
  if (flags < 0 || libc.fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    throw new SyscallError('fcntl', lastErrno());
  }
}

/** True when `fd` is an open descriptor. */
export function isOpenFd(fd: number): boolean {
  return libc.fcntl(fd, F_GETFD, 0) >= 0 || lastErrno() !== Errno.EBADF;
}

/** A nonblocking eventfd counter: worker threads bump it, the main loop polls it. */
export class EventCounter {
  readonly fd: number;
  readonly #buf = new Uint8Array(8);

  constructor() {
    const fd = libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw new SyscallError('eventfd', lastErrno());
    this.fd = fd;
  }

  /** Resets the counter; returns false when it was already zero. */
  drain(): boolean {
    return libc.read(this.fd, this.#buf, 8) === 8;
  }

  close(): void {
    libc.close(this.fd);
  }
}

/**
 * _exit(2): ends the process without joining worker threads. Used only when an SG_IO thread
 * is still stuck in the kernel at shutdown, where process.exit() would wait for it.
 */
export function exitImmediately(code: number): never {
  libc._exit(code);
  throw new Error('unreachable: _exit returned');
}

/** A close-on-exec pipe: [read end, write end]. */
export function createPipe(): [number, number] {
  const fds = new Int32Array(2);
  if (libc.pipe2(fds, O_CLOEXEC) < 0) throw new SyscallError('pipe2', lastErrno());
  return [fds[0] ?? -1, fds[1] ?? -1];
}

const RLIMIT_NOFILE = 7;

/** The soft RLIMIT_NOFILE (struct rlimit: u64 rlim_cur, u64 rlim_max); Infinity when unlimited. */
export function openFileLimit(): number {
  const limit = new Uint8Array(16);
  if (libc.getrlimit(RLIMIT_NOFILE, limit) < 0) throw new SyscallError('getrlimit', lastErrno());
  const soft = new DataView(limit.buffer).getBigUint64(0, true);
  return soft >= BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(soft);
}

const PR_SET_NAME = 15;

/**
 * Names the calling thread (at most 15 bytes), as ps -L and /proc/PID/task/TID/comm show it.
 * Best effort: a failure changes nothing else.
 */
export function nameThisThread(name: string): void {
  libc.prctlName(PR_SET_NAME, name.slice(0, 15), 0, 0, 0);
}

/** The calling thread's kernel thread id (gettid). */
export function threadId(): number {
  return libc.gettid();
}

const AT_EMPTY_PATH = 0x1000;
/** Cached attributes only: a FUSE file would otherwise ask its (maybe hung) daemon. */
const AT_STATX_DONT_SYNC = 0x4000;
const STATX_TYPE = 0x1;
/** struct statx offsets (include/uapi/linux/stat.h): stx_mode u16, stx_rdev_major/minor u32. */
const STX_MODE = 0x1c;
const STX_RDEV_MAJOR = 0x80;
const STX_RDEV_MINOR = 0x84;
const S_IFMT = 0o170000;
const S_IFBLK = 0o060000;
const statxBuffer = new Uint8Array(256);
const statxView = new DataView(statxBuffer.buffer);

export type FdKind = 'block' | 'char' | 'file' | 'socket' | 'pipe' | 'dir' | 'other';

const KINDS = new Map<number, FdKind>([
  [S_IFBLK, 'block'], [0o020000, 'char'], [0o100000, 'file'], [0o140000, 'socket'], [0o010000, 'pipe'], [0o040000, 'dir'],
]);

/**
 * What `fd` is open on, with the device numbers of a block or character device; null when
 * statx rejects it. Cached attributes only: fstat(2) on a FUSE file would wait for its
 * daemon.
 */
export function fdKind(fd: number): { kind: FdKind; major: number; minor: number } | null {
  if (libc.statx(fd, '', AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, statxBuffer) < 0) return null;
  const kind = KINDS.get(statxView.getUint16(STX_MODE, true) & S_IFMT) ?? 'other';
  return { kind, major: statxView.getUint32(STX_RDEV_MAJOR, true), minor: statxView.getUint32(STX_RDEV_MINOR, true) };
}

/** The block device `fd` is open on, or null for anything else (or an fd statx rejects). */
export function blockDeviceNumbers(fd: number): { major: number; minor: number } | null {
  const st = fdKind(fd);
  return st?.kind === 'block' ? { major: st.major, minor: st.minor } : null;
}
