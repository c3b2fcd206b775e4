/**
 * Temporary names for files that are put in place atomically (the pid file, the socket),
 * safe in a directory that others can write (hardening issue, item 5). A predictable name
 * lets anyone plant a symlink or a directory there in advance; these names are random, a
 * taken one is never reused or removed, and a name is only unlinked when it still refers
 * to the file we made (device and inode, from lstat: a symlink is never followed).
 */
import { lstatSync, unlinkSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { nodeCrypto } from '../util/builtins.js';

/** 96 random bits: a name cannot be guessed, so it cannot be planted in advance. */
const STAGING_RANDOM_BYTES = 12;
/** Fresh names tried when one is taken: only a hostile directory takes more than one. */
export const STAGING_ATTEMPTS = 8;

/** Which file a name must still refer to before we unlink it. */
export interface FileIdentity {
  dev: number;
  inode: number;
}

export function identityOf(stats: Stats): FileIdentity {
  return { dev: stats.dev, inode: stats.ino };
}

/** `.NAME.<random>~` beside `path`. */
export function stagingName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${nodeCrypto().randomBytes(STAGING_RANDOM_BYTES).toString('base64url')}~`);
}

/** Every random name tried was taken: the directory is being filled by someone else. */
export class StagingNamesTakenError extends Error {
  constructor(directory: string, options?: ErrorOptions) {
    super(`${STAGING_ATTEMPTS} random temporary names in ${directory} were all taken`, options);
    this.name = 'StagingNamesTakenError';
  }
}

/**
 * Calls `create` with fresh staging names for `path` until one is not taken (`taken` says
 * whether its error means that); other errors are thrown as they are.
 */
export function withStagingName<T>(path: string, create: (staging: string) => T, taken: (error: unknown) => boolean): T {
  let last: unknown;
  for (let attempt = 0; attempt < STAGING_ATTEMPTS; attempt++) {
    try {
      return create(stagingName(path));
    } catch (error) {
      if (!taken(error)) throw error;
      last = error;
    }
  }
  throw new StagingNamesTakenError(dirname(path), { cause: last });
}

/** True when `path` itself, not what a symlink there points to, is the file `id`. */
export function isSameFile(path: string, id: FileIdentity): boolean {
  const stats = lstatSync(path, { throwIfNoEntry: false });
  return stats !== undefined && stats.dev === id.dev && stats.ino === id.inode;
}

/** Best effort: unlinks `path` only if it still is the file `id` (clean-up on failure). */
export function unlinkIfSame(path: string, id: FileIdentity): void {
  try {
    if (isSameFile(path, id)) unlinkSync(path);
  } catch {
    // gone, or a directory we cannot write: nothing of ours to do
  }
}
