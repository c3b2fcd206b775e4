/**
 * -T as QEMU 7.2 parses and applies it (docs/protocol.md §7.1): QemuOpts grammar, event patterns, the
 * events file (with the docs/protocol.md §9 item 21 fix), the file= template; then the trace points' lines
 * (the hand-off between images: test/unit/handoff.test.ts). Expected texts were taken from /usr/bin/qemu-pr-helper
 * (test/integration/trace.test.ts compares the running binaries).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  applyTraceOption, checkLogfileTemplate, expandLogfileTemplate, globMatch, listEvents, NO_TRACE,
  type TraceContext, type TraceSettings, type TraceStep,
} from '../../src/trace/options.js';
import { TRACE_EVENT_NAMES } from '../../src/trace/events.js';
import { Tracer, fileTraceSink, type TraceSink } from '../../src/trace/tracer.js';
import { createPipe } from '../../src/sys/fd.js';
import type { SgIoResult } from '../../src/sys/sgio.js';
import type { PrRequest } from '../../src/protocol/session.js';
import { tempDir } from '../support/launcher.js';

const EVENTS = ['socket_listen', 'prh_request', 'prh_response', 'prh_connection_closed', 'thread_pool_submit'];
const P = 'qemu-pr-helper';

function context(files: Record<string, string> = {}): TraceContext {
  return {
    programName: P,
    events: EVENTS,
    readFile: (path) => (path in files ? { kind: 'text', text: files[path] ?? '' }
      : { kind: 'error', message: 'No such file or directory' }),
  };
}

/** Applies each -T in turn, as the command line does; stops at the first exit. */
function apply(args: string[], files: Record<string, string> = {}): TraceStep {
  let settings: TraceSettings = NO_TRACE;
  let stderr = '';
  for (const arg of args) {
    const step = applyTraceOption(settings, arg, context(files));
    if (step.kind === 'exit') return { ...step, stderr: stderr + step.stderr };
    stderr += step.stderr;
    settings = step.settings;
  }
  return { kind: 'ok', settings, stderr };
}

function enabled(step: TraceStep): string[] {
  assert.equal(step.kind, 'ok', JSON.stringify(step));
  return step.kind === 'ok' ? [...step.settings.enabled].sort() : [];
}

function exitOf(step: TraceStep): { code: number; stdout: string; stderr: string } {
  assert.equal(step.kind, 'exit', JSON.stringify(step));
  return step.kind === 'exit' ? { code: step.code, stdout: step.stdout, stderr: step.stderr } : { code: -1, stdout: '', stderr: '' };
}

const warn = (name: string): string => `${P}: warning: trace event '${name}' does not exist\n`;
const HELP = 'trace options:\n  enable=<str>\n  events=<str>\n  file=<str>\n';
const LIST = listEvents(EVENTS);

