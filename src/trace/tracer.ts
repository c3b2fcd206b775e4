/**
 * The trace points: an observer of the server's event stream (src/server/events.ts) and of
 * the SG_IO pool's submissions (src/exec/sgio-pool.ts), writing one line per enabled event
 * in the format of QEMU's log backend (src/trace/events.ts) to stderr or to the -T file=.
 *
 * Writes never throw: a full disk, a closed pipe (EPIPE) or a non-blocking pipe that is
 * full (EAGAIN) loses the line, never the helper.
 */
import { writeSync } from 'node:fs';
import type { ServerEvent, ServerObserver, PeerCredentials } from '../server/events.js';
import type { SgIoJobInfo, SgIoPoolHooks } from '../exec/sgio-pool.js';
import type { SgIoResult } from '../sys/sgio.js';
import { interpretSgIo } from '../scsi/sgio-status.js';
import { decodeSense } from '../scsi/sense.js';
import { NIL, hexByte, pointerLike, quoted, traceLine, type TraceEventName } from './events.js';
import { monotonicMs } from '../util/clock.js';

export interface TraceSink {
  write(text: string): void;
}

/** stderr, as the log backend writes without file= (main ignores EPIPE on the stream). */
export const stderrTraceSink: TraceSink = {
  write(text) {
    try {
      process.stderr.write(text);
    } catch {
      // stderr is gone
    }
  },
};

/** The -T file=, already open on `fd`. */
export function fileTraceSink(fd: number): TraceSink {
  return {
    write(text) {
      try {
        writeSync(fd, text);
      } catch {
        // the line is lost; tracing must never cost a request
      }
    },
  };
}

function peerFields(peer: PeerCredentials | null): string {
  return peer === null ? 'pid=-1 uid=-1 gid=-1' : `pid=${peer.pid} uid=${peer.uid} gid=${peer.gid}`;
}

function micros(ms: number): number {
  return Math.round(ms * 1000);
}

export class Tracer implements ServerObserver {
  readonly wantsDevices = false;
  readonly #enabled: ReadonlySet<string>;
  readonly #sink: TraceSink;
  readonly #now: () => number;
  /** When each SG_IO job was submitted (monotonicMs()), for prh_sgio_complete. */
  readonly #submittedAt = new Map<number, number>();

  constructor(enabled: ReadonlySet<string>, sink: TraceSink, now: () => number = () => monotonicMs()) {
    this.#enabled = enabled;
    this.#sink = sink;
    this.#now = now;
  }

  /** Request-level trace points need every request's events, which the fast path does not report. */
  get wantsRequests(): boolean {
    const names: TraceEventName[] = [
      'prh_request', 'prh_response', 'thread_pool_submit', 'thread_pool_complete', 'prh_sgio_submit', 'prh_sgio_complete',
    ];
    return names.some((name) => this.#on(name));
  }

  #on(name: TraceEventName): boolean {
    return this.#enabled.has(name);
  }

  #emit(name: TraceEventName, message: string): void {
    if (this.#enabled.has(name)) this.#sink.write(traceLine(name, message));
  }

