/**
 * The crash test's four invariants, checked after restart and drain against three records that
 * were written independently: what the terminals received (crash-load.ts), the host journal
 * (src/store, read through its repository) and the network ledger (src/network/ledger.ts, read
 * only).
 *
 *  1. every approval a terminal received is in the journal (approved, same RRN and amount) and in
 *     the ledger (approved there, not reversed);
 *  2. nothing was approved twice: one journal approval per RRN, one ledger approval per RRN, and
 *     every approval still standing in the ledger is one a terminal received;
 *  3. every reversal was applied once: each request a terminal reversed has its 0400 journalled,
 *     no longer stands as approved anywhere, and where the ledger had approved it, the ledger
 *     shows it reversed by exactly one approved reversal;
 *  4. each card's ledger balance is its initial balance minus the approved purchases plus the
 *     approved voids, as the terminals received them.
 *
 * Each check returns its problems as lines naming the TID, STAN and RRN, so a failure says which
 * transaction went wrong and how.
 */
import Database from 'better-sqlite3';
import { maskPan } from '../../src/iso8583/describe.js';
import type { JournalRecord, JournalStatus, Repository } from '../../src/store/types.js';
import type { SentRequest } from './crash-load.js';
import type { CrashCard } from './crash-world.js';

/** Financial request MTI of purchases and voids, terminal side and network side. */
const FINANCIAL_MTI = '0200';
const REVERSAL_MTI = '0400';
/** The ledger's follow-up kind of a reversal (0420, linked to its original by RRN). */
const REVERSAL_KIND = 'reversal';
const PURCHASE_CODE = '000000';
const VOID_CODE = '200000';
/** Journal statuses that leave a request unsettled: recovery and store-and-forward must end them. */
export const UNSETTLED_STATUSES: ReadonlySet<JournalStatus> = new Set(['received', 'forwarded', 'in_doubt']);

/** A ledger authorisation with its follow-up link (void, reversal…: `kind` and the original's RRN). */
export interface LedgerRow {
  stan: string;
  rrn: string;
  mti: string;
  processingCode: string;
  amount: number;
  tid: string;
  panMasked: string;
  responseCode: string;
  status: string;
  kind: string | null;
  originalRrn: string | null;
}

/** Every ledger row, read through a read-only connection of its own (the simulator keeps writing). */
export function readLedger(path: string): LedgerRow[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare(
        `SELECT a.stan, a.rrn, a.mti, a.processing_code AS processingCode, a.amount, a.tid,
                a.pan_masked AS panMasked, a.response_code AS responseCode, a.status,
                f.kind, f.original_rrn AS originalRrn
           FROM authorisations a LEFT JOIN follow_ups f
             ON f.acquirer_id = a.acquirer_id AND f.stan = a.stan AND f.rrn = a.rrn
          ORDER BY a.rowid`,
      )
      .all() as LedgerRow[];
  } finally {
    db.close();
  }
}

export interface CrashEvidence {
  sent: readonly SentRequest[];
  journal: readonly JournalRecord[];
  ledger: readonly LedgerRow[];
  cards: readonly CrashCard[];
  balanceOf(pan: string): number;
}

const key = (tid: string, batch: number | string, stan: number | string, mti: string) =>
  `${tid}/${Number(batch)}/${Number(stan)}/${mti}`;
const money = (n: number) => (n / 100).toFixed(2);
const who = (s: SentRequest) => `${s.tid} STAN ${s.stan} (${s.kind} ${money(s.amount)})`;

/** Every journal row, in id order. */
export async function readJournal(store: Repository): Promise<JournalRecord[]> {
  const rows: JournalRecord[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await store.journal.list({ order: 'asc', limit: 1000, ...(after ? { after } : {}) });
    rows.push(...page);
    if (page.length < 1000) return rows;
    after = page[page.length - 1]!.id;
  }
}

class Index {
  readonly journal = new Map<string, JournalRecord>();
  readonly ledgerByRrn = new Map<string, LedgerRow[]>();
  /** Ledger reversals by the RRN of the original they name. */
  readonly ledgerReversalsOf = new Map<string, LedgerRow[]>();
  /** Requests whose approval the terminal received, by RRN. */
  readonly terminalApproved = new Map<string, SentRequest>();
  /** Approved voids by the RRN of the purchase they voided. */
  readonly approvedVoidOf = new Map<string, SentRequest>();

  constructor(e: CrashEvidence) {
    for (const r of e.journal) this.journal.set(key(r.tid, r.batch, r.stan, r.mti), r);
    for (const a of e.ledger) {
      const list = this.ledgerByRrn.get(a.rrn) ?? [];
      list.push(a);
      this.ledgerByRrn.set(a.rrn, list);
      if (a.kind === REVERSAL_KIND && a.originalRrn !== null)
        this.ledgerReversalsOf.set(a.originalRrn, [...(this.ledgerReversalsOf.get(a.originalRrn) ?? []), a]);
    }
    for (const s of e.sent) {
      if (s.outcome !== 'approved' || s.rrn === undefined) continue;
      this.terminalApproved.set(s.rrn, s);
      if (s.kind === 'void' && s.original) this.approvedVoidOf.set(s.original.rrn, s);
    }
  }

