/**
 * Entry point: parse the command line, listen (or adopt systemd's socket), drop privileges,
 * serve until SIGTERM/SIGINT/SIGHUP, then finish executing requests and exit 0 (spec §1.5,
 * §1.8). Only this module decides to exit the process.
 *
 * One helper may run as up to three process images, all with the reference's command line:
 * - with -d, a launcher that starts the daemon in a new session and exits once it serves
 *   (src/daemon/launcher.ts);
 * - started as root: a first image that listens, writes the pid file, switches to -u/-g
 *   with only CAP_SYS_RAWIO and re-executes itself (src/privileges/drop.ts), keeping its pid;
 * - the image that serves, which checks every thread's credentials before it does.
 */
// First: replaces Node's SIGUSR1 inspector trigger before any other module is evaluated.
import '../privileges/no-inspector.js';
import { closeSync, existsSync, openSync, read, readFileSync, realpathSync, statSync, writeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname, resolve } from 'node:path';
import { env, argv, execArgv, execPath, pid, version as nodeVersion } from 'node:process';
import { parseCommandLine, type Options } from './options.js';
import { Logger, stderrIsJournal } from '../log/logger.js';
import { checkActivation } from '../server/activation.js';
import {
  ListenError, adoptActivatedSocket, adoptListeningSocket, claimActivatedFds, discardListener, listenOnPath, publishListener,
  LISTEN_BACKLOG, type ListenerInfo,
} from '../server/listener.js';
import { lookupGroupId, lookupUserId } from '../sys/accounts.js';
import { KOFFI_VERSION } from '../sys/libc.js';
import { exitImmediately, isOpenFd } from '../sys/fd.js';
import { currentGid, currentUid, duplicateOnto } from '../sys/credentials.js';
import { sendServiceNotification } from '../sys/notify.js';
import { SyscallError } from '../sys/errors.js';
import { decodeHandoff, encodeHandoff, HANDOFF_VARIABLE, HandoffError, type Handoff } from '../daemon/handoff.js';
import { acquirePidFile, PidFileError, releasePidFile, type PidFile } from '../daemon/pidfile.js';
import { launchDaemon, READY_FD_VARIABLE, READY_MESSAGE } from '../daemon/launcher.js';
import { dropAndReexec } from '../privileges/drop.js';
import { JANITOR_PUBLISHED, JANITOR_READY, startJanitor } from '../privileges/janitor.js';
import { restoreDefaultAction } from '../sys/signals.js';
import { verifyThreads, readThreadCredentials } from '../privileges/verify.js';
import { expectedAfterDrop, keptCapabilities, reviewUnprivileged, targetId } from '../privileges/policy.js';
import { CAP_SYS_ADMIN, describeMask, maskOf } from '../privileges/capabilities.js';
import { hardenedNodeFlags, untrustedReason, withoutCodeLoadingVariables, type FileOwner } from '../privileges/runtime.js';
import { findMpathLibrary, MpathLibrary, mpathLibraryAbi } from '../mpath/library.js';
import { TRACE_EVENT_NAMES } from '../trace/events.js';
import { expandLogfileTemplate, type EventsFileRead } from '../trace/options.js';
import {
  decodeTraceHandoff, encodeTraceHandoff, TRACE_HANDOFF_VARIABLE, TraceHandoffError, type TraceHandoff,
} from '../trace/handoff.js';
import { describeErrno } from '../sys/errors.js';

// libvirt closes our stderr pipe after start-up: EPIPE on stdio must not kill the helper
// (ecosystem.md D.5 item 4). SIGPIPE itself is ignored by Node, and sends use MSG_NOSIGNAL.
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);

const ARGV0_VARIABLE = 'QEMU_PR_HELPER_ARGV0';
/** Set by bin/qemu-pr-helper: the descriptors it inherited besides stdio. */
const INHERITED_FDS_VARIABLE = 'QEMU_PR_HELPER_INHERITED_FDS';

