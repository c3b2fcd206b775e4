/**
 * A SCSI device whose commands hang, for the stall and shutdown tests: a dm-multipath map
 * with queue_if_no_path over a scsi_debug disk, its only path failed with dmsetup (no
 * multipathd). Plus the small process helpers both tests use.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { log } from './env.js';

export const SDEBUG = '/sys/bus/pseudo/drivers/scsi_debug';

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}

export function errorText(error: unknown): string {
  const e = error as { stderr?: unknown; message?: unknown };
  const stderr = typeof e.stderr === 'string' ? e.stderr.trim() : '';
  return stderr.length > 0 ? stderr : String(e.message ?? error);
}

/** Threads of `pid` inside ioctl(fd, SG_IO): syscall 16 on x86-64, request 0x2285. */
export function inSgIo(pid: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8').split(' ');
      if (f[0] === '16' && f[2] === '0x2285') n++;
    } catch {
      // the thread ended while we looked
    }
  }
  return n;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** scsi_debug's disk (sdX) once sd has attached it. */
export async function scsiDebugDisk(): Promise<string | null> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    for (const adapter of existsSync(SDEBUG) ? readdirSync(SDEBUG).filter((d) => d.startsWith('adapter')) : []) {
      for (const host of readdirSync(`${SDEBUG}/${adapter}`).filter((d) => d.startsWith('host'))) {
        for (const target of readdirSync(`${SDEBUG}/${adapter}/${host}`).filter((d) => d.startsWith('target'))) {
          for (const lun of readdirSync(`${SDEBUG}/${adapter}/${host}/${target}`).filter((d) => /^\d+:\d+:\d+:\d+$/.test(d))) {
            const dir = `${SDEBUG}/${adapter}/${host}/${target}/${lun}/block`;
            const blk = existsSync(dir) ? readdirSync(dir)[0] : undefined;
            if (blk !== undefined && existsSync(`/dev/${blk}`)) return blk;
          }
        }
      }
    }
    await sleep(50);
  }
  return null;
}

/** The /dev/dm-N node of a map (no udev in the guest, so no /dev/mapper link). */
export function dmNode(name: string): string | null {
  for (const d of existsSync('/sys/block') ? readdirSync('/sys/block').filter((b) => b.startsWith('dm-')) : []) {
    try {
      if (readFileSync(`/sys/block/${d}/dm/name`, 'utf8').trim() === name && existsSync(`/dev/${d}`)) return `/dev/${d}`;
    } catch {
      // removed while we looked
    }
  }
  return null;
}

/**
 * The hanging device itself: scsi_debug (one 8 MiB disk) under a one-path dm-multipath map
 * with queue_if_no_path. Failing its path (`sh('dmsetup', ['message', map, '0', 'fail_path',
 * majmin])`) makes every command on the map wait in the kernel until it is reinstated.
 */
export class HangingDevice {
  readonly map: string;
  loadedScsiDebug = false;
  mapCreated = false;
  /** The scsi_debug disk under the map (/dev/sdX). */
  pathDev = '';

  constructor(map: string) {
    this.map = map;
  }

  /** Creates the device; returns why it cannot, or the map's node and its path's major:minor. */
  async create(label: string): Promise<{ path: string; majmin: string } | { why: string }> {
    if (existsSync(SDEBUG)) return { why: 'scsi_debug is already loaded by someone else' };
    if (dmNode(this.map) !== null) return { why: `device-mapper map ${this.map} already exists` };
    try {
      sh('modprobe', ['-a', 'dm_multipath', 'sd_mod']);
      sh('modprobe', ['scsi_debug', 'dev_size_mb=8']);
      this.loadedScsiDebug = true;
    } catch (error) {
      return { why: `cannot load scsi_debug / dm_multipath: ${errorText(error)}` };
    }
    const blk = await scsiDebugDisk();
    if (blk === null) return { why: 'scsi_debug loaded but no disk appeared within 15 s' };
    this.pathDev = `/dev/${blk}`;
    const majmin = readFileSync(`/sys/block/${blk}/dev`, 'utf8').trim();
    const sectors = readFileSync(`/sys/block/${blk}/size`, 'utf8').trim();
    // one priority group, round-robin, one path; queue I/O (and ioctls) while no path is usable
    const table = `0 ${sectors} multipath 1 queue_if_no_path 0 1 1 round-robin 0 1 1 ${majmin} 1000`;
    try {
      sh('dmsetup', ['create', this.map, '--table', table]);
      this.mapCreated = true;
    } catch (error) {
      return { why: `dmsetup create (${table}): ${errorText(error)}` };
    }
    const node = dmNode(this.map);
    if (node === null) return { why: `no /dev/dm-N for ${this.map}` };
    log(`${label}: ${node} = dm-multipath "${table}" over scsi_debug ${this.pathDev} (${majmin})`);
    return { path: node, majmin };
  }

  /** Fails whatever still waits in the map, so that it can be removed. */
  release(): void {
    if (!this.mapCreated) return;
    try {
      sh('dmsetup', ['message', this.map, '0', 'fail_if_no_path']);
    } catch (error) {
      log(`cleanup: fail_if_no_path: ${errorText(error)}`);
    }
  }

  /** Removes the map and unloads scsi_debug; the flags stay set for what failed. */
  remove(): void {
    if (this.mapCreated) {
      try {
        sh('dmsetup', ['remove', '--retry', this.map]);
        this.mapCreated = false;
      } catch (error) {
        log(`cleanup: dmsetup remove ${this.map}: ${errorText(error)}`);
      }
    }
    if (this.loadedScsiDebug) {
      try {
        sh('modprobe', ['-r', 'scsi_debug']);
        this.loadedScsiDebug = false;
      } catch (error) {
        log(`cleanup: modprobe -r scsi_debug: ${errorText(error)}`);
      }
    }
  }
}
