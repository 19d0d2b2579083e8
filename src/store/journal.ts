/**
 * The durable transaction journal: group commit in front of a dialect back end.
 *
 * An fsync costs 0.25–1 ms here (research/perf.md §2.3), so one commit per row caps the host at
 * the fsync rate (SQLite WAL FULL: 3.8k/s, PostgreSQL: 2.1k/s). Instead, every append and outcome
 * queued during one event-loop turn waits for a `setImmediate`, then goes to the back end as one
 * batch committed in one transaction. At most one batch is in flight; what arrives meanwhile forms
 * the next batch, so batches grow with load and the fsync cost is shared (§2.6: 16k/s durable).
 *
 * Each caller's promise settles after its batch's transaction: resolved once durable, rejected
 * with that row's own error (a duplicate key fails only its row), or with the batch's error when
 * the transaction as a whole failed. Nothing resolves early, so "no approval before its row is
 * durable" holds as long as the host awaits `append` before answering.
 */
import { StoreError, storeError } from './errors.js';
import type { PanHasher } from './pan.js';
import type { JournalReader } from './registry.js';
import type {
  AppendResult,
  JOURNAL_COLUMNS,
  JournalOutcome,
  JournalRecord,
  JournalStats,
  JournalStore,
} from './types.js';
import { assertJournalId, type CheckedOutcome, checkOutcome, toJournalRecord } from './validate.js';

export type JournalOp =
  | { kind: 'append'; row: JournalRecord }
  | { kind: 'update'; id: string; outcome: CheckedOutcome };

/** Per op: undefined when it took effect, else the error for that op alone. */
export type OpResult = StoreError | undefined;

/** A dialect's writer: commits a batch in one transaction and reports each op. */
export interface JournalBackend {
  /**
   * Applies the ops in order in one transaction. Resolves after the commit is durable, with one
   * result per op. Rejects (without committing anything) when the transaction itself fails.
   */
  commit(ops: readonly JournalOp[]): Promise<OpResult[]>;
  close(): Promise<void>;
}

/** A journal record as column values (what the SQLite and PostgreSQL writers bind). */
export function rowValues(r: JournalRecord): Record<(typeof JOURNAL_COLUMNS)[number], unknown> {
  return {
    id: r.id,
    node_id: r.nodeId,
    tid: r.tid,
    mid: r.mid,
    batch: r.batch,
    stan: r.stan,
    mti: r.mti,
    txn_type: r.txnType,
    processing_code: r.processingCode,
    amount: r.amount,
    currency: r.currency,
    pan_masked: r.panMasked,
    pan_hash: r.panHash,
    rrn: r.rrn,
    auth_code: r.authCode,
    response_code: r.responseCode,
    status: r.status,
    network_outcome: r.networkOutcome,
    original_id: r.originalId,
    original_stan: r.originalStan,
    original_rrn: r.originalRrn,
    created_at: r.createdAt,
    updated_at: r.updatedAt,
  };
}

/** Largest batch one transaction takes; the rest waits for the next. */
export const DEFAULT_MAX_BATCH = 4096;

/** @throws POSKEY_ERR_STORE_CONFIG unless 1 ≤ maxBatch ≤ 100000 */
export function assertMaxBatch(maxBatch: unknown): asserts maxBatch is number {
  if (typeof maxBatch !== 'number' || !Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > 100_000) {
    throw storeError('POSKEY_ERR_STORE_CONFIG', 'maxBatch must be an integer from 1 to 100000', 'maxBatch');
  }
}

interface Waiter {
  op: JournalOp;
  resolve: () => void;
  reject: (e: Error) => void;
}

function asStoreError(e: unknown): StoreError {
  return e instanceof StoreError
    ? e
    : storeError(
        'POSKEY_ERR_STORE_FAILED',
        `journal commit failed: ${e instanceof Error ? e.message : String(e)}`,
        undefined,
        e,
      );
}

/** The batching engine, independent of any database. */
export class GroupCommit {
  readonly #backend: JournalBackend;
  readonly #maxBatch: number;
  #queue: Waiter[] = [];
  #inFlight = false;
  #scheduled = false;
  #closed = false;
  #idle: (() => void)[] = [];
  readonly #stats = { commits: 0, failedCommits: 0, ops: 0, largestBatch: 0 };

