/**
 * Pieces of test/e2e/iscsi-stall.test.ts: the guest's open-iscsi session to LIO on
 * 127.0.0.1 (vm_iscsi_setup in vm/vm-lib.sh), its timeouts and re-login, an nftables table
 * that drops the session's packets on lo, `sg_raw` as an independent witness of what the
 * kernel returns for a command on the stalled disk, and small /proc readers for the helper.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { cpuTicks } from '../../support/proc.js';
import { percentile } from '../../support/stats.js';
import { errorText, sh, sleep } from './slow-device.js';

const run = promisify(execFile);

function readTrim(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

// ---------------------------------------------------------------------------------------
// the iSCSI session

/** One session of the guest's iscsid, found from its disk through sysfs. */
export interface IscsiSession {
  /** e.g. "session1" */
  name: string;
  /** e.g. "connection1:0" (one connection per session) */
  connection: string;
  target: string;
  /** iscsiadm's --portal, "127.0.0.1:3260" */
  portal: string;
  port: number;
  disk: string;
  sg: string;
}

/** The session behind `disk` (/dev/sdX), or null when the disk is not on an iSCSI session. */
export function iscsiSessionOf(disk: string): IscsiSession | null {
  const blk = disk.replace(/^\/dev\//, '');
  let real: string;
  try {
    real = realpathSync(`/sys/block/${blk}`);
  } catch {
    return null;
  }
  // /sys/devices/platform/host2/session1/target2:0:0/2:0:0:0/block/sdc
  const m = /\/(session(\d+))\/target[^/]+\/([^/]+)\/block\//.exec(real);
  if (m === null) return null;
  const [, name = '', n = '', hctl = ''] = m;
  const sgDir = `/sys/bus/scsi/devices/${hctl}/scsi_generic`;
  const sg = existsSync(sgDir) ? readdirSync(sgDir)[0] : undefined;
  const connection = (existsSync('/sys/class/iscsi_connection') ? readdirSync('/sys/class/iscsi_connection') : [])
    .find((c) => c.startsWith(`connection${n}:`));
  if (sg === undefined || connection === undefined) return null;
  const cdir = `/sys/class/iscsi_connection/${connection}`;
  const address = readTrim(`${cdir}/persistent_address`);
  const port = Number(readTrim(`${cdir}/persistent_port`));
  return {
    name, connection, target: readTrim(`/sys/class/iscsi_session/${name}/targetname`),
    portal: `${address}:${port}`, port, disk: `/dev/${blk}`, sg: `/dev/${sg}`,
  };
}

/** The session's state (LOGGED_IN, FAILED, FREE) and its disk's SCSI device state (running, transport-offline). */
export function sessionState(s: IscsiSession): { session: string; device: string } {
  const get = (p: string): string => {
    try {
      return readTrim(p);
    } catch {
      return 'gone';
    }
  };
  return {
    session: get(`/sys/class/iscsi_session/${s.name}/state`),
    device: get(`/sys/block/${s.disk.replace(/^\/dev\//, '')}/device/state`),
  };
}

/** The session's timeouts as the kernel has them (sysfs), for the log and the restore check. */
export function sessionTimeouts(s: IscsiSession): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of ['recovery_tmo', 'abort_tmo', 'lu_reset_tmo', 'tgt_reset_tmo']) out[f] = readTrim(`/sys/class/iscsi_session/${s.name}/${f}`);
  for (const f of ['recv_tmo', 'ping_tmo']) out[f] = readTrim(`/sys/class/iscsi_connection/${s.connection}/${f}`);
  return out;
}

export function formatTimeouts(t: Record<string, string>): string {
  return Object.entries(t).map(([k, v]) => `${k}=${v}`).join(' ');
}

function iscsiadmNode(s: IscsiSession, more: string[]): string {
  return sh('iscsiadm', ['-m', 'node', '-T', s.target, '-p', s.portal, ...more]);
}

/** Values of `keys` in the session's node record (what the next login uses). */
export function nodeSettings(s: IscsiSession, keys: string[]): Record<string, string> {
  const all = new Map<string, string>();
  for (const line of iscsiadmNode(s, []).split('\n')) {
    const m = /^(\S+) = (.*)$/.exec(line);
    if (m) all.set(m[1] ?? '', m[2] ?? '');
  }
  const out: Record<string, string> = {};
  for (const k of keys) {
    const v = all.get(k);
    if (v === undefined) throw new Error(`iscsiadm shows no ${k} for ${s.target} ${s.portal}`);
    out[k] = v;
  }
  return out;
}

