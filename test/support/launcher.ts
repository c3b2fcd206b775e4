/**
 * Starts a helper (ours, or Debian's C qemu-pr-helper for differential runs and the
 * benchmarks) on a temporary socket and waits for readiness: the socket accepts a connection
 * and the helper's feature word arrives, raced against the child exiting (with its stderr in
 * the error). Waiting sleeps between attempts, backing off; it never spins.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PrClient } from './client.js';
import { prInCdb } from './builders.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root (dist/test/support → ../../..). */
export const REPO_ROOT = resolve(here, '..', '..', '..');
export const OUR_HELPER = join(REPO_ROOT, 'bin', 'qemu-pr-helper');
export const REFERENCE_HELPER = '/usr/bin/qemu-pr-helper';
const STDERR_KEEP = 64 * 1024;

export interface Helper {
  child: ChildProcess;
  pid: number;
  socketPath: string;
  dir: string;
  stderr(): string;
  /** process.hrtime.bigint() just before the spawn: start-up times count from here. */
  spawnedAt: bigint;
  /** process.hrtime.bigint() when the child exited; null while it runs. */
  readonly exitedAt: bigint | null;
  /** Resolves with the exit code (or signal name) once the child has exited. */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  fdCount(): number;
  cleanup(): void;
}

/** A helper that answered a handshake. */
export interface ReadyHelper extends Helper {
  /** Spawn → the first handshake's feature word arrived, in ms (hrtime; see connectWhenReady). */
  startupMs: number;
}

export interface StartOptions {
  /** The program to run: a helper, or a wrapper such as setpriv (default: ours). */
  binary?: string;
  /** The whole command line (default: `-k` and the socket path). */
  args?: string[];
  /** Appended to the command line, default or not (e.g. `--enable-cleanup`). */
  extraArgs?: string[];
  /** Use this socket path instead of a fresh one under a temp dir. */
  socketPath?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Descriptors to pass as the child's fd 3, 4, ... */
  extraFds?: number[];
  /** Run through `sh -c 'LISTEN_PID=$$ LISTEN_FDS=<n> exec ...'` (socket activation). */
  listenFds?: string;
}