const program = env[ARGV0_VARIABLE] ?? argv[1] ?? 'qemu-pr-helper';
const handoffText = env[HANDOFF_VARIABLE];
const readyFdText = env[READY_FD_VARIABLE];
const inheritedText = env[INHERITED_FDS_VARIABLE];
const traceText = env[TRACE_HANDOFF_VARIABLE];
for (const name of [ARGV0_VARIABLE, HANDOFF_VARIABLE, READY_FD_VARIABLE, INHERITED_FDS_VARIABLE, TRACE_HANDOFF_VARIABLE]) {
  delete env[name];
}

/** Owner and mode of `path` and of each directory above it, for untrustedReason(). */
function ownershipChain(path: string): { path: string; owner: FileOwner }[] {
  const chain: { path: string; owner: FileOwner }[] = [];
  for (let p = path; ; p = dirname(p)) {
    const { uid, mode } = statSync(p);
    chain.push({ path: p, owner: { uid, mode } });
    if (p === dirname(p)) return chain;
  }
}

/** Why `path` (resolved) must not be run or loaded by the privileged helper, or null. */
function distrust(path: string): string | null {
  try {
    return untrustedReason(ownershipChain(realpathSync(path)));
  } catch (error) {
    return strerrorOf(error);
  }
}

/**
 * QEMU_PR_HELPER_MPATH_LIBRARY names a library the helper loads with its capabilities:
 * honoured only for a file that only root can change. A missing one means "no library".
 */
const mpathOverride = env['QEMU_PR_HELPER_MPATH_LIBRARY'];
const mpathOverrideDistrust = mpathOverride !== undefined && existsSync(mpathOverride) ? distrust(mpathOverride) : null;
/** Where libmpathpersist is, or null. */
const mpathLibraryPath = mpathOverrideDistrust === null ? findMpathLibrary(mpathOverride) : null;
const ADMIN = maskOf([CAP_SYS_ADMIN]);

/** How long shutdown waits beyond the SG_IO timeout for requests still executing. */
const SHUTDOWN_GRACE_MS = 5000;
/** Node fires longer timers after 1 ms (TimeoutOverflowWarning): --io-timeout allows 49 days. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Stop = () => void;
let stopRequested = false;
let stop: Stop | null = null;
// Installed before anything else, as the reference does: SIGHUP terminates, it does not
// reload (spec §1.8).
const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
for (const signal of STOP_SIGNALS) {
  process.on(signal, () => {
    stopRequested = true;
    stop?.();
  });
}

/** What start-up has created so far, undone if a later step fails (spec §9 item 16). */
interface Resources {
  listener: ListenerInfo | null;
  pidfile: PidFile | null;
  readyFd: number | null;
}

function failStartup(log: Logger, resources: Resources, message: string, hint: string | null = null): never {
  log.fatal(message);
  if (hint) process.stderr.write(`${hint}\n`);
  if (resources.listener) discardListener(resources.listener);
  if (resources.pidfile) releasePidFile(resources.pidfile);
  exitImmediately(1);
}

/** Puts the socket in place (renames it from its temporary name), or fails start-up. */
function publishOrFail(log: Logger, resources: Resources): void {
  if (resources.listener === null) return;
  try {
    publishListener(resources.listener);
  } catch (error) {
    if (!(error instanceof ListenError)) throw error;
    failStartup(log, resources, error.message);
  }
}

/** How long the serving image waits for the janitor to put the socket in place. */
const PUBLICATION_TIMEOUT_MS = 10_000;

/**
 * Resolves once the janitor, told "ready", has renamed the socket into place (true), or
 * false when it could not (its answer, end of file or the time out). The serving image may
 * not be able to look into the directory itself, so the janitor answers on a pipe.
 */
function janitorPublished(listener: ListenerInfo, answerFd: number | null): Promise<boolean> {
  if (listener.staging === undefined || listener.staging === null) {
    // Nothing to put in place (socket activation, or put there before the re-exec).
    if (answerFd !== null) closeSync(answerFd);
    return Promise.resolve(true);
  }
  if (answerFd === null) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), PUBLICATION_TIMEOUT_MS);
    const buffer = Buffer.alloc(64);
    read(answerFd, buffer, 0, buffer.length, null, (error, n) => {
      clearTimeout(timer);
      closeSync(answerFd);
      const published = error === null && buffer.toString('latin1', 0, n).startsWith(JANITOR_PUBLISHED);
      if (published) listener.staging = null;
      resolve(published);
    });
  });
}

