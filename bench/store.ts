/**
 * `npm run bench -- store`: durable journal appends per second, group commit against one row per
 * commit, on SQLite (WAL, synchronous=FULL, writer thread) and PostgreSQL (synchronous_commit on),
 * with p50/p99 append latency (queueing included: 256 appends in flight, as a busy host has).
 *
 * The baseline is the same journal with maxBatch = 1, so the only difference is grouping; it runs
 * at the fsync rate (research/perf.md §2.3: ~3.8k/s SQLite FULL, ~2.1k/s PostgreSQL here).
 * After each run every acknowledged row is counted in the database, so a fast number cannot come
 * from rows that were never written.
 *
 * PostgreSQL: POSKEY_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test), in a throw-away
 * schema; when it is unreachable the PostgreSQL rows are reported as skipped.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openStore } from '../src/store/open.js';
import type { NewJournalRow, Repository } from '../src/store/types.js';
import { compare, header, type Measurement, measureAsync, report } from './harness.js';

const PG_URL = process.env.POSKEY_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const IN_FLIGHT = 256;

let seq = 0;
/** A ~300-byte purchase row with a fresh (tid, stan). */
function row(): NewJournalRow {
  const i = seq++;
  return {
    tid: `B${String(Math.floor(i / 1_000_000)).padStart(7, '0')}`,
    mid: '104110070110814',
    batch: 1,
    stan: i % 1_000_000,
    mti: '0200',
    txnType: 'purchase',
    processingCode: '000000',
    amount: 12_345,
    currency: '156',
    pan: '6212345678901234',
    rrn: '000000123456',
  };
}

async function appends(name: string, repo: Repository, concurrency: number): Promise<Measurement> {
  const before = (await repo.journal.list({ order: 'desc', limit: 1 }))[0]?.id;
  const commits = repo.journal.stats().commits;
  const m = await measureAsync(name, () => repo.journal.append(row()), { concurrency });
  const stored = await countAfter(repo, before);
  assert.equal(stored, m.ops, `${name}: ${m.ops} appends acknowledged, ${stored} rows in the database`);
  const perCommit = m.ops / (repo.journal.stats().commits - commits);
  console.log(`  ${name}: ${m.ops} rows, ${perCommit.toFixed(1)} rows per commit`);
  return m;
}

async function countAfter(repo: Repository, after: string | undefined): Promise<number> {
  let n = 0;
  let cursor = after;
  for (;;) {
    const page = await repo.journal.list({ limit: 1000, ...(cursor ? { after: cursor } : {}) });
    n += page.length;
    if (page.length < 1000) return n;
    cursor = page[page.length - 1]!.id;
  }
}

async function pair(label: string, grouped: Repository, single: Repository): Promise<void> {
  const g = await appends(`${label}, group commit, ${IN_FLIGHT} in flight`, grouped, IN_FLIGHT);
  const s = await appends(`${label}, one row per commit, ${IN_FLIGHT} in flight`, single, IN_FLIGHT);
  compare(g, s, 16_000);
  report(await appends(`${label}, group commit, 1 in flight`, grouped, 1), '   (latency floor)');
}

async function sqlite(panKey: Buffer): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-bench-'));
  try {
    const grouped = await openStore(`sqlite:${join(dir, 'grouped.db')}`, { panKey, nodeId: 'bench' });
    const single = await openStore(`sqlite:${join(dir, 'single.db')}`, {
      panKey,
      nodeId: 'bench',
      maxBatch: 1,
    });
    await pair('SQLite WAL FULL', grouped, single);
    await Promise.all([grouped.close(), single.close()]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function postgres(panKey: Buffer): Promise<void> {
  const schema = `poskey_bench_${randomBytes(4).toString('hex')}`;
  let grouped: Repository;
  try {
    grouped = await openStore(PG_URL, { panKey, nodeId: 'bench', schema });
  } catch (e) {
    console.log(`PostgreSQL: skipped, ${(e as Error).message}`);
    return;
  }
  try {
    const single = await openStore(PG_URL, { panKey, nodeId: 'bench', schema, maxBatch: 1 });
    await pair('PostgreSQL', grouped, single);
    await single.close();
  } finally {
    await grouped.close();
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await client.end();
  }
}

export async function run(): Promise<void> {
  header('store: durable journal appends, group commit vs one row per commit');
  const panKey = randomBytes(32);
  await sqlite(panKey);
  await postgres(panKey);
  console.log('(appends/s, each acknowledged only after its commit is durable; latency includes queueing)');
}
