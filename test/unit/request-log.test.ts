/**
 * RequestLog under floods (hardening item 6), with a fake clock and a recording sink: what
 * the default level prints, what -v keeps, and the timer that flushes a held summary.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Logger } from '../../src/log/logger.js';
import { RequestLog, goneBeforeFirstRequest, reasonKind, type LogClock } from '../../src/log/request-log.js';
import { Session } from '../../src/protocol/session.js';
import type { ServerEvent } from '../../src/server/events.js';

const LIMITS = { intervalMs: 10_000, perKind: 2, total: 3, maxKinds: 2 };

class FakeClock implements LogClock {
  time = 0;
  timers: { at: number; run: () => void }[] = [];
  now(): number {
    return this.time;
  }
  later(ms: number, run: () => void): void {
    this.timers.push({ at: this.time + ms, run });
  }
  /** Moves time on, running the timers that fall due. */
  advance(ms: number): void {
    this.time += ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= this.time);
      if (due.length === 0) return;
      this.timers = this.timers.filter((t) => t.at > this.time);
      for (const t of due) t.run();
    }
  }
}

function setup(verbosity = 1): { log: RequestLog; clock: FakeClock; lines: string[] } {
  const lines: string[] = [];
  const logger = new Logger('prh', verbosity, { write: (text) => lines.push(text.trimEnd()) });
  const clock = new FakeClock();
  return { log: new RequestLog(logger, { showKeys: false, limits: LIMITS }, clock), clock, lines };
}

const peer = (uid: number) => ({ pid: 100 + uid, uid, gid: uid });
let nextId = 1;
function closed(reason: string | null, requests: number, peerGone: boolean): ServerEvent {
  return { type: 'closed', connection: { id: nextId++, fd: 9, peer: peer(7) }, reason, requests, peerGone };
}
const refused = (uid: number): ServerEvent => ({ type: 'refused', fd: 9, peer: peer(uid), reason: `uid ${uid} and gid ${uid} are not in --allow-uid/--allow-gid` });

const RESET = 'Unable to read from socket: Connection reset by peer';

describe('RequestLog at the default level', () => {
  test('a peer gone before its first request: nothing; after requests, or a violation: an error line', () => {
    const { log, lines } = setup();
    log.notify(closed(null, 0, true));
    log.notify(closed(RESET, 0, true));
    log.notify(closed('Unable to write to socket: Broken pipe', 0, true));
    assert.deepEqual(lines, []);
    log.notify(closed(RESET, 3, true));
    log.notify(closed('Invalid CDB (operation code 0x12), closing socket.', 0, false));
    assert.equal(lines.length, 2);
    assert.match(lines[0] ?? '', /^prh: Unable to read from socket: Connection reset by peer \[connection \d+ \(pid 107 uid 7 gid 7\)\]$/);
  });

  test('an end of file inside the first request is not "gone before": Session\'s own reasons', () => {
    for (const bytes of [2, 4 + 3]) {
      const s = new Session();
      // The handshake reply (4 bytes), then part of a CDB.
      s.feed(new Uint8Array(bytes > 4 ? 4 : bytes), []);
      if (bytes > 4) s.feed(new Uint8Array([0x5e, 0, 0]), []);
      const reason = s.end().error?.message ?? null;
      const event = closed(reason, 0, true) as Extract<ServerEvent, { type: 'closed' }>;
      if (bytes > 4) assert.equal(goneBeforeFirstRequest(event), false, `${reason}`);
      else assert.equal(reason, null, 'inside the handshake: a plain end of file');
    }
  });

  test('a flood of one error: perKind lines, then one summary at the interval end, from the timer', () => {
    const { log, clock, lines } = setup();
    for (let i = 0; i < 50; i++) log.notify(closed(`Invalid CDB (operation code 0x${(i + 16).toString(16)}), closing socket.`, 0, false));
    assert.equal(lines.length, 2);
    clock.advance(9_999);
    assert.equal(lines.length, 2);
    clock.advance(1);
    assert.equal(lines.length, 3);
    assert.match(lines[2] ?? '', /^prh: 48 more connection\(s\) closed with errors like this in the last 10 s, e\.g\. Invalid CDB \(operation code 0x12\), closing socket\. \[connection \d+ \(pid 107 uid 7 gid 7\)\]$/);
    assert.equal(clock.timers.length, 0, 'nothing left to flush: no timer');
  });

  test('refusals: grouped by uid and gid, kinds past the cap counted together; flush() at shutdown', () => {
    const { log, clock, lines } = setup();
    for (let uid = 1; uid <= 6; uid++) for (let n = 0; n < 3; n++) log.notify(refused(uid));
    assert.equal(lines.length, LIMITS.total);
    log.flush();
    assert.deepEqual(lines.slice(LIMITS.total), [
      'prh: Refused 1 more connection(s) from uid 1 gid 1 in the last 10 s (--allow-uid/--allow-gid)',
      'prh: Refused 2 more connection(s) from uid 2 gid 2 in the last 10 s (--allow-uid/--allow-gid)',
      'prh: 12 more refused connection(s) and connection error(s) of other kinds in the last 10 s',
    ]);
    const counted = lines.slice(LIMITS.total).reduce((sum, line) => sum + Number(/(\d+) more/.exec(line)?.[1]), 0);
    assert.equal(LIMITS.total + counted, 6 * 3, 'every refusal printed or counted');
    clock.advance(10_000);
    assert.equal(lines.length, LIMITS.total + 3, 'the timer finds nothing left');
  });

  test('journald: summaries keep the priority of their kind', () => {
    const lines: string[] = [];
    const clock = new FakeClock();
    const log = new RequestLog(new Logger('prh', 1, { write: (t) => lines.push(t.trimEnd()) }, true), { showKeys: false, limits: LIMITS }, clock);
    for (let i = 0; i < 3; i++) log.notify(refused(1));
    for (let i = 0; i < 3; i++) log.notify(closed('No file descriptor in request.', 1, false));
    clock.advance(10_000);
    assert.deepEqual(lines.map((l) => l.slice(0, 3)), ['<4>', '<4>', '<3>', '<4>', '<3>']);
  });
});

