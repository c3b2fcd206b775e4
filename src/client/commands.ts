/**
 * The diagnostic client's subcommands: what each one sends through the helper, and how the
 * SCSI status becomes the exit status. Pure.
 */
import { PrInServiceAction, PrOutServiceAction, ScsiStatus } from '../scsi/constants.js';

export type CommandSpec =
  | { kind: 'features'; name: 'features'; summary: string }
  | { kind: 'pr-in'; name: string; serviceAction: number; title: string; summary: string }
  | { kind: 'pr-out'; name: string; serviceAction: number; title: string; summary: string; needsType: boolean }
  | { kind: 'cleanup'; name: 'cleanup'; title: string; summary: string };

/** In the order --help lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  { kind: 'features', name: 'features', summary: "show the helper's feature word and what it means" },
  {
    kind: 'pr-in', name: 'read-keys', serviceAction: PrInServiceAction.READ_KEYS, title: 'READ KEYS',
    summary: 'list the registered reservation keys',
  },
  {
    kind: 'pr-in', name: 'read-reservation', serviceAction: PrInServiceAction.READ_RESERVATION,
    title: 'READ RESERVATION', summary: "show the reservation's key, scope and type",
  },
  {
    kind: 'pr-in', name: 'report-capabilities', serviceAction: PrInServiceAction.REPORT_CAPABILITIES,
    title: 'REPORT CAPABILITIES', summary: 'show the capability flags and supported types',
  },
  {
    kind: 'pr-in', name: 'read-full-status', serviceAction: PrInServiceAction.READ_FULL_STATUS,
    title: 'READ FULL STATUS', summary: 'list every registration with its initiator port',
  },
  {
    kind: 'pr-out', name: 'register', serviceAction: PrOutServiceAction.REGISTER, title: 'REGISTER',
    needsType: false, summary: 'register --param-sark in place of --param-rk',
  },
  {
    kind: 'pr-out', name: 'register-ignore', serviceAction: PrOutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY,
    title: 'REGISTER AND IGNORE EXISTING KEY', needsType: false, summary: 'register --param-sark, whatever key is registered',
  },
  {
    kind: 'pr-out', name: 'reserve', serviceAction: PrOutServiceAction.RESERVE, title: 'RESERVE',
    needsType: true, summary: 'reserve with --param-rk and --prout-type',
  },
  {
    kind: 'pr-out', name: 'release', serviceAction: PrOutServiceAction.RELEASE, title: 'RELEASE',
    needsType: true, summary: 'release the reservation (--param-rk, --prout-type)',
  },
  {
    kind: 'pr-out', name: 'clear', serviceAction: PrOutServiceAction.CLEAR, title: 'CLEAR',
    needsType: false, summary: 'remove all registrations and the reservation',
  },
  {
    kind: 'pr-out', name: 'preempt', serviceAction: PrOutServiceAction.PREEMPT, title: 'PREEMPT',
    needsType: false, summary: 'remove the registrations of key --param-sark',
  },
  {
    kind: 'pr-out', name: 'preempt-abort', serviceAction: PrOutServiceAction.PREEMPT_AND_ABORT,
    title: 'PREEMPT AND ABORT', needsType: false, summary: 'as preempt, and abort their commands',
  },
  {
    kind: 'cleanup', name: 'cleanup', title: 'CLEANUP',
    summary: "QEMU's opcode 0xFF, if the helper announces it",
  },
];

export function findCommand(name: string): CommandSpec | null {
  return COMMANDS.find((c) => c.name === name) ?? null;
}

/** "PERSISTENT RESERVE IN, READ KEYS"; "CLEANUP (opcode 0xFF)". */
export function commandTitle(command: CommandSpec): string {
  switch (command.kind) {
    case 'features':
      return 'features';
    case 'pr-in':
      return `PERSISTENT RESERVE IN, ${command.title}`;
    case 'pr-out':
      return `PERSISTENT RESERVE OUT, ${command.title}`;
    case 'cleanup':
      return 'CLEANUP (opcode 0xFF)';
  }
}

/** Exit status for usage errors, an unreachable or misbehaving helper, a device that cannot be opened. */
export const EXIT_FAILURE = 1;

/**
 * The exit status for a SCSI status: 0 for GOOD, otherwise the status byte itself, so
 * CHECK CONDITION is 2, BUSY 8, RESERVATION CONFLICT 24 (0x18) and TASK SET FULL 40 (0x28).
 * SAM-5 defines no status 1, so the value never collides with EXIT_FAILURE.
 */
export function exitCodeForStatus(status: number): number {
  return status === ScsiStatus.GOOD ? 0 : status & 0xff;
}
