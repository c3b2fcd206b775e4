import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { cdbLength, cdbTransferLength } from '../../src/scsi/cdb.js';
import { closeSync, openSync } from 'node:fs';
import { Sense, buildFixedSense, checkCondition, decodeSense } from '../../src/scsi/sense.js';
import { interpretSgIo, type SgIoReport } from '../../src/scsi/sgio-status.js';
import { commandBytes } from '../../src/exec/sgio-executor.js';
import { refuseReadOnly } from '../../src/exec/executor.js';
import { fixedSense96 } from '../support/builders.js';

describe('CDB geometry', () => {
  test('length from the group code (docs/protocol.md §9 item 2)', () => {
    assert.equal(cdbLength(0x00), 6); // TEST UNIT READY
    assert.equal(cdbLength(0x5e), 10); // PERSISTENT RESERVE IN
    assert.equal(cdbLength(0x5f), 10); // PERSISTENT RESERVE OUT
    assert.equal(cdbLength(0x28), 10);
    assert.equal(cdbLength(0x88), 16);
    assert.equal(cdbLength(0xa0), 12);
    assert.equal(cdbLength(0x7f), null);
    assert.equal(cdbLength(0xff), null);
  });

  test('commandBytes sends 10 bytes of a PR CDB, never the padding', () => {
    const cdb = new Uint8Array(16).fill(0xee);
    cdb[0] = 0x5e;
    assert.equal(commandBytes(cdb).length, 10);
    cdb[0] = 0xff;
    assert.equal(commandBytes(cdb).length, 16);
  });

  test('transfer length per QEMU scsi_cdb_xfer', () => {
    const c = (bytes: number[]): Uint8Array => Uint8Array.from([...bytes, ...new Array(16 - bytes.length).fill(0)]);
    assert.equal(cdbTransferLength(c([0x00, 0, 0, 0, 0x12])), 0x12);
    assert.equal(cdbTransferLength(c([0x5e, 0, 0, 0, 0, 0, 0, 0x20, 0x00])), 0x2000);
    assert.equal(cdbTransferLength(c([0x5f, 0, 0, 0, 0, 0xff, 0xff, 0x00, 0x18])), 0x18);
    assert.equal(cdbTransferLength(c([0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1])), 0x80000001);
    assert.equal(cdbTransferLength(c([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 2])), 0x102);
    assert.equal(cdbTransferLength(c([0x7f])), 0xffffffff);
  });
});

describe('Sense', () => {
  test('fixed format as scsi_build_sense (docs/protocol.md §4.3)', () => {
    assert.deepEqual([...buildFixedSense(Sense.IO_ERROR)],
      [0x70, 0, 0x0b, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x00, 0x06, 0, 0, 0, 0]);
  });

  test('decode fixed and descriptor formats', () => {
    assert.deepEqual(decodeSense(buildFixedSense(Sense.INVALID_FIELD)), { key: 5, asc: 0x24, ascq: 0 });
    assert.deepEqual(decodeSense(Uint8Array.from([0x72, 0x06, 0x29, 0x02])), { key: 6, asc: 0x29, ascq: 2 });
    assert.equal(decodeSense(new Uint8Array(18)), null);
  });

  test('CHECK CONDITION with our sense, no data', () => {
    assert.deepEqual(checkCondition(Sense.INVALID_OPCODE), {
      status: 0x02, sense: fixedSense96(0x05, 0x20, 0x00).subarray(0, 18), data: new Uint8Array(0),
    });
  });

  test('PR OUT and CLEANUP need a writable fd (docs/protocol.md §3.7, §9 item 13)', () => {
    const ro = openSync('/dev/null', 'r');
    const wo = openSync('/dev/null', 'w');
    const rw = openSync('/dev/null', 'r+');
    try {
      assert.deepEqual(refuseReadOnly(ro), checkCondition(Sense.INVALID_OPCODE));
      assert.equal(refuseReadOnly(wo), null);
      assert.equal(refuseReadOnly(rw), null);
    } finally {
      for (const fd of [ro, wo, rw]) closeSync(fd);
    }
    assert.deepEqual(refuseReadOnly(ro), checkCondition(Sense.IO_ERROR), 'a closed fd: its mode cannot be read');
  });
});

function report(partial: Partial<SgIoReport>): SgIoReport {
  return { error: null, status: 0, hostStatus: 0, driverStatus: 0, sense: new Uint8Array(96), ...partial };
}

