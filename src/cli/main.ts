/**
 * Entry point: parse the command line, listen (or adopt systemd's socket), serve until
 * SIGTERM/SIGINT/SIGHUP, then finish executing requests and exit 0 (spec §1.5, §1.8).
 * Only this module decides to exit the process.
 */
import { env, argv, pid, version as nodeVersion } from 'node:process';
import { parseCommandLine, type Options } from './options.js';
import { Logger } from '../log/logger.js';
import { checkActivation } from '../server/activation.js';
import { ListenError, adoptActivatedSocket, claimActivatedFds, listenOnPath, type ListenerInfo } from '../server/listener.js';
import { Server } from '../server/server.js';
import { SgIoExecutor } from '../exec/sgio-executor.js';
import { SgIoPool, DEFAULT_POOL_OPTIONS } from '../exec/sgio-pool.js';
import { lookupGroupId, lookupUserId } from '../sys/accounts.js';
import { KOFFI_VERSION } from '../sys/libc.js';
import { exitImmediately } from '../sys/fd.js';

// libvirt closes our stderr pipe after start-up: EPIPE on stdio must not kill the helper
// (ecosystem.md D.5 item 4). SIGPIPE itself is ignored by Node, and sends use MSG_NOSIGNAL.
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);

const program = env['QEMU_PR_HELPER_ARGV0'] ?? argv[1] ?? 'qemu-pr-helper';
delete env['QEMU_PR_HELPER_ARGV0'];

/** How long shutdown waits beyond the SG_IO timeout for requests still executing. */
const SHUTDOWN_GRACE_MS = 5000;
/** Node fires longer timers after 1 ms (TimeoutOverflowWarning): --io-timeout allows 49 days. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Stop = () => void;
let stopRequested = false;
let stop: Stop | null = null;
// Installed before anything else, as the reference does: SIGHUP terminates, it does not
// reload (spec §1.8).
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.on(signal, () => {
    stopRequested = true;
    stop?.();
  });
}

function openListener(options: Options, log: Logger): ListenerInfo {
  const activation = checkActivation(env, pid);
  if (activation.kind === 'invalid') throw new ListenError(activation.message);
  if (activation.kind === 'none') return listenOnPath(options.socketPath);
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  claimActivatedFds(activation.count);
  if (options.socketPathGiven) throw new ListenError("Unix socket can't be set when using socket activation");
  if (activation.count > 1) {
    throw new ListenError(`${program} does not support socket activation with LISTEN_FDS > 1`);
  }
  const info = adoptActivatedSocket();
  log.info('Using the socket passed by systemd (fd 3)');
  return info;
}

function main(): void {
  const parsed = parseCommandLine(argv.slice(2), {
    program,
    posixlyCorrect: env['POSIXLY_CORRECT'] !== undefined,
    lookupUser: lookupUserId,
    lookupGroup: lookupGroupId,
    runtime: { node: nodeVersion, koffi: KOFFI_VERSION },
  });
  if (parsed.kind === 'exit') {
    process.stdout.write(parsed.stdout);
    process.stderr.write(parsed.stderr);
    process.exitCode = parsed.code;
    return;
  }
  const { options } = parsed;
  const log = new Logger(program.slice(program.lastIndexOf('/') + 1), options.verbosity);

  let listener: ListenerInfo;
  try {
    listener = openListener(options, log);
  } catch (error) {
    if (!(error instanceof ListenError)) throw error;
    log.fatal(error.message);
    if (error.hint) process.stderr.write(`${error.hint}\n`);
    process.exit(1);
  }

  const pool = new SgIoPool(DEFAULT_POOL_OPTIONS);
  const executor = new SgIoExecutor(pool, { timeoutMs: options.ioTimeoutMs });
  const server = new Server({ listener, executor, log });
  server.start();
  log.info(`Listening on ${listener.createdPath ?? 'the socket passed by systemd'}`);

  let stopping = false;
  stop = () => {
    if (stopping) return;
    stopping = true;
    // Executing requests are answered first, but a device that never returns (a dm map
    // queueing without paths ignores the SG_IO timeout) must not keep us forever: after
    // the SCSI timeout plus a grace period, exit anyway.
    setTimeout(() => {
      log.fatal(`Exiting with ${executor.inFlight} request(s) still executing after the I/O timeout`);
      exitImmediately(0);
    }, Math.min(options.ioTimeoutMs + SHUTDOWN_GRACE_MS, MAX_TIMER_MS)).unref();
    void server.stop().then(() => {
      // Every response has been written (send() is synchronous) and the socket removed.
      // Leave with _exit rather than process.exit(): Node's exit joins worker threads, and
      // a thread still inside SG_IO would hold it, while a thread still loading koffi aborts
      // the process (napi_throw during teardown: SIGABRT, seen under load in the SIGTERM
      // test). stderr writes are synchronous, so nothing is lost.
      executor.close();
      exitImmediately(0);
    });
  };
  if (stopRequested) stop();
}

main();
