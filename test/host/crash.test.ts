/**
 * Crash consistency (issue 6): `kill -9` the host under load, three times, against SQLite and
 * PostgreSQL. After restart and drain:
 *  - every approval a terminal received exists in the host journal and in the network ledger;
 *  - nothing was approved twice;
 *  - every reversal has been applied once;
 *  - card balances equal initial balances minus approved net amounts.
 *
 * The host is a real child process (`poskey host serve`), SIGKILLed at random moments while
 * terminals have requests in flight and the network simulator (jitter, a few dropped answers) is
 * holding others; it is restarted on the same data directory and database each time. The network
 * simulator, its ledger and the terminals live in the test process and survive the kills. Load
 * then stops, the terminals deliver their pending reversals, the host drains (no request left in
 * doubt, store-and-forward queue empty), stops cleanly, and the invariants are checked
 * (crash-invariants.ts). POSKEY_CRASH_SEED replays the random choices (timing stays real).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom } from '../../src/terminal/mix.js';
import type { Terminal } from '../../src/terminal/terminal.js';
import { assertPostgresReachable } from '../store/helpers.js';
import {
  approvalsRecorded,
  approvedOnce,
  balancesMatch,
  type CrashEvidence,
  readJournal,
  readLedger,
  report,
  reversalsApplied,
  UNSETTLED_STATUSES,
} from './crash-invariants.js';
import { flushReversals, LoadDriver } from './crash-load.js';
import { type Backend, type CrashWorld, startCrashWorld } from './crash-world.js';

const KILLS = 3;
const TERMINALS = 8;
/** Answers received after each (re)start before the next kill may come. */
const ANSWERS_PER_PHASE = 60;
/** Generous: a loaded 2-core machine compiles the host (tsx) on every start. */
const PHASE_TIMEOUT_MS = 60_000;
const REVERSAL_FLUSH_MS = 60_000;
const DRAIN_TIMEOUT_MS = 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** What keeps the host from being drained: unsettled requests and store-and-forward entries. */
async function backlog(w: CrashWorld): Promise<string[]> {
  const store = await w.openHostStore();
  try {
    const rows = await store.journal.list({ status: [...UNSETTLED_STATUSES], limit: 1000 });
    // Terminal 0400 rows stay `received`: what they owe the network is in the queue.
    const open = rows.filter((r) => r.mti === '0200');
    const out = open.map((r) => `journal ${r.tid}/${r.stan} ${r.mti} ${r.txnType} ${r.status}`);
    const saf = await w.queryHost('saf_queue', 'SELECT * FROM saf_queue');
    for (const entry of saf ?? []) if (!safDone(entry)) out.push(`saf_queue ${JSON.stringify(entry)}`);
    return out;
  } finally {
    await store.close();
  }
}

/** A store-and-forward entry that needs nothing more (acknowledged by the network). */
function safDone(entry: Record<string, unknown>): boolean {
  return entry.state === 'done';
}

/** Waits until nothing is left to settle; returns what is still left after `ms`. */
async function drain(w: CrashWorld, ms: number): Promise<string[]> {
  const until = Date.now() + ms;
  let left = await backlog(w);
  while (left.length > 0 && Date.now() < until) {
    await sleep(250);
    left = await backlog(w);
  }
  return left;
}

