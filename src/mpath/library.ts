/**
 * libmpathpersist on its own thread (thread-main.ts): typed requests in, return codes and
 * typed responses out, plus where the library is and which ABI it has. The descriptor bytes
 * are exactly what the library structures hold (docs/protocol.md §5.3-5.4); translation to and from SCSI
 * is translation.ts and full-status.ts.
 */
import type { Worker } from 'node:worker_threads';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { MPATH_PRIN_RCAP_SA } from './abi.js';
import type { MpathReply, MpathRequest, PrOutArguments, PrinResponse } from './types.js';
import type { MultipathToolsVersion } from './path-repair.js';
import { workerThreads } from '../util/builtins.js';
import { workerEntry } from '../util/worker-entry.js';

/**
 * `struct prin_resp` as the library left it for READ KEYS, READ RESERVATION or REPORT
 * CAPABILITIES (READ FULL STATUS is decoded on the multipath thread: full-status.ts).
 */
export function decodePrinResponse(bytes: Uint8Array, sa: number): PrinResponse {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (sa === MPATH_PRIN_RCAP_SA) {
    return {
      kind: 'capabilities', length: view.getUint16(0, true), flags0: bytes[2] ?? 0, flags1: bytes[3] ?? 0,
      typeMask: view.getUint16(4, true),
    };
  }
  // prin_readdescr / prin_resvdescr: generation, additional_length, then the SPC bytes.
  return { kind: 'list', generation: view.getUint32(0, true), additionalLength: view.getUint32(4, true), body: bytes.subarray(8) };
}

/** Where distributions install the library (the soname alone would also search ld.so.cache). */
const LIBRARY_DIRECTORIES = [
  '/lib', '/usr/lib', '/lib64', '/usr/lib64', '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu',
  '/lib/aarch64-linux-gnu', '/usr/lib/aarch64-linux-gnu',
];
export const MPATH_LIBRARY_SONAME = 'libmpathpersist.so.0';

/** The library file to load, or null when it is not installed. `override` wins (tests). */
export function findMpathLibrary(override: string | undefined): string | null {
  if (override !== undefined) return existsSync(override) ? override : null;
  for (const dir of LIBRARY_DIRECTORIES) {
    const path = `${dir}/${MPATH_LIBRARY_SONAME}`;
    if (existsSync(path)) return path;
  }
  return null;
}

/**
 * The library's ABI version, from its ELF symbol versions (LIBMPATHPERSIST_x.y.z; 2.1.0 in
 * multipath-tools 0.9.4), or null when unreadable. The library has no version call.
 */
export function mpathLibraryAbi(path: string): string | null {
  try {
    const text = readFileSync(path).toString('latin1');
    const versions = [...text.matchAll(/LIBMPATHPERSIST_(\d+)\.(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])]);
    versions.sort((a, b) => ((a[0] ?? 0) - (b[0] ?? 0)) || ((a[1] ?? 0) - (b[1] ?? 0)) || ((a[2] ?? 0) - (b[2] ?? 0)));
    const last = versions.at(-1);
    return last ? `LIBMPATHPERSIST_${last.join('.')}` : null;
  } catch {
    return null;
  }
}

/** libmpathcmd beside a libmpathpersist (they come from one multipath-tools build). */
export function mpathCmdOf(persistPath: string): string {
  return `${dirname(persistPath)}/libmpathcmd.so.0`;
}

/**
 * Whether this libmpathcmd reads MULTIPATH_SOCKET_NAME (multipath-tools 0.12 and later:
 * the name is in its read-only data, for getenv), or null when unreadable. Its symbol
 * versions do not tell: LIBMPATHCMD_1.1.0 predates the variable.
 */
export function mpathCmdReadsSocketVariable(cmdPath: string): boolean | null {
  try {
    return readFileSync(cmdPath).includes('MULTIPATH_SOCKET_NAME');
  } catch {
    return null;
  }
}

/** How long the start-up probe waits for multipathd's reply. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * Asks multipathd "show daemon" through libmpathcmd (mpath_connect(), as libmpathpersist
 * does for its key updates), on a thread of its own that ends with the answer. Resolves
 * with the reply ("pid 123 idle"), rejects with why there is none.
 */
