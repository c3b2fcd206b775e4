/**
 * What every image of the helper shares (src/cli/main.ts): the parsed invocation, the stop
 * signals, and the start-up steps' resources with the one way to fail start-up.
 */
import type { Options } from '../cli/options.js';
import type { Logger } from '../log/logger.js';
import { discardListener, ListenError, publishListener, type ListenerInfo } from '../server/listener.js';
import { releasePidFile, type PidFile } from '../daemon/pidfile.js';
import { exitImmediately } from '../sys/fd.js';
import { restoreDefaultAction } from '../sys/signals.js';

/** SIGHUP terminates, it does not reload (docs/protocol.md §1.8). */
export const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/**
 * TERM, INT and HUP: remembered from the moment main installs the listeners (before
 * anything else, as the reference does), acted on once an image says how to stop.
 */
export class StopSignals {
  #requested = false;
  #stop: (() => void) | null = null;

  /** Installs the listeners. Only the entry module calls this. */
  install(): void {
    for (const signal of STOP_SIGNALS) {
      process.on(signal, () => {
        this.#requested = true;
        this.#stop?.();
      });
    }
  }

  /** Whether one of them has arrived. */
  get requested(): boolean {
    return this.#requested;
  }

  /** From now on a stop signal calls `stop`; it is called at once if one arrived already. */
  onStop(stop: () => void): void {
    this.#stop = stop;
    if (this.#requested) stop();
  }

  /** sigaction(SIG_DFL) for each: from now on they end the process. */
  restoreDefaultActions(): void {
    for (const signal of STOP_SIGNALS) restoreDefaultAction(signal);
  }
}

/** What every image knows once the command line is parsed. */
export interface Invocation {
  /** The program name as invoked, for messages. */
  program: string;
  options: Options;
  log: Logger;
  stopSignals: StopSignals;
  /** The enabled trace events (the first image's -T, applied once). */
  traceEvents: string[];
}

/** What start-up has created so far, undone if a later step fails (docs/protocol.md §9 item 16). */
export class Startup {
  listener: ListenerInfo | null = null;
  readonly log: Logger;
  /** The pid file, once written. */
  pidfile: PidFile | null;
  /** Write end of the -d launcher's readiness pipe, or null. */
  readonly readyFd: number | null;

  constructor(log: Logger, readyFd: number | null, pidfile: PidFile | null = null) {
    this.log = log;
    this.readyFd = readyFd;
    this.pidfile = pidfile;
  }

  /** Prints the message (and the hint), removes the socket and the pid file, exits 1. */
  fail(message: string, hint: string | null = null): never {
    this.log.fatal(message);
    if (hint) process.stderr.write(`${hint}\n`);
    if (this.listener) discardListener(this.listener);
    if (this.pidfile) releasePidFile(this.pidfile);
    return exitImmediately(1);
  }

  /** Puts the socket in place (renames it from its temporary name), or fails start-up. */
  publish(): void {
    if (this.listener === null) return;
    try {
      publishListener(this.listener);
    } catch (error) {
      if (!(error instanceof ListenError)) throw error;
      this.fail(error.message);
    }
  }
}
