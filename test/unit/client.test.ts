/**
 * The diagnostic client's pure parts: PR IN data and TransportID decoding, sense and status
 * words, CDB and parameter list building, the command line, and the table/JSON output.
 * Fixtures are built from meaning here (SPC-4 §6.15, §7.6.4), never by the code under test.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Sense, buildFixedSense } from '../../src/scsi/sense.js';
import { senseKeyName, statusName } from '../../src/scsi/names.js';
import {
  MORE_ADDITIONAL_SENSE_TEXTS, additionalSenseText, isNamedSenseCode, senseCodeText, senseDetails,
} from '../../src/scsi/sense-text.js';
import {
  PrDataError, RESERVATION_TYPES, decodeCapabilities, decodeFullStatus, decodePrInData, decodeReadKeys,
  decodeReadReservation, formatKey, scopeTypeText,
} from '../../src/scsi/pr-data.js';
import { decodeTransportId } from '../../src/scsi/transport-id.js';
import { cleanupCdb, prInCdb, prOutCdb, prOutParameterList } from '../../src/scsi/pr-commands.js';
import { parseClientArgs, parseKey, parseReservationType } from '../../src/client/args.js';
import { COMMANDS, exitCodeForStatus, findCommand } from '../../src/client/commands.js';
import { commandResult, featuresResult, type CommandReport } from '../../src/client/result.js';
import { LABEL_WIDTH, commandText, featuresText } from '../../src/client/text.js';
import { clientUsageText } from '../../src/client/help.js';
import * as builders from '../support/builders.js';

// ---- fixtures from meaning --------------------------------------------------------------

function be32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

function be64(n: bigint): number[] {
  return Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(56 - 8 * i)) & 0xffn));
}

/** READ KEYS / READ RESERVATION / READ FULL STATUS: PRGENERATION, ADDITIONAL LENGTH, body. */
function prInData(generation: number, body: number[], additionalLength = body.length): Uint8Array {
  return Uint8Array.from([...be32(generation), ...be32(additionalLength), ...body]);
}

function iscsiTransportId(name: string, isid: string | null): number[] {
  const text = isid === null ? name : `${name},i,0x${isid}`;
  const bytes = [...new TextEncoder().encode(text), 0];
  while (bytes.length % 4 !== 0) bytes.push(0); // padded to a multiple of 4 (SPC-4 §7.6.4.6)
  return [isid === null ? 0x05 : 0x45, 0, (bytes.length >> 8) & 0xff, bytes.length & 0xff, ...bytes];
}

function fcTransportId(nPortName: bigint): number[] {
  return [0x00, 0, 0, 0, 0, 0, 0, 0, ...be64(nPortName), ...new Array(8).fill(0)];
}

function sasTransportId(address: bigint): number[] {
  return [0x06, 0, 0, 0, ...be64(address), ...new Array(12).fill(0)];
}

function fullStatusDescriptor(d: {
  key: bigint; holder?: boolean; allTgPt?: boolean; scope?: number; type?: number; port?: number; tid: number[];
}): number[] {
  return [
    ...be64(d.key), // RESERVATION KEY
    0, 0, 0, 0, // reserved
    (d.allTgPt ? 0x02 : 0) | (d.holder ? 0x01 : 0), // ALL_TG_PT | R_HOLDER
    ((d.scope ?? 0) << 4) | (d.type ?? 0), // SCOPE | TYPE
    0, 0, 0, 0, // reserved
    ((d.port ?? 0) >> 8) & 0xff, (d.port ?? 0) & 0xff, // RELATIVE TARGET PORT IDENTIFIER
    ...be32(d.tid.length), // ADDITIONAL DESCRIPTOR LENGTH
    ...d.tid,
  ];
}

// ---- sense and status words -------------------------------------------------------------

