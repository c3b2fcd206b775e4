/**
 * `-T [enable=]PATTERN[,events=FILE][,file=FILE]`, exactly as QEMU 7.2 parses and applies
 * it (docs/protocol.md §7.1): QemuOpts syntax (util/qemu-option.c), then trace_opt_parse,
 * trace_enable_events and trace_init_events (trace/control.c). Pure: the events file is
 * read through the context, and every message is returned as text.
 *
 * Deliberate differences from the reference:
 * - events=FILE: QEMU chops the last character of every line, so a final line without a
 *   newline loses a real character (`socket_listen` becomes `socket_liste`, docs/protocol.md §9 item
 *   21). Here only a real newline is removed. Lines are also not split at 1023 bytes (QEMU
 *   reads them with fgets into a 1024-byte buffer); no event name comes near that.
 * - file=FILE: the last `file=` given wins. QEMU lets any later `-T` without `file=` send
 *   the trace back to stderr.
 */

/** What all -T options given so far have set up. */
export interface TraceSettings {
  /** Names of the enabled events. */
  readonly enabled: ReadonlySet<string>;
  /** The last file= given, as written (a template: `%d` not yet replaced); null for stderr. */
  readonly file: string | null;
}

export const NO_TRACE: TraceSettings = { enabled: new Set(), file: null };

/** An events= file's contents, or strerror(3) text for why it cannot be read. */
export type EventsFileRead = { kind: 'text'; text: string } | { kind: 'error'; message: string };

export interface TraceContext {
  /** error_report()'s prefix: the program's base name. */
  programName: string;
  /** Every event name, in `-T help` order. */
  events: readonly string[];
  /**
   * Reads an events= file. A directory must read as empty: QEMU's fopen accepts it and its
   * first fgets fails, which ends the loop without an error.
   */
  readFile: (path: string) => EventsFileRead;
}

export type TraceStep =
  /** Applied; `stderr` holds the warnings to print (each line complete). */
  | { kind: 'ok'; settings: TraceSettings; stderr: string }
  /** The process must exit now (help, a listing or an error), after printing these. */
  | { kind: 'exit'; code: number; stdout: string; stderr: string };

/** The keys of QEMU's qemu_trace_opts, in its help order. */
const KEYS = ['enable', 'events', 'file'] as const;
/** QemuOptsList.implied_opt_name of qemu_trace_opts. */
const IMPLIED_KEY = 'enable';

/** One `name=value` element of a QemuOpts string. */
interface Element {
  name: string;
  value: string;
  /** A bare `help` or `?` that is not the implied first element. */
  help: boolean;
  /** The deprecation warning a short-form boolean (`foo`, `nofoo`) gets, or null. */
  warning: string | null;
}

/** QEMU get_opt_value: up to the next single comma; `,,` stands for one comma. */
function optValue(params: string, start: number): { value: string; end: number } {
  let value = '';
  let p = start;
  for (;;) {
    let offset = params.indexOf(',', p);
    if (offset < 0) offset = params.length;
    const escaped = offset < params.length && params[offset + 1] === ',';
    value += params.slice(p, escaped ? offset + 1 : offset);
    if (!escaped) return { value, end: offset };
    p = offset + 2;
  }
}

/** QEMU is_help_option. */
function isHelp(text: string): boolean {
  return text === 'help' || text === '?';
}

/** QEMU get_opt_name_value: the element at `start` and where the next one begins. */
function nextElement(params: string, start: number, implied: string | null): { element: Element; next: number } {
  let len = 0;
  while (start + len < params.length && params[start + len] !== '=' && params[start + len] !== ',') len++;
  let element: Element;
  let end: number;
  if (params[start + len] !== '=') {
    if (implied !== null) {
      // "foo,more" first: the implied key
      const v = optValue(params, start);
      element = { name: implied, value: v.value, help: false, warning: null };
      end = v.end;
    } else {
      // "foo,more" later: a short-form boolean ("nofoo" means foo=off)
      let name = params.slice(start, start + len);
      let prefix = '';
      let value = 'on';
      let help = false;
      if (name.startsWith('no')) {
        name = name.slice(2);
        value = 'off';
        prefix = 'no';
      } else {
        help = isHelp(name);
      }
      const advice = name === 'delay' ? `nodelay=${prefix ? 'on' : 'off'}` : `${name}=${value}`;
      const warning = help ? null
        : `warning: short-form boolean option '${prefix}${name}' deprecated\nPlease use ${advice} instead`;
      element = { name, value, help, warning };
      end = start + len;
    }
  } else {
    // "foo=bar,more"
    const v = optValue(params, start + len + 1);
    element = { name: params.slice(start, start + len), value: v.value, help: false, warning: null };
    end = v.end;
  }
  return { element, next: params[end] === ',' ? end + 1 : end };
}

/** QEMU opts_parse_id: the first `id` element's value (scanned without an implied key). */
function findId(params: string): string | null {
  for (let p = 0; p < params.length;) {
    const { element, next } = nextElement(params, p, null);
    if (element.name === 'id') return element.value;
    p = next;
  }
  return null;
}

/** QEMU id_wellformed. */
function idWellFormed(id: string): boolean {
  return /^[A-Za-z][A-Za-z0-9._-]*$/.test(id);
}

/** g_pattern_match_simple: `*` matches any run of characters, `?` exactly one. */
export function globMatch(pattern: string, name: string): boolean {
  const source = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')));
  return new RegExp(`^${source.join('')}$`, 'su').test(name);
}

