/**
 * TransportID decoding (SPC-4 §7.6.4), as READ FULL STATUS reports the initiator port of each
 * registration. Pure; every read is bounded by the bytes given (style habit 3).
 */

/** PROTOCOL IDENTIFIER (SPC-4 Table 362) → short name. */
const PROTOCOL_NAMES: ReadonlyMap<number, string> = new Map([
  [0x0, 'FCP'],
  [0x1, 'SPI'],
  [0x2, 'SSA'],
  [0x3, 'SBP'],
  [0x4, 'SRP'],
  [0x5, 'iSCSI'],
  [0x6, 'SAS'],
  [0x7, 'ADT'],
  [0x8, 'ATA'],
  [0x9, 'UAS'],
  [0xa, 'SOP'],
  [0xb, 'PCIe'],
  [0xf, 'none'],
]);

export const TransportProtocol = {
  FCP: 0x0,
  SPI: 0x1,
  SBP: 0x3,
  SRP: 0x4,
  ISCSI: 0x5,
  SAS: 0x6,
  SOP: 0xa,
} as const;

/** FORMAT CODE 01b of an iSCSI TransportID: the name carries ",i,0x" and the ISID. */
const ISCSI_FORMAT_PORT = 0x1;
const ISCSI_SEPARATOR = ',i,0x';

export interface TransportId {
  /** PROTOCOL IDENTIFIER, byte 0 bits 3-0. */
  protocol: number;
  /** "iSCSI", "FCP", "SAS", ...; "protocol 0xc" when unassigned. */
  protocolName: string;
  /** FORMAT CODE, byte 0 bits 7-6. */
  format: number;
  /**
   * The initiator port in words: the iSCSI name (with ",i,0x" and the ISID for format 1), or
   * the FC N_Port name, SAS address, SBP EUI-64, SRP port identifier as 0x-prefixed hex.
   * Unknown protocols: all bytes in hex.
   */
  identifier: string;
  /** iSCSI only: the name before ",i,0x". */
  iscsiName?: string;
  /** iSCSI format 1 only: the ISID as hex digits after ",i,0x". */
  isid?: string;
  /** The TransportID as received. */
  bytes: Uint8Array;
}

function hex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

const UTF8 = new TextDecoder('utf-8');

/** Bytes [start, end) as 0x-hex, or null when the TransportID is too short for them. */
function hexField(bytes: Uint8Array, start: number, end: number): string | null {
  return bytes.length >= end ? `0x${hex(bytes.subarray(start, end))}` : null;
}

export function protocolName(protocol: number): string {
  return PROTOCOL_NAMES.get(protocol & 0x0f) ?? `protocol 0x${(protocol & 0x0f).toString(16)}`;
}

/**
 * Decodes one TransportID. `bytes` is exactly the TransportID (the caller knows its length
 * from the enclosing descriptor); a short or odd one is still decoded as far as it goes.
 */
export function decodeTransportId(bytes: Uint8Array): TransportId {
  const first = bytes[0] ?? 0;
  const protocol = first & 0x0f;
  const format = (first >> 6) & 0x03;
  const base = { protocol, protocolName: protocolName(protocol), format, bytes: bytes.slice() };
  let identifier: string | null = null;
  switch (protocol) {
    case TransportProtocol.FCP: // N_PORT NAME, bytes 8-15
    case TransportProtocol.SBP: // EUI-64 NAME, bytes 8-15
      identifier = hexField(bytes, 8, 16);
      break;
    case TransportProtocol.SRP: // INITIATOR PORT IDENTIFIER, bytes 8-23
      identifier = hexField(bytes, 8, 24);
      break;
    case TransportProtocol.SAS: // SAS ADDRESS, bytes 4-11
      identifier = hexField(bytes, 4, 12);
      break;
    case TransportProtocol.SPI: // SCSI ADDRESS bytes 2-3, RELATIVE TARGET PORT IDENTIFIER 6-7
      if (bytes.length >= 8) {
        const address = ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0);
        const port = ((bytes[6] ?? 0) << 8) | (bytes[7] ?? 0);
        identifier = `SCSI address ${address}, relative port ${port}`;
      }
      break;
    case TransportProtocol.SOP: // ROUTING IDENTIFIER, bytes 2-3
      identifier = hexField(bytes, 2, 4);
      break;
    case TransportProtocol.ISCSI:
      return { ...base, ...decodeIscsi(bytes, format) };
    default:
      break;
  }
  return { ...base, identifier: identifier ?? `0x${hex(bytes)}` };
}

/**
 * ADDITIONAL LENGTH in bytes 2-3, then the NUL-terminated (and padded) iSCSI NAME. The name
 * ends at the first NUL or at the end of the field, whichever comes first.
 */
function decodeIscsi(bytes: Uint8Array, format: number): Pick<TransportId, 'identifier' | 'iscsiName' | 'isid'> {
  const additional = ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0);
  const field = bytes.subarray(Math.min(4, bytes.length), Math.min(4 + additional, bytes.length));
  const nul = field.indexOf(0);
  const text = UTF8.decode(nul < 0 ? field : field.subarray(0, nul));
  if (format === ISCSI_FORMAT_PORT) {
    const at = text.toLowerCase().lastIndexOf(ISCSI_SEPARATOR);
    if (at >= 0) {
      return { identifier: text, iscsiName: text.slice(0, at), isid: text.slice(at + ISCSI_SEPARATOR.length) };
    }
  }
  return { identifier: text, iscsiName: text };
}
