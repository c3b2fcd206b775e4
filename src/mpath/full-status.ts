/**
 * READ FULL STATUS on a multipath device, both ways, in one place. libmpathpersist hands the
 * device's status descriptors back parsed into `struct prin_fulldescr`s inside a native block;
 * decodeLibraryFullStatus turns that block into typed descriptors (on the multipath thread,
 * where the block's address is known), and fullStatusData rebuilds the SPC parameter data
 * the guest gets from them. Pure: bytes and numbers in, bytes and values out. The one
 * address it sees is the block's own (from src/sys/mpathpersist.ts), to check the pointers
 * the library stored in the block; nothing here follows a pointer.
 */
import { PR_HELPER_DATA_SIZE } from '../protocol/constants.js';
import { TransportProtocol } from '../scsi/transport-id.js';
import { FIXED_TRANSPORT_ID_SIZE, ISCSI_HEADER_SIZE, PRIN_FULLDESCR, PRIN_FULLDESCR_LIST, TRANSPORTID } from './abi.js';
import type { MpathTransportId, PrinFullDescriptor, PrinFullStatus, PrinResponse } from './types.js';

/** PR IN header: PRGENERATION (4) and ADDITIONAL LENGTH (4). */
export const PR_IN_HEADER_SIZE = 8;

/** Throws a RangeError (a programming error) unless `value` is an integer in 0..max. */
export function requireUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`Cannot build PR IN data: ${name} ${value} is not an integer in 0..${max}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The library's answer (multipath-tools 0.9.4, mpath_pr_ioctl.c mpath_format_readfullstatus and
// decode_transport_id, checked against the installed binary)
//
// The device's data lands in prin_resp (PRGENERATION at 0, ADDITIONAL LENGTH at 4, the status
// descriptors in private_buffer at 8; mpath_mx_alloc_len = 8192, so at most 8184 descriptor
// bytes). Both header fields are converted to host order. Then:
// - ADDITIONAL LENGTH 0: nothing else happens; number_of_descriptor is 0.
// - ADDITIONAL LENGTH > 8192: the library logs "PRIN length exceeds max length" and returns
//   MPATH_PR_SUCCESS with the device's bytes left in private_buffer and number_of_descriptor
//   still holding the length, not a count. A count never exceeds 8192, so the two are told
//   apart by value.
// - Otherwise private_buffer is copied aside and zeroed, and for each descriptor i (walking
//   24 + ADDITIONAL DESCRIPTOR LENGTH bytes, clipped at the end of the data) the library fills
//   one stack `struct prin_fulldescr` - zeroed once before the loop, never between
//   descriptors - and copies it to private_buffer + 270·i, then stores that address in
//   descriptors[i] = prin_resp + 8200 + 8·i, in that order; number_of_descriptor becomes the
//   count. Key, byte 12 (flag) and byte 13 (scope_type) are copied raw, the RELATIVE TARGET
//   PORT IDENTIFIER converted to host order. The TransportID keeps format_code = byte0 >> 6
//   and protocol_id = byte0 & 0x0F; FC copies N_PORT_NAME (bytes 8-15), SAS the SAS ADDRESS
//   (bytes 4-11), iSCSI the first min(ADDITIONAL LENGTH, 256) name bytes (no length is kept);
//   other protocols copy nothing, so the union keeps the previous descriptor's bytes.
// Nothing bounds the count: from the 31st descriptor on, descriptor copies overwrite
// descriptors[] (pointers already stored), and from the 32nd on each pointer overwrites part
// of a copy already stored (its own descriptor's first). decodeLibraryFullStatus() replays that
// write order and uses only bytes that survived it; the block is sized for the most
// descriptors the loop can store (FULL_STATUS_RESP_SIZE). Not guarded against, because it
// happens inside the library: an ADDITIONAL DESCRIPTOR LENGTH of 2^32 - 24 makes the loop
// stop advancing, so a broken or hostile target can make it write until the process faults.

const FULL = PRIN_FULLDESCR_LIST;
const DESC = PRIN_FULLDESCR;
/** Offsets of struct transportid's members inside struct prin_fulldescr. */
const TID_FORMAT_CODE = DESC.TRNPTID + TRANSPORTID.FORMAT_CODE;
const TID_PROTOCOL_ID = DESC.TRNPTID + TRANSPORTID.PROTOCOL_ID;
const TID_NAME = DESC.TRNPTID + TRANSPORTID.NAME;
const TID_NAME_SIZE = TRANSPORTID.NAME_SIZE;
const FIXED_NAME_SIZE = 8;

/** Where the library copies descriptor i. */
function descriptorOffset(i: number): number {
  return FULL.PRIVATE_BUFFER + DESC.SIZE * i;
}

/** Where the library stores the pointer to descriptor i. */
function pointerOffset(i: number): number {
  return FULL.DESCRIPTORS + FULL.POINTER_SIZE * i;
}

/** Which descriptor copy covers byte `offset` of the block (-1 before private_buffer). */
function descriptorAt(offset: number): number {
  return offset < FULL.PRIVATE_BUFFER ? -1 : Math.floor((offset - FULL.PRIVATE_BUFFER) / DESC.SIZE);
}

/** descriptors[i] survives unless a descriptor copied after it (k > i) lies over it. */
function pointerSurvives(i: number, count: number): boolean {
  const first = descriptorAt(pointerOffset(i));
  const last = descriptorAt(pointerOffset(i) + FULL.POINTER_SIZE - 1);
  return !((first > i && first < count) || (last > i && last < count));
}

/**
 * The first byte of descriptor i's copy that a pointer stored after it (descriptors[k],
 * k ≥ i) overwrote, relative to the copy; DESC.SIZE when none did.
 */
function firstOverwrittenByte(i: number, count: number): number {
  const start = descriptorOffset(i);
  const end = start + DESC.SIZE;
  // The first pointer slot that ends after `start`, but never one stored before the copy.
  const k = Math.max(i, Math.floor((start - FULL.DESCRIPTORS - FULL.POINTER_SIZE) / FULL.POINTER_SIZE) + 1);
  if (k >= count || pointerOffset(k) >= end) return DESC.SIZE;
  return Math.max(start, pointerOffset(k)) - start;
}

type DecodedDescriptor = { descriptor: PrinFullDescriptor } | { reason: string };

function decodeDescriptor(block: Uint8Array, view: DataView, at: number, i: number, count: number): DecodedDescriptor {
  const intact = firstOverwrittenByte(i, count);
  const overwritten = {
    reason: `descriptor ${i + 1} of ${count} was overwritten by the library's own pointer array ` +
      '(more status descriptors than struct prin_resp holds)',
  };
  if (intact < TID_NAME) return overwritten;
  const protocolId = block[at + TID_PROTOCOL_ID] ?? 0;
  let name: Uint8Array;
  if (protocolId === TransportProtocol.FCP || protocolId === TransportProtocol.SAS) {
    if (intact < TID_NAME + FIXED_NAME_SIZE) return overwritten;
    name = block.slice(at + TID_NAME, at + TID_NAME + FIXED_NAME_SIZE);
  } else if (protocolId === TransportProtocol.ISCSI) {
    // The name ends at its first NUL (SPC-4 7.6.4.6); what follows may be a longer name's
    // remains from an earlier descriptor.
    const field = block.subarray(at + TID_NAME, at + Math.min(TID_NAME + TID_NAME_SIZE, intact));
    const nul = field.indexOf(0);
    if (nul < 0) {
      if (intact < TID_NAME + TID_NAME_SIZE) return overwritten;
      return { reason: `descriptor ${i + 1} of ${count} has an iSCSI name the library cut at ${TID_NAME_SIZE} bytes` };
    }
    name = field.slice(0, nul);
  } else {
    return {
      reason: `descriptor ${i + 1} of ${count} has a TransportID with protocol identifier ${protocolId}, ` +
        'whose identifier libmpathpersist does not keep',
    };
  }
  return {
    descriptor: {
      key: block.slice(at + DESC.KEY, at + DESC.KEY + 8),
      flags: block[at + DESC.FLAG] ?? 0,
      scopeType: block[at + DESC.SCOPE_TYPE] ?? 0,
      relativeTargetPortId: view.getUint16(at + DESC.RTPI, true),
      transportId: { formatCode: block[at + TID_FORMAT_CODE] ?? 0, protocolId, name },
    },
  };
}

