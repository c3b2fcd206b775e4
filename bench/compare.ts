/**
 * Benchmark: this helper against Debian's C qemu-pr-helper, side by side in one run, on the
 * same workload (PERSISTENT RESERVE IN with a /dev/null fd: SG_IO fails with ENOTTY at once,
 * so this measures the helper's own overhead). Prints medians and ratios ours/C.
 *
 * usage: npm run bench [-- --rounds N --requests N --connections 1,16,64,256]
 * (1-connection runs send --requests requests, others twice that.)
 * Needs a C compiler (cc) for the load generator, and /usr/bin/qemu-pr-helper.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_RETRY_MS, OUR_HELPER, REFERENCE_HELPER, REPO_ROOT, startHelper, type ReadyHelper } from '../test/support/launcher.js';
import { cpuSeconds, rssMb, threadCount } from '../test/support/proc.js';
import { median } from '../test/support/stats.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    requests: { type: 'string', default: '20000' },
    startups: { type: 'string', default: '5' },
    connections: { type: 'string', default: '1,16,64,256' },
  },
});
const CONNECTIONS = values.connections.split(',').map(Number).filter((n) => n > 0);
const ROUNDS = Number(values.rounds);
const REQUESTS = Number(values.requests);
const STARTUPS = Number(values.startups);

const loadgen = join(REPO_ROOT, 'dist', 'bench', 'loadgen');
execFileSync('cc', ['-O2', '-o', loadgen, join(REPO_ROOT, 'bench', 'loadgen.c')], { stdio: 'inherit' });

/**
 * Spawns a helper and times spawn → first completed handshake (hrtime; connect retried
 * after BENCH_RETRY_MS sleeps until it listens: about 0.2 ms resolution).
 */
function start(binary: string): Promise<ReadyHelper> {
  return startHelper({ binary }, BENCH_RETRY_MS);
}

/** Stops a helper with SIGTERM, waits for its exit and removes its temporary directory. */
async function stop(h: ReadyHelper): Promise<void> {
  await h.stop();
  h.cleanup();
}

interface Load {
  rps: number;
  p50_us: number;
  p99_us: number;
  cpuPer100k: number;
}

function load(pid: number, socket: string, connections: number, requests: number): Load {
  const cpu0 = cpuSeconds(pid);
  const r = spawnSync(loadgen, [socket, String(connections), String(requests), String(Math.floor(requests / 10)), '/dev/null'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`loadgen failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { rps: number; p50_us: number; p99_us: number };
  const cpu = cpuSeconds(pid) - cpu0;
  return { ...out, cpuPer100k: (cpu / (requests * 1.1)) * 1e5 };
}

type Sample = Record<string, number>;

async function round(binary: string): Promise<Sample> {
  const h = await start(binary);
  const sample: Sample = { 'startup to accept (ms)': h.startupMs, 'RSS idle (MB)': rssMb(h.pid) };
  for (const n of CONNECTIONS) {
    const r = load(h.pid, h.socketPath, n, n === 1 ? REQUESTS : REQUESTS * 2);
    const tag = n === 1 ? '1 conn' : `${n} conns`;
    sample[`req/s, ${tag}`] = r.rps;
    sample[`p50 µs, ${tag}`] = r.p50_us;
    sample[`p99 µs, ${tag}`] = r.p99_us;
    sample[`CPU s/100k req, ${tag}`] = r.cpuPer100k;
  }
  sample[`RSS after ${Math.max(...CONNECTIONS)}-conn load (MB)`] = rssMb(h.pid);
  sample['threads after load'] = threadCount(h.pid);
  await stop(h);
  return sample;
}

async function main(): Promise<void> {
  if (!existsSync(REFERENCE_HELPER)) throw new Error(`${REFERENCE_HELPER} is needed (apt-get install qemu-system-common)`);
  const helpers = { ours: OUR_HELPER, C: REFERENCE_HELPER };
  const samples: Record<string, Sample[]> = { ours: [], C: [] };
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate the order every round so neither side always runs on a warmer machine.
    const order = r % 2 === 0 ? (['C', 'ours'] as const) : (['ours', 'C'] as const);
    for (const name of order) samples[name]?.push(await round(helpers[name]));
    process.stderr.write(`round ${r + 1}/${ROUNDS} done\n`);
  }
  // Extra start-up samples (start-up is noisy and cheap to repeat).
  const startups: Record<string, number[]> = { ours: [], C: [] };
  for (let i = 0; i < STARTUPS; i++) {
    for (const name of i % 2 === 0 ? (['C', 'ours'] as const) : (['ours', 'C'] as const)) {
      const h = await start(helpers[name]);
      startups[name]?.push(h.startupMs);
      await stop(h);
    }
  }
  const keys = Object.keys(samples.ours?.[0] ?? {});
  const rows = keys.map((k) => {
    const pick = (name: string): number => (k.startsWith('startup')
      ? median([...(samples[name] ?? []).map((s) => s[k] ?? 0), ...(startups[name] ?? [])])
      : median((samples[name] ?? []).map((s) => s[k] ?? 0)));
    const c = pick('C');
    const o = pick('ours');
    return { metric: k, C: c, ours: o, ratio: c === 0 ? NaN : o / c };
  });
  const w = Math.max(...rows.map((r) => r.metric.length));
  const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(2)).padStart(10);
  console.log(`qemu-pr-helper benchmark: ${ROUNDS} rounds (medians), PR IN READ KEYS on /dev/null, ${REQUESTS} requests per 1-conn run, ${REQUESTS * 2} per multi-connection run`);
  console.log(`${'metric'.padEnd(w)} ${'C'.padStart(10)} ${'ours'.padStart(10)} ${'ours/C'.padStart(8)}`);
  for (const r of rows) console.log(`${r.metric.padEnd(w)} ${fmt(r.C)} ${fmt(r.ours)} ${r.ratio.toFixed(2).padStart(8)}`);
}

void main();