test('error(): lines from outside the event stream share the limits', () => {
  const { log, clock, lines } = setup();
  for (let i = 0; i < 10; i++) log.error('Unable to accept a connection: Too many open files');
  clock.advance(10_000);
  assert.deepEqual(lines, [
    'prh: Unable to accept a connection: Too many open files',
    'prh: Unable to accept a connection: Too many open files',
    'prh: 8 more error(s) like this in the last 10 s, e.g. Unable to accept a connection: Too many open files',
  ]);
});

test('warning(): limited like error(), printed at the warning priority under journald', () => {
  const { log, clock, lines } = setup();
  const text = "warning: PREEMPT with its own key on multipath device 254:0: libmpathpersist 0.9.4 (before 0.14) leaves the map's other paths unregistered";
  for (let i = 0; i < 5; i++) log.warning(text);
  clock.advance(10_000);
  assert.deepEqual(lines, [`prh: ${text}`, `prh: ${text}`, `prh: 3 more warning(s) like this in the last 10 s, e.g. ${text}`]);
  const journal: string[] = [];
  const j = new RequestLog(new Logger('prh', 1, { write: (t) => journal.push(t.trimEnd()) }, true), { showKeys: false, limits: LIMITS }, new FakeClock());
  j.warning(text);
  assert.deepEqual(journal, [`<4>${text}`]);
});

describe('RequestLog at -v', () => {
  test('every event keeps its line, nothing is summarised, no timer', () => {
    const { log, clock, lines } = setup(2);
    for (let i = 0; i < 30; i++) log.notify(refused(1));
    for (let i = 0; i < 30; i++) log.notify(closed('No file descriptor in request.', 1, false));
    for (let i = 0; i < 30; i++) log.notify(closed(RESET, 0, true));
    for (let i = 0; i < 30; i++) log.notify(closed(null, 0, true));
    assert.equal(lines.length, 120);
    assert.equal(clock.timers.length, 0);
    assert.match(lines[90] ?? '', /^prh: connection \d+ \(pid 107 uid 7 gid 7\): closed after 0 request\(s\)$/);
  });
});

test('reasonKind blanks the numbers that vary between otherwise equal errors', () => {
  assert.equal(reasonKind('Invalid CDB (operation code 0x12), closing socket.'), reasonKind('Invalid CDB (operation code 0xa0), closing socket.'));
  assert.equal(reasonKind('Invalid CDB (transfer length 8193 exceeds 8192), closing socket.'), 'Invalid CDB (transfer length # exceeds #), closing socket.');
  assert.notEqual(reasonKind('No file descriptor in request.'), reasonKind('More than one file descriptor in request, closing socket.'));
});
