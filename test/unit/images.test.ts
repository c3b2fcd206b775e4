/**
 * The process images (src/images/) and their entry point (src/cli/main.ts): only the entry
 * module has effects on import, and it evaluates src/privileges/no-inspector.cts before any
 * other module; the stop signals are remembered until an image says how to stop.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/launcher.js';
import { HANDOFF_VARIABLE, INHERITED_FDS_VARIABLE, SCRIPT_ARGV0_VARIABLE } from '../../src/daemon/handoff.js';

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1'] as const;

function listeners(): number[] {
  return [
    ...SIGNALS.map((s) => process.listenerCount(s)),
    process.stdout.listenerCount('error'), process.stderr.listenerCount('error'),
  ];
}

test('importing the images and their policies installs no listener and touches no variable', async () => {
  const variables = [HANDOFF_VARIABLE, SCRIPT_ARGV0_VARIABLE, INHERITED_FDS_VARIABLE, 'QEMU_PR_HELPER_MPATH_LIBRARY'];
  for (const name of variables) process.env[name] = `${name} value`;
  const before = listeners();
  try {
    await Promise.all([
      import('../../src/images/startup.js'), import('../../src/images/launch.js'), import('../../src/images/first.js'),
      import('../../src/images/second.js'), import('../../src/images/serve.js'), import('../../src/privileges/multipath.js'),
      import('../../src/privileges/trust.js'), import('../../src/trace/files.js'),
    ]);
    assert.deepEqual(listeners(), before);
    for (const name of variables) assert.equal(process.env[name], `${name} value`, name);
  } finally {
    for (const name of variables) delete process.env[name];
  }
});

test('src/cli/main.ts imports no-inspector before any other module', () => {
  const text = readFileSync(join(REPO_ROOT, 'src', 'cli', 'main.ts'), 'utf8');
  const first = /^import .*$/m.exec(text)?.[0];
  assert.equal(first, "import '../privileges/no-inspector.cjs';");
});

test('src/cli/entry.cts requires no-inspector before it loads the helper (bundle or main.js)', () => {
  const text = readFileSync(join(REPO_ROOT, 'src', 'cli', 'entry.cts'), 'utf8');
  const loads = [...text.matchAll(/\b(?:require|import)\('([^']+)'\)/g)].map((m) => m[1]);
  assert.deepEqual(loads, ['../privileges/no-inspector.cjs', './main.bundle.cjs', './main.js']);
});

test('a stop signal is remembered, and calls the stop of the image that serves', async () => {
  const { StopSignals, STOP_SIGNALS } = await import('../../src/images/startup.js');
  const before = STOP_SIGNALS.map((s) => process.listeners(s));
  const stopSignals = new StopSignals();
  stopSignals.install();
  try {
    assert.equal(stopSignals.requested, false);
    process.emit('SIGHUP', 'SIGHUP');
    assert.equal(stopSignals.requested, true);
    let stops = 0;
    stopSignals.onStop(() => stops++);
    assert.equal(stops, 1, 'called at once for the signal that came before');
    process.emit('SIGTERM', 'SIGTERM');
    process.emit('SIGINT', 'SIGINT');
    assert.equal(stops, 3);
  } finally {
    for (const [i, signal] of STOP_SIGNALS.entries()) {
      for (const listener of process.listeners(signal)) {
        if (!(before[i] ?? []).includes(listener)) process.removeListener(signal, listener);
      }
    }
  }
});
