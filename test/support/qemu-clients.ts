/**
 * The QEMU clients the tests connect to the helper (issue 15 item 5): the system's QEMU
 * (Debian 12: 7.2), QEMU 10.0 (bookworm-backports' build, extracted by
 * test/tools/fetch-qemu-10.sh beside the system's), and the QEMU 11 development build of the
 * workplace's prebuilt test tools (/opt/qemu-11). The e2e VM shares the host's root
 * filesystem, so the same paths hold inside it. A client that is not there carries the reason
 * its tests skip.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface QemuClient {
  /** Short name for test titles and logs: 'system', '10.0', '11'. */
  name: string;
  binary: string;
  /** Arguments that come first: the firmware directories (-L) of an unpacked tree. */
  args: string[];
  /** Extra environment (QEMU_MODULE_DIR of an unpacked tree). */
  env: Record<string, string>;
  /** `--version` must match (the system's QEMU is whatever the distribution ships). */
  version: RegExp;
  /** Why its tests skip; false when it is there. */
  skip: string | false;
}

/** Where fetch-qemu-10.sh puts QEMU 10.0 (its PRH_QEMU10_DIR; the e2e guest sees the default). */
export const QEMU10_DIR = process.env['PRH_QEMU10_DIR'] ?? '/opt/qemu-10.0';

function client(c: Omit<QemuClient, 'skip'>, missing: string): QemuClient {
  return { ...c, skip: existsSync(c.binary) ? false : `${c.binary} is not there: ${missing}` };
}

export function qemuClients(): QemuClient[] {
  return [
    client({ name: 'system', binary: '/usr/bin/qemu-system-x86_64', args: [], env: {}, version: /^QEMU emulator version \d+\./ },
      'Debian package qemu-system-x86 (7.2 on Debian 12)'),
    client({
      name: '10.0',
      binary: join(QEMU10_DIR, 'usr/bin/qemu-system-x86_64'),
      args: ['-L', join(QEMU10_DIR, 'usr/share/qemu'), '-L', join(QEMU10_DIR, 'usr/share/seabios')],
      env: { QEMU_MODULE_DIR: join(QEMU10_DIR, 'usr/lib/x86_64-linux-gnu/qemu') },
      version: /^QEMU emulator version 10\.0\./,
    }, 'bookworm-backports\' QEMU 10.0 is extracted by test/tools/fetch-qemu-10.sh (run by .ci/run; set PRH_QEMU10_DIR for another place)'),
    client({
      name: '11',
      binary: '/opt/qemu-11/bin/qemu-system-x86_64',
      args: ['-L', '/opt/qemu-11/share/qemu'],
      env: {},
      // the 11.0 development tree (master of 2026-02-15) calls itself 10.2.50
      version: /^QEMU emulator version (10\.2\.5\d|11\.)/,
    }, 'the workplace\'s prebuilt test tools (../shared/tools/install.sh, run by .ci/run) put QEMU 11 there'),
  ];
}

/** The first line of `QEMU --version`. */
export function qemuVersion(c: QemuClient): string {
  return execFileSync(c.binary, [...c.args, '--version'], { encoding: 'utf8', env: { ...process.env, ...c.env } }).split('\n')[0] ?? '';
}
