/**
 * Settlement in the store (migration 3): the host's totals of a terminal batch from its journal,
 * the settlement record of each batch, the transactions a terminal uploaded, and closing a batch
 * (rows marked settled, the terminal's batch number advanced) in one registry transaction.
 *
 * Which journal rows count: status `approved` only (voided and reversed ones are out); txn types
 * purchase and completion (online and advice) as debits, refund as credits.
 */
import type { Kysely } from 'kysely';
import { addToTotals, type BatchTotals, emptyTotals } from '../protocol/settlement.js';
import { maskPan } from './pan.js';
import { toInt } from './registry.js';
import type { JournalRecord, JournalStatus, Repository, Schema, Terminal } from './types.js';

/** Journal txn types counted as debits (sales). Both spellings of completion advice are accepted. */
export const DEBIT_TXN_TYPES: readonly string[] = Object.freeze([
  'purchase',
  'completion',
  'completion-advice',
  'completion_advice',
]);
/** Journal txn types counted as credits. */
export const CREDIT_TXN_TYPES: readonly string[] = Object.freeze(['refund']);
/** The only status that counts towards a batch's totals. */
export const COUNTED_STATUS: JournalStatus = 'approved';

/** Largest batch number (60.2, n6); the next after it is 1. */
const MAX_BATCH = 999_999;

/** True once the record's batch was settled: a void of it must be refused. */
export function isSettled(record: Pick<JournalRecord, 'settledAt'>): boolean {
  return record.settledAt !== undefined;
}

export type SettlementState = 'unbalanced' | 'settled';

export interface SettlementRecord {
  tid: string;
  batch: number;
  state: SettlementState;
  /** Field 48 digits, as sent by the terminal and as computed by the host. */
  terminalTotals: string;
  hostTotals: string;
  uploaded: number;
  createdAt: number;
  updatedAt: number;
  settledAt: number | null;
}

export interface UploadedItem {
  tid: string;
  batch: number;
  stan: number;
  /** 60.1 of the uploaded transaction (22 purchase, 25 refund…). */
  messageType: string;
  processingCode: string | null;
  amount: number | null;
  /** Clear PAN from field 2: only its masked form is stored. */
  pan: string | null;
  rrn: string | null;
  at: number;
}

async function totalsIn(db: Kysely<Schema>, tid: string, batch: number): Promise<BatchTotals> {
  const rows = await db
    .selectFrom('journal')
    .select(['txn_type', 'amount', 'pan_masked'])
    .where('tid', '=', tid)
    .where('batch', '=', batch)
    .where('status', '=', COUNTED_STATUS)
    .where('txn_type', 'in', [...DEBIT_TXN_TYPES, ...CREDIT_TXN_TYPES])
    .execute();
  const totals = emptyTotals();
  for (const r of rows) {
    const amount = r.amount === null ? 0 : toInt(r.amount);
    addToTotals(totals, r.pan_masked, amount, CREDIT_TXN_TYPES.includes(r.txn_type));
  }
  return totals;
}

/** The host's totals of a terminal batch, from its journal. */
export function batchTotals(repo: Repository, tid: string, batch: number): Promise<BatchTotals> {
  return repo.transaction((tx) => totalsIn(tx.db, tid, batch));
}

export async function getSettlement(
  repo: Repository,
  tid: string,
  batch: number,
): Promise<SettlementRecord | undefined> {
  const r = await repo.transaction((tx) =>
    tx.db
      .selectFrom('settlements')
      .selectAll()
      .where('tid', '=', tid)
      .where('batch', '=', batch)
      .executeTakeFirst(),
  );
  if (r === undefined) return undefined;
  return {
    tid: r.tid,
    batch: r.batch,
    state: r.state as SettlementState,
    terminalTotals: r.terminal_totals,
    hostTotals: r.host_totals,
    uploaded: r.uploaded,
    createdAt: toInt(r.created_at),
    updatedAt: toInt(r.updated_at),
    settledAt: r.settled_at === null ? null : toInt(r.settled_at),
  };
}

export interface SettlementInput {
  tid: string;
  batch: number;
  terminalTotals: string;
  hostTotals: string;
  at: number;
}

