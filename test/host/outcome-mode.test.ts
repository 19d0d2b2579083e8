import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sqliteFixture } from '../store/helpers.js';
import {
  CARDS,
  packMaced,
  purchaseMessage,
  RawTerminal,
  rawSignIn,
  startWorld,
  type World,
} from './helpers.js';

describe('outcome journal mode', { timeout: 120_000 }, () => {
  let w: World;
  before(async () => {
    w = await startWorld(await sqliteFixture());
  });
  after(async () => {
    await w?.close();
  });
  it('one row with the outcome; repeats: memory 94, other process 94 after forwarding; many sign-ins at once', async () => {
    const t = await w.register('O0000001');
    const a = await w.extraServer({ journal: { mode: 'outcome' } });
    const b = await w.extraServer({ journal: { mode: 'outcome' } });
    const rawA = await RawTerminal.connect(a.port);
    const rawB = await RawTerminal.connect(b.port);
    try {
      const { keys } = await rawSignIn(rawA, t, '000001');
      const body = packMaced(purchaseMessage(t.tid, '000002', { ...CARDS.good, amount: 42 }), keys);
      assert.equal((await rawA.exchange(body)).msg[39], '00');
      const row = await w.store.journal.get(t.tid, 1, 2, '0200');
      assert.equal(row?.status, 'approved');
      assert.equal(row?.responseCode, '00');
      assert.equal((await rawA.exchange(body)).msg[39], '94', 'caught in memory');
      assert.equal((await rawB.exchange(body)).msg[39], '94', 'caught by the journal');
      assert.equal(b.server.metrics().counters['duplicates.forwarded'], 1);
      assert.equal((await w.store.journal.get(t.tid, 1, 2, '0200'))?.status, 'approved');
      // a burst of sign-ins in one turn share a registry transaction
      const ts = await Promise.all(
        Array.from({ length: 20 }, (_, i) => w.register(`P${String(i).padStart(7, '0')}`)),
      );
      const conns = await Promise.all(ts.map(() => RawTerminal.connect(a.port)));
      const res = await Promise.all(ts.map((x, i) => rawSignIn(conns[i]!, x, '000001')));
      assert.equal(res.length, 20);
      for (const x of ts) assert.notEqual((await w.store.terminals.get(x.tid))?.workingKeys, null);
      for (const c of conns) c.close();
    } finally {
      rawA.close();
      rawB.close();
      await a.server.close();
      await b.server.close();
    }
  });
});
