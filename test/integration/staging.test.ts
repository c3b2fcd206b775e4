/**
 * Staging names of the pid file and the socket (hardening issue, item 5). An unprivileged
 * user who can write the pid file's or the socket's directory must not be able to make the
 * helper (root) write, truncate or unlink any file but its own, nor block its start-up, by
 * planting files at the names it will use. Each test plants what an attacker would, at
 * every name the attack needs: at the exact pid for in-process calls, or at the next few
 * hundred pids for a spawned helper (its pid is the launcher's, which execs Node).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { startHelper, tempDir, type Helper } from '../support/launcher.js';
import { acquirePidFile, releasePidFile, type PidFile } from '../../src/daemon/pidfile.js';
import { discardListener, listenOnPath, type ListenerInfo } from '../../src/server/listener.js';
import { stagingName, withStagingName, StagingNamesTakenError, STAGING_ATTEMPTS } from '../../src/sys/staging.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root: the helper drops privileges only when started as root' : false;
const VICTIM_TEXT = 'precious contents\n';
/** How many upcoming pids to plant for: covers the processes others start meanwhile. */
const PLANTED_PIDS = 400;

/** Runs `body` in a fresh temporary directory, removed afterwards. */
function inTempDirSync(body: (dir: string) => void): void {
  const dir = tempDir('prh-stage-');
  try {
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

function victimIn(dir: string): string {
  const victim = join(dir, 'victim');
  writeFileSync(victim, VICTIM_TEXT, { mode: 0o600 });
  return victim;
}

/** The pids the next processes will get, in order (wrapping at pid_max). */
function nextPids(count: number): number[] {
  const last = Number(readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8'));
  const max = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  // After pid_max the kernel starts again at 300 (RESERVED_PIDS).
  return Array.from({ length: count }, (_, i) => last + 1 + i).map((p) => (p < max ? p : 300 + p - max));
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Device and inode, as a key (Node's stat numbers are exact for both on Linux). */
function identity(path: string): string {
  const s = lstatSync(path);
  return `${s.dev}:${s.ino}`;
}

describe('staging names', () => {
  test('random beside the file, never repeated', () => {
    const names = new Set(Array.from({ length: 1000 }, () => stagingName('/run/qemu-pr-helper.sock')));
    assert.equal(names.size, 1000);
    for (const name of names) assert.match(name, /^\/run\/\.qemu-pr-helper\.sock\.[A-Za-z0-9_-]{16}~$/);
  });

  test('a taken name is retried with a fresh one; when all are taken, the error says so', () => {
    const tried: string[] = [];
    const taken = (): never => {
      throw new Error('taken');
    };
    assert.throws(() => withStagingName('/tmp/x', (name) => {
      tried.push(name);
      taken();
    }, () => true), (e: unknown) => e instanceof StagingNamesTakenError
      && e.message === `${STAGING_ATTEMPTS} random temporary names in /tmp were all taken`);
    assert.equal(new Set(tried).size, STAGING_ATTEMPTS);
    // Any other error is not retried.
    let calls = 0;
    assert.throws(() => withStagingName('/tmp/x', () => {
      calls++;
      taken();
    }, () => false), /taken/);
    assert.equal(calls, 1);
  });
});

describe('pid file staging name (in process, known pid)', () => {
  test('a symlink planted at the predictable staging name is neither followed nor removed', () => {
    inTempDirSync((dir) => {
    const victim = victimIn(dir);
    const path = join(dir, 'h.pid');
    const pid = 4242;
    const planted = join(dir, `.h.pid.${pid}~`);
    symlinkSync(victim, planted);
    const before = openFds();
    const pidfile = acquirePidFile(path, pid);
    assert.equal(readFileSync(victim, 'utf8'), VICTIM_TEXT, 'victim written through the symlink at start');
    assert.equal(lstatSync(path).isFile(), true, 'the pid file is a regular file, not the planted symlink');
    assert.equal(readFileSync(path, 'utf8'), `${pid}\n`);
    assert.equal(releasePidFile(pidfile), null);
    assert.equal(readFileSync(victim, 'utf8'), VICTIM_TEXT, 'victim changed at exit');
    assert.equal(lstatSync(planted).isSymbolicLink(), true, 'the planted name is not ours to remove');
    assert.equal(existsSync(path), false);
    assert.equal(openFds(), before, 'no fd leaked');
    // Only the planted name and the victim remain: no staging file of ours is left.
    assert.deepEqual(readdirSync(dir).sort(), [`.h.pid.${pid}~`, 'victim']);
    });
  });

  test('a directory planted at the staging name does not stop the pid file', () => {
    inTempDirSync((dir) => {
    const path = join(dir, 'h.pid');
    mkdirSync(join(dir, '.h.pid.4243~'));
    const pidfile = acquirePidFile(path, 4243);
    assert.equal(readFileSync(path, 'utf8'), '4243\n');
    assert.equal(releasePidFile(pidfile), null);
    });
  });

  test('a symlink at the pid file path itself is replaced, not written through', () => {
    inTempDirSync((dir) => {
    const victim = victimIn(dir);
    const path = join(dir, 'h.pid');
    symlinkSync(victim, path);
    const pidfile = acquirePidFile(path, 4244);
    assert.equal(lstatSync(path).isFile(), true);
    assert.equal(readFileSync(path, 'utf8'), '4244\n');
    assert.equal(releasePidFile(pidfile), null);
    assert.equal(readFileSync(victim, 'utf8'), VICTIM_TEXT);
    });
  });

  test('at exit, the path is unlinked only if it is still our file (device and inode)', () => {
    inTempDirSync((dir) => {
    const path = join(dir, 'h.pid');
    // Replaced by a symlink to our own file: the symlink is not ours.
    const pidfile = acquirePidFile(path, 4245);
    renameSync(path, join(dir, 'moved'));
    symlinkSync(join(dir, 'moved'), path);
    assert.equal(releasePidFile(pidfile), null);
    assert.equal(lstatSync(path).isSymbolicLink(), true, 'a symlink to our file was unlinked');
    rmSync(path);
    rmSync(join(dir, 'moved'));
    // Same inode number on another device: not ours either.
    const second = acquirePidFile(path, 4246);
    const forged: PidFile = { ...second, dev: second.dev + 1 };
    assert.equal(releasePidFile(forged), null);
    assert.equal(existsSync(path), true, 'a file with our inode number on another device was unlinked');
    assert.equal(readFileSync(path, 'utf8'), '4246\n', 'nothing truncated');
    });
  });
});

describe('socket staging name (in process, our pid)', () => {
  test('a directory planted at the predictable staging name does not block start-up', () => {
    inTempDirSync((dir) => {
    const path = join(dir, 'pr.sock');
    mkdirSync(join(dir, `.pr.sock.${process.pid}~`));
    const before = openFds();
    let info: ListenerInfo | null = null;
    try {
      info = listenOnPath(path);
    } catch (error) {
      assert.fail(`start-up failed: ${(error as Error).message}`);
    }
    assert.equal(lstatSync(path).isSocket(), true);
    discardListener(info);
    assert.equal(existsSync(path), false);
    assert.equal(openFds(), before, 'no fd leaked');
    assert.deepEqual(readdirSync(dir), [`.pr.sock.${process.pid}~`]);
    });
  });

  test('a file at the staging name is not ours: never unlinked', () => {
    inTempDirSync((dir) => {
    const path = join(dir, 'pr.sock');
    const planted = join(dir, `.pr.sock.${process.pid}~`);
    writeFileSync(planted, VICTIM_TEXT);
    const info = listenOnPath(path);
    discardListener(info);
    assert.equal(readFileSync(planted, 'utf8'), VICTIM_TEXT);
    });
  });

  test('discarding never unlinks a socket with our inode number on another device', () => {
    inTempDirSync((dir) => {
    const path = join(dir, 'pr.sock');
    const info = listenOnPath(path);
    discardListener({ ...info, dev: (info.dev ?? 0) + 1 });
    assert.equal(existsSync(path), true);
    });
  });
});

describe('staging names of a spawned helper (next pids planted)', { skip: notRoot }, () => {
  test('symlinks at every pid file staging name: the victim is untouched at start and at exit', async () => {
    const dir = tempDir('prh-stage-');
    let h: Helper | null = null;
    try {
      // The directory is root's, so after dropping to nobody the helper cannot unlink the
      // pid file: its fallback (emptying the file through its fd) must hit its own file.
      const run = join(dir, 'run');
      mkdirSync(run);
      const victim = victimIn(dir);
      const victimId = identity(victim);
      const pidfile = join(run, 'h.pid');
      const socketPath = join(dir, 'h.sock');
      const pids = nextPids(PLANTED_PIDS);
      for (const pid of pids) symlinkSync(victim, join(run, `.h.pid.${pid}~`));
      h = await startHelper({ socketPath, args: ['-u', 'nobody', '-f', pidfile, '-k', socketPath] });
      assert.ok(pids.includes(h.pid), `helper pid ${h.pid} was planted for (${pids[0]}..${pids.at(-1)})`);
      // Every observation is taken before asserting, so that a failure reports them all.
      const atStart = readFileSync(victim, 'utf8');
      const pidfileIsFile = lstatSync(pidfile).isFile();
      const code = await h.stop();
      const seen = {
        code,
        victimWrittenAtStart: atStart !== VICTIM_TEXT,
        pidfileIsFile,
        victimChangedAtExit: readFileSync(victim, 'utf8') !== atStart,
        victimIsSameFile: identity(victim) === victimId,
        plantedNameKept: isSymlink(join(run, `.h.pid.${h.pid}~`)),
        pidfileEmptied: existsSync(pidfile) && lstatSync(pidfile).isFile() && readFileSync(pidfile, 'utf8') === '',
      };
      assert.deepEqual(seen, {
        code: 0, victimWrittenAtStart: false, pidfileIsFile: true, victimChangedAtExit: false,
        victimIsSameFile: true, plantedNameKept: true, pidfileEmptied: true,
      }, h.stderr());
    } finally {
      h?.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('directories at every socket staging name: start-up succeeds', async () => {
    const dir = tempDir('prh-stage-');
    let h: Helper | null = null;
    try {
      const socketPath = join(dir, 'h.sock');
      const pids = nextPids(PLANTED_PIDS);
      for (const pid of pids) mkdirSync(join(dir, `.h.sock.${pid}~`));
      h = await startHelper({ socketPath, args: ['-k', socketPath] });
      assert.ok(pids.includes(h.pid), `helper pid ${h.pid} was planted for`);
      assert.equal(lstatSync(socketPath).isSocket(), true);
      assert.equal(await h.stop(), 0);
      assert.equal(existsSync(socketPath), false, 'socket removed at exit');
      assert.equal(existsSync(join(dir, `.h.sock.${h.pid}~`)), true, 'planted directory left alone');
    } finally {
      h?.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
