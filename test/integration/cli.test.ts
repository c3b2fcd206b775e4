/**
 * The command line as a user meets it: our launcher against Debian's C helper for the same
 * arguments (docs/protocol.md §1.1, §1.9): same exit codes and same messages, with the program name
 * normalized. --help must keep every line of the reference's text.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { OUR_HELPER, REFERENCE_HELPER, hasReferenceHelper } from '../support/launcher.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(binary: string, args: string[]): Run {
  const r = spawnSync(binary, args, { encoding: 'utf8', timeout: 20_000 });
  const norm = (s: string): string => s.split(binary).join('PROG');
  return { code: r.status, stdout: norm(r.stdout), stderr: norm(r.stderr) };
}

describe('command line', () => {
  test('our launcher keeps argv[0] as invoked', () => {
    const r = spawnSync(OUR_HELPER, ['--bogus'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `${OUR_HELPER}: unrecognized option '--bogus'\nqemu-pr-helper: Try \`${OUR_HELPER} --help' for more information.\n`);
  });

  test('-V names this implementation, its version and the protocol', () => {
    const r = run(OUR_HELPER, ['-V']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^PROG 0\.1\.0 \(qemu-pr-helper-ts\)\n/);
    assert.match(r.stdout, /PR_HELPER_FEATURE_CLEANUP/);
  });

  // -T is compared with the C helper in trace.test.ts.
});

describe('command line against the C helper', { skip: hasReferenceHelper() ? false : `${REFERENCE_HELPER} is not installed (Debian package qemu-system-common)` }, () => {
  const long = `/tmp/${'x'.repeat(120)}`;
  const cases: string[][] = [
    ['--bogus'], ['--bogus=1'], ['-x'], ['-k'], ['--socket'], ['--s'], ['--help=1'], ['--vers=1'],
    ['-k', 'relative.sock'], ['-k', ''], ['-vqk', 'rel'], ['--socket=rel'], ['--ver'],
    ['-k', long], ['-k', '/nonexistent-dir/x.sock'], ['-u', 'no-such-user-x'], ['-g', 'no-such-group-x'],
    ['-u', '-1'], ['-u', '0x10'], ['-u', '4294967296'], ['--bogus', '-h'], ['-k', 'rel', '-h'],
    ['-T', 'foo=1'], ['--trace=x,help'], ['--tr', 'nosuch', '-k', 'rel'], ['-T'], ['-Tfile=/tmp/a%x'],
  ];
  for (const args of cases) {
    test(`same result for: ${args.join(' ') || '(empty)'}`.slice(0, 80), () => {
      const ours = run(OUR_HELPER, args);
      const ref = run(REFERENCE_HELPER, args);
      assert.deepEqual(ours, ref);
    });
  }

  test('--help keeps every line of the reference text', () => {
    const ours = run(OUR_HELPER, ['--help']);
    const ref = run(REFERENCE_HELPER, ['--help']);
    assert.equal(ours.code, 0);
    const ourLines = new Set(ours.stdout.split('\n'));
    const missing = ref.stdout.split('\n')
      .filter((l) => !l.startsWith('See <https://qemu.org') && !l.startsWith('More information on the QEMU'))
      .filter((l) => !ourLines.has(l));
    assert.deepEqual(missing, []);
  });

  test('-h and -V exit 0 like the reference', () => {
    for (const a of ['-h', '--help', '-V', '--version', '--vers']) {
      assert.equal(run(OUR_HELPER, [a]).code, 0);
      assert.equal(run(REFERENCE_HELPER, [a]).code, 0);
    }
  });
});
