/**
 * -T against the running helper (docs/protocol.md §7): the trace lines of a PR IN request, file= with
 * %d (opened before the privilege drop and kept across the re-exec, and by the -d daemon),
 * -T help; then every -T message and exit code compared with Debian's C helper, and the
 * one deliberate difference in the events file (docs/protocol.md §9 item 21).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrClient } from '../support/client.js';
import { prInCdb } from '../support/builders.js';
import {
  OUR_HELPER, REFERENCE_HELPER, pollUntil, referenceUnavailable, startHelper, tempDir,
} from '../support/launcher.js';
import { TRACE_EVENT_NAMES } from '../../src/trace/events.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root: the helper drops privileges only when started as root' : false;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(binary: string, args: string[], cwd?: string): Run {
  const r = spawnSync(binary, args, { encoding: 'utf8', timeout: 20_000, cwd });
  const norm = (s: string): string => s.split(binary).join('PROG');
  return { code: r.status, stdout: norm(r.stdout), stderr: norm(r.stderr) };
}

/** Our trace lines (other log lines, e.g. a library's start-up notes, are left out). */
function traceLines(text: string): string[] {
  const names = new Set<string>(TRACE_EVENT_NAMES);
  return text.split('\n').filter((line) => names.has(line.split(' ')[0] ?? ''));
}

/** One PR IN READ KEYS with a /dev/null fd (SG_IO fails with ENOTTY), then a clean close. */
async function readKeysOnDevNull(socketPath: string): Promise<number> {
  const fd = openSync('/dev/null', 'r');
  try {
    const client = await PrClient.connect(socketPath);
    const response = await client.request(prInCdb({ sa: 0, allocationLength: 8 }), fd);
    client.close();
    return response.status;
  } finally {
    closeSync(fd);
  }
}

