/**
 * One line per event on stderr, no colours. Levels:
 *   -q       only fatal start-up errors;
 *   default  + warnings and per-connection errors (the reference's `verbose >= 1`);
 *   -v       + start-up details, one line per connection and one decoded line per request;
 *   -vv      + the raw CDB and parameter bytes of every request.
 * Lines read `<program>: <message>` as QEMU's error_report prints them. When stderr is the
 * systemd journal (JOURNAL_STREAM names our fd 2), each line instead starts with its
 * syslog priority, `<3>` ... `<7>`, and journald adds the program name itself.
 *
 * Writes never throw: libvirt closes the helper's stderr pipe after start-up, and an EPIPE
 * must not kill the helper (docs/internals.md#stderr-may-be-a-closed-pipe); main installs the stream handlers.
 */
import { fstatSync } from 'node:fs';

export interface LogSink {
  write(text: string): void;
}

const stderrSink: LogSink = {
  write(text) {
    try {
      process.stderr.write(text);
    } catch {
      // stderr is gone; there is nowhere left to report to.
    }
  },
};

/** syslog(3) priorities, as sd-daemon(3) prefixes use them. */
const Priority = { ERR: 3, WARNING: 4, NOTICE: 5, INFO: 6, DEBUG: 7 } as const;

/** True when JOURNAL_STREAM ("device:inode") is the file open on our fd 2 (systemd.exec(5)). */
export function stderrIsJournal(journalStream: string | undefined): boolean {
  if (journalStream === undefined) return false;
  const m = /^(\d+):(\d+)$/.exec(journalStream);
  if (!m) return false;
  try {
    const st = fstatSync(2, { bigint: true });
    return st.dev === BigInt(m[1] ?? '') && st.ino === BigInt(m[2] ?? '');
  } catch {
    return false;
  }
}

export class Logger {
  readonly program: string;
  /** QEMU `verbose`: 0 with -q, else min(1 + number of -v, 3) (docs/protocol.md §1.3). */
  readonly verbosity: number;
  readonly #sink: LogSink;
  /** True when lines go to the systemd journal (priority prefixes). */
  readonly journal: boolean;

  constructor(program: string, verbosity: number, sink: LogSink = stderrSink, journal = false) {
    this.program = program;
    this.verbosity = verbosity;
    this.#sink = sink;
    this.journal = journal;
  }

  #write(priority: number, message: string): void {
    this.#sink.write(this.journal ? `<${priority}>${message}\n` : `${this.program}: ${message}\n`);
  }

  /** Start-up and fatal errors: always printed. */
  fatal(message: string): void {
    this.#write(Priority.ERR, message);
  }

  /** Something the operator should fix, the helper keeps running: printed unless -q. */
  warning(message: string): void {
    if (this.verbosity >= 1) this.#write(Priority.WARNING, message);
  }

  /** Start-up facts an operator should see: printed unless -q. */
  notice(message: string): void {
    if (this.verbosity >= 1) this.#write(Priority.NOTICE, message);
  }

  /** Errors on one connection: printed unless -q (the reference's `verbose >= 1`). */
  error(message: string): void {
    if (this.verbosity >= 1) this.#write(Priority.ERR, message);
  }

  /** Connection and request events: printed from -v on. */
  info(message: string): void {
    if (this.verbosity >= 2) this.#write(Priority.INFO, message);
  }

  /** Raw bytes of every request: printed from -vv on. */
  debug(message: string): void {
    if (this.verbosity >= 3) this.#write(Priority.DEBUG, message);
  }
}
