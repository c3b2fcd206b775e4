/**
 * The hand-off envelope: everything one image of the helper passes to the next one it
 * starts (src/cli/main.ts), in one environment variable holding one JSON object, removed as
 * soon as it is read and validated here field by field. Pure: text in, values out.
 *
 * - "daemon": from the -d launcher to the daemon it starts (src/daemon/launcher.ts): the
 *   write end of the readiness pipe.
 * - "dropped": from the privileged first image to the image it re-executes after dropping
 *   privileges (src/privileges/drop.ts): the descriptors it opened as root, the identity it
 *   switched to and the -T file= it opened.
 * Both carry the program name as invoked and the enabled trace events. A later image does
 * not read the -T events file again: its working directory or its user may no longer allow
 * it, and its warnings were printed once already.
 *
 * bin/qemu-pr-helper, the shell script that runs before any image, cannot write JSON
 * safely; it keeps setting its two plain variables (SCRIPT_ARGV0_VARIABLE,
 * INHERITED_FDS_VARIABLE). Only an image started without an envelope reads them, and it
 * folds what later images need into the envelope it passes on.
 */

export const HANDOFF_VARIABLE = 'QEMU_PR_HELPER_HANDOFF';
/** Set by bin/qemu-pr-helper: the program name as invoked ($0). */
export const SCRIPT_ARGV0_VARIABLE = 'QEMU_PR_HELPER_ARGV0';
/** Set by bin/qemu-pr-helper: the descriptors it inherited besides stdio. */
export const INHERITED_FDS_VARIABLE = 'QEMU_PR_HELPER_INHERITED_FDS';

/** What the first image opened as root and switched to, for the re-executed image. */
export interface Handoff {
  /** The listening socket. */
  listenFd: number;
  /** Path of a socket we created (unlinked at exit), or null for an activated one. */
  createdPath: string | null;
  /** Device and inode of that socket: it is unlinked only while the path still is it. */
  socketDev: number | null;
  socketInode: number | null;
  pidfile: { fd: number; path: string; dev: number; inode: number } | null;
  /** Write end of the daemon launcher's readiness pipe (-d), or null. */
  readyFd: number | null;
  /** Write end of the start-up janitor's pipe (src/privileges/janitor.ts), or null. */
  janitorFd: number | null;
  /** Read end of the janitor's answers (src/privileges/janitor.ts), or null. */
  janitorAnswerFd: number | null;
  /** The socket's temporary name, when the janitor is to put it in place (src/server/listener.ts), or null. */
  socketStaging: string | null;
  uid: number;
  gid: number;
  /** Kept capabilities, as a hexadecimal mask. */
  kept: bigint;
}

/** From the -d launcher to the daemon. */
export interface DaemonEnvelope {
  image: 'daemon';
  program: string;
  traceEvents: string[];
  /** Where the daemon writes READY_MESSAGE once it serves (src/daemon/launcher.ts). */
  readyFd: number;
}

/** From the first image to the one it re-executes with fewer privileges. */
export interface DroppedEnvelope {
  image: 'dropped';
  program: string;
  traceEvents: string[];
  /** The open -T file=, or null: stderr. */
  traceFd: number | null;
  handoff: Handoff;
}

export type Envelope = DaemonEnvelope | DroppedEnvelope;

export class HandoffError extends Error {
  override name = 'HandoffError';
}

export function encodeEnvelope(envelope: Envelope): string {
  if (envelope.image === 'daemon') return JSON.stringify(envelope);
  return JSON.stringify({ ...envelope, handoff: { ...envelope.handoff, kept: envelope.handoff.kept.toString(16) } });
}

const isFd = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 31;
const isId = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 32;
/** An inode or device number (st_ino, st_dev). */
const isInode = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isPath = (v: unknown): v is string => typeof v === 'string' && v.startsWith('/') && !v.includes('\0');
/** Not stdio: the -T file= is one the first image opened. */
const isTraceFd = (v: unknown): v is number => isFd(v) && v > 2;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const bad = (field: string): never => {
  throw new HandoffError(`${HANDOFF_VARIABLE} has an invalid ${field}`);
};

