/**
 * The process around the protocol: the listening socket and its path, socket activation
 * (docs/protocol.md §1.6), signals and shutdown (docs/protocol.md §1.8), start-up errors
 * (docs/protocol.md §1.5.1, §1.9), and a stderr that goes away
 * (docs/internals.md#stderr-may-be-a-closed-pipe).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, openSync, closeSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { PrClient } from '../support/client.js';
import { spawnHelper, startHelper, tempDir, pollUntil, idleFdCount, warmBaseline, OUR_HELPER } from '../support/launcher.js';
import { cleanupCdb, prInCdb, prOutCdb } from '../support/builders.js';
import { bindUnix, listenSocket, unixStreamSocket } from '../../src/sys/socket.js';
import { closeFd } from '../../src/sys/fd.js';

async function exitOf(args: string[], opts: { listenFds?: string; extraFds?: number[] } = {}): Promise<{ code: number | string; stderr: string }> {
  const h = spawnHelper({ args, ...opts });
  const code = await h.exited;
  const stderr = h.stderr();
  h.cleanup();
  return { code, stderr };
}

function boundSocket(path: string, listen = true): number {
  const fd = unixStreamSocket();
  bindUnix(fd, path);
  if (listen) listenSocket(fd, 16);
  return fd;
}

describe('listening socket (docs/protocol.md §1.5.1)', () => {
  test('the path appears only once connections are accepted', async () => {
    const dir = tempDir();
    const path = join(dir, 'ready.sock');
    const h = spawnHelper({ args: ['-k', path] });
    await pollUntil(() => existsSync(path), 'the socket path');
    // The first attempt after the path appears must succeed: no bind-before-listen window.
    const c = await PrClient.connect(path);
    assert.equal(c.features, 0, 'no feature announced, as upstream');
    c.close();
    assert.ok(lstatSync(path).isSocket());
    assert.equal(await h.stop('SIGTERM'), 0);
    assert.equal(existsSync(path), false, 'socket removed at exit');
    h.cleanup();
  });

  test('a stale file or socket at the path is replaced', async () => {
    const dir = tempDir();
    const path = join(dir, 'stale.sock');
    writeFileSync(path, 'stale');
    const h = await startHelper({ socketPath: path, args: ['-k', path] });
    assert.ok(lstatSync(path).isSocket());
    await h.stop();
    const old = boundSocket(path, false); // a dead socket file, as after a crash
    closeFd(old);
    const h2 = await startHelper({ socketPath: path, args: ['-k', path] });
    assert.equal(await h2.stop(), 0);
    h2.cleanup();
    h.cleanup();
  });

  test('a path taken over by another instance is not removed at exit', async () => {
    const dir = tempDir();
    const path = join(dir, 'shared.sock');
    const first = await startHelper({ socketPath: path, args: ['-k', path] });
    const firstInode = lstatSync(path).ino;
    // The reference takes over an existing path without a liveness check; so do we.
    const second = spawnHelper({ socketPath: path, args: ['-k', path] });
    await pollUntil(() => existsSync(path) && lstatSync(path).ino !== firstInode, 'the second socket');
    assert.equal(await first.stop(), 0);
    assert.ok(existsSync(path), "the second instance's socket is still there");
    const c = await PrClient.connect(path);
    c.close();
    assert.equal(await second.stop(), 0);
    assert.equal(existsSync(path), false);
    first.cleanup();
    second.cleanup();
  });

  test('start-up errors print the reference text and exit 1', async () => {
    const long = `/tmp/${'a'.repeat(110)}`;
    assert.deepEqual(await exitOf(['-k', long]), {
      code: 1, stderr: `qemu-pr-helper: UNIX socket path '${long}' is too long\nPath must be less than 108 bytes\n`,
    });
    assert.deepEqual(await exitOf(['-k', '/nonexistent-dir/x.sock']), {
      code: 1, stderr: 'qemu-pr-helper: Failed to bind socket to /nonexistent-dir/x.sock: No such file or directory\n',
    });
    const dir = tempDir();
    mkdirSync(join(dir, 'isdir'));
    const r = await exitOf(['-k', join(dir, 'isdir')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^qemu-pr-helper: Failed to bind socket to .*isdir: /);
  });

  test('SIGINT and SIGHUP terminate with exit 0, like SIGTERM', async () => {
    for (const signal of ['SIGINT', 'SIGHUP'] as const) {
      const h = await startHelper();
      assert.equal(await h.stop(signal), 0);
      assert.equal(existsSync(h.socketPath), false);
      h.cleanup();
    }
  });
});

describe('systemd socket activation (docs/protocol.md §1.6)', () => {
  test('serves the socket on fd 3 and leaves its path in place at exit', async () => {
    const dir = tempDir();
    const path = join(dir, 'activated.sock');
    const fd = boundSocket(path);
    const h = await startHelper({ socketPath: path, args: ['--enable-cleanup'], listenFds: '1', extraFds: [fd] });
    closeFd(fd);
    const c = await PrClient.connect(path);
    const null1 = openSync('/dev/null', 'r+');
    assert.equal((await c.request(cleanupCdb(), null1)).status, 0);
    closeSync(null1);
    c.close();
    assert.equal(await h.stop(), 0);
    assert.ok(existsSync(path), 'an activated socket is not unlinked');
    h.cleanup();
  });

  test('error cases', async () => {
    const dir = tempDir();
    const listening = boundSocket(join(dir, 'a.sock'));
    const unlistened = boundSocket(join(dir, 'b.sock'), false);
    const file = openSync(join(dir, 'f'), 'w');
    const cases: [string, string[], number[], string][] = [
      ['1', ['-k', join(dir, 'c.sock')], [listening], "qemu-pr-helper: Unix socket can't be set when using socket activation\n"],
      ['2', [], [listening, listening], `qemu-pr-helper: ${OUR_HELPER} does not support socket activation with LISTEN_FDS > 1\n`],
      // fd 4 is not ours here, but Node itself has opened fd 4 by the time our code runs:
      // the count check catches it instead of the fd check.
      ['2', [], [listening], `qemu-pr-helper: ${OUR_HELPER} does not support socket activation with LISTEN_FDS > 1\n`],
      ['1', [], [], 'qemu-pr-helper: Failed to use socket activation: Unable to query remote socket address: Socket operation on non-socket\n'],
      ['1', [], [file], 'qemu-pr-helper: Failed to use socket activation: Unable to query remote socket address: Socket operation on non-socket\n'],
      ['1', [], [unlistened], 'qemu-pr-helper: Failed to use socket activation: fd 3 is not a listening socket\n'],
      ['-1', [], [listening], "qemu-pr-helper: Socket activation failed: invalid LISTEN_FDS '-1'\n"],
    ];
    for (const [n, args, fds, stderr] of cases) {
      assert.deepEqual(await exitOf(args, { listenFds: n, extraFds: fds }), { code: 1, stderr }, `LISTEN_FDS=${n} ${args.join(' ')}`);
    }
    closeFd(listening);
    closeFd(unlistened);
    closeSync(file);
  });

  test('LISTEN_FDS=0 or a trailing space fall back to the -k path', async () => {
    for (const n of ['0', '1 ']) {
      const h = await startHelper({ listenFds: n });
      assert.ok(existsSync(h.socketPath));
      assert.equal(await h.stop(), 0);
      h.cleanup();
    }
  });
});

describe('robustness of the process', () => {
  test('closing the stderr pipe does not kill the helper', async () => {
    const h = await startHelper();
    h.child.stderr?.destroy();
    // Provoke error messages: a request without an fd, many times.
    for (let i = 0; i < 20; i++) {
      const c = await PrClient.connect(h.socketPath);
      c.send(prInCdb({ sa: 0, allocationLength: 8 }));
      assert.equal(await c.waitClosed(), true);
      c.close();
    }
    const c = await PrClient.connect(h.socketPath);
    const fd = openSync('/dev/null', 'r');
    assert.equal((await c.request(prInCdb({ sa: 0, allocationLength: 8 }), fd)).status, 2);
    closeSync(fd);
    c.close();
    assert.equal(await h.stop(), 0);
    h.cleanup();
  });

  test('SIGTERM under load: every response sent is whole, exit 0, socket removed', async () => {
    const h = await startHelper();
    const fd = openSync('/dev/null', 'r');
    const clients = await Promise.all(Array.from({ length: 20 }, () => PrClient.connect(h.socketPath)));
    let answered = 0;
    const loops = clients.map(async (c) => {
      for (;;) {
        try {
          c.send(prInCdb({ sa: 0, allocationLength: 64 }), [fd]);
          const r = await c.readResponse(10_000);
          assert.equal(r.status, 2);
          assert.equal(r.sense.length, 96);
          answered++;
        } catch (error) {
          // Cut off between requests: nothing half-written may remain.
          assert.equal(c.unread, 0, `partial response: ${String(error)}`);
          return;
        }
      }
    });
    await pollUntil(() => answered > 200, 'some traffic');
    const code = await h.stop('SIGTERM');
    await Promise.all(loops);
    assert.equal(code, 0);
    assert.equal(existsSync(h.socketPath), false);
    for (const c of clients) c.close();
    closeSync(fd);
    h.cleanup();
  });

  test('a huge --io-timeout does not overflow the shutdown deadline timer', async () => {
    // Node fires timers above 2^31-1 ms after 1 ms with a warning; shutdown would then give
    // up on executing requests at once (found by test/e2e/shutdown.test.ts's author).
    const path = join(tempDir(), 'big.sock');
    const h = await startHelper({ args: ['-k', path, '--io-timeout=4000000'], socketPath: path });
    assert.equal(await h.stop(), 0);
    assert.doesNotMatch(h.stderr(), /TimeoutOverflowWarning/);
    h.cleanup();
  });

  test('a renamed-away socket path is left alone at exit', async () => {
    const h = await startHelper();
    const moved = `${h.socketPath}.moved`;
    renameSync(h.socketPath, moved);
    assert.equal(await h.stop(), 0);
    assert.ok(existsSync(moved));
    h.cleanup();
  });
});

describe('connections under stress', () => {
  test('200 concurrent connections, each served, no fd growth', async () => {
    const h = await startHelper();
    const baseline = await warmBaseline(h);
    const fd = openSync('/dev/null', 'r');
    const clients = await Promise.all(Array.from({ length: 200 }, () => PrClient.connect(h.socketPath)));
    const results = await Promise.all(clients.map(async (c) => {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await c.request(prInCdb({ sa: 0, allocationLength: 64 }), fd)).status);
      return statuses;
    }));
    assert.ok(results.every((s) => s.every((x) => x === 2)));
    for (const c of clients) c.close();
    closeSync(fd);
    assert.equal(await idleFdCount(h), baseline);
    assert.equal(await h.stop(), 0);
    h.cleanup();
  });

  test('abrupt disconnects at every stage leave no fd behind', async () => {
    const h = await startHelper();
    const baseline = await warmBaseline(h);
    const fd = openSync('/dev/null', 'r+');
    const cdbIn = prInCdb({ sa: 0, allocationLength: 8192 });
    const stages: ((c: PrClient) => Promise<void> | void)[] = [
      () => undefined, // before reading the greeting
      async (c) => { await c.read(4); }, // mid-handshake
      async (c) => { await c.handshake(); c.send(new Uint8Array(2)); }, // half a reply
      async (c) => { await c.handshake(); c.send(cdbIn.subarray(0, 7), [fd]); }, // half a CDB, fd held
      async (c) => { await c.handshake(); c.send(cdbIn, [fd]); }, // request executing / response unread
      async (c) => { await c.handshake(); c.send(prOutCdb({ sa: 0, paramLength: 8192 }), [fd]); c.send(new Uint8Array(100)); }, // mid-parameters
      async (c) => { await c.handshake(); for (let i = 0; i < 30; i++) c.send(cdbIn, [fd]); }, // pipelined, unread
    ];
    for (let round = 0; round < 10; round++) {
      for (const stage of stages) {
        const c = PrClient.open(h.socketPath);
        await stage(c);
        c.close();
      }
    }
    assert.equal(await idleFdCount(h), baseline);
    closeSync(fd);
    assert.equal(await h.stop(), 0);
    h.cleanup();
  });
});
