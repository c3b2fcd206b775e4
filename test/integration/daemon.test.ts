/**
 * -d and -f without the reference's lifecycle bugs (docs/protocol.md §1.5 steps 8-9, §1.7, §9 item 16),
 * and libvirt's managed-mode start
 * (docs/operations.md#what-libvirt-expects-from-a-managed-helper), reproduced exactly: setsid +
 * fork, a pid file locked by the child and inherited across exec, stderr on a pipe that libvirt
 * closes after start-up, SIGTERM to stop.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { chmodSync, existsSync, openSync, closeSync, readFileSync, readlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PrClient } from '../support/client.js';
import { pollUntil, spawnHelper, startHelper, tempDir, OUR_HELPER } from '../support/launcher.js';
import { prInCdb } from '../support/builders.js';
import { lockHolder } from '../../src/sys/lock.js';
import { NotificationSocket } from '../../src/sys/notify.js';
import { findMpathLibrary } from '../../src/mpath/library.js';
import { bindUnix, listenSocket, unixStreamSocket } from '../../src/sys/socket.js';
import { closeFd } from '../../src/sys/fd.js';

const LIBVIRT_EXEC = join(dirname(fileURLToPath(import.meta.url)), '..', 'support', 'libvirt-exec.js');
const notRoot = process.getuid?.() !== 0 ? 'needs root: the helper drops privileges only when started as root' : false;

interface Run { code: number | string; stdout: string; stderr: string; ms: number }

function runLauncher(args: string[], cwd?: string): Promise<Run> {
  const started = performance.now();
  const child = spawn(OUR_HELPER, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  return new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ code: code ?? signal ?? -1, stdout, stderr, ms: performance.now() - started }));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Field 6 of /proc/PID/stat: the session id. */
function sessionOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

/** The pid holding a write lock on `path`, asked from this (another) process. */
function holderOf(path: string, start = 0, length = 0): number | null {
  const fd = openSync(path, 'r+');
  try {
    return lockHolder(fd, start, length);
  } finally {
    closeSync(fd);
  }
}

async function stopDaemon(pid: number): Promise<void> {
  process.kill(pid, 'SIGTERM');
  await pollUntil(() => !alive(pid), `daemon ${pid} to exit`);
}

describe('-d: daemon mode (docs/protocol.md §1.5 step 8)', { skip: notRoot }, () => {
  test('the launcher exits 0 only once the daemon accepts; pid file, session, cwd, stdio as daemon(3)', async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'd.sock');
    const r = await runLauncher(['-d', '-f', 'rel.pid', '-k', socketPath], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    // Ready means ready: the very first connection after the launcher's exit is served.
    const client = await PrClient.connect(socketPath);
    client.close();
    // A relative -f means the launching directory, not / (docs/protocol.md §9.16).
    const pidfile = join(dir, 'rel.pid');
    const pid = Number(readFileSync(pidfile, 'utf8'));
    assert.match(readFileSync(pidfile, 'utf8'), /^\d+\n$/);
    assert.ok(alive(pid));
    assert.equal(sessionOf(pid), pid, 'the daemon leads its own session');
    assert.equal(readlinkSync(`/proc/${pid}/cwd`), '/');
    for (const fd of [0, 1, 2]) assert.equal(readlinkSync(`/proc/${pid}/fd/${fd}`), '/dev/null', `fd ${fd}`);
    assert.equal(holderOf(pidfile), pid, 'the daemon holds the pid file lock');
    await stopDaemon(pid);
    assert.equal(existsSync(pidfile), false, 'pid file removed at exit');
    assert.equal(existsSync(socketPath), false, 'socket removed at exit');
  });

  test('a failure after the fork reaches the launcher: exit 1 with the daemon\'s message, nothing left behind', async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'missing-dir', 'd.sock');
    const r = await runLauncher(['-d', '-f', join(dir, 'd.pid'), '-k', socketPath]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`Failed to bind socket to ${socketPath}: No such file or directory`));
    assert.match(r.stderr, /Failed to daemonize: the daemon exited \(status 1\) before accepting connections/);
    assert.equal(existsSync(join(dir, 'd.pid')), false);
  });

  test('a pid file failure after listening reaches the launcher too, and the socket is removed', async () => {
    const dir = tempDir();
    const socketPath = join(dir, 'd.sock');
    const r = await runLauncher(['-d', '-f', join(dir, 'no-such-dir', 'd.pid'), '-k', socketPath]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Could not create '.*no-such-dir\/d\.pid': No such file or directory/);
    assert.equal(existsSync(socketPath), false, 'the reference leaves the socket behind (docs/protocol.md §9.16)');
  });
});

