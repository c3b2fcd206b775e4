/**
 * Serving (docs/protocol.md §1.5, §1.8): builds the executor and the server from one config, announces
 * readiness, and on SIGTERM/SIGINT/SIGHUP finishes executing requests and exits 0.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { env, pid } from 'node:process';
import type { Logger } from '../log/logger.js';
import { LISTEN_BACKLOG, type ListenerInfo } from '../server/listener.js';
import { exitImmediately } from '../sys/fd.js';
import { duplicateOnto } from '../sys/credentials.js';
import { sendServiceNotification } from '../sys/notify.js';
import { releasePidFile } from '../daemon/pidfile.js';
import { READY_MESSAGE } from '../daemon/launcher.js';
import { multipathOpener, type MultipathSupport } from '../privileges/multipath.js';
import { errorMessage, errorStack } from '../util/error-message.js';
import type { Invocation, Startup } from './startup.js';

/** How long shutdown waits beyond the SG_IO timeout for requests still executing. */
const SHUTDOWN_GRACE_MS = 5000;
/** Node fires longer timers after 1 ms (TimeoutOverflowWarning): --io-timeout allows 49 days. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ServeConfig extends Invocation {
  /** The pid file and readiness pipe to finish with, and how to fail before serving. */
  startup: Startup;
  /** The listening socket, in place. */
  listener: ListenerInfo;
  multipath: MultipathSupport;
  /** Who we run as, for the "Running as" line. */
  identity: string;
  uid: number;
  /** The capabilities every thread holds. */
  kept: bigint;
  /** The -T file=, or null: trace lines go to stderr. */
  traceFd: number | null;
}

/** Tells whoever started us that connections are now accepted. */
function announceReady(log: Logger, readyFd: number | null): void {
  if (readyFd !== null) {
    try {
      writeSync(readyFd, READY_MESSAGE);
    } catch {
      // the launcher is gone; nothing to tell
    }
    closeSync(readyFd);
    // daemon(3): from now on nobody reads our stderr (the launcher has exited).
    const devNull = openSync('/dev/null', 'r+');
    duplicateOnto(devNull, 2);
    closeSync(devNull);
  }
  const notifySocket = env['NOTIFY_SOCKET'];
  if (notifySocket !== undefined && notifySocket !== '') {
    delete env['NOTIFY_SOCKET'];
    try {
      sendServiceNotification(notifySocket, `READY=1\nMAINPID=${pid}`);
    } catch (error) {
      log.warning(`warning: cannot notify systemd through ${notifySocket}: ${errorMessage(error)}`);
    }
  }
}

/**
 * What only a serving image needs, imported when it starts serving: the root image that
 * drops privileges and re-executes never loads it (start-up time, docs/performance.md).
 */
async function servingModules() {
  const [events, requestLog, server, sgioExecutor, sgioPool, fastPath, mpathExecutor, tracer] = await Promise.all([
    import('../server/events.js'), import('../log/request-log.js'), import('../server/server.js'),
    import('../exec/sgio-executor.js'), import('../exec/sgio-pool.js'), import('../server/fast-path.js'),
    import('../mpath/executor.js'), import('../trace/tracer.js'),
  ]);
  return { ...events, ...requestLog, ...server, ...sgioExecutor, ...sgioPool, ...fastPath, ...mpathExecutor, ...tracer };
}

/**
 * libuv starts its threadpool on first use, with UV_THREADPOOL_SIZE threads (4 by default).
 * Serving, its users are the threadpool lane (one job at a time,
 * docs/internals.md#the-threadpool-lane) and the module reads of threads as they load: two
 * threads, one of which stays free while the lane's job is hung. An operator's value wins.
 */
const SERVING_THREADPOOL_SIZE = '2';

export function serve(config: ServeConfig): void {
  const { startup } = config;
  // Read by libuv when the threadpool starts: with the bundle, at the first request.
  env['UV_THREADPOOL_SIZE'] ??= SERVING_THREADPOOL_SIZE;
  servingModules().then(
    (modules) => serveWith(modules, config),
    (error: unknown) => startup.fail(`Cannot load the server: ${errorMessage(error)}`),
  ).catch((error: unknown) => startup.fail(`Cannot start serving: ${errorStack(error)}`));
}

