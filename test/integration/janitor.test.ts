/**
 * The start-up janitor (src/privileges/janitor.ts) on its own, with plain files standing in
 * for the socket and the pid file: what it does for each word the serving image may say,
 * and when the helper is gone without a word.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { closeFd } from '../../src/sys/fd.js';
import { JANITOR_PLACED, JANITOR_PUBLISHED, JANITOR_READY, startJanitor } from '../../src/privileges/janitor.js';
import { tempDir, waitFor } from '../support/launcher.js';

interface Files {
  dir: string;
  staging: string;
  path: string;
  pidfile: string;
  identity(file: string): { dev: number; inode: number };
}

function files(): Files {
  const dir = tempDir('prh-janitor-');
  const staging = join(dir, '.pr.sock.0123456789abcdef~');
  const pidfile = join(dir, 'pr.pid');
  writeFileSync(staging, 'socket');
  writeFileSync(pidfile, '1\n');
  const identity = (file: string) => {
    const s = statSync(file);
    return { dev: s.dev, inode: s.ino };
  };
  return { dir, staging, path: join(dir, 'pr.sock'), pidfile, identity };
}

/** Everything the janitor answers until it closes its end (it has exited). */
function answers(fd: number): string {
  const buffer = Buffer.alloc(256);
  let text = '';
  for (;;) {
    const n = readSync(fd, buffer);
    if (n === 0) return text;
    text += buffer.toString('latin1', 0, n);
  }
}

function start(f: Files) {
  const socket = { staging: f.staging, path: f.path, ...f.identity(f.staging) };
  const janitor = startJanitor(socket, { path: f.pidfile, ...f.identity(f.pidfile) }, []);
  assert.ok(janitor, 'the janitor started');
  return janitor;
}

test('"ready": the janitor puts the socket in place and answers that it did', () => {
  const f = files();
  try {
    const janitor = start(f);
    writeSync(janitor.tell, JANITOR_READY);
    closeFd(janitor.tell);
    assert.equal(answers(janitor.answer), `${JANITOR_PUBLISHED}\n`);
    closeFd(janitor.answer);
    assert.equal(existsSync(f.staging), false);
    assert.equal(readFileSync(f.path, 'utf8'), 'socket');
    assert.equal(existsSync(f.pidfile), true);
  } finally {
    rmSync(f.dir, { recursive: true, force: true });
  }
});

test('"placed": the serving image put the socket in place itself; the janitor touches nothing and exits', async () => {
  const f = files();
  try {
    const janitor = start(f);
    renameSync(f.staging, f.path); // as the serving image does (publishListener)
    writeSync(janitor.tell, JANITOR_PLACED);
    closeFd(janitor.tell);
    assert.equal(answers(janitor.answer), '', 'no answer, then end of file: it has exited');
    closeFd(janitor.answer);
    // Nothing is removed later either.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(readFileSync(f.path, 'utf8'), 'socket');
    assert.equal(existsSync(f.pidfile), true);
  } finally {
    rmSync(f.dir, { recursive: true, force: true });
  }
});

test('no word (the helper is gone): the janitor removes the socket, wherever it is, and the pid file, if still ours', async () => {
  for (const placedFirst of [false, true]) {
    const f = files();
    try {
      const janitor = start(f);
      if (placedFirst) renameSync(f.staging, f.path);
      closeFd(janitor.tell);
      assert.equal(answers(janitor.answer), '');
      closeFd(janitor.answer);
      assert.ok(await waitFor(() => (existsSync(f.staging) || existsSync(f.path) || existsSync(f.pidfile) ? null : true), 5000),
        `left behind (placed first: ${placedFirst})`);
    } finally {
      rmSync(f.dir, { recursive: true, force: true });
    }
  }
});

test('no word, but the files were replaced meanwhile: the janitor leaves them', async () => {
  const f = files();
  try {
    const janitor = start(f);
    // New files made while the old ones still exist (no inode reused), renamed over them.
    writeFileSync(join(f.dir, 'a'), 'another');
    renameSync(join(f.dir, 'a'), f.staging);
    writeFileSync(join(f.dir, 'b'), '2\n');
    renameSync(join(f.dir, 'b'), f.pidfile);
    closeFd(janitor.tell);
    assert.equal(answers(janitor.answer), '');
    closeFd(janitor.answer);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(readFileSync(f.staging, 'utf8'), 'another');
    assert.equal(readFileSync(f.pidfile, 'utf8'), '2\n');
  } finally {
    rmSync(f.dir, { recursive: true, force: true });
  }
});
