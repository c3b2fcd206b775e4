/**
 * Bundles the helper's main-thread modules (dist/src/cli/main.js and everything it imports,
 * dynamic imports included) into one CommonJS file, dist/src/cli/main.bundle.cjs, after
 * `tsc`; and each worker thread's entry module likewise (ENTRIES below). src/cli/entry.cts requires it instead of importing main.js while it is at least as
 * new as main.js: on Node 20 each ES module costs a few file reads through libuv's thread
 * pool, and starting the ES module loader at all about 20 ms; the ~75 modules of a serving
 * image were the largest part of its start-up (docs/performance.md). The per-module layout
 * stays what the tests import, and the fall-back.
 *
 * The bundle sits beside main.js. Each module's `import.meta.url` (worker entry points,
 * koffi's createRequire) becomes that module's own file URL in dist/src, computed from the
 * bundle's __dirname. src/privileges/no-inspector.cts stays a module of its own, required
 * (entry.cts requires it before the bundle: evaluated once, first).
 *
 * usage: node scripts/bundle.mjs   (from anywhere, after tsc -p .)
 */
import { build } from 'esbuild';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'dist', 'src');
const NO_INSPECTOR = join(src, 'privileges', 'no-inspector.cjs');
/** Defined first in the bundle, where `require` is still the module's own (modules may shadow it). */
const MODULE_URL = '__prhModuleUrl';
const banner = `'use strict';\nconst ${MODULE_URL} = (own) => require('node:url').pathToFileURL(require('node:path').join(__dirname, own)).href;`;

/** Every module's import.meta.url becomes its own file's URL, from the bundle's place (`dir`). */
const ownUrls = (dir) => ({
  name: 'own-module-urls',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return { contents: text, loader: 'js' };
      const own = JSON.stringify(relative(dir, args.path));
      return { contents: text.replaceAll('import.meta.url', `${MODULE_URL}(${own})`), loader: 'js' };
    });
  },
});

/** no-inspector.cjs stays a module of its own, required by its path relative to the bundle. */
const firstModule = (dir) => ({
  name: 'no-inspector-first',
  setup(b) {
    b.onResolve({ filter: /no-inspector\.cjs$/ }, (args) => {
      const path = resolve(args.resolveDir, args.path);
      if (path !== NO_INSPECTOR) return undefined;
      return { path: `./${relative(dir, path)}`, external: true };
    });
  },
});

/**
 * The main thread's bundle, and one per worker thread's entry module (loaded through
 * src/util/worker-entry.ts: a worker then reads one file instead of starting the ES module
 * loader, about half its load time).
 */
const ENTRIES = [
  ['cli/main.js', 'cli/main.bundle.cjs'],
  ['server/fast-path-worker.js', 'server/fast-path-worker.bundle.cjs'],
  ['sys/sgio-thread-main.js', 'sys/sgio-thread-main.bundle.cjs'],
  ['mpath/thread-main.js', 'mpath/thread-main.bundle.cjs'],
  ['mpath/probe-main.js', 'mpath/probe-main.bundle.cjs'],
];

for (const [entry, out] of ENTRIES) {
  const dir = dirname(join(src, entry));
  await build({
    entryPoints: [join(src, entry)],
    outfile: join(src, out),
    bundle: true,
    format: 'cjs',
    banner: { js: banner },
    platform: 'node',
    target: 'node20',
    // koffi is loaded from node_modules, as by the per-module layout.
    external: ['koffi'],
    plugins: [firstModule(dir), ownUrls(dir)],
    logLevel: 'warning',
    legalComments: 'none',
  });
  // esbuild escapes non-ASCII characters in code but keeps them in comments (a few § and ≤).
  // One of them makes V8 hold the whole source, which it keeps for lazy compilation, as a
  // two-byte string: 0.25 MB more heap in every image (issue 16). \uXXXX is the same text in
  // a comment, and the same character anywhere else.
  const outfile = join(src, out);
  const text = await readFile(outfile, 'utf8');
  const ascii = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (ascii !== text) await writeFile(outfile, ascii);
}
