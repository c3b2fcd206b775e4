/**
 * Shutdown with a request that never returns (src/images/serve.ts): on SIGTERM the helper stops
 * accepting and answers what is executing, but a request still executing after the SG_IO
 * timeout (--io-timeout) plus 5 s makes it print
 * `Exiting with N request(s) still executing after the I/O timeout` and exit 0 at once.
 *
 * One helper of our own, --io-timeout=2. The hung device is the one stall.test.ts builds: a
 * dm-multipath map with queue_if_no_path over scsi_debug, its only path failed, on which
 * SG_IO retries in the kernel every 10 ms and ignores the SG_IO timeout. One connection's
 * PR IN to the map is inside ioctl(SG_IO); another connection's READ KEYS to the LIO disk
 * has been read by the helper (its fd is in the helper's fd table, read by the second
 * fast-path worker while the first hangs, or waiting for a spare thread, seconds under
 * TCG) when SIGTERM comes. That request must still be answered; then, 2 + 5 s after SIGTERM, the helper exits
 * 0 with "1 request(s)" on stderr, its socket path gone, the hung connection closed unanswered.
 * The hung ioctl dies with the process (exit_group's SIGKILL ends dm's retry loop), so
 * the map can be removed afterwards.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants, existsSync, openSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { PrClient } from '../support/client.js';
import { prInCdb, type Response } from '../support/builders.js';
import { startHelper, type Helper } from '../support/launcher.js';
import { E2E, skipReason, log } from './lib/env.js';
import { HangingDevice, inSgIo, sh, sleep } from './lib/slow-device.js';
import { PR_IN, STATUS, parseReadKeys, senseTriple } from './lib/pr.js';

const skip = skipReason(2);
const IO_TIMEOUT_S = 2;
/** src/images/serve.ts SHUTDOWN_GRACE_MS */
const GRACE_MS = 5000;
/** Timer and process-exit slack below IO_TIMEOUT + GRACE; the upper bound on the exit. */
const EARLY_SLACK_MS = 500;
const LATE_MS = 20_000;
const MAP = 'prh-e2e-shutdown';
const SOCKET = '/tmp/prh-e2e-shutdown.sock';

const MESSAGE = 'qemu-pr-helper: Exiting with 1 request(s) still executing after the I/O timeout';




/** Whether `pid` holds a descriptor of `path` (a request carrying it has been received). */
function holdsFd(pid: number, path: string): boolean {
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === path) return true;
      } catch {
        // closed while we looked
      }
    }
  } catch {
    // the process is gone
  }
  return false;
}




type Outcome = { kind: 'answer'; response: Response; at: number } | { kind: 'error'; error: unknown; at: number };

