/**
 * What bin/qemu-pr-helper runs: refuses a Node older than MINIMUM_NODE_MAJOR with the
 * launcher's message, then loads the helper (src/cli/main.ts), bundled into one file by
 * scripts/bundle.mjs when that is current. The launcher used to ask `node --version`
 * first, a whole extra Node start (docs/performance.md, start-up).
 *
 * No static import, and only syntax that every Node able to load an ES module parses (no
 * `?.` or `??`): the rest of the helper is parsed only once the version is known good, so
 * an old Node gets this message rather than a SyntaxError. src/privileges/no-inspector.ts
 * is still the first module of the helper evaluated (main.ts imports it first); this one
 * opens nothing and starts nothing.
 */
import { statSync } from 'node:fs';

const MINIMUM_NODE_MAJOR = 20;

/**
 * Whether scripts/bundle.mjs's main.bundle.js exists and is not older than main.js: tsc
 * rewrites main.js on every build, so a bundle older than it is of an earlier build (a
 * plain `tsc -p .` since), and the per-module layout is run instead. An npm tarball gives
 * both the same time.
 */
function bundleIsCurrent() {
  try {
    const bundle = statSync(new URL('./main.bundle.js', import.meta.url));
    const modules = statSync(new URL('./main.js', import.meta.url));
    return bundle.mtimeMs >= modules.mtimeMs;
  } catch (error) {
    return false;
  }
}

const match = /^v(\d+)\./.exec(process.version);
if (match === null || !(Number(match[1]) >= MINIMUM_NODE_MAJOR)) {
  const program = (process.env['QEMU_PR_HELPER_ARGV0'] || 'qemu-pr-helper').replace(/^.*\//, '');
  process.stderr.write(`${program}: needs Node.js >= ${MINIMUM_NODE_MAJOR}; ${process.execPath} is ${process.version}\n`);
  process.exitCode = 1;
} else {
  void import(bundleIsCurrent() ? './main.bundle.js' : './main.js');
}
