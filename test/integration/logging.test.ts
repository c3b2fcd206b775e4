/**
 * What the log says (issue 6): one decoded line per request at -v, every framing violation
 * named with the peer that caused it, journald priorities, and the SO_PEERCRED allow-list.
 * Real daemon, real sockets; outcomes that need a real disk (GOOD data, RESERVATION
 * CONFLICT) are in test/e2e/logging.test.ts.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { closeFd } from '../../src/sys/fd.js';
import { FdWatcher } from '../../src/sys/poll.js';
import { connectUnix, unixStreamSocket } from '../../src/sys/socket.js';
import { PrClient } from '../support/client.js';
import { openConnections, pollUntil, spawnHelper, startHelper, tempDir, type Helper } from '../support/launcher.js';
import { cleanupCdb, prInCdb, prOutCdb, prOutParams } from '../support/builders.js';
import { formatKey } from '../../src/log/request-log.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root (the helper drops privileges as root)' : false;

/** Lines of the helper's stderr that match `pattern`, once at least `count` have appeared. */
async function linesMatching(helper: Helper, pattern: RegExp, count = 1): Promise<string[]> {
  let found: string[] = [];
  await pollUntil(() => {
    found = helper.stderr().split('\n').filter((line) => pattern.test(line));
    return found.length >= count;
  }, `${count} log line(s) matching ${pattern}`);
  return found;
}

const REQUEST_LINE = new RegExp(
  '^qemu-pr-helper: connection (?<conn>\\d+) \\(pid (?<pid>\\d+) uid (?<uid>\\d+) gid (?<gid>\\d+)\\): ' +
  '(?<device>.+?): (?<command>(PERSISTENT RESERVE (IN|OUT)|CLEANUP)[^:]*): (?<outcome>[^;]+); (?<sizes>.*?)(?<ms>\\d+\\.\\d\\d) ms$',
);