export function updateNodeSettings(s: IscsiSession, values: Record<string, string>): void {
  for (const [k, v] of Object.entries(values)) iscsiadmNode(s, ['-o', 'update', '-n', k, '-v', v]);
}

/**
 * Logs the session out and in again, so that the node record's settings apply (the
 * kernel takes the NOP-Out and TMF timeouts only at login), and waits for its disk.
 * Everything that holds the disk open must have closed it: the new disk then gets the
 * same sdX/sgN names back (the lowest free ones). Returns the new session.
 */
export async function relogin(s: IscsiSession, timeoutMs = 30_000): Promise<IscsiSession> {
  iscsiadmNode(s, ['--logout']);
  iscsiadmNode(s, ['--login']);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const sess of existsSync('/sys/class/iscsi_session') ? readdirSync('/sys/class/iscsi_session') : []) {
      let target = '';
      try {
        target = readTrim(`/sys/class/iscsi_session/${sess}/targetname`);
      } catch {
        continue;
      }
      if (target !== s.target) continue;
      const dev = `/sys/class/iscsi_session/${sess}/device`;
      for (const t of existsSync(dev) ? readdirSync(dev).filter((d) => d.startsWith('target')) : []) {
        for (const lun of readdirSync(`${dev}/${t}`).filter((d) => /^\d+:\d+:\d+:0$/.test(d))) {
          const blkDir = `${dev}/${t}/${lun}/block`;
          const blk = existsSync(blkDir) ? readdirSync(blkDir)[0] : undefined;
          if (blk === undefined || !existsSync(`/dev/${blk}`) || !statSync(`/dev/${blk}`).isBlockDevice()) continue;
          const found = iscsiSessionOf(`/dev/${blk}`);
          if (found !== null && existsSync(found.sg) && sessionState(found).device === 'running') return found;
        }
      }
    }
    if (Date.now() > deadline) throw new Error(`no disk behind a session to ${s.target} within ${timeoutMs} ms of the login`);
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------------------
// nftables

/**
 * A table of our own that drops TCP to and from the iSCSI port on lo (both directions, in
 * the output hook: on lo every packet passes it once). Other tables are left alone.
 */
export class PacketDrop {
  readonly table: string;
  readonly port: number;
  active = false;
  /** We loaded nf_tables (and unload it at the end). */
  loadedModule = false;

  constructor(table: string, port: number) {
    this.table = table;
    this.port = port;
  }

  /** Why nftables cannot be used in this guest, or null. Loads nf_tables when needed. */
  unavailable(): string | null {
    try {
      execFileSync('nft', ['--version'], { stdio: 'ignore' });
    } catch (error) {
      return `nft cannot run (${errorText(error)}): the nftables package is missing on the host (test/e2e/vm/install-deps.sh installs it)`;
    }
    if (!existsSync('/sys/module/nf_tables')) {
      try {
        sh('modprobe', ['nf_tables']);
        this.loadedModule = true;
      } catch (error) {
        return `modprobe nf_tables failed with the guest's module set (/lib/modules/$(uname -r) of the host): ${errorText(error)}`;
      }
    }
    try {
      sh('nft', ['list', 'table', 'inet', this.table]);
      return `nftables table inet ${this.table} already exists`;
    } catch {
      // absent, as it should be
    }
    return null;
  }

  ruleset(): string {
    return sh('nft', ['list', 'ruleset']);
  }

  add(): void {
    sh('nft', ['add', 'table', 'inet', this.table]);
    this.active = true;
    sh('nft', ['add', 'chain', 'inet', this.table, 'out', '{ type filter hook output priority 0; policy accept; }']);
    sh('nft', ['add', 'rule', 'inet', this.table, 'out', 'oifname', 'lo', 'tcp', 'dport', String(this.port), 'drop']);
    sh('nft', ['add', 'rule', 'inet', this.table, 'out', 'oifname', 'lo', 'tcp', 'sport', String(this.port), 'drop']);
  }

  remove(): void {
    if (!this.active) return;
    sh('nft', ['delete', 'table', 'inet', this.table]);
    this.active = false;
  }

  /** Unloads nf_tables if we loaded it; returns what went wrong, or null. */
  unload(): string | null {
    if (!this.loadedModule) return null;
    try {
      sh('modprobe', ['-r', 'nf_tables']);
      this.loadedModule = false;
      return null;
    } catch (error) {
      return errorText(error);
    }
  }
}

// ---------------------------------------------------------------------------------------
// sg_raw: what the kernel itself returns, without any helper