export function tempDir(prefix = 'prh-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Delays between attempts, unless the caller fixes one: doubling from 1 ms up to 16 ms. */
const FIRST_RETRY_MS = 1;
const MAX_RETRY_MS = 16;
/**
 * The benchmarks' sleep between connect attempts while a helper starts, which sets their
 * timing resolution: with the kernel's timer slack, attempts come about 0.2 ms apart (about
 * a quarter of one core while waiting, where a spin takes all of it).
 */
export const BENCH_RETRY_MS = 0.1;

const futex = new Int32Array(new SharedArrayBuffer(4));

/**
 * Sleeps `ms`. Timers cannot wait less than 1 ms, so a shorter pause is a futex wait (the
 * thread sleeps in the kernel; nothing spins), followed by one turn of the event loop so
 * that a child's exit and output are seen.
 */
async function pause(ms: number): Promise<void> {
  if (ms >= 1) {
    await new Promise((r) => setTimeout(r, ms));
    return;
  }
  Atomics.wait(futex, 0, 0, ms);
  await new Promise((r) => setImmediate(r));
}

/**
 * Calls `probe` until it returns something other than null, and returns that; null once
 * `timeoutMs` have passed. It sleeps between calls: `everyMs` if given, else backing off
 * from 1 ms to 16 ms.
 */
export async function waitFor<T>(probe: () => T | null | Promise<T | null>, timeoutMs: number, everyMs?: number): Promise<T | null> {
  const deadline = Date.now() + timeoutMs;
  let delay = everyMs ?? FIRST_RETRY_MS;
  for (;;) {
    const found = await probe();
    if (found !== null) return found;
    if (Date.now() > deadline) return null;
    await pause(delay);
    if (everyMs === undefined) delay = Math.min(2 * delay, MAX_RETRY_MS);
  }
}

/** Waits until `cond` holds, checking it as waitFor does; throws after `timeoutMs`. */
export async function pollUntil(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  if (await waitFor(async () => ((await cond()) ? true : null), timeoutMs) === null) {
    throw new Error(`Timed out waiting for ${what}`);
  }
}

export type Readiness =
  /** `at`: process.hrtime.bigint() when the feature word arrived. */
  | { kind: 'ready'; client: PrClient; at: bigint }
  | { kind: 'gone' }
  | { kind: 'timeout' };

export interface ReadyWait {
  /** True once waiting is pointless (the helper exited): checked before every attempt. */
  gone(): boolean;
  timeoutMs: number;
  /** A fixed time between attempts (BENCH_RETRY_MS for the benchmarks); else backing off. */
  everyMs?: number;
}

/**
 * Connects to `socketPath` until the helper accepts and its 4-byte feature word arrives,
 * and answers it (0, as QEMU does). Until the socket listens, connect() fails at once
 * (ENOENT, or ECONNREFUSED between the C helper's bind and listen) and is tried again
 * after a sleep; once it succeeds, the feature word is awaited as an event, so `at` is
 * exact to within the retry time. A connection accepted and then closed (a helper that
 * fails or restarts) is tried again too.
 */
export async function connectWhenReady(socketPath: string, wait: ReadyWait): Promise<Readiness> {
  const deadline = Date.now() + wait.timeoutMs;
  const result = await waitFor(async (): Promise<Readiness | null> => {
    if (wait.gone()) return { kind: 'gone' };
    let client: PrClient;
    try {
      client = PrClient.open(socketPath);
    } catch {
      return null; // not bound, or not listening yet
    }
    try {
      await client.handshake(0, Math.max(1, deadline - Date.now()));
      return { kind: 'ready', client, at: process.hrtime.bigint() };
    } catch {
      client.close();
      return null;
    }
  }, wait.timeoutMs, wait.everyMs);
  return result ?? { kind: 'timeout' };
}

export function spawnHelper(opts: StartOptions = {}): Helper {
  const dir = tempDir();
  const socketPath = opts.socketPath ?? join(dir, 'pr.sock');
  const binary = opts.binary ?? OUR_HELPER;
  const args = [...(opts.args ?? ['-k', socketPath]), ...(opts.extraArgs ?? [])];
  const stdio = ['ignore', 'ignore', 'pipe', ...(opts.extraFds ?? [])] as const;
  const spawnedAt = process.hrtime.bigint();
  // LISTEN_PID must be the helper's own pid: set it in a shell that then execs the helper.
  const child = opts.listenFds === undefined
    ? spawn(binary, args, { stdio: [...stdio], env: opts.env ?? process.env })
    : spawn('/bin/sh', ['-c', `LISTEN_PID=$$ LISTEN_FDS='${opts.listenFds}' exec "$0" "$@"`, binary, ...args],
      { stdio: [...stdio], env: opts.env ?? process.env });
  let err = '';
  // Keep the last 64 KiB only: a long fuzz or soak run makes the helper log millions of
  // closed connections (a 17-minute soak once overflowed a string here).
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err = (err + d).slice(-STDERR_KEEP);
  });
  let exitedAt: bigint | null = null;
  const exited = new Promise<number | string>((res) => {
    child.on('exit', (code, signal) => {
      exitedAt = process.hrtime.bigint();
      res(code ?? signal ?? -1);
    });
  });
  const pid = child.pid ?? -1;
  return {
    child,
    pid,
    socketPath,
    dir,
    stderr: () => err,
    spawnedAt,
    get exitedAt() {
      return exitedAt;
    },
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

/** A ready helper with the connection that completed the first handshake still open. */
export interface ConnectedHelper extends ReadyHelper {
  /** The client of the first handshake: the caller closes it. */
  client: PrClient;
  /** process.hrtime.bigint() when that handshake's feature word arrived. */
  readyAt: bigint;
}

/**
 * startHelper, keeping the first connection open (the benchmark times the first answer
 * on it).
 */
export async function startHelperConnected(opts: StartOptions = {}, everyMs?: number): Promise<ConnectedHelper> {
  const helper = spawnHelper(opts);
  const ready = await connectWhenReady(helper.socketPath, {
    gone: () => helper.exitedAt !== null, timeoutMs: opts.timeoutMs ?? 15_000, everyMs,
  });
  if (ready.kind !== 'ready') {
    const why = ready.kind === 'gone' ? `exited with ${await helper.exited} before listening` : 'did not listen within the deadline';
    helper.cleanup();
    throw new Error(`Helper ${why}: ${helper.stderr()}`);
  }
  return Object.assign(helper, { startupMs: Number(ready.at - helper.spawnedAt) / 1e6, client: ready.client, readyAt: ready.at });
}

/**
 * Spawns a helper and waits until its socket accepts and answers the handshake (attempts
 * every `everyMs`, else backing off; see connectWhenReady).
 */
export async function startHelper(opts: StartOptions = {}, everyMs?: number): Promise<ReadyHelper> {
  const helper = await startHelperConnected(opts, everyMs);
  helper.client.close();
  return helper;
}

/** What `p` resolves to, or 'timeout' after `ms`, whichever comes first (leaving no timer behind). */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stops a helper with SIGTERM, kills it if it still runs after `timeoutMs`, and removes its
 * directory. Resolves with its exit status, or 'timeout' when it had to be killed.
 */
export async function stopWithin(helper: Helper, timeoutMs: number): Promise<number | string> {
  const status = await within(helper.stop('SIGTERM'), timeoutMs);
  helper.cleanup();
  return status;
}

export function hasReferenceHelper(): boolean {
  return existsSync(REFERENCE_HELPER);
}

/**
 * Why the C reference cannot run here, or false when it can. It must start as root: it
 * always drops privileges and fails otherwise (docs/protocol.md §1.5 step 10).
 */
export function referenceUnavailable(): string | false {
  if (!hasReferenceHelper()) return `${REFERENCE_HELPER} is not installed (Debian package qemu-system-common)`;
  if (process.getuid?.() !== 0) return `${REFERENCE_HELPER} must run as root (it always drops privileges)`;
  return false;
}

/**
 * Client connections the helper still holds open: its sockets that share the bound name of
 * its listening socket (accepted sockets carry the listener's address in /proc/net/unix).
 * The name is read from the listener itself, since ours is bound under a staging name.
 */
export function openConnections(helper: Helper): number {
  const mine = new Set<string>();
  for (const fd of readdirSync(`/proc/${helper.pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${helper.pid}/fd/${fd}`));
      if (m) mine.add(m[1] ?? '');
    } catch {
      // closed while we looked
    }
  }
  // Num RefCount Protocol Flags Type St Inode Path
  const rows = readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 8 && mine.has(f[6] ?? ''));
  const listener = rows.find((f) => f[3] === '00010000'); // __SO_ACCEPTCON
  if (!listener) return 0;
  return rows.filter((f) => f[7] === listener[7] && f[5] === '03').length;
}

