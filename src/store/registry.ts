/**
 * Merchants, terminals and journal reads over Kysely: one implementation for both dialects. Only
 * error translation differs between SQLite and PostgreSQL, and comes in as `mapError`.
 */
import type { Kysely, Selectable } from 'kysely';
import { StoreError, storeError } from './errors.js';
import type {
  JournalFilter,
  JournalRecord,
  JournalStatus,
  JournalTable,
  Merchant,
  MerchantInput,
  MerchantStore,
  MerchantTable,
  NewTerminal,
  RegistryTx,
  Schema,
  StoredKey,
  Terminal,
  TerminalKeyAlgorithm,
  TerminalState,
  TerminalStore,
  TerminalTable,
  WorkingKeysInput,
} from './types.js';
import {
  assertBatch,
  assertJournalId,
  assertMid,
  assertMti,
  assertStan,
  assertStatus,
  assertTerminalState,
  assertTid,
  assertTime,
  checkBatchNumber,
  checkMerchant,
  checkNewTerminal,
  checkStoredKey,
} from './validate.js';

/** Turns a driver error into a StoreError; `field` is the input a unique or foreign key names by default. */
export type ErrorMapper = (e: unknown, field: string) => StoreError;

export interface RegistryDeps {
  db: Kysely<Schema>;
  now: () => number;
  mapError: ErrorMapper;
  /** Throws POSKEY_ERR_STORE_CLOSED once the repository is closed. */
  assertOpen: () => void;
}

/** BIGINT from PostgreSQL arrives as a string; every value the store writes is a safe integer. */
export function toInt(v: number | string | bigint): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n))
    throw storeError('POSKEY_ERR_STORE_FAILED', 'a stored integer is out of range');
  return n;
}

const toIntOrNull = (v: number | string | bigint | null): number | null => (v === null ? null : toInt(v));

async function guarded<T>(deps: RegistryDeps, field: string, run: () => Promise<T>): Promise<T> {
  deps.assertOpen();
  try {
    return await run();
  } catch (e) {
    if (e instanceof StoreError) throw e;
    throw deps.mapError(e, field);
  }
}

function notFound(what: string, field: string): never {
  throw storeError('POSKEY_ERR_STORE_NOT_FOUND', `no such ${what}`, field);
}

// ---------------------------------------------------------------------------------------------
// Merchants

function toMerchant(r: Selectable<MerchantTable>): Merchant {
  return {
    mid: r.mid,
    name: r.name,
    mcc: r.mcc,
    createdAt: toInt(r.created_at),
    updatedAt: toInt(r.updated_at),
  };
}

export function merchantStore(deps: RegistryDeps): MerchantStore {
  const { db } = deps;
  return {
    upsert: async (input: MerchantInput) => {
      const m = checkMerchant(input);
      return guarded(deps, 'mid', async () => {
        const at = deps.now();
        const row = await db
          .insertInto('merchants')
          .values({ ...m, created_at: at, updated_at: at })
          .onConflict((oc) => oc.column('mid').doUpdateSet({ name: m.name, mcc: m.mcc, updated_at: at }))
          .returningAll()
          .executeTakeFirstOrThrow();
        return toMerchant(row);
      });
    },
    get: async (mid: string) => {
      assertMid(mid);
      return guarded(deps, 'mid', async () => {
        const row = await db.selectFrom('merchants').selectAll().where('mid', '=', mid).executeTakeFirst();
        return row && toMerchant(row);
      });
    },
    list: async () =>
      guarded(deps, 'mid', async () =>
        (await db.selectFrom('merchants').selectAll().orderBy('mid').execute()).map(toMerchant),
      ),
  };
}

// ---------------------------------------------------------------------------------------------
// Terminals

function key(block: string | null, kcv: string | null): StoredKey | null {
  return block === null || kcv === null ? null : { block, kcv };
}

function toTerminal(r: Selectable<TerminalTable>): Terminal {
  return {
    tid: r.tid,
    mid: r.mid,
    serial: r.serial,
    keyAlgorithm: r.key_algorithm as TerminalKeyAlgorithm,
    tmk: key(r.tmk_block, r.tmk_kcv),
    state: r.state as TerminalState,
    batchNumber: r.batch_number,
    workingKeys:
      r.working_keys_at === null
        ? null
        : {
            tpk: key(r.tpk_block, r.tpk_kcv),
            tak: key(r.tak_block, r.tak_kcv),
            tdk: key(r.tdk_block, r.tdk_kcv),
            createdAt: toInt(r.working_keys_at),
          },
    macFailures: r.mac_failures,
    lastSignInAt: toIntOrNull(r.last_sign_in_at),
    version: r.version,
    createdAt: toInt(r.created_at),
    updatedAt: toInt(r.updated_at),
  };
}

type TerminalChanges = Parameters<ReturnType<Kysely<Schema>['updateTable']>['set']>[0] & object;

