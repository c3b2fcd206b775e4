/**
 * scripts/bundle.mjs's dist/src/cli/main.bundle.js, which src/cli/entry.ts runs while it
 * is current (`npm test` and `npm run build` make it after tsc): the bundle must keep what
 * the per-module layout guarantees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/launcher.js';

const CLI = join(REPO_ROOT, 'dist', 'src', 'cli');
const BUNDLE = join(CLI, 'main.bundle.js');
const skip = existsSync(BUNDLE) ? false : 'no dist/src/cli/main.bundle.js: built with tsc alone (npm run build makes it)';

test('the bundle imports only Node built-ins and no-inspector.js, which is thus evaluated before any of its code', { skip }, () => {
  const text = readFileSync(BUNDLE, 'utf8');
  const imports = [...text.matchAll(/^import\b[^'"]*?['"]([^'"]+)['"]/gm)].map((m) => m[1] ?? '');
  assert.ok(imports.length > 0);
  const ours = imports.filter((s) => !s.startsWith('node:'));
  assert.deepEqual(ours, ['./../privileges/no-inspector.js']);
  assert.ok(existsSync(join(CLI, '..', 'privileges', 'no-inspector.js')));
  // Nothing of no-inspector.ts is inlined: its listener is installed by that module alone.
  assert.doesNotMatch(text, /process\.on\(\s*["']SIGUSR1["']/);
});

test('every import.meta.url in the bundle names its own module in dist/src (worker entry points, koffi)', { skip }, () => {
  const text = readFileSync(BUNDLE, 'utf8');
  const uses = [...text.matchAll(/import\.meta\.url/g)].length;
  const rewritten = [...text.matchAll(/new URL\("(\.\/[^"]+)", import\.meta\.url\)\.href/g)].map((m) => m[1] ?? '');
  assert.ok(rewritten.length > 0);
  assert.equal(rewritten.length, uses, 'an import.meta.url left as the bundle\'s own');
  for (const own of rewritten) assert.ok(existsSync(fileURLToPath(new URL(own, `file://${CLI}/`))), own);
  // The worker threads' entry modules, resolved as the bundle resolves them.
  for (const m of text.matchAll(/new URL\("(\.\/[^"]+)", new URL\("(\.\/[^"]+)", import\.meta\.url\)\.href\)/g)) {
    const worker = new URL(m[1] ?? '', new URL(m[2] ?? '', `file://${CLI}/`));
    assert.ok(existsSync(fileURLToPath(worker)), worker.href);
  }
});
