/**
 * The listening socket: created on a path (docs/protocol.md §1.5.1) or adopted from systemd
 * (docs/protocol.md §1.6).
 *
 * A created socket's path appears only once it accepts connections: libvirt treats the
 * path's existence as readiness, so the socket is bound under a temporary name in the same
 * directory, put in listening state, then renamed into place (rename is atomic and also
 * replaces any stale file, as the reference's unlink-then-bind does). That name is random
 * (src/sys/staging.ts): the directory may be writable by others, who must not be able to
 * block start-up by planting something at it. The backlog is a real one, not the
 * reference's 1, so many QEMUs can connect at once.
 */
import { lstatSync, renameSync, unlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { closeFd, setCloseOnExec, setNonBlocking } from '../sys/fd.js';
import { errnoText, SyscallError } from '../sys/errors.js';
import {
  acceptConnection, bindUnix, fitsSunPath, listenSocket, socketInfo, unixStreamSocket,
  SocketPathTooLongError,
} from '../sys/socket.js';
import { FdWatcher } from '../sys/poll.js';
import {
  identityOf, isSameFile, stagingName, unlinkIfSame, withStagingName, StagingNamesTakenError, type FileIdentity,
} from '../sys/staging.js';
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
  /**
   * Device and inode of the created socket file: at exit the path is unlinked only if it is
   * still that file, never a successor's socket or anything else put there since.
   */
  dev: number | null;
  inode: number | null;
  /**
   * Where the socket still is when it was not put in place yet (see listenOnPath's
   * `publish`): it is renamed to createdPath later, by publishListener or the janitor.
   */
  staging?: string | null;
}

function tooLong(path: string): ListenError {
  return new ListenError(`UNIX socket path '${path}' is too long`, 'Path must be less than 108 bytes');
}

/** The socket file that bind() just made at `name`, or an error if it is no longer there. */
function boundFile(name: string): FileIdentity {
  const stats = lstatSync(name);
  if (!stats.isSocket()) throw new Error(`${name} was replaced by another process`);
  return identityOf(stats);
}

/**
 * Binds and listens under a fresh random name, then renames it into place (unless
 * `publish` is false: see listenOnPath). A taken name (EADDRINUSE: something is already
 * there) is left alone and another one tried.
 */
function bindStaged(fd: number, path: string, publish: boolean): FileIdentity & { staging: string | null } {
  const staging = withStagingName(path, (name) => {
    bindUnix(fd, name);
    return name;
  }, (error) => error instanceof SyscallError && error.errno === osConstants.errno.EADDRINUSE);
  // bind() created the name, which did not exist before: it is ours until renamed.
  const ours = boundFile(staging);
  try {
    listenSocket(fd, LISTEN_BACKLOG);
    if (!publish) {
      // Fail now, not when it is put in place, for what rename(2) would refuse.
      if (lstatSync(path, { throwIfNoEntry: false })?.isDirectory() === true) throw new SyscallError('rename', osConstants.errno.EISDIR);
      return { ...ours, staging };
    }
    renameSync(staging, path);
  } catch (error) {
    unlinkIfSame(staging, ours);
    throw error;
  }
  if (!isSameFile(path, ours)) throw new Error(`its temporary socket ${staging} was replaced by another process`);
  return { ...ours, staging: null };
}

/** Puts a socket listened on with `publish: false` in place; throws ListenError. */
export function publishListener(info: ListenerInfo): void {
  const staging = info.staging ?? null;
  if (staging === null || info.createdPath === null || info.dev === null || info.inode === null) return;
  const ours = { dev: info.dev, inode: info.inode };
  try {
    if (!isSameFile(staging, ours)) throw new Error(`its temporary socket ${staging} was replaced by another process`);
    renameSync(staging, info.createdPath);
  } catch (error) {
    throw new ListenError(`Failed to bind socket to ${info.createdPath}: ${errnoText(error)}`, null, { cause: error });
  }
  info.staging = null;
}

/** The reference's way, for a path too long to add a staging suffix: unlink, then bind. */
function bindInPlace(fd: number, path: string): FileIdentity & { staging: null } {
  try {
    unlinkSync(path);
  } catch {
    // nothing there (or not removable: bind says why)
  }
  bindUnix(fd, path);
  const ours = boundFile(path);
  try {
    listenSocket(fd, LISTEN_BACKLOG);
  } catch (error) {
    unlinkIfSame(path, ours);
    throw error;
  }
  return { ...ours, staging: null };
}

