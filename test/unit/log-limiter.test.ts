/**
 * LogLimiter (src/log/limiter.ts): the bound per interval, the counts in the summaries, and
 * the interval's end, driven by a fake clock.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LogLimiter, type LimitedEvent, type Limits } from '../../src/log/limiter.js';

const LIMITS: Limits = { intervalMs: 1000, perKind: 3, total: 5, maxKinds: 2 };

/** Lines are tagged so that a test can tell printed events from summaries and add up counts. */
type Line = { tag: 'event'; kind: string } | { tag: 'summary'; kind: string; count: number; example: Line } | { tag: 'overflow'; count: number };

function event(kind: string): LimitedEvent<Line> {
  return { kind, line: { tag: 'event', kind }, summary: (count, example) => ({ tag: 'summary', kind, count, example }) };
}

const limiter = (limits = LIMITS): LogLimiter<Line> => new LogLimiter<Line>(limits, (count) => ({ tag: 'overflow', count }));

describe('LogLimiter', () => {
  test('within the limits every event is printed, and nothing is due', () => {
    const l = limiter();
    assert.deepEqual(l.offer(0, event('a')), [{ tag: 'event', kind: 'a' }]);
    assert.deepEqual(l.offer(1, event('b')), [{ tag: 'event', kind: 'b' }]);
    assert.equal(l.due, null);
    assert.deepEqual(l.flush(5000), []);
  });

  test('past perKind, events are counted; the summary comes at the interval end, with the first held line', () => {
    const l = limiter();
    for (let t = 0; t < 3; t++) assert.equal(l.offer(t, event('a')).length, 1);
    assert.deepEqual(l.offer(3, event('a')), []);
    assert.deepEqual(l.offer(4, event('a')), []);
    assert.equal(l.due, 1000, 'the interval started with the first event');
    assert.deepEqual(l.flush(999), [], 'not before the end');
    assert.deepEqual(l.flush(1000), [{ tag: 'summary', kind: 'a', count: 2, example: { tag: 'event', kind: 'a' } }]);
    assert.equal(l.due, null);
    assert.deepEqual(l.offer(1001, event('a')), [{ tag: 'event', kind: 'a' }], 'a fresh interval');
  });

  test('the next event after the interval carries the summary, before its own line', () => {
    const l = limiter();
    for (let t = 0; t < 4; t++) l.offer(t, event('a'));
    assert.deepEqual(l.offer(2500, event('b')), [
      { tag: 'summary', kind: 'a', count: 1, example: { tag: 'event', kind: 'a' } },
      { tag: 'event', kind: 'b' },
    ]);
  });

  test('the total budget holds across kinds; kinds past maxKinds share the overflow count', () => {
    const l = limiter();
    const printed = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].flatMap((k) => l.offer(0, event(k)));
    assert.equal(printed.length, LIMITS.total);
    // f and g are held under their own kinds (maxKinds 2); h and any later kind overflow.
    l.offer(0, event('i'));
    l.offer(0, event('f'));
    assert.deepEqual(l.flush(Infinity), [
      { tag: 'summary', kind: 'f', count: 2, example: { tag: 'event', kind: 'f' } },
      { tag: 'summary', kind: 'g', count: 1, example: { tag: 'event', kind: 'g' } },
      { tag: 'overflow', count: 2 },
    ]);
  });

  test('property: per interval at most total event lines and maxKinds + 1 summaries; printed + summarised = offered', () => {
    const limits = fc.record({
      intervalMs: fc.integer({ min: 1, max: 100 }),
      perKind: fc.integer({ min: 0, max: 5 }),
      total: fc.integer({ min: 0, max: 10 }),
      maxKinds: fc.integer({ min: 0, max: 4 }),
    });
    // [gap since the previous event, kind]: kinds from a set larger than maxKinds.
    const events = fc.array(fc.tuple(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 9 })), { maxLength: 400 });
    fc.assert(fc.property(limits, events, (lim, evs) => {
      const l = limiter(lim);
      let now = 0;
      let accounted = 0;
      // The interval as documented: opened by an event when none is open, for intervalMs.
      let opened: number | null = null;
      let printed = new Map<string, number>();
      const summaries = (lines: Line[]): void => {
        assert.ok(lines.every((line) => line.tag !== 'event'), 'a flush prints no event');
        assert.ok(lines.length <= lim.maxKinds + 1, `${lines.length} summaries`);
        for (const line of lines) if (line.tag === 'summary' || line.tag === 'overflow') accounted += line.count;
      };
      for (const [gap, k] of evs) {
        now += gap;
        // Half the time the timer flushes first; else the event carries the summaries.
        const answer = gap % 2 === 0 ? [...l.flush(now), ...l.offer(now, event(`k${k}`))] : l.offer(now, event(`k${k}`));
        if (opened !== null && now >= opened + lim.intervalMs) {
          opened = null;
          printed = new Map();
        }
        opened ??= now;
        const own = answer.filter((line) => line.tag === 'event');
        summaries(answer.filter((line) => line.tag !== 'event'));
        assert.ok(own.length <= 1);
        for (const line of own) {
          printed.set(line.kind, (printed.get(line.kind) ?? 0) + 1);
          accounted++;
        }
        assert.ok((printed.get(`k${k}`) ?? 0) <= lim.perKind, 'perKind lines per interval');
        assert.ok([...printed.values()].reduce((a, b) => a + b, 0) <= lim.total, 'total lines per interval');
        if (own.length === 0) assert.equal(l.due, opened + lim.intervalMs, 'a held event makes a summary due at the end');
      }
      summaries(l.flush(Infinity));
      assert.equal(accounted, evs.length, 'every event printed or counted, once');
      assert.equal(l.due, null);
    }), { numRuns: 1000 });
  });
});
