/**
 * The correction after PREEMPT with the caller's own key on a map (src/mpath/path-repair.ts):
 * which calls need it, per multipath-tools release, and the REGISTER AND IGNORE EXISTING KEY
 * that does it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KEEPS_PATHS_SINCE, formatVersion, needsPathRepair, pathRepair } from '../../src/mpath/path-repair.js';
import type { PrOutArguments, PrinCapabilities } from '../../src/mpath/types.js';

const K = Uint8Array.of(0, 0, 0, 0, 0, 0, 0x51, 0xa7);
const K2 = Uint8Array.of(0, 0, 0, 0, 0, 0, 0x51, 0xa8);
const ZERO = new Uint8Array(8);
// SPC-4 service actions, written out here rather than taken from the code under test
const PREEMPT = 4;
const PREEMPT_AND_ABORT = 5;
const REGISTER_AND_IGNORE = 6;

function call(sa: number, key: Uint8Array, saKey: Uint8Array, type = 5): PrOutArguments {
  return { sa, scope: 0, type, descriptor: { key, saKey, saFlags: 0, transportIds: [] } };
}

test('PREEMPT and PREEMPT AND ABORT with the own key need the paths registered again before 0.14', () => {
  for (const version of [[0, 9, 4], [0, 11, 1], [0, 13, 9], null] as const) {
    assert.equal(needsPathRepair(version, call(PREEMPT, K, K)), true, formatVersion(version));
    assert.equal(needsPathRepair(version, call(PREEMPT_AND_ABORT, K, K)), true, formatVersion(version));
  }
  for (const version of [[0, 14, 0], [0, 14, 3], [1, 0, 0]] as const) {
    assert.equal(needsPathRepair(version, call(PREEMPT, K, K)), false, formatVersion(version));
  }
  assert.deepEqual(KEEPS_PATHS_SINCE, [0, 14, 0]);
});

test('another key preempted, a zero key, or another service action: nothing to repair', () => {
  const old = [0, 11, 1] as const;
  assert.equal(needsPathRepair(old, call(PREEMPT, K, K2)), false, "the map's paths keep K");
  assert.equal(needsPathRepair(old, call(PREEMPT, ZERO, ZERO)), false);
  for (let sa = 0; sa < 32; sa++) {
    if (sa === PREEMPT || sa === PREEMPT_AND_ABORT) continue;
    assert.equal(needsPathRepair(old, call(sa, K, K)), false, `service action ${sa}`);
  }
});

test('property: repair is needed exactly for a successful self-PREEMPT with a nonzero key on an older library', () => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 31 }), fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.uint8Array({ minLength: 8, maxLength: 8 }),
    fc.boolean(), fc.tuple(fc.nat(2), fc.nat(20), fc.nat(9)),
    (sa, key, other, same, version) => {
      const saKey = same ? key.slice() : other;
      const expected = (sa === PREEMPT || sa === PREEMPT_AND_ABORT) && key.some((b) => b !== 0)
        && key.every((b, i) => b === saKey[i])
        && (version[0] < 0 || (version[0] === 0 && version[1] < 14));
      assert.equal(needsPathRepair(version, call(sa, key, saKey)), expected);
    }), { numRuns: 500 });
});

test('the repair is REGISTER AND IGNORE EXISTING KEY to the same key, APTPL as the device reports it', () => {
  const caps = (flags1: number): PrinCapabilities => ({ length: 8, flags0: 0, flags1, typeMask: 0xea01 });
  const preempt = call(PREEMPT, K, K);
  const plain = pathRepair(preempt, caps(0x80)); // TMV set, PTPL_A clear
  assert.equal(plain.sa, REGISTER_AND_IGNORE);
  assert.equal(plain.scope, 0);
  assert.equal(plain.type, 0);
  assert.deepEqual(plain.descriptor.key, ZERO);
  assert.deepEqual(plain.descriptor.saKey, K);
  assert.equal(plain.descriptor.saFlags, 0);
  assert.deepEqual(plain.descriptor.transportIds, []);
  assert.notEqual(plain.descriptor.saKey, preempt.descriptor.saKey, 'a copy, not the request');
  assert.equal(pathRepair(preempt, caps(0x81)).descriptor.saFlags, 0x01, 'PTPL_A set: APTPL kept');
});
