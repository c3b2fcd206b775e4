/**
 * Issue 3, items 2 and 3: every PR service action through our helper's socket on a real
 * LIO disk, from two initiators (two tcm_loop I_T nexuses to one backstore). After each
 * step the disk is checked with sg_persist run directly on it, and every PR IN answer is
 * compared byte for byte with the same command sent by direct SG_IO.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PrClient } from '../support/client.js';
import { prInCdb } from '../support/builders.js';
import { E2E, skipReason, ourHelper, resetDisk, drainUnitAttentions, log } from './lib/env.js';
import { DirectSgIo } from './lib/sgio.js';
import {
  DeviceFd, PrOps, PR_IN, PR_OUT, PR_TYPE, STATUS, TYPE_NAMES, good, keyHex, parseCapabilities,
  parseFullStatus, parseReadKeys, registerAndMoveParams, sasAddressOf, sasTransportId, senseTriple,
} from './lib/pr.js';
import { keySet, sgReadFullStatus, sgReadKeys, sgReadReservation } from './lib/sgpersist.js';

const skip = skipReason(2);

describe('PR service actions through our helper on a LIO disk, two initiators', { skip }, () => {
  let client: PrClient;
  let pr: PrOps;
  const direct = skip ? null : new DirectSgIo();
  // initiator A = path 0, initiator B = path 1; each has its block node and its sg node
  let aSd: DeviceFd;
  let aSg: DeviceFd;
  let bSd: DeviceFd;
  let bSg: DeviceFd;
  let diskA = '';
  let diskB = '';
  let rtpiB = 0;
  let supportedTypes: number[] = [];

  before(async () => {
    resetDisk();
    const helper = await ourHelper();
    client = await PrClient.connect(helper.socketPath);
    pr = new PrOps(client);
    [diskA, diskB] = [E2E.disks[0] ?? '', E2E.disks[1] ?? ''];
    aSd = new DeviceFd(diskA);
    aSg = new DeviceFd(E2E.sgs[0] ?? '');
    bSd = new DeviceFd(diskB);
    bSg = new DeviceFd(E2E.sgs[1] ?? '');
    log(`initiator A: ${diskA} ${aSg.path} (${keyHex(E2E.initiators[0] ?? 0n)}); B: ${diskB} ${bSg.path} (${keyHex(E2E.initiators[1] ?? 0n)})`);
  });

  after(async () => {
    client?.close();
    for (const d of [aSd, aSg, bSd, bSg]) d?.close();
    direct?.free();
  });

  /** PR IN through the helper, checked against the same command by direct SG_IO on the same fd. */
  async function prInBoth(dev: DeviceFd, sa: number, alloc = 1024): Promise<Uint8Array> {
    const viaHelper = good(await pr.in(dev, sa, alloc));
    assert.ok(direct);
    const ref = direct.run(dev.fd, prInCdb({ sa, allocationLength: alloc }), { allocation: alloc });
    assert.equal(ref.status, 0, 'direct SG_IO status');
    assert.deepEqual(viaHelper.data, ref.data, `PR IN sa ${sa}: helper data == direct SG_IO data`);
    assert.equal(viaHelper.size, viaHelper.data.length);
    assert.deepEqual(viaHelper.sense, new Uint8Array(96), 'GOOD carries an all-zero sense');
    return viaHelper.data;
  }

  function expectKeys(onDisk: string, keys: bigint[]): void {
    assert.deepEqual(keySet(sgReadKeys(onDisk).keys), keySet(keys), `sg_persist --read-keys on ${onDisk}`);
  }

  function expectReservation(onDisk: string, holder: { key: bigint; type: number } | null): void {
    const r = sgReadReservation(onDisk);
    if (holder === null) assert.equal(r.holder, null, `sg_persist: no reservation on ${onDisk}`);
    else {
      assert.ok(r.holder, `sg_persist: a reservation on ${onDisk}`);
      assert.equal(keyHex(r.holder.key), keyHex(holder.key), 'reservation key (sg_persist)');
      assert.equal(r.holder.type, holder.type, `reservation type (sg_persist): ${TYPE_NAMES[holder.type] ?? holder.type}`);
      assert.equal(r.holder.scope, 'LU_SCOPE');
    }
  }

  test('REPORT CAPABILITIES (sd and sg fds) matches direct SG_IO; LIO supports types 1,3,5,6,7,8', async () => {
    const data = await prInBoth(aSd, PR_IN.REPORT_CAPABILITIES, 8);
    assert.deepEqual(await prInBoth(bSg, PR_IN.REPORT_CAPABILITIES, 8), data);
    const caps = parseCapabilities(data);
    log(`capabilities: ${JSON.stringify(caps)}`);
    assert.equal(caps.length, 8);
    assert.ok(caps.tmv, 'type mask valid');
    supportedTypes = caps.types;
    assert.deepEqual(supportedTypes, [1, 3, 5, 6, 7, 8]);
  });

  test('READ KEYS on the empty disk: no keys, same generation as sg_persist', async () => {
    const keys = parseReadKeys(await prInBoth(aSd, PR_IN.READ_KEYS));
    const sg = sgReadKeys(diskA);
    assert.deepEqual(keys.keys, []);
    assert.deepEqual(sg.keys, []);
    assert.equal(keys.generation, sg.generation);
  });

  test('REGISTER from A (sd fd) and from B (sg fd)', async () => {
    good(await pr.register(aSd, 0xa1n));
    expectKeys(diskA, [0xa1n]);
    good(await pr.register(bSg, 0xb2n));
    expectKeys(diskA, [0xa1n, 0xb2n]);
    expectKeys(diskB, [0xa1n, 0xb2n]);
  });

  test('READ KEYS through the helper on both nexuses and both node types equals sg_persist', async () => {
    const sg = sgReadKeys(diskA);
    for (const dev of [aSd, aSg, bSd, bSg]) {
      const keys = parseReadKeys(await prInBoth(dev, PR_IN.READ_KEYS));
      assert.deepEqual(keySet(keys.keys), keySet(sg.keys), dev.path);
      assert.equal(keys.generation, sg.generation, `${dev.path} generation`);
    }
  });

  test('READ FULL STATUS: both registrants with their SAS TransportIDs and relative ports, as sg_persist sees them', async () => {
    const fs = parseFullStatus(await prInBoth(aSd, PR_IN.READ_FULL_STATUS));
    const sg = sgReadFullStatus(diskA);
    assert.equal(fs.entries.length, 2);
    assert.equal(fs.generation, sg.generation);
    for (const e of fs.entries) {
      const twin = sg.entries.find((s) => s.key === e.key);
      assert.ok(twin, `sg_persist lists key ${keyHex(e.key)}`);
      assert.equal(e.relativeTargetPort, twin.relativePort);
      assert.equal(sasAddressOf(e.transportId), twin.sasAddress);
      assert.equal(e.holder, false);
    }
    const a = fs.entries.find((e) => e.key === 0xa1n);
    const b = fs.entries.find((e) => e.key === 0xb2n);
    assert.equal(a && sasAddressOf(a.transportId), E2E.initiators[0]);
    assert.equal(b && sasAddressOf(b.transportId), E2E.initiators[1]);
    assert.ok(a && b && a.relativeTargetPort !== b.relativeTargetPort, 'two target ports');
    rtpiB = b?.relativeTargetPort ?? 0;
    log(`relative target ports: A ${a?.relativeTargetPort}, B ${rtpiB}`);
  });

  test('RESERVE each type LIO supports, RESERVATION CONFLICT for the other initiator, RELEASE', async () => {
    assert.ok(supportedTypes.length > 0);
    for (const type of supportedTypes) {
      const allRegistrants = type === PR_TYPE.WRITE_EXCLUSIVE_ALL_REGISTRANTS || type === PR_TYPE.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
      const dev = type % 2 === 0 ? aSg : aSd; // alternate node types
      good(await pr.reserve(dev, 0xa1n, type));
      // SPC-4 6.15.3.2: for the all-registrants types the RESERVATION KEY field is zero
      expectReservation(diskA, { key: allRegistrants ? 0n : 0xa1n, type });
      const rr = await pr.readReservation(aSd);
      assert.equal(rr.holder?.type, type);
      const other = supportedTypes.find((t) => t !== type) ?? 1;
      const conflict = await pr.reserve(bSg, 0xb2n, other);
      assert.equal(conflict.status, STATUS.RESERVATION_CONFLICT, `type ${type}: B reserving type ${other} conflicts`);
      assert.equal(conflict.size, 0);
      assert.deepEqual(conflict.sense, new Uint8Array(96));
      good(await pr.release(dev, 0xa1n, type));
      expectReservation(diskA, null);
      // releasing a registrants-only / all-registrants reservation leaves B a UNIT ATTENTION
      const uas = drainUnitAttentions(direct ?? new DirectSgIo(), bSd.fd);
      log(`type ${type} (${TYPE_NAMES[type]}): reserved, conflict for B, released; UAs for B afterwards: ${uas}`);
    }
  });

  test('RESERVATION CONFLICT passes through: REGISTER with a wrong current key', async () => {
    const r = await pr.register(aSd, 0xa3n, 0xdeadn);
    assert.equal(r.status, STATUS.RESERVATION_CONFLICT);
    assert.equal(r.size, 0);
    expectKeys(diskA, [0xa1n, 0xb2n]);
  });

  test('REGISTER changes a key; REGISTER AND IGNORE EXISTING KEY replaces it', async () => {
    good(await pr.register(aSd, 0xa3n, 0xa1n));
    expectKeys(diskA, [0xa3n, 0xb2n]);
    good(await pr.registerIgnore(aSg, 0xa4n));
    expectKeys(diskA, [0xa4n, 0xb2n]);
  });

  test('PREEMPT: B takes over A\'s reservation; A sees the target\'s UNIT ATTENTION through the helper', async () => {
    good(await pr.reserve(aSd, 0xa4n, PR_TYPE.WRITE_EXCLUSIVE));
    expectReservation(diskA, { key: 0xa4n, type: PR_TYPE.WRITE_EXCLUSIVE });
    good(await pr.preempt(bSg, 0xb2n, 0xa4n, PR_TYPE.EXCLUSIVE_ACCESS));
    expectKeys(diskB, [0xb2n]);
    expectReservation(diskB, { key: 0xb2n, type: PR_TYPE.EXCLUSIVE_ACCESS });
    const ua = await pr.in(aSd, PR_IN.READ_KEYS);
    assert.equal(ua.status, STATUS.CHECK_CONDITION);
    assert.equal(ua.size, 0);
    assert.deepEqual(senseTriple(ua.sense), [0x6, 0x2a, 0x05], 'UNIT ATTENTION / REGISTRATIONS PREEMPTED from LIO');
    const keys = parseReadKeys(await prInBoth(aSd, PR_IN.READ_KEYS));
    assert.deepEqual(keySet(keys.keys), ['0xb2']);
  });

  // A successful PREEMPT AND ABORT *sent over tcm_loop* deadlocks LIO in Debian's 6.1 and
  // 6.12 kernels alike, with or without a reservation held, also with sg_persist alone and
  // no helper involved: tcm_loop queues every command to the target_submission work item,
  // which runs the PR OUT, and core_scsi3_pro_preempt -> core_tmr_lun_reset -> flush_work()
  // waits for that same work item, so the SG_IO never completes (issuer in D state in
  // blk_execute_rq; the device attribute submit_type=1 does not help, tcm_loop does not
  // support direct submission). The refused form runs here on tcm_loop; the successful form
  // runs at the end of this file, sent from the iSCSI nexus.
  test('PREEMPT AND ABORT from an unregistered nexus: the target answers RESERVATION CONFLICT', async () => {
    const r = await pr.preempt(aSd, 0xa5n, 0xb2n, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, true);
    assert.equal(r.status, STATUS.RESERVATION_CONFLICT);
    assert.equal(r.size, 0);
    expectKeys(diskA, [0xb2n]);
    expectReservation(diskA, { key: 0xb2n, type: PR_TYPE.EXCLUSIVE_ACCESS });
  });

  test('PREEMPT of the holder by a re-registered A (type change to WE-RO); B gets its UNIT ATTENTION', async () => {
    good(await pr.register(aSd, 0xa5n));
    good(await pr.preempt(aSd, 0xa5n, 0xb2n, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY));
    expectKeys(diskA, [0xa5n]);
    expectReservation(diskA, { key: 0xa5n, type: PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY });
    const ua = await pr.in(bSg, PR_IN.READ_RESERVATION);
    assert.equal(ua.status, STATUS.CHECK_CONDITION);
    assert.deepEqual(senseTriple(ua.sense), [0x6, 0x2a, 0x05], 'UNIT ATTENTION / REGISTRATIONS PREEMPTED for B');
    drainUnitAttentions(direct ?? new DirectSgIo(), bSd.fd);
  });

  test('REGISTER AND MOVE: A moves its reservation to B (TransportID + relative target port)', async () => {
    assert.ok(rtpiB > 0);
    const params = registerAndMoveParams({ key: 0xa5n, saKey: 0xb7n, relativeTargetPort: rtpiB, transportId: sasTransportId(E2E.initiators[1] ?? 0n) });
    good(await pr.out(aSd, PR_OUT.REGISTER_AND_MOVE, params, { type: PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY }));
    expectKeys(diskA, [0xa5n, 0xb7n]);
    expectReservation(diskA, { key: 0xb7n, type: PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY });
    const holder = sgReadFullStatus(diskA).entries.find((e) => e.holder);
    assert.equal(holder?.sasAddress, E2E.initiators[1], 'sg_persist: B holds the reservation now');
    assert.equal(holder?.relativePort, rtpiB);
    const fs = parseFullStatus(await prInBoth(bSg, PR_IN.READ_FULL_STATUS));
    assert.equal(fs.entries.find((e) => e.holder)?.key, 0xb7n);
  });

  test('RELEASE by the new holder, unregister A (REGISTER with key 0), CLEAR by B', async () => {
    good(await pr.release(bSg, 0xb7n, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY));
    expectReservation(diskB, null);
    drainUnitAttentions(direct ?? new DirectSgIo(), aSd.fd); // "reservations released" for registrant A
    good(await pr.register(aSd, 0n, 0xa5n));
    expectKeys(diskA, [0xb7n]);
    good(await pr.register(aSd, 0xa8n));
    good(await pr.reserve(aSd, 0xa8n, PR_TYPE.EXCLUSIVE_ACCESS));
    good(await pr.clear(bSg, 0xb7n));
    expectKeys(diskB, []);
    expectReservation(diskB, null);
    const ua = await pr.in(aSd, PR_IN.READ_KEYS);
    assert.equal(ua.status, STATUS.CHECK_CONDITION, 'A was cleared: UNIT ATTENTION');
    assert.deepEqual(senseTriple(ua.sense), [0x6, 0x2a, 0x03], 'RESERVATIONS PREEMPTED');
    const after = parseReadKeys(await prInBoth(aSd, PR_IN.READ_KEYS));
    assert.deepEqual(after.keys, []);
    assert.equal(after.generation, sgReadKeys(diskA).generation);
  });

  // The preempting initiator is the third nexus, over iSCSI (vm_iscsi_setup): LIO's iSCSI
  // target runs the command in its own rx thread, not in the target_submission work item, so
  // the LUN reset inside PREEMPT AND ABORT can flush that work item. The preempted initiator A
  // stays on tcm_loop.
  test('PREEMPT AND ABORT succeeds (iSCSI nexus preempts A): A\'s registration is gone, the iSCSI nexus holds the reservation, A gets its UNIT ATTENTION unchanged', async () => {
    const iscsi = E2E.iscsi;
    assert.ok(iscsi, 'PRH_E2E_ISCSI is set: the guest logged in to the iSCSI target (see "# guest: iSCSI" in the log)');
    const cSd = new DeviceFd(iscsi.disk);
    try {
      drainUnitAttentions(direct ?? new DirectSgIo(), cSd.fd);
      const KA = 0xa9n;
      const KB = 0xc1n;
      const WE_RO = PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY; // type 5
      good(await pr.register(aSd, KA));
      good(await pr.register(cSd, KB));
      good(await pr.reserve(aSd, KA, WE_RO));
      expectKeys(diskA, [KA, KB]);
      expectReservation(iscsi.disk, { key: KA, type: WE_RO });
      const t0 = performance.now();
      const r = await pr.preempt(cSd, KB, KA, WE_RO, true);
      const ms = performance.now() - t0;
      log(`PREEMPT AND ABORT from ${iscsi.initiator} (${iscsi.disk}) key ${keyHex(KB)}, service action key ${keyHex(KA)}, type ${WE_RO}: status 0x${r.status.toString(16)} in ${ms.toFixed(0)} ms`);
      assert.equal(r.status, STATUS.GOOD, 'PREEMPT AND ABORT: GOOD');
      assert.equal(r.size, 0);
      assert.deepEqual(r.sense, new Uint8Array(96));
      // sg_persist on the disk: A's registration is gone, the iSCSI nexus holds the reservation
      expectKeys(diskB, [KB]);
      expectReservation(diskB, { key: KB, type: WE_RO });
      const holder = sgReadFullStatus(iscsi.disk).entries.filter((e) => e.holder);
      assert.equal(holder.length, 1);
      assert.equal(holder[0]?.key, KB);
      assert.equal(holder[0]?.sasAddress, null, 'sg_persist: the holder is not a SAS (tcm_loop) initiator');
      const fs = parseFullStatus(await prInBoth(cSd, PR_IN.READ_FULL_STATUS));
      const h = fs.entries.find((e) => e.holder);
      assert.equal(h?.key, KB);
      assert.equal((h?.transportId[0] ?? 0) & 0x0f, 5, 'holder TransportID: iSCSI protocol identifier');
      assert.ok(new TextDecoder().decode(h?.transportId.slice(4)).startsWith(iscsi.initiator), 'holder TransportID names the iSCSI initiator');
      // A's next command through the helper: the target's UNIT ATTENTION, passed through as is
      const ua = await pr.in(aSd, PR_IN.READ_KEYS);
      assert.equal(ua.status, STATUS.CHECK_CONDITION, 'A was preempted: CHECK CONDITION');
      assert.equal(ua.size, 0);
      assert.deepEqual(senseTriple(ua.sense), [0x6, 0x2a, 0x05], 'UNIT ATTENTION / REGISTRATIONS PREEMPTED from LIO');
      log(`A after PREEMPT AND ABORT: status 0x${ua.status.toString(16)}, sense ${Buffer.from(ua.sense.slice(0, 18)).toString('hex')}`);
      const keys = parseReadKeys(await prInBoth(aSd, PR_IN.READ_KEYS));
      assert.deepEqual(keySet(keys.keys), [keyHex(KB)]);
      // B (tcm_loop, not registered) still works; then leave the disk empty
      drainUnitAttentions(direct ?? new DirectSgIo(), bSd.fd);
      good(await pr.clear(cSd, KB));
      expectKeys(diskA, []);
      expectReservation(diskA, null);
      drainUnitAttentions(direct ?? new DirectSgIo(), aSd.fd);
    } finally {
      cSd.close();
    }
  });
});
