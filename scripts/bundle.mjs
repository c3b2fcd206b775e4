/**
 * Bundles the helper's main-thread modules (dist/src/cli/main.js and everything it imports,
 * dynamic imports included) into one file, dist/src/cli/main.bundle.js, after `tsc`.
 * src/cli/entry.ts loads it instead of main.js while it is at least as new as main.js: on
 * Node 20 each ES module costs a few file reads through libuv's thread pool, and the ~75
 * modules of a serving image were the largest part of its start-up (docs/performance.md).
 * The per-module layout stays what the tests import, what worker threads load, and the
 * fall-back.
 *
 * The bundle sits beside main.js, so relative URLs resolve as in dist/src/cli/. Each
 * module's `import.meta.url` (worker entry points, koffi's createRequire) is rewritten to
 * that module's own URL in dist/src. src/privileges/no-inspector.ts stays a separate
 * module, imported by the bundle: evaluated before any of the bundle's own code, as ES
 * module order guarantees.
 *
 * usage: node scripts/bundle.mjs   (from the repository root, after tsc -p .)
 */
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'src', 'cli');
const NO_INSPECTOR = join(root, 'dist', 'src', 'privileges', 'no-inspector.js');

/** Every module's import.meta.url becomes its own file's URL, relative to the bundle. */
const ownUrls = {
  name: 'own-module-urls',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return { contents: text, loader: 'js' };
      const own = JSON.stringify(`./${relative(cli, args.path)}`);
      return { contents: text.replaceAll('import.meta.url', `new URL(${own}, import.meta.url).href`), loader: 'js' };
    });
  },
};

/** no-inspector.js stays a module of its own, imported by its path relative to the bundle. */
const firstModule = {
  name: 'no-inspector-first',
  setup(b) {
    b.onResolve({ filter: /no-inspector\.js$/ }, (args) => {
      const path = resolve(args.resolveDir, args.path);
      if (path !== NO_INSPECTOR) return undefined;
      return { path: `./${relative(cli, path)}`, external: true };
    });
  },
};

await build({
  entryPoints: [join(cli, 'main.js')],
  outfile: join(cli, 'main.bundle.js'),
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // koffi is loaded from node_modules, as by the per-module layout.
  external: ['koffi'],
  plugins: [firstModule, ownUrls],
  logLevel: 'warning',
  legalComments: 'none',
});
