import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Session, type Step } from '../../src/protocol/session.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { encodeResponse, MAX_RESPONSE_SIZE } from '../../src/protocol/response.js';
import { ScsiStatus } from '../../src/scsi/constants.js';
import { PR_HELPER_FEATURE_CLEANUP as CLEANUP } from '../../src/protocol/constants.js';
import { cleanupCdb, concat, decodeHeader, prInCdb, prOutCdb, prOutParams } from '../support/builders.js';

const HANDSHAKE_OK = new Uint8Array([0, 0, 0, 0]);

/**
 * Drives a session like the connection does: reads at most need().length bytes, never across
 * a cut (a sendmsg boundary); an fd sent at offset o arrives with the read covering byte o.
 * An executed request is answered at once, so the next request can be read.
 */
function drive(stream: Uint8Array, fdAt: ReadonlyMap<number, number[]>, cuts: readonly number[]): Step[] {
  const session = new Session(CLEANUP);
  const steps: Step[] = [];
  const boundaries = [...new Set([...cuts.filter((c) => c > 0 && c < stream.length), stream.length])].sort((a, b) => a - b);
  let at = 0;
  for (const end of boundaries) {
    while (at < end) {
      const need = session.need();
      if (need === null) return steps;
      const n = Math.min(need.length, end - at);
      const fds = [...fdAt].filter(([o]) => o >= at && o < at + n).flatMap(([, f]) => f);
      const step = session.feed(stream.subarray(at, at + n), fds);
      at += n;
      if (step.kind !== 'need-more' || step.discardFds.length > 0) steps.push(step);
      if (step.kind === 'close') return steps;
      if (step.kind === 'execute') {
        session.respond(step.request, { status: ScsiStatus.GOOD, sense: new Uint8Array(0), data: new Uint8Array(0) });
      }
    }
  }
  return steps;
}

function summary(steps: Step[]): string[] {
  return steps.map((s) => {
    if (s.kind === 'execute') {
      return `execute op=${s.request.opcode} fd=${s.request.fd} len=${s.request.transferLength} params=${Buffer.from(s.request.parameters).toString('hex')} discard=${s.discardFds}`;
    }
    if (s.kind === 'close') return `close ${s.error.reason} discard=${s.discardFds}`;
    return `discard=${s.discardFds}`;
  });
}

describe('Session handshake', () => {
  test('greeting: no feature by default, as upstream; the CLEANUP word when enabled; big-endian', () => {
    assert.deepEqual([...new Session().greeting()], [0, 0, 0, 0]);
    assert.deepEqual([...new Session(CLEANUP).greeting()], [0, 0, 0, 1]);
  });

  const replies = [[0, true, true], [1, false, true], [2, false, false], [0x01000000, false, false], [0xffffffff, false, false]] as const;
  for (const [reply, okByDefault, okWithCleanup] of replies) {
    for (const [features, ok] of [[0, okByDefault], [CLEANUP, okWithCleanup]] as const) {
      test(`reply 0x${reply.toString(16)} to features ${features} is ${ok ? 'accepted' : 'refused'}`, () => {
        const s = new Session(features);
        const bytes = new Uint8Array(4);
        new DataView(bytes.buffer).setUint32(0, reply);
        const step = s.feed(bytes, []);
        if (ok) {
          assert.equal(step.kind, 'need-more');
          assert.equal(s.phase, 'cdb');
          assert.equal(s.clientFeatures, reply);
        } else {
          assert.equal(step.kind, 'close');
          assert.ok(step.kind === 'close' && step.error instanceof ProtocolError);
          assert.equal(step.kind === 'close' && step.error.reason, 'bad-handshake');
        }
      });
    }
  }

  test('opcode 0xFF is an invalid CDB unless CLEANUP is announced, as for upstream helpers', () => {
    const plain = new Session();
    plain.feed(HANDSHAKE_OK, []);
    const refused = plain.feed(cleanupCdb(), [7]);
    assert.equal(refused.kind, 'close');
    assert.equal(refused.kind === 'close' && refused.error.reason, 'invalid-opcode');
    assert.deepEqual(refused.discardFds, [7]);
    const worker = Session.afterHandshake(0).feed(cleanupCdb(), [8]);
    assert.equal(worker.kind === 'close' && worker.error.reason, 'invalid-opcode');
    const extended = Session.afterHandshake(0, CLEANUP).feed(cleanupCdb(), [9]);
    assert.equal(extended.kind, 'execute');
  });

  test('fds that come with the handshake are handed back for closing', () => {
    const s = new Session();
    const step = s.feed(HANDSHAKE_OK.subarray(0, 2), [7, 8]);
    assert.deepEqual(step, { kind: 'need-more', discardFds: [7, 8] });
  });

  test('feeding more than needed is a programming error', () => {
    assert.throws(() => new Session().feed(new Uint8Array(5), []), RangeError);
  });
});

