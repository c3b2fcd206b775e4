/**
 * A logging proxy between a helper client (QEMU) and a helper: it forwards every chunk it
 * receives, in both directions, with the fds that came with it attached to the same chunk
 * (so "the fd rides on the CDB bytes" still holds), and records what the client sent.
 * The nested QEMU test uses it as evidence that the guest's PR commands reached the helper.
 */
import { closeFd } from '../../../src/sys/fd.js';
import { FdWatcher } from '../../../src/sys/poll.js';
import {
  MessageReceiver, acceptConnection, bindUnix, connectUnix, listenSocket, sendWithFds, unixStreamSocket,
} from '../../../src/sys/socket.js';

export interface ProxiedChunk {
  connection: number;
  direction: 'to-helper' | 'to-client';
  bytes: Uint8Array;
  fds: number;
}

/**
 * What to do with a chunk, decided before it is forwarded (recorded either way):
 * 'forward' (the default), 'drop' (swallow it) or 'close' (drop it and close both sides of
 * that connection). The migration test uses it to make a helper connection fail at a chosen
 * request, or to stop a destination QEMU right after its PREEMPT was answered.
 */
export type Intercept = (chunk: ProxiedChunk) => 'forward' | 'drop' | 'close';

export class LoggingProxy {
  readonly chunks: ProxiedChunk[] = [];
  readonly #listenFd: number;
  readonly #listenWatcher: FdWatcher;
  readonly #closers: (() => void)[] = [];
  #connections = 0;

  constructor(readonly path: string, readonly helperPath: string, readonly intercept?: Intercept) {
    this.#listenFd = unixStreamSocket();
    bindUnix(this.#listenFd, path);
    listenSocket(this.#listenFd, 8);
    this.#listenWatcher = new FdWatcher(this.#listenFd, () => this.#accept());
    this.#listenWatcher.set({ readable: true, writable: false });
  }

  #accept(): void {
    for (;;) {
      const client = acceptConnection(this.#listenFd);
      if (client === null) return;
      const helper = unixStreamSocket();
      connectUnix(helper, this.helperPath);
      const id = ++this.#connections;
      const receiver = new MessageReceiver(65536);
      let open = true;
      const watchers: FdWatcher[] = [];
      const close = (): void => {
        if (!open) return;
        open = false;
        for (const w of watchers) w.close();
        closeFd(client);
        closeFd(helper);
        receiver.free();
      };
      const pump = (from: number, to: number, direction: ProxiedChunk['direction']): void => {
        for (;;) {
          if (!open) return;
          const got = receiver.receive(from, receiver.capacity);
          if (got.kind === 'again') return;
          if (got.kind !== 'data') {
            if (got.kind === 'eof') for (const fd of got.fds) closeFd(fd);
            close();
            return;
          }
          const bytes = got.bytes.slice();
          const chunk: ProxiedChunk = { connection: id, direction, bytes, fds: got.fds.length };
          this.chunks.push(chunk);
          const verdict = this.intercept?.(chunk) ?? 'forward';
          if (verdict !== 'forward') {
            for (const fd of got.fds) closeFd(fd);
            if (verdict === 'close') close();
            continue;
          }
          try {
            const n = sendWithFds(to, bytes, got.fds);
            if (n !== bytes.length) throw new Error(`short send ${n}/${bytes.length}`);
          } catch {
            close();
          } finally {
            for (const fd of got.fds) closeFd(fd);
          }
        }
      };
      watchers.push(new FdWatcher(client, () => pump(client, helper, 'to-helper')));
      watchers.push(new FdWatcher(helper, () => pump(helper, client, 'to-client')));
      for (const w of watchers) w.set({ readable: true, writable: false });
      this.#closers.push(close);
    }
  }

  /** The PR requests the client sent: chunks that carried an fd, by opcode and service action. */
  requests(): { opcode: number; sa: number }[] {
    return this.chunks
      .filter((c) => c.direction === 'to-helper' && c.fds > 0)
      .map((c) => ({ opcode: c.bytes[0] ?? -1, sa: (c.bytes[1] ?? 0) & 0x1f }));
  }

  close(): void {
    for (const c of this.#closers) c();
    this.#listenWatcher.close();
    closeFd(this.#listenFd);
  }
}
