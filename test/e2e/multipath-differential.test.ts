/**
 * Issue 15 item 3: the real-SCSI PR sequence on a dm-multipath map through QEMU 11's C
 * qemu-pr-helper (linked with libmpathpersist 0.14.3) and through ours with the same
 * library, against the same multipathd 0.14.3, on the same LU (reset between the runs).
 * The map is over the two tcm_loop paths (/dev/sda + /dev/sdb); the "other host" is the
 * iSCSI nexus (/dev/sdc, not a path of the map), reached through the same helper as a plain
 * disk. Responses are compared byte for byte; PR generations relative to the run's first.
 * The deviations allowed, each logged (docs/differences.md):
 * - READ FULL STATUS on a map: QEMU answers INVALID FIELD IN CDB without asking the
 *   library; ours returns the library's answer (docs/protocol.md §5.5);
 * - sense bytes 18..95 of the read-only refusal (docs/protocol.md §9 item 5).
 */
import { describe, test, before, after } from 'node:test';
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { PrClient } from '../support/client.js';
import { prOutCdb, prOutParams, type Response } from '../support/builders.js';
import { startHelper, type Helper } from '../support/launcher.js';
import { E2E, skipReason, QEMU11_PR_HELPER, resetDisk, log, stopLogged, drainUnitAttentionsOn } from './lib/env.js';
import { DeviceFd, PR_IN, PR_OUT, PR_TYPE, hex, registerAndMoveParams, sasTransportId, senseTriple } from './lib/pr.js';
import { MultipathMap, PatientPrOps, multipathd } from './lib/multipath.js';
import { generationRelative, inStep, outStep, type Step as SequenceStep } from './lib/sequence.js';

type Step = SequenceStep<'M' | 'M-ro' | 'X'>;

const LIBRARY = '/opt/mpt-0.14.3/lib64/libmpathpersist.so.0';
const SBIN = '/opt/mpt-0.14.3/sbin';
const ALIAS = 'prh-e2e-mpdiff';

function baseSkip(): string | false {
  const base = skipReason(2);
  if (base) return base;
  if (E2E.iscsi === null) return 'the iSCSI nexus (the other host) was not set up';
  for (const f of [QEMU11_PR_HELPER, LIBRARY, `${SBIN}/multipathd`]) {
    if (!existsSync(f)) return `${f} is not installed (the test tools of .ci/run)`;
  }
  return false;
}
const skip = baseSkip();


const WE_RO = PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;

