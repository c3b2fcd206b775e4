/** What may reach a Node image of the helper from outside (src/privileges/runtime.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  hardenedNodeFlags, isCodeLoadingVariable, supportsDisableSigusr1, UNBINDABLE_INSPECTOR, untrustedReason,
  withoutCodeLoadingVariables,
} from '../../src/privileges/runtime.js';

test('--disable-sigusr1 only where Node has it (22.14, 23.7, 24+)', () => {
  for (const v of ['v20.20.2', 'v22.13.1', 'v23.6.0', 'garbage']) assert.equal(supportsDisableSigusr1(v), false, v);
  for (const v of ['v22.14.0', 'v23.7.0', 'v24.0.0', 'v26.1.0']) assert.equal(supportsDisableSigusr1(v), true, v);
});

test('re-exec flags keep the memory setting, drop anything else, add the inspector lock-out', () => {
  assert.deepEqual(hardenedNodeFlags(['--max-semi-space-size=2', '--inspect=0.0.0.0:9229', '--require', '/tmp/x.cjs'], 'v20.20.2'),
    ['--max-semi-space-size=2', UNBINDABLE_INSPECTOR]);
  assert.deepEqual(hardenedNodeFlags([], 'v24.1.0'), [UNBINDABLE_INSPECTOR, '--disable-sigusr1']);
  // bin/qemu-pr-helper's memory flags, all of them, in their order.
  const launcher = ['--max-semi-space-size=2', '--min-semi-space-size=2', '--no-short-builtin-calls'];
  assert.deepEqual(hardenedNodeFlags([...launcher, '--min-semi-space-size=x', '--max-opt=1', '--no-short-builtin-calls=1'], 'v20.20.2'),
    [...launcher, UNBINDABLE_INSPECTOR]);
});

test('code-loading variables are removed, others kept', () => {
  for (const name of ['NODE_OPTIONS', 'NODE_PATH', 'NODE_COMPILE_CACHE', 'LD_PRELOAD', 'LD_LIBRARY_PATH', 'OPENSSL_CONF', 'GCONV_PATH']) {
    assert.ok(isCodeLoadingVariable(name), name);
  }
  assert.deepEqual(withoutCodeLoadingVariables({ NODE_OPTIONS: '--inspect', NOTIFY_SOCKET: '/run/n', LISTEN_FDS: '1', PATH: '/bin' }),
    { NOTIFY_SOCKET: '/run/n', LISTEN_FDS: '1', PATH: '/bin' });
});

test('a file is trusted only if it and every directory above belong to root, writable by nobody else', () => {
  const root = (path: string, mode: number) => ({ path, owner: { uid: 0, mode } });
  assert.equal(untrustedReason([root('/usr/bin/node', 0o100755), root('/usr/bin', 0o40755), root('/', 0o40755)]), null);
  assert.match(untrustedReason([{ path: '/home/u/node', owner: { uid: 1000, mode: 0o100755 } }]) ?? '', /uid 1000/);
  assert.match(untrustedReason([root('/opt/n/node', 0o100775)]) ?? '', /its group/);
  assert.match(untrustedReason([root('/tmp/lib.so', 0o100644), root('/tmp', 0o41777)]) ?? '', /\/tmp is writable by everyone/);
});
