/**
 * Void, refund, pre-authorisation (and its void), completion (online and advice) and completion
 * void, end to end over real TCP: raw terminal → host → network simulator, on SQLite and on
 * PostgreSQL. For each: the approval, each refusal code, the errors (bad MAC → A0, bad field 61 →
 * 30), the journal's status transitions and the network ledger's balance and holds after each.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IsoMessage } from '../../src/iso8583/index.js';
import { isSettled } from '../../src/store/settlement.js';
import type { Dialect } from '../../src/store/types.js';
import {
  assertPostgresReachable,
  postgresFixture,
  type StoreFixture,
  sqliteFixture,
} from '../store/helpers.js';
import {
  CARDS,
  packMaced,
  purchaseMessage,
  type RawKeys,
  RawTerminal,
  rawSignIn,
  replyMacOk,
  startWorld,
  swipe,
  type World,
} from './helpers.js';

interface Kind {
  mti: string;
  f3: string;
  f25: string;
  f601: string;
}

const KINDS = {
  purchase: { mti: '0200', f3: '000000', f25: '00', f601: '22' },
  void: { mti: '0200', f3: '200000', f25: '00', f601: '23' },
  refund: { mti: '0220', f3: '200000', f25: '00', f601: '25' },
  preauth: { mti: '0100', f3: '030000', f25: '06', f601: '10' },
  preauthVoid: { mti: '0100', f3: '200000', f25: '06', f601: '11' },
  completion: { mti: '0200', f3: '000000', f25: '06', f601: '20' },
  completionAdvice: { mti: '0220', f3: '000000', f25: '06', f601: '24' },
  completionVoid: { mti: '0200', f3: '200000', f25: '06', f601: '21' },
} as const satisfies Record<string, Kind>;

type Card = { pan: string; expiry: string };

/** A swiped request of `kind` without PIN; `original` adds 61 (batch, trace, date) and 37. */
function message(
  tid: string,
  stan: number,
  kind: Kind,
  card: Card,
  amount: number,
  original?: { stan: number; rrn: string; batch?: string },
): IsoMessage {
  const msg = purchaseMessage(tid, String(stan).padStart(6, '0'), { ...card, amount });
  msg[0] = kind.mti;
  msg[3] = kind.f3;
  msg[25] = kind.f25;
  msg[60] = { 1: kind.f601, 2: '000001', 3: '000' };
  if (original !== undefined) {
    msg[37] = original.rrn;
    msg[61] = { 1: original.batch ?? '000001', 2: String(original.stan).padStart(6, '0'), 3: '1207' };
  }
  return msg;
}

