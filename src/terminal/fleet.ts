/**
 * The fleet simulator: provisions N terminals, signs them in, and drives a transaction mix at a
 * target rate R (transactions per second, open loop) for D seconds against a POSP, then reports
 * TPS, latency percentiles, counts by response code and errors.
 *
 * Provisioning is the caller's: `provision(tid)` returns the terminal's MID and its TMK, normally as
 * a cryptogram under the factory transport key every simulated PIN pad is born with (the host's
 * HSM generates the TMK and exports it under that KEK, so the TMK is never in clear outside the HSM
 * and the pad). `poskey start` plugs the host's admin API in; the CLI's standalone mode hands every
 * terminal the same lab TMK.
 *
 * Scheduling: every tick the dispatcher starts as many transactions as the rate says are due,
 * each on an idle terminal (a terminal runs one transaction at a time, like a real one). When every
 * terminal is busy the transaction is counted as `skipped`: the fleet is too small or the host too
 * slow for the rate, and the report says so instead of queueing without bound.
 */

import { isPoskeyError } from '../errors.js';
import { TEST_CARDS, type TestCard, track2Of } from './cards.js';
import type { TerminalConfig } from './config.js';
import { TerminalError, TerminalErrorCode } from './errors.js';
import { closeTerminalDay, type DayTally, RealisticDay, type TerminalDay } from './mix.js';
import { type MasterKeyAlgorithm, PinPad } from './pinpad.js';
import { Terminal, type TransactionResult } from './terminal.js';

/** How a terminal's TMK reaches its PIN pad. */
export type TmkDelivery =
  /** Legacy ECB cryptogram under the factory transport key, with the TMK's check value. */
  | { kind: 'transport'; cryptogram: string; kcv: string; algorithm?: MasterKeyAlgorithm }
  /** Clear TMK: laboratory use only (the CLI's `--tmk-components`). */
  | { kind: 'clear'; key: string | Uint8Array; kcv?: string; algorithm: MasterKeyAlgorithm }
  /** The device fetches its TMK itself (remote key loading, src/terminal/rkl-fleet.ts) into `slot`. */
  | { kind: 'device'; load: (pad: PinPad, slot: number) => Promise<unknown> };

export interface ProvisionedTerminal {
  tid: string;
  mid: string;
  tmk: TmkDelivery;
  /** Per-terminal profile (an SM4 terminal, X9.19 MACs, track encryption). */
  config?: Partial<Pick<TerminalConfig, 'algorithm' | 'signInCode' | 'macAlgorithm' | 'trackEncryption'>>;
}

export type ProvisionFn = (tid: string, index: number) => ProvisionedTerminal | Promise<ProvisionedTerminal>;

export interface FleetProgress {
  elapsedSeconds: number;
  durationSeconds: number;
  started: number;
  completed: number;
  inFlight: number;
  /** Completed per second so far. */
  tps: number;
  p95Ms: number;
  approved: number;
  declined: number;
  failed: number;
  errors: number;
  skipped: number;
}

