import { constants } from 'node:os';
import { libc } from './libc.js';
import { errorMessage } from '../util/error-message.js';

const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);
}

/** Linux errno values the layers above need to tell apart. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENFILE: 23,
  ENOTTY: 25,
  EPIPE: 32,
  ENOSPC: 28,
  EDOM: 33,
  EBADE: 52,
  ENODATA: 61,
  ENOTSOCK: 88,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  EREMOTEIO: 121,
  ENOMEDIUM: 123,
} as const;

/** ECONNRESET and EPIPE on a socket: the peer reset the connection or is gone. */
export function peerGoneErrno(errno: number): boolean {
  return errno === Errno.ECONNRESET || errno === Errno.EPIPE;
}

/** The symbolic name of an errno value ('ENOTTY'), or 'E<n>' for an unknown one. */
export function errnoCode(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** The C library's text for an errno value, as strerror(3) prints it. */
export function describeErrno(errno: number): string {
  return libc.strerror(errno);
}

/** A failed system call: the syscall name, the errno value and its symbolic code. */
export class SyscallError extends Error {
  readonly syscall: string;
  readonly errno: number;
  readonly code: string;
  /** strerror(3) text alone, as the reference prints it ("Broken pipe"). */
  readonly description: string;

  constructor(syscall: string, errno: number, options?: ErrorOptions) {
    const description = describeErrno(errno);
    super(`${syscall}: ${description}`, options);
    this.description = description;
    this.name = 'SyscallError';
    this.syscall = syscall;
    this.errno = errno;
    this.code = errnoCode(errno);
  }
}

/**
 * strerror(3) text for a failed call: a SyscallError's, or that of a Node error carrying
 * its (negative) errno; any other error's message.
 */
export function errnoText(error: unknown): string {
  if (error instanceof SyscallError) return error.description;
  if (error instanceof Error && 'errno' in error && typeof error.errno === 'number') return describeErrno(-error.errno);
  return errorMessage(error);
}
