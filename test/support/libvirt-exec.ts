/**
 * The child side of libvirt's managed pr-helper start
 * (docs/operations.md#what-libvirt-expects-from-a-managed-helper, libvirt's virExec with
 * VIR_EXEC_DAEMON + virCommandSetPidFile): after libvirt's setsid and fork, the child opens the
 * pid file, takes an fcntl write lock on its first byte (virPidFileAcquirePath), writes its own
 * pid, leaves the fd open across exec, and execs `HELPER -k SOCKET`. The helper therefore starts
 * with libvirt's locked pid file on an inherited fd, which must stay open and locked for its whole
 * life.
 *
 * Usage: node libvirt-exec.js PIDFILE HELPER ARGS...  (run it detached: setsid)
 */
import { closeSync, openSync, ftruncateSync, writeSync, constants as fsConstants } from 'node:fs';
import { tryWriteLock } from '../../src/sys/lock.js';
import { duplicateOnto, execProgram, keepAcrossExec } from '../../src/sys/credentials.js';

const LOW_FD = 3;

const [pidfile, helper, ...args] = process.argv.slice(2);
if (pidfile === undefined || helper === undefined) {
  process.stderr.write('usage: libvirt-exec PIDFILE HELPER ARGS...\n');
  process.exit(2);
}
// libvirt's child closes every other fd first, so the pid file gets a low number; that
// matters, because Node marks low inherited fds close-on-exec at start-up. Move it to 3
// (this Node's own fd 3 is not needed any more: exec follows synchronously). The lock is
// taken only then: closing any fd of a file drops the process's POSIX locks on it.
const opened = openSync(pidfile, fsConstants.O_WRONLY | fsConstants.O_CREAT, 0o644);
duplicateOnto(opened, LOW_FD);
closeSync(opened);
if (tryWriteLock(LOW_FD, 0, 1).kind !== 'locked') {
  process.stderr.write(`libvirt-exec: ${pidfile} is locked\n`);
  process.exit(1);
}
ftruncateSync(LOW_FD, 0);
writeSync(LOW_FD, `${process.pid}\n`);
// Node marks stdio close-on-exec; libvirt's child has plain fds 0-2 and the pid file fd.
for (const keep of [0, 1, 2, LOW_FD]) keepAcrossExec(keep);
execProgram(helper, [helper, ...args], Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`));