function openListener(options: Options, log: Logger): ListenerInfo {
  const activation = checkActivation(env, pid);
  if (activation.kind === 'invalid') throw new ListenError(activation.message);
  // Not put in place yet: see firstImage.
  if (activation.kind === 'none') return listenOnPath(options.socketPath, { publish: false });
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

function parseFdList(text: string | undefined): number[] {
  if (text === undefined) return [];
  return text.split(/\s+/).filter((s) => /^[0-9]+$/.test(s)).map(Number).filter((fd) => fd > 2 && isOpenFd(fd));
}

function parseReadyFd(text: string | undefined): number | null {
  if (text === undefined || !/^[0-9]+$/.test(text)) return null;
  const fd = Number(text);
  return isOpenFd(fd) ? fd : null;
}

/** -d: start the daemon and report how that went. The reference's parent exits 0 at once. */
function launch(log: Logger, trace: TraceHandoff): void {
  const inheritedFds = parseFdList(inheritedText);
  void launchDaemon({
    execPath,
    args: [...hardenedNodeFlags(execArgv, nodeVersion), argv[1] ?? '', ...argv.slice(2)],
    env: { ...withoutCodeLoadingVariables(env), [ARGV0_VARIABLE]: program, [TRACE_HANDOFF_VARIABLE]: encodeTraceHandoff(trace) },
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

function firstImage(options: Options, log: Logger, trace: TraceHandoff): void {
  const readyFd = parseReadyFd(readyFdText);
  const resources: Resources = { listener: null, pidfile: null, readyFd };
  // daemon(3) changes to /; a relative -f still means the launching directory (§9.16).
  const pidfilePath = options.daemonize || options.pidfileGiven ? resolve(options.pidfile) : null;
  if (readyFd !== null) process.chdir('/');
  try {
    resources.listener = openListener(options, log);
  } catch (error) {
    if (!(error instanceof ListenError)) throw error;
    failStartup(log, resources, error.message, error.hint);
  }
  if (pidfilePath !== null) {
    try {
      resources.pidfile = acquirePidFile(pidfilePath, pid);
    } catch (error) {
      if (!(error instanceof PidFileError)) throw error;
      failStartup(log, resources, error.message);
    }
  }
  const uid = currentUid();
  const gid = currentGid();
  const target = { uid: targetId(options.uid, uid), gid: targetId(options.gid, gid) };
  const listener = resources.listener;
  if (uid !== 0) {
    if (target.uid !== uid || target.gid !== gid) {
      failStartup(log, resources,
        `Failed to drop privileges: started as uid ${uid} gid ${gid}, which cannot switch to uid ${target.uid} gid ${target.gid}; start as root to use -u/-g`);
    }
    const threads = readThreadCredentials();
    // CAP_SYS_ADMIN is accepted, and multipath enabled, only with the library installed.
    const mainThread = threads.find((t) => t.tid === pid);
    const kept = keptCapabilities(mpathLibraryPath !== null && ((mainThread?.effective ?? 0n) & ADMIN) !== 0n);
    const review = reviewUnprivileged(threads, uid, gid, kept);
    for (const warning of review.warnings) log.warning(`warning: ${warning}`);
    if (review.errors.length > 0) {
      failStartup(log, resources, `Refusing to run: ${review.errors.slice(0, 4).join('; ')}`);
    }
    // Our handlers exist since this module was evaluated: the path may appear.
    publishOrFail(log, resources);
    serve(options, log, resources, listener, `uid ${uid} gid ${gid} as started`, uid, kept, trace);
    return;
  }
  // The image we execute keeps CAP_SYS_RAWIO: it must be a Node only root can replace.
  const nodeDistrust = distrust(execPath);
  if (nodeDistrust !== null) {
    failStartup(log, resources, `Refusing to run ${execPath} with privileges: ${nodeDistrust}`);
  }
  // CAP_SYS_ADMIN only for uid 0: with -u to another user, multipathd refuses the
  // library's key updates and the path devices are root's, while CAP_SYS_ADMIN would
  // give that user nearly all of root's power (README "Threat model").
  const kept = keptCapabilities(mpathLibraryPath !== null && target.uid === 0);
  const inheritedFds = parseFdList(inheritedText);
  // From here until the serving image has its handlers, a signal may end us by its default
  // action: the janitor then removes the socket and the pid file (src/privileges/janitor.ts).
  // It also puts the socket in place once the serving image handles signals, so that the
  // path (libvirt's sign of readiness) appears only when a TERM gets the orderly exit.
  const socketFile = listener.createdPath !== null && listener.dev !== null && listener.inode !== null
    ? { staging: listener.staging ?? null, path: listener.createdPath, dev: listener.dev, inode: listener.inode } : null;
  const janitor = socketFile === null && resources.pidfile === null ? null
    : startJanitor(socketFile, resources.pidfile, readyFd === null ? inheritedFds : [...inheritedFds, readyFd]);
  // Without a janitor (no /bin/sh), the path appears now, as root can still rename.
  if (janitor === null) publishOrFail(log, resources);
  const handoff: Handoff = {
    listenFd: listener.fd,
    createdPath: listener.createdPath,
    socketDev: listener.dev,
    socketInode: listener.inode,
    pidfile: resources.pidfile,
    readyFd,
    janitorFd: janitor?.tell ?? null,
    janitorAnswerFd: janitor?.answer ?? null,
    socketStaging: listener.staging ?? null,
    uid: target.uid,
    gid: target.gid,
    kept,
  };
  const keepFds = [0, 1, 2, listener.fd, ...inheritedFds];
  if (resources.pidfile) keepFds.push(resources.pidfile.fd);
  if (readyFd !== null) keepFds.push(readyFd);
  if (janitor !== null) keepFds.push(janitor.tell, janitor.answer);
  if (trace.fd !== null) keepFds.push(trace.fd);
  const childEnv = {
    ...withoutCodeLoadingVariables(env), [ARGV0_VARIABLE]: program, [HANDOFF_VARIABLE]: encodeHandoff(handoff),
    [TRACE_HANDOFF_VARIABLE]: encodeTraceHandoff(trace),
  };
  const leaveBeforeServing = (): never => {
    if (resources.listener) discardListener(resources.listener);
    if (resources.pidfile) releasePidFile(resources.pidfile);
    return exitImmediately(0);
  };
  // Up to here everything ran synchronously, so a TERM/INT/HUP caught meanwhile sits in
  // libuv's signal pipe: one turn of the event loop delivers it to our handler. Then the
  // default actions come back, and a second turn delivers what was caught before that.
  // A signal after it ends the process (the janitor cleans up) instead of being lost in
  // the execve.
  void yieldToLoop().then(() => {
    if (stopRequested) leaveBeforeServing();
    for (const signal of STOP_SIGNALS) restoreDefaultAction(signal);
    return yieldToLoop();
  }).then(() => {
    if (stopRequested) leaveBeforeServing();
    reexec();
  });
  const reexec = (): void => {
    try {
      dropAndReexec({
        uid: target.uid,
        gid: target.gid,
        kept,
        keepFds,
        execPath,
        argv: [argv[0] ?? execPath, ...hardenedNodeFlags(execArgv, nodeVersion), argv[1] ?? '', ...argv.slice(2)],
        env: Object.entries(childEnv).map(([k, v]) => `${k}=${v ?? ''}`),
      });
    } catch (error) {
      if (!(error instanceof SyscallError)) throw error;
      failStartup(log, resources, `Failed to drop privileges: ${error.message}`);
    }
  };
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The re-executed image: take over what the first one opened, then check every thread. */
function secondImage(options: Options, log: Logger, text: string, trace: TraceHandoff): void {
  let handoff: Handoff;
  try {
    handoff = decodeHandoff(text);
  } catch (error) {
    if (!(error instanceof HandoffError)) throw error;
    log.fatal(error.message);
    exitImmediately(1);
  }
  // Our TERM/INT/HUP handlers exist (installed when this module was evaluated): from now
  // on we clean up ourselves, the janitor can go.
  if (handoff.janitorFd !== undefined && handoff.janitorFd !== null && isOpenFd(handoff.janitorFd)) {
    try {
      writeSync(handoff.janitorFd, JANITOR_READY);
    } catch {
      // the janitor is gone
    }
    closeSync(handoff.janitorFd);
  }
  const resources: Resources = { listener: null, pidfile: handoff.pidfile, readyFd: handoff.readyFd };
  try {
    resources.listener = adoptListeningSocket(handoff.listenFd, handoff.createdPath,
      { dev: handoff.socketDev, inode: handoff.socketInode, staging: handoff.socketStaging ?? null });
  } catch (error) {
    if (!(error instanceof ListenError)) throw error;
    failStartup(log, resources, error.message);
  }
  const listener = resources.listener;
  const expected = expectedAfterDrop(handoff.uid, handoff.gid, handoff.kept);
  const { threads, problems } = verifyThreads(expected);
  if (problems.length > 0) {
    failStartup(log, resources, `Failed to drop privileges: ${problems.slice(0, 4).join('; ')}`);
  }
  // The janitor was told "ready" above and puts the socket in place; only then are we.
  const answerFd = handoff.janitorAnswerFd !== undefined && handoff.janitorAnswerFd !== null && isOpenFd(handoff.janitorAnswerFd)
    ? handoff.janitorAnswerFd : null;
  void janitorPublished(listener, answerFd).then((published) => {
    if (!published) {
      failStartup(log, resources, `Failed to bind socket to ${listener.createdPath ?? ''}: the socket could not be put in place`);
    }
    serve(options, log, resources, listener,
      `uid ${handoff.uid} gid ${handoff.gid}, no supplementary groups, ${describeMask(handoff.kept)} only on all ${threads.length} threads`,
      handoff.uid, handoff.kept, trace);
  });
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
      log.warning(`warning: cannot notify systemd through ${notifySocket}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/**
 * Returns the opener the executor calls on the first multipath request (spec §5; never a
 * PR down a single path of a multipath map). A host without multipath devices is told
 * nothing at the default level: -v says at start what multipath would do, and a reason it
 * cannot work is a warning when the first multipath fd arrives (once).
 */
function multipathOpener(log: Logger, uid: number, kept: bigint): () => Promise<MpathLibrary | null> {
  const path = mpathLibraryPath;
  const refuse = (reason: string) => {
    log.info(`multipath: PR commands on dm-multipath devices would be refused: ${reason}`);
    return (): Promise<MpathLibrary | null> => {
      log.warning(`warning: a PR command arrived on a dm-multipath device, but ${reason}: PR commands on dm-multipath devices are refused`);
      return Promise.resolve(null);
    };
  };
  if (path === null && mpathOverrideDistrust !== null) {
    return refuse(`QEMU_PR_HELPER_MPATH_LIBRARY=${mpathOverride ?? ''} is not loaded with privileges: ${mpathOverrideDistrust}`);
  }
  if (path === null) {
    return refuse('libmpathpersist.so.0 is not installed ' +
      '(Debian/Ubuntu: apt-get install multipath-tools; RHEL/Fedora: device-mapper-multipath-libs)');
  }
  if ((kept & ADMIN) === 0n) {
    return refuse(uid !== 0
      ? 'with -u to a user other than root the helper does not keep CAP_SYS_ADMIN, which libmpathpersist needs ' +
        '(and multipathd takes key updates only from uid 0); run without -u for multipath'
      : 'libmpathpersist needs CAP_SYS_ADMIN, which this helper was not given');
  }
  log.info(`multipath: ${path} (${mpathLibraryAbi(path) ?? 'unknown ABI'}), loaded on the first multipath request`);
  return () => {
    if (uid !== 0) log.warning('warning: multipathd accepts key updates only from uid 0; with -u it will not track reservation keys');
    return MpathLibrary.open(path, log.journal).then((library) => {
      log.info(`multipath: libmpathpersist initialised (${path})`);
      return library;
    }, (error: unknown) => {
      log.warning(`warning: libmpathpersist (${path}) cannot be used: ${error instanceof Error ? error.message : String(error)}; ` +
        'PR commands on dm-multipath devices will be refused');
      return null;
    });
  };
}

/**
 * What only a serving image needs, imported when it starts serving: the root image that
 * drops privileges and re-executes never loads it (start-up time, README "Performance").
 */
async function servingModules() {
  const [events, requestLog, server, sgioExecutor, sgioPool, fastPath, mpathExecutor, tracer] = await Promise.all([
    import('../server/events.js'), import('../log/request-log.js'), import('../server/server.js'),
    import('../exec/sgio-executor.js'), import('../exec/sgio-pool.js'), import('../server/fast-path.js'),
    import('../mpath/executor.js'), import('../trace/tracer.js'),
  ]);
  return { ...events, ...requestLog, ...server, ...sgioExecutor, ...sgioPool, ...fastPath, ...mpathExecutor, ...tracer };
}

function serve(
  options: Options, log: Logger, resources: Resources, listener: ListenerInfo, identity: string, uid: number, kept: bigint,
  trace: TraceHandoff,
): void {
  servingModules().then(
    (modules) => serveWith(modules, options, log, resources, listener, identity, uid, kept, trace),
    (error: unknown) => failStartup(log, resources, `Cannot load the server: ${error instanceof Error ? error.message : String(error)}`),
  ).catch((error: unknown) => failStartup(log, resources, `Cannot start serving: ${error instanceof Error ? error.stack : String(error)}`));
}

function serveWith(
  {
    Tracer, fileTraceSink, stderrTraceSink, combineObservers, RequestLog, FastPath, DEFAULT_FAST_PATH_OPTIONS, SgIoPool,
    DEFAULT_POOL_OPTIONS, SgIoExecutor, MultipathExecutor, Server,
  }: Awaited<ReturnType<typeof servingModules>>,
  options: Options, log: Logger, resources: Resources, listener: ListenerInfo, identity: string, uid: number, kept: bigint,
  trace: TraceHandoff,
): void {
  // Trace points only when some are enabled: otherwise nothing observes or hooks anything.
  const tracer = trace.events.length === 0 ? null
    : new Tracer(new Set(trace.events), trace.fd === null ? stderrTraceSink : fileTraceSink(trace.fd));
  const requestLog = new RequestLog(log, { showKeys: options.logKeys });
  const observer = combineObservers([requestLog, ...(tracer ? [tracer] : [])]);
  // Without request log lines or request trace points, requests run on the fast path's
  // workers; the main thread's pool then serves only what they hand back, and starts its
  // threads when first needed.
  const fastPath = observer.wantsRequests === true ? null
    : new FastPath({ ...DEFAULT_FAST_PATH_OPTIONS, timeoutMs: options.ioTimeoutMs });
  if (fastPath) fastPath.onDisabled = (reason) => log.warning(`warning: ${reason}; serving every request on the main thread`);
  const pool = new SgIoPool({ ...DEFAULT_POOL_OPTIONS, lazy: fastPath !== null }, tracer?.poolHooks() ?? null);
  const plain = new SgIoExecutor(pool, { timeoutMs: options.ioTimeoutMs });
  const executor = new MultipathExecutor(plain, pool, multipathOpener(log, uid, kept), {
    // Per-request errors share the default level's limits (src/log/limiter.ts).
    noisy: options.noisy ? 1 : 0, verbose: options.verbosity, timeoutMs: options.ioTimeoutMs, log: (m) => requestLog.error(m),
  });
  const access = options.allowUids === null && options.allowGids === null ? null
    : { uids: new Set(options.allowUids ?? []), gids: new Set(options.allowGids ?? []) };
  const server = new Server({ listener, executor, closer: pool, log, observer, access, fastPath, reportError: (m) => requestLog.error(m) });
  server.start(LISTEN_BACKLOG);
  log.info(`Running as ${identity}`);
  announceReady(log, resources.readyFd);

  let stopping = false;
  const leave = (): never => {
    // A summary of suppressed log lines still waiting for its interval is printed now.
    requestLog.flush();
    if (resources.pidfile) {
      const message = releasePidFile(resources.pidfile);
      if (message) log.fatal(message);
    }
    return exitImmediately(0);
  };
  stop = () => {
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
  };
  if (stopRequested) stop();
}

/** strerror(3) text for a failed Node fs call, as the reference prints it. */
function strerrorOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const errno = (osConstants.errno as Record<string, number | undefined>)[code];
  return errno === undefined ? String(error) : describeErrno(errno);
}

/** A -T events= file, or strerror(3) text for why it cannot be read. */
function readTraceFile(path: string): EventsFileRead {
  try {
    return { kind: 'text', text: readFileSync(path, 'utf8') };
  } catch (error) {
    // QEMU's fopen accepts a directory and its first fgets fails: no events, no error.
    if ((error as NodeJS.ErrnoException).code === 'EISDIR') return { kind: 'text', text: '' };
    return { kind: 'error', message: strerrorOf(error) };
  }
}

/**
 * Opens the -T file= as the reference does after parsing, before the socket: truncated,
 * created 0666 & ~umask, as root (so before the privilege drop). Exits 1 on failure.
 */
function openTraceFile(log: Logger, template: string): number {
  const name = expandLogfileTemplate(template, pid);
  try {
    return openSync(name, 'w');
  } catch (error) {
    log.fatal(`Error opening logfile ${name}: ${strerrorOf(error)}`);
    return exitImmediately(1);
  }
}

function main(): void {
  // A later image inherits the trace set-up instead of applying -T again (src/trace/handoff.ts).
  let inherited: TraceHandoff | null = null;
  if (traceText !== undefined) {
    try {
      inherited = decodeTraceHandoff(traceText, TRACE_EVENT_NAMES);
    } catch (error) {
      if (!(error instanceof TraceHandoffError)) throw error;
      process.stderr.write(`${program.slice(program.lastIndexOf('/') + 1)}: ${error.message}\n`);
      exitImmediately(1);
    }
  }
  const parsed = parseCommandLine(argv.slice(2), {
    program,
    posixlyCorrect: env['POSIXLY_CORRECT'] !== undefined,
    lookupUser: lookupUserId,
    lookupGroup: lookupGroupId,
    runtime: { node: nodeVersion, koffi: KOFFI_VERSION },
    readTraceFile: inherited === null ? readTraceFile : () => ({ kind: 'text', text: '' }),
  });
  if (parsed.kind === 'exit') {
    process.stdout.write(parsed.stdout);
    process.stderr.write(parsed.stderr);
    process.exitCode = parsed.code;
    return;
  }
  const { options } = parsed;
  // -T warnings, once: the first image printed them already.
  if (inherited === null) process.stderr.write(parsed.stderr);
  const log = new Logger(program.slice(program.lastIndexOf('/') + 1), options.verbosity, undefined,
    stderrIsJournal(env['JOURNAL_STREAM']));
  const events = inherited?.events ?? [...options.trace.enabled];
  if (handoffText !== undefined) {
    const fd = inherited?.fd ?? null;
    secondImage(options, log, handoffText, { events, fd: fd !== null && isOpenFd(fd) ? fd : null });
  } else if (options.daemonize && readyFdText === undefined) {
    // The daemon opens file= itself: its %d is the daemon's pid.
    launch(log, { events, fd: null });
  } else {
    const fd = options.trace.file === null ? null : openTraceFile(log, options.trace.file);
    firstImage(options, log, { events, fd });
  }
}

main();
