/**
 * A bounded run of the socket-level fuzzer (test/fuzz/socket-fuzzer.ts) in `npm test`:
 * every case's responses and closes must match the protocol model, and afterwards the
 * helper holds no connection and no fd more than before. `npm run fuzz` runs long ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FdKit, fuzz } from '../fuzz/socket-fuzzer.js';
import { startHelper, warmBaseline, idleFdCount } from '../support/launcher.js';

test('socket fuzzer: 20000 random sessions match the model, no fd growth', async () => {
  const helper = await startHelper();
  const baseline = await warmBaseline(helper);
  const kit = new FdKit();
  try {
    const seed = Number(process.env['PRH_FUZZ_SEED'] ?? 1);
    const totals = await fuzz(helper.socketPath, { count: 20000, firstSeed: seed, concurrency: 16, kit });
    // The generator must exercise both outcomes (measured with seed 1: 8524 responses, 14550 closes).
    assert.ok(totals.responses > 6000, `responses: ${totals.responses}`);
    assert.ok(totals.closes > 6000, `closes: ${totals.closes}`);
    assert.equal(await idleFdCount(helper), baseline, 'the helper leaked an fd');
    assert.equal(helper.child.exitCode, null, 'the helper is still running');
  } finally {
    kit.close();
    assert.equal(await helper.stop(), 0);
    helper.cleanup();
  }
});
