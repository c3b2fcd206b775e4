/**
 * The listening socket: created on a path (spec §1.5.1) or adopted from systemd (§1.6).
 *
 * A created socket's path appears only once it accepts connections: libvirt treats the
 * path's existence as readiness, so the socket is bound under a temporary name in the same
 * directory, put in listening state, then renamed into place (rename is atomic and also
 * replaces any stale file, as the reference's unlink-then-bind does). The backlog is a real
 * one, not the reference's 1, so many QEMUs can connect at once.
 */
import { lstatSync, renameSync, unlinkSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { closeFd, setCloseOnExec, setNonBlocking } from '../sys/fd.js';
import { describeErrno, SyscallError } from '../sys/errors.js';
import {
  acceptConnection, bindUnix, fitsSunPath, listenSocket, socketInfo, unixStreamSocket,
  SocketPathTooLongError,
} from '../sys/socket.js';
import { FdWatcher } from '../sys/poll.js';
import { FIRST_SOCKET_ACTIVATION_FD } from './activation.js';

export const LISTEN_BACKLOG = 4096;

/** A start-up failure with the exact text to print (and exit 1). */
export class ListenError extends Error {
  readonly hint: string | null;
  constructor(message: string, hint: string | null = null, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ListenError';
    this.hint = hint;
  }
}

export interface ListenerInfo {
  fd: number;
  /** The path we created, to unlink at exit; null for an activated socket. */
  createdPath: string | null;
  /** Inode of the created socket file, so that we never unlink a successor's socket. */
  inode: number | null;
}

function errnoOf(error: unknown): string {
  if (error instanceof SyscallError) return error.description;
  if (error instanceof Error && 'errno' in error && typeof error.errno === 'number') {
    return describeErrno(-error.errno);
  }
  return error instanceof Error ? error.message : String(error);
}

function tryUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Creates, binds and listens on `path`, making the path visible only when listening. */
export function listenOnPath(path: string): ListenerInfo {
  if (!fitsSunPath(path)) {
    throw new ListenError(`UNIX socket path '${path}' is too long`, 'Path must be less than 108 bytes');
  }
  const fd = unixStreamSocket();
  const staging = join(dirname(path), `.${basename(path)}.${process.pid}~`);
  const atomic = fitsSunPath(staging);
  try {
    const bindPath = atomic ? staging : path;
    tryUnlink(bindPath);
    bindUnix(fd, bindPath);
    listenSocket(fd, LISTEN_BACKLOG);
    if (atomic) {
      try {
        renameSync(staging, path);
      } catch (error) {
        tryUnlink(staging);
        throw error;
      }
    }
    return { fd, createdPath: path, inode: lstatSync(path).ino };
  } catch (error) {
    closeFd(fd);
    if (error instanceof SocketPathTooLongError) {
      throw new ListenError(`UNIX socket path '${path}' is too long`, 'Path must be less than 108 bytes');
    }
    throw new ListenError(`Failed to bind socket to ${path}: ${errnoOf(error)}`, null, { cause: error });
  }
}

/**
 * Adopts fd 3 from systemd. The reference accepts a socket that is not listening and then
 * never serves anything (spec §9 item 17); that is refused here with a message.
 */
export function adoptActivatedSocket(): ListenerInfo {
  return adoptListeningSocket(FIRST_SOCKET_ACTIVATION_FD, null, null, 'Failed to use socket activation');
}

/**
 * Adopts an inherited listening socket: systemd's, or our own across the privilege-drop
 * re-exec (then with the path we created, to unlink at exit).
 */
export function adoptListeningSocket(
  fd: number, createdPath: string | null, inode: number | null, context = 'Failed to use the listening socket',
): ListenerInfo {
  let info;
  try {
    info = socketInfo(fd);
  } catch (error) {
    throw new ListenError(`${context}: Unable to query remote socket address: ${errnoOf(error)}`);
  }
  if (!info.stream) throw new ListenError(`${context}: fd ${fd} is not a stream socket`);
  if (!info.listening) throw new ListenError(`${context}: fd ${fd} is not a listening socket`);
  setNonBlocking(fd);
  return { fd, createdPath, inode };
}

/**
 * Unlinks the path we created if it is still our socket (same inode): another instance may
 * have taken the path over (the reference allows that, §1.5.1). Returns why it could not.
 */
function removeOwnSocket(info: ListenerInfo): string | null {
  const path = info.createdPath;
  if (path === null) return null;
  try {
    if (lstatSync(path).ino !== info.inode) return null;
    unlinkSync(path);
    return null;
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return null;
    return `Failed to unlink socket ${path}: ${errnoOf(error)}`;
  }
}

/** Closes a listener that never served, removing the path we created if still ours. */
export function discardListener(info: ListenerInfo): void {
  closeFd(info.fd);
  removeOwnSocket(info);
}

/** Validates the activated fds (FD_CLOEXEC on each), as QEMU does before anything else. */
export function claimActivatedFds(count: number): void {
  for (let i = 0; i < count; i++) {
    const fd = FIRST_SOCKET_ACTIVATION_FD + i;
    try {
      setCloseOnExec(fd);
    } catch (error) {
      throw new ListenError(`Socket activation failed: invalid file descriptor fd = ${fd}: ${errnoOf(error)}`);
    }
  }
}

export interface AcceptLoopDeps {
  onConnection: (fd: number) => void;
  onError: (message: string) => void;
}

/** Accepts connections while open; backs off briefly when out of fds (EMFILE/ENFILE). */
export class Acceptor {
  readonly #info: ListenerInfo;
  readonly #deps: AcceptLoopDeps;
  readonly #watcher: FdWatcher;
  #backoff: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(info: ListenerInfo, deps: AcceptLoopDeps) {
    this.#info = info;
    this.#deps = deps;
    this.#watcher = new FdWatcher(info.fd, () => this.#acceptAll());
  }

  start(): void {
    this.#watcher.set({ readable: true, writable: false });
  }

  #acceptAll(): void {
    while (!this.#closed) {
      let fd: number | null;
      try {
        fd = acceptConnection(this.#info.fd);
      } catch (error) {
        this.#deps.onError(`Unable to accept a connection: ${errnoOf(error)}`);
        // Level-triggered: without a pause, a full fd table would spin the loop.
        this.#watcher.set({ readable: false, writable: false });
        this.#backoff = setTimeout(() => {
          this.#backoff = null;
          if (!this.#closed) this.#watcher.set({ readable: true, writable: false });
        }, 100);
        return;
      }
      if (fd === null) return;
      this.#deps.onConnection(fd);
    }
  }

  /** Stops accepting, closes the socket and unlinks the path we created (if still ours). */
  close(): string | null {
    if (this.#closed) return null;
    this.#closed = true;
    if (this.#backoff) clearTimeout(this.#backoff);
    this.#watcher.close();
    closeFd(this.#info.fd);
    return removeOwnSocket(this.#info);
  }
}
