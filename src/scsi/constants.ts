/** SCSI operation codes the helper knows (SPC-4 §6). */
export const Opcode = {
  TEST_UNIT_READY: 0x00,
  PERSISTENT_RESERVE_IN: 0x5e,
  PERSISTENT_RESERVE_OUT: 0x5f,
} as const;

/** SAM-5 status codes (the byte QEMU's helper puts in the response's result field). */
export const ScsiStatus = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
} as const;

/** PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1, CDB byte 1 bits 0-4). */
export const PrInServiceAction = {
  READ_KEYS: 0x00,
  READ_RESERVATION: 0x01,
  REPORT_CAPABILITIES: 0x02,
  READ_FULL_STATUS: 0x03,
} as const;

/** PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.1, CDB byte 1 bits 0-4). */
export const PrOutServiceAction = {
  REGISTER: 0x00,
  RESERVE: 0x01,
  RELEASE: 0x02,
  CLEAR: 0x03,
  PREEMPT: 0x04,
  PREEMPT_AND_ABORT: 0x05,
  REGISTER_AND_IGNORE_EXISTING_KEY: 0x06,
  REGISTER_AND_MOVE: 0x07,
  REPLACE_LOST_RESERVATION: 0x08,
} as const;

/** The outcome of one SCSI command: a value, never an exception (style habit 5). */
export interface ScsiOutcome {
  /** SAM status byte. */
  status: number;
  /** Sense data, at most 96 bytes; meaningful with CHECK CONDITION. */
  sense: Uint8Array;
  /** Data-in bytes (PR IN with GOOD only). */
  data: Uint8Array;
}