describe('trace points of a running helper', () => {
  test("-T 'prh_*': one line per event of a PR IN on /dev/null, on stderr", async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'p.sock');
    const h = await startHelper({ socketPath, args: ['-k', socketPath, '-T', 'prh_*'] });
    try {
      assert.equal(await readKeysOnDevNull(socketPath), 2);
      await pollUntil(() => /prh_connection_closed conn=2 /.test(h.stderr()), 'the close of connection 2');
      const lines = traceLines(h.stderr());
      assert.match(lines[0] ?? '', new RegExp(`^prh_listening fd=\\d+ backlog=4096 path="${socketPath}"$`));
      // Connection 1 is startHelper's readiness probe: its close may come after the next accept.
      const probe = lines.filter((l) => l.includes(' conn=1 '));
      assert.equal(probe.length, 2, probe.join('\n'));
      assert.match(probe[0] ?? '', new RegExp(`^prh_connection_accepted conn=1 fd=\\d+ pid=${process.pid} uid=${process.getuid?.()} gid=${process.getgid?.()}$`));
      assert.match(probe[1] ?? '', /^prh_connection_closed conn=1 requests=0 reason=eof$/);
      const request = lines.slice(1).filter((l) => !l.includes(' conn=1 '));
      const expected = [
        new RegExp(`^prh_connection_accepted conn=2 fd=\\d+ pid=${process.pid} uid=${process.getuid?.()} gid=${process.getgid?.()}$`),
        /^prh_request conn=2 fd=\d+ opcode=0x5e sa=0x00 xfer=8$/,
        /^prh_sgio_submit req=0x1 fd=\d+ cdb=5e000000000000000800 dir=from-device len=8192 timeout_ms=30000$/,
        /^prh_sgio_complete req=0x1 fd=\d+ errno=ENOTTY status=0x00 host=0x00 driver=0x00 resid=0 us=\d+$/,
        /^prh_response conn=2 status=0x02 sense=0b\/00\/06 data=0 bytes=104 us=\d+$/,
        /^prh_connection_closed conn=2 requests=1 reason=eof$/,
      ];
      assert.equal(request.length, expected.length, request.join('\n'));
      expected.forEach((re, i) => assert.match(request[i] ?? '', re));
      // the request's fd is the one SG_IO ran on
      const fdOf = (line: string | undefined): string | undefined => /\bfd=(\d+)/.exec(line ?? '')?.[1];
      assert.equal(fdOf(request[1]), fdOf(request[2]));
    } finally {
      assert.equal(await h.stop(), 0);
      h.cleanup();
    }
  });

  test("the reference's names: socket_listen, accept_complete and the thread pool's pair", async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'p.sock');
    const h = await startHelper({ socketPath, args: ['-k', socketPath, '-T', 'socket_listen', '-T', 'qio*', '--trace=enable=thread_pool_*'] });
    try {
      assert.equal(await readKeysOnDevNull(socketPath), 2);
      await pollUntil(() => /thread_pool_complete/.test(h.stderr()), 'thread_pool_complete');
      const lines = traceLines(h.stderr());
      assert.equal(lines[0], 'socket_listen backlog: 4096');
      assert.match(lines[1] ?? '', /^qio_channel_socket_listen_complete Socket listen complete ioc=\(nil\) fd=\d+$/);
      assert.match(lines[2] ?? '', /^qio_channel_socket_accept_complete Socket accept complete ioc=\(nil\) cioc=\(nil\) fd=\d+$/);
      assert.match(lines[3] ?? '', /^qio_channel_socket_accept_complete /);
      assert.equal(lines[4], 'thread_pool_submit pool (nil) req 0x1 opaque (nil)');
      // ret is the SCSI status, as the reference's worker returns it (CHECK CONDITION)
      assert.equal(lines[5], 'thread_pool_complete pool (nil) req 0x1 opaque (nil) ret 2');
    } finally {
      await h.stop();
      h.cleanup();
    }
  });

  test('warnings are printed once, before start-up, and the helper keeps running', async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'p.sock');
    const h = await startHelper({ socketPath, args: ['-k', socketPath, '-T', 'nosuch'] });
    try {
      assert.equal(h.stderr().split("qemu-pr-helper: warning: trace event 'nosuch' does not exist\n").length, 2, h.stderr());
      assert.equal(traceLines(h.stderr()).length, 0);
    } finally {
      assert.equal(await h.stop(), 0);
      h.cleanup();
    }
  });

  test('file= with %d: the pid replaces it, nothing goes to stderr', async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'p.sock');
    const h = await startHelper({ socketPath, args: ['-k', socketPath, '-T', `prh_*,file=${dir}/trace-%d.log`] });
    const file = join(dir, `trace-${h.pid}.log`);
    try {
      assert.equal(await readKeysOnDevNull(socketPath), 2);
      await pollUntil(() => existsSync(file) && /prh_connection_closed conn=2 /.test(readFileSync(file, 'utf8')), 'the trace file');
      const lines = readFileSync(file, 'utf8').split('\n');
      assert.match(lines[0] ?? '', /^prh_listening /);
      assert.ok(lines.some((l) => l.startsWith('prh_response conn=2 status=0x02 ')));
      assert.deepEqual(traceLines(h.stderr()), []);
    } finally {
      await h.stop();
      h.cleanup();
    }
  });

  test('file= is opened as root before the drop, like the reference: -u nobody traces into a root-only directory', { skip: notRoot }, async () => {
    const dir = tempDir();
    const traceDir = join(dir, 'root-only');
    mkdirSync(traceDir, { mode: 0o700 });
    chmodSync(dir, 0o755);
    const socketPath = join(dir, 'p.sock');
    const h = await startHelper({ socketPath, args: ['-k', socketPath, '-u', 'nobody', '-g', 'nogroup', '-T', `prh_listening,file=${traceDir}/t`] });
    try {
      await pollUntil(() => readFileSync(join(traceDir, 't'), 'utf8').includes('prh_listening'), 'the trace line');
      assert.match(readFileSync(join(traceDir, 't'), 'utf8'), /^prh_listening fd=\d+ backlog=4096 path=".*p\.sock"\n$/);
    } finally {
      await h.stop();
      h.cleanup();
    }
  });

  test('-d: the daemon opens file=, with its own pid (the one in the pid file)', { skip: notRoot }, async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'd.sock');
    const pidfile = join(dir, 'd.pid');
    const child = spawn(OUR_HELPER, ['-d', '-f', pidfile, '-k', socketPath, '-T', 'prh_listening', '-T', `nosuch,file=${dir}/t%d`],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "qemu-pr-helper: warning: trace event 'nosuch' does not exist\n", 'the warning comes once, from the launcher');
    const pid = Number(readFileSync(pidfile, 'utf8'));
    try {
      await pollUntil(() => existsSync(join(dir, `t${pid}`)) && readFileSync(join(dir, `t${pid}`), 'utf8') !== '', 'the trace file');
      assert.match(readFileSync(join(dir, `t${pid}`), 'utf8'), /^prh_listening fd=\d+ /);
      assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('t')), [`t${pid}`]);
    } finally {
      process.kill(pid, 'SIGTERM');
      await pollUntil(() => !existsSync(pidfile), 'the daemon to exit');
    }
  });

  test('-T help lists exactly our events, on stdout, exit 0, before later options are read', () => {
    const list = TRACE_EVENT_NAMES.map((n) => `${n}\n`).join('');
    for (const args of [['-T', 'help'], ['--trace=?'], ['-T', 'enable=help', '--bogus'], ['-k', '/x', '--trace', 'x,enable=help']]) {
      assert.deepEqual(run(OUR_HELPER, args), { code: 0, stdout: list, stderr: '' }, args.join(' '));
    }
  });

  test('a helper that cannot open file= exits 1 before creating its socket', () => {
    const dir = tempDir();
    const r = run(OUR_HELPER, ['-k', join(dir, 'p.sock'), '-T', `prh_*,file=${dir}/missing/t`]);
    assert.deepEqual(r, { code: 1, stdout: '', stderr: `qemu-pr-helper: Error opening logfile ${dir}/missing/t: No such file or directory\n` });
    assert.equal(existsSync(join(dir, 'p.sock')), false);
  });
});

