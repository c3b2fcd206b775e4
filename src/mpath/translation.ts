/**
 * PR IN/OUT on a dm-multipath fd through libmpathpersist (docs/protocol.md §5.3-5.6): the pure half.
 * This module turns CDBs and parameter lists into the typed arguments the library gets, and
 * the library's answers into SCSI data and outcomes. The multipath thread (thread-main.ts,
 * through src/sys/mpathpersist.ts) marshals these values into
 * `struct prout_param_descriptor`/`struct transportid` and out of `struct prin_resp`;
 * nothing here does I/O. READ FULL STATUS, both ways, is full-status.ts.
 *
 * Names of library values follow /usr/include/mpath_persist.h (multipath-tools 0.9.4, abi.ts).
 * Deliberate differences from QEMU's multipath_pr_in/multipath_pr_out (docs/protocol.md §9):
 * - item 15: the service action is CDB byte 1 masked with 0x1F, as SPC-4 defines the field;
 *   QEMU uses the whole byte, so a reserved high bit turns a valid SA into INVALID FIELD.
 * - item 8: a 33rd transport ID is INVALID FIELD IN PARAMETER LIST; QEMU asserts and aborts.
 * - item 9: READ KEYS/READ RESERVATION data never copies more than the response holds, whatever
 *   additional_length says; QEMU's 32-bit `additional_length + 8` wraps to a huge memcpy.
 * - READ FULL STATUS is answered (issue 5 item 4); QEMU refuses it with INVALID FIELD IN CDB.
 *   libmpathpersist hands it back parsed into `struct prin_fulldescr`s, so the SPC parameter
 *   data is rebuilt from them (fullStatusData). REGISTER AND MOVE stays refused, as in QEMU,
 *   because the library cannot do it (MPATH_PR_OUT_REFUSALS).
 * - the transport-ID list length is summed exactly; QEMU adds 28 to a signed 32-bit
 *   ldl_be_p(), so a length ≥ 0xFFFFFFE4 wraps to a small end there. Here it exceeds the
 *   parameter list and is INVALID FIELD IN PARAMETER LIST, as docs/protocol.md §5.4 states the rule.
 */
import { prOutCdb } from '../scsi/pr-commands.js';
import { ScsiStatus, type ScsiOutcome } from '../scsi/constants.js';
import { Sense, buildFixedSense, type SenseCode } from '../scsi/sense.js';
import { TransportProtocol } from '../scsi/transport-id.js';
import { PR_HELPER_DATA_SIZE, PR_HELPER_SENSE_SIZE } from '../protocol/constants.js';
import {
  FIXED_TRANSPORT_ID_SIZE, ISCSI_HEADER_SIZE, MPATH_MAX_PARAM_LEN, MPATH_MX_TIDS, MPATH_PRIN_RCAP_SA, MPATH_PRIN_RFSTAT_SA,
  MPATH_PRIN_RKEY_SA, MPATH_PRIN_RRES_SA, MPATH_PROUT_CLEAR_SA, MPATH_PROUT_PREE_AB_SA, MPATH_PROUT_PREE_SA,
  MPATH_PROUT_REG_IGN_SA, MPATH_PROUT_REG_MOV_SA, MPATH_PROUT_REG_SA, MPATH_PROUT_REL_SA, MPATH_PROUT_RES_SA,
  MPATH_PR_ILLEGAL_REQ, MPATH_PR_NO_SENSE, MPATH_PR_RESERV_CONFLICT, MPATH_PR_SENSE_ABORTED_COMMAND,
  MPATH_PR_SENSE_HARDWARE_ERROR, MPATH_PR_SENSE_INVALID_OP, MPATH_PR_SENSE_MEDIUM_ERROR, MPATH_PR_SENSE_NOT_READY,
  MPATH_PR_SENSE_UNIT_ATTENTION, MPATH_PR_SUCCESS, MPATH_WWUI_DEVICE_NAME, MPATH_WWUI_PORT_IDENTIFIER,
} from './abi.js';
import { PR_IN_HEADER_SIZE, fullStatusData, requireUint } from './full-status.js';
import type { MpathTransportId, PrOutArguments, PrinData, ProutParamDescriptor } from './types.js';

// ---------------------------------------------------------------------------------------------
// What this helper supports: each set is the one place to widen when a service action is added.

/** REPLACE LOST RESERVATION (SPC-5): no library constant. */
const SPC_PROUT_REPLACE_LOST_SA = 0x08;

/**
 * PR IN service actions passed to the library. QEMU leaves out READ FULL STATUS ("nobody
 * implements it"); libmpathpersist 0.9.4 does implement it (full-status.ts decodeLibraryFullStatus).
 */
