/**
 * The pure multipath translation layer (docs/protocol.md §5.3-5.6, §9 items 8, 9, 15). Expected bytes come
 * from the builders below and in test/support/builders.ts, never from the code under test.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  cleanupUnregisterRequest, mapLibraryResult, mpathOutcome, parsePrInRequest, parsePrOutParameters, prInResponseData,
  type PrOutCall,
} from '../../src/mpath/translation.js';
import { decodeLibraryFullStatus, encodeFullStatusTransportId, fullStatusData } from '../../src/mpath/full-status.js';
import type { MpathTransportId, PrinFullDescriptor, PrinFullStatus, PrinResponse } from '../../src/mpath/types.js';
import { FULL_STATUS_RESP_SIZE, MPATH_MX_TIDS, PRIN_FULLDESCR, PRIN_FULLDESCR_LIST } from '../../src/mpath/abi.js';
import type { ScsiOutcome } from '../../src/scsi/constants.js';
import { concat, fixedSense96, prInCdb, prOutCdb, prOutParams } from '../support/builders.js';

// ---- builders (SPC-4 §7.6.4 TransportID formats) ----

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (seed + i * 13) & 0xff);
}

/** FC TransportID, format 00: 24 bytes, N_PORT_NAME at 8..15. */
function fcTid(name: Uint8Array, byte0 = 0x00): Uint8Array {
  const t = new Uint8Array(24);
  t[0] = byte0;
  t.set(name, 8);
  return t;
}

/** SAS TransportID, format 00: 24 bytes, SAS ADDRESS at 4..11. */
function sasTid(address: Uint8Array, byte0 = 0x06): Uint8Array {
  const t = new Uint8Array(24);
  t[0] = byte0;
  t.set(address, 4);
  return t;
}

/** iSCSI TransportID: byte0, reserved, ADDITIONAL LENGTH (BE16) = n, then n name bytes. */
function iscsiTid(name: Uint8Array, n: number, byte0 = 0x05): Uint8Array {
  const t = new Uint8Array(4 + Math.max(n, 0));
  t[0] = byte0;
  t[2] = (n >> 8) & 0xff;
  t[3] = n & 0xff;
  t.set(name.subarray(0, n), 4);
  return t;
}

/** An iSCSI name as ASCII, NUL-terminated and NUL-padded to a multiple of 4. */
function iscsiName(text: string): { name: Uint8Array; n: number } {
  const n = Math.ceil((text.length + 1) / 4) * 4;
  const name = new Uint8Array(n);
  name.set(Buffer.from(text, 'ascii'));
  return { name, n };
}

/** Basic 24-byte list + TRANSPORTID PARAMETER DATA LENGTH (default: the IDs' total) + IDs. */
function withTids(ids: Uint8Array[], opts: { listLength?: number; trailer?: Uint8Array; base?: Uint8Array } = {}): Uint8Array {
  const list = concat(...ids);
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, opts.listLength ?? list.length);
  return concat(opts.base ?? prOutParams({ key: 0x1122334455667788n }), header, list, opts.trailer ?? new Uint8Array(0));
}

const SA_REGISTER = 0;
const cdbFor = (sa: number, paramLength: number): Uint8Array => prOutCdb({ sa, paramLength });

function parse(params: Uint8Array, sa = SA_REGISTER): ReturnType<typeof parsePrOutParameters> {
  return parsePrOutParameters(cdbFor(sa, params.length), params);
}

function assertCheck(result: { kind: string; outcome?: ScsiOutcome }, sense: [number, number, number]): void {
  assert.equal(result.kind, 'done');
  assert.ok(result.outcome);
  assert.equal(result.outcome.status, 0x02);
  assert.deepEqual([...result.outcome.sense], [...fixedSense96(...sense)]);
  assert.equal(result.outcome.data.length, 0);
}

function assertCall(result: ReturnType<typeof parsePrOutParameters>): PrOutCall {
  assert.equal(result.kind, 'call', result.kind === 'done' ? `got sense ${[...result.outcome.sense.subarray(0, 14)]}` : '');
  return result as PrOutCall;
}

const PARAM_LEN: [number, number, number] = [0x05, 0x1a, 0x00];
const INVALID_FIELD: [number, number, number] = [0x05, 0x24, 0x00];
const INVALID_PARAM: [number, number, number] = [0x05, 0x26, 0x00];

// ---- PR OUT ----

