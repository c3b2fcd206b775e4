/**
 * The multipath thread: loads libmpathpersist, initialises it once, then runs PR IN/OUT
 * calls one at a time as the main thread posts them. The library blocks for its own
 * retries (2 s SG_IO timeouts on each path, multipathd round trips), so it never runs on
 * the main thread (docs/protocol.md §9 item 11), and never on two threads at once (global state).
 * The library calls themselves, with their native memory, are src/sys/mpathpersist.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { nameThisThread } from '../sys/fd.js';
import { errorMessage } from '../util/error-message.js';
import { openMpathCmd, openMpathPersist, type MpathCmd, type MpathPersist } from '../sys/mpathpersist.js';
import { MPATH_ALLOCATION_LENGTH, MPATH_PRIN_RFSTAT_SA, MPATH_PR_SUCCESS } from './abi.js';
import { decodeLibraryFullStatus } from './full-status.js';
import { mpathCmdOf } from './library.js';
import type { MpathReply, MpathRequest } from './types.js';

const { path, logToSyslog } = workerData as { path: string; logToSyslog: boolean };
nameThisThread('prh-mpath');

let lib: MpathPersist;
let cmd: MpathCmd;
try {
  lib = openMpathPersist(path);
  cmd = openMpathCmd(mpathCmdOf(path));
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
parentPort?.postMessage({ type: 'ready', version: lib.multipathToolsVersion() });

/**
 * READ FULL STATUS: the library stores descriptor copies and a pointer array far past
 * struct prin_resp (full-status.ts), so it gets a block sized for the worst case, and the
 * pointers are turned into typed descriptors here, where the block's address is known.
 */
function readFullStatus(request: Extract<MpathRequest, { op: 'in' }>): MpathReply {
  const { code, block, base } = lib.reserveInFullStatus(request.fd, request.sa, request.noisy, request.verbose);
  const fullStatus = code === MPATH_PR_SUCCESS ? decodeLibraryFullStatus(block, base) : null;
  return { id: request.id, code, response: null, fullStatus };
}

/** multipathd commands over libmpathcmd; a reply other than "ok" (or none) is a failure. */
function multipathd(commands: string[], timeoutMs: number): string | null {
  const connection = cmd.connect();
  if (!connection.ok) return `mpath_connect() failed: cannot reach multipathd: ${connection.error}`;
  const { fd } = connection;
  try {
    for (const command of commands) {
      const result = cmd.processCommand(fd, command, timeoutMs);
      if (!result.ok) return `mpath_process_cmd(${fd}, "${command}") failed: ${result.error}`;
      const { reply } = result;
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
    const { code, response } = lib.reserveIn(request.fd, request.sa, request.noisy, request.verbose);
    reply = { id: request.id, code, response };
  } else {
    reply = { id: request.id, code: lib.reserveOut(request.fd, request, request.noisy, request.verbose), response: null };
  }
  parentPort?.postMessage({ type: 'reply', reply });
});
