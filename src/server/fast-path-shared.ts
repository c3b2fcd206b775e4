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
  /** Set while the workers leave (too few connections, fast-path.ts): likewise, hand every connection back. */
  LEAVING: 1,
  SIZE: 4,
} as const;

/** Int32 slots of each worker's control block. */
export const WorkerControl = {
  /**
   * 1 while the worker serves a connection: every call it makes there on the client's
   * socket or fds (recvmsg, ioctl, close, send) may block (docs/security.md "Threat model").
   */
  ENTERED: 0,
  /** The worker's kernel thread id, once loaded. */
  TID: 1,
  /** Bumped before each connection served, so a watcher can tell a long call from several short ones. */
  SEQ: 2,
  /** Set by the main thread: leave after the current wait (at most a second: workers wait with a timeout). */
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
  /** The helper's feature set (Session). */
  features: number;
  /** Started for a stuck worker (fast-path.ts), beyond the `workers` kept. */
  extra: boolean;
}

/** Bytes a worker read and the fds that came with them, in order, not yet given to any Session. */
export interface ReceivedChunk {
  bytes: Uint8Array;
  fds: number[];
}

/**
 * A worker gives a connection back to the main thread, which serves it from there. What
 * the main thread does next depends only on the kind:
 * - `read`: nothing is pending; it reads what comes next (end of file, shutdown, a
 *   connection the worker did not take);
 * - `replay`: the start of a request that is not all here yet: it feeds the chunks to its
 *   Session as if it had read them, then reads on;
 * - `write`: a response the socket did not take at once;
 * - `execute`: a validated request for the main thread's executor (a multipath device);
 * - `close`: the connection must close, for this reason (the text the log shows);
 *   `peerGone` when the peer reset the connection or stopped reading (ECONNRESET, EPIPE).
 */
export type Handback =
  | { kind: 'read' }
  | { kind: 'replay'; chunks: ReceivedChunk[] }
  | { kind: 'write'; bytes: Uint8Array }
  | { kind: 'execute'; request: PrRequest }
  | { kind: 'close'; reason: string; peerGone: boolean };

/** The client fds a hand-back carries: whoever receives it owns them. */
export function handbackFds(handback: Handback): number[] {
  switch (handback.kind) {
    case 'replay':
      return handback.chunks.flatMap((c) => c.fds);
    case 'execute':
      return [handback.request.fd];
    default:
      return [];
  }
}

export interface HandbackMessage {
  type: 'handback';
  tag: number;
  handback: Handback;
}

export type WorkerMessage = { type: 'ready' } | HandbackMessage;
