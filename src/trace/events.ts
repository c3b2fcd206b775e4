/**
 * The trace points this helper defines, in the order `-T help` lists them, and the text of
 * each line. Lines follow QEMU's log backend: `<event_name> <formatted message>`.
 *
 * Where an event means what one of the reference's does, it has the reference's name and
 * message format (docs/protocol.md §7.2). QEMU prints object pointers there (`ioc=0x55f4...`); we have
 * no such objects, so those fields print as glibc prints a null pointer, `(nil)`, except
 * `req` of the thread-pool events, which carries the SG_IO job's number so that a submit
 * and its completion pair up. Our own events start with `prh_` and use key=value fields.
 */

/** Every event name, in `-T help` order. */
export const TRACE_EVENT_NAMES = [
  // the reference's names (in the order of its own list)
  'qio_channel_socket_new_fd',
  'qio_channel_socket_listen_complete',
  'qio_channel_socket_accept_complete',
  'thread_pool_submit',
  'thread_pool_complete',
  'socket_listen',
  // ours
  'prh_listening',
  'prh_connection_accepted',
  'prh_connection_refused',
  'prh_request',
  'prh_sgio_submit',
  'prh_sgio_complete',
  'prh_response',
  'prh_connection_closed',
] as const;

export type TraceEventName = (typeof TRACE_EVENT_NAMES)[number];

/** One line of the log backend. */
export function traceLine(name: TraceEventName, message: string): string {
  return `${name} ${message}\n`;
}

/** glibc's `%p` of a null pointer. */
export const NIL = '(nil)';

/** `%#x` as QEMU's `%p` prints a non-null pointer. */
export function pointerLike(value: number): string {
  return `0x${value.toString(16)}`;
}

/** `0x%02x`. */
export function hexByte(value: number): string {
  return `0x${value.toString(16).padStart(2, '0')}`;
}

/** A free-text field: quoted so that spaces cannot be taken for the next field. */
export function quoted(text: string): string {
  return JSON.stringify(text);
}
