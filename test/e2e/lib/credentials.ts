/**
 * Process credentials as the kernel shows them, for the privilege tests: every thread's
 * /proc/<pid>/task/<tid>/status credential lines, account lookups in /etc/passwd and
 * /etc/group, and whether util-linux's setpriv can start a process with ambient capabilities.
 * Written from proc(5) and capabilities(7), independent of src/privileges.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** CAP_SYS_RAWIO is capability 17 (linux/capability.h). */
export const CAP_SYS_RAWIO_MASK = 1n << 17n;

export interface ThreadStatus {
  tid: number;
  name: string;
  /** real, effective, saved, filesystem */
  uids: number[];
  gids: number[];
  groups: number[];
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
  noNewPrivs: string;
}

function fieldsOf(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return fields;
}

function parseStatus(tid: number, text: string): ThreadStatus {
  const f = fieldsOf(text);
  const need = (key: string): string => {
    const v = f.get(key);
    if (v === undefined) throw new Error(`thread ${tid}: no ${key} line in its status`);
    return v;
  };
  const numbers = (key: string): number[] => (f.get(key) ?? '').split(/\s+/).filter((s) => s !== '').map(Number);
  const mask = (key: string): bigint => BigInt(`0x${need(key)}`);
  return {
    tid,
    name: f.get('Name') ?? '?',
    uids: numbers('Uid'),
    gids: numbers('Gid'),
    groups: numbers('Groups'),
    capInh: mask('CapInh'),
    capPrm: mask('CapPrm'),
    capEff: mask('CapEff'),
    capBnd: mask('CapBnd'),
    capAmb: mask('CapAmb'),
    noNewPrivs: f.get('NoNewPrivs') ?? '?',
  };
}

/** Every thread of `pid` (threads that end while they are read are left out). */
export function threadStatuses(pid: number): ThreadStatus[] {
  const out: ThreadStatus[] = [];
  for (const entry of readdirSync(`/proc/${pid}/task`)) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/task/${entry}/status`, 'utf8');
    } catch {
      continue;
    }
    out.push(parseStatus(Number(entry), text));
  }
  return out.sort((a, b) => a.tid - b.tid);
}

export interface ExpectedThread {
  uid: number;
  gid: number;
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
}

const hexMask = (m: bigint): string => `0x${m.toString(16)}`;

/** The credential lines of one thread, as one comparable line (the tid and name left out). */
export function credentialLine(t: ThreadStatus): string {
  return `Uid ${t.uids.join('/')} Gid ${t.gids.join('/')} Groups ${t.groups.length > 0 ? t.groups.join(',') : '-'} ` +
    `CapInh ${hexMask(t.capInh)} CapPrm ${hexMask(t.capPrm)} CapEff ${hexMask(t.capEff)} ` +
    `CapBnd ${hexMask(t.capBnd)} CapAmb ${hexMask(t.capAmb)} NoNewPrivs ${t.noNewPrivs}`;
}

/** What every thread must show: the four ids, no supplementary groups, the masks exactly, no_new_privs. */
export function expectedLine(e: ExpectedThread): string {
  const ids = (id: number): string => [id, id, id, id].join('/');
  return `Uid ${ids(e.uid)} Gid ${ids(e.gid)} Groups - CapInh ${hexMask(e.capInh)} CapPrm ${hexMask(e.capPrm)} ` +
    `CapEff ${hexMask(e.capEff)} CapBnd ${hexMask(e.capBnd)} CapAmb ${hexMask(e.capAmb)} NoNewPrivs 1`;
}

/** One line per distinct credential set: "12 threads (node x11, prh-sgio x1): Uid ...". */
export function threadTable(threads: readonly ThreadStatus[]): string[] {
  const byLine = new Map<string, ThreadStatus[]>();
  for (const t of threads) byLine.set(credentialLine(t), [...(byLine.get(credentialLine(t)) ?? []), t]);
  return [...byLine].map(([line, list]) => {
    const names = new Map<string, number>();
    for (const t of list) names.set(t.name, (names.get(t.name) ?? 0) + 1);
    const who = [...names].map(([n, c]) => `${n} x${c}`).join(', ');
    return `${list.length} thread(s) (${who}): ${line}`;
  });
}

/** uid and primary gid of a user in /etc/passwd, or null. */
export function userIds(name: string): { uid: number; gid: number } | null {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

/** gid of a group in /etc/group, or null. */
export function groupId(name: string): number | null {
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 3) return Number(f[2]);
  }
  return null;
}

/** setpriv (util-linux) on PATH, or in /usr/bin and /bin; null when absent. */
export function findSetpriv(): string | null {
  const dirs = [...(process.env['PATH'] ?? '').split(':').filter((d) => d !== ''), '/usr/bin', '/bin'];
  for (const dir of dirs) {
    const p = join(dir, 'setpriv');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Why setpriv cannot start a process with ambient capabilities here, or false when it can. */
export function setprivUnavailable(setpriv: string | null): string | false {
  if (setpriv === null) return 'setpriv (util-linux) is not installed in the guest';
  const help = spawnSync(setpriv, ['--help'], { encoding: 'utf8', timeout: 30_000 });
  if (help.error) return `${setpriv} --help failed: ${help.error.message}`;
  if (!`${help.stdout}${help.stderr}`.includes('--ambient-caps')) return `${setpriv} has no --ambient-caps (util-linux < 2.31)`;
  if (!readFileSync('/proc/self/status', 'utf8').includes('CapAmb:')) return 'the kernel has no ambient capabilities (before 4.3)';
  return false;
}
