/**
 * KubeVirt's pr-helper container, without a container runtime (contrib/kubevirt/,
 * docs/operations.md "KubeVirt"): contrib/kubevirt/entrypoint.sh runs as virt-handler's
 * DaemonSet runs it, `/entrypoint.sh -k /var/run/kubevirt/daemons/pr/pr-helper.sock`, as root
 * in a mount and network namespace of its own (`unshare --mount --net`), with:
 * - its own /run (a tmpfs), and the hostPath volume /var/run/kubevirt/daemons/pr bind-mounted
 *   from a directory of the "host" (this test's side);
 * - the host's multipathd socket bind-mounted into that directory as
 *   `multipathd.socket`, as virt-handler's multipath socket monitor does;
 * - /usr/bin/qemu-pr-helper leading to this tree's launcher, as the image has it.
 * The network namespace is what matters: multipathd's abstract socket is per network
 * namespace, so only a filesystem socket reaches it from the pod.
 *
 * multipathd here is a stand-in answering on its command socket as multipathd does
 * (test/support/fake-multipathd.ts): a real multipathd (0.12 or later, for the filesystem
 * socket) exits at start-up without device-mapper in the kernel, as on this test's hosts;
 * the e2e VM has one. libmpathcmd must be 0.12 or later (Debian 12's 0.9.4 knows only the
 * abstract socket): /opt/mpt-0.14.3 from ../shared/tools/install.sh, or the one
 * QEMU_PR_HELPER_MPATH_LIBRARY names.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readlinkSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { OUR_HELPER, REPO_ROOT, startHelper, tempDir, waitFor, type ReadyHelper } from '../support/launcher.js';
import { PrClient } from '../support/client.js';
import { fakeMultipathd, type FakeMultipathd } from '../support/fake-multipathd.js';
import { findMpathLibrary, mpathCmdOf, mpathCmdReadsSocketVariable, probeMultipathd } from '../../src/mpath/library.js';

const ENTRYPOINT = join(REPO_ROOT, 'contrib', 'kubevirt', 'entrypoint.sh');
const PR_DIR = '/var/run/kubevirt/daemons/pr';
const PR_SOCKET = `${PR_DIR}/pr-helper.sock`;
const MULTIPATHD_SOCKET = `${PR_DIR}/multipathd.socket`;

/** A libmpathpersist whose libmpathcmd reads MULTIPATH_SOCKET_NAME, or null. */
function recentLibrary(): string | null {
  const candidates = [process.env['QEMU_PR_HELPER_MPATH_LIBRARY'], '/opt/mpt-0.14.3/lib64/libmpathpersist.so.0']
    .filter((p): p is string => p !== undefined && existsSync(p));
  return candidates.find((p) => mpathCmdReadsSocketVariable(mpathCmdOf(p)) === true) ?? null;
}

/** libmpathcmd before 0.12 (Debian 12's, or 0.11.1 from the shared tools), or null. */
function oldLibrary(): string | null {
  const candidates = [findMpathLibrary(undefined), '/opt/mpt-0.11.1/lib64/libmpathpersist.so.0']
    .filter((p): p is string => p !== null && existsSync(p));
  return candidates.find((p) => mpathCmdReadsSocketVariable(mpathCmdOf(p)) === false) ?? null;
}

const library = recentLibrary();

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root: unshare --mount --net and bind mounts';
  const probe = spawnSync('unshare', ['--mount', '--net', 'true'], { encoding: 'utf8' });
  if (probe.error !== undefined) return `unshare (util-linux) cannot run: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare --mount --net fails here: ${probe.stderr.trim()}`;
  if (library === null) {
    return 'no libmpathcmd that reads MULTIPATH_SOCKET_NAME (multipath-tools >= 0.12; Debian 12 has 0.9.4): ' +
      'install /opt/mpt-0.14.3 with ../shared/tools/install.sh, or name one with QEMU_PR_HELPER_MPATH_LIBRARY';
  }
  return false;
}

/**
 * Inside the new namespaces: the container's mounts, then the entrypoint (exec: the pid
 * spawned is the helper's). $1 host directory of the hostPath volume, $2 the host's
 * multipathd socket, $3 what /usr/bin/qemu-pr-helper runs, $4 a scratch directory,
 * $5 the entrypoint, then its arguments.
 */
