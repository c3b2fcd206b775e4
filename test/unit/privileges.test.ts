import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  credentialProblems, parseThreadStatus, summarizeProblems, StatusFormatError, type ThreadCredentials,
} from '../../src/privileges/thread-status.js';
import { expectedAfterDrop, reviewUnprivileged, targetId } from '../../src/privileges/policy.js';
import { CAP_SYS_ADMIN, CAP_SYS_RAWIO, capabilitiesIn, describeMask, maskOf } from '../../src/privileges/capabilities.js';

const RAWIO = maskOf([CAP_SYS_RAWIO]);

function status(fields: Partial<Record<string, string>> = {}): string {
  const base: Record<string, string> = {
    Name: 'node', Umask: '0022', State: 'S (sleeping)', Uid: '65534\t65534\t65534\t65534',
    Gid: '65534\t65534\t65534\t65534', FDSize: '64', Groups: '', CapInh: '0000000000020000',
    CapPrm: '0000000000020000', CapEff: '0000000000020000', CapBnd: '0000000000000000',
    CapAmb: '0000000000020000', NoNewPrivs: '1', Seccomp: '0',
  };
  return Object.entries({ ...base, ...fields }).map(([k, v]) => `${k}:\t${v ?? ''}`).join('\n') + '\n';
}

describe('/proc status parsing', () => {
  test('reads ids, groups, the five capability sets and no_new_privs', () => {
    const t = parseThreadStatus(42, status({ Groups: '6 65534 ', CapBnd: '000001fffeffffff', NoNewPrivs: '0' }));
    assert.equal(t.tid, 42);
    assert.equal(t.name, 'node');
    assert.deepEqual(t.uids, [65534, 65534, 65534, 65534]);
    assert.deepEqual(t.groups, [6, 65534]);
    assert.equal(t.effective, 0x20000n);
    assert.equal(t.bounding, 0x1fffeffffffn);
    assert.equal(t.noNewPrivs, false);
  });

  test('an empty Groups line means no supplementary groups', () => {
    assert.deepEqual(parseThreadStatus(1, status({ Groups: '' })).groups, []);
  });

  test('missing or malformed credential lines are errors, never a silent pass', () => {
    for (const broken of [{ CapEff: undefined }, { Uid: '0 0 0' }, { CapPrm: 'zz' }, { Gid: 'a b c d' }]) {
      const text = status(broken as unknown as Record<string, string>).split('\n')
        .filter((line) => !line.endsWith(':\t')).join('\n');
      assert.throws(() => parseThreadStatus(1, text), StatusFormatError, JSON.stringify(broken));
    }
  });
});

describe('credential checks', () => {
  const expected = expectedAfterDrop(65534, 65534, RAWIO);
  const good = parseThreadStatus(7, status());

  test('the state after the drop passes', () => {
    assert.deepEqual(credentialProblems(good, expected), []);
  });

  test('each deviation is named', () => {
    const cases: [Partial<Record<string, string>>, RegExp][] = [
      [{ Uid: '65534\t0\t65534\t65534' }, /uids 65534\/0\/65534\/65534, expected 65534/],
      [{ Gid: '0\t0\t0\t0' }, /gids 0\/0\/0\/0, expected 65534/],
      [{ Groups: '6' }, /supplementary groups 6/],
      [{ CapEff: '0000000000000000' }, /effective capabilities none, expected cap_sys_rawio/],
      [{ CapPrm: '0000000000220000' }, /permitted capabilities cap_sys_rawio,cap_sys_admin/],
      [{ CapInh: '0000000000000001' }, /inheritable capabilities beyond cap_sys_rawio: cap_chown/],
      [{ CapAmb: '0000000000200000' }, /ambient capabilities beyond cap_sys_rawio: cap_sys_admin/],
      [{ CapBnd: '000001fffeffffff' }, /bounding capabilities beyond cap_sys_rawio/],
      [{ NoNewPrivs: '0' }, /no_new_privs is not set/],
    ];
    for (const [fields, pattern] of cases) {
      const problems = credentialProblems(parseThreadStatus(7, status(fields)), expected);
      assert.equal(problems.length, 1, JSON.stringify(fields));
      assert.match(problems[0] ?? '', pattern);
    }
  });

  test('any capability beyond the kept one in any set fails (property)', () => {
    fc.assert(fc.property(
      fc.constantFrom('CapEff', 'CapPrm', 'CapInh', 'CapAmb', 'CapBnd'),
      fc.integer({ min: 0, max: 40 }).filter((cap) => cap !== CAP_SYS_RAWIO),
      (field, cap) => {
        const base = field === 'CapBnd' ? 0n : RAWIO;
        const value = (base | (1n << BigInt(cap))).toString(16).padStart(16, '0');
        return credentialProblems(parseThreadStatus(1, status({ [field]: value })), expected).length > 0;
      },
    ));
  });

  test('problems shared by all threads are reported once', () => {
    const threads = [1, 2, 3].map((tid) => parseThreadStatus(tid, status({ NoNewPrivs: '0' })));
    assert.deepEqual(summarizeProblems(threads, expected), ['all 3 threads: no_new_privs is not set']);
    const mixed = [good, parseThreadStatus(8, status({ Name: 'prh-sgio', CapEff: '0' }))];
    assert.deepEqual(summarizeProblems(mixed, expected), ['thread 8 (prh-sgio): effective capabilities none, expected cap_sys_rawio']);
  });
});

