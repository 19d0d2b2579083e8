import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { PoskeyError } from '../../src/errors.js';
import { KEY_TABLE_FILE, KeyTable, type NewKeyRecord } from '../../src/hsm/http/key-table.js';

const DAY = 86_400_000;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'poskey-keytable-'));
  dirs.push(d);
  return d;
}

/** A table on a temp file with a clock the test moves. */
function table(start = Date.UTC(2025, 0, 1)) {
  const now = { t: start };
  const dir = tempDir();
  const t = KeyTable.inDataDir(dir, { clock: () => now.t });
  return { t, now, path: join(dir, KEY_TABLE_FILE) };
}

function rec(block = 'D0112P0TB00E0000BLOCK', over: Partial<NewKeyRecord> = {}): NewKeyRecord {
  return {
    keyBlock: block,
    keyType: 'ZPK',
    usage: 'P0',
    algorithm: 'tdes2',
    modeOfUse: 'B',
    exportability: 'E',
    kcv: 'ABCDEF',
    kcvMethod: 'legacy',
    origin: 'POSKEY_HSM',
    enabled: true,
    ...over,
  };
}

function code(expected: string, field?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, String(e));
    assert.equal(e.code, expected, e.message);
    if (field !== undefined) assert.equal(e.field, field);
    return true;
  };
}

