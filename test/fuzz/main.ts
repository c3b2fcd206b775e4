/**
 * `npm run fuzz -- --count N [--seed S] [--concurrency C]`: a long socket-fuzzer run against
 * a fresh helper, printing progress with the helper's fd count and RSS, and exiting 1 on the
 * first finding (its seed replays it) or on fd growth.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { FdKit, fuzz } from './socket-fuzzer.js';
import { startHelper, warmBaseline, idleFdCount } from '../support/launcher.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '16' },
  },
});

async function main(): Promise<number> {
  const helper = await startHelper();
  const kit = new FdKit();
  const rss = (): string => `${(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${helper.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024).toFixed(1)} MB`;
  const t0 = Date.now();
  try {
    const baseline = await warmBaseline(helper);
    console.log(`helper pid ${helper.pid}: ${baseline} fds, RSS ${rss()}`);
    const totals = await fuzz(helper.socketPath, {
      count: Number(values.count),
      firstSeed: Number(values.seed),
      concurrency: Number(values.concurrency),
      kit,
      onProgress: (done, t) => {
        if (done % 10000 === 0) console.log(`${done} cases, ${t.responses} responses, ${t.closes} closes, fds ${helper.fdCount()}, RSS ${rss()}, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      },
    });
    const fds = await idleFdCount(helper);
    console.log(`done: ${values.count} cases in ${((Date.now() - t0) / 1000).toFixed(0)} s, ${totals.responses} responses, ${totals.closes} closes; 0 findings; fds ${baseline} -> ${fds}; RSS ${rss()}`);
    return fds === baseline ? 0 : 1;
  } catch (error) {
    console.error(String(error));
    return 1;
  } finally {
    kit.close();
    const code = await helper.stop();
    if (code !== 0) console.error(`helper exited with ${code}`);
    helper.cleanup();
  }
}

process.exitCode = await main();