  notify(event: ServerEvent): void {
    switch (event.type) {
      case 'listening':
        if (event.path === null) {
          this.#emit('qio_channel_socket_new_fd', `Socket new ioc=${NIL} fd=${event.fd}`);
        } else {
          this.#emit('socket_listen', `backlog: ${event.backlog}`);
          this.#emit('qio_channel_socket_listen_complete', `Socket listen complete ioc=${NIL} fd=${event.fd}`);
        }
        if (this.#on('prh_listening')) {
          this.#emit('prh_listening',
            `fd=${event.fd} backlog=${event.backlog} path=${event.path === null ? '(systemd)' : quoted(event.path)}`);
        }
        return;
      case 'accepted': {
        const { connection } = event;
        this.#emit('qio_channel_socket_accept_complete', `Socket accept complete ioc=${NIL} cioc=${NIL} fd=${connection.fd}`);
        if (this.#on('prh_connection_accepted')) {
          this.#emit('prh_connection_accepted', `conn=${connection.id} fd=${connection.fd} ${peerFields(connection.peer)}`);
        }
        return;
      }
      case 'refused':
        this.#emit('qio_channel_socket_accept_complete', `Socket accept complete ioc=${NIL} cioc=${NIL} fd=${event.fd}`);
        if (this.#on('prh_connection_refused')) {
          this.#emit('prh_connection_refused', `fd=${event.fd} ${peerFields(event.peer)} reason=${quoted(event.reason)}`);
        }
        return;
      case 'request':
        if (this.#on('prh_request')) {
          const { request } = event;
          this.#emit('prh_request', `conn=${event.connection.id} fd=${request.fd} opcode=${hexByte(request.opcode)} ` +
            `sa=${hexByte((request.cdb[1] ?? 0) & 0x1f)} xfer=${request.transferLength}`);
        }
        return;
      case 'response':
        if (this.#on('prh_response')) {
          const { outcome } = event;
          const code = decodeSense(outcome.sense);
          const sense = code === null ? 'none'
            : [code.key, code.asc, code.ascq].map((b) => b.toString(16).padStart(2, '0')).join('/');
          this.#emit('prh_response', `conn=${event.connection.id} status=${hexByte(outcome.status)} sense=${sense} ` +
            `data=${outcome.data.length} bytes=${event.bytesOut} us=${micros(event.elapsedMs)}`);
        }
        return;
      case 'closed':
        if (this.#on('prh_connection_closed')) {
          this.#emit('prh_connection_closed', `conn=${event.connection.id} requests=${event.requests} ` +
            `reason=${event.reason === null ? 'eof' : quoted(event.reason)}`);
        }
    }
  }

  /** Hooks for the SG_IO pool, or null when none of its events is enabled. */
  poolHooks(): SgIoPoolHooks | null {
    const names: TraceEventName[] = ['thread_pool_submit', 'thread_pool_complete', 'prh_sgio_submit', 'prh_sgio_complete'];
    if (!names.some((name) => this.#on(name))) return null;
    return {
      submitted: (job) => this.#submitted(job),
      completed: (job, result) => this.#completed(job, result),
    };
  }

  #submitted(job: SgIoJobInfo): void {
    this.#submittedAt.set(job.id, this.#now());
    this.#emit('thread_pool_submit', `pool ${NIL} req ${pointerLike(job.id)} opaque ${NIL}`);
    if (this.#on('prh_sgio_submit')) {
      const { command } = job;
      const cdb = [...command.cdb].map((b) => b.toString(16).padStart(2, '0')).join('');
      this.#emit('prh_sgio_submit', `req=${pointerLike(job.id)} fd=${job.fd} cdb=${cdb} dir=${command.direction} ` +
        `len=${command.transferLength} timeout_ms=${command.timeoutMs}`);
    }
  }

  #completed(job: SgIoJobInfo, result: SgIoResult | null): void {
    const started = this.#submittedAt.get(job.id);
    this.#submittedAt.delete(job.id);
    // QEMU's ret is what its worker returns: the SCSI status the outcome maps to.
    const ret = result === null ? -1 : interpretSgIo(result).status;
    this.#emit('thread_pool_complete', `pool ${NIL} req ${pointerLike(job.id)} opaque ${NIL} ret ${ret}`);
    if (this.#on('prh_sgio_complete')) {
      const us = started === undefined ? -1 : micros(this.#now() - started);
      const fields = result === null ? 'failed=1'
        : `errno=${result.error ?? 0} status=${hexByte(result.status)} host=${hexByte(result.hostStatus)} ` +
          `driver=${hexByte(result.driverStatus)} resid=${result.resid}`;
      this.#emit('prh_sgio_complete', `req=${pointerLike(job.id)} fd=${job.fd} ${fields} us=${us}`);
    }
  }
}
