/**
 * The -d launcher image (src/daemon/launcher.ts): starts the daemon, relays its start-up
 * errors and exits once it serves. The reference's parent exits 0 at once.
 */
import { env, argv, execArgv, execPath, version as nodeVersion } from 'node:process';
import { launchDaemon } from '../daemon/launcher.js';
import { encodeEnvelope, HANDOFF_VARIABLE } from '../daemon/handoff.js';
import { hardenedNodeFlags, withoutCodeLoadingVariables } from '../privileges/runtime.js';
import type { Invocation } from './startup.js';

/** Starts the daemon; sets the exit status once it serves (0) or has failed (1). */
export function launch({ program, log, traceEvents }: Invocation, inheritedFds: readonly number[]): void {
  void launchDaemon({
    execPath,
    args: [...hardenedNodeFlags(execArgv, nodeVersion), argv[1] ?? '', ...argv.slice(2)],
    // The daemon opens -T file= itself: its %d is the daemon's pid.
    envFor: (readyFd) => ({
      ...withoutCodeLoadingVariables(env),
      [HANDOFF_VARIABLE]: encodeEnvelope({ image: 'daemon', program, traceEvents, readyFd }),
    }),
    inheritedFds,
    relay: (chunk) => process.stderr.write(chunk),
  }).then((result) => {
    if (result.ready) {
      process.exitCode = 0;
    } else {
      log.fatal(`Failed to daemonize: the daemon exited (${result.exit ?? 'unknown'}) before accepting connections`);
      process.exitCode = 1;
    }
  });
}
