/**
 * A SCSI device whose commands hang, for the stall and shutdown tests: a dm-multipath map
 * with queue_if_no_path over a scsi_debug disk, its only path failed with dmsetup (no
 * multipathd). Plus the small process helpers both tests use.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';

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
