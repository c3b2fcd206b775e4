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

/** The largest response: header, sense and PR_HELPER_DATA_SIZE data bytes (a buffer for `into`). */
export const MAX_RESPONSE_SIZE = RESPONSE_HEADER_SIZE + PR_HELPER_DATA_SIZE;

/**
 * result (BE32) | sz (BE32) | 96 bytes of sense, zero-filled (docs/protocol.md §9 item 5) | sz data bytes.
 * Written into a new array, or into the start of `into` (at least MAX_RESPONSE_SIZE bytes),
 * of which it returns a view: a caller that sends it at once allocates nothing.
 */
export function encodeResponse(request: ResponseContext, outcome: ScsiOutcome, into: Uint8Array | null = null): Uint8Array {
  const sz = responseDataLength(request, outcome);
  const size = RESPONSE_HEADER_SIZE + sz;
  if (into !== null && into.length < size) throw new RangeError(`a response needs ${size} bytes, the buffer has ${into.length}`);
  const out = into === null ? new Uint8Array(size) : into.subarray(0, size);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setInt32(RESPONSE_RESULT_OFFSET, outcome.status & 0xff);
  dv.setInt32(RESPONSE_SIZE_OFFSET, sz);
  const sense = outcome.sense.subarray(0, PR_HELPER_SENSE_SIZE);
  out.set(sense, RESPONSE_SENSE_OFFSET);
  if (into !== null) out.fill(0, RESPONSE_SENSE_OFFSET + sense.length, RESPONSE_HEADER_SIZE);
  out.set(outcome.data.subarray(0, sz), RESPONSE_HEADER_SIZE);
  return out;
}
