/**
 * CLEANUP's conversation with multipathd (docs/protocol.md §5.6) through libmpathcmd, against a
 * stand-in multipathd on the same abstract socket, speaking libmpathcmd's framing (a
 * native size_t length including the NUL, then the text). Real multipathd runs in the e2e
 * suite; this covers the reply handling on any host with the library installed.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:net';
import { findMpathLibrary, MpathLibrary } from '../../src/mpath/library.js';
import { fakeMultipathd } from '../support/fake-multipathd.js';

const library = findMpathLibrary(process.env['QEMU_PR_HELPER_MPATH_LIBRARY']);

describe('multipathd commands for CLEANUP (libmpathcmd)', { skip: library === null ? 'libmpathpersist is not installed (multipath-tools)' : false }, () => {
  test('"ok" replies succeed; a "fail" reply is reported with its text; no reply at all is an error', async (t) => {
    let fake: { server: Server; commands: string[] };
    try {
      fake = await fakeMultipathd((command) => (command.startsWith('unsetprstatus map dm-9') ? 'fail\npermission deny: need to be root\n' : 'ok\n'));
    } catch (error) {
      t.skip(`multipathd's socket is taken here (a real multipathd runs?): ${String(error)}`);
      return;
    }
    const lib = await MpathLibrary.open(library ?? '');
    try {
      assert.equal(await lib.multipathd(['unsetprkey map dm-3', 'unsetprstatus map dm-3'], 5000), null);
      const failure = await lib.multipathd(['unsetprkey map dm-9', 'unsetprstatus map dm-9', 'never sent'], 5000);
      assert.match(failure ?? '', /^mpath_process_cmd\(\d+, "unsetprstatus map dm-9"\) replied "fail\npermission deny: need to be root"$/);
      assert.deepEqual(fake.commands, ['unsetprkey map dm-3', 'unsetprstatus map dm-3', 'unsetprkey map dm-9', 'unsetprstatus map dm-9']);
    } finally {
      fake.server.close();
    }
    // Nobody listening any more: connect fails, reported in words.
    await new Promise((r) => fake.server.once('close', r));
    assert.match(await lib.multipathd(['unsetprkey map dm-3'], 5000) ?? '', /^mpath_connect\(\) failed/);
    lib.close();
  });
});
