/**
 * Differential test against Debian's C qemu-pr-helper (7.2, package qemu-system-common):
 * the same request sequences go to both helpers, and the responses must be byte-identical,
 * with the same close/keep decisions, except where a deliberate fix applies. Those
 * exceptions are listed here and nowhere else:
 *
 * (By default both announce no feature and close the connection on opcode 0xFF, as upstream:
 * the handshake and CLEANUP scenarios compare exactly; docs/protocol.md §3.2.)
 * - SENSE_TAIL: on the read-only PR OUT refusal the reference sends sense bytes 18-95 from
 *   uninitialized stack memory; ours are zero (docs/protocol.md §9 item 5). Only bytes 0-17 compare.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync } from 'node:fs';
import { PrClient } from '../support/client.js';
import { startHelper, referenceUnavailable, REFERENCE_HELPER, type Helper } from '../support/launcher.js';
import { HEADER_SIZE, cleanupCdb, concat, prInCdb, prOutCdb, prOutParams } from '../support/builders.js';

const skip = referenceUnavailable();

type Transcript = string[];
type Scenario = (path: string, fds: Fds) => Promise<Transcript>;

interface Fds {
  ro: number;
  wo: number;
  rw: number;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** Reads one response as hex, or 'closed' if the helper hangs up instead. */
async function next(c: PrClient): Promise<string> {
  try {
    const r = await c.readResponse(5000);
    return hex(concat(new Uint8Array(Buffer.from(`${r.status.toString(16).padStart(8, '0')}${r.size.toString(16).padStart(8, '0')}`, 'hex')), r.sense, r.data));
  } catch {
    return (await c.waitClosed(100).catch(() => false)) || c.unread === 0 ? 'closed' : 'garbage';
  }
}

async function session(path: string, body: (c: PrClient, t: Transcript) => Promise<void>, reply = 0): Promise<Transcript> {
  const c = PrClient.open(path);
  const t: Transcript = [];
  try {
    const greeting = await c.read(4);
    t.push(`greeting ${hex(greeting)}`);
    const answer = new Uint8Array(4);
    new DataView(answer.buffer).setUint32(0, reply);
    c.send(answer);
    await body(c, t);
  } finally {
    c.close();
  }
  return t;
}

