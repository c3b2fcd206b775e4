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