describe('PR OUT parameter list (docs/protocol.md §5.4)', () => {
  test('len < 24 → INVALID PARAMETER LIST LENGTH, checked before the SA', () => {
    for (const len of [0, 1, 23]) {
      assertCheck(parse(new Uint8Array(len)), PARAM_LEN);
      assertCheck(parse(new Uint8Array(len), 7), PARAM_LEN);
      assertCheck(parse(new Uint8Array(len), 0x1f), PARAM_LEN);
    }
  });

  test('len 24: key, sa_key, sa_flags, scope and type; bytes 16-19 and 21-23 ignored', () => {
    const params = prOutParams({ key: 0x0102030405060708n, saKey: 0xa1a2a3a4a5a6a7a8n, aptpl: true, allTgPt: true });
    params.set([0xee, 0xee, 0xee, 0xee], 16);
    params.set([0xee, 0xee, 0xee], 21);
    const cdb = prOutCdb({ sa: 4, scope: 0x0, type: 0x5, paramLength: 24 });
    cdb[2] = 0x35; // SCOPE 3, TYPE 5
    const call = assertCall(parsePrOutParameters(cdb, params));
    assert.equal(call.sa, 4);
    assert.equal(call.scope, 3);
    assert.equal(call.type, 5);
    assert.deepEqual([...call.descriptor.key], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([...call.descriptor.saKey], [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8]);
    assert.equal(call.descriptor.saFlags, 0x05);
    assert.deepEqual(call.descriptor.transportIds, []);
    params.fill(0);
    assert.equal(call.descriptor.key[0], 1, 'the descriptor does not alias the parameter buffer');
  });

  test('every supported SA goes to the library; 7, 8 and others → INVALID FIELD IN CDB', () => {
    for (let sa = 0; sa <= 6; sa++) assert.equal(assertCall(parse(new Uint8Array(24), sa)).sa, sa);
    for (const sa of [7, 8, 9, 0x10, 0x1f]) assertCheck(parse(new Uint8Array(24), sa), INVALID_FIELD);
  });

  test('SA is CDB byte 1 & 0x1F (deviation, docs/protocol.md §9 item 15)', () => {
    const cdb = cdbFor(0, 24);
    cdb[1] = 0xe1; // reserved bits set, SERVICE ACTION 1
    assert.equal(assertCall(parsePrOutParameters(cdb, new Uint8Array(24))).sa, 1);
    cdb[1] = 0x27; // SERVICE ACTION 7 (REGISTER AND MOVE)
    assertCheck(parsePrOutParameters(cdb, new Uint8Array(24)), INVALID_FIELD);
  });

  test('len 25-27 → INVALID PARAMETER LIST LENGTH, but the SA is checked first', () => {
    for (const len of [25, 26, 27]) {
      assertCheck(parse(new Uint8Array(len)), PARAM_LEN);
      assertCheck(parse(new Uint8Array(len), 8), INVALID_FIELD);
    }
  });

  test('len 28 with an empty list → no IDs', () => {
    assert.deepEqual(assertCall(parse(withTids([]))).descriptor.transportIds, []);
  });

  test('end > len → INVALID FIELD IN PARAMETER LIST, including a 32-bit list length', () => {
    assertCheck(parse(withTids([], { listLength: 1 })), INVALID_PARAM);
    assertCheck(parse(withTids([fcTid(bytes(8, 1))], { listLength: 25 })), INVALID_PARAM);
    // Room for whole zero (FC) IDs past the end of the data: still rejected, nothing read there.
    assertCheck(parse(withTids([], { listLength: 24 })), INVALID_PARAM);
    assertCheck(parse(withTids([fcTid(bytes(8, 1))], { listLength: 48 })), INVALID_PARAM);
    for (const listLength of [0xffffffe4, 0xffffffff, 0x80000000]) {
      assertCheck(parse(withTids([fcTid(bytes(8, 1))], { listLength })), INVALID_PARAM);
    }
  });

  test('bytes after end are ignored', () => {
    const call = assertCall(parse(withTids([fcTid(bytes(8, 1))], { trailer: new Uint8Array(40).fill(0xff) })));
    assert.equal(call.descriptor.transportIds.length, 1);
    // A list length shorter than what follows: only the declared part is parsed.
    const short = assertCall(parse(withTids([], { trailer: fcTid(bytes(8, 1)) })));
    assert.deepEqual(short.descriptor.transportIds, []);
  });

  test('IDs are parsed whether or not SPEC_I_PT is set', () => {
    const base = prOutParams();
    base[20] = 0x08; // SPEC_I_PT
    assert.equal(assertCall(parse(withTids([fcTid(bytes(8, 1))], { base }))).descriptor.saFlags, 0x08);
    assert.equal(assertCall(parse(withTids([fcTid(bytes(8, 1))]))).descriptor.transportIds.length, 1);
  });
});

describe('transport IDs (docs/protocol.md §5.4 table)', () => {
  const one = (tid: Uint8Array): ReturnType<typeof parsePrOutParameters> => parse(withTids([tid]));
  const onlyId = (tid: Uint8Array): MpathTransportId => {
    const ids = assertCall(one(tid)).descriptor.transportIds;
    assert.equal(ids.length, 1);
    return ids[0] as MpathTransportId;
  };

  test('FC (0x00): N_PORT_NAME = bytes 8-15, 24 bytes', () => {
    const tid = fcTid(bytes(8, 0x50));
    tid.fill(0xaa, 1, 8); // reserved bytes are not copied
    tid.fill(0xbb, 16, 24);
    const id = onlyId(tid);
    assert.deepEqual(id, { formatCode: 0, protocolId: 0, name: bytes(8, 0x50) });
  });

  test('FC and SAS need i+24 ≤ end', () => {
    assertCheck(one(fcTid(bytes(8, 1)).subarray(0, 23)), INVALID_PARAM);
    assertCheck(one(sasTid(bytes(8, 1)).subarray(0, 23)), INVALID_PARAM);
    assertCheck(one(new Uint8Array([0x00])), INVALID_PARAM);
  });

  test('reserved bits 4-5 of byte 0 are ignored by the dispatch', () => {
    assert.deepEqual(onlyId(fcTid(bytes(8, 3), 0x30)), { formatCode: 0, protocolId: 0, name: bytes(8, 3) });
    assert.equal(onlyId(sasTid(bytes(8, 3), 0x16)).protocolId, 6);
  });

  test('SAS (0x06): SAS ADDRESS = bytes 4-11, 24 bytes', () => {
    const tid = sasTid(bytes(8, 0x90));
    tid.fill(0xcc, 12, 24);
    assert.deepEqual(onlyId(tid), { formatCode: 0, protocolId: 6, name: bytes(8, 0x90) });
  });

  test('iSCSI (0x05, 0x45): name = the 2 length bytes then n bytes; advance n+4', () => {
    const { name, n } = iscsiName('iqn.2024-01.org.example:host1');
    for (const byte0 of [0x05, 0x45]) {
      const id = onlyId(iscsiTid(name, n, byte0));
      assert.equal(id.formatCode, byte0 & 0xc0);
      assert.equal(id.protocolId, 5);
      assert.deepEqual([...id.name], [0, n, ...name]);
    }
  });

  test('iSCSI n ≤ 252', () => {
    const name = new Uint8Array(256);
    assert.equal(onlyId(iscsiTid(name, 252)).name.length, 254);
    assertCheck(one(iscsiTid(name, 256)), INVALID_PARAM);
    // The reference caps n before checking the end: 256 is too long even with room for it.
    assertCheck(parse(withTids([iscsiTid(name, 256)], { trailer: new Uint8Array(8) })), INVALID_PARAM);
  });

  test('iSCSI n % 4 == 0', () => {
    const name = new Uint8Array(12);
    for (const n of [1, 2, 3, 5, 6, 7, 9, 10, 11, 250, 251]) assertCheck(one(iscsiTid(new Uint8Array(n), n)), INVALID_PARAM);
    assert.equal(onlyId(iscsiTid(name, 12)).name.length, 14);
  });

  test('iSCSI needs a NUL within the n name bytes (n = 0 has none)', () => {
    assertCheck(one(iscsiTid(new Uint8Array(8).fill(0x41), 8)), INVALID_PARAM);
    assertCheck(one(iscsiTid(new Uint8Array(0), 0)), INVALID_PARAM);
    const lastNul = new Uint8Array(8).fill(0x41);
    lastNul[7] = 0;
    assert.deepEqual([...onlyId(iscsiTid(lastNul, 8)).name], [0, 8, ...lastNul]);
    // A NUL just past the field does not count.
    const noNul = iscsiTid(new Uint8Array(8).fill(0x41), 8);
    assertCheck(parse(withTids([noNul], { trailer: new Uint8Array(4) })), INVALID_PARAM);
  });

  test('iSCSI needs i+4+n ≤ end, and i+4 ≤ end for its header', () => {
    const { name, n } = iscsiName('iqn.x:y');
    const tid = iscsiTid(name, n);
    assert.ok(n >= 8);
    assert.equal(onlyId(tid).name.length, n + 2); // i+4+n == end
    assertCheck(one(tid.subarray(0, tid.length - 1)), INVALID_PARAM);
    assertCheck(one(tid.subarray(0, 3)), INVALID_PARAM);
    assertCheck(one(tid.subarray(0, 2)), INVALID_PARAM);
  });

  test('other protocols and format codes → INVALID FIELD IN PARAMETER LIST', () => {
    const rejected = [0x01, 0x02, 0x03, 0x04, 0x07, 0x08, 0x09, 0x0a, 0x0f, 0x40, 0x46, 0x80, 0x85, 0x86, 0xc0, 0xc5];
    for (const byte0 of rejected) {
      const tid = new Uint8Array(24);
      tid[0] = byte0;
      tid[3] = 8; // a plausible iSCSI length, in case it were taken as one
      assertCheck(one(tid), INVALID_PARAM);
    }
  });

  test('a mixed list advances by each ID\'s size', () => {
    const { name, n } = iscsiName('iqn.2024-01.org.example:a-longer-initiator-name');
    const call = assertCall(parse(withTids([fcTid(bytes(8, 1)), iscsiTid(name, n, 0x45), sasTid(bytes(8, 2)), fcTid(bytes(8, 3))])));
    assert.deepEqual(call.descriptor.transportIds, [
      { formatCode: 0, protocolId: 0, name: bytes(8, 1) },
      { formatCode: 0x40, protocolId: 5, name: Uint8Array.from([0, n, ...name]) },
      { formatCode: 0, protocolId: 6, name: bytes(8, 2) },
      { formatCode: 0, protocolId: 0, name: bytes(8, 3) },
    ]);
  });

  test('a bad ID after good ones rejects the whole list', () => {
    assertCheck(parse(withTids([fcTid(bytes(8, 1)), sasTid(bytes(8, 2), 0x46)])), INVALID_PARAM);
  });

  test('exactly 32 IDs are accepted; 33 → INVALID FIELD IN PARAMETER LIST (deviation, docs/protocol.md §9 item 8)', () => {
    assert.equal(MPATH_MX_TIDS, 32);
    const ids = Array.from({ length: 33 }, (_, k) => (k % 2 === 0 ? fcTid(bytes(8, k)) : sasTid(bytes(8, k))));
    const call = assertCall(parse(withTids(ids.slice(0, 32))));
    assert.equal(call.descriptor.transportIds.length, 32);
    assert.deepEqual(call.descriptor.transportIds[31], { formatCode: 0, protocolId: 6, name: bytes(8, 31) });
    assertCheck(parse(withTids(ids)), INVALID_PARAM);
    const big = iscsiName('iqn.'.padEnd(251, 'z'));
    assert.equal(big.n, 252);
    const iscsi = Array.from({ length: 33 }, () => iscsiTid(big.name, big.n));
    assert.equal(assertCall(parse(withTids(iscsi.slice(0, 32)))).descriptor.transportIds.length, 32);
    assertCheck(parse(withTids(iscsi)), INVALID_PARAM);
  });
});

describe('PR OUT properties', () => {
  test('never throws on arbitrary cdb and params; outcomes are well-formed', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 16 }),
      fc.uint8Array({ minLength: 0, maxLength: 1200 }),
      fc.nat(16),
      (cdb, raw, offset) => {
        // A view with a non-zero byteOffset into a larger buffer (style habit 3).
        const backing = new Uint8Array(raw.length + offset + 8).fill(0x5a);
        backing.set(raw, offset);
        const params = backing.subarray(offset, offset + raw.length);
        const r = parsePrOutParameters(cdb, params);
        if (r.kind === 'done') {
          assert.equal(r.outcome.status, 0x02);
          assert.equal(r.outcome.sense.length, 96);
        } else {
          assert.ok(r.descriptor.transportIds.length <= 32);
          for (const id of r.descriptor.transportIds) assert.ok(id.name.length === 8 || (id.name.length - 2) % 4 === 0);
        }
      },
    ), { numRuns: 2000 });
  });

  test('never throws when the list is made of plausible TransportID headers', () => {
    const tidArb = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 30 }),
      fc.tuple(fc.constantFrom(0x05, 0x45, 0x00, 0x06), fc.nat(300), fc.uint8Array({ maxLength: 300 }))
        .map(([b0, n, rest]) => concat(Uint8Array.from([b0, 0, n >> 8, n & 0xff]), rest)),
    );
    fc.assert(fc.property(fc.array(tidArb, { maxLength: 40 }), fc.option(fc.nat(2000)), (ids, listLength) => {
      const params = withTids(ids, listLength === null ? {} : { listLength });
      const r = parse(params);
      assert.ok(r.kind === 'done' || r.kind === 'call');
    }), { numRuns: 1000 });
  });

  test('well-formed lists of up to 32 IDs round-trip', () => {
    const idArb = fc.oneof(
      fc.uint8Array({ minLength: 8, maxLength: 8 }).map((name) => ({ tid: fcTid(name), id: { formatCode: 0, protocolId: 0, name } })),
      fc.uint8Array({ minLength: 8, maxLength: 8 }).map((name) => ({ tid: sasTid(name), id: { formatCode: 0, protocolId: 6, name } })),
      fc.tuple(fc.integer({ min: 1, max: 63 }), fc.boolean(), fc.uint8Array({ maxLength: 252 })).map(([words, port, fill]) => {
        const n = words * 4;
        const name = new Uint8Array(n);
        name.set(fill.subarray(0, n - 1));
        name[n - 1] = 0;
        const byte0 = port ? 0x45 : 0x05;
        const id = { formatCode: byte0 & 0xc0, protocolId: 5, name: Uint8Array.from([n >> 8, n & 0xff, ...name]) };
        return { tid: iscsiTid(name, n, byte0), id };
      }),
    );
    fc.assert(fc.property(fc.array(idArb, { maxLength: 32 }), (ids) => {
      const call = assertCall(parse(withTids(ids.map((x) => x.tid))));
      assert.deepEqual(call.descriptor.transportIds, ids.map((x) => x.id));
    }), { numRuns: 300 });
  });
});

