/**
 * The helper's command line (docs/protocol.md §1.1-1.4): what each option does, processed in order as
 * the reference does (so `-h` after a bad option never runs). Pure: lookups are injected.
 */
import { DEFAULT_FEATURES, PR_HELPER_FEATURE_CLEANUP } from '../protocol/constants.js';
import { getoptLong, type LongOption } from './getopt.js';
import { DEFAULT_PIDFILE_PATH, DEFAULT_SOCKET_PATH, usageText, versionText } from './help.js';
import { parseStrtoul } from '../util/strtoul.js';
import { DEFAULT_SGIO_TIMEOUT_MS } from '../exec/sgio-executor.js';
import { applyTraceOption, checkLogfileTemplate, NO_TRACE, type EventsFileRead, type TraceSettings } from '../trace/options.js';
import { TRACE_EVENT_NAMES } from '../trace/events.js';

export interface Options {
  socketPath: string;
  socketPathGiven: boolean;
  pidfile: string;
  pidfileGiven: boolean;
  daemonize: boolean;
  uid: number | null;
  gid: number | null;
  /** QEMU `verbose`: 0 with -q, else min(1 + count of -v, 3) (docs/protocol.md §1.3). */
  verbosity: number;
  /** QEMU `noisy`: -vv or more without -q. */
  noisy: boolean;
  ioTimeoutMs: number;
  /** --allow-uid / --allow-gid: peers allowed to connect; null lists allow everyone. */
  allowUids: number[] | null;
  allowGids: number[] | null;
  /** --log-keys: print reservation keys in full in the -v request lines. */
  logKeys: boolean;
  /**
   * The feature set announced to clients: none by default, as upstream; CLEANUP with
   * --enable-cleanup (docs/protocol.md §3.2).
   */
  features: number;
  /** What the -T options enabled, and the last file= (docs/protocol.md §7). */
  trace: TraceSettings;
  /**
   * --multipath-socket: multipathd's socket for libmpathcmd (MULTIPATH_SOCKET_NAME), as
   * given (checked at start-up with the environment's: src/privileges/multipath.ts), or null.
   */
  multipathSocket: string | null;
}

export type CommandLine =
  /** `stderr`: warnings printed while parsing (-T), to show before anything else. */
  | { kind: 'run'; options: Options; stderr: string }
  | { kind: 'exit'; code: number; stdout: string; stderr: string };

export interface CommandLineContext {
  /** argv[0] exactly as invoked. */
  program: string;
  posixlyCorrect: boolean;
  lookupUser: (name: string) => number | null;
  lookupGroup: (name: string) => number | null;
  runtime: { node: string; koffi: string };
  /** Reads a -T events= file (see TraceContext.readFile). */
  readTraceFile: (path: string) => EventsFileRead;
}

export const SHORT_OPTIONS = 'hVk:f:dT:u:g:vq';
/** Keys of our long options, which have no short form. */
const IO_TIMEOUT_KEY = 'io-timeout';
const ALLOW_UID_KEY = 'allow-uid';
const ALLOW_GID_KEY = 'allow-gid';
const LOG_KEYS_KEY = 'log-keys';
const ENABLE_CLEANUP_KEY = 'enable-cleanup';
const MULTIPATH_SOCKET_KEY = 'multipath-socket';

export const LONG_OPTIONS: readonly LongOption[] = [
  { name: 'help', hasArg: false, key: 'h' },
  { name: 'version', hasArg: false, key: 'V' },
  { name: 'socket', hasArg: true, key: 'k' },
  { name: 'pidfile', hasArg: true, key: 'f' },
  { name: 'daemon', hasArg: false, key: 'd' },
  { name: 'trace', hasArg: true, key: 'T' },
  { name: 'user', hasArg: true, key: 'u' },
  { name: 'group', hasArg: true, key: 'g' },
  { name: 'verbose', hasArg: false, key: 'v' },
  { name: 'quiet', hasArg: false, key: 'q' },
  // Ours: no existing long option starts with 'i', so every prefix the reference accepts
  // still means the same.
  { name: IO_TIMEOUT_KEY, hasArg: true, key: IO_TIMEOUT_KEY },
  // 'a' and 'l' start no reference option either.
  { name: ALLOW_UID_KEY, hasArg: true, key: ALLOW_UID_KEY },
  { name: ALLOW_GID_KEY, hasArg: true, key: ALLOW_GID_KEY },
  { name: LOG_KEYS_KEY, hasArg: false, key: LOG_KEYS_KEY },
  // Nor does 'e'.
  { name: ENABLE_CLEANUP_KEY, hasArg: false, key: ENABLE_CLEANUP_KEY },
  // 'm' starts no reference option.
  { name: MULTIPATH_SOCKET_KEY, hasArg: true, key: MULTIPATH_SOCKET_KEY },
];

/** uid_t/gid_t range check of the reference: strtoul, then the value must fit 32 bits. */
function numericId(text: string): number | null {
  const value = parseStrtoul(text);
  if (value === null || value > 0xffffffffn) return null;
  return Number(value);
}

const MAX_IO_TIMEOUT_S = Math.floor(0xffffffff / 1000);