describe('-T grammar (QemuOpts, docs/protocol.md §7.1)', () => {
  test('the first element without = is enable=; enable= may be spelled out', () => {
    assert.deepEqual(enabled(apply(['socket_listen'])), ['socket_listen']);
    assert.deepEqual(enabled(apply(['enable=socket_listen'])), ['socket_listen']);
    assert.deepEqual(enabled(apply(['prh_request,file=/t'])), ['prh_request']);
  });

  test(',, stands for a comma in a value', () => {
    assert.equal(apply(['a,,b']).kind === 'ok' && apply(['a,,b']).stderr, warn('a,b'));
    assert.equal(apply(['file=/x,,y']).kind === 'ok' && (apply(['file=/x,,y']) as { settings: TraceSettings }).settings.file, '/x,y');
    // three commas: an escaped one, then a separator
    assert.deepEqual(exitOf(apply(['x,,,y'])), {
      code: 1, stdout: '', stderr: `${P}: warning: short-form boolean option 'y' deprecated\nPlease use y=on instead\n${P}: Invalid parameter 'y'\n`,
    });
  });

  test("an unknown key is `Invalid parameter '<k>'`, exit 1; keys are case-sensitive", () => {
    assert.deepEqual(exitOf(apply(['foo=1'])), { code: 1, stdout: '', stderr: `${P}: Invalid parameter 'foo'\n` });
    assert.deepEqual(exitOf(apply(['ENABLE=x'])), { code: 1, stdout: '', stderr: `${P}: Invalid parameter 'ENABLE'\n` });
    assert.deepEqual(exitOf(apply(['=x'])), { code: 1, stdout: '', stderr: `${P}: Invalid parameter ''\n` });
    assert.deepEqual(exitOf(apply(['x='])), { code: 1, stdout: '', stderr: `${P}: Invalid parameter 'x'\n` });
  });

  test('a later bare help or ? prints the keys and exits 1; earlier elements are checked first', () => {
    for (const arg of ['x,help', 'x,?', ',help', 'enable=x,events=/e,help,foo=1']) {
      assert.deepEqual(exitOf(apply([arg])), { code: 1, stdout: HELP, stderr: '' }, arg);
    }
    assert.deepEqual(exitOf(apply(['foo=1,help'])), { code: 1, stdout: '', stderr: `${P}: Invalid parameter 'foo'\n` });
  });

  test('enable=help or ? lists the events and exits 0, after the whole string is parsed', () => {
    for (const arg of ['help', '?', 'enable=help', 'enable=?', 'x,enable=help', 'nosuch,enable=help']) {
      assert.deepEqual(exitOf(apply([arg])), { code: 0, stdout: LIST, stderr: '' }, arg);
    }
    assert.deepEqual(exitOf(apply(['help,foo=1'])), { code: 1, stdout: '', stderr: `${P}: Invalid parameter 'foo'\n` });
    // help as a short-form boolean elsewhere is no listing: "nohelp" is help=off
    assert.deepEqual(exitOf(apply(['x,nohelp'])), {
      code: 1, stdout: '',
      stderr: `${P}: warning: short-form boolean option 'nohelp' deprecated\nPlease use help=off instead\n${P}: Invalid parameter 'help'\n`,
    });
  });

  test('short-form booleans warn as QEMU does (including its nodelay special case)', () => {
    const flag = (shown: string, advice: string): string => `${P}: warning: short-form boolean option '${shown}' deprecated\nPlease use ${advice} instead\n`;
    assert.equal(exitOf(apply(['x,delay'])).stderr, `${flag('delay', 'nodelay=off')}${P}: Invalid parameter 'delay'\n`);
    assert.equal(exitOf(apply(['x,nodelay'])).stderr, `${flag('nodelay', 'nodelay=on')}${P}: Invalid parameter 'delay'\n`);
    assert.equal(exitOf(apply(['x,no'])).stderr, `${flag('no', '=off')}${P}: Invalid parameter ''\n`);
    // "x,enable" is enable=on, which then names no event
    const r = apply(['x,enable']);
    assert.ok(r.kind === 'ok');
    assert.equal(r.stderr, `${flag('enable', 'enable=on')}${warn('on')}`);
    // "x,noevents" reads a file named "off"
    assert.equal(exitOf(apply(['x,noevents'])).stderr,
      `${flag('noevents', 'events=off')}${warn('x')}${P}:off: No such file or directory\n`);
  });

  test('id= is skipped, but must be an identifier (checked before anything else)', () => {
    assert.deepEqual(enabled(apply(['socket_listen,id=a1.b-c_d'])), ['socket_listen']);
    const bad = { code: 1, stdout: '', stderr: `${P}: Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n` };
    assert.deepEqual(exitOf(apply(['id=1'])), bad);
    assert.deepEqual(exitOf(apply(['x,help,id=1'])), bad);
    assert.deepEqual(exitOf(apply(['foo=1,id=_'])), bad);
    // the first element "id" alone is the id "on" to the id scan, and enable=id to the parse
    assert.equal(apply(['id']).stderr, warn('id'));
  });

  test('repeated keys: the last one wins', () => {
    assert.deepEqual(enabled(apply(['prh_request,enable=socket_listen'])), ['socket_listen']);
    assert.deepEqual(enabled(apply(['socket_listen,enable=-socket*'])), []);
    const r = apply(['file=/a,file=/b']);
    assert.ok(r.kind === 'ok' && r.settings.file === '/b');
  });

  test('several -T: applied in order; the last file= wins, also over a later -T without one', () => {
    assert.deepEqual(enabled(apply(['prh_*', '-prh_response'])), ['prh_connection_closed', 'prh_request']);
    const r = apply(['file=/first', 'socket_listen,file=/second', 'prh_request']);
    assert.ok(r.kind === 'ok');
    assert.equal(r.settings.file, '/second');
    assert.deepEqual([...r.settings.enabled].sort(), ['prh_request', 'socket_listen']);
    // warnings accumulate in order; an empty -T changes nothing
    assert.equal(apply(['a', '', 'b']).stderr, `${warn('a')}${warn('b')}`);
  });
});

