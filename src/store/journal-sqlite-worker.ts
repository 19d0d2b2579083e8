/**
 * The SQLite journal writer, run in a worker thread with its own connection. An fsync under
 * synchronous=FULL and the WAL checkpoints that follow take milliseconds (research/perf.md §2.3);
 * here they block this thread, never the event loop that serves terminals.
 *
 * Protocol (structured clone, plain arrays for speed):
 *   in:  { seq, ops: WireOp[] }   one batch → one BEGIN IMMEDIATE … COMMIT
 *        { close: true }
 *   out: { ready: true } | { fatal: WireError }
 *        { seq, results: (WireError | null)[] }   committed; per-op outcome
 *        { seq, error: WireError }                nothing committed
 *        { closed: true }
 *
 * A failing statement in SQLite undoes only itself and leaves the transaction open, so one bad
 * row is reported alone while the others commit. Duplicates are not errors at all here: the
 * INSERT says ON CONFLICT DO NOTHING and a row that changed nothing is reported as a duplicate.
 */
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { JOURNAL_COLUMNS, OUTCOME_COLUMNS } from './types.js';

/** [code, reason, field?]: a StoreError in transit. */
export type WireError = [code: string, reason: string, field?: string];
/** ['a', …values in JOURNAL_COLUMNS order] or ['u', id, …values in OUTCOME_COLUMNS order]. */
export type WireOp = ['a', ...unknown[]] | ['u', string, ...unknown[]];

export interface WriterConfig {
  path: string;
  busyTimeoutMs: number;
}

const config = workerData as WriterConfig;

function wireError(e: unknown): WireError {
  const code = (e as { code?: unknown })?.code;
  const message = e instanceof Error ? e.message : String(e);
  if (code === 'SQLITE_BUSY')
    return ['POSKEY_ERR_STORE_FAILED', `database busy for over ${config.busyTimeoutMs} ms`];
  return ['POSKEY_ERR_STORE_FAILED', `SQLite: ${message}`];
}

function open(): Database.Database {
  const db = new Database(config.path, { fileMustExist: true });
  db.pragma(`busy_timeout = ${config.busyTimeoutMs}`);
  db.pragma('journal_mode = WAL');
  // FULL: the WAL is fsynced at every commit, so a committed row survives power loss (NORMAL
  // would survive only a process crash).
  db.pragma('synchronous = FULL');
  // Refuse to run with weaker settings than asked for: an acknowledged row must be on disk.
  const mode = db.pragma('journal_mode', { simple: true });
  const sync = db.pragma('synchronous', { simple: true });
  if (mode !== 'wal' || sync !== 2) {
    db.close();
    throw new Error(`journal writer needs WAL with synchronous=FULL, got ${String(mode)}/${String(sync)}`);
  }
  return db;
}

const DUPLICATE: WireError = [
  'POSKEY_ERR_STORE_DUPLICATE',
  'a journal row with this (tid, batch, stan, mti) or id already exists',
  'stan',
];
const NOT_FOUND: WireError = ['POSKEY_ERR_STORE_NOT_FOUND', 'no journal row has this id', 'id'];
/** The outcome columns an update only overwrites when given: all but status and updated_at. */
const KEPT_UNLESS_GIVEN = OUTCOME_COLUMNS.slice(1, -1);

function serve(db: Database.Database, port: MessagePort): void {
  const insert = db.prepare(
    `INSERT INTO journal (${JOURNAL_COLUMNS.join(', ')}) VALUES (${JOURNAL_COLUMNS.map(() => '?').join(', ')})
     ON CONFLICT DO NOTHING`,
  );
  // Binds OUTCOME_COLUMNS in order, then the id.
  const update = db.prepare(
    `UPDATE journal SET status = ?, ${KEPT_UNLESS_GIVEN.map((c) => `${c} = COALESCE(?, ${c})`).join(', ')},
     updated_at = ? WHERE id = ?`,
  );
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');

  const apply = (op: WireOp): WireError | null => {
    if (op[0] === 'a') return insert.run(op.slice(1)).changes === 1 ? null : DUPLICATE;
    const [, id, ...outcome] = op;
    return update.run([...outcome, id]).changes === 1 ? null : NOT_FOUND;
  };

  const commitBatch = (ops: WireOp[]): (WireError | null)[] => {
    begin.run();
    try {
      const results = ops.map((op) => {
        try {
          return apply(op);
        } catch (e) {
          // Constraint and type errors undo the statement only; anything that ended the
          // transaction (I/O error, full disk) fails the batch.
          if (!db.inTransaction) throw e;
          return wireError(e);
        }
      });
      commit.run();
      return results;
    } catch (e) {
      if (db.inTransaction) rollback.run();
      throw e;
    }
  };

  port.on('message', (msg: { seq: number; ops: WireOp[] } | { close: true }) => {
    if ('close' in msg) {
      db.close();
      port.postMessage({ closed: true });
      port.close();
      return;
    }
    try {
      port.postMessage({ seq: msg.seq, results: commitBatch(msg.ops) });
    } catch (e) {
      port.postMessage({ seq: msg.seq, error: wireError(e) });
    }
  });
  port.postMessage({ ready: true });
}

function main(): void {
  if (!parentPort) throw new Error('journal-sqlite-worker must run in a worker thread');
  let db: Database.Database;
  try {
    db = open();
  } catch (e) {
    parentPort.postMessage({ fatal: wireError(e) });
    parentPort.close();
    return;
  }
  serve(db, parentPort);
}

main();
