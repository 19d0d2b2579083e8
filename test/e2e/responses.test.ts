/**
 * Every response-code path a terminal can meet, over real TCP against the whole platform:
 * the network's decisions passing through the host (00 51 54 55 62 75 14), the host's own refusals
 * (94 97 98 99 A0 A7 40 96), and what the terminal does with each.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { toHex } from '../../src/crypto/bytes.js';
import { pack } from '../../src/iso8583/index.js';
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';
import {
  CARDS,
  MID,
  nextTid,
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

describe('response codes end to end', () => {
  let w: World;
  before(async () => {
    w = await startWorld('sqlite');
  });
  after(async () => {
    await w?.close();
  });

  /** A signed-in terminal simulator for each test. */
  async function signedIn() {
    const t = await w.registerKnown(nextTid('C'));
    const term = w.terminal(t);
    assert.equal((await term.signIn()).approved, true);
    return { t, term };
  }

  it('passes the network decisions through, MACed: 00, 51, 54, 62, 14', async () => {
    const { term } = await signedIn();
    try {
      const cases: [string, { pan: string; expiry: string; pin: string }, number][] = [
        ['00', CARDS.good, 100],
        ['51', CARDS.low, 6000],
        ['54', CARDS.expired, 100],
        ['62', CARDS.blocked, 100],
        ['14', CARDS.unknown, 100],
      ];
      for (const [rc, card, amount] of cases) {
        const r = await term.purchase(swipe(card), amount, card.pin);
        assert.equal(r.responseCode, rc, `${card.pan}: ${r.responseText}`);
        assert.equal(r.macVerified, true, `${rc} carries a MAC`);
        assert.equal(r.approved, rc === '00');
      }
    } finally {
      await term.close();
    }
  });

  it('a wrong PIN → 55, and the third wrong PIN → 75', async () => {
    const { term } = await signedIn();
    try {
      const card = CARDS.credit;
      const first = await term.purchase(swipe(card), 100, '999999');
      assert.equal(first.responseCode, '55');
      assert.equal(first.macVerified, true);
      assert.equal((await term.purchase(swipe(card), 100, '999998')).responseCode, '55');
      assert.equal((await term.purchase(swipe(card), 100, '999997')).responseCode, '75');
      assert.equal(
        (await term.purchase(swipe(card), 100, card.pin)).responseCode,
        '75',
        'blocked even with the right PIN',
      );
    } finally {
      await term.close();
    }
  });

  it('97 for an unknown terminal, a blocked one (admin API) and another merchant; unblocking restores it', async () => {
    const { t, term } = await signedIn();
    const raw = await RawTerminal.connect(w.platform.ports.terminal);
    try {
      const unknown = await raw.exchange(pack(POS_DIALECT, signInMessage('ZZZZ0001', '000001', '003')));
      assert.equal(unknown.msg[39], '97');
      const blocked = await w.admin('PATCH', `/terminals/${t.tid}`, { state: 'blocked' });
      assert.equal(blocked.status, 200);
      assert.equal(blocked.body.state, 'blocked');
      const refused = await term.purchase(swipe(CARDS.good), 100, CARDS.good.pin);
      assert.equal(refused.responseCode, '97');
      assert.equal(refused.macVerified, null, '97 carries no MAC');
      const other = pack(POS_DIALECT, { ...signInMessage(t.tid, '000009', '003'), 42: '104110070110814' });
      assert.equal((await raw.exchange(other)).msg[39], '97');
      assert.equal((await w.admin('PATCH', `/terminals/${t.tid}`, { state: 'active' })).body.state, 'active');
      const again = await term.purchase(swipe(CARDS.good), 100, CARDS.good.pin);
      assert.equal(again.responseCode, '00', again.responseText);
    } finally {
      raw.close();
      await term.close();
    }
  });

  it('A0 for a bad MAC (not forwarded), 99 for a PIN block that does not decode, A7 before sign-in', async () => {
    const t = await w.registerKnown(nextTid('C'));
    const raw = await RawTerminal.connect(w.platform.ports.terminal);
    try {
      const early = await raw.exchange(
        pack(POS_DIALECT, {
          ...purchaseMessage(t.tid, '000001', { ...CARDS.good, amount: 10 }),
          64: '0000000000000000',
        }),
      );
      assert.equal(early.msg[39], 'A7');
      assert.equal(
        early.envelope.header?.processingRequirement,
        3,
        'the header asks the terminal to sign in',
      );
      const { keys } = await rawSignIn(raw, t, '000002');
      const received = w.platform.network.simulator.stats().received;
      const tampered = await raw.exchange(
        packMaced(purchaseMessage(t.tid, '000003', { ...CARDS.good, amount: 10 }), keys, '0102030405060708'),
      );
      assert.equal(tampered.msg[39], 'A0');
      assert.equal(tampered.msg[64], undefined);
      // Format 0 needs control nibble 0; this block decrypts to control nibble F.
      const bad = toHex(keys.tpk.ecbEncrypt(Buffer.from('F41234FFFFFFFFFF', 'hex')));
      const r99 = await raw.exchange(
        packMaced(purchaseMessage(t.tid, '000004', { ...CARDS.good, amount: 10, pinBlock: bad }), keys),
      );
      assert.equal(r99.msg[39], '99');
      assert.equal(w.platform.network.simulator.stats().received, received, 'neither reached the network');
      const ok = await raw.exchange(
        packMaced(
          purchaseMessage(t.tid, '000005', {
            ...CARDS.good,
            amount: 10,
            pinBlock: pinBlockHex(keys, CARDS.good.pin, CARDS.good.pan),
          }),
          keys,
        ),
      );
      assert.equal(ok.msg[39], '00');
      assert.equal(replyMacOk(ok, keys), true);
    } finally {
      raw.close();
    }
  });

  it('40 for a sign-in code that does not fit the terminal; 96 for a terminal registered without a TMK', async () => {
    const t = await w.registerKnown(nextTid('C'));
    const keyless = nextTid('K');
    const r = await w.admin('POST', '/terminals', { tid: keyless, mid: MID });
    assert.equal(r.status, 201);
    assert.equal(r.body.terminal.tmk, null);
    const raw = await RawTerminal.connect(w.platform.ports.terminal);
    try {
      assert.equal(
        (await raw.exchange(pack(POS_DIALECT, signInMessage(t.tid, '000001', '006')))).msg[39],
        '40',
      );
      assert.equal(
        (await raw.exchange(pack(POS_DIALECT, signInMessage(keyless, '000001', '003')))).msg[39],
        '96',
      );
    } finally {
      raw.close();
    }
  });

  it('98 when the network does not answer in time', async () => {
    const { term } = await signedIn();
    const net = w.platform.network.simulator;
    try {
      net.setFaults({ dropRate: 1 });
      const r = await term.purchase(swipe(CARDS.good), 100, CARDS.good.pin);
      assert.equal(r.responseCode, '98');
      assert.equal(r.macVerified, true);
    } finally {
      net.setFaults({});
      await term.close();
    }
  });
});
