/**
 * GNU getopt_long, as glibc 2.36 behaves for the helper's option table (spec §1.1):
 * permutation (unless POSIXLY_CORRECT), clustered short options, attached or separate
 * arguments, `--name=value` and `--name value`, unambiguous prefixes of long names, `--`
 * ending the options, and glibc's exact error texts. Pure: it only returns events.
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

export interface GetoptSpec {
  /** getopt short option string, e.g. "hVk:" (a letter followed by ':' takes an argument). */
  shortOptions: string;
  longOptions: readonly LongOption[];
  /** argv[0], which glibc puts in front of its messages. */
  program: string;
  /** POSIXLY_CORRECT: stop at the first non-option instead of skipping it. */
  posixlyCorrect?: boolean;
}

function shortTakesArg(shortOptions: string, c: string): boolean | null {
  if (c === ':') return null;
  const i = shortOptions.indexOf(c);
  if (i < 0) return null;
  return shortOptions[i + 1] === ':';
}

/**
 * Yields options in command-line order; the first error ends the scan (the helper exits
 * on it). Non-option arguments are skipped (the reference ignores them).
 */
export function* getoptLong(args: readonly string[], spec: GetoptSpec): Generator<GetoptEvent> {
  const { program } = spec;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === '--') return;
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
          yield { kind: 'error', message: `${program}: option '--${body}' is ambiguous; possibilities:${list}` };
          return;
        }
        found = matches[0];
      }
      if (!found) {
        yield { kind: 'error', message: `${program}: unrecognized option '--${body}'` };
        return;
      }
      if (eq >= 0) {
        if (!found.hasArg) {
          yield { kind: 'error', message: `${program}: option '--${found.name}' doesn't allow an argument` };
          return;
        }
        yield { kind: 'option', key: found.key, arg: body.slice(eq + 1) };
      } else if (found.hasArg) {
        if (i + 1 >= args.length) {
          yield { kind: 'error', message: `${program}: option '--${found.name}' requires an argument` };
          return;
        }
        i++;
        yield { kind: 'option', key: found.key, arg: args[i] ?? '' };
      } else {
        yield { kind: 'option', key: found.key, arg: null };
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const c = arg[j] ?? '';
        const takesArg = shortTakesArg(spec.shortOptions, c);
        if (takesArg === null) {
          yield { kind: 'error', message: `${program}: invalid option -- '${c}'` };
          return;
        }
        if (!takesArg) {
          yield { kind: 'option', key: c, arg: null };
          continue;
        }
        if (j + 1 < arg.length) {
          yield { kind: 'option', key: c, arg: arg.slice(j + 1) };
        } else if (i + 1 < args.length) {
          i++;
          yield { kind: 'option', key: c, arg: args[i] ?? '' };
        } else {
          yield { kind: 'error', message: `${program}: option requires an argument -- '${c}'` };
          return;
        }
        break;
      }
      continue;
    }
    // A non-option argument ("FILE" in the usage line): ignored, like the reference.
    if (spec.posixlyCorrect) return;
  }
}