// ---- CLEANUP ----

describe('CLEANUP unregister (docs/protocol.md §5.6 step 4)', () => {
  test('REGISTER AND IGNORE EXISTING KEY, scope/type 0, 24 zero bytes', () => {
    const { cdb, params } = cleanupUnregisterRequest();
    assert.deepEqual([...cdb], [0x5f, 0x06, 0, 0, 0, 0, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual([...params], new Array(24).fill(0));
    const call = assertCall(parsePrOutParameters(cdb, params));
    assert.equal(call.sa, 6);
    assert.equal(call.scope, 0);
    assert.equal(call.type, 0);
    assert.deepEqual(call.descriptor, { key: new Uint8Array(8), saKey: new Uint8Array(8), saFlags: 0, transportIds: [] });
  });
});

// ---- PR IN ----

describe('PR IN request (docs/protocol.md §5.3)', () => {
  test('READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS go to the library with the allocation length', () => {
    for (const sa of [0, 1, 2, 3]) {
      assert.deepEqual(parsePrInRequest(prInCdb({ sa, allocationLength: 0x1234 })), { kind: 'call', sa, allocationLength: 0x1234 });
    }
    assert.deepEqual(parsePrInRequest(prInCdb({ sa: 0, allocationLength: 0xffff })), { kind: 'call', sa: 0, allocationLength: 0xffff });
  });

  test('other service actions → INVALID FIELD IN CDB', () => {
    for (const sa of [4, 5, 0x10, 0x1f]) assertCheck(parsePrInRequest(prInCdb({ sa, allocationLength: 8 })), INVALID_FIELD);
  });

  test('SA is masked with 0x1F (deviation, docs/protocol.md §9 item 15); a short CDB reads as zeros', () => {
    const cdb = prInCdb({ sa: 1, allocationLength: 8 });
    cdb[1] = 0xe1;
    assert.deepEqual(parsePrInRequest(cdb), { kind: 'call', sa: 1, allocationLength: 8 });
    cdb[1] = 0x24;
    assertCheck(parsePrInRequest(cdb), INVALID_FIELD);
    assert.deepEqual(parsePrInRequest(new Uint8Array(0)), { kind: 'call', sa: 0, allocationLength: 0 });
  });
});

describe('PR IN data (docs/protocol.md §5.3, §9 item 9)', () => {
  const allocationLengths = [0, 7, 8, 100, 8192, 65535];
  const body = bytes(8192, 0x21);

  /** Header + the first `copied` body bytes in an 8192-byte zero buffer, clipped to the allocation length. */
  function expectedRead(generation: number, additionalLength: number, copied: number, allocationLength: number): number[] {
    const buf = new Uint8Array(8192);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, generation);
    dv.setUint32(4, additionalLength);
    buf.set(body.subarray(0, copied), 8);
    return [...buf.subarray(0, Math.min(8192, allocationLength))];
  }

  // [additional_length, body bytes copied]
  const rows: [number, number][] = [[0, 0], [8, 8], [8184, 8184], [8185, 8184], [0xfffffff8, 8184], [0xffffffff, 8184]];
  for (const sa of [0, 1]) {
    for (const [additionalLength, copied] of rows) {
      test(`SA ${sa}, additional_length ${additionalLength}: ${copied} body bytes`, () => {
        for (const allocationLength of allocationLengths) {
          const data = prInResponseData(sa, allocationLength, { generation: 0x80000001, additionalLength, body });
          assert.equal(data.length, Math.min(8192, allocationLength));
          assert.deepEqual([...data], expectedRead(0x80000001, additionalLength, copied, allocationLength));
        }
      });
    }
  }

  test('never reads beyond the body it was given; the rest is zero', () => {
    const short = bytes(16, 0x70);
    for (const additionalLength of [16, 24, 8184, 0xfffffff8]) {
      const data = prInResponseData(0, 8192, { generation: 1, additionalLength, body: short });
      assert.deepEqual([...data.subarray(8, 24)], [...short]);
      assert.ok(data.subarray(24).every((b) => b === 0));
    }
    // A body view into a larger buffer: bytes past its end are not copied.
    const backing = new Uint8Array(64).fill(0xee);
    const view = backing.subarray(8, 16).fill(0x11);
    const data = prInResponseData(0, 100, { generation: 0, additionalLength: 32, body: view });
    assert.deepEqual([...data.subarray(8, 40)], [...new Array(8).fill(0x11), ...new Array(24).fill(0)]);
  });

  test('READ RESERVATION descriptor comes back byte-identical', () => {
    const descriptor = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0x03, 0, 0]);
    const data = prInResponseData(1, 24, { generation: 7, additionalLength: 16, body: descriptor });
    assert.deepEqual([...data], [0, 0, 0, 7, 0, 0, 0, 16, ...descriptor]);
  });

  test('REPORT CAPABILITIES: 6 bytes, reserved 6-7 zero, zero-padded', () => {
    const caps = { length: 8, flags0: 0x11, flags1: 0x81, typeMask: 0xea01 };
    for (const allocationLength of allocationLengths) {
      const full = new Array(8192).fill(0);
      full.splice(0, 6, 0x00, 0x08, 0x11, 0x81, 0xea, 0x01);
      assert.deepEqual([...prInResponseData(2, allocationLength, caps)], full.slice(0, Math.min(8192, allocationLength)));
    }
  });

  test('a programming error throws: wrong shape, unsupported SA, out-of-range field', () => {
    const read = { generation: 0, additionalLength: 0, body: new Uint8Array(0) };
    const caps = { length: 8, flags0: 0, flags1: 0, typeMask: 0 };
    assert.throws(() => prInResponseData(0, 8, caps), TypeError);
    assert.throws(() => prInResponseData(2, 8, read), TypeError);
    assert.throws(() => prInResponseData(4, 8, read), { name: 'TypeError', message: 'Cannot build PR IN data: service action 4 is not supported' });
    assert.throws(() => prInResponseData(3, 8, caps), TypeError);
    assert.throws(() => prInResponseData(0, 8, { ...read, additionalLength: 2 ** 32 }), RangeError);
    assert.throws(() => prInResponseData(0, 8, { ...read, generation: -1 }), RangeError);
    assert.throws(() => prInResponseData(2, 8, { ...caps, typeMask: 0x10000 }), RangeError);
    assert.throws(() => prInResponseData(0, -1, read), RangeError);
    assert.throws(() => prInResponseData(0, Number.NaN, read), RangeError);
  });
});

