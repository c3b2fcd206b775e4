/** Wire constants of QEMU's PR helper protocol (QEMU scsi/pr-helper.h; docs/protocol.md §3). */

/** Bytes of the CDB field in every request (zero-padded SCSI CDB). */
export const PR_HELPER_CDB_SIZE = 16;
/** Bytes of the sense field in every response, always sent. */
export const PR_HELPER_SENSE_SIZE = 96;
/** Largest PR IN allocation length / PR OUT parameter list length accepted. */
export const PR_HELPER_DATA_SIZE = 8192;
/**
 * Feature bit: the helper understands the CLEANUP pseudo-opcode. It comes from a QEMU patch
 * series that was posted but never merged: upstream assigns no feature bit (docs/protocol.md
 * §3.2), so this helper announces it only with --enable-cleanup.
 */
export const PR_HELPER_FEATURE_CLEANUP = 0x00000001;
/** Pseudo-opcode sent by QEMU to drop a migrating guest's registration (docs/protocol.md §3.7, §5.6). */
export const PR_HELPER_CLEANUP = 0xff;
/** Handshake words in each direction: big-endian uint32 feature sets. */
export const HANDSHAKE_SIZE = 4;
/** Response header: BE int32 result, BE int32 data size, then the sense bytes. */
export const RESPONSE_RESULT_OFFSET = 0;
export const RESPONSE_SIZE_OFFSET = 4;
export const RESPONSE_SENSE_OFFSET = 8;
export const RESPONSE_HEADER_SIZE = RESPONSE_SENSE_OFFSET + PR_HELPER_SENSE_SIZE;

/**
 * The feature set announced by default: none, as upstream QEMU's helper and client both
 * send (docs/protocol.md §3.2). Always sent big-endian (§9 item 14).
 */
export const DEFAULT_FEATURES = 0;
