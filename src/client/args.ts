/**
 * The diagnostic client's command line: `[OPTIONS] COMMAND [DEVICE]`, options anywhere,
 * scanned by the helper's getopt_long (src/cli/getopt.ts: `--name=value`, `--name value`,
 * unambiguous prefixes, `-kPATH`, clustered flags, `--` ends the options; glibc's error
 * texts). Pure: returns what to do, never exits.
 */
import { DEFAULT_SOCKET_PATH } from '../cli/help.js';
import { PR_HELPER_DATA_SIZE } from '../protocol/constants.js';
import { RESERVATION_TYPES } from '../scsi/pr-data.js';
import { scanArguments, type LongOption } from '../cli/getopt.js';
import { findCommand, type CommandSpec } from './commands.js';

export interface ClientOptions {
  socketPath: string;
  json: boolean;
  /** How long to wait for the helper (connect, handshake, response); 0 waits forever. */
  timeoutMs: number;
  /** Open the device O_RDONLY also for PR OUT (sg_persist --readonly). */
  readOnly: boolean;
  /** PR IN ALLOCATION LENGTH. */
  allocationLength: number;
  /** --param-rk: RESERVATION KEY. */
  key: bigint;
  /** --param-sark: SERVICE ACTION RESERVATION KEY. */
  serviceActionKey: bigint;
  /** --prout-type; null when not given (sent as 0). */
  type: number | null;
  aptpl: boolean;
  allTargetPorts: boolean;
}

export type ParsedArgs =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'run'; command: CommandSpec; device: string | null; options: ClientOptions }
  | { kind: 'usage-error'; message: string };

/** Default wait for the helper: its own SG_IO timeout is 30 s, so 60 s leaves it room to answer. */
export const DEFAULT_TIMEOUT_MS = 60_000;

interface OptionSpec {
  long: string;
  short: string;
  hasArg: boolean;
  /** Applies to these command kinds only (null: all). */
  scope: 'pr-in' | 'pr-out' | 'device' | null;
}

const OPTIONS: readonly OptionSpec[] = [
  { long: 'help', short: 'h', hasArg: false, scope: null },
  { long: 'version', short: 'V', hasArg: false, scope: null },
  { long: 'socket', short: 'k', hasArg: true, scope: null },
  { long: 'json', short: 'j', hasArg: false, scope: null },
  { long: 'timeout', short: 't', hasArg: true, scope: null },
  { long: 'readonly', short: 'y', hasArg: false, scope: 'device' },
  { long: 'alloc-length', short: 'l', hasArg: true, scope: 'pr-in' },
  { long: 'param-rk', short: 'K', hasArg: true, scope: 'pr-out' },
  { long: 'param-sark', short: 'S', hasArg: true, scope: 'pr-out' },
  { long: 'prout-type', short: 'T', hasArg: true, scope: 'pr-out' },
  { long: 'param-aptpl', short: 'Z', hasArg: false, scope: 'pr-out' },
  { long: 'param-alltgpt', short: 'Y', hasArg: false, scope: 'pr-out' },
];

/**
 * A reservation key as sg_persist takes it: hexadecimal, with or without "0x", at most 8
 * bytes (16 digits).
 */
export function parseKey(text: string): bigint | null {
  const m = /^(?:0[xX])?([0-9a-fA-F]{1,16})$/.exec(text);
  return m ? BigInt(`0x${m[1] ?? '0'}`) : null;
}

/**
 * A reservation type: a number 0-15 (decimal, or hex with 0x) or a short name (we, ea,
 * we-ro, ea-ro, we-ar, ea-ar; any case, '_' for '-'). Undefined numbers are allowed on
 * purpose: this is a diagnostic tool, and a device's answer to them is worth seeing.
 */
export function parseReservationType(text: string): number | null {
  const lower = text.toLowerCase().replace(/_/g, '-');
  const named = RESERVATION_TYPES.find((t) => t.short === lower);
  if (named) return named.code;
  const value = /^0x[0-9a-f]+$/.test(lower) ? Number.parseInt(lower.slice(2), 16)
    : /^[0-9]+$/.test(lower) ? Number.parseInt(lower, 10) : Number.NaN;
  return Number.isInteger(value) && value >= 0 && value <= 15 ? value : null;
}

function parseUnsigned(text: string): number | null {
  return /^[0-9]+$/.test(text) ? Number.parseInt(text, 10) : null;
}

function parseSeconds(text: string): number | null {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text)) return null;
  const seconds = Number(text);
  return seconds <= 2 ** 31 / 1000 ? Math.round(seconds * 1000) : null;
}

type Seen = { spec: OptionSpec; name: string; value: string | null };