export const MPATH_PR_IN_SUPPORTED = [MPATH_PRIN_RKEY_SA, MPATH_PRIN_RRES_SA, MPATH_PRIN_RCAP_SA, MPATH_PRIN_RFSTAT_SA] as const;
export type MpathPrInServiceAction = (typeof MPATH_PR_IN_SUPPORTED)[number];

/** PR OUT service actions passed to the library. */
export const MPATH_PR_OUT_SUPPORTED = [
  MPATH_PROUT_REG_SA, MPATH_PROUT_RES_SA, MPATH_PROUT_REL_SA, MPATH_PROUT_CLEAR_SA,
  MPATH_PROUT_PREE_SA, MPATH_PROUT_PREE_AB_SA, MPATH_PROUT_REG_IGN_SA,
] as const;
export type MpathPrOutServiceAction = (typeof MPATH_PR_OUT_SUPPORTED)[number];

/**
 * SPC service actions refused with INVALID FIELD IN CDB because the library cannot run them,
 * with the reason to log. libmpathpersist 0.9.4 (do_mpath_persistent_reserve_out) sends any
 * service action above 6 to its `default:` branch, MPATH_PR_OTHER, without reaching a path;
 * and `struct prout_param_descriptor` has no RELATIVE TARGET PORT IDENTIFIER, while
 * prout_do_scsi_ioctl only builds the basic parameter list, not REGISTER AND MOVE's.
 */
export const MPATH_PR_OUT_REFUSALS: ReadonlyMap<number, string> = new Map([
  [MPATH_PROUT_REG_MOV_SA, 'REGISTER AND MOVE is not supported by libmpathpersist on multipath devices'],
  [SPC_PROUT_REPLACE_LOST_SA, 'REPLACE LOST RESERVATION is not supported by libmpathpersist on multipath devices'],
]);

function isOneOf<T extends number>(set: readonly T[], value: number): value is T {
  return (set as readonly number[]).includes(value);
}

// ---------------------------------------------------------------------------------------------
// Outcomes

/** SERVICE ACTION field: CDB byte 1 bits 0-4 (SPC-4 §6.15.1, §6.16.1; docs/protocol.md §9 item 15). */
const SERVICE_ACTION_MASK = 0x1f;

const NO_DATA = new Uint8Array(0);

/** Fixed-format sense for `code`, zero-padded to the wire's 96 bytes (docs/protocol.md §4.3, §9 item 5). */
function sense96(code: SenseCode): Uint8Array {
  const sense = new Uint8Array(PR_HELPER_SENSE_SIZE);
  sense.set(buildFixedSense(code));
  return sense;
}

function checkCondition(code: SenseCode): ScsiOutcome {
  return { status: ScsiStatus.CHECK_CONDITION, sense: sense96(code), data: NO_DATA };
}

function statusOnly(status: number, data: Uint8Array = NO_DATA): ScsiOutcome {
  return { status, sense: new Uint8Array(PR_HELPER_SENSE_SIZE), data };
}

/** An answer given without calling the library. */
export interface Done {
  kind: 'done';
  outcome: ScsiOutcome;
  /** Why, for the log, when the outcome alone would not tell (a service action the library lacks). */
  reason?: string;
}

// ---------------------------------------------------------------------------------------------
// PR IN (docs/protocol.md §5.3)

export interface PrInCall {
  kind: 'call';
  sa: MpathPrInServiceAction;
  /** ALLOCATION LENGTH, CDB bytes 7-8. */
  allocationLength: number;
}

/** Decides whether a PR IN CDB goes to mpath_persistent_reserve_in, and with which SA. */
export function parsePrInRequest(cdb: Uint8Array): PrInCall | Done {
  const sa = (cdb[1] ?? 0) & SERVICE_ACTION_MASK; // SERVICE ACTION
  const allocationLength = ((cdb[7] ?? 0) << 8) | (cdb[8] ?? 0); // ALLOCATION LENGTH
  if (!isOneOf(MPATH_PR_IN_SUPPORTED, sa)) return { kind: 'done', outcome: checkCondition(Sense.INVALID_FIELD) };
  return { kind: 'call', sa, allocationLength };
}

/**
 * The data-in bytes for a successful library call (QEMU multipath_pr_in): the response is
 * laid out in an 8192-byte buffer, the rest of which is zero, and the first
 * min(8192, allocationLength) bytes are returned, so a short response is zero-padded up to
 * the allocation length (unlike the SG path, docs/protocol.md §9 item 4).
 * READ FULL STATUS takes either decoded descriptors (fullStatusData) or, when the library
 * left the device's bytes unparsed (ADDITIONAL LENGTH > 8192), a read descriptor copied as
 * for READ KEYS.
 * Throws only on a programming error: an SA that is not supported, a response of the wrong
 * shape for it, or a field out of its C type's range.
 */
