/**
 * Load for the crash test: each terminal runs one transaction at a time, back to back (closed
 * loop), purchases on random cards with random amounts and now and then a void of one of its own
 * approved purchases, and records every answer it got. A terminal that cannot reach the host waits
 * a little and tries again, as a real one retries; what it was sending when the link went down is
 * left to its own reversal logic (src/terminal: the reversal is stored before the request goes out
 * and delivered after reconnecting, before the next transaction).
 */
import type { Terminal, TransactionResult } from '../../src/terminal/terminal.js';
import type { CrashCard } from './crash-world.js';

/** One request a terminal sent (or tried to), and what it received. */
export interface SentRequest {
  tid: string;
  kind: 'purchase' | 'void';
  /** The terminal's STAN and batch of the request (6 digits each). */
  stan: string;
  batch: string;
  pan: string;
  /** Minor units. */
  amount: number;
  /** The voided purchase (voids only). */
  original?: { stan: string; rrn: string };
  /**
   * approved / declined: an authenticated answer (or an unMACed decline) was accepted;
   * timeout / mac-failed: sent, no trusted answer: the terminal reverses it.
   */
  outcome: TransactionResult['outcome'];
  responseCode?: string;
  rrn?: string;
}

export interface LoadOptions {
  cards: readonly CrashCard[];
  /** Share of transactions that void an earlier approved purchase of the same terminal. */
  voidRate: number;
  /**
   * Only purchases on cards with at least this initial balance are voided: reversing a void takes
   * its credit back, which a card spent to the bone may refuse (51), a real but different story.
   */
  voidMinBalance: number;
  amount: { min: number; max: number };
  random?: () => number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LoadDriver {
  readonly sent: SentRequest[] = [];
  /** Errors of requests that were never sent (host down, reversal still pending…), by message. */
  readonly unsent = new Map<string, number>();
  #stopping = false;
  #inFlight = 0;
  #loops: Promise<void>[] = [];
  readonly #terminals: readonly Terminal[];
  readonly #o: LoadOptions;
  readonly #random: () => number;
  /** Approved purchases a terminal may still void (each is voided at most once, answered or not). */
  readonly #voidable = new Map<string, SentRequest[]>();

  constructor(terminals: readonly Terminal[], options: LoadOptions) {
    this.#terminals = terminals;
    this.#o = options;
    this.#random = options.random ?? Math.random;
  }

  /** Transactions being sent right now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Answers received so far (approved or declined). */
  answered(): number {
    return this.sent.filter((s) => s.outcome === 'approved' || s.outcome === 'declined').length;
  }

  start(): void {
    this.#stopping = false;
    this.#loops = this.#terminals.map((t) => this.#loop(t));
  }

  /** Lets every terminal finish the transaction it is in, then stops. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#loops);
  }

  async #loop(t: Terminal): Promise<void> {
    while (!this.#stopping) {
      try {
        await this.#one(t);
      } catch (e) {
        const text = `${(e as { code?: string }).code ?? 'error'}: ${(e as Error).message}`;
        const key = text.replace(/\d{6}/g, 'N').replace(/:\d+/g, ':P');
        this.unsent.set(key, (this.unsent.get(key) ?? 0) + 1);
        await sleep(50 + this.#random() * 150);
      }
    }
  }

  async #one(t: Terminal): Promise<void> {
    const voidable = this.#voidable.get(t.config.tid) ?? [];
    this.#voidable.set(t.config.tid, voidable);
    const original = this.#random() < this.#o.voidRate ? voidable.shift() : undefined;
    const card = original
      ? this.#o.cards.find((c) => c.pan === original.pan)!
      : this.#o.cards[Math.floor(this.#random() * this.#o.cards.length)]!;
    const { min, max } = this.#o.amount;
    const amount = original?.amount ?? min + Math.floor(this.#random() * (max - min + 1));
    const swipe = { pan: card.pan, expiry: card.expiry };
    this.#inFlight++;
    let result: TransactionResult;
    try {
      result = original
        ? await t.void(swipe, { stan: original.stan, rrn: original.rrn!, batch: original.batch }, amount)
        : await t.purchase(swipe, amount, card.pin);
    } finally {
      this.#inFlight--;
    }
    const sent: SentRequest = {
      tid: t.config.tid,
      kind: original ? 'void' : 'purchase',
      stan: result.stan,
      batch: t.batch,
      pan: card.pan,
      amount,
      outcome: result.outcome,
    };
    if (original) sent.original = { stan: original.stan, rrn: original.rrn! };
    if (result.responseCode !== undefined) sent.responseCode = result.responseCode;
    if (result.rrn !== undefined) sent.rrn = result.rrn;
    this.sent.push(sent);
    if (!original && result.approved && result.rrn !== undefined && card.initial >= this.#o.voidMinBalance)
      voidable.push(sent);
  }
}

/**
 * Delivers every terminal's pending reversals (0400 until acknowledged), retrying while the host
 * is busy or restarting.
 * @throws Error naming the terminals and STANs still pending after `ms`
 */
export async function flushReversals(terminals: readonly Terminal[], ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const pending: string[] = [];
    for (const t of terminals) {
      if ((await t.pendingReversals()).length === 0) continue;
      await t.sendPendingReversals().catch(() => undefined);
      for (const r of await t.pendingReversals())
        pending.push(`${t.config.tid}/${r.stan} (${r.attempts} tries)`);
    }
    if (pending.length === 0) return;
    if (Date.now() > until)
      throw new Error(`reversals not acknowledged after ${ms} ms: ${pending.join(', ')}`);
    await sleep(200);
  }
}
