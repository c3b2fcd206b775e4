/**
 * Every row of docs/protocol.md §3.5 and §3.7 reachable without a SCSI device, over a real Unix socket
 * with real SCM_RIGHTS, against the real helper process. After each scenario the helper's
 * open fd count must be back where it started.
 */
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPipe } from '../../src/sys/fd.js';
import { PrClient } from '../support/client.js';
import { startHelper, idleFdCount, warmBaseline, type Helper } from '../support/launcher.js';
import { suiteHelper } from '../support/suite-helper.js';
import { cleanupCdb, concat, fixedSense96, prInCdb, prOutCdb, prOutParams } from '../support/builders.js';

const IO_ERROR = fixedSense96(0x0b, 0x00, 0x06);
const INVALID_OPCODE = fixedSense96(0x05, 0x20, 0x00);

let helper: Helper;
let baseline: number;
const opened: number[] = [];

function open(path: string, flags: string): number {
  const fd = openSync(path, flags);
  opened.push(fd);
  return fd;
}

// The protocol with every extension this helper has: CLEANUP (--enable-cleanup). The default,
// upstream's handshake, has its own helper below.
before(async () => {
  helper = await startHelper({ extraArgs: ['--enable-cleanup'] });
  baseline = await warmBaseline(helper);
});

after(async () => {
  for (const fd of opened) closeSync(fd);
  assert.equal(await helper.stop(), 0);
  helper.cleanup();
});

afterEach(async () => {
  assert.equal(await idleFdCount(helper), baseline, 'the helper leaked an fd');
});

/** The greeting `word`, then reply 0 and a request answered. */
function greetingTest(socketPath: () => string, word: number[]): void {
  test(`helper sends ${word.map((b) => b.toString(16).padStart(2, '0')).join(' ')} first and accepts reply 0`, async () => {
    const c = PrClient.open(socketPath());
    assert.deepEqual([...(await c.read(4))], word);
    c.send(new Uint8Array(4));
    const r = await c.request(prInCdb({ sa: 0, allocationLength: 8 }), open('/dev/null', 'r'));
    assert.equal(r.status, 2);
    c.close();
  });
}

function refusedReplies(socketPath: () => string, replies: readonly number[]): void {
  for (const reply of replies) {
    test(`reply 0x${reply.toString(16)} closes the connection`, async () => {
      const c = await PrClient.connect(socketPath(), reply);
      assert.equal(await c.waitClosed(), true);
      c.close();
    });
  }
}

describe('handshake by default, as upstream (docs/protocol.md §3.2)', () => {
  const plain = suiteHelper();
  greetingTest(() => plain().socketPath, [0, 0, 0, 0]);
  refusedReplies(() => plain().socketPath, [1, 2, 0x01000000, 0xffffffff]);

  test('opcode 0xFF (CLEANUP) is an invalid CDB: the connection closes without a response', async () => {
    const c = await PrClient.connect(plain().socketPath);
    c.send(cleanupCdb(), [open('/dev/null', 'r+')]);
    assert.equal(await c.waitClosed(), true);
    c.close();
  });
});

describe('handshake with --enable-cleanup (docs/protocol.md §3.2)', () => {
  greetingTest(() => helper.socketPath, [0, 0, 0, 1]);

  test('reply 1 (big-endian client) is accepted', async () => {
    const c = await PrClient.connect(helper.socketPath, 1);
    assert.equal((await c.request(cleanupCdb(), open('/dev/null', 'r+'))).status, 0);
    c.close();
  });

  refusedReplies(() => helper.socketPath, [2, 0x01000000, 0xffffffff]);

  test('an fd sent with the handshake reply is discarded; the next request has none', async () => {
    const c = PrClient.open(helper.socketPath);
    await c.read(4);
    c.send(new Uint8Array(4), [open('/dev/null', 'r')]);
    c.send(prInCdb({ sa: 0, allocationLength: 8 }));
    assert.equal(await c.waitClosed(), true);
    c.close();
  });

  test('EOF before the reply', async () => {
    const c = PrClient.open(helper.socketPath);
    await c.read(4);
    c.close();
  });
});