export function prInResponseData(sa: number, allocationLength: number, resp: PrinData): Uint8Array {
  requireUint('allocation length', allocationLength, Number.MAX_SAFE_INTEGER);
  if (sa === MPATH_PRIN_RFSTAT_SA && 'descriptors' in resp) return fullStatusData(allocationLength, resp);
  const buf = new Uint8Array(PR_HELPER_DATA_SIZE);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (sa === MPATH_PRIN_RKEY_SA || sa === MPATH_PRIN_RRES_SA || sa === MPATH_PRIN_RFSTAT_SA) {
    if (!('body' in resp)) {
      throw new TypeError(`Cannot build PR IN data: service action ${sa} needs a read descriptor`);
    }
    requireUint('generation', resp.generation, 0xffffffff);
    requireUint('additional length', resp.additionalLength, 0xffffffff);
    dv.setUint32(0, resp.generation); // PRGENERATION
    dv.setUint32(4, resp.additionalLength); // ADDITIONAL LENGTH, as the device reported it
    // Exact arithmetic (no 32-bit wrap, docs/protocol.md §9 item 9), and never past the body we were given.
    const written = Math.min(resp.additionalLength + PR_IN_HEADER_SIZE, PR_HELPER_DATA_SIZE);
    const copy = Math.min(written - PR_IN_HEADER_SIZE, resp.body.length, MPATH_MAX_PARAM_LEN);
    buf.set(resp.body.subarray(0, copy), PR_IN_HEADER_SIZE);
  } else if (sa === MPATH_PRIN_RCAP_SA) {
    if (!('typeMask' in resp)) {
      throw new TypeError(`Cannot build PR IN data: service action ${sa} needs a capabilities descriptor`);
    }
    requireUint('length', resp.length, 0xffff);
    requireUint('flags[0]', resp.flags0, 0xff);
    requireUint('flags[1]', resp.flags1, 0xff);
    requireUint('type mask', resp.typeMask, 0xffff);
    dv.setUint16(0, resp.length); // LENGTH
    buf[2] = resp.flags0; // RLR_C | CRH | SIP_C | ATP_C | PTPL_C
    buf[3] = resp.flags1; // TMV | ALLOW COMMANDS | PTPL_A
    dv.setUint16(4, resp.typeMask); // PERSISTENT RESERVATION TYPE MASK; bytes 6-7 reserved
  } else {
    throw new TypeError(`Cannot build PR IN data: service action ${sa} is not supported`);
  }
  return buf.slice(0, Math.min(PR_HELPER_DATA_SIZE, allocationLength));
}

// ---------------------------------------------------------------------------------------------
// PR OUT (docs/protocol.md §5.4)

export interface PrOutCall extends PrOutArguments {
  kind: 'call';
  sa: MpathPrOutServiceAction;
}

/** Basic PR OUT parameter list (QEMU PR_OUT_FIXED_PARAM_SIZE). */
export const PR_OUT_FIXED_PARAM_SIZE = 24;
/** TRANSPORTID PARAMETER DATA LENGTH (4 bytes) follows the basic list. */
const TRANSPORT_ID_LIST_START = PR_OUT_FIXED_PARAM_SIZE + 4;
/**
 * libmpathpersist re-serializes the iSCSI ADDITIONAL LENGTH from iscsi_name[1] only (the low
 * byte), so QEMU caps it at 252, the largest multiple of 4 below 256.
 */
const ISCSI_MAX_NAME_LENGTH = 252;
/** Dispatch on byte 0 with the reserved bits 4-5 ignored, as QEMU does. */
const TRANSPORT_ID_DISPATCH_MASK = 0xcf;
const FORMAT_CODE_MASK = 0xc0;
const PROTOCOL_ID_MASK = 0x0f;