function sequence(): Step[] {
  return [
    inStep('READ KEYS (empty)', 'M', PR_IN.READ_KEYS),
    inStep('REPORT CAPABILITIES', 'M', PR_IN.REPORT_CAPABILITIES, 8),
    outStep('REGISTER map 0xe1 (every path)', 'M', PR_OUT.REGISTER, prOutParams({ saKey: 0xe1n })),
    outStep('REGISTER other host 0xe2', 'X', PR_OUT.REGISTER, prOutParams({ saKey: 0xe2n })),
    inStep('READ KEYS', 'M', PR_IN.READ_KEYS),
    inStep('READ KEYS alloc 12 (truncated)', 'M', PR_IN.READ_KEYS, 12),
    outStep('REGISTER map with a wrong key', 'M', PR_OUT.REGISTER, prOutParams({ key: 0x99n, saKey: 0xe9n })),
    outStep('RESERVE map WE-RO', 'M', PR_OUT.RESERVE, prOutParams({ key: 0xe1n }), WE_RO),
    outStep('RESERVE other host EA (conflict)', 'X', PR_OUT.RESERVE, prOutParams({ key: 0xe2n }), PR_TYPE.EXCLUSIVE_ACCESS),
    inStep('READ RESERVATION', 'M', PR_IN.READ_RESERVATION),
    inStep('READ FULL STATUS', 'M', PR_IN.READ_FULL_STATUS),
    outStep('REGISTER on a read-only map fd (refused)', 'M-ro', PR_OUT.REGISTER, prOutParams({ saKey: 0xe7n })),
    inStep('READ KEYS on a read-only map fd', 'M-ro', PR_IN.READ_KEYS),
    inStep('PR IN invalid SA 0x1f', 'M', 0x1f),
    { name: 'REGISTER param length 23', dev: 'M', cdb: prOutCdb({ sa: PR_OUT.REGISTER, paramLength: 23 }), params: prOutParams({ key: 0xe1n, saKey: 0xe8n }).slice(0, 23) },
    outStep('PREEMPT: other host preempts the map, WE-RO', 'X', PR_OUT.PREEMPT, prOutParams({ key: 0xe2n, saKey: 0xe1n }), WE_RO),
    inStep('READ KEYS after being preempted', 'M', PR_IN.READ_KEYS),
    inStep('READ RESERVATION', 'M', PR_IN.READ_RESERVATION),
    outStep('REGISTER map 0xe3', 'M', PR_OUT.REGISTER, prOutParams({ saKey: 0xe3n })),
    outStep('PREEMPT: map preempts the other host, WE-RO', 'M', PR_OUT.PREEMPT, prOutParams({ key: 0xe3n, saKey: 0xe2n }), WE_RO),
    inStep('READ KEYS', 'M', PR_IN.READ_KEYS),
    outStep('REGISTER AND MOVE on the map (refused)', 'M', PR_OUT.REGISTER_AND_MOVE,
      registerAndMoveParams({ key: 0xe3n, saKey: 0xe4n, relativeTargetPort: 1, transportId: sasTransportId(E2E.initiators[0] ?? 0n) }), WE_RO),
    outStep('RELEASE map', 'M', PR_OUT.RELEASE, prOutParams({ key: 0xe3n }), WE_RO),
    inStep('READ RESERVATION (none)', 'M', PR_IN.READ_RESERVATION),
    outStep('CLEAR map', 'M', PR_OUT.CLEAR, prOutParams({ key: 0xe3n })),
    inStep('READ KEYS (empty again)', 'M', PR_IN.READ_KEYS),
    // QEMU 11's migration: the other host ("source") holds WE-RO with K; the map REGISTERs K, then PREEMPT(K, K)
    outStep('source: REGISTER 0xe5', 'X', PR_OUT.REGISTER, prOutParams({ saKey: 0xe5n })),
    outStep('source: RESERVE WE-RO', 'X', PR_OUT.RESERVE, prOutParams({ key: 0xe5n }), WE_RO),
    outStep('destination map: REGISTER 0xe5', 'M', PR_OUT.REGISTER, prOutParams({ saKey: 0xe5n })),
    outStep('destination map: PREEMPT(0xe5, 0xe5, WE-RO)', 'M', PR_OUT.PREEMPT, prOutParams({ key: 0xe5n, saKey: 0xe5n }), WE_RO),
    inStep('READ KEYS after the migration', 'M', PR_IN.READ_KEYS),
    inStep('READ RESERVATION after the migration', 'M', PR_IN.READ_RESERVATION),
    outStep('CLEAR map', 'M', PR_OUT.CLEAR, prOutParams({ key: 0xe5n })),
  ];
}

const describeResponse = (r: Response): string => {
  const [k, asc, ascq] = senseTriple(r.sense);
  return `status 0x${r.status.toString(16)} size ${r.size}${r.status === 2 ? ` sense ${k.toString(16)}/${asc.toString(16)}/${ascq.toString(16)}` : ''}`;
};

