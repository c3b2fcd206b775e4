/**
 * The Node the tests run on is the Node the helper runs on. .ci/node-versions.sh runs this
 * suite once per supported Node release by putting that Node first in PATH; the test runner
 * (`node --test`, from npm's script) and bin/qemu-pr-helper (`command -v node`) must then
 * both use it, or a pass would say nothing about that release. Also: koffi's Node-API
 * binary loads on this Node (one prebuild serves every Node >= 16: Node-API 8).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readlinkSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { startHelper } from '../support/launcher.js';

test(`the helper runs on the test runner's Node (${process.version}, ${process.execPath})`, async () => {
  const helper = await startHelper();
  try {
    // The launcher execs Node (same pid); started as root the helper re-executes the same
    // binary to drop privileges, so /proc/PID/exe names it in either case.
    const helperNode = readlinkSync(`/proc/${helper.pid}/exe`);
    assert.equal(helperNode, realpathSync(process.execPath),
      `bin/qemu-pr-helper found another node in PATH (${process.env['PATH'] ?? ''}) than the one running the tests`);
  } finally {
    helper.cleanup();
  }
});

test('koffi loads on this Node', () => {
  // As src/sys/libc.ts loads it.
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  assert.equal(typeof koffi.version, 'string');
  assert.equal(koffi.sizeof('void *'), 8);
});
