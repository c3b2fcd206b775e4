/**
 * systemd socket activation, with QEMU's check_socket_activation rules (docs/protocol.md §1.6):
 * LISTEN_PID must equal our pid and LISTEN_FDS must be a number, both parsed like
 * strtoul (leading white space and a sign allowed, nothing after the digits).
 */
import { parseStrtoul } from '../util/strtoul.js';

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
export const FIRST_SOCKET_ACTIVATION_FD = 3;

const UINT_MAX = (1n << 32n) - 1n;

export type ActivationCheck =
  | { kind: 'none' }
  | { kind: 'activated'; count: number }
  | { kind: 'invalid'; message: string };

/**
 * Decides whether the environment hands us sockets. A count that wraps (LISTEN_FDS=-1) or
 * exceeds UINT_MAX makes the reference abort on an assertion (docs/protocol.md §9 item 17); here it is
 * an error with a message.
 */
export function checkActivation(env: Readonly<Record<string, string | undefined>>, pid: number): ActivationCheck {
  const listenPid = env['LISTEN_PID'];
  if (listenPid === undefined) return { kind: 'none' };
  const parsedPid = parseStrtoul(listenPid);
  if (parsedPid === null || parsedPid !== BigInt(pid)) return { kind: 'none' };
  const listenFds = env['LISTEN_FDS'];
  if (listenFds === undefined) return { kind: 'none' };
  const count = parseStrtoul(listenFds);
  if (count === null) return { kind: 'none' };
  if (count > UINT_MAX) {
    return { kind: 'invalid', message: `Socket activation failed: invalid LISTEN_FDS '${listenFds}'` };
  }
  return count === 0n ? { kind: 'none' } : { kind: 'activated', count: Number(count) };
}