describe('-v: one decoded line per request', { skip: notRoot }, () => {
  test('each outcome class, field by field', async () => {
    const socketPath = join(tempDir(), 'v.sock');
    const helper = await startHelper({ socketPath, args: ['-v', '-k', socketPath, '--enable-cleanup'] });
    const devNull = openSync('/dev/null', 'r');
    const devNullRw = openSync('/dev/null', 'r+');
    try {
      const c = await PrClient.connect(helper.socketPath);
      // PR IN on a non-SCSI fd: SG_IO fails with ENOTTY, mapped to CHECK CONDITION.
      assert.equal((await c.request(prInCdb({ sa: 0, allocationLength: 64 }), devNull)).status, 2);
      // PR OUT on a read-only fd: refused before any I/O (docs/protocol.md §3.7).
      const params = prOutParams({ key: 0x1122334455667788n, saKey: 0xabcdefn, aptpl: true });
      assert.equal((await c.request(prOutCdb({ sa: 0, paramLength: 24 }), devNull, params)).status, 2);
      // CLEANUP on a writable non-multipath fd: GOOD without I/O.
      assert.equal((await c.request(cleanupCdb(), devNullRw)).status, 0);
      // RESERVE names the reservation type; ENOTTY again.
      await c.request(prOutCdb({ sa: 1, type: 5, paramLength: 24 }), devNullRw, prOutParams({ key: 0x1122334455667788n }));
      c.close();

      const lines = await linesMatching(helper, REQUEST_LINE, 4);
      const fields = lines.map((line) => REQUEST_LINE.exec(line)?.groups ?? {});
      for (const f of fields) {
        assert.equal(f['pid'], String(process.pid), 'the peer is this test process (SO_PEERCRED)');
        assert.equal(f['uid'], '0');
        assert.match(f['device'] ?? '', /^null \(1:3(, [^)]*)?, (read-only|read-write)\)$/, 'name and major:minor of /dev/null');
      }
      const [prIn, prOut, cleanup, reserve] = fields;
      assert.equal(prIn?.['command'], 'PERSISTENT RESERVE IN READ KEYS, allocation length 64');
      assert.equal(prIn?.['outcome'], 'CHECK CONDITION, ABORTED COMMAND: I/O PROCESS TERMINATED (0b/00/06)');
      assert.match(prIn?.['sizes'] ?? '', /^0 bytes of data, $/);
      const key = formatKey(new Uint8Array([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]), false);
      assert.equal(prOut?.['command'], `PERSISTENT RESERVE OUT REGISTER, key ${key}, service action key ${formatKey(new Uint8Array([0, 0, 0, 0, 0, 0xab, 0xcd, 0xef]), false)}, APTPL`);
      assert.equal(prOut?.['outcome'], 'CHECK CONDITION, ILLEGAL REQUEST: INVALID COMMAND OPERATION CODE (05/20/00)');
      assert.match(prOut?.['sizes'] ?? '', /^24 bytes of parameters, $/);
      assert.equal(cleanup?.['command'], 'CLEANUP');
      assert.equal(cleanup?.['outcome'], 'GOOD');
      assert.equal(reserve?.['command'], `PERSISTENT RESERVE OUT RESERVE, LU, Write Exclusive - Registrants Only, key ${key}`);
      assert.ok(!helper.stderr().includes('1122334455667788'), 'keys are not printed in full by default');
      await linesMatching(helper, /connection \d+ \(pid \d+ uid 0 gid 0\): closed after 4 request\(s\)$/);
    } finally {
      closeSync(devNull);
      closeSync(devNullRw);
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
  });

  test('--log-keys prints keys in full; -vv adds the raw bytes', async () => {
    const socketPath = join(tempDir(), 'k.sock');
    const helper = await startHelper({ socketPath, args: ['-vv', '--log-keys', '-k', socketPath] });
    const fd = openSync('/dev/null', 'r');
    try {
      const c = await PrClient.connect(helper.socketPath);
      await c.request(prOutCdb({ sa: 0, paramLength: 24 }), fd, prOutParams({ saKey: 0x1122334455667788n }));
      c.close();
      const [line] = await linesMatching(helper, REQUEST_LINE);
      assert.match(line ?? '', /REGISTER, key 0, service action key 0x1122334455667788:/);
      await linesMatching(helper, /: CDB 5f000000000000001800000000000000, parameters 0{16}1122334455667788/);
    } finally {
      closeSync(fd);
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
  });

  test('without -v: no request lines', async () => {
    const helper = await startHelper({});
    const fd = openSync('/dev/null', 'r');
    const c = await PrClient.connect(helper.socketPath);
    await c.request(prInCdb({ sa: 0, allocationLength: 8 }), fd);
    c.close();
    closeSync(fd);
    assert.equal(await helper.stop(), 0);
    assert.doesNotMatch(helper.stderr(), /PERSISTENT RESERVE/);
    helper.cleanup();
  });
});

describe('framing violations are logged with what was wrong and who sent it', { skip: notRoot }, () => {
  const cases: [string, (c: PrClient, fd: number) => void, RegExp][] = [
    ['bad handshake reply', (c) => c.send(new Uint8Array([0, 0, 0, 7])), /Invalid handshake reply 0x00000007, closing socket\./],
    ['no fd', (c) => c.send(prInCdb({ sa: 0, allocationLength: 8 })), /No file descriptor in request\./],
    ['two fds', (c, fd) => c.send(prInCdb({ sa: 0, allocationLength: 8 }), [fd, fd]), /More than one file descriptor in request, closing socket\./],
    ['not a PR opcode', (c, fd) => c.send(new Uint8Array(16).fill(0x12), [fd]), /Invalid CDB \(operation code 0x12\), closing socket\./],
    ['transfer too long', (c, fd) => {
      const cdb = prInCdb({ sa: 0, allocationLength: 8193 });
      c.send(cdb, [fd]);
    }, /Invalid CDB \(transfer length 8193 exceeds 8192\), closing socket\./],
    ['EOF inside a CDB', (c) => {
      c.send(new Uint8Array([0x5e, 0]));
      c.close();
    }, /Unexpected end-of-file in the middle of a request/],
  ];
  for (const [name, act, message] of cases) {
    test(name, async () => {
      const helper = await startHelper({});
      const fd = openSync('/dev/null', 'r');
      try {
        const c = name === 'bad handshake reply' ? PrClient.open(helper.socketPath) : await PrClient.connect(helper.socketPath);
        if (name === 'bad handshake reply') await c.read(4);
        act(c, fd);
        const [line] = await linesMatching(helper, message);
        assert.match(line ?? '', new RegExp(`^qemu-pr-helper: .* \\[connection \\d+ \\(pid ${process.pid} uid 0 gid 0\\)\\]$`));
        c.close();
      } finally {
        closeSync(fd);
        assert.equal(await helper.stop(), 0);
        helper.cleanup();
      }
    });
  }
});

describe('journald', { skip: notRoot }, () => {
  test('with JOURNAL_STREAM naming our stderr, lines carry syslog priorities instead of the program name', async () => {
    const dir = tempDir();
    const logPath = join(dir, 'journal.log');
    const socketPath = join(dir, 'j.sock');
    const logFd = openSync(logPath, 'w');
    const st = statSync(logPath);
    const child = spawn(join(process.cwd(), 'bin', 'qemu-pr-helper'), ['-v', '-k', socketPath], {
      // libmpathpersist's own messages go to syslog in this mode (its logsink), so every
      // line in the file must carry a priority.
      stdio: ['ignore', 'ignore', logFd],
      env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
    });
    closeSync(logFd);
    await pollUntil(() => existsSync(socketPath), 'the socket');
    const fd = openSync('/dev/null', 'r');
    const c = await PrClient.connect(socketPath);
    c.send(new Uint8Array(16).fill(0x12), [fd]);
    await c.waitClosed();
    closeSync(fd);
    await pollUntil(() => readFileSync(logPath, 'utf8').includes('Invalid CDB'), 'the error line');
    // Give libmpathpersist's thread time to initialise (it logs while doing so).
    // (Without the library installed, its warning line is printed at once instead.)
    await pollUntil(() => /libmpathpersist/.test(readFileSync(logPath, 'utf8')), 'the multipath start-up line', 10_000);
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));
    const lines = readFileSync(logPath, 'utf8').trimEnd().split('\n');
    assert.ok(lines.every((line) => /^<[3-7]>/.test(line)), lines.join('\n'));
    assert.ok(lines.some((line) => /^<6>connection \d+ .*: accepted$/.test(line)));
    assert.ok(lines.some((line) => /^<3>Invalid CDB \(operation code 0x12\)/.test(line)));
    assert.ok(!lines.some((line) => line.includes('qemu-pr-helper:')));
  });

  test('a JOURNAL_STREAM naming another file is ignored', async () => {
    const socketPath = join(tempDir(), 'n.sock');
    const helper = await startHelper({ socketPath, args: ['-v', '-k', socketPath], env: { ...process.env, JOURNAL_STREAM: '1:1' } });
    assert.equal(await helper.stop(), 0);
    assert.match(helper.stderr(), /^qemu-pr-helper: /m);
    assert.doesNotMatch(helper.stderr(), /^<\d>/m);
    helper.cleanup();
  });
});

