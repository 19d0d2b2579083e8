/**
 * The core lifecycle over real TCP, on SQLite and on PostgreSQL: register (admin API, TMK from
 * components with KCVs) → sign-in (field 62 opened by the test under the known TMK, every check
 * value verified, and the same KCVs in the registry) → balance → purchase (debited in the network's
 * ledger, journalled with the PAN masked); a replay answered 94 and not forwarded twice; the
 * network timing out while the terminal waits → the terminal reverses and the host acknowledges.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IsoMessage } from '../../src/iso8583/index.js';
import { pack } from '../../src/iso8583/index.js';
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';
import {
  type Backend,
  CARDS,
  checkValue4,
  eventually,
  nextTid,
  openField62,
  packMaced,
  pinBlockHex,
  purchaseMessage,
  RawTerminal,
  rawSignIn,
  replyMacOk,
  signInMessage,
  startWorld,
  swipe,
  type World,
} from './helpers.js';

for (const backend of ['sqlite', 'postgres'] as Backend[]) {
  describe(`end to end on ${backend}`, () => {
    let w: World;
    before(async () => {
      w = await startWorld(backend);
    });
    after(async () => {
      await w?.close();
    });

    it('register → sign-in (field 62 cross-checked) → balance → purchase', async () => {
      const t = await w.registerKnown(nextTid('L'));
      const view = await w.admin('GET', `/terminals/${t.tid}`);
      assert.equal(view.status, 200);
      assert.equal(view.body.state, 'new');
      assert.equal(view.body.tmk.kcv, t.kcv);
      assert.equal(view.body.workingKeys, null);

      const frames: IsoMessage[] = [];
      const term = w.terminal(t, {}, (e) => {
        if (e.direction === 'received' && e.message) frames.push(e.message);
      });
      try {
        const signIn = await term.signIn();
        assert.equal(signIn.approved, true, signIn.responseText);
        const reply = frames.find((m) => m[0] === '0810')!;
        assert.equal(reply[39], '00');
        // The test opens field 62 itself under the TMK it made: every key's check value matches.
        const clear = openField62(reply[62] as string, '003', t);
        assert.equal(clear.tpk.length, 16);
        assert.equal(clear.tak.length, 8);
        const registry = (await w.admin('GET', `/terminals/${t.tid}`)).body;
        assert.equal(registry.state, 'active');
        assert.equal(registry.workingKeys.tpk, checkValue4('TDES', clear.tpk));
        assert.equal(registry.workingKeys.tak, checkValue4('TDES', clear.tak));
        // The PIN pad loaded the same keys (its KCVs are 3 bytes of the same E_K(0)).
        assert.equal(signIn.keys?.pik, checkValue4('TDES', clear.tpk).slice(0, 6));
        assert.equal(signIn.keys?.mak, checkValue4('TDES', clear.tak).slice(0, 6));

        const before = w.platform.network.ledger.balanceOf(CARDS.good.pan);
        const balance = await term.balance(swipe(CARDS.good), CARDS.good.pin);
        assert.equal(balance.responseCode, '00', balance.responseText);
        assert.equal(balance.macVerified, true);
        assert.equal(Number(balance.balances?.[0]?.amount), before);

        const purchase = await term.purchase(swipe(CARDS.good), 1234, CARDS.good.pin);
        assert.equal(purchase.responseCode, '00', purchase.responseText);
        assert.equal(purchase.approved, true);
        assert.equal(purchase.macVerified, true);
        assert.match(purchase.authCode ?? '', /^\w{6}$/);
        assert.match(purchase.rrn ?? '', /^\d{12}$/);
        assert.equal(w.platform.network.ledger.balanceOf(CARDS.good.pan), before - 1234);

        const journal = await w.admin('GET', `/journal?tid=${t.tid}&order=asc`);
        assert.equal(journal.status, 200);
        const types = journal.body.entries.map((e: { txnType: string }) => e.txnType);
        assert.deepEqual(types, ['sign_in', 'balance', 'purchase']);
        const row = journal.body.entries[2];
        assert.equal(row.status, 'approved');
        assert.equal(row.amount, 1234);
        assert.equal(row.rrn, purchase.rrn);
        assert.equal(
          row.panMasked,
          `${CARDS.good.pan.slice(0, 6)}${'*'.repeat(CARDS.good.pan.length - 10)}${CARDS.good.pan.slice(-4)}`,
        );
        assert.equal(
          JSON.stringify(journal.body).includes(CARDS.good.pan),
          false,
          'no clear PAN in the journal view',
        );
        assert.equal('panHash' in row, false);
      } finally {
        await term.close();
      }
    });

    it('answers a replayed purchase 94 and forwards it once', async () => {
      const t = await w.registerKnown(nextTid('R'));
      const raw = await RawTerminal.connect(w.platform.ports.terminal);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        const body = packMaced(
          purchaseMessage(t.tid, '000002', {
            ...CARDS.good,
            amount: 77,
            pinBlock: pinBlockHex(keys, CARDS.good.pin, CARDS.good.pan),
          }),
          keys,
        );
        const received = w.platform.network.simulator.stats().received;
        const first = await raw.exchange(body);
        assert.equal(first.msg[39], '00');
        assert.equal(replyMacOk(first, keys), true);
        const replay = await raw.exchange(body);
        assert.equal(replay.msg[39], '94');
        assert.equal(
          w.platform.network.simulator.stats().received,
          received + 1,
          'the replay never reached the network',
        );
        const row = (await w.admin('GET', `/journal?tid=${t.tid}&stan=2`)).body.entries;
        assert.ok(
          row.some((r: { mti: string; status: string }) => r.mti === '0200' && r.status === 'approved'),
        );
      } finally {
        raw.close();
      }
    });

    it('the network timing out while the terminal waits → the terminal reverses, the host acknowledges', async () => {
      const t = await w.registerKnown(nextTid('T'));
      const term = w.terminal(t, { timeouts: { responseMs: 400, connectMs: 2000 } });
      const net = w.platform.network.simulator;
      try {
        assert.equal((await term.signIn()).approved, true);
        net.setFaults({ delayMs: 1000 });
        const r = await term.purchase(swipe(CARDS.good), 500, CARDS.good.pin);
        assert.equal(r.outcome, 'timeout');
        assert.equal(r.approved, false);
        assert.equal(r.reversal?.reason, '98');
        assert.equal(r.reversal?.acknowledged, true, r.reversal?.error);
        assert.deepEqual(await term.pendingReversals(), []);
        await eventually(async () => {
          const rows = (await w.admin('GET', `/journal?tid=${t.tid}`)).body.entries as { txnType: string }[];
          return rows.some((x) => x.txnType === 'reversal');
        });
      } finally {
        net.setFaults({});
        await term.close();
      }
    });

    it('the host answers 98 when the network is silent past its own deadline', async () => {
      const t = await w.registerKnown(nextTid('N'));
      const term = w.terminal(t);
      const net = w.platform.network.simulator;
      try {
        assert.equal((await term.signIn()).approved, true);
        net.setFaults({ dropRate: 1 });
        const r = await term.purchase(swipe(CARDS.good), 501, CARDS.good.pin);
        assert.equal(r.responseCode, '98');
        assert.equal(r.macVerified, true);
        assert.equal(r.approved, false);
      } finally {
        net.setFaults({});
        await term.close();
      }
    });

    it('refuses a sign-in from an unregistered terminal with 97', async () => {
      const raw = await RawTerminal.connect(w.platform.ports.terminal);
      try {
        const reply = await raw.exchange(pack(POS_DIALECT, signInMessage('NOSUCH01', '000001', '003')));
        assert.equal(reply.msg[39], '97');
        assert.equal(reply.msg[62], undefined);
      } finally {
        raw.close();
      }
    });
  });
}