export interface FleetOptions {
  host: string;
  port: number;
  /** Number of terminals. */
  terminals: number;
  /** Target transactions per second, all terminals together. */
  rate: number;
  durationSeconds: number;
  provision: ProvisionFn;
  /** The factory transport key every simulated PIN pad holds (needed for 'transport' deliveries). */
  transportKey?: { key: string | Uint8Array; algorithm: MasterKeyAlgorithm };
  /** TID prefix; TIDs are the prefix and a zero-padded number, 8 characters. Default 'SIM'. */
  tidPrefix?: string;
  /** Relative weights; default 80% purchase, 20% balance. */
  mix?: { purchase?: number; balance?: number };
  /**
   * 'realistic': each terminal runs a day (src/terminal/mix.ts: purchases, voids, refunds,
   * reversals, balance inquiries) instead of `mix`, then settles; the report gains `day`.
   */
  day?: 'realistic';
  /** Share of transactions entered with a wrong PIN; default 0.02. */
  wrongPinRate?: number;
  /** Purchase amounts in minor units, uniform; default 100 to 50000. */
  amount?: { min: number; max: number };
  cards?: readonly TestCard[];
  /** Shared terminal options (timeouts, connection mode, algorithm…). */
  terminal?: Omit<TerminalConfig, 'tid' | 'mid' | 'host' | 'port'>;
  /** Terminals provisioned and signed in at once; default 16. */
  setupConcurrency?: number;
  /** Called about twice a second while transactions run. */
  onProgress?: (progress: FleetProgress) => void;
  /** Random source in [0, 1), for reproducible runs. */
  random?: () => number;
  /** Stops dispatching early; the report covers what ran. */
  signal?: AbortSignal;
}

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export interface FleetReport {
  terminals: { requested: number; ready: number; failed: number };
  durationSeconds: number;
  targetRate: number;
  transactions: { started: number; completed: number; skipped: number; purchase: number; balance: number };
  /** Completed transactions per second of the run. */
  tps: number;
  /** Wall time of each completed transaction (the terminal's whole call), milliseconds. */
  latencyMs: LatencySummary;
  /** Field 39 of the responses the terminals accepted. */
  responseCodes: Record<string, number>;
  outcomes: Record<TransactionResult['outcome'], number>;
  signIns: { initial: number; repeated: number; failed: number };
  reversals: { sent: number; acknowledged: number };
  errors: { total: number; byCode: Record<string, number>; samples: string[] };
  /** A realistic day: operations by kind and what each terminal settled. */
  day?: { operations: DayTally['operations']; reversalsAcknowledged: number; terminals: TerminalDay[] };
}

/** The slot the factory transport key lives in. */
export const TRANSPORT_SLOT = 31;
/** Application install order of a simulated terminal (seed §1 cause 7: order matters for key injection). */
export const SIMULATED_APPS = Object.freeze([
  'signature-file',
  'master-controller',
  'bank-card',
  'convenience-payment',
]);

const MAX_ERROR_SAMPLES = 5;

function configError(field: string, reason: string): TerminalError {
  return new TerminalError(TerminalErrorCode.CONFIG, reason, { field });
}

function checkNumber(value: unknown, field: string, min: number, max: number, integer: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw configError(field, `must be a number from ${min} to ${max}`);
  }
  if (integer && !Number.isInteger(value)) throw configError(field, 'must be a whole number');
  return value;
}

interface Settings {
  purchaseShare: number;
  wrongPinRate: number;
  amount: { min: number; max: number };
  cards: readonly TestCard[];
  tidPrefix: string;
  random: () => number;
  day?: RealisticDay;
}

function settings(o: FleetOptions): Settings {
  checkNumber(o.terminals, 'terminals', 1, 100_000, true);
  checkNumber(o.rate, 'rate', 0.01, 1_000_000, false);
  checkNumber(o.durationSeconds, 'durationSeconds', 0.01, 31 * 86400, false);
  if (typeof o.provision !== 'function') throw configError('provision', 'must be a function');
  const purchase = checkNumber(o.mix?.purchase ?? 80, 'mix.purchase', 0, 1e9, false);
  const balance = checkNumber(o.mix?.balance ?? 20, 'mix.balance', 0, 1e9, false);
  if (purchase + balance === 0) throw configError('mix', 'needs a purchase or balance weight');
  const min = checkNumber(o.amount?.min ?? 100, 'amount.min', 1, 999_999_999_999, true);
  const max = checkNumber(o.amount?.max ?? 50_000, 'amount.max', min, 999_999_999_999, true);
  const cards = o.cards ?? TEST_CARDS;
  if (!Array.isArray(cards) || cards.length === 0) throw configError('cards', 'needs at least one card');
  const tidPrefix = o.tidPrefix ?? 'SIM';
  if (!/^[A-Za-z0-9]{0,6}$/.test(tidPrefix))
    throw configError('tidPrefix', 'must be up to 6 letters or digits');
  if (String(o.terminals).length > 8 - tidPrefix.length)
    throw configError('tidPrefix', 'too long for the fleet');
  if (o.day !== undefined && o.day !== 'realistic') throw configError('day', "must be 'realistic'");
  const random = o.random ?? Math.random;
  return {
    purchaseShare: purchase / (purchase + balance),
    wrongPinRate: checkNumber(o.wrongPinRate ?? 0.02, 'wrongPinRate', 0, 1, false),
    amount: { min, max },
    cards,
    tidPrefix,
    random,
    ...(o.day === undefined ? {} : { day: new RealisticDay({ random, cards, amount: { min, max } }) }),
  };
}

