/**
 * Privilege drop on every thread (docs/protocol.md §2;
 * docs/internals.md#capabilities-are-per-thread), read from /proc/<pid>/task/<tid>/status of the
 * running helper once its SG_IO threads exist, in each way operators start it. Needs root (the
 * helper's own drop) and util-linux setpriv (the non-root start).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, openSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrClient } from '../support/client.js';
import { loadedSgIoThreads, pollUntil, spawnHelper, startHelper, tempDir, warmBaseline, OUR_HELPER, type StartOptions } from '../support/launcher.js';
import { lingeringSocket } from '../support/lingering.js';
import { prInCdb } from '../support/builders.js';
import { readThreadCredentials } from '../../src/privileges/verify.js';
import type { ThreadCredentials } from '../../src/privileges/thread-status.js';
import { bindUnix, listenSocket, unixStreamSocket } from '../../src/sys/socket.js';
import { closeFd } from '../../src/sys/fd.js';
import { encodeEnvelope, HANDOFF_VARIABLE } from '../../src/daemon/handoff.js';
import { findMpathLibrary } from '../../src/mpath/library.js';

const SETPRIV = '/usr/bin/setpriv';
const RAWIO = 0x20000n;
const RAWIO_ADMIN = 0x220000n;
const MULTIPATH = findMpathLibrary(process.env['QEMU_PR_HELPER_MPATH_LIBRARY']) !== null;
/** Started as root: CAP_SYS_ADMIN too when libmpathpersist is installed, as the reference (docs/protocol.md §2). */
const KEPT_AS_ROOT = MULTIPATH ? RAWIO_ADMIN : RAWIO;
const NOBODY = 65534;
const NOGROUP = 65534;

const notRoot = process.getuid?.() !== 0 ? 'needs root: the helper drops privileges only when started as root' : false;
const noSetpriv = !existsSync(SETPRIV) ? `${SETPRIV} is missing (Debian package util-linux)` : false;

interface Row {
  uids: readonly number[]; gids: readonly number[]; groups: readonly number[];
  inheritable: bigint; permitted: bigint; effective: bigint; bounding: bigint; ambient: bigint; noNewPrivs: boolean;
}

function row(t: ThreadCredentials): Row {
  const { uids, gids, groups, inheritable, permitted, effective, bounding, ambient, noNewPrivs } = t;
  return { uids, gids, groups, inheritable, permitted, effective, bounding, ambient, noNewPrivs };
}

/** Starts a helper, brings up its SG_IO threads, and returns every thread's credentials. */
async function threadTable(opts: StartOptions): Promise<{ threads: ThreadCredentials[]; stop: () => Promise<void> }> {
  const helper = await startHelper(opts);
  await warmBaseline(helper); // both SG_IO threads exist and have loaded
  // A request still works after the drop (answered from an SG_IO thread: ENOTTY on /dev/null).
  const fd = openSync('/dev/null', 'r');
  const client = await PrClient.connect(helper.socketPath);
  const response = await client.request(prInCdb({ sa: 0, allocationLength: 8 }), fd);
  assert.equal(response.status, 2, 'CHECK CONDITION for SG_IO on /dev/null');
  client.close();
  closeSync(fd);
  const threads = readThreadCredentials(helper.pid);
  return {
    threads,
    stop: async () => {
      assert.equal(await helper.stop(), 0, helper.stderr());
      helper.cleanup();
    },
  };
}

function assertEveryThread(threads: ThreadCredentials[], expected: Row): void {
  assert.ok(threads.length >= 10, `expected Node's threads plus SG_IO threads, saw ${threads.length}`);
  assert.ok(threads.filter((t) => t.name === 'prh-sgio').length >= 2, 'SG_IO threads are part of the table');
  for (const t of threads) assert.deepEqual(row(t), expected, `thread ${t.tid} (${t.name})`);
}

