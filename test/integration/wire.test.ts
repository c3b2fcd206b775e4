/**
 * The client-socket rules both serving paths share (src/server/wire.ts), on real AF_UNIX
 * sockets with real SCM_RIGHTS; and the fds each kind of hand-back carries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MessageReceiver, acceptConnection, bindUnix, connectUnix, listenSocket, sendWithFds, unixStreamSocket,
} from '../../src/sys/socket.js';
import { closeFd, isOpenFd } from '../../src/sys/fd.js';
import { closeClientSocket, receive, send } from '../../src/server/wire.js';
import { handbackFds } from '../../src/server/fast-path-shared.js';
import type { FdCloser } from '../../src/exec/executor.js';
import type { PrRequest } from '../../src/protocol/session.js';

/** A connected pair: [client end, accepted end]. */
function connectedPair(): [number, number] {
  const dir = mkdtempSync(join(tmpdir(), 'prh-wire-'));
  const listener = unixStreamSocket();
  try {
    bindUnix(listener, join(dir, 's'));
    listenSocket(listener, 1);
    const client = unixStreamSocket();
    connectUnix(client, join(dir, 's'));
    const accepted = acceptConnection(listener);
    assert.notEqual(accepted, null);
    return [client, accepted ?? -1];
  } finally {
    closeFd(listener);
    rmSync(dir, { recursive: true });
  }
}

/** Closes what it is given at once and remembers it. */
class RecordingCloser implements FdCloser {
  readonly released: number[] = [];
  release(fd: number): Promise<void> {
    this.released.push(fd);
    closeFd(fd);
    return Promise.resolve();
  }
}

test('receive: again on an empty socket, data with its fd, then end of file', () => {
  const [client, server] = connectedPair();
  const receiver = new MessageReceiver(64);
  try {
    assert.deepEqual(receive(receiver, server, 16, true), { kind: 'again' });
    const devNull = openSync('/dev/null', 'r');
    sendWithFds(client, new Uint8Array([1, 2, 3]), [devNull]);
    closeFd(devNull);
    const got = receive(receiver, server, 16, true);
    assert.equal(got.kind, 'data');
    if (got.kind !== 'data') return;
    assert.deepEqual([...got.bytes], [1, 2, 3]);
    assert.equal(got.fds.length, 1);
    for (const fd of got.fds) closeFd(fd);
    closeFd(client);
    assert.deepEqual(receive(receiver, server, 16, true), { kind: 'eof', fds: [] });
  } finally {
    receiver.free();
    closeFd(server);
  }
});

test('receive: a failed read closes the connection with the reason the log shows', () => {
  const receiver = new MessageReceiver(16);
  const notSocket = openSync('/dev/null', 'r');
  try {
    const got = receive(receiver, notSocket, 16, true);
    assert.equal(got.kind, 'failed');
    if (got.kind !== 'failed') return;
    assert.match(got.failure.reason, /^Unable to read from socket: /);
    assert.equal(got.failure.peerGone, false);
  } finally {
    receiver.free();
    closeFd(notSocket);
  }
});

test('send: a full socket buffer leaves the unsent rest; a gone peer is reported as gone', () => {
  const [client, server] = connectedPair();
  try {
    const big = new Uint8Array(8 << 20).map((_, i) => i & 0xff);
    const sent = send(server, big);
    assert.equal(sent.kind, 'again');
    if (sent.kind !== 'again') return;
    assert.ok(sent.rest.length > 0 && sent.rest.length < big.length);
    // The rest is the tail of what was given: the peer got exactly the head.
    assert.equal(sent.rest[0], big[big.length - sent.rest.length]);
    closeFd(client);
    const after = send(server, new Uint8Array([1]));
    assert.equal(after.kind, 'failed');
    if (after.kind !== 'failed') return;
    assert.match(after.failure.reason, /^Unable to write to socket: /);
    assert.equal(after.failure.peerGone, true);
  } finally {
    closeFd(server);
  }
});

test('closeClientSocket hands the fds still queued in the socket to the closer and closes it', () => {
  const [client, server] = connectedPair();
  const closer = new RecordingCloser();
  try {
    for (let i = 0; i < 3; i++) {
      const devNull = openSync('/dev/null', 'r');
      sendWithFds(client, new Uint8Array(16), [devNull]);
      closeFd(devNull);
    }
    closeClientSocket(server, closer);
    assert.equal(closer.released.length, 3);
    assert.equal(isOpenFd(server), false);
  } finally {
    closeFd(client);
  }
});

test('handbackFds: only replayed chunks and a request to execute carry client fds', () => {
  const request = { fd: 41 } as unknown as PrRequest;
  assert.deepEqual(handbackFds({ kind: 'execute', request }), [41]);
  assert.deepEqual(handbackFds({ kind: 'replay', chunks: [{ bytes: new Uint8Array(1), fds: [7] }, { bytes: new Uint8Array(1), fds: [8, 9] }] }), [7, 8, 9]);
  assert.deepEqual(handbackFds({ kind: 'read' }), []);
  assert.deepEqual(handbackFds({ kind: 'write', bytes: new Uint8Array(1) }), []);
  assert.deepEqual(handbackFds({ kind: 'close', reason: 'x', peerGone: false }), []);
});
