/**
 * Issue 6 item 5: the diagnostic client bin/qemu-pr-helper-client, the real binary, through
 * our shared helper on the LIO disk from two tcm_loop nexuses (/dev/sda = initiator A,
 * /dev/sdb = initiator B). Each step's exit status and table lines are checked, and the
 * disk is checked with sg_persist run directly on it: features, REGISTER from both nexuses,
 * READ KEYS (table and --json), RESERVE (we-ro), READ RESERVATION, READ FULL STATUS (SAS
 * TransportIDs = PRH_E2E_INITIATORS, relative ports, holder), a conflicting RESERVE (exit
 * 24), REPORT CAPABILITIES, PREEMPT, the preempted nexus's UNIT ATTENTION, CLEAR, CLEANUP.
 * 15 client runs (each a Node start, ~0.5-1 s under TCG).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { E2E, skipReason, ourCleanupHelper, resetDisk, log, stopHelpers } from './lib/env.js';
import { TYPE_NAMES } from './lib/pr.js';
import { keySet, sgReadFullStatus, sgReadKeys, sgReadReservation } from './lib/sgpersist.js';
import { runClient, sgReportCapabilities, type ClientRun } from './lib/client-cli.js';

const skip = skipReason(2);
// Run alone (test/e2e/run.sh node dist/test/e2e/client.test.js) rather than from suite.ts:
// stop the shared helper at the end, or it keeps Node alive until the VM timeout.
if (process.argv[1]?.endsWith('client.test.js') === true) after(stopHelpers);
const KEY_A = 0xc11e47a1n;
const KEY_B = 0xc11e47b2n;

/** The client's key format: 0x + 16 hex digits. */
const k16 = (key: bigint): string => `0x${key.toString(16).padStart(16, '0')}`;
const hex32 = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
/** One "label  value" row as the client prints it (label padded to 20 columns). */
const row = (label: string, value: string): string => `${label.padEnd(20)}${value}`;
const WE_RO = 'LU / Write Exclusive - Registrants Only (5, we-ro)';
/** Type names and type-mask bits (SPC-4), independent of src/. */
const TYPES: Record<number, { name: string; short: string; bit: number }> = {
  1: { name: 'Write Exclusive', short: 'we', bit: 0x0200 },
  3: { name: 'Exclusive Access', short: 'ea', bit: 0x0800 },
  5: { name: 'Write Exclusive - Registrants Only', short: 'we-ro', bit: 0x2000 },
  6: { name: 'Exclusive Access - Registrants Only', short: 'ea-ro', bit: 0x4000 },
  7: { name: 'Write Exclusive - All Registrants', short: 'we-ar', bit: 0x8000 },
  8: { name: 'Exclusive Access - All Registrants', short: 'ea-ar', bit: 0x0001 },
};