function suite(dialect: Dialect, makeFixture: () => Promise<StoreFixture>): void {
  describe(`transactions on ${dialect}`, { timeout: 180_000 }, () => {
    let w: World;
    let seq = 0;

    before(async () => {
      if (dialect === 'postgres') await assertPostgresReachable();
      w = await startWorld(await makeFixture());
    });
    after(async () => {
      await w?.close();
    });

    /** A signed-in raw terminal with its own STAN counter. */
    async function session() {
      const t = await w.register(`X${String(++seq).padStart(7, '0')}`);
      const raw = await RawTerminal.connect(w.port);
      const { keys } = await rawSignIn(raw, t, '000001');
      let stan = 1;
      const send = async (msg: (stan: number) => IsoMessage, k: RawKeys = keys, badMac?: string) => {
        const s = ++stan;
        const reply = await raw.exchange(packMaced(msg(s), k, badMac));
        return { stan: s, msg: reply.msg, reply };
      };
      return { t, raw, keys, send };
    }

    const balance = (card: Card = CARDS.good) => w.network.ledger.balanceOf(card.pan);
    const held = (card: Card = CARDS.good) => w.network.ledger.heldOn(card.pan);

    it('voids a purchase: credited back once, the original journalled voided; refusals 12, 25, 13, 30, A0', async () => {
      const { t, raw, keys, send } = await session();
      try {
        const start = balance();
        const sale = await send((s) => message(t.tid, s, KINDS.purchase, CARDS.good, 1500));
        assert.equal(sale.msg[39], '00');
        const rrn = sale.msg[37] as string;
        assert.equal(balance(), start - 1500);
        const orig = { stan: sale.stan, rrn };

        // Errors and refusals first, none of which touch the ledger.
        const badMac = await send(
          (s) => message(t.tid, s, KINDS.void, CARDS.good, 1500, orig),
          keys,
          '3132333435363738',
        );
        assert.equal(badMac.msg[39], 'A0');
        const no61 = await send((s) => {
          const m = message(t.tid, s, KINDS.void, CARDS.good, 1500, orig);
          delete m[61];
          return m;
        });
        assert.equal(no61.msg[39], '30');
        assert.equal(replyMacOk(no61.reply, keys), true);
        const unknown = await send((s) =>
          message(t.tid, s, KINDS.void, CARDS.good, 1500, { stan: 999, rrn }),
        );
        assert.equal(unknown.msg[39], '25');
        const otherRrn = await send((s) =>
          message(t.tid, s, KINDS.void, CARDS.good, 1500, { ...orig, rrn: '000000000001' }),
        );
        assert.equal(otherRrn.msg[39], '25');
        const otherCard = await send((s) => message(t.tid, s, KINDS.void, CARDS.low, 1500, orig));
        assert.equal(otherCard.msg[39], '25');
        const otherBatch = await send((s) =>
          message(t.tid, s, KINDS.void, CARDS.good, 1500, { ...orig, batch: '000002' }),
        );
        assert.equal(otherBatch.msg[39], '25');
        const otherAmount = await send((s) => message(t.tid, s, KINDS.void, CARDS.good, 1400, orig));
        assert.equal(otherAmount.msg[39], '13');
        assert.equal(balance(), start - 1500);

        const voided = await send((s) => message(t.tid, s, KINDS.void, CARDS.good, 1500, orig));
        assert.equal(voided.msg[0], '0210');
        assert.equal(voided.msg[39], '00');
        assert.equal(replyMacOk(voided.reply, keys), true);
        assert.match(voided.msg[37] as string, /^\d{12}$/);
        assert.notEqual(voided.msg[37], rrn);
        assert.equal(balance(), start);
        const original = await w.store.journal.get(t.tid, 1, sale.stan, '0200');
        assert.equal(original?.status, 'voided');
        const row = await w.store.journal.get(t.tid, 1, voided.stan, '0200');
        assert.equal(row?.txnType, 'void');
        assert.equal(row?.status, 'approved');
        assert.equal(row?.originalId, original?.id);
        assert.equal(row?.originalStan, sale.stan);

        const again = await send((s) => message(t.tid, s, KINDS.void, CARDS.good, 1500, orig));
        assert.equal(again.msg[39], '12');
        assert.equal(balance(), start);
        // The same void resent (same STAN) is a duplicate, not a second credit.
        const resent = await raw.exchange(
          packMaced(message(t.tid, voided.stan, KINDS.void, CARDS.good, 1500, orig), keys),
        );
        assert.equal(resent.msg[39], '94');
        assert.equal(balance(), start);
      } finally {
        raw.close();
      }
    });

    it('refunds a sale in parts, never more than it in total; a voided sale is not refunded (12)', async () => {
      const { t, raw, send } = await session();
      try {
        const start = balance();
        const sale = await send((s) => message(t.tid, s, KINDS.purchase, CARDS.good, 1000));
        assert.equal(sale.msg[39], '00');
        const orig = { stan: sale.stan, rrn: sale.msg[37] as string };
        const first = await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 600, orig));
        assert.equal(first.msg[0], '0230');
        assert.equal(first.msg[39], '00');
        assert.equal(balance(), start - 400);
        const over = await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 500, orig));
        assert.equal(over.msg[39], '13');
        assert.equal(balance(), start - 400);
        const rest = await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 400, orig));
        assert.equal(rest.msg[39], '00');
        assert.equal(balance(), start);
        const more = await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 1, orig));
        assert.equal(more.msg[39], '13');
        const unknown = await send((s) =>
          message(t.tid, s, KINDS.refund, CARDS.good, 1, { ...orig, stan: 998 }),
        );
        assert.equal(unknown.msg[39], '25');
        const refunds = await w.store.journal.list({
          originalId: (await w.store.journal.get(t.tid, 1, sale.stan, '0200'))!.id,
        });
        assert.deepEqual(
          refunds.map((r) => [r.txnType, r.responseCode, r.amount]),
          [
            ['refund', '00', 600],
            ['refund', '13', 500],
            ['refund', '00', 400],
            ['refund', '13', 1],
          ],
        );

        // A sale partly refunded cannot be voided as well (the network refuses: 12).
        const sale3 = await send((s) => message(t.tid, s, KINDS.purchase, CARDS.good, 300));
        const orig3 = { stan: sale3.stan, rrn: sale3.msg[37] as string };
        assert.equal(
          (await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 100, orig3))).msg[39],
          '00',
        );
        assert.equal(
          (await send((s) => message(t.tid, s, KINDS.void, CARDS.good, 300, orig3))).msg[39],
          '12',
        );
        assert.equal(
          (await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 200, orig3))).msg[39],
          '00',
        );

        const sale2 = await send((s) => message(t.tid, s, KINDS.purchase, CARDS.good, 700));
        const orig2 = { stan: sale2.stan, rrn: sale2.msg[37] as string };
        assert.equal(
          (await send((s) => message(t.tid, s, KINDS.void, CARDS.good, 700, orig2))).msg[39],
          '00',
        );
        assert.equal(
          (await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 100, orig2))).msg[39],
          '12',
        );
        assert.equal(balance(), start);
      } finally {
        raw.close();
      }
    });

    it('a settled sale cannot be voided (12) but can still be refunded', async () => {
      const { t, raw, send } = await session();
      try {
        const start = balance();
        const sale = await send((s) => message(t.tid, s, KINDS.purchase, CARDS.good, 400));
        const orig = { stan: sale.stan, rrn: sale.msg[37] as string };
        const row = await w.store.journal.get(t.tid, 1, sale.stan, '0200');
        // What settling the batch does to its rows (without advancing the batch, so the void is in it).
        await w.store.transaction((tx) =>
          tx.db.updateTable('journal').set({ settled_at: Date.now() }).where('id', '=', row!.id).execute(),
        );
        assert.equal((await send((s) => message(t.tid, s, KINDS.void, CARDS.good, 400, orig))).msg[39], '12');
        assert.equal(balance(), start - 400);
        assert.equal(
          (await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 400, orig))).msg[39],
          '00',
        );
        assert.equal(balance(), start);
        const settled = await w.store.journal.get(t.tid, 1, sale.stan, '0200');
        assert.equal(settled?.status, 'approved');
        assert.ok(settled !== undefined && isSettled(settled));
      } finally {
        raw.close();
      }
    });

    it('pre-authorises (a hold, not a debit), voids the pre-auth (hold released) and refuses a second void (12)', async () => {
      const { t, raw, send } = await session();
      try {
        const start = balance();
        const heldBefore = held();
        const pre = await send((s) => message(t.tid, s, KINDS.preauth, CARDS.good, 2000));
        assert.equal(pre.msg[0], '0110');
        assert.equal(pre.msg[39], '00');
        assert.match(pre.msg[38] as string, /^\d{6}$/);
        assert.equal(balance(), start);
        assert.equal(held(), heldBefore + 2000);
        const orig = { stan: pre.stan, rrn: pre.msg[37] as string };
        const wrongAmount = await send((s) => message(t.tid, s, KINDS.preauthVoid, CARDS.good, 1999, orig));
        assert.equal(wrongAmount.msg[39], '13');
        const released = await send((s) => message(t.tid, s, KINDS.preauthVoid, CARDS.good, 2000, orig));
        assert.equal(released.msg[0], '0110');
        assert.equal(released.msg[39], '00');
        assert.equal(held(), heldBefore);
        assert.equal(balance(), start);
        assert.equal((await w.store.journal.get(t.tid, 1, pre.stan, '0100'))?.status, 'voided');
        const again = await send((s) => message(t.tid, s, KINDS.preauthVoid, CARDS.good, 2000, orig));
        assert.equal(again.msg[39], '12');
        // A hold counts against the available balance: the low card (50.00) cannot hold more.
        const low = await send((s) => message(t.tid, s, KINDS.preauth, CARDS.low, 4000));
        assert.equal(low.msg[39], '00');
        const over = await send((s) => message(t.tid, s, KINDS.purchase, CARDS.low, 2000));
        assert.equal(over.msg[39], '51');
        const lowOrig = { stan: low.stan, rrn: low.msg[37] as string };
        assert.equal(
          (await send((s) => message(t.tid, s, KINDS.preauthVoid, CARDS.low, 4000, lowOrig))).msg[39],
          '00',
        );
        assert.equal(held(CARDS.low), 0);
      } finally {
        raw.close();
      }
    });

    it('completes a pre-auth (hold to debit, at most the amount), voids the completion, refuses 25/12/13/30/A0', async () => {
      const { t, raw, keys, send } = await session();
      try {
        const start = balance();
        const heldBefore = held();
        const pre = await send((s) => message(t.tid, s, KINDS.preauth, CARDS.good, 3000));
        assert.equal(pre.msg[39], '00');
        const orig = { stan: pre.stan, rrn: pre.msg[37] as string };
        const none = await send((s) =>
          message(t.tid, s, KINDS.completion, CARDS.good, 100, { ...orig, stan: 997 }),
        );
        assert.equal(none.msg[39], '25');
        const over = await send((s) => message(t.tid, s, KINDS.completion, CARDS.good, 3001, orig));
        assert.equal(over.msg[39], '13');
        const bad61 = await send((s) => {
          const m = message(t.tid, s, KINDS.completion, CARDS.good, 100, orig);
          m[61] = { 1: '000001' };
          return m;
        });
        assert.equal(bad61.msg[39], '30');
        const badMac = await send(
          (s) => message(t.tid, s, KINDS.completion, CARDS.good, 2500, orig),
          keys,
          '3132333435363738',
        );
        assert.equal(badMac.msg[39], 'A0');
        assert.equal(held(), heldBefore + 3000);

        const done = await send((s) => message(t.tid, s, KINDS.completion, CARDS.good, 2500, orig));
        assert.equal(done.msg[39], '00');
        assert.equal(balance(), start - 2500);
        assert.equal(held(), heldBefore);
        assert.equal((await w.store.journal.get(t.tid, 1, pre.stan, '0100'))?.status, 'completed');
        const twice = await send((s) => message(t.tid, s, KINDS.completion, CARDS.good, 100, orig));
        assert.equal(twice.msg[39], '12');

        const cOrig = { stan: done.stan, rrn: done.msg[37] as string };
        const wrong = await send((s) => message(t.tid, s, KINDS.completionVoid, CARDS.good, 2400, cOrig));
        assert.equal(wrong.msg[39], '13');
        const undone = await send((s) => message(t.tid, s, KINDS.completionVoid, CARDS.good, 2500, cOrig));
        assert.equal(undone.msg[39], '00');
        assert.equal(balance(), start);
        assert.equal((await w.store.journal.get(t.tid, 1, done.stan, '0200'))?.status, 'voided');
        const again = await send((s) => message(t.tid, s, KINDS.completionVoid, CARDS.good, 2500, cOrig));
        assert.equal(again.msg[39], '12');
        assert.equal(balance(), start);
      } finally {
        raw.close();
      }
    });

    it('runs every follow-up from the terminal simulator, STANs and batch kept, the ledger back where it began', async () => {
      const t = await w.register(`X${String(++seq).padStart(7, '0')}`);
      const term = w.terminal(t);
      const card = swipe(CARDS.good);
      const ref = (r: { stan: string; rrn?: string }) => ({ batch: '000001', stan: r.stan, rrn: r.rrn! });
      try {
        const start = balance();
        const heldBefore = held();
        const sale = await term.purchase(card, 900, CARDS.good.pin);
        assert.equal(sale.responseCode, '00');
        const voided = await term.void(card, ref(sale), 900);
        assert.equal(voided.type, 'void');
        assert.equal(voided.responseCode, '00', voided.responseText);
        assert.equal(voided.macVerified, true);
        assert.equal(Number(voided.stan), Number(sale.stan) + 1);
        const again = await term.void(card, ref(sale), 900);
        assert.equal(again.responseCode, '12');
        assert.equal(again.outcome, 'declined');
        assert.equal(balance(), start);

        const sale2 = await term.purchase(card, 500, CARDS.good.pin);
        assert.equal((await term.refund(card, ref(sale2), 500)).responseCode, '00');
        assert.equal((await term.refund(card, ref(sale2), 1)).responseText, 'invalid amount');

        const pre = await term.preauth(card, 1200, CARDS.good.pin);
        assert.equal(pre.responseCode, '00');
        assert.equal(held(), heldBefore + 1200);
        assert.equal((await term.preauthVoid(card, ref(pre), 1200)).responseCode, '00');
        assert.equal(held(), heldBefore);

        const pre2 = await term.preauth(card, 1000, CARDS.good.pin);
        const done = await term.complete(card, ref(pre2), 1000);
        assert.equal(done.responseCode, '00');
        assert.equal(balance(), start - 1000);
        assert.equal((await term.completionVoid(card, ref(done), 1000)).responseCode, '00');

        const pre3 = await term.preauth(card, 300);
        const advice = await term.completeAdvice(card, ref(pre3), 300);
        assert.equal(advice.responseCode, '00');
        assert.equal(balance(), start - 300);
        assert.equal((await term.refund(card, ref(advice), 300)).responseCode, '00');
        assert.equal(balance(), start);
        assert.deepEqual(await term.pendingReversals(), []);
      } finally {
        await term.close();
      }
    });

    it('takes a completion advice (0220 → 0230) against a pre-auth: the hold becomes a debit', async () => {
      const { t, raw, send } = await session();
      try {
        const start = balance();
        const pre = await send((s) => message(t.tid, s, KINDS.preauth, CARDS.good, 800));
        const orig = { stan: pre.stan, rrn: pre.msg[37] as string };
        const advice = await send((s) => message(t.tid, s, KINDS.completionAdvice, CARDS.good, 800, orig));
        assert.equal(advice.msg[0], '0230');
        assert.equal(advice.msg[39], '00');
        assert.equal(balance(), start - 800);
        const row = await w.store.journal.get(t.tid, 1, advice.stan, '0220');
        assert.equal(row?.txnType, 'completion_advice');
        // Refund against the completed sale, then the ledger is back where it started.
        const aOrig = { stan: advice.stan, rrn: advice.msg[37] as string };
        assert.equal(
          (await send((s) => message(t.tid, s, KINDS.refund, CARDS.good, 800, aOrig))).msg[39],
          '00',
        );
        assert.equal(balance(), start);
      } finally {
        raw.close();
      }
    });
  });
}

suite('sqlite', sqliteFixture);
suite('postgres', postgresFixture);
