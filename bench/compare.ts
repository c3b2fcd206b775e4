/**
 * Benchmark: this helper against Debian's C qemu-pr-helper, side by side in one run, on the
 * same workload (PERSISTENT RESERVE IN with a /dev/null fd: SG_IO fails with ENOTTY at once,
 * so this measures the helper's own overhead). Prints medians and ratios ours/C, and where
 * a bare Node is the floor, that bare Node and ours/bare.
 *
 * Sections (--sections, default all):
 * - pervm: libvirt's one helper per VM, whose QEMU holds one connection and sends one
 *   request at a time. Start-up, first answer, RSS and threads after --pervm-requests,
 *   PSS with --helpers helpers running at once, latency at one connection.
 * - steady: --connections connections after a warm-up (requests/s, latency, CPU).
 * - burst: a fresh helper, --burst connections opened at once, --burst-requests requests
 *   timed from the first one, no warm-up.
 *
 * usage: npm run bench [-- --sections pervm,steady,burst --rounds N --requests N
 *          --connections 16,64,256 --burst 16,256 --burst-requests N --pervm-requests N
 *          --helpers N --startups N]
 * Needs a C compiler (cc) for the load generator, /usr/bin/qemu-pr-helper, and root.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { prInCdb } from '../test/support/builders.js';
import {
  BENCH_RETRY_MS, OUR_HELPER, REFERENCE_HELPER, REPO_ROOT, spawnHelper, startHelper, startHelperConnected, type Helper,
} from '../test/support/launcher.js';
import { cpuSeconds, pssMb, rssMb, taskCount } from '../test/support/proc.js';
import { median } from '../test/support/stats.js';

const SECTIONS = ['pervm', 'steady', 'burst'] as const;
type Section = (typeof SECTIONS)[number];

const { values } = parseArgs({
  options: {
    sections: { type: 'string', default: SECTIONS.join(',') },
    rounds: { type: 'string', default: '3' },
    requests: { type: 'string', default: '20000' },
    startups: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16,64,256' },
    burst: { type: 'string', default: '16,256' },
    'burst-requests': { type: 'string', default: '20000' },
    'pervm-requests': { type: 'string', default: '1000' },
    helpers: { type: 'string', default: '10' },
  },
});
const numbers = (list: string): number[] => list.split(',').map(Number).filter((n) => n > 0);
const selected = values.sections.split(',').filter((s) => s !== '');
for (const s of selected) {
  if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`unknown section '${s}' (known: ${SECTIONS.join(', ')})`);
}
const run = (s: Section): boolean => selected.includes(s);
const ROUNDS = Number(values.rounds);
/** The 1-connection latency run (per VM): this many, after a tenth as many unmeasured. */
const REQUESTS = Number(values.requests);
/** Each steady-state run: twice as many, after a tenth as many unmeasured. */
const STEADY_REQUESTS = REQUESTS * 2;
const STARTUPS = Number(values.startups);
const CONNECTIONS = numbers(values.connections);
const BURST = numbers(values.burst);
const BURST_REQUESTS = Number(values['burst-requests']);
const PERVM_REQUESTS = Number(values['pervm-requests']);
const HELPERS = Number(values.helpers);
/** Wait after a load before reading RSS, PSS and threads: lets threads finish their turn. */
const SETTLE_MS = 100;

const loadgen = join(REPO_ROOT, 'dist', 'bench', 'loadgen');
execFileSync('cc', ['-O2', '-o', loadgen, join(REPO_ROOT, 'bench', 'loadgen.c')], { stdio: 'inherit' });

type Side = 'C' | 'ours' | 'bare';
const BINARY = { ours: OUR_HELPER, C: REFERENCE_HELPER } as const;
/** Alternate the order every round so neither side always runs on a warmer machine. */
const order = (r: number): readonly ['C', 'ours'] | readonly ['ours', 'C'] => (r % 2 === 0 ? ['C', 'ours'] : ['ours', 'C']);

