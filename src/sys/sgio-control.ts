/** Layout of the SharedArrayBuffer shared by SgIoThread and its worker (Int32 slots). */
export const Control = {
  STATE: 0,
  FD: 1,
  ADDR_LO: 2,
  ADDR_HI: 3,
  ERRNO: 4,
  /** Set by the worker just before it enters ioctl(); the main thread clears it. */
  ENTERED: 5,
  /** The worker's kernel thread id, written once it has loaded. */
  TID: 6,
  /** What to do with FD: one of Op. */
  OP: 7,
  SIZE: 8,
} as const;

/**
 * The calls a thread makes on a client's fd. Each may block for as long as the kernel
 * likes: ioctl(SG_IO) on a hung device, and close() too, on the last reference to a
 * socket with SO_LINGER, a FUSE file (flush), a tty (drain) (docs/security.md "Threat model").
 */
export const Op = {
  SG_IO: 0,
  CLOSE: 1,
  /** SG_IO, then close(): a request's whole use of its fd in one hand-off. */
  SG_IO_THEN_CLOSE: 2,
} as const;

export const State = {
  IDLE: 0,
  REQUEST: 1,
  DONE: 2,
  EXIT: 3,
} as const;

/** OS name of a loaded SG_IO thread (/proc/PID/task/TID/comm). */
export const SGIO_THREAD_NAME = 'prh-sgio';