describe('sense and status words', () => {
  test('every sense code the helper builds has its Annex D text', () => {
    for (const [name, code] of Object.entries(Sense)) {
      assert.ok(isNamedSenseCode(code.asc, code.ascq), `${name} has no text`);
    }
  });

  test('the examples from the brief and the spec', () => {
    assert.equal(senseCodeText(Sense.INVALID_FIELD), 'ILLEGAL REQUEST: INVALID FIELD IN CDB');
    assert.equal(senseCodeText(Sense.INVALID_OPCODE), 'ILLEGAL REQUEST: INVALID COMMAND OPERATION CODE');
    assert.equal(senseCodeText(Sense.IO_ERROR), 'ABORTED COMMAND: I/O PROCESS TERMINATED');
    assert.equal(senseCodeText(Sense.LUN_COMM_FAILURE), 'ABORTED COMMAND: LOGICAL UNIT COMMUNICATION FAILURE');
    assert.equal(senseCodeText({ key: 6, asc: 0x2a, ascq: 0x03 }), 'UNIT ATTENTION: RESERVATIONS PREEMPTED');
    assert.equal(senseCodeText({ key: 6, asc: 0x2a, ascq: 0x05 }), 'UNIT ATTENTION: REGISTRATIONS PREEMPTED');
    assert.equal(senseCodeText({ key: 5, asc: 0x26, ascq: 0x04 }), 'ILLEGAL REQUEST: INVALID RELEASE OF PERSISTENT RESERVATION');
    assert.equal(senseCodeText({ key: 5, asc: 0x55, ascq: 0x04 }), 'ILLEGAL REQUEST: INSUFFICIENT REGISTRATION RESOURCES');
  });

  test('unknown and vendor codes', () => {
    assert.equal(senseCodeText({ key: 5, asc: 0x7e, ascq: 0x01 }), 'ILLEGAL REQUEST: ASC 0x7e ASCQ 0x01');
    assert.equal(isNamedSenseCode(0x7e, 0x01), false);
    assert.equal(additionalSenseText(0x80, 0x00), 'VENDOR SPECIFIC');
    assert.equal(senseCodeText({ key: 6, asc: 0x2a, ascq: 0x01 }), 'UNIT ATTENTION: MODE PARAMETERS CHANGED');
    assert.equal(senseCodeText({ key: 6, asc: 0x2c, ascq: 0x09 }), 'UNIT ATTENTION: PREVIOUS RESERVATION CONFLICT STATUS');
    assert.equal(senseKeyName(0x09), 'VENDOR SPECIFIC');
    assert.equal(senseKeyName(0x15), 'ILLEGAL REQUEST'); // only bits 3-0
  });

  test('the extra texts are upper case as in SPC-4 Annex D and each one is reachable', () => {
    for (const [code, text] of MORE_ADDITIONAL_SENSE_TEXTS) {
      assert.equal(text, text.toUpperCase(), `0x${code.toString(16)}`);
      assert.ok(code >= 0 && code <= 0xffff);
      assert.equal(additionalSenseText(code >> 8, code & 0xff), text);
    }
  });

  test('status names', () => {
    assert.equal(statusName(0x00), 'GOOD');
    assert.equal(statusName(0x02), 'CHECK CONDITION');
    assert.equal(statusName(0x08), 'BUSY');
    assert.equal(statusName(0x18), 'RESERVATION CONFLICT');
    assert.equal(statusName(0x28), 'TASK SET FULL');
    assert.equal(statusName(0x7e), 'status 0x7e');
  });

  test('senseDetails: fixed, descriptor, deferred, and nothing', () => {
    const fixed = senseDetails(builders.fixedSense96(0x05, 0x24, 0x00));
    assert.equal(fixed?.text, 'ILLEGAL REQUEST: INVALID FIELD IN CDB');
    assert.equal(fixed?.format, 'fixed');
    assert.equal(fixed?.deferred, false);
    assert.equal(fixed?.bytes.length, 18); // 8 + ADDITIONAL SENSE LENGTH 10, not all 96
    const descriptor = new Uint8Array(96);
    descriptor.set([0x73, 0x06, 0x2a, 0x04, 0, 0, 0, 0]);
    const d = senseDetails(descriptor);
    assert.deepEqual([d?.key, d?.asc, d?.ascq, d?.format, d?.deferred], [6, 0x2a, 0x04, 'descriptor', true]);
    assert.equal(d?.bytes.length, 8);
    assert.equal(senseDetails(new Uint8Array(96)), null);
  });

  test('exit status follows the SCSI status', () => {
    assert.equal(exitCodeForStatus(0x00), 0);
    assert.equal(exitCodeForStatus(0x02), 2);
    assert.equal(exitCodeForStatus(0x08), 8);
    assert.equal(exitCodeForStatus(0x18), 24);
    assert.equal(exitCodeForStatus(0x28), 40);
  });
});

