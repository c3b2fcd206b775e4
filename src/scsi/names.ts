/**
 * Words for the numbers in a PR command and its outcome, for logs and the diagnostic
 * client: operation codes, service actions, scope and type, status, sense (SPC-4 §4.5.6
 * and Annex D for the sense keys and the additional sense codes PR commands meet). Pure.
 */
import { Opcode, PrInServiceAction, PrOutServiceAction, ScsiStatus } from './constants.js';
import { decodeSense, type SenseCode } from './sense.js';

const PR_IN_SA_NAMES: Record<number, string> = {
  [PrInServiceAction.READ_KEYS]: 'READ KEYS',
  [PrInServiceAction.READ_RESERVATION]: 'READ RESERVATION',
  [PrInServiceAction.REPORT_CAPABILITIES]: 'REPORT CAPABILITIES',
  [PrInServiceAction.READ_FULL_STATUS]: 'READ FULL STATUS',
};

const PR_OUT_SA_NAMES: Record<number, string> = {
  [PrOutServiceAction.REGISTER]: 'REGISTER',
  [PrOutServiceAction.RESERVE]: 'RESERVE',
  [PrOutServiceAction.RELEASE]: 'RELEASE',
  [PrOutServiceAction.CLEAR]: 'CLEAR',
  [PrOutServiceAction.PREEMPT]: 'PREEMPT',
  [PrOutServiceAction.PREEMPT_AND_ABORT]: 'PREEMPT AND ABORT',
  [PrOutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY]: 'REGISTER AND IGNORE EXISTING KEY',
  [PrOutServiceAction.REGISTER_AND_MOVE]: 'REGISTER AND MOVE',
  [PrOutServiceAction.REPLACE_LOST_RESERVATION]: 'REPLACE LOST RESERVATION',
};

/** PERSISTENT RESERVATION TYPE codes (SPC-4 Table 213). */
const PR_TYPE_NAMES: Record<number, string> = {
  0x1: 'Write Exclusive',
  0x3: 'Exclusive Access',
  0x5: 'Write Exclusive - Registrants Only',
  0x6: 'Exclusive Access - Registrants Only',
  0x7: 'Write Exclusive - All Registrants',
  0x8: 'Exclusive Access - All Registrants',
};

const STATUS_NAMES: Record<number, string> = {
  [ScsiStatus.GOOD]: 'GOOD',
  [ScsiStatus.CHECK_CONDITION]: 'CHECK CONDITION',
  0x04: 'CONDITION MET',
  [ScsiStatus.BUSY]: 'BUSY',
  [ScsiStatus.RESERVATION_CONFLICT]: 'RESERVATION CONFLICT',
  [ScsiStatus.TASK_SET_FULL]: 'TASK SET FULL',
  0x30: 'ACA ACTIVE',
  0x40: 'TASK ABORTED',
};

const SENSE_KEY_NAMES = [
  'NO SENSE', 'RECOVERED ERROR', 'NOT READY', 'MEDIUM ERROR', 'HARDWARE ERROR', 'ILLEGAL REQUEST',
  'UNIT ATTENTION', 'DATA PROTECT', 'BLANK CHECK', 'VENDOR SPECIFIC', 'COPY ABORTED', 'ABORTED COMMAND',
  'RESERVED (0xC)', 'VOLUME OVERFLOW', 'MISCOMPARE', 'COMPLETED',
];