describe('-f: pid file (docs/protocol.md §1.7)', { skip: notRoot }, () => {
  test('written with our pid, locked while we run, removed at exit', async () => {
    const dir = tempDir();
    const pidfile = join(dir, 'h.pid');
    const socketPath = join(dir, 'h.sock');
    const h = await startHelper({ socketPath, args: ['-f', pidfile, '-k', socketPath] });
    assert.equal(readFileSync(pidfile, 'utf8'), `${h.pid}\n`);
    assert.equal(holderOf(pidfile), h.pid);
    assert.equal(await h.stop(), 0);
    assert.equal(existsSync(pidfile), false);
    h.cleanup();
  });

  test('a second instance with the same pid file refuses to start and leaves the first untouched', async () => {
    const dir = tempDir();
    const pidfile = join(dir, 'one.pid');
    const first = await startHelper({ socketPath: join(dir, 'a.sock'), args: ['-f', pidfile, '-k', join(dir, 'a.sock')] });
    const second = spawnHelper({ socketPath: join(dir, 'b.sock'), args: ['-f', pidfile, '-k', join(dir, 'b.sock')] });
    assert.equal(await second.exited, 1);
    assert.match(second.stderr(), new RegExp(`Cannot lock pid file '${pidfile}': process ${first.pid} holds its lock; is another instance running\\?`));
    assert.equal(existsSync(join(dir, 'b.sock')), false, 'the refused instance removed its socket');
    assert.equal(readFileSync(pidfile, 'utf8'), `${first.pid}\n`);
    assert.equal(holderOf(pidfile), first.pid);
    assert.equal(await first.stop(), 0);
    first.cleanup();
    second.cleanup();
  });

  test('a stale pid file (no lock held) is replaced; no temporary file is left', async () => {
    const dir = tempDir();
    const pidfile = join(dir, 'stale.pid');
    writeFileSync(pidfile, '99999\n');
    const h = await startHelper({ socketPath: join(dir, 's.sock'), args: ['-f', pidfile, '-k', join(dir, 's.sock')] });
    assert.equal(readFileSync(pidfile, 'utf8'), `${h.pid}\n`);
    assert.deepEqual((await import('node:fs')).readdirSync(dir).sort(), ['s.sock', 'stale.pid']);
    assert.equal(await h.stop(), 0);
    h.cleanup();
  });

  test('after dropping to a user who cannot write the directory, the pid file is emptied, and said so', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'run'));
    const pidfile = join(dir, 'run', 'n.pid');
    const socketPath = join(dir, 'run', 'n.sock');
    const h = await startHelper({ socketPath, args: ['-u', 'nobody', '-f', pidfile, '-k', socketPath] });
    assert.equal(await h.stop(), 0);
    assert.equal(readFileSync(pidfile, 'utf8'), '', 'no stale pid remains');
    assert.match(h.stderr(), /Failed to remove pid file .*n\.pid: Permission denied \(emptied it instead\)/);
    h.cleanup();
  });
});

