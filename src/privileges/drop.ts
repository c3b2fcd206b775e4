/**
 * Dropping root for good, on every thread (docs/protocol.md §2;
 * docs/internals.md#capabilities-are-per-thread). Capabilities are per thread and Node runs about
 * ten threads before any of our code, while only setres[ug]id and setgroups reach them all. So the
 * main thread changes its own credentials and then execve()s Node again: the new image starts
 * every thread, V8's, libuv's and our SG_IO workers, from exactly those credentials. The pid stays
 * the same, so libvirt's pid file and its inherited lock stay valid.
 *
 * The kept capabilities survive execve as *ambient* capabilities. For uid 0 the kernel would
 * otherwise give root every capability back at execve; SECBIT_NOROOT (locked) stops that.
 * no_new_privs makes sure nothing executed later can gain anything.
 */
import {
  clearSupplementaryGroups, dropBoundingSet, execProgram, getCapabilities, keepAcrossExec, lastCapability,
  raiseAmbientCapability, SecureBit, setCapabilities, setIds, setKeepCapabilities, setNoNewPrivileges,
  setSecureBits,
} from '../sys/credentials.js';
import { capabilitiesIn } from './capabilities.js';

export interface DropRequest {
  uid: number;
  gid: number;
  kept: bigint;
  /** Descriptors the new image needs (stdio, listening socket, pid file, inherited ones). */
  keepFds: readonly number[];
  execPath: string;
  argv: readonly string[];
  env: readonly string[];
}

/**
 * Switches the calling (main) thread to `uid`/`gid` with only `kept`, then re-executes.
 * Returns only by throwing the SyscallError of the step that failed.
 */
export function dropAndReexec(request: DropRequest): never {
  const { kept } = request;
  for (const fd of request.keepFds) keepAcrossExec(fd);
  // 1. The kept capabilities become inheritable while CAP_SETPCAP is still effective:
  //    the kernel only allows raising inheritable bits that are in the bounding set,
  //    which step 3 empties.
  const now = getCapabilities();
  setCapabilities({ effective: now.effective, permitted: now.permitted, inheritable: kept });
  // 2. uid 0 must not regain every capability at execve.
  setSecureBits(SecureBit.NOROOT | SecureBit.NOROOT_LOCKED);
  // 3. An empty bounding set, as the reference leaves it (capng CLEAR_BOUNDING).
  dropBoundingSet([], lastCapability());
  // 4. Keep the permitted set across the uid change (otherwise uid 0 -> N clears it).
  setKeepCapabilities(true);
  clearSupplementaryGroups();
  setIds(request.uid, request.gid);
  // 5. Exactly the kept set, raised as ambient so that it survives execve.
  setCapabilities({ effective: kept, permitted: kept, inheritable: kept });
  for (const cap of capabilitiesIn(kept)) raiseAmbientCapability(cap);
  setNoNewPrivileges();
  return execProgram(request.execPath, request.argv, request.env);
}