  request(s: SentRequest): JournalRecord | undefined {
    return this.journal.get(key(s.tid, s.batch, s.stan, FINANCIAL_MTI));
  }

  /** The ledger's request row for an RRN (not its reversals). */
  ledgerRequest(rrn: string, tid: string): LedgerRow[] {
    return (this.ledgerByRrn.get(rrn) ?? []).filter((a) => a.mti === FINANCIAL_MTI && a.tid === tid);
  }

  /** Reversals of the original with this RRN that the ledger approved. */
  ledgerReversals(rrn: string): LedgerRow[] {
    return (this.ledgerReversalsOf.get(rrn) ?? []).filter((a) => a.responseCode === '00');
  }
}

/** Invariant 1: each approval a terminal received is in the journal and in the ledger. */
export function approvalsRecorded(e: CrashEvidence): string[] {
  const ix = new Index(e);
  const problems: string[] = [];
  for (const s of e.sent) {
    if (s.outcome !== 'approved') continue;
    const rrn = s.rrn ?? '(none)';
    const voided = s.kind === 'purchase' && ix.approvedVoidOf.has(rrn);
    const j = ix.request(s);
    const wantStatus = voided ? 'voided' : 'approved';
    if (j === undefined) problems.push(`${who(s)} RRN ${rrn}: approved at the terminal, no journal row`);
    else if (j.responseCode !== '00' || j.status !== wantStatus || j.rrn !== s.rrn || j.amount !== s.amount)
      problems.push(
        `${who(s)} RRN ${rrn}: approved at the terminal; journal has status ${j.status}, ` +
          `39=${j.responseCode}, RRN ${j.rrn}, amount ${j.amount} (want ${wantStatus}, 00, ${rrn}, ${s.amount})`,
      );
    const code = s.kind === 'void' ? VOID_CODE : PURCHASE_CODE;
    const l = ix.ledgerRequest(rrn, s.tid).filter((a) => a.responseCode === '00');
    const wantLedger = voided ? 'voided' : 'applied';
    if (l.length === 0)
      problems.push(`${who(s)} RRN ${rrn}: approved at the terminal, not approved in the ledger`);
    else if (l.some((a) => a.status !== wantLedger || a.amount !== s.amount || a.processingCode !== code))
      problems.push(
        `${who(s)} RRN ${rrn}: approved at the terminal; ledger has ` +
          l.map((a) => `${a.processingCode} ${a.amount} ${a.status}`).join(', ') +
          ` (want ${code} ${s.amount} ${wantLedger})`,
      );
  }
  return problems;
}