/**
 * READ FULL STATUS as the library left it in the native block at `base` (`block` is a view
 * of that block from its start): the descriptors[] pointers become offsets into the block,
 * checked against where the library stores each descriptor; pointers the library itself
 * overwrote are replaced by that position. Never reads outside `block`.
 */
export function decodeLibraryFullStatus(block: Uint8Array, base: bigint): PrinResponse {
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const generation = view.getUint32(FULL.PRGENERATION, true);
  const count = view.getUint32(FULL.NUMBER_OF_DESCRIPTOR, true);
  if (count > FULL.PRIVATE_BUFFER_SIZE) {
    // The length the library refused to parse: private_buffer holds the device's bytes.
    return {
      kind: 'list', generation, additionalLength: count,
      body: block.slice(FULL.PRIVATE_BUFFER, FULL.PRIVATE_BUFFER + FULL.PRIVATE_BUFFER_SIZE),
    };
  }
  const descriptors: PrinFullDescriptor[] = [];
  for (let i = 0; i < count; i++) {
    const at = descriptorOffset(i);
    if (pointerOffset(i) + FULL.POINTER_SIZE > block.length || at + DESC.SIZE > block.length) {
      return { kind: 'unusable', reason: `descriptor ${i + 1} of ${count} lies beyond the response block` };
    }
    if (pointerSurvives(i, count)) {
      const offset = view.getBigUint64(pointerOffset(i), true) - base;
      if (offset !== BigInt(at)) {
        return {
          kind: 'unusable',
          reason: `descriptors[${i}] points to offset ${offset} of the response, not to ${at} where the library stores it`,
        };
      }
    }
    const decoded = decodeDescriptor(block, view, at, i, count);
    if ('reason' in decoded) return { kind: 'unusable', reason: decoded.reason };
    descriptors.push(decoded.descriptor);
  }
  return { kind: 'full-status', generation, descriptors };
}

