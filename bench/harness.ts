/**
 * Benchmark harness: runs an operation for a fixed time, sampling per-call latency, and prints
 * ops/s with p50/p99. `compare` runs a candidate and its baseline in the same process, one after
 * the other, and prints the ratio, so machine noise affects both alike.
 */
import { performance } from 'node:perf_hooks';

export interface Measurement {
  name: string;
  ops: number;
  opsPerSec: number;
  p50us: number;
  p99us: number;
}

export interface MeasureOptions {
  /** Wall time per measurement, ms. BENCH_MS overrides it (CI smoke runs use a small value). */
  ms?: number;
  /** Calls per latency sample; latency is the batch time divided by this. */
  batch?: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function benchMs(fallback = 2000): number {
  const env = Number(process.env.BENCH_MS);
  return Number.isFinite(env) && env > 0 ? env : fallback;
}

/** Measures a synchronous operation. A short warm-up runs first so the JIT has settled. */
export function measure(name: string, fn: () => unknown, options: MeasureOptions = {}): Measurement {
  const ms = options.ms ?? benchMs();
  const batch = options.batch ?? 64;
  const warmUntil = performance.now() + Math.min(300, ms / 4);
  while (performance.now() < warmUntil) for (let i = 0; i < batch; i++) fn();
  const samples: number[] = [];
  let ops = 0;
  const start = performance.now();
  const end = start + ms;
  let now = start;
  while (now < end) {
    const t0 = now;
    for (let i = 0; i < batch; i++) fn();
    now = performance.now();
    samples.push(((now - t0) * 1000) / batch);
    ops += batch;
  }
  samples.sort((a, b) => a - b);
  return {
    name,
    ops,
    opsPerSec: ops / ((now - start) / 1000),
    p50us: percentile(samples, 50),
    p99us: percentile(samples, 99),
  };
}

/** Measures an async operation with `concurrency` calls in flight; latency is per call. */
export async function measureAsync(
  name: string,
  fn: () => Promise<unknown>,
  options: { ms?: number; concurrency?: number } = {},
): Promise<Measurement> {
  const ms = options.ms ?? benchMs();
  const concurrency = options.concurrency ?? 1;
  const samples: number[] = [];
  let ops = 0;
  const start = performance.now();
  const end = start + ms;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await fn();
      samples.push((performance.now() - t0) * 1000);
      ops++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  samples.sort((a, b) => a - b);
  return {
    name,
    ops,
    opsPerSec: ops / elapsed,
    p50us: percentile(samples, 50),
    p99us: percentile(samples, 99),
  };
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

export function report(m: Measurement, extra = ''): void {
  console.log(
    `${m.name.padEnd(52)} ${fmt(m.opsPerSec).padStart(12)} ops/s   p50 ${m.p50us.toFixed(2).padStart(8)} µs   p99 ${m.p99us
      .toFixed(2)
      .padStart(8)} µs${extra}`,
  );
}

/** Prints candidate and baseline, then the ratio candidate/baseline, and checks a target if given. */
export function compare(candidate: Measurement, baseline: Measurement, target?: number): void {
  report(candidate);
  report(baseline, '   (baseline)');
  const ratio = candidate.opsPerSec / baseline.opsPerSec;
  const goal =
    target === undefined
      ? ''
      : `   target ≥ ${fmt(target)} ops/s: ${candidate.opsPerSec >= target ? 'met' : 'NOT MET'}`;
  console.log(`${'  ratio'.padEnd(52)} ${ratio.toFixed(2).padStart(12)}x${goal}`);
}

export function header(title: string): void {
  console.log(`\n== ${title} (node ${process.version}, ${process.platform}/${process.arch}) ==`);
}
