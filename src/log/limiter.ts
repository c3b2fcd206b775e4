/**
 * Bounds how many lines a flood of per-connection events can print (hardening item 6): per
 * interval, at most `perKind` lines of one kind and `total` lines in all; what is over is
 * counted, and when the interval ends one summary line per kind says how many there were.
 * Kinds with a count are capped at `maxKinds`; further kinds share one overflow count. So an
 * interval prints at most `total + maxKinds + 1` lines, however many peers or reasons.
 *
 * Pure: the caller passes the time (any monotonic milliseconds) and prints what comes back;
 * RequestLog owns the timer that flushes a summary when no later event comes to carry it.
 */

export interface Limits {
  /** Length of an interval, from its first event. */
  intervalMs: number;
  /** Lines printed per kind and interval. */
  perKind: number;
  /** Lines printed per interval, all kinds together. */
  total: number;
  /** Kinds counted separately per interval; the rest share the overflow summary. */
  maxKinds: number;
}

export const DEFAULT_LIMITS: Limits = { intervalMs: 10_000, perKind: 10, total: 20, maxKinds: 8 };

export interface LimitedEvent<Line> {
  /** What groups events: the same kind, the same summary (no counters or pids in it). */
  kind: string;
  /** The line as printed when within the limits. */
  line: Line;
  /** The summary of `count` events of this kind held back; `example` is the first one's line. */
  summary(count: number, example: Line): Line;
}

interface Held<Line> {
  count: number;
  example: Line;
  summary: LimitedEvent<Line>['summary'];
}

/** `Line` is whatever the caller prints: a string, or a message with its priority. */
export class LogLimiter<Line> {
  readonly #limits: Limits;
  readonly #overflow: (count: number) => Line;
  /** End of the current interval; null until an event opens one. */
  #end: number | null = null;
  #printed = 0;
  /** Lines printed per kind: at most `total` keys, since each has printed one. */
  readonly #printedByKind = new Map<string, number>();
  /** Counts held back per kind: at most `maxKinds` keys. */
  readonly #held = new Map<string, Held<Line>>();
  #overflowCount = 0;

  constructor(limits: Limits, overflow: (count: number) => Line) {
    this.#limits = limits;
    this.#overflow = overflow;
  }

  /** The lines to print now: the summaries of an interval that has ended, then the event's own. */
  offer(now: number, event: LimitedEvent<Line>): Line[] {
    const lines = this.flush(now);
    this.#end ??= now + this.#limits.intervalMs;
    const printed = this.#printedByKind.get(event.kind) ?? 0;
    if (printed < this.#limits.perKind && this.#printed < this.#limits.total) {
      this.#printedByKind.set(event.kind, printed + 1);
      this.#printed++;
      lines.push(event.line);
      return lines;
    }
    const held = this.#held.get(event.kind);
    if (held) held.count++;
    else if (this.#held.size < this.#limits.maxKinds) {
      this.#held.set(event.kind, { count: 1, example: event.line, summary: event.summary });
    } else this.#overflowCount++;
    return lines;
  }

  /** Summaries of the current interval if it has ended by `now` (which starts afresh), else none. */
  flush(now: number): Line[] {
    if (this.#end === null || now < this.#end) return [];
    const lines = [...this.#held.values()].map((h) => h.summary(h.count, h.example));
    if (this.#overflowCount > 0) lines.push(this.#overflow(this.#overflowCount));
    this.#end = null;
    this.#printed = 0;
    this.#printedByKind.clear();
    this.#held.clear();
    this.#overflowCount = 0;
    return lines;
  }

  /** When a summary is due (the end of the interval), or null when nothing is held back. */
  get due(): number | null {
    return this.#held.size > 0 || this.#overflowCount > 0 ? this.#end : null;
  }
}
