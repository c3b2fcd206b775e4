/**
 * Is this fd a dm-multipath map? (spec §5, §9 items 10 and 19.) Its own module because the
 * fast-path workers ask it for every request and need nothing else of the multipath code.
 */
import { readFileSync } from 'node:fs';
import { blockDeviceNumbers } from '../sys/fd.js';

export interface BlockDevice {
  major: number;
  minor: number;
}

/** The block device behind `fd`, or null for anything else (or an fd statx rejects). */
export function blockDeviceOf(fd: number): BlockDevice | null {
  return blockDeviceNumbers(fd);
}

/** True for a dm map that multipathd created (its dm uuid starts with "mpath-"). */
export function isMultipathMap(device: BlockDevice): boolean {
  try {
    return readFileSync(`/sys/dev/block/${device.major}:${device.minor}/dm/uuid`, 'latin1').startsWith('mpath-');
  } catch {
    return false; // not a dm device (no dm/ directory), or sysfs not readable: plain SG_IO
  }
}

