/**
 * A realistic day (`poskey simulate --mix realistic`) on the whole platform: a fleet provisioned
 * through the registry runs purchases, voids, partial and full refunds, reversals and balance
 * inquiries, then every terminal settles. The terminals' batch totals, the host journal and the
 * network ledger must agree, terminal by terminal; a ledger edited behind the host's back must be
 * named as the mismatch.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { type FleetReport, runFleet } from '../../src/terminal/fleet.js';
import { seededRandom } from '../../src/terminal/mix.js';
import { hostNet, networkNet, reconcileDay } from '../../src/terminal/reconcile.js';
import { type Backend, MID, startWorld, type World } from './helpers.js';

async function realisticDay(w: World, prefix: string, seed: number): Promise<FleetReport> {
  return runFleet({
    host: '127.0.0.1',
    port: w.platform.ports.terminal,
    terminals: 6,
    rate: 60,
    durationSeconds: 4,
    tidPrefix: prefix,
    wrongPinRate: 0,
    day: 'realistic',
    random: seededRandom(seed),
    transportKey: { key: w.platform.factory.TDES.key, algorithm: 'tdes' },
    provision: async (tid) => {
      const r = await w.admin('POST', '/terminals', {
        tid,
        mid: MID,
        tmk: { generate: true, exportUnder: 'factory' },
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const d = r.body.tmk.delivery;
      return { tid, mid: MID, tmk: { kind: 'transport', cryptogram: d.cryptogram, kcv: d.kcv } };
    },
  });
}

for (const backend of ['sqlite', 'postgres'] as Backend[]) {
  describe(`a realistic day on ${backend}`, { timeout: 180_000 }, () => {
    let w: World;
    before(async () => {
      w = await startWorld(backend);
    });
    after(async () => {
      await w?.close();
    });

    it('terminal totals, host journal and network ledger agree; a tampered ledger is named', async () => {
      const since = Date.now() - 1000;
      const report = await realisticDay(w, 'MX', 20261207);
      assert.equal(report.terminals.ready, 6, JSON.stringify(report.errors));
      assert.equal(report.errors.total, 0, JSON.stringify(report.errors.samples));
      const day = report.day!;
      for (const op of ['purchase', 'void', 'refund', 'reversal'] as const)
        assert.ok(day.operations[op].approved > 0, `no approved ${op}: ${JSON.stringify(day.operations)}`);
      assert.ok(day.reversalsAcknowledged > 0);
      for (const t of day.terminals) {
        assert.equal(t.error, undefined, `${t.tid}: ${t.error}`);
        assert.equal(t.settlement?.approved, true, `${t.tid} did not settle`);
        assert.equal(t.settlement?.balanced, true, `${t.tid}: the host's totals differ from the terminal's`);
      }
      await w.platform.server.saf.drained(30_000);
      const ledger = w.platform.network.ledger.path;
      const recon = reconcileDay(
        day.terminals,
        await hostNet(w.platform.store, since),
        networkNet(ledger, since),
      );
      assert.deepEqual(recon.mismatches, []);
      assert.equal(recon.terminals.length, 6);
      assert.ok(recon.terminals.every((t) => t.agreed && (t.terminal ?? 0) > 0));

      // One standing sale of the first terminal gains a fen in the ledger alone.
      const victim = recon.terminals[0]!;
      const db = new Database(ledger);
      try {
        const changed = db
          .prepare(
            `UPDATE authorisations SET amount = amount + 1 WHERE rowid = (SELECT rowid FROM authorisations
               WHERE tid = ? AND mti = '0200' AND processing_code = '000000' AND response_code = '00'
                 AND status = 'applied' LIMIT 1)`,
          )
          .run(victim.tid).changes;
        assert.equal(changed, 1);
      } finally {
        db.close();
      }
      const tampered = reconcileDay(
        day.terminals,
        await hostNet(w.platform.store, since),
        networkNet(ledger, since),
      );
      assert.equal(tampered.agreed, false);
      assert.deepEqual(tampered.mismatches, [
        `${victim.tid}: terminal ${victim.terminal}, host journal ${victim.host}, network ledger ${victim.network + 1}`,
      ]);
    });
  });
}

describe('reconcileDay', () => {
  it('names a terminal the host has no rows for, and one whose day failed', () => {
    const day = (tid: string, net: number, error?: string) => ({
      tid,
      mid: MID,
      batch: '000001',
      debits: { count: 1, amount: net },
      credits: { count: 0, amount: 0 },
      net,
      ...(error === undefined ? {} : { error }),
    });
    const r = reconcileDay(
      [day('T1', 500), day('T2', 300), day('T3', 100, 'settlement refused')],
      new Map([
        ['T1', 500],
        ['T3', 100],
      ]),
      new Map([
        ['T1', 500],
        ['T2', 300],
        ['T3', 100],
      ]),
    );
    assert.deepEqual(r.mismatches, [
      'T2: terminal 300, host journal 0, network ledger 300',
      'T3: terminal unknown, host journal 100, network ledger 100',
    ]);
    assert.equal(r.terminals.find((t) => t.tid === 'T1')?.agreed, true);
  });
});
