/**
 * PERSISTENT RESERVE IN/OUT CDBs and the basic PR OUT parameter list (SPC-4 §6.15.1,
 * §6.16.1, §6.16.3), built as QEMU's client sends them: the CDB zero-padded to the wire's
 * 16 bytes. Pure.
 */
import { PR_HELPER_CDB_SIZE, PR_HELPER_CLEANUP, PR_HELPER_DATA_SIZE } from '../protocol/constants.js';
import { Opcode } from './constants.js';

/** The basic PR OUT parameter list, without transport IDs (SPC-4 Table 230). */
export const PR_OUT_BASIC_PARAMETER_LENGTH = 24;

export function prInCdb(serviceAction: number, allocationLength: number): Uint8Array {
  if (!Number.isInteger(allocationLength) || allocationLength < 0 || allocationLength > PR_HELPER_DATA_SIZE) {
    throw new RangeError(`Cannot build a PR IN CDB: allocation length ${allocationLength} is outside 0-${PR_HELPER_DATA_SIZE}`);
  }
  const cdb = new Uint8Array(PR_HELPER_CDB_SIZE);
  cdb[0] = Opcode.PERSISTENT_RESERVE_IN; // OPERATION CODE
  cdb[1] = serviceAction & 0x1f; // SERVICE ACTION
  cdb[7] = allocationLength >> 8; // ALLOCATION LENGTH (MSB)
  cdb[8] = allocationLength & 0xff; // ALLOCATION LENGTH (LSB)
  return cdb;
}

export interface PrOutCdbFields {
  serviceAction: number;
  /** SCOPE: 0 (LU_SCOPE) unless testing a device. */
  scope?: number;
  /** TYPE (RESERVATION_TYPES codes); 0 for service actions that ignore it. */
  type?: number;
  parameterListLength: number;
}

export function prOutCdb(fields: PrOutCdbFields): Uint8Array {
  const length = fields.parameterListLength;
  if (!Number.isInteger(length) || length < 0 || length > PR_HELPER_DATA_SIZE) {
    throw new RangeError(`Cannot build a PR OUT CDB: parameter list length ${length} is outside 0-${PR_HELPER_DATA_SIZE}`);
  }
  const cdb = new Uint8Array(PR_HELPER_CDB_SIZE);
  cdb[0] = Opcode.PERSISTENT_RESERVE_OUT; // OPERATION CODE
  cdb[1] = fields.serviceAction & 0x1f; // SERVICE ACTION
  cdb[2] = (((fields.scope ?? 0) & 0x0f) << 4) | ((fields.type ?? 0) & 0x0f); // SCOPE | TYPE
  // PARAMETER LIST LENGTH is bytes 5-8 in SPC-4; QEMU and the helper read only 7-8 (docs/protocol.md
  // §3.4), which suffices below 64 KiB.
  cdb[7] = length >> 8;
  cdb[8] = length & 0xff;
  return cdb;
}

/** QEMU's CLEANUP pseudo-command: FF and 15 zero bytes (docs/protocol.md §3.7). */
export function cleanupCdb(): Uint8Array {
  const cdb = new Uint8Array(PR_HELPER_CDB_SIZE);
  cdb[0] = PR_HELPER_CLEANUP;
  return cdb;
}

export interface PrOutParameters {
  /** RESERVATION KEY (bytes 0-7). */
  key: bigint;
  /** SERVICE ACTION RESERVATION KEY (bytes 8-15). */
  serviceActionKey: bigint;
  /** APTPL: activate persist through power loss (byte 20 bit 0). */
  aptpl: boolean;
  /** ALL_TG_PT: register on every target port (byte 20 bit 2). */
  allTargetPorts: boolean;
}

const KEY_MAX = 0xffff_ffff_ffff_ffffn;

export function prOutParameterList(p: PrOutParameters): Uint8Array {
  for (const [what, key] of [['reservation key', p.key], ['service action key', p.serviceActionKey]] as const) {
    if (key < 0n || key > KEY_MAX) throw new RangeError(`Cannot build PR OUT parameters: ${what} does not fit in 8 bytes`);
  }
  const list = new Uint8Array(PR_OUT_BASIC_PARAMETER_LENGTH);
  const dv = new DataView(list.buffer, list.byteOffset, list.byteLength);
  dv.setBigUint64(0, p.key); // RESERVATION KEY
  dv.setBigUint64(8, p.serviceActionKey); // SERVICE ACTION RESERVATION KEY
  // bytes 16-19 obsolete (SCOPE-SPECIFIC ADDRESS); byte 20: SPEC_I_PT (3) | ALL_TG_PT (2) | APTPL (0)
  list[20] = (p.allTargetPorts ? 0x04 : 0) | (p.aptpl ? 0x01 : 0);
  return list;
}
