/**
 * The re-executed image (src/images/first.ts): takes over what the first one opened as
 * root, tells the janitor it handles signals now, checks every thread's credentials, waits
 * for the janitor to put the socket in place, and serves.
 */
import { closeSync, read, writeSync } from 'node:fs';
import { env } from 'node:process';
import { ListenError, adoptListeningSocket, publishListener, type ListenerInfo } from '../server/listener.js';
import { isOpenFd } from '../sys/fd.js';
import type { Handoff } from '../daemon/handoff.js';
import { JANITOR_PLACED, JANITOR_PUBLISHED, JANITOR_READY } from '../privileges/janitor.js';
import { verifyThreads } from '../privileges/verify.js';
import { expectedAfterDrop } from '../privileges/policy.js';
import { describeMask } from '../privileges/capabilities.js';
import { findMultipathSupport } from '../privileges/multipath.js';
import { serve } from './serve.js';
import { Startup, type Invocation } from './startup.js';

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

/**
 * Puts the socket in place itself if it can (same identity check and rename as the
 * janitor's, with fewer privileges; uid 0 in a directory root owns, the common case), so
 * that no process has to be started and waited for. Whether it did.
 */
function placedHere(listener: ListenerInfo): boolean {
  if (listener.staging === undefined || listener.staging === null) return false;
  try {
    publishListener(listener);
    return true;
  } catch (error) {
    if (!(error instanceof ListenError)) throw error;
    // not allowed here (-u to another user, a directory we may no longer write), or
    // replaced: the janitor, as root, decides
    return false;
  }
}

/** `traceFd`: the -T file= the first image opened (checked open), or null. */
export function secondImage(invocation: Invocation, handoff: Handoff, traceFd: number | null): void {
  const { log } = invocation;
  const multipath = findMultipathSupport(env);
  const startup: Startup = new Startup(log, handoff.readyFd, handoff.pidfile);
  try {
    startup.listener = adoptListeningSocket(handoff.listenFd, handoff.createdPath,
      { dev: handoff.socketDev, inode: handoff.socketInode, staging: handoff.socketStaging });
  } catch (error) {
    if (!(error instanceof ListenError)) throw error;
    startup.fail(error.message);
  }
  const listener = startup.listener;
  // Our TERM/INT/HUP handlers exist (main installed them before anything else): from now
  // on we clean up ourselves, the janitor can go, once the socket is in place: by us
  // ("placed") or by the janitor ("ready", and its answer below).
  const janitorFd = handoff.janitorFd !== null && isOpenFd(handoff.janitorFd) ? handoff.janitorFd : null;
  let answerFd = handoff.janitorAnswerFd !== null && isOpenFd(handoff.janitorAnswerFd) ? handoff.janitorAnswerFd : null;
  const placed = janitorFd !== null && placedHere(listener);
  if (janitorFd !== null) {
    try {
      writeSync(janitorFd, placed ? JANITOR_PLACED : JANITOR_READY);
    } catch {
      // the janitor is gone
    }
    closeSync(janitorFd);
  }
  if (placed && answerFd !== null) {
    closeSync(answerFd);
    answerFd = null;
  }
  const expected = expectedAfterDrop(handoff.uid, handoff.gid, handoff.kept);
  const { threads, problems } = verifyThreads(expected);
  if (problems.length > 0) {
    startup.fail(`Failed to drop privileges: ${problems.slice(0, 4).join('; ')}`);
  }
  // Unless placed above, the janitor was told "ready" and puts the socket in place; only
  // then are we.
  void janitorPublished(listener, answerFd).then((published) => {
    if (!published) {
      startup.fail(`Failed to bind socket to ${listener.createdPath ?? ''}: the socket could not be put in place`);
    }
    serve({
      ...invocation, startup, listener, multipath,
      identity: `uid ${handoff.uid} gid ${handoff.gid}, no supplementary groups, ${describeMask(handoff.kept)} only on all ${threads.length} threads`,
      uid: handoff.uid, kept: handoff.kept, traceFd,
    });
  });
}
