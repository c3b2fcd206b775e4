/**
 * The trace set-up a later image of the helper inherits (src/cli/main.ts): the -d launcher
 * passes the enabled events to the daemon, and the image that re-executes to drop
 * privileges passes them with the -T file= it opened as root. The later image does not
 * read the events file again: its working directory or its user may no longer allow it,
 * and its warnings were printed once already. Pure: text in, values out.
 */

export const TRACE_HANDOFF_VARIABLE = 'QEMU_PR_HELPER_TRACE';

export interface TraceHandoff {
  /** The enabled events. */
  events: string[];
  /** The open -T file=, or null: stderr (or not opened yet, for the -d daemon). */
  fd: number | null;
}

export class TraceHandoffError extends Error {}

export function encodeTraceHandoff(handoff: TraceHandoff): string {
  return JSON.stringify(handoff);
}

/** Parses and validates; only names in `known` are accepted. */
export function decodeTraceHandoff(text: string, known: readonly string[]): TraceHandoff {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new TraceHandoffError(`${TRACE_HANDOFF_VARIABLE} is not valid JSON`);
  }
  if (typeof raw !== 'object' || raw === null) throw new TraceHandoffError(`${TRACE_HANDOFF_VARIABLE} is not an object`);
  const r = raw as Record<string, unknown>;
  const events = r['events'];
  if (!Array.isArray(events) || !events.every((e): e is string => typeof e === 'string' && known.includes(e))) {
    throw new TraceHandoffError(`${TRACE_HANDOFF_VARIABLE} has an invalid events list`);
  }
  const fd = r['fd'] ?? null;
  if (fd !== null && !(typeof fd === 'number' && Number.isInteger(fd) && fd > 2 && fd < 2 ** 31)) {
    throw new TraceHandoffError(`${TRACE_HANDOFF_VARIABLE} has an invalid fd`);
  }
  return { events, fd };
}
