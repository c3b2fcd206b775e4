/**
 * Threads on demand, in this process with real sockets and real SCM_RIGHTS (short idle
 * times, which the helper's command line does not offer):
 * - the SG_IO pool's threadpool lane (src/exec/sgio-pool.ts, docs/internals.md#the-threadpool-lane):
 *   sequential jobs start no thread of ours; a job that finds the lane busy goes to a
 *   thread, started then, which stays while the lane is stuck and leaves when idle; every
 *   fd given to the pool is closed;
 * - the fast path (src/server/fast-path.ts): no worker while one connection is open,
 *   workers once a second one is, connections handed back when they leave, and back again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SgIoPool, DEFAULT_POOL_OPTIONS } from '../../src/exec/sgio-pool.js';
import { SgIoExecutor, DEFAULT_SGIO_TIMEOUT_MS } from '../../src/exec/sgio-executor.js';
import { FastPath, DEFAULT_FAST_PATH_OPTIONS } from '../../src/server/fast-path.js';
import { Server } from '../../src/server/server.js';
import { listenOnPath } from '../../src/server/listener.js';
import { Logger } from '../../src/log/logger.js';
import { DEFAULT_FEATURES } from '../../src/protocol/constants.js';
import { isOpenFd } from '../../src/sys/fd.js';
import { libc } from '../../src/sys/libc.js';
import { PrClient } from '../support/client.js';
import { lingeringSocket } from '../support/lingering.js';
import { pollUntil, tempDir } from '../support/launcher.js';
import { prInCdb, prOutCdb, prOutParams } from '../support/builders.js';

const READ_KEYS = prInCdb({ sa: 0, allocationLength: 8 });
const COMMAND = { cdb: READ_KEYS.subarray(0, 10), direction: 'from-device' as const, transferLength: 8192, timeoutMs: 1000 };
/** How long a lingering close holds the lane. */
const LINGER_S = 2;

let devNull: number;

before(() => {
  devNull = openSync('/dev/null', 'r');
});

after(() => {
  closeSync(devNull);
});

/** A new fd for /dev/null, for the pool to own. */
function devNullCopy(): number {
  const fd = openSync('/dev/null', 'r');
  assert.ok(fd > 2);
  return fd;
}

/** What fd `fd` of this process is now ('socket:[inode]'), or null when it is closed. */
function target(fd: number): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}

/** A lingering socket's fd whose close (by whoever holds the last reference) blocks LINGER_S. */
async function lingeringFd(): Promise<{ fd: number; closed: () => boolean; dispose: () => Promise<void> }> {
  const lingering = await lingeringSocket(LINGER_S);
  const fd = libc.fcntl(lingering.fd, 1030 /* F_DUPFD_CLOEXEC */, 3);
  assert.ok(fd > 2);
  lingering.drop(); // ours is now the last reference
  const socket = target(fd);
  // The number may be reused once closed: closed means it no longer names that socket.
  return { fd, closed: () => target(fd) !== socket, dispose: () => lingering.dispose() };
}

/** Gives the pool `fd` to close (a lingering one holds the lane): whether its close is still running, and its end. */
function holdLane(pool: SgIoPool, fd: number): { holding: Promise<void>; held: () => boolean } {
  let held = true;
  const holding = pool.release(fd).then(() => {
    held = false;
  });
  return { holding, held: () => held };
}

test('the lane: 200 sequential SG_IO-then-close and close jobs start no thread, and close every fd', async () => {
  const pool = new SgIoPool({ ...DEFAULT_POOL_OPTIONS, lazy: true, threadpool: true });
  const fdsBefore = readdirSync('/proc/self/fd').length;
  try {
    for (let i = 0; i < 100; i++) {
      const fd = devNullCopy();
      const result = await pool.runAndRelease(fd, COMMAND);
      assert.equal(result.error, 'ENOTTY', 'SG_IO on /dev/null');
      // The answer comes first, the close right after it on the lane, ahead of the next job.
      const other = devNullCopy();
      await pool.release(other);
      assert.equal(readdirSync('/proc/self/fd').length, fdsBefore, 'both closed once the next job is done');
    }
    assert.equal(pool.threadCount, 0, 'no thread of ours');
    assert.equal(pool.inFlight, 0);
    assert.equal(readdirSync('/proc/self/fd').length, fdsBefore, 'no fd left open');
  } finally {
    pool.close();
  }
});

