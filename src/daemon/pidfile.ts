/**
 * The pid file (-f, or -d's default), without the reference's lifecycle bugs (docs/protocol.md §1.7,
 * §9 item 16):
 * - readers never see it empty or half written: the pid goes into a temporary file in the
 *   same directory, which is then linked (new file) or renamed (existing file) into place;
 * - it is locked (fcntl write lock, as the reference and libvirt do) before it is replaced,
 *   and the lock on the new inode is held for the process's life, across the re-exec of the
 *   privilege drop (the fd is passed on);
 * - it is removed at exit if it is still ours.
 *
 * The directory may be writable by others (/tmp, or the -u user's): the temporary name is
 * random and created with O_EXCL|O_NOFOLLOW, so nothing planted there is ever followed or
 * truncated, and a name is unlinked only when its device and inode are those of the file we
 * created (hardening issue, item 5).
 *
 * POSIX locks are released when the process closes ANY fd on the file, so nothing else may
 * open the pid file while it is held.
 */
import {
  closeSync, fstatSync, linkSync, lstatSync, openSync, renameSync, unlinkSync, writeSync, ftruncateSync,
  constants as fsConstants,
} from 'node:fs';
import { tryWriteLock } from '../sys/lock.js';
import { errnoText } from '../sys/errors.js';
import {
  identityOf, isSameFile, unlinkIfSame, withStagingName, StagingNamesTakenError, type FileIdentity,
} from '../sys/staging.js';

export interface PidFile extends FileIdentity {
  fd: number;
  path: string;
}

/** A start-up failure, with the text to print. */
export class PidFileError extends Error {
  override name = 'PidFileError';
}

const PIDFILE_MODE = 0o644;
const MAX_ATTEMPTS = 100;

function codeOf(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

function lockedBy(pid: number | null): string {
  return pid === null ? 'another process holds its lock' : `process ${pid} holds its lock`;
}

/** The temporary file: a fresh random name, never an existing file or a symlink's target. */
function createStaging(path: string): { fd: number; staging: string } {
  const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
  try {
    return withStagingName(path, (staging) => ({ fd: openSync(staging, flags, PIDFILE_MODE), staging }),
      (error) => codeOf(error) === 'EEXIST');
  } catch (error) {
    const why = error instanceof StagingNamesTakenError ? error.message : errnoText(error);
    throw new PidFileError(`Could not create '${path}': ${why}`);
  }
}

/**
 * Opens the file already at `path` to take its lock. Only a regular file is opened, and
 * never through a symlink (O_NOFOLLOW), nor a device or FIFO swapped in meanwhile (O_NONBLOCK,
 * O_NOCTTY, then checked). Returns null for anything else: no instance's pid file is a
 * symlink or a special file (we put a regular file in place), so it is replaced like a
 * stale one, never written through. Throws ENOENT when there is nothing.
 */
function openExisting(path: string): number | null {
  if (!lstatSync(path).isFile()) return null;
  const fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  if (fstatSync(fd).isFile()) return fd;
  closeSync(fd);
  return null;
}

/** Writes `pid` to `path` (absolute) and keeps it locked; throws PidFileError. */
export function acquirePidFile(path: string, pid: number): PidFile {
  const { fd, staging } = createStaging(path);
  const ours: FileIdentity = identityOf(fstatSync(fd));
  const fail = (message: string): never => {
    closeSync(fd);
    unlinkIfSame(staging, ours); // unless already linked or renamed away
    throw new PidFileError(message);
  };
  // In a directory writable by others, the staging name may have been replaced before it
  // was linked or renamed: then what is at `path` is not ours, and we say so.
  const placed = (): PidFile => {
    if (!isSameFile(path, ours)) fail(`Could not create '${path}': its temporary file was replaced by another process`);
    unlinkIfSame(staging, ours);
    return { fd, path, ...ours };
  };
  try {
    writeSync(fd, `${pid}\n`);
  } catch (error) {
    fail(`Failed to write pid file '${path}': ${errnoText(error)}`);
  }
  const own = tryWriteLock(fd);
  if (own.kind !== 'locked') fail(`Cannot lock pid file '${path}': ${lockedBy(own.pid)}`);

  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    let current: number | null;
    try {
      current = openExisting(path);
    } catch (error) {
      if (codeOf(error) !== 'ENOENT') fail(`Could not open '${path}': ${errnoText(error)}`);
      try {
        linkSync(staging, path); // fails with EEXIST if another instance got there first
      } catch (linkError) {
        if (codeOf(linkError) === 'EEXIST') continue;
        fail(`Could not create '${path}': ${errnoText(linkError)}`);
      }
      return placed();
    }
    if (current !== null) {
      // An existing file: whoever holds its lock is alive and owns it.
      const theirs = tryWriteLock(current);
      if (theirs.kind !== 'locked') {
        closeSync(current);
        fail(`Cannot lock pid file '${path}': ${lockedBy(theirs.pid)}; is another instance running?`);
      }
      if (!isSameFile(path, identityOf(fstatSync(current)))) {
        closeSync(current); // replaced meanwhile: start over with the new file
        continue;
      }
    }
    try {
      renameSync(staging, path);
    } catch (error) {
      if (current !== null) closeSync(current);
      fail(`Could not replace '${path}': ${errnoText(error)}`);
    }
    if (current !== null) closeSync(current); // releases the lock on the old, now unlinked, inode only
    return placed();
  }
  return fail(`Could not create '${path}': it keeps being replaced by another process`);
}

/**
 * Removes the pid file if it is still ours (same device and inode, the name itself: a
 * symlink to it is not ours), then releases the lock. Returns a message when it could not
 * be removed (e.g. after dropping to a user who cannot write its directory); it is then
 * emptied instead, through our fd, so that no stale pid remains: that fd is the file we
 * created with O_EXCL, never anyone else's.
 */
export function releasePidFile(pidfile: PidFile): string | null {
  let message: string | null = null;
  try {
    if (isSameFile(pidfile.path, pidfile)) unlinkSync(pidfile.path);
  } catch (error) {
    if (codeOf(error) !== 'ENOENT') {
      message = `Failed to remove pid file ${pidfile.path}: ${errnoText(error)}`;
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
