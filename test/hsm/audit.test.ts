import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fromHex } from '../../src/crypto/bytes.js';
import { PoskeyError } from '../../src/errors.js';
import {
  type AuditEntry,
  AuditLog,
  canonicalAuditRecord,
  GENESIS_HASH,
  verifyAuditLog,
} from '../../src/hsm/audit.js';
import { formLmk, lmkKey } from '../../src/hsm/lmk.js';

const dirs: string[] = [];
function tempLog(): string {
  const d = mkdtempSync(join(tmpdir(), 'poskey-audit-'));
  dirs.push(d);
  return join(d, 'audit.jsonl');
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function code(expected: string) {
  return (e: unknown) => e instanceof PoskeyError && e.code === expected;
}

let tick = 0;
const clock = () => new Date(Date.UTC(2025, 0, 1, 0, 0, tick++));

async function writeLog(n: number): Promise<string> {
  const path = tempLog();
  const log = await AuditLog.open(path, { clock });
  for (let i = 0; i < n; i++) {
    await log.append({
      actor: 'ops',
      action: 'key.generate',
      keyId: `tpk-${i}`,
      kcv: '08D7B4',
      lmkId: '00',
      result: 'ok',
    });
  }
  await log.close();
  return path;
}

function lines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').slice(0, -1);
}

function rewrite(path: string, ls: string[]): void {
  writeFileSync(path, ls.map((l) => `${l}\n`).join(''));
}

