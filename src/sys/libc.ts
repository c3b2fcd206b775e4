/**
 * The raw koffi declarations of every libc function the helper calls. This is the only
 * module that loads native code, and the only one where `any` appears: koffi functions are
 * untyped, so each is given its exact TypeScript signature here and nowhere else.
 *
 * Rules (docs/internals.md#koffi):
 * - Variadic functions (ioctl, fcntl) get fixed prototypes: koffi cannot call variadic
 *   functions asynchronously, and a fixed prototype is ABI-safe on Linux x86_64/aarch64.
 * - Pointers that end up stored inside structs (msghdr, sg_io_hdr) are passed as
 *   `uintptr_t` numbers into memory from `koffi.alloc`, which never moves.
 * - errno must be read with `koffi.errno()` immediately after the call.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
/* eslint-disable @typescript-eslint/no-explicit-any */
const koffi: any = require('koffi');

const lib: any = koffi.load('libc.so.6');

/** Native memory that never moves; `view` is a zero-copy window onto it. */
export interface NativeBlock {
  readonly handle: unknown;
  readonly address: number;
  readonly view: ArrayBuffer;
}

export interface PollEvents {
  readable: boolean;
  writable: boolean;
  disconnect: boolean;
}

export interface PollHandle {
  start(opts: { readable?: boolean; writable?: boolean }, cb: (status: number, ev: PollEvents) => void): void;
  stop(): void;
  close(): void;
  unref(): void;
  ref(): void;
}

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  listen(fd: number, backlog: number): number;
  connect(fd: number, addr: Uint8Array, len: number): number;
  accept4(fd: number, addr: number, addrlen: number, flags: number): number;
  recvmsg(fd: number, msg: number, flags: number): number;
  sendmsg(fd: number, msg: number, flags: number): number;
  send(fd: number, buf: Uint8Array, len: number, flags: number): number;
  read(fd: number, buf: Uint8Array, len: number): number;
  write(fd: number, buf: Uint8Array, len: number): number;
  close(fd: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  ioctl(fd: number, request: number, arg: number): number;
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, len: Uint8Array): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  getrlimit(resource: number, limit: Uint8Array): number;
  shutdown(fd: number, how: number): number;
  getsockname(fd: number, addr: Uint8Array, len: Uint8Array): number;
  rename(from: string, to: string): number;
  unlink(path: string): number;
  eventfd(initval: number, flags: number): number;
  strerror(errnum: number): string;
  _exit(status: number): void;
  getpwnam(name: string): unknown;
  pipe2(fds: Int32Array, flags: number): number;
  gettid(): number;
  prctlName(option: number, name: string, a3: number, a4: number, a5: number): number;
  getgrnam(name: string): unknown;
  prctl(option: number, a2: number, a3: number, a4: number, a5: number): number;
  capget(header: Uint8Array, data: Uint8Array): number;
  capset(header: Uint8Array, data: Uint8Array): number;
  setgroups(size: number, list: null): number;
  setresuid(ruid: number, euid: number, suid: number): number;
  setresgid(rgid: number, egid: number, sgid: number): number;
  getuid(): number;
  getgid(): number;
  execve(path: string, argv: (string | null)[], envp: (string | null)[]): number;
  dup2(from: number, to: number): number;
  fcntlLock(fd: number, cmd: number, lock: Uint8Array): number;
  sendto(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array, addrlen: number): number;
  recv(fd: number, buf: Uint8Array, len: number, flags: number): number;
  /** ioctl's form whose third argument is an int * (FIONREAD). */
  ioctlInt(fd: number, request: number, value: Int32Array): number;
  statx(dirfd: number, path: string, flags: number, mask: number, buf: Uint8Array): number;
  epoll_create1(flags: number): number;
  epoll_ctl(epfd: number, op: number, fd: number, event: Uint8Array): number;
  epoll_wait(epfd: number, events: Uint8Array, maxEvents: number, timeoutMs: number): number;
  sigaction(signal: number, action: Uint8Array, old: null): number;
  /**
   * ioctl's SG_IO form and close, as koffi async calls: they run on one of libuv's
   * threadpool threads, and `done` runs on the calling thread's loop with the return value
   * and the errno the call left (docs/internals.md#the-threadpool-lane). A call koffi
   * cannot queue throws at once.
   */
  ioctlAsync(fd: number, request: number, arg: number, done: (rc: number, errno: number) => void): void;
  closeAsync(fd: number, done: (rc: number, errno: number) => void): void;
}

