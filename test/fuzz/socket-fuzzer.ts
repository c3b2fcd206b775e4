/**
 * Socket-level fuzzer for a running helper (issue 7 item 3). Each case is a random session
 * built from a seeded generator: a handshake reply (valid or not), then requests with random
 * CDB bytes, transfer lengths around the 8192 limit, 0 to 3 fds of assorted kinds, CDBs and
 * parameter lists cut into random fragments (each its own sendmsg, the fd on a random one),
 * and abrupt closes. A model of docs/protocol.md §3.2-3.7 predicts, for every case, the exact response
 * bytes or the close; any difference, a hang, or a malformed response is a finding.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PrClient, ConnectionClosed } from '../support/client.js';
import { fixedSense96, HEADER_SIZE } from '../support/builders.js';
import { createPipe } from '../../src/sys/fd.js';

/** Small deterministic PRNG (mulberry32), so that a failing case can be replayed by seed. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
  cuts(length: number, max: number): number[] {
    const n = this.int(max + 1);
    return [...new Set(Array.from({ length: n }, () => 1 + this.int(Math.max(1, length - 1))))]
      .filter((c) => c > 0 && c < length).sort((a, b) => a - b);
  }
}

type FdKind = 'null-ro' | 'null-wo' | 'null-rw' | 'dir' | 'file-rw' | 'pipe-r' | 'pipe-w';
const READ_ONLY: ReadonlySet<FdKind> = new Set(['null-ro', 'dir', 'pipe-r']);

/** Descriptors of every kind, opened once and reused by all cases. */
export class FdKit {
  readonly fds: Record<FdKind, number>;
  readonly #dir: string;
  constructor() {
    this.#dir = mkdtempSync(join(tmpdir(), 'prh-fuzz-'));
    const file = join(this.#dir, 'file');
    writeFileSync(file, 'x');
    const [r, w] = createPipe();
    this.fds = {
      'null-ro': openSync('/dev/null', 'r'),
      'null-wo': openSync('/dev/null', 'w'),
      'null-rw': openSync('/dev/null', 'r+'),
      'dir': openSync(this.#dir, 'r'),
      'file-rw': openSync(file, 'r+'),
      'pipe-r': r,
      'pipe-w': w,
    };
  }
  close(): void {
    for (const fd of Object.values(this.fds)) closeSync(fd);
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

const IO_ERROR = fixedSense96(0x0b, 0x00, 0x06);
const INVALID_OPCODE = fixedSense96(0x05, 0x20, 0x00);

type Expect = { kind: 'response'; status: number; sense: Uint8Array; maxSize: number } | { kind: 'close' } | { kind: 'nothing' };

interface Step {
  fragments: { bytes: Uint8Array; fds: number[] }[];
  expect: Expect;
}

export interface CaseResult {
  responses: number;
  closes: number;
}

export class FuzzFinding extends Error {
  constructor(seed: number, message: string) {
    super(`case seed ${seed}: ${message}`);
    this.name = 'FuzzFinding';
  }
}

function split(rng: Rng, bytes: Uint8Array, fds: number[], maxCuts: number): { bytes: Uint8Array; fds: number[] }[] {
  const cuts = [0, ...rng.cuts(bytes.length, maxCuts), bytes.length];
  const parts = cuts.slice(1).map((end, i) => ({ bytes: bytes.subarray(cuts[i] ?? 0, end), fds: [] as number[] }));
  for (const fd of fds) parts[rng.int(parts.length)]?.fds.push(fd);
  return parts;
}

/**
 * Builds one random session and the model's expectation for each of its steps, for a helper
 * announcing `features`: a reply may hold only those bits, and opcode 0xFF is a request only
 * with CLEANUP (bit 0) announced (docs/protocol.md §3.2).
 */
function generate(rng: Rng, kit: FdKit, features: number): { reply: Step; requests: Step[]; abortAt: number | null } {
  // Mostly valid replies (0, or the announced set), and 1 whether announced or not.
  const replyValue = rng.pick([0, 0, 0, 0, 0, features, features, 1, 2, 0x01000000, rng.int(2 ** 32)]);
  const reply = new Uint8Array(4);
  new DataView(reply.buffer).setUint32(0, replyValue >>> 0);
  const replyFds = rng.int(8) === 0 ? [kit.fds['null-rw']] : [];
  const replyOk = ((replyValue >>> 0) & ~features) === 0;
  const opcodes = (features & 1) !== 0 ? [0x5e, 0x5f, 0xff] : [0x5e, 0x5f];
  const steps: Step[] = [];
  let alive = replyOk;
  const count = rng.int(7);
  for (let i = 0; i < count && alive; i++) {
    const opcode = rng.pick([0x5e, 0x5e, 0x5f, 0x5f, 0xff, rng.int(256)]);
    const cdb = rng.bytes(16);
    cdb[0] = opcode;
    const len = rng.pick([0, 1, 8, 24, 100, 8192, 8193, 0xffff, rng.int(9000)]);
    cdb[7] = (len >> 8) & 0xff;
    cdb[8] = len & 0xff;
    const nfds = rng.pick([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 2, 3]);
    const kinds = Array.from({ length: nfds }, () => rng.pick(Object.keys(kit.fds) as FdKind[]));
    const fragments = split(rng, cdb, kinds.map((k) => kit.fds[k]), 4);
    const xfer = opcode === 0xff ? 0 : len; // CLEANUP carries no data (docs/protocol.md §3.4)
    let expect: Expect;
    if (nfds !== 1 || !opcodes.includes(opcode) || xfer > 8192) {
      expect = { kind: 'close' };
      alive = false;
    } else {
      const readOnly = READ_ONLY.has(kinds[0] as FdKind);
      expect = opcode === 0x5e ? { kind: 'response', status: 2, sense: IO_ERROR, maxSize: 0 }
        : opcode === 0x5f ? { kind: 'response', status: 2, sense: readOnly ? INVALID_OPCODE : IO_ERROR, maxSize: 0 }
          : readOnly ? { kind: 'response', status: 2, sense: INVALID_OPCODE, maxSize: 0 }
            : { kind: 'response', status: 0, sense: new Uint8Array(96), maxSize: 0 };
      if (opcode === 0x5f && xfer > 0) {
        const partial = rng.int(6) === 0;
        const params = rng.bytes(partial ? rng.int(xfer) : xfer);
        // fds riding on parameter bytes are discarded by the helper (docs/protocol.md §3.3).
        const paramFds = rng.int(10) === 0 ? [kit.fds['null-ro']] : [];
        if (params.length > 0) fragments.push(...split(rng, params, paramFds, 3));
        if (partial) {
          expect = { kind: 'nothing' };
          alive = false;
        }
      }
    }
    steps.push({ fragments, expect });
  }
  return {
    reply: { fragments: split(rng, reply, replyFds, 2), expect: replyOk ? { kind: 'nothing' } : { kind: 'close' } },
    requests: steps,
    abortAt: rng.int(6) === 0 ? rng.int(Math.max(1, count)) : null,
  };
}

function sendAll(client: PrClient, step: Step): boolean {
  try {
    for (const f of step.fragments) client.send(f.bytes, f.fds);
    return true;
  } catch {
    return false; // the helper already closed: fine when the model expected it
  }
}

/** Runs one case against the helper at `path`; throws FuzzFinding on any mismatch. */
export async function runCase(path: string, seed: number, kit: FdKit, features: number, timeoutMs = 5000): Promise<CaseResult> {
  const rng = new Rng(seed);
  const plan = generate(rng, kit, features);
  const client = PrClient.open(path);
  const result: CaseResult = { responses: 0, closes: 0 };
  try {
    const greeting = await client.read(4, timeoutMs);
    if (new DataView(greeting.buffer, greeting.byteOffset, 4).getUint32(0) !== features) throw new FuzzFinding(seed, 'bad greeting');
    sendAll(client, plan.reply);
    if (plan.reply.expect.kind === 'close') {
      if (!(await client.waitClosed(timeoutMs))) throw new FuzzFinding(seed, 'bad handshake reply not closed');
      result.closes++;
      return result;
    }
    for (const [i, step] of plan.requests.entries()) {
      if (plan.abortAt === i) return result; // abrupt close with requests in flight
      sendAll(client, step);
    }
    for (const step of plan.requests) {
      const e = step.expect;
      if (e.kind === 'nothing') return result;
      if (e.kind === 'close') {
        if (!(await client.waitClosed(timeoutMs))) throw new FuzzFinding(seed, 'framing violation not closed');
        result.closes++;
        return result;
      }
      let r;
      try {
        r = await client.readResponse(timeoutMs);
      } catch (error) {
        throw new FuzzFinding(seed, `expected a response: ${error instanceof ConnectionClosed ? 'closed' : String(error)}`);
      }
      if (r.status !== e.status || r.size > e.maxSize || r.sense.length !== HEADER_SIZE - 8
        || Buffer.compare(Buffer.from(r.sense), Buffer.from(e.sense)) !== 0) {
        throw new FuzzFinding(seed, `response status ${r.status} size ${r.size} sense ${Buffer.from(r.sense.subarray(0, 18)).toString('hex')}, expected status ${e.status}`);
      }
      result.responses++;
    }
    return result;
  } finally {
    client.close();
  }
}

/** Runs `count` cases from `firstSeed`, `concurrency` at a time. */
export interface FuzzOptions {
  count: number;
  firstSeed: number;
  concurrency: number;
  kit: FdKit;
  /** The feature set the helper announces (checked against its greeting). */
  features: number;
  onProgress?: (done: number, totals: CaseResult) => void;
}

export async function fuzz(path: string, opts: FuzzOptions): Promise<CaseResult> {
  const totals: CaseResult = { responses: 0, closes: 0 };
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < opts.count) {
      const seed = opts.firstSeed + next++;
      const r = await runCase(path, seed, opts.kit, opts.features);
      totals.responses += r.responses;
      totals.closes += r.closes;
      done++;
      if (opts.onProgress && done % 1000 === 0) opts.onProgress(done, totals);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return totals;
}