describe('privileges on every thread (docs/protocol.md §2)', { skip: notRoot }, () => {
  test(`root without -u/-g (libvirt): uid 0, only CAP_SYS_RAWIO${MULTIPATH ? ' and CAP_SYS_ADMIN (libmpathpersist is installed)' : ''}, empty bounding set`, async () => {
    const { threads, stop } = await threadTable({});
    assertEveryThread(threads, {
      uids: [0, 0, 0, 0], gids: [0, 0, 0, 0], groups: [],
      inheritable: KEPT_AS_ROOT, permitted: KEPT_AS_ROOT, effective: KEPT_AS_ROOT, bounding: 0n, ambient: KEPT_AS_ROOT, noNewPrivs: true,
    });
    await stop();
  });

  test('-u nobody -g nogroup: uid/gid 65534 on all threads, no supplementary groups', async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'pr.sock');
    const { threads, stop } = await threadTable({ socketPath, args: ['-k', socketPath, '-u', 'nobody', '-g', 'nogroup'] });
    // Never CAP_SYS_ADMIN for a user other than root, even with libmpathpersist (docs/security.md "Threat model").
    assertEveryThread(threads, {
      uids: [NOBODY, NOBODY, NOBODY, NOBODY], gids: [NOGROUP, NOGROUP, NOGROUP, NOGROUP], groups: [],
      inheritable: RAWIO, permitted: RAWIO, effective: RAWIO, bounding: 0n, ambient: RAWIO, noNewPrivs: true,
    });
    await stop();
  });

  test('-u without -g keeps gid 0, as the reference (docs/protocol.md §1.4); -u 4294967295 changes nothing', async () => {
    for (const [args, uid, gid] of [[['-u', 'nobody'], NOBODY, 0], [['-u', '4294967295'], 0, 0]] as const) {
      const dir = tempDir();
      const socketPath = join(dir, 'pr.sock');
      const { threads, stop } = await threadTable({ socketPath, args: ['-k', socketPath, ...args] });
      for (const t of threads) {
        assert.deepEqual([t.uids, t.gids], [[uid, uid, uid, uid], [gid, gid, gid, gid]], args.join(' '));
      }
      await stop();
    }
  });

  test('started non-root with ambient CAP_SYS_RAWIO (systemd User= + AmbientCapabilities=)', { skip: noSetpriv }, async () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const socketPath = join(dir, 'pr.sock');
    const { threads, stop } = await threadTable({
      binary: SETPRIV,
      socketPath,
      args: [`--reuid=${NOBODY}`, `--regid=${NOGROUP}`, '--clear-groups', '--inh-caps=+sys_rawio',
        '--ambient-caps=+sys_rawio', '--bounding-set=-all,+sys_rawio', '--no-new-privs', '--', OUR_HELPER, '-k', socketPath],
    });
    assertEveryThread(threads, {
      uids: [NOBODY, NOBODY, NOBODY, NOBODY], gids: [NOGROUP, NOGROUP, NOGROUP, NOGROUP], groups: [],
      inheritable: RAWIO, permitted: RAWIO, effective: RAWIO, bounding: RAWIO, ambient: RAWIO, noNewPrivs: true,
    });
    await stop();
  });
});

describe('the threadpool lane (docs/internals.md#the-threadpool-lane)', { skip: notRoot }, () => {
  test('root: the libuv threadpool thread that runs a client fd\'s close holds exactly the kept capabilities, as every thread', async () => {
    const helper = await startHelper({});
    const lingering = await lingeringSocket(3);
    try {
      const client = PrClient.open(helper.socketPath);
      // The greeting's answer with a lingering fd: the helper discards it, and its close
      // blocks on the threadpool lane for the linger time (test/support/lingering.ts).
      process.kill(helper.pid, 'SIGSTOP');
      client.send(new Uint8Array(4), [lingering.fd]);
      lingering.drop();
      process.kill(helper.pid, 'SIGCONT');
      let closer: number | null = null;
      await pollUntil(() => {
        closer = threadIn(helper.pid, CLOSE_SYSCALL);
        return closer !== null;
      }, 'a thread blocked in close()');
      const threads = readThreadCredentials(helper.pid);
      const thread = threads.find((t) => t.tid === closer);
      assert.ok(thread, 'the closing thread is listed');
      assert.equal(loadedSgIoThreads(helper), 0, 'not a thread of ours: one of libuv\'s');
      for (const t of threads) {
        assert.deepEqual([t.permitted, t.effective, t.ambient, t.bounding], [KEPT_AS_ROOT, KEPT_AS_ROOT, KEPT_AS_ROOT, 0n], `thread ${t.tid} (${t.name})`);
      }
      client.close();
    } finally {
      await lingering.dispose();
      assert.equal(await helper.stop(), 0, helper.stderr());
      helper.cleanup();
    }
  });
});

/** close(2)'s number, as /proc/PID/task/TID/syscall shows a blocked call. */
const CLOSE_SYSCALL = process.arch === 'x64' ? 3 : 57;

/** A thread of `pid` blocked in system call `nr`, or null. */
function threadIn(pid: number, nr: number): number | null {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'latin1').startsWith(`${nr} `)) return Number(tid);
    } catch {
      // gone
    }
  }
  return null;
}

async function refusal(opts: StartOptions): Promise<{ code: number | string; stderr: string; socketLeft: boolean }> {
  const h = spawnHelper(opts);
  const code = await h.exited;
  const result = { code, stderr: h.stderr(), socketLeft: existsSync(h.socketPath) };
  h.cleanup();
  return result;
}