describe('event patterns (QEMU do_trace_enable_events)', () => {
  test('with a *, every match is toggled and no match is silent', () => {
    assert.deepEqual(enabled(apply(['prh_*'])), ['prh_connection_closed', 'prh_request', 'prh_response']);
    assert.deepEqual(enabled(apply(['*'])), [...EVENTS].sort());
    assert.deepEqual(enabled(apply(['*_re*'])), ['prh_request', 'prh_response']);
    assert.deepEqual(enabled(apply(['*_re?????'])), ['prh_request']);
    const none = apply(['nosuch*']);
    assert.ok(none.kind === 'ok' && none.stderr === '' && none.settings.enabled.size === 0);
  });

  test('without a *, only the first match is toggled (? still matches one character), else a warning', () => {
    assert.deepEqual(enabled(apply(['prh_re?????'])), ['prh_request']);
    assert.deepEqual(enabled(apply(['socket_liste?'])), ['socket_listen']);
    assert.equal(apply(['nosuc?']).stderr, warn('nosuc?'));
    assert.equal(apply(['enable=']).stderr, warn(''));
    assert.deepEqual(enabled(apply(['nosuch'])), []);
  });

  test('a leading - disables; help after - is a name', () => {
    assert.deepEqual(enabled(apply(['*', '-prh_*'])), ['socket_listen', 'thread_pool_submit']);
    assert.deepEqual(enabled(apply(['*', '-socket_listen'])).includes('socket_listen'), false);
    assert.equal(apply(['-nosuch']).stderr, warn('nosuch'));
    assert.equal(apply(['-help']).stderr, warn('help'));
    assert.equal(apply(['-']).stderr, warn(''));
  });

  test('globMatch is anchored and treats regular-expression characters literally', () => {
    assert.ok(globMatch('a.c', 'a.c'));
    assert.ok(!globMatch('a.c', 'abc'));
    assert.ok(globMatch('a*', 'a'));
    assert.ok(!globMatch('a?', 'a'));
    assert.ok(globMatch('(x)[y]{z}+$^|\\', '(x)[y]{z}+$^|\\'));
    assert.ok(!globMatch('prh', 'prh_request'));
  });

  test('the catalogue has unique names and -T help lists them one per line', () => {
    assert.equal(new Set(TRACE_EVENT_NAMES).size, TRACE_EVENT_NAMES.length);
    assert.equal(listEvents(TRACE_EVENT_NAMES).split('\n').length, TRACE_EVENT_NAMES.length + 1);
  });
});

describe('events=FILE (QEMU trace_init_events)', () => {
  test('one entry per line; blank and # lines skipped; warnings name the file and line', () => {
    const file = 'socket_listen\n#prh_request\n\nnosuch\n-x\nprh_*\n-prh_response\n';
    const r = apply(['events=/e'], { '/e': file });
    assert.deepEqual(enabled(r), ['prh_connection_closed', 'prh_request', 'socket_listen']);
    assert.equal(r.stderr, `${P}:/e:4: warning: trace event 'nosuch' does not exist\n` +
      `${P}:/e:5: warning: trace event 'x' does not exist\n`);
  });

  test('a final line without a newline keeps its last character (fix of docs/protocol.md §9 item 21)', () => {
    // QEMU would chop it to 'socket_liste' and warn; a last 1-character line it would skip.
    assert.deepEqual(enabled(apply(['events=/e'], { '/e': 'prh_request\nsocket_listen' })), ['prh_request', 'socket_listen']);
    assert.equal(apply(['events=/e'], { '/e': 'prh_request\nq' }).stderr, `${P}:/e:2: warning: trace event 'q' does not exist\n`);
    // only a real newline is removed: a CR stays part of the name, as in QEMU
    assert.equal(apply(['events=/e'], { '/e': 'socket_listen\r\n' }).stderr, `${P}:/e:1: warning: trace event 'socket_listen\r' does not exist\n`);
    const empty = apply(['events=/e'], { '/e': '' });
    assert.ok(empty.kind === 'ok' && empty.stderr === '' && empty.settings.enabled.size === 0);
  });

  test('enable= is applied before events=, whatever their order in the string', () => {
    assert.deepEqual(enabled(apply(['events=/e,enable=prh_*'], { '/e': '-prh_request\n' })), ['prh_connection_closed', 'prh_response']);
    assert.equal(apply(['events=/e,enable=a'], { '/e': 'b\n' }).stderr, `${warn('a')}${P}:/e:1: warning: trace event 'b' does not exist\n`);
  });

  test('help in the file lists the events and exits 0; an unreadable file exits 1', () => {
    assert.deepEqual(exitOf(apply(['events=/e'], { '/e': 'nosuch\nhelp\nmore\n' })),
      { code: 0, stdout: LIST, stderr: `${P}:/e:1: warning: trace event 'nosuch' does not exist\n` });
    assert.deepEqual(exitOf(apply(['x,events=/nonexistent'])),
      { code: 1, stdout: '', stderr: `${warn('x')}${P}:/nonexistent: No such file or directory\n` });
    // only the last events= is read
    assert.equal(exitOf(apply(['events=/e,events=/nonexistent'], { '/e': 'x\n' })).stderr, `${P}:/nonexistent: No such file or directory\n`);
  });
});

