/**
 * PERSISTENT RESERVE IN parameter data (SPC-4 §6.15.2-6.15.5) decoded into values, and the
 * reservation types with their short names and capability mask bits (SPC-4 Table 213; their
 * names come from names.ts). Pure. Every read is bounded by the bytes received: a device may
 * report an ADDITIONAL LENGTH larger than the allocation length let through, and the data is
 * then decoded as far as it goes, with `truncated` set. (src/mpath/full-status.ts encodes this data
 * for libmpathpersist; this module only reads it.)
 */
import { PrInServiceAction } from './constants.js';
import { reservationTypeName, scopeName } from './names.js';
import { decodeTransportId, type TransportId } from './transport-id.js';

/** The data is too short for its own header, or the service action is unknown. */
export class PrDataError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PrDataError';
  }
}

export interface ReservationType {
  code: number;
  /** SPC-4 name, "Write Exclusive - Registrants Only" (names.ts). */
  name: string;
  /** sg_persist-style short name, "we-ro". */
  short: string;
  /** Bit in REPORT CAPABILITIES' PERSISTENT RESERVATION TYPE MASK (byte 4 << 8 | byte 5). */
  maskBit: number;
}

function reservationType(code: number, short: string, maskBit: number): ReservationType {
  return { code, name: reservationTypeName(code), short, maskBit };
}

/** The reservation types of SPC-4 Table 213, in code order. */
export const RESERVATION_TYPES: readonly ReservationType[] = [
  reservationType(0x1, 'we', 0x0200), // WR_EX: byte 4 bit 1
  reservationType(0x3, 'ea', 0x0800), // EX_AC: byte 4 bit 3
  reservationType(0x5, 'we-ro', 0x2000), // WR_EX_RO: byte 4 bit 5
  reservationType(0x6, 'ea-ro', 0x4000), // EX_AC_RO: byte 4 bit 6
  reservationType(0x7, 'we-ar', 0x8000), // WR_EX_AR: byte 4 bit 7
  reservationType(0x8, 'ea-ar', 0x0001), // EX_AC_AR: byte 5 bit 0
];

/** "LU / Write Exclusive - Registrants Only". */
export function scopeTypeText(scope: number, type: number): string {
  return `${scopeName(scope)} / ${reservationTypeName(type)}`;
}

export interface ReadKeysData {
  kind: 'read-keys';
  /** PRGENERATION. */
  generation: number;
  /** ADDITIONAL LENGTH as the device reported it. */
  additionalLength: number;
  keys: bigint[];
  /** ADDITIONAL LENGTH promised more bytes than were received. */
  truncated: boolean;
}

export interface Reservation {
  key: bigint;
  scope: number;
  type: number;
}

export interface ReadReservationData {
  kind: 'read-reservation';
  generation: number;
  additionalLength: number;
  /** null: no persistent reservation is held (ADDITIONAL LENGTH 0). */
  reservation: Reservation | null;
  truncated: boolean;
}

export interface CapabilityFlag {
  /** SPC-4 field name, "PTPL_C". */
  name: string;
  /** What it means in words. */
  meaning: string;
  value: boolean;
}

export interface CapabilitiesData {
  kind: 'report-capabilities';
  /** LENGTH (bytes 0-1): 8 in SPC-3/4. */
  length: number;
  /** RLR_C, CRH, SIP_C, ATP_C, PTPL_C, TMV, PTPL_A, in that order. */
  flags: CapabilityFlag[];
  /** ALLOW COMMANDS (byte 3 bits 6-4). */
  allowCommands: number;
  /** PERSISTENT RESERVATION TYPE MASK (bytes 4-5); meaningful only when TMV is set. */
  typeMask: number;
  /** The types the mask lists (empty when TMV is clear). */
  supportedTypes: number[];
  truncated: boolean;
}