describe('Session requests at every split offset', () => {
  const prIn = prInCdb({ sa: 0, allocationLength: 0x2000 });
  const params = prOutParams({ key: 0x1234n, saKey: 0xabcdn });
  const prOut = prOutCdb({ sa: 0, paramLength: 24 });
  const golden = concat(HANDSHAKE_OK, prIn, prOut, params, cleanupCdb());
  const cdb1 = 4;
  const cdb2 = cdb1 + 16;
  const cdb3 = cdb2 + 16 + 24;

  function run(cuts: number[], fdOffsets: [number, number, number]): string[] {
    const fdAt = new Map<number, number[]>();
    fdOffsets.forEach((off, i) => fdAt.set(off, [...(fdAt.get(off) ?? []), 10 + i]));
    return summary(drive(golden, fdAt, cuts));
  }

  const expected = [
    'execute op=94 fd=10 len=8192 params= discard=',
    `execute op=95 fd=11 len=24 params=${Buffer.from(params).toString('hex')} discard=`,
    'execute op=255 fd=12 len=0 params= discard=',
  ];

  test('whole stream at once', () => {
    assert.deepEqual(run([], [cdb1, cdb2, cdb3]), expected);
  });

  test('one cut at every offset, fd on every fragment of each CDB', () => {
    for (let cut = 1; cut < golden.length; cut++) {
      // The fd rides on the fragment that starts at the cut, when the cut is inside a CDB.
      const onFragment = (cdb: number): number => (cut > cdb && cut < cdb + 16 ? cut : cdb);
      const fds: [number, number, number] = [onFragment(cdb1), onFragment(cdb2), onFragment(cdb3)];
      assert.deepEqual(run([cut], fds), expected, `cut ${cut}, fds at ${fds}`);
    }
  });

  test('byte by byte, fd on the last CDB byte', () => {
    const cuts = Array.from({ length: golden.length }, (_, i) => i);
    assert.deepEqual(run(cuts, [cdb1 + 15, cdb2 + 15, cdb3 + 15]), expected);
  });

  test('property: any set of cuts gives the same requests', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: golden.length - 1 }), { maxLength: 20 }),
      fc.integer({ min: 0, max: 15 }), (cuts, fdOff) => {
        assert.deepEqual(run(cuts, [cdb1 + fdOff, cdb2 + fdOff, cdb3 + fdOff]), expected);
      }), { numRuns: 300 });
  });
});

