/**
 * Benchmark and audit of privilege dropping: this helper against Debian's C qemu-pr-helper,
 * side by side in one run, in four start modes:
 *   (a) root, no -u/-g          (b) root, -u nobody -g nogroup
 *   (c) started as uid/gid 65534 by setpriv with ambient CAP_SYS_RAWIO only
 *   (d) root, -d -f PIDFILE (daemon mode)
 * For each it prints the credentials of every thread (/proc/<pid>/task/<tid>/status) right
 * after the first handshake and again after one PR IN request was served (so SG_IO worker
 * threads exist), identical rows grouped with counts; and the time from spawn until a
 * connect() succeeds and the 4 handshake bytes arrive (median of --rounds runs, ours and C
 * alternating), plus in daemon mode the time until the launching process exits.
 * Output is Markdown. Every helper is stopped with SIGTERM and its exit is checked.
 *
 * usage: npm run bench:privileges [-- --rounds N]   (as root; needs /usr/bin/qemu-pr-helper
 * and setpriv from util-linux)
 */
import { chmodSync, closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { PrClient } from '../test/support/client.js';
import { prInCdb } from '../test/support/builders.js';
import {
  BENCH_RETRY_MS, OUR_HELPER, REFERENCE_HELPER, connectWhenReady, spawnHelper, tempDir, waitFor, within,
} from '../test/support/launcher.js';
import { nonChildExit } from '../test/support/proc.js';
import { median } from '../test/support/stats.js';
import { readThreadCredentials } from '../src/privileges/verify.js';
import { type ThreadCredentials } from '../src/privileges/thread-status.js';
import { capabilitiesIn, capabilityName } from '../src/privileges/capabilities.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' } } });
const ROUNDS = Math.max(1, Number(values.rounds));
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

