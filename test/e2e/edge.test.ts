/**
 * Issue 3, item 4: edge cases on a real device, through our helper. /dev/sdX and /dev/sgN
 * fds, PR OUT on a read-only fd, PR IN truncated to the allocation length, and CHECK
 * CONDITIONs produced by the target itself, whose sense must come back unchanged (compared
 * with the same command sent by direct SG_IO).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PrClient } from '../support/client.js';
import { fixedSense96, prInCdb, prOutCdb, prOutParams } from '../support/builders.js';
import { E2E, skipReason, ourHelper, resetDisk, log } from './lib/env.js';
import { DirectSgIo } from './lib/sgio.js';
import { DeviceFd, PrOps, PR_IN, PR_OUT, STATUS, good, hex, parseReadKeys, senseTriple } from './lib/pr.js';
import { keySet, sgReadKeys } from './lib/sgpersist.js';

const skip = skipReason(2);

describe('edge cases on the LIO disk through our helper', { skip }, () => {
  let client: PrClient;
  let pr: PrOps;
  const direct = skip ? null : new DirectSgIo();
  const devs: Record<string, DeviceFd> = {};
  let disk = '';

  before(async () => {
    resetDisk();
    client = await PrClient.connect((await ourHelper()).socketPath);
    pr = new PrOps(client);
    disk = E2E.disks[0] ?? '';
    devs['sd'] = new DeviceFd(disk);
    devs['sg'] = new DeviceFd(E2E.sgs[0] ?? '');
    devs['sd-ro'] = new DeviceFd(disk, 'ro');
    devs['sg-ro'] = new DeviceFd(E2E.sgs[0] ?? '', 'ro');
    devs['B-sd'] = new DeviceFd(E2E.disks[1] ?? '');
  });

  after(() => {
    client?.close();
    for (const d of Object.values(devs)) d.close();
    direct?.free();
    resetDisk();
  });

  const dev = (name: string): DeviceFd => {
    const d = devs[name];
    assert.ok(d, name);
    return d;
  };

  test('PR OUT on a read-only fd (sd and sg) is refused with INVALID OPCODE and never reaches the disk', async () => {
    for (const name of ['sd-ro', 'sg-ro']) {
      const r = await pr.register(dev(name), 0xe0n);
      assert.equal(r.status, STATUS.CHECK_CONDITION, name);
      assert.equal(r.size, 0);
      assert.deepEqual(r.sense, fixedSense96(0x05, 0x20, 0x00), `${name}: 05/20/00, zero-filled to 96 bytes`);
      assert.deepEqual(sgReadKeys(disk).keys, [], `${name}: sg_persist sees no registration`);
    }
  });

  test('PR IN on a read-only fd is allowed (sd and sg)', async () => {
    good(await pr.register(dev('sd'), 0xe1n));
    good(await pr.register(dev('B-sd'), 0xe2n));
    for (const name of ['sd-ro', 'sg-ro']) {
      const keys = parseReadKeys(good(await pr.in(dev(name), PR_IN.READ_KEYS)).data);
      assert.deepEqual(keySet(keys.keys), ['0xe1', '0xe2'], name);
    }
  });

  test('PR IN with an allocation length smaller than the data: truncated, never more than asked', async () => {
    const checks: string[] = [];
    const refused = new Set<string>();
    const sizes: string[] = [];
    for (const name of ['sd', 'sg']) {
      const full = good(await pr.in(dev(name), PR_IN.READ_KEYS, 1024)).data;
      assert.equal(full.length, 24, 'header + 2 keys');
      const fullStatus = good(await pr.in(dev(name), PR_IN.READ_FULL_STATUS, 1024)).data;
      for (const [sa, whole] of [[PR_IN.READ_KEYS, full], [PR_IN.READ_FULL_STATUS, fullStatus]] as const) {
        for (const alloc of [0, 1, 4, 8, 12, 16, 23, 24, 30, 100]) {
          const r = await pr.in(dev(name), sa, alloc);
          const ref = direct?.run(dev(name).fd, prInCdb({ sa, allocationLength: alloc }), { allocation: alloc });
          assert.ok(ref);
          if (alloc < 8) {
            // LIO refuses allocation lengths below the 8-byte header (INVALID FIELD IN CDB):
            // the helper must return exactly that, with no data
            assert.equal(r.status, ref.status, `${name} sa ${sa} alloc ${alloc}: status as direct SG_IO`);
            assert.deepEqual(r.sense, ref.sense, `${name} sa ${sa} alloc ${alloc}: sense as direct SG_IO`);
            assert.equal(r.size, 0);
            if (r.status !== STATUS.GOOD) refused.add(`${alloc}`);
            if (r.status !== STATUS.GOOD) continue;
          }
          good(r);
          assert.ok(r.size <= alloc, `${name} sa ${sa} alloc ${alloc}: never more than asked (${r.size})`);
          assert.equal(ref.status, STATUS.GOOD);
          assert.deepEqual(r.data, ref.data, `${name} sa ${sa} alloc ${alloc}: same as direct SG_IO`);
          if (sa === PR_IN.READ_KEYS) {
            const want = Math.min(alloc, whole.length);
            assert.equal(r.size, want, `${name} READ KEYS alloc ${alloc}: size`);
            assert.deepEqual(r.data, whole.slice(0, want), `${name} READ KEYS alloc ${alloc}: a prefix of the full answer`);
          } else {
            // LIO builds READ FULL STATUS only from the descriptors that fit, so a truncated
            // answer is not a prefix of the full one; direct SG_IO is the reference here
            sizes.push(`${alloc}->${r.size}`);
          }
        }
        checks.push(`${name} sa${sa} (${whole.length} bytes)`);
      }
    }
    log(`truncation checked for ${checks.join(', ')} at allocation lengths 0,1,4,8,12,16,23,24,30,100; the target itself refused: ${[...refused].join(',') || 'none'}; READ FULL STATUS sizes (alloc->size): ${sizes.join(' ')}`);
  });

  test('CHECK CONDITIONs from the target pass through with the target\'s own sense', async () => {
    const cases: { what: string; cdb: Uint8Array; params?: Uint8Array; expect: [number, number, number] }[] = [
      { what: 'PR IN, invalid service action 0x1f', cdb: prInCdb({ sa: 0x1f, allocationLength: 1024 }), expect: [0x5, 0x24, 0x00] },
      { what: 'PR OUT, invalid service action 0x1f', cdb: prOutCdb({ sa: 0x1f, paramLength: 24 }), params: prOutParams({ key: 0xe1n }), expect: [0x5, 0x24, 0x00] },
      {
        what: 'PR OUT REGISTER, parameter list length 23',
        cdb: prOutCdb({ sa: PR_OUT.REGISTER, paramLength: 23 }),
        params: prOutParams({ key: 0xe1n, saKey: 0xe9n }).slice(0, 23),
        expect: [0x5, 0x1a, 0x00],
      },
    ];
    for (const name of ['sd', 'sg']) {
      for (const c of cases) {
        const r = await client.request(c.cdb, dev(name).fd, c.params ?? new Uint8Array(0));
        const opts = c.params ? { params: c.params } : { allocation: 1024 };
        const ref = direct?.run(dev(name).fd, c.cdb, opts);
        assert.ok(ref);
        assert.equal(ref.status, STATUS.CHECK_CONDITION, `${c.what}: direct SG_IO status`);
        assert.equal(r.status, STATUS.CHECK_CONDITION, `${name} ${c.what}: status`);
        assert.equal(r.size, 0);
        assert.deepEqual(senseTriple(r.sense), c.expect, `${name} ${c.what}: sense key/ASC/ASCQ`);
        assert.deepEqual(r.sense, ref.sense, `${name} ${c.what}: the target's sense, byte for byte`);
        log(`${name}: ${c.what} -> sense ${hex(r.sense.slice(0, ref.senseWritten))} (${ref.senseWritten} bytes from the target)`);
      }
    }
    assert.deepEqual(keySet(sgReadKeys(disk).keys), ['0xe1', '0xe2'], 'nothing changed on the disk');
  });
});
