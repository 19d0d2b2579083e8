/**
 * The repository contract, run against SQLite and PostgreSQL alike (sqlite.test.ts,
 * postgres.test.ts call `storeSuite` with their fixture).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PoskeyError } from '../../src/errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/store/migrations.js';
import { JOURNAL_COLUMNS, type NewJournalRow, type Repository } from '../../src/store/types.js';
import { lmkBlock, MID, MID2, PAN, purchase, type StoreFixture, settledWithin } from './helpers.js';

export function fails(code: string, field?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, String(e));
    assert.equal(e.code, code, e.message);
    if (field !== undefined) assert.equal(e.field, field, e.message);
    return true;
  };
}

export function storeSuite(makeFixture: () => Promise<StoreFixture>, beforeAll?: () => Promise<void>): void {
  let fx: StoreFixture;
  let repo: Repository;
  let stanSeq = 100;
  /** A STAN not used yet in this suite's database. */
  const stan = () => ++stanSeq;

  before(async () => {
    await beforeAll?.();
    fx = await makeFixture();
    repo = await fx.open();
    await repo.merchants.upsert({ mid: MID, name: 'Corner Shop', mcc: '5411' });
    await repo.merchants.upsert({ mid: MID2, name: '华联超市', mcc: '5311' });
  });
  after(async () => {
    await fx?.cleanup();
  });

  describe('migrations', () => {
    it('brings a new database to the current version and records each migration once', async () => {
      assert.equal(await repo.schemaVersion(), SCHEMA_VERSION);
      const again = await fx.open();
      assert.equal(await again.schemaVersion(), SCHEMA_VERSION);
      const rows = await repo.transaction((tx) =>
        tx.db.selectFrom('schema_migrations').selectAll().execute(),
      );
      assert.deepEqual(
        rows.map((r) => [r.version, r.name]),
        MIGRATIONS.map((m) => [m.version, m.name]),
      );
      await again.close();
    });

    it('refuses a database migrated by a newer poskey', async () => {
      const own = await makeFixture();
      try {
        const r = await own.open();
        await r.close();
        await own.exec(
          `INSERT INTO schema_migrations (version, name, applied_at) VALUES (${SCHEMA_VERSION + 1}, 'future', 0)`,
        );
        await assert.rejects(own.open(), fails('POSKEY_ERR_STORE_SCHEMA', 'schema_migrations'));
      } finally {
        await own.cleanup();
      }
    });
  });

  describe('merchants', () => {
    it('upserts, keeps createdAt, and lists by MID', async () => {
      const mid = '000000000000777';
      const first = await repo.merchants.upsert({ mid, name: 'Old name', mcc: '5812' });
      await new Promise((r) => setTimeout(r, 5));
      const second = await repo.merchants.upsert({ mid, name: 'New name', mcc: '5814' });
      assert.equal(second.createdAt, first.createdAt);
      assert.ok(second.updatedAt > first.updatedAt);
      assert.deepEqual(await repo.merchants.get(mid), second);
      assert.equal(second.name, 'New name');
      assert.equal(second.mcc, '5814');
      assert.equal(await repo.merchants.get('999999999999999'), undefined);
      const mids = (await repo.merchants.list()).map((m) => m.mid);
      assert.deepEqual(mids, [...mids].sort());
      assert.ok(mids.includes(mid) && mids.includes(MID2));
      assert.equal((await repo.merchants.get(MID2))?.name, '华联超市');
    });

    it('rejects malformed merchants without echoing the value', async () => {
      await assert.rejects(
        repo.merchants.upsert({ mid: 'short', name: 'x', mcc: '5411' }),
        fails('POSKEY_ERR_STORE_VALUE', 'mid'),
      );
      await assert.rejects(
        repo.merchants.upsert({ mid: MID, name: 'x', mcc: '54' }),
        fails('POSKEY_ERR_STORE_VALUE', 'mcc'),
      );
      await assert.rejects(repo.merchants.upsert({ mid: MID, name: 'a\nb', mcc: '5411' }), (e: Error) => {
        fails('POSKEY_ERR_STORE_VALUE', 'name')(e);
        assert.ok(!e.message.includes('a\nb'));
        return true;
      });
    });
  });

  describe('terminals', () => {
    it('creates a terminal with its TMK and reads it back', async () => {
      const tmk = lmkBlock();
      const t = await repo.terminals.create({
        tid: 'TERM0100',
        mid: MID,
        keyAlgorithm: 'TDES',
        serial: 'SN-100',
        tmk,
      });
      assert.deepEqual(
        { ...t, createdAt: 0, updatedAt: 0 },
        {
          tid: 'TERM0100',
          mid: MID,
          serial: 'SN-100',
          keyAlgorithm: 'TDES',
          tmk,
          state: 'new',
          batchNumber: 1,
          workingKeys: null,
          macFailures: 0,
          lastSignInAt: null,
          version: 1,
          createdAt: 0,
          updatedAt: 0,
        },
      );
      assert.deepEqual(await repo.terminals.get('TERM0100'), t);
      assert.equal(await repo.terminals.get('NOSUCHTM'), undefined);
    });

    it('refuses a second TID, a second serial and an unknown merchant', async () => {
      await repo.terminals.create({ tid: 'TERM0101', mid: MID, keyAlgorithm: 'SM4', serial: 'SN-101' });
      await assert.rejects(
        repo.terminals.create({ tid: 'TERM0101', mid: MID, keyAlgorithm: 'SM4' }),
        fails('POSKEY_ERR_STORE_DUPLICATE', 'tid'),
      );
      await assert.rejects(
        repo.terminals.create({ tid: 'TERM0102', mid: MID, keyAlgorithm: 'SM4', serial: 'SN-101' }),
        fails('POSKEY_ERR_STORE_DUPLICATE', 'serial'),
      );
      await assert.rejects(
        repo.terminals.create({ tid: 'TERM0103', mid: '555555555555555', keyAlgorithm: 'SM4' }),
        fails('POSKEY_ERR_STORE_NOT_FOUND', 'mid'),
      );
    });

    it('stores only LMK key blocks: a clear key is refused', async () => {
      const clear = { block: '0123456789ABCDEFFEDCBA9876543210', kcv: '08D7B4' };
      await assert.rejects(
        repo.terminals.create({ tid: 'TERM0104', mid: MID, keyAlgorithm: 'TDES', tmk: clear }),
        (e: Error) => {
          fails('POSKEY_ERR_STORE_KEY_BLOCK', 'tmk.block')(e);
          assert.ok(!e.message.includes(clear.block), 'the message must not carry the key');
          return true;
        },
      );
      await repo.terminals.create({ tid: 'TERM0104', mid: MID, keyAlgorithm: 'TDES' });
      await assert.rejects(repo.terminals.setTmk('TERM0104', clear), fails('POSKEY_ERR_STORE_KEY_BLOCK'));
      await assert.rejects(
        repo.terminals.setWorkingKeys('TERM0104', { tpk: lmkBlock('P0', 'E'), tak: clear }),
        fails('POSKEY_ERR_STORE_KEY_BLOCK', 'tak.block'),
      );
      await assert.rejects(
        repo.terminals.setTmk('TERM0104', { block: lmkBlock().block, kcv: 'XYZ' }),
        fails('POSKEY_ERR_STORE_VALUE', 'tmk.kcv'),
      );
      assert.equal((await repo.terminals.get('TERM0104'))?.tmk, null);
    });

    it('updates state, TMK, working keys, batch and sign-in, bumping the version each time', async () => {
      const t0 = await repo.terminals.create({ tid: 'TERM0105', mid: MID2, keyAlgorithm: 'SM4' });
      const t1 = await repo.terminals.setState('TERM0105', 'active');
      assert.equal(t1.state, 'active');
      const tmk = lmkBlock();
      const t2 = await repo.terminals.setTmk('TERM0105', { block: tmk.block, kcv: tmk.kcv.toLowerCase() });
      assert.deepEqual(t2.tmk, tmk, 'KCV stored upper-case');
      const keys = {
        tpk: lmkBlock('P0', 'E'),
        tak: lmkBlock('M3', 'C'),
        tdk: lmkBlock('D0', 'E'),
        createdAt: 1_700_000_000_000,
      };
      const t3 = await repo.terminals.setWorkingKeys('TERM0105', keys);
      assert.deepEqual(t3.workingKeys, keys);
      const t4 = await repo.terminals.setWorkingKeys('TERM0105', {
        tpk: lmkBlock('P0', 'E'),
        createdAt: 1_700_000_000_001,
      });
      assert.equal(t4.workingKeys?.tak, null, 'working keys are replaced together');
      assert.equal(t4.workingKeys?.tdk, null);
      const t5 = await repo.terminals.setBatchNumber('TERM0105', 42);
      assert.equal(t5.batchNumber, 42);
      const t6 = await repo.terminals.recordSignIn('TERM0105', 1_700_000_000_500);
      assert.equal(t6.lastSignInAt, 1_700_000_000_500);
      assert.deepEqual(
        [t0, t1, t2, t3, t4, t5, t6].map((t) => t.version),
        [1, 2, 3, 4, 5, 6, 7],
      );
      assert.deepEqual(await repo.terminals.get('TERM0105'), t6);
      await assert.rejects(
        repo.terminals.setState('TERM0105', 'gone' as never),
        fails('POSKEY_ERR_STORE_VALUE', 'state'),
      );
      await assert.rejects(
        repo.terminals.setBatchNumber('TERM0105', 1_000_000),
        fails('POSKEY_ERR_STORE_VALUE', 'batchNumber'),
      );
    });

    it('counts MAC failures atomically under concurrency, and resets them', async () => {
      await repo.terminals.create({ tid: 'TERM0106', mid: MID, keyAlgorithm: 'TDES' });
      const counts = await Promise.all(
        Array.from({ length: 20 }, () => repo.terminals.incrementMacFailures('TERM0106')),
      );
      assert.deepEqual(
        [...counts].sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      assert.equal((await repo.terminals.resetMacFailures('TERM0106')).macFailures, 0);
    });

    it('answers NOT_FOUND for every update of an unknown terminal', async () => {
      const tid = 'NOSUCHTM';
      for (const call of [
        () => repo.terminals.setState(tid, 'blocked'),
        () => repo.terminals.setTmk(tid, lmkBlock()),
        () => repo.terminals.setWorkingKeys(tid, {}),
        () => repo.terminals.setBatchNumber(tid, 2),
        () => repo.terminals.incrementMacFailures(tid),
        () => repo.terminals.resetMacFailures(tid),
        () => repo.terminals.recordSignIn(tid),
      ]) {
        await assert.rejects(call(), fails('POSKEY_ERR_STORE_NOT_FOUND', 'tid'));
      }
    });

    it('lists by merchant and state', async () => {
      await repo.terminals.create({ tid: 'LIST0001', mid: MID2, keyAlgorithm: 'SM4', state: 'blocked' });
      const blocked = await repo.terminals.list({ mid: MID2, state: 'blocked' });
      assert.deepEqual(
        blocked.map((t) => t.tid),
        ['LIST0001'],
      );
      const all = await repo.terminals.list();
      assert.ok(all.length >= 5);
      assert.deepEqual(
        all.map((t) => t.tid),
        all.map((t) => t.tid).sort(),
      );
    });
  });

  describe('transaction', () => {
    it('commits several registry changes together', async () => {
      await repo.transaction(async (tx) => {
        await tx.merchants.upsert({ mid: '000000000000888', name: 'Tx shop', mcc: '5999' });
        await tx.terminals.create({ tid: 'TXTERM01', mid: '000000000000888', keyAlgorithm: 'TDES' });
      });
      assert.equal((await repo.terminals.get('TXTERM01'))?.mid, '000000000000888');
    });

    it('rolls everything back when the callback throws, and passes its error through', async () => {
      const mine = new Error('abort');
      await assert.rejects(
        repo.transaction(async (tx) => {
          await tx.merchants.upsert({ mid: '000000000000999', name: 'Never', mcc: '5999' });
          await tx.terminals.setState('TXTERM01', 'blocked');
          throw mine;
        }),
        (e) => e === mine,
      );
      assert.equal(await repo.merchants.get('000000000000999'), undefined);
      assert.equal((await repo.terminals.get('TXTERM01'))?.state, 'new');
    });
  });

  describe('journal', () => {
    it('stores a row and reads it back; the PAN only masked and keyed-hashed', async () => {
      const s = stan();
      const id = await repo.journal.append(
        purchase(s, { rrn: '123456789012', createdAt: 1_700_000_000_000 }),
      );
      const row = await repo.journal.getById(id);
      assert.deepEqual(row, {
        id,
        nodeId: 'test-node',
        tid: 'TERM0001',
        mid: MID,
        batch: 1,
        stan: s,
        mti: '0200',
        txnType: 'purchase',
        processingCode: '000000',
        amount: 12_345,
        currency: '156',
        panMasked: '621234******1234',
        panHash: repo.journal.panHash(PAN),
        rrn: '123456789012',
        authCode: null,
        responseCode: null,
        status: 'received',
        networkOutcome: null,
        originalId: null,
        originalStan: null,
        originalRrn: null,
        createdAt: 1_700_000_000_000,
        updatedAt: 1_700_000_000_000,
      });
      assert.match(row!.panHash!, /^[0-9a-f]{64}$/);
      assert.deepEqual(await repo.journal.get('TERM0001', 1, s), row);
      assert.deepEqual(await repo.journal.get('TERM0001', 1, s, '0200'), row);
      assert.equal(await repo.journal.get('TERM0001', 1, s, '0400'), undefined);
    });

    it('keeps the largest amount exactly', async () => {
      const id = await repo.journal.append(purchase(stan(), { amount: 999_999_999_999 }));
      assert.equal((await repo.journal.getById(id))?.amount, 999_999_999_999);
      await assert.rejects(
        repo.journal.append(purchase(stan(), { amount: 1e12 })),
        fails('POSKEY_ERR_STORE_VALUE', 'amount'),
      );
      await assert.rejects(
        repo.journal.append(purchase(stan(), { amount: 1.5 })),
        fails('POSKEY_ERR_STORE_VALUE', 'amount'),
      );
    });

    it('never writes the clear PAN, a PIN block or track data', async () => {
      const track2 = `${PAN}=25122011234567890`;
      const smuggled = { ...purchase(stan()), pinBlock: '0412AC89ABCDEF67', track2 } as NewJournalRow;
      const id = await repo.journal.append(smuggled);
      const raw = await fx.readJournal(id);
      assert.ok(raw);
      // The writers' columns plus settled_at (migration 3): no column for a PIN block or a track.
      assert.deepEqual(Object.keys(raw).sort(), [...JOURNAL_COLUMNS, 'settled_at'].sort());
      const dump = await fx.dumpJournal();
      assert.ok(!dump.includes(PAN), 'clear PAN on disk');
      assert.ok(!dump.includes('0412AC89ABCDEF67'), 'PIN block on disk');
      assert.ok(!dump.includes('25122011234567890'), 'track data on disk');
    });

    it('resolves an append only once a separate connection can read the row', async () => {
      for (let i = 0; i < 20; i++) {
        const id = await repo.journal.append(purchase(stan()));
        const raw = await fx.readJournal(id);
        assert.equal(raw?.id, id, `row ${i} not visible right after its append resolved`);
      }
    });

    it('does not resolve while the commit cannot happen', async () => {
      const release = await fx.lockJournal();
      let id: string | undefined;
      const pending = repo.journal.append(purchase(stan())).then((v) => {
        id = v;
      });
      try {
        assert.equal(await settledWithin(pending, 300), 'pending', 'append resolved before its commit');
      } finally {
        await release();
      }
      await pending;
      assert.ok(id);
      assert.equal((await fx.readJournal(id))?.id, id);
    });

    it('groups the appends of one event-loop turn into a handful of transactions', async () => {
      const before = repo.journal.stats().commits;
      const first = stan();
      stanSeq += 1000;
      const all = Array.from({ length: 1000 }, (_, i) =>
        repo.journal.append(purchase(first + i, { batch: 2 })),
      );
      const ids = await Promise.all(all);
      const commits = repo.journal.stats().commits - before;
      assert.ok(commits >= 1 && commits <= 3, `1000 appends took ${commits} commits`);
      assert.equal(new Set(ids).size, 1000);
      assert.equal((await repo.journal.list({ batch: 2, limit: 1000 })).length, 1000);
    });

    it('splits work larger than maxBatch', async () => {
      const small = await fx.open({ maxBatch: 10 });
      const before = small.journal.stats().commits;
      const first = stan();
      stanSeq += 50;
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => small.journal.append(purchase(first + i, { batch: 3 }))),
      );
      assert.equal(small.journal.stats().commits - before, 5);
      assert.equal(small.journal.stats().largestBatch, 10);
      await small.close();
    });

    it('rejects only the duplicate in a batch', async () => {
      const [a, b] = [stan(), stan()];
      const before = repo.journal.stats().commits;
      const results = await Promise.allSettled([
        repo.journal.append(purchase(a)),
        repo.journal.append(purchase(a, { amount: 1 })),
        repo.journal.append(purchase(b)),
      ]);
      assert.equal(repo.journal.stats().commits - before, 1);
      assert.equal(results[0]!.status, 'fulfilled');
      assert.equal(results[1]!.status, 'rejected');
      fails('POSKEY_ERR_STORE_DUPLICATE', 'stan')((results[1] as PromiseRejectedResult).reason);
      assert.equal(results[2]!.status, 'fulfilled');
      assert.equal((await repo.journal.get('TERM0001', 1, a))?.amount, 12_345, 'the first one stands');
      // Against a committed row, and a repeat that reuses an id.
      await assert.rejects(repo.journal.append(purchase(b)), fails('POSKEY_ERR_STORE_DUPLICATE'));
      const id = (results[0] as PromiseFulfilledResult<string>).value;
      await assert.rejects(
        repo.journal.append(purchase(stan(), { id })),
        fails('POSKEY_ERR_STORE_DUPLICATE'),
      );
      // The same STAN under another MTI (its reversal) is a different request.
      await repo.journal.append(purchase(a, { mti: '0400', txnType: 'reversal' }));
    });

    it('fails only the row the database refuses, committing the rest of its batch', async () => {
      // A rule the store does not check itself, as a later migration might add.
      const [add, drop] =
        fx.dialect === 'sqlite'
          ? [
              `CREATE TRIGGER refuse_424242 BEFORE INSERT ON journal WHEN NEW.amount = 424242
               BEGIN SELECT RAISE(ABORT, 'amount refused'); END`,
              'DROP TRIGGER refuse_424242',
            ]
          : [
              'ALTER TABLE journal ADD CONSTRAINT refuse_424242 CHECK (amount <> 424242)',
              'ALTER TABLE journal DROP CONSTRAINT refuse_424242',
            ];
      await fx.exec(add);
      try {
        const before = repo.journal.stats().commits;
        const results = await repo.journal.appendMany([
          purchase(stan()),
          purchase(stan(), { amount: 424242 }),
          purchase(stan()),
        ]);
        assert.equal(repo.journal.stats().commits - before, 1);
        fails('POSKEY_ERR_STORE_FAILED')(results[1]!.error);
        for (const r of [results[0]!, results[2]!]) {
          assert.equal(r.error, undefined);
          assert.ok(await fx.readJournal(r.id!));
        }
        assert.equal(await fx.readJournal(results[1]!.id!), undefined);
      } finally {
        await fx.exec(drop);
      }
    });

    it('appendMany reports each row', async () => {
      const [a, b] = [stan(), stan()];
      const before = repo.journal.stats().commits;
      const results = await repo.journal.appendMany([
        purchase(a),
        purchase(a),
        { ...purchase(b), mti: '02' },
        purchase(b),
      ]);
      assert.equal(repo.journal.stats().commits - before, 1);
      assert.ok(results[0]!.id && !results[0]!.error);
      fails('POSKEY_ERR_STORE_DUPLICATE')(results[1]!.error);
      fails('POSKEY_ERR_STORE_VALUE', 'mti')(results[2]!.error);
      assert.equal(results[2]!.id, undefined);
      assert.ok(results[3]!.id && !results[3]!.error);
    });

    it('records outcomes through group commit; fields left out keep their value', async () => {
      const id = await repo.journal.append(purchase(stan(), { createdAt: 1_700_000_000_000 }));
      await repo.journal.updateOutcome(id, {
        status: 'forwarded',
        networkOutcome: 'sent',
        at: 1_800_000_000_000,
      });
      await repo.journal.updateOutcome(id, {
        status: 'approved',
        responseCode: '00',
        authCode: 'A1B2C3',
        rrn: '000000000042',
        at: 1_800_000_000_500,
      });
      const row = await repo.journal.getById(id);
      assert.equal(row?.status, 'approved');
      assert.equal(row?.networkOutcome, 'sent');
      assert.equal(row?.responseCode, '00');
      assert.equal(row?.authCode, 'A1B2C3');
      assert.equal(row?.rrn, '000000000042');
      assert.equal(row?.updatedAt, 1_800_000_000_500);
      assert.equal(row?.createdAt, 1_700_000_000_000);
      const raw = await fx.readJournal(id);
      assert.equal(raw?.status, 'approved', 'durable when updateOutcome resolved');
    });

    it('applies appends and outcomes of one batch in order, and fails only an unknown id', async () => {
      const id = repo.journal.newId();
      const before = repo.journal.stats().commits;
      const results = await Promise.allSettled([
        repo.journal.append(purchase(stan(), { id })),
        repo.journal.updateOutcome(id, { status: 'forwarded', networkOutcome: 'sent' }),
        repo.journal.updateOutcome(repo.journal.newId(), { status: 'approved' }),
        repo.journal.updateOutcome(id, { status: 'declined', responseCode: '51' }),
      ]);
      assert.equal(repo.journal.stats().commits - before, 1);
      assert.deepEqual(
        results.map((r) => r.status),
        ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
      );
      fails('POSKEY_ERR_STORE_NOT_FOUND', 'id')((results[2] as PromiseRejectedResult).reason);
      const row = await repo.journal.getById(id);
      assert.equal(row?.status, 'declined');
      assert.equal(row?.responseCode, '51');
      assert.equal(row?.networkOutcome, 'sent');
    });

    it('validates rows and outcomes before queuing them', async () => {
      const cases: [Partial<NewJournalRow>, string][] = [
        [{ tid: 'T1' }, 'tid'],
        [{ mid: 'M' }, 'mid'],
        [{ batch: -1 }, 'batch'],
        [{ stan: 1_000_000 }, 'stan'],
        [{ mti: '200' }, 'mti'],
        [{ txnType: 'Purchase' }, 'txnType'],
        [{ processingCode: '00' }, 'processingCode'],
        [{ currency: 'CNY' }, 'currency'],
        [{ pan: '1234' }, 'pan'],
        [{ rrn: 'x' }, 'rrn'],
        [{ authCode: '1234567' }, 'authCode'],
        [{ responseCode: '000' }, 'responseCode'],
        [{ status: 'done' as never }, 'status'],
        [{ networkOutcome: 'Bad Name' }, 'networkOutcome'],
        [{ originalId: 'nope' }, 'originalId'],
        [{ originalStan: 1.5 }, 'originalStan'],
        [{ originalRrn: '1' }, 'originalRrn'],
        [{ createdAt: -1 }, 'createdAt'],
        [{ id: 'lower-case-is-not-an-id-xx' }, 'id'],
      ];
      for (const [change, field] of cases) {
        await assert.rejects(
          repo.journal.append(purchase(stan(), change)),
          fails('POSKEY_ERR_STORE_VALUE', field),
        );
      }
      await assert.rejects(
        repo.journal.append(purchase(stan(), { pan: '6212345678901234X' })),
        (e: Error) => {
          fails('POSKEY_ERR_STORE_VALUE', 'pan')(e);
          assert.ok(!e.message.includes('6212345678901234'));
          return true;
        },
      );
      const id = await repo.journal.append(purchase(stan()));
      await assert.rejects(
        repo.journal.updateOutcome(id, { status: 'nope' as never }),
        fails('POSKEY_ERR_STORE_VALUE', 'status'),
      );
      await assert.rejects(
        repo.journal.updateOutcome('x', { status: 'approved' }),
        fails('POSKEY_ERR_STORE_VALUE', 'id'),
      );
      await assert.rejects(
        repo.journal.updateOutcome(id, { status: 'approved', responseCode: '!' }),
        fails('POSKEY_ERR_STORE_VALUE', 'responseCode'),
      );
    });

    it('lists with filters, order and keyset pagination', async () => {
      const tid = 'LISTTERM';
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push(
          await repo.journal.append(
            purchase(i, { tid, batch: 7, createdAt: 1_000 + i, rrn: `00000000000${i}` }),
          ),
        );
      }
      await repo.journal.updateOutcome(ids[1]!, { status: 'approved' });
      await repo.journal.updateOutcome(ids[3]!, { status: 'declined' });
      const page1 = await repo.journal.list({ tid, limit: 2 });
      const page2 = await repo.journal.list({ tid, limit: 2, after: page1[1]!.id });
      assert.deepEqual(
        [...page1, ...page2].map((r) => r.id),
        ids.slice(0, 4),
      );
      assert.deepEqual(
        (await repo.journal.list({ tid, order: 'desc' })).map((r) => r.id),
        [...ids].reverse(),
      );
      assert.deepEqual(
        (await repo.journal.list({ tid, status: ['approved', 'declined'] })).map((r) => r.id),
        [ids[1], ids[3]],
      );
      assert.deepEqual(
        (await repo.journal.list({ tid, from: 1_001, to: 1_003 })).map((r) => r.id),
        [ids[1], ids[2]],
      );
      assert.deepEqual(
        (await repo.journal.list({ rrn: '000000000004' })).map((r) => r.id),
        [ids[4]],
      );
      assert.equal((await repo.journal.list({ tid, panHash: repo.journal.panHash(PAN) })).length, 5);
      assert.equal((await repo.journal.list({ tid, nodeId: 'other-node' })).length, 0);
      await assert.rejects(repo.journal.list({ limit: 1001 }), fails('POSKEY_ERR_STORE_VALUE', 'limit'));
      await assert.rejects(
        repo.journal.list({ order: 'up' as never }),
        fails('POSKEY_ERR_STORE_VALUE', 'order'),
      );
    });

    it('hashes the PAN under the store key: another key, another hash', async () => {
      const other = await fx.open({ panKey: randomBytes(32) });
      assert.notEqual(other.journal.panHash(PAN), repo.journal.panHash(PAN));
      assert.equal(repo.journal.panHash(PAN), repo.journal.panHash(PAN));
      await other.close();
    });
  });

  describe('closing', () => {
    it('commits what is queued, then refuses further use', async () => {
      const r = await fx.open();
      const s = stan();
      const pending = r.journal.append(purchase(s));
      await r.close();
      const id = await pending;
      assert.equal((await fx.readJournal(id))?.stan, s);
      await assert.rejects(r.journal.append(purchase(stan())), fails('POSKEY_ERR_STORE_CLOSED'));
      await assert.rejects(r.merchants.get(MID), fails('POSKEY_ERR_STORE_CLOSED'));
      await assert.rejects(r.journal.getById(id), fails('POSKEY_ERR_STORE_CLOSED'));
      await assert.rejects(
        r.transaction(async () => undefined),
        fails('POSKEY_ERR_STORE_CLOSED'),
      );
      await r.close();
    });
  });
}
