/**
 * The hand-off envelope between the helper's images (src/daemon/handoff.ts): what the -d
 * launcher passes to the daemon, and what the root image passes to the one it re-executes
 * after dropping privileges. Every field is validated; anything else is a HandoffError
 * naming the field, never a crash.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeEnvelope, encodeEnvelope, HANDOFF_VARIABLE, HandoffError, parseInheritedFds,
  type DaemonEnvelope, type DroppedEnvelope, type Handoff,
} from '../../src/daemon/handoff.js';
import { CAP_SYS_RAWIO, maskOf } from '../../src/privileges/capabilities.js';
import { TRACE_EVENT_NAMES } from '../../src/trace/events.js';

const RAWIO = maskOf([CAP_SYS_RAWIO]);

const handoff: Handoff = {
  listenFd: 18, createdPath: '/run/qemu-pr-helper.sock', socketDev: 64768, socketInode: 123456, readyFd: null,
  janitorFd: null, janitorAnswerFd: null, socketStaging: null,
  pidfile: { fd: 19, path: '/run/qemu-pr-helper.pid', dev: 64768, inode: 99 }, uid: 65534, gid: 4294967294, kept: RAWIO,
};
const dropped: DroppedEnvelope = {
  image: 'dropped', program: '/usr/bin/qemu-pr-helper', traceEvents: ['prh_request', 'socket_listen'], traceFd: 7, handoff,
};
const daemon: DaemonEnvelope = { image: 'daemon', program: 'qemu-pr-helper', traceEvents: [], readyFd: 5 };

const decode = (text: string) => decodeEnvelope(text, TRACE_EVENT_NAMES);

/** The envelope's JSON with `patch` applied (undefined: the field removed). */
function patched(envelope: DaemonEnvelope | DroppedEnvelope, patch: Record<string, unknown>, inHandoff = false): string {
  const raw = JSON.parse(encodeEnvelope(envelope)) as Record<string, unknown>;
  const target = inHandoff ? raw['handoff'] as Record<string, unknown> : raw;
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) delete target[key];
    else target[key] = value;
  }
  return JSON.stringify(raw);
}

/** Asserts that `text` is refused with a HandoffError naming `field`. */
function refused(text: string, field: string): void {
  assert.throws(() => decode(text), (e: unknown) => e instanceof HandoffError && e.message.includes(field), `${field}: ${text}`);
}

