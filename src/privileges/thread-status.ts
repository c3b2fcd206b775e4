/**
 * The credential lines of /proc/<pid>/task/<tid>/status, parsed, and the check of one
 * thread against the state the helper must run in. Pure: text in, values out.
 */
import { describeMask } from './capabilities.js';

export interface ThreadCredentials {
  tid: number;
  name: string;
  /** real, effective, saved, filesystem */
  uids: readonly number[];
  gids: readonly number[];
  groups: readonly number[];
  inheritable: bigint;
  permitted: bigint;
  effective: bigint;
  bounding: bigint;
  ambient: bigint;
  noNewPrivs: boolean;
}

export class StatusFormatError extends Error {
  override name = 'StatusFormatError';
}

/** Parses the text of a status file; throws StatusFormatError if a needed line is missing. */
export function parseThreadStatus(tid: number, text: string): ThreadCredentials {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const get = (key: string): string => {
    const value = fields.get(key);
    if (value === undefined) throw new StatusFormatError(`no ${key} line in the status of thread ${tid}`);
    return value;
  };
  const ids = (key: string): number[] => {
    const list = get(key).split(/\s+/).filter((s) => s !== '').map(Number);
    if (list.length !== 4 || list.some((n) => !Number.isInteger(n))) {
      throw new StatusFormatError(`unexpected ${key} line in the status of thread ${tid}`);
    }
    return list;
  };
  const mask = (key: string): bigint => {
    const hex = get(key);
    if (!/^[0-9a-f]+$/i.test(hex)) throw new StatusFormatError(`unexpected ${key} line in the status of thread ${tid}`);
    return BigInt(`0x${hex}`);
  };
  const groupsText = fields.get('Groups') ?? '';
  return {
    tid,
    name: fields.get('Name') ?? '?',
    uids: ids('Uid'),
    gids: ids('Gid'),
    groups: groupsText.split(/\s+/).filter((s) => s !== '').map(Number),
    inheritable: mask('CapInh'),
    permitted: mask('CapPrm'),
    effective: mask('CapEff'),
    bounding: mask('CapBnd'),
    ambient: mask('CapAmb'),
    // Absent before Linux 4.10: treated as not set.
    noNewPrivs: fields.get('NoNewPrivs') === '1',
  };
}

/** What every thread must show once privileges are dropped. */
export interface ExpectedCredentials {
  uid: number;
  gid: number;
  /** Capabilities kept: exactly these in the effective and permitted sets. */
  kept: bigint;
  /** Whether supplementary groups must be empty (false only when we could not clear them). */
  noGroups: boolean;
  /** Whether the bounding set must be within `kept` (false only when we could not shrink it). */
  boundedSet: boolean;
  noNewPrivs: boolean;
}

/** Every way `thread` differs from `expected`, as readable phrases; empty when it matches. */
export function credentialProblems(thread: ThreadCredentials, expected: ExpectedCredentials): string[] {
  const problems: string[] = [];
  if (thread.uids.some((id) => id !== expected.uid)) {
    problems.push(`uids ${thread.uids.join('/')}, expected ${expected.uid}`);
  }
  if (thread.gids.some((id) => id !== expected.gid)) {
    problems.push(`gids ${thread.gids.join('/')}, expected ${expected.gid}`);
  }
  if (expected.noGroups && thread.groups.length > 0) {
    problems.push(`supplementary groups ${thread.groups.join(',')}`);
  }
  const exact = (label: string, value: bigint): void => {
    if (value !== expected.kept) problems.push(`${label} capabilities ${describeMask(value)}, expected ${describeMask(expected.kept)}`);
  };
  const within = (label: string, value: bigint): void => {
    const extra = value & ~expected.kept;
    if (extra !== 0n) problems.push(`${label} capabilities beyond ${describeMask(expected.kept)}: ${describeMask(extra)}`);
  };
  exact('effective', thread.effective);
  exact('permitted', thread.permitted);
  within('inheritable', thread.inheritable);
  within('ambient', thread.ambient);
  if (expected.boundedSet) within('bounding', thread.bounding);
  if (expected.noNewPrivs && !thread.noNewPrivs) problems.push('no_new_privs is not set');
  return problems;
}

/**
 * The problems of all threads, each phrase once with the threads it applies to:
 * "all 11 threads: effective capabilities ...".
 */
export function summarizeProblems(
  threads: readonly ThreadCredentials[], expected: ExpectedCredentials,
): string[] {
  const byProblem = new Map<string, ThreadCredentials[]>();
  for (const thread of threads) {
    for (const problem of credentialProblems(thread, expected)) {
      byProblem.set(problem, [...(byProblem.get(problem) ?? []), thread]);
    }
  }
  return [...byProblem].map(([problem, list]) => {
    const who = list.length === threads.length
      ? `all ${list.length} threads`
      : list.map((t) => `thread ${t.tid} (${t.name})`).join(', ');
    return `${who}: ${problem}`;
  });
}
