/**
 * PostgreSQL back end (`pg` Pool, Kysely PostgresDialect), for several host processes sharing one
 * database.
 *
 * - Journal batches are one multi-row INSERT … SELECT FROM unnest($1::text[], …) per batch (one
 *   round trip, one commit, one WAL flush), one batch in flight per process; synchronous_commit
 *   stays at its default (on), so a resolved append survives a server crash. Duplicates are
 *   skipped by ON CONFLICT DO NOTHING and reported per row by the ids RETURNING leaves out.
 *   Should a batch fail for a reason that concerns one row, it is replayed row by row under
 *   savepoints so only that row fails.
 * - Migrations run in one transaction holding an advisory lock keyed by schema name, so host
 *   processes that start together apply each migration exactly once.
 * - Everything lives in one schema (search_path is set per connection), `public` by default;
 *   tests use a schema per run.
 */

import { Kysely, PostgresDialect } from 'kysely';
import pg, { type Pool, type PoolClient } from 'pg';
import { driverCode, driverMessage, StoreError, storeError } from './errors.js';
import { type JournalBackend, type JournalOp, type OpResult, rowValues } from './journal.js';
import { migrationsTableSql, pendingMigrations } from './migrations.js';
import { makeRepository, type RepositoryOptions } from './repository.js';
import { JOURNAL_COLUMNS, type JournalRecord, type Repository, type Schema } from './types.js';
import type { CheckedOutcome } from './validate.js';

export const DEFAULT_POOL_SIZE = 10;
/** Class id of the migration advisory lock ("PKYS"); the object id is hashtext(schema). */
const MIGRATION_LOCK = 0x504b5953;
const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export interface PostgresStoreOptions extends RepositoryOptions {
  /** postgres://user[:password]@host[:port]/database */
  url: string;
  /** Lower-case identifier; 'public' when omitted. */
  schema?: string;
  poolSize?: number;
  connectTimeoutMs?: number;
}

// ---------------------------------------------------------------------------------------------
// Errors

/** host:port/database of a URL, for messages: never the user or password. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return 'PostgreSQL';
  }
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint): the row's fault, not the server's. */
function isRowError(e: unknown): boolean {
  return /^2[23]/.test(driverCode(e)) && driverCode(e).length === 5;
}

function makeErrorMapper(where: string) {
  return (e: unknown, field: string): StoreError => {
    if (e instanceof StoreError) return e;
    const code = driverCode(e);
    if (code === '23505') {
      const constraint = String((e as { constraint?: unknown }).constraint ?? '');
      const which = constraint.includes('serial') ? 'serial' : field;
      return storeError('POSKEY_ERR_STORE_DUPLICATE', `a row with this ${which} already exists`, which, e);
    }
    if (code === '23503') return storeError('POSKEY_ERR_STORE_NOT_FOUND', 'no such merchant', 'mid', e);
    if (code.length === 5 && !code.startsWith('08') && !code.startsWith('57')) {
      return storeError('POSKEY_ERR_STORE_FAILED', `PostgreSQL: ${driverMessage(e)}`, undefined, e);
    }
    return storeError(
      'POSKEY_ERR_STORE_FAILED',
      `cannot reach PostgreSQL at ${where}: ${driverMessage(e)}`,
      undefined,
      e,
    );
  };
}

// ---------------------------------------------------------------------------------------------
// Migrations

/**
 * Creates the schema if needed and applies pending migrations, all in one transaction under an
 * advisory lock, so concurrent openers wait and then find nothing left to do.
 */