// ---- library return codes ----

describe('libmpathpersist return code → outcome (docs/protocol.md §5.5)', () => {
  // [code, key/asc/ascq, probe with TEST UNIT READY]
  const checkRows: [number, [number, number, number], boolean][] = [
    [2, [0x02, 0x04, 0x00], true],
    [3, [0x03, 0x11, 0x00], true],
    [4, [0x04, 0x44, 0x00], true],
    [8, [0x0b, 0x00, 0x06], true],
    [6, [0x06, 0x29, 0x02], false],
    [7, [0x05, 0x20, 0x00], false],
    [5, [0x05, 0x26, 0x00], false],
    [9, [0x00, 0x00, 0x00], false],
    ...[1, 10, 12, 13, 14, 15, 16, 17, 18, -1, -2, 255, 0x7fffffff, 0.5, Number.NaN]
      .map((code): [number, [number, number, number], boolean] => [code, [0x0b, 0x08, 0x00], false]),
  ];

  test('0 → GOOD, 11 → RESERVATION CONFLICT, with zero sense', () => {
    assert.deepEqual(mapLibraryResult(0), { kind: 'good' });
    assert.deepEqual(mapLibraryResult(11), { kind: 'reservation-conflict' });
    const data = Uint8Array.from([1, 2, 3]);
    assert.deepEqual(mpathOutcome(mapLibraryResult(0), null, data), { status: 0, sense: new Uint8Array(96), data });
    assert.deepEqual(mpathOutcome(mapLibraryResult(11)), { status: 0x18, sense: new Uint8Array(96), data: new Uint8Array(0) });
  });

  for (const [code, sense, probe] of checkRows) {
    test(`code ${code} → CHECK CONDITION ${sense.map((b) => b.toString(16)).join('/')}${probe ? ', probe with TUR' : ''}`, () => {
      const verdict = mapLibraryResult(code);
      assert.deepEqual(verdict, { kind: 'check', sense: fixedSense96(...sense), probeWithTestUnitReady: probe });
      assert.deepEqual(mpathOutcome(verdict), { status: 0x02, sense: fixedSense96(...sense), data: new Uint8Array(0) });
    });
  }

  test('† a failing TEST UNIT READY answers instead; a GOOD one keeps the generic sense', () => {
    const turSense = new Uint8Array(96);
    turSense.set([0x72, 0x02, 0x04, 0x01]);
    const tur = { status: 0x02, sense: turSense };
    const generic: [number, [number, number, number]][] = [[2, [2, 4, 0]], [3, [3, 0x11, 0]], [4, [4, 0x44, 0]], [8, [0x0b, 0, 6]]];
    for (const [code, sense] of generic) {
      assert.deepEqual(mpathOutcome(mapLibraryResult(code), tur), { status: 0x02, sense: turSense, data: new Uint8Array(0) });
      assert.equal(mpathOutcome(mapLibraryResult(code), { status: 0x18, sense: new Uint8Array(0) }).status, 0x18);
      assert.deepEqual(mpathOutcome(mapLibraryResult(code), { status: 0, sense: turSense }),
        { status: 0x02, sense: fixedSense96(...sense), data: new Uint8Array(0) });
      assert.deepEqual(mpathOutcome(mapLibraryResult(code), null).sense, fixedSense96(...sense), 'TUR not run');
    }
    // No probe for the other codes, even if one is passed.
    assert.deepEqual(mpathOutcome(mapLibraryResult(6), tur).sense, fixedSense96(0x06, 0x29, 0x02));
    // A short or long TUR sense is fitted to 96 bytes.
    assert.equal(mpathOutcome(mapLibraryResult(2), { status: 2, sense: new Uint8Array(200) }).sense.length, 96);
  });
});

