/**
 * Worker-thread entry: waits for a request in the shared control block, runs ioctl(SG_IO)
 * synchronously (it may block for the whole SCSI timeout), publishes errno and wakes the
 * main loop through the shared eventfd. See sgio.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { libc, lastErrno } from './libc.js';
import { SG_IO } from './layouts.js';
import { Control, State, SGIO_THREAD_NAME } from './sgio-control.js';
import { nameThisThread } from './fd.js';

const data = workerData as { control: SharedArrayBuffer; completionFd: number };
const control = new Int32Array(data.control);
const one = new Uint8Array(8);
new DataView(one.buffer).setBigUint64(0, 1n, true);

// Loaded (koffi and libc included): the pool may now count on this thread. The name
// shows operators (ps -L) which threads run SG_IO, and only loaded ones carry it.
nameThisThread(SGIO_THREAD_NAME);
parentPort?.postMessage('ready');

for (;;) {
  const state = Atomics.load(control, Control.STATE);
  if (state === State.EXIT) break;
  if (state !== State.REQUEST) {
    Atomics.wait(control, Control.STATE, state);
    continue;
  }
  const fd = control[Control.FD] ?? -1;
  const address = ((control[Control.ADDR_LO] ?? 0) >>> 0) + (control[Control.ADDR_HI] ?? 0) * 0x1_0000_0000;
  Atomics.store(control, Control.ENTERED, 1);
  const rc = libc.ioctl(fd, SG_IO, address);
  control[Control.ERRNO] = rc < 0 ? lastErrno() : 0;
  Atomics.store(control, Control.STATE, State.DONE);
  libc.write(data.completionFd, one, 8);
}
