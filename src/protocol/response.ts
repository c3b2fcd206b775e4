/**
 * Response encoding (docs/protocol.md §3.6). QEMU's client aborts the whole VM if `sz` exceeds what the
 * guest asked for, or is non-zero for PR OUT/CLEANUP (docs/protocol.md §6), so the invariants are
 * enforced here, by construction, for every response the helper sends.
 */
import { Opcode, ScsiStatus, type ScsiOutcome } from '../scsi/constants.js';
import {
  PR_HELPER_DATA_SIZE, PR_HELPER_SENSE_SIZE, RESPONSE_HEADER_SIZE, RESPONSE_RESULT_OFFSET,
  RESPONSE_SENSE_OFFSET, RESPONSE_SIZE_OFFSET,
} from './constants.js';

export interface ResponseContext {
  opcode: number;
  /** The request's transfer length: PR IN allocation length. */
  transferLength: number;
}

/** Data bytes a response may carry: only PR IN with GOOD, never above the allocation length. */
export function responseDataLength(request: ResponseContext, outcome: ScsiOutcome): number {
  if (request.opcode !== Opcode.PERSISTENT_RESERVE_IN || outcome.status !== ScsiStatus.GOOD) return 0;
  return Math.max(0, Math.min(outcome.data.length, request.transferLength, PR_HELPER_DATA_SIZE));
}

/** result (BE32) | sz (BE32) | 96 bytes of sense, zero-filled (docs/protocol.md §9 item 5) | sz data bytes. */
export function encodeResponse(request: ResponseContext, outcome: ScsiOutcome): Uint8Array {
  const sz = responseDataLength(request, outcome);
  const out = new Uint8Array(RESPONSE_HEADER_SIZE + sz);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setInt32(RESPONSE_RESULT_OFFSET, outcome.status & 0xff);
  dv.setInt32(RESPONSE_SIZE_OFFSET, sz);
  out.set(outcome.sense.subarray(0, PR_HELPER_SENSE_SIZE), RESPONSE_SENSE_OFFSET);
  out.set(outcome.data.subarray(0, sz), RESPONSE_HEADER_SIZE);
  return out;
}
