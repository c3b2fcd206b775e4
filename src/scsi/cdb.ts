/**
 * CDB geometry from the operation code's group (SPC-4 §4.2.5.1), as QEMU's
 * scsi_cdb_length()/scsi_cdb_xfer() compute it.
 */

/** Bytes in a CDB for `opcode`: 6, 10, 12 or 16; null for groups 3 and 6-7 (reserved/vendor). */
export function cdbLength(opcode: number): number | null {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return null;
  }
}

/**
 * QEMU scsi_cdb_xfer: the transfer length field by group; 0xFFFFFFFF when the group has none.
 * For PERSISTENT RESERVE IN/OUT (group 2) this is BE16 of bytes 7-8: SPC-3+ gives PR OUT a
 * 32-bit PARAMETER LIST LENGTH in bytes 5-8, but QEMU's client and helper both ignore bytes
 * 5-6, and so do we for compatibility (docs/protocol.md §3.4, §9 item 3).
 */
export function cdbTransferLength(cdb: Uint8Array): number {
  const at = (i: number): number => cdb[i] ?? 0;
  switch ((at(0)) >> 5) {
    case 0:
      return at(4);
    case 1:
    case 2:
      return (at(7) << 8) | at(8);
    case 4:
      return ((at(10) << 24) | (at(11) << 16) | (at(12) << 8) | at(13)) >>> 0;
    case 5:
      return ((at(6) << 24) | (at(7) << 16) | (at(8) << 8) | at(9)) >>> 0;
    default:
      return 0xffffffff;
  }
}
