/**
 * The client's table output, rendered from the same values `--json` prints (result.ts).
 * The layout is stable (scripts and the VM suite read it): one "label  value" row per line,
 * labels padded to LABEL_WIDTH, continuation lines indented to the value column, nested
 * registrations indented under "  [n] ". Pure.
 */
import { CAPABILITY_FLAGS, RESERVATION_TYPES } from '../scsi/pr-data.js';
import { hex32, type CommandResult, type DataResult, type FeaturesResult } from './result.js';

/** Width of the label column; every label is shorter. */
export const LABEL_WIDTH = 20;
const SUB_INDENT = '      ';
const SUB_WIDTH = 14;

function rows(label: string, ...values: string[]): string[] {
  const [first = '', ...more] = values;
  return [`${label.padEnd(LABEL_WIDTH)}${first}`.trimEnd(), ...more.map((v) => `${' '.repeat(LABEL_WIDTH)}${v}`)];
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

function spaced(hex: string): string {
  return hex.replace(/(..)(?!$)/g, '$1 ');
}

export function featuresText(r: FeaturesResult): string {
  const cleanup = r.cleanup
    ? "CLEANUP supported: the helper accepts QEMU's opcode 0xFF"
    : 'CLEANUP not supported: opcode 0xFF would make the helper close the connection';
  return [
    ...rows('helper', r.socket),
    ...rows('features', r.featuresHex),
    ...rows(`  bit 0`, cleanup),
    ...r.unknownBits.flatMap((bit) => rows(`  bit ${bit}`, 'unknown to this client')),
    ...rows('reply sent', hex32(r.reply)),
    '',
  ].join('\n');
}

function shortTypeName(type: number): string {
  const short = RESERVATION_TYPES.find((t) => t.code === type)?.short;
  return short === undefined ? `${type}` : `${type}, ${short}`;
}

function dataLines(d: DataResult): string[] {
  const generation = (g: number): string[] => rows('generation', `${g} (${hex32(g)})`);
  const truncated = d.truncated ? rows('truncated', 'yes: the device had more data; raise --alloc-length') : [];
  switch (d.kind) {
    case 'read-keys':
      return [
        ...generation(d.generation),
        ...rows('registered keys', ...(d.keys.length === 0 ? ['none'] : [`${d.keys.length}`, ...d.keys])),
        ...truncated,
      ];
    case 'read-reservation':
      return [
        ...generation(d.generation),
        ...(d.reservation === null
          ? rows('reservation', 'none')
          : [
            ...rows('reservation key', d.reservation.key),
            ...rows('scope / type', `${d.reservation.scopeName} / ${d.reservation.typeName} (${shortTypeName(d.reservation.type)})`),
          ]),
        ...truncated,
      ];
    case 'report-capabilities': {
      const meaning = (name: string): string => CAPABILITY_FLAGS.find((f) => f.name === name)?.meaning ?? '';
      return [
        ...rows('length', `${d.length}`),
        ...Object.entries(d.flags).flatMap(([name, value]) => rows(name, `${yesNo(value).padEnd(5)}${meaning(name)}`)),
        ...rows('ALLOW COMMANDS', `${d.allowCommands}`),
        ...rows('type mask', d.typeMask),
        ...(d.flags['TMV'] === true
          ? rows('supported types', ...(d.supportedTypes.length === 0 ? ['none']
            : d.supportedTypes.map((t) => `${t.name} (${shortTypeName(t.type)})`)))
          : rows('supported types', 'not reported (TMV is 0)')),
        ...truncated,
      ];
    }
    case 'read-full-status':
      return [
        ...generation(d.generation),
        ...rows('registrations', d.registrations.length === 0 ? 'none' : `${d.registrations.length}`),
        ...d.registrations.flatMap((r, i) => {
          const sub = (label: string, value: string): string => `${SUB_INDENT}${label.padEnd(SUB_WIDTH)}${value}`;
          const id = r.transportId;
          return [
            `${`  [${i + 1}]`.padEnd(SUB_INDENT.length)}${'key'.padEnd(SUB_WIDTH)}${r.key}`,
            sub('holder', r.reservationHolder ? `yes: ${r.scopeName} / ${r.typeName} (${shortTypeName(r.type)})` : 'no'),
            sub('target port', r.allTargetPorts ? 'all' : `relative port ${r.relativeTargetPort}`),
            sub('transport ID', id === null ? 'cut off (raise --alloc-length)' : `${id.protocolName} ${id.identifier}`),
          ];
        }),
        ...truncated,
      ];
  }
}

export function commandText(r: CommandResult): string {
  const lines = [
    ...rows('helper', `${r.socket} (features ${hex32(r.features)})`),
    ...rows('command', r.title),
    ...rows('device', `${r.device} (opened ${r.access})`),
  ];
  const p = r.parameters;
  if (p !== null) {
    const flags = [p.aptpl ? 'APTPL' : '', p.allTargetPorts ? 'ALL_TG_PT' : ''].filter((f) => f !== '');
    lines.push(
      ...rows('reservation key', p.key),
      ...rows('service action key', p.serviceActionKey),
      ...rows('scope / type', p.typeName === null ? `${p.scopeName} / 0 (no --prout-type)` : `${p.scopeName} / ${p.typeName} (${shortTypeName(p.type)})`),
      ...rows('flags', flags.length === 0 ? 'none' : flags.join(', ')),
    );
  }
  if (r.allocationLength !== null) lines.push(...rows('allocation length', `${r.allocationLength}`));
  lines.push(...rows('status', `${r.statusName} (0x${r.status.toString(16).padStart(2, '0')})`));
  if (r.sense !== null) {
    const deferred = r.sense.deferred ? ', deferred' : '';
    lines.push(
      ...rows('sense', `${r.sense.text} (${r.sense.code}${deferred})`),
      ...rows('sense bytes', spaced(r.sense.bytes)),
    );
  }
  if (r.data !== null) lines.push(...dataLines(r.data));
  if (r.dataError !== null) {
    lines.push(...rows('data', r.dataError), ...rows('data bytes', spaced(r.dataBytes ?? '')));
  }
  return `${lines.join('\n')}\n`;
}
