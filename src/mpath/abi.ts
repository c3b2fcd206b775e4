/**
 * libmpathpersist's structures (multipath-tools 0.9.4 <mpath_persist.h>, LP64), checked
 * with a C program against the installed header (offsetof/sizeof).
 */
export const PRIN_RESP_SIZE = 8200;
export const PROUT_PARAM = { KEY: 0, SA_KEY: 8, SA_FLAGS: 20, NUM_TRANSPORTID: 8216, TRNPTID_LIST: 8224, SIZE: 8224 } as const;
export const TRANSPORTID = { FORMAT_CODE: 0, PROTOCOL_ID: 1, NAME: 2, NAME_SIZE: 256, SIZE: 258 } as const;
export const MPATH_MX_TIDS = 32;
/** What QEMU stores into the library's mpath_mx_alloc_len (0 by default in 0.9.4). */
export const MPATH_ALLOCATION_LENGTH = 8192;

/**
 * `struct print_fulldescr_list`, the READ FULL STATUS member of `struct prin_resp`.
 * `descriptors[]` is a flexible array of pointers that starts at sizeof(struct prin_resp):
 * the library writes it past the end of the structure.
 */
export const PRIN_FULLDESCR_LIST = {
  PRGENERATION: 0, NUMBER_OF_DESCRIPTOR: 4, PRIVATE_BUFFER: 8, PRIVATE_BUFFER_SIZE: 8192, DESCRIPTORS: 8200, POINTER_SIZE: 8,
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