const ioctl: any = lib.func('int ioctl(int fd, unsigned long request, uintptr_t arg)');
const close: any = lib.func('int close(int fd)');

/** EIO: what a call koffi failed to make (not the syscall's own error) is reported as. */
const EIO = 5;

/** koffi's async callback as (rc, errno); errno is read first thing, where koffi restored it. */
function asyncDone(done: (rc: number, errno: number) => void): (error: unknown, rc: number) => void {
  return (error, rc) => {
    const errno = koffi.errno() as number;
    if (error) done(-1, EIO);
    else done(rc, rc < 0 ? errno : 0);
  };
}

export const libc: Libc = {
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
  listen: lib.func('int listen(int fd, int backlog)'),
  connect: lib.func('int connect(int fd, const void *addr, uint32_t len)'),
  accept4: lib.func('int accept4(int fd, uintptr_t addr, uintptr_t addrlen, int flags)'),
  recvmsg: lib.func('long recvmsg(int fd, uintptr_t msg, int flags)'),
  sendmsg: lib.func('long sendmsg(int fd, uintptr_t msg, int flags)'),
  send: lib.func('long send(int fd, const void *buf, size_t len, int flags)'),
  read: lib.func('long read(int fd, void *buf, size_t len)'),
  write: lib.func('long write(int fd, const void *buf, size_t len)'),
  close,
  fcntl: lib.func('int fcntl(int fd, int cmd, long arg)'),
  ioctl,
  getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
  getrlimit: lib.func('int getrlimit(int resource, void *limit)'),
  shutdown: lib.func('int shutdown(int fd, int how)'),
  getsockname: lib.func('int getsockname(int fd, void *addr, void *len)'),
  rename: lib.func('int rename(const char *from, const char *to)'),
  unlink: lib.func('int unlink(const char *path)'),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  strerror: lib.func('const char *strerror(int errnum)'),
  _exit: lib.func('void _exit(int status)'),
  getpwnam: lib.func('void *getpwnam(const char *name)'),
  pipe2: lib.func('int pipe2(_Out_ int *fds, int flags)'),
  gettid: lib.func('int gettid()'),
  // prctl is variadic: a fixed prototype for the PR_SET_NAME form.
  prctlName: lib.func('prctl', 'int', ['int', 'const char *', 'unsigned long', 'unsigned long', 'unsigned long']),
  getgrnam: lib.func('void *getgrnam(const char *name)'),
  // prctl is variadic: a fixed prototype for the numeric forms (capabilities, securebits).
  prctl: lib.func('prctl', 'int', ['int', 'unsigned long', 'unsigned long', 'unsigned long', 'unsigned long']),
  capget: lib.func('int capget(void *header, void *data)'),
  capset: lib.func('int capset(void *header, const void *data)'),
  setgroups: lib.func('int setgroups(size_t size, const uint32_t *list)'),
  setresuid: lib.func('int setresuid(uint32_t ruid, uint32_t euid, uint32_t suid)'),
  setresgid: lib.func('int setresgid(uint32_t rgid, uint32_t egid, uint32_t sgid)'),
  getuid: lib.func('uint32_t getuid()'),
  getgid: lib.func('uint32_t getgid()'),
  // The arrays end with null, as execve(2) requires; koffi passes them as char *[].
  execve: lib.func('int execve(const char *path, const char **argv, const char **envp)'),
  dup2: lib.func('int dup2(int from, int to)'),
  // fcntl's F_GETLK/F_SETLK form, whose third argument is a struct flock *.
  fcntlLock: lib.func('fcntl', 'int', ['int', 'int', 'void *']),
  sendto: lib.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
  recv: lib.func('long recv(int fd, void *buf, size_t len, int flags)'),
  ioctlInt: lib.func('ioctl', 'int', ['int', 'unsigned long', 'void *']),
  // glibc >= 2.28 (Node 20's own minimum); unlike fstat, one symbol and layout on every arch.
  statx: lib.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf)'),
  epoll_create1: lib.func('int epoll_create1(int flags)'),
  epoll_ctl: lib.func('int epoll_ctl(int epfd, int op, int fd, void *event)'),
  // Blocks the calling thread: only the fast-path workers call it (src/server/fast-path*.ts).
  epoll_wait: lib.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)'),
  // struct sigaction passed as bytes: only an all-zero one (SIG_DFL) is ever set.
  sigaction: lib.func('int sigaction(int signum, const void *act, void *oldact)'),
  ioctlAsync: (fd, request, arg, done) => {
    ioctl.async(fd, request, arg, asyncDone(done));
  },
  closeAsync: (fd, done) => {
    close.async(fd, asyncDone(done));
  },
};