/** Samples per metric and side, in the order the metrics were first seen; section titles between. */
const table: ({ title: string } | { metric: string; samples: Record<Side, number[]> })[] = [];
function title(text: string): void {
  table.push({ title: text });
}
function add(metric: string, side: Side, value: number): void {
  let row = table.find((r) => 'metric' in r && r.metric === metric);
  if (row === undefined) {
    row = { metric, samples: { C: [], ours: [], bare: [] } };
    table.push(row);
  }
  if ('samples' in row) row.samples[side].push(value);
}
/** Places rows in this order before any sample arrives. */
function rows(...metrics: string[]): void {
  for (const m of metrics) table.push({ metric: m, samples: { C: [], ours: [], bare: [] } });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Stops a helper with SIGTERM, waits for its exit and removes its temporary directory. */
async function stop(h: Helper): Promise<void> {
  await h.stop();
  h.cleanup();
}

/** loadgen's JSON line. */
interface Load {
  requests: number;
  rps: number;
  p50_us: number;
  p99_us: number;
  connect_retries: number;
  connect_ms: number;
}

function loadArgs(socket: string, connections: number, requests: number, warmup: number): string[] {
  return [socket, String(connections), String(requests), String(warmup), '/dev/null'];
}

/** Runs loadgen to the end; CPU seconds of `pid` per 100k requests, warm-up included. */
function load(pid: number, socket: string, connections: number, requests: number, warmup: number): Load & { cpuPer100k: number } {
  const cpu0 = cpuSeconds(pid);
  const r = spawnSync(loadgen, loadArgs(socket, connections, requests, warmup), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`loadgen failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as Load;
  return { ...out, cpuPer100k: ((cpuSeconds(pid) - cpu0) / (requests + warmup)) * 1e5 };
}

/**
 * Runs loadgen with its connections held open once its requests are done (as a VM's QEMU
 * holds its one connection); `release` closes them and waits for loadgen to exit.
 */
async function loadHeld(socket: string, connections: number, requests: number): Promise<{ result: Load; release(): Promise<void> }> {
  const child = spawn(loadgen, [...loadArgs(socket, connections, requests, 0), 'hold'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    void exited.then(() => reject(new Error(`loadgen failed: ${err}`)));
  });
  return {
    result: JSON.parse(line) as Load,
    async release() {
      child.stdin.end();
      await exited;
    },
  };
}

const BARE_IDLE = "process.stdout.write('ready\\n'); setInterval(() => {}, 1 << 30);";

/**
 * A bare Node (the one running this script) idling in `node FLAGS -e`: started, then
 * `measure`d SETTLE_MS after it said ready, then killed.
 */
async function bareIdle<T>(flags: string[], count: number, measure: (pid: number) => T): Promise<T[]> {
  const children = await Promise.all(Array.from({ length: count }, () => new Promise<ChildProcess>((resolve, reject) => {
    const c = spawn(process.execPath, [...flags, '-e', BARE_IDLE], { stdio: ['ignore', 'pipe', 'inherit'] });
    c.stdout?.once('data', () => resolve(c));
    c.on('error', reject);
  })));
  await sleep(SETTLE_MS);
  const out = children.map((c) => measure(c.pid ?? -1));
  await Promise.all(children.map((c) => new Promise((resolve) => {
    c.on('exit', resolve);
    c.kill('SIGKILL');
  })));
  return out;
}

/** `node -e 0` spawned as the launcher spawns a helper: spawn → exit in ms (hrtime). */
async function bareStartupMs(): Promise<number> {
  const h = spawnHelper({ binary: process.execPath, args: ['-e', '0'] });
  await h.exited;
  h.cleanup();
  return Number((h.exitedAt ?? h.spawnedAt) - h.spawnedAt) / 1e6;
}

// The bare-Node reference issue 16's RSS target was set against: bin/qemu-pr-helper's
// young-generation setting.
const SEMI = '--max-semi-space-size=2';
const READ_KEYS = prInCdb({ sa: 0, allocationLength: 512 }); // loadgen's request

const M = {
  startup: 'start-up to accept (ms)',
  firstAnswer: 'first answer after the handshake (ms)',
  secondAnswer: 'second answer, same connection (ms)',
  rss: `RSS after ${PERVM_REQUESTS} req on 1 conn (MB)`,
  rssPlain: 'RSS idle, bare node without flags (MB)',
  threads: `threads idle after ${PERVM_REQUESTS} req`,
  pss: `PSS per helper, ${HELPERS} running, ${PERVM_REQUESTS} req each (MB)`,
};

/** One fresh helper as a VM uses it. */
async function perVmRound(side: 'C' | 'ours', devNull: number): Promise<void> {
  const h = await startHelperConnected({ binary: BINARY[side] }, BENCH_RETRY_MS);
  try {
    add(M.startup, side, h.startupMs);
    h.client.send(READ_KEYS, [devNull]);
    h.client.readResponseBlocking();
    add(M.firstAnswer, side, Number(process.hrtime.bigint() - h.readyAt) / 1e6);
    // The same client, warm: a bound on what the client itself adds to the first answer.
    const sent = process.hrtime.bigint();
    h.client.send(READ_KEYS, [devNull]);
    h.client.readResponseBlocking();
    add(M.secondAnswer, side, Number(process.hrtime.bigint() - sent) / 1e6);
    h.client.close();
    // The load on a connection of its own, held open (as a VM holds its one) while RSS and
    // threads are read.
    const held = await loadHeld(h.socketPath, 1, PERVM_REQUESTS);
    await sleep(SETTLE_MS);
    add(M.rss, side, rssMb(h.pid));
    add(M.threads, side, taskCount(h.pid));
    await held.release();
    const r = load(h.pid, h.socketPath, 1, REQUESTS, Math.floor(REQUESTS / 10));
    add('req/s, 1 conn', side, r.rps);
    add('p50 µs, 1 conn', side, r.p50_us);
    add('p99 µs, 1 conn', side, r.p99_us);
    add('CPU s/100k req, 1 conn', side, r.cpuPer100k);
  } finally {
    h.client.close();
    await stop(h);
  }
}

/** HELPERS helpers at once, each after PERVM_REQUESTS on its own held connection. */
async function pssRound(side: 'C' | 'ours'): Promise<void> {
  const helpers: Helper[] = [];
  const held: { release(): Promise<void> }[] = [];
  try {
    for (let i = 0; i < HELPERS; i++) {
      const h = await startHelper({ binary: BINARY[side] }, BENCH_RETRY_MS);
      helpers.push(h);
      held.push(await loadHeld(h.socketPath, 1, PERVM_REQUESTS));
    }
    await sleep(SETTLE_MS);
    for (const h of helpers) add(M.pss, side, pssMb(h.pid));
  } finally {
    for (const l of held) await l.release();
    for (const h of helpers) await stop(h);
  }
}

async function perVm(): Promise<void> {
  title(`per VM: one connection, one request at a time (latency: ${REQUESTS} requests after ${Math.floor(REQUESTS / 10)} unmeasured)`);
  rows(M.startup, M.firstAnswer, M.secondAnswer, M.rss, M.rssPlain, M.pss, M.threads);
  const devNull = openSync('/dev/null', 'r');
  try {
    // Unmeasured: run the client's code once, so that its first timed answer is not its first.
    const warm = await startHelperConnected({ binary: REFERENCE_HELPER }, BENCH_RETRY_MS);
    warm.client.send(READ_KEYS, [devNull]);
    warm.client.readResponseBlocking();
    warm.client.close();
    await stop(warm);
    for (let r = 0; r < ROUNDS; r++) {
      const [first, second] = order(r);
      await perVmRound(first, devNull);
      // The bare Node between the two, so it sits in the middle of either order.
      add(M.startup, 'bare', await bareStartupMs());
      for (const v of await bareIdle([SEMI], 1, rssMb)) add(M.rss, 'bare', v);
      for (const v of await bareIdle([], 1, rssMb)) add(M.rssPlain, 'bare', v);
      await perVmRound(second, devNull);
      process.stderr.write(`per VM round ${r + 1}/${ROUNDS} done\n`);
    }
    // Extra start-up samples (start-up is noisy and cheap to repeat).
    for (let i = 0; i < STARTUPS; i++) {
      for (const side of order(i)) {
        const h = await startHelper({ binary: BINARY[side] }, BENCH_RETRY_MS);
        add(M.startup, side, h.startupMs);
        await stop(h);
        if (side === order(i)[0]) add(M.startup, 'bare', await bareStartupMs());
      }
    }
    for (let r = 0; r < ROUNDS; r++) {
      const [first, second] = order(r);
      await pssRound(first);
      for (const v of await bareIdle([SEMI], HELPERS, pssMb)) add(M.pss, 'bare', v);
      await pssRound(second);
      process.stderr.write(`PSS round ${r + 1}/${ROUNDS} done\n`);
    }
  } finally {
    closeSync(devNull);
  }
}

/** Steady state: one helper through every connection count, each after a warm-up. */
async function steadyRound(side: 'C' | 'ours'): Promise<void> {
  const h = await startHelper({ binary: BINARY[side] }, BENCH_RETRY_MS);
  try {
    add('RSS idle (MB)', side, rssMb(h.pid));
    for (const n of CONNECTIONS) {
      const r = load(h.pid, h.socketPath, n, STEADY_REQUESTS, Math.floor(STEADY_REQUESTS / 10));
      const tag = n === 1 ? '1 conn' : `${n} conns`;
      add(`req/s, ${tag}`, side, r.rps);
      add(`p50 µs, ${tag}`, side, r.p50_us);
      add(`p99 µs, ${tag}`, side, r.p99_us);
      add(`CPU s/100k req, ${tag}`, side, r.cpuPer100k);
    }
    add(`RSS after ${Math.max(...CONNECTIONS)}-conn load (MB)`, side, rssMb(h.pid));
    add('threads after load', side, taskCount(h.pid));
  } finally {
    await stop(h);
  }
}

async function steady(): Promise<void> {
  title(`steady state: one helper, ${STEADY_REQUESTS} requests per connection count after ${Math.floor(STEADY_REQUESTS / 10)} unmeasured`);
  for (let r = 0; r < ROUNDS; r++) {
    for (const side of order(r)) await steadyRound(side);
    process.stderr.write(`steady round ${r + 1}/${ROUNDS} done\n`);
  }
}

/** A fresh helper (only the launcher's readiness handshake before), N connections at once. */
async function burstRound(side: 'C' | 'ours', n: number): Promise<void> {
  const h = await startHelper({ binary: BINARY[side] }, BENCH_RETRY_MS);
  try {
    const r = load(h.pid, h.socketPath, n, BURST_REQUESTS, 0);
    add(`burst ${n}: req/s`, side, r.rps);
    add(`burst ${n}: p99 µs`, side, r.p99_us);
    add(`burst ${n}: connect all (ms)`, side, r.connect_ms);
    add(`burst ${n}: connect retries`, side, r.connect_retries);
  } finally {
    await stop(h);
  }
}

async function burst(): Promise<void> {
  title(`burst: fresh helper, all connections at once, ${BURST_REQUESTS} requests from the first`);
  for (let r = 0; r < ROUNDS; r++) {
    for (const n of BURST) for (const side of order(r)) await burstRound(side, n);
    process.stderr.write(`burst round ${r + 1}/${ROUNDS} done\n`);
  }
}

function print(): void {
  const rows = table.map((row) => {
    if ('title' in row) return row;
    const c = median(row.samples.C);
    const o = median(row.samples.ours);
    const b = median(row.samples.bare);
    return { metric: row.metric, cells: [c, o, o / c, b, o / b] };
  });
  const w = Math.max(6, ...rows.map((r) => ('metric' in r ? r.metric.length : 0)));
  const fmt = (x: number, ratio: boolean): string => {
    if (!Number.isFinite(x)) return '-';
    return ratio || x < 100 ? x.toFixed(2) : x.toFixed(0);
  };
  console.log(`qemu-pr-helper benchmark: ${ROUNDS} rounds (medians), PR IN READ KEYS on /dev/null; Node ${process.version} (${process.execPath})`);
  const head = ['C', 'ours', 'ours/C', 'bare node', 'ours/bare'];
  const widths = [10, 10, 8, 10, 10];
  console.log(`${'metric'.padEnd(w)} ${head.map((h, i) => h.padStart(widths[i] ?? 10)).join(' ')}`);
  for (const r of rows) {
    if ('title' in r) {
      console.log(`-- ${r.title}`);
      continue;
    }
    console.log(`${r.metric.padEnd(w)} ${r.cells.map((x, i) => fmt(x, i === 2 || i === 4).padStart(widths[i] ?? 10)).join(' ')}`);
  }
  if (run('pervm')) {
    console.log(`bare node: ${process.execPath} ${SEMI} -e (idle; PSS: ${HELPERS} at once), start-up: node -e 0 spawn → exit`);
  }
}

async function main(): Promise<void> {
  if (!existsSync(REFERENCE_HELPER)) throw new Error(`${REFERENCE_HELPER} is needed (apt-get install qemu-system-common)`);
  if (run('pervm')) await perVm();
  if (run('steady')) await steady();
  if (run('burst')) await burst();
  print();
}

void main();
