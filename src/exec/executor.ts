/**
 * The contract every executor honours (docs/protocol.md §3.7):
 * - `execute` never rejects for a SCSI failure: every device or OS error is a ScsiOutcome
 *   (status + sense). A rejection means a bug, and the connection is dropped.
 * - the request's fd is the executor's: by the time the promise settles, whether it fulfils
 *   or rejects, it is closed or in an FdCloser's hands, closing (docs/protocol.md §3.5 row 7:
 *   the threadpool lane answers first and closes right after, ahead of its next job).
 * - it never blocks the event loop; a slow device delays only its own request.
 * Response size limits are enforced when the response is encoded, whatever the outcome says.
 *
 * Every fd a client sent is closed through an FdCloser, never on the main thread: close()
 * may block too (docs/security.md "Threat model").
 */
import type { ScsiOutcome } from '../scsi/constants.js';
import { Sense, checkCondition } from '../scsi/sense.js';
import type { PrRequest } from '../protocol/session.js';
import { accessMode } from '../sys/fd.js';

export interface ScsiExecutor {
  execute(request: PrRequest): Promise<ScsiOutcome>;
  /** Requests currently executing. */
  readonly inFlight: number;
  /** Releases threads and memory once nothing is in flight. */
  close(): void;
}

/** Closes client fds off the main thread (src/exec/sgio-pool.ts). */
export interface FdCloser {
  /** Takes ownership of `fd`; resolves once it is closed. Never rejects. */
  release(fd: number): Promise<void>;
}

/**
 * PR OUT and CLEANUP need a writable fd: the answer to give when `fd` is read-only (INVALID
 * COMMAND OPERATION CODE, as the reference answers: docs/protocol.md §9 item 13) or its mode cannot be
 * read (an I/O error); null when it is writable. This stands in for the kernel's own rule,
 * which CAP_SYS_RAWIO would bypass: a guest given a read-only disk must not change its
 * reservations (docs/protocol.md §3.7). Reads the access mode (fcntl) only: callable on any thread.
 */
export function refuseReadOnly(fd: number): ScsiOutcome | null {
  try {
    return accessMode(fd) === 'read-only' ? checkCondition(Sense.INVALID_OPCODE) : null;
  } catch {
    return checkCondition(Sense.IO_ERROR);
  }
}