// ---- READ FULL STATUS (issue 5 item 4) ----
// SPC-4 §6.15.5 parameter data is built here from meaning; the helper rebuilds it from the
// library's `struct prin_fulldescr`s, so the two are compared byte for byte.

interface SpcStatus {
  key: bigint;
  /** Byte 12 (ALL_TG_PT 0x02, R_HOLDER 0x01). */
  flags?: number;
  scope?: number;
  type?: number;
  rtpi: number;
  tid: Uint8Array;
}

/** One full status descriptor: key, byte 12, SCOPE/TYPE, RELATIVE TARGET PORT ID, ADDITIONAL DESCRIPTOR LENGTH, TransportID. */
function spcStatusDescriptor(d: SpcStatus): Uint8Array {
  const out = new Uint8Array(24 + d.tid.length);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, d.key);
  out[12] = d.flags ?? 0;
  out[13] = ((d.scope ?? 0) << 4) | (d.type ?? 0);
  dv.setUint16(18, d.rtpi);
  dv.setUint32(20, d.tid.length);
  out.set(d.tid, 24);
  return out;
}

/** PRGENERATION, ADDITIONAL LENGTH, descriptors. */
function spcFullStatus(generation: number, descriptors: SpcStatus[]): Uint8Array {
  const body = concat(...descriptors.map(spcStatusDescriptor));
  const header = new Uint8Array(8);
  new DataView(header.buffer).setUint32(0, generation);
  new DataView(header.buffer).setUint32(4, body.length);
  return concat(header, body);
}

/** iSCSI TransportID as SPC-4 §7.6.4.6 wants it: name, NUL, NUL padding to a multiple of 4, field ≥ 20. */
function spcIscsiTid(text: string, byte0 = 0x05): Uint8Array {
  const n = Math.max(20, Math.ceil((text.length + 1) / 4) * 4);
  const name = new Uint8Array(n);
  name.set(Buffer.from(text, 'latin1'));
  return iscsiTid(name, n, byte0);
}

/** What the helper sends: the data in an 8192-byte zero buffer, clipped to the allocation length. */
function helperData(spc: Uint8Array, allocationLength: number): number[] {
  const buf = new Uint8Array(8192);
  buf.set(spc.subarray(0, 8192));
  return [...buf.subarray(0, Math.min(8192, allocationLength))];
}

const ascii = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'latin1'));
const fcId = (name: Uint8Array, formatCode = 0): MpathTransportId => ({ formatCode, protocolId: 0, name });
const sasId = (name: Uint8Array, formatCode = 0): MpathTransportId => ({ formatCode, protocolId: 6, name });
const iscsiId = (text: string, formatCode = 0): MpathTransportId => ({ formatCode, protocolId: 5, name: ascii(text) });

function keyBytes(key: bigint): Uint8Array {
  const k = new Uint8Array(8);
  new DataView(k.buffer).setBigUint64(0, key);
  return k;
}

function typed(d: Omit<SpcStatus, 'tid'>, transportId: MpathTransportId): PrinFullDescriptor {
  return {
    key: keyBytes(d.key), flags: d.flags ?? 0, scopeType: ((d.scope ?? 0) << 4) | (d.type ?? 0),
    relativeTargetPortId: d.rtpi, transportId,
  };
}

const IQN_A = 'iqn.2024-01.org.example:initiator-a';
const IQN_B_PORT = 'iqn.2024-01.org.example:initiator-b,i,0x23d000000001';
const WWN = bytes(8, 0x50);
const SAS = bytes(8, 0x90);

/** The same registrations, as SPC bytes and as the library's typed descriptors. */
const SAMPLES: { name: string; spc: SpcStatus; typed: PrinFullDescriptor }[] = [
  {
    name: 'FC, holder, WE-RO, rtpi 1',
    spc: { key: 0x1122334455667788n, flags: 0x01, scope: 0, type: 5, rtpi: 1, tid: fcTid(WWN) },
    typed: typed({ key: 0x1122334455667788n, flags: 0x01, scope: 0, type: 5, rtpi: 1 }, fcId(WWN)),
  },
  {
    name: 'SAS, ALL_TG_PT, rtpi 0',
    spc: { key: 0xabcdn, flags: 0x02, rtpi: 0, tid: sasTid(SAS) },
    typed: typed({ key: 0xabcdn, flags: 0x02, rtpi: 0 }, sasId(SAS)),
  },
  {
    name: 'iSCSI device name (format 00)',
    spc: { key: 0xffffffffffffffffn, rtpi: 0xffff, tid: spcIscsiTid(IQN_A) },
    typed: typed({ key: 0xffffffffffffffffn, rtpi: 0xffff }, iscsiId(IQN_A)),
  },
  {
    name: 'iSCSI port identifier (format 01), holder of EA-AR',
    spc: { key: 2n, flags: 0x01, type: 8, rtpi: 0x0102, tid: spcIscsiTid(IQN_B_PORT, 0x45) },
    typed: typed({ key: 2n, flags: 0x01, type: 8, rtpi: 0x0102 }, iscsiId(IQN_B_PORT, 1)),
  },
];

const ALLOCATION_LENGTHS = [0, 1, 7, 8, 9, 23, 24, 100, 8191, 8192, 8193, 65535];

