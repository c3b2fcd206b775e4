/**
 * Runs requests on a plain SCSI fd (not dm-multipath) with ioctl(SG_IO) (docs/protocol.md §3.7, §4).
 * Deviations from QEMU, each a fix listed in docs/protocol.md §9:
 * - item 1: an explicit SG_IO timeout (default 30 s) instead of 1 ms;
 * - item 2: cmd_len from the operation code's group (10 for PR IN/OUT), not always 16;
 * - item 5: sense is zero-filled to 96 bytes on every path;
 * - item 6: an unknown host_status is an error (see scsi/sgio-status.ts).
 */
import { Opcode, ScsiStatus, type ScsiOutcome } from '../scsi/constants.js';
import { cdbLength } from '../scsi/cdb.js';
import { interpretSgIo } from '../scsi/sgio-status.js';
import { PR_HELPER_CDB_SIZE, PR_HELPER_CLEANUP, PR_HELPER_DATA_SIZE } from '../protocol/constants.js';
import type { PrRequest } from '../protocol/session.js';
import { closeFd } from '../sys/fd.js';
import type { SgIoCommand, SgIoResult } from '../sys/sgio.js';
import { refuseReadOnly, type FdCloser, type ScsiExecutor } from './executor.js';

/** Runs SG_IO commands, and closes client fds, off the main thread (src/exec/sgio-pool.ts). */
export interface SgIoRunner extends FdCloser {
  /** Runs one SG_IO command on a borrowed fd. */
  run(fd: number, command: SgIoCommand): Promise<SgIoResult>;
  /** Runs one SG_IO command on an fd it then closes, before settling either way. */
  runAndRelease(fd: number, command: SgIoCommand): Promise<SgIoResult>;
  readonly inFlight: number;
  close(): void;
}

export interface SgIoExecutorOptions {
  /** SG_IO timeout in milliseconds (docs/protocol.md §9 item 1). */
  timeoutMs: number;
}

/** QEMU's scsi-generic io_timeout default: 30 s. */
export const DEFAULT_SGIO_TIMEOUT_MS = 30_000;

const GOOD: ScsiOutcome = { status: ScsiStatus.GOOD, sense: new Uint8Array(0), data: new Uint8Array(0) };

/** The CDB bytes to hand the kernel: as many as the operation code's group defines. */
export function commandBytes(cdb: Uint8Array): Uint8Array {
  return cdb.subarray(0, cdbLength(cdb[0] ?? 0) ?? PR_HELPER_CDB_SIZE);
}

/** What a request needs on a plain SCSI fd: an SG_IO command, or an answer without one. */
export type SgIoPlan = { kind: 'run'; command: SgIoCommand } | { kind: 'answer'; outcome: ScsiOutcome };

/**
 * The SG_IO command for `request` (docs/protocol.md §3.7), or its answer when none is needed. Reads the
 * fd's access mode (fcntl) and nothing else: callable on any thread.
 */
export function planSgIo(request: PrRequest, timeoutMs: number): SgIoPlan {
  switch (request.opcode) {
    case Opcode.PERSISTENT_RESERVE_IN:
      // The kernel always gets the full 8192-byte buffer; the device honours the CDB's own
      // allocation length and the response is clipped to it (docs/protocol.md §3.7, §9 item 4).
      return {
        kind: 'run',
        command: { cdb: commandBytes(request.cdb), direction: 'from-device', transferLength: PR_HELPER_DATA_SIZE, timeoutMs },
      };
    case Opcode.PERSISTENT_RESERVE_OUT: {
      const refused = refuseReadOnly(request.fd);
      if (refused) return { kind: 'answer', outcome: refused };
      return {
        kind: 'run',
        command: {
          cdb: commandBytes(request.cdb), direction: 'to-device', transferLength: request.transferLength,
          data: request.parameters, timeoutMs,
        },
      };
    }
    case PR_HELPER_CLEANUP:
      // Nothing to clean up on a non-multipath device: GOOD without I/O (docs/protocol.md §3.7).
      return { kind: 'answer', outcome: refuseReadOnly(request.fd) ?? GOOD };
    default:
      throw new Error(`Cannot execute operation code ${request.opcode}: not validated`);
  }
}

/** The outcome of a finished SG_IO command. */
export function sgIoOutcome(request: PrRequest, result: SgIoResult): ScsiOutcome {
  const verdict = interpretSgIo(result);
  // PR IN data counts only with GOOD: 8192 − resid bytes, clipped to the allocation length
  // when the response is encoded.
  const data = request.opcode === Opcode.PERSISTENT_RESERVE_IN && verdict.status === ScsiStatus.GOOD
    ? result.data : new Uint8Array(0);
  return { ...verdict, data };
}

export class SgIoExecutor implements ScsiExecutor {
  readonly #runner: SgIoRunner;
  readonly #timeoutMs: number;

  constructor(runner: SgIoRunner, options: SgIoExecutorOptions) {
    this.#runner = runner;
    this.#timeoutMs = options.timeoutMs;
  }

  get inFlight(): number {
    return this.#runner.inFlight;
  }

  async execute(request: PrRequest): Promise<ScsiOutcome> {
    let plan: SgIoPlan;
    try {
      plan = planSgIo(request, this.#timeoutMs);
    } catch (error) {
      await this.#runner.release(request.fd);
      throw error;
    }
    if (plan.kind === 'answer') {
      await this.#runner.release(request.fd);
      return plan.outcome;
    }
    // The ioctl and the close in one hand-off (on the lane, the close follows the answer).
    return sgIoOutcome(request, await this.#runner.runAndRelease(request.fd, plan.command));
  }

  close(): void {
    this.#runner.close();
  }
}

/**
 * Executes `request` synchronously on this thread (a fast-path worker), `run` doing the
 * ioctl. The fd is closed before the answer exists, as the reference closes it before it
 * responds (docs/protocol.md §3.5 row 7).
 */
export function executeHere(request: PrRequest, timeoutMs: number, run: (fd: number, command: SgIoCommand) => SgIoResult): ScsiOutcome {
  try {
    const plan = planSgIo(request, timeoutMs);
    return plan.kind === 'answer' ? plan.outcome : sgIoOutcome(request, run(request.fd, plan.command));
  } finally {
    closeFd(request.fd);
  }
}
