/**
 * What the helper keeps and how it checks it (docs/protocol.md §2). Pure.
 *
 * Started as root: the helper switches to -u/-g (default: stays uid/gid 0, as the reference)
 * and keeps exactly CAP_SYS_RAWIO, which SG_IO needs for PR commands, on every thread;
 * bounding set, supplementary groups and every other capability are gone, no_new_privs is
 * set. The check is strict.
 *
 * Started as another user (systemd User= with AmbientCapabilities=, or setpriv): the helper
 * cannot change anything and does not need to, since every thread started with the same
 * credentials. It refuses to run with any capability beyond the kept ones, or without
 * CAP_SYS_RAWIO; a wider bounding set and supplementary groups, which it cannot shed, are
 * reported but allowed. The reference cannot start as non-root at all.
 */
import { CAP_SYS_ADMIN, CAP_SYS_RAWIO, capabilitiesIn, capabilityName, describeMask, maskOf } from './capabilities.js';
import { summarizeProblems, type ExpectedCredentials, type ThreadCredentials } from './thread-status.js';

export const KEPT_CAPABILITIES: readonly number[] = [CAP_SYS_RAWIO];
/**
 * With libmpathpersist installed the reference also keeps CAP_SYS_ADMIN (docs/protocol.md §2): the
 * library finds a map's paths through device-mapper ioctls, which check it on every call.
 */
export const KEPT_CAPABILITIES_MULTIPATH: readonly number[] = [CAP_SYS_RAWIO, CAP_SYS_ADMIN];

export function keptCapabilities(multipath: boolean): bigint {
  return maskOf(multipath ? KEPT_CAPABILITIES_MULTIPATH : KEPT_CAPABILITIES);
}

/** -u/-g value 4294967295 is (uid_t)-1: "no change", as for the reference (docs/protocol.md §1.4). */
const NO_CHANGE = 0xffffffff;

export function targetId(requested: number | null, current: number): number {
  return requested === null || requested === NO_CHANGE ? current : requested;
}

export function expectedAfterDrop(uid: number, gid: number, kept: bigint): ExpectedCredentials {
  return { uid, gid, kept, noGroups: true, boundedSet: true, noNewPrivs: true };
}

export interface UnprivilegedReview {
  errors: string[];
  warnings: string[];
}

/** Reviews the threads of a helper started without root. */
export function reviewUnprivileged(
  threads: readonly ThreadCredentials[], uid: number, gid: number, kept: bigint,
): UnprivilegedReview {
  const errors: string[] = [];
  const warnings: string[] = [];
  const main = threads.find((t) => t.tid === Math.min(...threads.map((x) => x.tid)));
  const missing = main ? kept & ~main.effective : kept;
  if (missing !== 0n) {
    const names = capabilitiesIn(missing).map(capabilityName);
    errors.push(
      `started as uid ${uid} without ${names.join(',')}: the kernel refuses PR commands through SG_IO ` +
      'without it. Start as root (optionally with -u/-g), or grant it as an ambient capability ' +
      `(systemd: AmbientCapabilities=${names.map((n) => n.toUpperCase()).join(' ')}; ` +
      `setpriv: --inh-caps=${names.map((n) => `+${n.slice(4)}`).join(',')} --ambient-caps=${names.map((n) => `+${n.slice(4)}`).join(',')})`,
    );
    return { errors, warnings };
  }
  const expected: ExpectedCredentials = { uid, gid, kept, noGroups: false, boundedSet: false, noNewPrivs: false };
  errors.push(...summarizeProblems(threads, expected));
  const bounding = threads.reduce((m, t) => m | t.bounding, 0n) & ~kept;
  if (bounding !== 0n && !threads.every((t) => t.noNewPrivs)) {
    warnings.push(
      `the capability bounding set holds ${capabilitiesIn(bounding).length} capabilities beyond ${describeMask(kept)}; ` +
      `set CapabilityBoundingSet=${describeMask(kept).toUpperCase()} ` +
      'and NoNewPrivileges=yes (or setpriv --bounding-set=-all,+sys_rawio --no-new-privs)',
    );
  }
  const groups = new Set(threads.flatMap((t) => t.groups));
  if (groups.size > 0) warnings.push(`running with supplementary groups ${[...groups].join(',')}, which a non-root helper cannot drop`);
  return { errors, warnings };
}

