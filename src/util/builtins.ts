/**
 * Node built-in modules that only some images use, loaded on first use rather than when
 * imported: each costs milliseconds of start-up to compile (docs/performance.md, start-up).
 * child_process: only the root image's janitor and the -d launcher start processes;
 * worker_threads: the image that drops privileges never starts a thread, nor does one VM's
 * serving image (it and the streams it pulls in are 1.7 MB of RSS, issue 16); crypto (some 17
 * internal modules): only for a new staging name and for key fingerprints in log lines.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function childProcess(): typeof import('node:child_process') {
  return require('node:child_process') as typeof import('node:child_process');
}

export function nodeCrypto(): typeof import('node:crypto') {
  return require('node:crypto') as typeof import('node:crypto');
}

export function workerThreads(): typeof import('node:worker_threads') {
  return require('node:worker_threads') as typeof import('node:worker_threads');
}