async function upsertSettlement(
  db: Kysely<Schema>,
  s: SettlementInput,
  state: SettlementState,
  uploaded: number,
): Promise<void> {
  const settledAt = state === 'settled' ? s.at : null;
  await db
    .insertInto('settlements')
    .values({
      tid: s.tid,
      batch: s.batch,
      state,
      terminal_totals: s.terminalTotals,
      host_totals: s.hostTotals,
      uploaded,
      created_at: s.at,
      updated_at: s.at,
      settled_at: settledAt,
    })
    .onConflict((oc) =>
      oc.columns(['tid', 'batch']).doUpdateSet({
        state,
        terminal_totals: s.terminalTotals,
        host_totals: s.hostTotals,
        uploaded,
        updated_at: s.at,
        settled_at: settledAt,
      }),
    )
    .execute();
}

/** Records an unbalanced settlement: the batch stays open for the terminal's upload. */
export function recordUnbalanced(repo: Repository, s: SettlementInput): Promise<void> {
  return repo.transaction((tx) => upsertSettlement(tx.db, s, 'unbalanced', 0));
}

/** Records one uploaded transaction, linked to the journal row of the same TID, batch and STAN; a repeat is ignored. */
export function recordUpload(repo: Repository, item: UploadedItem): Promise<void> {
  return repo.transaction(async (tx) => {
    const own = await tx.db
      .selectFrom('journal')
      .select('id')
      .where('tid', '=', item.tid)
      .where('batch', '=', item.batch)
      .where('stan', '=', item.stan)
      .where('txn_type', 'in', [...DEBIT_TXN_TYPES, ...CREDIT_TXN_TYPES])
      .executeTakeFirst();
    await tx.db
      .insertInto('batch_uploads')
      .values({
        tid: item.tid,
        batch: item.batch,
        stan: item.stan,
        message_type: item.messageType,
        processing_code: item.processingCode,
        amount: item.amount,
        pan_masked: item.pan === null ? null : maskPan(item.pan),
        rrn: item.rrn,
        journal_id: own?.id ?? null,
        created_at: item.at,
      })
      .onConflict((oc) => oc.columns(['tid', 'batch', 'stan']).doNothing())
      .execute();
  });
}

/** How many transactions the terminal uploaded for the batch. */
export async function uploadCount(repo: Repository, tid: string, batch: number): Promise<number> {
  const r = await repo.transaction((tx) =>
    tx.db
      .selectFrom('batch_uploads')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('tid', '=', tid)
      .where('batch', '=', batch)
      .executeTakeFirst(),
  );
  return r === undefined ? 0 : toInt(r.n as number | string);
}

/**
 * Closes a batch in one registry transaction: the settlement record becomes `settled`, the
 * batch's journal rows get `settled_at`, and the terminal's batch number advances when `batch`
 * is the one in force. Returns the terminal as stored afterwards.
 */
export function settleBatch(repo: Repository, s: SettlementInput & { uploaded: number }): Promise<Terminal> {
  return repo.transaction(async (tx) => {
    await upsertSettlement(tx.db, s, 'settled', s.uploaded);
    await tx.db
      .updateTable('journal')
      .set({ settled_at: s.at })
      .where('tid', '=', s.tid)
      .where('batch', '=', s.batch)
      .where('settled_at', 'is', null)
      .execute();
    const t = await tx.terminals.get(s.tid);
    if (t === undefined || t.batchNumber !== s.batch) return t as Terminal;
    return tx.terminals.setBatchNumber(s.tid, s.batch >= MAX_BATCH ? 1 : s.batch + 1);
  });
}

/** Journal rows a batch upload recorded, for operators and tests. */
export function uploadedItems(
  repo: Repository,
  tid: string,
  batch: number,
): Promise<{ stan: number; amount: number | null; journalId: string | null }[]> {
  return repo.transaction(async (tx) => {
    const rows = await tx.db
      .selectFrom('batch_uploads')
      .select(['stan', 'amount', 'journal_id'])
      .where('tid', '=', tid)
      .where('batch', '=', batch)
      .orderBy('stan')
      .execute();
    return rows.map((r) => ({
      stan: r.stan,
      amount: r.amount === null ? null : toInt(r.amount),
      journalId: r.journal_id,
    }));
  });
}
