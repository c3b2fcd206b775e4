/**
 * The oracle: sg_persist (sg3-utils) run directly on the disk, without any helper, and its
 * text output parsed. Independent of the helper and of this suite's own PR IN parsers.
 */
import { spawnSync } from 'node:child_process';
import { TYPE_NAMES } from './pr.js';

export interface SgRun {
  status: number;
  stdout: string;
  stderr: string;
}

/** sg_persist exit status for a pending UNIT ATTENTION (sg3-utils SG_LIB_CAT_UNIT_ATTENTION). */
const SG_UNIT_ATTENTION = 6;

export function sgPersist(args: string[]): SgRun {
  const r = spawnSync('sg_persist', ['--no-inquiry', ...args], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs a PR IN through sg_persist, retrying past UNIT ATTENTIONs that earlier steps left
 * pending for this I_T nexus (a preempted or cleared registrant gets one on its next command).
 */
function sgIn(dev: string, what: string): string {
  for (let attempt = 0; attempt < 4; attempt++) {
    const r = sgPersist(['--in', what, dev]);
    if (r.status === 0) return r.stdout;
    if (r.status !== SG_UNIT_ATTENTION) throw new Error(`sg_persist --in ${what} ${dev} exited ${r.status}: ${r.stderr}${r.stdout}`);
  }
  throw new Error(`sg_persist --in ${what} ${dev}: unit attentions do not stop`);
}

function generationOf(text: string): number {
  const m = /PR generation=0x([0-9a-f]+)/i.exec(text);
  if (!m?.[1]) throw new Error(`no PR generation in sg_persist output: ${text}`);
  return parseInt(m[1], 16);
}

export interface SgKeys {
  generation: number;
  keys: bigint[];
}

export function sgReadKeys(dev: string): SgKeys {
  const out = sgIn(dev, '--read-keys');
  const keys: bigint[] = [];
  if (!/NO registered reservation keys/.test(out)) {
    for (const m of out.matchAll(/^\s+0x([0-9a-f]+)\s*$/gim)) keys.push(BigInt(`0x${m[1] ?? '0'}`));
  }
  return { generation: generationOf(out), keys };
}

export interface SgReservation {
  generation: number;
  holder: { key: bigint; type: number; scope: string } | null;
}

export function typeFromName(name: string): number {
  for (const [code, text] of Object.entries(TYPE_NAMES)) if (text === name.trim()) return Number(code);
  throw new Error(`unknown reservation type text '${name}'`);
}

export function sgReadReservation(dev: string): SgReservation {
  const out = sgIn(dev, '--read-reservation');
  if (/NO reservation held/.test(out)) return { generation: generationOf(out), holder: null };
  const key = /Key=0x([0-9a-f]+)/i.exec(out)?.[1];
  const st = /scope:\s*(\S+),\s*type:\s*(.+)$/m.exec(out);
  if (key === undefined || !st?.[1] || !st[2]) throw new Error(`cannot parse sg_persist reservation: ${out}`);
  return { generation: generationOf(out), holder: { key: BigInt(`0x${key}`), scope: st[1], type: typeFromName(st[2]) } };
}

export interface SgStatusEntry {
  key: bigint;
  holder: boolean;
  relativePort: number;
  sasAddress: bigint | null;
  type: number | null;
}

export function sgReadFullStatus(dev: string): { generation: number; entries: SgStatusEntry[] } {
  const out = sgIn(dev, '--read-full-status');
  const entries: SgStatusEntry[] = [];
  for (const block of out.split(/^\s+Key=/m).slice(1)) {
    const key = /^0x([0-9a-f]+)/i.exec(block)?.[1] ?? '0';
    const port = /Relative port address: 0x([0-9a-f]+)/i.exec(block)?.[1];
    const sas = /SAS address: 0x([0-9a-f]+)/i.exec(block)?.[1];
    const type = /type:\s*(.+)$/m.exec(block)?.[1];
    entries.push({
      key: BigInt(`0x${key}`),
      holder: /<< Reservation holder >>/.test(block),
      relativePort: port === undefined ? -1 : parseInt(port, 16),
      sasAddress: sas === undefined ? null : BigInt(`0x${sas}`),
      type: type === undefined ? null : typeFromName(type),
    });
  }
  return { generation: generationOf(out), entries };
}

/** Keys as a sorted list of hex strings, for readable assertions. */
export function keySet(keys: readonly bigint[]): string[] {
  return keys.map((k) => `0x${k.toString(16)}`).sort();
}
