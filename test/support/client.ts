/**
 * A protocol client over a real Unix socket with real SCM_RIGHTS, for tests and benchmarks.
 * Deliberately low level: it sends whatever bytes and fds it is told, split however the
 * test wants, so that framing edge cases can be driven at will.
 */
import { closeFd } from '../../src/sys/fd.js';
import { EpollWaiter, OneShotEpoll } from '../../src/sys/epoll.js';
import { FdWatcher } from '../../src/sys/poll.js';
import { MessageReceiver, connectUnix, sendWithFds, unixStreamSocket } from '../../src/sys/socket.js';
import { HEADER_SIZE, decodeHeader, type Response } from './builders.js';

export class ConnectionClosed extends Error {
  constructor(what: string) {
    super(`Connection closed by the helper while ${what}`);
    this.name = 'ConnectionClosed';
  }
}

export class PrClient {
  readonly fd: number;
  readonly #receiver = new MessageReceiver(65536);
  readonly #watcher: FdWatcher;
  #buffered: Uint8Array = new Uint8Array(0);
  #eof = false;
  #wake: (() => void) | null = null;
  #closed = false;
  /** Feature word the helper sent; null before `handshake()`. */
  features: number | null = null;

  private constructor(fd: number) {
    this.fd = fd;
    this.#watcher = new FdWatcher(fd, () => this.#pump());
  }

  /** Connects without reading anything. */
  static open(path: string): PrClient {
    const fd = unixStreamSocket();
    try {
      connectUnix(fd, path);
    } catch (error) {
      closeFd(fd);
      throw error;
    }
    return new PrClient(fd);
  }

  /** Connects, reads the helper's feature word and answers `reply` (QEMU answers 0). */
  static async connect(path: string, reply = 0): Promise<PrClient> {
    const client = PrClient.open(path);
    try {
      await client.handshake(reply);
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  async handshake(reply = 0, timeoutMs = 5000): Promise<number> {
    const greeting = await this.read(4, timeoutMs);
    this.features = new DataView(greeting.buffer, greeting.byteOffset, 4).getUint32(0);
    const answer = new Uint8Array(4);
    new DataView(answer.buffer).setUint32(0, reply >>> 0);
    this.send(answer);
    return this.features;
  }

  /** One sendmsg of `bytes` carrying `fds`. */
  send(bytes: Uint8Array, fds: readonly number[] = []): void {
    const n = sendWithFds(this.fd, bytes, fds);
    if (n !== bytes.length) throw new Error(`Short send: ${n} of ${bytes.length}`);
  }

  #pump(): void {
    for (;;) {
      const got = this.#receiver.receive(this.fd, this.#receiver.capacity);
      if (got.kind === 'again') break;
      if (got.kind === 'data') {
        for (const fd of got.fds) closeFd(fd);
        const merged = new Uint8Array(this.#buffered.length + got.bytes.length);
        merged.set(this.#buffered);
        merged.set(got.bytes, this.#buffered.length);
        this.#buffered = merged;
        continue;
      }
      if (got.kind === 'eof') for (const fd of got.fds) closeFd(fd);
      this.#eof = true;
      this.#watcher.set({ readable: false, writable: false });
      break;
    }
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async #waitFor(ready: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      if (this.#eof) throw new ConnectionClosed(what);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Timed out after ${timeoutMs} ms while ${what}`);
      this.#watcher.set({ readable: true, writable: false });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Reads exactly `n` bytes. */
  async read(n: number, timeoutMs = 5000): Promise<Uint8Array> {
    await this.#waitFor(() => this.#buffered.length >= n, `reading ${n} bytes`, timeoutMs);
    const out = this.#buffered.slice(0, n);
    this.#buffered = this.#buffered.slice(n);
    return out;
  }

  async readResponse(timeoutMs = 5000): Promise<Response> {
    const header = decodeHeader(await this.read(HEADER_SIZE, timeoutMs));
    const data = header.size > 0 ? await this.read(header.size, timeoutMs) : new Uint8Array(0);
    return { ...header, data };
  }

  /**
   * readResponse without the event loop: blocks this thread in epoll_wait (it sleeps, no
   * spin) until a whole response has arrived. For timing one answer: waking through the
   * event loop adds about 0.3 ms.
   */
  readResponseBlocking(timeoutMs = 5000): Response {
    const deadline = Date.now() + timeoutMs;
    const complete = (): boolean => this.#buffered.length >= HEADER_SIZE
      && this.#buffered.length >= HEADER_SIZE + decodeHeader(this.#buffered.subarray(0, HEADER_SIZE)).size;
    const epoll = new OneShotEpoll();
    try {
      const waiter = new EpollWaiter(epoll.fd, 1);
      this.#pump();
      while (!complete()) {
        if (this.#eof) throw new ConnectionClosed('reading a response');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`Timed out after ${timeoutMs} ms while reading a response`);
        epoll.arm(this.fd, 0);
        if (waiter.wait(left) > 0) this.#pump();
      }
    } finally {
      epoll.close();
    }
    const header = decodeHeader(this.#buffered.subarray(0, HEADER_SIZE));
    const data = this.#buffered.slice(HEADER_SIZE, HEADER_SIZE + header.size);
    this.#buffered = this.#buffered.slice(HEADER_SIZE + header.size);
    return { ...header, data };
  }

  /** Sends CDB (+fd) and parameters as QEMU does, and reads the response. */
  async request(cdb: Uint8Array, fd: number | null, params: Uint8Array = new Uint8Array(0)): Promise<Response> {
    this.send(cdb, fd === null ? [] : [fd]);
    if (params.length > 0) this.send(params);
    return this.readResponse();
  }

  /** Resolves true when the helper closes the connection with nothing more to read. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    try {
      await this.#waitFor(() => false, 'waiting for close', timeoutMs);
    } catch (error) {
      if (error instanceof ConnectionClosed) return this.#buffered.length === 0;
      throw error;
    }
    return false;
  }

  /** Bytes received but not yet read. */
  get unread(): number {
    return this.#buffered.length;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watcher.close();
    this.#receiver.free();
    closeFd(this.fd);
  }
}