describe('fail closed', { skip: notRoot || noSetpriv }, () => {
  const nonRoot = (caps: string[], extra: string[] = []): StartOptions => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const socketPath = join(dir, 'pr.sock');
    return {
      binary: SETPRIV, socketPath,
      args: [`--reuid=${NOBODY}`, `--regid=${NOGROUP}`, '--clear-groups', ...caps, '--', OUR_HELPER, '-k', socketPath, ...extra],
    };
  };

  test('non-root without CAP_SYS_RAWIO: exit 1 naming the capability and how to grant it', async () => {
    const r = await refusal(nonRoot([]));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Refusing to run: started as uid 65534 without cap_sys_rawio.*AmbientCapabilities=CAP_SYS_RAWIO/);
    assert.equal(r.socketLeft, false, 'the socket created before the check is removed');
  });

  test('non-root with more than CAP_SYS_RAWIO: exit 1 naming the extra capability', async () => {
    const r = await refusal(nonRoot(['--inh-caps=+sys_rawio,+net_admin', '--ambient-caps=+sys_rawio,+net_admin']));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /all \d+ threads: effective capabilities cap_net_admin,cap_sys_rawio, expected cap_sys_rawio/);
    assert.equal(r.socketLeft, false);
  });

  test('non-root asked to switch user: exit 1 (only root can)', async () => {
    const r = await refusal(nonRoot(['--inh-caps=+sys_rawio', '--ambient-caps=+sys_rawio'], ['-u', 'root']));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Failed to drop privileges: started as uid 65534 gid 65534, which cannot switch to uid 0 gid 65534/);
    assert.equal(r.socketLeft, false);
  });

  test('a re-exec whose threads do not match what was asked is refused before serving', async () => {
    // A forged hand-off (the environment variable of the re-exec) claiming a drop that did
    // not happen: the helper, still full root, must check its threads and stop.
    const dir = tempDir();
    const socketPath = join(dir, 'forged.sock');
    const listener = unixStreamSocket();
    bindUnix(listener, socketPath);
    listenSocket(listener, 4);
    const handoff = encodeEnvelope({
      image: 'dropped', program: 'qemu-pr-helper', traceEvents: [], traceFd: null,
      handoff: {
        listenFd: 3, createdPath: socketPath, socketDev: null, socketInode: null, pidfile: null, readyFd: null,
        janitorFd: null, janitorAnswerFd: null, socketStaging: null, uid: NOBODY, gid: NOGROUP, kept: RAWIO,
      },
    });
    const r = await refusal({
      socketPath, extraFds: [listener], args: ['-k', socketPath],
      env: { ...process.env, [HANDOFF_VARIABLE]: handoff },
    });
    closeFd(listener);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Failed to drop privileges: all \d+ threads: uids 0\/0\/0\/0, expected 65534/);
    assert.match(r.stderr, /effective capabilities cap_chown,/);
  });
});

describe('multipath capability (docs/protocol.md §2: CAP_SYS_ADMIN only with libmpathpersist)', { skip: notRoot || noSetpriv }, () => {
  test('without the library: CAP_SYS_RAWIO only; no warning at start (a host without multipath devices), -v says it', async () => {
    const env = { ...process.env, QEMU_PR_HELPER_MPATH_LIBRARY: '/nonexistent/libmpathpersist.so.0' };
    for (const verbose of [false, true]) {
      const dir = tempDir();
      const socketPath = join(dir, 'pr.sock');
      const helper = await startHelper({ socketPath, args: ['-k', socketPath, ...(verbose ? ['-v'] : [])], env });
      for (const t of readThreadCredentials(helper.pid)) assert.equal(t.effective, RAWIO, `thread ${t.tid}`);
      assert.equal(await helper.stop(), 0);
      const lines = helper.stderr().split('\n').filter((line) => line.includes('libmpathpersist'));
      if (verbose) {
        assert.equal(lines.length, 1, helper.stderr());
        assert.match(lines[0] ?? '', /multipath: PR commands on dm-multipath devices would be refused: libmpathpersist\.so\.0 is not installed/);
      } else {
        assert.deepEqual(lines, [], helper.stderr());
      }
      helper.cleanup();
    }
  });

  /** setpriv to nobody holding CAP_SYS_RAWIO and CAP_SYS_ADMIN, as a multipath unit would. */
  function rawioAdminOptions(): StartOptions {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const socketPath = join(dir, 'pr.sock');
    return {
      binary: SETPRIV, socketPath,
      args: [`--reuid=${NOBODY}`, `--regid=${NOGROUP}`, '--clear-groups', '--inh-caps=+sys_rawio,+sys_admin',
        '--ambient-caps=+sys_rawio,+sys_admin', '--', OUR_HELPER, '-k', socketPath],
    };
  }

  test('non-root holding CAP_SYS_ADMIN as well runs (multipath) when the library is installed',
    { skip: MULTIPATH ? false : 'libmpathpersist is not installed (multipath-tools)' }, async () => {
      const helper = await startHelper(rawioAdminOptions());
      for (const t of readThreadCredentials(helper.pid)) assert.equal(t.effective, RAWIO_ADMIN, `thread ${t.tid}`);
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    });

  test('non-root holding CAP_SYS_ADMIN as well is refused without the library', async () => {
    const r = await refusal({ ...rawioAdminOptions(), env: { ...process.env, QEMU_PR_HELPER_MPATH_LIBRARY: '/nonexistent' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /effective capabilities cap_sys_rawio,cap_sys_admin, expected cap_sys_rawio/);
  });
});
