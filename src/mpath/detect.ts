/**
 * Is this fd a dm-multipath map? (docs/protocol.md §5, §9 items 10 and 19.) Its own module because the
 * fast-path workers ask it for every request and need nothing else of the multipath code.
 */
import { readFileSync } from 'node:fs';
import { blockDeviceNumbers } from '../sys/fd.js';

export interface BlockDevice {
  major: number;
  minor: number;
}

/**
 * The dm-multipath map behind a request's fd, or null. This decides where every request
 * goes: libmpathpersist for a map, never a PR down one of its paths (docs/protocol.md §5); SG_IO
 * otherwise. Both the fast-path workers and the main thread's executor ask it.
 */
export function multipathMapOf(fd: number): BlockDevice | null {
  const device = blockDeviceNumbers(fd);
  return device !== null && isMultipathMap(device) ? device : null;
}

/** device-mapper's block major from /proc/devices ("253 device-mapper"), or null. */
export function deviceMapperMajor(procDevices: string): number | null {
  const block = procDevices.indexOf('Block devices:');
  if (block < 0) return null;
  const match = /^\s*(\d+)\s+device-mapper\s*$/m.exec(procDevices.slice(block));
  return match ? Number(match[1]) : null;
}

let dmMajor: number | null = null;

/**
 * True when `major` may be device-mapper's. Its major is dynamic but fixed once dm is
 * loaded, so it is read once; until dm shows up, every lookup reads /proc/devices again.
 * This spares every plain disk (/dev/sdX, the usual scsi-block) a failed sysfs open and
 * the exception it costs, per request.
 */
function mayBeDeviceMapper(major: number): boolean {
  if (dmMajor === null) {
    try {
      dmMajor = deviceMapperMajor(readFileSync('/proc/devices', 'latin1'));
    } catch {
      return true; // cannot tell: ask sysfs
    }
    if (dmMajor === null) return false;
  }
  return major === dmMajor;
}

/** True for a dm map that multipathd created (its dm uuid starts with "mpath-"). */
export function isMultipathMap(device: BlockDevice): boolean {
  if (!mayBeDeviceMapper(device.major)) return false;
  try {
    return readFileSync(`/sys/dev/block/${device.major}:${device.minor}/dm/uuid`, 'latin1').startsWith('mpath-');
  } catch {
    return false; // not a dm device (no dm/ directory), or sysfs not readable: plain SG_IO
  }
}