export interface FullStatusDescriptor {
  key: bigint;
  /** ALL_TG_PT: the registration applies to every target port. */
  allTargetPorts: boolean;
  /** R_HOLDER: this I_T nexus holds the reservation (then scope and type are valid). */
  reservationHolder: boolean;
  scope: number;
  type: number;
  /** RELATIVE TARGET PORT IDENTIFIER; meaningful only when allTargetPorts is false. */
  relativeTargetPort: number;
  /** null when the descriptor's TransportID was cut off by the allocation length. */
  transportId: TransportId | null;
}

export interface FullStatusData {
  kind: 'read-full-status';
  generation: number;
  additionalLength: number;
  descriptors: FullStatusDescriptor[];
  truncated: boolean;
}

export type PrInData = ReadKeysData | ReadReservationData | CapabilitiesData | FullStatusData;

/** Bytes 0-7 of READ KEYS / READ RESERVATION / READ FULL STATUS: PRGENERATION, ADDITIONAL LENGTH. */
const HEADER_SIZE = 8;
const KEY_SIZE = 8;
const RESERVATION_DESCRIPTOR_SIZE = 16;
const CAPABILITIES_SIZE = 8;
/** READ FULL STATUS descriptor bytes before its TransportID. */
const FULL_STATUS_FIXED_SIZE = 24;

