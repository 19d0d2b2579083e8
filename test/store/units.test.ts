/**
 * The parts of the store that need no database: ids, PAN masking and hashing, target parsing,
 * the migration plan, and the group-commit scheduler (driven by a recording back end, so the
 * batching rules can be checked exactly; the real back ends are in sqlite/postgres.test.ts).
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { storeError } from '../../src/store/errors.js';
import { createIdGenerator, idTime, JOURNAL_ID_RE } from '../../src/store/ids.js';
import { GroupCommit, type JournalBackend, type JournalOp, type OpResult } from '../../src/store/journal.js';
import {
  assertMigrationList,
  MIGRATIONS,
  type Migration,
  pendingMigrations,
} from '../../src/store/migrations.js';
import { openStore, parseStoreTarget } from '../../src/store/open.js';
import { maskPan, PanHasher } from '../../src/store/pan.js';
import { toJournalRecord } from '../../src/store/validate.js';
import { purchase } from './helpers.js';
import { fails } from './suite.js';

describe('journal ids', () => {
  it('are ULIDs carrying their millisecond', () => {
    const next = createIdGenerator(() => 1_700_000_000_123);
    const id = next();
    assert.match(id, JOURNAL_ID_RE);
    assert.equal(idTime(id), 1_700_000_000_123);
  });

  it('sort in the order they were made, even within a millisecond and when the clock steps back', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2 ** 47 }), { minLength: 1, maxLength: 200 }),
        (times) => {
          let i = 0;
          const next = createIdGenerator(() => times[i++ % times.length]!);
          const ids = times.map(() => next());
          assert.deepEqual([...ids].sort(), ids);
          assert.equal(new Set(ids).size, ids.length);
        },
      ),
    );
  });

  it('carry into the high half when the low counter overflows', () => {
    const bytes = [Buffer.alloc(5, 0), Buffer.alloc(5, 0xff)];
    let call = 0;
    const next = createIdGenerator(
      () => 5,
      () => bytes[call++ % 2]!,
    );
    const a = next();
    const b = next();
    assert.ok(a < b);
    assert.equal(b.slice(10, 18), '00000001');
    assert.equal(b.slice(18), '00000000');
  });
});

describe('PAN masking and hashing', () => {
  it('keeps the first 6 and last 4 digits only', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^\d{12,19}$/), (pan) => {
        const m = maskPan(pan);
        assert.equal(m.length, pan.length);
        assert.equal(m.slice(0, 6), pan.slice(0, 6));
        assert.equal(m.slice(-4), pan.slice(-4));
        assert.match(m.slice(6, -4), /^\*+$/);
      }),
    );
  });

  it('is HMAC-SHA256(key, PAN digits), keyed, and keeps its own copy of the key', () => {
    const key = Buffer.alloc(32, 0x0b);
    const h = new PanHasher(key);
    assert.equal(
      h.hash('6212345678901234'),
      createHmac('sha256', key).update('6212345678901234').digest('hex'),
    );
    const again = new PanHasher(Buffer.from(key));
    assert.equal(h.hash('6212345678901234'), again.hash('6212345678901234'));
    assert.notEqual(
      h.hash('6212345678901234'),
      new PanHasher(Buffer.alloc(32, 0x0c)).hash('6212345678901234'),
    );
    assert.notEqual(h.hash('6212345678901234'), h.hash('6212345678901235'));
    key.fill(0); // the hasher holds its own copy
    assert.equal(h.hash('6212345678901234'), again.hash('6212345678901234'));
  });

  it('refuses short keys and non-PANs, without echoing the PAN', () => {
    assert.throws(() => new PanHasher(randomBytes(16)), fails('POSKEY_ERR_STORE_CONFIG', 'panKey'));
    assert.throws(() => new PanHasher(randomBytes(65)), fails('POSKEY_ERR_STORE_CONFIG', 'panKey'));
    assert.throws(
      () => maskPan('62123456789012345678'),
      (e: Error) => fails('POSKEY_ERR_STORE_VALUE', 'pan')(e) && !e.message.includes('6212'),
    );
    assert.throws(
      () => new PanHasher(randomBytes(32)).hash('6212 3456 7890 1234'),
      fails('POSKEY_ERR_STORE_VALUE'),
    );
  });
});

describe('store targets', () => {
  it('reads sqlite paths, data directories and postgres URLs', () => {
    assert.deepEqual(parseStoreTarget({ dataDir: '/var/lib/poskey' }), {
      dialect: 'sqlite',
      path: '/var/lib/poskey/poskey.db',
    });
    assert.deepEqual(parseStoreTarget('sqlite:/tmp/x.db'), { dialect: 'sqlite', path: '/tmp/x.db' });
    assert.deepEqual(parseStoreTarget('data/host.db'), { dialect: 'sqlite', path: resolve('data/host.db') });
    assert.deepEqual(parseStoreTarget('postgres://u:p@db:5433/poskey?schema=h1&sslmode=disable'), {
      dialect: 'postgres',
      url: 'postgres://u:p@db:5433/poskey?sslmode=disable',
      schema: 'h1',
    });
    assert.equal(parseStoreTarget('postgresql://db/poskey').dialect, 'postgres');
  });

  it('refuses what it cannot open', () => {
    for (const bad of [
      '',
      '  ',
      ':memory:',
      'sqlite:',
      'sqlite::memory:',
      'mysql://db/x',
      'file:x.db',
      'postgres://[bad',
    ]) {
      assert.throws(() => parseStoreTarget(bad), fails('POSKEY_ERR_STORE_TARGET', 'database'), bad);
    }
    assert.throws(() => parseStoreTarget({ dataDir: '' }), fails('POSKEY_ERR_STORE_TARGET'));
    assert.throws(() => parseStoreTarget(42 as never), fails('POSKEY_ERR_STORE_TARGET'));
  });

  it('checks options before opening anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-store-'));
    try {
      await assert.rejects(
        openStore({ dataDir: dir }, { nodeId: 'has space' }),
        fails('POSKEY_ERR_STORE_CONFIG', 'nodeId'),
      );
      await assert.rejects(
        openStore({ dataDir: dir }, { maxBatch: 0 }),
        fails('POSKEY_ERR_STORE_CONFIG', 'maxBatch'),
      );
      await assert.rejects(
        openStore({ dataDir: dir }, { panKey: randomBytes(8) }),
        fails('POSKEY_ERR_STORE_CONFIG', 'panKey'),
      );
      await assert.rejects(
        openStore({ dataDir: dir }, { busyTimeoutMs: -1, panKey: randomBytes(32) }),
        fails('POSKEY_ERR_STORE_CONFIG', 'busyTimeoutMs'),
      );
      const keyFile = join(dir, 'bad.key');
      writeFileSync(keyFile, 'not hex\n');
      await assert.rejects(
        openStore({ dataDir: dir }, { panKeyFile: keyFile }),
        fails('POSKEY_ERR_STORE_CONFIG', 'panKeyFile'),
      );
      await assert.rejects(
        openStore({ dataDir: dir }, { panKeyFile: join(dir, 'missing.key') }),
        fails('POSKEY_ERR_STORE_CONFIG', 'panKeyFile'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('migration plan', () => {
  it('is numbered 1..n with names', () => {
    assertMigrationList(MIGRATIONS);
    const broken: Migration[] = [{ version: 2, name: 'x', statements: () => [] }];
    assert.throws(() => assertMigrationList(broken), fails('POSKEY_ERR_STORE_SCHEMA'));
  });

  it('applies what is missing, in order, and refuses versions it does not know', () => {
    const list: Migration[] = [1, 2, 3].map((version) => ({
      version,
      name: `m${version}`,
      statements: () => [],
    }));
    assert.deepEqual(
      pendingMigrations([], list).map((m) => m.version),
      [1, 2, 3],
    );
    assert.deepEqual(
      pendingMigrations([1, 3], list).map((m) => m.version),
      [2],
    );
    assert.deepEqual(pendingMigrations([1, 2, 3], list), []);
    assert.throws(
      () => pendingMigrations([1, 2, 3, 4], list),
      fails('POSKEY_ERR_STORE_SCHEMA', 'schema_migrations'),
    );
  });

  it('differs between dialects only in types', () => {
    for (const m of MIGRATIONS) {
      const strip = (sql: string) =>
        sql
          .replace(/\bBIGINT\b/g, 'INTEGER')
          .replace(/ COLLATE "C"/g, '')
          .replace(/ STRICT(, WITHOUT ROWID)?$/, '');
      assert.deepEqual(m.statements('postgres').map(strip), m.statements('sqlite').map(strip));
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** Records every batch; `hold` keeps commits pending until `release()`. */
class RecordingBackend implements JournalBackend {
  batches: JournalOp[][] = [];
  inFlight = 0;
  maxInFlight = 0;
  hold = false;
  failNext: Error | undefined;
  closed = false;
  #held: (() => void)[] = [];

