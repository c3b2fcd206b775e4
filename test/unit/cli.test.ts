import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine, type CommandLine, type CommandLineContext } from '../../src/cli/options.js';
import { getoptLong, scanArguments, type GetoptEvent } from '../../src/cli/getopt.js';
import { LONG_OPTIONS, SHORT_OPTIONS } from '../../src/cli/options.js';
import { checkActivation } from '../../src/server/activation.js';
import { parseStrtoul } from '../../src/util/strtoul.js';

const P = '/usr/bin/qemu-pr-helper';
const ctx: CommandLineContext = {
  program: P,
  posixlyCorrect: false,
  lookupUser: (n) => ({ nobody: 65534, root: 0 } as Record<string, number>)[n] ?? null,
  lookupGroup: (n) => ({ nogroup: 65534, disk: 6 } as Record<string, number>)[n] ?? null,
  runtime: { node: 'v20', koffi: '3.3.4' },
  readTraceFile: (path) => (path === '/events' ? { kind: 'text', text: 'prh_request\nnosuch\n' }
    : { kind: 'error', message: 'No such file or directory' }),
};
const TRY = `qemu-pr-helper: Try \`${P} --help' for more information.\n`;

function parse(...args: string[]): CommandLine {
  return parseCommandLine(args, ctx);
}

function events(...args: string[]): GetoptEvent[] {
  return [...getoptLong(args, { shortOptions: SHORT_OPTIONS, longOptions: LONG_OPTIONS, program: P })];
}

describe('getopt_long semantics (docs/protocol.md §1.1)', () => {
  test('every spelling of -k', () => {
    for (const args of [['-k/a'], ['-k', '/a'], ['--socket=/a'], ['--socket', '/a'], ['--sock', '/a'], ['--s=/a']]) {
      const r = parse(...args);
      assert.equal(r.kind, 'run', args.join(' '));
      assert.ok(r.kind === 'run' && r.options.socketPath === '/a' && r.options.socketPathGiven);
    }
  });

  test('clusters, permutation, -- and ignored positionals', () => {
    assert.deepEqual(events('-vvk/x', 'FILE', '-q', '--', '-h'), [
      { kind: 'option', key: 'v', arg: null },
      { kind: 'option', key: 'v', arg: null },
      { kind: 'option', key: 'k', arg: '/x' },
      { kind: 'option', key: 'q', arg: null },
    ]);
  });

  test('POSIXLY_CORRECT stops at the first non-option', () => {
    const ev = [...getoptLong(['FILE', '-h'], { shortOptions: SHORT_OPTIONS, longOptions: LONG_OPTIONS, program: P, posixlyCorrect: true })];
    assert.deepEqual(ev, []);
  });

  test('a scan also names each option as given and keeps the operands in order', () => {
    const scan = (posixlyCorrect: boolean, ...args: string[]): unknown[] =>
      [...scanArguments(args, { shortOptions: SHORT_OPTIONS, longOptions: LONG_OPTIONS, posixlyCorrect })];
    assert.deepEqual(scan(false, 'A', '-vk/x', '--sock', '/y', 'B', '--', '-h', 'C'), [
      { kind: 'operand', arg: 'A' },
      { kind: 'option', key: 'v', arg: null, name: '-v' },
      { kind: 'option', key: 'k', arg: '/x', name: '-k' },
      { kind: 'option', key: 'k', arg: '/y', name: '--socket' },
      { kind: 'operand', arg: 'B' },
      { kind: 'operand', arg: '-h' },
      { kind: 'operand', arg: 'C' },
    ]);
    assert.deepEqual(scan(true, '-q', 'A', '-h'), [
      { kind: 'option', key: 'q', arg: null, name: '-q' },
      { kind: 'operand', arg: 'A' },
      { kind: 'operand', arg: '-h' },
    ]);
    assert.deepEqual(scan(false, 'A', '--ver', 'B'), [
      { kind: 'operand', arg: 'A' },
      { kind: 'error', text: "option '--ver' is ambiguous; possibilities: '--version' '--verbose'" },
    ]);
  });

  test('a required argument may start with a dash', () => {
    assert.deepEqual(events('-k', '-v'), [{ kind: 'option', key: 'k', arg: '-v' }]);
    assert.deepEqual(events('--socket', '--help'), [{ kind: 'option', key: 'k', arg: '--help' }]);
  });

  const errors: [string[], string][] = [
    [['--bogus'], `${P}: unrecognized option '--bogus'`],
    [['--bogus=1'], `${P}: unrecognized option '--bogus=1'`],
    [['-x'], `${P}: invalid option -- 'x'`],
    [['-vx'], `${P}: invalid option -- 'x'`],
    [['-:'], `${P}: invalid option -- ':'`],
    [['-k'], `${P}: option requires an argument -- 'k'`],
    [['--socket'], `${P}: option '--socket' requires an argument`],
    [['--s'], `${P}: option '--socket' requires an argument`],
    [['--help=1'], `${P}: option '--help' doesn't allow an argument`],
    [['--vers=1'], `${P}: option '--version' doesn't allow an argument`],
    [['--=x'], `${P}: option '--=x' is ambiguous; possibilities: '--help' '--version' '--socket' '--pidfile' '--daemon' '--trace' '--user' '--group' '--verbose' '--quiet' '--io-timeout' '--allow-uid' '--allow-gid' '--log-keys' '--enable-cleanup' '--multipath-socket'`],
  ];
  for (const [args, message] of errors) {
    test(`error: ${args.join(' ')}`, () => {
      assert.deepEqual(parse(...args), { kind: 'exit', code: 1, stdout: '', stderr: `${message}\n${TRY}` });
    });
  }

  test('prefixes: --vers is --version, --verb is --verbose, --ver is ambiguous', () => {
    assert.equal(events('--vers')[0]?.kind === 'option' && (events('--vers')[0] as { key: string }).key, 'V');
    assert.deepEqual(events('--verb'), [{ kind: 'option', key: 'v', arg: null }]);
    assert.deepEqual(events('--ver'), [{ kind: 'error', message: `${P}: option '--ver' is ambiguous; possibilities: '--version' '--verbose'` }]);
  });
});

