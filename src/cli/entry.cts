/**
 * What bin/qemu-pr-helper runs: refuses a Node older than MINIMUM_NODE_MAJOR with the
 * launcher's message, installs src/privileges/no-inspector.cts, then loads the helper: the
 * bundle of scripts/bundle.mjs when it is current, else src/cli/main.ts. The launcher used
 * to ask `node --version` first, a whole extra Node start (docs/performance.md, start-up).
 *
 * CommonJS (.cts), as the bundle is: an image that runs the bundle never starts Node's
 * ES module loader, which costs about 20 ms. Only syntax that every Node able to run the
 * launcher parses (no `?.`, no `??`): the rest of the helper is parsed only once the
 * version is known good, so an old Node gets this message rather than a SyntaxError.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';

const MINIMUM_NODE_MAJOR = 20;

/**
 * Whether main.bundle.cjs exists and is not older than main.js: tsc rewrites main.js on
 * every build, so a bundle older than it is of an earlier build (a plain `tsc -p .` since),
 * and the per-module layout is run instead. An npm tarball gives both the same time.
 */
function bundleIsCurrent(): boolean {
  try {
    return statSync(join(__dirname, 'main.bundle.cjs')).mtimeMs >= statSync(join(__dirname, 'main.js')).mtimeMs;
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
  // Before any other module of the helper: Node's SIGUSR1 inspector trigger goes.
  require('../privileges/no-inspector.cjs');
  if (bundleIsCurrent()) {
    require('./main.bundle.cjs');
  } else {
    void import('./main.js');
  }
}