/** Invariant 2: nothing approved twice, nothing standing that no terminal saw approved. */
export function approvedOnce(e: CrashEvidence): string[] {
  const ix = new Index(e);
  const problems: string[] = [];
  const seen = new Map<string, number>();
  for (const s of e.sent) {
    if (s.outcome !== 'approved') continue;
    const k = `${s.tid}/${s.batch}/${s.stan}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  for (const [k, n] of seen) if (n > 1) problems.push(`${k}: the terminal received ${n} approvals`);
  const journalApproved = new Map<string, JournalRecord[]>();
  for (const r of e.journal) {
    if (r.mti !== FINANCIAL_MTI || r.responseCode !== '00' || r.rrn === null) continue;
    journalApproved.set(r.rrn, [...(journalApproved.get(r.rrn) ?? []), r]);
  }
  for (const [rrn, rows] of journalApproved)
    if (rows.length > 1)
      problems.push(
        `RRN ${rrn}: ${rows.length} approved journal rows (${rows.map((r) => `${r.tid}/${r.stan}`).join(', ')})`,
      );
  const voidsOf = new Map<string, LedgerRow[]>();
  for (const a of e.ledger)
    if (a.kind === 'void' && a.originalRrn !== null && a.responseCode === '00' && a.status !== 'reversed')
      voidsOf.set(a.originalRrn, [...(voidsOf.get(a.originalRrn) ?? []), a]);
  for (const [rrn, voids] of voidsOf)
    if (voids.length > 1)
      problems.push(
        `RRN ${rrn}: voided ${voids.length} times in the ledger (void RRNs ${voids.map((v) => v.rrn).join(', ')})`,
      );
  for (const [rrn, rows] of ix.ledgerByRrn) {
    const approved = rows.filter((a) => a.mti === FINANCIAL_MTI && a.responseCode === '00');
    if (approved.length > 1)
      problems.push(
        `RRN ${rrn}: ${approved.length} approved ledger requests (network STANs ${approved.map((a) => a.stan).join(', ')})`,
      );
    for (const a of approved) {
      if (a.status === 'reversed') continue;
      const s = ix.terminalApproved.get(rrn);
      if (s === undefined || s.tid !== a.tid)
        problems.push(
          `RRN ${rrn} (${a.tid}, ${a.processingCode} ${money(a.amount)}): stands approved in the ledger ` +
            `(status ${a.status}), no terminal received its approval`,
        );
    }
  }
  return problems;
}

/** Invariant 3: every reversal journalled and applied once; nothing left unsettled. */
export function reversalsApplied(e: CrashEvidence): string[] {
  const ix = new Index(e);
  const problems: string[] = [];
  for (const s of e.sent) {
    if (s.outcome !== 'timeout' && s.outcome !== 'mac-failed') continue;
    if (ix.journal.get(key(s.tid, s.batch, s.stan, REVERSAL_MTI)) === undefined)
      problems.push(`${who(s)}: reversed by the terminal, no 0400 in the journal`);
  }
  for (const s of e.sent) {
    // Whatever the terminal did not see approved must not stand: reversed (terminal or host) or declined.
    if (s.outcome === 'approved') continue;
    const j = ix.request(s);
    if (j === undefined) continue;
    if (j.status === 'approved' || UNSETTLED_STATUSES.has(j.status))
      problems.push(
        `${who(s)} RRN ${j.rrn}: terminal outcome ${s.outcome} ${s.responseCode ?? ''}, journal status ${j.status}`,
      );
    if (j.rrn === null) continue;
    const approved = ix.ledgerRequest(j.rrn, s.tid).filter((a) => a.responseCode === '00');
    if (approved.length === 0) continue;
    const reversals = ix.ledgerReversals(j.rrn);
    if (approved.some((a) => a.status !== 'reversed') || reversals.length !== 1)
      problems.push(
        `${who(s)} RRN ${j.rrn}: terminal outcome ${s.outcome} ${s.responseCode ?? ''}; ledger approved it ` +
          `(status ${approved.map((a) => a.status).join(', ')}) with ${reversals.length} approved reversal(s) (want reversed, 1)`,
      );
  }
  const sentKeys = new Set(e.sent.map((s) => key(s.tid, s.batch, s.stan, FINANCIAL_MTI)));
  for (const r of e.journal)
    if (
      r.mti === FINANCIAL_MTI &&
      UNSETTLED_STATUSES.has(r.status) &&
      !sentKeys.has(key(r.tid, r.batch, r.stan, r.mti))
    )
      problems.push(`${r.tid} STAN ${r.stan} RRN ${r.rrn}: journal status ${r.status} after drain`);
  return problems;
}

/** What the ledger's approvals (standing, not reversed) did to a card, by RRN. */
function ledgerEffects(e: CrashEvidence, card: CrashCard): Map<string, number> {
  const masked = maskPan(card.pan);
  const out = new Map<string, number>();
  for (const a of e.ledger) {
    if (
      a.panMasked !== masked ||
      a.mti !== FINANCIAL_MTI ||
      a.responseCode !== '00' ||
      a.status === 'reversed'
    )
      continue;
    out.set(a.rrn, a.processingCode === VOID_CODE ? a.amount : -a.amount);
  }
  return out;
}

/** Invariant 4: balance = initial − approved purchases + approved voids (terminal view). */
export function balancesMatch(e: CrashEvidence): string[] {
  const problems: string[] = [];
  for (const card of e.cards) {
    const effects = new Map<string, number>();
    for (const s of e.sent)
      if (s.pan === card.pan && s.outcome === 'approved' && s.rrn !== undefined)
        effects.set(s.rrn, s.kind === 'void' ? s.amount : -s.amount);
    let expected = card.initial;
    for (const v of effects.values()) expected += v;
    const actual = e.balanceOf(card.pan);
    if (actual === expected) continue;
    const ledger = ledgerEffects(e, card);
    const diff = [...new Set([...effects.keys(), ...ledger.keys()])]
      .filter((rrn) => effects.get(rrn) !== ledger.get(rrn))
      .map((rrn) => `RRN ${rrn}: terminals ${effects.get(rrn) ?? 0}, ledger ${ledger.get(rrn) ?? 0}`);
    problems.push(
      `card ${card.pan.slice(-4)}: balance ${money(actual)}, expected ${money(expected)} ` +
        `(initial ${money(card.initial)}, ${effects.size} approvals; off by ${money(actual - expected)})` +
        (diff.length > 0 ? `; disagreeing: ${diff.slice(0, 10).join('; ')}` : ''),
    );
  }
  return problems;
}

/** Problems as an assertion message: the count and the first few lines. */
export function report(what: string, problems: readonly string[]): string {
  const shown = problems.slice(0, 25).join('\n  ');
  const more = problems.length > 25 ? `\n  … and ${problems.length - 25} more` : '';
  return `${what}: ${problems.length} problem(s)\n  ${shown}${more}`;
}
