/**
 * What an ioctl(SG_IO) outcome means as a SCSI status and sense, following QEMU 7.2+
 * (scsi_sense_from_errno / scsi_sense_from_host_status; docs/protocol.md §4.2 "SG-new"), with one
 * deliberate fix: an unknown host_status is an error, never GOOD (docs/protocol.md §9 item 6).
 */
import { ScsiStatus } from './constants.js';
import { Sense, buildFixedSense, FIXED_SENSE_LENGTH, type SenseCode } from './sense.js';

/** The parts of an SG_IO completion that decide the outcome. */
export interface SgIoReport {
  /** Symbolic errno when ioctl() itself failed ('ENOTTY', ...), else null. */
  error: string | null;
  status: number;
  hostStatus: number;
  driverStatus: number;
  /** The sense buffer as the kernel left it (zero-filled before the call). */
  sense: Uint8Array;
}

export interface SgIoVerdict {
  status: number;
  sense: Uint8Array;
}

type Mapped = { status: number; sense?: SenseCode };

/** ioctl errno → outcome (QEMU scsi_sense_from_errno). */
export const ERRNO_OUTCOMES: Readonly<Record<string, Mapped>> = {
  EDOM: { status: ScsiStatus.TASK_SET_FULL },
  ENODEV: { status: ScsiStatus.CHECK_CONDITION, sense: Sense.TARGET_FAILURE },
  EREMOTEIO: { status: ScsiStatus.CHECK_CONDITION, sense: Sense.TARGET_FAILURE },
  EBADE: { status: ScsiStatus.RESERVATION_CONFLICT },
  ENODATA: { status: ScsiStatus.CHECK_CONDITION, sense: Sense.READ_ERROR },
  ENOMEDIUM: { status: ScsiStatus.CHECK_CONDITION, sense: Sense.NO_MEDIUM },
  ENOMEM: { status: ScsiStatus.CHECK_CONDITION, sense: Sense.TARGET_FAILURE },
  EINVAL: { status: ScsiStatus.CHECK_CONDITION, sense: Sense.INVALID_FIELD },
  ENOSPC: { status: ScsiStatus.CHECK_CONDITION, sense: Sense.SPACE_ALLOC_FAILED },
};
/** Any other errno (ENOTTY for a non-SCSI fd, EPERM, EACCES, EIO, ...). */
export const OTHER_ERRNO_OUTCOME: Mapped = { status: ScsiStatus.CHECK_CONDITION, sense: Sense.IO_ERROR };

/** Linux host byte values (include/scsi/scsi_status.h, enum host_status). */
export const HostStatus = {
  DID_OK: 0x00,
  DID_NO_CONNECT: 0x01,
  DID_BUS_BUSY: 0x02,
  DID_TIME_OUT: 0x03,
  DID_BAD_TARGET: 0x04,
  DID_ABORT: 0x05,
  DID_PARITY: 0x06,
  DID_ERROR: 0x07,
  DID_RESET: 0x08,
  DID_BAD_INTR: 0x09,
  DID_PASSTHROUGH: 0x0a,
  DID_SOFT_ERROR: 0x0b,
  DID_IMM_RETRY: 0x0c,
  DID_REQUEUE: 0x0d,
  DID_TRANSPORT_DISRUPTED: 0x0e,
  DID_TRANSPORT_FAILFAST: 0x0f,
  DID_TARGET_FAILURE: 0x10,
  DID_NEXUS_FAILURE: 0x11,
  DID_ALLOC_FAILURE: 0x12,
  DID_MEDIUM_ERROR: 0x13,
  DID_TRANSPORT_MARGINAL: 0x14,
} as const;

/** host_status → outcome (QEMU scsi_sense_from_host_status). */
export const HOST_STATUS_OUTCOMES: ReadonlyMap<number, Mapped> = new Map<number, Mapped>([
  [HostStatus.DID_NO_CONNECT, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.LUN_NOT_RESPONDING }],
  [HostStatus.DID_BUS_BUSY, { status: ScsiStatus.BUSY }],
  [HostStatus.DID_TIME_OUT, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.COMMAND_TIMEOUT }],
  [HostStatus.DID_BAD_TARGET, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.LUN_COMM_FAILURE }],
  [HostStatus.DID_ABORT, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.COMMAND_ABORTED }],
  [HostStatus.DID_RESET, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.RESET }],
  [HostStatus.DID_TRANSPORT_DISRUPTED, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.I_T_NEXUS_LOSS }],
  [HostStatus.DID_TARGET_FAILURE, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.TARGET_FAILURE }],
  [HostStatus.DID_NEXUS_FAILURE, { status: ScsiStatus.RESERVATION_CONFLICT }],
  [HostStatus.DID_ALLOC_FAILURE, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.SPACE_ALLOC_FAILED }],
  [HostStatus.DID_MEDIUM_ERROR, { status: ScsiStatus.CHECK_CONDITION, sense: Sense.READ_ERROR }],
]);

/**
 * Deviation (docs/protocol.md §9 item 6): QEMU reports GOOD for every other host byte, so a failed
 * command looks successful (with possibly empty data). We report the transient ones
 * (the kernel's own "retry" codes) as BUSY, which guests retry, and all others as
 * CHECK CONDITION with ABORTED COMMAND / I/O PROCESS TERMINATED, as for an unknown errno.
 */
export const RETRYABLE_HOST_OUTCOME: Mapped = { status: ScsiStatus.BUSY };
const RETRYABLE_HOST_STATUSES: ReadonlySet<number> = new Set([
  HostStatus.DID_SOFT_ERROR, HostStatus.DID_IMM_RETRY, HostStatus.DID_REQUEUE,
]);
export const UNKNOWN_HOST_OUTCOME: Mapped = { status: ScsiStatus.CHECK_CONDITION, sense: Sense.IO_ERROR };

/**
 * driver_status & 0x06 means "timeout" to QEMU (a bit test on what the kernel defines as an
 * enumerated value; kept as is, docs/protocol.md §9 item 7).
 */
const SG_ERR_DRIVER_TIMEOUT_MASK = 0x06;

function hostOutcome(hostStatus: number): Mapped {
  return HOST_STATUS_OUTCOMES.get(hostStatus)
    ?? (RETRYABLE_HOST_STATUSES.has(hostStatus) ? RETRYABLE_HOST_OUTCOME : UNKNOWN_HOST_OUTCOME);
}

/** Decides status and sense for one SG_IO completion. */
export function interpretSgIo(report: SgIoReport): SgIoVerdict {
  let mapped: Mapped;
  if (report.error !== null) mapped = ERRNO_OUTCOMES[report.error] ?? OTHER_ERRNO_OUTCOME;
  else if (report.hostStatus !== HostStatus.DID_OK) mapped = hostOutcome(report.hostStatus);
  else if ((report.driverStatus & SG_ERR_DRIVER_TIMEOUT_MASK) !== 0) return { status: ScsiStatus.BUSY, sense: report.sense };
  else return { status: report.status, sense: report.sense };

  if (mapped.sense === undefined) return { status: mapped.status, sense: report.sense };
  // QEMU overwrites the first 18 bytes and leaves the rest of the buffer as the kernel did.
  const sense = report.sense.slice();
  sense.set(buildFixedSense(mapped.sense).subarray(0, Math.min(FIXED_SENSE_LENGTH, sense.length)));
  return { status: mapped.status, sense };
}
