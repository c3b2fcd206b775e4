/**
 * GNU getopt_long, as glibc 2.36 behaves (docs/protocol.md §1.1): permutation (unless POSIXLY_CORRECT),
 * clustered short options, attached or separate arguments, `--name=value` and `--name
 * value`, unambiguous prefixes of long names, `--` ending the options, and glibc's exact
 * error texts. The helper's command line and the diagnostic client's both use it. Pure: it
 * only returns events.
 */

export interface LongOption {
  name: string;
  hasArg: boolean;
  /** The short option letter (or key) it stands for. */
  key: string;
}

export type GetoptEvent =
  | { kind: 'option'; key: string; arg: string | null }
  | { kind: 'error'; message: string };

export interface ScanSpec {
  /** getopt short option string, e.g. "hVk:" (a letter followed by ':' takes an argument). */
  shortOptions: string;
  longOptions: readonly LongOption[];
  /** POSIXLY_CORRECT: stop at the first non-option instead of skipping it. */
  posixlyCorrect?: boolean;
}

export interface GetoptSpec extends ScanSpec {
  /** argv[0], which glibc puts in front of its messages. */
  program: string;
}

/**
 * One step of a scan, with what a getopt_long caller can also learn: how the option was
 * named (from longindex), and the operands (argv[optind..] once getopt returns -1).
 */
export type ScanEvent =
  /** `name`: `-k` for a short option; the full long name, `--socket`, also for `--sock`. */
  | { kind: 'option'; key: string; arg: string | null; name: string }
  /** A non-option argument, in order; all the arguments after `--` are operands. */
  | { kind: 'operand'; arg: string }
  /** glibc's message, without the `argv[0]: ` it is printed after. */
  | { kind: 'error'; text: string };

function shortTakesArg(shortOptions: string, c: string): boolean | null {
  if (c === ':') return null;
  const i = shortOptions.indexOf(c);
  if (i < 0) return null;
  return shortOptions[i + 1] === ':';
}

/** Yields options and operands in command-line order; the first error ends the scan. */
export function* scanArguments(args: readonly string[], spec: ScanSpec): Generator<ScanEvent> {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === '--') {
      for (const operand of args.slice(i + 1)) yield { kind: 'operand', arg: operand };
      return;
    }
    if (arg.startsWith('--')) {
      const body = arg.slice(2);
      const eq = body.indexOf('=');
      const name = eq < 0 ? body : body.slice(0, eq);
      const exact = spec.longOptions.find((o) => o.name === name);
      let found = exact;
      if (!found) {
        const matches = spec.longOptions.filter((o) => o.name.startsWith(name));
        const distinct = matches.filter((o, k) =>
          matches.findIndex((p) => p.key === o.key && p.hasArg === o.hasArg) === k);
        if (distinct.length > 1) {
          const list = matches.map((o) => ` '--${o.name}'`).join('');
          yield { kind: 'error', text: `option '--${body}' is ambiguous; possibilities:${list}` };
          return;
        }
        found = matches[0];
      }
      if (!found) {
        yield { kind: 'error', text: `unrecognized option '--${body}'` };
        return;
      }
      const long = `--${found.name}`;
      if (eq >= 0) {
        if (!found.hasArg) {
          yield { kind: 'error', text: `option '${long}' doesn't allow an argument` };
          return;
        }
        yield { kind: 'option', key: found.key, arg: body.slice(eq + 1), name: long };
      } else if (found.hasArg) {
        if (i + 1 >= args.length) {
          yield { kind: 'error', text: `option '${long}' requires an argument` };
          return;
        }
        i++;
        yield { kind: 'option', key: found.key, arg: args[i] ?? '', name: long };
      } else {
        yield { kind: 'option', key: found.key, arg: null, name: long };
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const c = arg[j] ?? '';
        const takesArg = shortTakesArg(spec.shortOptions, c);
        if (takesArg === null) {
          yield { kind: 'error', text: `invalid option -- '${c}'` };
          return;
        }
        if (!takesArg) {
          yield { kind: 'option', key: c, arg: null, name: `-${c}` };
          continue;
        }
        if (j + 1 < arg.length) {
          yield { kind: 'option', key: c, arg: arg.slice(j + 1), name: `-${c}` };
        } else if (i + 1 < args.length) {
          i++;
          yield { kind: 'option', key: c, arg: args[i] ?? '', name: `-${c}` };
        } else {
          yield { kind: 'error', text: `option requires an argument -- '${c}'` };
          return;
        }
        break;
      }
      continue;
    }
    // A non-option argument ("FILE" in the helper's usage line). With POSIXLY_CORRECT it
    // ends the options: it and everything after it are operands.
    if (spec.posixlyCorrect) {
      for (const operand of args.slice(i)) yield { kind: 'operand', arg: operand };
      return;
    }
    yield { kind: 'operand', arg };
  }
}

/**
 * getopt_long's loop for the helper: options in command-line order, and the first error,
 * as glibc prints it, ends the scan (the helper exits on it). Operands are skipped: the
 * reference ignores them.
 */
export function* getoptLong(args: readonly string[], spec: GetoptSpec): Generator<GetoptEvent> {
  for (const ev of scanArguments(args, spec)) {
    if (ev.kind === 'error') {
      yield { kind: 'error', message: `${spec.program}: ${ev.text}` };
      return;
    }
    if (ev.kind === 'option') yield { kind: 'option', key: ev.key, arg: ev.arg };
  }
}
