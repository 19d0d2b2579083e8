/**
 * Store fixtures for tests: a fresh SQLite database in a temp directory, or a fresh schema in the
 * test PostgreSQL database (127.0.0.1:5432, database `test`; POSKEY_TEST_PG overrides the URL).
 * Each fixture also reaches the database through a connection of its own, to check what is
 * really committed, and cleans up after itself. Host tests can reuse `storeFixtures`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { wrapUnderLmk } from '../../src/hsm/keyblock.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { type OpenStoreOptions, openStore } from '../../src/store/open.js';
import type { Dialect, NewJournalRow, Repository, StoredKey } from '../../src/store/types.js';

export const PG_URL = process.env.POSKEY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface StoreFixture {
  dialect: Dialect;
  /** What to pass to `openStore`, with `options`. */
  target: string;
  options: OpenStoreOptions;
  open(extra?: OpenStoreOptions): Promise<Repository>;
  /** A journal row as stored (snake_case, raw values), read through a separate connection. */
  readJournal(id: string): Promise<Record<string, unknown> | undefined>;
  /** Every journal id, read through a separate connection. */
  journalIds(): Promise<Set<string>>;
  /** Every value of every journal row, as text, read through a separate connection. */
  dumpJournal(): Promise<string>;
  /** Takes the journal's write lock from another connection; call the result to let go. */
  lockJournal(): Promise<() => Promise<void>>;
  /** Runs SQL through a separate connection (test set-up only). */
  exec(sql: string): Promise<void>;
  cleanup(): Promise<void>;
}

export async function sqliteFixture(): Promise<StoreFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-store-'));
  const path = join(dir, 'poskey.db');
  const options: OpenStoreOptions = { panKey: randomBytes(32), nodeId: 'test-node' };
  const repos: Repository[] = [];
  const side = (fn: (db: Database.Database) => unknown) => {
    const db = new Database(path);
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };
  return {
    dialect: 'sqlite',
    target: `sqlite:${path}`,
    options,
    open: async (extra = {}) => {
      const repo = await openStore(`sqlite:${path}`, { ...options, ...extra });
      repos.push(repo);
      return repo;
    },
    readJournal: async (id) =>
      side((db) => db.prepare('SELECT * FROM journal WHERE id = ?').get(id)) as
        | Record<string, unknown>
        | undefined,
    journalIds: async () =>
      new Set(side((db) => db.prepare('SELECT id FROM journal').pluck().all()) as string[]),
    dumpJournal: async () => JSON.stringify(side((db) => db.prepare('SELECT * FROM journal').all())),
    lockJournal: async () => {
      const db = new Database(path);
      db.prepare('BEGIN IMMEDIATE').run();
      return async () => {
        db.prepare('ROLLBACK').run();
        db.close();
      };
    },
    exec: async (sql) => {
      side((db) => db.exec(sql));
    },
    cleanup: async () => {
      await Promise.all(repos.map((r) => r.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function pgClient(schema?: string): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: PG_URL,
    connectionTimeoutMillis: 5000,
    ...(schema ? { options: `-c search_path=${schema}` } : {}),
  });
  await client.connect();
  return client;
}

/**
 * Fails (never skips) when the test PostgreSQL is not there: CI starts one, and a silently
 * skipped half would hide every PostgreSQL defect.
 */
export async function assertPostgresReachable(): Promise<void> {
  let client: pg.Client | undefined;
  try {
    client = await pgClient();
    await client.query('SELECT 1');
  } catch (e) {
    throw new Error(
      `PostgreSQL is not reachable at ${PG_URL.replace(/\/\/[^@]*@/, '//')} (${(e as Error).message}). ` +
        'The store tests need it: start PostgreSQL on 127.0.0.1:5432 with a database "test" and trust ' +
        'auth for user postgres, or set POSKEY_TEST_PG to a URL.',
    );
  } finally {
    await client?.end().catch(() => undefined);
  }
}

export function freshSchema(): string {
  return `poskey_test_${randomBytes(6).toString('hex')}`;
}

export async function postgresFixture(): Promise<StoreFixture> {
  const schema = freshSchema();
  const options: OpenStoreOptions = { panKey: randomBytes(32), nodeId: 'test-node', schema };
  const repos: Repository[] = [];
  const side = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = await pgClient(schema);
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };
  return {
    dialect: 'postgres',
    target: PG_URL,
    options,
    open: async (extra = {}) => {
      const repo = await openStore(PG_URL, { ...options, ...extra });
      repos.push(repo);
      return repo;
    },
    readJournal: (id) =>
      side(async (c) => (await c.query('SELECT * FROM journal WHERE id = $1', [id])).rows[0]),
    journalIds: () =>
      side(
        async (c) => new Set((await c.query<{ id: string }>('SELECT id FROM journal')).rows.map((r) => r.id)),
      ),
    dumpJournal: () => side(async (c) => JSON.stringify((await c.query('SELECT * FROM journal')).rows)),
    lockJournal: async () => {
      const c = await pgClient(schema);
      await c.query('BEGIN');
      await c.query('LOCK TABLE journal IN EXCLUSIVE MODE');
      return async () => {
        await c.query('ROLLBACK');
        await c.end();
      };
    },
    exec: (sql) =>
      side(async (c) => {
        await c.query(sql);
      }),
    cleanup: async () => {
      await Promise.all(repos.map((r) => r.close()));
      const c = await pgClient();
      try {
        await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await c.end();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sample data

const lmks = new LmkSet([generateDevLmk('00')]);

/** A real LMK key block (dev LMK) around a random key, as the HSM would hand it over. */
export function lmkBlock(usage = 'K0', modeOfUse = 'B'): StoredKey {
  const block = wrapUnderLmk(lmks, {
    usage,
    algorithm: 'T',
    modeOfUse,
    exportability: 'E',
    key: randomBytes(16),
  });
  return { block, kcv: randomBytes(3).toString('hex').toUpperCase() };
}

export const MID = '104110070110814';
export const MID2 = '898310048990001';
export const PAN = '6212345678901234';

/** A purchase request row; `stan` varies the unique key. */
export function purchase(stan: number, extra: Partial<NewJournalRow> = {}): NewJournalRow {
  return {
    tid: 'TERM0001',
    mid: MID,
    batch: 1,
    stan,
    mti: '0200',
    txnType: 'purchase',
    processingCode: '000000',
    amount: 12_345,
    currency: '156',
    pan: PAN,
    ...extra,
  };
}

/** Settles within `ms`? Returns 'pending' when it has not. */
export async function settledWithin(
  p: Promise<unknown>,
  ms: number,
): Promise<'resolved' | 'rejected' | 'pending'> {
  const state = p.then(
    () => 'resolved' as const,
    () => 'rejected' as const,
  );
  const timer = new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms));
  return Promise.race([state, timer]);
}
