/**
 * What the fast path's main side (fast-path.ts) and its worker threads
 * (fast-path-worker.ts) share: SharedArrayBuffer layouts and the messages workers post.
 */
import type { PrRequest } from '../protocol/session.js';

/** Connections that can be on the fast path at once; more are served on the main thread. */
export const MAX_SLOTS = 4096;
const SLOT_BITS = 12;

/**
 * Per-slot state word: generation << 2 | owner. The generation changes whenever a slot
 * is given to a new connection, so a late event for a closed connection never matches.
 */
export const Owner = {
  /** The main thread serves the connection (or the slot is free). */
  MAIN: 0,
  /** Idle, armed in the shared epoll set: the next worker to see it readable takes it. */
  ARMED: 1,
  /** A worker is serving a request on it. */
  WORKER: 2,
} as const;

export function stateWord(generation: number, owner: number): number {
  return (generation << 2) | owner;
}

/** The epoll tag of a slot: slot in the low bits, generation above. */
export function slotTag(slot: number, generation: number): number {
  return ((generation << SLOT_BITS) | slot) >>> 0;
}

export function tagSlot(tag: number): number {
  return tag & ((1 << SLOT_BITS) - 1);
}

export function tagGeneration(tag: number): number {
  return tag >>> SLOT_BITS;
}

/** Generations wrap within 18 bits (the state word keeps 2 bits for the owner and stays an int32). */
export const GENERATION_MASK = (1 << 18) - 1;

/** Int32 slots of the shared flags. */
export const Flag = {
  /** Set at shutdown: workers hand every connection back instead of re-arming it. */
  DRAINING: 0,
  SIZE: 4,
} as const;

/** Int32 slots of each worker's control block. */
export const WorkerControl = {
  /**
   * 1 while the worker serves a connection: every call it makes there on the client's
   * socket or fds (recvmsg, ioctl, close, send) may block (README "Threat model").
   */
  ENTERED: 0,
  /** The worker's kernel thread id, once loaded. */
  TID: 1,
  /** Bumped before each connection served, so a watcher can tell a long call from several short ones. */
  SEQ: 2,
  /** Set by the main thread: leave after the current wait (extra workers only). */
  EXIT: 3,
  SIZE: 4,
} as const;

export interface WorkerData {
  index: number;
  epollFd: number;
  slots: SharedArrayBuffer;
  owners: SharedArrayBuffer;
  requests: SharedArrayBuffer;
  flags: SharedArrayBuffer;
  control: SharedArrayBuffer;
  timeoutMs: number;
  /** Extra workers wait with a timeout so that they can be told to leave. */
  extra: boolean;
}

/** Bytes a worker read and the fds that came with them, in order, not yet given to any Session. */
export interface ReceivedChunk {
  bytes: Uint8Array;
  fds: number[];
}

/**
 * A worker gives a connection back to the main thread, which serves it from there:
 * - nothing else: the main thread reads what comes next (end of file, shutdown);
 * - `replay`: the start of a request that is not all here yet: the main thread feeds it
 *   to its Session as if it had read it, then reads on;
 * - `pending`: a response the socket did not take at once;
 * - `request`: a validated request for the main thread's executor (a multipath device);
 * - `failure`: the connection must close, for this reason (the text the log shows).
 */
export interface Handback {
  type: 'handback';
  tag: number;
  replay?: ReceivedChunk[];
  pending?: Uint8Array;
  request?: PrRequest;
  failure?: string;
  /** With `failure`: the peer reset the connection or stopped reading (ECONNRESET, EPIPE). */
  peerGone?: boolean;
}

export type WorkerMessage = { type: 'ready' } | Handback;

/**
 * recvmsg's MSG_CTRUNC. The receive area has room for the most fds one message can carry
 * (SCM_MAX_FD), so the kernel truncates only when it cannot install them: the fd table is
 * full (EMFILE), and the fds are lost. More than one fd is the Session's own error.
 */
export const FDS_LOST_MESSAGE =
  'Cannot receive the file descriptor sent with a request: the helper is out of file descriptors (RLIMIT_NOFILE), closing socket.';
