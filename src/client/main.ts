/**
 * Entry point of bin/qemu-pr-helper-client, the diagnostic client (src/client/run.ts).
 * Only this module ends the process.
 */
import { argv, env } from 'node:process';
import { runClient } from './run.js';
import { errorStack } from '../util/error-message.js';

// `... | head` closes our stdout early: that is not an error worth a stack trace.
process.stdout.on('error', () => undefined);

const ARGV0_VARIABLE = 'QEMU_PR_HELPER_CLIENT_ARGV0';
const invoked = env[ARGV0_VARIABLE] ?? argv[1] ?? 'qemu-pr-helper-client';
delete env[ARGV0_VARIABLE];
const program = invoked.slice(invoked.lastIndexOf('/') + 1);

runClient(argv.slice(2), program, {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
}).then((code) => {
  process.exitCode = code;
}, (error: unknown) => {
  process.stderr.write(`${program}: internal error: ${errorStack(error)}\n`);
  process.exitCode = 1;
});