describe('SG_IO outcome mapping (docs/protocol.md §4.2, SG-new)', () => {
  // [errno, status, [key, asc, ascq] | null]
  const errnoRows: [string, number, [number, number, number] | null][] = [
    ['EDOM', 0x28, null],
    ['ENODEV', 0x02, [0x04, 0x44, 0x00]],
    ['EREMOTEIO', 0x02, [0x04, 0x44, 0x00]],
    ['EBADE', 0x18, null],
    ['ENODATA', 0x02, [0x03, 0x11, 0x00]],
    ['ENOMEDIUM', 0x02, [0x02, 0x3a, 0x00]],
    ['ENOMEM', 0x02, [0x04, 0x44, 0x00]],
    ['EINVAL', 0x02, [0x05, 0x24, 0x00]],
    ['ENOSPC', 0x02, [0x07, 0x27, 0x07]],
    ['ENOTTY', 0x02, [0x0b, 0x00, 0x06]],
    ['EPERM', 0x02, [0x0b, 0x00, 0x06]],
    ['EACCES', 0x02, [0x0b, 0x00, 0x06]],
    ['EIO', 0x02, [0x0b, 0x00, 0x06]],
    ['ENXIO', 0x02, [0x0b, 0x00, 0x06]],
  ];
  for (const [errno, status, sense] of errnoRows) {
    test(`errno ${errno} → status 0x${status.toString(16)}`, () => {
      const v = interpretSgIo(report({ error: errno, hostStatus: 7, status: 0x18 }));
      assert.equal(v.status, status);
      assert.deepEqual([...v.sense], [...(sense ? fixedSense96(...sense) : new Uint8Array(96))]);
    });
  }

  const hostRows: [number, number, [number, number, number] | null][] = [
    [0x01, 0x02, [0x0b, 0x05, 0x00]],
    [0x02, 0x08, null],
    [0x03, 0x02, [0x0b, 0x2e, 0x02]],
    [0x04, 0x02, [0x0b, 0x08, 0x00]],
    [0x05, 0x02, [0x0b, 0x2f, 0x02]],
    [0x08, 0x02, [0x06, 0x29, 0x00]],
    [0x0e, 0x02, [0x0b, 0x29, 0x07]],
    [0x10, 0x02, [0x04, 0x44, 0x00]],
    [0x11, 0x18, null],
    [0x12, 0x02, [0x07, 0x27, 0x07]],
    [0x13, 0x02, [0x03, 0x11, 0x00]],
    // Deviations (docs/protocol.md §9 item 6): the reference says GOOD for all of these.
    [0x06, 0x02, [0x0b, 0x00, 0x06]],
    [0x07, 0x02, [0x0b, 0x00, 0x06]],
    [0x09, 0x02, [0x0b, 0x00, 0x06]],
    [0x0a, 0x02, [0x0b, 0x00, 0x06]],
    [0x0b, 0x08, null],
    [0x0c, 0x08, null],
    [0x0d, 0x08, null],
    [0x0f, 0x02, [0x0b, 0x00, 0x06]],
    [0x14, 0x02, [0x0b, 0x00, 0x06]],
    [0xff, 0x02, [0x0b, 0x00, 0x06]],
  ];
  for (const [host, status, sense] of hostRows) {
    test(`host_status 0x${host.toString(16)} → status 0x${status.toString(16)}`, () => {
      const v = interpretSgIo(report({ hostStatus: host, status: 0 }));
      assert.equal(v.status, status);
      assert.deepEqual([...v.sense], [...(sense ? fixedSense96(...sense) : new Uint8Array(96))]);
      assert.notEqual(v.status, 0, 'a host error is never GOOD');
    });
  }

  test('driver_status & 0x06 → BUSY', () => {
    for (const d of [0x02, 0x04, 0x06, 0x0e]) assert.equal(interpretSgIo(report({ driverStatus: d, status: 2 })).status, 0x08);
  });

  test('device status and sense pass through untouched (descriptor format too)', () => {
    const sense = new Uint8Array(96);
    sense.set([0x72, 0x05, 0x24, 0x00]);
    const v = interpretSgIo(report({ status: 0x02, driverStatus: 0x08, sense }));
    assert.equal(v.status, 2);
    assert.deepEqual(v.sense, sense);
    assert.equal(interpretSgIo(report({ status: 0x18 })).status, 0x18);
    assert.equal(interpretSgIo(report({ status: 0 })).status, 0);
  });

  test('a built sense overwrites only the first 18 bytes, as QEMU does', () => {
    const sense = new Uint8Array(96).fill(0xaa);
    const v = interpretSgIo(report({ hostStatus: 0x03, sense }));
    assert.deepEqual([...v.sense.subarray(0, 18)], [...buildFixedSense(Sense.COMMAND_TIMEOUT)]);
    assert.ok(v.sense.subarray(18).every((b) => b === 0xaa));
    assert.ok(sense.every((b) => b === 0xaa), 'input untouched');
  });
});
