/**
 * A client fd whose last close() blocks: a TCP socket on loopback with unsent data and
 * SO_LINGER {1, seconds}. close() of the last reference then waits up to `seconds` for the
 * data to leave, which it never does (the peer does not read). The hardening tests pass it
 * to the helper as a "device" (docs/security.md "Threat model").
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { sendBytes, setLinger } from '../../src/sys/socket.js';

export interface Lingering {
  /** The socket's fd, to send with SCM_RIGHTS. */
  fd: number;
  /** Drops this process's reference (never the last one once the fd is in flight). */
  drop(): void;
  /** Closes the peer and the listener. */
  dispose(): Promise<void>;
}

/** The raw fd of a connected net.Socket (libuv keeps it in `_handle.fd`). */
function rawFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle: { fd: number } | null })._handle;
  if (handle === null || typeof handle.fd !== 'number' || handle.fd < 0) throw new Error('the socket has no fd');
  return handle.fd;
}

export async function lingeringSocket(seconds: number): Promise<Lingering> {
  const peers: Socket[] = [];
  // The peer never reads: the window closes and the data stays unsent.
  const server: Server = createServer({ pauseOnConnect: true }, (peer) => peers.push(peer));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const socket = connect({ port: address.port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const fd = rawFd(socket);
  const chunk = new Uint8Array(1 << 16);
  // Fill the send buffer and the peer's receive window.
  for (let i = 0; i < 4096; i++) {
    if (sendBytes(fd, chunk).kind === 'again') break;
  }
  setLinger(fd, seconds);
  return {
    fd,
    drop: () => socket.destroy(),
    dispose: async () => {
      socket.destroy();
      for (const peer of peers) peer.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