describe('file=FILE template (QEMU valid_filename_template)', () => {
  test('one %d, and no other %', () => {
    for (const ok of ['/tmp/t', '/tmp/t%d', '/tmp/%d.log', '']) assert.equal(checkLogfileTemplate(ok), null, ok);
    for (const bad of ['/tmp/a%x', '/tmp/a%d%x', '/tmp/a%d%d', '/tmp/a%%', '/tmp/a%', '%s']) {
      assert.equal(checkLogfileTemplate(bad), `Bad logfile template: ${bad}`, bad);
    }
  });

  test('%d becomes the pid', () => {
    assert.equal(expandLogfileTemplate('/tmp/t%d.log', 1234), '/tmp/t1234.log');
    assert.equal(expandLogfileTemplate('/tmp/t.log', 1234), '/tmp/t.log');
  });
});

class Recorder implements TraceSink {
  lines: string[] = [];
  write(text: string): void {
    this.lines.push(text);
  }
}

const CONNECTION = { id: 3, fd: 9, peer: { pid: 10, uid: 0, gid: 6 } };
const REQUEST: PrRequest = {
  opcode: 0x5e, cdb: new Uint8Array([0x5e, 0x01, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0]), fd: 11, transferLength: 32,
  parameters: new Uint8Array(0),
};

