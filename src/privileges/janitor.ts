/**
 * The start-up janitor: between the moment the root image has created the socket and pid
 * file and the moment the re-executed image has its TERM/INT/HUP handlers, a signal ends
 * the helper by its default action (Node resets every disposition when it starts, so
 * nothing can be ignored or blocked across the execve). The janitor is a root /bin/sh,
 * detached (its parent shell exits at once, so it is nobody's zombie), that reads a pipe
 * whose only write end the helper holds across the execve. "ready" from the serving
 * image: it exits. EOF first (the helper is gone): it removes the socket and the pid file
 * if they are still the ones we created (same device and inode).
 */
import { spawnSync } from 'node:child_process';
import { closeFd, createPipe, setCloseOnExec } from '../sys/fd.js';

export const JANITOR_READY = 'ready\n';

export interface JanitorFile {
  path: string;
  dev: number;
  inode: number;
}

const SCRIPT = [
  'gone() { [ -n "$1" ] && [ "$(stat -c %d:%i -- "$1" 2>/dev/null)" = "$2" ] && rm -f -- "$1"; }',
  '{ read -r word; [ "$word" = ready ] || { gone "$1" "$2"; gone "$3" "$4"; }; } <&3 3<&- &',
].join('\n');

/**
 * Starts the janitor for `files`; returns the pipe's write end (close-on-exec: the caller
 * keeps it across its own execve). `inherited` are descriptors without close-on-exec that
 * the janitor must not hold (they are marked close-on-exec; the caller clears that again).
 * Returns null if /bin/sh cannot be started: the helper then runs without a janitor.
 */
export function startJanitor(files: readonly (JanitorFile | null)[], inherited: readonly number[]): number | null {
  const args = files.flatMap((f) => (f === null ? ['', ''] : [f.path, `${f.dev}:${f.inode}`]));
  for (const fd of inherited) setCloseOnExec(fd);
  const [readEnd, writeEnd] = createPipe();
  const result = spawnSync('/bin/sh', ['-c', SCRIPT, 'qemu-pr-helper-janitor', ...args], {
    stdio: ['ignore', 'ignore', 'ignore', readEnd],
  });
  closeFd(readEnd);
  if (result.error !== undefined || result.status !== 0) {
    closeFd(writeEnd);
    return null;
  }
  return writeEnd;
}
