/**
 * Issue 15 item 3: SG_IO failing with ENODEV. An sd device set offline makes the kernel
 * refuse every ioctl on it with ENODEV (scsi_ioctl_block_when_processing_errors; sysfs
 * takes the state name with its newline). QEMU 10.0 and later answer that with CHECK
 * CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE (04/44/00; scsi_sense_from_errno,
 * docs/protocol.md §4.2), and so does this helper. The
 * same request goes through QEMU 11's C helper when /opt/qemu-11 is installed (.ci/run:
 * the test tools), whose response must be byte-identical; Debian's 7.2, which predates the
 * mapping, is only logged.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { PrClient } from '../support/client.js';
import { fixedSense96, type Response } from '../support/builders.js';
import { startHelper, REFERENCE_HELPER, type Helper } from '../support/launcher.js';
import { E2E, skipReason, QEMU11_PR_HELPER, ourHelper, log } from './lib/env.js';
import { DeviceFd, PrOps, PR_IN, STATUS, hex, senseTriple } from './lib/pr.js';

const skip = skipReason(2);

describe('SG_IO failing with ENODEV (an offline sd device)', { skip }, () => {
  let disk = '';
  let state = '';
  let dev: DeviceFd | null = null;
  const started: Helper[] = [];

  before(() => {
    disk = E2E.disks[1] ?? '';
    state = `/sys/block/${basename(disk)}/device/state`;
    dev = new DeviceFd(disk);
  });

  after(async () => {
    writeFileSync(state, 'running\n');
    dev?.close();
    for (const h of started) {
      await h.stop();
      h.cleanup();
    }
  });

  /** READ KEYS through the helper at `socketPath`, with the device offline only meanwhile. */
  async function readKeysOffline(socketPath: string): Promise<Response> {
    const client = await PrClient.connect(socketPath);
    try {
      writeFileSync(state, 'offline\n');
      assert.equal(readFileSync(state, 'latin1').trim(), 'offline');
      return await new PrOps(client).in(dev as DeviceFd, PR_IN.READ_KEYS);
    } finally {
      writeFileSync(state, 'running\n');
      client.close();
    }
  }

  test('ours answers CHECK CONDITION 04/44/00 (INTERNAL TARGET FAILURE), as QEMU 10.0 and later', async () => {
    const r = await readKeysOffline((await ourHelper()).socketPath);
    log(`ours on an offline ${disk}: status 0x${r.status.toString(16)}, sense ${senseTriple(r.sense).map((b) => b.toString(16).padStart(2, '0')).join('/')}`);
    assert.equal(r.status, STATUS.CHECK_CONDITION);
    assert.equal(r.size, 0);
    assert.deepEqual(r.sense, fixedSense96(0x04, 0x44, 0x00));
    // Back online, the same fd works again.
    const again = await new PrOps(await PrClient.connect((await ourHelper()).socketPath)).in(dev as DeviceFd, PR_IN.READ_KEYS);
    assert.equal(again.status, STATUS.GOOD);
  });

  test('QEMU 11\'s C helper gives the same bytes; Debian\'s 7.2 is logged', async (t) => {
    const ours = await readKeysOffline((await ourHelper()).socketPath);
    if (existsSync(REFERENCE_HELPER)) {
      const old = await startHelper({ binary: REFERENCE_HELPER, timeoutMs: 60_000 });
      started.push(old);
      const r = await readKeysOffline(old.socketPath);
      log(`Debian's C helper (7.2) on an offline disk: status 0x${r.status.toString(16)}, sense ${hex(r.sense.subarray(0, 18))}`);
    }
    if (!existsSync(QEMU11_PR_HELPER)) {
      t.skip(`${QEMU11_PR_HELPER} is not installed (the test tools of .ci/run)`);
      return;
    }
    const c11 = await startHelper({ binary: QEMU11_PR_HELPER, timeoutMs: 60_000 });
    started.push(c11);
    const r = await readKeysOffline(c11.socketPath);
    log(`QEMU 11's C helper on an offline disk: status 0x${r.status.toString(16)}, sense ${hex(r.sense.subarray(0, 18))}`);
    assert.equal(r.status, ours.status);
    assert.equal(r.size, ours.size);
    assert.equal(hex(r.sense), hex(ours.sense));
  });
});
