/**
 * Why the diagnostic client could not get a SCSI result: each one ends the run with exit
 * status 1 and its message (Deno style: the failed action, a colon, the details).
 */

/** connect(2) to the helper's socket failed. */
export class HelperUnreachableError extends Error {
  readonly socketPath: string;
  /** errno code ('ENOENT', 'EACCES', ...), or null when the path itself was refused. */
  readonly code: string | null;
  constructor(socketPath: string, code: string | null, detail: string, options?: ErrorOptions) {
    super(`Cannot connect to the helper at '${socketPath}': ${detail}`, options);
    this.name = 'HelperUnreachableError';
    this.socketPath = socketPath;
    this.code = code;
  }
}

/** The helper closed the connection (EOF, ECONNRESET or EPIPE) before answering. */
export class HelperClosedError extends Error {
  /** What the client was doing: "waiting for the response". */
  readonly during: string;
  constructor(during: string, options?: ErrorOptions) {
    super(`The helper closed the connection while ${during}`, options);
    this.name = 'HelperClosedError';
    this.during = during;
  }
}

export class HelperTimeoutError extends Error {
  constructor(during: string, timeoutMs: number) {
    super(`No answer from the helper within ${timeoutMs / 1000} s while ${during} (see --timeout)`);
    this.name = 'HelperTimeoutError';
  }
}

/** The helper answered something QEMU's client would reject or abort on (docs/protocol.md §6). */
export class HelperProtocolError extends Error {
  constructor(detail: string) {
    super(`The helper sent an invalid response: ${detail}`);
    this.name = 'HelperProtocolError';
  }
}

/** The device could not be opened. */
export class DeviceError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DeviceError';
  }
}

/** CLEANUP asked of a helper that does not announce it: it would close the connection. */
export class CleanupNotAnnouncedError extends Error {
  constructor(socketPath: string, features: string) {
    super(`Cannot send CLEANUP: the helper at '${socketPath}' does not announce it (features ${features}), and such a helper closes the connection on opcode 0xFF`);
    this.name = 'CleanupNotAnnouncedError';
  }
}