describe('Session framing violations (docs/protocol.md §3.5)', () => {
  function afterHandshake(): Session {
    const s = new Session(CLEANUP);
    s.feed(HANDSHAKE_OK, []);
    return s;
  }

  test('two fds in one read: all closed, connection closed', () => {
    const s = afterHandshake();
    const step = s.feed(prInCdb({ sa: 0, allocationLength: 8 }), [5, 6]);
    assert.equal(step.kind, 'close');
    assert.equal(step.kind === 'close' && step.error.reason, 'too-many-fds');
    assert.deepEqual(step.discardFds.sort(), [5, 6]);
  });

  test('fds on two fragments of one CDB: closed at the second', () => {
    const s = afterHandshake();
    const cdb = prInCdb({ sa: 0, allocationLength: 8 });
    assert.equal(s.feed(cdb.subarray(0, 8), [5]).kind, 'need-more');
    const step = s.feed(cdb.subarray(8), [6]);
    assert.equal(step.kind === 'close' && step.error.reason, 'too-many-fds');
    assert.deepEqual(step.discardFds.sort(), [5, 6]);
  });

  test('no fd: closed with the reference message', () => {
    const step = afterHandshake().feed(prInCdb({ sa: 0, allocationLength: 8 }), []);
    assert.equal(step.kind === 'close' && step.error.message, 'No file descriptor in request.');
    assert.deepEqual(step.discardFds, []);
  });

  for (const opcode of [0x00, 0x12, 0x5d, 0x60, 0xfe, 0xa0]) {
    test(`opcode 0x${opcode.toString(16)}: fd closed, connection closed`, () => {
      const cdb = new Uint8Array(16);
      cdb[0] = opcode;
      const step = afterHandshake().feed(cdb, [9]);
      assert.equal(step.kind === 'close' && step.error.reason, 'invalid-opcode');
      assert.deepEqual(step.discardFds, [9]);
    });
  }

  test('transfer length 8192 accepted, 8193 closed before any parameter is read', () => {
    const ok = afterHandshake();
    assert.deepEqual(ok.feed(prOutCdb({ sa: 0, paramLength: 8192 }), [3]), { kind: 'need-more', discardFds: [] });
    assert.deepEqual(ok.need(), { length: 8192, acceptsFds: false });
    const bad = afterHandshake().feed(prOutCdb({ sa: 0, paramLength: 8193 }), [3]);
    assert.equal(bad.kind === 'close' && bad.error.reason, 'transfer-too-long');
    assert.deepEqual(bad.discardFds, [3]);
    const badIn = afterHandshake().feed(prInCdb({ sa: 0, allocationLength: 0xffff }), [3]);
    assert.equal(badIn.kind === 'close' && badIn.error.reason, 'transfer-too-long');
  });

  test('PR OUT bytes 5-6 are ignored (QEMU uses BE16 of bytes 7-8, docs/protocol.md §3.4)', () => {
    const s = afterHandshake();
    const cdb = prOutCdb({ sa: 0, paramLength: 0x00010018 });
    assert.equal(s.feed(cdb, [3]).kind, 'need-more');
    assert.deepEqual(s.need(), { length: 24, acceptsFds: false });
  });

  test('fds that come with PR OUT parameters are discarded, the request proceeds', () => {
    const s = afterHandshake();
    s.feed(prOutCdb({ sa: 0, paramLength: 24 }), [3]);
    const step = s.feed(prOutParams(), [4]);
    assert.equal(step.kind, 'execute');
    assert.deepEqual(step.discardFds, [4]);
    assert.equal(step.kind === 'execute' && step.request.fd, 3);
  });

  test('EOF inside parameters: fd returned, reference message', () => {
    const s = afterHandshake();
    s.feed(prOutCdb({ sa: 0, paramLength: 24 }), [3]);
    s.feed(new Uint8Array(10), []);
    const end = s.end();
    assert.equal(end.error?.message, 'Unexpected end-of-file before all data were read');
    assert.deepEqual(end.discardFds, [3]);
  });

  test('EOF inside a CDB returns the collected fd; EOF between requests is clean', () => {
    const s = afterHandshake();
    s.feed(new Uint8Array(3), [3]);
    assert.deepEqual(s.end().discardFds, [3]);
    assert.deepEqual(afterHandshake().end(), { error: null, discardFds: [] });
  });

  test('PR OUT with parameter list length 0 executes at once', () => {
    const step = afterHandshake().feed(prOutCdb({ sa: 3, paramLength: 0 }), [3]);
    assert.equal(step.kind, 'execute');
  });
});