describe('libvirt managed mode (docs/operations.md#what-libvirt-expects-from-a-managed-helper)', { skip: notRoot }, () => {
  test('spawned as libvirt does: socket only when accepting, inherited lock kept, closed stderr survived, SIGTERM exits 0', async () => {
    const dir = tempDir();
    const pidfile = join(dir, 'vm-pr-helper0.pid');
    const socketPath = join(dir, 'pr-helper0.sock');
    // virCommandDaemonize: setsid + fork; the child locks the pid file and execs the helper.
    const child = spawn(process.execPath, [LIBVIRT_EXEC, pidfile, OUR_HELPER, '-k', socketPath], {
      detached: true, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let errText = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { errText += d; });
    const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
    const pid = child.pid ?? -1;
    try {
      await libvirtScenario(pid, child, socketPath, pidfile, () => errText);
      // qemuProcessKillManagedPRDaemon: SIGTERM, and the helper exits 0 on its own.
      process.kill(pid, 'SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    assert.equal(existsSync(socketPath), false, 'socket removed');
    assert.equal(existsSync(pidfile), true, 'libvirt\'s pid file is libvirt\'s to remove');
  });
});

async function libvirtScenario(
  pid: number, child: ChildProcessByStdio<null, null, Readable>, socketPath: string, pidfile: string, errText: () => string,
): Promise<void> {
  {
    // qemuProcessStartManagedPRDaemon: back off from 1 ms, doubling, until the path exists.
    let delay = 1;
    while (!existsSync(socketPath)) {
      assert.ok(alive(pid), `pr helper died and reported: ${errText()}`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
    }
    // The path is there: QEMU connects at once and must be served.
    const client = await PrClient.connect(socketPath);
    assert.equal(client.features, 0, 'no feature announced, as upstream');
    client.close();
    assert.equal(readFileSync(pidfile, 'utf8'), `${pid}\n`, 'libvirt\'s pid file names the helper');
    // VIR_FORCE_CLOSE(errfd): from now on every stderr write of the helper gets EPIPE.
    child.stderr.destroy();

    // libvirt's stop path takes the lock to decide whether the helper still runs: it must
    // still be held, by the helper itself, through the privilege-drop re-exec.
    assert.equal(holderOf(pidfile, 0, 1), pid, 'the inherited pid file lock is held by the helper');
    const fds = (await import('node:fs')).readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    assert.ok(fds.includes(pidfile), 'the pid file fd is still open in the final process');

    // Per-connection errors are logged to the closed pipe: the helper must survive them.
    const devNull = openSync('/dev/null', 'r');
    for (let i = 0; i < 3; i++) {
      const bad = await PrClient.connect(socketPath);
      bad.send(new Uint8Array(16).fill(0x12), [devNull]); // not a PR opcode: logged, then closed
      assert.ok(await bad.waitClosed());
      bad.close();
    }
    const good = await PrClient.connect(socketPath);
    const response = await good.request(prInCdb({ sa: 0, allocationLength: 8 }), devNull);
    assert.equal(response.status, 2);
    good.close();
    closeSync(devNull);
    assert.ok(alive(pid));
  }
}

describe('systemd: Type=notify and socket activation (contrib/systemd)', { skip: notRoot }, () => {
  async function readyMessage(receiver: NotificationSocket, pid: number): Promise<string> {
    let message: string | null = null;
    await pollUntil(() => {
      message = receiver.receive();
      return message !== null || !alive(pid);
    }, 'READY=1');
    return message ?? 'none: the helper exited';
  }

  test('root start: READY=1 with our pid comes from the image that serves, once it accepts', async () => {
    const dir = tempDir();
    const notifyPath = join(dir, 'notify');
    const receiver = new NotificationSocket(notifyPath);
    const socketPath = join(dir, 'n.sock');
    const h = spawnHelper({ socketPath, args: ['-k', socketPath], env: { ...process.env, NOTIFY_SOCKET: notifyPath } });
    try {
      const message = await readyMessage(receiver, h.pid);
      assert.equal(message, `READY=1\nMAINPID=${h.pid}`);
      // Ready means the privilege drop is done and connections are served.
      const kept = findMpathLibrary(process.env['QEMU_PR_HELPER_MPATH_LIBRARY']) !== null ? '0000000000220000' : '0000000000020000';
      assert.equal(readFileSync(`/proc/${h.pid}/status`, 'utf8').match(/^CapEff:\s+(\S+)/m)?.[1], kept);
      const client = await PrClient.connect(socketPath);
      client.close();
      assert.equal(receiver.receive(), null, 'exactly one notification');
      assert.equal(await h.stop(), 0);
    } finally {
      receiver.close();
      h.cleanup();
    }
  });

  test('as the unit runs it: activated socket on fd 3, non-root with ambient CAP_SYS_RAWIO, READY=1', { skip: existsSync('/usr/bin/setpriv') ? false : '/usr/bin/setpriv is missing (util-linux)' }, async () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const notifyPath = join(dir, 'notify');
    const receiver = new NotificationSocket(notifyPath);
    chmodSync(notifyPath, 0o777); // systemd's notify socket accepts any sender; the helper is uid 65534
    const socketPath = join(dir, 'activated.sock');
    const listener = unixStreamSocket();
    bindUnix(listener, socketPath);
    listenSocket(listener, 16);
    const h = spawnHelper({
      binary: '/usr/bin/setpriv',
      socketPath,
      listenFds: '1',
      extraFds: [listener],
      env: { ...process.env, NOTIFY_SOCKET: notifyPath },
      args: ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=+sys_rawio', '--ambient-caps=+sys_rawio',
        '--bounding-set=-all,+sys_rawio', '--no-new-privs', '--', OUR_HELPER],
    });
    closeFd(listener);
    try {
      assert.equal(await readyMessage(receiver, h.pid), `READY=1\nMAINPID=${h.pid}`, h.stderr());
      const client = await PrClient.connect(socketPath);
      client.close();
      assert.equal(await h.stop(), 0);
      assert.equal(existsSync(socketPath), true, 'an activated socket is systemd\'s: never unlinked');
    } finally {
      receiver.close();
      h.cleanup();
    }
  });
});