describe('helper options', () => {
  test('-h and -V exit 0 on stdout, in order with errors', () => {
    const h = parse('-h');
    assert.ok(h.kind === 'exit' && h.code === 0 && h.stdout.startsWith(`Usage: ${P} [OPTIONS] FILE\n`));
    const v = parse('--version');
    assert.ok(v.kind === 'exit' && v.code === 0 && v.stdout.startsWith(`${P} 0.1.0`));
    assert.match(v.kind === 'exit' ? v.stdout : '', /PR_HELPER_FEATURE_CLEANUP/);
    assert.equal(parse('--bogus', '-h').kind === 'exit' && (parse('--bogus', '-h') as { code: number }).code, 1);
    assert.equal((parse('-h', '--bogus') as { code: number }).code, 0);
  });

  test('relative or empty socket path is refused at once', () => {
    for (const p of ['rel.sock', '', './x']) {
      assert.deepEqual(parse('-k', p, '-h'), { kind: 'exit', code: 1, stdout: '', stderr: 'qemu-pr-helper: socket path must be absolute\n' });
    }
  });

  test('verbosity arithmetic (docs/protocol.md §1.3)', () => {
    const v = (...a: string[]): [number, boolean] => {
      const r = parse(...a);
      assert.ok(r.kind === 'run');
      return [r.options.verbosity, r.options.noisy];
    };
    assert.deepEqual(v(), [1, false]);
    assert.deepEqual(v('-v'), [2, false]);
    assert.deepEqual(v('-vv'), [3, true]);
    assert.deepEqual(v('-vvvv'), [3, true]);
    assert.deepEqual(v('-vvv', '-q'), [0, false]);
    assert.deepEqual(v('-q', '-vvv'), [0, false]);
  });

  test('defaults (docs/protocol.md §1.2)', () => {
    const r = parse();
    assert.ok(r.kind === 'run');
    assert.equal(r.options.socketPath, '/var/run/qemu-pr-helper.sock');
    assert.equal(r.options.pidfile, '/var/run/qemu-pr-helper.pid');
    assert.equal(r.options.ioTimeoutMs, 30_000);
    assert.equal(r.options.features, 0, 'no feature announced, as upstream');
  });

  test('--enable-cleanup (and its prefixes) announces the CLEANUP feature bit', () => {
    for (const arg of ['--enable-cleanup', '--enable', '--e']) {
      const r = parse(arg);
      assert.ok(r.kind === 'run' && r.options.features === 1, arg);
    }
  });

  test('--io-timeout', () => {
    const ok = parse('--io-timeout=2.5');
    assert.ok(ok.kind === 'run' && ok.options.ioTimeoutMs === 2500);
    for (const bad of ['0', '-1', 'x', '1e3', '', '5000000']) {
      const r = parse(`--io-timeout=${bad}`);
      assert.ok(r.kind === 'exit' && r.code === 1 && r.stderr.includes(`invalid I/O timeout '${bad}'`), bad);
    }
  });

  test('-u/-g parse like the reference (docs/protocol.md §1.4): name first, then a strtoul number', () => {
    assert.deepEqual(parse('-u', 'nosuchuser'), { kind: 'exit', code: 1, stdout: '', stderr: "qemu-pr-helper: invalid user 'nosuchuser'\n" });
    assert.deepEqual(parse('-g', '0x10'), { kind: 'exit', code: 1, stdout: '', stderr: "qemu-pr-helper: invalid group '0x10'\n" });
    assert.deepEqual(parse('-u', '-1'), { kind: 'exit', code: 1, stdout: '', stderr: "qemu-pr-helper: invalid user '-1'\n" });
    assert.deepEqual(parse('-u', '4294967296'), { kind: 'exit', code: 1, stdout: '', stderr: "qemu-pr-helper: invalid user '4294967296'\n" });
    const cases: [string[], number | null, number | null][] = [
      [['-u', 'nobody'], 65534, null], [['-u', ' +42'], 42, null], [['-g', '007'], null, 7],
      [['-u', '4294967295'], 4294967295, null], [['--user=0', '--group', 'nogroup'], 0, 65534],
    ];
    for (const [args, uid, gid] of cases) {
      const r = parse(...args);
      assert.ok(r.kind === 'run', args.join(' '));
      assert.equal(r.options.uid, uid, args.join(' '));
      assert.equal(r.options.gid, gid, args.join(' '));
    }
    const help = parse('-u', 'nobody', '-h');
    assert.ok(help.kind === 'exit' && help.code === 0, '-h after a valid -u still prints help');
  });

  test('-d and -f set daemon mode and the pid file', () => {
    const d = parse('-d');
    assert.ok(d.kind === 'run' && d.options.daemonize && !d.options.pidfileGiven);
    const f = parse('--pidfile=rel.pid');
    assert.ok(f.kind === 'run' && !f.options.daemonize && f.options.pidfileGiven && f.options.pidfile === 'rel.pid');
  });

  test('-T is applied in order while parsing (docs/protocol.md §1.1, §7.1; the grammar is in trace.test.ts)', () => {
    const list = parse('-T', 'help', '--bogus');
    assert.ok(list.kind === 'exit' && list.code === 0 && list.stdout.startsWith('qio_channel_socket_new_fd\n'),
      '-T help exits 0 before a later bad option is read');
    const t = parse('-T', 'prh_*', '--trace=-prh_sgio*', '-T', 'nosuch,events=/events,file=/tmp/t%d');
    assert.ok(t.kind === 'run');
    assert.deepEqual([...t.options.trace.enabled].sort(),
      ['prh_connection_accepted', 'prh_connection_closed', 'prh_connection_refused', 'prh_listening', 'prh_request', 'prh_response']);
    assert.equal(t.options.trace.file, '/tmp/t%d');
    assert.equal(t.stderr, "qemu-pr-helper: warning: trace event 'nosuch' does not exist\n" +
      "qemu-pr-helper:/events:2: warning: trace event 'nosuch' does not exist\n");
    assert.deepEqual(parse('-T', 'nosuch', '-k', 'rel'), {
      kind: 'exit', code: 1, stdout: '',
      stderr: "qemu-pr-helper: warning: trace event 'nosuch' does not exist\nqemu-pr-helper: socket path must be absolute\n",
    });
    assert.deepEqual(parse('-T', 'file=/tmp/a%x', '-k', 'rel'),
      { kind: 'exit', code: 1, stdout: '', stderr: 'qemu-pr-helper: socket path must be absolute\n' },
      'the file= template is checked after every option');
    assert.deepEqual(parse('-T', 'file=/tmp/a%x', '-v'),
      { kind: 'exit', code: 1, stdout: '', stderr: 'qemu-pr-helper: Bad logfile template: /tmp/a%x\n' });
    assert.equal(parse('-T', 'file=/tmp/a%x', '-h').kind, 'exit');
    assert.deepEqual(parse('-T', 'events=/nonexistent'),
      { kind: 'exit', code: 1, stdout: '', stderr: 'qemu-pr-helper:/nonexistent: No such file or directory\n' });
  });
});

