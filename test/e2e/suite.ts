/**
 * The whole e2e suite in ONE Node process (every Node start costs ~0.5 s under TCG):
 * test/e2e/vm/guest-suite.sh runs `node --test-reporter=spec dist/test/e2e/suite.js`
 * inside the VM. Importing the test files registers their tests in this order.
 */
import { after } from 'node:test';
import { stopHelpers } from './lib/env.js';
import './pr-actions.test.js';
import './edge.test.js';
import './differential.test.js';
import './enodev.test.js';
import './privileges.test.js';
import './logging.test.js';
import './client.test.js';
import './stall.test.js';
import './shutdown.test.js';
import './multipath.test.js';
import './qemu-chain.test.js';
import './migration.test.js';
import './multipath-migration.test.js';
import './multipath-differential.test.js';
import './iscsi-stall.test.js';

after(stopHelpers);