function serveWith(
  {
    Tracer, fileTraceSink, stderrTraceSink, combineObservers, RequestLog, FastPath, DEFAULT_FAST_PATH_OPTIONS, SgIoPool,
    DEFAULT_POOL_OPTIONS, SgIoExecutor, MultipathExecutor, Server,
  }: Awaited<ReturnType<typeof servingModules>>,
  { options, log, stopSignals, traceEvents, traceFd, startup, listener, multipath, identity, uid, kept }: ServeConfig,
): void {
  // Trace points only when some are enabled: otherwise nothing observes or hooks anything.
  const tracer = traceEvents.length === 0 ? null
    : new Tracer(new Set(traceEvents), traceFd === null ? stderrTraceSink : fileTraceSink(traceFd));
  const requestLog = new RequestLog(log, { showKeys: options.logKeys });
  const observer = combineObservers([requestLog, ...(tracer ? [tracer] : [])]);
  // Without request log lines or request trace points, requests run on the fast path's
  // workers while two or more connections are open (fast-path.ts). Otherwise the main
  // thread serves them, its pool running each SG_IO on libuv's threadpool, one at a time,
  // and starting threads of its own only for what finds that busy (sgio-pool.ts): one
  // VM's helper, one connection, runs no thread of ours (docs/performance.md "One VM").
  const fastPath = observer.wantsRequests === true ? null
    : new FastPath({ ...DEFAULT_FAST_PATH_OPTIONS, timeoutMs: options.ioTimeoutMs, features: options.features });
  if (fastPath) fastPath.onDisabled = (reason) => log.warning(`warning: ${reason}; serving every request on the main thread`);
  const pool = new SgIoPool({ ...DEFAULT_POOL_OPTIONS, lazy: true, threadpool: true }, tracer?.poolHooks() ?? null);
  const plain = new SgIoExecutor(pool, { timeoutMs: options.ioTimeoutMs });
  const executor = new MultipathExecutor(plain, pool, multipathOpener(multipath, log, uid, kept), {
    // Per-request errors share the default level's limits (src/log/limiter.ts).
    noisy: options.noisy ? 1 : 0, verbose: options.verbosity, timeoutMs: options.ioTimeoutMs, log: (m) => requestLog.error(m),
    warn: (m) => requestLog.warning(m),
  });
  const access = options.allowUids === null && options.allowGids === null ? null
    : { uids: new Set(options.allowUids ?? []), gids: new Set(options.allowGids ?? []) };
  const server = new Server({
    listener, executor, closer: pool, log, observer, access, fastPath, features: options.features, reportError: (m) => requestLog.error(m),
  });
  server.start(LISTEN_BACKLOG);
  log.info(`Running as ${identity}`);
  announceReady(log, startup.readyFd);

  let stopping = false;
  const leave = (): never => {
    // A summary of suppressed log lines still waiting for its interval is printed now.
    requestLog.flush();
    if (startup.pidfile) {
      const message = releasePidFile(startup.pidfile);
      if (message) log.fatal(message);
    }
    return exitImmediately(0);
  };
  stopSignals.onStop(() => {
    if (stopping) return;
    stopping = true;
    // Executing requests are answered first, but a device that never returns (a dm map
    // queueing without paths ignores the SG_IO timeout) must not keep us forever: after
    // the SCSI timeout plus a grace period, exit anyway.
    setTimeout(() => {
      log.fatal(`Exiting with ${executor.inFlight + (fastPath?.busy ?? 0)} request(s) still executing after the I/O timeout`);
      leave();
    }, Math.min(options.ioTimeoutMs + SHUTDOWN_GRACE_MS, MAX_TIMER_MS)).unref();
    void server.stop().then(() => {
      // Every response has been written (send() is synchronous) and the socket removed.
      // Leave with _exit rather than process.exit(): Node's exit joins worker threads, and
      // a thread still inside SG_IO would hold it, while a thread still loading koffi aborts
      // the process (napi_throw during teardown: SIGABRT, seen under load in the SIGTERM
      // test). stderr writes are synchronous, so nothing is lost.
      executor.close();
      fastPath?.close();
      leave();
    });
  });
}
