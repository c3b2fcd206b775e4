/**
 * scripts/bundle.mjs's dist/src/cli/main.bundle.cjs, which src/cli/entry.cts runs while it
 * is current (`npm test` and `npm run build` make it after tsc): the bundle must keep what
 * the per-module layout guarantees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { REPO_ROOT } from '../support/launcher.js';

const CLI = join(REPO_ROOT, 'dist', 'src', 'cli');
const BUNDLE = join(CLI, 'main.bundle.cjs');
const skip = existsSync(BUNDLE) ? false : 'no dist/src/cli/main.bundle.cjs: built with tsc alone (npm run build makes it)';

test('the bundle is strict code, and requires only Node built-ins, koffi (through createRequire) and no-inspector.cjs, not inlined', { skip }, () => {
  const text = readFileSync(BUNDLE, 'utf8');
  assert.match(text, /^'use strict';\n/, 'the first statement is the directive: ES modules were strict');
  const required = [...text.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1] ?? '');
  assert.ok(required.length > 0);
  assert.deepEqual([...new Set(required.filter((s) => !s.startsWith('node:')))], ['./../privileges/no-inspector.cjs']);
  assert.ok(existsSync(join(CLI, '..', 'privileges', 'no-inspector.cjs')));
  // Its listener is installed by that module alone (entry.cts requires it before the bundle).
  assert.doesNotMatch(text, /process\.on\(\s*["']SIGUSR1["']/);
});

test('every import.meta.url in the bundle became its own module\'s URL in dist/src (worker entry points, koffi)', { skip }, () => {
  const text = readFileSync(BUNDLE, 'utf8');
  assert.doesNotMatch(text, /import\.meta/);
  const own = [...text.matchAll(/__prhModuleUrl\("([^"]+)"\)/g)].map((m) => m[1] ?? '');
  assert.ok(own.length > 0);
  const base = pathToFileURL(join(CLI, 'x')).href;
  for (const path of own) assert.ok(existsSync(fileURLToPath(new URL(path, base))), path);
  // The worker threads' entry modules, resolved as the bundle resolves them.
  const workers = [...text.matchAll(/new URL\("(\.\/[^"]+)", __prhModuleUrl\("([^"]+)"\)\)/g)];
  assert.ok(workers.length >= 3, 'fast path, SG_IO and multipath workers');
  for (const m of workers) {
    const worker = new URL(m[1] ?? '', new URL(m[2] ?? '', base));
    assert.ok(existsSync(fileURLToPath(worker)), worker.href);
  }
});