describe('the diagnostic client on a LIO disk through our helper (two tcm_loop nexuses)', { skip }, () => {
  let socket = '';
  let diskA = '';
  let diskB = '';
  let runs = 0;
  let totalMs = 0;

  before(async () => {
    resetDisk();
    // The client's cleanup command needs a helper that announces CLEANUP.
    socket = (await ourCleanupHelper()).socketPath;
    [diskA, diskB] = [E2E.disks[0] ?? '', E2E.disks[1] ?? ''];
  });

  after(() => {
    resetDisk();
    if (runs > 0) log(`${runs} client runs, ${(totalMs / runs).toFixed(0)} ms each on average`);
  });

  async function client(...args: string[]): Promise<ClientRun> {
    const r = await runClient(['-k', socket, ...args]);
    runs++;
    totalMs += r.ms;
    assert.equal(r.signal, null, `client ${args.join(' ')} killed (${r.ms.toFixed(0)} ms)`);
    return r;
  }

  /** Exit status `code`, nothing on stderr, and the four rows every device command starts with. */
  function expectHead(r: ClientRun, code: number, title: string, device: string, access: 'read-only' | 'read-write'): void {
    assert.equal(r.code, code, `exit status; stdout:\n${r.stdout}stderr: ${r.stderr}`);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.lines.slice(0, 3), [
      row('helper', `${socket} (features 0x00000001)`),
      row('command', title),
      row('device', `${device} (opened ${access})`),
    ]);
  }

  /** A PR OUT run: head, the parameter rows, then the status (and nothing else). */
  function expectPrOut(r: ClientRun, code: number, sa: string, device: string, p: { key: bigint; sark: bigint; scopeType: string }, status: string): void {
    expectHead(r, code, `PERSISTENT RESERVE OUT, ${sa}`, device, 'read-write');
    assert.deepEqual(r.lines.slice(3), [
      row('reservation key', k16(p.key)),
      row('service action key', k16(p.sark)),
      row('scope / type', p.scopeType),
      row('flags', 'none'),
      row('status', status),
    ]);
  }

  test('features: CLEANUP advertised', async () => {
    const r = await client('features');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.lines, [
      row('helper', socket),
      row('features', '0x00000001'),
      row('  bit 0', "CLEANUP supported: the helper accepts QEMU's opcode 0xFF"),
      row('reply sent', '0x00000001'),
    ]);
  });

  test('register from both nexuses: exit 0, both keys on the disk (sg_persist)', async () => {
    const a = await client('register', `--param-sark=${KEY_A.toString(16)}`, diskA);
    expectPrOut(a, 0, 'REGISTER', diskA, { key: 0n, sark: KEY_A, scopeType: 'LU / 0 (no --prout-type)' }, 'GOOD (0x00)');
    const b = await client('register', diskB, '--param-sark', `0x${KEY_B.toString(16)}`);
    expectPrOut(b, 0, 'REGISTER', diskB, { key: 0n, sark: KEY_B, scopeType: 'LU / 0 (no --prout-type)' }, 'GOOD (0x00)');
    assert.deepEqual(keySet(sgReadKeys(diskA).keys), keySet([KEY_A, KEY_B]));
  });

  test('read-keys: the table and --json list both keys and the generation sg_persist reports', async () => {
    const sg = sgReadKeys(diskB);
    assert.equal(sg.keys.length, 2);
    const r = await client('read-keys', diskA);
    for (const line of r.stdout.trimEnd().split('\n')) log(`read-keys | ${line}`);
    expectHead(r, 0, 'PERSISTENT RESERVE IN, READ KEYS', diskA, 'read-only');
    assert.deepEqual(r.lines.slice(3), [
      row('allocation length', '8192'),
      row('status', 'GOOD (0x00)'),
      row('generation', `${sg.generation} (${hex32(sg.generation)})`),
      row('registered keys', '2'),
      ...sg.keys.map((key) => row('', k16(key))),
    ]);
    const j = await client('--json', 'read-keys', diskB);
    assert.equal(j.code, 0, j.stderr);
    const o = JSON.parse(j.stdout) as Record<string, unknown>;
    assert.equal(o['command'], 'read-keys');
    assert.equal(o['device'], diskB);
    assert.equal(o['access'], 'read-only');
    assert.equal(o['status'], 0);
    assert.equal(o['statusName'], 'GOOD');
    assert.equal(o['exitStatus'], 0);
    assert.equal(o['sense'], null);
    assert.deepEqual(o['data'], {
      kind: 'read-keys', generation: sg.generation, additionalLength: 16, keys: sg.keys.map(k16), truncated: false,
    });
  });

  test('reserve --prout-type=we-ro from A: exit 0; read-reservation from B names the holder and the type', async () => {
    const r = await client('reserve', `--param-rk=${k16(KEY_A)}`, '--prout-type=we-ro', diskA);
    expectPrOut(r, 0, 'RESERVE', diskA, { key: KEY_A, sark: 0n, scopeType: WE_RO }, 'GOOD (0x00)');
    const sg = sgReadReservation(diskB);
    assert.deepEqual(sg.holder, { key: KEY_A, scope: 'LU_SCOPE', type: 5 }, 'sg_persist --read-reservation');
    const rr = await client('read-reservation', diskB);
    expectHead(rr, 0, 'PERSISTENT RESERVE IN, READ RESERVATION', diskB, 'read-only');
    assert.deepEqual(rr.lines.slice(3), [
      row('allocation length', '8192'),
      row('status', 'GOOD (0x00)'),
      row('generation', `${sg.generation} (${hex32(sg.generation)})`),
      row('reservation key', k16(KEY_A)),
      row('scope / type', WE_RO),
    ]);
  });

  test('read-full-status: both registrations with their SAS TransportIDs, relative ports and the holder', async () => {
    const sg = sgReadFullStatus(diskB);
    assert.equal(sg.entries.length, 2, 'sg_persist: two registrations');
    const initiatorOf = new Map([[KEY_A, E2E.initiators[0]], [KEY_B, E2E.initiators[1]]]);
    for (const e of sg.entries) assert.equal(e.sasAddress, initiatorOf.get(e.key), `sg_persist: SAS address of ${k16(e.key)}`);
    const r = await client('read-full-status', diskA);
    for (const line of r.stdout.trimEnd().split('\n')) log(`read-full-status | ${line}`);
    expectHead(r, 0, 'PERSISTENT RESERVE IN, READ FULL STATUS', diskA, 'read-only');
    assert.deepEqual(r.lines.slice(3), [
      row('allocation length', '8192'),
      row('status', 'GOOD (0x00)'),
      row('generation', `${sg.generation} (${hex32(sg.generation)})`),
      row('registrations', '2'),
      ...sg.entries.flatMap((e, i) => [
        `${`  [${i + 1}]`.padEnd(6)}${'key'.padEnd(14)}${k16(e.key)}`,
        `      ${'holder'.padEnd(14)}${e.key === KEY_A ? `yes: ${WE_RO}` : 'no'}`,
        `      ${'target port'.padEnd(14)}relative port ${e.relativePort}`,
        `      ${'transport ID'.padEnd(14)}SAS ${k16(initiatorOf.get(e.key) ?? -1n)}`,
      ]),
    ]);
    assert.deepEqual(sg.entries.map((e) => e.holder), sg.entries.map((e) => e.key === KEY_A), 'sg_persist: A holds');
  });

  test('a conflicting reserve from B: exit 24, RESERVATION CONFLICT, the reservation unchanged', async () => {
    const r = await client('reserve', `--param-rk=${k16(KEY_B)}`, '--prout-type=3', diskB);
    expectPrOut(r, 24, 'RESERVE', diskB, { key: KEY_B, sark: 0n, scopeType: 'LU / Exclusive Access (3, ea)' }, 'RESERVATION CONFLICT (0x18)');
    assert.deepEqual(sgReadReservation(diskA).holder, { key: KEY_A, scope: 'LU_SCOPE', type: 5 });
  });

  test('report-capabilities: flags and the type mask by name, as sg_persist reports them', async () => {
    const caps = sgReportCapabilities(diskB);
    const r = await client('report-capabilities', diskB);
    expectHead(r, 0, 'PERSISTENT RESERVE IN, REPORT CAPABILITIES', diskB, 'read-only');
    const value = (label: string): string | undefined => r.lines.find((l) => l.startsWith(label.padEnd(20)))?.slice(20);
    assert.equal(value('status'), 'GOOD (0x00)');
    assert.equal(value('length'), '8');
    for (const name of ['CRH', 'SIP_C', 'ATP_C', 'PTPL_C', 'TMV']) assert.ok(name in caps.flags, `sg_persist prints ${name}: ${caps.text}`);
    for (const [name, on] of Object.entries(caps.flags)) {
      assert.match(value(name) ?? '', new RegExp(`^${on ? 'yes  ' : 'no   '}\\S`), `${name} as sg_persist says (${on})`);
    }
    assert.equal(caps.flags['TMV'], true);
    assert.ok(caps.types.length > 0, `sg_persist lists supported types: ${caps.text}`);
    const mask = caps.types.reduce((m, t) => m | (TYPES[t]?.bit ?? 0), 0);
    assert.equal(value('type mask'), `0x${mask.toString(16).padStart(4, '0')}`);
    const at = r.lines.findIndex((l) => l.startsWith('supported types'));
    assert.ok(at > 0, r.stdout);
    assert.deepEqual(r.lines.slice(at), caps.types.map((t, i) => row(i === 0 ? 'supported types' : '', `${TYPES[t]?.name} (${t}, ${TYPES[t]?.short})`)));
    log(`report-capabilities | ${row('type mask', value('type mask') ?? '')}; supported: ${caps.types.map((t) => TYPE_NAMES[t]).join('; ')}`);
  });

  test('preempt from B: exit 0, A is gone and B holds; A sees the UNIT ATTENTION through the client', async () => {
    const r = await client('preempt', `--param-rk=${k16(KEY_B)}`, `--param-sark=${k16(KEY_A)}`, '--prout-type=we-ro', diskB);
    expectPrOut(r, 0, 'PREEMPT', diskB, { key: KEY_B, sark: KEY_A, scopeType: WE_RO }, 'GOOD (0x00)');
    assert.deepEqual(keySet(sgReadKeys(diskB).keys), keySet([KEY_B]));
    assert.deepEqual(sgReadReservation(diskB).holder, { key: KEY_B, scope: 'LU_SCOPE', type: 5 });
    // The preempted nexus A has a UNIT ATTENTION pending (SPC-4 5.14.11.2.4): its next
    // command, this READ KEYS, ends in CHECK CONDITION with it.
    const ua = await client('read-keys', diskA);
    for (const line of ua.stdout.trimEnd().split('\n')) log(`read-keys on the preempted nexus | ${line}`);
    expectHead(ua, 2, 'PERSISTENT RESERVE IN, READ KEYS', diskA, 'read-only');
    assert.equal(ua.lines[4], row('status', 'CHECK CONDITION (0x02)'));
    assert.match(ua.lines[5] ?? '', /^sense {15}UNIT ATTENTION: (REGISTRATIONS|RESERVATIONS) PREEMPTED \(06\/2a\/0[35]\)$/);
    assert.match(ua.lines[6] ?? '', /^sense bytes {9}7[01] 00 06 /);
    assert.equal(ua.lines.length, 7, ua.stdout);
  });

  test('clear from B: exit 0; read-keys then lists none; no reservation (sg_persist)', async () => {
    const r = await client('clear', `--param-rk=${k16(KEY_B)}`, diskB);
    expectPrOut(r, 0, 'CLEAR', diskB, { key: KEY_B, sark: 0n, scopeType: 'LU / 0 (no --prout-type)' }, 'GOOD (0x00)');
    const sg = sgReadKeys(diskB);
    assert.deepEqual(sg.keys, []);
    assert.equal(sgReadReservation(diskA).holder, null);
    const rk = await client('read-keys', diskB);
    expectHead(rk, 0, 'PERSISTENT RESERVE IN, READ KEYS', diskB, 'read-only');
    assert.deepEqual(rk.lines.slice(3), [
      row('allocation length', '8192'),
      row('status', 'GOOD (0x00)'),
      row('generation', `${sg.generation} (${hex32(sg.generation)})`),
      row('registered keys', 'none'),
    ]);
  });

  test('cleanup: exit 0 (no I/O on a disk that is no multipath map)', async () => {
    const r = await client('cleanup', diskA);
    expectHead(r, 0, 'CLEANUP (opcode 0xFF)', diskA, 'read-write');
    assert.deepEqual(r.lines.slice(3), [row('status', 'GOOD (0x00)')]);
    assert.deepEqual(sgReadKeys(diskA).keys, []);
  });
});
