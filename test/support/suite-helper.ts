/** A helper for one describe() block: started before its tests, stopped (exit 0) after them. */
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startHelper, type Helper, type StartOptions } from './launcher.js';

export function suiteHelper(opts: StartOptions = {}): () => Helper {
  let helper: Helper | null = null;
  before(async () => {
    helper = await startHelper(opts);
  });
  after(async () => {
    if (helper === null) return;
    assert.equal(await helper.stop(), 0);
    helper.cleanup();
  });
  return () => {
    if (helper === null) throw new Error('the suite helper is not started yet');
    return helper;
  };
}
