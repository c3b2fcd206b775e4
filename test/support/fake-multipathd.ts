/**
 * A stand-in for multipathd's command socket: libmpathcmd's framing (a native size_t
 * length that counts the NUL, then the text) both ways, one reply per command. It listens
 * on an abstract name ("\0...", as multipathd's @/org/kernel/linux/storage/multipathd) or a
 * file path (multipathd's /run/multipathd.socket since multipath-tools 0.12).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { bindUnix, listenSocket, unixStreamSocket } from '../../src/sys/socket.js';
import { closeFd } from '../../src/sys/fd.js';

export const MULTIPATHD_ABSTRACT = '\0/org/kernel/linux/storage/multipathd';

export interface FakeMultipathd {
  server: Server;
  /** Every command received, in order. */
  commands: string[];
}

function frame(text: string): Buffer {
  const body = Buffer.from(`${text}\0`, 'utf8');
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([head, body]);
}

/** Answers each command with reply(command) on `address`; records the commands. */
export function fakeMultipathd(reply: (command: string) => string, address = MULTIPATHD_ABSTRACT): Promise<FakeMultipathd> {
  const commands: string[] = [];
  const server = createServer((socket: Socket) => {
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 8) {
        const length = Number(buffered.readBigUInt64LE(0));
        if (buffered.length < 8 + length) return;
        const command = buffered.subarray(8, 8 + length - 1).toString('utf8');
        buffered = buffered.subarray(8 + length);
        commands.push(command);
        socket.write(frame(reply(command)));
      }
    });
  });
  // Node's own listen() pads abstract names to the whole sun_path; libmpathcmd binds the
  // exact name, so the socket is made by the sys layer and handed to Node.
  const fd = unixStreamSocket();
  try {
    bindUnix(fd, address);
    listenSocket(fd, 8);
  } catch (error) {
    closeFd(fd);
    return Promise.reject(error);
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => resolve({ server, commands }));
  });
}