/**
 * Creates, binds and listens on `path`, making the path visible only when listening. With
 * `publish: false` the socket stays under its temporary name (ListenerInfo.staging) until
 * publishListener, or the start-up janitor, renames it: the root image leaves that to the
 * moment the serving image handles signals (libvirt's readiness is the path's existence).
 */
export function listenOnPath(path: string, { publish = true }: { publish?: boolean } = {}): ListenerInfo {
  if (!fitsSunPath(path)) throw tooLong(path);
  const fd = unixStreamSocket();
  try {
    // Every staging name has the same length: one probe says whether they fit.
    const ours = fitsSunPath(stagingName(path)) ? bindStaged(fd, path, publish) : bindInPlace(fd, path);
    return { fd, createdPath: path, ...ours };
  } catch (error) {
    closeFd(fd);
    if (error instanceof SocketPathTooLongError) throw tooLong(path);
    const why = error instanceof StagingNamesTakenError ? error.message : errnoText(error);
    throw new ListenError(`Failed to bind socket to ${path}: ${why}`, null, { cause: error });
  }
}

/**
 * Adopts fd 3 from systemd. The reference accepts a socket that is not listening and then
 * never serves anything (docs/protocol.md §9 item 17); that is refused here with a message.
 */
export function adoptActivatedSocket(): ListenerInfo {
  return adoptListeningSocket(FIRST_SOCKET_ACTIVATION_FD, null, null, 'Failed to use socket activation');
}

/**
 * Adopts an inherited listening socket: systemd's, or our own across the privilege-drop
 * re-exec (then with the path we created, to unlink at exit).
 */
export function adoptListeningSocket(
  fd: number, createdPath: string | null, created: { dev: number | null; inode: number | null; staging?: string | null } | null,
  context = 'Failed to use the listening socket',
): ListenerInfo {
  let info;
  try {
    info = socketInfo(fd);
  } catch (error) {
    throw new ListenError(`${context}: Unable to query remote socket address: ${errnoText(error)}`);
  }
  if (!info.stream) throw new ListenError(`${context}: fd ${fd} is not a stream socket`);
  if (!info.listening) throw new ListenError(`${context}: fd ${fd} is not a listening socket`);
  setNonBlocking(fd);
  return { fd, createdPath, dev: created?.dev ?? null, inode: created?.inode ?? null, staging: created?.staging ?? null };
}

/**
 * Unlinks the path we created if it is still our socket (same device and inode): another
 * instance may have taken the path over (the reference allows that, docs/protocol.md §1.5.1), or anyone who
 * can write the directory put something else there. Returns why it could not.
 */
function removeOwnSocket(info: ListenerInfo): string | null {
  const path = info.createdPath;
  if (path === null || info.dev === null || info.inode === null) return null;
  if (info.staging !== undefined && info.staging !== null) unlinkIfSame(info.staging, { dev: info.dev, inode: info.inode });
  try {
    if (!isSameFile(path, { dev: info.dev, inode: info.inode })) return null;
    unlinkSync(path);
    return null;
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return null;
    return `Failed to unlink socket ${path}: ${errnoText(error)}`;
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
      throw new ListenError(`Socket activation failed: invalid file descriptor fd = ${fd}: ${errnoText(error)}`);
    }
  }
}

export interface AcceptLoopDeps {
  onConnection: (fd: number) => void;
  onError: (message: string) => void;
  /** False when no connection may be accepted now: the acceptor pauses until resume(). */
  canAccept?: () => boolean;
}

/** Accepts connections while open; backs off briefly when out of fds (EMFILE/ENFILE). */
export class Acceptor {
  readonly #info: ListenerInfo;
  readonly #deps: AcceptLoopDeps;
  readonly #watcher: FdWatcher;
  #backoff: NodeJS.Timeout | null = null;
  #paused = false;
  #closed = false;

  constructor(info: ListenerInfo, deps: AcceptLoopDeps) {
    this.#info = info;
    this.#deps = deps;
    this.#watcher = new FdWatcher(info.fd, () => this.#acceptAll());
  }

  start(): void {
    this.#watcher.set({ readable: true, writable: false });
  }

  /** Accepts again after canAccept() said no (connections waited in the listen backlog). */
  resume(): void {
    if (!this.#paused || this.#closed) return;
    this.#paused = false;
    this.#watcher.set({ readable: true, writable: false });
  }

  #acceptAll(): void {
    while (!this.#closed) {
      if (this.#deps.canAccept?.() === false) {
        this.#paused = true;
        this.#watcher.set({ readable: false, writable: false });
        return;
      }
      let fd: number | null;
      try {
        fd = acceptConnection(this.#info.fd);
      } catch (error) {
        this.#deps.onError(`Unable to accept a connection: ${errnoText(error)}`);
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
