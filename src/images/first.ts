/**
 * The first image: listens (or adopts systemd's socket), writes the pid file, and then
 * either serves at once (started as another user: nothing to drop) or, started as root,
 * switches to -u/-g with only the kept capabilities and re-executes itself
 * (src/privileges/drop.ts), keeping its pid, with the hand-off envelope for the image that
 * serves (src/images/second.ts).
 */
import { resolve } from 'node:path';
import { env, argv, execArgv, execPath, pid, version as nodeVersion } from 'node:process';
import type { Options } from '../cli/options.js';
import type { Logger } from '../log/logger.js';
import { checkActivation } from '../server/activation.js';
import { ListenError, adoptActivatedSocket, claimActivatedFds, discardListener, listenOnPath, type ListenerInfo } from '../server/listener.js';
import { currentGid, currentUid } from '../sys/credentials.js';
import { exitImmediately } from '../sys/fd.js';
import { SyscallError } from '../sys/errors.js';
import { encodeEnvelope, HANDOFF_VARIABLE, type Handoff } from '../daemon/handoff.js';
import { acquirePidFile, PidFileError, releasePidFile } from '../daemon/pidfile.js';
import { dropAndReexec } from '../privileges/drop.js';
import { startJanitor } from '../privileges/janitor.js';
import { readThreadCredentials } from '../privileges/verify.js';
import { reviewUnprivileged, targetId } from '../privileges/policy.js';
import { findMultipathSupport, keptAsRoot, keptUnprivileged } from '../privileges/multipath.js';
import { hardenedNodeFlags, withoutCodeLoadingVariables } from '../privileges/runtime.js';
import { distrust } from '../privileges/trust.js';
import { openTraceFile } from '../trace/files.js';
import { serve } from './serve.js';
import { Startup, type Invocation } from './startup.js';

export interface FirstImageInput {
  /** Write end of the -d launcher's readiness pipe (open), or null. */
  readyFd: number | null;
  /** Descriptors inherited besides stdio that must survive the re-exec (bin/qemu-pr-helper). */
  inheritedFds: readonly number[];
}

function openListener(program: string, options: Options, log: Logger): ListenerInfo {
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

export function firstImage(invocation: Invocation, { readyFd, inheritedFds }: FirstImageInput): void {
  const { program, options, log, stopSignals, traceEvents } = invocation;
  const multipath = findMultipathSupport(env);
  const startup: Startup = new Startup(log, readyFd);
  // The -T file=, opened as the reference does after parsing, before the socket, as root.
  const traceFile = options.trace.file === null ? null : openTraceFile(options.trace.file, pid);
  if (traceFile !== null && 'error' in traceFile) startup.fail(traceFile.error);
  const traceFd = traceFile?.fd ?? null;
  // daemon(3) changes to /; a relative -f still means the launching directory (docs/protocol.md §9.16).
  const pidfilePath = options.daemonize || options.pidfileGiven ? resolve(options.pidfile) : null;
  if (readyFd !== null) process.chdir('/');
  try {
    startup.listener = openListener(program, options, log);
  } catch (error) {
    if (!(error instanceof ListenError)) throw error;
    startup.fail(error.message, error.hint);
  }
  if (pidfilePath !== null) {
    try {
      startup.pidfile = acquirePidFile(pidfilePath, pid);
    } catch (error) {
      if (!(error instanceof PidFileError)) throw error;
      startup.fail(error.message);
    }
  }
  const uid = currentUid();
  const gid = currentGid();
  const target = { uid: targetId(options.uid, uid), gid: targetId(options.gid, gid) };
  const listener = startup.listener;
  if (uid !== 0) {
    if (target.uid !== uid || target.gid !== gid) {
      startup.fail(
        `Failed to drop privileges: started as uid ${uid} gid ${gid}, which cannot switch to uid ${target.uid} gid ${target.gid}; start as root to use -u/-g`);
    }
    const threads = readThreadCredentials();
    const mainThread = threads.find((t) => t.tid === pid);
    const kept = keptUnprivileged(multipath, mainThread?.effective ?? 0n);
    const review = reviewUnprivileged(threads, uid, gid, kept);
    for (const warning of review.warnings) log.warning(`warning: ${warning}`);
    if (review.errors.length > 0) {
      startup.fail(`Refusing to run: ${review.errors.slice(0, 4).join('; ')}`);
    }
    // Our handlers exist since main installed them: the path may appear.
    startup.publish();
    serve({
      ...invocation, startup, listener, multipath, identity: `uid ${uid} gid ${gid} as started`, uid, kept, traceFd,
    });
    return;
  }
  // The image we execute keeps CAP_SYS_RAWIO: it must be a Node only root can replace.
  const nodeDistrust = distrust(execPath);
  if (nodeDistrust !== null) {
    startup.fail(`Refusing to run ${execPath} with privileges: ${nodeDistrust}`);
  }
  const kept = keptAsRoot(multipath, target.uid);
  // From here until the serving image has its handlers, a signal may end us by its default
  // action: the janitor then removes the socket and the pid file (src/privileges/janitor.ts).
  // It also puts the socket in place once the serving image handles signals, so that the
  // path (libvirt's sign of readiness) appears only when a TERM gets the orderly exit.
  const socketFile = listener.createdPath !== null && listener.dev !== null && listener.inode !== null
    ? { staging: listener.staging ?? null, path: listener.createdPath, dev: listener.dev, inode: listener.inode } : null;
  const janitor = socketFile === null && startup.pidfile === null ? null
    : startJanitor(socketFile, startup.pidfile, readyFd === null ? inheritedFds : [...inheritedFds, readyFd]);
  // Without a janitor (no /bin/sh), the path appears now, as root can still rename.
  if (janitor === null) startup.publish();
  const handoff: Handoff = {
    listenFd: listener.fd,
    createdPath: listener.createdPath,
    socketDev: listener.dev,
    socketInode: listener.inode,
    pidfile: startup.pidfile,
    readyFd,
    janitorFd: janitor?.tell ?? null,
    janitorAnswerFd: janitor?.answer ?? null,
    socketStaging: listener.staging ?? null,
    uid: target.uid,
    gid: target.gid,
    kept,
  };
  const keepFds = [0, 1, 2, listener.fd, ...inheritedFds];
  if (startup.pidfile) keepFds.push(startup.pidfile.fd);
  if (readyFd !== null) keepFds.push(readyFd);
  if (janitor !== null) keepFds.push(janitor.tell, janitor.answer);
  if (traceFd !== null) keepFds.push(traceFd);
  const childEnv = {
    ...withoutCodeLoadingVariables(env),
    [HANDOFF_VARIABLE]: encodeEnvelope({ image: 'dropped', program, traceEvents, traceFd, handoff }),
  };
  const leaveBeforeServing = (): never => {
    if (startup.listener) discardListener(startup.listener);
    if (startup.pidfile) releasePidFile(startup.pidfile);
    return exitImmediately(0);
  };
  // Up to here everything ran synchronously, so a TERM/INT/HUP caught meanwhile sits in
  // libuv's signal pipe: one turn of the event loop delivers it to our handler. Then the
  // default actions come back, and a second turn delivers what was caught before that.
  // A signal after it ends the process (the janitor cleans up) instead of being lost in
  // the execve.
  void yieldToLoop().then(() => {
    if (stopSignals.requested) leaveBeforeServing();
    stopSignals.restoreDefaultActions();
    return yieldToLoop();
  }).then(() => {
    if (stopSignals.requested) leaveBeforeServing();
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
      startup.fail(`Failed to drop privileges: ${error.message}`);
    }
  };
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
