/**
 * The multipath thread: loads libmpathpersist, initialises it once, then runs PR IN/OUT
 * calls one at a time as the main thread posts them. The library blocks for its own
 * retries (2 s SG_IO timeouts on each path, multipathd round trips), so it never runs on
 * the main thread (spec §9 item 11), and never on two threads at once (global state).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { dirname } from 'node:path';
import { allocNative, loadMpathCmd, loadMpathPersist, type MpathCmdLib, type MpathPersistLib, type NativeBlock } from './libc.js';
import { describeErrno } from './errors.js';
import { errorMessage } from '../util/error-message.js';
import { nameThisThread } from './fd.js';
import {
  FULL_STATUS_RESP_SIZE, MPATH_ALLOCATION_LENGTH, MPATH_MX_TIDS, PRIN_RESP_SIZE, PROUT_PARAM, TRANSPORTID,
} from './mpath-layouts.js';
import { decodeFullStatus, type MpathRequest, type MpathReply } from './mpath.js';

const { path, logToSyslog } = workerData as { path: string; logToSyslog: boolean };
nameThisThread('prh-mpath');

let lib: MpathPersistLib;
let cmd: MpathCmdLib;
try {
  lib = loadMpathPersist(path);
  cmd = loadMpathCmd(`${dirname(path)}/libmpathcmd.so.0`);
  if (!lib.setAllocationLength(MPATH_ALLOCATION_LENGTH)) throw new Error('mpath_mx_alloc_len is not exported');
  // The library prints its own messages on fd 2. Under journald they go to syslog instead,
  // so that the journal gets them with a priority; otherwise without its time stamps.
  lib.setLogSink(logToSyslog ? 1 : -1);
  const rc = lib.init();
  if (rc !== 0) throw new Error(`libmpathpersist_init() returned ${rc}`);
} catch (error) {
  parentPort?.postMessage({ type: 'failed', message: errorMessage(error) });
  process.exit(0);
}

const resp: NativeBlock = allocNative(PRIN_RESP_SIZE);
const param: NativeBlock = allocNative(PROUT_PARAM.SIZE + 8 * MPATH_MX_TIDS);
const ids: NativeBlock = allocNative(TRANSPORTID.SIZE * MPATH_MX_TIDS);
/** READ FULL STATUS's block (about 2 MiB, see FULL_STATUS_RESP_SIZE), allocated on first use. */
let fullStatusResp: NativeBlock | null = null;
parentPort?.postMessage({ type: 'ready' });

const MPATH_PRIN_RFSTAT_SA = 0x03;
const MPATH_PR_SUCCESS = 0;

/**
 * READ FULL STATUS: the library stores descriptor copies and a pointer array far past
 * struct prin_resp (src/sys/mpath.ts), so it gets a block sized for the worst case, and the
 * pointers are turned into typed descriptors here, where the block's address is known.
 */
function readFullStatus(request: Extract<MpathRequest, { op: 'in' }>): MpathReply {
  fullStatusResp ??= allocNative(FULL_STATUS_RESP_SIZE);
  const block = new Uint8Array(fullStatusResp.view);
  block.fill(0);
  const code = lib.reserveIn(request.fd, request.sa, fullStatusResp.address, request.noisy, request.verbose);
  const fullStatus = code === MPATH_PR_SUCCESS ? decodeFullStatus(block, BigInt(fullStatusResp.address)) : null;
  return { id: request.id, code, response: null, fullStatus };
}

function reserveOut(request: Extract<MpathRequest, { op: 'out' }>): number {
  const bytes = new Uint8Array(param.view);
  bytes.fill(0);
  bytes.set(request.key, PROUT_PARAM.KEY);
  bytes.set(request.saKey, PROUT_PARAM.SA_KEY);
  bytes[PROUT_PARAM.SA_FLAGS] = request.saFlags;
  const view = new DataView(param.view);
  const idBytes = new Uint8Array(ids.view);
  idBytes.fill(0);
  const count = Math.min(request.transportIds.length, MPATH_MX_TIDS);
  view.setUint32(PROUT_PARAM.NUM_TRANSPORTID, count, true);
  for (let i = 0; i < count; i++) {
    const id = request.transportIds[i];
    if (!id) continue;
    const base = i * TRANSPORTID.SIZE;
    idBytes[base + TRANSPORTID.FORMAT_CODE] = id.formatCode;
    idBytes[base + TRANSPORTID.PROTOCOL_ID] = id.protocolId;
    idBytes.set(id.name.subarray(0, TRANSPORTID.NAME_SIZE), base + TRANSPORTID.NAME);
    view.setBigUint64(PROUT_PARAM.TRNPTID_LIST + 8 * i, BigInt(ids.address + base), true);
  }
  return lib.reserveOut(request.fd, request.sa, request.scope, request.type, param.address, request.noisy, request.verbose);
}

/** multipathd commands over libmpathcmd; a reply other than "ok" (or none) is a failure. */
function multipathd(commands: string[], timeoutMs: number): string | null {
  const fd = cmd.connect();
  if (fd < 0) return 'mpath_connect() failed: cannot reach multipathd';
  try {
    for (const command of commands) {
      const { rc, errno, reply } = cmd.processCommand(fd, command, timeoutMs);
      if (rc !== 0) return `mpath_process_cmd(${fd}, "${command}") failed: ${describeErrno(errno)}`;
      if (reply !== null && reply !== 'ok\n') return `mpath_process_cmd(${fd}, "${command}") replied "${reply.trimEnd()}"`;
    }
    return null;
  } finally {
    cmd.disconnect(fd);
  }
}

parentPort?.on('message', (request: MpathRequest) => {
  let reply: MpathReply;
  if (request.op === 'multipathd') {
    const failure = multipathd(request.commands, request.timeoutMs);
    reply = { id: request.id, code: failure === null ? 0 : -1, response: null, failure };
  } else if (request.op === 'in' && request.sa === MPATH_PRIN_RFSTAT_SA) {
    reply = readFullStatus(request);
  } else if (request.op === 'in') {
    new Uint8Array(resp.view).fill(0);
    const code = lib.reserveIn(request.fd, request.sa, resp.address, request.noisy, request.verbose);
    reply = { id: request.id, code, response: new Uint8Array(resp.view).slice() };
  } else {
    reply = { id: request.id, code: reserveOut(request), response: null };
  }
  parentPort?.postMessage({ type: 'reply', reply });
});