async function crashRun(backend: Backend): Promise<void> {
  const seed = Number(process.env.POSKEY_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const random = seededRandom(seed);
  const tag = `[${backend}, POSKEY_CRASH_SEED=${seed}]`;
  const w = await startCrashWorld(backend, {
    terminals: TERMINALS,
    // Three cards that approve; one that runs out (51) partway through.
    balances: [50_000_000, 50_000_000, 50_000_000, 60_000],
    faults: { jitterMs: 250, dropRate: 0.01 },
    networkTimeout: '2s',
  });
  const terminals: Terminal[] = w.terminals.map((t) => w.terminal(t));
  try {
    await w.host.start(w.firstStartEnv);
    const load = new LoadDriver(terminals, {
      cards: w.cards,
      voidRate: 0.08,
      voidMinBalance: 1_000_000,
      amount: { min: 100, max: 20_000 },
      random,
    });
    load.start();
    const inFlightAtKill: number[] = [];
    for (let kill = 1; kill <= KILLS; kill++) {
      const base = load.answered();
      await waitFor(
        `${ANSWERS_PER_PHASE} answers before kill ${kill}`,
        () => load.answered() >= base + ANSWERS_PER_PHASE,
        PHASE_TIMEOUT_MS,
      );
      await sleep(random() * 1500);
      await waitFor('a request in flight', () => load.inFlight > 0, PHASE_TIMEOUT_MS);
      inFlightAtKill.push(load.inFlight);
      await w.host.kill();
      await sleep(100 + random() * 500);
      await w.host.start();
    }
    const base = load.answered();
    await waitFor(
      'answers after the last restart',
      () => load.answered() >= base + ANSWERS_PER_PHASE,
      PHASE_TIMEOUT_MS,
    );
    await load.stop();
    await flushReversals(terminals, REVERSAL_FLUSH_MS);
    const undrained = await drain(w, DRAIN_TIMEOUT_MS);
    assert.equal(await w.host.stop(), 0, `${tag} the host did not stop cleanly:\n${w.host.stderr}`);

    const store = await w.openHostStore();
    let journal: CrashEvidence['journal'];
    try {
      journal = await readJournal(store);
    } finally {
      await store.close();
    }
    const evidence: CrashEvidence = {
      sent: load.sent,
      journal,
      ledger: readLedger(w.network.ledger.path),
      cards: w.cards,
      balanceOf: (pan) => w.network.ledger.balanceOf(pan),
    };
    const approved = load.sent.filter((s) => s.outcome === 'approved').length;
    const reversed = load.sent.filter((s) => s.outcome === 'timeout' || s.outcome === 'mac-failed').length;
    const summary =
      `${tag} ${w.host.starts} host starts, in flight at the kills ${inFlightAtKill.join('/')}, ` +
      `${load.sent.length} sent, ${approved} approved, ${reversed} reversed by terminals, ` +
      `unsent: ${JSON.stringify(Object.fromEntries(load.unsent))}`;
    assert.equal(w.host.starts, KILLS + 1, summary);
    assert.ok(approved >= ANSWERS_PER_PHASE, `${summary}: too few approvals to mean anything`);
    assert.ok(reversed >= 1, `${summary}: no kill caught a request in flight`);
    const checks: [string, (e: CrashEvidence) => string[]][] = [
      [
        `the host drained within ${DRAIN_TIMEOUT_MS} ms (journal and store-and-forward queue)`,
        () => undrained,
      ],
      ['every approval a terminal received is in the journal and the ledger', approvalsRecorded],
      ['nothing was approved twice', approvedOnce],
      ['every reversal was applied once', reversalsApplied],
      ['card balances are initial minus approved net amounts', balancesMatch],
    ];
    const failures = checks
      .map(([what, check]) => ({ what, problems: check(evidence) }))
      .filter((c) => c.problems.length > 0)
      .map((c) => report(c.what, c.problems));
    assert.deepEqual(
      failures,
      [],
      `${summary}\n${failures.join('\n')}\nhost stderr (last part):\n${w.host.stderr.slice(-4000)}`,
    );
  } finally {
    await Promise.all(terminals.map((t) => t.close()));
    await w.close();
  }
}

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`crash consistency: kill -9 the host under load (${backend})`, { timeout: 300_000 }, () => {
    it(`${KILLS} kills and restarts; after drain the journal, the ledger and the terminals agree`, async () => {
      if (backend === 'postgres') await assertPostgresReachable();
      await crashRun(backend);
    });
  });
}