/** `-T help`: one event name per line (QEMU trace_list_events). */
export function listEvents(events: readonly string[]): string {
  return events.map((name) => `${name}\n`).join('');
}

/** What a -T string asks for once parsed: the last value of each key. */
interface Parsed {
  enable: string | undefined;
  events: string | undefined;
  file: string | undefined;
}

/** Accumulates stderr text while one -T is applied; `exit` ends the process. */
class Run {
  stderr = '';
  readonly enabled: Set<string>;
  readonly #ctx: TraceContext;

  constructor(enabled: ReadonlySet<string>, ctx: TraceContext) {
    this.enabled = new Set(enabled);
    this.#ctx = ctx;
  }

  exit(code: number, message: string | null, stdout = ''): TraceStep {
    return { kind: 'exit', code, stdout, stderr: message === null ? this.stderr : `${this.stderr}${message}\n` };
  }

  /** error_report() without a location: `<prog>: <message>`. */
  report(message: string): string {
    return `${this.#ctx.programName}: ${message}`;
  }

  /** QemuOpts parsing (opts_parse with permit_abbrev, qemu_opts_parse_noisily). */
  parse(params: string): Parsed | TraceStep {
    const id = findId(params);
    if (id !== null && !idWellFormed(id)) {
      return this.exit(1, `${this.report("Parameter 'id' expects an identifier")}\n` +
        "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.");
    }
    const parsed: Parsed = { enable: undefined, events: undefined, file: undefined };
    let implied: string | null = IMPLIED_KEY;
    for (let p = 0; p < params.length;) {
      const { element, next } = nextElement(params, p, implied);
      p = next;
      implied = null;
      if (element.warning !== null) this.stderr += `${this.report(element.warning)}\n`;
      if (element.help) {
        // qemu_opts_print_help: sorted "  key=<type>" lines, to stdout; then exit(1).
        const lines = KEYS.map((key) => `  ${key}=<str>\n`).sort().join('');
        return this.exit(1, null, `trace options:\n${lines}`);
      }
      if (element.name === 'id') continue;
      const key = KEYS.find((k) => k === element.name);
      if (key === undefined) return this.exit(1, this.report(`Invalid parameter '${element.name}'`));
      parsed[key] = element.value;
    }
    return parsed;
  }

  /**
   * QEMU trace_enable_events: `help` lists the events and exits 0; otherwise a leading `-`
   * disables. With a `*` the text is a pattern and every match is toggled silently;
   * without one, the first match (`?` still matches any one character) is toggled, and no
   * match is a warning. `location` prefixes the warning (error_report's location).
   */
  enableEvents(line: string, location: string): TraceStep | null {
    if (isHelp(line)) return this.exit(0, null, listEvents(this.#ctx.events));
    const enable = !line.startsWith('-');
    const text = enable ? line : line.slice(1);
    const pattern = text.includes('*');
    for (const name of this.#ctx.events) {
      if (!globMatch(text, name)) continue;
      if (enable) this.enabled.add(name);
      else this.enabled.delete(name);
      if (!pattern) return null;
    }
    if (!pattern) this.stderr += `${location}warning: trace event '${text}' does not exist\n`;
    return null;
  }

  /** QEMU trace_init_events, with the last-character fix (see the header). */
  readEventsFile(path: string): TraceStep | null {
    const program = this.#ctx.programName;
    const read = this.#ctx.readFile(path);
    if (read.kind === 'error') return this.exit(1, `${program}:${path}: ${read.message}`);
    const lines = read.text.split('\n');
    // After a final newline, split() leaves an empty string that is no line.
    if (lines[lines.length - 1] === '') lines.pop();
    for (const [index, line] of lines.entries()) {
      if (line === '' || line.startsWith('#')) continue;
      const step = this.enableEvents(line, `${program}:${path}:${index + 1}: `);
      if (step !== null) return step;
    }
    return null;
  }
}

/**
 * Applies one -T argument on top of `settings`, as the reference does while it parses the
 * command line: the whole string is parsed first, then enable=, then events=; file= is
 * remembered (checked and opened after the whole command line, see checkLogfileTemplate).
 */
export function applyTraceOption(settings: TraceSettings, optarg: string, ctx: TraceContext): TraceStep {
  const run = new Run(settings.enabled, ctx);
  const parsed = run.parse(optarg);
  if ('kind' in parsed) return parsed;
  if (parsed.enable !== undefined) {
    const step = run.enableEvents(parsed.enable, `${ctx.programName}: `);
    if (step !== null) return step;
  }
  if (parsed.events !== undefined) {
    const step = run.readEventsFile(parsed.events);
    if (step !== null) return step;
  }
  return { kind: 'ok', settings: { enabled: run.enabled, file: parsed.file ?? settings.file }, stderr: run.stderr };
}

/**
 * QEMU valid_filename_template: at most one `%`, and it must start `%d`. Returns the error
 * message, or null when the template is good.
 */
export function checkLogfileTemplate(file: string): string | null {
  const percent = file.indexOf('%');
  if (percent < 0) return null;
  if (file[percent + 1] !== 'd' || file.includes('%', percent + 2)) return `Bad logfile template: ${file}`;
  return null;
}

/** The log file's name: its one `%d` (if any) replaced by `pid`. */
export function expandLogfileTemplate(file: string, pid: number): string {
  return file.replace('%d', String(pid));
}