/** Nearest-rank percentile of ascending `sorted` values (0 when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarizeLatency(values: readonly number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? 0),
    mean: round(sorted.length === 0 ? 0 : sum / sorted.length),
  };
}

/** A PIN that is not the card's: each digit shifted by one. */
export function wrongPin(pin: string): string {
  return [...pin].map((d) => String((Number(d) + 1) % 10)).join('');
}

class Tally {
  readonly latencies: number[] = [];
  readonly responseCodes: Record<string, number> = {};
  readonly outcomes: Record<TransactionResult['outcome'], number> = {
    approved: 0,
    declined: 0,
    'mac-failed': 0,
    timeout: 0,
  };
  readonly errorCodes: Record<string, number> = {};
  readonly samples: string[] = [];
  errors = 0;
  started = 0;
  completed = 0;
  skipped = 0;
  purchase = 0;
  balance = 0;
  initialSignIns = 0;
  repeatedSignIns = 0;
  failedSignIns = 0;
  reversalsSent = 0;
  reversalsAcknowledged = 0;

  result(r: TransactionResult, ms: number): void {
    this.completed++;
    this.latencies.push(ms);
    this.outcomes[r.outcome]++;
    if (r.responseCode !== undefined && r.outcome !== 'mac-failed') {
      this.responseCodes[r.responseCode] = (this.responseCodes[r.responseCode] ?? 0) + 1;
    }
    if (r.signIn !== undefined) {
      this.repeatedSignIns++;
      if (!r.signIn.approved) this.failedSignIns++;
    }
    for (const rev of [...(r.earlierReversals ?? []), ...(r.reversal ? [r.reversal] : [])]) {
      if (rev.sent) this.reversalsSent++;
      if (rev.acknowledged) this.reversalsAcknowledged++;
    }
  }

  error(e: unknown): void {
    this.errors++;
    const code = isPoskeyError(e) ? e.code : 'ERROR';
    this.errorCodes[code] = (this.errorCodes[code] ?? 0) + 1;
    if (this.samples.length < MAX_ERROR_SAMPLES) {
      this.samples.push(isPoskeyError(e) ? `${e.code}: ${e.message}` : String((e as Error)?.message ?? e));
    }
  }
}

async function provisionOne(o: FleetOptions, s: Settings, index: number): Promise<Terminal> {
  const digits = 8 - s.tidPrefix.length;
  const tid = `${s.tidPrefix}${String(index + 1).padStart(digits, '0')}`;
  const p = await o.provision(tid, index);
  const pad = new PinPad({ serial: `SIM-${p.tid}`, apps: SIMULATED_APPS });
  const terminal = new Terminal(
    { ...(o.terminal ?? {}), ...(p.config ?? {}), tid: p.tid, mid: p.mid, host: o.host, port: o.port },
    { pinPad: pad },
  );
  const tmkSlot = terminal.config.slots.tmk;
  const d = p.tmk;
  if (d?.kind === 'transport') {
    if (o.transportKey === undefined)
      throw configError('transportKey', 'a transport delivery needs the factory key');
    pad.injectTransportKey(TRANSPORT_SLOT, o.transportKey.key, { algorithm: o.transportKey.algorithm });
    pad.provisionFromTransportCryptogram(
      tmkSlot,
      TRANSPORT_SLOT,
      d.cryptogram,
      d.kcv,
      d.algorithm ? { algorithm: d.algorithm } : {},
    );
  } else if (d?.kind === 'clear') {
    pad.injectTmk(
      tmkSlot,
      d.key,
      d.kcv === undefined ? { algorithm: d.algorithm } : { algorithm: d.algorithm, kcv: d.kcv },
    );
  } else if (d?.kind === 'device') {
    await d.load(pad, tmkSlot);
  } else {
    throw configError('provision', "must return tmk { kind: 'transport' | 'clear' | 'device' }");
  }
  return terminal;
}