/** Reads a uint32 at `offset` of a struct returned by a libc call (null-safe). */
export function readU32At(pointer: unknown, offset: number): number | null {
  if (pointer === null || pointer === undefined) return null;
  return koffi.decode(pointer, offset, 'uint32_t') as number;
}

/** errno of the calling thread, as left by the last koffi call. */
export function lastErrno(): number {
  return koffi.errno() as number;
}

export function allocNative(size: number): NativeBlock {
  const handle: unknown = koffi.alloc('uint8_t', size);
  const address = Number(koffi.address(handle));
  const view = koffi.view(handle, size) as ArrayBuffer;
  new Uint8Array(view).fill(0);
  return { handle, address, view };
}

export function freeNative(block: NativeBlock): void {
  koffi.free(block.handle);
}

/** koffi's uv_poll_t on Node's own loop (undocumented in 3.3.4: see docs/internals.md#readiness-with-uv_poll). */
export function pollFd(
  fd: number,
  opts: { readable?: boolean; writable?: boolean },
  cb: (status: number, ev: PollEvents) => void,
): PollHandle {
  return koffi.node.poll(fd, opts, cb) as PollHandle;
}

export const KOFFI_VERSION: string = koffi.version as string;

/**
 * libmpathpersist (multipath-tools), loaded on demand from `path`. Only the multipath
 * thread calls this (through src/sys/mpathpersist.ts): the library keeps global state and is
 * not safe to enter from two threads at once. Structures are passed as native blocks.
 */
export interface MpathPersistLib {
  /** 0 on success (multipath-tools >= 0.8.6). */
  init(): number;
  reserveIn(fd: number, sa: number, resp: number, noisy: number, verbose: number): number;
  reserveOut(fd: number, sa: number, scope: number, type: number, param: number, noisy: number, verbose: number): number;
  /** The library's `mpath_mx_alloc_len` (PR IN allocation length), or null if not exported. */
  setAllocationLength(value: number): boolean;
  /**
   * libmultipath's `logsink` (in libmpathutil since 0.9.0): 1 syslog, -1 stderr without
   * a time stamp, 0 stderr with one. False when the symbol is not found.
   */
  setLogSink(value: number): boolean;
  /**
   * The multipath-tools release (libmultipath's libmp_get_version(MULTIPATH_VERSION, v)),
   * or null when the call is not found or fails.
   */
  multipathToolsVersion(): [number, number, number] | null;
}

/** libmultipath's `enum { DM_LIBRARY_VERSION, DM_KERNEL_VERSION, DM_MPATH_TARGET_VERSION, MULTIPATH_VERSION }`. */
const MULTIPATH_VERSION = 3;

