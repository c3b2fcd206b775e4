/**
 * What the guest set up for the suite (test/e2e/vm/guest-suite.sh exports it), shared
 * helper processes, and the direct-SG_IO reset between test groups.
 *
 *   PRH_E2E_DISKS="/dev/sda /dev/sdb"   one block device per tcm_loop path (I_T nexus)
 *   PRH_E2E_SGS="/dev/sg0 /dev/sg1"     the matching scsi-generic nodes
 *   PRH_E2E_INITIATORS="0x5001405000002001 0x5001405000002002"   SAS address of each nexus
 *   PRH_E2E_ISCSI="/dev/sdc /dev/sg2 iqn...:initiator3"   a third nexus to the same LU, over
 *                                       iSCSI (vm_iscsi_setup in vm/vm-lib.sh): disk, sg, initiator name
 *   PRH_E2E_VMLINUX, PRH_E2E_INNER_INITRD  kernel + initramfs for the nested QEMU test
 */
import { openSync, closeSync, constants, existsSync } from 'node:fs';
import { startHelper, stopWithin, within, OUR_HELPER, REFERENCE_HELPER, type Helper } from '../../support/launcher.js';
import { prOutCdb, prOutParams } from '../../support/builders.js';
import { DirectSgIo, turCdb } from './sgio.js';
import { PR_OUT, senseTriple } from './pr.js';

const words = (v: string | undefined): string[] => (v ?? '').split(/\s+/).filter((w) => w.length > 0);

export const E2E = {
  disks: words(process.env['PRH_E2E_DISKS']),
  sgs: words(process.env['PRH_E2E_SGS']),
  initiators: words(process.env['PRH_E2E_INITIATORS']).map((w) => BigInt(w)),
  vmlinux: process.env['PRH_E2E_VMLINUX'] ?? '',
  innerInitrd: process.env['PRH_E2E_INNER_INITRD'] ?? '',
  /** the iSCSI nexus, or null when the guest could not set it up */
  iscsi: ((w): { disk: string; sg: string; initiator: string } | null =>
    w.length === 3 ? { disk: w[0] ?? '', sg: w[1] ?? '', initiator: w[2] ?? '' } : null)(words(process.env['PRH_E2E_ISCSI'])),
};

/** Why the e2e tests cannot run here, or false when they can (inside the VM). */
export function skipReason(paths = 2): string | false {
  if (E2E.disks.length < paths || E2E.sgs.length < paths || E2E.initiators.length < paths) {
    return `needs ${paths} LIO paths: run inside the VM through test/e2e/run.sh (PRH_E2E_DISKS is unset)`;
  }
  return false;
}

export function log(line: string): void {
  process.stdout.write(`# ${line}\n`);
}

const helpers = new Map<string, Promise<Helper>>();

async function shared(name: string, binary: string, args: string[]): Promise<Helper> {
  let h = helpers.get(name);
  if (h === undefined) {
    const t0 = performance.now();
    const socketPath = `/tmp/prh-e2e-${name}.sock`;
    h = startHelper({ binary, args: [...args, '-k', socketPath], socketPath, timeoutMs: 60_000 });
    helpers.set(name, h);
    const started = await h;
    log(`${name} helper (${binary}) listening after ${(performance.now() - t0).toFixed(0)} ms`);
    return started;
  }
  return h;
}

/** The project's helper under test, one instance for the whole run. */
export function ourHelper(): Promise<Helper> {
  return shared('ours', OUR_HELPER, []);
}

/** Ours with --enable-cleanup (features 1, opcode 0xFF), for the tests of CLEANUP. */
export function ourCleanupHelper(): Promise<Helper> {
  return shared('ours-cleanup', OUR_HELPER, ['--enable-cleanup']);
}

/** QEMU 11's C helper (linked with libmpathpersist 0.14.3), from the test tools of .ci/run. */
export const QEMU11_PR_HELPER = '/opt/qemu-11/bin/qemu-pr-helper';