  async commit(ops: readonly JournalOp[]): Promise<OpResult[]> {
    this.batches.push([...ops]);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.hold) await new Promise<void>((r) => this.#held.push(r));
      else await new Promise((r) => setTimeout(r, 1));
      if (this.failNext) {
        const e = this.failNext;
        this.failNext = undefined;
        throw e;
      }
      return ops.map((op) =>
        op.kind === 'append' && op.row.stan === 13
          ? storeError('POSKEY_ERR_STORE_DUPLICATE', 'dup', 'stan')
          : undefined,
      );
    } finally {
      this.inFlight--;
    }
  }

  release(): void {
    this.hold = false;
    for (const r of this.#held.splice(0)) r();
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

const ctx = {
  nodeId: 'n1',
  now: () => 1,
  newId: createIdGenerator(),
  hasher: new PanHasher(randomBytes(32)),
};
const op = (stan: number): JournalOp => ({ kind: 'append', row: toJournalRecord(purchase(stan), ctx) });

describe('group commit', () => {
  it('puts one turn in one batch and keeps one batch in flight', async () => {
    const backend = new RecordingBackend();
    const group = new GroupCommit(backend);
    backend.hold = true;
    const first = Array.from({ length: 100 }, (_, i) => group.submit(op(i)));
    await new Promise((r) => setImmediate(r));
    // Rows arriving while the first batch is in flight wait for it, then go together.
    const second = Array.from({ length: 50 }, (_, i) => group.submit(op(1000 + i)));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(backend.batches.length, 1);
    assert.equal(group.stats().queued, 50);
    assert.equal(group.stats().inFlight, 1);
    backend.release();
    await Promise.allSettled([...first, ...second]);
    assert.deepEqual(
      backend.batches.map((b) => b.length),
      [100, 50],
    );
    assert.equal(backend.maxInFlight, 1);
    assert.deepEqual(group.stats(), {
      commits: 2,
      failedCommits: 0,
      ops: 150,
      largestBatch: 100,
      queued: 0,
      inFlight: 0,
    });
  });

  it('settles each promise only after its batch, rejecting only the failed op', async () => {
    const backend = new RecordingBackend();
    const group = new GroupCommit(backend);
    backend.hold = true;
    const results = [12, 13, 14].map((s) =>
      group.submit(op(s)).then(
        () => 'ok',
        (e: Error) => e,
      ),
    );
    await new Promise((r) => setTimeout(r, 10));
    let settled = false;
    void Promise.all(results).then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(settled, false, 'settled before the commit returned');
    backend.release();
    const [a, b, c] = await Promise.all(results);
    assert.equal(a, 'ok');
    fails('POSKEY_ERR_STORE_DUPLICATE')(b);
    assert.equal(c, 'ok');
  });

  it('rejects the whole batch when its transaction fails, then carries on', async () => {
    const backend = new RecordingBackend();
    const group = new GroupCommit(backend);
    backend.failNext = new Error('disk on fire');
    const failed = await Promise.allSettled([group.submit(op(1)), group.submit(op(2))]);
    for (const r of failed) {
      assert.equal(r.status, 'rejected');
      fails('POSKEY_ERR_STORE_FAILED')((r as PromiseRejectedResult).reason);
    }
    await group.submit(op(3));
    assert.equal(group.stats().failedCommits, 1);
    assert.equal(group.stats().commits, 1);
  });

  it('caps a batch at maxBatch', async () => {
    const backend = new RecordingBackend();
    const group = new GroupCommit(backend, 7);
    await Promise.all(Array.from({ length: 20 }, (_, i) => group.submit(op(100 + i))));
    assert.deepEqual(
      backend.batches.map((b) => b.length),
      [7, 7, 6],
    );
    assert.throws(() => new GroupCommit(backend, 0), fails('POSKEY_ERR_STORE_CONFIG', 'maxBatch'));
    assert.throws(() => new GroupCommit(backend, 1.5), fails('POSKEY_ERR_STORE_CONFIG', 'maxBatch'));
  });

  it('flushes, then closes: queued ops commit, new ones are refused', async () => {
    const backend = new RecordingBackend();
    const group = new GroupCommit(backend);
    await group.flush();
    const queued = group.submit(op(1));
    const closing = group.close();
    await assert.rejects(group.submit(op(2)), fails('POSKEY_ERR_STORE_CLOSED'));
    await queued;
    await closing;
    assert.equal(backend.closed, true);
    assert.equal(backend.batches.length, 1);
  });
});