describe('request validation (docs/protocol.md §3.5)', () => {
  test('row 2: two fds on one CDB close the connection', async () => {
    const c = await PrClient.connect(helper.socketPath);
    c.send(prInCdb({ sa: 0, allocationLength: 8 }), [open('/dev/null', 'r'), open('/dev/null', 'r')]);
    assert.equal(await c.waitClosed(), true);
    c.close();
  });

  test('row 2: fds on two fragments of one CDB close the connection', async () => {
    const c = await PrClient.connect(helper.socketPath);
    const cdb = prInCdb({ sa: 0, allocationLength: 8 });
    c.send(cdb.subarray(0, 8), [open('/dev/null', 'r')]);
    c.send(cdb.subarray(8), [open('/dev/null', 'r')]);
    assert.equal(await c.waitClosed(), true);
    c.close();
  });

  test('row 2: 253 fds (SCM_MAX_FD) on one CDB are all closed', async () => {
    const c = await PrClient.connect(helper.socketPath);
    const fd = open('/dev/null', 'r');
    c.send(prInCdb({ sa: 0, allocationLength: 8 }), new Array(253).fill(fd));
    assert.equal(await c.waitClosed(), true);
    c.close();
  });

  test('row 3: no fd closes the connection', async () => {
    const c = await PrClient.connect(helper.socketPath);
    c.send(prInCdb({ sa: 0, allocationLength: 8 }));
    assert.equal(await c.waitClosed(), true);
    c.close();
  });

  for (const opcode of [0x00, 0x12, 0x28, 0xa3, 0x5d]) {
    test(`row 4: opcode 0x${opcode.toString(16)} closes the connection and its fd`, async () => {
      const c = await PrClient.connect(helper.socketPath);
      const cdb = new Uint8Array(16);
      cdb[0] = opcode;
      c.send(cdb, [open('/dev/null', 'r+')]);
      assert.equal(await c.waitClosed(), true);
      c.close();
    });
  }

  test('row 5: transfer length 8193 closes before reading parameters; 8192 is served', async () => {
    const bad = await PrClient.connect(helper.socketPath);
    bad.send(prOutCdb({ sa: 0, paramLength: 8193 }), [open('/dev/null', 'r+')]);
    assert.equal(await bad.waitClosed(), true);
    bad.close();
    const big = await PrClient.connect(helper.socketPath);
    const r = await big.request(prOutCdb({ sa: 0, paramLength: 8192 }), open('/dev/null', 'r+'), new Uint8Array(8192));
    assert.equal(r.status, 2);
    assert.deepEqual(r.sense, IO_ERROR);
    const rin = await big.request(prInCdb({ sa: 0, allocationLength: 8192 }), open('/dev/null', 'r'));
    assert.equal(rin.status, 2);
    big.close();
  });

  test('row 6: EOF in the middle of PR OUT parameters', async () => {
    const c = await PrClient.connect(helper.socketPath);
    c.send(prOutCdb({ sa: 0, paramLength: 24 }), [open('/dev/null', 'r+')]);
    c.send(new Uint8Array(10));
    c.close();
  });

  test('an fd sent with PR OUT parameters is discarded, the request is answered', async () => {
    const c = await PrClient.connect(helper.socketPath);
    c.send(prOutCdb({ sa: 0, paramLength: 24 }), [open('/dev/null', 'r+')]);
    c.send(prOutParams(), [open('/dev/null', 'r')]);
    const r = await c.readResponse();
    assert.equal(r.status, 2);
    assert.deepEqual(r.sense, IO_ERROR);
    c.close();
  });
});