function optionalKey(k: StoredKey | null | undefined, field: string): StoredKey | null {
  return k === undefined || k === null ? null : checkStoredKey(k, field);
}

export function terminalStore(deps: RegistryDeps): TerminalStore {
  const { db } = deps;

  /** One UPDATE … RETURNING: the change, the version bump and the read are atomic. */
  const update = async (tid: string, changes: Record<string, unknown>): Promise<Terminal> => {
    assertTid(tid);
    return guarded(deps, 'tid', async () => {
      const row = await db
        .updateTable('terminals')
        .set((eb) => ({
          ...(changes as TerminalChanges),
          version: eb('version', '+', 1),
          updated_at: deps.now(),
        }))
        .where('tid', '=', tid)
        .returningAll()
        .executeTakeFirst();
      return row ? toTerminal(row) : notFound('terminal', 'tid');
    });
  };

  return {
    create: async (input: NewTerminal) => {
      const t = checkNewTerminal(input);
      return guarded(deps, 'tid', async () => {
        const at = deps.now();
        const row = await db
          .insertInto('terminals')
          .values({
            tid: t.tid,
            mid: t.mid,
            serial: t.serial,
            key_algorithm: t.keyAlgorithm,
            tmk_block: t.tmk?.block ?? null,
            tmk_kcv: t.tmk?.kcv ?? null,
            state: t.state,
            batch_number: t.batchNumber,
            tpk_block: null,
            tpk_kcv: null,
            tak_block: null,
            tak_kcv: null,
            tdk_block: null,
            tdk_kcv: null,
            working_keys_at: null,
            mac_failures: 0,
            last_sign_in_at: null,
            version: 1,
            created_at: at,
            updated_at: at,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        return toTerminal(row);
      });
    },
    get: async (tid: string) => {
      assertTid(tid);
      return guarded(deps, 'tid', async () => {
        const row = await db.selectFrom('terminals').selectAll().where('tid', '=', tid).executeTakeFirst();
        return row && toTerminal(row);
      });
    },
    list: async (filter = {}) => {
      if (filter.mid !== undefined) assertMid(filter.mid);
      if (filter.state !== undefined) assertTerminalState(filter.state);
      return guarded(deps, 'tid', async () => {
        let q = db.selectFrom('terminals').selectAll().orderBy('tid');
        if (filter.mid !== undefined) q = q.where('mid', '=', filter.mid);
        if (filter.state !== undefined) q = q.where('state', '=', filter.state);
        return (await q.execute()).map(toTerminal);
      });
    },
    setState: async (tid, state) => update(tid, { state: assertTerminalState(state) }),
    setTmk: async (tid, tmk) => {
      const k = checkStoredKey(tmk, 'tmk');
      return update(tid, { tmk_block: k.block, tmk_kcv: k.kcv });
    },
    setWorkingKeys: async (tid, keys: WorkingKeysInput) => {
      if (typeof keys !== 'object' || keys === null) {
        throw storeError('POSKEY_ERR_STORE_VALUE', 'must be { tpk, tak, tdk }', 'keys');
      }
      const tpk = optionalKey(keys.tpk, 'tpk');
      const tak = optionalKey(keys.tak, 'tak');
      const tdk = optionalKey(keys.tdk, 'tdk');
      const at = keys.createdAt === undefined ? deps.now() : assertTime(keys.createdAt, 'createdAt');
      return update(tid, {
        tpk_block: tpk?.block ?? null,
        tpk_kcv: tpk?.kcv ?? null,
        tak_block: tak?.block ?? null,
        tak_kcv: tak?.kcv ?? null,
        tdk_block: tdk?.block ?? null,
        tdk_kcv: tdk?.kcv ?? null,
        working_keys_at: at,
      });
    },
    setBatchNumber: async (tid, n) => update(tid, { batch_number: checkBatchNumber(n) }),
    incrementMacFailures: async (tid) => {
      assertTid(tid);
      return guarded(deps, 'tid', async () => {
        const row = await db
          .updateTable('terminals')
          .set((eb) => ({
            mac_failures: eb('mac_failures', '+', 1),
            version: eb('version', '+', 1),
            updated_at: deps.now(),
          }))
          .where('tid', '=', tid)
          .returning('mac_failures')
          .executeTakeFirst();
        return row ? row.mac_failures : notFound('terminal', 'tid');
      });
    },
    resetMacFailures: async (tid) => update(tid, { mac_failures: 0 }),
    recordSignIn: async (tid, at) =>
      update(tid, { last_sign_in_at: at === undefined ? deps.now() : assertTime(at, 'at') }),
  };
}

// ---------------------------------------------------------------------------------------------
// Journal reads

export function fromJournalRow(r: Selectable<JournalTable>): JournalRecord {
  return {
    id: r.id,
    nodeId: r.node_id,
    tid: r.tid,
    mid: r.mid,
    batch: r.batch,
    stan: r.stan,
    mti: r.mti,
    txnType: r.txn_type,
    processingCode: r.processing_code,
    amount: toIntOrNull(r.amount),
    currency: r.currency,
    panMasked: r.pan_masked,
    panHash: r.pan_hash,
    rrn: r.rrn,
    authCode: r.auth_code,
    responseCode: r.response_code,
    status: r.status as JournalStatus,
    networkOutcome: r.network_outcome,
    originalId: r.original_id,
    originalStan: r.original_stan,
    originalRrn: r.original_rrn,
    createdAt: toInt(r.created_at),
    updatedAt: toInt(r.updated_at),
    ...(r.settled_at === null || r.settled_at === undefined ? {} : { settledAt: toInt(r.settled_at) }),
  };
}

export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;

export interface JournalReader {
  get(tid: string, batch: number, stan: number, mti?: string): Promise<JournalRecord | undefined>;
  getById(id: string): Promise<JournalRecord | undefined>;
  list(filter?: JournalFilter): Promise<JournalRecord[]>;
}

function checkFilter(f: JournalFilter): void {
  if (typeof f !== 'object' || f === null)
    throw storeError('POSKEY_ERR_STORE_VALUE', 'must be an object', 'filter');
  if (f.tid !== undefined) assertTid(f.tid);
  if (f.mid !== undefined) assertMid(f.mid);
  if (f.batch !== undefined) assertBatch(f.batch);
  if (f.stan !== undefined) assertStan(f.stan);
  if (f.status !== undefined) {
    for (const s of typeof f.status === 'string' ? [f.status] : f.status) assertStatus(s);
  }
  if (f.after !== undefined) assertJournalId(f.after, 'after');
  if (f.originalId !== undefined) assertJournalId(f.originalId, 'originalId');
  if (f.from !== undefined) assertTime(f.from, 'from');
  if (f.to !== undefined) assertTime(f.to, 'to');
  if (f.order !== undefined && f.order !== 'asc' && f.order !== 'desc') {
    throw storeError('POSKEY_ERR_STORE_VALUE', "must be 'asc' or 'desc'", 'order');
  }
  const limit = f.limit ?? DEFAULT_LIST_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw storeError('POSKEY_ERR_STORE_VALUE', `must be an integer from 1 to ${MAX_LIST_LIMIT}`, 'limit');
  }
}

export function journalReader(deps: RegistryDeps): JournalReader {
  const { db } = deps;
  return {
    get: async (tid, batch, stan, mti) => {
      assertTid(tid);
      assertBatch(batch);
      assertStan(stan);
      if (mti !== undefined) assertMti(mti);
      return guarded(deps, 'id', async () => {
        let q = db
          .selectFrom('journal')
          .selectAll()
          .where('tid', '=', tid)
          .where('batch', '=', batch)
          .where('stan', '=', stan);
        if (mti !== undefined) q = q.where('mti', '=', mti);
        const row = await q.orderBy('id').limit(1).executeTakeFirst();
        return row && fromJournalRow(row);
      });
    },
    getById: async (id) => {
      assertJournalId(id);
      return guarded(deps, 'id', async () => {
        const row = await db.selectFrom('journal').selectAll().where('id', '=', id).executeTakeFirst();
        return row && fromJournalRow(row);
      });
    },
    list: async (filter = {}) => {
      checkFilter(filter);
      return guarded(deps, 'id', async () => {
        const f = filter;
        const desc = f.order === 'desc';
        let q = db.selectFrom('journal').selectAll();
        if (f.tid !== undefined) q = q.where('tid', '=', f.tid);
        if (f.mid !== undefined) q = q.where('mid', '=', f.mid);
        if (f.batch !== undefined) q = q.where('batch', '=', f.batch);
        if (f.stan !== undefined) q = q.where('stan', '=', f.stan);
        if (f.rrn !== undefined) q = q.where('rrn', '=', f.rrn);
        if (f.nodeId !== undefined) q = q.where('node_id', '=', f.nodeId);
        if (f.panHash !== undefined) q = q.where('pan_hash', '=', f.panHash);
        if (f.originalId !== undefined) q = q.where('original_id', '=', f.originalId);
        if (f.status !== undefined) {
          q = q.where('status', 'in', typeof f.status === 'string' ? [f.status] : [...f.status]);
        }
        if (f.from !== undefined) q = q.where('created_at', '>=', f.from);
        if (f.to !== undefined) q = q.where('created_at', '<', f.to);
        if (f.after !== undefined) q = q.where('id', desc ? '<' : '>', f.after);
        const rows = await q
          .orderBy('id', desc ? 'desc' : 'asc')
          .limit(f.limit ?? DEFAULT_LIST_LIMIT)
          .execute();
        return rows.map(fromJournalRow);
      });
    },
  };
}

/** The registry half of a transaction: stores bound to `db` (the transaction's builder). */
export function registryTx(deps: RegistryDeps): RegistryTx {
  return { merchants: merchantStore(deps), terminals: terminalStore(deps), db: deps.db };
}
