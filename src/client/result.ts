/**
 * What one run of the diagnostic client found, as plain JSON-ready values: `--json` prints
 * these objects as they are, and the text output (text.ts) is rendered from them, so both
 * always say the same. Keys are "0x" + 16 hex digits, byte strings are plain hex. Pure.
 */
import { PR_HELPER_FEATURE_CLEANUP } from '../protocol/constants.js';
import { ScsiStatus, type ScsiOutcome } from '../scsi/constants.js';
import { reservationTypeName, scopeName, statusName } from '../scsi/names.js';
import { PrDataError, decodePrInData, formatKey, type PrInData } from '../scsi/pr-data.js';
import { senseCodeHex, senseDetails } from '../scsi/sense-text.js';
import type { TransportId } from '../scsi/transport-id.js';
import { commandTitle, exitCodeForStatus, type CommandSpec } from './commands.js';

export function hexBytes(bytes: Uint8Array, separator = ''): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(separator);
}

export function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16).padStart(8, '0')}`;
}

export interface FeaturesResult {
  command: 'features';
  socket: string;
  /** The helper's feature word. */
  features: number;
  featuresHex: string;
  /** Bit 0, PR_HELPER_FEATURE_CLEANUP: opcode 0xFF is understood. */
  cleanup: boolean;
  /** Set bits this client does not know, by number. */
  unknownBits: number[];
  /** The feature word this client answered. */
  reply: number;
}

export function featuresResult(socket: string, features: number, reply: number): FeaturesResult {
  const unknownBits: number[] = [];
  for (let bit = 0; bit < 32; bit++) {
    const mask = (1 << bit) >>> 0;
    if ((features & mask) !== 0 && mask !== PR_HELPER_FEATURE_CLEANUP) unknownBits.push(bit);
  }
  return {
    command: 'features', socket, features, featuresHex: hex32(features),
    cleanup: (features & PR_HELPER_FEATURE_CLEANUP) !== 0, unknownBits, reply,
  };
}

export interface SenseResult {
  key: number;
  asc: number;
  ascq: number;
  /** "05/24/00". */
  code: string;
  /** "ILLEGAL REQUEST: INVALID FIELD IN CDB". */
  text: string;
  format: 'fixed' | 'descriptor';
  deferred: boolean;
  /** The meaningful sense bytes (8 + ADDITIONAL SENSE LENGTH). */
  bytes: string;
}

export interface PrOutParametersResult {
  key: string;
  serviceActionKey: string;
  scope: number;
  scopeName: string;
  type: number;
  /** null when --prout-type was not given (0 is sent). */
  typeName: string | null;
  aptpl: boolean;
  allTargetPorts: boolean;
}

/** A TransportId in the JSON result: its bytes as hex. */
export type TransportIdResult = Omit<TransportId, 'bytes'> & { bytes: string };

export interface ReservationResult {
  key: string;
  scope: number;
  scopeName: string;
  type: number;
  typeName: string;
}

export type DataResult =
  | { kind: 'read-keys'; generation: number; additionalLength: number; keys: string[]; truncated: boolean }
  | { kind: 'read-reservation'; generation: number; additionalLength: number; reservation: ReservationResult | null; truncated: boolean }
  | {
    kind: 'report-capabilities'; length: number; flags: Record<string, boolean>; allowCommands: number;
    typeMask: string; supportedTypes: { type: number; name: string }[]; truncated: boolean;
  }
  | {
    kind: 'read-full-status'; generation: number; additionalLength: number; truncated: boolean;
    registrations: {
      key: string; reservationHolder: boolean; allTargetPorts: boolean; relativeTargetPort: number;
      scope: number; scopeName: string; type: number; typeName: string; transportId: TransportIdResult | null;
    }[];
  };

export interface CommandResult {
  command: string;
  /** "PERSISTENT RESERVE IN, READ KEYS". */
  title: string;
  socket: string;
  features: number;
  device: string;
  access: 'read-only' | 'read-write';
  /** The 16 CDB bytes sent. */
  cdb: string;
  /** PR OUT only. */
  parameters: PrOutParametersResult | null;
  /** PR IN only. */
  allocationLength: number | null;
  status: number;
  statusName: string;
  /** Decoded with CHECK CONDITION; null otherwise (the bytes mean nothing then). */
  sense: SenseResult | null;
  /** Decoded PR IN data (GOOD only). */
  data: DataResult | null;
  /** The PR IN data bytes as received, when there are any. */
  dataBytes: string | null;
  /** Why the data could not be decoded. */
  dataError: string | null;
  exitStatus: number;
}

export interface CommandReport {
  command: Exclude<CommandSpec, { kind: 'features' }>;
  socket: string;
  features: number;
  device: string;
  access: 'read-only' | 'read-write';
  cdb: Uint8Array;
  /** PR OUT: what was sent, with the type as given (null: not given). */
  parameters: {
    key: bigint; serviceActionKey: bigint; scope: number; type: number | null; aptpl: boolean; allTargetPorts: boolean;
  } | null;
  allocationLength: number | null;
  outcome: ScsiOutcome;
}

function reservationResult(key: bigint, scope: number, type: number): ReservationResult {
  return { key: formatKey(key), scope, scopeName: scopeName(scope), type, typeName: reservationTypeName(type) };
}

function transportIdResult(id: TransportId): TransportIdResult {
  const out: TransportIdResult = {
    protocol: id.protocol, protocolName: id.protocolName, format: id.format, identifier: id.identifier,
    bytes: hexBytes(id.bytes),
  };
  if (id.iscsiName !== undefined) out.iscsiName = id.iscsiName;
  if (id.isid !== undefined) out.isid = id.isid;
  return out;
}

export function dataResult(data: PrInData): DataResult {
  switch (data.kind) {
    case 'read-keys':
      return { ...data, keys: data.keys.map(formatKey) };
    case 'read-reservation':
      return {
        ...data,
        reservation: data.reservation === null ? null
          : reservationResult(data.reservation.key, data.reservation.scope, data.reservation.type),
      };
    case 'report-capabilities':
      return {
        kind: data.kind,
        length: data.length,
        flags: Object.fromEntries(data.flags.map((f) => [f.name, f.value])),
        allowCommands: data.allowCommands,
        typeMask: `0x${data.typeMask.toString(16).padStart(4, '0')}`,
        supportedTypes: data.supportedTypes.map((type) => ({ type, name: reservationTypeName(type) })),
        truncated: data.truncated,
      };
    case 'read-full-status':
      return {
        kind: data.kind,
        generation: data.generation,
        additionalLength: data.additionalLength,
        truncated: data.truncated,
        registrations: data.descriptors.map((d) => ({
          key: formatKey(d.key),
          reservationHolder: d.reservationHolder,
          allTargetPorts: d.allTargetPorts,
          relativeTargetPort: d.relativeTargetPort,
          scope: d.scope,
          scopeName: scopeName(d.scope),
          type: d.type,
          typeName: reservationTypeName(d.type),
          transportId: d.transportId === null ? null : transportIdResult(d.transportId),
        })),
      };
  }
}

export function commandResult(report: CommandReport): CommandResult {
  const { outcome, command } = report;
  let sense: SenseResult | null = null;
  if (outcome.status === ScsiStatus.CHECK_CONDITION) {
    const d = senseDetails(outcome.sense);
    if (d !== null) {
      sense = {
        key: d.key, asc: d.asc, ascq: d.ascq, code: senseCodeHex(d),
        text: d.text, format: d.format, deferred: d.deferred, bytes: hexBytes(d.bytes),
      };
    }
  }
  let data: DataResult | null = null;
  let dataError: string | null = null;
  if (command.kind === 'pr-in' && outcome.status === ScsiStatus.GOOD) {
    try {
      data = dataResult(decodePrInData(command.serviceAction, outcome.data));
    } catch (error) {
      if (!(error instanceof PrDataError)) throw error;
      dataError = error.message;
    }
  }
  const p = report.parameters;
  return {
    command: command.name,
    title: commandTitle(command),
    socket: report.socket,
    features: report.features,
    device: report.device,
    access: report.access,
    cdb: hexBytes(report.cdb),
    parameters: p === null ? null : {
      key: formatKey(p.key),
      serviceActionKey: formatKey(p.serviceActionKey),
      scope: p.scope,
      scopeName: scopeName(p.scope),
      type: p.type ?? 0,
      typeName: p.type === null ? null : reservationTypeName(p.type),
      aptpl: p.aptpl,
      allTargetPorts: p.allTargetPorts,
    },
    allocationLength: report.allocationLength,
    status: outcome.status,
    statusName: statusName(outcome.status),
    sense,
    data,
    dataBytes: outcome.data.length > 0 ? hexBytes(outcome.data) : null,
    dataError,
    exitStatus: exitCodeForStatus(outcome.status),
  };
}