// ---------------------------------------------------------------------------------------------
// The SPC parameter data (SPC-4 §6.15.5), rebuilt from the library's descriptors

/** A full status descriptor before its TransportID (SPC-4 §6.15.5). */
const FULL_STATUS_DESCRIPTOR_HEADER = 24;
/** The iSCSI name field: at least 20 bytes (SPC-4 §7.6.4.6), a multiple of 4, NUL-terminated. */
const ISCSI_MIN_NAME_FIELD = 20;
const ISCSI_NAME_ALIGNMENT = 4;
/** What `struct transportid` holds of an iSCSI name. */
const ISCSI_MAX_KEPT_NAME = TRANSPORTID.NAME_SIZE;

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
 * (a programming error: decodeLibraryFullStatus only passes these three).
 */
export function encodeFullStatusTransportId(id: MpathTransportId): Uint8Array {
  if (!Number.isInteger(id.formatCode) || id.formatCode < 0 || id.formatCode > 3) {
    throw new RangeError(`Cannot build a TransportID: format code ${id.formatCode} is not in 0..3`);
  }
  const byte0 = (id.formatCode << 6) | id.protocolId; // FORMAT CODE | PROTOCOL IDENTIFIER
  switch (id.protocolId) {
    case TransportProtocol.FCP: {
      requireBytes('an N_PORT_NAME', id.name, 8);
      const t = new Uint8Array(FIXED_TRANSPORT_ID_SIZE);
      t[0] = byte0;
      t.set(id.name, 8); // N_PORT_NAME
      return t;
    }
    case TransportProtocol.SAS: {
      requireBytes('a SAS ADDRESS', id.name, 8);
      const t = new Uint8Array(FIXED_TRANSPORT_ID_SIZE);
      t[0] = byte0;
      t.set(id.name, 4); // SAS ADDRESS
      return t;
    }
    case TransportProtocol.ISCSI: {
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
function encodeFullStatusDescriptor(d: PrinFullDescriptor): Uint8Array {
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
 * min(8192, allocationLength) bytes (docs/protocol.md §5.3). Throws only on a programming error.
 */
export function fullStatusData(allocationLength: number, resp: PrinFullStatus): Uint8Array {
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
