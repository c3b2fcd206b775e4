/**
 * The values libmpathpersist takes and gives, typed: its structures as this helper fills and
 * reads them (byte layouts in abi.ts), and the messages between the main thread (library.ts)
 * and the multipath thread (thread-main.ts). Pure: types only.
 */

/**
 * One `struct transportid`. The library fills it two ways:
 * - for PR OUT (`prout_param_descriptor.trnptid_list`, as QEMU copies a parameter list):
 *   formatCode is byte 0 & 0xC0, and for iSCSI `name` is the TransportID's 2 ADDITIONAL
 *   LENGTH bytes followed by the name (n + 2 bytes);
 * - in READ FULL STATUS (`prin_fulldescr.trnptid`, mpath_format_readfullstatus): formatCode
 *   is byte 0 >> 6 (0-3), and for iSCSI `name` is the name without its terminating NUL.
 */
export interface MpathTransportId {
  /** FORMAT CODE, see above for its two encodings. */
  formatCode: number;
  /** PROTOCOL IDENTIFIER, byte 0 & 0x0F: FC, iSCSI or SAS, the ones whose identifier the library keeps. */
  protocolId: number;
  /** The union's bytes: n_port_name (8, FC), sas_address (8, SAS), or iscsi_name (see above). */
  name: Uint8Array;
}

/** `struct prout_param_descriptor` minus the library's private storage. */
export interface ProutParamDescriptor {
  key: Uint8Array;
  saKey: Uint8Array;
  saFlags: number;
  transportIds: MpathTransportId[];
}

/** What mpath_persistent_reserve_out takes besides the fd and the log levels. */
export interface PrOutArguments {
  sa: number;
  scope: number;
  type: number;
  descriptor: ProutParamDescriptor;
}

/** `struct prin_readdescr` (READ KEYS, READ RESERVATION), host byte order as the library leaves it. */
export interface PrinReadDescriptor {
  generation: number;
  additionalLength: number;
  /** The raw key_list bytes (at most MPATH_MAX_PARAM_LEN are looked at). */
  body: Uint8Array;
}

/** `struct prin_capdescr` (REPORT CAPABILITIES). */
export interface PrinCapabilities {
  length: number;
  flags0: number;
  flags1: number;
  typeMask: number;
}

/** One `struct prin_fulldescr`, as mpath_format_readfullstatus() left it: a READ FULL STATUS descriptor. */
export interface PrinFullDescriptor {
  /** RESERVATION KEY, the device's 8 bytes. */
  key: Uint8Array;
  /** Status descriptor byte 12 as the device sent it (ALL_TG_PT 0x02, R_HOLDER 0x01). */
  flags: number;
  /** Status descriptor byte 13 as the device sent it (SCOPE << 4 | TYPE). */
  scopeType: number;
  /** RELATIVE TARGET PORT IDENTIFIER (the library converts it to host order). */
  relativeTargetPortId: number;
  transportId: MpathTransportId;
}

/** `struct print_fulldescr_list` (READ FULL STATUS), descriptors decoded. */
export interface PrinFullStatus {
  generation: number;
  descriptors: PrinFullDescriptor[];
}

/** A successful PR IN's `struct prin_resp`, whichever member the service action filled. */
export type PrinData = PrinReadDescriptor | PrinCapabilities | PrinFullStatus;

/** struct prin_resp, decoded (host byte order) for the service action that filled it. */
export type PrinResponse =
  | ({ kind: 'list' } & PrinReadDescriptor)
  | ({ kind: 'capabilities' } & PrinCapabilities)
  | ({ kind: 'full-status' } & PrinFullStatus)
  /** READ FULL STATUS the library answered but could not represent faithfully: why. */
  | { kind: 'unusable'; reason: string };

// ---------------------------------------------------------------------------------------------
// Messages between library.ts and thread-main.ts

export type MpathRequest =
  | { id: number; op: 'in'; fd: number; sa: number; noisy: number; verbose: number }
  | ({ id: number; op: 'out'; fd: number; noisy: number; verbose: number } & PrOutArguments)
  | { id: number; op: 'multipathd'; commands: string[]; timeoutMs: number };

export interface MpathReply {
  id: number;
  code: number;
  /** struct prin_resp (8200 bytes) for PR IN other than READ FULL STATUS, null for PR OUT. */
  response: Uint8Array | null;
  /** READ FULL STATUS that succeeded, decoded on the multipath thread (decodeLibraryFullStatus). */
  fullStatus?: PrinResponse | null;
  /** For multipathd commands: why they failed, null when every reply was "ok". */
  failure?: string | null;
}
