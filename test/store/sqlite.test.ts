import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openStore } from '../../src/store/open.js';
import { crashTest } from './crash.js';
import { MID, purchase, sqliteFixture } from './helpers.js';
import { fails, storeSuite } from './suite.js';

describe('store on SQLite', () => {
  storeSuite(sqliteFixture);

  it('keeps the database in WAL mode', async () => {
    const fx = await sqliteFixture();
    try {
      await fx.open();
      const db = new Database(fx.target.slice('sqlite:'.length), { readonly: true });
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      db.close();
    } finally {
      await fx.cleanup();
    }
  });

  it('creates the PAN key beside the database (0600) and reuses it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-store-'));
    try {
      const a = await openStore({ dataDir: dir });
      const hash = a.journal.panHash('6212345678901234');
      await a.close();
      const keyFile = join(dir, 'pan-hash.key');
      assert.equal(statSync(keyFile).mode & 0o777, 0o600);
      assert.match(readFileSync(keyFile, 'latin1'), /^[0-9a-f]{64}\n$/);
      const b = await openStore(`sqlite:${join(dir, 'poskey.db')}`);
      assert.equal(b.journal.panHash('6212345678901234'), hash);
      await b.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lets two stores on one file write alongside each other', async () => {
    const fx = await sqliteFixture();
    try {
      const [a, b] = await Promise.all([fx.open(), fx.open()]);
      await a.merchants.upsert({ mid: MID, name: 'Shop', mcc: '5411' });
      const results = await Promise.allSettled([
        ...Array.from({ length: 100 }, (_, i) => a.journal.append(purchase(i))),
        ...Array.from({ length: 100 }, (_, i) => b.journal.append(purchase(i + 50))),
        b.terminals.create({ tid: 'TWOPROCS', mid: MID, keyAlgorithm: 'TDES' }),
      ]);
      const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
      assert.equal(rejected.length, 50, 'the 50 overlapping STANs are duplicates');
      for (const r of rejected) fails('POSKEY_ERR_STORE_DUPLICATE')(r.reason);
      assert.equal((await a.journal.list({ limit: 1000 })).length, 150);
    } finally {
      await fx.cleanup();
    }
  });

  it('takes the write lock when a registry transaction begins (BEGIN IMMEDIATE)', async () => {
    const fx = await sqliteFixture();
    try {
      const repo = await fx.open();
      const other = new Database(fx.target.slice('sqlite:'.length));
      try {
        other.pragma('busy_timeout = 0');
        await repo.transaction(async (tx) => {
          await tx.merchants.get(MID); // a read only: a deferred BEGIN would not hold the lock yet
          assert.throws(() => other.prepare('BEGIN IMMEDIATE').run(), { code: 'SQLITE_BUSY' });
        });
        other.prepare('BEGIN IMMEDIATE').run();
        other.prepare('ROLLBACK').run();
      } finally {
        other.close();
      }
    } finally {
      await fx.cleanup();
    }
  });

  it('fails an append when the lock stays taken past the busy timeout, and recovers', async () => {
    const fx = await sqliteFixture();
    try {
      const repo = await fx.open({ busyTimeoutMs: 50 });
      const release = await fx.lockJournal();
      try {
        await assert.rejects(repo.journal.append(purchase(1)), fails('POSKEY_ERR_STORE_FAILED'));
      } finally {
        await release();
      }
      assert.equal(repo.journal.stats().failedCommits, 1);
      const id = await repo.journal.append(purchase(1));
      assert.ok(await fx.readJournal(id));
    } finally {
      await fx.cleanup();
    }
  });

  it('loses no acknowledged row when the host is killed mid-stream', async () => {
    const fx = await sqliteFixture();
    try {
      await crashTest(fx);
    } finally {
      await fx.cleanup();
    }
  });
});