test('the lane busy with a close that blocks: the next job waits until it is stuck, then goes to a thread started for it, and is answered meanwhile', async () => {
  const pool = new SgIoPool({ ...DEFAULT_POOL_OPTIONS, lazy: true, threadpool: true, idleMs: 1000 });
  const lingering = await lingeringFd();
  try {
    const { holding, held } = holdLane(pool, lingering.fd);
    assert.equal(pool.laneBusy, true);
    const fd = devNullCopy();
    const result = await pool.runAndRelease(fd, COMMAND);
    assert.equal(result.error, 'ENOTTY');
    assert.equal(isOpenFd(fd), false);
    assert.equal(held(), true, 'answered while the lane still blocks');
    assert.equal(pool.threadCount, 1, 'one thread, started for it');
    await holding;
    assert.equal(lingering.closed(), true, 'the lingering fd is closed once its close returns');
    // The lane is free again: jobs go there, and the idle thread leaves (idleMs).
    const again = devNullCopy();
    assert.equal((await pool.runAndRelease(again, COMMAND)).error, 'ENOTTY');
    await pollUntil(() => pool.threadCount === 0, 'the idle thread to leave', 10_000);
  } finally {
    pool.close();
    await lingering.dispose();
  }
});

test('SG_IO on the lane is answered before its fd is closed; a close that then blocks holds the next job only until it is stuck', async () => {
  const stallMs = 50;
  const pool = new SgIoPool({ ...DEFAULT_POOL_OPTIONS, lazy: true, threadpool: true, idleMs: 1000, stallMs });
  const lingering = await lingeringFd();
  try {
    const result = await pool.runAndRelease(lingering.fd, COMMAND);
    assert.equal(result.error, 'ENOTTY', 'SG_IO on a socket');
    // (closed() turns true as soon as close(2) has started: the fd leaves the table first.)
    assert.equal(pool.laneBusy, true, 'answered with its close on the lane');
    assert.equal(pool.inFlight, 0, 'a close is not a request');
    const started = Date.now();
    const fd = devNullCopy();
    assert.equal((await pool.runAndRelease(fd, COMMAND)).error, 'ENOTTY');
    assert.ok(Date.now() - started >= stallMs, 'waited behind the close until it was stuck');
    assert.equal(pool.laneBusy, true, 'answered while the close still blocks');
    assert.equal(pool.threadCount, 1, 'one thread, started for it');
    await pollUntil(() => !pool.laneBusy, 'the close to return', (LINGER_S + 5) * 1000);
    assert.equal(lingering.closed(), true);
  } finally {
    pool.close();
    await lingering.dispose();
  }
});

test('a lane job outstanding for stallMs is stuck: no thread starts ahead for it, and one started meanwhile stays while it is', async () => {
  const pool = new SgIoPool({ ...DEFAULT_POOL_OPTIONS, lazy: true, threadpool: true, idleMs: 200 });
  const lingering = await lingeringFd();
  try {
    const { holding, held } = holdLane(pool, lingering.fd);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(pool.threadCount, 0, 'nothing started ahead: one connection sends nothing more meanwhile');
    const fd = devNullCopy();
    assert.equal((await pool.runAndRelease(fd, COMMAND)).error, 'ENOTTY');
    assert.equal(pool.threadCount, 1);
    // Idle for several idleMs (reaped every second at most), yet kept: the lane is stuck.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    assert.equal(held(), true, 'the lane is still held');
    assert.equal(pool.threadCount, 1, 'kept while the lane is stuck');
    await holding;
    await pollUntil(() => pool.threadCount === 0, 'the thread to leave once the lane is free', 10_000);
  } finally {
    pool.close();
    await lingering.dispose();
  }
});