/** ASC/ASCQ texts (SPC-4 Annex D) for what PR commands and this helper produce. */
const ASC_NAMES = new Map<number, string>([
  [0x0000, 'NO ADDITIONAL SENSE INFORMATION'],
  [0x0006, 'I/O PROCESS TERMINATED'],
  [0x0400, 'LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE'],
  [0x0401, 'LOGICAL UNIT IS IN PROCESS OF BECOMING READY'],
  [0x0402, 'LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED'],
  [0x0403, 'LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED'],
  [0x0407, 'LOGICAL UNIT NOT READY, OPERATION IN PROGRESS'],
  [0x040a, 'LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION'],
  [0x040b, 'LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE'],
  [0x040c, 'LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE'],
  [0x0500, 'LOGICAL UNIT DOES NOT RESPOND TO SELECTION'],
  [0x0800, 'LOGICAL UNIT COMMUNICATION FAILURE'],
  [0x1100, 'UNRECOVERED READ ERROR'],
  [0x1a00, 'PARAMETER LIST LENGTH ERROR'],
  [0x2000, 'INVALID COMMAND OPERATION CODE'],
  [0x2400, 'INVALID FIELD IN CDB'],
  [0x2500, 'LOGICAL UNIT NOT SUPPORTED'],
  [0x2600, 'INVALID FIELD IN PARAMETER LIST'],
  [0x2604, 'INVALID RELEASE OF PERSISTENT RESERVATION'],
  [0x2700, 'WRITE PROTECTED'],
  [0x2707, 'SPACE ALLOCATION FAILED WRITE PROTECT'],
  [0x2900, 'POWER ON, RESET, OR BUS DEVICE RESET OCCURRED'],
  [0x2902, 'SCSI BUS RESET OCCURRED'],
  [0x2907, 'I_T NEXUS LOSS OCCURRED'],
  [0x2a03, 'RESERVATIONS PREEMPTED'],
  [0x2a04, 'RESERVATIONS RELEASED'],
  [0x2a05, 'REGISTRATIONS PREEMPTED'],
  [0x2a06, 'ASYMMETRIC ACCESS STATE CHANGED'],
  [0x2e02, 'COMMAND TIMEOUT DURING PROCESSING'],
  [0x2f02, 'COMMANDS CLEARED BY DEVICE SERVER'],
  [0x3a00, 'MEDIUM NOT PRESENT'],
  [0x3f0e, 'REPORTED LUNS DATA HAS CHANGED'],
  [0x4400, 'INTERNAL TARGET FAILURE'],
  [0x5502, 'INSUFFICIENT RESERVATION RESOURCES'],
  [0x5504, 'INSUFFICIENT REGISTRATION RESOURCES'],
]);

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

export function opcodeName(opcode: number): string {
  if (opcode === Opcode.PERSISTENT_RESERVE_IN) return 'PERSISTENT RESERVE IN';
  if (opcode === Opcode.PERSISTENT_RESERVE_OUT) return 'PERSISTENT RESERVE OUT';
  if (opcode === Opcode.TEST_UNIT_READY) return 'TEST UNIT READY';
  if (opcode === 0xff) return 'CLEANUP';
  return `opcode 0x${hex2(opcode)}`;
}

/** The service action's name for a PR IN/OUT operation code. */
export function serviceActionName(opcode: number, sa: number): string {
  const table = opcode === Opcode.PERSISTENT_RESERVE_IN ? PR_IN_SA_NAMES
    : opcode === Opcode.PERSISTENT_RESERVE_OUT ? PR_OUT_SA_NAMES : {};
  return table[sa] ?? `service action 0x${hex2(sa)}`;
}

export function reservationTypeName(type: number): string {
  return PR_TYPE_NAMES[type] ?? `type 0x${type.toString(16)}`;
}

/** "LU" for scope 0, as SPC-4 names it; other scopes are obsolete. */
export function scopeName(scope: number): string {
  return scope === 0 ? 'LU' : `scope 0x${scope.toString(16)}`;
}

export function statusName(status: number): string {
  return STATUS_NAMES[status] ?? `status 0x${hex2(status)}`;
}

export function senseKeyName(key: number): string {
  return SENSE_KEY_NAMES[key & 0x0f] ?? `sense key 0x${hex2(key)}`;
}

export function additionalSenseName(asc: number, ascq: number): string {
  return ASC_NAMES.get((asc << 8) | ascq) ?? `ASC 0x${hex2(asc)} ASCQ 0x${hex2(ascq)}`;
}

/** "ILLEGAL REQUEST: INVALID FIELD IN CDB (05/24/00)". */
export function describeSenseCode(code: SenseCode): string {
  return `${senseKeyName(code.key)}: ${additionalSenseName(code.asc, code.ascq)} (${hex2(code.key)}/${hex2(code.asc)}/${hex2(code.ascq)})`;
}

/** Words for sense bytes as a device or the helper sent them, or null when there are none. */
export function describeSense(sense: Uint8Array): string | null {
  const code = decodeSense(sense);
  return code === null ? null : describeSenseCode(code);
}