describe('--allow-uid / --allow-gid (SO_PEERCRED at accept)', { skip: notRoot || (existsSync('/usr/bin/setpriv') ? false : 'needs /usr/bin/setpriv') }, () => {
  /** Connects as uid/gid 65534 from another process; resolves with the bytes it received. */
  function connectAsNobody(socketPath: string): Promise<string> {
    const script = `const s=require('net').connect(${JSON.stringify(socketPath)});let n=0;` +
      's.on("data",d=>{n+=d.length});s.on("close",()=>{process.stdout.write(String(n))});s.on("error",e=>{process.stdout.write(e.code)});' +
      'setTimeout(()=>s.end(),500);';
    const child = spawn('/usr/bin/setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, '-e', script],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    return new Promise((resolve) => child.on('exit', () => resolve(out)));
  }

  test('allowed by uid: served; another uid: refused, logged with its credentials', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const socketPath = join(dir, 'a.sock');
    const helper = await startHelper({ socketPath, args: ['--allow-uid=root', '-k', socketPath] });
    chmodSync(socketPath, 0o777);
    try {
      const ok = await PrClient.connect(socketPath);
      assert.equal(ok.features, 0, 'uid 0 is allowed: greeted');
      ok.close();
      assert.equal(await connectAsNobody(socketPath), '0', 'uid 65534 gets no greeting: closed at accept');
      const [line] = await linesMatching(helper, /Refused a connection/);
      assert.match(line ?? '', /^qemu-pr-helper: Refused a connection from pid \d+ uid 65534 gid 65534: uid 65534 and gid 65534 are not in --allow-uid\/--allow-gid$/);
    } finally {
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
  });

  test('allowed by gid', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const socketPath = join(dir, 'g.sock');
    // Root itself is not allowed here, so readiness is the socket path, not a handshake.
    const helper = spawnHelper({ socketPath, args: ['--allow-gid=nogroup', '-k', socketPath] });
    await pollUntil(() => existsSync(socketPath), 'the socket path');
    chmodSync(socketPath, 0o777);
    try {
      assert.equal(await connectAsNobody(socketPath), '4', 'gid 65534 is allowed: the 4-byte greeting arrives');
    } finally {
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
  });

  test('an unknown name is a start-up error', async () => {
    const h = spawnHelper({ args: ['--allow-uid=no-such-user-x', '-k', '/tmp/never.sock'] });
    assert.equal(await h.exited, 1);
    assert.match(h.stderr(), /invalid user 'no-such-user-x' in --allow-uid/);
    h.cleanup();
  });
});

/**
 * Opens `count` connections, `batch` at a time, each closed before any request: even ones
 * at once (the helper sees EOF, or EPIPE writing its greeting), odd ones once the greeting
 * is waiting unread, so that the close resets the connection (the helper reads ECONNRESET).
 * Resolves with the number that connected.
 */
async function flood(socketPath: string, count: number, batch = 200): Promise<number> {
  let connected = 0;
  for (let done = 0; done < count; done += batch) {
    const n = Math.min(batch, count - done);
    await Promise.all(Array.from({ length: n }, (_, i) => new Promise<void>((resolve) => {
      const fd = unixStreamSocket();
      try {
        connectUnix(fd, socketPath);
        connected++;
      } catch {
        closeFd(fd);
        resolve();
        return;
      }
      if ((done + i) % 2 === 0) {
        closeFd(fd);
        resolve();
        return;
      }
      const watcher = new FdWatcher(fd, () => {
        watcher.close();
        closeFd(fd);
        resolve();
      });
      watcher.set({ readable: true, writable: false });
    })));
  }
  return connected;
}

/** Counts every byte the helper writes to stderr (the launcher keeps only the last 64 KiB). */
function stderrBytes(helper: Helper): () => number {
  let bytes = 0;
  helper.child.stderr?.on('data', (d: string) => {
    bytes += Buffer.byteLength(d);
  });
  return () => bytes;
}

const FLOOD = Number(process.env['PRH_FLOOD'] ?? 2000);

describe('floods (hardening item 6): default-level logging stays bounded', { skip: notRoot }, () => {
  test(`${FLOOD} connections closed or reset before their first request: (nearly) nothing on stderr`, async () => {
    const helper = await startHelper({});
    const bytes = stderrBytes(helper);
    try {
      assert.equal(await flood(helper.socketPath, FLOOD), FLOOD);
      // Every flood connection has been accepted once a later one is served; then wait for
      // the helper to notice each close.
      (await PrClient.connect(helper.socketPath)).close();
      await pollUntil(() => openConnections(helper) === 0, 'the helper to close every connection');
      console.log(`# ${FLOOD} connections closed at once: ${bytes()} bytes of stderr`);
      assert.ok(bytes() < 200, `${bytes()} bytes of stderr:\n${helper.stderr().slice(0, 2000)}`);
    } finally {
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
  });

  test('-v keeps one line per connection', async () => {
    const socketPath = join(tempDir(), 'fv.sock');
    const helper = await startHelper({ socketPath, args: ['-v', '-k', socketPath] });
    try {
      assert.equal(await flood(helper.socketPath, 200), 200);
      (await PrClient.connect(helper.socketPath)).close();
      await pollUntil(() => openConnections(helper) === 0, 'the helper to close every connection');
      // One line each: "closed after 0 request(s)" after an EOF, the reason after a reset.
      const closed = await linesMatching(helper, /^qemu-pr-helper: (connection \d+ \(.*\): closed after 0 request\(s\)|Unable to (read from|write to) socket: .* \[connection \d+ \(.*\)\])$/, 200);
      assert.ok(closed.length >= 200, `${closed.length} close lines`);
      assert.doesNotMatch(helper.stderr(), /more connection/);
    } finally {
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
  });

  test(`${FLOOD} refused connections (--allow-uid): a few lines, then one summary with the count`, async () => {
    const socketPath = join(tempDir(), 'fr.sock');
    // uid 65534 only: this test (root) is refused every time.
    const helper = spawnHelper({ socketPath, args: ['--allow-uid=65534', '-k', socketPath] });
    const bytes = stderrBytes(helper);
    await pollUntil(() => existsSync(socketPath), 'the socket path');
    try {
      assert.equal(await flood(socketPath, FLOOD), FLOOD);
      const uid = process.getuid?.() ?? 0;
      const gid = process.getgid?.() ?? 0;
      // Every refusal is logged or counted once a later connection has been refused.
      await flood(socketPath, 1);
      console.log(`# ${FLOOD} refused connections: ${bytes()} bytes of stderr before the summary`);
      // The summary comes when the 10 s interval ends, with no further event to carry it.
      const [summary] = await linesMatching(helper, /Refused \d+ more connection\(s\) from uid/, 1);
      const m = new RegExp(`^qemu-pr-helper: Refused (\\d+) more connection\\(s\\) from uid ${uid} gid ${gid} in the last 10 s \\(--allow-uid/--allow-gid\\)$`).exec(summary ?? '');
      assert.ok(m, summary);
      const single = helper.stderr().split('\n').filter((line) => line.startsWith('qemu-pr-helper: Refused a connection from'));
      console.log(`# ${FLOOD} refused connections: ${bytes()} bytes of stderr with the summary, ${single.length} single lines`);
      assert.ok(single.length <= 10, `${single.length} single lines`);
      assert.equal(single.length + Number(m[1]), FLOOD + 1, 'every refusal is printed or counted');
      assert.ok(bytes() < 4096, `${bytes()} bytes`);
    } finally {
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
  });

  test('-v keeps one line per refused connection', async () => {
    const socketPath = join(tempDir(), 'frv.sock');
    const helper = spawnHelper({ socketPath, args: ['-v', '--allow-uid=65534', '-k', socketPath] });
    await pollUntil(() => existsSync(socketPath), 'the socket path');
    try {
      assert.equal(await flood(socketPath, 200), 200);
      await linesMatching(helper, /^qemu-pr-helper: Refused a connection from pid \d+ uid \d+ gid \d+: /, 200);
      assert.doesNotMatch(helper.stderr(), /more connection/);
    } finally {
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
  });
});
