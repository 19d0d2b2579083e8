/**
 * The host end to end, everything real: terminal simulator → host (TCP, 127.0.0.1:0) → network
 * simulator, the host's HSM in process, the store on SQLite and on PostgreSQL. One suite function,
 * run once per database.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pack } from '../../src/iso8583/index.js';
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';
import type { Dialect } from '../../src/store/types.js';
import type { FrameEvent } from '../../src/terminal/connection.js';
import {
  assertPostgresReachable,
  postgresFixture,
  type StoreFixture,
  sqliteFixture,
} from '../store/helpers.js';
import {
  CARDS,
  checkValue4,
  eventually,
  MID,
  OTHER_MID,
  openKeyBlock,
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

function hostSuite(dialect: Dialect, makeFixture: () => Promise<StoreFixture>): void {
  describe(`host on ${dialect}`, { timeout: 180_000 }, () => {
    let w: World;
    let seq = 0;
    /** A fresh TID per test: tests share one world. */
    const nextTid = (prefix = 'T') =>
      `${prefix}${String(++seq).padStart(7 - prefix.length + 1, '0')}`.slice(0, 8);

    before(async () => {
      if (dialect === 'postgres') await assertPostgresReachable();
      w = await startWorld(await makeFixture());
    });
    after(async () => {
      await w?.close();
    });

    for (const [code, algorithm] of [
      ['001', 'TDES'],
      ['003', 'TDES'],
      ['004', 'TDES'],
      ['006', 'SM4'],
    ] as const) {
      it(`signs in with 60.3 = ${code}: field 62 opens under the TMK and every check value matches`, async () => {
        const t = await w.register(nextTid('S'), { algorithm });
        const frames: FrameEvent[] = [];
        const term = w.terminal(
          t,
          { signInCode: code, trackEncryption: code === '004' || code === '006' },
          (e) => frames.push(e),
        );
        try {
          const result = await term.signIn();
          assert.equal(result.approved, true, `sign-in answered ${result.responseCode}`);
          const reply = frames.find((f) => f.direction === 'received')?.message;
          assert.ok(reply, 'the 0810 was received');
          assert.equal(reply[0], '0810');
          assert.equal(reply[39], '00');
          assert.match(String(reply[12]), /^\d{6}$/);
          assert.match(String(reply[13]), /^\d{4}$/);
          assert.equal(reply[32], w.config.acquirerId);
          assert.match(String(reply[37]), /^\d{12}$/);
          assert.deepEqual(reply[60], { 1: '00', 2: '000001', 3: code });
          assert.equal(reply[64], undefined, 'no MAC on an 0810');
          const clear = openKeyBlock(reply[62] as string, code, t.tmk, algorithm);
          assert.equal(clear.tpk.length, code === '001' ? 8 : 16);
          assert.equal(clear.tak.length, algorithm === 'SM4' ? 16 : 8);
          assert.equal(clear.tdk !== undefined, code === '004' || code === '006');
          // The host stored LMK blocks of the same keys.
          const stored = await w.store.terminals.get(t.tid);
          const cipher = algorithm === 'SM4' ? 'sm4' : 'tdes';
          const wk = stored!.workingKeys!;
          assert.equal(wk.tak!.kcv, checkValue4(cipher, clear.tak));
          assert.equal(wk.tpk!.kcv, checkValue4(cipher, clear.tpk));
          assert.equal(
            (await w.client.checkValue(wk.tak!.block, 'legacy', 4)).value,
            checkValue4(cipher, clear.tak),
          );
          assert.equal(stored!.state, 'active');
          // Every sign-in rotates the keys.
          await term.signIn();
          const again = await w.store.terminals.get(t.tid);
          assert.notEqual(again!.workingKeys!.tak!.block, wk.tak!.block);
          // Journalled.
          const row = await w.store.journal.get(t.tid, 1, Number(result.stan), '0800');
          assert.equal(row?.status, 'approved');
          assert.equal(row?.responseCode, '00');
        } finally {
          await term.close();
        }
      });
    }

    it('approves a purchase end to end (PIN under the ZPK, MAC both ways) and journals it durably', async () => {
      const t = await w.register(nextTid());
      const term = w.terminal(t);
      try {
        const r = await term.purchase(swipe(CARDS.good), 1234, CARDS.good.pin);
        assert.equal(r.outcome, 'approved', r.responseText);
        assert.equal(r.responseCode, '00');
        assert.equal(r.macVerified, true);
        assert.match(r.rrn ?? '', /^\d{12}$/);
        assert.match(r.authCode ?? '', /^\d{6}$/);
        const row = await w.store.journal.get(t.tid, 1, Number(r.stan), '0200');
        assert.equal(row?.status, 'approved');
        assert.equal(row?.responseCode, '00');
        assert.equal(row?.amount, 1234);
        assert.equal(row?.rrn, r.rrn);
        assert.equal(row?.panMasked, '622848******0015');
        // Nothing clear in the database.
        assert.doesNotMatch(await w.fixture.dumpJournal(), /6228480000000015/);
      } finally {
        await term.close();
      }
    });

    it('answers a balance inquiry with field 54 from the network', async () => {
      const t = await w.register(nextTid());
      const term = w.terminal(t, { connection: 'per-transaction' });
      try {
        const r = await term.balance(swipe(CARDS.good), CARDS.good.pin);
        assert.equal(r.outcome, 'approved', r.responseText);
        assert.equal(r.macVerified, true);
        assert.ok(r.balances && r.balances.length > 0, 'balances parsed');
        const row = await w.store.journal.get(t.tid, 1, Number(r.stan), '0200');
        assert.equal(row?.txnType, 'balance');
        assert.equal(row?.status, 'approved');
      } finally {
        await term.close();
      }
    });

    it('passes the network decline through: a wrong PIN gets 55, MACed', async () => {
      const t = await w.register(nextTid());
      const term = w.terminal(t);
      try {
        const r = await term.purchase(swipe(CARDS.good), 100, '000000');
        assert.equal(r.responseCode, '55');
        assert.equal(r.outcome, 'declined');
        assert.equal(r.macVerified, true);
        const row = await w.store.journal.get(t.tid, 1, Number(r.stan), '0200');
        assert.equal(row?.status, 'declined');
        assert.equal(row?.networkOutcome, 'declined');
        // Put the PIN counter back: the next right PIN resets it.
        const ok = await term.purchase(swipe(CARDS.good), 100, CARDS.good.pin);
        assert.equal(ok.responseCode, '00');
      } finally {
        await term.close();
      }
    });

    it('answers a bad MAC with A0 (no MAC, re-sign-in nibble), counts it, and does not forward', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        const sentBefore = w.network.simulator.stats().received;
        const msg = purchaseMessage(t.tid, '000002', {
          ...CARDS.good,
          amount: 500,
          pinBlock: pinBlockHex(keys, CARDS.good.pin, CARDS.good.pan),
        });
        const reply = await raw.exchange(packMaced(msg, keys, '3132333435363738'));
        assert.equal(reply.msg[0], '0210');
        assert.equal(reply.msg[39], 'A0');
        assert.equal(reply.msg[64], undefined);
        assert.equal(reply.envelope.header?.processingRequirement, 3);
        assert.equal(w.network.simulator.stats().received, sentBefore, 'not forwarded');
        assert.equal((await w.store.terminals.get(t.tid))?.macFailures, 1);
        const again = await raw.exchange(packMaced({ ...msg, 11: '000003' }, keys, '0000000000000000'));
        assert.equal(again.msg[39], 'A0');
        assert.equal((await w.store.terminals.get(t.tid))?.macFailures, 2);
        // Journalled under the response MTI: the request's own key stays free.
        const row = await w.store.journal.get(t.tid, 1, 2, '0210');
        assert.equal(row?.responseCode, 'A0');
        // The genuine request with that STAN still goes through.
        const good = await raw.exchange(packMaced(msg, keys));
        assert.equal(good.msg[39], '00');
        assert.equal(replyMacOk(good, keys), true);
      } finally {
        raw.close();
      }
    });

    it('answers a replay (same TID + batch + STAN) with 94 and forwards it only once', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        const body = packMaced(
          purchaseMessage(t.tid, '000002', {
            ...CARDS.good,
            amount: 700,
            pinBlock: pinBlockHex(keys, CARDS.good.pin, CARDS.good.pan),
          }),
          keys,
        );
        const before = w.network.simulator.stats().received;
        const first = await raw.exchange(body);
        assert.equal(first.msg[39], '00');
        const second = await raw.exchange(body);
        assert.equal(second.msg[39], '94');
        assert.equal(replyMacOk(second, keys), true, '94 is MACed: the request MAC verified');
        // Concurrent repeats: both in flight at once.
        const body3 = packMaced(
          purchaseMessage(t.tid, '000003', {
            ...CARDS.good,
            amount: 700,
            pinBlock: pinBlockHex(keys, CARDS.good.pin, CARDS.good.pan),
          }),
          keys,
        );
        raw.write(body3);
        raw.write(body3);
        const codes = [(await raw.next()).msg[39], (await raw.next()).msg[39]].sort();
        assert.deepEqual(codes, ['00', '94']);
        assert.equal(w.network.simulator.stats().received - before, 2, 'the network saw each STAN once');
        const original = await w.store.journal.get(t.tid, 1, 2, '0200');
        assert.equal(original?.status, 'approved');
      } finally {
        raw.close();
      }
    });

    it('refuses a repeat caught only by the journal (another process, or after a restart) with 94', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      const other = await w.extraServer();
      const raw2 = await RawTerminal.connect(other.port);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        const body = packMaced(purchaseMessage(t.tid, '000002', { ...CARDS.good, amount: 300 }), keys);
        const before = w.network.simulator.stats().received;
        assert.equal((await raw.exchange(body)).msg[39], '00');
        const second = await raw2.exchange(body);
        assert.equal(second.msg[39], '94');
        assert.equal(w.network.simulator.stats().received - before, 1);
      } finally {
        raw.close();
        raw2.close();
        await other.server.close();
      }
    });

    it('gets expired keys to sign in again (A7), then succeeds', async () => {
      const t = await w.register(nextTid());
      const term = w.terminal(t);
      try {
        assert.equal((await term.signIn()).approved, true);
        w.clock.offsetMs = 25 * 3600_000;
        const r = await term.purchase(swipe(CARDS.good), 200, CARDS.good.pin);
        assert.equal(r.responseCode, 'A7');
        assert.equal(r.macVerified, null, 'A7 carries no MAC');
        assert.equal(r.signIn?.approved, true, 'the terminal signed in again at once');
        const ok = await term.purchase(swipe(CARDS.good), 200, CARDS.good.pin);
        assert.equal(ok.responseCode, '00');
      } finally {
        w.clock.offsetMs = 0;
        await term.close();
      }
    });

    it('answers A7 to a registered terminal that never signed in', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const reply = await raw.exchange(
          pack(POS_DIALECT, {
            ...purchaseMessage(t.tid, '000001', { ...CARDS.good, amount: 1 }),
            64: '0000000000000000',
          }),
        );
        assert.equal(reply.msg[39], 'A7');
        assert.equal(reply.envelope.header?.processingRequirement, 3);
      } finally {
        raw.close();
      }
    });

    it('answers a PIN block that does not decode with 99, without forwarding', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        // A valid format-0 block for another PAN: the fill no longer decodes under this one.
        const block = pinBlockHex(keys, CARDS.good.pin, '6228480000000999123');
        const before = w.network.simulator.stats().received;
        const reply = await raw.exchange(
          packMaced(
            purchaseMessage(t.tid, '000002', { ...CARDS.good, amount: 100, pinBlock: 'FFFFFFFFFFFFFFFF' }),
            keys,
          ),
        );
        assert.equal(reply.msg[39], '99');
        assert.equal(reply.envelope.header?.processingRequirement, 3);
        assert.equal(replyMacOk(reply, keys), true);
        const second = await raw.exchange(
          packMaced(purchaseMessage(t.tid, '000003', { ...CARDS.good, amount: 100, pinBlock: block }), keys),
        );
        assert.equal(second.msg[39], '99');
        assert.equal(w.network.simulator.stats().received, before, 'nothing forwarded');
        const row = await w.store.journal.get(t.tid, 1, 2, '0200');
        assert.equal(row?.responseCode, '99');
      } finally {
        raw.close();
      }
    });

    it("answers an unknown terminal, a blocked one and another merchant's with 97", async () => {
      const raw = await RawTerminal.connect(w.port);
      try {
        const unknown = await raw.exchange(pack(POS_DIALECT, signInMessage('NOSUCH01', '000001', '003')));
        assert.equal(unknown.msg[39], '97');
        assert.equal(unknown.msg[62], undefined);
        const t = await w.register(nextTid());
        const wrongMid = await raw.exchange(
          pack(POS_DIALECT, signInMessage(t.tid, '000002', '003', OTHER_MID)),
        );
        assert.equal(wrongMid.msg[39], '97');
        await w.store.terminals.setState(t.tid, 'blocked');
        w.server.runtime.terminals.forget(t.tid);
        const blocked = await raw.exchange(pack(POS_DIALECT, signInMessage(t.tid, '000003', '003')));
        assert.equal(blocked.msg[39], '97');
        // The terminal simulator reports the decline.
        const term = w.terminal({ tid: 'NOSUCH02', algorithm: 'TDES', tmk: Buffer.alloc(16, 1) });
        const s = await term.signIn();
        assert.equal(s.approved, false);
        assert.equal(s.responseCode, '97');
        await term.close();
      } finally {
        raw.close();
      }
    });

    it('answers 40 to a sign-in code that does not fit the terminal, and to unsupported transactions', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const sm4Code = await raw.exchange(pack(POS_DIALECT, signInMessage(t.tid, '000001', '006')));
        assert.equal(sm4Code.msg[39], '40');
        const { keys } = await rawSignIn(raw, t, '000002');
        // An offline purchase upload (60.1 = 36): no route for it.
        const offline = {
          ...purchaseMessage(t.tid, '000003', { ...CARDS.good, amount: 1 }),
          60: { 1: '36', 2: '000001', 3: '000' },
        };
        const reply = await raw.exchange(packMaced(offline, keys));
        assert.equal(reply.msg[0], '0210');
        assert.equal(reply.msg[39], '40');
      } finally {
        raw.close();
      }
    });

    it('answers 98 when the network does not answer in time, and journals the request in doubt', async () => {
      const t = await w.register(nextTid());
      const term = w.terminal(t, { reverseImmediately: true });
      w.network.simulator.setFaults({ dropRate: 1 });
      try {
        const r = await term.purchase(swipe(CARDS.good), 900, CARDS.good.pin);
        assert.equal(r.responseCode, '98');
        assert.equal(r.macVerified, true);
        const row = await w.store.journal.get(t.tid, 1, Number(r.stan), '0200');
        assert.equal(row?.status, 'in_doubt');
        assert.equal(row?.networkOutcome, 'timeout');
        assert.equal(row?.responseCode, '98');
      } finally {
        w.network.simulator.setFaults({});
        await term.close();
      }
    });

    it('acknowledges a reversal (0410, 00, MACed), journals it once, and is idempotent', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        const purchase = purchaseMessage(t.tid, '000002', { ...CARDS.good, amount: 250 });
        assert.equal((await raw.exchange(packMaced(purchase, keys))).msg[39], '00');
        const reversal = {
          0: '0400',
          2: purchase[2],
          3: '000000',
          4: purchase[4],
          11: '000002',
          14: purchase[14],
          22: '022',
          25: '00',
          39: '98',
          41: t.tid,
          42: MID,
          49: '156',
          60: purchase[60],
        } as typeof purchase;
        const ack = await raw.exchange(packMaced(reversal, keys));
        assert.equal(ack.msg[0], '0410');
        assert.equal(ack.msg[39], '00');
        assert.equal(replyMacOk(ack, keys), true);
        const again = await raw.exchange(packMaced(reversal, keys));
        assert.equal(again.msg[39], '00');
        const rows = await w.store.journal.list({ tid: t.tid });
        const reversals = rows.filter((r) => r.mti === '0400');
        assert.equal(reversals.length, 1);
        const original = rows.find((r) => r.mti === '0200');
        assert.equal(reversals[0]!.originalId, original?.id);
        assert.equal(reversals[0]!.status, 'received');
        // A reversal with a bad MAC is not acknowledged.
        const bad = await raw.exchange(packMaced({ ...reversal, 11: '000009' }, keys, '0000000000000000'));
        assert.equal(bad.msg[39], 'A0');
      } finally {
        raw.close();
      }
    });

    it('signs off: the keys are forgotten and the next purchase gets A7', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        const off = await raw.exchange(
          pack(POS_DIALECT, {
            0: '0820',
            11: '000002',
            41: t.tid,
            42: MID,
            60: { 1: '00', 2: '000001', 3: '002' },
          }),
        );
        assert.equal(off.msg[0], '0830');
        assert.equal(off.msg[39], '00');
        assert.equal((await w.store.terminals.get(t.tid))?.workingKeys?.tak, null);
        const after = await raw.exchange(
          packMaced(purchaseMessage(t.tid, '000003', { ...CARDS.good, amount: 1 }), keys),
        );
        assert.equal(after.msg[39], 'A7');
      } finally {
        raw.close();
      }
    });

    // SM4 terminals reach the SM4 dialect (16-byte field 52) by their TPDU destination.
    it('serves an SM4 terminal (006): SM4 PIN block, TDK track decryption and SM4 MACs both ways', async () => {
      const t = await w.register(nextTid(), { algorithm: 'SM4' });
      const term = w.terminal(t, { trackEncryption: true });
      try {
        const r = await term.purchase(swipe(CARDS.good), 321, CARDS.good.pin);
        assert.equal(r.responseCode, '00', r.responseText);
        const wrong = await term.purchase(swipe(CARDS.good), 321, '654321');
        assert.equal(wrong.responseCode, '55', 'the PIN reached the network under the ZPK and was checked');
        const again = await term.purchase(swipe(CARDS.good), 321);
        assert.equal(again.responseCode, '00', again.responseText);
        assert.equal(again.macVerified, true);
      } finally {
        await term.close();
      }
    });

    it('decrypts a TDK-encrypted track (004) and takes X9.19 MACs from a terminal profiled for them', async () => {
      const t = await w.register(nextTid());
      const x919 = await w.extraServer({ terminalMac: { [t.tid]: 'x919' } });
      const tdk = w.terminal(t, { trackEncryption: true, port: x919.port, macAlgorithm: 'x919' });
      try {
        const r = await tdk.purchase(swipe(CARDS.good), 111, CARDS.good.pin);
        assert.equal(r.responseCode, '00', r.responseText);
        assert.equal(r.macVerified, true);
      } finally {
        await tdk.close();
        await x919.server.close();
      }
    });

    it('serves 50 terminals at once, each signing in and buying', async () => {
      const terms = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const t = await w.register(nextTid('M'));
          return w.terminal(t, { connection: i % 2 === 0 ? 'persistent' : 'per-transaction' });
        }),
      );
      try {
        const results = await Promise.all(
          terms.map((term) => term.purchase(swipe(CARDS.good), 10, CARDS.good.pin)),
        );
        assert.deepEqual(
          results.map((r) => r.responseCode),
          results.map(() => '00'),
        );
        assert.ok(results.every((r) => r.macVerified === true));
      } finally {
        await Promise.all(terms.map((t) => t.close()));
      }
    });

    it('sends no approval before its journal row is durable (the journal held by another connection)', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        const unlock = await w.fixture.lockJournal();
        let replied = false;
        const pending = raw.exchange(
          packMaced(purchaseMessage(t.tid, '000002', { ...CARDS.good, amount: 40 }), keys),
          10_000,
        );
        void pending.then(() => {
          replied = true;
        });
        await new Promise((r) => setTimeout(r, 400));
        assert.equal(replied, false, 'no answer while the journal cannot commit');
        await unlock();
        assert.equal((await pending).msg[39], '00');
        assert.equal((await w.store.journal.get(t.tid, 1, 2, '0200'))?.status, 'approved');
      } finally {
        raw.close();
      }
    });

    it('answers 96 and forwards nothing when the request row cannot be written (write-ahead)', async () => {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      try {
        const { keys } = await rawSignIn(raw, t, '000001');
        const before = w.network.simulator.stats().received;
        await w.fixture.exec('ALTER TABLE journal RENAME TO journal_away');
        try {
          const reply = await raw.exchange(
            packMaced(purchaseMessage(t.tid, '000002', { ...CARDS.good, amount: 41 }), keys),
          );
          assert.equal(reply.msg[39], '96');
          assert.equal(replyMacOk(reply, keys), true);
        } finally {
          await w.fixture.exec('ALTER TABLE journal_away RENAME TO journal');
        }
        assert.equal(w.network.simulator.stats().received, before);
        assert.ok(w.server.metrics().counters['journal.failures']! >= 1);
      } finally {
        raw.close();
      }
    });

    it('overlap journal mode: approves, and a repeat another process caught after forwarding still gets 94', async () => {
      const t = await w.register(nextTid());
      const a = await w.extraServer({ journal: { mode: 'overlap' } });
      const b = await w.extraServer({ journal: { mode: 'overlap' } });
      const rawA = await RawTerminal.connect(a.port);
      const rawB = await RawTerminal.connect(b.port);
      try {
        const { keys } = await rawSignIn(rawA, t, '000001');
        const body = packMaced(purchaseMessage(t.tid, '000002', { ...CARDS.good, amount: 42 }), keys);
        const first = await rawA.exchange(body);
        assert.equal(first.msg[39], '00');
        assert.equal((await rawA.exchange(body)).msg[39], '94', 'caught in memory');
        assert.equal((await rawB.exchange(body)).msg[39], '94', 'caught by the journal');
        assert.equal(b.server.metrics().counters['duplicates.forwarded'], 1);
        assert.equal((await w.store.journal.get(t.tid, 1, 2, '0200'))?.status, 'approved');
      } finally {
        rawA.close();
        rawB.close();
        await a.server.close();
        await b.server.close();
      }
    });

    it('enforces the connection limit and the idle timeout, and answers a half-closed connection', async () => {
      const t = await w.register(nextTid());
      const s = await w.extraServer({ maxConnections: 2, idleTimeout: 150 });
      const one = await RawTerminal.connect(s.port);
      const two = await RawTerminal.connect(s.port);
      try {
        const three = await RawTerminal.connect(s.port);
        await three.closed;
        assert.equal(s.server.metrics().counters['connections.refused'], 1);
        await Promise.all([one.closed, two.closed]);
        assert.equal(s.server.metrics().counters['connections.idleClosed'], 2);
        await eventually(() => s.server.metrics().connections === 0);
        const half = await RawTerminal.connect(s.port);
        half.write(pack(POS_DIALECT, signInMessage(t.tid, '000001', '003')));
        half.socket.end();
        assert.equal((await half.next()).msg[39], '00');
        await half.closed;
      } finally {
        await s.server.close();
      }
    });

    it('closes a connection that sends a bad frame, and answers an unparsable body with 96', async () => {
      const raw = await RawTerminal.connect(w.port);
      const bad = await RawTerminal.connect(w.port);
      try {
        // MTI 0200 and a bitmap announcing field 2, then nothing: does not unpack.
        raw.write(Buffer.from('02004000000000000000', 'hex'));
        const reply = await raw.next();
        assert.equal(reply.msg[0], '0210');
        assert.equal(reply.msg[39], '96');
        bad.socket.write(Buffer.from(`000d${'7000030000'}${'603100000000'}0200`, 'hex'));
        await bad.closed;
        assert.ok(w.server.metrics().counters['frames.bad']! >= 1);
        assert.ok(w.server.metrics().counters['requests.unparsable']! >= 1);
      } finally {
        raw.close();
      }
    });

    it('refuses to listen twice (POSKEY_ERR_HOST_STATE) or on a port in use (POSKEY_ERR_HOST_LISTEN)', async () => {
      await assert.rejects(w.server.listen(), { code: 'POSKEY_ERR_HOST_STATE' });
      await assert.rejects(w.extraServer({ port: w.port }), {
        code: 'POSKEY_ERR_HOST_LISTEN',
        field: 'port',
      });
    });

    it('drains on close(): in-flight transactions are answered, new connections refused', async () => {
      const t = await w.register(nextTid());
      const extra = await w.extraServer();
      const raw = await RawTerminal.connect(extra.port);
      const { keys } = await rawSignIn(raw, t, '000001');
      w.network.simulator.setFaults({ delayMs: 300 });
      try {
        for (let i = 0; i < 5; i++) {
          raw.write(
            packMaced(
              purchaseMessage(t.tid, String(10 + i).padStart(6, '0'), { ...CARDS.good, amount: 5 }),
              keys,
            ),
          );
        }
        await eventually(() => extra.server.metrics().inFlight === 5);
        const closing = extra.server.close();
        const replies = await Promise.all([raw.next(), raw.next(), raw.next(), raw.next(), raw.next()]);
        await closing;
        assert.deepEqual(
          replies.map((r) => r.msg[39]),
          ['00', '00', '00', '00', '00'],
        );
        await raw.closed;
        await assert.rejects(RawTerminal.connect(extra.port));
      } finally {
        w.network.simulator.setFaults({});
      }
    });
  });
}

hostSuite('sqlite', sqliteFixture);
hostSuite('postgres', postgresFixture);
