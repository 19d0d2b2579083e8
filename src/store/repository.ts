/**
 * Assembles a `Repository` from a dialect's parts: a Kysely instance, a journal writer and an
 * error mapper. Everything above this line is shared by SQLite and PostgreSQL.
 */
import type { Kysely } from 'kysely';
import { StoreError, storeError } from './errors.js';
import { createJournal, type JournalBackend } from './journal.js';
import type { PanHasher } from './pan.js';
import {
  type ErrorMapper,
  journalReader,
  merchantStore,
  type RegistryDeps,
  registryTx,
  terminalStore,
} from './registry.js';
import { safStore } from './saf.js';
import type { Dialect, RegistryTx, Repository, Schema } from './types.js';

/** What every dialect's opener takes besides its connection settings. */
export interface RepositoryOptions {
  nodeId: string;
  hasher: PanHasher;
  now: () => number;
  newId: () => string;
  maxBatch?: number;
}

export interface RepositoryParts extends RepositoryOptions {
  dialect: Dialect;
  db: Kysely<Schema>;
  backend: JournalBackend;
  mapError: ErrorMapper;
  /** Runs last on close, after Kysely is destroyed (PostgreSQL: end the pool Kysely may never have used). */
  release?: () => Promise<void>;
}

export function makeRepository(p: RepositoryParts): Repository {
  let closed = false;
  let closing: Promise<void> | undefined;
  const closedError = () => storeError('POSKEY_ERR_STORE_CLOSED', 'the store is closed');
  const mapError: ErrorMapper = (e, field) => (closed ? closedError() : p.mapError(e, field));
  const assertOpen = () => {
    if (closed) throw closedError();
  };
  const deps: RegistryDeps = { db: p.db, now: p.now, mapError, assertOpen };
  const { close: closeJournal, ...journal } = createJournal({
    backend: p.backend,
    reader: journalReader(deps),
    hasher: p.hasher,
    nodeId: p.nodeId,
    now: p.now,
    newId: p.newId,
    maxBatch: p.maxBatch,
  });

  return {
    dialect: p.dialect,
    nodeId: p.nodeId,
    merchants: merchantStore(deps),
    terminals: terminalStore(deps),
    journal,
    saf: safStore({ ...deps, nodeId: p.nodeId, newId: p.newId }),
    transaction: async <T>(fn: (tx: RegistryTx) => Promise<T>): Promise<T> => {
      assertOpen();
      // Errors from `fn` pass through untouched (a caller may throw to roll back); only the
      // transaction's own failures (BEGIN, COMMIT) are translated.
      let thrown: { e: unknown } | undefined;
      try {
        return await p.db.transaction().execute(async (trx) => {
          try {
            return await fn(registryTx({ ...deps, db: trx }));
          } catch (e) {
            thrown = { e };
            throw e;
          }
        });
      } catch (e) {
        if (thrown && thrown.e === e) throw e;
        throw e instanceof StoreError ? e : mapError(e, 'transaction');
      }
    },
    schemaVersion: async () => {
      assertOpen();
      try {
        const row = await p.db
          .selectFrom('schema_migrations')
          .select((eb) => eb.fn.max('version').as('version'))
          .executeTakeFirst();
        return Number(row?.version ?? 0);
      } catch (e) {
        throw mapError(e, 'schema_migrations');
      }
    },
    close: () => {
      closing ??= (async () => {
        try {
          await closeJournal();
        } finally {
          closed = true;
          await p.db.destroy();
          await p.release?.();
        }
      })();
      return closing;
    },
  };
}
