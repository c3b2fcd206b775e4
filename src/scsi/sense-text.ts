/**
 * Sense data in words for the diagnostic client, built on names.ts (the words the request
 * log uses, so the client and the log say the same): the SPC-4 Annex D texts of a few more
 * codes that PERSISTENT RESERVE commands meet on real targets, vendor-specific codes, and
 * the decoded sense with its format, deferred flag and meaningful bytes. Pure.
 */
import { decodeSense, type SenseCode } from './sense.js';
import { additionalSenseName, senseKeyName } from './names.js';

/**
 * (ASC << 8 | ASCQ) → SPC-4 Annex D text, for codes names.ts does not name. names.ts covers
 * every code this helper builds (sense.ts `Sense`) and the common PR ones (RESERVATIONS
 * PREEMPTED, INVALID RELEASE OF PERSISTENT RESERVATION, ...).
 */
export const MORE_ADDITIONAL_SENSE_TEXTS: ReadonlyMap<number, string> = new Map([
  [0x2001, 'ACCESS DENIED - INITIATOR PENDING-ENROLLED'],
  [0x2002, 'ACCESS DENIED - NO ACCESS RIGHTS'],
  [0x2601, 'PARAMETER NOT SUPPORTED'],
  [0x2602, 'PARAMETER VALUE INVALID'],
  [0x2a00, 'PARAMETERS CHANGED'],
  [0x2a01, 'MODE PARAMETERS CHANGED'],
  [0x2c00, 'COMMAND SEQUENCE ERROR'],
  [0x2c09, 'PREVIOUS RESERVATION CONFLICT STATUS'],
  [0x2f00, 'COMMANDS CLEARED BY ANOTHER INITIATOR'],
  [0x3f01, 'MICROCODE HAS BEEN CHANGED'],
  [0x3f03, 'INQUIRY DATA HAS CHANGED'],
  [0x4700, 'SCSI PARITY ERROR'],
  [0x4b00, 'DATA PHASE ERROR'],
  [0x5503, 'INSUFFICIENT RESOURCES'],
]);

function hex2(n: number): string {
  return (n & 0xff).toString(16).padStart(2, '0');
}

/** What names.ts answers for a code it does not know. */
function unnamed(asc: number, ascq: number): string {
  return `ASC 0x${hex2(asc)} ASCQ 0x${hex2(ascq)}`;
}

/**
 * The Annex D text for an ASC/ASCQ pair; "VENDOR SPECIFIC" for ASC 0x80-0xFF; otherwise
 * "ASC 0x.. ASCQ 0x..".
 */
export function additionalSenseText(asc: number, ascq: number): string {
  const named = additionalSenseName(asc, ascq);
  if (named !== unnamed(asc, ascq)) return named;
  const more = MORE_ADDITIONAL_SENSE_TEXTS.get(((asc & 0xff) << 8) | (ascq & 0xff));
  if (more !== undefined) return more;
  return (asc & 0xff) >= 0x80 ? 'VENDOR SPECIFIC' : named;
}

/** True when additionalSenseText() has words for the pair (not the hex fallback). */
export function isNamedSenseCode(asc: number, ascq: number): boolean {
  return additionalSenseText(asc, ascq) !== unnamed(asc, ascq);
}

/** "ILLEGAL REQUEST: INVALID FIELD IN CDB". */
export function senseCodeText(code: SenseCode): string {
  return `${senseKeyName(code.key)}: ${additionalSenseText(code.asc, code.ascq)}`;
}

/** "05/24/00": key, ASC and ASCQ in hex, as sg3_utils and the spec write them. */
export function senseCodeHex(code: SenseCode): string {
  return `${hex2(code.key)}/${hex2(code.asc)}/${hex2(code.ascq)}`;
}

export interface SenseDetails extends SenseCode {
  /** "fixed" (response code 0x70/0x71) or "descriptor" (0x72/0x73). */
  format: 'fixed' | 'descriptor';
  /** A deferred error (response code 0x71/0x73): it belongs to an earlier command. */
  deferred: boolean;
  /** senseCodeText(). */
  text: string;
  /** The meaningful bytes: 8 + ADDITIONAL SENSE LENGTH, bounded by what was received. */
  bytes: Uint8Array;
}

/** What the sense bytes say, or null when they hold no fixed or descriptor sense. */
export function senseDetails(sense: Uint8Array): SenseDetails | null {
  const code = decodeSense(sense);
  if (code === null) return null;
  const responseCode = (sense[0] ?? 0) & 0x7f;
  // ADDITIONAL SENSE LENGTH is byte 7 in both formats (SPC-4 §4.5.2.1, §4.5.3).
  const length = Math.min(sense.length, 8 + (sense[7] ?? 0));
  return {
    ...code,
    format: responseCode === 0x70 || responseCode === 0x71 ? 'fixed' : 'descriptor',
    deferred: responseCode === 0x71 || responseCode === 0x73,
    text: senseCodeText(code),
    bytes: sense.slice(0, length),
  };
}
