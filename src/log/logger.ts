/**
 * Messages to stderr in QEMU's error_report format: `<program>: <message>`. Writes never
 * throw: libvirt closes the helper's stderr pipe after start-up, and an EPIPE must not kill
 * the helper (ecosystem.md D.5 item 4); main installs the stream error handlers.
 */

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

export class Logger {
  readonly program: string;
  /** QEMU `verbose`: 0 with -q, else min(1 + number of -v, 3) (spec §1.3). */
  readonly verbosity: number;
  readonly #sink: LogSink;

  constructor(program: string, verbosity: number, sink: LogSink = stderrSink) {
    this.program = program;
    this.verbosity = verbosity;
    this.#sink = sink;
  }

  /** Start-up and fatal errors: always printed. */
  fatal(message: string): void {
    this.#sink.write(`${this.program}: ${message}\n`);
  }

  /** Start-up facts and warnings an operator should see: printed unless -q. */
  notice(message: string): void {
    if (this.verbosity >= 1) this.#sink.write(`${this.program}: ${message}\n`);
  }

  /** Errors on one connection: printed unless -q (the reference's `verbose >= 1`). */
  error(message: string): void {
    if (this.verbosity >= 1) this.#sink.write(`${this.program}: ${message}\n`);
  }

  /** Connection and request events: printed from -v on. */
  info(message: string): void {
    if (this.verbosity >= 2) this.#sink.write(`${this.program}: ${message}\n`);
  }
}
