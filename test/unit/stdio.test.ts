/** src/cli/stdio.ts: stdio `error` listeners that come with the streams, not before them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/launcher.js';
import { ignoreStdioErrors } from '../../src/cli/stdio.js';

function fakeProcess(lazy: boolean) {
  const created: string[] = [];
  const proc = {};
  for (const name of ['stdout', 'stderr']) {
    if (lazy) {
      Object.defineProperty(proc, name, {
        configurable: true, enumerable: true,
        get: () => {
          created.push(name);
          return new EventEmitter();
        },
      });
    } else {
      Object.defineProperty(proc, name, { value: new EventEmitter(), enumerable: true, configurable: false });
    }
  }
  return { proc: proc as NodeJS.Process, created };
}

test('Node\'s lazy streams are not created; each gets the listener when it is, once', () => {
  const { proc, created } = fakeProcess(true);
  ignoreStdioErrors(proc);
  assert.deepEqual(created, []);
  const stderr = proc.stderr;
  assert.equal(stderr.listenerCount('error'), 1);
  assert.equal(proc.stderr, stderr, 'the same stream every time');
  assert.deepEqual(created, ['stderr']);
  assert.equal(proc.stdout.listenerCount('error'), 1);
  assert.deepEqual(created, ['stderr', 'stdout']);
});

test('streams that are plain properties get the listener at once', () => {
  const { proc } = fakeProcess(false);
  ignoreStdioErrors(proc);
  assert.equal(proc.stdout.listenerCount('error'), 1);
  assert.equal(proc.stderr.listenerCount('error'), 1);
});

test('in Node, with stderr a pipe: nothing is created until used, then a write to the closed pipe is survived', () => {
  const module = JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'cli', 'stdio.js'));
  const script = `
    const { ignoreStdioErrors } = await import(${module});
    ignoreStdioErrors();
    const before = process.moduleLoadList.includes('NativeModule net');
    const fs = await import('node:fs');
    fs.closeSync(2); fs.openSync('/dev/null', 'r'); // stand-in: fd 2 now reads-only, writes fail
    process.stderr.write('x');
    setTimeout(() => { fs.writeSync(1, before + ' ' + process.stderr.listenerCount('error')); }, 50);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'false 1');
});
