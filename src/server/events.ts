/**
 * What the server reports while it runs, as typed events: the log (src/log) and the trace
 * points (src/trace) are both observers of this one stream, so that neither needs hooks of
 * its own in the connection code. Observers must not throw and must not keep the fds.
 */
import type { PrRequest } from '../protocol/session.js';
import type { ScsiOutcome } from '../scsi/constants.js';
import type { PeerCredentials } from '../sys/socket.js';

export type { PeerCredentials };

export interface ConnectionInfo {
  /** Sequence number of the connection since start-up (1, 2, ...). */
  id: number;
  /** The accepted socket's fd. */
  fd: number;
  peer: PeerCredentials | null;
}

/** The device behind a request's fd, as far as it could be read. */
export interface DeviceInfo {
  /** "block", "char", "file", "socket", "pipe", "dir" or "other". */
  kind: string;
  major: number | null;
  minor: number | null;
  /** Kernel name from /sys (sdb, dm-3, sg1), or null. */
  name: string | null;
  /** World-wide name or serial from /sys, or null. */
  id: string | null;
  access: 'read-only' | 'write-only' | 'read-write' | null;
}

export type ServerEvent =
  | { type: 'listening'; fd: number; path: string | null; backlog: number }
  | { type: 'accepted'; connection: ConnectionInfo }
  | { type: 'refused'; fd: number; peer: PeerCredentials | null; reason: string }
  | { type: 'request'; connection: ConnectionInfo; request: PrRequest; device: DeviceInfo | null }
  | {
    type: 'response'; connection: ConnectionInfo; request: PrRequest; device: DeviceInfo | null;
    outcome: ScsiOutcome; bytesOut: number; elapsedMs: number;
  }
  /**
   * The connection ended: `reason` says why when it was not a clean end of file.
   * `peerGone` is true when the peer ended it (end of file at any point, or a reset or
   * broken pipe on the socket), as opposed to a protocol violation or an internal error.
   */
  | { type: 'closed'; connection: ConnectionInfo; reason: string | null; requests: number; peerGone: boolean };

export interface ServerObserver {
  /** True when request events should carry DeviceInfo (costs a few /sys reads). */
  readonly wantsDevices: boolean;
  /**
   * True when request and response events are used (request log lines, trace points). Off,
   * requests may be served on the fast path, which reports none (src/server/fast-path.ts).
   */
  readonly wantsRequests?: boolean;
  notify(event: ServerEvent): void;
}

/** Fans one event stream out to several observers; a throwing observer is skipped. */
export function combineObservers(observers: readonly ServerObserver[]): ServerObserver {
  return {
    wantsDevices: observers.some((o) => o.wantsDevices),
    wantsRequests: observers.some((o) => o.wantsRequests === true),
    notify(event) {
      for (const observer of observers) {
        try {
          observer.notify(event);
        } catch {
          // An observer bug must not cost a connection.
        }
      }
    },
  };
}
