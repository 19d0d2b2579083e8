import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { SCHEMA_VERSION } from '../../src/store/migrations.js';
import { openStore } from '../../src/store/open.js';
import { crashTest } from './crash.js';
import { assertPostgresReachable, MID, PG_URL, postgresFixture, purchase } from './helpers.js';
import { fails, storeSuite } from './suite.js';

describe('store on PostgreSQL', () => {
  // Unreachable PostgreSQL fails every test here with a message saying so; nothing is skipped.
  before(assertPostgresReachable);

  storeSuite(postgresFixture);

  it('runs each migration once when several hosts open a new schema together', async () => {
    const fx = await postgresFixture();
    try {
      const repos = await Promise.all(Array.from({ length: 4 }, () => fx.open()));
      for (const r of repos) assert.equal(await r.schemaVersion(), SCHEMA_VERSION);
      const rows = await repos[0]!.transaction((tx) =>
        tx.db.selectFrom('schema_migrations').selectAll().execute(),
      );
      assert.equal(rows.length, SCHEMA_VERSION);
    } finally {
      await fx.cleanup();
    }
  });

  it('makes duplicates impossible across host processes', async () => {
    const fx = await postgresFixture();
    try {
      const [a, b] = await Promise.all([fx.open({ nodeId: 'host-a' }), fx.open({ nodeId: 'host-b' })]);
      await a.merchants.upsert({ mid: MID, name: 'Shop', mcc: '5411' });
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => [
          a.journal.append(purchase(i)),
          b.journal.append(purchase(i)),
        ]).flat(),
      );
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      assert.equal(ok, 50, 'exactly one of each pair is journalled');
      for (const r of results) if (r.status === 'rejected') fails('POSKEY_ERR_STORE_DUPLICATE')(r.reason);
      const rows = await a.journal.list({ limit: 1000 });
      assert.equal(rows.length, 50);
      assert.deepEqual(new Set(rows.map((r) => r.nodeId)).size >= 1, true);
    } finally {
      await fx.cleanup();
    }
  });

  it('fails clearly when the server is unreachable, without showing the password', async () => {
    await assert.rejects(
      openStore('postgres://poskey:s3cret@127.0.0.1:1/test', { panKey: randomBytes(32) }),
      (e: Error) => {
        fails('POSKEY_ERR_STORE_FAILED')(e);
        assert.match(e.message, /127\.0\.0\.1:1\/test/);
        assert.ok(!e.message.includes('s3cret'));
        return true;
      },
    );
  });

  it('needs a PAN key it shares with the other hosts', async () => {
    await assert.rejects(openStore(PG_URL), fails('POSKEY_ERR_STORE_CONFIG', 'panKey'));
    await assert.rejects(
      openStore(PG_URL, { panKey: randomBytes(32), schema: 'Bad-Name' }),
      fails('POSKEY_ERR_STORE_CONFIG', 'schema'),
    );
  });

  it('loses no acknowledged row when the host is killed mid-stream', async () => {
    const fx = await postgresFixture();
    try {
      await (await fx.open()).close(); // schema in place before the child starts
      await crashTest(fx);
    } finally {
      await fx.cleanup();
    }
  });
});
