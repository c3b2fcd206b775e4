/**
 * Multipath and CAP_SYS_ADMIN (docs/protocol.md §2, §5): where libmpathpersist is, whether the helper
 * keeps CAP_SYS_ADMIN for it, and what it says when PR commands on dm-multipath devices
 * cannot work.
 */
import { existsSync } from 'node:fs';
import type { Logger } from '../log/logger.js';
import { findMpathLibrary, MpathLibrary, mpathLibraryAbi, mpathCmdOf, mpathCmdReadsSocketVariable, probeMultipathd } from '../mpath/library.js';
import { errorMessage } from '../util/error-message.js';
import { CAP_SYS_ADMIN, maskOf } from './capabilities.js';
import { keptCapabilities } from './policy.js';
import { distrust } from './trust.js';

/** Names the libmpathpersist to load instead of the installed one. */
export const MPATH_LIBRARY_VARIABLE = 'QEMU_PR_HELPER_MPATH_LIBRARY';

const ADMIN = maskOf([CAP_SYS_ADMIN]);

/**
 * The variable libmpathcmd (multipath-tools 0.12 and later) reads in mpath_connect(): the
 * one socket to reach multipathd through, a file path or `@name` for an abstract one,
 * instead of /run/multipathd.socket then `@/org/kernel/linux/storage/multipathd`.
 * --multipath-socket sets it.
 */
export const MULTIPATH_SOCKET_VARIABLE = 'MULTIPATH_SOCKET_NAME';
/** multipathd's abstract socket, the only one libmpathcmd before 0.12 knows. */
export const MULTIPATHD_ABSTRACT_SOCKET = '@/org/kernel/linux/storage/multipathd';
/** sun_path holds 108 bytes: a path and its NUL, or `@` and up to 107 bytes of an abstract name. */
const MAX_SOCKET_NAME_BYTES = 107;

/**
 * Why `name` cannot name multipathd's socket for libmpathcmd, or null. Accepted: an
 * absolute path, or `@` then an abstract name; at most 107 bytes (libmpathcmd would cut a
 * longer one silently), no NUL, no newline. A relative path would depend on the helper's
 * working directory (`-d` changes it to /).
 */
export function multipathSocketProblem(name: string): string | null {
  const body = name.startsWith('@') ? name.slice(1) : name;
  if (name.includes('\0') || name.includes('\n')) return 'contains a NUL or newline';
  if (!name.startsWith('/') && !name.startsWith('@')) return 'is neither an absolute path nor @ and an abstract socket name';
  if (body === '') return 'names no abstract socket after @';
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes > MAX_SOCKET_NAME_BYTES) return `is ${bytes} bytes long${name === body ? '' : ' after @'}, more than a socket address holds (${MAX_SOCKET_NAME_BYTES})`;
  return null;
}

/**
 * Puts --multipath-socket's value (if given) into the environment, where libmpathcmd reads
 * it on each connect (the C environment, which Node's worker threads share; the re-executed
 * image inherits it), and checks the value in effect, given or inherited. Returns the
 * start-up error, or null.
 */
export function applyMultipathSocket(option: string | null, env: NodeJS.ProcessEnv): string | null {
  if (option !== null) env[MULTIPATH_SOCKET_VARIABLE] = option;
  const name = env[MULTIPATH_SOCKET_VARIABLE];
  if (name === undefined) return null;
  const problem = multipathSocketProblem(name);
  if (problem === null) return null;
  return option !== null ? `invalid --multipath-socket '${name}': it ${problem}`
    : `invalid ${MULTIPATH_SOCKET_VARIABLE}='${name}' in the environment: it ${problem}`;
}

export interface MultipathSupport {
  /** Where libmpathpersist is, or null. */
  library: string | null;
  /** QEMU_PR_HELPER_MPATH_LIBRARY as given, if it was. */
  override: string | undefined;
  /** Why that override is not loaded with privileges, or null. */
  overrideDistrust: string | null;
  /** MULTIPATH_SOCKET_NAME as checked at start-up (applyMultipathSocket), or null. */
  socket: string | null;
}

/**
 * Looks for libmpathpersist. QEMU_PR_HELPER_MPATH_LIBRARY is honoured only for a file that
 * only root can change. A missing one means "no library".
 */
export function findMultipathSupport(env: NodeJS.ProcessEnv): MultipathSupport {
  const override = env[MPATH_LIBRARY_VARIABLE];
  const overrideDistrust = override !== undefined && existsSync(override) ? distrust(override) : null;
  const socket = env[MULTIPATH_SOCKET_VARIABLE] ?? null;
  return { library: overrideDistrust === null ? findMpathLibrary(override) : null, override, overrideDistrust, socket };
}

