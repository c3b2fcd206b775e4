/**
 * Starts a helper (ours, or Debian's C qemu-pr-helper for differential runs) on a temporary
 * socket and waits for readiness: the socket accepts a connection, raced against the child
 * exiting (with its stderr in the error). No sleeps.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PrClient } from './client.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root (dist/test/support → ../../..). */
export const REPO_ROOT = resolve(here, '..', '..', '..');
export const OUR_HELPER = join(REPO_ROOT, 'bin', 'qemu-pr-helper');
export const REFERENCE_HELPER = '/usr/bin/qemu-pr-helper';

export interface Helper {
  child: ChildProcess;
  pid: number;
  socketPath: string;
  dir: string;
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the child has exited. */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  fdCount(): number;
  cleanup(): void;
}

export interface StartOptions {
  binary?: string;
  args?: string[];
  /** Use this socket path instead of a fresh one under a temp dir. */
  socketPath?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export function tempDir(prefix = 'prh-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function pollUntil(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

export function spawnHelper(opts: StartOptions = {}): Helper {
  const dir = tempDir();
  const socketPath = opts.socketPath ?? join(dir, 'pr.sock');
  const binary = opts.binary ?? OUR_HELPER;
  const args = opts.args ?? ['-k', socketPath];
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'], env: opts.env ?? process.env });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<number | string>((res) => {
    child.on('exit', (code, signal) => res(code ?? signal ?? -1));
  });
  const pid = child.pid ?? -1;
  return {
    child,
    pid,
    socketPath,
    dir,
    stderr: () => err,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    fdCount: () => readdirSync(`/proc/${pid}/fd`).length,
    cleanup() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Spawns a helper and waits until its socket accepts and answers the handshake. */
export async function startHelper(opts: StartOptions = {}): Promise<Helper> {
  const helper = spawnHelper(opts);
  let exitedWith: number | string | null = null;
  void helper.exited.then((c) => {
    exitedWith = c;
  });
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  for (;;) {
    if (exitedWith !== null) {
      helper.cleanup();
      throw new Error(`Helper exited with ${exitedWith} before listening: ${helper.stderr()}`);
    }
    if (existsSync(helper.socketPath)) {
      try {
        const probe = await PrClient.connect(helper.socketPath);
        probe.close();
        return helper;
      } catch {
        // bound but not yet listening (the C helper binds before listen): try again
      }
    }
    if (Date.now() > deadline) {
      helper.cleanup();
      throw new Error(`Helper did not listen within the deadline: ${helper.stderr()}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Waits until `fdCount()` settles back to `expected` (closing is asynchronous). */
export async function expectFdCount(helper: Helper, expected: number, timeoutMs = 5000): Promise<void> {
  await pollUntil(() => helper.fdCount() === expected, `fd count ${expected} (now ${helper.fdCount()})`, timeoutMs);
}

/** Runs `fn` until `cond` or a deadline. */
export function hasReferenceHelper(): boolean {
  return existsSync(REFERENCE_HELPER);
}
