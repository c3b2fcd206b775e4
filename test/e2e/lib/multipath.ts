/**
 * A real dm-multipath map with multipathd running, for the multipath tests: one map over the
 * two tcm_loop paths of the suite's LU (/dev/sda + /dev/sdb, two I_T nexuses), created by
 * multipathd from a multipath.conf of our own with `reservation_key file` (docs/protocol.md §8: without a
 * reservation_key multipathd does not register keys on reinstated paths, and libmpathpersist
 * refuses PR OUT whose keys differ from the configured one). Everything else is blacklisted,
 * in particular the iSCSI nexus to the same LU and the stall test's scsi_debug disk.
 *
 * multipath needs udev (path discovery only lists devices udev has initialised, the WWID is
 * udev's ID_SERIAL): systemd-udevd is started in the foreground unless one already answers,
 * and stopped again by destroy(); so is multipathd (`-d`, never daemonized), so both are
 * ended by their own pid. Files written under /etc (the guest's tmpfs overlay) are restored.
 * Also: mpathpersist and sg_persist-free oracles of what multipathd and libmpathpersist see.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import type { PrClient } from '../../support/client.js';
import { cleanupCdb, prInCdb, prOutCdb, type Response } from '../../support/builders.js';
import { log } from './env.js';
import { DeviceFd, PrOps } from './pr.js';
import { errorText, sh, sleep } from './slow-device.js';
import { typeFromName } from './sgpersist.js';

const UDEVD = '/lib/systemd/systemd-udevd';
const SCSI_ID = '/lib/udev/scsi_id';
const CONF = '/etc/multipath.conf';
const STATE_FILES = ['/etc/multipath/wwids', '/etc/multipath/bindings', '/etc/multipath/prkeys'];

function run(cmd: string, args: string[], timeoutMs = 30_000): { status: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.error) return { status: -1, out: String(r.error.message) };
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function exitOf(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode ?? -1);
  return new Promise((res) => child.once('exit', (code, signal) => res(code ?? signal ?? -1)));
}

async function stopChild(child: ChildProcess, name: string): Promise<void> {
  const timeout = (ms: number): Promise<string> => new Promise((r) => setTimeout(() => r('timeout'), ms).unref());
  let code = await Promise.race([exitOf(child), timeout(10_000)]);
  if (code === 'timeout') {
    child.kill('SIGTERM');
    code = await Promise.race([exitOf(child), timeout(5_000)]);
  }
  if (code === 'timeout') {
    child.kill('SIGKILL');
    code = await Promise.race([exitOf(child), timeout(5_000)]);
  }
  log(`multipath teardown: ${name} (pid ${child.pid}) exited ${code}`);
}

/** A multipathd CLI command (multipathd talks to the running daemon over its socket). */
export function multipathd(...args: string[]): string {
  return sh('multipathd', args).trim();
}

/** The key multipathd holds for the map (`getprkey`): 0n for "none". */
export function mpathdKey(map: string): bigint {
  const v = multipathd('getprkey', 'map', map);
  if (v === 'none') return 0n;
  if (!/^0x[0-9a-f]+$/i.test(v)) throw new Error(`multipathd getprkey map ${map}: '${v}'`);
  return BigInt(v);
}

/** multipathd's "registered" flag for the map (`getprstatus`: 1 or 0). */
export function mpathdPrStatus(map: string): number {
  const v = multipathd('getprstatus', 'map', map);
  if (!/^[01]$/.test(v)) throw new Error(`multipathd getprstatus map ${map}: '${v}'`);
  return Number(v);
}

/** Each path's device-mapper state as multipathd sees it: { sda: 'active', sdb: 'failed' }. */
export function mpathdPathStates(): Record<string, string> {
  const states: Record<string, string> = {};
  for (const line of multipathd('show', 'paths', 'format', '%d %t %T %o').split('\n').slice(1)) {
    const [dev, dm, chk, st] = line.trim().split(/\s+/);
    if (dev) states[dev] = `${dm ?? '?'} ${chk ?? '?'} ${st ?? '?'}`;
  }
  return states;
}

/** mpathpersist (libmpathpersist in a process of its own) on the map. */
function mpathpersist(args: string[]): string {
  const r = run('mpathpersist', args);
  if (r.status !== 0) throw new Error(`mpathpersist ${args.join(' ')} exited ${r.status}: ${r.out}`);
  return r.out;
}

export function mpathReadKeys(node: string): { generation: number; keys: bigint[] } {
  const out = mpathpersist(['--in', '--read-keys', node]);
  const gen = /PR generation=0x([0-9a-f]+)/i.exec(out)?.[1];
  if (gen === undefined) throw new Error(`mpathpersist --in -k: no generation in ${out}`);
  const keys = [...out.matchAll(/^\s+0x([0-9a-f]+)\s*$/gim)].map((m) => BigInt(`0x${m[1] ?? '0'}`));
  return { generation: parseInt(gen, 16), keys };
}

