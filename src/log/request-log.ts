/**
 * The log as an observer of the server's events (src/server/events.ts): one line per
 * request at -v, decoded so that "why did my reservation fail?" is answered from the log
 * alone; per-connection errors with who the peer was at the default level.
 *
 * A flood must not flood the log (hardening item 6): at the default level a connection the
 * peer ends before its first request is not logged at all (the C helper is silent too), and
 * the per-connection lines left (errors, refusals) pass through a LogLimiter, which prints
 * the first few per interval and a summary with the count of the rest. From -v on, every
 * event keeps its own line.
 *
 * Reservation keys are credentials (whoever knows a key can preempt with it), so they are
 * shown as a short fingerprint by default (#3f2a: the first 16 bits of its SHA-256; equal
 * keys give equal fingerprints) and in full only with --log-keys.
 */
import { Opcode } from '../scsi/constants.js';
import {
  describeSense, opcodeName, reservationTypeName, scopeName, serviceActionName, statusName,
} from '../scsi/names.js';
import type { PrRequest } from '../protocol/session.js';
import type { ConnectionInfo, DeviceInfo, PeerCredentials, ServerEvent, ServerObserver } from '../server/events.js';
import type { ScsiOutcome } from '../scsi/constants.js';
import type { Logger } from './logger.js';
import { DEFAULT_LIMITS, LogLimiter, type LimitedEvent, type Limits } from './limiter.js';
import { nodeCrypto } from '../util/builtins.js';
import { monotonicMs } from '../util/clock.js';

export interface RequestLogOptions {
  /** Print reservation keys in full instead of fingerprints. */
  showKeys: boolean;
  /** How much the default level prints per interval (DEFAULT_LIMITS). */
  limits?: Limits;
}

/** Time for the limiter, and a timer that must not keep the process alive. */
export interface LogClock {
  now(): number;
  later(ms: number, run: () => void): void;
}

const realClock: LogClock = {
  now: monotonicMs,
  later(ms, run) {
    setTimeout(run, ms).unref();
  },
};

type ClosedEvent = Extract<ServerEvent, { type: 'closed' }>;
type RefusedEvent = Extract<ServerEvent, { type: 'refused' }>;

/** A line for the limiter: its text and the Logger method that prints it. */
export interface LogLine {
  level: 'error' | 'warning';
  text: string;
}

const hex = (bytes: Uint8Array): string => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');

export function formatKey(key: Uint8Array, showKeys: boolean): string {
  if (key.every((b) => b === 0)) return '0';
  if (showKeys) return `0x${hex(key)}`;
  return `#${nodeCrypto().createHash('sha256').update(key).digest('hex').slice(0, 4)}`;
}

export function formatPeer(peer: PeerCredentials | null): string {
  return peer === null ? 'peer unknown' : `pid ${peer.pid} uid ${peer.uid} gid ${peer.gid}`;
}

export function formatConnection(connection: ConnectionInfo): string {
  return `connection ${connection.id} (${formatPeer(connection.peer)})`;
}

export function formatDevice(device: DeviceInfo | null): string {
  if (device === null) return 'fd of unknown kind';
  const access = device.access === null ? '' : `, ${device.access}`;
  if (device.major === null) return `${device.kind} fd${access}`;
  const parts = [`${device.major}:${device.minor}`];
  if (device.id) parts.push(device.id);
  return `${device.name ?? `${device.kind} device`} (${parts.join(', ')}${access})`;
}

