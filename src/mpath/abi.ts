/**
 * libmpathpersist's ABI: the constants of /usr/include/mpath_persist.h (multipath-tools
 * 0.9.4) and the layout of its structures (LP64, checked with a C program against the
 * installed header: offsetof/sizeof). Pure data; the one place each value is declared.
 * The TransportID protocol identifiers (the header's MPATH_PROTOCOL_ID_*) are SPC values:
 * TransportProtocol in src/scsi/transport-id.ts.
 */

// ---------------------------------------------------------------------------------------------
// Constants (mpath_persist.h)

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

/** TransportID FORMAT CODE (byte 0 bits 6-7), SPC-4 §7.6.4. */
export const MPATH_WWUI_DEVICE_NAME = 0x00;
export const MPATH_WWUI_PORT_IDENTIFIER = 0x40;

/** FC and SAS TransportIDs (format 00) are 24 bytes (SPC-4 §7.6.4). */
export const FIXED_TRANSPORT_ID_SIZE = 24;
/** iSCSI TransportID header: protocol byte, reserved, ADDITIONAL LENGTH (2). */
export const ISCSI_HEADER_SIZE = 4;

// ---------------------------------------------------------------------------------------------
// Structure layouts

export const PRIN_RESP_SIZE = 8200;
export const PROUT_PARAM = { KEY: 0, SA_KEY: 8, SA_FLAGS: 20, NUM_TRANSPORTID: 8216, TRNPTID_LIST: 8224, SIZE: 8224 } as const;
export const TRANSPORTID = { FORMAT_CODE: 0, PROTOCOL_ID: 1, NAME: 2, NAME_SIZE: 256, SIZE: 258 } as const;
/** What QEMU stores into the library's mpath_mx_alloc_len (0 by default in 0.9.4). */
export const MPATH_ALLOCATION_LENGTH = 8192;

/**
 * `struct print_fulldescr_list`, the READ FULL STATUS member of `struct prin_resp`.
 * `descriptors[]` is a flexible array of pointers that starts at sizeof(struct prin_resp):
 * the library writes it past the end of the structure.
 */
export const PRIN_FULLDESCR_LIST = {
  PRGENERATION: 0, NUMBER_OF_DESCRIPTOR: 4, PRIVATE_BUFFER: 8, PRIVATE_BUFFER_SIZE: MPATH_MAX_PARAM_LEN, DESCRIPTORS: 8200, POINTER_SIZE: 8,
} as const;
/** `struct prin_fulldescr`: key[8], flag, scope_type, uint16_t rtpi, struct transportid (unaligned, size 270). */
export const PRIN_FULLDESCR = { KEY: 0, FLAG: 8, SCOPE_TYPE: 9, RTPI: 10, TRNPTID: 12, SIZE: 270 } as const;

/**
 * The most descriptors mpath_format_readfullstatus() (0.9.4) can store: its loop runs while
 * k < additional_length ≤ 8192 and moves k by at least one byte per descriptor for any
 * response (a TransportID length that wraps 24 + length to a small number included).
 */
export const FULL_STATUS_MAX_DESCRIPTORS = 8192;
/**
 * The native block for READ FULL STATUS: room for every descriptor the library can copy to
 * private_buffer + 270·i and every pointer it can store at 8200 + 8·i, whatever the device
 * answers (about 2.1 MiB). mpathpersist's own mpath_alloc_prin_response() allocates
 * 8200 + 32 pointers (8456 bytes), which the library overruns from the 32nd descriptor on.
 */
export const FULL_STATUS_RESP_SIZE = Math.max(
  PRIN_FULLDESCR_LIST.PRIVATE_BUFFER + PRIN_FULLDESCR.SIZE * FULL_STATUS_MAX_DESCRIPTORS,
  PRIN_FULLDESCR_LIST.DESCRIPTORS + PRIN_FULLDESCR_LIST.POINTER_SIZE * FULL_STATUS_MAX_DESCRIPTORS,
);
