/**
 * Required first by src/cli/entry.cts (and imported first by src/cli/main.ts, when that
 * runs on its own), so that it runs before any other module of the helper is evaluated: a SIGUSR1 listener replaces Node's own handler, which would open an
 * unauthenticated inspector (on Node < 22.14, where --disable-sigusr1 does not exist).
 * Until this line runs, the launcher's flags make that inspector unable to bind
 * (src/privileges/runtime.ts). An inspector opened anyway (`node --inspect` by hand) is
 * closed here, before the helper opens anything.
 *
 * A CommonJS module (.cts): the entry module and the bundle (scripts/bundle.mjs) are
 * CommonJS, and an ES module cannot be required on Node 20. Node evaluates it once, for
 * whichever loads it first.
 */
import { close as closeInspector, url as inspectorUrl } from 'node:inspector';

// Never removed: removing the last listener would restore the default action.
process.on('SIGUSR1', () => undefined);
if (inspectorUrl() !== undefined) closeInspector();