  constructor(backend: JournalBackend, maxBatch = DEFAULT_MAX_BATCH) {
    assertMaxBatch(maxBatch);
    this.#backend = backend;
    this.#maxBatch = maxBatch;
  }

  /** Queues an op for the next batch; settles when that batch's transaction does. */
  submit(op: JournalOp): Promise<void> {
    if (this.#closed) return Promise.reject(storeError('POSKEY_ERR_STORE_CLOSED', 'the journal is closed'));
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ op, resolve, reject });
      this.#schedule();
    });
  }

  /** Resolves once nothing is queued or in flight. */
  flush(): Promise<void> {
    if (!this.#inFlight && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Refuses new ops, commits what is queued, then closes the back end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    await this.#backend.close();
  }

  stats(): JournalStats {
    return { ...this.#stats, queued: this.#queue.length, inFlight: this.#inFlight ? 1 : 0 };
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight) return;
    this.#scheduled = true;
    // setImmediate runs after this turn's I/O callbacks: every row queued by them joins the batch.
    setImmediate(() => {
      this.#scheduled = false;
      void this.#commitNext();
    });
  }

  async #commitNext(): Promise<void> {
    if (this.#inFlight) return;
    if (this.#queue.length === 0) {
      this.#wakeIdle();
      return;
    }
    const batch = this.#queue.splice(0, this.#maxBatch);
    this.#inFlight = true;
    this.#stats.largestBatch = Math.max(this.#stats.largestBatch, batch.length);
    let results: OpResult[] | undefined;
    let failure: StoreError | undefined;
    try {
      results = await this.#backend.commit(batch.map((w) => w.op));
      this.#stats.commits++;
    } catch (e) {
      failure = asStoreError(e);
      this.#stats.failedCommits++;
    }
    this.#inFlight = false;
    this.#stats.ops += batch.length;
    batch.forEach((w, i) => {
      const error = failure ?? results?.[i];
      if (error) w.reject(error);
      else w.resolve();
    });
    if (this.#queue.length > 0) this.#schedule();
    else this.#wakeIdle();
  }

  #wakeIdle(): void {
    const idle = this.#idle;
    this.#idle = [];
    for (const resolve of idle) resolve();
  }
}

export interface JournalOptions {
  backend: JournalBackend;
  reader: JournalReader;
  hasher: PanHasher;
  nodeId: string;
  now: () => number;
  newId: () => string;
  maxBatch?: number;
}

/** The `JournalStore` a repository exposes, plus `close()` for the repository's own use. */
export function createJournal(opts: JournalOptions): JournalStore & { close(): Promise<void> } {
  const group = new GroupCommit(opts.backend, opts.maxBatch);
  const ctx = { nodeId: opts.nodeId, now: opts.now, newId: opts.newId, hasher: opts.hasher };

  const queueAppend = (input: Parameters<JournalStore['append']>[0]): { id: string; done: Promise<void> } => {
    const row = toJournalRecord(input, ctx);
    return { id: row.id, done: group.submit({ kind: 'append', row }) };
  };

  return {
    append: async (input) => {
      const { id, done } = queueAppend(input);
      await done;
      return id;
    },
    appendMany: async (rows) => {
      if (!Array.isArray(rows))
        throw storeError('POSKEY_ERR_STORE_VALUE', 'must be an array of rows', 'rows');
      // Queue them all before awaiting any, so they share a batch.
      const queued = rows.map((r): Promise<AppendResult> => {
        try {
          const { id, done } = queueAppend(r);
          return done.then(
            () => ({ id }),
            (error: Error) => ({ id, error }),
          );
        } catch (error) {
          return Promise.resolve({ id: undefined, error: error as Error });
        }
      });
      return Promise.all(queued);
    },
    updateOutcome: async (id: string, outcome: JournalOutcome) => {
      assertJournalId(id);
      await group.submit({ kind: 'update', id, outcome: checkOutcome(outcome, opts.now) });
    },
    get: (tid, batch, stan, mti) => opts.reader.get(tid, batch, stan, mti),
    getById: (id) => opts.reader.getById(id),
    list: (filter) => opts.reader.list(filter),
    newId: opts.newId,
    panHash: (pan) => opts.hasher.hash(pan),
    flush: () => group.flush(),
    stats: () => group.stats(),
    close: () => group.close(),
  };
}