describe('KeyTable', () => {
  it('stores a key with a key-<uuid v4> id, CREATE_COMPLETE, usage started', () => {
    const { t, now } = table();
    const k = t.insert(rec());
    assert.match(k.id, /^key-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // No run of 16 hex digits: the audit log takes the id (it refuses such runs as key material).
    assert.doesNotMatch(k.id, /[0-9a-f]{16}/);
    assert.equal(k.state, 'CREATE_COMPLETE');
    assert.equal(k.enabled, true);
    assert.equal(k.created, now.t);
    assert.equal(k.usageStart, now.t);
    assert.equal(k.usageStop, undefined);
    assert.deepEqual(t.get(k.id), k);
    t.close();
  });

  it('opens the file in WAL mode with mode 0600 and keeps keys across a reopen', () => {
    const { t, path } = table();
    const k = t.insert(rec(), 'alias/persisted');
    t.close();
    assert.equal(statSync(path).mode & 0o777, 0o600);
    // SQLite header byte 18/19 = 2 in WAL mode.
    assert.equal(readFileSync(path)[18], 2);
    const again = new KeyTable(path);
    assert.equal(again.get(k.id).keyBlock, k.keyBlock);
    assert.equal(again.getAlias('alias/persisted').keyId, k.id);
    again.close();
    again.close();
  });

  it('refuses an unknown id with POSKEY_ERR_KEY_NOT_FOUND naming the field', () => {
    const { t } = table();
    assert.throws(() => t.get('key-0000000000000000', 'keyId'), code('POSKEY_ERR_KEY_NOT_FOUND', 'keyId'));
    t.close();
  });

  it('insert with an existing alias stores nothing (one transaction)', () => {
    const { t } = table();
    t.insert(rec(), 'alias/taken');
    assert.throws(() => t.insert(rec('OTHER'), 'alias/taken'), code('POSKEY_ERR_ALIAS_EXISTS', 'alias'));
    assert.equal(t.list().items.length, 1);
    t.close();
  });

  it('stop/start usage records the times; a disabled key stays CREATE_COMPLETE', () => {
    const { t, now } = table();
    const k = t.insert(rec());
    now.t += 1000;
    const off = t.setEnabled(k.id, false);
    assert.equal(off.enabled, false);
    assert.equal(off.usageStop, now.t);
    assert.equal(off.state, 'CREATE_COMPLETE');
    now.t += 1000;
    const on = t.setEnabled(k.id, true);
    assert.equal(on.enabled, true);
    assert.equal(on.usageStart, now.t);
    assert.equal(on.usageStop, undefined);
    t.close();
  });

  it('schedules deletion 3-180 days out (default 7) and refuses other windows', () => {
    const { t, now } = table();
    const k = t.insert(rec());
    for (const bad of [0, 2, 181, 7.5, -3]) {
      assert.throws(() => t.scheduleDeletion(k.id, bad), code('POSKEY_ERR_VALIDATION', 'deleteKeyInDays'));
    }
    const d = t.scheduleDeletion(k.id);
    assert.equal(d.state, 'DELETE_PENDING');
    assert.equal(d.enabled, false);
    assert.equal(d.deletePending, now.t);
    assert.equal(d.deleteAt, now.t + 7 * DAY);
    assert.throws(() => t.scheduleDeletion(k.id, 3), code('POSKEY_ERR_KEY_STATE'));
    assert.throws(() => t.setEnabled(k.id, true), code('POSKEY_ERR_KEY_DELETE_PENDING'));
    const k2 = t.insert(rec('B2'));
    assert.equal(t.scheduleDeletion(k2.id, 3).deleteAt, now.t + 3 * DAY);
    const k3 = t.insert(rec('B3'));
    assert.equal(t.scheduleDeletion(k3.id, 180).deleteAt, now.t + 180 * DAY);
    t.close();
  });

  it('restores a pending key, disabled, and refuses to restore a key not pending', () => {
    const { t } = table();
    const k = t.insert(rec());
    assert.throws(() => t.restore(k.id), code('POSKEY_ERR_KEY_STATE'));
    t.scheduleDeletion(k.id, 3);
    const r = t.restore(k.id);
    assert.equal(r.state, 'CREATE_COMPLETE');
    assert.equal(r.enabled, false);
    assert.equal(r.deleteAt, undefined);
    assert.equal(r.deletePending, undefined);
    t.close();
  });

  it('purges a key once its deletion date passes: DELETE_COMPLETE, block gone, aliases released', () => {
    const { t, now, path } = table();
    const block = 'D0112P0TB00E0000SECRETISHBLOCKMARKER';
    const k = t.insert(rec(block), 'alias/doomed');
    t.scheduleDeletion(k.id, 3);
    now.t += 3 * DAY - 1;
    assert.equal(t.get(k.id).state, 'DELETE_PENDING');
    now.t += 1;
    const gone = t.get(k.id);
    assert.equal(gone.state, 'DELETE_COMPLETE');
    assert.equal(gone.keyBlock, undefined);
    assert.equal(t.getAlias('alias/doomed').keyId, undefined);
    assert.throws(() => t.restore(k.id), code('POSKEY_ERR_KEY_DELETED'));
    assert.throws(() => t.setEnabled(k.id, true), code('POSKEY_ERR_KEY_DELETED'));
    assert.throws(() => t.createAlias('alias/late', k.id), code('POSKEY_ERR_KEY_DELETED'));
    assert.equal(t.purgeExpired(), 0);
    t.close();
    // secure_delete + checkpoint: the block's bytes are not left in the file.
    assert.equal(readFileSync(path).includes(Buffer.from('SECRETISHBLOCKMARKER')), false);
  });

  it('lists by state and pages with nextToken; a forged token is refused', () => {
    const { t } = table();
    const ids = Array.from({ length: 5 }, (_, i) => t.insert(rec(`B${i}`)).id);
    t.scheduleDeletion(ids[1]!, 3);
    const p1 = t.list({ limit: 2 });
    assert.deepEqual(
      p1.items.map((k) => k.id),
      ids.slice(0, 2),
    );
    assert.ok(p1.nextToken);
    const p2 = t.list({ limit: 2, nextToken: p1.nextToken });
    assert.deepEqual(
      p2.items.map((k) => k.id),
      ids.slice(2, 4),
    );
    const p3 = t.list({ limit: 2, nextToken: p2.nextToken });
    assert.deepEqual(
      p3.items.map((k) => k.id),
      ids.slice(4),
    );
    assert.equal(p3.nextToken, undefined);
    assert.deepEqual(
      t.list({ state: 'DELETE_PENDING' }).items.map((k) => k.id),
      [ids[1]],
    );
    for (const bad of ['!!', 'eA', Buffer.from('a:alias/x').toString('base64url')]) {
      assert.throws(() => t.list({ nextToken: bad }), code('POSKEY_ERR_VALIDATION', 'nextToken'));
    }
    assert.throws(
      () => t.listAliases({ nextToken: Buffer.from('k12').toString('base64url') }),
      code('POSKEY_ERR_VALIDATION', 'nextToken'),
    );
    t.close();
  });

  it('pages through any number of keys exactly once, in order (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 25 }), fc.integer({ min: 1, max: 7 }), (n, size) => {
        const t = new KeyTable(':memory:');
        const ids = Array.from({ length: n }, (_, i) => t.insert(rec(`B${i}`)).id);
        const seen: string[] = [];
        let token: string | undefined;
        do {
          const page = t.list({ limit: size, ...(token === undefined ? {} : { nextToken: token }) });
          assert.ok(page.items.length <= size);
          seen.push(...page.items.map((k) => k.id));
          token = page.nextToken;
        } while (token !== undefined);
        t.close();
        assert.deepEqual(seen, ids);
      }),
      { numRuns: 40 },
    );
  });

  it('aliases: create, get, update, disassociate, list by key, delete', () => {
    const { t } = table();
    const a = t.insert(rec('A'));
    const b = t.insert(rec('B'));
    assert.deepEqual(t.createAlias('alias/one', a.id), { name: 'alias/one', keyId: a.id });
    assert.deepEqual(t.createAlias('alias/free'), { name: 'alias/free', keyId: undefined });
    assert.throws(() => t.createAlias('alias/one'), code('POSKEY_ERR_ALIAS_EXISTS', 'aliasName'));
    assert.throws(() => t.createAlias('alias/two', 'key-0000000000000000'), code('POSKEY_ERR_KEY_NOT_FOUND'));
    assert.equal(t.updateAlias('alias/one', b.id).keyId, b.id);
    assert.deepEqual(t.aliasesOf(b.id), ['alias/one']);
    assert.deepEqual(
      t.listAliases({ keyId: b.id }).items.map((x) => x.name),
      ['alias/one'],
    );
    assert.equal(t.updateAlias('alias/one', undefined).keyId, undefined);
    assert.throws(() => t.updateAlias('alias/none', a.id), code('POSKEY_ERR_ALIAS_NOT_FOUND', 'aliasName'));
    t.deleteAlias('alias/one');
    assert.throws(() => t.deleteAlias('alias/one'), code('POSKEY_ERR_ALIAS_NOT_FOUND'));
    assert.throws(() => t.getAlias('alias/one'), code('POSKEY_ERR_ALIAS_NOT_FOUND'));
    t.close();
  });

  it('pages aliases by name', () => {
    const { t } = table();
    const names = ['alias/c', 'alias/a', 'alias/b/x', 'alias/b'];
    for (const n of names) t.createAlias(n);
    const p1 = t.listAliases({ limit: 3 });
    const p2 = t.listAliases({ limit: 3, nextToken: p1.nextToken });
    assert.deepEqual(
      [...p1.items, ...p2.items].map((a) => a.name),
      [...names].sort(),
    );
    assert.equal(p2.nextToken, undefined);
    t.close();
  });

  it('rewrapAll rewrites every live block in one transaction and rolls back on any failure', () => {
    const { t, now } = table();
    const a = t.insert(rec('OLD-A'));
    const b = t.insert(rec('OLD-B'));
    const gone = t.insert(rec('OLD-C'));
    t.scheduleDeletion(gone.id, 3);
    now.t += 3 * DAY;
    t.purgeExpired();
    const seen: string[] = [];
    assert.equal(
      t.rewrapAll((block, id) => {
        seen.push(id);
        return block.replace('OLD', 'NEW');
      }),
      2,
    );
    assert.deepEqual(seen, [a.id, b.id]);
    assert.equal(t.get(a.id).keyBlock, 'NEW-A');
    assert.throws(() =>
      t.rewrapAll((block) => {
        if (block === 'NEW-B') throw new PoskeyError('POSKEY_ERR_LMK_BLOCK', 'bad block');
        return block.replace('NEW', 'NEWER');
      }),
    );
    assert.equal(t.get(a.id).keyBlock, 'NEW-A');
    assert.equal(t.get(b.id).keyBlock, 'NEW-B');
    assert.throws(() => t.rewrapAll(() => ''), code('POSKEY_ERR_INTERNAL'));
    assert.equal(
      t.rewrapAll((block) => block),
      0,
    );
    t.close();
  });
});