// ---- PR IN data ------------------------------------------------------------------------

describe('PR IN data (SPC-4 §6.15)', () => {
  test('READ KEYS: none, two, and cut off by the allocation length', () => {
    assert.deepEqual(decodeReadKeys(prInData(0, [])), {
      kind: 'read-keys', generation: 0, additionalLength: 0, keys: [], truncated: false,
    });
    const two = decodeReadKeys(prInData(3, [...be64(0xabcn), ...be64(0xffff_ffff_ffff_ffffn)]));
    assert.deepEqual(two.keys, [0xabcn, 0xffff_ffff_ffff_ffffn]);
    assert.equal(two.generation, 3);
    assert.equal(two.truncated, false);
    // Three keys registered, only 8 + 12 bytes let through: one whole key.
    const cut = decodeReadKeys(prInData(7, [...be64(1n), ...be64(2n), ...be64(3n)], 24).slice(0, 20));
    assert.deepEqual(cut.keys, [1n]);
    assert.equal(cut.additionalLength, 24);
    assert.equal(cut.truncated, true);
  });

  test('the header must be there', () => {
    assert.throws(() => decodeReadKeys(new Uint8Array(7)), {
      name: 'PrDataError', message: 'Cannot decode READ KEYS data: 7 bytes received, the header needs 8',
    });
    assert.throws(() => decodeCapabilities(new Uint8Array(3)), PrDataError);
    assert.throws(() => decodePrInData(0x1f, new Uint8Array(8)), /unknown service action 0x1f/);
  });

  test('READ RESERVATION: none, and a held one with scope and type', () => {
    assert.equal(decodeReadReservation(prInData(1, [])).reservation, null);
    const body = [...be64(0x1234n), 0, 0, 0, 0, 0, 0x05, 0, 0];
    const held = decodeReadReservation(prInData(2, body));
    assert.deepEqual(held.reservation, { key: 0x1234n, scope: 0, type: 5 });
    assert.equal(scopeTypeText(0, 5), 'LU / Write Exclusive - Registrants Only');
    assert.equal(formatKey(0x1234n), '0x0000000000001234');
    assert.equal(decodeReadReservation(prInData(2, body).slice(0, 12)).truncated, true);
  });

  test('REPORT CAPABILITIES: flags and the type mask', () => {
    // LENGTH 8; CRH SIP_C ATP_C PTPL_C; TMV, ALLOW COMMANDS 1; mask WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX | EX_AC_AR
    const caps = decodeCapabilities(Uint8Array.from([0x00, 0x08, 0x1d, 0x90, 0xea, 0x01, 0, 0]));
    assert.deepEqual(caps.flags.map((f) => [f.name, f.value]), [
      ['RLR_C', false], ['CRH', true], ['SIP_C', true], ['ATP_C', true], ['PTPL_C', true], ['TMV', true], ['PTPL_A', false],
    ]);
    assert.equal(caps.allowCommands, 1);
    assert.deepEqual(caps.supportedTypes, [1, 3, 5, 6, 7, 8]);
    assert.equal(caps.truncated, false);
    const noMask = decodeCapabilities(Uint8Array.from([0x00, 0x08, 0x01, 0x01, 0xea, 0x01, 0, 0]));
    assert.deepEqual(noMask.supportedTypes, []); // TMV clear: the mask means nothing
    assert.equal(noMask.flags.find((f) => f.name === 'PTPL_A')?.value, true);
  });

  test('each type has its own mask bit', () => {
    for (const t of RESERVATION_TYPES) {
      const mask = Uint8Array.from([0, 8, 0, 0x80, t.maskBit >> 8, t.maskBit & 0xff, 0, 0]);
      assert.deepEqual(decodeCapabilities(mask).supportedTypes, [t.code], t.name);
    }
  });

  test('READ FULL STATUS: iSCSI, FC and SAS initiators, holder and ports', () => {
    const data = prInData(9, [
      ...fullStatusDescriptor({ key: 0xaan, holder: true, scope: 0, type: 5, port: 1, tid: iscsiTransportId('iqn.1994-05.com.redhat:host-a', '23d000000') }),
      ...fullStatusDescriptor({ key: 0xbbn, allTgPt: true, tid: fcTransportId(0x21000024ff123456n) }),
      ...fullStatusDescriptor({ key: 0xccn, port: 2, tid: sasTransportId(0x5000c50012345678n) }),
    ]);
    const fs = decodeFullStatus(data);
    assert.equal(fs.truncated, false);
    assert.equal(fs.descriptors.length, 3);
    const [a, b, c] = fs.descriptors;
    assert.deepEqual([a?.key, a?.reservationHolder, a?.allTargetPorts, a?.type, a?.relativeTargetPort], [0xaan, true, false, 5, 1]);
    assert.equal(a?.transportId?.protocolName, 'iSCSI');
    assert.equal(a?.transportId?.identifier, 'iqn.1994-05.com.redhat:host-a,i,0x23d000000');
    assert.equal(a?.transportId?.iscsiName, 'iqn.1994-05.com.redhat:host-a');
    assert.equal(a?.transportId?.isid, '23d000000');
    assert.deepEqual([b?.allTargetPorts, b?.reservationHolder, b?.transportId?.protocolName, b?.transportId?.identifier],
      [true, false, 'FCP', '0x21000024ff123456']);
    assert.deepEqual([c?.transportId?.protocolName, c?.transportId?.identifier], ['SAS', '0x5000c50012345678']);
  });

  test('READ FULL STATUS cut off inside a descriptor keeps the whole ones', () => {
    const d1 = fullStatusDescriptor({ key: 1n, tid: iscsiTransportId('iqn.2000-01.x:a', null) });
    const d2 = fullStatusDescriptor({ key: 2n, tid: iscsiTransportId('iqn.2000-01.x:b', null) });
    const whole = prInData(1, [...d1, ...d2]);
    const inTransportId = decodeFullStatus(whole.slice(0, 8 + d1.length + 30));
    assert.equal(inTransportId.truncated, true);
    assert.deepEqual(inTransportId.descriptors.map((d) => [d.key, d.transportId?.identifier ?? null]), [[1n, 'iqn.2000-01.x:a'], [2n, null]]);
    const inHeader = decodeFullStatus(whole.slice(0, 8 + d1.length + 10));
    assert.deepEqual(inHeader.descriptors.map((d) => d.key), [1n]);
    assert.equal(inHeader.truncated, true);
  });

  test('a descriptor length past the end never reads beyond the data', () => {
    const bad = prInData(1, [...be64(5n), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...be32(0xffffffff), 1, 2, 3]);
    const fs = decodeFullStatus(bad);
    assert.equal(fs.descriptors[0]?.transportId, null);
    assert.equal(fs.truncated, true);
  });

  test('random data decodes or throws PrDataError, for every service action', () => {
    fc.assert(fc.property(fc.nat(3), fc.uint8Array({ maxLength: 600 }), fc.nat(64), (sa, bytes, offset) => {
      // A view at a non-zero offset into a larger buffer (style habit 3).
      const backing = new Uint8Array(offset + bytes.length);
      backing.set(bytes, offset);
      try {
        decodePrInData(sa, backing.subarray(offset));
      } catch (error) {
        assert.ok(error instanceof PrDataError);
      }
    }));
  });
});

