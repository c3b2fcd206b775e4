/** The fast path's shared slot words and epoll tags (src/server/fast-path-shared.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  GENERATION_MASK, MAX_SLOTS, Owner, slotTag, stateWord, tagGeneration, tagSlot,
} from '../../src/server/fast-path-shared.js';

test('a tag carries its slot and generation, for every slot and generation', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: MAX_SLOTS - 1 }), fc.integer({ min: 0, max: GENERATION_MASK }), (slot, generation) => {
    const tag = slotTag(slot, generation);
    assert.ok(tag >= 0 && tag <= 0xffff_ffff, 'fits the 32 bits epoll data gives it');
    assert.equal(tagSlot(tag), slot);
    assert.equal(tagGeneration(tag), generation);
  }));
});

test('state words of different generations or owners never compare equal (the CAS guard)', () => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: GENERATION_MASK }), fc.integer({ min: 0, max: GENERATION_MASK }),
    fc.constantFrom(Owner.MAIN, Owner.ARMED, Owner.WORKER), fc.constantFrom(Owner.MAIN, Owner.ARMED, Owner.WORKER),
    (g1, g2, o1, o2) => {
      const a = stateWord(g1, o1);
      const b = stateWord(g2, o2);
      assert.equal(a === b, g1 === g2 && o1 === o2);
      assert.equal(a | 0, a, 'an int32, as Atomics on an Int32Array need');
      assert.equal(a & 3, o1);
    },
  ));
});
