/**
 * Describes the device behind a request's fd for the log and trace (issue: "which disk did
 * the guest ask about?"): kind, major:minor, the kernel's name and a WWN or serial, read
 * from /sys. Only when an observer asks for it (-v or tracing); never fails a request.
 * Nothing here waits on the fd's file (statx with cached attributes only).
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { accessMode, fdKind } from '../sys/fd.js';
import type { DeviceInfo } from './events.js';

function readTrimmed(path: string): string | null {
  try {
    const text = readFileSync(path, 'latin1').trim();
    return text === '' ? null : text;
  } catch {
    return null;
  }
}

export function describeDevice(fd: number): DeviceInfo | null {
  const st = fdKind(fd);
  if (st === null) return null;
  let access: DeviceInfo['access'] = null;
  try {
    access = accessMode(fd);
  } catch {
    access = null;
  }
  const { kind, major, minor } = st;
  if (kind !== 'block' && kind !== 'char') return { kind, major: null, minor: null, name: null, id: null, access };
  const sys = `/sys/dev/${kind}/${major}:${minor}`;
  let name: string | null = null;
  try {
    name = basename(readlinkSync(sys));
  } catch {
    name = null;
  }
  // SCSI disks and sg nodes: device/wwid (e.g. naa.6001405...); dm maps: dm/uuid (mpath-<wwid>).
  const id = readTrimmed(`${sys}/device/wwid`) ?? readTrimmed(`${sys}/dm/uuid`) ?? readTrimmed(`${sys}/device/serial`);
  return { kind, major, minor, name, id, access };
}