describe('shutdown gives up on a request that never returns (own helper, --io-timeout=2, dm-multipath with no path)', { skip }, () => {
  let helper: Helper | null = null;
  const device = new HangingDevice(MAP);
  const fds: number[] = [];
  const clients: PrClient[] = [];

  after(async () => {
    for (const c of clients.splice(0)) c.close();
    // Nothing may stay queued in the map: fail what still waits, so that it can be removed.
    device.release();
    if (helper !== null) {
      const h = helper;
      helper = null;
      const code = await Promise.race([h.stop('SIGTERM'), sleep(15_000).then(() => 'timeout')]);
      if (code === 'timeout') {
        h.child.kill('SIGKILL');
        await Promise.race([h.exited, sleep(5000)]);
      }
      h.cleanup();
    }
    for (const fd of fds.splice(0)) closeSync(fd);
    rmSync(SOCKET, { force: true });
    device.remove();
    assert.equal(device.mapCreated, false, `device-mapper map ${MAP} removed`);
    assert.equal(device.loadedScsiDebug, false, 'scsi_debug unloaded');
  });


  test(`SIGTERM with one PR IN hung in SG_IO: exit 0 after ${IO_TIMEOUT_S} + ${GRACE_MS / 1000} s, a request read before it still answered`, { timeout: 120_000 }, async (t) => {
    const dev = await device.create('hanging device');
    if ('why' in dev) {
      log(`skipped: the hanging device cannot be created: ${dev.why}`);
      t.skip(`the hanging device cannot be created: ${dev.why}`);
      return;
    }
    const fastDisk = E2E.disks[0] ?? '';
    const slowFd = openSync(dev.path, constants.O_RDWR);
    fds.push(slowFd);
    const warmFd = openSync(fastDisk, constants.O_RDWR);
    fds.push(warmFd);

    rmSync(SOCKET, { force: true });
    helper = await startHelper({ args: ['-k', SOCKET, `--io-timeout=${IO_TIMEOUT_S}`], socketPath: SOCKET, timeoutMs: 60_000 });
    const h = helper;
    const pid = h.pid;
    const readKeys = prInCdb({ sa: PR_IN.READ_KEYS, allocationLength: 1024 });

    const slow = await PrClient.connect(SOCKET);
    clients.push(slow);
    const fast = await PrClient.connect(SOCKET);
    clients.push(fast);
    // with its path the map answers at once (scsi_debug's CHECK CONDITION for PR IN), and
    // the LIO disk too: the helper's first SG_IO thread has loaded
    slow.send(readKeys, [slowFd]);
    const direct = await slow.readResponse(30_000);
    assert.equal(direct.status, STATUS.CHECK_CONDITION, 'PR IN on the map with its path: scsi_debug rejects it');
    fast.send(readKeys, [warmFd]);
    const warm = await fast.readResponse(30_000);
    assert.equal(warm.status, STATUS.GOOD, 'READ KEYS on the LIO disk');
    closeSync(warmFd);
    fds.splice(fds.indexOf(warmFd), 1);
    assert.ok(!holdsFd(pid, fastDisk), `the helper holds no fd of ${fastDisk} between requests`);

    // no usable path: SG_IO on the map now blocks in the kernel for good
    sh('dmsetup', ['message', MAP, '0', 'fail_path', dev.majmin]);
    const t0 = performance.now();
    const since = (): number => performance.now() - t0;
    const slowOutcome: Promise<Outcome> = (async () => {
      slow.send(readKeys, [slowFd]);
      try {
        return { kind: 'answer', response: await slow.readResponse(120_000), at: since() };
      } catch (error) {
        return { kind: 'error', error, at: since() };
      }
    })();
    while (inSgIo(pid) < 1) {
      if (since() > 30_000) assert.fail('the PR IN on the map is not inside SG_IO after 30 s');
      await sleep(20);
    }
    const hungAt = since();

    // another connection's READ KEYS to the LIO disk, on a fresh fd: SIGTERM once the helper
    // has received it (that fd is in its table) or answered it
    const fastFd = openSync(fastDisk, constants.O_RDWR);
    fds.push(fastFd);
    const sentAt = since();
    const fastOutcome: Promise<Outcome> = (async () => {
      fast.send(readKeys, [fastFd]);
      try {
        return { kind: 'answer', response: await fast.readResponse(30_000), at: since() };
      } catch (error) {
        return { kind: 'error', error, at: since() };
      }
    })();
    let fastSettled = false;
    void fastOutcome.then(() => {
      fastSettled = true;
    });
    while (!holdsFd(pid, fastDisk) && !fastSettled) {
      if (since() - sentAt > 10_000) assert.fail(`the helper did not receive the READ KEYS on ${fastDisk} within 10 s`);
      await sleep(1);
    }
    const receivedAt = since();
    const answeredBeforeSigterm = fastSettled;

    const sigtermAt = since();
    const code = await Promise.race([h.stop('SIGTERM'), sleep(LATE_MS + 10_000).then(() => 'timeout')]);
    const exitedAt = since();
    const delay = exitedAt - sigtermAt;
    if (code === 'timeout') h.child.kill('SIGKILL');
    helper = null;
    // 'exit' can come before the last of the stderr pipe has been read
    const pipe = h.child.stderr;
    if (pipe !== null && !pipe.readableEnded && !pipe.destroyed) {
      await Promise.race([new Promise((r) => pipe.once('close', r)), sleep(2000)]);
    }
    const stderr = h.stderr();
    const socketLeft = existsSync(SOCKET);
    h.cleanup();
    const fastResult = await fastOutcome;
    const slowResult = await Promise.race([slowOutcome, sleep(10_000).then((): null => null)]);

    const show = (o: Outcome | null): string => o === null ? 'still waiting'
      : o.kind === 'answer' ? `status ${o.response.status} sense ${senseTriple(o.response.sense).map((b) => b.toString(16)).join('/')} at ${o.at.toFixed(0)} ms`
        : `${String(o.error)} at ${o.at.toFixed(0)} ms`;
    log(`PR IN on ${dev.path} inside SG_IO at ${hungAt.toFixed(0)} ms; READ KEYS on ${fastDisk} sent at ${sentAt.toFixed(0)} ms, `
      + `${answeredBeforeSigterm ? 'answered' : 'received by the helper'} at ${receivedAt.toFixed(0)} ms`);
    log(`SIGTERM at ${sigtermAt.toFixed(0)} ms; the helper exited ${String(code)} ${delay.toFixed(0)} ms later `
      + `(expected ${IO_TIMEOUT_S * 1000 + GRACE_MS} ms); stderr: ${stderr.trim().split('\n').join(' | ')}`);
    log(`READ KEYS on the LIO disk: ${show(fastResult)}; hung PR IN: ${show(slowResult)}`);

    assert.equal(code, 0, 'exit status after SIGTERM');
    assert.ok(delay >= IO_TIMEOUT_S * 1000 + GRACE_MS - EARLY_SLACK_MS,
      `exited ${delay.toFixed(0)} ms after SIGTERM: not before the I/O timeout plus the grace period (${IO_TIMEOUT_S * 1000 + GRACE_MS} ms)`);
    assert.ok(delay < LATE_MS, `exited ${delay.toFixed(0)} ms after SIGTERM (bound ${LATE_MS} ms)`);
    assert.ok(stderr.includes(MESSAGE), `stderr has "${MESSAGE}": ${JSON.stringify(stderr)}`);
    assert.equal(socketLeft, false, `socket path ${SOCKET} removed`);
    assert.equal(fastResult.kind, 'answer', `the READ KEYS received before SIGTERM was answered: ${show(fastResult)}`);
    if (fastResult.kind === 'answer') {
      assert.equal(fastResult.response.status, STATUS.GOOD, 'READ KEYS on the LIO disk: status');
      parseReadKeys(fastResult.response.data);
      assert.ok(fastResult.at < exitedAt, 'answered before the helper exited');
    }
    assert.ok(slowResult !== null && slowResult.kind === 'error', `the hung PR IN got no answer, its connection closed: ${show(slowResult)}`);
  });
});