export function mpathReadReservation(node: string): { key: bigint; type: number } | null {
  const out = mpathpersist(['--in', '--read-reservation', node]);
  if (/NO reservation held/i.test(out)) return null;
  const key = /Key\s*=\s*0x([0-9a-f]+)/i.exec(out)?.[1];
  const type = /type\s*=\s*(.+)$/im.exec(out)?.[1];
  if (key === undefined || type === undefined) throw new Error(`mpathpersist --in -r: cannot parse ${out}`);
  return { key: BigInt(`0x${key}`), type: typeFromName(type) };
}

/** /sys/block/<sdX>/device/state: 'running' or 'offline'. */
export function setPathState(disk: string, state: 'running' | 'offline'): void {
  // the kernel only accepts the state name followed by a newline (store_state_field)
  writeFileSync(`/sys/block/${disk.replace(/^\/dev\//, '')}/device/state`, `${state}\n`);
}

export function pathState(disk: string): string {
  return readFileSync(`/sys/block/${disk.replace(/^\/dev\//, '')}/device/state`, 'utf8').trim();
}

export async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    let ok = false;
    try {
      ok = cond();
    } catch {
      ok = false;
    }
    if (ok) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

export class MultipathMap {
  /** /dev/mapper/<alias> */
  node = '';
  /** dm-N */
  dmName = '';
  wwid = '';
  #udevd: ChildProcess | null = null;
  #multipathd: ChildProcess | null = null;
  #mpathdLog = '';
  #saved = new Map<string, string | null>();
  #mapCreated = false;

  constructor(readonly alias: string, readonly paths: string[]) {}

  /** multipathd's recent output (foreground, -s), for failure messages. */
  daemonLog(lines = 20): string {
    return this.#mpathdLog.trim().split('\n').slice(-lines).join(' | ');
  }

