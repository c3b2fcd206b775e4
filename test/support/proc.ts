/** Numbers about a running process, read from /proc: for the tests and the benchmarks. */
import { readdirSync, readFileSync } from 'node:fs';

/** A numeric field of /proc/PID/status (`Threads`, `VmRSS` in kB, ...); 0 when absent. */
export function statusNumber(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

export function threadCount(pid: number): number {
  return statusNumber(pid, 'Threads');
}

/** Resident set size in MB (threads share it). */
export function rssMb(pid: number): number {
  return statusNumber(pid, 'VmRSS') / 1024;
}

/**
 * Proportional set size in MB (/proc/PID/smaps_rollup `Pss:`): each page shared with N
 * processes counts 1/N, so helpers sharing the Node binary are not charged for it in full.
 */
export function pssMb(pid: number): number {
  const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** Threads as entries of /proc/PID/task (the same count as status `Threads`). */
export function taskCount(pid: number): number {
  return readdirSync(`/proc/${pid}/task`).length;
}

/** CPU time of the whole process, utime + stime, in clock ticks (USER_HZ: 100 on Linux). */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // Fields after the command name, which may itself hold ') ': state is field 3.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11] ?? 0) + Number(f[12] ?? 0); // fields 14 and 15
}

/** cpuTicks in seconds. */
export function cpuSeconds(pid: number): number {
  return cpuTicks(pid) / 100;
}

/**
 * How a process that is not our child ended, or null while it runs: a zombie's status as
 * /proc still shows it, or gone altogether (reaped by init).
 */
export function nonChildExit(pid: number): string | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return 'exited (reaped by init)';
  }
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  if (fields[0] !== 'Z' && fields[0] !== 'X') return null;
  const status = Number(fields[49]); // field 52, exit_code, in waitpid(2) form
  if (!Number.isInteger(status)) return 'exited (zombie)';
  return (status & 0x7f) === 0 ? `exit ${(status >> 8) & 0xff}` : `signal ${status & 0x7f}`;
}
