/**
 * Issue 15, item 2 (measurement): what QEMU 11's migration sequence leaves on a dm-multipath
 * destination, per libmpathpersist version. The destination "host" is a map over the two
 * tcm_loop paths (/dev/sda + /dev/sdb: two I_T nexuses of one LU); the source "host" is the
 * iSCSI nexus (/dev/sdc), which is not a path of the map (blacklisted): that is how two hosts
 * are emulated with one multipathd, which puts every path of the LU into one map.
 *
 * The source registers K and reserves WE-RO by direct sg_persist. Then, through our helper
 * (QEMU_PR_HELPER_MPATH_LIBRARY = the version under test) on the map's fd, exactly what the
 * destination QEMU sends after loading the device state (hw/scsi/scsi-generic.c
 * scsi_generic_pr_state_preempt): REGISTER(0 -> K), then PREEMPT(K, K, WE-RO). Measured with
 * sg_persist READ FULL STATUS on the LU: is every path of the map registered with K, which
 * nexus holds the reservation, is the source's registration gone; and multipathd's
 * getprkey / getprstatus. Each version runs with its own multipathd (PATH gets
 * /opt/mpt-X/sbin first), as a host would have them.
 *
 * Versions: Debian 12's system library (/lib/libmpathpersist.so.0, 0.9.4) and the prebuilt
 * 0.11.1 and 0.14.3 under /opt (the shared test tools); a missing one is skipped, saying so.
 * The result is printed as one table line per version ("MPATH-MIGRATION ..."). Before
 * multipath-tools 0.14 the library leaves the map's second path unregistered after the
 * self-PREEMPT (measured: 0.9.4 and 0.11.1 1/2 paths, 0.14.3 2/2); the helper then registers
 * every path again (src/mpath/path-repair.ts) and says so in a warning. The test asserts,
 * for every version: both commands succeed, the source's registration is gone, a nexus of
 * the map holds the reservation with K and WE-RO, BOTH paths are registered with K, and the
 * warning is logged exactly for the versions before 0.14. Then, from that state, two corner
 * cases libmpathpersist reworked in 0.13/0.14, printed ("MPATH-CORNER"), not asserted:
 * REGISTER AND IGNORE EXISTING KEY to K2 while holding, and unregister (REGISTER K2 -> 0)
 * while holding. Last, RESERVE while a failed path holds the reservation ("MPATH-FAILED-
 * HOLDER"): K registered on both paths and WE-RO reserved through the map, the holding
 * path set offline until multipathd marks it failed, then RESERVE(K, WE-RO) again through
 * the map; printed, not asserted beyond "answered".
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { PrClient } from '../support/client.js';
import { prOutParams, type Response } from '../support/builders.js';
import { startHelper, type Helper } from '../support/launcher.js';
import { E2E, skipReason, resetDisk, log, stopLogged } from './lib/env.js';
import { DeviceFd, PR_OUT, PR_TYPE, STATUS, senseTriple } from './lib/pr.js';
import { sgPersist, sgReadFullStatus } from './lib/sgpersist.js';
import { MultipathMap, PatientPrOps, mpathdKey, mpathdPathStates, multipathd, setPathState, waitFor } from './lib/multipath.js';

const VERSIONS = [
  { name: '0.9.4 (Debian 12)', library: '/lib/libmpathpersist.so.0', sbin: null, repairs: true },
  { name: '0.11.1', library: '/opt/mpt-0.11.1/lib64/libmpathpersist.so.0', sbin: '/opt/mpt-0.11.1/sbin', repairs: true },
  { name: '0.14.3', library: '/opt/mpt-0.14.3/lib64/libmpathpersist.so.0', sbin: '/opt/mpt-0.14.3/sbin', repairs: false },
];
const REPAIR_WARNING = /leaves the map's other paths unregistered; registered every path again/;
const KEY = 0x51a7en;
const KEY2 = 0x51a7fn;
const ALIAS = 'prh-e2e-migmp';
const SOCKET = '/tmp/prh-e2e-migmp.sock';

function baseSkip(): string | false {
  const base = skipReason(2);
  if (base) return base;
  if (E2E.iscsi === null) return 'the iSCSI nexus (the source host) was not set up';
  if (process.env['PRH_E2E_SKIP_MIGRATION'] === '1') return 'PRH_E2E_SKIP_MIGRATION=1';
  return false;
}
const skip = baseSkip();

const hex = (k: bigint): string => `0x${k.toString(16)}`;
const triple = (r: Response): string => senseTriple(r.sense).map((b) => b.toString(16).padStart(2, '0')).join('/');

function sgOut(args: string[]): number {
  for (let attempt = 0; attempt < 4; attempt++) {
    const r = sgPersist(['--out', ...args]);
    if (r.status !== 6) return r.status;
  }
  return 6;
}

function fullStatusText(dev: string): string {
  for (let attempt = 0; attempt < 4; attempt++) {
    const r = sgPersist(['--in', '--read-full-status', dev]);
    if (r.status === 0) return r.stdout;
  }
  return '(sg_persist failed)';
}

describe('multipath: QEMU 11 migration sequence (REGISTER, PREEMPT(key, key, WE-RO)) on a map, per libmpathpersist version', { skip }, () => {
  const rows: string[] = [];
  const corner: string[] = [];
  const failedHolder: string[] = [];
  const savedPath = process.env['PATH'] ?? '';

  before(() => {
    resetDisk();
  });

  after(() => {
    process.env['PATH'] = savedPath;
    log('MPATH-MIGRATION | library | REGISTER | PREEMPT | map paths registered with K | holder | source registration | multipathd getprkey / getprstatus');
    for (const r of rows) log(`MPATH-MIGRATION | ${r}`);
    log('MPATH-CORNER | library | REGISTER AND IGNORE to K2 while holding: status; sda sdb (* = holder) reservation multipathd key | unregister while holding: status; same');
    for (const r of corner) log(`MPATH-CORNER | ${r}`);
    log('MPATH-FAILED-HOLDER | library | holder before | RESERVE(K, WE-RO) through the map with the holder failed: status | sda sdb (* = holder) reservation multipathd key after');
    for (const r of failedHolder) log(`MPATH-FAILED-HOLDER | ${r}`);
  });

  for (const v of VERSIONS) {
    const why = !existsSync(v.library) ? `${v.library} is missing` : v.sbin !== null && !existsSync(`${v.sbin}/multipathd`) ? `${v.sbin}/multipathd is missing` : false;
    if (why) log(`multipath migration, libmpathpersist ${v.name}: skipped: ${why}`);
    test(`libmpathpersist ${v.name}: the destination map after REGISTER + PREEMPT(K, K, WE-RO) through our helper`, { skip: why, timeout: 360_000 }, async () => {
      const sdc = E2E.iscsi?.disk ?? '';
      const [initA, initB] = [E2E.initiators[0] ?? 0n, E2E.initiators[1] ?? 0n];
      process.env['PATH'] = v.sbin === null ? savedPath : `${v.sbin}:${savedPath}`;
      const map = new MultipathMap(ALIAS, E2E.disks.slice(0, 2));
      let helper: Helper | null = null;
      let client: PrClient | null = null;
      let mp: DeviceFd | null = null;
      try {
        const made = await map.create();
        assert.ok('node' in made, `map: ${'why' in made ? made.why : ''}`);
        const env = { ...process.env, QEMU_PR_HELPER_MPATH_LIBRARY: v.library };
        helper = await startHelper({ args: ['-k', SOCKET], socketPath: SOCKET, env, timeoutMs: 60_000 });
        client = await PrClient.connect(SOCKET);
        const pr = new PatientPrOps(client);
        mp = new DeviceFd(map.node);
        // the source host: registered and holding WE-RO through the iSCSI nexus
        assert.equal(sgOut(['--register', `--param-sark=${hex(KEY)}`, sdc]), 0);
        assert.equal(sgOut(['--reserve', `--param-rk=${hex(KEY)}`, '--prout-type=5', sdc]), 0);
        log(`${v.name}: before: ${fullStatusText(sdc).trim().split('\n').join(' | ')}`);
        // what the destination QEMU sends after loading the device state
        const reg = await pr.out(mp, PR_OUT.REGISTER, prOutParams({ key: 0n, saKey: KEY }));
        const pre = await pr.out(mp, PR_OUT.PREEMPT, prOutParams({ key: KEY, saKey: KEY }), { type: PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY });
        const text = fullStatusText(sdc);
        log(`${v.name}: after REGISTER (status 0x${reg.status.toString(16)} ${triple(reg)}) + PREEMPT (status 0x${pre.status.toString(16)} ${triple(pre)}):`);
        for (const l of text.trimEnd().split('\n')) log(`  ${l}`);
        const fs = sgReadFullStatus(sdc);
        const of = (init: bigint) => fs.entries.find((e) => e.sasAddress === init);
        const a = of(initA);
        const b = of(initB);
        const src = fs.entries.find((e) => e.sasAddress === null);
        const holder = fs.entries.find((e) => e.holder);
        const prkey = (() => { try { return hex(mpathdKey(ALIAS)); } catch (e) { return `error ${String(e)}`; } })();
        // getprstatus answers 1/0 up to 0.9.x, "set"/"unset" in later versions: printed as given
        const prstatus = (() => { try { return multipathd('getprstatus', 'map', ALIAS); } catch (e) { return `error ${String(e)}`; } })();
        const registered = [a && a.key === KEY ? E2E.disks[0] : null, b && b.key === KEY ? E2E.disks[1] : null].filter((x) => x !== null);
        const holderName = holder === undefined ? 'none' : holder.sasAddress === initA ? `${E2E.disks[0]} (${holder.type === 5 ? 'WE-RO' : holder.type})` : holder.sasAddress === initB ? `${E2E.disks[1]} (${holder.type === 5 ? 'WE-RO' : holder.type})` : 'the source';
        rows.push(`${v.name} | 0x${reg.status.toString(16)} | 0x${pre.status.toString(16)}${pre.status === 0 ? '' : ` ${triple(pre)}`} | ${registered.length}/2 (${registered.join(', ') || 'none'}) | ${holderName} | ${src === undefined ? 'gone' : `still there (${hex(src.key)})`} | ${prkey} / ${prstatus}`);
        assert.equal(reg.status, STATUS.GOOD, 'REGISTER on the map');
        assert.equal(pre.status, STATUS.GOOD, 'PREEMPT on the map');
        assert.equal(src, undefined, "the source's registration is gone");
        assert.ok(holder !== undefined && (holder.sasAddress === initA || holder.sasAddress === initB), 'a path of the map holds the reservation');
        assert.equal(holder?.key, KEY);
        assert.equal(holder?.type, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY);
        log(`${v.name}: paths of the map registered with ${hex(KEY)}: ${registered.length}/2; multipathd getprkey ${prkey}, getprstatus ${prstatus}`);
        const warned = REPAIR_WARNING.test(helper.stderr());
        log(`${v.name}: the helper's repair warning: ${warned ? helper.stderr().split('\n').find((l) => REPAIR_WARNING.test(l)) : 'none'}`);
        assert.deepEqual(registered, [E2E.disks[0], E2E.disks[1]], 'every path of the map registered with K');
        assert.equal(warned, v.repairs, v.repairs ? 'the helper says it registered the paths again' : 'no repair with a library that keeps the paths');

        // corner cases libmpathpersist reworked in 0.13/0.14, from this state (the map holds
        // WE-RO with KEY): REGISTER AND IGNORE EXISTING KEY to KEY2 while holding, then
        // unregister (REGISTER KEY2 -> 0) while holding. Measured, printed, not asserted.
        const state = (): string => {
          const f = sgReadFullStatus(sdc);
          const one = (init: bigint, name: string): string => {
            const e = f.entries.find((x) => x.sasAddress === init);
            return `${name}=${e === undefined ? '-' : hex(e.key)}${e?.holder ? '*' : ''}`;
          };
          const h = f.entries.find((x) => x.holder);
          const k = (() => { try { return hex(mpathdKey(ALIAS)); } catch (e) { return `error ${String(e)}`; } })();
          return `${one(initA, 'sda')} ${one(initB, 'sdb')} reservation=${h === undefined ? 'none' : `${hex(h.key)}/type ${h.type}`} mpathd-key=${k}`;
        };
        const rai = await pr.out(mp, PR_OUT.REGISTER_AND_IGNORE, prOutParams({ saKey: KEY2 }));
        const afterRai = state();
        log(`${v.name}: REGISTER AND IGNORE -> ${hex(KEY2)} while holding: status 0x${rai.status.toString(16)} ${triple(rai)}; ${afterRai}`);
        const unreg = await pr.out(mp, PR_OUT.REGISTER, prOutParams({ key: KEY2, saKey: 0n }));
        const afterUnreg = state();
        log(`${v.name}: unregister (${hex(KEY2)} -> 0) while holding: status 0x${unreg.status.toString(16)} ${triple(unreg)}; ${afterUnreg}`);
        corner.push(`${v.name} | 0x${rai.status.toString(16)}${rai.status === 0 ? '' : ` ${triple(rai)}`}: ${afterRai} | 0x${unreg.status.toString(16)}${unreg.status === 0 ? '' : ` ${triple(unreg)}`}: ${afterUnreg}`);

        // RESERVE while a failed path holds the reservation: K on both paths, WE-RO through
        // the map, the holding path offline until multipathd has marked it failed, then
        // RESERVE(K, WE-RO) through the map again. Measured, printed, not asserted.
        const regAgain = await pr.out(mp, PR_OUT.REGISTER, prOutParams({ key: 0n, saKey: KEY }));
        const res = await pr.out(mp, PR_OUT.RESERVE, prOutParams({ key: KEY }), { type: PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY });
        const held = sgReadFullStatus(sdc).entries.find((e) => e.holder);
        const holdingDisk = (held?.sasAddress === initA ? E2E.disks[0] : held?.sasAddress === initB ? E2E.disks[1] : null) ?? null;
        log(`${v.name}: REGISTER 0x${regAgain.status.toString(16)}, RESERVE 0x${res.status.toString(16)}; ${state()}; holder ${holdingDisk ?? 'none'}`);
        if (holdingDisk === null) {
          failedHolder.push(`${v.name} | none (REGISTER 0x${regAgain.status.toString(16)}, RESERVE 0x${res.status.toString(16)}) | not measured | ${state()}`);
        } else {
          const name = holdingDisk.replace('/dev/', '');
          const before = state();
          setPathState(holdingDisk, 'offline');
          try {
            const ms = await waitFor(`multipathd to mark ${name} failed (${map.daemonLog(5)})`,
              () => mpathdPathStates()[name]?.startsWith('failed') === true, 60_000);
            log(`${v.name}: ${name} offline; multipathd marked it failed after ${ms.toFixed(0)} ms`);
            const again = await pr.out(mp, PR_OUT.RESERVE, prOutParams({ key: KEY }), { type: PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY });
            // the offline path's registration is read through the nexus that is up (sdc)
            const after = state();
            log(`${v.name}: RESERVE with the holder ${name} failed: status 0x${again.status.toString(16)} ${triple(again)}; ${after}`);
            failedHolder.push(`${v.name} | ${name}: ${before} | 0x${again.status.toString(16)}${again.status === 0 ? '' : ` ${triple(again)}`} | ${after}`);
            assert.ok(([STATUS.GOOD, STATUS.CHECK_CONDITION, STATUS.RESERVATION_CONFLICT] as number[]).includes(again.status), 'RESERVE answered');
          } finally {
            setPathState(holdingDisk, 'running');
          }
          await waitFor(`multipathd to reinstate ${name} (${map.daemonLog(5)})`, () => map.allPathsActive(), 60_000);
        }
      } finally {
        mp?.close();
        client?.close();
        if (helper !== null) await stopLogged(helper, 10_000, `multipath migration ${v.name}: helper`, 6);
        await map.destroy();
        process.env['PATH'] = savedPath;
        resetDisk();
      }
    });
  }
});
