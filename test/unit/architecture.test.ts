/**
 * Layering rules, checked on the sources (style habits 1, 8, 9): the protocol and SCSI
 * layers and the pure multipath modules are pure, koffi is only loaded in src/sys/libc.ts,
 * `any` appears only there, and nothing silences the type checker.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { REPO_ROOT } from '../support/launcher.js';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

const SRC = join(REPO_ROOT, 'src');
const files = sources(SRC).map((path) => ({ rel: relative(REPO_ROOT, path), text: readFileSync(path, 'utf8') }));

test('sources were found', () => {
  assert.ok(files.length > 20);
});

test('src/protocol and src/scsi import no I/O, no koffi and no sys layer', () => {
  const bad = files
    .filter((f) => /^src\/(protocol|scsi)\//.test(f.rel))
    .flatMap((f) => [...f.text.matchAll(/from '([^']+)'/g)].map((m) => [f.rel, m[1] ?? ''] as const))
    .filter(([, spec]) => spec.startsWith('node:') || spec === 'koffi' || spec.includes('/sys/') || spec.includes('/server/') || spec.includes('/exec/'));
  assert.deepEqual(bad, []);
});

/** The multipath modules without I/O: the library's ABI and types, and the SCSI translation both ways. */
const PURE_MPATH = ['src/mpath/abi.ts', 'src/mpath/types.ts', 'src/mpath/translation.ts', 'src/mpath/full-status.ts', 'src/mpath/path-repair.ts'];

test('the pure multipath modules import no I/O, no koffi, no sys, server or exec layer, and no impure multipath module', () => {
  assert.deepEqual(PURE_MPATH.filter((rel) => !files.some((f) => f.rel === rel)), [], 'every pure multipath module exists');
  const bad = files
    .filter((f) => PURE_MPATH.includes(f.rel))
    .flatMap((f) => [...f.text.matchAll(/from '([^']+)'|import\('([^']+)'\)/g)].map((m) => [f.rel, m[1] ?? m[2] ?? ''] as const))
    .filter(([rel, spec]) => {
      if (spec.startsWith('node:') || spec === 'koffi' || spec.includes('/sys/') || spec.includes('/server/') || spec.includes('/exec/')) return true;
      const target = join(dirname(rel), spec).replace(/\.js$/, '.ts');
      // Only the pure layers below: src/protocol, src/scsi and the pure multipath modules.
      return !/^src\/(protocol|scsi)\//.test(target) && !PURE_MPATH.includes(target);
    });
  assert.deepEqual(bad, []);
});

test('koffi is loaded only in src/sys/libc.ts', () => {
  assert.deepEqual(files.filter((f) => /from 'koffi'|require\('koffi'\)/.test(f.text) && f.rel !== 'src/sys/libc.ts').map((f) => f.rel), []);
});

test('`any` appears only in src/sys/libc.ts; no @ts-ignore anywhere', () => {
  const anyUse = files.filter((f) => f.rel !== 'src/sys/libc.ts' && /(:\s*any\b|as any\b|<any>)/.test(f.text)).map((f) => f.rel);
  assert.deepEqual(anyUse, []);
  assert.deepEqual(files.filter((f) => f.text.includes('@ts-ignore')).map((f) => f.rel), []);
});

test('only the sys layer deals in errno numbers and pointers', () => {
  const bad = files
    .filter((f) => !f.rel.startsWith('src/sys/'))
    .filter((f) => /lastErrno|allocNative|\.address\b/.test(f.text))
    .map((f) => f.rel);
  assert.deepEqual(bad, []);
});

test('src/sys imports nothing above it but the pure multipath ABI (struct layouts and their values) and src/util', () => {
  const allowed = new Set(['../mpath/abi.js', '../mpath/types.js', '../util/error-message.js', '../util/strtoul.js', '../util/builtins.js', '../util/worker-entry.js']);
  const bad = files
    .filter((f) => f.rel.startsWith('src/sys/'))
    .flatMap((f) => [...f.text.matchAll(/(?:from|import)\s*\(?'([^']+)'/g)].map((m) => [f.rel, m[1] ?? ''] as const))
    .filter(([, spec]) => spec.startsWith('..') && !allowed.has(spec));
  assert.deepEqual(bad, []);
});
