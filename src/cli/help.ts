/** --help and --version texts (docs/protocol.md §1.1). */
import { PR_HELPER_FEATURE_CLEANUP } from '../protocol/constants.js';

export const DEFAULT_STATE_DIR = '/var';
export const DEFAULT_SOCKET_PATH = `${DEFAULT_STATE_DIR}/run/qemu-pr-helper.sock`;
export const DEFAULT_PIDFILE_PATH = `${DEFAULT_STATE_DIR}/run/qemu-pr-helper.pid`;

export const PACKAGE_NAME = 'qemu-pr-helper-ts';
export const PACKAGE_VERSION = '0.1.0';

/** The reference's usage text (QEMU 7.2), with -v, -q and our own long options added. */
export function usageText(program: string): string {
  return `Usage: ${program} [OPTIONS] FILE
Persistent Reservation helper program for QEMU

  -h, --help                display this help and exit
  -V, --version             output version information and exit

  -d, --daemon              run in the background
  -f, --pidfile=PATH        PID file when running as a daemon
                            (default '${DEFAULT_PIDFILE_PATH}')
  -k, --socket=PATH         path to the unix socket
                            (default '${DEFAULT_SOCKET_PATH}')
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                            specify tracing options
  -u, --user=USER           user to drop privileges to
  -g, --group=GROUP         group to drop privileges to
  -v, --verbose             log each connection and request (-vv: also raw bytes)
  -q, --quiet               log only fatal start-up errors
      --io-timeout=SECONDS  SCSI command timeout for SG_IO (default 30)
      --allow-uid=USER[,USER...]   accept connections only from these users
      --allow-gid=GROUP[,GROUP...] ... or from these groups (default: anyone
                            who can open the socket)
      --log-keys            show reservation keys in full in -v lines
      --enable-cleanup      announce the CLEANUP extension (feature bit 0,
                            opcode 0xFF) of an unmerged QEMU patch series;
                            by default no feature is announced, as upstream
      --multipath-socket=PATH|@NAME
                            reach multipathd through this socket (sets
                            MULTIPATH_SOCKET_NAME for libmpathcmd >= 0.12)

FILE is accepted and ignored, as by QEMU's qemu-pr-helper.
This is ${PACKAGE_NAME}, a TypeScript implementation; see its README for
how to report bugs.
`;
}

export function versionText(program: string, runtime: { node: string; koffi: string }): string {
  const cleanup = `0x${PR_HELPER_FEATURE_CLEANUP.toString(16).padStart(8, '0')}`;
  return `${program} ${PACKAGE_VERSION} (${PACKAGE_NAME})
Protocol: QEMU pr-manager-helper, as in QEMU 2.11 and later, announcing feature
set 0x00000000 as upstream QEMU does (${cleanup}, PR_HELPER_FEATURE_CLEANUP, with
--enable-cleanup).
Runtime: Node.js ${runtime.node}, koffi ${runtime.koffi}.

This is free software; see the source for copying conditions.  There is NO
warranty; not even for MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.
`;
}