describe("differential on a dm-multipath map: QEMU 11's C helper vs ours, both with libmpathpersist 0.14.3", { skip }, () => {
  const savedPath = process.env['PATH'] ?? '';
  const map = new MultipathMap(ALIAS, E2E.disks.slice(0, 2));
  const devs: Partial<Record<Step['dev'], DeviceFd>> = {};
  const runs: Record<string, Response[]> = {};

  before(async () => {
    resetDisk();
    process.env['PATH'] = `${SBIN}:${savedPath}`;
    const made = await map.create();
    assert.ok('node' in made, `map: ${'why' in made ? made.why : ''}`);
    devs.M = new DeviceFd(map.node);
    devs['M-ro'] = new DeviceFd(map.node, 'ro');
    devs.X = new DeviceFd(E2E.iscsi?.disk ?? '');
  });

  after(async () => {
    for (const d of Object.values(devs)) d.close();
    await map.destroy();
    process.env['PATH'] = savedPath;
    resetDisk();
  });

  async function runWith(name: string, helper: Helper): Promise<void> {
    resetDisk();
    drainUnitAttentionsOn(E2E.iscsi?.disk ?? '');
    try {
      multipathd('unsetprkey', 'map', ALIAS);
    } catch {
      // no key set
    }
    const client = await PrClient.connect(helper.socketPath);
    // the library's thread starts with the first multipath request: seconds under TCG
    const pr = new PatientPrOps(client);
    const responses: Response[] = [];
    try {
      for (const s of sequence()) {
        const d = devs[s.dev];
        assert.ok(d, s.dev);
        responses.push(await pr.send(s.cdb, d, s.params ?? new Uint8Array(0)));
      }
    } finally {
      client.close();
    }
    runs[name] = responses;
  }

  test("the sequence through QEMU 11's C helper", { timeout: 300_000 }, async () => {
    const c11 = await startHelper({ binary: QEMU11_PR_HELPER, timeoutMs: 60_000 });
    try {
      await runWith('C11', c11);
    } finally {
      await stopLogged(c11, 10_000, "QEMU 11's C helper", 4);
      c11.cleanup();
    }
  });

  test('the same sequence through ours (QEMU_PR_HELPER_MPATH_LIBRARY = 0.14.3)', { timeout: 300_000 }, async () => {
    const ours = await startHelper({ env: { ...process.env, QEMU_PR_HELPER_MPATH_LIBRARY: LIBRARY }, timeoutMs: 60_000 });
    try {
      await runWith('ours', ours);
    } finally {
      await stopLogged(ours, 10_000, 'our helper', 4);
      ours.cleanup();
    }
  });

  test('responses are identical byte for byte, except the listed deviations', () => {
    const c = runs['C11'];
    const ours = runs['ours'];
    assert.ok(c && ours, 'both runs happened');
    const steps = sequence();
    const gen = (rs: Response[]): number => new DataView((rs[0]?.data ?? new Uint8Array(4)).buffer).getUint32(0);
    const [gc, go] = [gen(c), gen(ours)];
    const mismatches: string[] = [];
    steps.forEach((s, i) => {
      const rc = c[i];
      const ro = ours[i];
      assert.ok(rc && ro);
      const line = `${s.name.padEnd(48)} C11: ${describeResponse(rc)}; ours: ${describeResponse(ro)}`;
      if (s.cdb[0] === 0x5e && ((s.cdb[1] ?? 0) & 0x1f) === PR_IN.READ_FULL_STATUS) {
        // QEMU refuses READ FULL STATUS on a map (INVALID FIELD IN CDB); ours asks the library
        assert.equal(rc.status, 2, `${s.name}: QEMU 11 refuses it`);
        assert.deepEqual(senseTriple(rc.sense), [0x5, 0x24, 0x00]);
        assert.equal(ro.status, 0, `${s.name}: ours answers it`);
        log(`MPATH-DIFF ${line}  allowed: docs/differences.md (READ FULL STATUS on a map)`);
        return;
      }
      const same = ro.status === rc.status && ro.size === rc.size && hex(generationRelative(s, ro, go)) === hex(generationRelative(s, rc, gc));
      const roRefusal = s.dev === 'M-ro' && s.cdb[0] === 0x5f;
      const senseSame = roRefusal ? hex(ro.sense.slice(0, 18)) === hex(rc.sense.slice(0, 18)) : hex(ro.sense) === hex(rc.sense);
      const tail = roRefusal && hex(ro.sense.slice(18)) !== hex(rc.sense.slice(18)) ? '  allowed: sense bytes 18..95 (docs/protocol.md §9 item 5)' : '';
      log(`MPATH-DIFF ${line}  ${same && senseSame ? 'same' : 'DIFFERENT'}${tail}`);
      if (!same || !senseSame) {
        mismatches.push(`${s.name}: C11 ${describeResponse(rc)} data ${hex(generationRelative(s, rc, gc)).slice(0, 64)}; ours ${describeResponse(ro)} data ${hex(generationRelative(s, ro, go)).slice(0, 64)}`);
      }
    });
    assert.deepEqual(mismatches, [], 'every response but the listed deviations is the same');
  });
});