function view(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

function header(data: Uint8Array, what: string): { generation: number; additionalLength: number; available: number } {
  if (data.length < HEADER_SIZE) {
    throw new PrDataError(`Cannot decode ${what} data: ${data.length} bytes received, the header needs ${HEADER_SIZE}`);
  }
  const dv = view(data);
  const additionalLength = dv.getUint32(4);
  return { generation: dv.getUint32(0), additionalLength, available: Math.min(additionalLength, data.length - HEADER_SIZE) };
}

export function decodeReadKeys(data: Uint8Array): ReadKeysData {
  const { generation, additionalLength, available } = header(data, 'READ KEYS');
  const dv = view(data);
  const keys: bigint[] = [];
  for (let at = HEADER_SIZE; at + KEY_SIZE <= HEADER_SIZE + available; at += KEY_SIZE) keys.push(dv.getBigUint64(at));
  return { kind: 'read-keys', generation, additionalLength, keys, truncated: additionalLength > available };
}

export function decodeReadReservation(data: Uint8Array): ReadReservationData {
  const { generation, additionalLength, available } = header(data, 'READ RESERVATION');
  let reservation: Reservation | null = null;
  if (additionalLength > 0 && available >= RESERVATION_DESCRIPTOR_SIZE) {
    // RESERVATION KEY bytes 8-15; 16-19 obsolete; 20 reserved; 21 SCOPE (7-4) | TYPE (3-0).
    const scopeType = data[HEADER_SIZE + 13] ?? 0;
    reservation = { key: view(data).getBigUint64(HEADER_SIZE), scope: scopeType >> 4, type: scopeType & 0x0f };
  }
  return {
    kind: 'read-reservation', generation, additionalLength, reservation,
    truncated: additionalLength > available || (additionalLength > 0 && reservation === null),
  };
}

/** REPORT CAPABILITIES flag bits (SPC-4 Table 224), in the order they are reported. */
export const CAPABILITY_FLAGS: readonly { name: string; meaning: string; byte: number; bit: number }[] = [
  { name: 'RLR_C', meaning: 'Replace Lost Reservation Capable', byte: 2, bit: 7 },
  { name: 'CRH', meaning: 'Compatible Reservation Handling', byte: 2, bit: 4 },
  { name: 'SIP_C', meaning: 'Specify Initiator Ports Capable', byte: 2, bit: 3 },
  { name: 'ATP_C', meaning: 'All Target Ports Capable', byte: 2, bit: 2 },
  { name: 'PTPL_C', meaning: 'Persist Through Power Loss Capable', byte: 2, bit: 0 },
  { name: 'TMV', meaning: 'Type Mask Valid', byte: 3, bit: 7 },
  { name: 'PTPL_A', meaning: 'Persist Through Power Loss Activated', byte: 3, bit: 0 },
];

export function decodeCapabilities(data: Uint8Array): CapabilitiesData {
  if (data.length < 4) {
    throw new PrDataError(`Cannot decode REPORT CAPABILITIES data: ${data.length} bytes received, the flags need 4`);
  }
  const bit = (byte: number, n: number): boolean => (((data[byte] ?? 0) >> n) & 1) === 1;
  const tmv = bit(3, 7);
  // PERSISTENT RESERVATION TYPE MASK, bytes 4-5.
  const typeMask = data.length >= 6 ? (((data[4] ?? 0) << 8) | (data[5] ?? 0)) : 0;
  // LENGTH, bytes 0-1: 8 in SPC-3 and SPC-4.
  const length = ((data[0] ?? 0) << 8) | (data[1] ?? 0);
  return {
    kind: 'report-capabilities',
    length,
    flags: CAPABILITY_FLAGS.map((f) => ({ name: f.name, meaning: f.meaning, value: bit(f.byte, f.bit) })),
    // ALLOW COMMANDS, byte 3 bits 6-4.
    allowCommands: ((data[3] ?? 0) >> 4) & 0x07,
    typeMask,
    supportedTypes: tmv && data.length >= 6
      ? RESERVATION_TYPES.filter((t) => (typeMask & t.maskBit) !== 0).map((t) => t.code)
      : [],
    truncated: data.length < Math.min(length, CAPABILITIES_SIZE),
  };
}

export function decodeFullStatus(data: Uint8Array): FullStatusData {
  const { generation, additionalLength, available } = header(data, 'READ FULL STATUS');
  const dv = view(data);
  const end = HEADER_SIZE + available;
  const descriptors: FullStatusDescriptor[] = [];
  let truncated = additionalLength > available;
  let at = HEADER_SIZE;
  while (at < end) {
    if (at + FULL_STATUS_FIXED_SIZE > end) {
      truncated = true;
      break;
    }
    // RESERVATION KEY 0-7; reserved 8-11; 12: ALL_TG_PT (bit 1) | R_HOLDER (bit 0);
    // 13: SCOPE | TYPE; reserved 14-17; RELATIVE TARGET PORT IDENTIFIER 18-19;
    // ADDITIONAL DESCRIPTOR LENGTH 20-23; TransportID from 24.
    const flags = data[at + 12] ?? 0;
    const scopeType = data[at + 13] ?? 0;
    const idLength = dv.getUint32(at + 20);
    const idStart = at + FULL_STATUS_FIXED_SIZE;
    const complete = idLength <= end - idStart;
    descriptors.push({
      key: dv.getBigUint64(at),
      allTargetPorts: (flags & 0x02) !== 0,
      reservationHolder: (flags & 0x01) !== 0,
      scope: scopeType >> 4,
      type: scopeType & 0x0f,
      relativeTargetPort: dv.getUint16(at + 18),
      transportId: complete ? decodeTransportId(data.subarray(idStart, idStart + idLength)) : null,
    });
    if (!complete) {
      truncated = true;
      break;
    }
    at = idStart + idLength;
  }
  return { kind: 'read-full-status', generation, additionalLength, descriptors, truncated };
}

/** Decodes PR IN data for its service action (CDB byte 1 bits 4-0). */
export function decodePrInData(serviceAction: number, data: Uint8Array): PrInData {
  switch (serviceAction) {
    case PrInServiceAction.READ_KEYS:
      return decodeReadKeys(data);
    case PrInServiceAction.READ_RESERVATION:
      return decodeReadReservation(data);
    case PrInServiceAction.REPORT_CAPABILITIES:
      return decodeCapabilities(data);
    case PrInServiceAction.READ_FULL_STATUS:
      return decodeFullStatus(data);
    default:
      throw new PrDataError(`Cannot decode PR IN data: unknown service action 0x${serviceAction.toString(16)}`);
  }
}

/** A key as sg_persist prints it: "0x" and 16 hex digits. */
export function formatKey(key: bigint): string {
  return `0x${key.toString(16).padStart(16, '0')}`;
}