/**
 * The capabilities a root start keeps for target uid `uid`. CAP_SYS_ADMIN only for uid 0:
 * with -u to another user, multipathd refuses the library's key updates and the path
 * devices are root's, while CAP_SYS_ADMIN would give that user nearly all of root's power
 * (docs/security.md "Threat model").
 */
export function keptAsRoot(support: MultipathSupport, uid: number): bigint {
  return keptCapabilities(support.library !== null && uid === 0);
}

/**
 * The capabilities a non-root start must hold, given its main thread's effective set:
 * CAP_SYS_ADMIN is accepted, and multipath enabled, only with the library installed.
 */
export function keptUnprivileged(support: MultipathSupport, effective: bigint): bigint {
  return keptCapabilities(support.library !== null && (effective & ADMIN) !== 0n);
}

/**
 * Returns the opener the executor calls on the first multipath request (docs/protocol.md §5; never a
 * PR down a single path of a multipath map). A host without multipath devices is told
 * nothing at the default level: -v says at start what multipath would do, and a reason it
 * cannot work is a warning when the first multipath fd arrives (once).
 */
export function multipathOpener(
  support: MultipathSupport, log: Logger, uid: number, kept: bigint,
): () => Promise<MpathLibrary | null> {
  const path = support.library;
  const refuse = (reason: string) => {
    log.info(`multipath: PR commands on dm-multipath devices would be refused: ${reason}`);
    return (): Promise<MpathLibrary | null> => {
      log.warning(`warning: a PR command arrived on a dm-multipath device, but ${reason}: PR commands on dm-multipath devices are refused`);
      return Promise.resolve(null);
    };
  };
  if (path === null && support.overrideDistrust !== null) {
    return refuse(`${MPATH_LIBRARY_VARIABLE}=${support.override ?? ''} is not loaded with privileges: ${support.overrideDistrust}`);
  }
  if (path === null) {
    return refuse('libmpathpersist.so.0 is not installed ' +
      '(Debian/Ubuntu: apt-get install multipath-tools; RHEL/Fedora: device-mapper-multipath-libs)');
  }
  if ((kept & ADMIN) === 0n) {
    return refuse(uid !== 0
      ? 'with -u to a user other than root the helper does not keep CAP_SYS_ADMIN, which libmpathpersist needs ' +
        '(and multipathd takes key updates only from uid 0); run without -u for multipath'
      : 'libmpathpersist needs CAP_SYS_ADMIN, which this helper was not given');
  }
  log.info(`multipath: ${path} (${mpathLibraryAbi(path) ?? 'unknown ABI'}), loaded on the first multipath request`);
  if (support.socket !== null) reportMultipathSocket(support.socket, mpathCmdOf(path), log);
  return () => {
    if (uid !== 0) log.warning('warning: multipathd accepts key updates only from uid 0; with -u it will not track reservation keys');
    return MpathLibrary.open(path, log.journal).then((library) => {
      log.info(`multipath: libmpathpersist initialised (${path})`);
      return library;
    }, (error: unknown) => {
      log.warning(`warning: libmpathpersist (${path}) cannot be used: ${errorMessage(error)}; ` +
        'PR commands on dm-multipath devices will be refused');
      return null;
    });
  };
}

/**
 * With MULTIPATH_SOCKET_NAME set (a container in its own network namespace, where
 * multipathd's abstract socket cannot be reached): a warning when libmpathcmd is too old
 * to read it; otherwise, at -v, the socket, and whether multipathd answers "show daemon"
 * through it, asked through libmpathcmd on a short-lived thread.
 */
function reportMultipathSocket(socket: string, cmdPath: string, log: Logger): void {
  const aware = mpathCmdReadsSocketVariable(cmdPath);
  if (aware === false) {
    log.warning(`warning: ${cmdPath} ignores ${MULTIPATH_SOCKET_VARIABLE}=${socket} (multipath-tools before 0.12): ` +
      `it reaches multipathd only through ${MULTIPATHD_ABSTRACT_SOCKET}, which a container outside the host's network namespace cannot reach`);
    return;
  }
  if (log.verbosity < 2) return;
  void probeMultipathd(cmdPath).then((reply) => {
    log.info(`multipath: multipathd answers through ${socket}: ${reply}`);
  }, (error: unknown) => {
    log.info(`multipath: multipathd does not answer through ${socket} (yet): ${errorMessage(error)}`);
  });
}
