/**
 * Signal dispositions, for the moment before the privilege drop's execve (src/images/first.ts).
 * Node's own handlers cannot be removed from JavaScript without closing libuv's handles.
 */
import { constants } from 'node:os';
import { libc, lastErrno } from './libc.js';
import { SyscallError } from './errors.js';

/**
 * glibc's struct sigaction: handler, 1024-bit mask, flags, restorer (152 bytes on x86_64
 * and aarch64). All zero: SIG_DFL, nothing blocked, no flags.
 */
const DEFAULT_ACTION = new Uint8Array(152);

/** sigaction(signal, SIG_DFL): the kernel's default action from now on. */
export function restoreDefaultAction(signal: NodeJS.Signals): void {
  if (libc.sigaction(constants.signals[signal], DEFAULT_ACTION, null) < 0) throw new SyscallError('sigaction', lastErrno());
}
