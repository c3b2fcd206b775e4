/**
 * Issue 3, item 7 (a benchmark, not a test): PR IN READ KEYS on the LIO disk, inside the
 * VM, (a) by direct SG_IO, (b) through our helper, (c) through Debian's C qemu-pr-helper,
 * from one Node process and one connection per helper. Prints medians, p90 and ratios.
 *   bench/e2e/run.sh                  (boots the VM; PRH_BENCH_N, PRH_BENCH_ROUNDS)
 */
import { openSync, closeSync, constants } from 'node:fs';
import { PrClient } from '../../test/support/client.js';
import { prInCdb, prOutCdb, prOutParams } from '../../test/support/builders.js';
import { percentile } from '../../test/support/stats.js';
import { E2E, skipReason, ourHelper, referenceHelper, resetDisk, stopHelpers } from '../../test/e2e/lib/env.js';
import { DirectSgIo } from '../../test/e2e/lib/sgio.js';

const N = Number(process.env['PRH_BENCH_N'] ?? 1000);
const ROUNDS = Number(process.env['PRH_BENCH_ROUNDS'] ?? 3);
const WARMUP = 20;
const cdb = prInCdb({ sa: 0, allocationLength: 1024 });

function stats(samples: number[]): { median: number; p90: number; p99: number } {
  return { median: percentile(samples, 0.5), p90: percentile(samples, 0.9), p99: percentile(samples, 0.99) };
}

async function time(fn: () => unknown): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return out;
}

async function main(): Promise<void> {
  const skip = skipReason(1);
  if (skip) {
    console.log(`overhead benchmark skipped: ${skip}`);
    return;
  }
  const disk = E2E.disks[0] ?? '';
  resetDisk();
  const fd = openSync(disk, constants.O_RDWR);
  const sg = new DirectSgIo();
  const reg = sg.run(fd, prOutCdb({ sa: 0, paramLength: 24 }), { params: prOutParams({ saKey: 0xbe1n }) });
  if (reg.status !== 0) throw new Error(`REGISTER failed: ${reg.status}`);
  const ours = await PrClient.connect((await ourHelper()).socketPath);
  const c = await PrClient.connect((await referenceHelper()).socketPath);
  const check = (status: number, size: number): void => {
    if (status !== 0 || size !== 16) throw new Error(`unexpected READ KEYS answer: status ${status} size ${size}`);
  };
  const all: Record<'direct' | 'ours' | 'C', number[]> = { direct: [], ours: [], C: [] };
  console.log(`# READ KEYS (1 key registered) on ${disk}: ${ROUNDS} rounds x ${N} calls each, ${WARMUP} warm-up calls; times in µs`);
  for (let round = 1; round <= ROUNDS; round++) {
    const r = {
      direct: await time(() => { const x = sg.run(fd, cdb, { allocation: 1024 }); check(x.status, x.data.length); }),
      ours: await time(async () => { const x = await ours.request(cdb, fd); check(x.status, x.size); }),
      C: await time(async () => { const x = await c.request(cdb, fd); check(x.status, x.size); }),
    };
    const line = (Object.keys(r) as (keyof typeof r)[]).map((k) => {
      all[k].push(...r[k]);
      const s = stats(r[k]);
      return `${k} median ${s.median.toFixed(0)} p90 ${s.p90.toFixed(0)}`;
    });
    console.log(`# round ${round}: ${line.join(' | ')}`);
  }
  const d = stats(all.direct);
  const o = stats(all.ours);
  const h = stats(all.C);
  console.log('# overall (all rounds):');
  for (const [k, s] of [['direct SG_IO', d], ['our helper', o], ['C helper', h]] as const) {
    console.log(`#   ${k.padEnd(13)} median ${s.median.toFixed(0).padStart(6)} µs  p90 ${s.p90.toFixed(0).padStart(6)} µs  p99 ${s.p99.toFixed(0).padStart(6)} µs`);
  }
  console.log(`# ratios (medians): ours/direct ${(o.median / d.median).toFixed(2)}x, C/direct ${(h.median / d.median).toFixed(2)}x, ours/C ${(o.median / h.median).toFixed(2)}x`);
  console.log(`# helper cost per call (median - direct median): ours ${(o.median - d.median).toFixed(0)} µs, C ${(h.median - d.median).toFixed(0)} µs`);
  ours.close();
  c.close();
  sg.free();
  closeSync(fd);
  resetDisk();
  await stopHelpers();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
