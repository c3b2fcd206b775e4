/**
 * What may reach the helper from outside while it starts and runs (docs/security.md "Threat model"):
 * SIGUSR1 must never open Node's inspector, NODE_OPTIONS must load nothing, and TERM, INT
 * and HUP at any moment, including the instant the socket path appears (libvirt's
 * readiness point), must end the helper leaving neither socket nor pid file.
 * Needs root: the privilege drop and its re-exec are what is being tested.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSync, closeSync } from 'node:fs';
import { PrClient } from '../support/client.js';
import { prInCdb } from '../support/builders.js';
import { pollUntil, spawnHelper, startHelper, tempDir, type Helper } from '../support/launcher.js';
import { nonChildExit } from '../support/proc.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root: the helper drops privileges only when started as root' : false;
const INSPECTOR_PORT = 9229;
const RUNS = Number(process.env['PRH_SIGNAL_RUNS'] ?? 30);

/** TCP sockets in LISTEN state on `port`, from /proc/net/tcp and tcp6 (any owner). */
function listenersOn(port: number): number {
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue; // no IPv6
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[3] === '0A' && parseInt(f[1]?.split(':')[1] ?? '', 16) === port) n++;
    }
  }
  return n;
}

/** TCP sockets (any state) held by process `pid`: the inspector is the only TCP it could have. */
function tcpSocketsOf(pid: number): number {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) inodes.add(line.trim().split(/\s+/)[9] ?? '');
    } catch {
      // no IPv6
    }
  }
  let n = 0;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1] ?? '')) n++;
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // exited
  }
  return n;
}

function alive(helper: Helper): boolean {
  return helper.child.exitCode === null && helper.child.signalCode === null;
}

async function serves(helper: Helper): Promise<void> {
  const fd = openSync('/dev/null', 'r');
  try {
    const client = await PrClient.connect(helper.socketPath);
    const response = await client.request(prInCdb({ sa: 0, allocationLength: 8 }), fd);
    assert.equal(response.status, 2, 'CHECK CONDITION for SG_IO on /dev/null');
    client.close();
  } finally {
    closeSync(fd);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function nobodyArgs(): { socketPath: string; args: string[] } {
  const dir = tempDir();
  chmodSync(dir, 0o777); // so that nobody can remove its socket at exit
  const socketPath = join(dir, 'pr.sock');
  return { socketPath, args: ['-k', socketPath, '-u', 'nobody', '-g', 'nogroup'] };
}

describe('no inspector, no injected code (item 1)', { skip: notRoot }, () => {
  test('SIGUSR1 to a running -u nobody helper opens no inspector; it keeps serving', async () => {
    assert.equal(listenersOn(INSPECTOR_PORT), 0, 'something else already listens on 9229');
    const helper = await startHelper(nobodyArgs());
    try {
      for (let i = 0; i < 5; i++) {
        process.kill(helper.pid, 'SIGUSR1');
        await sleep(20);
      }
      await sleep(300);
      assert.equal(listenersOn(INSPECTOR_PORT), 0, `inspector listening: ${helper.stderr()}`);
      assert.equal(tcpSocketsOf(helper.pid), 0, 'the helper holds a TCP socket');
      assert.ok(alive(helper), `the helper died: ${helper.stderr()}`);
      await serves(helper);
      assert.equal(await helper.stop(), 0, helper.stderr());
    } finally {
      helper.cleanup();
    }
  });

  test('SIGUSR1 repeatedly during start-up never opens an inspector', async () => {
    let survived = 0;
    const starts = 5;
    for (let run = 0; run < starts; run++) {
      const helper = spawnHelper(nobodyArgs());
      try {
        let accepted = false;
        const deadline = Date.now() + 10_000;
        while (alive(helper) && !accepted && Date.now() < deadline) {
          try {
            process.kill(helper.pid, 'SIGUSR1');
          } catch {
            break;
          }
          assert.equal(tcpSocketsOf(helper.pid), 0, `inspector opened during start-up: ${helper.stderr()}`);
          if (existsSync(helper.socketPath)) {
            try {
              (await PrClient.connect(helper.socketPath)).close();
              accepted = true;
            } catch {
              // not yet
            }
          }
          await sleep(3);
        }
        await sleep(200);
        assert.equal(listenersOn(INSPECTOR_PORT), 0, `inspector listening: ${helper.stderr()}`);
        assert.equal(tcpSocketsOf(helper.pid), 0);
        if (alive(helper)) {
          survived++;
          await serves(helper);
          assert.equal(await helper.stop(), 0, helper.stderr());
        } else {
          // Killed by SIGUSR1's default action in a Node image's first milliseconds, before
          // Node installs its handler: allowed (the sender could SIGKILL it), but nothing is left.
          assert.ok(!existsSync(helper.socketPath), 'socket left behind');
        }
      } finally {
        helper.cleanup();
      }
    }
    process.stderr.write(`# SIGUSR1 storm during start-up: ${survived}/${starts} starts survived and served\n`);
  });

  for (const [label, options] of [['--require of a file', 'require'], ['--inspect', 'inspect']] as const) {
    test(`NODE_OPTIONS=${label} reaches no image of the helper`, async () => {
      const dir = tempDir();
      mkdirSync(join(dir, 'x'));
      const marker = join(dir, 'x', 'marker');
      const evil = join(dir, 'x', 'evil.cjs');
      writeFileSync(evil, `require('fs').writeFileSync(${JSON.stringify(marker)} + '.' + process.pid + '.' + process.getuid(), '');\n`);
      chmodSync(dir, 0o777);
      chmodSync(join(dir, 'x'), 0o777);
      const nodeOptions = options === 'require' ? `--require ${evil}` : '--inspect';
      for (const args of [nobodyArgs(), { socketPath: join(dir, 'd.sock'), args: ['-k', join(dir, 'd.sock'), '-d', '-f', join(dir, 'd.pid')] }]) {
        const env = { ...process.env, NODE_OPTIONS: nodeOptions, NODE_PATH: join(dir, 'x'), NODE_COMPILE_CACHE: join(dir, 'x') };
        const daemon = args.args.includes('-d');
        const helper = daemon ? spawnHelper({ ...args, env }) : await startHelper({ ...args, env });
        try {
          if (daemon) assert.equal(await helper.exited, 0, helper.stderr());
          const pid = daemon ? Number(readFileSync(join(dir, 'd.pid'), 'utf8')) : helper.pid;
          await sleep(200);
          assert.deepEqual(readdirSync(join(dir, 'x')).filter((f) => f.startsWith('marker')), [], 'evil.cjs ran');
          assert.equal(listenersOn(INSPECTOR_PORT), 0, `inspector listening: ${helper.stderr()}`);
          assert.equal(tcpSocketsOf(pid), 0);
          assert.ok(!/NODE_OPTIONS|NODE_PATH/.test(readFileSync(`/proc/${pid}/environ`, 'latin1')), 'NODE_* in the environment');
          await serves({ ...helper, socketPath: args.socketPath });
          if (daemon) {
            process.kill(pid, 'SIGTERM');
            await waitGone(pid);
          } else {
            assert.equal(await helper.stop(), 0, helper.stderr());
          }
        } finally {
          helper.cleanup();
        }
      }
    });
  }
});

function waitGone(pid: number): Promise<void> {
  return pollUntil(() => nonChildExit(pid) !== null, `pid ${pid} to exit`);
}

interface Outcome {
  exit: number | string;
  leftovers: string[];
  stderr: string;
}

/** One start; `signal` is sent by `when` (which resolves once it has sent it, or gave up). */
async function startAndSignal(signal: NodeJS.Signals, when: (helper: Helper) => Promise<void>): Promise<Outcome> {
  const dir = tempDir();
  const socketPath = join(dir, 'pr.sock');
  const pidfile = join(dir, 'pr.pid');
  const helper = spawnHelper({ socketPath, args: ['-k', socketPath, '-f', pidfile] });
  try {
    await when(helper);
    const exit = await Promise.race([helper.exited, sleep(15_000).then(() => 'still serving')]);
    // Killed by a default action, the helper leaves the clean-up to its janitor, a separate
    // process that needs a few milliseconds after the exit.
    const deadline = Date.now() + 2000;
    while (readdirSync(dir).length > 0 && Date.now() < deadline) await sleep(5);
    return { exit, leftovers: readdirSync(dir), stderr: helper.stderr() };
  } finally {
    helper.cleanup();
  }
}

/** Sends `signal` the moment the socket path exists (a tight poll, as libvirt's readiness check). */
function atSocketAppearance(signal: NodeJS.Signals) {
  return async (helper: Helper): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!existsSync(helper.socketPath)) {
      if (!alive(helper) || Date.now() > deadline) return;
      await new Promise((r) => setImmediate(r));
    }
    process.kill(helper.pid, signal);
  };
}

