/**
 * `npm run fuzz -- --count N [--seed S] [--concurrency C] [--minutes M] [--enable-cleanup]`: a long
 * socket-fuzzer run against a fresh helper, printing progress with the helper's fd count and
 * RSS, and exiting 1 on the first finding (its seed replays it) or on fd growth. With
 * --minutes it is a soak: batches of --count cases (connect/disconnect churn, valid and
 * invalid sessions) until the time is up, with the idle fd count and RSS after each batch.
 * --enable-cleanup starts the helper with that option (features 1, opcode 0xFF valid).
 */
import { parseArgs } from 'node:util';
import { FdKit, fuzz } from './socket-fuzzer.js';
import { startHelper, warmBaseline, idleFdCount } from '../support/launcher.js';
import { rssMb } from '../support/proc.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '16' },
    minutes: { type: 'string', default: '0' },
    'enable-cleanup': { type: 'boolean', default: false },
  },
});

async function main(): Promise<number> {
  const features = values['enable-cleanup'] ? 1 : 0;
  const helper = await startHelper({ extraArgs: features ? ['--enable-cleanup'] : [] });
  const kit = new FdKit();
  const rss = (): string => `${rssMb(helper.pid).toFixed(1)} MB`;
  const t0 = Date.now();
  try {
    const baseline = await warmBaseline(helper);
    console.log(`helper pid ${helper.pid}: ${baseline} fds, RSS ${rss()}`);
    const count = Number(values.count);
    const deadline = t0 + Number(values.minutes) * 60_000;
    const totals = { responses: 0, closes: 0 };
    let cases = 0;
    let seed = Number(values.seed);
    do {
      const batch = await fuzz(helper.socketPath, {
        count,
        firstSeed: seed,
        concurrency: Number(values.concurrency),
        kit,
        features,
        onProgress: (done, t) => {
          if (done % 10000 === 0 && Number(values.minutes) === 0) console.log(`${done} cases, ${t.responses} responses, ${t.closes} closes, fds ${helper.fdCount()}, RSS ${rss()}, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
        },
      });
      seed += count;
      cases += count;
      totals.responses += batch.responses;
      totals.closes += batch.closes;
      if (Number(values.minutes) > 0) {
        console.log(`${((Date.now() - t0) / 60_000).toFixed(1)} min: ${cases} cases, idle fds ${await idleFdCount(helper)}, RSS ${rss()}`);
      }
    } while (Date.now() < deadline);
    const fds = await idleFdCount(helper);
    console.log(`done: ${cases} cases in ${((Date.now() - t0) / 1000).toFixed(0)} s, ${totals.responses} responses, ${totals.closes} closes; 0 findings; fds ${baseline} -> ${fds}; RSS ${rss()}`);
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