/** "PERSISTENT RESERVE OUT RESERVE, LU, Write Exclusive, key #3f2a". */
export function formatCommand(request: PrRequest, showKeys: boolean): string {
  const { cdb, parameters } = request;
  const sa = (cdb[1] ?? 0) & 0x1f;
  if (request.opcode === Opcode.PERSISTENT_RESERVE_IN) {
    return `${opcodeName(request.opcode)} ${serviceActionName(request.opcode, sa)}, allocation length ${request.transferLength}`;
  }
  if (request.opcode !== Opcode.PERSISTENT_RESERVE_OUT) return opcodeName(request.opcode);
  const parts = [`${opcodeName(request.opcode)} ${serviceActionName(request.opcode, sa)}`];
  const scope = (cdb[2] ?? 0) >> 4;
  const type = (cdb[2] ?? 0) & 0x0f;
  // RESERVE, RELEASE, PREEMPT and PREEMPT AND ABORT name a reservation; the others ignore it.
  if ([1, 2, 4, 5].includes(sa)) parts.push(`${scopeName(scope)}, ${reservationTypeName(type)}`);
  if (parameters.length >= 24) {
    parts.push(`key ${formatKey(parameters.subarray(0, 8), showKeys)}`);
    if ([0, 4, 5, 6, 7].includes(sa)) parts.push(`service action key ${formatKey(parameters.subarray(8, 16), showKeys)}`);
    const flags = parameters[20] ?? 0;
    const names = [[0x08, 'SPEC_I_PT'], [0x04, 'ALL_TG_PT'], [0x01, 'APTPL']] as const;
    const set = names.filter(([bit]) => (flags & bit) !== 0).map(([, name]) => name);
    if (set.length > 0) parts.push(set.join(' '));
  } else {
    parts.push(`${parameters.length}-byte parameter list`);
  }
  return parts.join(', ');
}

/** "CHECK CONDITION, ILLEGAL REQUEST: INVALID FIELD IN CDB (05/24/00)". */
export function formatOutcome(outcome: ScsiOutcome): string {
  const sense = outcome.status === 0x02 ? describeSense(outcome.sense) : null;
  return sense === null ? statusName(outcome.status) : `${statusName(outcome.status)}, ${sense}`;
}

export function formatResponseLine(event: Extract<ServerEvent, { type: 'response' }>, showKeys: boolean): string {
  const { request, outcome } = event;
  const dataIn = request.opcode === Opcode.PERSISTENT_RESERVE_OUT ? `${request.parameters.length} bytes of parameters, ` : '';
  const dataOut = request.opcode === Opcode.PERSISTENT_RESERVE_IN ? `${outcome.data.length} bytes of data, ` : '';
  return `${formatConnection(event.connection)}: ${formatDevice(event.device)}: ${formatCommand(request, showKeys)}: ` +
    `${formatOutcome(outcome)}; ${dataIn}${dataOut}${event.elapsedMs.toFixed(2)} ms`;
}

/**
 * The peer went away before sending a whole request: a connect-and-close, a reset, or a
 * broken pipe on the greeting. Not an end of file inside a request (Session's "Unexpected
 * end-of-file ..." reasons, pinned by test/unit/request-log.test.ts): that one is kept.
 */
export function goneBeforeFirstRequest(event: ClosedEvent): boolean {
  return event.peerGone && event.requests === 0 && !(event.reason?.startsWith('Unexpected end-of-file') ?? false);
}

/** A reason with its numbers (opcodes, lengths, fds) blanked: the kind it is counted under. */
export function reasonKind(reason: string): string {
  return reason.replace(/0x[0-9a-f]+/gi, '0x#').replace(/\d+/g, '#');
}

const seconds = (limits: Limits): string => `${limits.intervalMs / 1000} s`;

export function refusedLine(event: RefusedEvent, limits: Limits): LimitedEvent<LogLine> {
  const { peer } = event;
  const from = peer === null ? 'whose credentials cannot be read' : `from uid ${peer.uid} gid ${peer.gid}`;
  return {
    kind: peer === null ? 'refused' : `refused ${peer.uid} ${peer.gid}`,
    line: { level: 'warning', text: `Refused a connection from ${formatPeer(peer)}: ${event.reason}` },
    summary: (count) => ({
      level: 'warning',
      text: `Refused ${count} more connection(s) ${from} in the last ${seconds(limits)} (--allow-uid/--allow-gid)`,
    }),
  };
}

export function closedLine(event: ClosedEvent & { reason: string }, limits: Limits): LimitedEvent<LogLine> {
  return {
    kind: `closed ${reasonKind(event.reason)}`,
    line: { level: 'error', text: `${event.reason} [${formatConnection(event.connection)}]` },
    summary: (count, example) => ({
      level: 'error',
      text: `${count} more connection(s) closed with errors like this in the last ${seconds(limits)}, e.g. ${example.text}`,
    }),
  };
}

