/**
 * A fast-path worker thread (see fast-path.ts): waits on the shared epoll set and serves
 * whole requests on the connections it receives, synchronously: read the CDB (and fd) and
 * parameters, run ioctl(SG_IO) here, send the response, re-arm. Nothing it cannot finish
 * without waiting is consumed: a partial request, end of file or anything invalid stays
 * queued in the socket and the connection goes back to the main thread, which has the
 * full per-connection state machine and logs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Opcode } from '../scsi/constants.js';
import { PR_HELPER_CDB_SIZE, PR_HELPER_DATA_SIZE } from '../protocol/constants.js';
import { Session, requestTransferLength, type Step } from '../protocol/session.js';
import { MAX_RESPONSE_SIZE } from '../protocol/response.js';
import { executeHere } from '../exec/sgio-executor.js';
import { multipathMapOf } from '../mpath/detect.js';
import { EpollWaiter, OneShotEpoll } from '../sys/epoll.js';
import { MessageReceiver, bytesAvailable } from '../sys/socket.js';
import { SgIoArea, runSgIoHere, type SgIoCommand, type SgIoResult } from '../sys/sgio.js';
import { closeFd, nameThisThread, threadId } from '../sys/fd.js';
import { SGIO_THREAD_NAME } from '../sys/sgio-control.js';
import { errorMessage } from '../util/error-message.js';
import {
  Flag, Owner, WorkerControl, stateWord, tagGeneration, tagSlot, type Handback, type ReceivedChunk, type WorkerData, type WorkerMessage,
} from './fast-path-shared.js';
import { receive, send } from './wire.js';

const data = workerData as WorkerData;
const slots = new Int32Array(data.slots);
const owners = new Int32Array(data.owners);
const served = new Int32Array(data.requests);
const flags = new Int32Array(data.flags);
const control = new Int32Array(data.control);
const epoll = new OneShotEpoll(data.epollFd);
// One event per wait: a worker that blocks on one connection must hold no other ready one,
// which the other workers serve meanwhile (docs/security.md "Threat model").
const waiter = new EpollWaiter(data.epollFd, 1);
const receiver = new MessageReceiver(PR_HELPER_DATA_SIZE);
const area = new SgIoArea();
/** runSgIoHere's own in-ioctl flag: this worker marks the whole serve in ENTERED instead. */
const inIoctl = new Int32Array(1);
const runHere = (fd: number, command: SgIoCommand): SgIoResult => runSgIoHere(area, fd, command, inIoctl, 0);
/** Each response is encoded here and sent at once (copied only if the socket is full). */
const responseBuffer = new Uint8Array(MAX_RESPONSE_SIZE);

function post(message: WorkerMessage): void {
  parentPort?.postMessage(message);
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) closeFd(fd);
}

/**
 * Reads up to `length` bytes without waiting, appending them to `chunks`. 'short' when
 * fewer were queued. At end of file an empty chunk is appended: the connection must go
 * back (re-arming it would wake a worker again at once, forever). A hand-back to close
 * the connection when reading failed (the fds read so far are closed).
 */
function gather(fd: number, length: number, acceptsFds: boolean, chunks: ReceivedChunk[]): 'complete' | 'short' | Handback {
  let have = 0;
  while (have < length) {
    const got = receive(receiver, fd, length - have, acceptsFds);
    switch (got.kind) {
      case 'again':
        return 'short';
      case 'eof':
        // The main thread reads the end of file again and reports it.
        chunks.push({ bytes: new Uint8Array(0), fds: got.fds });
        return 'short';
      case 'failed':
        closeAll([...chunks.flatMap((c) => c.fds), ...got.fds]);
        return { kind: 'close', ...got.failure };
      case 'data':
        chunks.push({ bytes: got.bytes.slice(), fds: got.fds });
        have += got.bytes.length;
    }
  }
  return 'complete';
}

/** The hand-back of a request that is not all here: what was read, without end-of-file markers. */
function giveBack(chunks: readonly ReceivedChunk[]): Handback {
  return { kind: 'replay', chunks: chunks.filter((c) => c.bytes.length > 0 || c.fds.length > 0) };
}

/**
 * Serves one request if all of it is queued: null when done (or nothing was queued), so
 * the connection is re-armed; otherwise what the main thread must do with it.
 */