/** Debian's C qemu-pr-helper, the reference for the differential tests. */
export function referenceHelper(): Promise<Helper> {
  if (!existsSync(REFERENCE_HELPER)) throw new Error(`${REFERENCE_HELPER} is missing (apt-get install qemu-system-common)`);
  return shared('reference', REFERENCE_HELPER, []);
}

/** Stops every helper started by this process (idempotent). */
export async function stopHelpers(): Promise<void> {
  const all = [...helpers.values()];
  helpers.clear();
  for (const p of all) {
    const h = await p.catch(() => null);
    if (h === null) continue;
    // A helper whose SG_IO is stuck in the kernel cannot exit: do not wait for it forever.
    let code = await within(h.stop('SIGTERM'), 5000);
    if (code === 'timeout') {
      h.child.kill('SIGKILL');
      code = await within(h.exited, 2000);
      if (code === 'timeout') {
        log(`helper ${h.pid} does not die (stuck in the kernel?); leaving it`);
        h.child.unref();
        h.child.stderr?.destroy();
      }
    }
    h.cleanup();
    const err = h.stderr().trim();
    if (err.length > 0) log(`helper ${h.socketPath} exited ${code}; stderr: ${err.split('\n').slice(-5).join(' | ')}`);
  }
}

/**
 * Stops `h` (SIGTERM; killed after `timeoutMs`) and logs how, how fast, and the last `lines`
 * of its stderr. Resolves with its exit status, or 'timeout' when it had to be killed.
 */
export async function stopLogged(h: Helper, timeoutMs: number, what = 'helper', lines = 3): Promise<number | string> {
  const t0 = performance.now();
  const code = await stopWithin(h, timeoutMs);
  const stderr = h.stderr().trim();
  log(`${what} stopped with ${code} in ${(performance.now() - t0).toFixed(0)} ms${stderr ? `; stderr: ${stderr.split('\n').slice(-lines).join(' | ')}` : ''}`);
  return code;
}

/** Sends TEST UNIT READY until GOOD, consuming pending UNIT ATTENTIONs on that nexus. */
export function drainUnitAttentions(sg: DirectSgIo, fd: number): number {
  for (let i = 0; i < 8; i++) {
    const r = sg.run(fd, turCdb());
    if (r.status === 0) return i;
    const [key] = senseTriple(r.sense);
    if (r.status !== 2 || key !== 6) throw new Error(`TEST UNIT READY: status ${r.status} sense key ${key}`);
  }
  throw new Error('unit attentions do not stop');
}

/** The same on `disk` opened for the purpose, as any I/O from that host would. */
export function drainUnitAttentionsOn(disk: string): number {
  const sg = new DirectSgIo();
  const fd = openSync(disk, constants.O_RDWR);
  try {
    return drainUnitAttentions(sg, fd);
  } finally {
    closeSync(fd);
    sg.free();
  }
}

const RESET_KEY = 0x7e5e7n;

/**
 * Back to a disk without registrations or reservation, by direct SG_IO (no helper):
 * REGISTER AND IGNORE EXISTING KEY a reset key on path 0, CLEAR with it, then consume the
 * UNIT ATTENTIONs this left on every path.
 */
export function resetDisk(): void {
  const sg = new DirectSgIo();
  const fds = E2E.disks.map((d) => openSync(d, constants.O_RDWR));
  try {
    for (const fd of fds) drainUnitAttentions(sg, fd);
    const fd0 = fds[0] ?? -1;
    const reg = sg.run(fd0, prOutCdb({ sa: PR_OUT.REGISTER_AND_IGNORE, paramLength: 24 }), { params: prOutParams({ saKey: RESET_KEY }) });
    if (reg.status !== 0) throw new Error(`reset: REGISTER AND IGNORE gave status ${reg.status}`);
    const clr = sg.run(fd0, prOutCdb({ sa: PR_OUT.CLEAR, paramLength: 24 }), { params: prOutParams({ key: RESET_KEY }) });
    if (clr.status !== 0) throw new Error(`reset: CLEAR gave status ${clr.status}`);
    for (const fd of fds) drainUnitAttentions(sg, fd);
  } finally {
    for (const fd of fds) closeSync(fd);
    sg.free();
  }
}