/** Provisions and signs in every terminal, `setupConcurrency` at a time; failures are tallied. */
async function setUp(o: FleetOptions, s: Settings, tally: Tally): Promise<Terminal[]> {
  const ready: Terminal[] = [];
  let next = 0;
  const one = async (index: number) => {
    let terminal: Terminal;
    try {
      terminal = await provisionOne(o, s, index);
    } catch (e) {
      tally.error(e);
      return;
    }
    try {
      const r = await terminal.signIn();
      if (!r.approved) {
        throw new TerminalError(
          TerminalErrorCode.SIGN_IN,
          `sign-in declined: ${r.responseCode} ${r.responseText}`,
        );
      }
      tally.initialSignIns++;
      ready.push(terminal);
    } catch (e) {
      tally.error(e);
      tally.failedSignIns++;
      await terminal.close();
    }
  };
  const worker = async () => {
    while (next < o.terminals && !o.signal?.aborted) await one(next++);
  };
  const workers = Math.min(o.terminals, o.setupConcurrency ?? 16);
  await Promise.all(Array.from({ length: workers }, worker));
  return ready;
}

async function runOne(terminal: Terminal, s: Settings, tally: Tally): Promise<void> {
  if (s.day !== undefined) {
    const t0 = performance.now();
    tally.purchase++;
    await s.day.next(terminal).then(
      (result) => tally.result(result, performance.now() - t0),
      (e: unknown) => tally.error(e),
    );
    return;
  }
  const r = s.random;
  const card = s.cards[Math.floor(r() * s.cards.length)]!;
  const pin = r() < s.wrongPinRate ? wrongPin(card.pin) : card.pin;
  const input = { track2: track2Of(card) };
  const purchase = r() < s.purchaseShare;
  const t0 = performance.now();
  try {
    let result: TransactionResult;
    if (purchase) {
      tally.purchase++;
      const amount = s.amount.min + Math.floor(r() * (s.amount.max - s.amount.min + 1));
      result = await terminal.purchase(input, amount, pin);
    } else {
      tally.balance++;
      result = await terminal.balance(input, pin);
    }
    tally.result(result, performance.now() - t0);
  } catch (e) {
    tally.error(e);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Open-loop dispatch at the target rate until the duration ends or the signal aborts. */
async function drive(o: FleetOptions, s: Settings, ready: Terminal[], tally: Tally): Promise<number> {
  const idle = [...ready];
  const running = new Set<Promise<void>>();
  const durationMs = o.durationSeconds * 1000;
  const tickMs = Math.max(1, Math.min(20, 1000 / o.rate));
  const t0 = performance.now();
  let lastProgress = 0;
  const progress = () => {
    const elapsed = (performance.now() - t0) / 1000;
    o.onProgress?.(progressOf(o, tally, running.size, elapsed));
  };
  for (;;) {
    // Capped at the duration, so a late last tick still starts exactly rate × duration transactions.
    const elapsed = Math.min(performance.now() - t0, durationMs);
    const due = o.signal?.aborted ? 0 : Math.floor((elapsed / 1000) * o.rate);
    while (tally.started + tally.skipped < due) {
      const terminal = idle.shift();
      if (terminal === undefined) {
        tally.skipped++;
        continue;
      }
      tally.started++;
      const p = runOne(terminal, s, tally).finally(() => {
        running.delete(p);
        idle.push(terminal);
      });
      running.add(p);
    }
    if (elapsed >= durationMs || o.signal?.aborted) break;
    if (o.onProgress !== undefined && elapsed - lastProgress >= 500) {
      lastProgress = elapsed;
      progress();
    }
    await sleep(tickMs);
  }
  await Promise.all(running);
  progress();
  return (performance.now() - t0) / 1000;
}

function progressOf(o: FleetOptions, t: Tally, inFlight: number, elapsed: number): FleetProgress {
  const sorted = t.latencies.slice(-2000).sort((a, b) => a - b);
  return {
    elapsedSeconds: elapsed,
    durationSeconds: o.durationSeconds,
    started: t.started,
    completed: t.completed,
    inFlight,
    tps: elapsed > 0 ? t.completed / elapsed : 0,
    p95Ms: percentile(sorted, 95),
    approved: t.outcomes.approved,
    declined: t.outcomes.declined,
    failed: t.outcomes['mac-failed'] + t.outcomes.timeout,
    errors: t.errors,
    skipped: t.skipped,
  };
}

/**
 * Runs the fleet and returns the report (the programmatic API benches and tests use).
 * @throws POSKEY_ERR_TERMINAL_CONFIG for invalid options; provisioning and transaction failures are
 *   counted in the report, not thrown
 */
export async function runFleet(options: FleetOptions): Promise<FleetReport> {
  const s = settings(options);
  const tally = new Tally();
  const ready = await setUp(options, s, tally);
  let seconds = 0;
  let days: TerminalDay[] | undefined;
  try {
    if (ready.length > 0) seconds = await drive(options, s, ready, tally);
    if (s.day !== undefined) days = await Promise.all(ready.map((t) => closeTerminalDay(t)));
  } finally {
    await Promise.all(ready.map((t) => t.close().catch(() => undefined)));
  }
  return {
    terminals: {
      requested: options.terminals,
      ready: ready.length,
      failed: options.terminals - ready.length,
    },
    durationSeconds: Math.round(seconds * 1000) / 1000,
    targetRate: options.rate,
    transactions: {
      started: tally.started,
      completed: tally.completed,
      skipped: tally.skipped,
      purchase: tally.purchase,
      balance: tally.balance,
    },
    tps: seconds > 0 ? Math.round((tally.completed / seconds) * 100) / 100 : 0,
    latencyMs: summarizeLatency(tally.latencies),
    responseCodes: sortKeys(tally.responseCodes),
    outcomes: tally.outcomes,
    signIns: { initial: tally.initialSignIns, repeated: tally.repeatedSignIns, failed: tally.failedSignIns },
    reversals: { sent: tally.reversalsSent, acknowledged: tally.reversalsAcknowledged },
    errors: { total: tally.errors, byCode: sortKeys(tally.errorCodes), samples: tally.samples },
    ...(s.day === undefined || days === undefined ? {} : { day: { ...s.day.tally, terminals: days } }),
  };
}

function sortKeys(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)));
}

