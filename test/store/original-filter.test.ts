/**
 * Journal rows by original (migration 2, `JournalFilter.originalId`), on SQLite and PostgreSQL:
 * what refunds sum against a sale and voids link to. Migration 2 is applied, the filter finds
 * exactly the linked rows, and a malformed id is refused with its field.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/store/migrations.js';
import type { Repository } from '../../src/store/types.js';
import {
  assertPostgresReachable,
  MID,
  postgresFixture,
  type StoreFixture,
  sqliteFixture,
} from './helpers.js';
import { fails } from './suite.js';

for (const [dialect, make] of [
  ['sqlite', sqliteFixture],
  ['postgres', postgresFixture],
] as const) {
  describe(`journal by original on ${dialect}`, () => {
    let fixture: StoreFixture;
    let repo: Repository;
    before(async () => {
      if (dialect === 'postgres') await assertPostgresReachable();
      fixture = await make();
      repo = await fixture.open();
    });
    after(async () => {
      await repo?.close();
      await fixture?.cleanup();
    });

    it('has migration 2 applied and lists only the rows linked to an original', async () => {
      assert.equal(MIGRATIONS[1]?.name, 'journal rows by original');
      assert.equal(await repo.schemaVersion(), SCHEMA_VERSION);
      const row = (stan: number, txnType: string, originalId?: string) => ({
        tid: 'TERM0001',
        mid: MID,
        batch: 1,
        stan,
        mti: txnType === 'purchase' ? '0200' : '0220',
        txnType,
        amount: 100,
        ...(originalId === undefined ? {} : { originalId }),
      });
      const sale = await repo.journal.append(row(1, 'purchase'));
      const other = await repo.journal.append(row(2, 'purchase'));
      await repo.journal.append(row(3, 'refund', sale));
      await repo.journal.append(row(4, 'refund', sale));
      await repo.journal.append(row(5, 'refund', other));
      const linked = await repo.journal.list({ originalId: sale });
      assert.deepEqual(
        linked.map((r) => r.stan),
        [3, 4],
      );
      assert.deepEqual(await repo.journal.list({ originalId: repo.journal.newId() }), []);
    });

    it('refuses a malformed originalId', async () => {
      await assert.rejects(
        repo.journal.list({ originalId: 'nope' }),
        fails('POSKEY_ERR_STORE_VALUE', 'originalId'),
      );
    });
  });
}
