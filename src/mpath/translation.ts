/**
 * PR IN/OUT on a dm-multipath fd through libmpathpersist (spec §5.3-5.6): the pure half.
 * This module turns CDBs and parameter lists into the typed arguments the library gets, and
 * the library's answers into SCSI data and outcomes. The FFI layer (src/sys) marshals these
 * values into `struct prout_param_descriptor`/`struct transportid` and out of
 * `struct prin_resp`; nothing here does I/O.
 *
 * Names of library values follow /usr/include/mpath_persist.h (multipath-tools 0.9.4).
 * Deliberate differences from QEMU's multipath_pr_in/multipath_pr_out (spec §9):
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
 *   parameter list and is INVALID FIELD IN PARAMETER LIST, as spec §5.4 states the rule.
 */
import { ScsiStatus, type ScsiOutcome } from '../scsi/constants.js';
import { Sense, buildFixedSense, type SenseCode } from '../scsi/sense.js';
import { PR_HELPER_CDB_SIZE, PR_HELPER_DATA_SIZE, PR_HELPER_SENSE_SIZE } from '../protocol/constants.js';

// ---------------------------------------------------------------------------------------------
// Library constants (mpath_persist.h)

/** Size of `prin_readdescr.key_list` and of `prout_param_descriptor.private_buffer`. */
export const MPATH_MAX_PARAM_LEN = 8192;
/** Transport IDs one `prout_param_descriptor` can carry. */
export const MPATH_MX_TIDS = 32;

export const MPATH_PRIN_RKEY_SA = 0x00; // READ KEYS
export const MPATH_PRIN_RRES_SA = 0x01; // READ RESERVATION
export const MPATH_PRIN_RCAP_SA = 0x02; // REPORT CAPABILITIES
export const MPATH_PRIN_RFSTAT_SA = 0x03; // READ FULL STATUS

export const MPATH_PROUT_REG_SA = 0x00; // REGISTER
export const MPATH_PROUT_RES_SA = 0x01; // RESERVE
export const MPATH_PROUT_REL_SA = 0x02; // RELEASE
export const MPATH_PROUT_CLEAR_SA = 0x03; // CLEAR
export const MPATH_PROUT_PREE_SA = 0x04; // PREEMPT
export const MPATH_PROUT_PREE_AB_SA = 0x05; // PREEMPT AND ABORT
export const MPATH_PROUT_REG_IGN_SA = 0x06; // REGISTER AND IGNORE EXISTING KEY
export const MPATH_PROUT_REG_MOV_SA = 0x07; // REGISTER AND MOVE
/** REPLACE LOST RESERVATION (SPC-5): no library constant. */
const SPC_PROUT_REPLACE_LOST_SA = 0x08;

/** Return codes of mpath_persistent_reserve_in/out. */
export const MPATH_PR_SKIP = -1;
export const MPATH_PR_SUCCESS = 0;
export const MPATH_PR_SYNTAX_ERROR = 1;
export const MPATH_PR_SENSE_NOT_READY = 2;
export const MPATH_PR_SENSE_MEDIUM_ERROR = 3;
export const MPATH_PR_SENSE_HARDWARE_ERROR = 4;
export const MPATH_PR_ILLEGAL_REQ = 5;
export const MPATH_PR_SENSE_UNIT_ATTENTION = 6;
export const MPATH_PR_SENSE_INVALID_OP = 7;
export const MPATH_PR_SENSE_ABORTED_COMMAND = 8;
export const MPATH_PR_NO_SENSE = 9;
export const MPATH_PR_SENSE_MALFORMED = 10;
export const MPATH_PR_RESERV_CONFLICT = 11;
export const MPATH_PR_FILE_ERROR = 12;
export const MPATH_PR_DMMP_ERROR = 13;
export const MPATH_PR_THREAD_ERROR = 14;
export const MPATH_PR_OTHER = 15;
/** Internal codes of later versions (0.12.0, 0.13.0); they must map like any unknown code. */
export const MPATH_PR_RETRYABLE_ERROR = 16;
export const MPATH_PR_SUCCESS_UNREGISTER = 17;

