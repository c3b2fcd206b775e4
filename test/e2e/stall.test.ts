/**
 * A device that hangs does not hold up other connections. One helper of our own (so the shared
 * instance is unaffected) gets K connections whose PR IN hangs inside ioctl(SG_IO) for
 * SLOW_MS, and meanwhile a series of PR IN READ KEYS to the fast LIO disk on another
 * connection, which must all complete quickly and before the slow device answers: the
 * fast path (src/server/fast-path.ts) replaces stuck workers, so the stuck commands hold
 * only their own threads.
 *
 * The slow device is a dm-multipath map (dmsetup, no multipathd) with queue_if_no_path over
 * a scsi_debug disk, its only path failed. SG_IO on a dm device is passed to the current
 * path; with no usable path and queue_if_no_path the kernel retries every 10 ms
 * (dm_prepare_ioctl, -ENOTCONN) until a path returns, so the ioctl blocks in the kernel
 * exactly as long as the test wants: the path is reinstated SLOW_MS after all K are inside
 * SG_IO (seen in each thread's /proc syscall file), by a timer independent of the fast
 * series, and the commands then reach scsi_debug, which answers PERSISTENT RESERVE IN with
 * CHECK CONDITION, INVALID COMMAND OPERATION CODE.
 * What a hang costs the others is measured, not assumed zero: the first fast request may
 * wait for a stuck worker to be noticed (two checks 50 ms apart) and a new one to load
 * (1-2.6 s under TCG, where a worker_thread loading koffi is slow), if all were taken by
 * the hung commands; it must stay far below the hang
 * (SLOW_MS / 2), every later one below FAST_MAX_MS, and all before the device comes back.
 * (scsi_debug alone cannot make PR IN slow: it answers unknown opcodes at once, ignoring its
 * `delay` and timeout injection; measured in the guest of Debian's 6.1 kernel.)
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { PrClient } from '../support/client.js';
import { prInCdb, type Response } from '../support/builders.js';
import { startHelper, type Helper } from '../support/launcher.js';
import { threadCount } from '../support/proc.js';
import { percentile } from '../support/stats.js';
import { E2E, skipReason, log, stopLogged } from './lib/env.js';
import { HangingDevice, SDEBUG, inSgIo, sh, sleep } from './lib/slow-device.js';
import { PR_IN, STATUS, hex, parseReadKeys, senseTriple } from './lib/pr.js';

const run = promisify(execFile);

const skip = skipReason(2);
/** Connections whose command hangs. */
const K = 3;
/** How long the slow device holds them. */
const SLOW_MS = 10_000;
/** Fast requests sent while they hang, and the bound on each one's latency (TCG). */
const FAST_N = 20;
const FAST_MAX_MS = 1500;
const MAP = 'prh-e2e-stall';
const SOCKET = '/tmp/prh-e2e-stall.sock';






/** One request; the helper's first answer may wait for its SG_IO thread to load (seconds under TCG). */
async function ask(client: PrClient, fd: number, cdb: Uint8Array): Promise<Response> {
  client.send(cdb, [fd]);
  return client.readResponse(30_000);
}





