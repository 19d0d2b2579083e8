/**
 * The security behaviours end to end: a tampered MAC → A0, the terminal's MAC-failure counter in
 * the registry and an automatic sign-in; expired working keys → A7 and re-sign-in; a wrong PIN →
 * 55; a replay → 94; the PIN pad's tamper response (every operation refused until keys are
 * injected again through the key loading path).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PinPadErrorCode } from '../../src/terminal/errors.js';
import { TRANSPORT_SLOT } from '../../src/terminal/fleet.js';
import {
  CARDS,
  nextTid,
  packMaced,
  pinBlockHex,
  purchaseMessage,
  RawTerminal,
  rawSignIn,
  startWorld,
  swipe,
  type World,
} from './helpers.js';

describe('security behaviours end to end', () => {
  let w: World;
  const clock = { offsetMs: 0 };
  before(async () => {
    w = await startWorld('sqlite', { clock: () => Date.now() + clock.offsetMs });
  });
  after(async () => {
    await w?.close();
  });

  it('a tampered MAC → A0 without a MAC, counted in the registry; the terminal signs in again', async () => {
    const t = await w.registerKnown(nextTid('S'));
    const raw = await RawTerminal.connect(w.platform.ports.terminal);
    try {
      const { keys } = await rawSignIn(raw, t, '000001');
      const msg = purchaseMessage(t.tid, '000002', {
        ...CARDS.good,
        amount: 10,
        pinBlock: pinBlockHex(keys, CARDS.good.pin, CARDS.good.pan),
      });
      const good = packMaced(msg, keys);
      const flipped = Buffer.from(good);
      flipped[flipped.length - 20]! ^= 0x01; // one bit of the amount, after the MAC was made
      for (const [i, body] of [
        flipped,
        packMaced({ ...msg, 11: '000003' }, keys, 'FFFFFFFFFFFFFFFF'),
      ].entries()) {
        const r = await raw.exchange(body);
        assert.equal(r.msg[39], 'A0', `tamper ${i}`);
        assert.equal(r.msg[64], undefined, 'A0 is answered without a MAC');
        assert.equal(r.envelope.header?.processingRequirement, 3);
      }
      const view = await w.admin('GET', `/terminals/${t.tid}`);
      assert.equal(view.body.macFailures, 2);
    } finally {
      raw.close();
    }
    // The terminal simulator reacts to A0 by signing in again; its next purchase goes through.
    const term = w.terminal(t);
    try {
      assert.equal((await term.signIn()).approved, true);
      const r = await term.purchase(swipe(CARDS.good), 11, CARDS.good.pin);
      assert.equal(r.responseCode, '00', r.responseText);
    } finally {
      await term.close();
    }
  });

  it('working keys older than the maximum age → A7, the terminal signs in again and carries on', async () => {
    const t = await w.registerKnown(nextTid('X'));
    const term = w.terminal(t);
    try {
      assert.equal((await term.signIn()).approved, true);
      const before = (await w.admin('GET', `/terminals/${t.tid}`)).body.workingKeys;
      clock.offsetMs = 25 * 3600_000;
      const stale = await term.purchase(swipe(CARDS.good), 12, CARDS.good.pin);
      assert.equal(stale.responseCode, 'A7');
      assert.equal(stale.approved, false);
      assert.equal(stale.signIn?.approved, true, 'signed in again at once');
      const after = (await w.admin('GET', `/terminals/${t.tid}`)).body.workingKeys;
      assert.notEqual(after.tak, before.tak, 'the sign-in rotated the keys');
      const fresh = await term.purchase(swipe(CARDS.good), 13, CARDS.good.pin);
      assert.equal(fresh.responseCode, '00', fresh.responseText);
      assert.equal(fresh.macVerified, true);
    } finally {
      clock.offsetMs = 0;
      await term.close();
    }
  });

  it('a wrong PIN → 55 (MACed), then the right one is approved', async () => {
    const t = await w.registerKnown(nextTid('P'));
    const term = w.terminal(t);
    try {
      const wrong = await term.purchase(swipe(CARDS.good), 14, '000000');
      assert.equal(wrong.responseCode, '55');
      assert.equal(wrong.macVerified, true);
      assert.equal((await term.purchase(swipe(CARDS.good), 14, CARDS.good.pin)).responseCode, '00');
    } finally {
      await term.close();
    }
  });

  it('a replay of an approved request → 94, the card debited once', async () => {
    const t = await w.registerKnown(nextTid('Y'));
    const raw = await RawTerminal.connect(w.platform.ports.terminal);
    try {
      const { keys } = await rawSignIn(raw, t, '000001');
      const body = packMaced(
        purchaseMessage(t.tid, '000002', {
          ...CARDS.good,
          amount: 99,
          pinBlock: pinBlockHex(keys, CARDS.good.pin, CARDS.good.pan),
        }),
        keys,
      );
      const before = w.platform.network.ledger.balanceOf(CARDS.good.pan);
      assert.equal((await raw.exchange(body)).msg[39], '00');
      assert.equal((await raw.exchange(body)).msg[39], '94');
      assert.equal((await raw.exchange(body)).msg[39], '94');
      assert.equal(w.platform.network.ledger.balanceOf(CARDS.good.pan), before - 99);
    } finally {
      raw.close();
    }
  });

  it("the PIN pad's tamper response: keys zeroised, every operation refused until re-injection", async () => {
    const t = await w.registerKnown(nextTid('Z'));
    const term = w.terminal(t);
    try {
      assert.equal((await term.signIn()).approved, true);
      term.pinPad.tamper();
      assert.equal(term.pinPad.state, 'tampered');
      assert.deepEqual(term.pinPad.listSlots(), []);
      await assert.rejects(term.purchase(swipe(CARDS.good), 15, CARDS.good.pin), {
        code: PinPadErrorCode.TAMPERED,
      });
      await assert.rejects(term.signIn(), { code: PinPadErrorCode.TAMPERED });
      // Back through the key loading path: the factory transport key, then a TMK the host's HSM
      // generates and delivers under it (the registry re-keys the terminal).
      const factory = w.platform.factory.TDES;
      const rekey = await w.admin('PUT', `/terminals/${t.tid}/tmk`, {
        tmk: { generate: true, exportUnder: 'factory' },
      });
      assert.equal(rekey.status, 200);
      assert.equal(rekey.body.terminal.workingKeys, null, 'a new TMK drops the working keys');
      term.pinPad.injectTransportKey(TRANSPORT_SLOT, factory.key, { algorithm: 'tdes' });
      const d = rekey.body.tmk.delivery;
      term.pinPad.provisionFromTransportCryptogram(0, TRANSPORT_SLOT, d.cryptogram, d.kcv);
      assert.equal(term.pinPad.state, 'normal');
      assert.equal((await term.signIn()).approved, true);
      const r = await term.purchase(swipe(CARDS.good), 16, CARDS.good.pin);
      assert.equal(r.responseCode, '00', r.responseText);
    } finally {
      await term.close();
    }
  });
});
