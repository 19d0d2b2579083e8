/**
 * SQLite back end (better-sqlite3, WAL, synchronous=FULL).
 *
 * Two connections share the file:
 * - the main thread's, through Kysely: registry reads and writes and journal reads. Registry
 *   writes are rare (sign-in, key change, state) and short; its transactions start with BEGIN
 *   IMMEDIATE so they queue on the write lock (busy_timeout) instead of failing on upgrade.
 *   Automatic checkpoints are off here, so a checkpoint never stalls the event loop.
 * - the journal writer's, in a worker thread: every append and outcome, grouped into one
 *   transaction per batch, fsynced there (and checkpointed there).
 * SQLite has one writer at a time; a registry write that meets a journal commit waits for it
 * (a commit is ~0.3–1 ms), blocking the event loop that long. Routing registry writes through the
 * worker would avoid that but lose the generic `transaction` helper; the wait is the cheaper cost.
 * Several processes may open one file: BEGIN IMMEDIATE and busy_timeout serialise them too.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  SqliteDialect,
  type SqliteDialectConfig,
  SqliteDriver,
} from 'kysely';
import { driverCode, driverMessage, StoreError, storeError } from './errors.js';
import { type JournalBackend, type JournalOp, type OpResult, rowValues } from './journal.js';
import type { WireError, WireOp, WriterConfig } from './journal-sqlite-worker.js';
import { migrationsTableSql, pendingMigrations } from './migrations.js';
import { makeRepository, type RepositoryOptions } from './repository.js';
import { JOURNAL_COLUMNS, type Repository, type Schema } from './types.js';

export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

export interface SqliteStoreOptions extends RepositoryOptions {
  path: string;
  busyTimeoutMs?: number;
}

// ---------------------------------------------------------------------------------------------
// Errors

function mapSqliteError(e: unknown, field: string): StoreError {
  const code = driverCode(e);
  const message = driverMessage(e);
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    const which = /\.serial\b/.test(message) ? 'serial' : field;
    return storeError('POSKEY_ERR_STORE_DUPLICATE', `a row with this ${which} already exists`, which, e);
  }
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    return storeError('POSKEY_ERR_STORE_NOT_FOUND', 'no such merchant', 'mid', e);
  }
  if (code.startsWith('SQLITE_BUSY'))
    return storeError('POSKEY_ERR_STORE_FAILED', 'database busy', undefined, e);
  return storeError('POSKEY_ERR_STORE_FAILED', `SQLite: ${message}`, undefined, e);
}

function fromWire([code, reason, field]: WireError): StoreError {
  return storeError(code as StoreError['code'], reason, field);
}

// ---------------------------------------------------------------------------------------------
// Main-thread connection

/** Kysely's SQLite driver, but transactions take the write lock up front. */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
}

/** Kysely prepares each query anew; keep the prepared statements (the registry uses a few dozen). */
function withStatementCache(db: Database.Database): SqliteDialectConfig['database'] {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => db.close(),
    prepare: (sql: string) => {
      let stmt = cache.get(sql);
      if (!stmt) {
        if (cache.size >= 256) cache.clear();
        stmt = db.prepare(sql);
        cache.set(sql, stmt);
      }
      return stmt;
    },
  };
}

function openMain(path: string, busyTimeoutMs: number): Database.Database {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal')
      throw storeError('POSKEY_ERR_STORE_FAILED', `SQLite refused WAL mode (${String(mode)})`);
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('wal_autocheckpoint = 0');
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Applies pending migrations in one BEGIN IMMEDIATE transaction (so concurrent openers queue). */
export function migrateSqlite(db: Database.Database, now: () => number): void {
  db.exec(migrationsTableSql('sqlite'));
  db.transaction(() => {
    const applied = db
      .prepare('SELECT version FROM schema_migrations')
      .all()
      .map((r) => (r as { version: number }).version);
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of pendingMigrations(applied)) {
      for (const sql of m.statements('sqlite')) db.exec(sql);
      record.run(m.version, m.name, now());
    }
  }).immediate();
}

// ---------------------------------------------------------------------------------------------
// Journal writer (worker thread)

function workerScript(): { url: URL; eval?: string } {
  const source = import.meta.url.endsWith('.ts');
  const url = new URL(`./journal-sqlite-worker.${source ? 'ts' : 'js'}`, import.meta.url);
  if (!source) return { url };
  // Running from TypeScript sources (tests, `tsx`): Node 20 does not pass the tsx loader on to
  // workers, so the worker registers it before importing the writer.
  const tsx = import.meta.resolve('tsx/esm/api');
  return {
    url,
    eval: `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); })`,
  };
}

