/** POSIX record locks (fcntl F_SETLK/F_GETLK) on a whole file, as pidfiles use them. */
import { libc, lastErrno } from './libc.js';
import { Errno, SyscallError } from './errors.js';

const F_GETLK = 5;
const F_SETLK = 6;
const F_WRLCK = 1;
const F_UNLCK = 2;
const SEEK_SET = 0;
// struct flock on LP64 Linux: short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid.
const FLOCK = { SIZE: 32, TYPE: 0, WHENCE: 2, START: 8, LEN: 16, PID: 24 } as const;

/** A write-lock request; length 0 means up to the end of the file, however long it grows. */
function writeLock(start: number, length: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(FLOCK.SIZE);
  const view = new DataView(bytes.buffer);
  view.setInt16(FLOCK.TYPE, F_WRLCK, true);
  view.setInt16(FLOCK.WHENCE, SEEK_SET, true);
  view.setBigInt64(FLOCK.START, BigInt(start), true);
  view.setBigInt64(FLOCK.LEN, BigInt(length), true);
  return { bytes, view };
}

export type LockResult = { kind: 'locked' } | { kind: 'held'; pid: number | null };

/**
 * Takes a write lock on a byte range (default: the whole file) without waiting. The lock belongs to this process
 * (it survives execve while the fd stays open) and is released when ANY fd of this process
 * on the same file is closed: POSIX semantics.
 */
export function tryWriteLock(fd: number, start = 0, length = 0): LockResult {
  const { bytes } = writeLock(start, length);
  if (libc.fcntlLock(fd, F_SETLK, bytes) === 0) return { kind: 'locked' };
  const errno = lastErrno();
  if (errno !== Errno.EAGAIN && errno !== Errno.EACCES) throw new SyscallError('fcntl(F_SETLK)', errno);
  return { kind: 'held', pid: lockHolder(fd, start, length) };
}

/** The pid holding a conflicting write lock on the file, or null when none does. */
export function lockHolder(fd: number, start = 0, length = 0): number | null {
  const { bytes, view } = writeLock(start, length);
  if (libc.fcntlLock(fd, F_GETLK, bytes) < 0) throw new SyscallError('fcntl(F_GETLK)', lastErrno());
  if (view.getInt16(FLOCK.TYPE, true) === F_UNLCK) return null;
  return view.getInt32(FLOCK.PID, true);
}
