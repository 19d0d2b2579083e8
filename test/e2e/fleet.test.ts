/**
 * 50 terminals at once: the fleet simulator provisions each through the admin API (the host's HSM
 * generates the TMK and delivers it under the factory transport key every simulated PIN pad holds),
 * signs them all in, and drives purchases and balance inquiries concurrently over real TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runFleet } from '../../src/terminal/fleet.js';
import { MID, startWorld, type World } from './helpers.js';

describe('a fleet end to end', () => {
  let w: World;
  before(async () => {
    w = await startWorld('sqlite');
  });
  after(async () => {
    await w?.close();
  });

  it('50 terminals provisioned through the registry, signed in, transacting concurrently', async () => {
    const report = await runFleet({
      host: '127.0.0.1',
      port: w.platform.ports.terminal,
      terminals: 50,
      rate: 400,
      durationSeconds: 2,
      tidPrefix: 'F',
      wrongPinRate: 0,
      transportKey: { key: w.platform.factory.TDES.key, algorithm: 'tdes' },
      setupConcurrency: 50,
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
    assert.equal(report.terminals.ready, 50, JSON.stringify(report.errors));
    assert.equal(report.errors.total, 0, JSON.stringify(report.errors.samples));
    assert.ok(report.transactions.completed >= 200, `completed ${report.transactions.completed}`);
    assert.deepEqual(Object.keys(report.responseCodes), ['00']);
    assert.equal(report.outcomes.approved, report.transactions.completed);
    const active = (await w.admin('GET', '/terminals?state=active')).body.terminals as { tid: string }[];
    assert.equal(active.filter((t) => t.tid.startsWith('F')).length, 50);
  });
});
