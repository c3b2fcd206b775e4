/** Finding device-mapper's major in /proc/devices (src/mpath/detect.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceMapperMajor } from '../../src/mpath/detect.js';

const PROC_DEVICES = `Character devices:
  1 mem
  4 /dev/vc/0
 10 misc
253 device-mapper-ish-char

Block devices:
  7 loop
  8 sd
  9 md
 65 sd
253 device-mapper
254 mdp
259 blkext
`;

test('the block major of device-mapper, not a character device of a similar name', () => {
  assert.equal(deviceMapperMajor(PROC_DEVICES), 253);
  assert.equal(deviceMapperMajor(PROC_DEVICES.replace('253 device-mapper\n', '')), null, 'dm not loaded');
  assert.equal(deviceMapperMajor(PROC_DEVICES.replace('\n253 device-mapper-ish-char', '\n252 device-mapper')), 253,
    'a character device named device-mapper does not count');
  assert.equal(deviceMapperMajor(''), null);
  assert.equal(deviceMapperMajor('Block devices:\n254 device-mapper\n'), 254);
});
