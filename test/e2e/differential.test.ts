/**
 * Issue 3, item 5: the same PR sequence through Debian's C qemu-pr-helper and through
 * ours, in the same guest, on the same LIO disk (reset between the runs); and through QEMU
 * 11's C helper when the test tools are installed (issue 15 item 3). Responses
 * are compared byte for byte. The only differences allowed are the documented deliberate
 * fixes (docs/protocol.md §9): sense bytes 18..95 of the read-only refusal (uninitialised
 * stack in the C helper, zero in ours) and the C helper's 1 ms SG_IO timeout on /dev/sgN
 * nodes (COMMAND TIMEOUT). The handshake word (0) and CLEANUP (0xFF closes the connection)
 * are the same, as both run as upstream does by default. PR generation numbers are compared relative to the first one
 * of each run, since the disk's counter keeps going.
 */
import { describe, test, before, after } from 'node:test';
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { ConnectionClosed, PrClient } from '../support/client.js';
import { cleanupCdb, prOutCdb, prOutParams, type Response } from '../support/builders.js';
import { startHelper, type Helper } from '../support/launcher.js';
import { E2E, skipReason, QEMU11_PR_HELPER, ourHelper, referenceHelper, resetDisk, log } from './lib/env.js';
import { DeviceFd, PR_IN, PR_OUT, PR_TYPE, hex, registerAndMoveParams, sasTransportId, senseTriple } from './lib/pr.js';
import { generationRelative, inStep, outStep, type Step } from './lib/sequence.js';

const skip = skipReason(2);



