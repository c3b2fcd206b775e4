/**
 * Framing violations: the connection is closed without a response (docs/protocol.md §3.5). The reason
 * code is stable for tests and logs; the message is what the operator reads.
 */
export type ProtocolErrorReason =
  | 'bad-handshake'
  | 'too-many-fds'
  | 'missing-fd'
  | 'invalid-opcode'
  | 'transfer-too-long'
  | 'eof-in-cdb'
  | 'eof-in-parameters';

export class ProtocolError extends Error {
  readonly reason: ProtocolErrorReason;

  constructor(reason: ProtocolErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ProtocolError';
    this.reason = reason;
  }
}