function parseTimeoutSeconds(text: string): number | null {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text)) return null;
  const seconds = Number(text);
  if (!(seconds > 0) || seconds > MAX_IO_TIMEOUT_S) return null;
  return Math.max(1, Math.round(seconds * 1000));
}

function basename(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}

export function parseCommandLine(args: readonly string[], ctx: CommandLineContext): CommandLine {
  const { program } = ctx;
  // error_report() prefixes the base name (QEMU error_init); getopt uses argv[0] itself.
  const prefix = `${basename(program)}: `;
  // Warnings printed so far (by -T), ahead of whatever ends the parse.
  let warnings = '';
  const fail = (message: string): CommandLine => ({ kind: 'exit', code: 1, stdout: '', stderr: `${warnings}${prefix}${message}\n` });
  const exit = (code: number, stdout: string): CommandLine => ({ kind: 'exit', code, stdout, stderr: warnings });
  const traceContext = { programName: basename(program), events: TRACE_EVENT_NAMES, readFile: ctx.readTraceFile };
  const options: Options = {
    socketPath: DEFAULT_SOCKET_PATH,
    socketPathGiven: false,
    pidfile: DEFAULT_PIDFILE_PATH,
    pidfileGiven: false,
    daemonize: false,
    uid: null,
    gid: null,
    verbosity: 1,
    noisy: false,
    ioTimeoutMs: DEFAULT_SGIO_TIMEOUT_MS,
    allowUids: null,
    allowGids: null,
    logKeys: false,
    features: DEFAULT_FEATURES,
    trace: NO_TRACE,
    multipathSocket: null,
  };
  let loglevel = 1;
  let quiet = false;

  const events = getoptLong(args, {
    shortOptions: SHORT_OPTIONS, longOptions: LONG_OPTIONS, program, posixlyCorrect: ctx.posixlyCorrect,
  });
  for (const ev of events) {
    if (ev.kind === 'error') {
      return {
        kind: 'exit', code: 1, stdout: '',
        stderr: `${warnings}${ev.message}\n${prefix}Try \`${program} --help' for more information.\n`,
      };
    }
    const arg = ev.arg ?? '';
    switch (ev.key) {
      case 'k':
        options.socketPath = arg;
        options.socketPathGiven = true;
        if (!arg.startsWith('/')) return fail('socket path must be absolute');
        break;
      case 'f':
        options.pidfile = arg;
        options.pidfileGiven = true;
        break;
      case 'u': {
        const uid = ctx.lookupUser(arg) ?? numericId(arg);
        if (uid === null) return fail(`invalid user '${arg}'`);
        options.uid = uid;
        break;
      }
      case 'g': {
        const gid = ctx.lookupGroup(arg) ?? numericId(arg);
        if (gid === null) return fail(`invalid group '${arg}'`);
        options.gid = gid;
        break;
      }
      case 'd':
        options.daemonize = true;
        break;
      case 'q':
        quiet = true;
        break;
      case 'v':
        loglevel++;
        break;
      case 'T': {
        // Applied at once, during parsing, as the reference does (docs/protocol.md §1.1): `-T help`
        // exits before later options are read, and its warnings come out in order.
        const step = applyTraceOption(options.trace, arg, traceContext);
        if (step.kind === 'exit') return { ...step, stderr: `${warnings}${step.stderr}` };
        warnings += step.stderr;
        options.trace = step.settings;
        break;
      }
      case 'V':
        return exit(0, versionText(program, ctx.runtime));
      case 'h':
        return exit(0, usageText(program));
      case IO_TIMEOUT_KEY: {
        const ms = parseTimeoutSeconds(arg);
        if (ms === null) {
          return fail(`invalid I/O timeout '${arg}': expected seconds, more than 0 and at most ${MAX_IO_TIMEOUT_S}`);
        }
        options.ioTimeoutMs = ms;
        break;
      }
      case ALLOW_UID_KEY:
      case ALLOW_GID_KEY: {
        // A comma-separated list of names or numbers; the option may be repeated.
        const isUser = ev.key === ALLOW_UID_KEY;
        const ids: number[] = [];
        for (const item of arg.split(',')) {
          const id = (isUser ? ctx.lookupUser(item) : ctx.lookupGroup(item)) ?? numericId(item);
          if (item === '' || id === null) return fail(`invalid ${isUser ? 'user' : 'group'} '${item}' in --${ev.key}`);
          ids.push(id);
        }
        if (isUser) options.allowUids = [...(options.allowUids ?? []), ...ids];
        else options.allowGids = [...(options.allowGids ?? []), ...ids];
        break;
      }
      case LOG_KEYS_KEY:
        options.logKeys = true;
        break;
      case ENABLE_CLEANUP_KEY:
        options.features |= PR_HELPER_FEATURE_CLEANUP;
        break;
      case MULTIPATH_SOCKET_KEY:
        options.multipathSocket = arg;
        break;
      default:
        throw new Error(`Cannot handle option key '${ev.key}'`);
    }
  }
  options.noisy = !quiet && loglevel >= 3;
  options.verbosity = quiet ? 0 : Math.min(loglevel, 3);
  // The reference checks the file= template after the whole command line (trace_init_file).
  const badTemplate = options.trace.file === null ? null : checkLogfileTemplate(options.trace.file);
  if (badTemplate !== null) return fail(badTemplate);
  return { kind: 'run', options, stderr: warnings };
}