/** sa_flags bits of the PR OUT parameter list (byte 20). */
export const MPATH_F_APTPL_MASK = 0x01;
export const MPATH_F_ALL_TG_PT_MASK = 0x04;
export const MPATH_F_SPEC_I_PT_MASK = 0x08;

/** TransportID PROTOCOL IDENTIFIER (byte 0 bits 0-3) and FORMAT CODE (bits 6-7), SPC-4 §7.6.4. */
export const MPATH_PROTOCOL_ID_FC = 0x00;
export const MPATH_PROTOCOL_ID_ISCSI = 0x05;
export const MPATH_PROTOCOL_ID_SAS = 0x06;
export const MPATH_WWUI_DEVICE_NAME = 0x00;
export const MPATH_WWUI_PORT_IDENTIFIER = 0x40;

// ---------------------------------------------------------------------------------------------
// What this helper supports: each set is the one place to widen when a service action is added.

/**
 * PR IN service actions passed to the library. QEMU leaves out READ FULL STATUS ("nobody
 * implements it"); libmpathpersist 0.9.4 does implement it (src/mpath/library.ts decodeFullStatus).
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

/** SERVICE ACTION field: CDB byte 1 bits 0-4 (SPC-4 §6.15.1, §6.16.1; spec §9 item 15). */
const SERVICE_ACTION_MASK = 0x1f;

const NO_DATA = new Uint8Array(0);

/** Fixed-format sense for `code`, zero-padded to the wire's 96 bytes (spec §4.3, §9 item 5). */
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
// PR IN (spec §5.3)

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

/** `struct prin_readdescr` (READ KEYS, READ RESERVATION), host byte order as the library leaves it. */
export interface PrInReadResponse {
  generation: number;
  additionalLength: number;
  /** The raw key_list bytes (at most MPATH_MAX_PARAM_LEN are looked at). */
  body: Uint8Array;
}

/** `struct prin_capdescr` (REPORT CAPABILITIES). */
export interface PrInCapabilitiesResponse {
  length: number;
  flags0: number;
  flags1: number;
  typeMask: number;
}

/** A TransportID as libmpathpersist keeps it in `struct prin_fulldescr`. */
export interface FullStatusTransportId {
  /** FORMAT CODE, 0-3 (byte 0 bits 6-7 shifted down, unlike TransportId.formatCode). */
  formatCode: number;
  /** PROTOCOL IDENTIFIER: FC, iSCSI or SAS, the ones whose identifier the library keeps. */
  protocolId: number;
  /** N_PORT_NAME (FC) or SAS ADDRESS (8 bytes); the iSCSI name, without NUL. */
  name: Uint8Array;
}

/** One `struct prin_fulldescr`: a READ FULL STATUS descriptor. */
export interface FullStatusDescriptor {
  /** RESERVATION KEY (8 bytes). */
  key: Uint8Array;
  /** Descriptor byte 12: ALL_TG_PT (0x02), R_HOLDER (0x01). */
  flags: number;
  /** Descriptor byte 13: SCOPE (bits 4-7), TYPE (bits 0-3). */
  scopeType: number;
  relativeTargetPortId: number;
  transportId: FullStatusTransportId;
}

/** `struct print_fulldescr_list` (READ FULL STATUS), descriptors decoded. */
export interface PrInFullStatusResponse {
  generation: number;
  descriptors: FullStatusDescriptor[];
}

export type PrInLibraryResponse = PrInReadResponse | PrInCapabilitiesResponse | PrInFullStatusResponse;

/** PR IN header: PRGENERATION (4) and ADDITIONAL LENGTH (4). */
const PR_IN_HEADER_SIZE = 8;

function requireUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`Cannot build PR IN data: ${name} ${value} is not an integer in 0..${max}`);
  }
}

/**
 * The data-in bytes for a successful library call (QEMU multipath_pr_in): the response is
 * laid out in an 8192-byte buffer, the rest of which is zero, and the first
 * min(8192, allocationLength) bytes are returned, so a short response is zero-padded up to
 * the allocation length (unlike the SG path, spec §9 item 4).
 * READ FULL STATUS takes either decoded descriptors (fullStatusData) or, when the library
 * left the device's bytes unparsed (ADDITIONAL LENGTH > 8192), a read descriptor copied as
 * for READ KEYS.
 * Throws only on a programming error: an SA that is not supported, a response of the wrong
 * shape for it, or a field out of its C type's range.
 */
