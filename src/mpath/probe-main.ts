/**
 * The multipathd probe's thread (library.ts probeMultipathd): loads libmpathcmd alone (no
 * libmpathpersist, no global state), connects as the library would, asks "show daemon",
 * posts the reply or the failure, and ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { nameThisThread } from '../sys/fd.js';
import { openMpathCmd } from '../sys/mpathpersist.js';
import { errorMessage } from '../util/error-message.js';

const { path, timeoutMs } = workerData as { path: string; timeoutMs: number };
nameThisThread('prh-mpath-probe');

function probe(): { reply: string } | { failure: string } {
  const cmd = openMpathCmd(path);
  const connection = cmd.connect();
  if (!connection.ok) return { failure: `mpath_connect() failed: cannot reach multipathd: ${connection.error}` };
  const { fd } = connection;
  try {
    const result = cmd.processCommand(fd, 'show daemon', timeoutMs);
    if (!result.ok) return { failure: `mpath_process_cmd(${fd}, "show daemon") failed: ${result.error}` };
    return result.reply === null ? { failure: 'multipathd sent no reply' } : { reply: result.reply.trimEnd() };
  } finally {
    cmd.disconnect(fd);
  }
}

try {
  parentPort?.postMessage(probe());
} catch (error) {
  parentPort?.postMessage({ failure: errorMessage(error) });
}
