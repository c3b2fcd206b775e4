/**
 * Entry point: parse the command line, listen (or adopt systemd's socket), drop privileges,
 * serve until SIGTERM/SIGINT/SIGHUP, then finish executing requests and exit 0 (docs/protocol.md §1.5,
 * §1.8). The only module of the helper that acts when imported, besides the worker
 * threads' entry modules and src/privileges/no-inspector.ts, which it imports first.
 *
 * One helper may run as up to three process images, all with the reference's command line,
 * each in its own module (src/images/):
 * - with -d, a launcher that starts the daemon in a new session and exits once it serves
 *   (launch.ts);
 * - a first image that listens and writes the pid file; started as root it switches to
 *   -u/-g with only CAP_SYS_RAWIO and re-executes itself, keeping its pid (first.ts);
 * - that re-executed image, which checks every thread's credentials (second.ts);
 * and serving (serve.ts). Each image passes the next one a single hand-off envelope
 * (src/daemon/handoff.ts).
 */
// First: replaces Node's SIGUSR1 inspector trigger before any other module is evaluated.
import '../privileges/no-inspector.cjs';
import { basename } from 'node:path';
import { env, argv, version as nodeVersion } from 'node:process';
import { parseCommandLine } from './options.js';
import { Logger, stderrIsJournal } from '../log/logger.js';
import { lookupGroupId, lookupUserId } from '../sys/accounts.js';
import { KOFFI_VERSION } from '../sys/libc.js';
import { exitImmediately, isOpenFd } from '../sys/fd.js';
import {
  decodeEnvelope, HANDOFF_VARIABLE, HandoffError, INHERITED_FDS_VARIABLE, parseInheritedFds, SCRIPT_ARGV0_VARIABLE,
  type Envelope,
} from '../daemon/handoff.js';
import { TRACE_EVENT_NAMES } from '../trace/events.js';
import { readTraceFile } from '../trace/files.js';
import { StopSignals, type Invocation } from '../images/startup.js';
import { applyMultipathSocket } from '../privileges/multipath.js';
import { errorMessage } from '../util/error-message.js';
import { ignoreStdioErrors } from './stdio.js';

// libvirt closes our stderr pipe after start-up: EPIPE on stdio must not kill the helper
// (docs/internals.md#stderr-may-be-a-closed-pipe). SIGPIPE itself is ignored by Node, and sends use MSG_NOSIGNAL.
// The listeners come with the streams, which a default start never creates (src/cli/stdio.ts).
ignoreStdioErrors();

// Installed before anything else, as the reference does: SIGHUP terminates, it does not
// reload (docs/protocol.md §1.8).
const stopSignals = new StopSignals();
stopSignals.install();

/**
 * Reads and removes the hand-off variables: the envelope of the image that started us, or
 * (none: we are the first image) bin/qemu-pr-helper's own two. Exits 1 on a bad envelope.
 */
function takeHandoff(): { program: string; envelope: Envelope | null; inheritedFds: number[] } {
  const [text, argv0, inherited] = [env[HANDOFF_VARIABLE], env[SCRIPT_ARGV0_VARIABLE], env[INHERITED_FDS_VARIABLE]];
  for (const name of [HANDOFF_VARIABLE, SCRIPT_ARGV0_VARIABLE, INHERITED_FDS_VARIABLE]) delete env[name];
  const program = argv0 ?? argv[1] ?? 'qemu-pr-helper';
  if (text === undefined) return { program, envelope: null, inheritedFds: parseInheritedFds(inherited).filter(isOpenFd) };
  try {
    const envelope = decodeEnvelope(text, TRACE_EVENT_NAMES);
    return { program: envelope.program, envelope, inheritedFds: [] };
  } catch (error) {
    if (!(error instanceof HandoffError)) throw error;
    process.stderr.write(`${basename(program)}: ${error.message}\n`);
    return exitImmediately(1);
  }
}

function main(): void {
  const { program, envelope, inheritedFds } = takeHandoff();
  // A later image inherits the trace events instead of reading the -T events= file again.
  const parsed = parseCommandLine(argv.slice(2), {
    program,
    posixlyCorrect: env['POSIXLY_CORRECT'] !== undefined,
    lookupUser: lookupUserId,
    lookupGroup: lookupGroupId,
    runtime: { node: nodeVersion, koffi: KOFFI_VERSION },
    readTraceFile: envelope === null ? readTraceFile : () => ({ kind: 'text', text: '' }),
  });
  if (parsed.kind === 'exit') {
    process.stdout.write(parsed.stdout);
    process.stderr.write(parsed.stderr);
    process.exitCode = parsed.code;
    return;
  }
  const { options } = parsed;
  // -T warnings, once: the first image printed them already.
  if (envelope === null && parsed.stderr !== '') process.stderr.write(parsed.stderr);
  // Before any thread starts: libmpathcmd reads it from the C environment on each connect.
  const socketError = applyMultipathSocket(options.multipathSocket, env);
  if (socketError !== null) {
    process.stderr.write(`${basename(program)}: ${socketError}\n`);
    process.exitCode = 1;
    return;
  }
  const log = new Logger(basename(program), options.verbosity, undefined,
    stderrIsJournal(env['JOURNAL_STREAM']));
  const invocation: Invocation = {
    program, options, log, stopSignals, traceEvents: envelope?.traceEvents ?? [...options.trace.enabled],
  };
  // Each image loads only its own modules (start-up time, docs/performance.md): the root
  // image never parses the serving image's, nor the other way round.
  const loaded = (error: unknown): void => {
    log.fatal(`Cannot load the helper: ${errorMessage(error)}`);
    process.exitCode = 1;
  };
  if (envelope?.image === 'dropped') {
    // Privileges dropped: adopt the socket and the pid file, check every thread, serve.
    const { traceFd } = envelope;
    import('../images/second.js').then(({ secondImage }) => {
      secondImage(invocation, envelope.handoff, traceFd !== null && isOpenFd(traceFd) ? traceFd : null);
    }, loaded);
  } else if (envelope === null && options.daemonize) {
    // Daemonize: start the first image in a new session, wait until it serves.
    import('../images/launch.js').then(({ launch }) => launch(invocation, inheritedFds), loaded);
  } else {
    // Listen or adopt the activated socket, write the pid file, drop privileges, serve.
    const readyFd = envelope !== null && isOpenFd(envelope.readyFd) ? envelope.readyFd : null;
    import('../images/first.js').then(({ firstImage }) => firstImage(invocation, { readyFd, inheritedFds }), loaded);
  }
}

main();
