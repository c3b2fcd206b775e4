/**
 * Which file a worker thread starts from: the CommonJS bundle that scripts/bundle.mjs writes
 * beside its entry module (`x.js` → `x.bundle.cjs`) while that bundle is current, else the
 * module itself. A bundled worker reads one file and never starts the ES module loader,
 * whose file reads go through libuv's threadpool (two threads in the serving image, one of
 * them possibly the SG_IO lane's): measured 55 ms against 100 ms to load a fast-path worker,
 * and less contention when several load at once, as in a burst of connections
 * (docs/performance.md). Current means not older than the module, as for the main bundle
 * (src/cli/entry.cts, which cannot import this module: it must parse on old Nodes): tsc
 * rewrites the module on every build. Asked as each thread starts, not when the modules
 * load: an image that starts no thread pays nothing.
 */
import { statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export function workerEntry(module: URL): URL {
  const path = fileURLToPath(module);
  const bundle = path.replace(/\.js$/, '.bundle.cjs');
  try {
    if (bundle !== path && statSync(bundle).mtimeMs >= statSync(path).mtimeMs) return pathToFileURL(bundle);
  } catch {
    // no bundle (a plain `tsc -p .`), or no module: the module, as given
  }
  return module;
}
