/**
 * Worker-thread entry: waits for a request in the shared control block, runs ioctl(SG_IO)
 * or close() synchronously (either may block, see Op), publishes errno and wakes the main
 * loop through the shared eventfd. See sgio.ts.
 */
import { availableParallelism } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { libc, lastErrno } from './libc.js';
import { SG_IO } from './layouts.js';
import { Control, Op, State, SGIO_THREAD_NAME } from './sgio-control.js';
import { nameThisThread } from './fd.js';

const data = workerData as { control: SharedArrayBuffer; completionFd: number };
const control = new Int32Array(data.control);
const one = new Uint8Array(8);
new DataView(one.buffer).setBigUint64(0, 1n, true);

// Loaded (koffi and libc included): the pool may now count on this thread. The name
// shows operators (ps -L) which threads run SG_IO, and only loaded ones carry it.
nameThisThread(SGIO_THREAD_NAME);
Atomics.store(control, Control.TID, libc.gettid());
parentPort?.postMessage('ready');

/**
 * QEMU sends a VM's PR commands one after another, so the next request usually follows
 * within tens of microseconds. Polling that long before sleeping saves a futex wake-up per
 * request: measured (bench/compare.ts) at about 2x requests/s and half the p50 latency on
 * one connection. The cost is at most SPIN_MS of CPU after each command. With a single CPU
 * the main thread needs that CPU to send the next request, so there is no polling at all.
 */
const SPIN_MS = availableParallelism() > 1 ? 0.1 : 0; // on one CPU, polling only delays the main thread

/** Polls the state for up to SPIN_MS; true if it changed from `state`. */
function spinFor(state: number): boolean {
  const deadline = performance.now() + SPIN_MS;
  for (;;) {
    for (let i = 0; i < 64; i++) if (Atomics.load(control, Control.STATE) !== state) return true;
    if (performance.now() >= deadline) return false;
  }
}

for (;;) {
  const state = Atomics.load(control, Control.STATE);
  if (state === State.EXIT) break;
  if (state !== State.REQUEST) {
    if (!spinFor(state)) Atomics.wait(control, Control.STATE, state);
    continue;
  }
  const fd = control[Control.FD] ?? -1;
  Atomics.store(control, Control.ENTERED, 1);
  if (control[Control.OP] === Op.CLOSE) {
    // Errors do not matter: on Linux the fd is gone either way.
    libc.close(fd);
    control[Control.ERRNO] = 0;
  } else {
    const address = ((control[Control.ADDR_LO] ?? 0) >>> 0) + (control[Control.ADDR_HI] ?? 0) * 0x1_0000_0000;
    const rc = libc.ioctl(fd, SG_IO, address);
    control[Control.ERRNO] = rc < 0 ? lastErrno() : 0;
    if (control[Control.OP] === Op.SG_IO_THEN_CLOSE) libc.close(fd);
  }
  Atomics.store(control, Control.STATE, State.DONE);
  libc.write(data.completionFd, one, 8);
}