describe('started without root', () => {
  const thread = (fields: Partial<Record<string, string>>, tid = 10): ThreadCredentials =>
    parseThreadStatus(tid, status({ CapBnd: '0000000000020000', NoNewPrivs: '0', ...fields }));

  test('systemd User= with AmbientCapabilities=CAP_SYS_RAWIO passes', () => {
    assert.deepEqual(reviewUnprivileged([thread({}), thread({}, 11)], 65534, 65534, RAWIO), { errors: [], warnings: [] });
  });

  test('without CAP_SYS_RAWIO: refused, with the way to grant it', () => {
    const r = reviewUnprivileged([thread({ CapEff: '0', CapPrm: '0', CapAmb: '0', CapInh: '0' })], 65534, 65534, RAWIO);
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0] ?? '', /without cap_sys_rawio.*AmbientCapabilities=CAP_SYS_RAWIO.*--ambient-caps=\+sys_rawio/);
  });

  test('with more than CAP_SYS_RAWIO: refused', () => {
    const r = reviewUnprivileged([thread({ CapEff: '0000000000220000', CapPrm: '0000000000220000' })], 65534, 65534, RAWIO);
    assert.ok(r.errors.some((e) => /effective capabilities cap_sys_rawio,cap_sys_admin/.test(e)));
  });

  test('a wide bounding set without no_new_privs and supplementary groups are warnings', () => {
    const r = reviewUnprivileged([thread({ CapBnd: '000001fffeffffff', Groups: '6' })], 65534, 65534, RAWIO);
    assert.deepEqual(r.errors, []);
    assert.equal(r.warnings.length, 2);
    assert.match(r.warnings[0] ?? '', /CapabilityBoundingSet=CAP_SYS_RAWIO/);
    assert.match(r.warnings[1] ?? '', /supplementary groups 6/);
    const nnp = reviewUnprivileged([thread({ CapBnd: '000001fffeffffff', NoNewPrivs: '1' })], 65534, 65534, RAWIO);
    assert.deepEqual(nnp.warnings, [], 'no_new_privs makes the bounding set moot');
  });
});

describe('-u/-g targets (docs/protocol.md §1.4)', () => {
  test('absent or 4294967295 means the current id', () => {
    assert.equal(targetId(null, 0), 0);
    assert.equal(targetId(0xffffffff, 1000), 1000);
    assert.equal(targetId(65534, 0), 65534);
    assert.equal(targetId(0, 1000), 0);
  });

  test('capability masks and names', () => {
    assert.equal(maskOf([CAP_SYS_RAWIO, CAP_SYS_ADMIN]), 0x220000n);
    assert.deepEqual(capabilitiesIn(0x220000n), [17, 21]);
    assert.equal(describeMask(0n), 'none');
    assert.equal(describeMask(1n << 40n), 'cap_checkpoint_restore');
  });
});
