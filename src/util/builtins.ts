/**
 * Node built-in modules that only some images use, loaded on first use rather than when
 * imported: each costs milliseconds of start-up to compile (docs/performance.md, start-up).
 * child_process: only the root image's janitor and the -d launcher start processes;
 * worker_threads: the image that drops privileges never starts a thread.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function childProcess(): typeof import('node:child_process') {
  return require('node:child_process') as typeof import('node:child_process');
}

export function workerThreads(): typeof import('node:worker_threads') {
  return require('node:worker_threads') as typeof import('node:worker_threads');
}