describe('a hanging device does not delay other connections (own helper, dm-multipath with no path over scsi_debug)', { skip }, () => {
  let helper: Helper | null = null;
  const device = new HangingDevice(MAP);
  const fds: number[] = [];
  const clients: PrClient[] = [];

  after(async () => {
    for (const c of clients) c.close();
    // Whatever happened, nothing may stay queued in the map: fail what still waits.
    device.release();
    if (helper !== null) {
      const h = helper;
      const code = await Promise.race([h.stop('SIGTERM'), sleep(10_000).then(() => 'timeout')]);
      if (code === 'timeout') h.child.kill('SIGKILL');
      h.cleanup();
    }
    for (const fd of fds.splice(0)) closeSync(fd);
    device.remove();
    assert.ok(!existsSync(SDEBUG) || !device.loadedScsiDebug, 'scsi_debug unloaded');
  });


  test(`${K} connections hang ${SLOW_MS / 1000} s in SG_IO; ${FAST_N} READ KEYS to the LIO disk on another connection stay fast`, { timeout: 120_000 }, async (t) => {
    const slow = await device.create('slow device');
    if ('why' in slow) {
      log(`skipped: the slow device cannot be created: ${slow.why}`);
      t.skip(`the slow device cannot be created: ${slow.why}`);
      return;
    }
    const slowFd = openSync(slow.path, constants.O_RDWR);
    fds.push(slowFd);
    const fastFd = openSync(E2E.disks[0] ?? '', constants.O_RDWR);
    fds.push(fastFd);
    const majmin = slow.majmin;

    rmSync(SOCKET, { force: true });
    helper = await startHelper({ args: ['-k', SOCKET, '--io-timeout=8'], socketPath: SOCKET, timeoutMs: 60_000 });
    const pid = helper.pid;
    const readKeys = prInCdb({ sa: PR_IN.READ_KEYS, allocationLength: 1024 });

    const fast = await PrClient.connect(SOCKET);
    clients.push(fast);
    // the path works: the map answers at once with what scsi_debug says to PR IN
    const t00 = performance.now();
    const direct = await ask(fast, slowFd, readKeys);
    const directMs = performance.now() - t00;
    const warm = await ask(fast, fastFd, readKeys);
    assert.equal(warm.status, STATUS.GOOD, 'READ KEYS on the LIO disk');
    const threadsIdle = threadCount(pid);
    log(`with its path: PR IN on ${slow.path} -> status ${direct.status} sense ${senseTriple(direct.sense).map((b) => b.toString(16)).join('/')} in ${directMs.toFixed(0)} ms; helper threads idle: ${threadsIdle}`);

    // no usable path: SG_IO on the map now blocks in the kernel until the path returns
    sh('dmsetup', ['message', MAP, '0', 'fail_path', majmin]);
    const slowClients = await Promise.all(Array.from({ length: K }, () => PrClient.connect(SOCKET)));
    clients.push(...slowClients);
    const sentAt = performance.now();
    const since = (): number => performance.now() - sentAt;
    const slowDone: number[] = [];
    let answered = 0;
    const slowAnswers = slowClients.map(async (c, i) => {
      c.send(readKeys, [slowFd]);
      const r = await c.readResponse(120_000);
      slowDone[i] = since();
      answered++;
      return r;
    });
    // wait until all K are inside ioctl(SG_IO), each on a thread of its own (the two
    // workers at once, then one more per stuck worker noticed, each after it has loaded)
    for (;;) {
      if (inSgIo(pid) >= K) break;
      if (since() > 60_000) assert.fail(`only ${inSgIo(pid)} of ${K} hung commands are inside SG_IO after 60 s (helper threads: ${threadCount(pid)})`);
      await sleep(20);
    }
    const hungAt = since();
    const threadsHung = threadCount(pid);
    // the device comes back SLOW_MS later, whatever the fast series is doing
    let releasedAt = Infinity;
    const release = sleep(SLOW_MS).then(async () => {
      releasedAt = since();
      await run('dmsetup', ['message', MAP, '0', 'reinstate_path', majmin]);
    });

    const lat: number[] = [];
    const fastStart = since();
    for (let i = 0; i < FAST_N; i++) {
      const t0 = performance.now();
      const r = await ask(fast, fastFd, readKeys);
      lat.push(performance.now() - t0);
      assert.equal(r.status, STATUS.GOOD, `fast READ KEYS #${i}: status`);
      parseReadKeys(r.data);
      // Served by a fast-path worker (K other connections are open), which answers from
      // views of its SG_IO area and one reused response buffer: the same bytes as the
      // warm-up's answer on the main thread, where both are copies.
      assert.deepEqual(r.data, warm.data, `fast READ KEYS #${i}: data as the main thread's answer`);
    }
    const fastEnd = since();
    const answeredDuringFast = answered;
    const threadsPeak = threadCount(pid);
    const hungAfterFast = inSgIo(pid);

    const answers: Response[] = await Promise.all(slowAnswers);
    await release;
    const threadsAfter = threadCount(pid);

    const rest = lat.slice(1).sort((a, b) => a - b);
    const first = lat[0] ?? NaN;
    const median = percentile(rest, 0.5);
    const max = rest[rest.length - 1] ?? NaN;
    log(`hang: ${K} PR IN on ${slow.path} all inside SG_IO ${hungAt.toFixed(0)} ms after they were sent; helper threads ${threadsIdle} idle -> ${threadsHung}`);
    log(`fast: ${FAST_N} READ KEYS on ${E2E.disks[0]} from ${fastStart.toFixed(0)} to ${fastEnd.toFixed(0)} ms (the path returned at ${(hungAt + SLOW_MS).toFixed(0)}): `
      + `first ${first.toFixed(1)} ms (waits for a new SG_IO thread), the other ${rest.length}: median ${median.toFixed(1)} ms, p90 ${percentile(rest, 0.9).toFixed(1)} ms, max ${max.toFixed(1)} ms; `
      + `all: ${lat.map((l) => l.toFixed(0)).join(' ')}`);
    log(`slow: path reinstated at ${releasedAt.toFixed(0)} ms; the ${K} answers came at ${slowDone.map((d) => d.toFixed(0)).join(', ')} ms: `
      + answers.map((a) => `status ${a.status} sense ${senseTriple(a.sense).map((b) => b.toString(16)).join('/')}`).join('; ')
      + ` (${hex(answers[0]?.sense.slice(0, 18) ?? new Uint8Array(0))})`);
    log(`helper threads (/proc/${pid}/status): idle ${threadsIdle}, ${K} hung ${threadsHung}, after the fast series ${threadsPeak} (still inside SG_IO: ${hungAfterFast}), after all answers ${threadsAfter}`);

    assert.equal(answeredDuringFast, 0, 'no slow command answered while the fast series ran');
    assert.equal(hungAfterFast, K, 'the hung commands were still inside SG_IO when the fast series ended');
    assert.ok(first < SLOW_MS / 2, `the first fast READ KEYS took ${first.toFixed(0)} ms: one thread start, not the hang (${SLOW_MS} ms)`);
    for (const [i, l] of lat.entries()) {
      if (i > 0) assert.ok(l < FAST_MAX_MS, `fast READ KEYS #${i} took ${l.toFixed(0)} ms (bound ${FAST_MAX_MS})`);
    }
    assert.ok(fastEnd < releasedAt, `the fast series ended (${fastEnd.toFixed(0)} ms) before the slow device came back (${releasedAt.toFixed(0)} ms)`);
    for (const [i, d] of slowDone.entries()) {
      assert.ok(d >= releasedAt - 50, `slow #${i} answered at ${d.toFixed(0)} ms, not before the path returned (${releasedAt.toFixed(0)} ms)`);
    }
    for (const a of answers) {
      // the same defined answer as with the path up: scsi_debug's own CHECK CONDITION
      assert.equal(a.status, direct.status, 'slow answer: status as with the path up');
      assert.deepEqual(a.sense, direct.sense, 'slow answer: sense as with the path up');
    }
    assert.ok(threadsPeak >= threadsIdle + K, `the pool grew: ${threadsIdle} -> ${threadsPeak} threads (one per hung command plus one for the fast series)`);
    assert.equal(direct.status, STATUS.CHECK_CONDITION);
    assert.deepEqual(senseTriple(direct.sense), [0x5, 0x20, 0x00], 'scsi_debug: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE');
    assert.ok(threadsPeak >= threadsIdle + K, `the pool grew: ${threadsIdle} -> ${threadsPeak} threads (at least one per hung command plus one for the fast series)`);

    // everything answered: the helper stops cleanly
    for (const c of clients.splice(0)) c.close();
    const h = helper;
    helper = null;
    const code = await stopLogged(h, 10_000);
    assert.equal(code, 0, 'helper exit status after SIGTERM');
  });
});