describe('audit log', () => {
  it('appends chained records and verifies them', async () => {
    const path = await writeLog(5);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const ls = lines(path);
    assert.equal(ls.length, 5);
    const first = JSON.parse(ls[0]!);
    assert.deepEqual(Object.keys(first), [
      'seq',
      'time',
      'actor',
      'action',
      'keyId',
      'kcv',
      'lmkId',
      'result',
      'prev',
      'hash',
    ]);
    assert.equal(first.seq, 1);
    assert.equal(first.prev, GENESIS_HASH);
    assert.equal(JSON.parse(ls[1]!).prev, first.hash);
    const v = await verifyAuditLog(path);
    assert.deepEqual(v, { ok: true, records: 5, last: { seq: 5, hash: JSON.parse(ls[4]!).hash } });
  });

  it('the hash is SHA-256 of the canonical record without hash', async () => {
    const path = await writeLog(1);
    const rec = JSON.parse(lines(path)[0]!);
    const { hash, ...rest } = rec;
    assert.equal(createHash('sha256').update(canonicalAuditRecord(rest)).digest('hex'), hash);
  });

  it('continues the chain after reopening', async () => {
    const path = await writeLog(3);
    const log = await AuditLog.open(path, { clock });
    assert.equal(log.lastSeq, 3);
    const r = await log.append({ actor: 'ops', action: 'lmk.load', lmkId: '00', result: 'ok' });
    assert.equal(r.seq, 4);
    await log.close();
    assert.deepEqual((await verifyAuditLog(path)).ok, true);
  });

  it('reports file system failures as POSKEY_ERR_AUDIT_IO', async () => {
    const path = join(tempLog(), 'nested', 'audit.jsonl');
    await assert.rejects(AuditLog.open(path), code('POSKEY_ERR_AUDIT_IO'));
    await assert.rejects(verifyAuditLog(path), code('POSKEY_ERR_AUDIT_IO'));
  });

  it('an empty log verifies with zero records', async () => {
    const path = tempLog();
    await (await AuditLog.open(path)).close();
    assert.deepEqual(await verifyAuditLog(path), {
      ok: true,
      records: 0,
      last: { seq: 0, hash: GENESIS_HASH },
    });
  });

  it('detects an edited line', async () => {
    const path = await writeLog(5);
    const ls = lines(path);
    ls[2] = ls[2]!.replace('"result":"ok"', '"result":"error"');
    rewrite(path, ls);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 3, reason: 'edited', records: 2 });
  });

  it('detects an edited line whose hash was recomputed (the next line no longer chains)', async () => {
    const path = await writeLog(5);
    const ls = lines(path);
    const rec = JSON.parse(ls[1]!);
    rec.keyId = 'someone-else';
    const { hash: _drop, ...rest } = rec;
    const canonical = canonicalAuditRecord(rest);
    ls[1] = `${canonical.slice(0, -1)},"hash":"${createHash('sha256').update(canonical).digest('hex')}"}`;
    rewrite(path, ls);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 3, reason: 'edited', records: 2 });
  });

  it('detects a reformatted line (same values, not canonical)', async () => {
    const path = await writeLog(3);
    const ls = lines(path);
    ls[1] = JSON.stringify(JSON.parse(ls[1]!), null, 1).replace(/\n/g, '');
    rewrite(path, ls);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 2, reason: 'edited', records: 1 });
  });

  it('detects a removed line, including the first', async () => {
    const path = await writeLog(5);
    const ls = lines(path);
    rewrite(path, [...ls.slice(0, 2), ...ls.slice(3)]);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 3, reason: 'removed', records: 2 });
    rewrite(path, ls.slice(1));
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 1, reason: 'removed', records: 0 });
  });

  it('detects swapped lines, a line moved later, and a duplicated line as reordered', async () => {
    const path = await writeLog(5);
    const ls = lines(path);
    rewrite(path, [ls[0]!, ls[2]!, ls[1]!, ls[3]!, ls[4]!]);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 2, reason: 'reordered', records: 1 });
    rewrite(path, [ls[0]!, ls[2]!, ls[3]!, ls[4]!, ls[1]!]);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 2, reason: 'reordered', records: 1 });
    rewrite(path, [ls[0]!, ls[1]!, ls[1]!, ls[2]!]);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 3, reason: 'reordered', records: 2 });
  });

  it('detects malformed lines: bad JSON, blank line, unknown field, torn last line', async () => {
    const path = await writeLog(3);
    const ls = lines(path);
    rewrite(path, [ls[0]!, '{oops', ls[2]!]);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 2, reason: 'malformed', records: 1 });
    rewrite(path, [ls[0]!, '', ls[1]!]);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 2, reason: 'malformed', records: 1 });
    rewrite(path, [ls[0]!, ls[1]!.replace('"actor"', '"key":"00","actor"')]);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 2, reason: 'malformed', records: 1 });
    writeFileSync(path, `${ls[0]}\n${ls[1]!.slice(0, 20)}`);
    assert.deepEqual(await verifyAuditLog(path), { ok: false, line: 2, reason: 'malformed', records: 1 });
  });

  it('refuses to extend a log whose tail is torn or corrupt', async () => {
    const path = await writeLog(2);
    appendFileSync(path, '{"seq":3');
    await assert.rejects(AuditLog.open(path), code('POSKEY_ERR_AUDIT_CORRUPT'));
    const ls = lines(path);
    rewrite(path, [ls[0]!, ls[1]!.replace('"ok"', '"error"')]);
    await assert.rejects(AuditLog.open(path), code('POSKEY_ERR_AUDIT_CORRUPT'));
  });

  it('groups appends made in the same tick into one write + fsync', async () => {
    const path = tempLog();
    const log = await AuditLog.open(path, { clock });
    const done = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        log.append({ actor: 'ops', action: 'key.import', keyId: `k${i}`, result: 'ok' }),
      ),
    );
    assert.deepEqual(
      done.map((r) => r.seq),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    assert.equal(log.stats().writes, 1);
    // Appends arriving while a write is in flight go together into the next one.
    const a = log.append({ actor: 'ops', action: 'a', result: 'ok' });
    await new Promise((r) => setImmediate(r));
    const rest = [1, 2, 3].map(() => log.append({ actor: 'ops', action: 'b', result: 'ok' }));
    await Promise.all([a, ...rest]);
    assert.ok(log.stats().writes <= 3);
    await log.close();
    assert.equal((await verifyAuditLog(path)).ok, true);
  });

  it('validates entries: unknown field, missing field, bad result, bad kcv, too long', async () => {
    const log = await AuditLog.open(tempLog());
    const bad: unknown[] = [
      null,
      { actor: 'ops', action: 'x', result: 'ok', key: 'abc' },
      { action: 'x', result: 'ok' },
      { actor: 'ops', action: 'x', result: 'maybe' },
      { actor: 'ops', action: 'x', result: 'ok', kcv: 'XYZ' },
      { actor: 'ops', action: 'x', result: 'ok', detail: 'x'.repeat(2000) },
      { actor: 'ops', action: 'x', result: 'ok', lmkId: 7 },
    ];
    for (const [i, e] of bad.entries()) {
      await assert.rejects(log.append(e as AuditEntry), code('POSKEY_ERR_AUDIT_ENTRY'), `case ${i}`);
    }
    assert.equal(log.lastSeq, 0);
    await log.close();
    await assert.rejects(
      log.append({ actor: 'ops', action: 'x', result: 'ok' }),
      code('POSKEY_ERR_AUDIT_CLOSED'),
    );
  });

  it('refuses anything that looks like key material or a PAN', async () => {
    const log = await AuditLog.open(tempLog());
    for (const entry of [
      {
        actor: 'ops',
        action: 'key.import',
        result: 'ok' as const,
        detail: 'key 0123456789ABCDEFFEDCBA9876543210',
      },
      { actor: 'ops', action: 'pin.translate', result: 'ok' as const, detail: 'pan 4761739001010119' },
      { actor: 'ops', action: 'key.import', result: 'ok' as const, keyId: 'deadbeefdeadbeefdeadbeef' },
    ]) {
      await assert.rejects(log.append(entry), code('POSKEY_ERR_AUDIT_SECRET'));
    }
    await log.close();
  });

  it('fails closed after a write error (ENOSPC on /dev/full)', {
    skip: !existsSync('/dev/full'),
  }, async () => {
    const log = await AuditLog.open('/dev/full');
    await assert.rejects(
      log.append({ actor: 'ops', action: 'x', result: 'ok' }),
      code('POSKEY_ERR_AUDIT_IO'),
    );
    await assert.rejects(
      log.append({ actor: 'ops', action: 'y', result: 'ok' }),
      code('POSKEY_ERR_AUDIT_IO'),
    );
    await log.close();
  });

  it('after a session, the log holds no clear LMK or component', async () => {
    const c1 = '000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F';
    const c2 = '404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F';
    const path = tempLog();
    const log = await AuditLog.open(path);
    const { lmk, componentKcvs } = formLmk('00', [fromHex(c1), fromHex(c2)]);
    for (const [i, kcv] of componentKcvs.entries()) {
      await log.append({
        actor: `custodian-${i + 1}`,
        action: 'lmk.component',
        kcv,
        lmkId: '00',
        result: 'ok',
      });
    }
    await log.append({ actor: 'ceremony', action: 'lmk.form', kcv: lmk.kcv, lmkId: '00', result: 'ok' });
    await log.close();
    const clear = lmkKey(lmk).exportKeyBytes().toString('hex');
    const text = readFileSync(path, 'latin1');
    for (const s of [c1, c2, clear]) {
      assert.ok(!text.includes(s.toUpperCase()) && !text.includes(s.toLowerCase()));
      assert.ok(!text.includes(Buffer.from(s, 'hex').toString('base64')));
    }
    assert.equal((await verifyAuditLog(path)).ok, true);
  });
});
