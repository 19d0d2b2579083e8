/**
 * Day-end in the store (migration 3): the journal rows of one business date that the
 * reconciliation counts, and the durable record of closed dates (`business_days`), so closing a
 * date twice changes nothing the second time.
 */
import { toInt } from './registry.js';
import { CREDIT_TXN_TYPES, DEBIT_TXN_TYPES } from './settlement.js';
import type { Repository } from './types.js';

/** Journal txn types of voids (of a sale or a completion). */
export const VOID_TXN_TYPES: readonly string[] = Object.freeze([
  'void',
  'completion-void',
  'completion_void',
]);

export interface DayRow {
  id: string;
  mid: string;
  tid: string;
  batch: number;
  stan: number;
  txnType: string;
  status: string;
  amount: number;
  panMasked: string | null;
  rrn: string | null;
}

/**
 * Sales, refunds and voids journalled in [from, to): approved ones, and sales later voided (they
 * were sales that day; their void is listed too). Reversed and declined rows are left out.
 */
export function dayRows(repo: Repository, from: number, to: number): Promise<DayRow[]> {
  return repo.transaction(async (tx) => {
    const rows = await tx.db
      .selectFrom('journal')
      .select(['id', 'mid', 'tid', 'batch', 'stan', 'txn_type', 'status', 'amount', 'pan_masked', 'rrn'])
      .where('created_at', '>=', from)
      .where('created_at', '<', to)
      .where('txn_type', 'in', [...DEBIT_TXN_TYPES, ...CREDIT_TXN_TYPES, ...VOID_TXN_TYPES])
      .where('status', 'in', ['approved', 'voided'])
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows
      .filter((r) => r.status === 'approved' || DEBIT_TXN_TYPES.includes(r.txn_type))
      .map((r) => ({
        id: r.id,
        mid: r.mid,
        tid: r.tid,
        batch: r.batch,
        stan: r.stan,
        txnType: r.txn_type,
        status: r.status,
        amount: r.amount === null ? 0 : toInt(r.amount),
        panMasked: r.pan_masked,
        rrn: r.rrn,
      }));
  });
}

export interface ClosedDay {
  date: string;
  closedAt: number;
  merchants: number;
  files: string[];
}

export async function closedDay(repo: Repository, date: string): Promise<ClosedDay | undefined> {
  const r = await repo.transaction((tx) =>
    tx.db.selectFrom('business_days').selectAll().where('business_date', '=', date).executeTakeFirst(),
  );
  if (r === undefined) return undefined;
  return {
    date: r.business_date,
    closedAt: toInt(r.closed_at),
    merchants: r.merchants,
    files: JSON.parse(r.files) as string[],
  };
}

/** Records `day` closed; when another run closed it first, returns that record instead. */
export async function recordClosedDay(repo: Repository, day: ClosedDay): Promise<ClosedDay> {
  await repo.transaction((tx) =>
    tx.db
      .insertInto('business_days')
      .values({
        business_date: day.date,
        closed_at: day.closedAt,
        merchants: day.merchants,
        files: JSON.stringify(day.files),
      })
      .onConflict((oc) => oc.column('business_date').doNothing())
      .execute(),
  );
  return (await closedDay(repo, day.date)) ?? day;
}