describe('Session responses', () => {
  function execute(cdb: Uint8Array, params?: Uint8Array): { s: Session; step: Step } {
    const s = new Session(CLEANUP);
    s.feed(HANDSHAKE_OK, []);
    let step = s.feed(cdb, [3]);
    if (params) step = s.feed(params, []);
    return { s, step };
  }

  test('PR IN GOOD data is clipped to the allocation length', () => {
    const { s, step } = execute(prInCdb({ sa: 0, allocationLength: 10 }));
    assert.ok(step.kind === 'execute');
    const out = s.respond(step.request, { status: 0, sense: new Uint8Array(0), data: new Uint8Array(24).fill(7) });
    assert.equal(out.length, 104 + 10);
    assert.equal(decodeHeader(out).size, 10);
    assert.equal(s.phase, 'cdb');
  });

  test('PR OUT and CLEANUP never carry data, whatever the executor returns', () => {
    for (const cdb of [prOutCdb({ sa: 0, paramLength: 0 }), cleanupCdb()]) {
      const { s, step } = execute(cdb);
      assert.ok(step.kind === 'execute');
      const out = s.respond(step.request, { status: 0, sense: new Uint8Array(0), data: new Uint8Array(50) });
      assert.equal(out.length, 104);
      assert.equal(decodeHeader(out).size, 0);
    }
  });

  test('non-GOOD PR IN carries no data; sense is zero-filled to 96 bytes', () => {
    const { s, step } = execute(prInCdb({ sa: 0, allocationLength: 100 }));
    assert.ok(step.kind === 'execute');
    const out = s.respond(step.request, { status: 2, sense: new Uint8Array([0x70, 0, 5]), data: new Uint8Array(50) });
    const h = decodeHeader(out);
    assert.equal(h.status, 2);
    assert.equal(h.size, 0);
    assert.deepEqual([...h.sense.subarray(0, 3)], [0x70, 0, 5]);
    assert.ok(h.sense.subarray(3).every((b) => b === 0));
  });

  test('property: never more data than asked, never data outside PR IN GOOD', () => {
    fc.assert(fc.property(
      fc.constantFrom(0x5e, 0x5f, 0xff), fc.integer({ min: 0, max: 8192 }), fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 9000 }), fc.integer({ min: 0, max: 200 }),
      (op, len, status, dataLen, senseLen) => {
        const cdb = op === 0x5e ? prInCdb({ sa: 0, allocationLength: len }) : op === 0x5f ? prOutCdb({ sa: 0, paramLength: 0 }) : cleanupCdb();
        const { s, step } = execute(cdb);
        assert.ok(step.kind === 'execute');
        const out = s.respond(step.request, { status, sense: new Uint8Array(senseLen).fill(1), data: new Uint8Array(dataLen) });
        const h = decodeHeader(out);
        assert.equal(out.length, 104 + h.size);
        if (op !== 0x5e || status !== 0) assert.equal(h.size, 0);
        else assert.equal(h.size, Math.min(len, dataLen));
      }), { numRuns: 500 });
  });

  test('property: a response encoded into a reused buffer is byte for byte the allocated one', () => {
    // The fast-path worker encodes every response into one buffer: what an earlier, longer
    // response left there (sense bytes above a short sense, data) must not show.
    const buffer = new Uint8Array(MAX_RESPONSE_SIZE).fill(0xee);
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 8192 }), fc.constantFrom(0, 2, 0x18), fc.uint8Array({ maxLength: 9000 }), fc.uint8Array({ maxLength: 200 }),
      (len, status, data, sense) => {
        const outcome = { status, sense, data };
        const fresh = execute(prInCdb({ sa: 0, allocationLength: len }));
        const reused = execute(prInCdb({ sa: 0, allocationLength: len }));
        assert.ok(fresh.step.kind === 'execute' && reused.step.kind === 'execute');
        const expected = fresh.s.respond(fresh.step.request, outcome);
        const got = reused.s.respond(reused.step.request, outcome, buffer);
        assert.equal(got.buffer, buffer.buffer, 'a view of the buffer');
        assert.deepEqual(got, expected);
      }), { numRuns: 300 });
    assert.throws(() => encodeResponse({ opcode: 0x5e, transferLength: 8192 }, { status: 0, sense: new Uint8Array(0), data: new Uint8Array(8192) },
      new Uint8Array(MAX_RESPONSE_SIZE - 1)), RangeError);
  });
});

describe('Session fuzz', () => {
  test('random streams and fds: every fd handed back exactly once, no throw', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.nat({ max: 3 })), { maxLength: 30 }), (chunks) => {
      const s = new Session();
      let nextFd = 100;
      const given = new Set<number>();
      const returned: number[] = [];
      for (const [bytes, nfds] of chunks) {
        let at = 0;
        const fds = Array.from({ length: nfds }, () => nextFd++);
        fds.forEach((f) => given.add(f));
        let pending: number[] = fds;
        while (at < bytes.length) {
          const need = s.need();
          if (need === null) break;
          const n = Math.min(need.length, bytes.length - at);
          const step = s.feed(bytes.subarray(at, at + n), pending);
          pending = [];
          at += n;
          returned.push(...step.discardFds);
          if (step.kind === 'execute') {
            returned.push(step.request.fd);
            s.respond(step.request, { status: 0, sense: new Uint8Array(0), data: new Uint8Array(0) });
          }
        }
        if (s.need() === null) {
          returned.push(...pending);
          break;
        }
      }
      returned.push(...s.end().discardFds);
      const sorted = [...returned].sort((a, b) => a - b);
      assert.equal(new Set(returned).size, returned.length, 'an fd was handed back twice');
      for (const fd of sorted) assert.ok(given.has(fd));
      assert.equal(returned.length, given.size, 'an fd was lost');
    }), { numRuns: 1000 });
  });
});

