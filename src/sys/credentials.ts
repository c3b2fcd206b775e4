/**
 * Process credentials: capabilities, securebits, uid/gid, supplementary groups, execve.
 * Typed wrappers only; the policy (what to keep, in what order) is in src/privileges.
 *
 * Per-thread caveat (docs/internals.md#capabilities-are-per-thread): capset, prctl(PR_CAPBSET_DROP
 * / PR_SET_KEEPCAPS / PR_SET_SECUREBITS / PR_CAP_AMBIENT / PR_SET_NO_NEW_PRIVS) change the CALLING
 * thread only, while glibc broadcasts setres[ug]id and setgroups to every thread. Callers use
 * these on the main thread right before execProgram(), whose new image inherits the caller's
 * state.
 */
import { readFileSync } from 'node:fs';
import { libc, lastErrno } from './libc.js';
import { Errno, SyscallError } from './errors.js';
import { F_GETFD, F_SETFD, FD_CLOEXEC } from './layouts.js';

// <linux/prctl.h> and <linux/securebits.h>
const PR_SET_KEEPCAPS = 8;
const PR_CAPBSET_DROP = 24;
const PR_SET_SECUREBITS = 28;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_RAISE = 2;

export const SecureBit = {
  NOROOT: 1 << 0,
  NOROOT_LOCKED: 1 << 1,
  NO_SETUID_FIXUP: 1 << 2,
  NO_SETUID_FIXUP_LOCKED: 1 << 3,
  KEEP_CAPS: 1 << 4,
  KEEP_CAPS_LOCKED: 1 << 5,
  NO_CAP_AMBIENT_RAISE: 1 << 6,
  NO_CAP_AMBIENT_RAISE_LOCKED: 1 << 7,
} as const;

// <linux/capability.h>: version 3 uses two 32-bit words per set.
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
const CAP_HEADER_SIZE = 8;
const CAP_DATA_SIZE = 24; // 2 × { effective, permitted, inheritable } u32

/** Capability sets as bit masks (bit n = capability n). */
export interface CapabilitySets {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
}

function check(syscall: string, result: number): void {
  if (result < 0) throw new SyscallError(syscall, lastErrno());
}

/** The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap). */
export function lastCapability(): number {
  return Number.parseInt(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'), 10);
}

/** Removes every capability not in `keep` from the calling thread's bounding set. */
export function dropBoundingSet(keep: readonly number[], last: number): void {
  for (let cap = 0; cap <= last; cap++) {
    if (keep.includes(cap)) continue;
    if (libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      const errno = lastErrno();
      // EINVAL: a capability the running kernel does not have; nothing to drop.
      if (errno !== Errno.EINVAL) throw new SyscallError('prctl(PR_CAPBSET_DROP)', errno);
    }
  }
}

export function setSecureBits(bits: number): void {
  check('prctl(PR_SET_SECUREBITS)', libc.prctl(PR_SET_SECUREBITS, bits, 0, 0, 0));
}

export function setKeepCapabilities(keep: boolean): void {
  check('prctl(PR_SET_KEEPCAPS)', libc.prctl(PR_SET_KEEPCAPS, keep ? 1 : 0, 0, 0, 0));
}

export function setNoNewPrivileges(): void {
  check('prctl(PR_SET_NO_NEW_PRIVS)', libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
}

export function raiseAmbientCapability(cap: number): void {
  check('prctl(PR_CAP_AMBIENT_RAISE)', libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0));
}

function capHeader(): Uint8Array {
  const header = new Uint8Array(CAP_HEADER_SIZE);
  new DataView(header.buffer).setUint32(0, LINUX_CAPABILITY_VERSION_3, true); // pid 0: this thread
  return header;
}

/** capset(2) on the calling thread. */
export function setCapabilities(sets: CapabilitySets): void {
  const data = new Uint8Array(CAP_DATA_SIZE);
  const view = new DataView(data.buffer);
  const words = [sets.effective, sets.permitted, sets.inheritable];
  for (let half = 0; half < 2; half++) {
    words.forEach((mask, i) => {
      view.setUint32(half * 12 + i * 4, Number((mask >> BigInt(32 * half)) & 0xffffffffn), true);
    });
  }
  check('capset', libc.capset(capHeader(), data));
}

/** capget(2) for the calling thread. */
export function getCapabilities(): CapabilitySets {
  const data = new Uint8Array(CAP_DATA_SIZE);
  check('capget', libc.capget(capHeader(), data));
  const view = new DataView(data.buffer);
  const word = (i: number): bigint =>
    BigInt(view.getUint32(i * 4, true)) | (BigInt(view.getUint32(12 + i * 4, true)) << 32n);
  return { effective: word(0), permitted: word(1), inheritable: word(2) };
}

/** setgroups(0, NULL): no supplementary groups (broadcast to every thread by glibc). */
export function clearSupplementaryGroups(): void {
  check('setgroups', libc.setgroups(0, null));
}

/** Real, effective and saved ids (broadcast to every thread by glibc); gid first. */
export function setIds(uid: number, gid: number): void {
  check('setresgid', libc.setresgid(gid, gid, gid));
  check('setresuid', libc.setresuid(uid, uid, uid));
}

export function currentUid(): number {
  return libc.getuid();
}

export function currentGid(): number {
  return libc.getgid();
}

/** Clears FD_CLOEXEC so that `fd` survives execve. */
export function keepAcrossExec(fd: number): void {
  const flags = libc.fcntl(fd, F_GETFD, 0);
  if (flags < 0 || libc.fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) {
    throw new SyscallError('fcntl', lastErrno());
  }
}

/**
 * execve(2): replaces the process image, keeping the pid, and never returns on success.
 * Throws SyscallError when the kernel refuses.
 */
export function execProgram(path: string, argv: readonly string[], env: readonly string[]): never {
  libc.execve(path, [...argv, null], [...env, null]);
  throw new SyscallError('execve', lastErrno());
}

/** dup2(2): makes `to` refer to what `from` refers to. */
export function duplicateOnto(from: number, to: number): void {
  check('dup2', libc.dup2(from, to));
}
