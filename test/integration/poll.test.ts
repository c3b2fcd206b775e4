/**
 * FdWatcher.pause() (src/sys/poll.ts): interest dropped while a request executes without
 * stopping the uv_poll, on a real connected Unix socket. What arrives while paused is not
 * reported then (and stops the poll once), and is reported after the next set().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { closeFd } from '../../src/sys/fd.js';
import { FdWatcher, type Readiness } from '../../src/sys/poll.js';
import { acceptConnection, bindUnix, connectUnix, listenSocket, sendBytes, unixStreamSocket } from '../../src/sys/socket.js';
import { tempDir } from '../support/launcher.js';

function connectedPair(): { server: number; client: number; cleanup: () => void } {
  const dir = tempDir('prh-poll-');
  const path = join(dir, 's');
  const listener = unixStreamSocket();
  bindUnix(listener, path);
  listenSocket(listener, 1);
  const client = unixStreamSocket();
  connectUnix(client, path);
  const server = acceptConnection(listener);
  closeFd(listener);
  assert.ok(server !== null);
  return { server, client, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const turn = (ms = 20): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('pause(): nothing is reported while paused; what arrived is reported after set() again', async () => {
  const { server, client, cleanup } = connectedPair();
  const seen: Readiness[] = [];
  const watcher = new FdWatcher(server, (r) => seen.push(r));
  try {
    watcher.set({ readable: true, writable: false });
    sendBytes(client, Uint8Array.of(1));
    await turn();
    assert.equal(seen.length > 0 && seen.every((r) => r.readable), true, 'readable while watched');
    // drain what the level-triggered poll keeps reporting: pause, and read nothing
    watcher.pause();
    const before = seen.length;
    sendBytes(client, Uint8Array.of(2));
    await turn(50);
    assert.equal(seen.length, before, 'nothing reported while paused (data pending)');
    watcher.set({ readable: true, writable: false });
    await turn();
    assert.ok(seen.length > before, 'the pending data is reported once interest is back');
  } finally {
    watcher.close();
    closeFd(server);
    closeFd(client);
    cleanup();
  }
});

test('pause() then set() with nothing arriving meanwhile: later data is reported; EOF while paused too', async () => {
  const { server, client, cleanup } = connectedPair();
  const seen: Readiness[] = [];
  const watcher = new FdWatcher(server, (r) => seen.push(r));
  let clientOpen = true;
  try {
    watcher.set({ readable: true, writable: false });
    watcher.pause();
    await turn();
    watcher.set({ readable: true, writable: false });
    assert.equal(seen.length, 0);
    sendBytes(client, Uint8Array.of(3));
    await turn();
    assert.ok(seen.length > 0, 'data after the pause is reported (the poll stayed armed)');
    watcher.pause();
    const before = seen.length;
    closeFd(client);
    clientOpen = false;
    await turn(50);
    assert.equal(seen.length, before, 'EOF while paused is not reported then');
    watcher.set({ readable: true, writable: false });
    await turn();
    assert.ok(seen.length > before, 'EOF reported after the pause');
    // set() with no interest while paused stops the poll for good
    watcher.pause();
    watcher.set({ readable: false, writable: false });
    const stopped = seen.length;
    await turn(50);
    assert.equal(seen.length, stopped);
  } finally {
    watcher.close();
    closeFd(server);
    if (clientOpen) closeFd(client);
    cleanup();
  }
});
