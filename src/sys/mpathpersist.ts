/**
 * libmpathpersist and libmpathcmd (multipath-tools) as typed calls: one function per library
 * call, over the raw declarations in libc.ts. The structures a call takes or fills are
 * marshalled here, in native memory this module owns, so that no pointer and no errno number
 * leaves the sys layer. Only the multipath thread (src/mpath/thread-main.ts) calls these: the
 * library keeps global state and is not safe to enter from two threads at once.
 */
import { allocNative, loadMpathCmd, loadMpathPersist, type NativeBlock } from './libc.js';
import { describeErrno } from './errors.js';
import { FULL_STATUS_RESP_SIZE, MPATH_MX_TIDS, PRIN_RESP_SIZE, PROUT_PARAM, TRANSPORTID } from '../mpath/abi.js';
import type { PrOutArguments } from '../mpath/types.js';

export interface MpathPersist {
  /** libmpathpersist_init(): 0 on success (multipath-tools >= 0.8.6). */
  init(): number;
  /** Sets the library's `mpath_mx_alloc_len` (PR IN allocation length); false if it is not exported. */
  setAllocationLength(value: number): boolean;
  /**
   * libmultipath's `logsink` (in libmpathutil since 0.9.0): 1 syslog, -1 stderr without
   * a time stamp, 0 stderr with one. False when the symbol is not found.
   */
  setLogSink(value: number): boolean;
  /** The multipath-tools release the library comes from ([0, 14, 3]), or null when it cannot tell. */
  multipathToolsVersion(): [number, number, number] | null;
  /** mpath_persistent_reserve_in into a zeroed `struct prin_resp`: the return code and a copy of the structure. */
  reserveIn(fd: number, sa: number, noisy: number, verbose: number): { code: number; response: Uint8Array };
  /**
   * mpath_persistent_reserve_in for READ FULL STATUS. The library stores descriptor copies
   * and a pointer array far past `struct prin_resp`, so it gets a zeroed block of
   * FULL_STATUS_RESP_SIZE bytes (about 2 MiB, allocated on first use). `block` is a view of
   * it, valid until the next call; `base` is its address, which the pointers the library
   * stored in it are measured from.
   */
  reserveInFullStatus(fd: number, sa: number, noisy: number, verbose: number): { code: number; block: Uint8Array; base: bigint };
  /** mpath_persistent_reserve_out with a `struct prout_param_descriptor` filled from `call`. */
  reserveOut(fd: number, call: PrOutArguments, noisy: number, verbose: number): number;
}

/** Loads libmpathpersist from `path`; throws when it cannot be loaded. */
export function openMpathPersist(path: string): MpathPersist {
  const lib = loadMpathPersist(path);
  const resp = allocNative(PRIN_RESP_SIZE);
  const param = allocNative(PROUT_PARAM.SIZE + 8 * MPATH_MX_TIDS);
  const ids = allocNative(TRANSPORTID.SIZE * MPATH_MX_TIDS);
  /** READ FULL STATUS's block (see FULL_STATUS_RESP_SIZE), allocated on first use. */
  let fullStatusResp: NativeBlock | null = null;
  return {
    init: () => lib.init(),
    setAllocationLength: (value) => lib.setAllocationLength(value),
    setLogSink: (value) => lib.setLogSink(value),
    multipathToolsVersion: () => lib.multipathToolsVersion(),
    reserveIn(fd, sa, noisy, verbose) {
      new Uint8Array(resp.view).fill(0);
      const code = lib.reserveIn(fd, sa, resp.address, noisy, verbose);
      return { code, response: new Uint8Array(resp.view).slice() };
    },
    reserveInFullStatus(fd, sa, noisy, verbose) {
      fullStatusResp ??= allocNative(FULL_STATUS_RESP_SIZE);
      const block = new Uint8Array(fullStatusResp.view);
      block.fill(0);
      const code = lib.reserveIn(fd, sa, fullStatusResp.address, noisy, verbose);
      return { code, block, base: BigInt(fullStatusResp.address) };
    },
    reserveOut(fd, call, noisy, verbose) {
      const { key, saKey, saFlags, transportIds } = call.descriptor;
      const bytes = new Uint8Array(param.view);
      bytes.fill(0);
      bytes.set(key, PROUT_PARAM.KEY);
      bytes.set(saKey, PROUT_PARAM.SA_KEY);
      bytes[PROUT_PARAM.SA_FLAGS] = saFlags;
      const view = new DataView(param.view);
      const idBytes = new Uint8Array(ids.view);
      idBytes.fill(0);
      const count = Math.min(transportIds.length, MPATH_MX_TIDS);
      view.setUint32(PROUT_PARAM.NUM_TRANSPORTID, count, true);
      for (let i = 0; i < count; i++) {
        const id = transportIds[i];
        if (!id) continue;
        const base = i * TRANSPORTID.SIZE;
        idBytes[base + TRANSPORTID.FORMAT_CODE] = id.formatCode;
        idBytes[base + TRANSPORTID.PROTOCOL_ID] = id.protocolId;
        idBytes.set(id.name.subarray(0, TRANSPORTID.NAME_SIZE), base + TRANSPORTID.NAME);
        view.setBigUint64(PROUT_PARAM.TRNPTID_LIST + 8 * i, BigInt(ids.address + base), true);
      }
      return lib.reserveOut(fd, call.sa, call.scope, call.type, param.address, noisy, verbose);
    },
  };
}

export interface MpathCmd {
  /** mpath_connect(): a connected fd, or why multipathd cannot be reached (connect(2)'s errno). */
  connect(): { ok: true; fd: number } | { ok: false; error: string };
  /** mpath_process_cmd(): multipathd's reply (null if none), or why the call failed; waits up to `timeoutMs`. */
  processCommand(fd: number, command: string, timeoutMs: number): { ok: true; reply: string | null } | { ok: false; error: string };
  /** mpath_disconnect(). */
  disconnect(fd: number): void;
}

/** Loads libmpathcmd from `path`; throws when it cannot be loaded. */
export function openMpathCmd(path: string): MpathCmd {
  const cmd = loadMpathCmd(path);
  return {
    connect() {
      const { fd, errno } = cmd.connect();
      return fd >= 0 ? { ok: true, fd } : { ok: false, error: describeErrno(errno) };
    },
    processCommand(fd, command, timeoutMs) {
      const { rc, errno, reply } = cmd.processCommand(fd, command, timeoutMs);
      return rc === 0 ? { ok: true, reply } : { ok: false, error: describeErrno(errno) };
    },
    disconnect: (fd) => cmd.disconnect(fd),
  };
}