  /** Whether multipathd reports every path active and ready. */
  allPathsActive(): boolean {
    const states = mpathdPathStates();
    return this.paths.every((p) => states[p.replace(/^\/dev\//, '')]?.startsWith('active ready running') === true);
  }

  /** Starts udevd (if needed) and multipathd, waits for the map and both paths; or says why not. */
  async create(): Promise<{ why: string } | { node: string }> {
    for (const tool of ['multipathd', 'mpathpersist', 'dmsetup', 'udevadm']) {
      if (run('sh', ['-c', `command -v ${tool}`]).status !== 0) return { why: `${tool} is not installed (multipath-tools, udev)` };
    }
    for (const f of [UDEVD, SCSI_ID]) if (!existsSync(f)) return { why: `${f} is missing (udev)` };
    if (run('multipathd', ['show', 'daemon'], 10_000).status === 0) return { why: 'a multipathd is already running' };
    if (existsSync(`/dev/mapper/${this.alias}`)) return { why: `/dev/mapper/${this.alias} already exists` };
    try {
      sh('modprobe', ['-a', 'dm_multipath', 'dm_round_robin', 'dm_service_time', 'scsi_dh_alua']);
    } catch (error) {
      return { why: `modprobe dm_multipath: ${errorText(error)}` };
    }
    const t0 = performance.now();
    if (run('udevadm', ['control', '--ping', '-t', '1']).status !== 0) {
      mkdirSync('/run/udev', { recursive: true });
      this.#udevd = spawn(UDEVD, ['--resolve-names=never'], { stdio: 'ignore' });
      try {
        await waitFor('systemd-udevd to answer', () => run('udevadm', ['control', '--ping', '-t', '1']).status === 0, 15_000);
      } catch (error) {
        return { why: String(error) };
      }
    }
    sh('udevadm', ['trigger', '--action=add', '--subsystem-match=block', '--subsystem-match=scsi', '--subsystem-match=scsi_generic']);
    run('udevadm', ['settle', '-t', '30'], 40_000);
    const tUdev = performance.now() - t0;

    const wwids = this.paths.map((p) => run(SCSI_ID, ['-g', '-u', '-d', p]).out.trim());
    if (new Set(wwids).size !== 1 || !/^3[0-9a-f]+$/.test(wwids[0] ?? '')) return { why: `the paths do not share one WWID: ${wwids.join(', ')}` };
    this.wwid = wwids[0] ?? '';
    const names = this.paths.map((p) => p.replace(/^\/dev\//, ''));
    // reservation_key file: the key REGISTER sets is kept in /etc/multipath/prkeys (multipathd
    // setprkey), so that multipathd registers it on reinstated paths and libmpathpersist
    // accepts PR OUT with that key. polling_interval 1: path changes are seen within seconds.
    this.#write(CONF, [
      'defaults {',
      '    user_friendly_names no',
      '    find_multipaths no',
      '    enable_foreign "^$"',
      '    reservation_key file',
      '    polling_interval 1',
      '}',
      'blacklist {',
      '    devnode ".*"',
      '}',
      'blacklist_exceptions {',
      `    devnode "^(${names.join('|')})$"`,
      '}',
      'multipaths {',
      '    multipath {',
      `        wwid ${this.wwid}`,
      `        alias ${this.alias}`,
      '    }',
      '}',
      '',
    ].join('\n'));
    mkdirSync('/etc/multipath', { recursive: true });
    for (const f of STATE_FILES) this.#write(f, '');

    const t1 = performance.now();
    const mpd = spawn('multipathd', ['-d', '-s'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#multipathd = mpd;
    const keep = (d: Buffer): void => {
      this.#mpathdLog = (this.#mpathdLog + d.toString('utf8')).slice(-16_384);
    };
    mpd.stdout?.on('data', keep);
    mpd.stderr?.on('data', keep);
    try {
      await waitFor(`/dev/mapper/${this.alias}`, () => existsSync(`/dev/mapper/${this.alias}`), 30_000);
      this.#mapCreated = true;
      await waitFor('multipathd to show every path active', () => this.allPathsActive(), 30_000);
    } catch (error) {
      return { why: `${String(error)}; multipathd: ${this.daemonLog()}` };
    }
    this.node = `/dev/mapper/${this.alias}`;
    this.dmName = realpathSync(this.node).replace(/^\/dev\//, '');
    log(`multipath: map ${this.alias} (${this.dmName}, wwid ${this.wwid}) over ${this.paths.join(' + ')}: udev ${tUdev.toFixed(0)} ms, multipathd to map and paths ${(performance.now() - t1).toFixed(0)} ms`);
    return { node: this.node };
  }

  /** The table the kernel has for the map. */
  table(): string {
    return sh('dmsetup', ['table', this.alias]).trim();
  }

  /** Stops multipathd, removes the map, stops udevd if we started it, restores /etc. */
  async destroy(): Promise<void> {
    for (const p of this.paths) {
      try {
        if (pathState(p) !== 'running') setPathState(p, 'running');
      } catch (error) {
        log(`multipath teardown: ${p} state: ${errorText(error)}`);
      }
    }
    if (this.#multipathd !== null) {
      const r = run('multipathd', ['shutdown'], 15_000);
      if (r.status !== 0) log(`multipath teardown: multipathd shutdown: ${r.out.trim()}`);
      await stopChild(this.#multipathd, 'multipathd');
      this.#multipathd = null;
    }
    const exists = (): boolean => existsSync('/sys/block') && readdirSync('/sys/block').some((b) => {
      try {
        return b.startsWith('dm-') && readFileSync(`/sys/block/${b}/dm/name`, 'utf8').trim() === this.alias;
      } catch {
        return false;
      }
    });
    if (this.#mapCreated || exists()) {
      const r = run('dmsetup', ['remove', '--retry', this.alias], 60_000);
      if (r.status !== 0) log(`multipath teardown: dmsetup remove ${this.alias}: ${r.out.trim()}`);
      if (exists()) log(`multipath teardown: map ${this.alias} is still there`);
      else this.#mapCreated = false;
    }
    if (this.#udevd !== null) {
      run('udevadm', ['settle', '-t', '10'], 20_000);
      this.#udevd.kill('SIGTERM');
      await stopChild(this.#udevd, 'systemd-udevd');
      this.#udevd = null;
      // udevd leaves its control socket behind; libdevmapper takes that file for a running
      // udev and would wait forever for udev cookies (dmsetup create in stall.test.ts)
      rmSync('/run/udev/control', { force: true });
    }
    rmSync(`/dev/mapper/${this.alias}`, { force: true });
    for (const [file, content] of this.#saved) {
      if (content === null) rmSync(file, { force: true });
      else writeFileSync(file, content);
    }
    this.#saved.clear();
  }

  #write(file: string, content: string): void {
    if (!this.#saved.has(file)) this.#saved.set(file, existsSync(file) ? readFileSync(file, 'utf8') : null);
    writeFileSync(file, content);
  }
}

/**
 * PrOps with a long answer timeout: libmpathpersist's first call loads and initialises the
 * library, and a path that does not answer costs its SG_IO timeout (seconds under TCG).
 */
export class PatientPrOps extends PrOps {
  constructor(client: PrClient, readonly timeoutMs = 60_000) {
    super(client);
  }

  send(cdb: Uint8Array, dev: DeviceFd, params: Uint8Array = new Uint8Array(0)): Promise<Response> {
    this.client.send(cdb, [dev.fd]);
    if (params.length > 0) this.client.send(params);
    return this.client.readResponse(this.timeoutMs);
  }

  override in(dev: DeviceFd, sa: number, allocationLength = 1024): Promise<Response> {
    return this.send(prInCdb({ sa, allocationLength }), dev);
  }

  override out(dev: DeviceFd, sa: number, params: Uint8Array, opts: { type?: number; scope?: number } = {}): Promise<Response> {
    return this.send(prOutCdb({ sa, type: opts.type ?? 0, scope: opts.scope ?? 0, paramLength: params.length }), dev, params);
  }

  cleanup(dev: DeviceFd): Promise<Response> {
    return this.send(cleanupCdb(), dev);
  }
}
