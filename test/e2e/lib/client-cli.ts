/**
 * The diagnostic client bin/qemu-pr-helper-client run as a user runs it (a new Node process
 * each time: ~0.5-1 s under TCG), and the sg_persist view of REPORT CAPABILITIES that the
 * client's table is checked against.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../../support/launcher.js';
import { sgPersist, typeFromName } from './sgpersist.js';

export const CLIENT = join(REPO_ROOT, 'bin', 'qemu-pr-helper-client');

export interface ClientRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time of the whole process, ms. */
  ms: number;
  /** stdout split into lines, without the empty last one. */
  lines: string[];
}

/** Runs the client with `args`; killed after `timeoutMs` (then code is null). */
export function runClient(args: readonly string[], timeoutMs = 90_000): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(CLIENT, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = stdout.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, lines });
    });
  });
}

export interface SgCapabilities {
  /** By the abbreviation sg_persist prints in parentheses: RLR_C, CRH, SIP_C, ATP_C, PTPL_C, TMV, PTPL_A. */
  flags: Record<string, boolean>;
  /** Type codes sg_persist lists as supported (": 1") under "Support indicated in Type mask". */
  types: number[];
  text: string;
}

/** sg_persist --in --report-capabilities DEV, parsed (no UNIT ATTENTION retry: call it on a quiet nexus). */
export function sgReportCapabilities(dev: string): SgCapabilities {
  const r = sgPersist(['--in', '--report-capabilities', dev]);
  if (r.status !== 0) throw new Error(`sg_persist --report-capabilities ${dev} exited ${r.status}: ${r.stderr}${r.stdout}`);
  const flags: Record<string, boolean> = {};
  for (const m of r.stdout.matchAll(/^\s+[^(\n]+\(([A-Z_]+)\):\s*([01])\s*$/gm)) flags[m[1] ?? ''] = m[2] === '1';
  const types: number[] = [];
  const at = r.stdout.indexOf('Support indicated in Type mask:');
  if (at >= 0) {
    for (const m of r.stdout.slice(at).split('\n').slice(1).join('\n').matchAll(/^\s+(.+?):\s*([01])\s*$/gm)) {
      if (m[2] !== '1') continue;
      try {
        types.push(typeFromName(m[1] ?? ''));
      } catch {
        // a line sg_persist prints that is no reservation type of ours: not compared
      }
    }
  }
  return { flags, types: types.sort((a, b) => a - b), text: r.stdout };
}