function afterDelay(signal: NodeJS.Signals, ms: number) {
  return async (helper: Helper): Promise<void> => {
    await sleep(ms);
    if (alive(helper)) process.kill(helper.pid, signal);
  };
}

describe('TERM, INT and HUP around the privilege drop (item 7)', { skip: notRoot }, () => {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    // The path appears only once the serving image handles signals (the janitor puts it in
    // place when told "ready"): a signal then always gets the orderly exit 0.
    test(`${signal} the moment the socket path appears, ${RUNS} starts: exit 0, nothing left`, async () => {
      const outcomes: Outcome[] = [];
      for (let i = 0; i < RUNS; i++) outcomes.push(await startAndSignal(signal, atSocketAppearance(signal)));
      const notZero = outcomes.filter((o) => o.exit !== 0);
      const left = outcomes.filter((o) => o.leftovers.length > 0);
      process.stderr.write(`# ${signal} at socket appearance: ${notZero.length}/${RUNS} not exit 0, ${left.length}/${RUNS} left files\n`);
      assert.deepEqual(left.map((o) => o.leftovers), [], 'socket or pid file left behind');
      assert.deepEqual(outcomes.filter((o) => o.exit === 'still serving'), [], 'a helper kept serving');
      assert.deepEqual(notZero.map((o) => `${o.exit}: ${o.stderr}`), [], 'exit 0');
    });

    // Before the path appears, in the re-executed image's boot window (before its handlers),
    // the default action ends it and the janitor removes what it created.
    test(`${signal} at random moments of start-up, ${RUNS} starts: never keeps serving, nothing left`, async () => {
      const outcomes: Outcome[] = [];
      for (let i = 0; i < RUNS; i++) outcomes.push(await startAndSignal(signal, afterDelay(signal, Math.floor(Math.random() * 300))));
      const notZero = outcomes.filter((o) => o.exit !== 0);
      process.stderr.write(`# ${signal} at random moments: exits ${JSON.stringify(notZero.map((o) => o.exit))} (${RUNS - notZero.length}/${RUNS} exit 0)\n`);
      assert.deepEqual(outcomes.filter((o) => o.exit === 'still serving'), [], 'a helper kept serving');
      assert.deepEqual(outcomes.filter((o) => o.leftovers.length > 0).map((o) => o.leftovers), [], 'socket or pid file left behind');
    });
  }
});