function serveOne(fd: number, slot: number): Handback | null {
  const chunks: ReceivedChunk[] = [];
  const cdbRead = gather(fd, PR_HELPER_CDB_SIZE, true, chunks);
  if (cdbRead === 'short') return chunks.length === 0 ? null : giveBack(chunks);
  if (cdbRead !== 'complete') return cdbRead;
  const cdb = new Uint8Array(PR_HELPER_CDB_SIZE);
  let at = 0;
  for (const c of chunks) {
    cdb.set(c.bytes, at);
    at += c.bytes.length;
  }
  const transferLength = requestTransferLength(cdb);
  if (cdb[0] === Opcode.PERSISTENT_RESERVE_OUT && transferLength > 0 && transferLength <= PR_HELPER_DATA_SIZE) {
    // Parameters not all here yet: never wait for them (a peer that announces 8 KiB and
    // sends nothing would cost a worker); the main thread waits without a thread.
    if (bytesAvailable(fd) < transferLength) return giveBack(chunks);
    const parametersRead = gather(fd, transferLength, false, chunks);
    if (parametersRead === 'short') return giveBack(chunks);
    if (parametersRead !== 'complete') return parametersRead;
  }
  // Everything is here: the Session validates it exactly as on the main thread.
  let step: Step | null = null;
  for (const c of chunks) {
    if (step !== null && step.kind !== 'need-more') {
      closeAll(c.fds);
      continue;
    }
    step = state.session.feed(c.bytes, c.fds);
    closeAll(step.discardFds);
  }
  if (step === null || step.kind === 'need-more') throw new Error('a complete request left the session waiting');
  if (step.kind === 'close') {
    state.session = Session.afterHandshake(0, data.features);
    return { kind: 'close', reason: step.error.message, peerGone: false };
  }
  const request = step.request;
  if (multipathMapOf(request.fd) !== null) {
    // libmpathpersist runs on the main thread's multipath executor.
    state.session = Session.afterHandshake(0, data.features);
    return { kind: 'execute', request };
  }
  const outcome = executeHere(request, data.timeoutMs, runHere);
  Atomics.add(served, slot, 1);
  const sent = send(fd, state.session.respond(request, outcome, responseBuffer));
  switch (sent.kind) {
    case 'sent':
      return null;
    case 'again':
      return { kind: 'write', bytes: sent.rest.slice() };
    case 'failed':
      return { kind: 'close', ...sent.failure };
  }
}

/**
 * One Session for whichever connection this worker serves: between requests a session holds
 * nothing but the client's features, which do not matter past the handshake (docs/protocol.md §3.2).
 */
const state = { session: Session.afterHandshake(0, data.features) };

/** Shutdown, or the workers are leaving (fast-path.ts): connections go back instead of being re-armed. */
function handingBack(): boolean {
  return Atomics.load(flags, Flag.DRAINING) !== 0 || Atomics.load(flags, Flag.LEAVING) !== 0;
}

function serve(fd: number, tag: number): void {
  const slot = tagSlot(tag);
  const generation = tagGeneration(tag);
  const armed = stateWord(generation, Owner.ARMED);
  const mine = stateWord(generation, Owner.WORKER);
  // The main thread may have taken the connection back (shutdown) or closed it already.
  if (Atomics.compareExchange(slots, slot, armed, mine) !== armed) return;
  Atomics.store(owners, slot, data.index);
  let handback: Handback | null = null;
  Atomics.add(control, WorkerControl.SEQ, 1);
  Atomics.store(control, WorkerControl.ENTERED, 1);
  try {
    // One request per wake-up: re-arming reports a pipelined one at once, behind the
    // connections already waiting.
    handback = handingBack() ? { kind: 'read' } : serveOne(fd, slot);
    if (handback === null) {
      Atomics.store(slots, slot, armed);
      epoll.arm(fd, tag);
      // Shutdown or leaving may have begun between the check above and the store: the main
      // thread then found the slot busy and waits for it to come back.
      if (!handingBack() || Atomics.compareExchange(slots, slot, armed, mine) !== armed) return;
      handback = { kind: 'read' };
    }
  } catch (error) {
    // A bug costs this connection, not the helper.
    closeAll(state.session.end().discardFds);
    state.session = Session.afterHandshake(0, data.features);
    handback = { kind: 'close', reason: `Internal error on connection ${fd}: ${errorMessage(error)}`, peerGone: false };
  } finally {
    Atomics.store(control, WorkerControl.ENTERED, 0);
  }
  Atomics.store(slots, slot, stateWord(generation, Owner.MAIN));
  post({ type: 'handback', tag, handback });
}

nameThisThread(SGIO_THREAD_NAME);
Atomics.store(control, WorkerControl.TID, threadId());
post({ type: 'ready' });

// Every worker can be told to leave (EXIT): it looks once a second while idle.
const timeout = 1000;
for (;;) {
  const n = waiter.wait(timeout);
  for (let i = 0; i < n; i++) serve(waiter.fd(i), waiter.tag(i));
  if (Atomics.load(control, WorkerControl.EXIT) !== 0) break;
}
parentPort?.close();