describe('TransportIDs (SPC-4 §7.6.4)', () => {
  test('iSCSI without NUL stops at the field end; format 0 has no ISID', () => {
    const id = decodeTransportId(Uint8Array.from([0x05, 0, 0, 4, 0x61, 0x62, 0x63, 0x64, 0x65]));
    assert.equal(id.identifier, 'abcd');
    assert.equal(id.isid, undefined);
  });

  test('SRP, unknown protocols and short ones', () => {
    const srp = decodeTransportId(Uint8Array.from([0x04, 0, 0, 0, 0, 0, 0, 0, ...new Array(16).fill(0x11)]));
    assert.deepEqual([srp.protocolName, srp.identifier], ['SRP', `0x${'11'.repeat(16)}`]);
    const odd = decodeTransportId(Uint8Array.from([0x0c, 0xab]));
    assert.deepEqual([odd.protocolName, odd.identifier], ['protocol 0xc', '0x0cab']);
    const shortFc = decodeTransportId(Uint8Array.from([0x00, 0, 0]));
    assert.equal(shortFc.identifier, '0x000000');
  });
});

// ---- CDBs and parameter lists -----------------------------------------------------------

describe('CDBs and the parameter list match the independent builders', () => {
  test('PR IN', () => {
    for (const sa of [0, 1, 2, 3]) {
      for (const len of [0, 8, 255, 256, 8192]) {
        assert.deepEqual(prInCdb(sa, len), builders.prInCdb({ sa, allocationLength: len }));
      }
    }
    assert.throws(() => prInCdb(0, 8193), RangeError);
  });

  test('PR OUT, CLEANUP and the basic parameter list', () => {
    assert.deepEqual(prOutCdb({ serviceAction: 1, scope: 0, type: 5, parameterListLength: 24 }),
      builders.prOutCdb({ sa: 1, scope: 0, type: 5, paramLength: 24 }));
    assert.deepEqual(cleanupCdb(), builders.cleanupCdb());
    assert.deepEqual(
      prOutParameterList({ key: 0x1122334455667788n, serviceActionKey: 0xabcn, aptpl: true, allTargetPorts: true }),
      builders.prOutParams({ key: 0x1122334455667788n, saKey: 0xabcn, aptpl: true, allTgPt: true }),
    );
    assert.throws(() => prOutParameterList({ key: 1n << 64n, serviceActionKey: 0n, aptpl: false, allTargetPorts: false }), RangeError);
  });
});

