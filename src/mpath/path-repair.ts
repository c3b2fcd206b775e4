/**
 * A correction for libmpathpersist before multipath-tools 0.14 (docs/migration.md
 * "Multipath"): PREEMPT (or PREEMPT AND ABORT) with the caller's own key as the service
 * action key removes, as SPC-4 5.14.11.4.4 says, every registration with that key except
 * the I_T nexus the command went through; on a map those are the map's other paths, which
 * the older library does not register again. A failover to such a path then meets
 * RESERVATION CONFLICT. QEMU 11's migration sends exactly this (REGISTER, then
 * PREEMPT(K, K, type)) on the destination. Measured: 0.9.4 and 0.11.1 leave 1 of 2 paths
 * registered, 0.14.3 both.
 *
 * The correction, after such a PREEMPT succeeds: REGISTER AND IGNORE EXISTING KEY with the
 * same key through the library, which registers every path of the map; on the paths that
 * hold K it changes nothing, and the reservation stays (SPC-4 5.14.7). APTPL is what the
 * device reports (PTPL_A), since the last registration's APTPL decides for the whole LU.
 * Pure.
 */
import { MPATH_F_APTPL_MASK, MPATH_PROUT_PREE_AB_SA, MPATH_PROUT_PREE_SA, MPATH_PROUT_REG_IGN_SA } from './abi.js';
import type { PrOutArguments, PrinCapabilities } from './types.js';

export type MultipathToolsVersion = readonly [number, number, number];

/** The first multipath-tools release measured to keep the map's paths registered. */
export const KEEPS_PATHS_SINCE: MultipathToolsVersion = [0, 14, 0];

/** REPORT CAPABILITIES byte 3 bit 0: PERSIST THROUGH POWER LOSS ACTIVATED (SPC-4 6.16.4). */
const PTPL_A = 0x01;

function older(version: MultipathToolsVersion, than: MultipathToolsVersion): boolean {
  for (let i = 0; i < 3; i++) {
    if ((version[i] ?? 0) !== (than[i] ?? 0)) return (version[i] ?? 0) < (than[i] ?? 0);
  }
  return false;
}

/**
 * Whether a successful `call` needs the paths registered again, with a library of
 * `version` (null: unknown, treated as old, since registering again is harmless).
 */
export function needsPathRepair(version: MultipathToolsVersion | null, call: PrOutArguments): boolean {
  if (call.sa !== MPATH_PROUT_PREE_SA && call.sa !== MPATH_PROUT_PREE_AB_SA) return false;
  if (version !== null && !older(version, KEEPS_PATHS_SINCE)) return false;
  const { key, saKey } = call.descriptor;
  if (key.every((b) => b === 0)) return false;
  return key.length === saKey.length && key.every((b, i) => b === saKey[i]);
}

/** The REGISTER AND IGNORE EXISTING KEY that registers every path of the map with `call`'s key. */
export function pathRepair(call: PrOutArguments, capabilities: PrinCapabilities): PrOutArguments {
  return {
    sa: MPATH_PROUT_REG_IGN_SA,
    scope: 0,
    type: 0,
    descriptor: {
      key: new Uint8Array(8),
      saKey: call.descriptor.saKey.slice(),
      saFlags: (capabilities.flags1 & PTPL_A) !== 0 ? MPATH_F_APTPL_MASK : 0,
      transportIds: [],
    },
  };
}

export function formatVersion(version: MultipathToolsVersion | null): string {
  return version === null ? 'of unknown version' : version.join('.');
}