export async function migratePostgres(pool: Pool, schema: string, now: () => number): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK, schema]);
    // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists;
    // look first so a host role without that right can use a schema made for it.
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA "${schema}"`);
    await client.query(`SET LOCAL search_path TO "${schema}"`);
    await client.query(migrationsTableSql('postgres'));
    const applied = (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows;
    for (const m of pendingMigrations(applied.map((r) => r.version))) {
      for (const sql of m.statements('postgres')) await client.query(sql);
      await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        now(),
      ]);
    }
    await client.query('COMMIT');
    client.release();
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release(true);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Journal writer

const ARRAY_TYPES: Partial<Record<(typeof JOURNAL_COLUMNS)[number], string>> = {
  batch: 'int4',
  stan: 'int4',
  original_stan: 'int4',
  amount: 'int8',
  created_at: 'int8',
  updated_at: 'int8',
};
const COLUMN_LIST = JOURNAL_COLUMNS.join(', ');
const INSERT_MANY = `INSERT INTO journal (${COLUMN_LIST})
  SELECT * FROM unnest(${JOURNAL_COLUMNS.map((c, i) => `$${i + 1}::${ARRAY_TYPES[c] ?? 'text'}[]`).join(', ')})
  ON CONFLICT DO NOTHING RETURNING id`;
const INSERT_ONE = `INSERT INTO journal (${COLUMN_LIST})
  VALUES (${JOURNAL_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
  ON CONFLICT DO NOTHING RETURNING id`;
const OUTCOME_SET = `status = u.status,
  response_code = COALESCE(u.response_code, j.response_code),
  auth_code = COALESCE(u.auth_code, j.auth_code),
  rrn = COALESCE(u.rrn, j.rrn),
  network_outcome = COALESCE(u.network_outcome, j.network_outcome),
  updated_at = u.updated_at`;
const UPDATE_MANY = `UPDATE journal AS j SET ${OUTCOME_SET}
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[])
    AS u (id, status, response_code, auth_code, rrn, network_outcome, updated_at)
  WHERE j.id = u.id RETURNING j.id`;
const UPDATE_ONE = `UPDATE journal AS j SET ${OUTCOME_SET}
  FROM (SELECT $1::text AS id, $2::text AS status, $3::text AS response_code, $4::text AS auth_code,
               $5::text AS rrn, $6::text AS network_outcome, $7::int8 AS updated_at) AS u
  WHERE j.id = u.id RETURNING j.id`;

const DUPLICATE = () =>
  storeError(
    'POSKEY_ERR_STORE_DUPLICATE',
    'a journal row with this (tid, batch, stan, mti) or id already exists',
    'stan',
  );
const NOT_FOUND = () => storeError('POSKEY_ERR_STORE_NOT_FOUND', 'no journal row has this id', 'id');

function outcomeValues(id: string, o: CheckedOutcome): unknown[] {
  return [id, o.status, o.responseCode, o.authCode, o.rrn, o.networkOutcome, o.at];
}

/** Later outcomes for one id win; fields a later outcome leaves null keep the earlier value. */
function mergeOutcomes(a: CheckedOutcome, b: CheckedOutcome): CheckedOutcome {
  return {
    status: b.status,
    responseCode: b.responseCode ?? a.responseCode,
    authCode: b.authCode ?? a.authCode,
    rrn: b.rrn ?? a.rrn,
    networkOutcome: b.networkOutcome ?? a.networkOutcome,
    at: b.at,
  };
}

interface Plan {
  appends: { index: number; row: JournalRecord }[];
  /** One entry per id; `indexes` are every op that updates it. */
  updates: Map<string, { outcome: CheckedOutcome; indexes: number[] }>;
}

function plan(ops: readonly JournalOp[]): Plan {
  const p: Plan = { appends: [], updates: new Map() };
  ops.forEach((op, index) => {
    if (op.kind === 'append') {
      p.appends.push({ index, row: op.row });
      return;
    }
    const seen = p.updates.get(op.id);
    if (seen) {
      seen.outcome = mergeOutcomes(seen.outcome, op.outcome);
      seen.indexes.push(index);
    } else p.updates.set(op.id, { outcome: op.outcome, indexes: [index] });
  });
  return p;
}

function columnValues(row: JournalRecord): unknown[] {
  const values = rowValues(row);
  return JOURNAL_COLUMNS.map((c) => values[c]);
}

/** Column arrays for unnest: one array per journal column. */
function columnArrays(rows: readonly JournalRecord[]): unknown[][] {
  const arrays = JOURNAL_COLUMNS.map(() => [] as unknown[]);
  for (const row of rows) {
    columnValues(row).forEach((v, i) => {
      arrays[i]!.push(v);
    });
  }
  return arrays;
}

export class PostgresJournalWriter implements JournalBackend {
  readonly #pool: Pool;
  readonly #mapError: (e: unknown, field: string) => StoreError;

  constructor(pool: Pool, mapError: (e: unknown, field: string) => StoreError) {
    this.#pool = pool;
    this.#mapError = mapError;
  }

  async commit(ops: readonly JournalOp[]): Promise<OpResult[]> {
    const p = plan(ops);
    try {
      return await this.#commitBatch(ops.length, p);
    } catch (e) {
      if (!isRowError(e)) throw this.#mapError(e, 'journal');
      return this.#commitOneByOne(ops);
    }
  }

  /** The pool is the repository's: it is ended with the Kysely instance. */
  async close(): Promise<void> {}

  async #commitBatch(count: number, p: Plan): Promise<OpResult[]> {
    const results: OpResult[] = new Array(count).fill(undefined);
    const insert = async (q: Pool | PoolClient) => {
      if (p.appends.length === 0) return;
      const res = await q.query<{ id: string }>(INSERT_MANY, columnArrays(p.appends.map((a) => a.row)));
      const inserted = new Set(res.rows.map((r) => r.id));
      for (const { index, row } of p.appends) {
        // A set entry is claimed once: two appends with the same id cannot both have succeeded.
        if (inserted.delete(row.id) === false) results[index] = DUPLICATE();
      }
    };
    if (p.updates.size === 0) {
      await insert(this.#pool); // one statement: its own transaction
      return results;
    }
    await this.#inTransaction(async (client) => {
      await insert(client);
      const ids = [...p.updates.keys()];
      const rows = ids.map((id) => outcomeValues(id, p.updates.get(id)!.outcome));
      const columns = rows[0]!.map((_, i) => rows.map((r) => r[i]));
      const res = await client.query<{ id: string }>(UPDATE_MANY, columns);
      const updated = new Set(res.rows.map((r) => r.id));
      for (const [id, { indexes }] of p.updates) {
        if (!updated.has(id)) for (const i of indexes) results[i] = NOT_FOUND();
      }
    });
    return results;
  }

  /** Replays a batch one op at a time, each under a savepoint, so one bad row fails alone. */
  async #commitOneByOne(ops: readonly JournalOp[]): Promise<OpResult[]> {
    const results: OpResult[] = [];
    try {
      await this.#inTransaction(async (client) => {
        for (const op of ops) {
          await client.query('SAVEPOINT op');
          try {
            const res =
              op.kind === 'append'
                ? await client.query(INSERT_ONE, columnValues(op.row))
                : await client.query(UPDATE_ONE, outcomeValues(op.id, op.outcome));
            results.push(res.rowCount === 1 ? undefined : op.kind === 'append' ? DUPLICATE() : NOT_FOUND());
            await client.query('RELEASE SAVEPOINT op');
          } catch (e) {
            if (!isRowError(e)) throw e;
            await client.query('ROLLBACK TO SAVEPOINT op');
            results.push(this.#mapError(e, 'row'));
          }
        }
      });
    } catch (e) {
      throw this.#mapError(e, 'journal');
    }
    return results;
  }

  async #inTransaction(fn: (client: PoolClient) => Promise<void>): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await fn(client);
      await client.query('COMMIT');
      client.release();
    } catch (e) {
      const rolledBack = await client.query('ROLLBACK').then(
        () => true,
        () => false,
      );
      client.release(rolledBack ? undefined : true);
      throw e;
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** @throws POSKEY_ERR_STORE_CONFIG for a schema name that is not a plain lower-case identifier */
export function assertSchemaName(schema: unknown): string {
  if (typeof schema !== 'string' || !SCHEMA_RE.test(schema)) {
    throw storeError(
      'POSKEY_ERR_STORE_CONFIG',
      'a schema name is 1 to 63 of a-z, 0-9, _ (not starting with a digit)',
      'schema',
    );
  }
  return schema;
}

/**
 * Connects, migrates (under the advisory lock) and returns the repository.
 * @throws POSKEY_ERR_STORE_FAILED when PostgreSQL is unreachable or refuses, POSKEY_ERR_STORE_SCHEMA
 */
export async function openPostgresStore(opts: PostgresStoreOptions): Promise<Repository> {
  const schema = assertSchemaName(opts.schema ?? 'public');
  const poolSize = opts.poolSize ?? DEFAULT_POOL_SIZE;
  if (!Number.isInteger(poolSize) || poolSize < 1 || poolSize > 1000) {
    throw storeError('POSKEY_ERR_STORE_CONFIG', 'poolSize must be an integer from 1 to 1000', 'poolSize');
  }
  const mapError = makeErrorMapper(describeUrl(opts.url));
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: poolSize,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    options: `-c search_path=${schema}`,
  });
  // An idle connection that dies (server restart) is dropped by the pool and reopened on demand;
  // without a listener the error would take the process down.
  pool.on('error', () => undefined);
  try {
    await migratePostgres(pool, schema, opts.now);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw mapError(e, 'database');
  }
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  const backend = new PostgresJournalWriter(pool, mapError);
  // Kysely ends the pool only if it ever used it; the journal may have been the only user.
  const release = async () => {
    if (!pool.ended) await pool.end();
  };
  return makeRepository({ ...opts, dialect: 'postgres', db, backend, mapError, release });
}