describe('hand-off envelope', () => {
  test('round trip of both images\' envelopes', () => {
    assert.deepEqual(decode(encodeEnvelope(daemon)), daemon);
    assert.deepEqual(decode(encodeEnvelope(dropped)), dropped);
    assert.deepEqual(decode(encodeEnvelope({ ...dropped, traceFd: null, traceEvents: [] })), { ...dropped, traceFd: null, traceEvents: [] });
    const activated = { ...handoff, createdPath: null, socketDev: null, socketInode: null, pidfile: null, readyFd: 4 };
    assert.deepEqual(decode(encodeEnvelope({ ...dropped, handoff: activated })), { ...dropped, handoff: activated });
    const withJanitor = { ...handoff, janitorFd: 20, janitorAnswerFd: 21, socketStaging: '/run/.qemu-pr-helper.sock.AbCd~' };
    assert.deepEqual(decode(encodeEnvelope({ ...dropped, handoff: withJanitor })), { ...dropped, handoff: withJanitor });
    // The optional fields and the trace fd may be absent as well as null.
    assert.deepEqual(decode(patched(dropped, { traceFd: undefined })), { ...dropped, traceFd: null });
    assert.deepEqual(decode(patched(dropped, { janitorFd: undefined, janitorAnswerFd: undefined, socketStaging: undefined }, true)), dropped);
  });

  test('the error is named, and names the variable', () => {
    const error = (() => {
      try {
        decode('{');
      } catch (e) {
        return e;
      }
      return null;
    })();
    assert.ok(error instanceof HandoffError);
    assert.equal(error.name, 'HandoffError');
    assert.equal(error.message, `${HANDOFF_VARIABLE} is not valid JSON`);
  });

  test('not an object', () => {
    for (const text of ['', '{', 'null', '[]', '1', '"dropped"', 'true']) {
      assert.throws(() => decode(text), HandoffError, text);
    }
  });

  test('missing fields are refused by name', () => {
    for (const field of ['image', 'program', 'traceEvents', 'readyFd']) refused(patched(daemon, { [field]: undefined }), field);
    for (const field of ['image', 'program', 'traceEvents', 'handoff']) refused(patched(dropped, { [field]: undefined }), field);
    for (const field of ['listenFd', 'uid', 'gid', 'kept']) refused(patched(dropped, { [field]: undefined }, true), field);
  });

  test('wrong types and values are refused by name', () => {
    const top: [DaemonEnvelope | DroppedEnvelope, Record<string, unknown>, string][] = [
      [daemon, { image: 'serving' }, 'image'], [daemon, { image: 1 }, 'image'], [daemon, { program: 42 }, 'program'],
      [daemon, { program: 'a\0b' }, 'program'], [daemon, { readyFd: '5' }, 'readyFd'], [daemon, { readyFd: -1 }, 'readyFd'],
      [daemon, { readyFd: 2 ** 31 }, 'readyFd'], [daemon, { readyFd: 1.5 }, 'readyFd'], [daemon, { readyFd: null }, 'readyFd'],
      // The trace events: a list of known names only.
      [dropped, { traceEvents: ['nosuch'] }, 'traceEvents'], [dropped, { traceEvents: 'prh_request' }, 'traceEvents'],
      [dropped, { traceEvents: [1] }, 'traceEvents'], [dropped, { traceEvents: { 0: 'prh_request' } }, 'traceEvents'],
      // The -T file= fd is never stdio.
      [dropped, { traceFd: 2 }, 'traceFd'], [dropped, { traceFd: 1.5 }, 'traceFd'], [dropped, { traceFd: '7' }, 'traceFd'],
      [dropped, { handoff: [] }, 'handoff'], [dropped, { handoff: 'x' }, 'handoff'], [dropped, { handoff: null }, 'handoff'],
    ];
    for (const [envelope, patch, field] of top) refused(patched(envelope, patch), field);
    const inner: [Record<string, unknown>, string][] = [
      [{ listenFd: -1 }, 'listenFd'], [{ listenFd: 1.5 }, 'listenFd'], [{ listenFd: '3' }, 'listenFd'],
      [{ createdPath: 'relative' }, 'createdPath'], [{ createdPath: '/a\0b' }, 'createdPath'],
      [{ socketInode: 'x' }, 'socketInode'], [{ socketInode: 2 ** 53 }, 'socketInode'], [{ socketDev: -1 }, 'socketDev'],
      [{ pidfile: { fd: 3, path: '/p' } }, 'pidfile'], [{ pidfile: { fd: 3, path: '/p', inode: 1 } }, 'pidfile'],
      [{ pidfile: [3, '/p', 1, 2] }, 'pidfile'], [{ pidfile: 'x' }, 'pidfile'],
      [{ readyFd: '3' }, 'readyFd'], [{ uid: 2 ** 32 }, 'uid'], [{ gid: -1 }, 'gid'], [{ uid: '0' }, 'uid'],
      [{ kept: 'xyz' }, 'kept'], [{ kept: 0x20000 }, 'kept'], [{ kept: '1'.repeat(17) }, 'kept'], [{ kept: '' }, 'kept'],
      [{ janitorFd: -2 }, 'janitorFd'], [{ janitorAnswerFd: 'x' }, 'janitorAnswerFd'], [{ socketStaging: 'rel~' }, 'socketStaging'],
    ];
    for (const [patch, field] of inner) refused(patched(dropped, patch, true), field);
  });

  test('hostile values: huge, nested, prototype keys', () => {
    refused(patched(daemon, { readyFd: 1e300 }), 'readyFd');
    refused(patched(dropped, { kept: `${'f'.repeat(16)}0` }, true), 'kept');
    refused(patched(dropped, { listenFd: { valueOf: 3 } }, true), 'listenFd');
    refused('{"__proto__":{"image":"daemon"},"program":"p","traceEvents":[],"readyFd":3}', 'image');
    refused(`{"image":"daemon","program":"p","traceEvents":${'['.repeat(100)}${']'.repeat(100)},"readyFd":3}`, 'traceEvents');
    // Deep nesting beyond the JSON parser's limits is still only a HandoffError.
    assert.throws(() => decode(`${'['.repeat(200_000)}${']'.repeat(200_000)}`), HandoffError);
  });

  test('arbitrary text or JSON never escapes as anything but HandoffError', () => {
    fc.assert(fc.property(fc.oneof(fc.string(), fc.json(), fc.json().map((j) => `{"image":"dropped","handoff":${j}}`)), (text) => {
      try {
        decode(text);
      } catch (error) {
        return error instanceof HandoffError;
      }
      return true;
    }));
  });

  test('bin/qemu-pr-helper\'s inherited fd list: numbers above stdio, nothing else', () => {
    assert.deepEqual(parseInheritedFds(undefined), []);
    assert.deepEqual(parseInheritedFds(''), []);
    assert.deepEqual(parseInheritedFds('3 5  9'), [3, 5, 9]);
    assert.deepEqual(parseInheritedFds('0 1 2 3 x 4a -5 6'), [3, 6]);
    assert.deepEqual(parseInheritedFds(`4 ${'9'.repeat(30)} 2147483648`), [4]);
  });
});