const scenarios: Record<string, Scenario> = {
  'PR IN service actions and allocation lengths on /dev/null': (p, f) => session(p, async (c, t) => {
    for (const sa of [0, 1, 2, 3, 0x1f]) {
      for (const len of [0, 1, 8, 24, 8192]) {
        c.send(prInCdb({ sa, allocationLength: len }), [f.ro]);
        t.push(await next(c));
      }
    }
  }),
  'PR OUT on read-only, write-only and read-write fds': (p, f) => session(p, async (c, t) => {
    for (const fd of [f.ro, f.wo, f.rw]) {
      for (const sa of [0, 1, 6, 7]) {
        c.send(prOutCdb({ sa, type: 5, paramLength: 24 }), [fd]);
        c.send(prOutParams({ key: 0x1122n, saKey: 0x3344n }));
        t.push(await next(c));
      }
      c.send(prOutCdb({ sa: 3, paramLength: 0 }), [fd]);
      t.push(await next(c));
    }
  }),
  'transfer length 8192 served, 8193 closes': (p, f) => session(p, async (c, t) => {
    c.send(prOutCdb({ sa: 0, paramLength: 8192 }), [f.rw]);
    c.send(new Uint8Array(8192));
    t.push(await next(c));
    c.send(prOutCdb({ sa: 0, paramLength: 8193 }), [f.rw]);
    t.push(await next(c));
  }),
  'invalid opcode closes': (p, f) => session(p, async (c, t) => {
    const cdb = new Uint8Array(16);
    cdb[0] = 0x12;
    c.send(cdb, [f.rw]);
    t.push(await next(c));
  }),
  'no fd closes': (p) => session(p, async (c, t) => {
    c.send(prInCdb({ sa: 0, allocationLength: 8 }));
    t.push(await next(c));
  }),
  'two fds close': (p, f) => session(p, async (c, t) => {
    c.send(prInCdb({ sa: 0, allocationLength: 8 }), [f.ro, f.rw]);
    t.push(await next(c));
  }),
  'fds on two fragments close': (p, f) => session(p, async (c, t) => {
    const cdb = prInCdb({ sa: 0, allocationLength: 8 });
    c.send(cdb.subarray(0, 5), [f.ro]);
    c.send(cdb.subarray(5), [f.ro]);
    t.push(await next(c));
  }),
  'CDB split with the fd on the second fragment': (p, f) => session(p, async (c, t) => {
    const cdb = prInCdb({ sa: 1, allocationLength: 40 });
    for (const cut of [1, 8, 15]) {
      c.send(cdb.subarray(0, cut));
      c.send(cdb.subarray(cut), [f.ro]);
      t.push(await next(c));
    }
  }),
  'pipelined requests': (p, f) => session(p, async (c, t) => {
    for (let i = 0; i < 10; i++) {
      c.send(prInCdb({ sa: i % 3, allocationLength: 100 }), [f.ro]);
      c.send(prOutCdb({ sa: 0, paramLength: 24 }), [f.wo]);
      c.send(prOutParams());
    }
    for (let i = 0; i < 20; i++) t.push(await next(c));
  }),
  'an fd with the handshake reply is lost': (p, f) => (async () => {
    const c = PrClient.open(p);
    const t: Transcript = [`greeting ${hex(await c.read(4))}`];
    c.send(new Uint8Array(4), [f.ro]);
    c.send(prInCdb({ sa: 0, allocationLength: 8 }));
    t.push(await next(c));
    c.close();
    return t;
  })(),
  'parameters and the next CDB in one sendmsg': (p, f) => session(p, async (c, t) => {
    c.send(prOutCdb({ sa: 0, paramLength: 24 }), [f.rw]);
    c.send(concat(prOutParams(), prInCdb({ sa: 0, allocationLength: 8 })));
    t.push(await next(c));
    t.push(await next(c));
  }),
  // 1 is the unmerged CLEANUP bit: upstream helpers require 0.
  ...Object.fromEntries([1, 2].map((reply): [string, Scenario] => [`handshake reply ${reply} closes`, (p, f) => session(p, async (c, t) => {
    try {
      c.send(prInCdb({ sa: 0, allocationLength: 8 }), [f.ro]);
    } catch {
      // already closed
    }
    t.push(await next(c));
  }, reply)])),
  'CLEANUP (opcode 0xFF) closes': (p, f) => session(p, async (c, t) => {
    c.send(cleanupCdb(), [f.rw]);
    t.push(await next(c));
  }),
};

/** SENSE_TAIL: the INVALID OPCODE response's sense bytes 18-95. */
function maskSenseTail(t: Transcript): Transcript {
  const invalidOpcode = `0000000200000000700005000000000a00000000200000000000`; // result, size, 18 sense bytes
  return t.map((line) => (line.startsWith(invalidOpcode) && line.length === HEADER_SIZE * 2 ? `${line.slice(0, (8 + 18) * 2)}<tail>` : line));
}

describe('differential against the C qemu-pr-helper', { skip }, () => {
  let ours: Helper;
  let reference: Helper;
  let fds: Fds;

  before(async () => {
    ours = await startHelper();
    reference = await startHelper({ binary: REFERENCE_HELPER });
    fds = { ro: openSync('/dev/null', 'r'), wo: openSync('/dev/null', 'w'), rw: openSync('/dev/null', 'r+') };
  });

  after(async () => {
    closeSync(fds.ro);
    closeSync(fds.wo);
    closeSync(fds.rw);
    assert.equal(await ours.stop(), 0);
    assert.equal(await reference.stop(), 0);
    ours.cleanup();
    reference.cleanup();
  });

  for (const [name, scenario] of Object.entries(scenarios)) {
    test(name, async () => {
      const a = await scenario(ours.socketPath, fds);
      const b = await scenario(reference.socketPath, fds);
      assert.ok(a.length > 1, 'the scenario produced responses');
      assert.deepEqual(maskSenseTail(b), maskSenseTail(a));
    });
  }

  test('the SENSE_TAIL exception: our tail is zero', async () => {
    const t = await scenarios['PR OUT on read-only, write-only and read-write fds']!(ours.socketPath, fds);
    const refusal = t[1] ?? '';
    assert.ok(refusal.startsWith('00000002000000007000050000000'), refusal);
    assert.match(refusal.slice((8 + 18) * 2), /^0+$/);
  });
});
