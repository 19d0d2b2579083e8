/**
 * The host's counters and latency histograms, kept in plain objects and arrays (no allocation per
 * sample). Per-step prepare time shows where a transaction spends its time (MAC, HSM, journal,
 * network); the end-to-end histogram is request-in to reply-written.
 *
 * Histograms use log-spaced buckets (8 per power of two, from 1 µs to ~1 min), which bounds the
 * relative error of a percentile to about 9%.
 */

const SUB_BUCKETS = 8;
const MAX_POWER = 26; // 2^26 µs ≈ 67 s
const BUCKETS = MAX_POWER * SUB_BUCKETS + 1;

/** Latency histogram in microseconds. */
export class Histogram {
  count = 0;
  sumUs = 0;
  maxUs = 0;
  readonly #buckets = new Float64Array(BUCKETS);

  /** Records one sample given in milliseconds (performance.now() differences). */
  record(ms: number): void {
    const us = ms * 1000;
    this.count++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
    this.#buckets[bucketOf(us)]!++;
  }

  /** The value (µs) below which `q` (0..1) of the samples fall; 0 when empty. */
  percentile(q: number): number {
    if (this.count === 0) return 0;
    const target = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#buckets[i]!;
      if (seen >= target) return Math.min(upperBound(i), this.maxUs);
    }
    return this.maxUs;
  }

  snapshot(): HistogramSnapshot {
    const r = (n: number) => Math.round(n) / 1000;
    return {
      count: this.count,
      meanMs: this.count === 0 ? 0 : r(this.sumUs / this.count),
      p50Ms: r(this.percentile(0.5)),
      p99Ms: r(this.percentile(0.99)),
      maxMs: r(this.maxUs),
    };
  }
}

function bucketOf(us: number): number {
  if (us < 1) return 0;
  const power = Math.floor(Math.log2(us));
  if (power >= MAX_POWER) return BUCKETS - 1;
  const sub = Math.floor((us / 2 ** power - 1) * SUB_BUCKETS);
  return 1 + power * SUB_BUCKETS + sub;
}

function upperBound(bucket: number): number {
  if (bucket === 0) return 1;
  const i = bucket - 1;
  const power = Math.floor(i / SUB_BUCKETS);
  return 2 ** power * (1 + ((i % SUB_BUCKETS) + 1) / SUB_BUCKETS);
}

export interface HistogramSnapshot {
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Named counters the host increments. */
export const COUNTERS = [
  'connections.accepted',
  'connections.refused',
  'connections.idleClosed',
  'frames.bad',
  'requests',
  'requests.unparsable',
  'replies',
  'mac.failures',
  'duplicates',
  'duplicates.forwarded',
  'network.sent',
  'network.timeouts',
  'network.notSent',
  'network.lost',
  'network.lateReplies',
  'network.badMac',
  'journal.failures',
  'saf.queued',
  'saf.sent',
  'saf.retries',
  'saf.acknowledged',
  'saf.failures',
  'signIns',
] as const;
export type CounterName = (typeof COUNTERS)[number];

export interface MetricsSnapshot {
  counters: Record<string, number>;
  /** Requests by transaction name. */
  transactions: Record<string, number>;
  /** Replies by response code. */
  responseCodes: Record<string, number>;
  latency: HistogramSnapshot;
  steps: Record<string, HistogramSnapshot>;
  inFlight: number;
  connections: number;
}

export class HostMetrics {
  readonly counters: Record<CounterName, number>;
  readonly transactions: Record<string, number> = Object.create(null);
  readonly responseCodes: Record<string, number> = Object.create(null);
  readonly latency = new Histogram();
  readonly #steps = new Map<string, Histogram>();
  inFlight = 0;
  connections = 0;

  constructor() {
    this.counters = Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Record<CounterName, number>;
  }

  count(name: CounterName, by = 1): void {
    this.counters[name] += by;
  }

  /** The histogram of one step (made once per step name). */
  step(name: string): Histogram {
    let h = this.#steps.get(name);
    if (h === undefined) {
      h = new Histogram();
      this.#steps.set(name, h);
    }
    return h;
  }

  transaction(name: string): void {
    this.transactions[name] = (this.transactions[name] ?? 0) + 1;
  }

  responseCode(rc: string): void {
    this.responseCodes[rc] = (this.responseCodes[rc] ?? 0) + 1;
  }

  snapshot(): MetricsSnapshot {
    const steps: Record<string, HistogramSnapshot> = {};
    for (const [name, h] of this.#steps) steps[name] = h.snapshot();
    return {
      counters: { ...this.counters },
      transactions: { ...this.transactions },
      responseCodes: { ...this.responseCodes },
      latency: this.latency.snapshot(),
      steps,
      inFlight: this.inFlight,
      connections: this.connections,
    };
  }
}
