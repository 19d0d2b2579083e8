/**
 * Settlement and batch upload as terminal and host both speak them (research iso8583.md §2.8):
 *
 * - 0500, 60.3 = 201: field 48 carries the terminal's totals of the batch, domestic cards then
 *   foreign cards, each debit amount n12, debit count n3, credit amount n12, credit count n3 and a
 *   result digit (0 in the request). The 0510 carries the host's totals with the result digits:
 *   1 balanced, 2 not balanced, 3 error.
 * - 0320, 60.3 = 201: one transaction of the batch per message (poskey's layout; the research
 *   leaves the detail record open): 2 PAN, 3 processing code, 4 amount, 11 the transaction's own
 *   STAN, 37 its RRN, 60.1 its message type code. The last 0320 has 60.3 = 202 and field 48 =
 *   the number of details sent (n4).
 *
 * 60.1 of a settlement is an open point in the research; poskey sends 00 (management).
 */
import type { Subfields } from '../iso8583/index.js';

/** 60.3 codes. */
export const SETTLEMENT_CODES = Object.freeze({
  SETTLE: '201',
  UPLOAD_DETAIL: '201',
  UPLOAD_END: '202',
} as const);

/** Result digit of field 48 in the 0510. */
export const SETTLEMENT_RESULT = Object.freeze({
  NONE: '0',
  BALANCED: '1',
  UNBALANCED: '2',
  ERROR: '3',
} as const);

/** Debit (sales) and credit (refunds) totals of one card class. */
export interface CardTotals {
  debitAmount: number;
  debitCount: number;
  creditAmount: number;
  creditCount: number;
}

export interface BatchTotals {
  domestic: CardTotals;
  foreign: CardTotals;
}

/** Totals as the 0510 answers them: per card class with its result digit. */
export interface TotalsWithResult extends BatchTotals {
  domesticResult: string;
  foreignResult: string;
}

export function emptyTotals(): BatchTotals {
  const zero = () => ({ debitAmount: 0, debitCount: 0, creditAmount: 0, creditCount: 0 });
  return { domestic: zero(), foreign: zero() };
}

/**
 * Domestic cards are UnionPay's own (PAN starting 62); anything else counts as foreign. Works on
 * a clear PAN or the journal's masked one (first 6 digits kept).
 */
export function isForeignCard(pan: string | null | undefined): boolean {
  return pan === null || pan === undefined ? false : !pan.startsWith('62');
}

/** Adds one transaction to `totals`; `credit` for refunds. */
export function addToTotals(totals: BatchTotals, pan: string | null, amount: number, credit: boolean): void {
  const t = isForeignCard(pan) ? totals.foreign : totals.domestic;
  if (credit) {
    t.creditAmount += amount;
    t.creditCount += 1;
  } else {
    t.debitAmount += amount;
    t.debitCount += 1;
  }
}

const n = (v: number, width: number) => String(v).padStart(width, '0');

/** Field 48 subfields for `totals` (result digits '0' in a request). */
export function totalsField(totals: BatchTotals, domesticResult = '0', foreignResult = '0'): Subfields {
  const { domestic: d, foreign: f } = totals;
  return {
    1: n(d.debitAmount, 12),
    2: n(d.debitCount, 3),
    3: n(d.creditAmount, 12),
    4: n(d.creditCount, 3),
    5: domesticResult,
    6: n(f.debitAmount, 12),
    7: n(f.debitCount, 3),
    8: n(f.creditAmount, 12),
    9: n(f.creditCount, 3),
    10: foreignResult,
  };
}

const WIDTHS = [12, 3, 12, 3, 1, 12, 3, 12, 3, 1] as const;

/** Field 48 as one digit string (result digits 0), as the store keeps a settlement's totals. */
export function totalsDigits(totals: BatchTotals): string {
  return Object.values(totalsField(totals)).join('');
}

/** A digit string of `totalsDigits` back into field 48 subfields (for `parseTotals`). */
export function splitTotalsDigits(digits: string): Subfields {
  const out: Subfields = {};
  let at = 0;
  WIDTHS.forEach((w, i) => {
    out[i + 1] = digits.slice(at, at + w);
    at += w;
  });
  return out;
}

/** Reads field 48 of a 0500/0510; undefined when any of its ten subfields is missing or not n-digits. */
export function parseTotals(field48: unknown): TotalsWithResult | undefined {
  if (field48 === null || typeof field48 !== 'object' || Array.isArray(field48)) return undefined;
  const f = field48 as Record<number, unknown>;
  const v: string[] = [];
  for (let i = 0; i < WIDTHS.length; i++) {
    const s = f[i + 1];
    if (typeof s !== 'string' || s.length !== WIDTHS[i] || !/^\d+$/.test(s)) return undefined;
    v.push(s);
  }
  const card = (at: number): CardTotals => ({
    debitAmount: Number(v[at]),
    debitCount: Number(v[at + 1]),
    creditAmount: Number(v[at + 2]),
    creditCount: Number(v[at + 3]),
  });
  return { domestic: card(0), foreign: card(5), domesticResult: v[4]!, foreignResult: v[9]! };
}

export function sameCardTotals(a: CardTotals, b: CardTotals): boolean {
  return (
    a.debitAmount === b.debitAmount &&
    a.debitCount === b.debitCount &&
    a.creditAmount === b.creditAmount &&
    a.creditCount === b.creditCount
  );
}

/** Field 48 of the 0320 end message: the number of details uploaded, n4. */
export function uploadCountField(count: number): string {
  return n(count, 4);
}

/** Reads the 0320 end's field 48; undefined unless exactly 4 digits. */
export function parseUploadCount(field48: unknown): number | undefined {
  return typeof field48 === 'string' && /^\d{4}$/.test(field48) ? Number(field48) : undefined;
}