function toWire(op: JournalOp): WireOp {
  if (op.kind === 'append') {
    const values = rowValues(op.row);
    return ['a', ...JOURNAL_COLUMNS.map((c) => values[c])];
  }
  const o = op.outcome;
  return ['u', op.id, o.status, o.responseCode, o.authCode, o.rrn, o.networkOutcome, o.at];
}

type Reply =
  | { ready: true }
  | { fatal: WireError }
  | { closed: true }
  | { seq: number; results: (WireError | null)[] }
  | { seq: number; error: WireError };

/** Main-thread end of the writer thread: one pending batch at a time (GroupCommit ensures it). */
export class SqliteJournalWriter implements JournalBackend {
  readonly #worker: Worker;
  readonly #pending = new Map<
    number,
    { resolve: (r: OpResult[]) => void; reject: (e: StoreError) => void }
  >();
  #seq = 0;
  #broken: StoreError | undefined;
  #exited: Promise<void>;

  private constructor(worker: Worker) {
    this.#worker = worker;
    this.#exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (m: Reply) => this.#onReply(m));
    worker.on('error', (e) =>
      this.#fail(storeError('POSKEY_ERR_STORE_FAILED', `journal writer crashed: ${e.message}`, undefined, e)),
    );
    worker.on('exit', () => this.#fail(storeError('POSKEY_ERR_STORE_FAILED', 'journal writer stopped')));
  }

  /** Starts the writer thread; resolves once it has opened the database. */
  static start(path: string, busyTimeoutMs: number): Promise<SqliteJournalWriter> {
    const script = workerScript();
    const workerData: WriterConfig = { path, busyTimeoutMs };
    const worker = script.eval
      ? new Worker(script.eval, { eval: true, workerData })
      : new Worker(script.url, { workerData });
    return new Promise((resolve, reject) => {
      const onMessage = (m: Reply) => {
        if ('ready' in m) {
          cleanup();
          resolve(new SqliteJournalWriter(worker));
        } else if ('fatal' in m) {
          cleanup();
          reject(fromWire(m.fatal));
        }
      };
      const onError = (e: Error) => {
        cleanup();
        reject(
          storeError('POSKEY_ERR_STORE_FAILED', `journal writer failed to start: ${e.message}`, undefined, e),
        );
      };
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
    });
  }

  commit(ops: readonly JournalOp[]): Promise<OpResult[]> {
    if (this.#broken) return Promise.reject(this.#broken);
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      this.#worker.postMessage({ seq, ops: ops.map(toWire) });
    });
  }

  async close(): Promise<void> {
    if (!this.#broken) {
      this.#broken = storeError('POSKEY_ERR_STORE_CLOSED', 'the journal is closed');
      this.#worker.postMessage({ close: true });
    }
    await this.#exited;
  }

  #onReply(m: Reply): void {
    if (!('seq' in m)) return;
    const waiter = this.#pending.get(m.seq);
    if (!waiter) return;
    this.#pending.delete(m.seq);
    if ('error' in m) waiter.reject(fromWire(m.error));
    else waiter.resolve(m.results.map((r) => (r ? fromWire(r) : undefined)));
  }

  #fail(error: StoreError): void {
    this.#broken ??= error;
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Opens (creating if needed) the SQLite database at `path`, migrates it and starts the writer.
 * @throws POSKEY_ERR_STORE_FAILED (cannot open, not WAL-capable), POSKEY_ERR_STORE_SCHEMA
 */
export async function openSqliteStore(opts: SqliteStoreOptions): Promise<Repository> {
  const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 600_000) {
    throw storeError(
      'POSKEY_ERR_STORE_CONFIG',
      'busyTimeoutMs must be an integer from 0 to 600000',
      'busyTimeoutMs',
    );
  }
  let db: Database.Database;
  try {
    db = openMain(opts.path, busyTimeoutMs);
  } catch (e) {
    throw e instanceof StoreError ? e : mapSqliteError(e, 'path');
  }
  try {
    migrateSqlite(db, opts.now);
  } catch (e) {
    db.close();
    throw e instanceof StoreError ? e : mapSqliteError(e, 'path');
  }
  let writer: SqliteJournalWriter;
  try {
    writer = await SqliteJournalWriter.start(opts.path, busyTimeoutMs);
  } catch (e) {
    db.close();
    throw e;
  }
  const kysely = new Kysely<Schema>({
    dialect: new ImmediateSqliteDialect({ database: withStatementCache(db) }),
  });
  // Kysely closes the connection only if it ever used it.
  const release = async () => {
    if (db.open) db.close();
  };
  return makeRepository({
    ...opts,
    dialect: 'sqlite',
    db: kysely,
    backend: writer,
    mapError: mapSqliteError,
    release,
  });
}
