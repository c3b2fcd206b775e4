/**
 * A hostile client against the real helper (docs/security.md "Threat model"):
 * - a client fd whose last close() blocks (a TCP socket with SO_LINGER and unsent data)
 *   holds only its own connection: sent with the handshake (main thread) or with CDBs
 *   (fast-path workers), every other client is still answered at once;
 * - a worker blocked on one connection holds no other connection that is ready;
 * - PR OUT CDBs whose parameters never come cost no CPU and delay nobody;
 * - at RLIMIT_NOFILE, open connections keep room for their requests' fds and new ones
 *   wait in the listen backlog; the real reason is logged when fds are lost;
 * - a peer that never answers the greeting is closed.
 *
 * The helper is stopped (SIGSTOP) while the attack is set up, so that the test's own
 * reference to the lingering socket is gone before the helper can close its own: the
 * helper's close is then the last one, and blocks.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { PrClient, ConnectionClosed } from '../support/client.js';
import { lingeringSocket } from '../support/lingering.js';
import { OUR_HELPER, startHelper, pollUntil, tempDir, type Helper } from '../support/launcher.js';
import { prInCdb, prOutCdb } from '../support/builders.js';
import { cpuSeconds } from '../support/proc.js';

/** How long a lingering close blocks. */
const LINGER_S = 4;
/** What "answered at once" allows, far below LINGER_S (fast-path workers load in ~0.3 s). */
const PROMPT_MS = 2000;

let devNull: number;

before(() => {
  devNull = openSync('/dev/null', 'r');
});

after(() => {
  closeSync(devNull);
});

const readKeys = (): Uint8Array => prInCdb({ sa: 0, allocationLength: 8 });

/** CPU seconds (user + system) the process has used so far. */
/** TCP sockets among the helper's fds (it has none of its own). */
function tcpSocketsHeld(pid: number): number {
  const tcp = new Set(readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)
    .map((line) => line.trim().split(/\s+/)[9]).filter((inode) => inode !== undefined));
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && tcp.has(m[1] ?? '')) n++;
    } catch {
      // closed while we looked
    }
  }
  return n;
}

/** Sends one READ KEYS on each client at once; returns each one's time to its answer. */
async function timedRequests(clients: readonly PrClient[]): Promise<number[]> {
  const started = performance.now();
  return Promise.all(clients.map(async (c) => {
    const r = await c.request(readKeys(), devNull);
    assert.equal(r.status, 2, 'CHECK CONDITION: SG_IO on /dev/null fails');
    return performance.now() - started;
  }));
}

async function withStopped<T>(helper: Helper, body: () => Promise<T> | T): Promise<T> {
  process.kill(helper.pid, 'SIGSTOP');
  try {
    return await body();
  } finally {
    process.kill(helper.pid, 'SIGCONT');
  }
}

/**
 * Sets up `attack` (with the helper stopped) on a connection of its own, with a lingering
 * fd; then ten new connections (accepted and greeted by the main thread) must be answered
 * at once, and the lingering fd closed once its linger time is over.
 */
async function newConnectionsStayFast(
  what: string, attack: (attacker: PrClient, lingeringFd: number) => void, open: 'greeted' | 'fresh',
): Promise<void> {
  const h = await startHelper();
  const lingering = await lingeringSocket(LINGER_S);
  try {
    const attacker = open === 'greeted' ? await PrClient.connect(h.socketPath) : PrClient.open(h.socketPath);
    await withStopped(h, () => {
      attack(attacker, lingering.fd);
      lingering.drop();
    });
    // With a framing violation: the helper has closed the connection (the peer sees that
    // before the socket's queue, which holds the lingering fd, is freed).
    if (open === 'greeted') await attacker.waitClosed(10_000);
    const started = performance.now();
    const clients = await Promise.all(Array.from({ length: 10 }, () => PrClient.connect(h.socketPath)));
    const times = await timedRequests(clients);
    const worst = Math.max(...times, performance.now() - started);
    process.stderr.write(`# ${what}: ten new connections answered within ${worst.toFixed(0)} ms\n`);
    for (const c of clients) c.close();
    attacker.close();
    assert.ok(worst < PROMPT_MS, `ten new connections answered within ${PROMPT_MS} ms of the attack, not ${worst.toFixed(0)} ms`);
    // The blocked close ends with the linger time, and the fd is not left open.
    await pollUntil(() => tcpSocketsHeld(h.pid) === 0, 'the lingering fd to close', (LINGER_S + 5) * 1000);
  } finally {
    await lingering.dispose();
    assert.equal(await h.stop(), 0, h.stderr());
    h.cleanup();
  }
}

test('a lingering fd sent with the handshake does not hold the main thread: new connections are answered at once', () =>
  newConnectionsStayFast('lingering fd with the handshake', (attacker, fd) => {
    // The greeting's answer, with the fd: the helper discards it (docs/protocol.md §3.2).
    attacker.send(new Uint8Array(4), [fd]);
  }, 'fresh'));

test('a connection closed for a framing violation with a lingering fd still queued does not hold the main thread', () =>
  newConnectionsStayFast('lingering fd queued behind an invalid opcode', (attacker, fd) => {
    // An invalid opcode closes the connection; the fd behind it is still in flight.
    const invalid = new Uint8Array(16);
    invalid[0] = 0x12;
    attacker.send(invalid, [devNull]);
    attacker.send(readKeys(), [fd]);
  }, 'greeted'));

