/**
 * AF_UNIX stream sockets through raw syscalls. Node's `net` cannot be used for the client
 * side of the protocol: it reads with read(2), and the kernel then drops every SCM_RIGHTS
 * fd (docs/internals.md#receiving-fds-with-recvmsg item 1). The helper's own sockets are nonblocking and driven by
 * uv_poll (see poll.ts).
 */
import { libc, lastErrno, allocNative, freeNative, type NativeBlock } from './libc.js';
import { Errno, SyscallError } from './errors.js';
import {
  AF_UNIX, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC, SOCKADDR_UN, SOL_SOCKET, SO_ACCEPTCONN,
  SO_TYPE, MSGHDR, IOVEC, CMSGHDR, CMSG_RECV_SPACE, SCM_RIGHTS, MSG_CTRUNC, MSG_DONTWAIT,
  MSG_NOSIGNAL, MSG_CMSG_CLOEXEC, FIONREAD, cmsgAlign,
} from './layouts.js';

/** Thrown before any syscall when a path does not fit sun_path (with its NUL). */
export class SocketPathTooLongError extends Error {
  readonly path: string;
  constructor(path: string) {
    super(`UNIX socket path '${path}' is too long`);
    this.name = 'SocketPathTooLongError';
    this.path = path;
  }
}

function sockaddrUn(path: string): { addr: Uint8Array; len: number } {
  const encoded = Buffer.from(path, 'utf8');
  if (encoded.length >= SOCKADDR_UN.PATH_MAX) throw new SocketPathTooLongError(path);
  const addr = new Uint8Array(SOCKADDR_UN.SIZE);
  new DataView(addr.buffer, addr.byteOffset, addr.byteLength).setUint16(SOCKADDR_UN.FAMILY, AF_UNIX, true);
  addr.set(encoded, SOCKADDR_UN.PATH);
  // An abstract name ("\0name") is exactly its bytes: no terminating NUL is counted.
  const abstract = encoded[0] === 0;
  return { addr, len: SOCKADDR_UN.PATH + encoded.length + (abstract ? 0 : 1) };
}

/** True when `path` fits in sun_path with its terminating NUL. */
export function fitsSunPath(path: string): boolean {
  return Buffer.byteLength(path, 'utf8') < SOCKADDR_UN.PATH_MAX;
}

/** A new nonblocking, close-on-exec AF_UNIX stream socket. */
export function unixStreamSocket(): number {
  const fd = libc.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError('socket', lastErrno());
  return fd;
}

export function bindUnix(fd: number, path: string): void {
  const { addr, len } = sockaddrUn(path);
  if (libc.bind(fd, addr, len) < 0) throw new SyscallError('bind', lastErrno());
}

export function listenSocket(fd: number, backlog: number): void {
  if (libc.listen(fd, backlog) < 0) throw new SyscallError('listen', lastErrno());
}

/**
 * Connects a socket from unixStreamSocket(). It is nonblocking, but connect(2) on AF_UNIX
 * completes at once unless the backlog is full (EAGAIN, which is thrown).
 */
export function connectUnix(fd: number, path: string): void {
  const { addr, len } = sockaddrUn(path);
  if (libc.connect(fd, addr, len) < 0) throw new SyscallError('connect', lastErrno());
}