// ---- command line ------------------------------------------------------------------------

describe('command line', () => {
  test('keys and types as sg_persist takes them', () => {
    assert.equal(parseKey('abc'), 0xabcn);
    assert.equal(parseKey('0xABC'), 0xabcn);
    assert.equal(parseKey('ffffffffffffffff'), 0xffff_ffff_ffff_ffffn);
    assert.equal(parseKey('1ffffffffffffffff'), null);
    assert.equal(parseKey('xyz'), null);
    assert.equal(parseKey(''), null);
    assert.deepEqual(['we', 'ea', 'we-ro', 'EA_RO', 'we-ar', 'ea-ar'].map(parseReservationType), [1, 3, 5, 6, 7, 8]);
    assert.equal(parseReservationType('5'), 5);
    assert.equal(parseReservationType('0x8'), 8);
    assert.equal(parseReservationType('2'), 2); // obsolete, but a device's answer to it is worth seeing
    assert.equal(parseReservationType('16'), null);
    assert.equal(parseReservationType('wx'), null);
  });

  test('a PR OUT command with every option, long and short, anywhere', () => {
    const long = parseClientArgs(['reserve', '--socket=/run/x.sock', '--param-rk', '0xabc', '--prout-type=we-ro', '/dev/sdb', '--param-aptpl', '--param-alltgpt', '--json']);
    const short = parseClientArgs(['-k/run/x.sock', '-K', 'abc', '-T5', '-ZYj', 'reserve', '/dev/sdb']);
    for (const p of [long, short]) {
      assert.equal(p.kind, 'run');
      if (p.kind !== 'run') return;
      assert.equal(p.command.name, 'reserve');
      assert.equal(p.device, '/dev/sdb');
      assert.deepEqual({ ...p.options }, {
        socketPath: '/run/x.sock', json: true, timeoutMs: 60_000, readOnly: false, allocationLength: 8192,
        key: 0xabcn, serviceActionKey: 0n, type: 5, aptpl: true, allTargetPorts: true,
      });
    }
  });

  test('defaults, prefixes, -- and --help/--version', () => {
    const p = parseClientArgs(['--al=16', '--time', '0', 'read-keys', '--', '-odd-name']);
    assert.equal(p.kind, 'run');
    if (p.kind === 'run') {
      assert.equal(p.options.socketPath, '/var/run/qemu-pr-helper.sock');
      assert.equal(p.options.allocationLength, 16);
      assert.equal(p.options.timeoutMs, 0);
      assert.equal(p.device, '-odd-name');
    }
    assert.deepEqual(parseClientArgs(['read-keys', '--bogus', '-h']), { kind: 'usage-error', message: "unrecognized option '--bogus'" });
    assert.deepEqual(parseClientArgs(['features', '-h']), { kind: 'help' });
    assert.deepEqual(parseClientArgs(['--version']), { kind: 'version' });
  });

  const errors: [string[], string][] = [
    [[], 'missing COMMAND'],
    [['frobnicate'], "unknown command 'frobnicate'"],
    [['read-keys'], 'read-keys needs a DEVICE'],
    [['features', '/dev/sda'], "unexpected argument '/dev/sda'"],
    [['read-keys', '/dev/a', '/dev/b'], "unexpected argument '/dev/b'"],
    [['reserve', '/dev/a'], 'reserve needs --prout-type (e.g. --prout-type=we-ro)'],
    [['release', '-K1', '/dev/a'], 'release needs --prout-type (e.g. --prout-type=we-ro)'],
    [['read-keys', '--param-rk=1', '/dev/a'], '--param-rk applies only to PR OUT commands, not to read-keys'],
    [['cleanup', '-T', 'we', '/dev/a'], '-T applies only to PR OUT commands, not to cleanup'],
    [['register', '--alloc-length=8', '/dev/a'], '--alloc-length applies only to PR IN commands, not to register'],
    [['features', '--readonly'], '--readonly applies only to commands on a DEVICE, not to features'],
    [['read-keys', '-l', '8193', '/dev/a'], "invalid allocation length '8193': expected 0-8192"],
    [['register', '-S', 'g', '/dev/a'], "invalid key 'g' for -S: expected up to 16 hex digits, with or without 0x"],
    [['reserve', '-T', 'zz', '/dev/a'], "invalid reservation type 'zz': expected 0-15 or one of we, ea, we-ro, ea-ro, we-ar, ea-ar"],
    [['features', '-t', 'soon'], "invalid timeout 'soon': expected seconds, 0 to wait forever"],
    [['features', '--param'], "option '--param' is ambiguous; possibilities: '--param-rk' '--param-sark' '--param-aptpl' '--param-alltgpt'"],
    [['features', '--json=yes'], "option '--json' doesn't allow an argument"],
    [['features', '-k'], "option requires an argument -- 'k'"],
    [['features', '--socket'], "option '--socket' requires an argument"],
    [['features', '-x'], "invalid option -- 'x'"],
    [['features', '--socket='], '--socket needs a path'],
  ];
  for (const [args, message] of errors) {
    test(`usage error: ${args.join(' ') || '(nothing)'}`, () => {
      assert.deepEqual(parseClientArgs(args), { kind: 'usage-error', message });
    });
  }

  test('--help names every command and the exit statuses', () => {
    const help = clientUsageText('qemu-pr-helper-client');
    for (const c of COMMANDS) assert.match(help, new RegExp(`^  ${c.name}\\b`, 'm'));
    for (const line of ['  0    GOOD', '  2    CHECK CONDITION', '  8    BUSY', '  24   RESERVATION CONFLICT (0x18)', '  1    usage error']) {
      assert.ok(help.includes(line), line);
    }
    assert.ok(help.split('\n').every((l) => l.length <= 80));
  });
});

