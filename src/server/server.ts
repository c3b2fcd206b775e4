/**
 * The helper's server: accepts connections and runs each one; shuts down on request
 * (docs/protocol.md §1.8): stop accepting, remove our socket path, let executing requests finish and
 * answer them, close idle connections, then report completion.
 */
import { Acceptor, type ListenerInfo } from './listener.js';
import { Connection } from './connection.js';
import { DEFAULT_FEATURES } from '../protocol/constants.js';
import { closeClientSocket } from './wire.js';
import type { FdCloser, ScsiExecutor } from '../exec/executor.js';
import type { Logger } from '../log/logger.js';
import { peerCredentials } from '../sys/socket.js';
import { openFileLimit } from '../sys/fd.js';
import type { PeerCredentials, ServerObserver } from './events.js';
import type { FastPath } from './fast-path.js';

/** Peers allowed to connect (checked with SO_PEERCRED at accept); null allows everyone. */
export interface AccessPolicy {
  uids: ReadonlySet<number>;
  gids: ReadonlySet<number>;
}

/** Why `peer` may not connect, or null when it may. A peer matching either list is allowed. */
export function refusal(policy: AccessPolicy | null, peer: PeerCredentials | null): string | null {
  if (policy === null) return null;
  if (peer === null) return 'its credentials cannot be read (SO_PEERCRED)';
  if (policy.uids.has(peer.uid) || policy.gids.has(peer.gid)) return null;
  return `uid ${peer.uid} and gid ${peer.gid} are not in --allow-uid/--allow-gid`;
}

export interface ServerDeps {
  listener: ListenerInfo;
  executor: ScsiExecutor;
  /** Closes accepted sockets and client fds off the main thread (src/exec/executor.ts). */
  closer: FdCloser;
  log: Logger;
  observer: ServerObserver;
  access: AccessPolicy | null;
  /** Serves idle connections' next requests on worker threads (fast-path.ts); null: all here. */
  fastPath?: FastPath | null;
  /** The feature set announced to each client (default none, as upstream: docs/protocol.md §3.2). */
  features?: number;
  /** Where repeated errors (failed accepts) go; the log's limiter in the helper. */
  reportError?: (message: string) => void;
}

/**
 * fds kept for everything but connections: threads (each worker's loop has a few), the
 * multipath library, the trace file. Each connection may need two: its socket and the fd
 * of its request.
 */
const FD_RESERVE = 128;

/** How many connections fit under RLIMIT_NOFILE with room for each one's request fd. */
export function connectionCapacity(fileLimit: number): number {
  return Math.max(1, Math.floor((fileLimit - FD_RESERVE) / 2));
}

export class Server {
  readonly #deps: ServerDeps;
  readonly #acceptor: Acceptor;
  readonly #connections = new Set<Connection>();
  #stopping = false;
  #stopped: (() => void) | null = null;
  #accepted = 0;
  readonly #capacity: number;
  /** Set while accepting is paused at capacity (for one warning per episode). */
  #full = false;

  constructor(deps: ServerDeps) {
    this.#deps = deps;
    let limit = Infinity;
    try {
      limit = openFileLimit();
    } catch {
      // keep accepting; EMFILE at accept still backs off
    }
    this.#capacity = connectionCapacity(limit);
    this.#acceptor = new Acceptor(deps.listener, {
      onConnection: (fd) => this.#accept(fd),
      onError: deps.reportError ?? ((message) => deps.log.error(message)),
      // New connections wait in the listen backlog rather than take the fds that open
      // connections need for their requests (docs/security.md "Threat model").
      canAccept: () => this.#roomForOneMore(limit),
    });
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  start(backlog: number): void {
    this.#acceptor.start();
    const { listener } = this.#deps;
    this.#deps.observer.notify({ type: 'listening', fd: listener.fd, path: listener.createdPath, backlog });
  }

  #accept(fd: number): void {
    const peer = peerCredentials(fd);
    const refused = refusal(this.#deps.access, peer);
    if (refused !== null) {
      this.#deps.observer.notify({ type: 'refused', fd, peer, reason: refused });
      closeClientSocket(fd, this.#deps.closer);
      return;
    }
    const info = { id: ++this.#accepted, fd, peer };
    this.#deps.observer.notify({ type: 'accepted', connection: info });
    const connection = new Connection(fd, {
      executor: this.#deps.executor,
      closer: this.#deps.closer,
      observer: this.#deps.observer,
      info,
      onClosed: (c) => this.#closed(c),
      onSettled: () => this.#checkStopped(),
      fastPath: this.#deps.fastPath ?? null,
      features: this.#deps.features ?? DEFAULT_FEATURES,
    });
    this.#connections.add(connection);
    connection.start();
  }

  #roomForOneMore(limit: number): boolean {
    if (this.#connections.size < this.#capacity) return true;
    if (!this.#full) {
      this.#full = true;
      this.#deps.log.warning(`warning: ${this.#connections.size} connections open, as many as RLIMIT_NOFILE ${limit} allows ` +
        'with room for their requests: new connections wait until one closes');
    }
    return false;
  }

  #closed(connection: Connection): void {
    this.#connections.delete(connection);
    if (this.#connections.size < this.#capacity) {
      this.#full = false;
      if (!this.#stopping) this.#acceptor.resume();
    }
    this.#checkStopped();
  }

  #checkStopped(): void {
    if (this.#stopping && this.#connections.size === 0 && this.#deps.executor.inFlight === 0 && this.#stopped) {
      const done = this.#stopped;
      this.#stopped = null;
      done();
    }
  }

  /** Resolves once every executing request has been answered (or its client is gone). */
  stop(): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    this.#stopping = true;
    const unlinkError = this.#acceptor.close();
    if (unlinkError) this.#deps.log.fatal(unlinkError);
    const done = new Promise<void>((resolve) => {
      this.#stopped = resolve;
    });
    this.#deps.fastPath?.drain();
    for (const connection of [...this.#connections]) connection.drain();
    // A connection whose client vanished mid-request is closed, but its command may still
    // run: completion also waits for the executor (checked again as each request settles),
    // so that its fd is closed before we exit.
    this.#checkStopped();
    return done;
  }
}
