/**
 * The real QEMU client (`-object pr-manager-helper`, docs/protocol.md §6) against our helper: QEMU
 * connects at object creation, and refuses to start when no helper listens. Once per QEMU client
 * (test/support/qemu-clients.ts): the system's (Debian 12: 7.2), bookworm-backports' 10.0
 * extracted by test/tools/fetch-qemu-10.sh, and the QEMU 11 development build under /opt/qemu-11;
 * a client that is not there skips with the reason. The refusal reads the same in all three:
 * "Failed to connect to '<path>': No such file or directory".
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startHelper, tempDir } from '../support/launcher.js';
import { qemuClients, qemuVersion, type QemuClient } from '../support/qemu-clients.js';

interface QmpRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs QEMU with a QMP monitor on stdio, sends `commands`, quits, returns its output. */
function runQemu(client: QemuClient, socketPath: string, commands: string[], timeoutMs = 60_000): Promise<QmpRun> {
  return new Promise((resolve, reject) => {
    const qemu = spawn(client.binary, [
      ...client.args,
      '-machine', 'none', '-nodefaults', '-display', 'none', '-S',
      '-object', `pr-manager-helper,id=pr0,path=${socketPath}`,
      '-qmp', 'stdio',
    ], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...client.env } });
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

for (const client of qemuClients()) {
  describe(`QEMU pr-manager-helper client: QEMU ${client.name} (${client.binary})`, { skip: client.skip }, () => {
    test('it is the QEMU it claims to be', (t) => {
      const version = qemuVersion(client);
      t.diagnostic(version);
      assert.match(version, client.version);
    });

    test('query-pr-managers reports connected: true', async () => {
      const helper = await startHelper();
      const run = await runQemu(client, helper.socketPath, ['qmp_capabilities', 'query-pr-managers']);
      assert.equal(run.code, 0, run.stderr);
      const replies = run.stdout.split('\n').filter((l) => l.includes('"return"')).map((l) => JSON.parse(l) as { return: unknown });
      assert.deepEqual(replies[1]?.return, [{ id: 'pr0', connected: true }]);
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    });

    test('QEMU refuses to start when no helper listens', async () => {
      const path = join(tempDir(), 'nobody-home.sock');
      const run = await runQemu(client, path, []);
      assert.equal(run.code, 1);
      assert.match(run.stderr, /Failed to connect to '.*nobody-home\.sock'/);
    });
  });
}