describe('READ FULL STATUS data (SPC-4 §6.15.5) from the library\'s descriptors', () => {
  test('no descriptor: PRGENERATION and ADDITIONAL LENGTH 0, zero-padded to the allocation length', () => {
    const spc = spcFullStatus(0x01020304, []);
    assert.deepEqual([...spc], [1, 2, 3, 4, 0, 0, 0, 0]);
    for (const allocationLength of ALLOCATION_LENGTHS) {
      assert.deepEqual([...fullStatusData(allocationLength, { generation: 0x01020304, descriptors: [] })], helperData(spc, allocationLength));
      assert.deepEqual([...prInResponseData(3, allocationLength, { generation: 0x01020304, descriptors: [] })], helperData(spc, allocationLength));
    }
  });

  for (const sample of SAMPLES) {
    test(`one descriptor: ${sample.name}`, () => {
      const spc = spcFullStatus(0xfffffffe, [sample.spc]);
      for (const allocationLength of ALLOCATION_LENGTHS) {
        const data = fullStatusData(allocationLength, { generation: 0xfffffffe, descriptors: [sample.typed] });
        assert.deepEqual([...data], helperData(spc, allocationLength), `allocation length ${allocationLength}`);
      }
    });
  }

  test('TransportID lengths: FC and SAS 24 bytes, iSCSI 4 + a multiple of 4, at least 24', () => {
    assert.equal(encodeFullStatusTransportId(fcId(WWN)).length, 24);
    assert.equal(encodeFullStatusTransportId(sasId(SAS)).length, 24);
    // [name length, ADDITIONAL LENGTH]: the NUL always fits, the field never drops below 20
    for (const [length, n] of [[0, 20], [1, 20], [18, 20], [19, 20], [20, 24], [23, 24], [24, 28], [251, 252], [252, 256], [255, 256], [256, 260]]) {
      const text = 'x'.repeat(length as number);
      const tid = encodeFullStatusTransportId(iscsiId(text));
      assert.equal(tid.length, 4 + (n as number), `name of ${length}`);
      assert.deepEqual([...tid.subarray(0, 4)], [0x05, 0, (n as number) >> 8, (n as number) & 0xff]);
      assert.deepEqual([...tid.subarray(4)], [...ascii(text), ...new Array((n as number) - (length as number)).fill(0)]);
    }
  });

  test('the format code is re-encoded in bits 6-7 of byte 0, the protocol in bits 0-3', () => {
    assert.equal(encodeFullStatusTransportId(iscsiId(IQN_A, 1))[0], 0x45);
    assert.equal(encodeFullStatusTransportId(fcId(WWN, 3))[0], 0xc0);
    assert.equal(encodeFullStatusTransportId(sasId(SAS, 2))[0], 0x86);
  });

  test('several descriptors of every kind, in order; every allocation length cuts the same bytes', () => {
    const spc = spcFullStatus(7, [...SAMPLES.map((x) => x.spc), ...SAMPLES.map((x) => x.spc).reverse()]);
    const resp = { generation: 7, descriptors: [...SAMPLES.map((x) => x.typed), ...SAMPLES.map((x) => x.typed).reverse()] };
    const full = fullStatusData(8192, resp);
    assert.deepEqual([...full], helperData(spc, 8192));
    for (let allocationLength = 0; allocationLength <= spc.length + 8; allocationLength++) {
      assert.deepEqual([...fullStatusData(allocationLength, resp)], helperData(spc, allocationLength), `allocation length ${allocationLength}`);
    }
  });

  test('more than 8184 descriptor bytes: ADDITIONAL LENGTH counts them all, the data stops at 8192', () => {
    const descriptors = Array.from({ length: 200 }, (_, i) => ({ key: BigInt(i + 1), rtpi: i, tid: i % 2 ? sasTid(bytes(8, i)) : fcTid(bytes(8, i)) }));
    const spc = spcFullStatus(9, descriptors);
    assert.equal(spc.length, 8 + 200 * 48);
    const resp = { generation: 9, descriptors: descriptors.map((d, i) => typed(d, i % 2 ? sasId(bytes(8, i)) : fcId(bytes(8, i)))) };
    for (const allocationLength of [8191, 8192, 65535]) {
      const data = fullStatusData(allocationLength, resp);
      assert.deepEqual([...data], helperData(spc, allocationLength));
      assert.equal(new DataView(data.buffer).getUint32(4), 200 * 48);
    }
  });

  test('ADDITIONAL LENGTH above 8192: the device\'s own bytes, copied as for READ KEYS', () => {
    const body = bytes(8192, 0x33);
    const data = prInResponseData(3, 65535, { generation: 5, additionalLength: 9000, body });
    assert.deepEqual([...data.subarray(0, 8)], [0, 0, 0, 5, 0, 0, 0x23, 0x28]);
    assert.deepEqual([...data.subarray(8)], [...body.subarray(0, 8184)]);
  });

  test('a programming error throws: wrong sizes, unknown protocol, bad names, fields out of range', () => {
    const good = SAMPLES[0]?.typed as PrinFullDescriptor;
    const data = (d: Partial<PrinFullDescriptor>, generation = 0): Uint8Array => fullStatusData(8, { generation, descriptors: [{ ...good, ...d }] });
    assert.throws(() => data({ key: new Uint8Array(7) }), RangeError);
    assert.throws(() => data({ flags: 0x100 }), RangeError);
    assert.throws(() => data({ scopeType: -1 }), RangeError);
    assert.throws(() => data({ relativeTargetPortId: 0x10000 }), RangeError);
    assert.throws(() => data({}, 2 ** 32), RangeError);
    assert.throws(() => data({ transportId: { formatCode: 0, protocolId: 4, name: new Uint8Array(16) } }),
      { name: 'RangeError', message: 'Cannot build a TransportID: protocol identifier 4 is not FC, iSCSI or SAS' });
    assert.throws(() => data({ transportId: fcId(new Uint8Array(9)) }), RangeError);
    assert.throws(() => data({ transportId: sasId(new Uint8Array(0)) }), RangeError);
    assert.throws(() => data({ transportId: fcId(WWN, 4) }), RangeError);
    assert.throws(() => data({ transportId: { formatCode: 0, protocolId: 5, name: Uint8Array.from([0x41, 0, 0x42]) } }),
      { name: 'RangeError', message: 'Cannot build a TransportID: the iSCSI name contains a NUL' });
    assert.throws(() => data({ transportId: iscsiId('y'.repeat(257)) }), RangeError);
    assert.throws(() => fullStatusData(-1, { generation: 0, descriptors: [] }), RangeError);
  });
});

// ---- round trip: SPC bytes → typed descriptors (a parser of our own) → fullStatusData ----

/** A plain SPC-4 READ FULL STATUS parser, keeping what `struct prin_fulldescr` keeps. */
function parseSpcFullStatus(data: Uint8Array): PrinFullStatus {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const end = 8 + dv.getUint32(4);
  const descriptors: PrinFullDescriptor[] = [];
  for (let i = 8; i < end;) {
    const tidLength = dv.getUint32(i + 20);
    const t = data.subarray(i + 24, i + 24 + tidLength);
    const protocolId = (t[0] ?? 0) & 0x0f;
    let name: Uint8Array;
    if (protocolId === 0) name = t.slice(8, 16);
    else if (protocolId === 6) name = t.slice(4, 12);
    else {
      const field = t.subarray(4, 4 + (((t[2] ?? 0) << 8) | (t[3] ?? 0)));
      name = field.slice(0, field.indexOf(0));
    }
    descriptors.push({
      key: data.slice(i, i + 8), flags: data[i + 12] ?? 0, scopeType: data[i + 13] ?? 0, relativeTargetPortId: dv.getUint16(i + 18),
      transportId: { formatCode: (t[0] ?? 0) >> 6, protocolId, name },
    });
    i += 24 + tidLength;
  }
  return { generation: dv.getUint32(0), descriptors };
}

