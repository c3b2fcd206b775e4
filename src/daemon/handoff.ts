/**
 * What the privileged first image passes to the re-executed one (src/privileges/drop.ts):
 * descriptors it opened as root and the identity it switched to. Carried in one
 * environment variable, removed as soon as it is read. Pure: text in, values out.
 */

export const HANDOFF_VARIABLE = 'QEMU_PR_HELPER_HANDOFF';

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
  /** Write end of the start-up janitor's pipe (src/privileges/janitor.ts), when there is one. */
  janitorFd?: number | null;
  /** Read end of the janitor's answers (src/privileges/janitor.ts). */
  janitorAnswerFd?: number | null;
  /** The socket's temporary name, when the janitor is to put it in place (src/server/listener.ts). */
  socketStaging?: string | null;
  uid: number;
  gid: number;
  /** Kept capabilities, as a hexadecimal mask. */
  kept: bigint;
}

export class HandoffError extends Error {}

export function encodeHandoff(handoff: Handoff): string {
  return JSON.stringify({ ...handoff, kept: handoff.kept.toString(16) });
}

const isFd = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 31;
const isId = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 32;
/** An inode or device number (st_ino, st_dev). */
const isInode = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isPath = (v: unknown): v is string => typeof v === 'string' && v.startsWith('/') && !v.includes('\0');

/** Parses and validates the variable's text; throws HandoffError naming the bad field. */
export function decodeHandoff(text: string): Handoff {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new HandoffError(`${HANDOFF_VARIABLE} is not valid JSON`);
  }
  if (typeof raw !== 'object' || raw === null) throw new HandoffError(`${HANDOFF_VARIABLE} is not an object`);
  const r = raw as Record<string, unknown>;
  const bad = (field: string): never => {
    throw new HandoffError(`${HANDOFF_VARIABLE} has an invalid ${field}`);
  };
  if (!isFd(r['listenFd'])) bad('listenFd');
  const createdPath = r['createdPath'] ?? null;
  if (createdPath !== null && !isPath(createdPath)) bad('createdPath');
  const socketInode = r['socketInode'] ?? null;
  if (socketInode !== null && !isInode(socketInode)) bad('socketInode');
  const socketDev = r['socketDev'] ?? null;
  if (socketDev !== null && !isInode(socketDev)) bad('socketDev');
  let pidfile: Handoff['pidfile'] = null;
  if (r['pidfile'] !== null && r['pidfile'] !== undefined) {
    const p = r['pidfile'] as Record<string, unknown>;
    if (typeof p !== 'object' || !isFd(p['fd']) || !isPath(p['path']) || !isInode(p['dev']) || !isInode(p['inode'])) {
      bad('pidfile');
    }
    pidfile = { fd: p['fd'] as number, path: p['path'] as string, dev: p['dev'] as number, inode: p['inode'] as number };
  }
  const readyFd = r['readyFd'] ?? null;
  if (readyFd !== null && !isFd(readyFd)) bad('readyFd');
  /** An optional field: absent or null, or valid. */
  const optional = <T>(field: string, valid: (v: unknown) => v is T): T | null => {
    const value = r[field] ?? null;
    return value === null ? null : valid(value) ? value : bad(field);
  };
  const janitorFd = optional('janitorFd', isFd);
  const janitorAnswerFd = optional('janitorAnswerFd', isFd);
  const socketStaging = optional('socketStaging', isPath);
  if (!isId(r['uid'])) bad('uid');
  if (!isId(r['gid'])) bad('gid');
  if (typeof r['kept'] !== 'string' || !/^[0-9a-f]{1,16}$/.test(r['kept'])) bad('kept');
  return {
    listenFd: r['listenFd'] as number,
    createdPath: createdPath as string | null,
    socketDev: socketDev as number | null,
    socketInode: socketInode as number | null,
    pidfile,
    readyFd: readyFd as number | null,
    ...(janitorFd !== null ? { janitorFd } : {}),
    ...(janitorAnswerFd !== null ? { janitorAnswerFd } : {}),
    ...(socketStaging !== null ? { socketStaging } : {}),
    uid: r['uid'] as number,
    gid: r['gid'] as number,
    kept: BigInt(`0x${r['kept'] as string}`),
  };
}
