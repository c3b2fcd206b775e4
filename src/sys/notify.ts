/** sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
import { libc, lastErrno } from './libc.js';
import { SyscallError } from './errors.js';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCKADDR_UN } from './layouts.js';
import { bindUnix } from './socket.js';

const SOCK_DGRAM = 2;
const MSG_NOSIGNAL = 0x4000;

/**
 * Sends `message` (e.g. "READY=1") to the notification socket `path`. A leading '@' names
 * an abstract socket, as systemd documents. Throws SyscallError on failure.
 */
export function sendServiceNotification(path: string, message: string): void {
  const name = Buffer.from(path.startsWith('@') ? `\0${path.slice(1)}` : path, 'utf8');
  if (name.length >= SOCKADDR_UN.PATH_MAX) throw new SyscallError('sendto', 36 /* ENAMETOOLONG */);
  const addr = new Uint8Array(SOCKADDR_UN.SIZE);
  new DataView(addr.buffer).setUint16(SOCKADDR_UN.FAMILY, AF_UNIX, true);
  addr.set(name, SOCKADDR_UN.PATH);
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError('socket', lastErrno());
  try {
    const body = Buffer.from(message, 'utf8');
    if (libc.sendto(fd, body, body.length, MSG_NOSIGNAL, addr, SOCKADDR_UN.PATH + name.length) < 0) {
      throw new SyscallError('sendto', lastErrno());
    }
  } finally {
    libc.close(fd);
  }
}

/**
 * The receiving end of a notification socket, as systemd holds it: used by the tests (and
 * usable by a supervisor) to see what the helper announces.
 */
export class NotificationSocket {
  readonly fd: number;
  readonly #buffer = new Uint8Array(4096);

  constructor(path: string) {
    const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw new SyscallError('socket', lastErrno());
    try {
      bindUnix(fd, path);
    } catch (error) {
      libc.close(fd);
      throw error;
    }
    this.fd = fd;
  }

  /** The next datagram, or null when none is waiting. */
  receive(): string | null {
    const n = libc.read(this.fd, this.#buffer, this.#buffer.length);
    if (n < 0) return null;
    return Buffer.from(this.#buffer.subarray(0, n)).toString('utf8');
  }

  close(): void {
    libc.close(this.fd);
  }
}