type HelperName = 'ours' | 'C';
const HELPERS: Record<HelperName, string> = { ours: OUR_HELPER, C: REFERENCE_HELPER };
const NOBODY = 65534;
const SETPRIV = [
  `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=+sys_rawio', '--ambient-caps=+sys_rawio',
  '--bounding-set=-all,+sys_rawio', '--no-new-privs', '--',
];

interface Mode {
  key: string;
  title: string;
  daemon: boolean;
  /** Command and arguments for `helper` with socket `sock` and pid file `pidfile`. */
  command(helper: string, sock: string, pidfile: string): [string, string[]];
}

const MODES: Mode[] = [
  { key: 'a', title: 'root, no -u/-g', daemon: false, command: (h, s) => [h, ['-k', s]] },
  { key: 'b', title: 'root, -u nobody -g nogroup', daemon: false, command: (h, s) => [h, ['-k', s, '-u', 'nobody', '-g', 'nogroup']] },
  { key: 'c', title: 'non-root: setpriv uid/gid 65534, ambient sys_rawio', daemon: false, command: (h, s) => ['setpriv', [...SETPRIV, h, '-k', s]] },
  { key: 'd', title: 'root, -d -f PIDFILE', daemon: true, command: (h, s, p) => [h, ['-d', '-f', p, '-k', s]] },
];

/** One thread's columns, as printed; the main thread (tid = pid) is marked. */
function row(t: ThreadCredentials, pid: number): string[] {
  const ids = (list: readonly number[]): string => (list.every((x) => x === list[0]) ? String(list[0]) : list.join('/'));
  const hex = (m: bigint): string => m.toString(16);
  return [t.tid === pid ? `${t.name} (main)` : t.name, ids(t.uids), ids(t.gids), t.groups.length === 0 ? '–' : t.groups.join(','),
    hex(t.inheritable), hex(t.permitted), hex(t.effective), hex(t.bounding), hex(t.ambient), t.noNewPrivs ? '1' : '0'];
}

interface Snapshot {
  pid: number;
  start: ThreadCredentials[];
  afterRequest: ThreadCredentials[];
  responseStatus: number;
}

interface Run {
  ok: boolean;
  /** spawn → connect() succeeded and the handshake bytes arrived */
  acceptMs: number | null;
  /** daemon mode: spawn → the launching process exited */
  launcherExitMs: number | null;
  launcherExit: string | null;
  /** Exit status of the helper after SIGTERM, or of a failed start. */
  exit: string;
  stderr: string;
  snapshot: Snapshot | null;
  failure: string | null;
  /** spawn → exit of a helper whose start failed */
  failedAfterMs: number | null;
}

/** 'exit N' for an exit code, else the signal's name (Helper.exited's value). */
function describeExit(status: number | string): string {
  return typeof status === 'number' ? `exit ${status}` : status;
}

/** The daemon's pid, once the pid file names a running process. */
function pidFromFile(path: string): number | null {
  try {
    const m = /^(\d+)\n?$/.exec(readFileSync(path, 'utf8'));
    return m && existsSync(`/proc/${m[1]}`) ? Number(m[1]) : null;
  } catch {
    return null; // not written yet
  }
}

async function runOnce(name: HelperName, mode: Mode, devNull: number): Promise<Run> {
  const dir = tempDir('prh-priv-');
  if (mode.key === 'c') chmodSync(dir, 0o777); // the helper binds here as uid 65534
  const sock = join(dir, 'pr.sock');
  const pidfile = join(dir, 'pr.pid');
  const [cmd, args] = mode.command(HELPERS[name], sock, pidfile);
  const generic = (text: string): string => text.split(dir).join('$DIR');
  const run: Run = { ok: false, acceptMs: null, launcherExitMs: null, launcherExit: null, exit: '?', stderr: '', snapshot: null, failure: null, failedAfterMs: null };
  const helper = spawnHelper({ binary: cmd, args, socketPath: sock });
  const msSinceSpawn = (t: bigint): number => Number(t - helper.spawnedAt) / 1e6;
  const stderrClosed = new Promise((resolve) => helper.child.stderr?.once('close', resolve).once('error', resolve));
  let childExit: string | null = null;
  void helper.exited.then((status) => {
    childExit = describeExit(status);
  });
  const childExitMs = (): number | null => (helper.exitedAt === null ? null : msSinceSpawn(helper.exitedAt));
  let client: PrClient | null = null;
  try {
    // Readiness: connect() succeeds and the helper's 4-byte feature word arrives. In daemon
    // mode the launching process exits 0 on its way.
    const ready = await connectWhenReady(sock, {
      gone: () => childExit !== null && (!mode.daemon || childExit !== 'exit 0'),
      timeoutMs: START_TIMEOUT_MS,
      everyMs: BENCH_RETRY_MS,
    });
    if (ready.kind === 'gone') {
      await within(stderrClosed, 1000);
      run.exit = childExit ?? '?';
      run.failure = childExit;
      run.failedAfterMs = childExitMs();
      return run;
    }
    if (ready.kind === 'timeout') {
      run.failure = `no handshake within ${START_TIMEOUT_MS} ms`;
    } else {
      run.acceptMs = msSinceSpawn(ready.at);
      client = ready.client;
    }
    let pid = helper.pid;
    if (mode.daemon) {
      await within(helper.exited, START_TIMEOUT_MS);
      run.launcherExit = childExit ?? 'still running';
      run.launcherExitMs = childExitMs();
      const daemonPid = await waitFor(() => pidFromFile(pidfile), START_TIMEOUT_MS);
      if (daemonPid === null) {
        run.failure = (run.failure ? `${run.failure}; ` : '') + 'no daemon pid in the pid file';
        return run;
      }
      pid = daemonPid;
    }
    if (client !== null) {
      const start = readThreadCredentials(pid);
      const response = await client.request(prInCdb({ sa: 0, allocationLength: 8 }), devNull);
      const afterRequest = readThreadCredentials(pid);
      run.snapshot = { pid, start, afterRequest, responseStatus: response.status };
      client.close();
      client = null;
    }
    // Stop with SIGTERM and check that it exits.
    process.kill(pid, 'SIGTERM');
    let exit: string | null;
    if (mode.daemon) {
      exit = await waitFor(() => nonChildExit(pid), STOP_TIMEOUT_MS);
    } else {
      await within(helper.exited, STOP_TIMEOUT_MS);
      exit = childExit;
    }
    if (exit === null) {
      run.exit = `still running ${STOP_TIMEOUT_MS / 1000} s after SIGTERM (killed)`;
      process.kill(pid, 'SIGKILL');
    } else {
      run.exit = exit;
    }
    run.ok = run.failure === null;
    return run;
  } finally {
    client?.close();
    helper.cleanup(); // kills our child if it still runs (a daemon was stopped above)
    rmSync(dir, { recursive: true, force: true });
    run.stderr = generic(helper.stderr().slice(-8192));
  }
}

function mdTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Rows grouped by identical columns, with their counts at start-up and after one request. */
function credentialTable(snapshot: Snapshot): string {
  const groups = new Map<string, { cells: string[]; start: number; after: number }>();
  const add = (threads: ThreadCredentials[], which: 'start' | 'after'): void => {
    for (const t of threads) {
      const cells = row(t, snapshot.pid);
      const key = cells.join('\u0000');
      const g = groups.get(key) ?? { cells, start: 0, after: 0 };
      g[which]++;
      groups.set(key, g);
    }
  };
  add(snapshot.start, 'start');
  add(snapshot.afterRequest, 'after');
  return mdTable(
    ['thread', 'Uid', 'Gid', 'Groups', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'at start', 'after 1 request'],
    [...groups.values()].map((g) => [...g.cells, String(g.start), String(g.after)]),
  );
}

/** The same table text, to tell whether rounds differed. */
function fingerprint(snapshot: Snapshot): string {
  return credentialTable(snapshot);
}

function maskLegend(masks: Set<bigint>): string {
  const last = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
  const all = (1n << BigInt(last + 1)) - 1n;
  const parts = [...masks].filter((m) => m !== 0n).sort((a, b) => (a < b ? -1 : 1)).map((m) => {
    const caps = capabilitiesIn(m);
    if (caps.length <= 3) return `\`${m.toString(16)}\` = ${caps.map(capabilityName).join(',')}`;
    const missing = capabilitiesIn(all & ~m);
    return `\`${m.toString(16)}\` = ${caps.length} capabilities: ${missing.length ? `all up to cap_last_cap (${last}) except ${missing.map(capabilityName).join(',')}` : 'all'}`;
  });
  return parts.length ? `Masks: ${parts.join('; ')}.` : '';
}