export function overflowLine(count: number, limits: Limits): LogLine {
  return {
    level: 'warning',
    text: `${count} more refused connection(s) and connection error(s) of other kinds in the last ${seconds(limits)}`,
  };
}

export class RequestLog implements ServerObserver {
  readonly #log: Logger;
  readonly #options: RequestLogOptions;
  readonly #limits: Limits;
  readonly #clock: LogClock;
  readonly #limiter: LogLimiter<LogLine>;
  #timerSet = false;

  constructor(log: Logger, options: RequestLogOptions, clock: LogClock = realClock) {
    this.#log = log;
    this.#options = options;
    this.#limits = options.limits ?? DEFAULT_LIMITS;
    this.#clock = clock;
    this.#limiter = new LogLimiter(this.#limits, (count) => overflowLine(count, this.#limits));
  }

  /** Prints any summary still held back (at shutdown: the process may end before the timer). */
  flush(): void {
    this.#print(this.#limiter.flush(Infinity));
  }

  /**
   * A per-event error from outside the event stream (a failed accept, a libmpathpersist
   * message), limited like the rest: counted under its reason with the numbers blanked.
   */
  error(text: string): void {
    this.#outside('error', text);
  }

  /** A per-event warning from outside the event stream (a correction made on a guest's behalf), limited like error(). */
  warning(text: string): void {
    this.#outside('warning', text);
  }

  #outside(level: LogLine['level'], text: string): void {
    this.#limited({
      kind: `${level} ${reasonKind(text)}`,
      line: { level, text },
      summary: (count, example) => ({
        level, text: `${count} more ${level}(s) like this in the last ${seconds(this.#limits)}, e.g. ${example.text}`,
      }),
    });
  }

  /** At -v and above every event has its line; below, per-connection lines are limited. */
  #limited(event: LimitedEvent<LogLine>): void {
    if (this.#log.verbosity >= 2) {
      this.#print([event.line]);
      return;
    }
    if (this.#log.verbosity < 1) return;
    this.#print(this.#limiter.offer(this.#clock.now(), event));
    this.#armTimer();
  }

  /** Summaries are due at the interval's end even when the flood has stopped by then. */
  #armTimer(): void {
    const due = this.#limiter.due;
    if (due === null || this.#timerSet) return;
    this.#timerSet = true;
    this.#clock.later(Math.max(1, due - this.#clock.now()), () => {
      this.#timerSet = false;
      this.#print(this.#limiter.flush(this.#clock.now()));
      // Woken a little early (timers round to whole ms): try again.
      this.#armTimer();
    });
  }

  #print(lines: readonly LogLine[]): void {
    for (const line of lines) {
      if (line.level === 'error') this.#log.error(line.text);
      else this.#log.warning(line.text);
    }
  }

  get wantsDevices(): boolean {
    return this.#log.verbosity >= 2;
  }

  /** Response lines from -v on, CDB lines from -vv. */
  get wantsRequests(): boolean {
    return this.#log.verbosity >= 2;
  }

  notify(event: ServerEvent): void {
    switch (event.type) {
      case 'listening':
        this.#log.info(`Listening on ${event.path ?? 'the socket passed by systemd (fd 3)'}, backlog ${event.backlog}`);
        return;
      case 'accepted':
        this.#log.info(`${formatConnection(event.connection)}: accepted`);
        return;
      case 'refused':
        this.#limited(refusedLine(event, this.#limits));
        return;
      case 'request':
        // Formatting costs more than the request itself: only when the line is printed.
        if (this.#log.verbosity < 3) return;
        this.#log.debug(`${formatConnection(event.connection)}: CDB ${hex(event.request.cdb)}` +
          (event.request.parameters.length > 0 ? `, parameters ${hex(event.request.parameters)}` : ''));
        return;
      case 'response':
        if (this.#log.verbosity < 2) return;
        this.#log.info(formatResponseLine(event, this.#options.showKeys));
        return;
      case 'closed':
        if (event.reason === null) {
          this.#log.info(`${formatConnection(event.connection)}: closed after ${event.requests} request(s)`);
        } else if (goneBeforeFirstRequest(event)) {
          this.#log.info(`${event.reason} [${formatConnection(event.connection)}]`);
        } else {
          this.#limited(closedLine({ ...event, reason: event.reason }, this.#limits));
        }
    }
  }
}