/** A server as the serving image builds it (without multipath), with short idle times. */
function inProcessServer(idleMs: number) {
  const dir = tempDir('prh-ondemand-');
  const listener = listenOnPath(join(dir, 'pr.sock'));
  const fastPath = new FastPath({ ...DEFAULT_FAST_PATH_OPTIONS, idleMs, timeoutMs: DEFAULT_SGIO_TIMEOUT_MS, features: DEFAULT_FEATURES });
  const pool = new SgIoPool({ ...DEFAULT_POOL_OPTIONS, lazy: true, threadpool: true });
  const executor = new SgIoExecutor(pool, { timeoutMs: DEFAULT_SGIO_TIMEOUT_MS });
  const server = new Server({
    listener, executor, closer: pool, log: new Logger('qemu-pr-helper', 1), access: null, fastPath,
    observer: { wantsDevices: false, wantsRequests: false, notify: () => undefined },
  });
  server.start(16);
  return {
    socketPath: listener.createdPath ?? '', fastPath, pool, server,
    async stop(): Promise<void> {
      await server.stop();
      executor.close();
      fastPath.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function readKeys(client: PrClient, times: number): Promise<void> {
  for (let i = 0; i < times; i++) assert.equal((await client.request(READ_KEYS, devNull)).status, 2);
}

test('the fast path: no worker with one connection, two once a second is open, gone after idleMs with one, back with two', async () => {
  const s = inProcessServer(500);
  try {
    const first = await PrClient.connect(s.socketPath);
    await readKeys(first, 50);
    // PR OUT on a read-only fd: answered without SG_IO, its fd closed on the lane.
    const register = await first.request(prOutCdb({ sa: 0, type: 0, paramLength: 24 }), devNull, prOutParams({ saKey: 1n }));
    assert.equal(register.status, 2);
    assert.equal(s.fastPath.workerCount, 0, 'one connection: no fast-path worker');
    assert.equal(s.pool.threadCount, 0, 'one connection, one request at a time: no SG_IO thread');
    const fdsOne = readdirSync('/proc/self/fd').length;

    const second = await PrClient.connect(s.socketPath);
    await pollUntil(() => s.fastPath.active, 'the fast path to load');
    assert.equal(s.fastPath.workerCount, 2);
    // Both connections come over (the first one is offered when the workers load).
    await Promise.all([readKeys(first, 20), readKeys(second, 20)]);

    second.close();
    await pollUntil(() => s.fastPath.workerCount === 0, 'the workers to leave', 10_000);
    assert.equal(s.fastPath.active, false);
    // The connection that stays is the main thread's again, and served there.
    await readKeys(first, 20);
    assert.equal(s.fastPath.workerCount, 0);
    // Whatever the workers opened (their event loops) went with them; no client fd is left.
    await pollUntil(() => readdirSync('/proc/self/fd').length === fdsOne, `the fd count back to ${fdsOne} (now ${readdirSync('/proc/self/fd').length})`);

    const third = await PrClient.connect(s.socketPath);
    await pollUntil(() => s.fastPath.active, 'the fast path to come back');
    await Promise.all([readKeys(first, 10), readKeys(third, 10)]);
    first.close();
    third.close();
    await pollUntil(() => s.server.connectionCount === 0, 'the connections to close');
  } finally {
    await s.stop();
  }
});

test('the fast path: a second connection for a moment only (closed at once) starts no worker', async () => {
  const s = inProcessServer(60_000);
  try {
    const first = await PrClient.connect(s.socketPath);
    for (let i = 0; i < 5; i++) {
      const probe = await PrClient.connect(s.socketPath);
      probe.close();
      await readKeys(first, 2);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(s.fastPath.workerCount, 0, 'no worker for a probe');
    first.close();
  } finally {
    await s.stop();
  }
});