export interface RawOutcome {
  ms: number;
  /** sg_io_hdr host_status and driver_status (0 when sg_raw printed no transport error) */
  hostStatus: number;
  driverStatus: number;
  /** e.g. "DID_TRANSPORT_DISRUPTED" */
  hostName: string;
  driverName: string;
  /** SCSI status as sg_raw names it ("Good", "Check Condition"...) */
  scsiStatus: string;
  exitCode: number;
  output: string;
}

/** PR IN READ KEYS through `sg_raw -t TIMEOUT` (sg3-utils), asynchronously. */
export async function sgRawReadKeys(disk: string, timeoutS: number): Promise<RawOutcome> {
  const t0 = performance.now();
  let output = '';
  let exitCode = 0;
  try {
    const r = await run('sg_raw', ['-v', '-t', String(timeoutS), '-r', '8192', disk, '5e', '00', '00', '00', '00', '00', '00', '20', '00', '00'],
      { encoding: 'utf8', timeout: 120_000 });
    output = `${r.stdout}${r.stderr}`;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    output = `${e.stdout ?? ''}${e.stderr ?? ''}`;
    exitCode = typeof e.code === 'number' ? e.code : -1;
  }
  const ms = performance.now() - t0;
  const host = /Host_status=0x([0-9a-f]+)\s*\[?([A-Z_]*)/i.exec(output);
  const driver = /Driver_status=0x([0-9a-f]+)\s*\[?([A-Z_]*)/i.exec(output);
  return {
    ms,
    hostStatus: host ? parseInt(host[1] ?? '0', 16) : 0,
    hostName: host?.[2] ?? 'DID_OK',
    driverStatus: driver ? parseInt(driver[1] ?? '0', 16) : 0,
    driverName: driver?.[2] ?? 'DRIVER_OK',
    scsiStatus: /SCSI Status: (.*)/.exec(output)?.[1]?.trim() ?? '?',
    exitCode,
    output,
  };
}

function kernelLines(): { ts: number; line: string }[] {
  try {
    return sh('dmesg', []).split('\n').filter((l) => l.length > 0)
      .map((line) => ({ ts: Number(/^\[\s*([\d.]+)\]/.exec(line)?.[1] ?? NaN), line }));
  } catch {
    return [];
  }
}

/** The kernel log's latest timestamp (dmesg), to print what came after it with kernelLogSince. */
export function kernelLogMark(): number {
  const lines = kernelLines();
  return lines[lines.length - 1]?.ts ?? 0;
}

/** The kernel log's lines after `mark` (by timestamp, so that a wrapped ring buffer does not matter). */
export function kernelLogSince(mark: number): string[] {
  return kernelLines().filter((l) => l.ts > mark).map((l) => l.line);
}

// ---------------------------------------------------------------------------------------
// the helper process


/**
 * Waits until the process uses less than `maxShare` of a CPU over `windowMs` (a new SG_IO
 * thread has finished loading: seconds at 100% under TCG; while a command is executing the
 * pool still checks its threads every 20 ms, so "no CPU at all" never comes). Returns how
 * long that took.
 */
export async function quiescent(pid: number, windowMs = 500, maxShare = 0.25, timeoutMs = 30_000): Promise<number> {
  const hz = 100; // USER_HZ: /proc/PID/stat counts in 1/100 s
  const t0 = performance.now();
  const samples: { at: number; ticks: number }[] = [{ at: t0, ticks: cpuTicks(pid) }];
  for (;;) {
    await sleep(100);
    const now = { at: performance.now(), ticks: cpuTicks(pid) };
    samples.push(now);
    while (samples.length > 1 && now.at - (samples[1]?.at ?? now.at) >= windowMs) samples.shift();
    const first = samples[0] ?? now;
    if (now.at - first.at >= windowMs && (now.ticks - first.ticks) / hz <= maxShare * (now.at - first.at) / 1000) return now.at - t0;
    if (now.at - t0 > timeoutMs) throw new Error(`process ${pid} still busy after ${timeoutMs} ms`);
  }
}

/** Block devices among the process's descriptors (a device fd received and never closed). */
export function deviceFds(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('/dev/sd') || target.startsWith('/dev/sg')) out.push(`${fd}->${target}`);
    } catch {
      // closed while we looked
    }
  }
  return out;
}

export function stats(lat: number[]): { median: number; p90: number; max: number; text: string } {
  const median = percentile(lat, 0.5);
  const p90 = percentile(lat, 0.9);
  const max = percentile(lat, 1);
  return { median, p90, max, text: `median ${median.toFixed(1)} ms, p90 ${p90.toFixed(1)} ms, max ${max.toFixed(1)} ms (all: ${lat.map((l) => l.toFixed(1)).join(' ')})` };
}
