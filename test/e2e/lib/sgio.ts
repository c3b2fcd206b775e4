/**
 * Direct, synchronous ioctl(SG_IO) for the e2e suite and its benchmark: the "no helper"
 * reference. Mirrors the sg_io_hdr filling of src/sys/sgio.ts (same layouts), but runs the
 * ioctl on the calling thread, since a test or a benchmark loop has nothing else to do.
 */
import { allocNative, freeNative, lastErrno, libc, type NativeBlock } from '../../../src/sys/libc.js';
import { describeErrno } from '../../../src/sys/errors.js';
import {
  SG_IO, SG_IO_HDR, SG_INTERFACE_ID, SG_DXFER_FROM_DEV, SG_DXFER_NONE, SG_DXFER_TO_DEV,
} from '../../../src/sys/layouts.js';

const CDB_OFF = 96;
const SENSE_OFF = CDB_OFF + 16;
const SENSE_SIZE = 96;
const DATA_OFF = SENSE_OFF + SENSE_SIZE;
const MAX_DATA = 8192;

export interface DirectResult {
  status: number;
  hostStatus: number;
  driverStatus: number;
  resid: number;
  /** Sense bytes the kernel wrote (sb_len_wr), zero-padded to 96 like the helper does. */
  sense: Uint8Array;
  senseWritten: number;
  /** Data received (from-device): dxfer_len - resid bytes. */
  data: Uint8Array;
}

/** CDB length by group code (SPC): what the kernel should be told for `cdb[0]`. */
export function cdbLength(opcode: number): number {
  const group = opcode >> 5;
  if (group === 0) return 6;
  if (group === 1 || group === 2) return 10;
  if (group === 4) return 16;
  if (group === 5) return 12;
  return 16;
}

export class DirectSgIo {
  readonly #area: NativeBlock;
  readonly #u8: Uint8Array;
  readonly #dv: DataView;

  constructor() {
    this.#area = allocNative(DATA_OFF + MAX_DATA);
    this.#u8 = new Uint8Array(this.#area.view);
    this.#dv = new DataView(this.#area.view);
  }

  /**
   * One SG_IO. `cdb` is sent with its group-code length; `params` (PR OUT) goes to the
   * device, otherwise `allocation` bytes are read from it (0 = no data transfer).
   */
  run(fd: number, cdb: Uint8Array, opts: { params?: Uint8Array; allocation?: number; timeoutMs?: number } = {}): DirectResult {
    const u8 = this.#u8;
    const dv = this.#dv;
    const base = this.#area.address;
    u8.fill(0, 0, DATA_OFF);
    const cmdLen = cdbLength(cdb[0] ?? 0);
    u8.set(cdb.subarray(0, cmdLen), CDB_OFF);
    let direction = SG_DXFER_NONE;
    let length = 0;
    if (opts.params !== undefined && opts.params.length > 0) {
      direction = SG_DXFER_TO_DEV;
      length = opts.params.length;
      u8.set(opts.params, DATA_OFF);
    } else if ((opts.allocation ?? 0) > 0) {
      direction = SG_DXFER_FROM_DEV;
      length = Math.min(opts.allocation ?? 0, MAX_DATA);
      u8.fill(0, DATA_OFF, DATA_OFF + length);
    }
    dv.setInt32(SG_IO_HDR.INTERFACE_ID, SG_INTERFACE_ID, true);
    dv.setInt32(SG_IO_HDR.DXFER_DIRECTION, direction, true);
    dv.setUint8(SG_IO_HDR.CMD_LEN, cmdLen);
    dv.setUint8(SG_IO_HDR.MX_SB_LEN, SENSE_SIZE);
    dv.setUint32(SG_IO_HDR.DXFER_LEN, length, true);
    dv.setBigUint64(SG_IO_HDR.DXFERP, BigInt(base + DATA_OFF), true);
    dv.setBigUint64(SG_IO_HDR.CMDP, BigInt(base + CDB_OFF), true);
    dv.setBigUint64(SG_IO_HDR.SBP, BigInt(base + SENSE_OFF), true);
    dv.setUint32(SG_IO_HDR.TIMEOUT, opts.timeoutMs ?? 30_000, true);
    if (libc.ioctl(fd, SG_IO, base) < 0) {
      const errno = lastErrno();
      throw new Error(`SG_IO failed: ${describeErrno(errno)}`);
    }
    const resid = dv.getInt32(SG_IO_HDR.RESID, true);
    const senseWritten = dv.getUint8(SG_IO_HDR.SB_LEN_WR);
    return {
      status: dv.getUint8(SG_IO_HDR.STATUS),
      hostStatus: dv.getUint16(SG_IO_HDR.HOST_STATUS, true),
      driverStatus: dv.getUint16(SG_IO_HDR.DRIVER_STATUS, true),
      resid,
      senseWritten,
      sense: u8.slice(SENSE_OFF, SENSE_OFF + SENSE_SIZE),
      data: direction === SG_DXFER_FROM_DEV ? u8.slice(DATA_OFF, DATA_OFF + Math.max(0, length - resid)) : new Uint8Array(0),
    };
  }

  free(): void {
    freeNative(this.#area);
  }
}

/** TEST UNIT READY, 6 bytes. Used to consume pending UNIT ATTENTIONs. */
export function turCdb(): Uint8Array {
  return new Uint8Array(16);
}
