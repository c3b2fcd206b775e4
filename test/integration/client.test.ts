/**
 * bin/qemu-pr-helper-client as a user runs it: against our real helper (the device fd
 * travels over SCM_RIGHTS; /dev/null makes SG_IO fail with ENOTTY, so every PR command ends
 * in CHECK CONDITION), against Debian's C helper when it can run, and against a scripted
 * fake helper for what no device here can produce: GOOD data, RESERVATION CONFLICT, BUSY,
 * and helpers that hang up, stall or break the protocol.
 */
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import {
  REPO_ROOT, idleFdCount, referenceUnavailable, REFERENCE_HELPER, startHelper, tempDir, warmBaseline, type Helper,
} from '../support/launcher.js';
import { suiteHelper } from '../support/suite-helper.js';

const CLIENT = join(REPO_ROOT, 'bin', 'qemu-pr-helper-client');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runClient(args: string[], prefix: string[] = []): Promise<Run> {
  return new Promise((resolve, reject) => {
    const [file, ...rest] = [...prefix, CLIENT, ...args] as [string, ...string[]];
    const child = spawn(file, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const ABORTED = 'sense               ABORTED COMMAND: I/O PROCESS TERMINATED (0b/00/06)';
const INVALID_OPCODE = 'sense               ILLEGAL REQUEST: INVALID COMMAND OPERATION CODE (05/20/00)';

describe('against our helper, with --enable-cleanup', () => {
  let helper: Helper;
  let baseline: number;

  before(async () => {
    helper = await startHelper({ extraArgs: ['--enable-cleanup'] });
    baseline = await warmBaseline(helper);
  });

  after(async () => {
    assert.equal(await helper.stop(), 0);
    helper.cleanup();
  });

  afterEach(async () => {
    assert.equal(await idleFdCount(helper), baseline, 'the helper leaked an fd');
  });

  test('features: the feature word and its meaning', async () => {
    const r = await runClient(['-k', helper.socketPath, 'features']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, [
      `helper              ${helper.socketPath}`,
      'features            0x00000001',
      "  bit 0             CLEANUP supported: the helper accepts QEMU's opcode 0xFF",
      'reply sent          0x00000001',
      '',
    ].join('\n'));
    assert.equal(r.stderr, '');
  });

  test('features --json', async () => {
    await checkFeaturesJson(helper.socketPath, 1);
  });

  test('read-keys on /dev/null: the helper answers CHECK CONDITION, printed decoded, exit 2', async () => {
    const r = await runClient(['-k', helper.socketPath, 'read-keys', '/dev/null']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, [
      `helper              ${helper.socketPath} (features 0x00000001)`,
      'command             PERSISTENT RESERVE IN, READ KEYS',
      'device              /dev/null (opened read-only)',
      'allocation length   8192',
      'status              CHECK CONDITION (0x02)',
      ABORTED,
      'sense bytes         70 00 0b 00 00 00 00 0a 00 00 00 00 00 06 00 00 00 00',
      '',
    ].join('\n'));
  });

  for (const command of ['read-reservation', 'report-capabilities', 'read-full-status']) {
    test(`${command} on /dev/null: exit 2`, async () => {
      const r = await runClient(['-k', helper.socketPath, '-l', '64', command, '/dev/null']);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stdout.includes(`\nallocation length   64\nstatus              CHECK CONDITION (0x02)\n${ABORTED}\n`), r.stdout);
    });
  }

  const prOut: string[][] = [
    ['register', '--param-sark=abc'], ['register-ignore', '-S', '0xabc'], ['reserve', '-K', 'abc', '-T', 'we-ro'],
    ['release', '-K', 'abc', '--prout-type=5'], ['clear', '-K', 'abc'], ['preempt', '-K', 'abc', '-S', 'def'],
    ['preempt-abort', '-K', 'abc', '-S', 'def', '-T', 'ea-ar', '-Z', '-Y'],
  ];
  for (const args of prOut) {
    test(`${args.join(' ')} on /dev/null read-write: SG_IO fails, exit 2`, async () => {
      const r = await runClient(['-k', helper.socketPath, ...args, '/dev/null']);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stdout.includes('device              /dev/null (opened read-write)\n'), r.stdout);
      assert.ok(r.stdout.includes(`status              CHECK CONDITION (0x02)\n${ABORTED}\n`), r.stdout);
    });
  }

  test('register on a read-only fd: the helper refuses PR OUT with INVALID OPCODE (docs/protocol.md §3.7)', async () => {
    const r = await runClient(['-k', helper.socketPath, '--readonly', 'register', '--param-sark=abc', '/dev/null']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, [
      `helper              ${helper.socketPath} (features 0x00000001)`,
      'command             PERSISTENT RESERVE OUT, REGISTER',
      'device              /dev/null (opened read-only)',
      'reservation key     0x0000000000000000',
      'service action key  0x0000000000000abc',
      'scope / type        LU / 0 (no --prout-type)',
      'flags               none',
      'status              CHECK CONDITION (0x02)',
      INVALID_OPCODE,
      'sense bytes         70 00 05 00 00 00 00 0a 00 00 00 00 20 00 00 00 00 00',
      '',
    ].join('\n'));
  });

  test('cleanup: GOOD on a writable fd (no I/O), INVALID OPCODE on a read-only one', async () => {
    const good = await runClient(['-k', helper.socketPath, 'cleanup', '/dev/null']);
    assert.equal(good.code, 0, good.stderr);
    assert.ok(good.stdout.endsWith('command             CLEANUP (opcode 0xFF)\ndevice              /dev/null (opened read-write)\nstatus              GOOD (0x00)\n'), good.stdout);
    const ro = await runClient(['-k', helper.socketPath, 'cleanup', '-y', '/dev/null']);
    assert.equal(ro.code, 2, ro.stderr);
    assert.ok(ro.stdout.includes(INVALID_OPCODE), ro.stdout);
  });

  test('--json: the shape of a PR IN result', async () => {
    const r = await runClient(['-k', helper.socketPath, '--json', 'read-keys', '-l', '16', '/dev/null']);
    assert.equal(r.code, 2, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      command: 'read-keys',
      title: 'PERSISTENT RESERVE IN, READ KEYS',
      socket: helper.socketPath,
      features: 1,
      device: '/dev/null',
      access: 'read-only',
      cdb: '5e000000000000001000000000000000',
      parameters: null,
      allocationLength: 16,
      status: 2,
      statusName: 'CHECK CONDITION',
      sense: {
        key: 11, asc: 0, ascq: 6, code: '0b/00/06', text: 'ABORTED COMMAND: I/O PROCESS TERMINATED',
        format: 'fixed', deferred: false, bytes: '70000b000000000a00000000000600000000',
      },
      data: null,
      dataBytes: null,
      dataError: null,
      exitStatus: 2,
    });
  });

  test('--json: the shape of a PR OUT result', async () => {
    const r = await runClient(['-k', helper.socketPath, '-j', 'reserve', '-K', '0x1', '-T', 'we', '-Z', '/dev/null']);
    assert.equal(r.code, 2, r.stderr);
    const json = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(json['cdb'], '5f010100000000001800000000000000');
    assert.deepEqual(json['parameters'], {
      key: '0x0000000000000001', serviceActionKey: '0x0000000000000000', scope: 0, scopeName: 'LU', type: 1,
      typeName: 'Write Exclusive', aptpl: true, allTargetPorts: false,
    });
    assert.equal(json['allocationLength'], null);
  });

  test('a device that cannot be opened: exit 1, nothing sent', async () => {
    const r = await runClient(['-k', helper.socketPath, 'read-keys', join(helper.dir, 'no-such-disk')]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `qemu-pr-helper-client: Cannot open device '${join(helper.dir, 'no-such-disk')}' read-only: No such file or directory\n`);
  });

  test('permission denied on the socket (run as nobody)', {
    skip: process.getuid?.() !== 0 ? 'needs root to switch to nobody' : existsSync('/usr/bin/setpriv') ? false : '/usr/bin/setpriv is missing (util-linux)',
  }, async () => {
    // The helper's temporary directory is mode 0700, so nobody cannot reach the socket.
    const r = await runClient(['-k', helper.socketPath, 'features'], ['/usr/bin/setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `qemu-pr-helper-client: Cannot connect to the helper at '${helper.socketPath}': Permission denied (connecting needs search permission on the directories and write permission on the socket)\n`);
  });
});

describe('without a helper', () => {
  test('socket missing: exit 1 with the path and a hint', async () => {
    const dir = tempDir();
    try {
      const r = await runClient(['-k', join(dir, 'pr.sock'), 'features']);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `qemu-pr-helper-client: Cannot connect to the helper at '${join(dir, 'pr.sock')}': no such socket (is the helper running? -k gives its socket path)\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a path that is no socket: connection refused', async () => {
    const dir = tempDir();
    try {
      writeFileSync(join(dir, 'pr.sock'), '');
      const r = await runClient(['-k', join(dir, 'pr.sock'), 'read-keys', '/dev/null']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /: Connection refused \(nothing listens there: a stale socket, or not a socket at all\)\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('usage errors, --help and --version', async () => {
    const bad = await runClient(['reserve', '/dev/null']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, "qemu-pr-helper-client: reserve needs --prout-type (e.g. --prout-type=we-ro)\nTry 'qemu-pr-helper-client --help' for more information.\n");
    const help = await runClient(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: qemu-pr-helper-client \[OPTIONS\] COMMAND \[DEVICE\]\n/);
    assert.match(help.stdout, /\nExit status:\n {2}0 {4}GOOD\n/);
    const version = await runClient(['-V']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^qemu-pr-helper-client 0\.1\.0 \(qemu-pr-helper-ts\)\n/);
  });
});

describe('against our helper as upstream runs it (features 0)', () => {
  const helper = suiteHelper();

  test('features 0 and reply 0, as upstream helpers and clients send', async () => {
    await checkFeaturesJson(helper().socketPath, 0);
  });

  test('cleanup is not sent to a helper that does not announce it', async () => {
    const r = await runClient(['-k', helper().socketPath, 'cleanup', '/dev/null']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Cannot send CLEANUP: the helper at '.*' does not announce it \(features 0x00000000\)/);
  });
});

/** `features --json` against a helper announcing `features` (0 or CLEANUP): the client replies with it. */
async function checkFeaturesJson(socket: string, features: 0 | 1): Promise<void> {
  const r = await runClient(['--socket', socket, 'features', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    command: 'features', socket, features, featuresHex: `0x0000000${features}`, cleanup: features === 1, unknownBits: [], reply: features,
  });
}

describe('against the C qemu-pr-helper (features 0)', { skip: referenceUnavailable() }, () => {
  let helper: Helper;
  before(async () => {
    helper = await startHelper({ binary: REFERENCE_HELPER });
  });
  after(async () => {
    await helper.stop();
    helper.cleanup();
  });

  test('features 0 and reply 0, which the old helper requires', async () => {
    const r = await runClient(['-k', helper.socketPath, 'features']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^features {12}0x00000000\n {2}bit 0 {13}CLEANUP not supported: opcode 0xFF would make the helper close the connection\nreply sent {10}0x00000000\n/m);
  });

  test('read-keys on /dev/null gives the same CHECK CONDITION', async () => {
    const r = await runClient(['-k', helper.socketPath, 'read-keys', '/dev/null']);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stdout.includes(ABORTED), r.stdout);
  });

  test('cleanup is not sent to a helper that does not announce it', async () => {
    const r = await runClient(['-k', helper.socketPath, 'cleanup', '/dev/null']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `qemu-pr-helper-client: Cannot send CLEANUP: the helper at '${helper.socketPath}' does not announce it (features 0x00000000), and such a helper closes the connection on opcode 0xFF\n`);
  });
});

// ---- a scripted helper ----------------------------------------------------------------------

interface Received {
  reply: Buffer;
  cdb: Buffer;
  parameters: Buffer;
}

type Answer =
  | { status: number; data?: Buffer; size?: number }
  | 'close'
  | 'stall';

/**
 * A helper speaking the wire protocol from a script: sends `features`, reads the reply, one
 * CDB (and a PR OUT parameter list of CDB bytes 7-8), then answers. Node's net reads with
 * read(2), so the kernel drops the device fd; the real helper's handling of it is tested
 * above.
 */
class FakeHelper {
  readonly socketPath: string;
  readonly received: Received[] = [];
  readonly #dir: string;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  constructor(features: number, answer: (cdb: Buffer) => Answer) {
    this.#dir = tempDir('prh-fake-');
    this.socketPath = join(this.#dir, 'pr.sock');
    this.#server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => undefined);
      const greeting = Buffer.alloc(4);
      greeting.writeUInt32BE(features);
      socket.write(greeting);
      let buffered = Buffer.alloc(0);
      let answered = false;
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (answered || buffered.length < 20) return;
        const cdb = buffered.subarray(4, 20);
        const paramLength = cdb[0] === 0x5f ? cdb.readUInt16BE(7) : 0;
        if (buffered.length < 20 + paramLength) return;
        answered = true;
        this.received.push({ reply: buffered.subarray(0, 4), cdb: Buffer.from(cdb), parameters: buffered.subarray(20, 20 + paramLength) });
        const a = answer(Buffer.from(cdb));
        if (a === 'close') {
          socket.destroy();
          return;
        }
        if (a === 'stall') return;
        const data = a.data ?? Buffer.alloc(0);
        const header = Buffer.alloc(104);
        header.writeInt32BE(a.status, 0);
        header.writeInt32BE(a.size ?? data.length, 4);
        if (a.status === 2) Buffer.from([0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0]).copy(header, 8);
        socket.write(Buffer.concat([header, data]));
      });
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(this.socketPath, resolve));
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function be64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}

function prInData(generation: number, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(generation, 0);
  h.writeUInt32BE(body.length, 4);
  return Buffer.concat([h, body]);
}

describe('against a scripted helper', () => {
  test('READ KEYS with GOOD data: the keys, and the reply masks unknown feature bits', async () => {
    const fake = await new FakeHelper(0x80000001, () => ({ status: 0, data: prInData(3, Buffer.concat([be64(0xabcn), be64(0xdefn)])) })).listen();
    try {
      const r = await runClient(['-k', fake.socketPath, 'read-keys', '/dev/null']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.endsWith([
        'status              GOOD (0x00)',
        'generation          3 (0x00000003)',
        'registered keys     2',
        '                    0x0000000000000abc',
        '                    0x0000000000000def',
        '',
      ].join('\n')), r.stdout);
      assert.deepEqual([...(fake.received[0]?.reply ?? [])], [0, 0, 0, 1]);
      assert.equal(fake.received[0]?.cdb.toString('hex'), '5e000000000000200000000000000000');
    } finally {
      await fake.close();
    }
  });

  test('READ RESERVATION and READ FULL STATUS with GOOD data, as JSON', async () => {
    const reservation = prInData(5, Buffer.concat([be64(0xabcn), Buffer.from([0, 0, 0, 0, 0, 0x05, 0, 0])]));
    const tid = Buffer.concat([Buffer.from([0x45, 0, 0, 24]), Buffer.from('iqn.2000-01.x:a,i,0x1\0\0\0')]);
    const descriptor = Buffer.concat([be64(0xabcn), Buffer.from([0, 0, 0, 0, 0x01, 0x05, 0, 0, 0, 0, 0, 1, 0, 0, 0, tid.length]), tid]);
    const fake = await new FakeHelper(1, (cdb) => ({ status: 0, data: cdb[1] === 1 ? reservation : prInData(6, descriptor) })).listen();
    try {
      const rr = await runClient(['-k', fake.socketPath, '--json', 'read-reservation', '/dev/null']);
      assert.equal(rr.code, 0, rr.stderr);
      assert.deepEqual((JSON.parse(rr.stdout) as { data: unknown }).data, {
        kind: 'read-reservation', generation: 5, additionalLength: 16, truncated: false,
        reservation: { key: '0x0000000000000abc', scope: 0, scopeName: 'LU', type: 5, typeName: 'Write Exclusive - Registrants Only' },
      });
      const fs = await runClient(['-k', fake.socketPath, 'read-full-status', '/dev/null']);
      assert.equal(fs.code, 0, fs.stderr);
      assert.ok(fs.stdout.endsWith([
        'registrations       1',
        '  [1] key           0x0000000000000abc',
        '      holder        yes: LU / Write Exclusive - Registrants Only (5, we-ro)',
        '      target port   relative port 1',
        '      transport ID  iSCSI iqn.2000-01.x:a,i,0x1',
        '',
      ].join('\n')), fs.stdout);
    } finally {
      await fake.close();
    }
  });

  test('the PR OUT CDB and parameter list as sent', async () => {
    const fake = await new FakeHelper(1, () => ({ status: 0 })).listen();
    try {
      const r = await runClient(['-k', fake.socketPath, 'preempt', '-K', '1122334455667788', '-S', 'abc', '-T', 'ea-ro', '-Y', '-Z', '/dev/null']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fake.received[0]?.cdb.toString('hex'), '5f040600000000001800000000000000');
      assert.equal(fake.received[0]?.parameters.toString('hex'), `1122334455667788${'0'.repeat(13)}abc0000000005000000`);
    } finally {
      await fake.close();
    }
  });

  for (const [status, name, code] of [[0x18, 'RESERVATION CONFLICT', 24], [0x08, 'BUSY', 8], [0x28, 'TASK SET FULL', 40]] as const) {
    test(`${name}: exit ${code}`, async () => {
      const fake = await new FakeHelper(1, () => ({ status })).listen();
      try {
        const r = await runClient(['-k', fake.socketPath, 'reserve', '-K', '1', '-T', 'we', '/dev/null']);
        assert.equal(r.code, code, r.stderr);
        assert.ok(r.stdout.endsWith(`status              ${name} (0x${status.toString(16).padStart(2, '0')})\n`), r.stdout);
      } finally {
        await fake.close();
      }
    });
  }

  test('the helper closes the connection instead of answering: exit 1', async () => {
    const fake = await new FakeHelper(1, () => 'close').listen();
    try {
      const r = await runClient(['-k', fake.socketPath, 'read-keys', '/dev/null']);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, 'qemu-pr-helper-client: The helper closed the connection while waiting for the response; its log says why\n');
    } finally {
      await fake.close();
    }
  });

  test('no answer within --timeout: exit 1', async () => {
    const fake = await new FakeHelper(1, () => 'stall').listen();
    try {
      const r = await runClient(['-k', fake.socketPath, '--timeout=0.3', 'read-keys', '/dev/null']);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, 'qemu-pr-helper-client: No answer from the helper within 0.3 s while waiting for the response (see --timeout)\n');
    } finally {
      await fake.close();
    }
  });

  test('more data than the allocation length, or data for PR OUT: exit 1 (QEMU would abort)', async () => {
    const fake = await new FakeHelper(1, (cdb) => ({ status: 0, data: Buffer.alloc(cdb[0] === 0x5e ? 24 : 8) })).listen();
    try {
      const prIn = await runClient(['-k', fake.socketPath, '-l', '16', 'read-keys', '/dev/null']);
      assert.equal(prIn.code, 1);
      assert.equal(prIn.stderr, 'qemu-pr-helper-client: The helper sent an invalid response: 24 data bytes, but the allocation length is 16 (QEMU would abort)\n');
      const prOut = await runClient(['-k', fake.socketPath, 'clear', '/dev/null']);
      assert.equal(prOut.code, 1);
      assert.equal(prOut.stderr, 'qemu-pr-helper-client: The helper sent an invalid response: 8 data bytes, but none are allowed for this command (QEMU would abort)\n');
    } finally {
      await fake.close();
    }
  });

  test('CHECK CONDITION from the device', async () => {
    const fake = await new FakeHelper(1, () => ({ status: 2 })).listen();
    try {
      const r = await runClient(['-k', fake.socketPath, 'release', '-T', '1', '/dev/null']);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stdout.includes('sense               ILLEGAL REQUEST: INVALID FIELD IN CDB (05/24/00)\n'), r.stdout);
    } finally {
      await fake.close();
    }
  });
});