const CONTAINER = `set -eu
pr=$1 multipathd=$2 helper=$3 scratch=$4 entrypoint=$5
shift 5
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p ${PR_DIR}
mount --bind "$pr" ${PR_DIR}
: > ${MULTIPATHD_SOCKET}
mount --bind "$multipathd" ${MULTIPATHD_SOCKET}
if [ -e /usr/bin/qemu-pr-helper ]; then
  mount --bind "$helper" /usr/bin/qemu-pr-helper
else
  mkdir -p "$scratch/upper" "$scratch/work"
  cp "$helper" "$scratch/upper/qemu-pr-helper"
  mount -t overlay overlay -o "lowerdir=/usr/bin,upperdir=$scratch/upper,workdir=$scratch/work" /usr/bin
fi
exec "$entrypoint" "$@"
`;

interface Pod {
  helper: ReadyHelper;
  /** The host's side of the hostPath volume. */
  prDir: string;
  dir: string;
  cleanup(): void;
}

/** Starts the entrypoint in its namespaces, the host's multipathd socket at `multipathdSocket`. */
async function startPod(dir: string, multipathdSocket: string, args: string[], env: NodeJS.ProcessEnv): Promise<Pod> {
  const prDir = join(dir, 'host-pr');
  const scratch = join(dir, 'scratch');
  mkdirSync(prDir);
  mkdirSync(scratch);
  const shim = join(dir, 'qemu-pr-helper');
  writeFileSync(shim, `#!/bin/sh\nexec ${OUR_HELPER} "$@"\n`);
  chmodSync(shim, 0o755);
  const helper = await startHelper({
    binary: 'unshare',
    args: ['--mount', '--net', 'sh', '-c', CONTAINER, 'pr-helper', prDir, multipathdSocket, shim, scratch, ENTRYPOINT, ...args],
    socketPath: join(prDir, 'pr-helper.sock'),
    env,
  });
  return { helper, prDir, dir, cleanup: () => helper.cleanup() };
}

function podEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, QEMU_PR_HELPER_MPATH_LIBRARY: library ?? '', ...extra };
  if (!('MULTIPATH_SOCKET_NAME' in extra)) delete env['MULTIPATH_SOCKET_NAME'];
  return env;
}

function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
}