describe('-T messages and exit codes against the C helper', { skip: referenceUnavailable() }, () => {
  const dir = tempDir();
  const events = join(dir, 'events');
  // names both helpers define, one neither does, comments and blank lines
  writeFileSync(events, 'socket_listen\n#c\n\nnosuch\n-x\nthread_pool_*\n-qio_channel_socket_accept_complete\n');
  writeFileSync(join(dir, 'help-events'), 'nosuch\nhelp\n');
  // Cases that would start the helper end with -k rel: both then exit 1 right after -T.
  const cases: string[][] = [
    ['foo=1'], ['ENABLE=x'], ['=x'], ['x='], ['x,help'], ['x,?'], [',help'], ['help,foo=1'], ['foo=1,help'],
    ['x,y'], ['x,a,,b'], ['x,,,y'], ['x,no'], ['x,nohelp'], ['x,delay'], ['x,nodelay'], ['enable=help,foo'],
    ['id=1'], ['x,help,id=1'], ['id=a'], ['id'], ['x,id=a'],
    ['nosuch'], ['-nosuch'], ['nosuch*'], ['nosuc?'], ['socket_liste?'], ['-help'], [''], ['enable'], ['enable='],
    ['a,,b'], ['x,file'], ['x,enable=nosuch2'], ['-'],
    [`events=${events}`], [`x,events=${events}`], [`events=${events},enable=y`], ['events=/nonexistent'],
    [`x,events=${events},events=/nonexistent`], [`events=${events},x`], ['x,noevents'], [`events=${dir}`],
    ['file=/tmp/a%d%x'], ['file=/tmp/a%x'], ['file=/tmp/a%%'], ['file=/tmp/a%'], ['x,file=/tmp/a%x'],
  ];
  for (const t of cases) {
    test(`same result for -T '${t.join(' ')}'`.slice(0, 90), () => {
      const args = ['-T', ...t, '-k', 'rel'];
      assert.deepEqual(run(OUR_HELPER, args), run(REFERENCE_HELPER, args));
    });
  }

  test('several -T: warnings in order, then the first error', () => {
    for (const args of [['-T', 'a', '-T', 'b', '-T', 'c=1'], ['-T', 'a', '--trace', 'x,help'], ['-T', 'a', '-k', 'rel', '-T', 'b'],
      ['-T', 'file=/tmp/a%x', '-T', 'x', '-k', 'rel'], ['-T', 'file=/tmp/a%x', '-v'], ['-T', 'nosuch', '-k', 'rel', '-V'],
      ['-T', 'nosuch', '--bogus'], ['-T', 'file=/tmp/a%x', '-T', 'file=/tmp/ok', '-T', 'file=/tmp/b%x']]) {
      assert.deepEqual(run(OUR_HELPER, args), run(REFERENCE_HELPER, args), args.join(' '));
    }
    // -h after a bad template still prints the help (ours differs in text, not in outcome)
    for (const args of [['-T', 'file=/tmp/a%x', '-h'], ['-T', 'nosuch', '-V']]) {
      const ours = run(OUR_HELPER, args);
      const ref = run(REFERENCE_HELPER, args);
      assert.deepEqual({ code: ours.code, stderr: ours.stderr }, { code: ref.code, stderr: ref.stderr }, args.join(' '));
    }
  });

  test('events lists: same exit code and warnings; each lists its own events', () => {
    for (const t of ['help', '?', 'enable=?', 'nosuch,enable=help', `events=${dir}/help-events`]) {
      const ours = run(OUR_HELPER, ['-T', t, '-k', 'rel']);
      const ref = run(REFERENCE_HELPER, ['-T', t, '-k', 'rel']);
      assert.deepEqual({ code: ours.code, stderr: ours.stderr }, { code: ref.code, stderr: ref.stderr }, t);
      assert.equal(ours.stdout, TRACE_EVENT_NAMES.map((n) => `${n}\n`).join(''), t);
      assert.equal(ref.stdout.split('\n').length, 212, t);
    }
  });

  test('a file= that cannot be opened: same message, after the other options', () => {
    const sock = join(dir, 'never.sock');
    for (const args of [['-T', 'file=/nonexistent/x', '-k', sock], ['-T', 'file=', '-k', sock], ['-T', 'file=/nonexistent/x', '-k', 'rel']]) {
      assert.deepEqual(run(OUR_HELPER, args), run(REFERENCE_HELPER, args), args.join(' '));
    }
  });

  test('deliberate difference (docs/protocol.md §9 item 21): a last line without a newline keeps its last character', () => {
    const file = join(dir, 'no-final-newline');
    writeFileSync(file, 'socket_listen\nthread_pool_submit');
    const args = ['-T', `events=${file}`, '-k', 'rel'];
    const ref = run(REFERENCE_HELPER, args);
    assert.equal(ref.stderr, `qemu-pr-helper:${file}:2: warning: trace event 'thread_pool_submi' does not exist\nqemu-pr-helper: socket path must be absolute\n`);
    assert.deepEqual(run(OUR_HELPER, args), { code: 1, stdout: '', stderr: 'qemu-pr-helper: socket path must be absolute\n' });
  });
});