const fmtMs = (xs: number[]): string => (xs.length === 0 ? '–' : `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`);
const oneLine = (s: string): string => s.trim().replace(/\s*\n\s*/g, ' ⏎ ').replace(/\|/g, '\\|');

function summarize(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].map(([v, n]) => (counts.size === 1 && n === values.length ? `${v} (all ${n})` : `${v} ×${n}`)).join(', ');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  if (!existsSync(REFERENCE_HELPER)) throw new Error(`${REFERENCE_HELPER} is needed (apt-get install qemu-system-common)`);
  const devNull = openSync('/dev/null', 'r');
  const runs = new Map<string, Run[]>();
  const keyOf = (mode: Mode, name: HelperName): string => `${mode.key}:${name}`;
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of MODES) {
      // Alternate the order every round so neither side always runs on a warmer machine.
      const order: HelperName[] = r % 2 === 0 ? ['C', 'ours'] : ['ours', 'C'];
      for (const name of order) {
        const run = await runOnce(name, mode, devNull);
        runs.set(keyOf(mode, name), [...(runs.get(keyOf(mode, name)) ?? []), run]);
      }
    }
    process.stderr.write(`round ${r + 1}/${ROUNDS} done\n`);
  }
  closeSync(devNull);

  const out: string[] = [];
  out.push(`## Privilege dropping: ours vs C qemu-pr-helper (${ROUNDS} rounds, ours and C alternating)`);
  out.push('');
  out.push('Modes: (a) root, no -u/-g; (b) root, `-u nobody -g nogroup`; (c) started by ' +
    `\`setpriv ${SETPRIV.join(' ')} HELPER -k SOCK\`; (d) root, \`-d -f PIDFILE\`.`);
  out.push('');
  out.push('### Start-up to accept (ms, median (min–max))');
  out.push('');
  out.push(`From spawn until connect() succeeds and the 4 handshake bytes arrive (connect retried after ${BENCH_RETRY_MS} ms sleeps: about 0.2 ms resolution). ` +
    'In daemon mode also until the launching process exits (ours: once the daemon accepts; C: at once).');
  out.push('');
  const timingRows: string[][] = [];
  const ok = (list: Run[]): Run[] => list.filter((x) => x.ok);
  for (const mode of MODES) {
    const o = runs.get(keyOf(mode, 'ours')) ?? [];
    const c = runs.get(keyOf(mode, 'C')) ?? [];
    const cell = (list: Run[], pick: (x: Run) => number | null): string => {
      const good = ok(list).map(pick).filter((x): x is number => x !== null);
      if (good.length > 0) return fmtMs(good) + (good.length < list.length ? ` [${list.length - good.length} failed]` : '');
      const after = list.map((x) => x.failedAfterMs).filter((x): x is number => x !== null);
      return `failed: ${summarize(list.map((x) => x.failure ?? x.exit))}${after.length ? `, after ${fmtMs(after)} ms` : ''}`;
    };
    const ratio = (pick: (x: Run) => number | null): string => {
      const a = ok(o).map(pick).filter((x): x is number => x !== null);
      const b = ok(c).map(pick).filter((x): x is number => x !== null);
      return a.length && b.length ? (median(a) / median(b)).toFixed(2) : '–';
    };
    timingRows.push([`(${mode.key}) ${mode.title}: accept`, cell(o, (x) => x.acceptMs), cell(c, (x) => x.acceptMs), ratio((x) => x.acceptMs)]);
    if (mode.daemon) {
      timingRows.push([`(${mode.key}) ${mode.title}: launcher exit`, cell(o, (x) => x.launcherExitMs), cell(c, (x) => x.launcherExitMs), ratio((x) => x.launcherExitMs)]);
    }
  }
  out.push(mdTable(['mode', 'ours', 'C', 'ours/C'], timingRows));
  out.push('');
  out.push('### Exit and messages');
  out.push('');
  const exitRows: string[][] = [];
  for (const mode of MODES) {
    for (const name of ['ours', 'C'] as HelperName[]) {
      const list = runs.get(keyOf(mode, name)) ?? [];
      const failed = list.filter((x) => !x.ok);
      const launcher = mode.daemon ? `launcher: ${summarize(list.map((x) => x.launcherExit ?? '?'))}; ` : '';
      const what = failed.length === list.length
        ? `start failed: ${summarize(list.map((x) => x.exit))}`
        : `${launcher}after SIGTERM: ${summarize(ok(list).map((x) => x.exit))}` + (failed.length ? `; failed: ${summarize(failed.map((x) => x.failure ?? x.exit))}` : '');
      const responses = summarize(list.flatMap((x) => (x.snapshot ? [`0x${x.snapshot.responseStatus.toString(16)}`] : [])));
      const stderr = summarize(list.map((x) => (x.stderr.trim() === '' ? '(none)' : `\`${oneLine(x.stderr)}\``)));
      exitRows.push([`(${mode.key})`, name, what, responses || '–', stderr]);
    }
  }
  out.push(mdTable(['mode', 'helper', 'exit', 'PR IN status', 'stderr'], exitRows));
  out.push('');
  out.push('### Thread credentials (/proc/PID/task/*/status)');
  out.push('');
  out.push('Counts of threads with identical rows right after the first handshake and after one PR IN ' +
    '(READ KEYS, /dev/null fd) was answered. Masks in hex; Uid/Gid shown once when real, effective, saved and fs agree.');
  const masks = new Set<bigint>();
  for (const mode of MODES) {
    for (const name of ['ours', 'C'] as HelperName[]) {
      const list = runs.get(keyOf(mode, name)) ?? [];
      const first = list.find((x) => x.snapshot !== null);
      out.push('');
      out.push(`#### (${mode.key}) ${mode.title} — ${name}`);
      out.push('');
      if (!first?.snapshot) {
        out.push(`No table: ${summarize(list.map((x) => x.failure ?? x.exit))}.`);
        continue;
      }
      for (const t of [...first.snapshot.start, ...first.snapshot.afterRequest]) {
        for (const m of [t.inheritable, t.permitted, t.effective, t.bounding, t.ambient]) masks.add(m);
      }
      out.push(credentialTable(first.snapshot));
      const prints = list.flatMap((x) => (x.snapshot ? [fingerprint(x.snapshot)] : []));
      const same = prints.filter((p) => p === prints[0]).length;
      out.push('');
      out.push(same === prints.length
        ? `Same table in all ${prints.length} rounds.`
        : `Same table in ${same} of ${prints.length} rounds (first round shown).`);
    }
  }
  out.push('');
  out.push(maskLegend(masks));
  console.log(out.join('\n'));
}

void main();
