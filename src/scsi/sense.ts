/**
 * Sense data the helper builds itself: fixed format, 18 bytes, as QEMU's scsi_build_sense
 * (docs/protocol.md §4.3). Sense from a device is passed through untouched (fixed or descriptor format).
 */
import { ScsiStatus, type ScsiOutcome } from './constants.js';

export interface SenseCode {
  key: number;
  asc: number;
  ascq: number;
}

/** Every sense code the helper can produce (names as in QEMU scsi/utils.c, SPC-4 Annex D). */
export const Sense = {
  NO_SENSE: { key: 0x00, asc: 0x00, ascq: 0x00 },
  NOT_READY: { key: 0x02, asc: 0x04, ascq: 0x00 },
  NO_MEDIUM: { key: 0x02, asc: 0x3a, ascq: 0x00 },
  READ_ERROR: { key: 0x03, asc: 0x11, ascq: 0x00 },
  TARGET_FAILURE: { key: 0x04, asc: 0x44, ascq: 0x00 },
  INVALID_PARAM_LEN: { key: 0x05, asc: 0x1a, ascq: 0x00 },
  INVALID_OPCODE: { key: 0x05, asc: 0x20, ascq: 0x00 },
  INVALID_FIELD: { key: 0x05, asc: 0x24, ascq: 0x00 },
  INVALID_PARAM: { key: 0x05, asc: 0x26, ascq: 0x00 },
  RESET: { key: 0x06, asc: 0x29, ascq: 0x00 },
  SCSI_BUS_RESET: { key: 0x06, asc: 0x29, ascq: 0x02 },
  SPACE_ALLOC_FAILED: { key: 0x07, asc: 0x27, ascq: 0x07 },
  IO_ERROR: { key: 0x0b, asc: 0x00, ascq: 0x06 },
  LUN_NOT_RESPONDING: { key: 0x0b, asc: 0x05, ascq: 0x00 },
  LUN_COMM_FAILURE: { key: 0x0b, asc: 0x08, ascq: 0x00 },
  I_T_NEXUS_LOSS: { key: 0x0b, asc: 0x29, ascq: 0x07 },
  COMMAND_TIMEOUT: { key: 0x0b, asc: 0x2e, ascq: 0x02 },
  COMMAND_ABORTED: { key: 0x0b, asc: 0x2f, ascq: 0x02 },
} as const satisfies Record<string, SenseCode>;

export type SenseName = keyof typeof Sense;

/** Fixed-format sense: response code 0x70 (current), ADDITIONAL SENSE LENGTH 10. */
export const FIXED_SENSE_LENGTH = 18;
const RESPONSE_CODE_CURRENT_FIXED = 0x70;
const ADDITIONAL_LENGTH = FIXED_SENSE_LENGTH - 8;

export function buildFixedSense(code: SenseCode): Uint8Array {
  const sense = new Uint8Array(FIXED_SENSE_LENGTH);
  sense[0] = RESPONSE_CODE_CURRENT_FIXED; // RESPONSE CODE; VALID bit clear
  sense[2] = code.key & 0x0f; // SENSE KEY
  sense[7] = ADDITIONAL_LENGTH; // ADDITIONAL SENSE LENGTH
  sense[12] = code.asc; // ADDITIONAL SENSE CODE
  sense[13] = code.ascq; // ADDITIONAL SENSE CODE QUALIFIER
  return sense;
}

/** CHECK CONDITION with the helper's own sense for `code`, and no data. */
export function checkCondition(code: SenseCode): ScsiOutcome {
  return { status: ScsiStatus.CHECK_CONDITION, sense: buildFixedSense(code), data: new Uint8Array(0) };
}

/** Key/ASC/ASCQ of fixed (0x70/0x71) or descriptor (0x72/0x73) sense; null otherwise. */
export function decodeSense(sense: Uint8Array): SenseCode | null {
  const responseCode = (sense[0] ?? 0) & 0x7f;
  if (responseCode === 0x70 || responseCode === 0x71) {
    if (sense.length < 14) return null;
    return { key: (sense[2] ?? 0) & 0x0f, asc: sense[12] ?? 0, ascq: sense[13] ?? 0 };
  }
  if (responseCode === 0x72 || responseCode === 0x73) {
    if (sense.length < 4) return null;
    return { key: (sense[1] ?? 0) & 0x0f, asc: sense[2] ?? 0, ascq: sense[3] ?? 0 };
  }
  return null;
}