export function loadMpathPersist(path: string): MpathPersistLib {
  const mpath: any = koffi.load(path);
  const init = mpath.func('int libmpathpersist_init(void)');
  const reserveIn = mpath.func('int mpath_persistent_reserve_in(int fd, int sa, uintptr_t resp, int noisy, int verbose)');
  const reserveOut = mpath.func(
    'int mpath_persistent_reserve_out(int fd, int sa, int scope, unsigned int type, uintptr_t param, int noisy, int verbose)',
  );
  return {
    init: () => init() as number,
    reserveIn: (fd, sa, resp, noisy, verbose) => reserveIn(fd, sa, resp, noisy, verbose) as number,
    reserveOut: (fd, sa, scope, type, param, noisy, verbose) => reserveOut(fd, sa, scope, type, param, noisy, verbose) as number,
    setAllocationLength(value) {
      try {
        const pointer: any = mpath.symbol('mpath_mx_alloc_len', 'unsigned int');
        koffi.encode(pointer, 'unsigned int', value);
        return true;
      } catch {
        return false;
      }
    },
    setLogSink(value) {
      for (const owner of ['libmpathutil.so.0', 'libmultipath.so.0']) {
        try {
          const util: any = koffi.load(`${path.slice(0, path.lastIndexOf('/') + 1)}${owner}`);
          koffi.encode(util.symbol('logsink', 'int'), 'int', value);
          return true;
        } catch {
          // not in this library (before 0.9.0 it lives in libmultipath)
        }
      }
      return false;
    },
    multipathToolsVersion() {
      try {
        // libmpathpersist's own dependency: the same file, already mapped.
        const multipath: any = koffi.load(`${path.slice(0, path.lastIndexOf('/') + 1)}libmultipath.so.0`);
        const getVersion = multipath.func('int libmp_get_version(int which, uintptr_t version)');
        const out = allocNative(12);
        try {
          if ((getVersion(MULTIPATH_VERSION, out.address) as number) !== 0) return null;
          const view = new DataView(out.view);
          return [view.getUint32(0, true), view.getUint32(4, true), view.getUint32(8, true)];
        } finally {
          freeNative(out);
        }
      } catch {
        return null;
      }
    },
  };
}


/** libmpathcmd (multipath-tools): multipathd's command socket, as QEMU's CLEANUP uses it. */
export interface MpathCmdLib {
  /** A connected fd, or -1 and errno. */
  connect(): { fd: number; errno: number };
  /** 0 and the reply, or -1 with errno; waits up to `timeoutMs`. */
  processCommand(fd: number, command: string, timeoutMs: number): { rc: number; errno: number; reply: string | null };
  disconnect(fd: number): void;
}

export function loadMpathCmd(path: string): MpathCmdLib {
  const cmd: any = koffi.load(path);
  const connect = cmd.func('int mpath_connect(void)');
  const processCmd = cmd.func('int mpath_process_cmd(int fd, const char *cmd, _Out_ void **reply, unsigned int timeout)');
  const disconnect = cmd.func('int mpath_disconnect(int fd)');
  const free = lib.func('void free(void *ptr)');
  return {
    connect: () => {
      const fd = connect() as number;
      return { fd, errno: fd < 0 ? koffi.errno() as number : 0 };
    },
    processCommand(fd, command, timeoutMs) {
      const out: any[] = [null];
      const rc = processCmd(fd, command, out, timeoutMs) as number;
      const errno = koffi.errno() as number;
      let reply: string | null = null;
      if (out[0] !== null && out[0] !== undefined) {
        // out[0] IS the char * the library allocated: read the NUL-terminated text it
        // points to (decoding it as 'const char *' would read the text as a pointer).
        reply = koffi.decode(out[0], 'char', -1) as string;
        free(out[0]);
      }
      return { rc, errno, reply };
    },
    disconnect: (fd) => {
      disconnect(fd);
    },
  };
}
