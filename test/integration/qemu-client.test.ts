/**
 * The real QEMU client (`-object pr-manager-helper`, docs/protocol.md §6) against our helper: QEMU
 * connects at object creation, and refuses to start when no helper listens.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startHelper, tempDir } from '../support/launcher.js';

const QEMU = '/usr/bin/qemu-system-x86_64';
const skip = existsSync(QEMU) ? false : `${QEMU} is not installed (Debian package qemu-system-x86)`;

interface QmpRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs QEMU with a QMP monitor on stdio, sends `commands`, quits, returns its output. */
function runQemu(socketPath: string, commands: string[], timeoutMs = 60_000): Promise<QmpRun> {
  return new Promise((resolve, reject) => {
    const qemu = spawn(QEMU, [
      '-machine', 'none', '-nodefaults', '-display', 'none', '-S',
      '-object', `pr-manager-helper,id=pr0,path=${socketPath}`,
      '-qmp', 'stdio',
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const timer = setTimeout(() => {
      qemu.kill('SIGKILL');
      reject(new Error(`QEMU did not finish in ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    qemu.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      // Send everything once the greeting is there; QMP answers in order.
      if (!sent && stdout.includes('"QMP"')) {
        sent = true;
        for (const c of [...commands.map((x) => JSON.stringify({ execute: x })), JSON.stringify({ execute: 'quit' })]) {
          qemu.stdin.write(`${c}\n`);
        }
      }
    });
    qemu.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    qemu.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('QEMU pr-manager-helper client', { skip }, () => {
  test('query-pr-managers reports connected: true', async () => {
    const helper = await startHelper();
    const run = await runQemu(helper.socketPath, ['qmp_capabilities', 'query-pr-managers']);
    assert.equal(run.code, 0, run.stderr);
    const replies = run.stdout.split('\n').filter((l) => l.includes('"return"')).map((l) => JSON.parse(l) as { return: unknown });
    assert.deepEqual(replies[1]?.return, [{ id: 'pr0', connected: true }]);
    assert.equal(await helper.stop(), 0);
    helper.cleanup();
  });

  test('QEMU refuses to start when no helper listens', async () => {
    const path = join(tempDir(), 'nobody-home.sock');
    const run = await runQemu(path, []);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /Failed to connect to '.*nobody-home\.sock'/);
  });
});
