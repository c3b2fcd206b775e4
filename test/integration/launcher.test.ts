/**
 * bin/qemu-pr-helper, the shell launcher, on its own: a stand-in `node` first in PATH
 * records the environment, arguments and descriptors the launcher hands to Node, so what
 * reaches the first image is checked without starting it (docs/security.md "Threat
 * model"); and src/cli/entry.cts, the first module Node runs: the version check the launcher
 * no longer makes, and the choice between the bundle and the per-module layout
 * (scripts/bundle.mjs; docs/performance.md, start-up).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, realpathSync, rmSync, symlinkSync,
  utimesSync, writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { workerEntry } from '../../src/util/worker-entry.js';
import { OUR_HELPER, REPO_ROOT, tempDir } from '../support/launcher.js';

const ENTRY = join(realpathSync(REPO_ROOT), 'dist', 'src', 'cli', 'entry.cjs');

interface Handed {
  status: number | null;
  stderr: string;
  /** The environment the stand-in node got, by name. */
  env: Map<string, string>;
  /** Its arguments ($@). */
  args: string[];
}

/**
 * Runs `shell launcher args` with `env` and a stand-in node (first in PATH) that writes
 * its environment (NUL-separated) and arguments to files; the launcher `exec`s it.
 */
function handOff(env: Record<string, string>, args: string[] = ['-k', '/nonexistent/pr.sock'], options: {
  shell?: string[]; launcher?: string; stdio?: (number | 'ignore' | 'pipe')[];
} = {}): Handed {
  const dir = tempDir('prh-launcher-');
  try {
    const fakeBin = join(dir, 'fakebin');
    mkdirSync(fakeBin);
    const node = join(fakeBin, 'node');
    writeFileSync(node, `#!/bin/sh\ncat /proc/$$/environ > '${dir}/env'\nprintf '%s\\0' "$@" > '${dir}/args'\n`);
    chmodSync(node, 0o755);
    const r = spawnSync(...(options.shell === undefined
      ? [options.launcher ?? OUR_HELPER, args] as const
      : [options.shell[0] ?? 'sh', [...options.shell.slice(1), options.launcher ?? OUR_HELPER, ...args]] as const), {
      env: { PATH: `${fakeBin}:/usr/bin:/bin`, ...env }, encoding: 'utf8', stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'],
    });
    const read = (name: string): string[] => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'latin1').split('\0').slice(0, -1) : []);
    const handedEnv = new Map<string, string>();
    for (const entry of read('env')) {
      const eq = entry.indexOf('=');
      handedEnv.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
    return { status: r.status, stderr: r.stderr ?? '', env: handedEnv, args: read('args') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const CODE_LOADING = {
  NODE_OPTIONS: '--require /tmp/evil.cjs', NODE_PATH: '/tmp', NODE_COMPILE_CACHE: '/tmp/cache', LD_PRELOAD: '/tmp/evil.so',
  LD_LIBRARY_PATH: '/tmp', OPENSSL_CONF: '/tmp/openssl.cnf', OPENSSL_MODULES: '/tmp', GCONV_PATH: '/tmp',
};
const shells: [string, string[] | undefined][] = [['the #! line (/bin/sh)', undefined], ['dash', ['dash']]];
if (existsSync('/bin/bash') || existsSync('/usr/bin/bash')) shells.push(['bash --posix', ['bash', '--posix']], ['bash', ['bash']]);

describe('bin/qemu-pr-helper hands Node a clean start', () => {
  for (const [label, shell] of shells) {
    test(`NODE_*, LD_*, OPENSSL_* and GCONV_PATH are removed, everything else is kept (${label})`, () => {
      const multiLine = 'first line\nexport NODE_NOT_A_VARIABLE=1\ndeclare -x LD_NOT_EITHER=2\nlast';
      const r = handOff({ ...CODE_LOADING, KEEP_ME: 'kept', MULTI_LINE: multiLine, NODEISH: 'kept too', 'QUOTES': `it's "quoted"` },
        ['-k', '/nonexistent/pr.sock'], { shell });
      assert.equal(r.status, 0, r.stderr);
      for (const name of Object.keys(CODE_LOADING)) assert.equal(r.env.has(name), false, `${name} reached node`);
      for (const name of r.env.keys()) assert.doesNotMatch(name, /^(NODE_|LD_|OPENSSL_)|^GCONV_PATH$/, `${name} reached node`);
      assert.equal(r.env.get('KEEP_ME'), 'kept');
      assert.equal(r.env.get('NODEISH'), 'kept too');
      assert.equal(r.env.get('MULTI_LINE'), multiLine);
      assert.equal(r.env.get('QUOTES'), `it's "quoted"`);
    });
  }

  test('the fixed Node flags, then the entry module by a path that names it, then the arguments as given', () => {
    const r = handOff({}, ['-k', '/run/a b.sock', '-v']);
    assert.equal(r.status, 0, r.stderr);
    // Node makes the script's path absolute by name (path.resolve): that must be the file.
    assert.deepEqual([...r.args.slice(0, 4), resolve(r.args[4] ?? ''), ...r.args.slice(5)], [
      '--max-semi-space-size=2', '--min-semi-space-size=2', '--no-short-builtin-calls', '--inspect-port=[fe80::1]:9229',
      ENTRY, '-k', '/run/a b.sock', '-v',
    ]);
    assert.equal(r.env.get('QEMU_PR_HELPER_ARGV0'), OUR_HELPER);
  });

  test('reached through a symlink to the script, or to its directory, or by a relative name: the same entry module', () => {
    const dir = tempDir('prh-launcher-links-');
    try {
      symlinkSync(OUR_HELPER, join(dir, 'qemu-pr-helper'));
      symlinkSync(join(REPO_ROOT, 'bin'), join(dir, 'bin'));
      mkdirSync(join(dir, 'sub'));
      for (const launcher of [join(dir, 'qemu-pr-helper'), join(dir, 'bin', 'qemu-pr-helper'), join(dir, 'bin', '..', 'bin', 'qemu-pr-helper'),
        join(dir, 'sub', '..', 'bin', 'qemu-pr-helper')]) {
        const r = handOff({}, [], { launcher });
        assert.equal(r.status, 0, r.stderr);
        assert.equal(resolve(r.args[4] ?? ''), ENTRY, launcher);
        assert.equal(r.env.get('QEMU_PR_HELPER_ARGV0'), launcher, 'the name as invoked, for messages');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('node is the first executable file named node in PATH, by absolute path; a relative one is refused', () => {
    const dir = tempDir('prh-launcher-path-');
    try {
      mkdirSync(join(dir, 'node')); // a directory named node: not it
      const skipped = spawnSync(OUR_HELPER, ['--version'], { env: { PATH: `${dir}:${process.env['PATH'] ?? ''}` }, encoding: 'utf8' });
      assert.equal(skipped.status, 0, skipped.stderr);
      rmSync(join(dir, 'node'), { recursive: true });
      const relative = spawnSync(OUR_HELPER, ['--version'], { cwd: dir, env: { PATH: `.:${dir}` }, encoding: 'utf8' });
      assert.equal(relative.status, 1);
      assert.match(relative.stderr, /cannot find node in PATH \(\.:.*\); needs Node\.js >= 20/);
      const none = spawnSync(OUR_HELPER, ['--version'], { env: { PATH: '/nonexistent' }, encoding: 'utf8' });
      assert.equal(none.status, 1);
      assert.match(none.stderr, /qemu-pr-helper: cannot find node in PATH \(\/nonexistent\); needs Node\.js >= 20/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('descriptors inherited without close-on-exec are listed for the first image; stdio is not', () => {
    const dir = tempDir('prh-launcher-fds-');
    const fd = openSync(join(dir, 'held'), 'w');
    try {
      const r = handOff({}, [], { stdio: ['ignore', 'pipe', 'pipe', fd] });
      assert.equal(r.status, 0, r.stderr);
      // (and whatever this test process itself inherited without close-on-exec)
      const listed = (r.env.get('QEMU_PR_HELPER_INHERITED_FDS') ?? '').split(' ');
      assert.ok(listed.includes('3'), listed.join(' '));
      for (const stdio of ['0', '1', '2']) assert.ok(!listed.includes(stdio), listed.join(' '));
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('src/cli/entry.cts', () => {
  test('an old Node is refused with the launcher\'s message, before any module of the helper is loaded', () => {
    const dir = tempDir('prh-entry-');
    try {
      const old = join(dir, 'old-node.cjs');
      writeFileSync(old, `Object.defineProperty(process, 'version', { value: 'v18.19.1' });\n`);
      const socket = join(dir, 'pr.sock');
      const r = spawnSync(process.execPath, ['-r', old, ENTRY, '-k', socket], {
        env: { ...process.env, QEMU_PR_HELPER_ARGV0: '/usr/sbin/qemu-pr-helper' }, encoding: 'utf8',
      });
      assert.equal(r.status, 1);
      assert.equal(r.stderr, `qemu-pr-helper: needs Node.js >= 20; ${process.execPath} is v18.19.1\n`);
      assert.equal(existsSync(socket), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('runs the bundle while it is at least as new as main.js, else the per-module layout; no-inspector first either way', () => {
    const dir = tempDir('prh-entry-bundle-');
    try {
      writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
      mkdirSync(join(dir, 'cli'));
      mkdirSync(join(dir, 'privileges'));
      const cli = (name: string): string => join(dir, 'cli', name);
      copyFileSync(ENTRY, cli('entry.cjs'));
      writeFileSync(join(dir, 'privileges', 'no-inspector.cjs'), "process.stdout.write('no-inspector ');\n");
      writeFileSync(cli('main.js'), "process.stdout.write('modules');\n");
      const which = (): string => spawnSync(process.execPath, [cli('entry.cjs')], { encoding: 'utf8' }).stdout;
      assert.equal(which(), 'no-inspector modules', 'no bundle');
      writeFileSync(cli('main.bundle.cjs'), "process.stdout.write('bundle');\n");
      const t = Date.now() / 1000;
      utimesSync(cli('main.js'), t - 10, t - 10);
      utimesSync(cli('main.bundle.cjs'), t, t);
      assert.equal(which(), 'no-inspector bundle', 'newer bundle');
      utimesSync(cli('main.js'), t, t);
      assert.equal(which(), 'no-inspector bundle', 'same time (an npm tarball)');
      utimesSync(cli('main.bundle.cjs'), t - 10, t - 10);
      assert.equal(which(), 'no-inspector modules', 'a tsc build since the bundle');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('src/util/worker-entry.ts', () => {
  test('a worker starts from x.bundle.cjs while it is at least as new as x.js, else from x.js', () => {
    const dir = tempDir('prh-worker-entry-');
    try {
      const t = Date.now() / 1000;
      const entry = (name: string, bundle: number | null, module = t): URL => {
        writeFileSync(join(dir, `${name}.js`), '');
        utimesSync(join(dir, `${name}.js`), module, module);
        if (bundle !== null) {
          writeFileSync(join(dir, `${name}.bundle.cjs`), '');
          utimesSync(join(dir, `${name}.bundle.cjs`), bundle, bundle);
        }
        return workerEntry(pathToFileURL(join(dir, `${name}.js`)));
      };
      assert.equal(entry('none', null).href, pathToFileURL(join(dir, 'none.js')).href, 'no bundle');
      assert.equal(entry('newer', t + 10).href, pathToFileURL(join(dir, 'newer.bundle.cjs')).href, 'newer bundle');
      assert.equal(entry('same', t).href, pathToFileURL(join(dir, 'same.bundle.cjs')).href, 'same time (an npm tarball)');
      assert.equal(entry('older', t - 10).href, pathToFileURL(join(dir, 'older.js')).href, 'a tsc build since the bundle');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('after npm run build, every worker entry module has its current bundle', () => {
    for (const entry of ['server/fast-path-worker', 'sys/sgio-thread-main', 'mpath/thread-main', 'mpath/probe-main']) {
      const module = pathToFileURL(join(REPO_ROOT, 'dist', 'src', `${entry}.js`));
      assert.equal(workerEntry(module).href, pathToFileURL(join(REPO_ROOT, 'dist', 'src', `${entry}.bundle.cjs`)).href, entry);
    }
  });
});

describe('src/privileges/no-inspector.cts', () => {
  const NO_INSPECTOR = join(realpathSync(REPO_ROOT), 'dist', 'src', 'privileges', 'no-inspector.cjs');
  const run = (flags: string[], after: string): string => {
    const r = spawnSync(process.execPath, [...flags, '-e', `require(${JSON.stringify(NO_INSPECTOR)}); ${after}`], {
      encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '' },
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };

  test('an inspector opened by hand (--inspect) is closed', () => {
    assert.equal(run(['--inspect=127.0.0.1:0'], "console.log(String(require('node:inspector').url()))"), 'undefined');
  });

  test('SIGUSR1 has our listener; without an inspector, node:inspector is not even loaded', () => {
    assert.equal(run(['--inspect-port=[fe80::1]:9229'],
      "console.log(process.listenerCount('SIGUSR1'), process.moduleLoadList.includes('NativeModule inspector'))"), '1 false');
  });
});
