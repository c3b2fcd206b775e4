/**
 * Issue 5: PR commands on a dm-multipath fd go through libmpathpersist (docs/protocol.md §5). A real map
 * over the suite's two tcm_loop paths to one LU (/dev/sda + /dev/sdb: two I_T nexuses),
 * created by multipathd with `reservation_key file` (lib/multipath.ts), and a helper of our
 * own started after multipath.conf exists (libmpathpersist reads it once, at initialisation).
 * The fd of /dev/mapper/<map> goes to the helper with each request. After every step the LU
 * is read directly with sg_persist on the paths (one registration per I_T nexus, READ FULL
 * STATUS tells the nexuses apart by SAS address), PR IN answers are compared with direct
 * SG_IO on a path, and `mpathpersist --in` and multipathd's prkey/prstatus must agree.
 *   REGISTER, READ KEYS, REPORT CAPABILITIES, READ FULL STATUS (answered through the library,
 *   unlike QEMU), RESERVE, READ RESERVATION, RELEASE, REGISTER AND IGNORE EXISTING KEY,
 *   PREEMPT (the victim registered and holding a reservation on the iSCSI nexus, which is not
 *   a path of the map), CLEAR; REGISTER AND MOVE refused as the reference does; one path
 *   offline just before the commands (multipathd may not have noticed yet: the library checks
 *   the paths itself), then multipathd re-registering the key when the path returns; CLEANUP
 *   (0xFF) leaves no registration and no key in multipathd; SIGTERM exits 0; and a helper
 *   started with QEMU_PR_HELPER_MPATH_LIBRARY=/nonexistent answers CHECK CONDITION, ILLEGAL
 *   REQUEST / INVALID COMMAND OPERATION CODE for the map while still serving /dev/sda.
 * The map, multipathd and udevd are removed at the end and the LU reset (lib/env.ts), so the
 * other files, which use /dev/sda and /dev/sdb directly, run in any order.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants, existsSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { PrClient } from '../support/client.js';
import { prInCdb, prOutParams, type Response } from '../support/builders.js';
import { startHelper, type Helper } from '../support/launcher.js';
import { E2E, skipReason, resetDisk, drainUnitAttentions, log, stopLogged } from './lib/env.js';
import { DirectSgIo } from './lib/sgio.js';
import {
  DeviceFd, PR_IN, PR_OUT, PR_TYPE, STATUS, good, hex, keyHex, parseCapabilities, parseFullStatus, parseReadKeys,
  parseReadReservation, sasAddressOf, senseTriple, type FullStatusEntry,
} from './lib/pr.js';
import { keySet, sgPersist, sgReadFullStatus, sgReadKeys, sgReadReservation } from './lib/sgpersist.js';
import {
  MultipathMap, PatientPrOps, mpathReadKeys, mpathReadReservation, mpathdKey, mpathdPathStates, mpathdPrStatus,
  pathState, setPathState, waitFor,
} from './lib/multipath.js';
import { sleep } from './lib/slow-device.js';

const skip = skipReason(2);
const ALIAS = 'prh-e2e-mpath';
const SOCKET = '/tmp/prh-e2e-mpath.sock';
const NOLIB_SOCKET = '/tmp/prh-e2e-mpath-nolib.sock';

const KEY_A = 0x3a01n;
const KEY_B = 0x3a02n;
const KEY_VICTIM = 0x3c01n;
const KEY_OFF1 = 0x3a04n;
const KEY_OFF2 = 0x3a05n;
const KEY_CLEANUP = 0x3a06n;
const KEY_NOLIB = 0x3a07n;

function triple(r: Response): string {
  return senseTriple(r.sense).map((b) => b.toString(16).padStart(2, '0')).join('/');
}

function expectCheck(r: Response, want: [number, number, number], what: string): void {
  assert.equal(r.status, STATUS.CHECK_CONDITION, `${what}: status 0x${r.status.toString(16)} (sense ${triple(r)})`);
  assert.deepEqual(senseTriple(r.sense), want, `${what}: sense key/ASC/ASCQ`);
  assert.equal(r.size, 0, `${what}: no data`);
}

async function stopHelper(h: Helper | null): Promise<void> {
  if (h === null) return;
  await stopLogged(h, 10_000, `multipath: helper ${h.socketPath}`, 12);
}

describe('multipath: PR commands on a dm-multipath fd through libmpathpersist (two paths, multipathd)', { skip }, () => {
  const map = new MultipathMap(ALIAS, E2E.disks.slice(0, 2));
  let why: string | false = false;
  let helper: Helper | null = null;
  let client: PrClient | null = null;
  let pr: PatientPrOps;
  let mp: DeviceFd | null = null;
  let pathA: DeviceFd | null = null;
  const direct = skip ? null : new DirectSgIo();
  const [diskA, diskB] = [E2E.disks[0] ?? '', E2E.disks[1] ?? ''];
  const [initA, initB] = [E2E.initiators[0] ?? 0n, E2E.initiators[1] ?? 0n];

  /** The key registered for each tcm_loop nexus, from READ FULL STATUS on path A. */
  function keysByNexus(): { a: bigint | null; b: bigint | null; holder: bigint | null } {
    const fs = sgReadFullStatus(diskA);
    const of = (init: bigint): bigint | null => fs.entries.find((e) => e.sasAddress === init)?.key ?? null;
    return { a: of(initA), b: of(initB), holder: fs.entries.find((e) => e.holder)?.sasAddress ?? null };
  }

  /** On the LU (sg_persist on path A), through mpathpersist, and in multipathd: the same keys. */
  function expectKeysEverywhere(keys: bigint[], what: string): void {
    assert.deepEqual(keySet(sgReadKeys(diskA).keys), keySet(keys), `${what}: sg_persist --read-keys ${diskA}`);
    assert.deepEqual(keySet(mpathReadKeys(map.node).keys), keySet(keys), `${what}: mpathpersist --in -k ${map.node}`);
  }

  function expectReservation(holder: { key: bigint; type: number } | null, what: string): void {
    const r = sgReadReservation(diskA);
    if (holder === null) assert.equal(r.holder, null, `${what}: sg_persist: no reservation`);
    else {
      assert.ok(r.holder, `${what}: sg_persist: a reservation`);
      assert.equal(keyHex(r.holder.key), keyHex(holder.key), `${what}: reservation key (sg_persist)`);
      assert.equal(r.holder.type, holder.type, `${what}: reservation type (sg_persist)`);
    }
    const m = mpathReadReservation(map.node);
    assert.deepEqual(m && { key: keyHex(m.key), type: m.type }, holder && { key: keyHex(holder.key), type: holder.type }, `${what}: mpathpersist --in -r`);
  }

  /** PR IN through the helper on the map, and the same command by direct SG_IO on path A. */
  async function prInBoth(sa: number, alloc = 1024): Promise<{ helper: Response; direct: Uint8Array }> {
    assert.ok(mp && pathA && direct);
    const viaHelper = good(await pr.in(mp, sa, alloc));
    drainUnitAttentions(direct, pathA.fd);
    const ref = direct.run(pathA.fd, prInCdb({ sa, allocationLength: alloc }), { allocation: alloc });
    assert.equal(ref.status, STATUS.GOOD, 'direct SG_IO on path A');
    return { helper: viaHelper, direct: ref.data };
  }

  /** The answer, or a failure that says whether the helper died (and how) instead of answering. */
  async function answerOrDeath(answer: Promise<Response>, what: string): Promise<Response> {
    try {
      return await answer;
    } catch (error) {
      const h = helper;
      const died = h === null ? null : await Promise.race([h.exited, sleep(2000).then(() => null)]);
      const err = h?.stderr().trim().split('\n').slice(-6).join(' | ') ?? '';
      assert.fail(`${what}: no answer (${String(error)}); the helper ${died === null ? 'is still running' : `died: ${died}`}; its stderr ends: ${err}`);
    }
  }

  /**
   * READ FULL STATUS through the helper on the map (libmpathpersist parses it; the helper
   * rebuilds the SPC data) against the same command by direct SG_IO on path A: the same
   * bytes, zero-padded to the allocation length; and the registrants sg_persist lists.
   */
  async function expectFullStatusAsDirect(what: string): Promise<FullStatusEntry[]> {
    const r = await prInBoth(PR_IN.READ_FULL_STATUS);
    const fs = parseFullStatus(r.helper.data);
    log(`multipath: READ FULL STATUS ${what}: helper size ${r.helper.size}, ${fs.entries.length} descriptors; direct SG_IO ${hex(r.direct)}`);
    assert.deepEqual(r.helper.data.slice(0, r.direct.length), r.direct, `READ FULL STATUS ${what}: byte-identical to direct SG_IO on ${diskA}`);
    assert.ok(r.helper.data.slice(r.direct.length).every((b) => b === 0), `READ FULL STATUS ${what}: zero padding`);
    const sg = sgReadFullStatus(diskA);
    assert.deepEqual(
      fs.entries.map((e) => [keyHex(e.key), e.holder, e.relativeTargetPort, sasAddressOf(e.transportId)]).sort(),
      sg.entries.map((e) => [keyHex(e.key), e.holder, e.relativePort, e.sasAddress]).sort(),
      `READ FULL STATUS ${what}: the registrants sg_persist lists`,
    );
    return fs.entries;
  }

  before(async () => {
    resetDisk();
    const made = await map.create();
    if ('why' in made) {
      why = made.why;
      log(`multipath: cannot set up the map: ${why}`);
      return;
    }
    log(`multipath: ${map.node} -> ${map.dmName}: ${map.table()}`);
    rmSync(SOCKET, { force: true });
    const env = { ...process.env };
    delete env['QEMU_PR_HELPER_MPATH_LIBRARY'];
    // --enable-cleanup: the CLEANUP test below sends opcode 0xFF.
    helper = await startHelper({ args: ['-k', SOCKET, '--enable-cleanup'], socketPath: SOCKET, env, timeoutMs: 60_000 });
    client = await PrClient.connect(SOCKET);
    pr = new PatientPrOps(client);
    mp = new DeviceFd(map.node);
    pathA = new DeviceFd(diskA);
  });

  after(async () => {
    client?.close();
    await stopHelper(helper);
    mp?.close();
    pathA?.close();
    await map.destroy();
    direct?.free();
    if (!skip) {
      resetDisk();
      if (E2E.iscsi !== null) {
        // the PREEMPT test left a UNIT ATTENTION on the iSCSI nexus: consume it here
        const fd = openSync(E2E.iscsi.disk, constants.O_RDWR);
        const sg = new DirectSgIo();
        try {
          drainUnitAttentions(sg, fd);
        } finally {
          closeSync(fd);
          sg.free();
        }
      }
    }
  });

  const ready = (t: { skip: (m: string) => void }): boolean => {
    if (why !== false) t.skip(`no multipath map: ${why}`);
    return why === false;
  };

  test('the map: dm-multipath over both paths, dm uuid mpath-<wwid>, no registration yet', (t) => {
    if (!ready(t)) return;
    const majmin = readFileSync(`/sys/block/${map.dmName}/dev`, 'utf8').trim();
    assert.ok(statSync(map.node).isBlockDevice());
    const uuid = readFileSync(`/sys/dev/block/${majmin}/dm/uuid`, 'utf8').trim();
    assert.equal(uuid, `mpath-${map.wwid}`);
    const table = map.table();
    assert.match(table, / multipath /);
    for (const d of [diskA, diskB]) {
      const dev = readFileSync(`/sys/block/${d.replace('/dev/', '')}/dev`, 'utf8').trim();
      assert.ok(table.includes(` ${dev} `), `${d} (${dev}) is a path of the map: ${table}`);
    }
    assert.deepEqual(sgReadKeys(diskA).keys, []);
    assert.deepEqual(mpathReadKeys(map.node).keys, []);
    log(`multipath: ${map.node} (${majmin}) uuid ${uuid}; paths ${JSON.stringify(mpathdPathStates())}`);
  });

  test('REGISTER registers the key on every path: two registrations, one per I_T nexus', async (t) => {
    if (!ready(t) || !mp) return;
    const t0 = performance.now();
    good(await pr.register(mp, KEY_A));
    log(`multipath: REGISTER through the helper took ${(performance.now() - t0).toFixed(0)} ms (first call: library initialisation)`);
    expectKeysEverywhere([KEY_A, KEY_A], 'after REGISTER');
    assert.deepEqual(keysByNexus(), { a: KEY_A, b: KEY_A, holder: null }, 'READ FULL STATUS: the key on both nexuses');
    const entries = await expectFullStatusAsDirect('after REGISTER');
    assert.deepEqual(entries.map((e) => sasAddressOf(e.transportId)).sort(), [initA, initB].sort(), 'through the helper: one descriptor per nexus');
    assert.equal(keyHex(mpathdKey(ALIAS)), keyHex(KEY_A), 'multipathd getprkey: the key libmpathpersist set');
    assert.equal(mpathdPrStatus(ALIAS), 1, 'multipathd getprstatus: registered');
  });

  test('READ KEYS through the helper: both registrations, the same data as direct SG_IO on a path', async (t) => {
    if (!ready(t)) return;
    const r = await prInBoth(PR_IN.READ_KEYS);
    const keys = parseReadKeys(r.helper.data);
    const sg = sgReadKeys(diskA);
    assert.deepEqual(keySet(keys.keys), keySet([KEY_A, KEY_A]));
    assert.equal(keys.generation, sg.generation, 'PR generation as sg_persist');
    assert.equal(keys.generation, mpathReadKeys(map.node).generation, 'PR generation as mpathpersist');
    assert.deepEqual(r.helper.data.slice(0, r.direct.length), r.direct, 'header and key list byte-identical to direct SG_IO');
    log(`multipath: READ KEYS (alloc 1024): helper size ${r.helper.size}, direct SG_IO ${r.direct.length} bytes: ${hex(r.direct)}`);
  });

  test('PR IN data is zero-padded to the allocation length, as the reference (docs/protocol.md §5.3)', async (t) => {
    if (!ready(t)) return;
    for (const alloc of [1024, 100, 24]) {
      const r = await prInBoth(PR_IN.READ_KEYS, alloc);
      assert.equal(r.helper.size, alloc, `alloc ${alloc}: size`);
      assert.equal(r.helper.data.length, alloc);
      assert.deepEqual(r.helper.data.slice(0, r.direct.length), r.direct, `alloc ${alloc}: the data`);
      assert.ok(r.helper.data.slice(r.direct.length).every((b) => b === 0), `alloc ${alloc}: zero padding`);
    }
  });

  test('REPORT CAPABILITIES through the helper: the target\'s flags and type mask', async (t) => {
    if (!ready(t)) return;
    const r = await prInBoth(PR_IN.REPORT_CAPABILITIES, 8);
    log(`multipath: REPORT CAPABILITIES helper ${hex(r.helper.data)}, direct SG_IO ${hex(r.direct)}`);
    assert.equal(r.helper.size, 8);
    // docs/protocol.md §5.3: length, the two flag bytes and the type mask come from the library; 6-7 zero
    assert.deepEqual(r.helper.data.slice(0, 6), r.direct.slice(0, 6));
    assert.deepEqual([...r.helper.data.slice(6, 8)], [0, 0]);
    assert.deepEqual(parseCapabilities(r.helper.data).types, [1, 3, 5, 6, 7, 8]);
  });

  test('RESERVE (Write Exclusive, registrants only), READ RESERVATION, RELEASE', async (t) => {
    if (!ready(t) || !mp) return;
    const type = PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
    good(await pr.reserve(mp, KEY_A, type));
    expectReservation({ key: KEY_A, type }, 'after RESERVE');
    const holder = keysByNexus().holder;
    assert.ok(holder === initA || holder === initB, 'one of the map\'s nexuses holds it');
    const r = await prInBoth(PR_IN.READ_RESERVATION);
    const rr = parseReadReservation(r.helper.data);
    assert.deepEqual(rr.holder, { key: KEY_A, scope: 0, type }, 'READ RESERVATION through the helper');
    assert.equal(rr.generation, sgReadReservation(diskA).generation);
    assert.deepEqual(r.helper.data.slice(0, r.direct.length), r.direct, 'READ RESERVATION byte-identical to direct SG_IO');
    const entries = await expectFullStatusAsDirect('with the reservation held');
    assert.equal(entries.filter((e) => e.holder).length, 1, 'READ FULL STATUS through the helper: one holder');
    assert.equal(sasAddressOf(entries.find((e) => e.holder)?.transportId ?? new Uint8Array(0)), holder);
    good(await pr.release(mp, KEY_A, type));
    expectReservation(null, 'after RELEASE');
    expectKeysEverywhere([KEY_A, KEY_A], 'RELEASE keeps the registrations');
    const none = parseReadReservation((await prInBoth(PR_IN.READ_RESERVATION)).helper.data);
    assert.equal(none.holder, null, 'READ RESERVATION through the helper: none');
    log(`multipath: reservation was held by nexus ${keyHex(holder ?? 0n)}`);
  });

  test('REGISTER AND IGNORE EXISTING KEY replaces the key on every path', async (t) => {
    if (!ready(t) || !mp) return;
    good(await pr.registerIgnore(mp, KEY_B));
    expectKeysEverywhere([KEY_B, KEY_B], 'after REGISTER AND IGNORE');
    assert.deepEqual(keysByNexus(), { a: KEY_B, b: KEY_B, holder: null });
    assert.equal(keyHex(mpathdKey(ALIAS)), keyHex(KEY_B), 'multipathd getprkey follows');
  });

  test('PREEMPT: the map takes over a reservation held by another initiator (iSCSI nexus) and removes its key', async (t) => {
    if (!ready(t) || !mp) return;
    const iscsi = E2E.iscsi;
    assert.ok(iscsi, 'the iSCSI nexus (PRH_E2E_ISCSI) is needed for a second initiator outside the map');
    const fd = openSync(iscsi.disk, constants.O_RDWR);
    try {
      assert.ok(direct);
      drainUnitAttentions(direct, fd);
    } finally {
      closeSync(fd);
    }
    for (const args of [['--register', `--param-sark=${keyHex(KEY_VICTIM)}`], ['--reserve', `--param-rk=${keyHex(KEY_VICTIM)}`, '--prout-type=1']]) {
      const r = sgPersist(['--out', ...args, iscsi.disk]);
      assert.equal(r.status, 0, `sg_persist --out ${args.join(' ')} ${iscsi.disk}: ${r.stderr}${r.stdout}`);
    }
    expectKeysEverywhere([KEY_B, KEY_B, KEY_VICTIM], 'victim registered');
    expectReservation({ key: KEY_VICTIM, type: PR_TYPE.WRITE_EXCLUSIVE }, 'victim holds Write Exclusive');
    const type = PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
    good(await pr.preempt(mp, KEY_B, KEY_VICTIM, type));
    expectKeysEverywhere([KEY_B, KEY_B], 'after PREEMPT');
    expectReservation({ key: KEY_B, type }, 'after PREEMPT');
    const n = keysByNexus();
    assert.ok(n.holder === initA || n.holder === initB, 'a nexus of the map holds the reservation');
    assert.deepEqual(keySet(sgReadKeys(iscsi.disk).keys), keySet([KEY_B, KEY_B]), 'the preempted nexus sees the same');
    const rr = parseReadReservation((await prInBoth(PR_IN.READ_RESERVATION)).helper.data);
    assert.deepEqual(rr.holder, { key: KEY_B, scope: 0, type });
  });

  test('CLEAR removes every registration and the reservation', async (t) => {
    if (!ready(t) || !mp) return;
    good(await pr.clear(mp, KEY_B));
    expectKeysEverywhere([], 'after CLEAR');
    expectReservation(null, 'after CLEAR');
    assert.deepEqual(parseReadKeys((await prInBoth(PR_IN.READ_KEYS)).helper.data).keys, []);
    assert.equal(mpathdKey(ALIAS), 0n, 'multipathd getprkey: none');
  });

  test('REGISTER AND MOVE is refused on a multipath fd (05/24/00, as the reference), nothing reaches the LU', async (t) => {
    if (!ready(t) || !mp) return;
    const gen = sgReadKeys(diskA).generation;
    expectCheck(await pr.out(mp, PR_OUT.REGISTER_AND_MOVE, prOutParams({ key: KEY_A, saKey: KEY_B })), [0x5, 0x24, 0x00], 'REGISTER AND MOVE');
    assert.equal(sgReadKeys(diskA).generation, gen, 'PR generation unchanged');
  });

  test('one path offline just before the commands: READ KEYS, RESERVE, RELEASE, REGISTER (new key) go through the other path; multipathd re-registers the key when the path returns', async (t) => {
    if (!ready(t) || !mp) return;
    good(await pr.register(mp, KEY_OFF1));
    expectKeysEverywhere([KEY_OFF1, KEY_OFF1], 'both paths up');
    const type = PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
    setPathState(diskB, 'offline');
    const t0 = performance.now();
    try {
      // multipathd has probably not seen it yet (it checks every 1-4 s): the library checks itself
      const before = mpathdPathStates();
      const keys = parseReadKeys((await prInBoth(PR_IN.READ_KEYS)).helper.data);
      assert.deepEqual(keySet(keys.keys), keySet([KEY_OFF1, KEY_OFF1]), 'READ KEYS with a path offline');
      good(await pr.reserve(mp, KEY_OFF1, type));
      expectReservation({ key: KEY_OFF1, type }, 'RESERVE with a path offline');
      assert.equal(keysByNexus().holder, initA, 'the reservation went through the remaining path');
      good(await pr.release(mp, KEY_OFF1, type));
      expectReservation(null, 'RELEASE with a path offline');
      good(await pr.register(mp, KEY_OFF2, KEY_OFF1));
      const n = keysByNexus();
      assert.deepEqual({ a: n.a, b: n.b }, { a: KEY_OFF2, b: KEY_OFF1 }, 'the new key on the path that is up; the offline nexus keeps the old one');
      assert.equal(keyHex(mpathdKey(ALIAS)), keyHex(KEY_OFF2), 'multipathd holds the new key');
      log(`multipath: sdb offline: multipathd saw ${JSON.stringify(before)} before the commands, ${JSON.stringify(mpathdPathStates())} after; commands took ${(performance.now() - t0).toFixed(0)} ms`);
      // multipathd re-registers only on a path it has seen fail and come back: let its
      // checker see the failure first (a path down for less than a check stays stale)
      const seen = await waitFor(`multipathd to see ${diskB} fail (${map.daemonLog(5)})`,
        () => mpathdPathStates()[diskB.replace('/dev/', '')]?.startsWith('failed') === true, 30_000);
      log(`multipath: multipathd marked ${diskB} failed ${seen.toFixed(0)} ms after the commands`);
    } finally {
      setPathState(diskB, 'running');
    }
    // multipathd reinstates the path and registers the key it holds on it (reservation_key file)
    const ms = await waitFor(`multipathd to reinstate ${diskB} and register ${keyHex(KEY_OFF2)} on it (${map.daemonLog(5)})`, () => {
      const n = keysByNexus();
      return n.a === KEY_OFF2 && n.b === KEY_OFF2 && map.allPathsActive();
    }, 30_000);
    log(`multipath: ${diskB} running again; re-registered and active after ${ms.toFixed(0)} ms`);
    expectKeysEverywhere([KEY_OFF2, KEY_OFF2], 'after the path returned');
    assert.equal(pathState(diskB), 'running');
  });

  test('CLEANUP (0xFF) with a reservation held: no registration, no reservation, multipathd forgets the key', async (t) => {
    if (!ready(t) || !mp) return;
    good(await pr.registerIgnore(mp, KEY_CLEANUP));
    good(await pr.reserve(mp, KEY_CLEANUP, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY));
    expectKeysEverywhere([KEY_CLEANUP, KEY_CLEANUP], 'before CLEANUP');
    expectReservation({ key: KEY_CLEANUP, type: PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY }, 'before CLEANUP');
    assert.equal(mpathdPrStatus(ALIAS), 1);
    const r = await answerOrDeath(pr.cleanup(mp), 'CLEANUP');
    assert.equal(r.status, STATUS.GOOD, `CLEANUP: status 0x${r.status.toString(16)} (sense ${triple(r)})`);
    assert.equal(r.size, 0);
    expectKeysEverywhere([], 'after CLEANUP');
    expectReservation(null, 'after CLEANUP');
    assert.deepEqual(keysByNexus(), { a: null, b: null, holder: null });
    assert.equal(mpathdKey(ALIAS), 0n, 'multipathd getprkey: none');
    assert.equal(mpathdPrStatus(ALIAS), 0, 'multipathd getprstatus: unset');
    // nothing registered: still GOOD (REGISTER AND IGNORE with key 0)
    const again = await answerOrDeath(pr.cleanup(mp), 'second CLEANUP');
    assert.equal(again.status, STATUS.GOOD, `second CLEANUP: status 0x${again.status.toString(16)} (sense ${triple(again)})`);
    expectKeysEverywhere([], 'after the second CLEANUP');
  });

  test('SIGTERM after the multipath commands: the helper exits 0 and removes its socket', async (t) => {
    if (!ready(t)) return;
    const h = helper;
    assert.ok(h);
    client?.close();
    client = null;
    const early = h.child.exitCode ?? h.child.signalCode;
    const code = early ?? await Promise.race([h.stop('SIGTERM'), sleep(15_000).then(() => 'timeout')]);
    const err = h.stderr().trim().split('\n').slice(-6).join(' | ');
    assert.equal(early, null, `the helper had already exited (${early}) before SIGTERM; stderr ends: ${err}`);
    assert.equal(code, 0, `exit status after SIGTERM; stderr ends: ${err}`);
    assert.ok(!existsSync(SOCKET), 'socket removed');
  });

  test('QEMU_PR_HELPER_MPATH_LIBRARY=/nonexistent: the map gets ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE, /dev/sda still works', async (t) => {
    if (!ready(t) || !mp) return;
    rmSync(NOLIB_SOCKET, { force: true });
    const nolib = await startHelper({
      args: ['-k', NOLIB_SOCKET], socketPath: NOLIB_SOCKET, env: { ...process.env, QEMU_PR_HELPER_MPATH_LIBRARY: '/nonexistent' }, timeoutMs: 60_000,
    });
    let c: PrClient | null = null;
    try {
      c = await PrClient.connect(NOLIB_SOCKET);
      const ops = new PatientPrOps(c);
      const before = sgReadKeys(diskA);
      const rk = await ops.in(mp, PR_IN.READ_KEYS);
      expectCheck(rk, [0x5, 0x20, 0x00], 'READ KEYS on the map without the library');
      const reg = await ops.register(mp, KEY_NOLIB);
      expectCheck(reg, [0x5, 0x20, 0x00], 'REGISTER on the map without the library');
      assert.deepEqual(sgReadKeys(diskA), before, 'nothing reached the LU: same keys and PR generation');
      assert.ok(pathA);
      const plain = parseReadKeys(good(await ops.in(pathA, PR_IN.READ_KEYS)).data);
      assert.equal(plain.generation, before.generation, 'READ KEYS on /dev/sda (not multipath) is served by SG_IO');
      assert.deepEqual(keySet(plain.keys), keySet(before.keys));
      log(`multipath: without the library: READ KEYS -> 0x${rk.status.toString(16)} ${triple(rk)} (${hex(rk.sense.slice(0, 18))}), REGISTER -> 0x${reg.status.toString(16)} ${triple(reg)}`);
    } finally {
      c?.close();
      await stopHelper(nolib);
    }
  });
});
