/**
 * The helper's server: accepts connections and runs each one; shuts down on request
 * (spec §1.8): stop accepting, remove our socket path, let executing requests finish and
 * answer them, close idle connections, then report completion.
 */
import { Acceptor, type ListenerInfo } from './listener.js';
import { Connection } from './connection.js';
import type { ScsiExecutor } from '../exec/executor.js';
import type { Logger } from '../log/logger.js';
import { peerCredentials } from '../sys/socket.js';
import { closeFd } from '../sys/fd.js';
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
  log: Logger;
  observer: ServerObserver;
  access: AccessPolicy | null;
  /** Serves idle connections' next requests on worker threads (fast-path.ts); null: all here. */
  fastPath?: FastPath | null;
}

export class Server {
  readonly #deps: ServerDeps;
  readonly #acceptor: Acceptor;
  readonly #connections = new Set<Connection>();
  #stopping = false;
  #stopped: (() => void) | null = null;
  #accepted = 0;

  constructor(deps: ServerDeps) {
    this.#deps = deps;
    this.#acceptor = new Acceptor(deps.listener, {
      onConnection: (fd) => this.#accept(fd),
      onError: (message) => deps.log.error(message),
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
      closeFd(fd);
      return;
    }
    const info = { id: ++this.#accepted, fd, peer };
    this.#deps.observer.notify({ type: 'accepted', connection: info });
    const connection = new Connection(fd, {
      executor: this.#deps.executor,
      observer: this.#deps.observer,
      info,
      onClosed: (c) => this.#closed(c),
      onSettled: () => this.#checkStopped(),
      fastPath: this.#deps.fastPath ?? null,
    });
    this.#connections.add(connection);
    connection.start();
  }

  #closed(connection: Connection): void {
    this.#connections.delete(connection);
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