export function prInResponseData(sa: number, allocationLength: number, resp: PrInLibraryResponse): Uint8Array {
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
    // Exact arithmetic (no 32-bit wrap, spec §9 item 9), and never past the body we were given.
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
// READ FULL STATUS parameter data (SPC-4 §6.15.5), rebuilt from the library's descriptors

/** FC and SAS TransportIDs (format 00) are 24 bytes. */
const FIXED_TRANSPORT_ID_SIZE = 24;
/** iSCSI TransportID header: protocol byte, reserved, ADDITIONAL LENGTH (2). */
const ISCSI_HEADER_SIZE = 4;
/** A full status descriptor before its TransportID (SPC-4 §6.15.5). */
const FULL_STATUS_DESCRIPTOR_HEADER = 24;
/** The iSCSI name field: at least 20 bytes (SPC-4 §7.6.4.6), a multiple of 4, NUL-terminated. */
const ISCSI_MIN_NAME_FIELD = 20;
const ISCSI_NAME_ALIGNMENT = 4;
/** What `struct transportid` holds of an iSCSI name. */
const ISCSI_MAX_KEPT_NAME = 256;

function requireBytes(what: string, bytes: Uint8Array, length: number): void {
  if (bytes.length !== length) {
    throw new RangeError(`Cannot build READ FULL STATUS data: ${what} has ${bytes.length} bytes, not ${length}`);
  }
}

/**
 * The SPC-4 TransportID (§7.6.4) for an FC, iSCSI or SAS initiator port as the library keeps
 * it: FC and SAS are 24 bytes (N_PORT_NAME at 8-15, SAS ADDRESS at 4-11, all else zero);
 * iSCSI is 4 bytes plus the name field, which holds the name, a NUL and NUL padding to a
 * multiple of 4, and is at least 20 bytes. Throws a RangeError for anything else
 * (a programming error: the FFI layer only passes these three).
 */
export function encodeFullStatusTransportId(id: FullStatusTransportId): Uint8Array {
  if (!Number.isInteger(id.formatCode) || id.formatCode < 0 || id.formatCode > 3) {
    throw new RangeError(`Cannot build a TransportID: format code ${id.formatCode} is not in 0..3`);
  }
  const byte0 = (id.formatCode << 6) | id.protocolId; // FORMAT CODE | PROTOCOL IDENTIFIER
  switch (id.protocolId) {
    case MPATH_PROTOCOL_ID_FC: {
      requireBytes('an N_PORT_NAME', id.name, 8);
      const t = new Uint8Array(FIXED_TRANSPORT_ID_SIZE);
      t[0] = byte0;
      t.set(id.name, 8); // N_PORT_NAME
      return t;
    }
    case MPATH_PROTOCOL_ID_SAS: {
      requireBytes('a SAS ADDRESS', id.name, 8);
      const t = new Uint8Array(FIXED_TRANSPORT_ID_SIZE);
      t[0] = byte0;
      t.set(id.name, 4); // SAS ADDRESS
      return t;
    }
    case MPATH_PROTOCOL_ID_ISCSI: {
      if (id.name.length > ISCSI_MAX_KEPT_NAME) {
        throw new RangeError(`Cannot build a TransportID: the iSCSI name has ${id.name.length} bytes, more than ${ISCSI_MAX_KEPT_NAME}`);
      }
      if (id.name.includes(0)) throw new RangeError('Cannot build a TransportID: the iSCSI name contains a NUL');
      const field = Math.max(ISCSI_MIN_NAME_FIELD, Math.ceil((id.name.length + 1) / ISCSI_NAME_ALIGNMENT) * ISCSI_NAME_ALIGNMENT);
      const t = new Uint8Array(ISCSI_HEADER_SIZE + field);
      t[0] = byte0;
      t[2] = field >> 8; // ADDITIONAL LENGTH
      t[3] = field & 0xff;
      t.set(id.name, ISCSI_HEADER_SIZE); // ISCSI NAME, then NUL padding
      return t;
    }
    default:
      throw new RangeError(`Cannot build a TransportID: protocol identifier ${id.protocolId} is not FC, iSCSI or SAS`);
  }
}

/** One full status descriptor with its TransportID. */
function encodeFullStatusDescriptor(d: FullStatusDescriptor): Uint8Array {
  requireBytes('a RESERVATION KEY', d.key, 8);
  requireUint('descriptor byte 12', d.flags, 0xff);
  requireUint('SCOPE/TYPE', d.scopeType, 0xff);
  requireUint('relative target port identifier', d.relativeTargetPortId, 0xffff);
  const tid = encodeFullStatusTransportId(d.transportId);
  const out = new Uint8Array(FULL_STATUS_DESCRIPTOR_HEADER + tid.length);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.set(d.key, 0); // RESERVATION KEY; bytes 8-11 reserved
  out[12] = d.flags; // ALL_TG_PT | R_HOLDER
  out[13] = d.scopeType; // SCOPE | TYPE; bytes 14-17 reserved
  dv.setUint16(18, d.relativeTargetPortId); // RELATIVE TARGET PORT IDENTIFIER
  dv.setUint32(20, tid.length); // ADDITIONAL DESCRIPTOR LENGTH
  out.set(tid, FULL_STATUS_DESCRIPTOR_HEADER); // TRANSPORTID
  return out;
}

/**
 * READ FULL STATUS parameter data: PRGENERATION, ADDITIONAL LENGTH (the bytes of every
 * descriptor, whether or not they fit), then the descriptors, laid out like the other
 * service actions in an 8192-byte zero buffer and returned as its first
 * min(8192, allocationLength) bytes (spec §5.3). Throws only on a programming error.
 */
export function fullStatusData(allocationLength: number, resp: PrInFullStatusResponse): Uint8Array {
  requireUint('allocation length', allocationLength, Number.MAX_SAFE_INTEGER);
  requireUint('generation', resp.generation, 0xffffffff);
  const buf = new Uint8Array(PR_HELPER_DATA_SIZE);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let at = PR_IN_HEADER_SIZE;
  for (const descriptor of resp.descriptors) {
    const bytes = encodeFullStatusDescriptor(descriptor);
    if (at < buf.length) buf.set(bytes.subarray(0, buf.length - at), at);
    at += bytes.length;
  }
  const additionalLength = at - PR_IN_HEADER_SIZE;
  requireUint('additional length', additionalLength, 0xffffffff);
  dv.setUint32(0, resp.generation); // PRGENERATION
  dv.setUint32(4, additionalLength); // ADDITIONAL LENGTH
  return buf.slice(0, Math.min(PR_HELPER_DATA_SIZE, allocationLength));
}

// ---------------------------------------------------------------------------------------------
// PR OUT (spec §5.4)

/** One `struct transportid` as the library gets it. */
export interface TransportId {
  /** byte 0 & 0xC0 */
  formatCode: number;
  /** byte 0 & 0x0F */
  protocolId: number;
  /**
   * The union's bytes: n_port_name (8, FC), sas_address (8, SAS), or for iSCSI the
   * TransportID's 2 ADDITIONAL LENGTH bytes followed by the name (n + 2 bytes), as QEMU
   * copies them into iscsi_name.
   */
  name: Uint8Array;
}

/** `struct prout_param_descriptor` minus the library's private storage. */
export interface PrOutDescriptor {
  key: Uint8Array;
  saKey: Uint8Array;
  saFlags: number;
  transportIds: TransportId[];
}

export interface PrOutCall {
  kind: 'call';
  sa: MpathPrOutServiceAction;
  scope: number;
  type: number;
  descriptor: PrOutDescriptor;
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
function parseTransportId(p: Uint8Array, i: number, end: number): { id: TransportId; size: number } | null {
  const b = p[i] ?? 0;
  const header = { formatCode: b & FORMAT_CODE_MASK, protocolId: b & PROTOCOL_ID_MASK };
  switch (b & TRANSPORT_ID_DISPATCH_MASK) {
    case MPATH_WWUI_DEVICE_NAME | MPATH_PROTOCOL_ID_FC: // FC, format 00
      if (i + FIXED_TRANSPORT_ID_SIZE > end) return null;
      return { id: { ...header, name: p.slice(i + 8, i + 16) }, size: FIXED_TRANSPORT_ID_SIZE }; // N_PORT_NAME
    case MPATH_WWUI_DEVICE_NAME | MPATH_PROTOCOL_ID_ISCSI: // iSCSI, format 00 (name)
    case MPATH_WWUI_PORT_IDENTIFIER | MPATH_PROTOCOL_ID_ISCSI: { // iSCSI, format 01 (name + ISID)
      if (i + ISCSI_HEADER_SIZE > end) return null;
      const n = ((p[i + 2] ?? 0) << 8) | (p[i + 3] ?? 0); // ADDITIONAL LENGTH
      if (n > ISCSI_MAX_NAME_LENGTH || n % 4 !== 0 || i + ISCSI_HEADER_SIZE + n > end) return null;
      // The name must be NUL-terminated within its field (QEMU: a bounded memchr).
      if (!p.subarray(i + ISCSI_HEADER_SIZE, i + ISCSI_HEADER_SIZE + n).includes(0)) return null;
      return { id: { ...header, name: p.slice(i + 2, i + ISCSI_HEADER_SIZE + n) }, size: ISCSI_HEADER_SIZE + n };
    }
    case MPATH_WWUI_DEVICE_NAME | MPATH_PROTOCOL_ID_SAS: // SAS, format 00
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
  // Checked before the service action, as QEMU does (spec §9 item 15). Not fatal: the data
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

  const descriptor: PrOutDescriptor = {
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
      // Deviation (spec §9 item 8): QEMU aborts on a 33rd ID; it is just a bad parameter list.
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
 * CLEANUP's unregister (spec §5.6 step 4; QEMU multipath_pr_cleanup_unregister): REGISTER AND
 * IGNORE EXISTING KEY with a zero service action key, which succeeds whether or not this
 * I_T nexus is registered. Run it through parsePrOutParameters like any PR OUT.
 */
export function cleanupUnregisterRequest(): { cdb: Uint8Array; params: Uint8Array } {
  const cdb = new Uint8Array(PR_HELPER_CDB_SIZE);
  cdb[0] = 0x5f; // OPERATION CODE: PERSISTENT RESERVE OUT
  cdb[1] = MPATH_PROUT_REG_IGN_SA; // SERVICE ACTION
  cdb[2] = 0; // SCOPE | TYPE
  // PARAMETER LIST LENGTH: 32 bits in bytes 5-8
  cdb[5] = (PR_OUT_FIXED_PARAM_SIZE >>> 24) & 0xff;
  cdb[6] = (PR_OUT_FIXED_PARAM_SIZE >>> 16) & 0xff;
  cdb[7] = (PR_OUT_FIXED_PARAM_SIZE >>> 8) & 0xff;
  cdb[8] = PR_OUT_FIXED_PARAM_SIZE & 0xff;
  return { cdb, params: new Uint8Array(PR_OUT_FIXED_PARAM_SIZE) };
}

// ---------------------------------------------------------------------------------------------
// Library return code → outcome (spec §5.5; QEMU mpath_reconstruct_sense)

export type MpathVerdict =
  | { kind: 'good' }
  | { kind: 'reservation-conflict' }
  | {
    kind: 'check';
    /** 96 bytes: the generic fixed-format sense for the code. */
    sense: Uint8Array;
    /**
     * The library threw the device's sense away: send TEST UNIT READY on the same fd and,
     * if that is not GOOD, answer with its status and sense instead (spec §5.5 †).
     */
    probeWithTestUnitReady: boolean;
  };

interface CheckRow {
  sense: SenseCode;
  probe: boolean;
}

/** The CHECK CONDITION rows of spec §5.5. */
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
 * Sense is always 96 bytes, zero-filled where the reference leaves it untouched (§9 item 5).
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