/** Canonical SPC descriptors: reserved bytes zero, iSCSI names of printable bytes with SPC padding. */
const spcStatusArb: fc.Arbitrary<SpcStatus> = fc.record({
  key: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  flags: fc.nat(255),
  scope: fc.nat(15),
  type: fc.nat(15),
  rtpi: fc.nat(0xffff),
  tid: fc.oneof(
    fc.tuple(fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.nat(3)).map(([n, f]) => fcTid(n, f << 6)),
    fc.tuple(fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.nat(3)).map(([n, f]) => sasTid(n, (f << 6) | 6)),
    fc.tuple(fc.string({ unit: fc.integer({ min: 0x21, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 255 }), fc.nat(3))
      .map(([text, f]) => spcIscsiTid(text, (f << 6) | 5)),
  ),
});

describe('READ FULL STATUS round trip', () => {
  test('SPC bytes → parsed → fullStatusData gives the same bytes, at any allocation length', () => {
    fc.assert(fc.property(fc.nat(0xffffffff), fc.array(spcStatusArb, { maxLength: 40 }), fc.nat(0xffff), (generation, descriptors, allocationLength) => {
      const spc = spcFullStatus(generation, descriptors);
      const parsed = parseSpcFullStatus(spc);
      assert.equal(parsed.descriptors.length, descriptors.length);
      assert.deepEqual([...fullStatusData(Math.max(spc.length, 8192), parsed)], helperData(spc, 8192));
      assert.deepEqual([...fullStatusData(allocationLength, parsed)], helperData(spc, allocationLength));
    }), { numRuns: 300 });
  });
});

// ---- the library's struct prin_resp → typed descriptors (src/mpath/full-status.ts decodeLibraryFullStatus) ----

const BASE = 0x7f12_3456_7000n;
const { PRIVATE_BUFFER, DESCRIPTORS } = PRIN_FULLDESCR_LIST;

/**
 * What multipath-tools 0.9.4 leaves in the native block at BASE for a device's READ FULL
 * STATUS data, replaying mpath_format_readfullstatus()/decode_transport_id() as read from
 * the installed binary: header to host order, one stack fdesc zeroed once, copied to
 * private_buffer + 270·i and then its address stored at 8200 + 8·i, for each descriptor.
 */
function libraryBlock(spc: Uint8Array, opts: { size?: number } = {}): Uint8Array {
  const dvIn = new DataView(spc.buffer, spc.byteOffset, spc.byteLength);
  const generation = dvIn.getUint32(0);
  const additionalLength = dvIn.getUint32(4);
  let count = 0;
  for (let k = 0; k < additionalLength; count++) k += 24 + dvIn.getUint32(8 + k + 20);
  const size = opts.size ?? Math.max(DESCRIPTORS + 8 * (count + 1), PRIVATE_BUFFER + PRIN_FULLDESCR.SIZE * count);
  const block = new Uint8Array(size);
  const dv = new DataView(block.buffer);
  block.set(spc.subarray(0, 8192)); // SG_IO, mpath_mx_alloc_len 8192
  dv.setUint32(0, generation, true);
  dv.setUint32(4, additionalLength, true);
  if (additionalLength === 0 || additionalLength > 8192) return block;
  const temp = block.slice(PRIVATE_BUFFER, PRIVATE_BUFFER + 8192);
  block.fill(0, PRIVATE_BUFFER, PRIVATE_BUFFER + 8192);
  const fdesc = new Uint8Array(PRIN_FULLDESCR.SIZE);
  const fv = new DataView(fdesc.buffer);
  const tv = new DataView(temp.buffer);
  let n = 0;
  for (let k = 0; k < additionalLength; n++) {
    fdesc.set(temp.subarray(k, k + 8), 0);
    fdesc[8] = temp[k + 12] ?? 0;
    fdesc[9] = temp[k + 13] ?? 0;
    fv.setUint16(10, tv.getUint16(k + 18), true);
    const tidLength = tv.getUint32(k + 20);
    for (let j = 0, jump = 24; j < tidLength; j += jump) {
      const p = k + 24 + j;
      const b0 = temp[p] ?? 0;
      fdesc[12] = b0 >> 6;
      fdesc[13] = b0 & 0x0f;
      jump = 24;
      if ((b0 & 0x0f) === 0) fdesc.set(temp.subarray(p + 8, p + 16), 14);
      else if ((b0 & 0x0f) === 6) fdesc.set(temp.subarray(p + 4, p + 12), 14);
      else if ((b0 & 0x0f) === 5) {
        const num = Math.min(tv.getUint16(p + 2), 256);
        fdesc.set(temp.subarray(p + 4, p + 4 + num), 14);
        jump = Math.max(num + 4, 24);
      }
    }
    block.set(fdesc, PRIVATE_BUFFER + PRIN_FULLDESCR.SIZE * n);
    dv.setBigUint64(DESCRIPTORS + 8 * n, BASE + BigInt(PRIVATE_BUFFER + PRIN_FULLDESCR.SIZE * n), true);
    k += 24 + tidLength;
  }
  dv.setUint32(4, n, true);
  return block;
}

function assertUnusable(r: PrinResponse, pattern: RegExp): void {
  assert.equal(r.kind, 'unusable');
  assert.match((r as { reason: string }).reason, pattern);
}

function fullStatusOf(r: PrinResponse): PrinFullStatus {
  assert.equal(r.kind, 'full-status', r.kind === 'unusable' ? r.reason : r.kind);
  return r as PrinFullStatus;
}

describe('READ FULL STATUS from struct prin_resp (libmpathpersist 0.9.4)', () => {
  test('the block is large enough for any answer the library can store', () => {
    assert.ok(FULL_STATUS_RESP_SIZE >= PRIVATE_BUFFER + PRIN_FULLDESCR.SIZE * 8192);
    assert.ok(FULL_STATUS_RESP_SIZE >= DESCRIPTORS + 8 * 8192);
  });

  test('no registration: generation, no descriptors', () => {
    assert.deepEqual(decodeLibraryFullStatus(libraryBlock(spcFullStatus(42, [])), BASE), { kind: 'full-status', generation: 42, descriptors: [] });
  });

  test('each kind of descriptor decodes to what the SPC bytes said, and back', () => {
    const spc = spcFullStatus(0x80000000, [...SAMPLES.map((x) => x.spc), SAMPLES[0]?.spc as SpcStatus]);
    const r = fullStatusOf(decodeLibraryFullStatus(libraryBlock(spc), BASE));
    assert.equal(r.generation, 0x80000000);
    assert.deepEqual(r.descriptors, [...SAMPLES.map((x) => x.typed), SAMPLES[0]?.typed]);
    assert.deepEqual([...fullStatusData(8192, r)], helperData(spc, 8192));
  });

  test('a shorter iSCSI name after a longer one: the library\'s leftovers after the NUL are ignored', () => {
    const long = { key: 1n, rtpi: 1, tid: spcIscsiTid(`${IQN_A}-with-a-much-longer-suffix`) };
    const short = { key: 2n, rtpi: 2, tid: spcIscsiTid('iqn.x:y') };
    const block = libraryBlock(spcFullStatus(1, [long, short]));
    assert.notEqual(block[PRIVATE_BUFFER + PRIN_FULLDESCR.SIZE + 14 + 24], 0, 'the simulated library left bytes behind');
    const r = fullStatusOf(decodeLibraryFullStatus(block, BASE));
    assert.deepEqual(r.descriptors[1]?.transportId, iscsiId('iqn.x:y'));
  });

  test('ADDITIONAL LENGTH above 8192: the library leaves the device\'s bytes, passed on as they are', () => {
    const descriptors = Array.from({ length: 200 }, (_, i) => ({ key: BigInt(i), rtpi: i, tid: fcTid(bytes(8, i)) }));
    const spc = spcFullStatus(3, descriptors);
    const r = decodeLibraryFullStatus(libraryBlock(spc), BASE);
    assert.equal(r.kind, 'list');
    const data = prInResponseData(3, 8192, r as { generation: number; additionalLength: number; body: Uint8Array });
    assert.deepEqual([...data], helperData(spc, 8192));
  });

  test('other protocols: the library keeps no identifier → unusable, with the reason', () => {
    const srp = new Uint8Array(24);
    srp[0] = 0x04;
    const spc = spcFullStatus(1, [SAMPLES[0]?.spc as SpcStatus, { key: 1n, rtpi: 1, tid: srp }]);
    assertUnusable(decodeLibraryFullStatus(libraryBlock(spc), BASE), /^descriptor 2 of 2 has a TransportID with protocol identifier 4/);
  });

  test('an iSCSI name the library cut at 256 bytes → unusable', () => {
    const tid = iscsiTid(new Uint8Array(256).fill(0x61), 256); // no NUL in the 256 bytes the library keeps
    assertUnusable(decodeLibraryFullStatus(libraryBlock(spcFullStatus(1, [{ key: 1n, rtpi: 1, tid }])), BASE), /cut at 256 bytes/);
  });

  test('a pointer that does not point where the library stores the descriptor → unusable', () => {
    const block = libraryBlock(spcFullStatus(1, SAMPLES.map((x) => x.spc)));
    new DataView(block.buffer).setBigUint64(DESCRIPTORS + 8 * 2, BASE + 9n, true);
    assertUnusable(decodeLibraryFullStatus(block, BASE), /^descriptors\[2\] points to offset 9 of the response, not to 548/);
    assertUnusable(decodeLibraryFullStatus(libraryBlock(spcFullStatus(1, SAMPLES.map((x) => x.spc))), BASE + 8n), /^descriptors\[0\] points to offset 0 of the response, not to 8/);
  });

  test('a block too small for the count → unusable, nothing read beyond it', () => {
    const spc = spcFullStatus(1, SAMPLES.map((x) => x.spc));
    const block = libraryBlock(spc).subarray(0, PRIVATE_BUFFER + PRIN_FULLDESCR.SIZE * 4 - 1);
    assertUnusable(decodeLibraryFullStatus(block, BASE), /^descriptor \d of 4 lies beyond the response block/);
  });

  const fcStatus = (i: number): SpcStatus => ({ key: BigInt(i + 1), flags: i === 0 ? 1 : 0, type: i === 0 ? 5 : 0, rtpi: i, tid: fcTid(bytes(8, i)) });

  test('30 descriptors fit; 31 and 32 overwrite pointers, which are then not used', () => {
    for (const count of [30, 31, 32]) {
      const spc = spcFullStatus(count, Array.from({ length: count }, (_, i) => fcStatus(i)));
      const block = libraryBlock(spc);
      if (count > 30) assert.notEqual(new DataView(block.buffer).getBigUint64(DESCRIPTORS, true), BASE + 8n, 'descriptors[0] overwritten');
      const r = fullStatusOf(decodeLibraryFullStatus(block, BASE));
      assert.equal(r.descriptors.length, count);
      assert.deepEqual([...fullStatusData(8192, r)], helperData(spc, 8192));
    }
  });

  test('from 32 descriptors on, pointers overwrite descriptor 32: a long iSCSI name there → unusable', () => {
    const name = (length: number): string => `iqn.${'n'.repeat(length - 4)}`;
    const withIscsi = (count: number, length: number): Uint8Array => spcFullStatus(1, Array.from({ length: count },
      (_, i) => (i === 31 ? { key: 32n, rtpi: 31, tid: spcIscsiTid(name(length)) } : fcStatus(i))));
    // Descriptor 32 sits at 8378; descriptors[31] is stored at 8448, 70 bytes in: name bytes 56-63.
    fullStatusOf(decodeLibraryFullStatus(libraryBlock(withIscsi(32, 55)), BASE));
    assertUnusable(decodeLibraryFullStatus(libraryBlock(withIscsi(32, 56)), BASE), /^descriptor 32 of 32 was overwritten/);
    const r = fullStatusOf(decodeLibraryFullStatus(libraryBlock(withIscsi(40, 55)), BASE));
    assert.deepEqual(r.descriptors[31]?.transportId, iscsiId(name(55)));
  });

  test('56 descriptors still decode; from 57 on descriptor 33\'s key is overwritten → unusable', () => {
    const spc56 = spcFullStatus(1, Array.from({ length: 56 }, (_, i) => fcStatus(i)));
    assert.deepEqual([...fullStatusData(8192, fullStatusOf(decodeLibraryFullStatus(libraryBlock(spc56), BASE)))], helperData(spc56, 8192));
    const spc57 = spcFullStatus(1, Array.from({ length: 57 }, (_, i) => fcStatus(i)));
    assertUnusable(decodeLibraryFullStatus(libraryBlock(spc57), BASE), /^descriptor 33 of 57 was overwritten by the library's own pointer array/);
  });

  test('property: SPC bytes → the library\'s block → decode → fullStatusData gives the same bytes (≤ 30 descriptors)', () => {
    fc.assert(fc.property(fc.nat(0xffffffff), fc.array(spcStatusArb, { maxLength: 30 }), (generation, descriptors) => {
      const spc = spcFullStatus(generation, descriptors);
      fc.pre(spc.length <= 8192);
      const r = fullStatusOf(decodeLibraryFullStatus(libraryBlock(spc), BASE));
      assert.deepEqual(r, { kind: 'full-status', ...parseSpcFullStatus(spc) });
      assert.deepEqual([...fullStatusData(8192, r)], helperData(spc, 8192));
    }), { numRuns: 200 });
  });

  test('property: never throws and never reads outside the block, whatever the block holds', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 8, maxLength: 20000 }), fc.nat(60), (raw, count) => {
      const block = new Uint8Array(raw.length + 64);
      block.set(raw, 32);
      const view = block.subarray(32, 32 + raw.length);
      const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
      dv.setUint32(4, count, true);
      // Pointers where the library puts them, when they fit: the descriptors' bytes are random.
      for (let i = 0; i < count && DESCRIPTORS + 8 * i + 8 <= view.length; i++) {
        dv.setBigUint64(DESCRIPTORS + 8 * i, BASE + BigInt(PRIVATE_BUFFER + PRIN_FULLDESCR.SIZE * i), true);
      }
      const r = decodeLibraryFullStatus(view, BASE);
      assert.ok(['full-status', 'unusable', 'list'].includes(r.kind));
    }), { numRuns: 300 });
  });
});

describe('REGISTER AND MOVE on a multipath fd', () => {
  test('INVALID FIELD IN CDB, with the reason for the log; other refusals carry none', () => {
    const move = parse(withTids([fcTid(bytes(8, 1))]), 7);
    assertCheck(move, INVALID_FIELD);
    assert.equal((move as { reason?: string }).reason, 'REGISTER AND MOVE is not supported by libmpathpersist on multipath devices');
    const cdb = cdbFor(0x27, 24); // reserved bits set, SERVICE ACTION 7
    assert.equal((parsePrOutParameters(cdb, new Uint8Array(24)) as { reason?: string }).reason,
      'REGISTER AND MOVE is not supported by libmpathpersist on multipath devices');
    assert.match((parse(new Uint8Array(24), 8) as { reason?: string }).reason ?? '', /^REPLACE LOST RESERVATION is not supported/);
    for (const sa of [9, 0x1f]) assert.equal((parse(new Uint8Array(24), sa) as { reason?: string }).reason, undefined);
    // The parameter list length is still checked first, as in QEMU.
    assertCheck(parse(new Uint8Array(23), 7), PARAM_LEN);
  });
});