/**
 * Waits until the helper holds no client connection, then returns its fd count: a stable
 * baseline, and after a scenario the number that must equal it (no leak).
 */
export async function idleFdCount(helper: Helper, timeoutMs = 5000): Promise<number> {
  await pollUntil(() => openConnections(helper) === 0, 'the helper to close its connections', timeoutMs);
  return stableFdCount(helper);
}

/**
 * The helper's fd count once two reads 50 ms apart agree: a file open for a moment (a
 * thread reading /proc, a thread loading its modules) is neither a baseline nor a leak.
 */
export async function stableFdCount(helper: Helper, timeoutMs = 3000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = helper.fdCount();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = helper.fdCount();
    if (now === last || Date.now() > deadline) return now;
    last = now;
  }
}

/** SG_IO threads that have finished loading: they name themselves 'prh-sgio'. */
export function loadedSgIoThreads(helper: Helper): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${helper.pid}/task`)) {
    try {
      if (readFileSync(`/proc/${helper.pid}/task/${tid}/comm`, 'utf8').trim() === 'prh-sgio') n++;
    } catch {
      // thread gone
    }
  }
  return n;
}

/**
 * Brings the helper to its steady state, then returns its idle fd count: the baseline for
 * leak checks. SG_IO threads open fds of their own (an event loop each). With the fast path
 * (src/server/fast-path.ts) its two workers start with the first connection, and the main
 * thread's pool starts threads for requests that arrive in pieces (served there): one,
 * and a second as soon as such requests queue up (src/exec/sgio-pool.ts). Without it (-v),
 * only the pool's. Concurrent requests, whole and split in two writes, are sent until the
 * number of loaded SG_IO threads stops growing.
 */
export async function warmBaseline(helper: Helper): Promise<number> {
  const fd = openSync('/dev/null', 'r');
  const cdb = prInCdb({ sa: 0, allocationLength: 8 });
  const burst = async (connections: number): Promise<void> => {
    const clients = await Promise.all(Array.from({ length: connections }, () => PrClient.connect(helper.socketPath)));
    await Promise.all(clients.map(async (c, i) => {
      for (let r = 0; r < 10; r++) {
        if ((i + r) % 2 === 0) {
          c.send(cdb, [fd]);
        } else {
          // A CDB in two writes: the fast path leaves it to the main thread.
          c.send(cdb.subarray(0, 8), [fd]);
          await new Promise((resolve) => setTimeout(resolve, 2));
          c.send(cdb.subarray(8));
        }
        await c.readResponse();
      }
      c.close();
    }));
  };
  let seen = -1;
  let stable = 0;
  try {
    await pollUntil(async () => {
      await burst(16);
      const loaded = loadedSgIoThreads(helper);
      stable = loaded === seen ? stable + 1 : 0;
      seen = loaded;
      return loaded >= 2 && stable >= 2;
    }, 'the SG_IO threads to load');
  } finally {
    closeSync(fd);
  }
  return idleFdCount(helper);
}
