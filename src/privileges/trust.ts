/**
 * Whether a file may be run or loaded by the privileged helper: the I/O half of
 * untrustedReason() (src/privileges/runtime.ts), which judges the owners and modes.
 */
import { realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoText } from '../sys/errors.js';
import { untrustedReason, type FileOwner } from './runtime.js';

/** Owner and mode of `path` and of each directory above it, for untrustedReason(). */
function ownershipChain(path: string): { path: string; owner: FileOwner }[] {
  const chain: { path: string; owner: FileOwner }[] = [];
  for (let p = path; ; p = dirname(p)) {
    const { uid, mode } = statSync(p);
    chain.push({ path: p, owner: { uid, mode } });
    if (p === dirname(p)) return chain;
  }
}

/** Why `path` (resolved) must not be run or loaded by the privileged helper, or null. */
export function distrust(path: string): string | null {
  try {
    return untrustedReason(ownershipChain(realpathSync(path)));
  } catch (error) {
    return errnoText(error);
  }
}