const SHORT_OPTIONS = OPTIONS.map((o) => (o.hasArg ? `${o.short}:` : o.short)).join('');
const LONG_OPTIONS: readonly LongOption[] = OPTIONS.map((o) => ({ name: o.long, hasArg: o.hasArg, key: o.short }));

/** Splits argv into options (in order) and positional arguments, or returns getopt's error. */
function scan(args: readonly string[]): { seen: Seen[]; positional: string[] } | string {
  const seen: Seen[] = [];
  const positional: string[] = [];
  for (const ev of scanArguments(args, { shortOptions: SHORT_OPTIONS, longOptions: LONG_OPTIONS })) {
    if (ev.kind === 'error') return ev.text;
    if (ev.kind === 'operand') {
      positional.push(ev.arg);
      continue;
    }
    const spec = OPTIONS.find((o) => o.short === ev.key);
    if (spec === undefined) throw new Error(`Cannot handle option key '${ev.key}'`);
    seen.push({ spec, name: ev.name, value: ev.arg });
  }
  return { seen, positional };
}

export function parseClientArgs(args: readonly string[]): ParsedArgs {
  const fail = (message: string): ParsedArgs => ({ kind: 'usage-error', message });
  const scanned = scan(args);
  if (typeof scanned === 'string') return fail(scanned);
  const { seen, positional } = scanned;
  // --help and --version win over everything else, wherever they are.
  if (seen.some((s) => s.spec.long === 'help')) return { kind: 'help' };
  if (seen.some((s) => s.spec.long === 'version')) return { kind: 'version' };

  const options: ClientOptions = {
    socketPath: DEFAULT_SOCKET_PATH,
    json: false,
    timeoutMs: DEFAULT_TIMEOUT_MS,
    readOnly: false,
    allocationLength: PR_HELPER_DATA_SIZE,
    key: 0n,
    serviceActionKey: 0n,
    type: null,
    aptpl: false,
    allTargetPorts: false,
  };
  for (const { spec, name, value } of seen) {
    const text = value ?? '';
    switch (spec.long) {
      case 'socket':
        if (text === '') return fail(`${name} needs a path`);
        options.socketPath = text;
        break;
      case 'json':
        options.json = true;
        break;
      case 'timeout': {
        const ms = parseSeconds(text);
        if (ms === null) return fail(`invalid timeout '${text}': expected seconds, 0 to wait forever`);
        options.timeoutMs = ms;
        break;
      }
      case 'readonly':
        options.readOnly = true;
        break;
      case 'alloc-length': {
        const n = parseUnsigned(text);
        if (n === null || n > PR_HELPER_DATA_SIZE) return fail(`invalid allocation length '${text}': expected 0-${PR_HELPER_DATA_SIZE}`);
        options.allocationLength = n;
        break;
      }
      case 'param-rk':
      case 'param-sark': {
        const key = parseKey(text);
        if (key === null) return fail(`invalid key '${text}' for ${name}: expected up to 16 hex digits, with or without 0x`);
        if (spec.long === 'param-rk') options.key = key;
        else options.serviceActionKey = key;
        break;
      }
      case 'prout-type': {
        const type = parseReservationType(text);
        if (type === null) {
          const names = RESERVATION_TYPES.map((t) => t.short).join(', ');
          return fail(`invalid reservation type '${text}': expected 0-15 or one of ${names}`);
        }
        options.type = type;
        break;
      }
      case 'param-aptpl':
        options.aptpl = true;
        break;
      case 'param-alltgpt':
        options.allTargetPorts = true;
        break;
      default:
        break;
    }
  }

  const [name, ...rest] = positional;
  if (name === undefined) return fail('missing COMMAND');
  const command = findCommand(name);
  if (command === null) return fail(`unknown command '${name}'`);
  const takesDevice = command.kind !== 'features';
  if (takesDevice && rest.length === 0) return fail(`${name} needs a DEVICE`);
  const extra = takesDevice ? rest.slice(1) : rest;
  if (extra.length > 0) return fail(`unexpected argument '${extra[0] ?? ''}'`);

  for (const { spec, name: given } of seen) {
    const applies = spec.scope === null
      || (spec.scope === 'device' && takesDevice)
      || spec.scope === command.kind;
    if (!applies) {
      const what = spec.scope === 'pr-in' ? 'PR IN commands' : spec.scope === 'pr-out' ? 'PR OUT commands' : 'commands on a DEVICE';
      return fail(`${given} applies only to ${what}, not to ${name}`);
    }
  }
  if (command.kind === 'pr-out' && command.needsType && options.type === null) {
    return fail(`${name} needs --prout-type (e.g. --prout-type=we-ro)`);
  }
  return { kind: 'run', command, device: takesDevice ? (rest[0] ?? null) : null, options };
}