// ---- output ---------------------------------------------------------------------------------

function report(name: string, outcome: { status: number; sense?: Uint8Array; data?: Uint8Array }, extra: Partial<CommandReport> = {}): CommandReport {
  const command = findCommand(name);
  assert.ok(command !== null && command.kind !== 'features');
  return {
    command, socket: '/run/pr.sock', features: 1, device: '/dev/sdb',
    access: command.kind === 'pr-in' ? 'read-only' : 'read-write', cdb: new Uint8Array(16),
    parameters: null, allocationLength: command.kind === 'pr-in' ? 8192 : null,
    outcome: { status: outcome.status, sense: outcome.sense ?? new Uint8Array(96), data: outcome.data ?? new Uint8Array(0) },
    ...extra,
  };
}

describe('output', () => {
  test('features, with and without CLEANUP', () => {
    assert.equal(featuresText(featuresResult('/run/pr.sock', 1, 1)), [
      'helper              /run/pr.sock',
      'features            0x00000001',
      "  bit 0             CLEANUP supported: the helper accepts QEMU's opcode 0xFF",
      'reply sent          0x00000001',
      '',
    ].join('\n'));
    const old = featuresResult('/run/pr.sock', 0x80000000, 0);
    assert.deepEqual([old.cleanup, old.unknownBits, old.featuresHex], [false, [31], '0x80000000']);
    assert.match(featuresText(old), /^ {2}bit 0 {13}CLEANUP not supported/m);
    assert.match(featuresText(old), /^ {2}bit 31 {12}unknown to this client$/m);
  });

  test('CHECK CONDITION with the sense in words', () => {
    const r = commandResult(report('read-keys', { status: 2, sense: builders.fixedSense96(0x05, 0x24, 0x00) }));
    assert.equal(r.exitStatus, 2);
    assert.equal(r.data, null);
    assert.equal(commandText(r), [
      'helper              /run/pr.sock (features 0x00000001)',
      'command             PERSISTENT RESERVE IN, READ KEYS',
      'device              /dev/sdb (opened read-only)',
      'allocation length   8192',
      'status              CHECK CONDITION (0x02)',
      'sense               ILLEGAL REQUEST: INVALID FIELD IN CDB (05/24/00)',
      'sense bytes         70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00',
      '',
    ].join('\n'));
  });

  test('the sense is not decoded for other statuses', () => {
    const r = commandResult(report('reserve', { status: 0x18, sense: buildFixedSense(Sense.INVALID_FIELD) }));
    assert.deepEqual([r.sense, r.statusName, r.exitStatus], [null, 'RESERVATION CONFLICT', 24]);
  });

  test('PR OUT rows: keys, scope/type, flags', () => {
    const r = commandResult(report('reserve', { status: 0 }, {
      parameters: { key: 0xabcn, serviceActionKey: 0n, scope: 0, type: 5, aptpl: true, allTargetPorts: false },
    }));
    assert.equal(commandText(r), [
      'helper              /run/pr.sock (features 0x00000001)',
      'command             PERSISTENT RESERVE OUT, RESERVE',
      'device              /dev/sdb (opened read-write)',
      'reservation key     0x0000000000000abc',
      'service action key  0x0000000000000000',
      'scope / type        LU / Write Exclusive - Registrants Only (5, we-ro)',
      'flags               APTPL',
      'status              GOOD (0x00)',
      '',
    ].join('\n'));
    assert.deepEqual(r.parameters, {
      key: '0x0000000000000abc', serviceActionKey: '0x0000000000000000', scope: 0, scopeName: 'LU', type: 5,
      typeName: 'Write Exclusive - Registrants Only', aptpl: true, allTargetPorts: false,
    });
  });

  test('READ KEYS table and JSON', () => {
    const r = commandResult(report('read-keys', { status: 0, data: prInData(3, [...be64(0xabcn), ...be64(0xdefn)]) }));
    assert.match(commandText(r), /\ngeneration {10}3 \(0x00000003\)\nregistered keys {5}2\n {20}0x0000000000000abc\n {20}0x0000000000000def\n$/);
    assert.deepEqual(r.data, { kind: 'read-keys', generation: 3, additionalLength: 16, keys: ['0x0000000000000abc', '0x0000000000000def'], truncated: false });
    const none = commandResult(report('read-keys', { status: 0, data: prInData(0, []) }));
    assert.match(commandText(none), /\nregistered keys {5}none\n$/);
  });

  test('READ RESERVATION table', () => {
    const r = commandResult(report('read-reservation', { status: 0, data: prInData(4, [...be64(0x10n), 0, 0, 0, 0, 0, 0x01, 0, 0]) }));
    assert.match(commandText(r), /\nreservation key {5}0x0000000000000010\nscope \/ type {8}LU \/ Write Exclusive \(1, we\)\n$/);
    const none = commandResult(report('read-reservation', { status: 0, data: prInData(4, []) }));
    assert.match(commandText(none), /\nreservation {9}none\n$/);
  });

  test('REPORT CAPABILITIES table', () => {
    const r = commandResult(report('report-capabilities', { status: 0, data: Uint8Array.from([0, 8, 0x0d, 0x80, 0x22, 0x00, 0, 0]) }));
    const text = commandText(r);
    assert.ok(text.endsWith([
      'length              8',
      'RLR_C               no   Replace Lost Reservation Capable',
      'CRH                 no   Compatible Reservation Handling',
      'SIP_C               yes  Specify Initiator Ports Capable',
      'ATP_C               yes  All Target Ports Capable',
      'PTPL_C              yes  Persist Through Power Loss Capable',
      'TMV                 yes  Type Mask Valid',
      'PTPL_A              no   Persist Through Power Loss Activated',
      'ALLOW COMMANDS      0',
      'type mask           0x2200',
      'supported types     Write Exclusive (1, we)',
      '                    Write Exclusive - Registrants Only (5, we-ro)',
      '',
    ].join('\n')), text);
    assert.deepEqual(r.data?.kind === 'report-capabilities' ? r.data.flags['PTPL_C'] : null, true);
  });

  test('READ FULL STATUS table and JSON', () => {
    const data = prInData(9, [
      ...fullStatusDescriptor({ key: 0xaan, holder: true, type: 5, port: 1, tid: iscsiTransportId('iqn.2000-01.x:a', '23d000000') }),
      ...fullStatusDescriptor({ key: 0xbbn, allTgPt: true, tid: fcTransportId(0x21000024ff123456n) }),
    ]);
    const r = commandResult(report('read-full-status', { status: 0, data }));
    assert.ok(commandText(r).endsWith([
      'generation          9 (0x00000009)',
      'registrations       2',
      '  [1] key           0x00000000000000aa',
      '      holder        yes: LU / Write Exclusive - Registrants Only (5, we-ro)',
      '      target port   relative port 1',
      '      transport ID  iSCSI iqn.2000-01.x:a,i,0x23d000000',
      '  [2] key           0x00000000000000bb',
      '      holder        no',
      '      target port   all',
      '      transport ID  FCP 0x21000024ff123456',
      '',
    ].join('\n')), commandText(r));
    assert.ok(r.data?.kind === 'read-full-status');
    assert.deepEqual(r.data.registrations[0]?.transportId, {
      protocol: 5, protocolName: 'iSCSI', format: 1, identifier: 'iqn.2000-01.x:a,i,0x23d000000',
      iscsiName: 'iqn.2000-01.x:a', isid: '23d000000', bytes: Buffer.from(iscsiTransportId('iqn.2000-01.x:a', '23d000000')).toString('hex'),
    });
    // JSON round trip: nothing (bigint) that JSON.stringify would refuse.
    assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
  });

  test('undecodable data is shown in hex with the reason', () => {
    const r = commandResult(report('read-keys', { status: 0, data: Uint8Array.from([0, 0, 0, 1]) }));
    assert.equal(r.dataError, 'Cannot decode READ KEYS data: 4 bytes received, the header needs 8');
    assert.match(commandText(r), /\ndata {16}Cannot decode READ KEYS data: .*\ndata bytes {10}00 00 00 01\n$/);
  });

  test('every label fits the label column', () => {
    const r = commandResult(report('read-full-status', { status: 0, data: prInData(0, [], 40) }));
    for (const line of commandText(r).split('\n').filter((l) => l !== '' && !l.startsWith(' '))) {
      assert.match(line.slice(0, LABEL_WIDTH), /^\S[^]*\s$/, line);
    }
    assert.match(commandText(r), /\ntruncated {11}yes: the device had more data; raise --alloc-length\n$/);
  });
});
