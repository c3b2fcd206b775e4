/**
 * The fail-closed check after start-up: every thread of this process, read from
 * /proc/self/task/<tid>/status, must hold exactly the expected credentials. Threads created
 * later (SG_IO workers) copy the main thread's credentials, which this check covers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import {
  summarizeProblems, parseThreadStatus, type ExpectedCredentials, type ThreadCredentials,
} from './thread-status.js';

/** Credentials of every thread of `pid` ('self' by default). */
export function readThreadCredentials(pid: number | 'self' = 'self'): ThreadCredentials[] {
  const dir = `/proc/${pid}/task`;
  const threads: ThreadCredentials[] = [];
  for (const entry of readdirSync(dir)) {
    let text: string;
    try {
      text = readFileSync(`${dir}/${entry}/status`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    threads.push(parseThreadStatus(Number(entry), text));
  }
  return threads;
}

export interface Verification {
  threads: ThreadCredentials[];
  problems: string[];
}

export function verifyThreads(expected: ExpectedCredentials): Verification {
  const threads = readThreadCredentials();
  const problems = summarizeProblems(threads, expected);
  if (threads.length === 0) problems.push('no thread found in /proc/self/task');
  return { threads, problems };
}
