/**
 * The -v log on a real disk (issue 6): a REGISTER / RESERVE / conflict sequence from two
 * I_T nexuses through one helper, every request line checked field by field. The lines are
 * printed, as they appear in docs/operations.md ("Logging").
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants, openSync } from 'node:fs';
import { join } from 'node:path';
import { PrClient } from '../support/client.js';
import { startHelper, tempDir, pollUntil, type Helper } from '../support/launcher.js';
import { prInCdb, prOutCdb, prOutParams } from '../support/builders.js';
import { E2E, log, resetDisk, skipReason } from './lib/env.js';
import { PR_OUT, PR_TYPE } from './lib/pr.js';
import { formatKey } from '../../src/log/request-log.js';

const skip = skipReason();
const KEY_A = 0xa1a1n;
const KEY_B = 0xb2b2n;

function keyBytes(key: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, key);
  return bytes;
}

describe('-v log lines on a real disk (own helper, two tcm_loop nexuses)', { skip }, () => {
  let helper: Helper | null = null;
  after(async () => {
    if (helper) {
      assert.equal(await helper.stop(), 0);
      helper.cleanup();
    }
    resetDisk();
  });

  test('REGISTER, RESERVE, a conflicting RESERVE, READ RESERVATION, READ KEYS: one decoded line each', async () => {
    resetDisk();
    const socketPath = join(tempDir(), 'log.sock');
    helper = await startHelper({ socketPath, args: ['-v', '-k', socketPath], timeoutMs: 60_000 });
    const [diskA, diskB] = E2E.disks;
    const fdA = openSync(diskA ?? '', constants.O_RDWR);
    const fdB = openSync(diskB ?? '', constants.O_RDWR);
    try {
      const c = await PrClient.connect(socketPath);
      // Under TCG the first request waits for the SG_IO thread to load: seconds.
      const run = async (cdb: Uint8Array, fd: number, params?: Uint8Array): Promise<number> => {
        c.send(cdb, [fd]);
        if (params) c.send(params);
        return (await c.readResponse(60_000)).status;
      };
      assert.equal(await run(prOutCdb({ sa: PR_OUT.REGISTER, paramLength: 24 }), fdA, prOutParams({ saKey: KEY_A })), 0);
      assert.equal(await run(prOutCdb({ sa: PR_OUT.REGISTER, paramLength: 24 }), fdB, prOutParams({ saKey: KEY_B })), 0);
      assert.equal(await run(prOutCdb({ sa: PR_OUT.RESERVE, type: PR_TYPE.WRITE_EXCLUSIVE, paramLength: 24 }), fdA, prOutParams({ key: KEY_A })), 0);
      assert.equal(await run(prOutCdb({ sa: PR_OUT.RESERVE, type: PR_TYPE.WRITE_EXCLUSIVE, paramLength: 24 }), fdB, prOutParams({ key: KEY_B })), 0x18);
      assert.equal(await run(prInCdb({ sa: 1, allocationLength: 64 }), fdB), 0);
      assert.equal(await run(prInCdb({ sa: 0, allocationLength: 8192 }), fdA), 0);
      c.close();
    } finally {
      closeSync(fdA);
      closeSync(fdB);
    }
    const h = helper;
    let lines: string[] = [];
    await pollUntil(() => {
      lines = h.stderr().split('\n').filter((l) => /: (PERSISTENT RESERVE|CLEANUP)/.test(l));
      return lines.length >= 6;
    }, 'six request lines');
    for (const line of lines) log(line);
    const device = (disk: string | undefined): RegExp => new RegExp(`: ${disk?.replace('/dev/', '')} \\(8:\\d+, naa\\.[0-9a-f]+, read-write\\): `);
    const conn = `^qemu-pr-helper: connection \\d+ \\(pid ${process.pid} uid 0 gid 0\\)`;
    const a = formatKey(keyBytes(KEY_A), false);
    const b = formatKey(keyBytes(KEY_B), false);
    const expected: [RegExp, string, string][] = [
      [device(diskA), `PERSISTENT RESERVE OUT REGISTER, key 0, service action key ${a}`, 'GOOD; 24 bytes of parameters, '],
      [device(diskB), `PERSISTENT RESERVE OUT REGISTER, key 0, service action key ${b}`, 'GOOD; 24 bytes of parameters, '],
      [device(diskA), `PERSISTENT RESERVE OUT RESERVE, LU, Write Exclusive, key ${a}`, 'GOOD; 24 bytes of parameters, '],
      [device(diskB), `PERSISTENT RESERVE OUT RESERVE, LU, Write Exclusive, key ${b}`, 'RESERVATION CONFLICT; 24 bytes of parameters, '],
      [device(diskB), 'PERSISTENT RESERVE IN READ RESERVATION, allocation length 64', 'GOOD; 24 bytes of data, '],
      [device(diskA), 'PERSISTENT RESERVE IN READ KEYS, allocation length 8192', 'GOOD; 24 bytes of data, '],
    ];
    expected.forEach(([dev, command, outcome], i) => {
      const line = lines[i] ?? '';
      assert.match(line, new RegExp(conn), `line ${i + 1}`);
      assert.match(line, dev, `line ${i + 1} device`);
      assert.ok(line.includes(`: ${command}: ${outcome}`), `line ${i + 1}: ${line}`);
      assert.match(line, /\d+\.\d\d ms$/);
    });
    assert.ok(!h.stderr().includes('a1a1'), 'keys are fingerprinted');
  });
});