test('lingering fds sent with CDBs hold only their own connections: 20 other ready requests are answered at once', async () => {
  const h = await startHelper();
  const lingering = await Promise.all([lingeringSocket(LINGER_S), lingeringSocket(LINGER_S)]);
  try {
    const attackers = await Promise.all(lingering.map(() => PrClient.connect(h.socketPath)));
    const clients = await Promise.all(Array.from({ length: 20 }, () => PrClient.connect(h.socketPath)));
    // Warm: the fast-path workers have loaded and every connection waits on them.
    await timedRequests([...attackers, ...clients]);
    const times = await withStopped(h, () => {
      // Both workers wake to a CDB whose fd blocks on close, with all 20 others ready.
      attackers.forEach((a, i) => a.send(readKeys(), [lingering[i]?.fd ?? -1]));
      for (const l of lingering) l.drop();
      const started = performance.now();
      return clients.map((c) => {
        c.send(readKeys(), [devNull]);
        return c.readResponse(30_000).then((r) => {
          assert.equal(r.status, 2);
          return performance.now() - started;
        });
      });
    }).then((pending) => Promise.all(pending));
    const late = times.filter((t) => t >= PROMPT_MS).length;
    process.stderr.write(`# lingering fds with CDBs: 20 other requests answered in ${Math.min(...times).toFixed(0)}-${Math.max(...times).toFixed(0)} ms\n`);
    assert.equal(late, 0, `requests answered later than ${PROMPT_MS} ms: ${late} of 20 (${times.map((t) => t.toFixed(0)).join(' ')})`);
    // The attackers' own requests are answered once their fds are closed (close before respond).
    for (const a of attackers) assert.equal((await a.readResponse((LINGER_S + 10) * 1000)).status, 2);
    for (const c of [...attackers, ...clients]) c.close();
    assert.equal(tcpSocketsHeld(h.pid), 0, 'both lingering fds are closed');
  } finally {
    for (const l of lingering) await l.dispose();
    assert.equal(await h.stop(), 0, h.stderr());
    h.cleanup();
  }
});

test('2000 PR OUT CDBs whose parameters never come cost little CPU and delay nobody', async () => {
  const h = await startHelper();
  const attackers: PrClient[] = [];
  try {
    const victim = await PrClient.connect(h.socketPath);
    await timedRequests([victim]);
    for (let i = 0; i < 2000; i++) attackers.push(PrClient.open(h.socketPath));
    await Promise.all(attackers.map((a) => a.handshake()));
    const cpuBefore = cpuSeconds(h.pid);
    const started = performance.now();
    const cdb = prOutCdb({ sa: 0, paramLength: 8192 });
    for (const a of attackers) a.send(cdb, [devNull]);
    // A normal request right behind them.
    const [victimMs] = await timedRequests([victim]);
    // Let the helper take every CDB in.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const cpu = cpuSeconds(h.pid) - cpuBefore;
    const elapsed = performance.now() - started;
    process.stderr.write(`# 2000 partial PR OUT: ${cpu.toFixed(2)} CPU s in ${elapsed.toFixed(0)} ms; a normal request took ${victimMs?.toFixed(1)} ms\n`);
    assert.ok((victimMs ?? Infinity) < 1000, `a normal request waited ${victimMs?.toFixed(0)} ms`);
    assert.ok(cpu < 1.2, `2000 partial requests cost ${cpu.toFixed(2)} CPU seconds`);
    victim.close();
  } finally {
    for (const a of attackers) a.close();
    assert.equal(await h.stop(), 0, h.stderr());
    h.cleanup();
  }
});

test('at RLIMIT_NOFILE an open connection keeps room for its request; new connections wait, then are served', async () => {
  // sh sets both limits; Node raises its soft limit only up to the hard one.
  const helper = await startHelperWithLimit(200);
  const crowd: PrClient[] = [];
  try {
    const first = await PrClient.connect(helper.socketPath);
    await timedRequests([first]);
    // Far more connections than 200 fds can hold: the extra ones wait in the backlog.
    for (let i = 0; i < 300; i++) crowd.push(PrClient.open(helper.socketPath));
    await new Promise((resolve) => setTimeout(resolve, 500));
    // The established connection's next request still gets its fd and its answer.
    const r = await first.request(readKeys(), devNull).catch((error: unknown) => {
      if (error instanceof ConnectionClosed) return null;
      throw error;
    });
    assert.notEqual(r, null, `the open connection was closed: ${helper.stderr().slice(-400)}`);
    assert.equal(r?.status, 2);
    assert.doesNotMatch(helper.stderr(), /More than one file descriptor/);
    assert.match(helper.stderr(), /connections open, as many as RLIMIT_NOFILE 200 allows/);
    // Closing connections lets the waiting ones in: every one of them is answered.
    first.close();
    let served = 0;
    for (const c of crowd) {
      await c.handshake(0, 15_000);
      assert.equal((await c.request(readKeys(), devNull)).status, 2);
      c.close();
      served++;
    }
    assert.equal(served, 300);
  } finally {
    for (const c of crowd) c.close();
    assert.equal(await helper.stop(), 0, helper.stderr());
    helper.cleanup();
  }
});

test('a peer that never answers the greeting is closed after the handshake timeout', async () => {
  const h = await startHelper();
  try {
    const idle = PrClient.open(h.socketPath);
    const started = performance.now();
    assert.equal(await idle.waitClosed(20_000), false, 'the greeting is left unread');
    const waited = performance.now() - started;
    assert.ok(waited >= 9_000 && waited < 15_000, `closed after ${waited.toFixed(0)} ms`);
    idle.close();
  } finally {
    assert.equal(await h.stop(), 0, h.stderr());
    h.cleanup();
  }
});

async function startHelperWithLimit(limit: number): Promise<Helper> {
  const dir = tempDir();
  const socketPath = `${dir}/pr.sock`;
  return startHelper({
    binary: '/bin/sh',
    args: ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, OUR_HELPER, '-k', socketPath],
    socketPath,
  });
}