describe('KubeVirt pr-helper container (contrib/kubevirt)', { skip: skipReason() }, () => {
  test('the entrypoint serves -k, reaches multipathd through the bind-mounted filesystem socket, and stops cleanly on SIGTERM', async () => {
    const dir = tempDir('prh-kubevirt-');
    let fake: FakeMultipathd | null = null;
    let pod: Pod | null = null;
    try {
      // The host's multipathd socket (/run/multipathd.socket on the host).
      const hostSocket = join(dir, 'multipathd.socket');
      fake = await fakeMultipathd((command) => (command === 'show daemon' ? `pid ${process.pid} idle\n` : 'fail\n'), hostSocket);
      pod = await startPod(dir, hostSocket, ['-k', PR_SOCKET, '-v'], podEnv({}));
      const { helper, prDir } = pod;

      // exec all the way: the pid spawned is the helper, in a network namespace of its own,
      // with the DaemonSet's arguments and the entrypoint's --multipath-socket before them.
      const argv = cmdline(helper.pid);
      assert.ok(argv.some((a) => a.endsWith('/dist/src/cli/entry.cjs')), argv.join(' '));
      assert.deepEqual(argv.slice(-4), [`--multipath-socket=${MULTIPATHD_SOCKET}`, '-k', PR_SOCKET, '-v']);
      assert.notEqual(readlinkSync(`/proc/${helper.pid}/ns/net`), readlinkSync('/proc/self/ns/net'));

      // The socket is served where virt-launcher finds it, through the hostPath directory.
      const client = await PrClient.connect(join(prDir, 'pr-helper.sock'));
      assert.equal(typeof client.features, 'number');
      client.close();

      // libmpathcmd, in the helper, talked to multipathd through the filesystem socket.
      const line = await waitFor(() => /multipath: multipathd answers through (\S+): (.*)/.exec(helper.stderr()), 10_000);
      assert.ok(line, `no multipathd line in:\n${helper.stderr()}`);
      assert.equal(line[1], MULTIPATHD_SOCKET);
      assert.equal(line[2], `pid ${process.pid} idle`);
      assert.deepEqual(fake.commands, ['show daemon']);
      assert.match(helper.stderr(), /Running as /); // -v passed through

      assert.equal(await helper.stop('SIGTERM'), 0);
      assert.equal(existsSync(join(prDir, 'pr-helper.sock')), false, 'the socket is removed');
      assert.doesNotMatch(helper.stderr(), /warning|error/i);
    } finally {
      pod?.cleanup();
      fake?.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an abstract socket is out of reach from the pod; MULTIPATH_SOCKET_NAME in the pod overrides the entrypoint\'s', async () => {
    const dir = tempDir('prh-kubevirt-');
    const abstract = `@prh-kubevirt-test-${process.pid}`;
    let fake: FakeMultipathd | null = null;
    let pod: Pod | null = null;
    const saved = process.env['MULTIPATH_SOCKET_NAME'];
    try {
      fake = await fakeMultipathd(() => `pid ${process.pid} idle\n`, `\0${abstract.slice(1)}`);
      // In the host's network namespace the name reaches it: MULTIPATH_SOCKET_NAME written on
      // the main thread is what libmpathcmd's getenv() sees on another thread.
      process.env['MULTIPATH_SOCKET_NAME'] = abstract;
      assert.equal(await probeMultipathd(mpathCmdOf(library ?? '')), `pid ${process.pid} idle`);
      assert.deepEqual(fake.commands, ['show daemon']);
      if (saved === undefined) delete process.env['MULTIPATH_SOCKET_NAME'];
      else process.env['MULTIPATH_SOCKET_NAME'] = saved;

      const hostSocket = join(dir, 'unused.socket');
      writeFileSync(hostSocket, '');
      pod = await startPod(dir, hostSocket, ['-k', PR_SOCKET, '-v'], podEnv({ MULTIPATH_SOCKET_NAME: abstract }));
      const { helper } = pod;
      assert.deepEqual(cmdline(helper.pid).slice(-4), [`--multipath-socket=${abstract}`, '-k', PR_SOCKET, '-v']);
      const line = await waitFor(() => /multipath: multipathd does not answer through (\S+) \(yet\): (.*)/.exec(helper.stderr()), 10_000);
      assert.ok(line, `no multipathd line in:\n${helper.stderr()}`);
      assert.equal(line[1], abstract);
      assert.match(line[2] ?? '', /^mpath_connect\(\) failed: cannot reach multipathd: Connection refused$/);
      assert.deepEqual(fake.commands, ['show daemon'], 'nothing more reached the abstract socket');
      assert.equal(await helper.stop('SIGTERM'), 0);
    } finally {
      if (saved === undefined) delete process.env['MULTIPATH_SOCKET_NAME'];
      else process.env['MULTIPATH_SOCKET_NAME'] = saved;
      pod?.cleanup();
      fake?.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('--multipath-socket and MULTIPATH_SOCKET_NAME at start-up', () => {
  test('a relative or overlong name is refused before anything starts', () => {
    const env = { ...process.env };
    delete env['MULTIPATH_SOCKET_NAME'];
    const given = spawnSync(OUR_HELPER, ['--multipath-socket=multipathd.socket', '-k', '/nonexistent/x.sock'], { encoding: 'utf8', env });
    assert.equal(given.status, 1);
    assert.equal(given.stderr, "qemu-pr-helper: invalid --multipath-socket 'multipathd.socket': it is neither an absolute path nor @ and an abstract socket name\n");
    const long = `/${'x'.repeat(200)}`;
    const inherited = spawnSync(OUR_HELPER, ['-k', '/nonexistent/x.sock'], { encoding: 'utf8', env: { ...env, MULTIPATH_SOCKET_NAME: long } });
    assert.equal(inherited.status, 1);
    assert.equal(inherited.stderr, `qemu-pr-helper: invalid MULTIPATH_SOCKET_NAME='${long}' in the environment: it is 201 bytes long, more than a socket address holds (107)\n`);
  });

  const old = oldLibrary();
  test('a libmpathcmd older than 0.12 is named in a warning: it ignores the variable', {
    skip: process.getuid?.() !== 0 ? 'needs root (CAP_SYS_ADMIN kept for libmpathpersist)'
      : old === null ? 'no libmpathpersist older than 0.12 here (multipath-tools, or /opt/mpt-0.11.1 from ../shared/tools/install.sh)' : false,
  }, async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, QEMU_PR_HELPER_MPATH_LIBRARY: old ?? '' };
    delete env['MULTIPATH_SOCKET_NAME'];
    const dir = tempDir('prh-kubevirt-');
    const socketPath = join(dir, 'pr.sock');
    const helper = await startHelper({ args: ['--multipath-socket=/run/multipathd.socket', '-k', socketPath], socketPath, env });
    try {
      const line = await waitFor(() => /warning: (\S+) ignores MULTIPATH_SOCKET_NAME=\/run\/multipathd\.socket \(multipath-tools before 0\.12\)/.exec(helper.stderr()), 10_000);
      assert.ok(line, helper.stderr());
      assert.equal(line[1], mpathCmdOf(old ?? ''));
      assert.equal(await helper.stop('SIGTERM'), 0);
    } finally {
      helper.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
