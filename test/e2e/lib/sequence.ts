/**
 * A PR command sequence for the differential tests (differential.test.ts,
 * multipath-differential.test.ts): steps on named devices, and the PR generation made
 * relative to a run's first, since the disk's counter keeps going between runs.
 */
import { prInCdb, prOutCdb, type Response } from '../../support/builders.js';
import { PR_IN } from './pr.js';

export interface Step<D extends string = string> {
  name: string;
  dev: D;
  cdb: Uint8Array;
  params?: Uint8Array;
}

export function inStep<D extends string>(name: string, dev: D, sa: number, alloc = 1024): Step<D> {
  return { name, dev, cdb: prInCdb({ sa, allocationLength: alloc }) };
}

export function outStep<D extends string>(name: string, dev: D, sa: number, params: Uint8Array, type = 0): Step<D> {
  return { name, dev, cdb: prOutCdb({ sa, type, paramLength: params.length }), params };
}

/** The response's data with the generation (bytes 0..3 of READ KEYS / RESERVATION / FULL STATUS) relative to `base`. */
export function generationRelative(step: Step, r: Response, base: number): Uint8Array {
  const d = r.data.slice();
  const sa = (step.cdb[1] ?? 0) & 0x1f;
  if (step.cdb[0] === 0x5e && sa !== PR_IN.REPORT_CAPABILITIES && d.length >= 4) {
    const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
    dv.setUint32(0, (dv.getUint32(0) - base) >>> 0);
  }
  return d;
}
