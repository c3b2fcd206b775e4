/**
 * One VM's helper (libvirt starts one per VM; its QEMU holds one connection and sends one
 * request at a time): what that costs. For this helper and the C reference, each started
 * fresh: time from connect() to the first answer, RSS (VmRSS) and threads after N
 * sequential requests on that one connection, and the helper's own threads by name.
 *
 * usage: npm run build && node dist/bench/pervm.js [--requests 1000] [--rounds 3] [--settle-ms 300]
 */
import { existsSync, openSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { OUR_HELPER, REFERENCE_HELPER, pollUntil, spawnHelper } from '../test/support/launcher.js';
import { PrClient } from '../test/support/client.js';
import { prInCdb } from '../test/support/builders.js';
import { rssMb, threadCount } from '../test/support/proc.js';
import { median } from '../test/support/stats.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    'settle-ms': { type: 'string', default: '300' },
  },
});
const REQUESTS = Number(values.requests);
const ROUNDS = Number(values.rounds);
const SETTLE_MS = Number(values['settle-ms']);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function threadNames(pid: number): string {
  const names = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      names.set(name, (names.get(name) ?? 0) + 1);
    } catch {
      // gone
    }
  }
  return [...names].map(([n, c]) => (c > 1 ? `${n}x${c}` : n)).join(' ');
}

interface Sample { firstMs: number; rssIdle: number; rssAfter: number; threadsIdle: number; threadsAfter: number; p50: number; p99: number; names: string }

async function round(binary: string): Promise<Sample> {
  // As libvirt does, wait for the socket to appear rather than connect to probe it: the
  // first connection is QEMU's.
  const h = spawnHelper({ binary });
  const fd = openSync('/dev/null', 'r');
  try {
    await pollUntil(() => existsSync(h.socketPath), 'the socket to appear', 15_000);
    await sleep(SETTLE_MS);
    const rssIdle = rssMb(h.pid);
    const threadsIdle = threadCount(h.pid);
    const cdb = prInCdb({ sa: 0, allocationLength: 8 });
    const t0 = performance.now();
    const client = await PrClient.connect(h.socketPath);
    const first = await client.request(cdb, fd);
    const firstMs = performance.now() - t0;
    if (first.status !== 2) throw new Error(`unexpected status ${first.status}`);
    const times: number[] = [];
    for (let i = 1; i < REQUESTS; i++) {
      const s = performance.now();
      await client.request(cdb, fd);
      times.push((performance.now() - s) * 1000);
    }
    times.sort((a, b) => a - b);
    await sleep(100);
    const sample = {
      firstMs, rssIdle, rssAfter: rssMb(h.pid), threadsIdle, threadsAfter: threadCount(h.pid),
      p50: times[Math.floor(times.length / 2)] ?? 0, p99: times[Math.floor(times.length * 0.99)] ?? 0, names: threadNames(h.pid),
    };
    client.close();
    return sample;
  } finally {
    closeSync(fd);
    await h.stop();
    h.cleanup();
  }
}

const results: Record<string, Sample[]> = { C: [], ours: [] };
for (let r = 0; r < ROUNDS; r++) {
  results['C']?.push(await round(REFERENCE_HELPER));
  results['ours']?.push(await round(OUR_HELPER));
}
const fields: [keyof Sample, string][] = [
  ['firstMs', 'connect to first answer (ms)'], ['rssIdle', 'RSS before connecting (MB)'], ['rssAfter', `RSS after ${REQUESTS} requests (MB)`],
  ['threadsIdle', 'threads before connecting'], ['threadsAfter', `threads after ${REQUESTS} requests`],
  ['p50', 'p50 µs (JS client, 1 conn)'], ['p99', 'p99 µs (JS client, 1 conn)'],
];
console.log(`one VM's helper: ${ROUNDS} rounds (medians), ${REQUESTS} sequential READ KEYS on /dev/null over one connection`);
console.log(`${'metric'.padEnd(36)}${'C'.padStart(10)}${'ours'.padStart(10)}${'ours/C'.padStart(9)}`);
for (const [key, label] of fields) {
  const c = median((results['C'] ?? []).map((s) => s[key] as number));
  const o = median((results['ours'] ?? []).map((s) => s[key] as number));
  console.log(`${label.padEnd(36)}${c.toFixed(2).padStart(10)}${o.toFixed(2).padStart(10)}${(o / c).toFixed(2).padStart(9)}`);
}
console.log(`our threads after the requests: ${results['ours']?.at(-1)?.names ?? ''}`);