/** accept4 with NONBLOCK|CLOEXEC; null when no connection is pending. */
export function acceptConnection(listenFd: number): number | null {
  for (;;) {
    const fd = libc.accept4(listenFd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    const errno = lastErrno();
    if (errno === Errno.EAGAIN) return null;
    // The peer gave up before we accepted it, or a signal: try the next one.
    if (errno === Errno.EINTR || errno === Errno.ECONNABORTED) continue;
    throw new SyscallError('accept4', errno);
  }
}

export interface SocketInfo {
  stream: boolean;
  listening: boolean;
}

/** Socket type and listening state of `fd`; throws ENOTSOCK for a non-socket. */
export function socketInfo(fd: number): SocketInfo {
  const value = new Uint8Array(4);
  const len = new Uint8Array(4);
  const dv = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const lenView = new DataView(len.buffer, len.byteOffset, len.byteLength);
  const read = (name: number): number => {
    lenView.setUint32(0, 4, true);
    if (libc.getsockopt(fd, SOL_SOCKET, name, value, len) < 0) {
      throw new SyscallError('getsockopt', lastErrno());
    }
    return dv.getInt32(0, true);
  };
  return { stream: read(SO_TYPE) === SOCK_STREAM, listening: read(SO_ACCEPTCONN) !== 0 };
}

export type SendResult = { kind: 'sent'; count: number } | { kind: 'again' };

/** One nonblocking send(2) without SIGPIPE; throws SyscallError (EPIPE, ECONNRESET, ...). */
export function sendBytes(fd: number, bytes: Uint8Array): SendResult {
  for (;;) {
    const n = libc.send(fd, bytes, bytes.length, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return { kind: 'sent', count: n };
    const errno = lastErrno();
    if (errno === Errno.EINTR) continue;
    if (errno === Errno.EAGAIN) return { kind: 'again' };
    throw new SyscallError('send', errno);
  }
}

const available = new Int32Array(1);

/** Bytes queued for reading on a stream socket (FIONREAD); 0 when it cannot tell. */
export function bytesAvailable(fd: number): number {
  return queuedBytes(fd) ?? 0;
}

/** Bytes queued to read (FIONREAD), or null when that cannot be told. */
export function queuedBytes(fd: number): number | null {
  return libc.ioctlInt(fd, FIONREAD, available) < 0 ? null : (available[0] ?? 0);
}

export type ReceiveResult =
  | { kind: 'data'; bytes: Uint8Array; fds: number[]; truncated: boolean }
  | { kind: 'eof'; fds: number[] }
  | { kind: 'again' }
  | { kind: 'error'; error: SyscallError };

const MSG_OFF = 0;
const IOV_OFF = 64;
const CMSG_OFF = 80;
const DATA_OFF = CMSG_OFF + CMSG_RECV_SPACE;

/**
 * recvmsg(2) with room for every SCM_RIGHTS fd one message can carry, into a native area
 * that lives as long as this object. Not thread-safe; one per connection.
 */
export class MessageReceiver {
  readonly #block: NativeBlock;
  readonly #u8: Uint8Array;
  readonly #dv: DataView;
  readonly capacity: number;
  #freed = false;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.#block = allocNative(DATA_OFF + capacity);
    this.#u8 = new Uint8Array(this.#block.view);
    this.#dv = new DataView(this.#block.view);
    const base = this.#block.address;
    this.#setU64(MSG_OFF + MSGHDR.IOV, base + IOV_OFF);
    this.#setU64(MSG_OFF + MSGHDR.IOVLEN, 1);
    this.#setU64(MSG_OFF + MSGHDR.CONTROL, base + CMSG_OFF);
    this.#setU64(IOV_OFF + IOVEC.BASE, base + DATA_OFF);
  }

  #setU64(off: number, value: number): void {
    this.#dv.setBigUint64(off, BigInt(value), true);
  }

  #getU64(off: number): number {
    return Number(this.#dv.getBigUint64(off, true));
  }

  /**
   * Reads at most `length` bytes (≤ capacity). The returned bytes are a view that stays
   * valid only until the next call. Every fd that arrived is returned and owned by the
   * caller, also on EOF. The kernel closes fds that did not fit (truncated: MSG_CTRUNC).
   */
  receive(fd: number, length: number): ReceiveResult {
    if (this.#freed) throw new Error('Cannot receive: the receiver was freed');
    if (length <= 0 || length > this.capacity) {
      throw new RangeError(`Cannot receive ${length} bytes: capacity is ${this.capacity}`);
    }
    this.#setU64(IOV_OFF + IOVEC.LEN, length);
    for (;;) {
      // msg_controllen is overwritten by the kernel on every call (docs/internals.md#receiving-fds-with-recvmsg item 3).
      this.#setU64(MSG_OFF + MSGHDR.CONTROLLEN, CMSG_RECV_SPACE);
      this.#dv.setInt32(MSG_OFF + MSGHDR.FLAGS, 0, true);
      const n = libc.recvmsg(fd, this.#block.address + MSG_OFF, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n < 0) {
        const errno = lastErrno();
        if (errno === Errno.EINTR) continue;
        if (errno === Errno.EAGAIN) return { kind: 'again' };
        return { kind: 'error', error: new SyscallError('recvmsg', errno) };
      }
      const fds = this.#collectFds();
      const truncated = (this.#dv.getInt32(MSG_OFF + MSGHDR.FLAGS, true) & MSG_CTRUNC) !== 0;
      if (n === 0) return { kind: 'eof', fds };
      return { kind: 'data', bytes: this.#u8.subarray(DATA_OFF, DATA_OFF + n), fds, truncated };
    }
  }

  #collectFds(): number[] {
    const fds: number[] = [];
    const controlLen = this.#getU64(MSG_OFF + MSGHDR.CONTROLLEN);
    let p = 0;
    while (p + CMSGHDR.SIZE <= controlLen) {
      const at = CMSG_OFF + p;
      const len = this.#getU64(at + CMSGHDR.LEN);
      if (len < CMSGHDR.SIZE || p + len > controlLen) break;
      const level = this.#dv.getInt32(at + CMSGHDR.LEVEL, true);
      const type = this.#dv.getInt32(at + CMSGHDR.TYPE, true);
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        const count = (len - CMSGHDR.SIZE) >> 2;
        for (let i = 0; i < count; i++) fds.push(this.#dv.getInt32(at + CMSGHDR.DATA + 4 * i, true));
      }
      p += cmsgAlign(len);
    }
    return fds;
  }

  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    freeNative(this.#block);
  }
}

/**
 * One blocking-style sendmsg(2) of `bytes` with `fds` attached as SCM_RIGHTS (used by the
 * test client and benchmarks; the helper itself never sends fds). Returns bytes sent.
 */
export function sendWithFds(fd: number, bytes: Uint8Array, fds: readonly number[]): number {
  const cmsgLen = fds.length > 0 ? CMSGHDR.SIZE + 4 * fds.length : 0;
  const block = allocNative(64 + IOVEC.SIZE + cmsgAlign(cmsgLen) + Math.max(bytes.length, 1));
  try {
    const dv = new DataView(block.view);
    const u8 = new Uint8Array(block.view);
    const base = block.address;
    const iov = 64;
    const cmsg = iov + IOVEC.SIZE;
    const data = cmsg + cmsgAlign(cmsgLen);
    u8.set(bytes, data);
    dv.setBigUint64(iov + IOVEC.BASE, BigInt(base + data), true);
    dv.setBigUint64(iov + IOVEC.LEN, BigInt(bytes.length), true);
    dv.setBigUint64(MSGHDR.IOV, BigInt(base + iov), true);
    dv.setBigUint64(MSGHDR.IOVLEN, 1n, true);
    if (fds.length > 0) {
      dv.setBigUint64(cmsg + CMSGHDR.LEN, BigInt(cmsgLen), true);
      dv.setInt32(cmsg + CMSGHDR.LEVEL, SOL_SOCKET, true);
      dv.setInt32(cmsg + CMSGHDR.TYPE, SCM_RIGHTS, true);
      fds.forEach((f, i) => dv.setInt32(cmsg + CMSGHDR.DATA + 4 * i, f, true));
      dv.setBigUint64(MSGHDR.CONTROL, BigInt(base + cmsg), true);
      dv.setBigUint64(MSGHDR.CONTROLLEN, BigInt(cmsgAlign(cmsgLen)), true);
    }
    for (;;) {
      const n = libc.sendmsg(fd, base, MSG_NOSIGNAL);
      if (n >= 0) return n;
      const errno = lastErrno();
      if (errno !== Errno.EINTR) throw new SyscallError('sendmsg', errno);
    }
  } finally {
    freeNative(block);
  }
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

const SO_PEERCRED = 17;

const SHUT_RD = 0;

/**
 * shutdown(SHUT_RD) on a Unix stream socket: nothing more can be queued to it (the peer's
 * sends fail with EPIPE). Returns false when it failed (e.g. ENOTCONN).
 */
export function shutdownReading(fd: number): boolean {
  return libc.shutdown(fd, SHUT_RD) === 0;
}

const SO_LINGER = 13;

/**
 * SO_LINGER {on, seconds}: close() of the last reference then waits up to `seconds` for
 * unsent data. Used by the tests to make a client fd whose close() blocks.
 */
export function setLinger(fd: number, seconds: number): void {
  const linger = new Int32Array([1, seconds]);
  if (libc.setsockopt(fd, SOL_SOCKET, SO_LINGER, new Uint8Array(linger.buffer), 8) < 0) {
    throw new SyscallError('setsockopt', lastErrno());
  }
}

/** The connecting process's credentials at connect() time (SO_PEERCRED), or null. */
export function peerCredentials(fd: number): PeerCredentials | null {
  const value = new Uint8Array(12); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 12, true);
  if (libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, value, len) < 0) return null;
  const dv = new DataView(value.buffer);
  return { pid: dv.getInt32(0, true), uid: dv.getUint32(4, true), gid: dv.getUint32(8, true) };
}
