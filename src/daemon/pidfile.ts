/**
 * The pid file (-f, or -d's default), without the reference's lifecycle bugs (spec §1.7,
 * §9 item 16):
 * - readers never see it empty or half written: the pid goes into a temporary file in the
 *   same directory, which is then linked (new file) or renamed (existing file) into place;
 * - it is locked (fcntl write lock, as the reference and libvirt do) before it is replaced,
 *   and the lock on the new inode is held for the process's life, across the re-exec of the
 *   privilege drop (the fd is passed on);
 * - it is removed at exit if it is still ours.
 *
 * POSIX locks are released when the process closes ANY fd on the file, so nothing else may
 * open the pid file while it is held.
 */
import {
  closeSync, fstatSync, linkSync, openSync, renameSync, statSync, unlinkSync, writeSync, ftruncateSync,
  constants as fsConstants,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { tryWriteLock } from '../sys/lock.js';
import { describeErrno, SyscallError } from '../sys/errors.js';

export interface PidFile {
  fd: number;
  path: string;
  inode: number;
}

/** A start-up failure, with the text to print. */
export class PidFileError extends Error {}

const PIDFILE_MODE = 0o644;
const MAX_ATTEMPTS = 100;

function reason(error: unknown): string {
  if (error instanceof SyscallError) return error.description;
  if (error instanceof Error && 'errno' in error && typeof error.errno === 'number') return describeErrno(-error.errno);
  return error instanceof Error ? error.message : String(error);
}

function codeOf(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

function lockedBy(pid: number | null): string {
  return pid === null ? 'another process holds its lock' : `process ${pid} holds its lock`;
}

/** Writes `pid` to `path` (absolute) and keeps it locked; throws PidFileError. */
export function acquirePidFile(path: string, pid: number): PidFile {
  const staging = join(dirname(path), `.${basename(path)}.${pid}~`);
  let fd: number;
  try {
    fd = openSync(staging, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC, PIDFILE_MODE);
  } catch (error) {
    throw new PidFileError(`Could not create '${path}': ${reason(error)}`);
  }
  const fail = (message: string): never => {
    closeSync(fd);
    try {
      unlinkSync(staging);
    } catch {
      // already linked or renamed away
    }
    throw new PidFileError(message);
  };
  try {
    writeSync(fd, `${pid}\n`);
  } catch (error) {
    fail(`Failed to write pid file '${path}': ${reason(error)}`);
  }
  const own = tryWriteLock(fd);
  if (own.kind !== 'locked') fail(`Cannot lock pid file '${path}': ${lockedBy(own.pid)}`);

  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    let current: number;
    try {
      current = openSync(path, fsConstants.O_RDWR);
    } catch (error) {
      if (codeOf(error) !== 'ENOENT') fail(`Could not open '${path}': ${reason(error)}`);
      try {
        linkSync(staging, path); // fails with EEXIST if another instance got there first
      } catch (linkError) {
        if (codeOf(linkError) === 'EEXIST') continue;
        fail(`Could not create '${path}': ${reason(linkError)}`);
      }
      unlinkSync(staging);
      return { fd, path, inode: fstatSync(fd).ino };
    }
    // An existing file: whoever holds its lock is alive and owns it.
    const theirs = tryWriteLock(current);
    if (theirs.kind !== 'locked') {
      closeSync(current);
      fail(`Cannot lock pid file '${path}': ${lockedBy(theirs.pid)}; is another instance running?`);
    }
    let samePath = false;
    try {
      samePath = statSync(path).ino === fstatSync(current).ino;
    } catch {
      samePath = false;
    }
    if (!samePath) {
      closeSync(current); // replaced meanwhile: start over with the new file
      continue;
    }
    try {
      renameSync(staging, path);
    } catch (error) {
      closeSync(current);
      fail(`Could not replace '${path}': ${reason(error)}`);
    }
    closeSync(current); // releases the lock on the old, now unlinked, inode only
    return { fd, path, inode: fstatSync(fd).ino };
  }
  return fail(`Could not create '${path}': it keeps being replaced by another process`);
}

/**
 * Removes the pid file if it is still ours, then releases the lock. Returns a message when
 * it could not be removed (e.g. after dropping to a user who cannot write its directory);
 * it is then emptied instead, so that no stale pid remains.
 */
export function releasePidFile(pidfile: PidFile): string | null {
  let message: string | null = null;
  try {
    if (statSync(pidfile.path).ino === pidfile.inode) unlinkSync(pidfile.path);
  } catch (error) {
    if (codeOf(error) !== 'ENOENT') {
      message = `Failed to remove pid file ${pidfile.path}: ${reason(error)}`;
      try {
        ftruncateSync(pidfile.fd, 0);
        message += ' (emptied it instead)';
      } catch {
        // nothing more to do
      }
    }
  }
  closeSync(pidfile.fd);
  return message;
}