/** One TransportID at `i`; null if it is malformed or does not fit before `end`. */
function parseTransportId(p: Uint8Array, i: number, end: number): { id: MpathTransportId; size: number } | null {
  const b = p[i] ?? 0;
  const header = { formatCode: b & FORMAT_CODE_MASK, protocolId: b & PROTOCOL_ID_MASK };
  switch (b & TRANSPORT_ID_DISPATCH_MASK) {
    case MPATH_WWUI_DEVICE_NAME | TransportProtocol.FCP: // FC, format 00
      if (i + FIXED_TRANSPORT_ID_SIZE > end) return null;
      return { id: { ...header, name: p.slice(i + 8, i + 16) }, size: FIXED_TRANSPORT_ID_SIZE }; // N_PORT_NAME
    case MPATH_WWUI_DEVICE_NAME | TransportProtocol.ISCSI: // iSCSI, format 00 (name)
    case MPATH_WWUI_PORT_IDENTIFIER | TransportProtocol.ISCSI: { // iSCSI, format 01 (name + ISID)
      if (i + ISCSI_HEADER_SIZE > end) return null;
      const n = ((p[i + 2] ?? 0) << 8) | (p[i + 3] ?? 0); // ADDITIONAL LENGTH
      if (n > ISCSI_MAX_NAME_LENGTH || n % 4 !== 0 || i + ISCSI_HEADER_SIZE + n > end) return null;
      // The name must be NUL-terminated within its field (QEMU: a bounded memchr).
      if (!p.subarray(i + ISCSI_HEADER_SIZE, i + ISCSI_HEADER_SIZE + n).includes(0)) return null;
      return { id: { ...header, name: p.slice(i + 2, i + ISCSI_HEADER_SIZE + n) }, size: ISCSI_HEADER_SIZE + n };
    }
    case MPATH_WWUI_DEVICE_NAME | TransportProtocol.SAS: // SAS, format 00
      if (i + FIXED_TRANSPORT_ID_SIZE > end) return null;
      return { id: { ...header, name: p.slice(i + 4, i + 12) }, size: FIXED_TRANSPORT_ID_SIZE }; // SAS ADDRESS
    default: // other protocols, FC/SAS with format ≠ 00, format codes 10b/11b
      return null;
  }
}

/**
 * Decides what a PR OUT on a multipath fd does (QEMU multipath_pr_out), in the reference's
 * order of checks. `params` is the whole parameter list: the request's transfer length bytes.
 * Never throws; every malformed input is an outcome.
 */
export function parsePrOutParameters(cdb: Uint8Array, params: Uint8Array): PrOutCall | Done {
  const len = params.length;
  // Checked before the service action, as QEMU does (docs/protocol.md §9 item 15). Not fatal: the data
  // has been read, so the connection stays up.
  if (len < PR_OUT_FIXED_PARAM_SIZE) return { kind: 'done', outcome: checkCondition(Sense.INVALID_PARAM_LEN) };

  const sa = (cdb[1] ?? 0) & SERVICE_ACTION_MASK; // SERVICE ACTION
  if (!isOneOf(MPATH_PR_OUT_SUPPORTED, sa)) {
    const reason = MPATH_PR_OUT_REFUSALS.get(sa);
    const done: Done = { kind: 'done', outcome: checkCondition(Sense.INVALID_FIELD) };
    return reason === undefined ? done : { ...done, reason };
  }
  const scope = (cdb[2] ?? 0) >> 4; // SCOPE
  const type = (cdb[2] ?? 0) & 0x0f; // TYPE

  const descriptor: ProutParamDescriptor = {
    key: params.slice(0, 8), // RESERVATION KEY
    saKey: params.slice(8, 16), // SERVICE ACTION RESERVATION KEY
    saFlags: params[20] ?? 0, // SPEC_I_PT | ALL_TG_PT | APTPL; bytes 16-19 and 21-23 ignored
    transportIds: [],
  };

  // IDs are parsed even when SPEC_I_PT is clear; the library only sends them when it is set.
  if (len > PR_OUT_FIXED_PARAM_SIZE) {
    if (len < TRANSPORT_ID_LIST_START) return { kind: 'done', outcome: checkCondition(Sense.INVALID_PARAM_LEN) };
    const listLength = new DataView(params.buffer, params.byteOffset, params.byteLength)
      .getUint32(PR_OUT_FIXED_PARAM_SIZE); // TRANSPORTID PARAMETER DATA LENGTH
    const end = listLength + TRANSPORT_ID_LIST_START; // exact: at most 2^32 + 27
    if (end > len) return { kind: 'done', outcome: checkCondition(Sense.INVALID_PARAM) };
    // Bytes after `end` are ignored.
    for (let i = TRANSPORT_ID_LIST_START; i < end;) {
      const parsed = parseTransportId(params, i, end);
      // Deviation (docs/protocol.md §9 item 8): QEMU aborts on a 33rd ID; it is just a bad parameter list.
      if (parsed === null || descriptor.transportIds.length === MPATH_MX_TIDS) {
        return { kind: 'done', outcome: checkCondition(Sense.INVALID_PARAM) };
      }
      descriptor.transportIds.push(parsed.id);
      i += parsed.size;
    }
  }
  return { kind: 'call', sa, scope, type, descriptor };
}