const fmt = (x: number, digits = 1) => x.toFixed(digits);

/** The live progress line (no newline). */
export function progressLine(p: FleetProgress): string {
  return (
    `[${fmt(p.elapsedSeconds)}s/${fmt(p.durationSeconds, 0)}s] ${p.completed}/${p.started} tx  ` +
    `${fmt(p.tps)} tps  p95 ${fmt(p.p95Ms)} ms  approved ${p.approved}  declined ${p.declined}  ` +
    `failed ${p.failed}  errors ${p.errors}${p.skipped > 0 ? `  skipped ${p.skipped}` : ''}`
  );
}

/** The final report as text lines. */
export function formatFleetReport(r: FleetReport): string {
  const counts = (o: Record<string, number>) =>
    Object.entries(o)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  const l = r.latencyMs;
  return [
    `terminals:      ${r.terminals.ready}/${r.terminals.requested} ready${r.terminals.failed ? ` (${r.terminals.failed} failed)` : ''}`,
    `duration:       ${fmt(r.durationSeconds, 2)} s at a target of ${r.targetRate} tx/s`,
    `transactions:   ${r.transactions.completed} completed of ${r.transactions.started} started (${r.transactions.purchase} purchase, ${r.transactions.balance} balance)${r.transactions.skipped ? `, ${r.transactions.skipped} skipped: every terminal busy` : ''}`,
    `TPS:            ${fmt(r.tps, 2)}`,
    `latency (ms):   p50 ${fmt(l.p50, 2)}  p95 ${fmt(l.p95, 2)}  p99 ${fmt(l.p99, 2)}  max ${fmt(l.max, 2)}  mean ${fmt(l.mean, 2)}`,
    `response codes: ${counts(r.responseCodes)}`,
    `outcomes:       ${counts(r.outcomes)}`,
    `sign-ins:       ${r.signIns.initial} initial, ${r.signIns.repeated} repeated, ${r.signIns.failed} failed`,
    `reversals:      ${r.reversals.sent} sent, ${r.reversals.acknowledged} acknowledged`,
    `errors:         ${r.errors.total}${r.errors.total ? ` (${counts(r.errors.byCode)})` : ''}`,
    ...r.errors.samples.map((e) => `  ${e}`),
  ].join('\n');
}
