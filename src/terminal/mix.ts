/**
 * The realistic day of `poskey simulate --mix realistic`: each terminal runs purchases, voids of
 * its own earlier sales, partial and full refunds, balance inquiries and, now and then, the
 * reversal of a sale it could not finish (0400, reason 96); at the end of the run every terminal
 * delivers its pending reversals and settles its batch. Choices come from the fleet's seeded
 * random source, so a day can be replayed.
 *
 * What each terminal believes is kept from its own batch records, read just before settlement
 * (the totals its 0500 carries): that is the terminal side of the three-way reconciliation
 * (src/terminal/reconcile.ts).
 */
import type { TestCard } from './cards.js';
import { track2Of } from './cards.js';
import type { OriginalRef } from './messages.js';
import type { SettlementResult, Terminal, TransactionResult } from './terminal.js';

export const MIX_NAMES = ['purchases', 'realistic'] as const;
export type MixName = (typeof MIX_NAMES)[number];

/** Operation weights of a realistic day, percent. */
export const REALISTIC_DAY = Object.freeze({ purchase: 58, void: 12, refund: 12, reversal: 8, balance: 10 });
export type DayOperation = keyof typeof REALISTIC_DAY;

/** An approved sale a terminal may still void or refund. */
interface Sale {
  card: TestCard;
  original: OriginalRef;
  amount: number;
  refunded: number;
}

/** What one terminal believes at the end of its day: its batch before settlement. */
export interface TerminalDay {
  tid: string;
  mid: string;
  batch: string;
  /** Sales and completions: count and amount (minor units). */
  debits: { count: number; amount: number };
  /** Refunds. */
  credits: { count: number; amount: number };
  /** debits − credits. */
  net: number;
  /** The 0500: approved (the batch settled), balanced before any upload, 0320s sent. */
  settlement?: { approved: boolean; balanced: boolean; uploaded: number };
  error?: string;
}

export interface DayTally {
  operations: Record<DayOperation, { approved: number; other: number }>;
  reversalsAcknowledged: number;
}

export interface DaySettings {
  random: () => number;
  cards: readonly TestCard[];
  amount: { min: number; max: number };
}

function pick(random: () => number): DayOperation {
  let x = random() * 100;
  for (const [op, weight] of Object.entries(REALISTIC_DAY) as [DayOperation, number][]) {
    if (x < weight) return op;
    x -= weight;
  }
  return 'purchase';
}

/** One realistic day per fleet run: the sales each terminal may still follow up. */
export class RealisticDay {
  readonly tally: DayTally = {
    operations: Object.fromEntries(
      Object.keys(REALISTIC_DAY).map((k) => [k, { approved: 0, other: 0 }]),
    ) as DayTally['operations'],
    reversalsAcknowledged: 0,
  };
  readonly #sales = new Map<Terminal, Sale[]>();

  constructor(private readonly s: DaySettings) {}

  /** Runs one operation on `terminal`; a follow-up with nothing to follow becomes a purchase. */
  async next(terminal: Terminal): Promise<TransactionResult> {
    const sales = this.#sales.get(terminal) ?? [];
    this.#sales.set(terminal, sales);
    let op = pick(this.s.random);
    if ((op === 'void' || op === 'refund') && sales.length === 0) op = 'purchase';
    if (op === 'void') return this.#void(terminal, sales);
    if (op === 'refund') return this.#refund(terminal, sales);
    if (op === 'balance') return this.#count('balance', await this.#balance(terminal));
    return this.#purchase(terminal, sales, op === 'reversal');
  }

  #count(op: DayOperation, r: TransactionResult): TransactionResult {
    this.tally.operations[op][r.approved ? 'approved' : 'other']++;
    return r;
  }

  #card(): TestCard {
    return this.s.cards[Math.floor(this.s.random() * this.s.cards.length)]!;
  }

  #amount(): number {
    const { min, max } = this.s.amount;
    return min + Math.floor(this.s.random() * (max - min + 1));
  }

  #balance(terminal: Terminal): Promise<TransactionResult> {
    const card = this.#card();
    return terminal.balance({ track2: track2Of(card) }, card.pin);
  }

  async #purchase(terminal: Terminal, sales: Sale[], reverse: boolean): Promise<TransactionResult> {
    const card = this.#card();
    const amount = this.#amount();
    const r = await terminal.purchase({ track2: track2Of(card) }, amount, card.pin);
    if (!r.approved || r.rrn === undefined) return this.#count(reverse ? 'reversal' : 'purchase', r);
    if (!reverse) {
      sales.push({ card, amount, refunded: 0, original: this.#originalOf(r) });
      return this.#count('purchase', r);
    }
    const reversal = await terminal.reverseLast('96');
    if (reversal?.acknowledged) this.tally.reversalsAcknowledged++;
    this.tally.operations.reversal[reversal?.acknowledged ? 'approved' : 'other']++;
    return r;
  }

  #originalOf(r: TransactionResult): OriginalRef {
    return { stan: r.stan, rrn: r.rrn!, ...(r.authCode === undefined ? {} : { authCode: r.authCode }) };
  }

  async #void(terminal: Terminal, sales: Sale[]): Promise<TransactionResult> {
    const candidates = sales.filter((x) => x.refunded === 0);
    if (candidates.length === 0) return this.#purchase(terminal, sales, false);
    const sale = candidates[Math.floor(this.s.random() * candidates.length)]!;
    const r = await terminal.void({ track2: track2Of(sale.card) }, sale.original, sale.amount, sale.card.pin);
    // Voided or not, it is not followed up again: a void without an answer is reversed.
    sales.splice(sales.indexOf(sale), 1);
    return this.#count('void', r);
  }

  async #refund(terminal: Terminal, sales: Sale[]): Promise<TransactionResult> {
    const sale = sales[Math.floor(this.s.random() * sales.length)]!;
    const left = sale.amount - sale.refunded;
    const amount = this.s.random() < 0.5 ? left : Math.max(1, Math.floor(left / 2));
    const r = await terminal.refund({ track2: track2Of(sale.card) }, sale.original, amount, sale.card.pin);
    if (r.approved) sale.refunded += amount;
    if (!r.approved || sale.refunded >= sale.amount) sales.splice(sales.indexOf(sale), 1);
    return this.#count('refund', r);
  }
}

/** Delivers a terminal's pending reversals, reads its batch, then settles it. */
export async function closeTerminalDay(terminal: Terminal): Promise<TerminalDay> {
  const { tid, mid } = terminal.config;
  const day: TerminalDay = {
    tid,
    mid,
    batch: '',
    debits: { count: 0, amount: 0 },
    credits: { count: 0, amount: 0 },
    net: 0,
  };
  try {
    await terminal.sendPendingReversals();
    for (const rec of await terminal.batchRecords()) {
      day.batch = rec.batch;
      const side = rec.credit ? day.credits : day.debits;
      side.count++;
      side.amount += Number(rec.amount);
    }
    day.net = day.debits.amount - day.credits.amount;
    const settled: SettlementResult = await terminal.settle();
    day.settlement = { approved: settled.approved, balanced: settled.balanced, uploaded: settled.uploaded };
  } catch (e) {
    day.error = e instanceof Error ? e.message : String(e);
  }
  return day;
}

/** mulberry32: a small seeded random source in [0, 1), so a day can be replayed from `--seed`. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