describe('trace points (log backend lines)', () => {
  test('server events become one line each, only for enabled events', () => {
    const sink = new Recorder();
    let clock = 0;
    const tracer = new Tracer(new Set(TRACE_EVENT_NAMES), sink, () => clock);
    tracer.notify({ type: 'listening', fd: 5, path: '/run/p.sock', backlog: 4096 });
    tracer.notify({ type: 'listening', fd: 3, path: null, backlog: 4096 });
    tracer.notify({ type: 'accepted', connection: CONNECTION });
    tracer.notify({ type: 'refused', fd: 12, peer: null, reason: 'uid 5 and gid 5 are not in --allow-uid/--allow-gid' });
    tracer.notify({ type: 'request', connection: CONNECTION, request: REQUEST, device: null });
    const sense = new Uint8Array(96);
    sense.set([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00]);
    tracer.notify({
      type: 'response', connection: CONNECTION, request: REQUEST, device: null,
      outcome: { status: 2, sense, data: new Uint8Array(0) }, bytesOut: 104, elapsedMs: 1.2345,
    });
    tracer.notify({
      type: 'response', connection: CONNECTION, request: REQUEST, device: null,
      outcome: { status: 0, sense: new Uint8Array(96), data: new Uint8Array(8) }, bytesOut: 112, elapsedMs: 0.05,
    });
    tracer.notify({ type: 'closed', connection: CONNECTION, reason: null, requests: 2, peerGone: true });
    tracer.notify({ type: 'closed', connection: CONNECTION, reason: 'Invalid CDB, closing socket.', requests: 0, peerGone: false });
    const hooks = tracer.poolHooks();
    assert.ok(hooks);
    const job = { id: 26, fd: 11, command: { cdb: REQUEST.cdb.subarray(0, 10), direction: 'from-device' as const, transferLength: 8192, timeoutMs: 30000 } };
    hooks.submitted(job);
    clock = 0.5;
    const result: SgIoResult = {
      error: 'ENOTTY', status: 0, hostStatus: 0, driverStatus: 0, resid: 0, sense: new Uint8Array(96), data: new Uint8Array(0),
    };
    hooks.completed(job, result);
    hooks.completed({ ...job, id: 27 }, null);
    assert.deepEqual(sink.lines, [
      'socket_listen backlog: 4096\n',
      'qio_channel_socket_listen_complete Socket listen complete ioc=(nil) fd=5\n',
      'prh_listening fd=5 backlog=4096 path="/run/p.sock"\n',
      'qio_channel_socket_new_fd Socket new ioc=(nil) fd=3\n',
      'prh_listening fd=3 backlog=4096 path=(systemd)\n',
      'qio_channel_socket_accept_complete Socket accept complete ioc=(nil) cioc=(nil) fd=9\n',
      'prh_connection_accepted conn=3 fd=9 pid=10 uid=0 gid=6\n',
      'qio_channel_socket_accept_complete Socket accept complete ioc=(nil) cioc=(nil) fd=12\n',
      'prh_connection_refused fd=12 pid=-1 uid=-1 gid=-1 reason="uid 5 and gid 5 are not in --allow-uid/--allow-gid"\n',
      'prh_request conn=3 fd=11 opcode=0x5e sa=0x01 xfer=32\n',
      'prh_response conn=3 status=0x02 sense=05/24/00 data=0 bytes=104 us=1235\n',
      'prh_response conn=3 status=0x00 sense=none data=8 bytes=112 us=50\n',
      'prh_connection_closed conn=3 requests=2 reason=eof\n',
      'prh_connection_closed conn=3 requests=0 reason="Invalid CDB, closing socket."\n',
      'thread_pool_submit pool (nil) req 0x1a opaque (nil)\n',
      'prh_sgio_submit req=0x1a fd=11 cdb=5e010000000000002000 dir=from-device len=8192 timeout_ms=30000\n',
      // ret is the SCSI status QEMU's worker would return: ENOTTY maps to CHECK CONDITION
      'thread_pool_complete pool (nil) req 0x1a opaque (nil) ret 2\n',
      'prh_sgio_complete req=0x1a fd=11 errno=ENOTTY status=0x00 host=0x00 driver=0x00 resid=0 us=500\n',
      'thread_pool_complete pool (nil) req 0x1b opaque (nil) ret -1\n',
      'prh_sgio_complete req=0x1b fd=11 failed=1 us=-1\n',
    ]);
  });

  test('disabled events write nothing; pool hooks exist only for pool events', () => {
    const sink = new Recorder();
    const tracer = new Tracer(new Set(['prh_request']), sink);
    tracer.notify({ type: 'accepted', connection: CONNECTION });
    tracer.notify({ type: 'request', connection: CONNECTION, request: REQUEST, device: null });
    assert.deepEqual(sink.lines, ['prh_request conn=3 fd=11 opcode=0x5e sa=0x01 xfer=32\n']);
    assert.equal(tracer.poolHooks(), null);
    assert.equal(tracer.wantsDevices, false);
    assert.notEqual(new Tracer(new Set(['thread_pool_complete']), sink).poolHooks(), null);
  });

  test('the file sink never throws: a closed pipe (EPIPE) and a closed fd lose the line only', () => {
    const [readEnd, writeEnd] = createPipe();
    closeSync(readEnd);
    assert.doesNotThrow(() => fileTraceSink(writeEnd).write('prh_request x\n'));
    closeSync(writeEnd);
    assert.doesNotThrow(() => fileTraceSink(writeEnd).write('prh_request x\n'));
    const dir = tempDir();
    try {
      const path = join(dir, 't');
      const fd = openSync(path, 'w');
      fileTraceSink(fd).write('a 1\n');
      fileTraceSink(fd).write('b 2\n');
      closeSync(fd);
      assert.equal(readFileSync(path, 'utf8'), 'a 1\nb 2\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
