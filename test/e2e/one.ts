/**
 * Runs ONE e2e test file with the suite's teardown (the shared helpers stopped at the end):
 *   test/e2e/run.sh node --test-reporter=spec dist/test/e2e/one.js migration
 * runs dist/test/e2e/migration.test.js in the prepared guest.
 */
import { after } from 'node:test';
import { stopHelpers } from './lib/env.js';

const name = process.argv[2];
if (name === undefined || !/^[a-z-]+$/.test(name)) throw new Error('usage: one.js NAME (runs NAME.test.js)');
after(stopHelpers);
await import(`./${name}.test.js`);
