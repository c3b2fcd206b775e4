/**
 * The start-up janitor: between the moment the root image has created the socket and pid
 * file and the moment the re-executed image has its TERM/INT/HUP handlers, a signal ends
 * the helper by its default action (Node resets every disposition when it starts, so
 * nothing can be ignored or blocked across the execve). The janitor is a root /bin/sh,
 * detached (its parent shell exits at once, so it is nobody's zombie), that reads a pipe
 * whose only write end the helper holds across the execve. "ready" from the serving
 * image: it puts the socket in place (renames it from its temporary name, as root, since
 * the serving image may no longer write the directory), so that the path appears only once
 * a signal gets the orderly exit, and exits. EOF first (the helper is gone): it removes the
 * socket and the pid file if they are still the ones we created (same device and inode).
 * "placed" instead of "ready": the serving image has put the socket in place itself (it
 * could), the janitor just exits.
 */
import { closeFd, createPipe, setCloseOnExec } from '../sys/fd.js';
import type { FileIdentity } from '../sys/staging.js';
import { childProcess } from '../util/builtins.js';

export const JANITOR_READY = 'ready\n';
/**
 * From the serving image, instead of "ready", when it could put the socket in place itself
 * (uid 0 in a directory root owns, the common case: no rename by the janitor, no answer
 * to wait for). The janitor then just exits.
 */
export const JANITOR_PLACED = 'placed\n';

/** A file the janitor may remove: its path, and the device and inode it must still have. */
export type JanitorFile = FileIdentity & { path: string };

/** The socket: at `staging` until the janitor renames it to `path` (null: already there). */
export interface JanitorSocket extends JanitorFile {
  staging: string | null;
}

/** The janitor's answer once it has put the socket in place (anything else: it could not). */
export const JANITOR_PUBLISHED = 'published';

// $1 socket's temporary name, $2 its path, $3 its dev:inode, $4 pid file, $5 its dev:inode.
// fd 3: the helper's words; fd 4: the janitor's answer to "ready" (published or failed).
// "placed": the helper put the socket in place itself, nothing to do.
const SCRIPT = [
  'same() { [ -n "$1" ] && [ "$(stat -c %d:%i -- "$1" 2>/dev/null)" = "$2" ]; }',
  'gone() { same "$1" "$2" && rm -f -- "$1"; }',
  '{ read -r word',
  '  if [ "$word" = ready ]; then',
  `    if [ -z "$1" ] || { same "$1" "$3" && mv -fT -- "$1" "$2" 4>&-; }; then echo ${JANITOR_PUBLISHED} >&4`,
  '    else gone "$1" "$3"; echo failed >&4; fi',
  '  elif [ "$word" != placed ]; then gone "$1" "$3"; gone "$2" "$3"; gone "$4" "$5"; fi',
  '} <&3 3<&- &',
].join('\n');

export interface Janitor {
  /** Where to say "ready" (then close it). */
  tell: number;
  /** Where the janitor answers JANITOR_PUBLISHED once the socket is in place. */
  answer: number;
}

/**
 * Starts the janitor for the socket and the pid file; returns our ends of its two pipes
 * (close-on-exec: the caller keeps them across its own execve). `inherited` are descriptors
 * without close-on-exec that the janitor must not hold (they are marked close-on-exec; the
 * caller clears that again). Returns null if /bin/sh cannot be started: the helper then
 * runs without a janitor.
 */
export function startJanitor(socket: JanitorSocket | null, pidfile: JanitorFile | null, inherited: readonly number[]): Janitor | null {
  const args = [
    socket?.staging ?? '', socket?.path ?? '', socket === null ? '' : `${socket.dev}:${socket.inode}`,
    pidfile?.path ?? '', pidfile === null ? '' : `${pidfile.dev}:${pidfile.inode}`,
  ];
  for (const fd of inherited) setCloseOnExec(fd);
  const [readEnd, writeEnd] = createPipe();
  const [answerRead, answerWrite] = createPipe();
  const result = childProcess().spawnSync('/bin/sh', ['-c', SCRIPT, 'qemu-pr-helper-janitor', ...args], {
    stdio: ['ignore', 'ignore', 'ignore', readEnd, answerWrite],
  });
  closeFd(readEnd);
  closeFd(answerWrite);
  if (result.error !== undefined || result.status !== 0) {
    closeFd(writeEnd);
    closeFd(answerRead);
    return null;
  }
  return { tell: writeEnd, answer: answerRead };
}
