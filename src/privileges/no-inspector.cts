/**
 * Required first by src/cli/entry.cts (and imported first by src/cli/main.ts, when that
 * runs on its own), so that it runs before any other module of the helper is evaluated: a
 * SIGUSR1 listener replaces Node's own handler, which would open an unauthenticated
 * inspector (on Node < 22.14, where --disable-sigusr1 does not exist). Until this line
 * runs, the launcher's flags make that inspector unable to bind
 * (src/privileges/runtime.ts). An inspector opened anyway (`node --inspect` by hand) is
 * closed here, before the helper opens anything.
 *
 * Whether an inspector listens is asked of Node's own inspector binding, which is there
 * at no cost: loading node:inspector compiles some 25 internal modules (streams, worker
 * threads), a few milliseconds of every image's start-up. Where that binding is missing or
 * answers anything but "not listening", node:inspector decides, as it always did.
 *
 * A CommonJS module (.cts): the entry module and the bundle (scripts/bundle.mjs) are
 * CommonJS, and an ES module cannot be required on Node 20. Node evaluates it once, for
 * whichever loads it first.
 */

// Never removed: removing the last listener would restore the default action.
process.on('SIGUSR1', () => undefined);

/** The inspector's URL according to Node's binding: undefined when none listens, null if unknown. */
function bindingUrl(): unknown {
  try {
    const binding = (process as unknown as { binding(name: string): { url?: unknown } }).binding('inspector');
    return typeof binding.url === 'function' ? (binding as { url(): unknown }).url() : null;
  } catch {
    return null;
  }
}

if (bindingUrl() !== undefined) {
  const inspector = require('node:inspector') as typeof import('node:inspector');
  if (inspector.url() !== undefined) inspector.close();
}