describe('execution without a SCSI device (docs/protocol.md §3.7)', () => {
  const cases: { name: string; fd: () => number; cdb: Uint8Array; params?: Uint8Array; status: number; sense: Uint8Array }[] = [
    { name: 'PR IN on /dev/null (ENOTTY)', fd: () => open('/dev/null', 'r'), cdb: prInCdb({ sa: 0, allocationLength: 512 }), status: 2, sense: IO_ERROR },
    { name: 'PR IN on a write-only fd is allowed', fd: () => open('/dev/null', 'w'), cdb: prInCdb({ sa: 1, allocationLength: 512 }), status: 2, sense: IO_ERROR },
    { name: 'PR OUT on a read-only fd: INVALID OPCODE', fd: () => open('/dev/null', 'r'), cdb: prOutCdb({ sa: 0, paramLength: 24 }), params: prOutParams({ saKey: 1n }), status: 2, sense: INVALID_OPCODE },
    { name: 'PR OUT on a write-only fd reaches SG_IO', fd: () => open('/dev/null', 'w'), cdb: prOutCdb({ sa: 0, paramLength: 24 }), params: prOutParams({ saKey: 1n }), status: 2, sense: IO_ERROR },
    { name: 'PR OUT on a read-write fd reaches SG_IO', fd: () => open('/dev/null', 'r+'), cdb: prOutCdb({ sa: 1, type: 5, paramLength: 24 }), params: prOutParams({ key: 1n }), status: 2, sense: IO_ERROR },
    { name: 'PR OUT with an empty parameter list', fd: () => open('/dev/null', 'r+'), cdb: prOutCdb({ sa: 3, paramLength: 0 }), status: 2, sense: IO_ERROR },
    { name: 'CLEANUP on a read-only fd: INVALID OPCODE', fd: () => open('/dev/null', 'r'), cdb: cleanupCdb(), status: 2, sense: INVALID_OPCODE },
    { name: 'CLEANUP on a writable fd: GOOD without I/O', fd: () => open('/dev/null', 'r+'), cdb: cleanupCdb(), status: 0, sense: new Uint8Array(96) },
    { name: 'PR IN on a regular file', fd: () => open(join(helper.dir, 'file'), 'w+'), cdb: prInCdb({ sa: 2, allocationLength: 8 }), status: 2, sense: IO_ERROR },
    { name: 'PR OUT on a directory (read-only)', fd: () => open(helper.dir, 'r'), cdb: prOutCdb({ sa: 0, paramLength: 0 }), status: 2, sense: INVALID_OPCODE },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const client = await PrClient.connect(helper.socketPath);
      const r = await client.request(c.cdb, c.fd(), c.params);
      assert.equal(r.status, c.status);
      assert.equal(r.size, 0);
      assert.deepEqual(r.sense, c.sense);
      client.close();
    });
  }

  test('PR IN on both ends of a pipe', async () => {
    const [rd, wr] = createPipe();
    opened.push(rd, wr);
    const client = await PrClient.connect(helper.socketPath);
    for (const fd of [rd, wr]) {
      const r = await client.request(prInCdb({ sa: 0, allocationLength: 64 }), fd);
      assert.equal(r.status, 2);
      assert.deepEqual(r.sense, IO_ERROR);
    }
    client.close();
  });

  test('PR IN with a socket fd', async () => {
    const other = PrClient.open(helper.socketPath);
    const client = await PrClient.connect(helper.socketPath);
    const r = await client.request(prInCdb({ sa: 0, allocationLength: 64 }), other.fd);
    assert.equal(r.status, 2);
    other.close();
    client.close();
  });

  test('the helper closes every received fd (the file can be deleted and its fd count returns)', async () => {
    const path = join(helper.dir, 'probe');
    writeFileSync(path, 'x');
    const client = await PrClient.connect(helper.socketPath);
    const fd = open(path, 'r');
    for (let i = 0; i < 50; i++) await client.request(prInCdb({ sa: 0, allocationLength: 8 }), fd);
    client.close();
  });
});

describe('framing across reads', () => {
  test('a CDB split at every offset, with the fd on each possible fragment', async () => {
    const client = await PrClient.connect(helper.socketPath);
    const fd = open('/dev/null', 'r');
    const cdb = prInCdb({ sa: 0, allocationLength: 32 });
    for (let cut = 1; cut < 16; cut++) {
      for (const fdOnSecond of [false, true]) {
        client.send(cdb.subarray(0, cut), fdOnSecond ? [] : [fd]);
        client.send(cdb.subarray(cut), fdOnSecond ? [fd] : []);
        const r = await client.readResponse();
        assert.equal(r.status, 2, `cut ${cut}`);
      }
    }
    client.close();
  });

  test('PR OUT parameters split byte by byte', async () => {
    const client = await PrClient.connect(helper.socketPath);
    client.send(prOutCdb({ sa: 0, paramLength: 24 }), [open('/dev/null', 'w')]);
    for (const b of prOutParams({ saKey: 7n })) client.send(Uint8Array.of(b));
    assert.equal((await client.readResponse()).status, 2);
    client.close();
  });

  test('pipelined requests are answered in order', async () => {
    const client = await PrClient.connect(helper.socketPath);
    const ro = open('/dev/null', 'r');
    const rw = open('/dev/null', 'r+');
    // PR OUT on RO (INVALID OPCODE), CLEANUP on RW (GOOD), PR IN (IO_ERROR), repeated
    // (100 messages stay well within the socket buffer, so the sends never block).
    for (let i = 0; i < 25; i++) {
      client.send(concat(prOutCdb({ sa: 0, paramLength: 24 })), [ro]);
      client.send(prOutParams());
      client.send(cleanupCdb(), [rw]);
      client.send(prInCdb({ sa: 0, allocationLength: 100 }), [ro]);
    }
    for (let i = 0; i < 25; i++) {
      assert.deepEqual((await client.readResponse()).sense, INVALID_OPCODE);
      assert.equal((await client.readResponse()).status, 0);
      assert.deepEqual((await client.readResponse()).sense, IO_ERROR);
    }
    client.close();
  });

  test('PR OUT parameters and the next CDB in one sendmsg', async () => {
    const client = await PrClient.connect(helper.socketPath);
    const rw = open('/dev/null', 'r+');
    client.send(prOutCdb({ sa: 0, paramLength: 24 }), [rw]);
    client.send(concat(prOutParams(), cleanupCdb()));
    // The second request has no fd of its own: answered, then closed (docs/protocol.md §3.3).
    assert.deepEqual((await client.readResponse()).sense, IO_ERROR);
    assert.equal(await client.waitClosed(), true);
    client.close();
  });
});
