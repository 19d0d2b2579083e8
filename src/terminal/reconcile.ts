/**
 * Three-way reconciliation of a simulated day, per terminal: the net the terminal settled with (its
 * own batch records), the net of the host journal (approved sales and completions, less their
 * voids and approved refunds; reversed and declined rows out, as day-end counts them), and the net
 * the network's ledger holds against the terminal (approved debits still standing, less approved
 * voids and refunds still standing; reversed rows out). All three must be equal.
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { dayRows, VOID_TXN_TYPES } from '../store/day-end.js';
import { openStore } from '../store/open.js';
import { CREDIT_TXN_TYPES } from '../store/settlement.js';
import type { Repository } from '../store/types.js';
import { TerminalError, TerminalErrorCode } from './errors.js';
import type { TerminalDay } from './mix.js';

export interface TerminalReconciliation {
  tid: string;
  terminal: number | null;
  host: number;
  network: number;
  agreed: boolean;
}

export interface Reconciliation {
  agreed: boolean;
  terminals: TerminalReconciliation[];
  /** One line per disagreement, naming the terminal and each side's net (minor units). */
  mismatches: string[];
}

/** Net per TID of the journal rows since `since` (ms) that day-end would count. */
export async function hostNet(store: Repository, since = 0, now = Date.now()): Promise<Map<string, number>> {
  const net = new Map<string, number>();
  for (const r of await dayRows(store, since, now + 86_400_000)) {
    const credit = VOID_TXN_TYPES.includes(r.txnType) || CREDIT_TXN_TYPES.includes(r.txnType);
    net.set(r.tid, (net.get(r.tid) ?? 0) + (credit ? -r.amount : r.amount));
  }
  return net;
}

const DEBIT = `(a.mti IN ('0200', '0220') AND a.processing_code = '000000')`;
const CREDIT = `(a.mti IN ('0200', '0220') AND a.processing_code = '200000')`;

/**
 * Net per TID in the network ledger (a SQLite file, opened read-only). Pre-authorisations (0100)
 * move no money and stay out; a completion is a debit like a sale.
 */
export function networkNet(ledgerPath: string, since = 0): Map<string, number> {
  const db = new Database(ledgerPath, { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare(
        `SELECT a.tid AS tid,
                SUM(CASE WHEN ${DEBIT} THEN a.amount WHEN ${CREDIT} THEN -a.amount ELSE 0 END) AS net
           FROM authorisations a
          WHERE a.response_code = '00' AND a.status <> 'reversed' AND a.created_at >= ?
          GROUP BY a.tid`,
      )
      .all(new Date(since).toISOString()) as { tid: string; net: number }[];
    return new Map(rows.map((r) => [r.tid, Number(r.net)]));
  } finally {
    db.close();
  }
}

/** Compares the three sources; every TID seen anywhere is reported. */
export function reconcileDay(
  terminals: readonly TerminalDay[],
  host: ReadonlyMap<string, number>,
  network: ReadonlyMap<string, number>,
): Reconciliation {
  const byTid = new Map(terminals.map((t) => [t.tid, t]));
  const tids = [...new Set([...byTid.keys(), ...host.keys(), ...network.keys()])].sort();
  const rows = tids.map((tid) => {
    const t = byTid.get(tid);
    const terminal = t === undefined || t.error !== undefined ? null : t.net;
    const h = host.get(tid) ?? 0;
    const n = network.get(tid) ?? 0;
    return { tid, terminal, host: h, network: n, agreed: terminal === h && h === n };
  });
  const mismatches = rows
    .filter((r) => !r.agreed)
    .map(
      (r) =>
        `${r.tid}: terminal ${r.terminal === null ? 'unknown' : r.terminal}, host journal ${r.host}, network ledger ${r.network}`,
    );
  return { agreed: mismatches.length === 0, terminals: rows, mismatches };
}

/** The report's text: one line per terminal, then the verdict. */
export function formatReconciliation(r: Reconciliation): string {
  const lines = ['reconciliation (net, minor units)   terminal        host     network'];
  for (const t of r.terminals) {
    const mark = t.agreed ? 'ok' : 'MISMATCH';
    lines.push(
      `  ${t.tid.padEnd(10)} ${String(t.terminal ?? '?').padStart(20)} ${String(t.host).padStart(11)} ${String(t.network).padStart(11)}   ${mark}`,
    );
  }
  lines.push(r.agreed ? 'all three agree' : `${r.mismatches.length} terminal(s) disagree`);
  return lines.join('\n');
}

export interface ReconcileSources {
  /** The host's store: `sqlite:PATH` or `postgres://…?schema=x` (read here, never written). */
  database: string;
  /** The network simulator's ledger file. */
  ledger: string;
  /** Rows from this time (ms) on: the simulated day's. */
  since: number;
  /** How long to wait for the host's store-and-forward queue to empty (ms). */
  drainMs?: number;
}

/**
 * Reads the host journal and the network ledger of a day the fleet just ran and reconciles them
 * with the terminals' totals; first waits until the host owes the network nothing.
 * @throws POSKEY_ERR_TERMINAL_CONFIG when the queue does not drain in time; store errors
 */
export async function reconcileFromSources(
  terminals: readonly TerminalDay[],
  src: ReconcileSources,
): Promise<Reconciliation> {
  // Reading needs no PAN hashing: a throwaway key satisfies the store's PostgreSQL check.
  const store = await openStore(src.database, { panKey: randomBytes(32) });
  try {
    const until = Date.now() + (src.drainMs ?? 30_000);
    while ((await store.saf.pending()) > 0) {
      if (Date.now() > until)
        throw new TerminalError(
          TerminalErrorCode.CONFIG,
          'the host still owes the network reversals or advices',
          {
            field: 'database',
          },
        );
      await new Promise((r) => setTimeout(r, 200));
    }
    return reconcileDay(terminals, await hostNet(store, src.since), networkNet(src.ledger, src.since));
  } finally {
    await store.close();
  }
}