export function probeMultipathd(cmdPath: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<string> {
  const worker = new (workerThreads().Worker)(workerEntry(PROBE_MODULE), { workerData: { path: cmdPath, timeoutMs }, stdout: false, stderr: false });
  worker.unref();
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', () => reject(new Error('the probe thread ended without an answer')));
    worker.once('message', (message: { reply?: string; failure?: string }) => {
      if (message.reply !== undefined) resolve(message.reply);
      else reject(new Error(message.failure ?? 'no answer'));
    });
  });
}

function asVersion(value: unknown): MultipathToolsVersion | null {
  if (!Array.isArray(value) || value.length !== 3) return null;
  const [a, b, c] = value as unknown[];
  return typeof a === 'number' && typeof b === 'number' && typeof c === 'number' ? [a, b, c] : null;
}

const PROBE_MODULE = new URL('./probe-main.js', import.meta.url);
const WORKER_MODULE = new URL('./thread-main.js', import.meta.url);

type Pending = (reply: MpathReply) => void;

export class MpathLibrary {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  /** The multipath-tools release of the loaded library, or null when it cannot tell. */
  readonly version: MultipathToolsVersion | null;

  private constructor(worker: Worker, version: MultipathToolsVersion | null) {
    this.#worker = worker;
    this.version = version;
    worker.on('message', (message: { type: string; reply?: MpathReply }) => {
      if (message.type !== 'reply' || !message.reply) return;
      const done = this.#pending.get(message.reply.id);
      this.#pending.delete(message.reply.id);
      done?.(message.reply);
    });
    worker.on('exit', () => {
      // The thread died: every waiting request gets the library's "other error".
      for (const [id, done] of this.#pending) done({ id, code: -1, response: null });
      this.#pending.clear();
    });
  }

  /**
   * Starts the thread and initialises the library; rejects with the reason it cannot.
   * `logToSyslog`: send the library's own messages to syslog (stderr is the journal).
   */
  static open(path: string, logToSyslog = false): Promise<MpathLibrary> {
    const worker = new (workerThreads().Worker)(workerEntry(WORKER_MODULE), { workerData: { path, logToSyslog }, stdout: false, stderr: false });
    return new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error('the multipath thread exited during start-up'));
      worker.once('exit', onExit);
      worker.once('error', (error) => reject(error));
      worker.once('message', (message: { type: string; message?: string; version?: unknown }) => {
        worker.off('exit', onExit);
        if (message.type === 'ready') {
          worker.unref();
          resolve(new MpathLibrary(worker, asVersion(message.version)));
        } else {
          reject(new Error(message.message ?? 'initialisation failed'));
          void worker.terminate();
        }
      });
    });
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  #call(request: MpathRequest): Promise<MpathReply> {
    return new Promise((resolve) => {
      this.#pending.set(request.id, resolve);
      this.#worker.postMessage(request);
    });
  }

  async reserveIn(fd: number, sa: number, noisy: number, verbose: number): Promise<{ code: number; response: PrinResponse | null }> {
    const reply = await this.#call({ id: this.#nextId++, op: 'in', fd, sa, noisy, verbose });
    if (reply.fullStatus) return { code: reply.code, response: reply.fullStatus };
    return { code: reply.code, response: reply.response ? decodePrinResponse(reply.response, sa) : null };
  }

  async reserveOut(fd: number, call: PrOutArguments, noisy: number, verbose: number): Promise<number> {
    const reply = await this.#call({ id: this.#nextId++, op: 'out', fd, ...call, noisy, verbose });
    return reply.code;
  }

  /**
   * Sends commands to multipathd one by one (docs/protocol.md §5.6), stopping at the first whose reply
   * is not "ok". Resolves with null on success, else the failure in words.
   */
  async multipathd(commands: string[], timeoutMs: number): Promise<string | null> {
    const reply = await this.#call({ id: this.#nextId++, op: 'multipathd', commands, timeoutMs });
    return reply.code === 0 ? null : reply.failure ?? 'the multipath thread ended';
  }

  close(): void {
    void this.#worker.terminate();
  }
}
