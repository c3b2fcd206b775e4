/**
 * The helper's server: accepts connections and runs each one; shuts down on request
 * (spec §1.8): stop accepting, remove our socket path, let executing requests finish and
 * answer them, close idle connections, then report completion.
 */
import { Acceptor, type ListenerInfo } from './listener.js';
import { Connection } from './connection.js';
import type { ScsiExecutor } from '../exec/executor.js';
import type { Logger } from '../log/logger.js';

export interface ServerDeps {
  listener: ListenerInfo;
  executor: ScsiExecutor;
  log: Logger;
}

export class Server {
  readonly #deps: ServerDeps;
  readonly #acceptor: Acceptor;
  readonly #connections = new Set<Connection>();
  #stopping = false;
  #stopped: (() => void) | null = null;

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

  start(): void {
    this.#acceptor.start();
  }

  #accept(fd: number): void {
    const connection = new Connection(fd, {
      executor: this.#deps.executor,
      log: this.#deps.log,
      onClosed: (c) => this.#closed(c),
      onSettled: () => this.#checkStopped(),
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
    for (const connection of [...this.#connections]) connection.drain();
    // A connection whose client vanished mid-request is closed, but its command may still
    // run: completion also waits for the executor (checked again as each request settles),
    // so that its fd is closed before we exit.
    this.#checkStopped();
    return done;
  }
}