describe('Session hand-over between threads (src/server/fast-path.ts)', () => {
  /** A request fed in one piece to a fresh session after the handshake. */
  function executeStep(session: Session, bytes: Uint8Array, fd: number): Step {
    return session.feed(bytes, [fd]);
  }

  test('afterHandshake starts at rest, between requests, with the given features', () => {
    const s = Session.afterHandshake(1);
    assert.equal(s.phase, 'cdb');
    assert.equal(s.atRest, true);
    assert.equal(s.clientFeatures, 1);
    assert.deepEqual(s.need(), { length: 16, acceptsFds: true });
  });

  test('atRest is false during the handshake, mid-CDB, waiting for parameters and executing', () => {
    const s = new Session();
    assert.equal(s.atRest, false, 'handshake');
    s.feed(new Uint8Array(4), []);
    assert.equal(s.atRest, true, 'after the handshake');
    s.feed(prInCdb({ sa: 0, allocationLength: 8 }).subarray(0, 3), []);
    assert.equal(s.atRest, false, 'three CDB bytes');
    const t = Session.afterHandshake(0);
    t.feed(new Uint8Array(0), [7]);
    assert.equal(t.atRest, false, 'an fd without bytes');
    const u = Session.afterHandshake(0);
    u.feed(prOutCdb({ sa: 0, paramLength: 24 }), [7]);
    assert.equal(u.atRest, false, 'waiting for parameters');
    const v = Session.afterHandshake(0);
    assert.equal(executeStep(v, prInCdb({ sa: 0, allocationLength: 8 }), 7).kind, 'execute');
    assert.equal(v.atRest, false, 'executing');
  });

  test('a request read by one session is answered by another that adopts it, byte for byte as the first would', () => {
    const reader = Session.afterHandshake(0);
    const step = executeStep(reader, prInCdb({ sa: 0, allocationLength: 8 }), 9);
    assert.equal(step.kind, 'execute');
    if (step.kind !== 'execute') return;
    const owner = Session.afterHandshake(0);
    owner.adopt(step.request);
    assert.equal(owner.phase, 'executing');
    const outcome = { status: ScsiStatus.GOOD, sense: new Uint8Array(0), data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]) };
    const expected = reader.respond(step.request, outcome);
    assert.deepEqual(owner.respond(step.request, outcome), expected);
    assert.equal(owner.atRest, true);
  });

  test('adopt refuses a session that is not at rest (nothing is overwritten)', () => {
    const request = { opcode: 0x5e, cdb: prInCdb({ sa: 0, allocationLength: 8 }), fd: 3, transferLength: 8, parameters: new Uint8Array(0) };
    assert.throws(() => new Session().adopt(request), /handshake/);
    const partial = Session.afterHandshake(0);
    partial.feed(prInCdb({ sa: 0, allocationLength: 8 }).subarray(0, 5), [4]);
    assert.throws(() => partial.adopt(request), /partial/);
    assert.equal(partial.end().discardFds[0], 4, 'the partial request keeps its fd');
  });

  test('replaying the chunks a worker read gives the same steps at every split offset', () => {
    const cdb = prOutCdb({ sa: 0, paramLength: 24 });
    const params = prOutParams({ saKey: 0x1234n });
    const whole = concat(cdb, params);
    for (let split = 1; split < whole.length; split++) {
      const direct = Session.afterHandshake(0);
      const replayed = Session.afterHandshake(0);
      const first = whole.subarray(0, Math.min(split, 16));
      const steps = [direct.feed(first, [5])];
      // The replaying session gets the same first chunk (as a worker hands it back) ...
      assert.deepEqual(replayed.feed(first.slice(), [5]), steps[0]);
      // ... and both read the rest the same way.
      let at = first.length;
      while (at < whole.length) {
        const need = direct.need();
        assert.ok(need);
        const piece = whole.subarray(at, at + Math.min(need.length, Math.max(1, split)));
        assert.deepEqual(replayed.feed(piece, []), direct.feed(piece, []));
        at += piece.length;
      }
      assert.equal(direct.phase, 'executing');
      assert.equal(replayed.phase, 'executing');
    }
  });
});
