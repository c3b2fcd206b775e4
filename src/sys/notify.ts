/** sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
import { libc, lastErrno } from './libc.js';
import { SyscallError } from './errors.js';
import { AF_UNIX, SOCK_CLOEXEC, SOCKADDR_UN } from './layouts.js';

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
