/**
 * The files of -T: the events= list, read while the command line is parsed, and the
 * file= log, opened as root before the socket.
 */
import { openSync, readFileSync } from 'node:fs';
import { errnoText } from '../sys/errors.js';
import { expandLogfileTemplate, type EventsFileRead } from './options.js';

/** A -T events= file, or strerror(3) text for why it cannot be read. */
export function readTraceFile(path: string): EventsFileRead {
  try {
    return { kind: 'text', text: readFileSync(path, 'utf8') };
  } catch (error) {
    // QEMU's fopen accepts a directory and its first fgets fails: no events, no error.
    if ((error as NodeJS.ErrnoException).code === 'EISDIR') return { kind: 'text', text: '' };
    return { kind: 'error', message: errnoText(error) };
  }
}

/**
 * Opens the -T file= as the reference does after parsing, before the socket: truncated,
 * created 0666 & ~umask, as root (so before the privilege drop). Returns the fd, or the
 * message to exit with.
 */
export function openTraceFile(template: string, pid: number): { fd: number } | { error: string } {
  const name = expandLogfileTemplate(template, pid);
  try {
    return { fd: openSync(name, 'w') };
  } catch (error) {
    return { error: `Error opening logfile ${name}: ${errnoText(error)}` };
  }
}
