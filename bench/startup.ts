/**
 * Start-up benchmark (issue 16): spawn → first completed handshake of this helper, against
 * spawn → exit of a bare `node -e 0` (the floor any Node program pays) and, when installed,
 * QEMU's C helper, interleaved in one run so that all three see the same machine.
 *
 * usage: npm run bench:startup [-- --runs N --helper PATH --baseline PATH --node PATH --no-c]
 * Prints each one's median, quartiles and minimum, and ours / bare node.
 * Run as root: that is the start libvirt makes, with the privilege drop's re-exec.
 * --node: the Node to compare with (default: the one `command -v node` finds, as the
 * helper's launcher does); --helper: another build's bin/qemu-pr-helper; --baseline:
 * one more build's, timed in the same rounds (e.g. the build before a change).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { BENCH_RETRY_MS, OUR_HELPER, REFERENCE_HELPER, startHelper } from '../test/support/launcher.js';
import { median, percentile } from '../test/support/stats.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '15' },
    helper: { type: 'string', default: OUR_HELPER },
    node: { type: 'string' },
    baseline: { type: 'string' },
    'no-c': { type: 'boolean', default: false },
  },
});
const RUNS = Number(values.runs);
const nodePath = values.node ?? execFileSync('/bin/sh', ['-c', 'command -v node'], { encoding: 'utf8' }).trim();

/** spawn → exit of `node -e 0`, in ms. */
function bareNode(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(nodePath, ['-e', '0'], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', () => resolve(Number(process.hrtime.bigint() - t0) / 1e6));
  });
}

/** spawn → first handshake of a helper, in ms; then it is stopped. */
async function helper(binary: string): Promise<number> {
  const h = await startHelper({ binary }, BENCH_RETRY_MS);
  await h.stop();
  h.cleanup();
  return h.startupMs;
}

async function main(): Promise<void> {
  const withC = !values['no-c'] && existsSync(REFERENCE_HELPER);
  const baseline = values.baseline;
  const samples: Record<string, number[]> = {
    'node -e 0': [], ours: [], ...(baseline === undefined ? {} : { baseline: [] }), ...(withC ? { C: [] } : {}),
  };
  const runners: Record<string, () => Promise<number>> = {
    'node -e 0': bareNode,
    ours: () => helper(values.helper),
    baseline: () => helper(baseline ?? values.helper),
    C: () => helper(REFERENCE_HELPER),
  };
  // One warm-up of each (page cache), not counted.
  for (const name of Object.keys(samples)) await runners[name]?.();
  const names = Object.keys(samples);
  for (let i = 0; i < RUNS; i++) {
    // Rotate the order so that none always runs first.
    for (let j = 0; j < names.length; j++) {
      const name = names[(i + j) % names.length] ?? '';
      samples[name]?.push(await runners[name]?.() ?? NaN);
    }
  }
  const fmt = (x: number): string => x.toFixed(1).padStart(8);
  console.log(`start-up, ${RUNS} runs each, interleaved (ms); node: ${nodePath} ${process.version}, uid ${process.getuid?.()}`);
  console.log(`${'what'.padEnd(10)} ${'median'.padStart(8)} ${'p25'.padStart(8)} ${'p75'.padStart(8)} ${'min'.padStart(8)}`);
  for (const [name, s] of Object.entries(samples)) {
    console.log(`${name.padEnd(10)} ${fmt(median(s))} ${fmt(percentile(s, 0.25))} ${fmt(percentile(s, 0.75))} ${fmt(Math.min(...s))}`);
  }
  const bare = median(samples['node -e 0'] ?? []);
  console.log(`ours / node -e 0: ${(median(samples['ours'] ?? []) / bare).toFixed(2)} (target <= 1.3)`);
  if (baseline !== undefined) console.log(`baseline / node -e 0: ${(median(samples['baseline'] ?? []) / bare).toFixed(2)}`);
  if (withC) console.log(`ours / C: ${(median(samples['ours'] ?? []) / median(samples['C'] ?? [])).toFixed(1)}`);
}

void main();