function sequence(): Step[] {
  const tidA = sasTransportId(E2E.initiators[0] ?? 0n);
  return [
    inStep('READ KEYS (empty)', 'A', PR_IN.READ_KEYS),
    inStep('REPORT CAPABILITIES', 'A', PR_IN.REPORT_CAPABILITIES, 8),
    outStep('REGISTER A 0xd1', 'A', PR_OUT.REGISTER, prOutParams({ saKey: 0xd1n })),
    outStep('REGISTER B 0xd2', 'B', PR_OUT.REGISTER, prOutParams({ saKey: 0xd2n })),
    inStep('READ KEYS', 'B', PR_IN.READ_KEYS),
    inStep('READ KEYS alloc 12 (truncated)', 'A', PR_IN.READ_KEYS, 12),
    outStep('REGISTER with a wrong key (conflict)', 'A', PR_OUT.REGISTER, prOutParams({ key: 0x99n, saKey: 0xd9n })),
    outStep('RESERVE A type 1', 'A', PR_OUT.RESERVE, prOutParams({ key: 0xd1n }), PR_TYPE.WRITE_EXCLUSIVE),
    outStep('RESERVE B type 3 (conflict)', 'B', PR_OUT.RESERVE, prOutParams({ key: 0xd2n }), PR_TYPE.EXCLUSIVE_ACCESS),
    inStep('READ RESERVATION', 'B', PR_IN.READ_RESERVATION),
    inStep('READ FULL STATUS', 'A', PR_IN.READ_FULL_STATUS),
    inStep('READ FULL STATUS alloc 40 (truncated)', 'A', PR_IN.READ_FULL_STATUS, 40),
    outStep('REGISTER on a read-only fd (refused)', 'A-ro', PR_OUT.REGISTER, prOutParams({ saKey: 0xd7n })),
    inStep('READ KEYS on a read-only fd', 'A-ro', PR_IN.READ_KEYS),
    inStep('PR IN invalid SA 0x1f (target CHECK CONDITION)', 'A', 0x1f),
    { name: 'REGISTER param length 23 (target CHECK CONDITION)', dev: 'A', cdb: prOutCdb({ sa: PR_OUT.REGISTER, paramLength: 23 }), params: prOutParams({ key: 0xd1n, saKey: 0xd8n }).slice(0, 23) },
    outStep('REGISTER AND IGNORE A 0xd3', 'A', PR_OUT.REGISTER_AND_IGNORE, prOutParams({ saKey: 0xd3n })),
    outStep('PREEMPT: B preempts A, type 5', 'B', PR_OUT.PREEMPT, prOutParams({ key: 0xd2n, saKey: 0xd3n }), PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
    inStep('READ KEYS from preempted A (UNIT ATTENTION)', 'A', PR_IN.READ_KEYS),
    inStep('READ RESERVATION', 'A', PR_IN.READ_RESERVATION),
    outStep('REGISTER AND MOVE B -> A', 'B', PR_OUT.REGISTER_AND_MOVE,
      registerAndMoveParams({ key: 0xd2n, saKey: 0xd4n, relativeTargetPort: 1, transportId: tidA }), PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
    inStep('READ FULL STATUS after the move', 'B', PR_IN.READ_FULL_STATUS),
    outStep('RELEASE by A', 'A', PR_OUT.RELEASE, prOutParams({ key: 0xd4n }), PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
    inStep('READ RESERVATION from B (UNIT ATTENTION: released)', 'B', PR_IN.READ_RESERVATION),
    outStep('CLEAR by A', 'A', PR_OUT.CLEAR, prOutParams({ key: 0xd4n })),
    inStep('READ KEYS from B (UNIT ATTENTION: preempted)', 'B', PR_IN.READ_KEYS),
    inStep('READ KEYS (empty again)', 'B', PR_IN.READ_KEYS),
  ];
}

/** PR IN sequence on the /dev/sgN nodes: state-independent reads only. */
function sgSequence(): Step[] {
  return [
    inStep('sg: READ KEYS', 'A-sg', PR_IN.READ_KEYS),
    inStep('sg: REPORT CAPABILITIES', 'A-sg', PR_IN.REPORT_CAPABILITIES, 8),
    inStep('sg: READ RESERVATION', 'B-sg', PR_IN.READ_RESERVATION),
    inStep('sg: READ FULL STATUS', 'B-sg', PR_IN.READ_FULL_STATUS),
    inStep('sg: READ KEYS alloc 4', 'A-sg', PR_IN.READ_KEYS, 4),
    inStep('sg: invalid SA', 'A-sg', 0x1f),
  ];
}

interface Run {
  features: number | null;
  responses: Response[];
  cleanup: string;
}

describe('differential: Debian\'s C qemu-pr-helper vs ours on the same LIO disk', { skip }, () => {
  const devs: Record<string, DeviceFd> = {};
  const runs: Record<string, Run> = {};
  const sgRuns: Record<string, Response[]> = {};

  before(() => {
    devs['A'] = new DeviceFd(E2E.disks[0] ?? '');
    devs['B'] = new DeviceFd(E2E.disks[1] ?? '');
    devs['A-ro'] = new DeviceFd(E2E.disks[0] ?? '', 'ro');
    devs['A-sg'] = new DeviceFd(E2E.sgs[0] ?? '');
    devs['B-sg'] = new DeviceFd(E2E.sgs[1] ?? '');
  });

  after(() => {
    for (const d of Object.values(devs)) d.close();
    resetDisk();
  });

  async function play(helper: Helper, steps: Step[]): Promise<{ client: PrClient; responses: Response[] }> {
    const client = await PrClient.connect(helper.socketPath);
    const responses: Response[] = [];
    for (const s of steps) {
      const d = devs[s.dev];
      assert.ok(d, s.dev);
      responses.push(await client.request(s.cdb, d.fd, s.params ?? new Uint8Array(0)));
    }
    return { client, responses };
  }

  async function runWith(name: string, helper: Helper): Promise<void> {
    resetDisk();
    const { client, responses } = await play(helper, sequence());
    const sg = await play(helper, sgSequence());
    sg.client.close();
    sgRuns[name] = sg.responses;
    // CLEANUP last: the C helper 7.2 closes the connection on it
    client.send(cleanupCdb(), [devs['A']?.fd ?? -1]);
    let cleanup: string;
    try {
      const r = await client.readResponse();
      cleanup = `answered status ${r.status} size ${r.size}`;
    } catch (error) {
      cleanup = error instanceof ConnectionClosed ? 'closed the connection' : `error: ${String(error)}`;
    }
    runs[name] = { features: client.features, responses, cleanup };
    client.close();
  }

  test('the sequence through the C helper', async () => {
    await runWith('C', await referenceHelper());
  });

  test('the same sequence through ours', async () => {
    await runWith('ours', await ourHelper());
  });

  test('the same sequence through QEMU 11\'s C helper (linked with libmpathpersist 0.14.3)', async (t) => {
    if (!existsSync(QEMU11_PR_HELPER)) {
      t.skip(`${QEMU11_PR_HELPER} is not installed (the test tools of .ci/run)`);
      return;
    }
    const c11 = await startHelper({ binary: QEMU11_PR_HELPER, timeoutMs: 60_000 });
    try {
      await runWith('C11', c11);
    } finally {
      await c11.stop();
      c11.cleanup();
    }
  });

  for (const reference of ['C', 'C11'] as const) {
    test(`responses are identical byte for byte to ${reference === 'C' ? 'Debian\'s C helper (7.2)' : 'QEMU 11\'s C helper'}, except where a deliberate fix applies`, (t) => {
      if (reference === 'C11' && runs['C11'] === undefined) {
        t.skip(`${QEMU11_PR_HELPER} is not installed`);
        return;
      }
      compareWith(reference);
    });
  }

  /** Compares our run with the reference helper's run `name`, logging each step. */
  function compareWith(name: 'C' | 'C11'): void {
    const c = runs[name];
    const ours = runs['ours'];
    assert.ok(c && ours, 'both runs happened');
    const steps = sequence();
    const gen = (rs: Response[]): number => new DataView((rs[0]?.data ?? new Uint8Array(4)).buffer).getUint32(0);
    const [gc, go] = [gen(c.responses), gen(ours.responses)];
    const allowed: string[] = [];
    const lines: string[] = [];
    steps.forEach((s, i) => {
      const rc = c.responses[i];
      const ro = ours.responses[i];
      assert.ok(rc && ro);
      const [k, asc, ascq] = senseTriple(ro.sense);
      const what = `status 0x${ro.status.toString(16)} size ${ro.size}${ro.status === 2 ? ` sense ${k.toString(16)}/${asc.toString(16)}/${ascq.toString(16)}` : ''}`;
      assert.equal(ro.status, rc.status, `${s.name}: status`);
      assert.equal(ro.size, rc.size, `${s.name}: size`);
      assert.equal(hex(generationRelative(s, ro, go)), hex(generationRelative(s, rc, gc)), `${s.name}: data (generation relative)`);
      if (s.dev.endsWith('-ro') && s.cdb[0] === 0x5f) {
        // docs/protocol.md §9 item 5: the C helper builds 18 bytes and sends 78 uninitialised ones
        assert.equal(hex(ro.sense.slice(0, 18)), hex(rc.sense.slice(0, 18)), `${s.name}: sense bytes 0..17`);
        assert.deepEqual(ro.sense.slice(18), new Uint8Array(78), `${s.name}: ours zero-fills 18..95`);
        const differs = hex(ro.sense.slice(18)) !== hex(rc.sense.slice(18));
        if (differs) allowed.push(`${s.name}: sense bytes 18..95 differ (C: uninitialised; ours: zero) -- docs/protocol.md §9.5`);
        lines.push(`${s.name.padEnd(52)} ${what}  ${differs ? 'same except docs/protocol.md §9.5 sense tail' : 'same'}`);
      } else {
        assert.equal(hex(ro.sense), hex(rc.sense), `${s.name}: 96 sense bytes`);
        lines.push(`${s.name.padEnd(52)} ${what}  same`);
      }
    });
    // /dev/sgN reads: equal, unless the C helper's 1 ms SG_IO timeout fired (docs/protocol.md §9.1)
    sgSequence().forEach((s, i) => {
      const rc = sgRuns[name]?.[i];
      const ro = sgRuns['ours']?.[i];
      assert.ok(rc && ro);
      const [k, asc, ascq] = senseTriple(rc.sense);
      if (rc.status === 2 && k === 0x0b && asc === 0x2e && ascq === 0x02 && ro.status !== rc.status) {
        allowed.push(`${s.name}: C helper timed out (1 ms SG_IO timeout on sg nodes) -- docs/protocol.md §9.1`);
        lines.push(`${s.name.padEnd(52)} C: COMMAND TIMEOUT, ours: status 0x${ro.status.toString(16)}  allowed docs/protocol.md §9.1`);
        return;
      }
      assert.equal(ro.status, rc.status, `${s.name}: status`);
      assert.equal(ro.size, rc.size, `${s.name}: size`);
      assert.equal(hex(ro.data.slice(4)), hex(rc.data.slice(4)), `${s.name}: data after the generation`);
      assert.equal(hex(ro.sense), hex(rc.sense), `${s.name}: sense`);
      lines.push(`${s.name.padEnd(52)} status 0x${ro.status.toString(16)} size ${ro.size}  same`);
    });
    for (const l of lines) log(l);
    // handshake and CLEANUP (docs/protocol.md §3.2, §9.14): no feature, and 0xFF closes, as upstream
    log(`handshake: ${name} ${c.features}, ours ${ours.features}; CLEANUP: ${name} ${c.cleanup}, ours ${ours.cleanup}`);
    assert.equal(c.features, 0);
    assert.equal(ours.features, 0);
    assert.equal(c.cleanup, 'closed the connection');
    assert.equal(ours.cleanup, 'closed the connection');
    for (const a of allowed) log(`allowed difference (${name}): ${a}`);
  }
});
