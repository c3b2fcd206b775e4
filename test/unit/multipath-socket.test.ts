/**
 * --multipath-socket and MULTIPATH_SOCKET_NAME (docs/operations.md, KubeVirt): the value's
 * checks, the option's way into the environment, and how the library's support for the
 * variable is told.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine, type CommandLineContext } from '../../src/cli/options.js';
import { usageText } from '../../src/cli/help.js';
import { applyMultipathSocket, findMultipathSupport, multipathSocketProblem, MULTIPATH_SOCKET_VARIABLE } from '../../src/privileges/multipath.js';
import { mpathCmdOf, mpathCmdReadsSocketVariable } from '../../src/mpath/library.js';

const ctx: CommandLineContext = {
  program: 'qemu-pr-helper',
  posixlyCorrect: false,
  lookupUser: () => null,
  lookupGroup: () => null,
  runtime: { node: 'v20', koffi: '3.3.4' },
  readTraceFile: () => ({ kind: 'error', message: 'none' }),
};

describe('--multipath-socket', () => {
  test('is a long option with an argument, any unambiguous prefix, the last one wins; absent it is null', () => {
    for (const args of [['--multipath-socket=/run/m.sock'], ['--multipath-socket', '/run/m.sock'], ['--m=/run/m.sock'],
      ['--multipath-socket=/x', '--multipath=/run/m.sock']]) {
      const r = parseCommandLine(args, ctx);
      assert.ok(r.kind === 'run' && r.options.multipathSocket === '/run/m.sock', args.join(' '));
    }
    const plain = parseCommandLine(['-k', '/s'], ctx);
    assert.ok(plain.kind === 'run' && plain.options.multipathSocket === null);
    const missing = parseCommandLine(['--multipath-socket'], ctx);
    assert.ok(missing.kind === 'exit' && missing.code === 1 && /requires an argument/.test(missing.stderr));
  });

  test('--help lists it', () => {
    assert.match(usageText('qemu-pr-helper'), /--multipath-socket=PATH\|@NAME\n.*reach multipathd through this socket/);
  });

  test('accepts an absolute path or @name of at most 107 bytes; refuses the rest with the reason', () => {
    for (const good of ['/run/multipathd.socket', '/var/run/kubevirt/daemons/pr/multipathd.socket',
      '@/org/kernel/linux/storage/multipathd', `/${'a'.repeat(106)}`, `@${'b'.repeat(107)}`]) {
      assert.equal(multipathSocketProblem(good), null, good);
    }
    assert.match(multipathSocketProblem('run/multipathd.socket') ?? '', /neither an absolute path nor @/);
    assert.match(multipathSocketProblem('') ?? '', /neither an absolute path nor @/);
    assert.match(multipathSocketProblem('@') ?? '', /no abstract socket/);
    assert.match(multipathSocketProblem(`/${'a'.repeat(107)}`) ?? '', /108 bytes long, more than a socket address holds \(107\)/);
    assert.match(multipathSocketProblem(`@${'b'.repeat(108)}`) ?? '', /108 bytes long after @/);
    assert.match(multipathSocketProblem(`/${'é'.repeat(54)}`) ?? '', /109 bytes/);
    assert.match(multipathSocketProblem('/run/a\nb') ?? '', /NUL or newline/);
    assert.match(multipathSocketProblem('/run/a\0b') ?? '', /NUL or newline/);
  });

  test('the option sets MULTIPATH_SOCKET_NAME over the inherited one; an inherited one alone is checked too', () => {
    const env: NodeJS.ProcessEnv = { [MULTIPATH_SOCKET_VARIABLE]: '/old.sock' };
    assert.equal(applyMultipathSocket('/var/run/kubevirt/daemons/pr/multipathd.socket', env), null);
    assert.equal(env[MULTIPATH_SOCKET_VARIABLE], '/var/run/kubevirt/daemons/pr/multipathd.socket');
    assert.equal(findMultipathSupport(env).socket, '/var/run/kubevirt/daemons/pr/multipathd.socket');

    const inherited: NodeJS.ProcessEnv = { [MULTIPATH_SOCKET_VARIABLE]: '@/org/kernel/linux/storage/multipathd' };
    assert.equal(applyMultipathSocket(null, inherited), null);
    assert.equal(inherited[MULTIPATH_SOCKET_VARIABLE], '@/org/kernel/linux/storage/multipathd');

    const none: NodeJS.ProcessEnv = {};
    assert.equal(applyMultipathSocket(null, none), null);
    assert.equal(MULTIPATH_SOCKET_VARIABLE in none, false);
    assert.equal(findMultipathSupport(none).socket, null);

    assert.equal(applyMultipathSocket('multipathd.socket', {}),
      "invalid --multipath-socket 'multipathd.socket': it is neither an absolute path nor @ and an abstract socket name");
    assert.equal(applyMultipathSocket(null, { [MULTIPATH_SOCKET_VARIABLE]: 'rel' }),
      "invalid MULTIPATH_SOCKET_NAME='rel' in the environment: it is neither an absolute path nor @ and an abstract socket name");
  });

  test('libmpathcmd reads the variable when its name is in the file (0.12 and later); unreadable is unknown', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prh-mpathcmd-'));
    try {
      const recent = join(dir, 'recent.so');
      const old = join(dir, 'old.so');
      writeFileSync(recent, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0]), Buffer.from('/run/multipathd.socket\0MULTIPATH_SOCKET_NAME\0')]));
      writeFileSync(old, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0]), Buffer.from('/org/kernel/linux/storage/multipathd\0')]));
      assert.equal(mpathCmdReadsSocketVariable(recent), true);
      assert.equal(mpathCmdReadsSocketVariable(old), false);
      assert.equal(mpathCmdReadsSocketVariable(join(dir, 'missing.so')), null);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(mpathCmdOf('/opt/mpt-0.14.3/lib64/libmpathpersist.so.0'), '/opt/mpt-0.14.3/lib64/libmpathcmd.so.0');
  });
});
