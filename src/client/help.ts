/** --help and --version of the diagnostic client. */
import { DEFAULT_SOCKET_PATH, PACKAGE_NAME, PACKAGE_VERSION } from '../cli/help.js';
import { PR_HELPER_DATA_SIZE } from '../protocol/constants.js';
import { COMMANDS } from './commands.js';
import { DEFAULT_TIMEOUT_MS } from './args.js';

export function clientUsageText(program: string): string {
  const commands = COMMANDS.map((c) => {
    const name = c.kind === 'features' ? c.name : `${c.name} DEVICE`;
    return `  ${name.padEnd(28)}${c.summary}`;
  }).join('\n');
  return `Usage: ${program} [OPTIONS] COMMAND [DEVICE]
Diagnostic client for a running qemu-pr-helper: sends persistent reservation
commands through the helper exactly as QEMU does. DEVICE is opened here and its
file descriptor is passed over the helper's socket (SCM_RIGHTS); the helper runs
the command with its own privileges.

Commands:
${commands}

Options:
  -k, --socket=PATH         the helper's socket
                            (default '${DEFAULT_SOCKET_PATH}')
  -j, --json                print one JSON object instead of the table
  -t, --timeout=SECONDS     wait at most this long for the helper
                            (default ${DEFAULT_TIMEOUT_MS / 1000}; 0 waits forever)
  -y, --readonly            open DEVICE read-only for PR OUT and cleanup too
                            (the helper then answers INVALID COMMAND OPERATION
                            CODE, as it does to QEMU)
  -l, --alloc-length=LEN    PR IN allocation length, 0-${PR_HELPER_DATA_SIZE} (default ${PR_HELPER_DATA_SIZE})
  -K, --param-rk=KEY        RESERVATION KEY (default 0)
  -S, --param-sark=KEY      SERVICE ACTION RESERVATION KEY (default 0)
  -T, --prout-type=TYPE     reservation type, a number or a name:
                            1 we     Write Exclusive
                            3 ea     Exclusive Access
                            5 we-ro  Write Exclusive - Registrants Only
                            6 ea-ro  Exclusive Access - Registrants Only
                            7 we-ar  Write Exclusive - All Registrants
                            8 ea-ar  Exclusive Access - All Registrants
  -Z, --param-aptpl         set APTPL (persist through power loss)
  -Y, --param-alltgpt       set ALL_TG_PT (register on every target port)
  -h, --help                display this help and exit
  -V, --version             output version information and exit

KEYs are hexadecimal, with or without 0x, at most 16 digits. DEVICE is opened
read-only for PR IN, read-write for PR OUT and cleanup. The scope is always LU.
cleanup is sent only when the helper announces CLEANUP (see 'features').

Output: one "label  value" row per line, the value at column 21, lists
continued on the following lines at that column; --json prints the same values
as one object (keys as "0x" and 16 hex digits). Errors go to standard error.

Exit status:
  0    GOOD
  2    CHECK CONDITION (the sense is printed decoded)
  8    BUSY
  24   RESERVATION CONFLICT (0x18)
  N    any other SCSI status N, e.g. 40 for TASK SET FULL (0x28)
  1    usage error; the helper cannot be reached, closes the connection,
       does not answer in time or answers out of protocol; DEVICE cannot be
       opened
`;
}

export function clientVersionText(program: string): string {
  return `${program} ${PACKAGE_VERSION} (${PACKAGE_NAME})
Speaks QEMU's pr-manager-helper protocol (QEMU 2.11 and later), including the
CLEANUP feature (bit 0) of QEMU's development tree.
`;
}
