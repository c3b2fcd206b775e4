/**
 * The client socket as both request-serving paths use it: the main thread's Connection
 * (connection.ts, woken by poll) and the fast-path workers (fast-path-worker.ts, which
 * serve synchronously). Each read, write and close of a client socket goes through here,
 * so the rules that decide when a connection ends, and the words the log uses for it,
 * exist once.
 */
import type { FdCloser } from '../exec/executor.js';
import { PR_HELPER_DATA_SIZE } from '../protocol/constants.js';
import { closeFd } from '../sys/fd.js';
import { SyscallError, peerGoneErrno } from '../sys/errors.js';
import { MessageReceiver, queuedBytes, sendBytes, shutdownReading } from '../sys/socket.js';
import { errorMessage } from '../util/error-message.js';

/** Why a connection must close: the text the log shows, and whether the peer ended it. */
export interface Failure {
  reason: string;
  /** The peer reset the connection or stopped reading (ECONNRESET, EPIPE): not our fault. */
  peerGone: boolean;
}

/**
 * recvmsg's MSG_CTRUNC. The receive area has room for the most fds one message can carry
 * (SCM_MAX_FD), so the kernel truncates only when it cannot install them: the fd table is
 * full (EMFILE), and the fds are lost. More than one fd is the Session's own error.
 */
export const FDS_LOST_MESSAGE =
  'Cannot receive the file descriptor sent with a request: the helper is out of file descriptors (RLIMIT_NOFILE), closing socket.';

/** One read from a client socket. Every fd in it is the caller's, in every kind. */
export type Received =
  | { kind: 'again' }
  /** `bytes` is a view valid until the receiver's next read. */
  | { kind: 'data'; bytes: Uint8Array; fds: number[] }
  | { kind: 'eof'; fds: number[] }
  | { kind: 'failed'; failure: Failure; fds: number[] };

/**
 * Reads at most `length` bytes without waiting. `acceptsFds`: the Session is at a point
 * where a request's fd may come (the CDB); only there does a truncated control message
 * mean a lost fd, and so the end of the connection.
 */
export function receive(receiver: MessageReceiver, fd: number, length: number, acceptsFds: boolean): Received {
  const got = receiver.receive(fd, length);
  switch (got.kind) {
    case 'again':
      return got;
    case 'eof':
      return { kind: 'eof', fds: got.fds };
    case 'error':
      return {
        kind: 'failed', fds: [],
        failure: { reason: `Unable to read from socket: ${got.error.description}`, peerGone: peerGoneErrno(got.error.errno) },
      };
    case 'data':
      if (got.truncated && acceptsFds) return { kind: 'failed', fds: got.fds, failure: { reason: FDS_LOST_MESSAGE, peerGone: false } };
      return { kind: 'data', bytes: got.bytes, fds: got.fds };
  }
}

/** One attempt to write a whole response. */
export type Sent =
  | { kind: 'sent' }
  /** The socket buffer is full: `rest` is what it did not take (a view of the input). */
  | { kind: 'again'; rest: Uint8Array }
  | { kind: 'failed'; failure: Failure };

/** Writes `bytes` until done or until the socket would block. */
export function send(fd: number, bytes: Uint8Array): Sent {
  let rest = bytes;
  while (rest.length > 0) {
    let sent;
    try {
      sent = sendBytes(fd, rest);
    } catch (error) {
      const syscall = error instanceof SyscallError ? error : null;
      return {
        kind: 'failed',
        failure: { reason: `Unable to write to socket: ${syscall?.description ?? errorMessage(error)}`, peerGone: syscall !== null && peerGoneErrno(syscall.errno) },
      };
    }
    if (sent.kind === 'again') return { kind: 'again', rest };
    rest = rest.subarray(sent.count);
  }
  return { kind: 'sent' };
}

/** Reads while draining a closing socket, at most this many times (the peer's send buffer). */
const MAX_DRAIN_READS = 256;

/**
 * Closes an accepted socket. Unread messages may carry fds in flight, and the last close of
 * one of those may block (docs/security.md "Threat model"). Once reading is shut down nothing more
 * can be queued, so what is queued is read here: the fds it brings go to the closer, and
 * the socket, now empty, is closed at once (no thread is needed unless fds came). A peer
 * that queued more than MAX_DRAIN_READS reads' worth leaves the socket to the closer.
 */
export function closeClientSocket(fd: number, closer: FdCloser): void {
  if (!shutdownReading(fd)) {
    void closer.release(fd);
    return;
  }
  const receiver = mainThreadReceiver();
  // (SCM_RIGHTS fds travel with at least one byte on a stream socket.)
  for (let i = 0; i < MAX_DRAIN_READS && queuedBytes(fd) !== 0; i++) {
    const got = receiver.receive(fd, receiver.capacity);
    if (got.kind === 'data' || got.kind === 'eof') for (const received of got.fds) void closer.release(received);
    if (got.kind !== 'data') break;
  }
  if (queuedBytes(fd) === 0) closeFd(fd);
  else void closer.release(fd);
}

let shared: MessageReceiver | null = null;

/**
 * One receive area for every connection on the main thread: it is single-threaded and the
 * Session copies what it is fed, so nothing is kept per connection (10 KiB each otherwise).
 * Each fast-path worker has its own.
 */
export function mainThreadReceiver(): MessageReceiver {
  shared ??= new MessageReceiver(PR_HELPER_DATA_SIZE);
  return shared;
}