/**
 * Parses and validates the variable's text; throws HandoffError naming the bad field.
 * Only trace event names in `knownEvents` are accepted.
 */
export function decodeEnvelope(text: string, knownEvents: readonly string[]): Envelope {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new HandoffError(`${HANDOFF_VARIABLE} is not valid JSON`);
  }
  if (!isObject(raw)) throw new HandoffError(`${HANDOFF_VARIABLE} is not an object`);
  const program = raw['program'];
  if (typeof program !== 'string' || program.includes('\0')) bad('program');
  const events = raw['traceEvents'];
  if (!Array.isArray(events) || !events.every((e): e is string => typeof e === 'string' && knownEvents.includes(e))) {
    bad('traceEvents');
  }
  const common = { program: program as string, traceEvents: events as string[] };
  switch (raw['image']) {
    case 'daemon':
      if (!isFd(raw['readyFd'])) bad('readyFd');
      return { image: 'daemon', ...common, readyFd: raw['readyFd'] as number };
    case 'dropped': {
      const traceFd = raw['traceFd'] ?? null;
      if (traceFd !== null && !isTraceFd(traceFd)) bad('traceFd');
      if (!isObject(raw['handoff'])) bad('handoff');
      return { image: 'dropped', ...common, traceFd: traceFd as number | null, handoff: decodeHandoff(raw['handoff'] as Record<string, unknown>) };
    }
    default:
      return bad('image');
  }
}

function decodeHandoff(r: Record<string, unknown>): Handoff {
  /** A field that may be absent or null, or else must be valid. */
  const optional = <T>(field: string, valid: (v: unknown) => v is T): T | null => {
    const value = r[field] ?? null;
    return value === null ? null : valid(value) ? value : bad(field);
  };
  if (!isFd(r['listenFd'])) bad('listenFd');
  const createdPath = optional('createdPath', isPath);
  const socketInode = optional('socketInode', isInode);
  const socketDev = optional('socketDev', isInode);
  let pidfile: Handoff['pidfile'] = null;
  if (r['pidfile'] !== null && r['pidfile'] !== undefined) {
    const p = r['pidfile'];
    if (!isObject(p) || !isFd(p['fd']) || !isPath(p['path']) || !isInode(p['dev']) || !isInode(p['inode'])) {
      return bad('pidfile');
    }
    pidfile = { fd: p['fd'], path: p['path'], dev: p['dev'], inode: p['inode'] };
  }
  const readyFd = optional('readyFd', isFd);
  const janitorFd = optional('janitorFd', isFd);
  const janitorAnswerFd = optional('janitorAnswerFd', isFd);
  const socketStaging = optional('socketStaging', isPath);
  if (!isId(r['uid'])) bad('uid');
  if (!isId(r['gid'])) bad('gid');
  if (typeof r['kept'] !== 'string' || !/^[0-9a-f]{1,16}$/.test(r['kept'])) bad('kept');
  return {
    listenFd: r['listenFd'] as number,
    createdPath,
    socketDev,
    socketInode,
    pidfile,
    readyFd,
    janitorFd,
    janitorAnswerFd,
    socketStaging,
    uid: r['uid'] as number,
    gid: r['gid'] as number,
    kept: BigInt(`0x${r['kept'] as string}`),
  };
}

/** bin/qemu-pr-helper's list of inherited descriptors: numbers above stdio, anything else ignored. */
export function parseInheritedFds(text: string | undefined): number[] {
  if (text === undefined) return [];
  return text.split(/\s+/).filter((s) => /^[0-9]+$/.test(s)).map(Number).filter((fd) => fd > 2 && fd < 2 ** 31);
}
