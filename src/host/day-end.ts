/**
 * Day-end (`poskey host day-end`): closes a business date (a UTC calendar day of journal time)
 * and writes one reconciliation file per merchant, `<dataDir>/day-end/<date>/<mid>.csv`.
 *
 * Each file lists the day's transactions (approved sales and completions, and sales voided later),
 * voids, refunds, then totals: count and amount (minor units) of each, and net = transactions −
 * voids − refunds. The date is recorded closed in the store after the files are written (atomic
 * writes, rows in journal order), so a run cut short writes the same files again, and a second run
 * for a closed date writes nothing and reports the first run's files.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../crypto/sealed.js';
import {
  type ClosedDay,
  closedDay,
  type DayRow,
  dayRows,
  recordClosedDay,
  VOID_TXN_TYPES,
} from '../store/day-end.js';
import { CREDIT_TXN_TYPES } from '../store/settlement.js';
import type { Repository } from '../store/types.js';
import { hostError } from './errors.js';

const DAY_MS = 86_400_000;

export type ReconKind = 'transaction' | 'void' | 'refund';

export interface MerchantReconciliation {
  mid: string;
  file: string;
  transactions: { count: number; amount: number };
  voids: { count: number; amount: number };
  refunds: { count: number; amount: number };
  net: number;
}

export interface DayEndResult {
  date: string;
  /** True when the date was already closed: nothing was written this time. */
  alreadyClosed: boolean;
  closedAt: number;
  /** File names relative to the day's directory. */
  files: string[];
  /** This run's reconciliation (empty when already closed). */
  merchants: MerchantReconciliation[];
}

/** The UTC day [from, to) of `date` (YYYY-MM-DD). @throws POSKEY_ERR_HOST_CONFIG (field date) */
export function businessDay(date: string): { from: number; to: number } {
  const from = /^\d{4}-\d{2}-\d{2}$/.test(date) ? Date.parse(`${date}T00:00:00Z`) : Number.NaN;
  if (Number.isNaN(from) || new Date(from).toISOString().slice(0, 10) !== date) {
    throw hostError('POSKEY_ERR_HOST_CONFIG', 'must be a calendar date YYYY-MM-DD', 'date');
  }
  return { from, to: from + DAY_MS };
}

/** Today's business date (UTC) at `now`. */
export function businessDate(now: number): string {
  return new Date(now).toISOString().slice(0, 10);
}

function kindOf(row: DayRow): ReconKind {
  if (VOID_TXN_TYPES.includes(row.txnType)) return 'void';
  return CREDIT_TXN_TYPES.includes(row.txnType) ? 'refund' : 'transaction';
}

const HEADER = 'kind,tid,batch,stan,rrn,pan,status,count,amount';

/** A CSV cell: quoted when it holds a comma, quote or line break. */
function cell(v: string | number | null): string {
  const s = v === null ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The reconciliation of one merchant's rows (already in journal order) and its CSV text. */
export function reconcile(
  mid: string,
  rows: readonly DayRow[],
): { recon: MerchantReconciliation; csv: string } {
  const sums = {
    transaction: { count: 0, amount: 0 },
    void: { count: 0, amount: 0 },
    refund: { count: 0, amount: 0 },
  };
  const lines = [HEADER];
  for (const r of rows) {
    const kind = kindOf(r);
    sums[kind].count += 1;
    sums[kind].amount += r.amount;
    lines.push([kind, r.tid, r.batch, r.stan, r.rrn, r.panMasked, r.status, 1, r.amount].map(cell).join(','));
  }
  const net = sums.transaction.amount - sums.void.amount - sums.refund.amount;
  const total = (name: string, count: number | string, amount: number) =>
    `total,${name},,,,,,${count},${amount}`;
  lines.push(
    total('transactions', sums.transaction.count, sums.transaction.amount),
    total('voids', sums.void.count, sums.void.amount),
    total('refunds', sums.refund.count, sums.refund.amount),
    total('net', '', net),
  );
  const recon = {
    mid,
    file: `${mid}.csv`,
    transactions: sums.transaction,
    voids: sums.void,
    refunds: sums.refund,
    net,
  };
  return { recon, csv: `${lines.join('\n')}\n` };
}

/** The directory a date's reconciliation files go to. */
export function dayEndDir(dataDir: string, date: string): string {
  return join(dataDir, 'day-end', date);
}

/**
 * Closes `date`: one file per registered merchant (and any other merchant the journal names).
 * @throws POSKEY_ERR_HOST_CONFIG for a date that is not YYYY-MM-DD
 */
export async function runDayEnd(
  store: Repository,
  opts: { dataDir: string; date: string; now?: () => number },
): Promise<DayEndResult> {
  const { from, to } = businessDay(opts.date);
  const done = await closedDay(store, opts.date);
  if (done !== undefined) return closedResult(done, true, []);
  const rows = await dayRows(store, from, to);
  const byMid = new Map<string, DayRow[]>();
  for (const m of await store.merchants.list()) byMid.set(m.mid, []);
  for (const r of rows) {
    const list = byMid.get(r.mid);
    if (list === undefined) byMid.set(r.mid, [r]);
    else list.push(r);
  }
  const dir = dayEndDir(opts.dataDir, opts.date);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const merchants: MerchantReconciliation[] = [];
  for (const [mid, list] of [...byMid].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const { recon, csv } = reconcile(mid, list);
    await writeFileAtomic(join(dir, recon.file), csv);
    merchants.push(recon);
  }
  const closedAt = (opts.now ?? Date.now)();
  const recorded = await recordClosedDay(store, {
    date: opts.date,
    closedAt,
    merchants: merchants.length,
    files: merchants.map((m) => m.file),
  });
  // Another run closed the date between our check and our record: its record stands.
  if (recorded.closedAt !== closedAt) return closedResult(recorded, true, []);
  return closedResult(recorded, false, merchants);
}

function closedResult(
  day: ClosedDay,
  alreadyClosed: boolean,
  merchants: MerchantReconciliation[],
): DayEndResult {
  return { date: day.date, alreadyClosed, closedAt: day.closedAt, files: day.files, merchants };
}