describe('socket activation environment (docs/protocol.md §1.6)', () => {
  test('strtoul parsing', () => {
    assert.equal(parseStrtoul('12'), 12n);
    assert.equal(parseStrtoul(' +12'), 12n);
    assert.equal(parseStrtoul('012'), 12n);
    assert.equal(parseStrtoul('12 '), null);
    assert.equal(parseStrtoul(''), null);
    assert.equal(parseStrtoul('0x1'), null);
    assert.equal(parseStrtoul('-1'), (1n << 64n) - 1n);
    assert.equal(parseStrtoul('99999999999999999999999'), null);
  });

  test('rules', () => {
    assert.deepEqual(checkActivation({}, 10), { kind: 'none' });
    assert.deepEqual(checkActivation({ LISTEN_PID: '11', LISTEN_FDS: '1' }, 10), { kind: 'none' });
    assert.deepEqual(checkActivation({ LISTEN_PID: '10' }, 10), { kind: 'none' });
    assert.deepEqual(checkActivation({ LISTEN_PID: '10', LISTEN_FDS: '1' }, 10), { kind: 'activated', count: 1 });
    assert.deepEqual(checkActivation({ LISTEN_PID: ' 10', LISTEN_FDS: '+2' }, 10), { kind: 'activated', count: 2 });
    assert.deepEqual(checkActivation({ LISTEN_PID: '10', LISTEN_FDS: '1 ' }, 10), { kind: 'none' });
    assert.deepEqual(checkActivation({ LISTEN_PID: '10', LISTEN_FDS: '0' }, 10), { kind: 'none' });
    assert.equal(checkActivation({ LISTEN_PID: '10', LISTEN_FDS: '-1' }, 10).kind, 'invalid');
    assert.equal(checkActivation({ LISTEN_PID: '10', LISTEN_FDS: '4294967296' }, 10).kind, 'invalid');
  });
});