/**
 * CLEANUP's unregister (docs/protocol.md §5.6 step 4; QEMU multipath_pr_cleanup_unregister): REGISTER AND
 * IGNORE EXISTING KEY with a zero service action key, which succeeds whether or not this
 * I_T nexus is registered. Run it through parsePrOutParameters like any PR OUT.
 */
export function cleanupUnregisterRequest(): { cdb: Uint8Array; params: Uint8Array } {
  const cdb = prOutCdb({ serviceAction: MPATH_PROUT_REG_IGN_SA, parameterListLength: PR_OUT_FIXED_PARAM_SIZE });
  return { cdb, params: new Uint8Array(PR_OUT_FIXED_PARAM_SIZE) };
}

// ---------------------------------------------------------------------------------------------
// Library return code → outcome (docs/protocol.md §5.5; QEMU mpath_reconstruct_sense)

export type MpathVerdict =
  | { kind: 'good' }
  | { kind: 'reservation-conflict' }
  | {
    kind: 'check';
    /** 96 bytes: the generic fixed-format sense for the code. */
    sense: Uint8Array;
    /**
     * The library threw the device's sense away: send TEST UNIT READY on the same fd and,
     * if that is not GOOD, answer with its status and sense instead (docs/protocol.md §5.5 †).
     */
    probeWithTestUnitReady: boolean;
  };

interface CheckRow {
  sense: SenseCode;
  probe: boolean;
}

/** The CHECK CONDITION rows of docs/protocol.md §5.5. */
export const MPATH_CHECK_RESULTS: ReadonlyMap<number, CheckRow> = new Map<number, CheckRow>([
  [MPATH_PR_SENSE_NOT_READY, { sense: Sense.NOT_READY, probe: true }],
  [MPATH_PR_SENSE_MEDIUM_ERROR, { sense: Sense.READ_ERROR, probe: true }],
  [MPATH_PR_SENSE_HARDWARE_ERROR, { sense: Sense.TARGET_FAILURE, probe: true }],
  [MPATH_PR_SENSE_ABORTED_COMMAND, { sense: Sense.IO_ERROR, probe: true }],
  [MPATH_PR_SENSE_UNIT_ATTENTION, { sense: Sense.SCSI_BUS_RESET, probe: false }],
  [MPATH_PR_SENSE_INVALID_OP, { sense: Sense.INVALID_OPCODE, probe: false }],
  [MPATH_PR_ILLEGAL_REQ, { sense: Sense.INVALID_PARAM, probe: false }], // QEMU: "a guess"
  [MPATH_PR_NO_SENSE, { sense: Sense.NO_SENSE, probe: false }],
]);
/** MPATH_PR_OTHER and every code not listed, including later versions' 16 and 17. */
const OTHER_RESULT: CheckRow = { sense: Sense.LUN_COMM_FAILURE, probe: false };

export function mapLibraryResult(code: number): MpathVerdict {
  if (code === MPATH_PR_SUCCESS) return { kind: 'good' };
  if (code === MPATH_PR_RESERV_CONFLICT) return { kind: 'reservation-conflict' };
  const row = MPATH_CHECK_RESULTS.get(code) ?? OTHER_RESULT;
  return { kind: 'check', sense: sense96(row.sense), probeWithTestUnitReady: row.probe };
}

/**
 * The outcome to send for a verdict. `probe` is the TEST UNIT READY outcome when the verdict
 * asked for one (null when it was not run); `data` is the PR IN data for GOOD.
 * Sense is always 96 bytes, zero-filled where the reference leaves it untouched (docs/protocol.md §9 item 5).
 */
export function mpathOutcome(
  verdict: MpathVerdict,
  probe: { status: number; sense: Uint8Array } | null = null,
  data: Uint8Array = NO_DATA,
): ScsiOutcome {
  switch (verdict.kind) {
    case 'good':
      return statusOnly(ScsiStatus.GOOD, data);
    case 'reservation-conflict':
      return statusOnly(ScsiStatus.RESERVATION_CONFLICT);
    case 'check':
      if (verdict.probeWithTestUnitReady && probe !== null && probe.status !== ScsiStatus.GOOD) {
        const sense = new Uint8Array(PR_HELPER_SENSE_SIZE);
        sense.set(probe.sense.subarray(0, PR_HELPER_SENSE_SIZE));
        return { status: probe.status, sense, data: NO_DATA };
      }
      return { status: ScsiStatus.CHECK_CONDITION, sense: verdict.sense.slice(), data: NO_DATA };
  }
}
