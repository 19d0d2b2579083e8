/**
 * The network simulator over real TCP on 127.0.0.1:0, with two real HSMs under separate dev LMKs:
 * the test is the acquirer (zone keys imported on its side, PIN blocks translated from a TPK to the
 * ZPK by its HSM, requests MACed under its ZAK) and checks every answer's MAC.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IsoMessage } from '../../src/iso8583/index.js';
import { CARDS, type PurchaseSpec, type Setup, setup } from './acquirer.js';

let s: Setup;
let stan = 100;
const nextStan = () => String(++stan).padStart(6, '0');

before(async () => {
  s = await setup({
    authCode: (() => {
      let n = 0;
      return () => `A${String(++n).padStart(5, '0')}`;
    })(),
  });
});
after(() => s.close());

/** Sends a MACed 0200 and checks the answer's MAC and echo. */
async function send(spec: Omit<PurchaseSpec, 'stan'> & { stan?: string }): Promise<IsoMessage> {
  const msg = s.acquirer.request({ ...spec, stan: spec.stan ?? nextStan() });
  const answer = await s.client.send(s.acquirer.sign(msg));
  assert.ok(answer, 'no answer');
  assert.equal(answer[0], '0210');
  assert.equal(answer[11], msg[11]);
  assert.equal(answer[37], msg[37]);
  assert.ok(s.acquirer.macVerifies(answer), 'response MAC must verify under the acquirer ZAK');
  return answer;
}

const balance = (pan: string) => s.ledger.balanceOf(pan);

describe('0200 purchase', () => {
  it('approves: balance reduced, 38 present, MAC verifies', async () => {
    const before = balance(CARDS.good.pan);
    const a = await send({ pan: CARDS.good.pan, amount: 1234, pin: CARDS.good.pin, expiry: '3012' });
    assert.equal(a[39], '00');
    assert.match(String(a[38]), /^[0-9A-Z]{6}$/);
    assert.equal(a[2], CARDS.good.pan);
    assert.equal(a[4], '000000001234');
    assert.equal(a[54], undefined);
    assert.equal(balance(CARDS.good.pan), before - 1234);
  });

  it('approves from track 2 alone (PAN and expiry from the track), and without a PIN', async () => {
    const before = balance(CARDS.good.pan);
    const track = `${CARDS.good.pan}=30122011234567`;
    const a = await send({ track, amount: 100, pin: CARDS.good.pin });
    assert.equal(a[39], '00');
    assert.equal(a[2], CARDS.good.pan);
    const b = await send({ pan: CARDS.good.pan, amount: 50 });
    assert.equal(b[39], '00');
    assert.equal(balance(CARDS.good.pan), before - 150);
  });

  it('51 insufficient funds, nothing debited', async () => {
    const a = await send({ pan: CARDS.low.pan, amount: 501, pin: CARDS.low.pin });
    assert.equal(a[39], '51');
    assert.equal(a[38], undefined);
    assert.equal(balance(CARDS.low.pan), 500);
  });

  it('14 unknown card', async () => {
    const a = await send({ pan: '6228480000009999', amount: 100, pin: '123456' });
    assert.equal(a[39], '14');
  });

  it('14 when track 2 names another card than field 2', async () => {
    const a = await send({ pan: CARDS.good.pan, track: `${CARDS.low.pan}=30122011234567`, amount: 1 });
    assert.equal(a[39], '14');
  });

  it('54 expired card, and 54 for a presented expiry that is not the card’s', async () => {
    assert.equal((await send({ pan: CARDS.expired.pan, amount: 100, pin: CARDS.expired.pin }))[39], '54');
    const before = balance(CARDS.good.pan);
    assert.equal(
      (await send({ pan: CARDS.good.pan, amount: 100, pin: CARDS.good.pin, expiry: '2912' }))[39],
      '54',
    );
    assert.equal(balance(CARDS.good.pan), before);
  });

  it('62 blocked and lost cards', async () => {
    assert.equal((await send({ pan: CARDS.blocked.pan, amount: 100, pin: CARDS.blocked.pin }))[39], '62');
    assert.equal((await send({ pan: CARDS.lost.pan, amount: 100, pin: CARDS.lost.pin }))[39], '62');
    assert.equal(balance(CARDS.blocked.pan), 100_000);
  });

  it('55 twice, 75 on the third wrong PIN, and 75 even with the right PIN after', async () => {
    const card = CARDS.pins;
    assert.equal((await send({ pan: card.pan, amount: 100, pin: '111111' }))[39], '55');
    assert.equal((await send({ pan: card.pan, amount: 100, pin: '222222' }))[39], '55');
    assert.equal((await send({ pan: card.pan, amount: 100, pin: '333333' }))[39], '75');
    assert.equal((await send({ pan: card.pan, amount: 100, pin: card.pin }))[39], '75');
    assert.equal(s.ledger.getCard(card.pan)?.pinTries, 3);
    assert.equal(balance(card.pan), 100_000);
  });

  it('a right PIN before the limit resets the count', async () => {
    const card = CARDS.reset;
    assert.equal((await send({ pan: card.pan, amount: 100, pin: '111111' }))[39], '55');
    assert.equal((await send({ pan: card.pan, amount: 100, pin: '222222' }))[39], '55');
    assert.equal(s.ledger.getCard(card.pan)?.pinTries, 2);
    assert.equal((await send({ pan: card.pan, amount: 100, pin: card.pin }))[39], '00');
    assert.equal(s.ledger.getCard(card.pan)?.pinTries, 0);
    assert.equal((await send({ pan: card.pan, amount: 100, pin: '333333' }))[39], '55');
    assert.equal((await send({ pan: card.pan, amount: 100, pin: card.pin }))[39], '00');
  });

  it('bad MAC → A0 with a MACed answer, no ledger change, no row', async () => {
    const before = balance(CARDS.good.pan);
    const msg = s.acquirer.request({
      pan: CARDS.good.pan,
      amount: 100,
      pin: CARDS.good.pin,
      stan: nextStan(),
    });
    const signed = s.acquirer.sign(msg);
    signed[signed.length - 1]! ^= 0x01;
    const a = await s.client.send(signed);
    assert.equal(a?.[39], 'A0');
    assert.ok(s.acquirer.macVerifies(a as IsoMessage));
    assert.equal(balance(CARDS.good.pan), before);
    assert.equal(
      s.ledger.findAuthorisation({ acquirerId: '48020000', stan: msg[11] as string, rrn: msg[37] as string }),
      undefined,
    );
  });

  it('a MAC over other content (amount changed in flight) → A0', async () => {
    const before = balance(CARDS.good.pan);
    const msg = s.acquirer.request({
      pan: CARDS.good.pan,
      amount: 100,
      pin: CARDS.good.pin,
      stan: nextStan(),
    });
    const mac = s.acquirer.mac(msg);
    const { packNetworkWithMac } = await import('../../src/protocol/network-link.js');
    const a = await s.client.send(packNetworkWithMac({ ...msg, 4: '000000099999' }, mac));
    assert.equal(a?.[39], 'A0');
    assert.equal(balance(CARDS.good.pan), before);
  });

  it('a retransmission is answered alike and not debited twice; the same key with other content gets 94', async () => {
    const before = balance(CARDS.good.pan);
    const msg = s.acquirer.request({
      pan: CARDS.good.pan,
      amount: 777,
      pin: CARDS.good.pin,
      stan: nextStan(),
    });
    const body = s.acquirer.sign(msg);
    const first = await s.client.send(body);
    const again = await s.client.send(body);
    assert.equal(first?.[39], '00');
    assert.equal(again?.[39], '00');
    assert.equal(again?.[38], first?.[38]);
    assert.equal(balance(CARDS.good.pan), before - 777);
    const other = await s.client.send(s.acquirer.sign({ ...msg, 4: '000000000778' }));
    assert.equal(other?.[39], '94');
    assert.equal(balance(CARDS.good.pan), before - 777);
  });

  it('a retransmitted wrong PIN counts one try', async () => {
    const pan = CARDS.low.pan;
    const body = s.acquirer.sign(s.acquirer.request({ pan, amount: 1, pin: '999999', stan: nextStan() }));
    assert.equal((await s.client.send(body))?.[39], '55');
    assert.equal((await s.client.send(body))?.[39], '55');
    assert.equal(s.ledger.getCard(pan)?.pinTries, 1);
    assert.equal((await send({ pan, amount: 1, pin: CARDS.low.pin }))[39], '00');
  });

  it('30 for a missing field, 12 for another processing code, 13 for a zero amount, 12 for another currency', async () => {
    const msg = s.acquirer.request({ pan: CARDS.good.pan, amount: 1, stan: nextStan() });
    delete msg[49];
    const a = await s.client.send(s.acquirer.sign(msg));
    assert.equal(a?.[39], '30');
    assert.equal((await send({ pan: CARDS.good.pan, amount: 1, processingCode: '400000' }))[39], '12');
    // 200000 is a void now (src/network/follow-up.ts): without field 90 naming its original, 30.
    assert.equal((await send({ pan: CARDS.good.pan, amount: 1, processingCode: '200000' }))[39], '30');
    assert.equal((await send({ pan: CARDS.good.pan, amount: 0 }))[39], '13');
    assert.equal((await send({ pan: CARDS.good.pan, amount: 1, currency: '840' }))[39], '12');
  });

  it('many requests in flight on one connection, each answered and matched', async () => {
    const before = balance(CARDS.good.pan);
    const answers = await Promise.all(
      Array.from({ length: 25 }, () => send({ pan: CARDS.good.pan, amount: 10, pin: CARDS.good.pin })),
    );
    assert.ok(answers.every((a) => a[39] === '00'));
    assert.equal(new Set(answers.map((a) => a[38])).size, 25);
    assert.equal(balance(CARDS.good.pan), before - 250);
  });
});

describe('0200 balance inquiry', () => {
  it('approves with 54 and debits nothing', async () => {
    const before = balance(CARDS.good.pan);
    const a = await send({ pan: CARDS.good.pan, processingCode: '310000', pin: CARDS.good.pin });
    assert.equal(a[39], '00');
    assert.equal(a[54], `1002156C${String(before).padStart(12, '0')}`);
    assert.equal(a[4], '000000000000');
    assert.equal(balance(CARDS.good.pan), before);
  });

  it('55 without a PIN', async () => {
    assert.equal((await send({ pan: CARDS.good.pan, processingCode: '310000' }))[39], '55');
  });
});

describe('0800 and other messages', () => {
  it('echo 70=301 → 0810 39=00, MACed', async () => {
    const a = await s.client.send(s.acquirer.sign({ 0: '0800', 7: '1124103015', 11: '000900', 70: '301' }));
    assert.equal(a?.[0], '0810');
    assert.equal(a?.[39], '00');
    assert.equal(a?.[70], '301');
    assert.ok(s.acquirer.macVerifies(a as IsoMessage));
  });

  it('echo without a MAC is answered too; with a bad MAC it gets A0', async () => {
    const { pack } = await import('../../src/iso8583/index.js');
    const { NETWORK_DIALECT } = await import('../../src/protocol/network-link.js');
    const plain = await s.client.send(
      pack(NETWORK_DIALECT, { 0: '0800', 7: '1124103015', 11: '000901', 70: '301' }),
    );
    assert.equal(plain?.[39], '00');
    const bad = pack(NETWORK_DIALECT, {
      0: '0800',
      7: '1124103015',
      11: '000902',
      70: '301',
      128: '0000000000000000',
    });
    assert.equal((await s.client.send(bad))?.[39], 'A0');
  });

  it('an unsupported MTI is answered 12', async () => {
    const msg = { ...s.acquirer.request({ pan: CARDS.good.pan, amount: 1, stan: nextStan() }), 0: '0100' };
    const a = await s.client.send(s.acquirer.sign(msg));
    assert.equal(a?.[0], '0110');
    assert.equal(a?.[39], '12');
  });

  it('a body that does not parse gets no answer and the connection carries on', async () => {
    s.client.write(Buffer.from([0, 4, 0x41, 0x42, 0x43, 0x44]));
    const a = await s.client.send(s.acquirer.sign({ 0: '0800', 7: '1124103015', 11: '000903', 70: '301' }));
    assert.equal(a?.[39], '00');
    assert.ok(s.simulator.stats().ignored >= 1);
  });
});

describe('faults', () => {
  it('responseCode override answers 96 and leaves the ledger alone', async () => {
    s.simulator.setFaults({ responseCode: '96' });
    try {
      const before = balance(CARDS.good.pan);
      const a = await send({ pan: CARDS.good.pan, amount: 5, pin: CARDS.good.pin });
      assert.equal(a[39], '96');
      assert.equal(balance(CARDS.good.pan), before);
    } finally {
      s.simulator.setFaults({});
    }
  });

  it('delay: the answer comes after the delay; jitter lets answers overtake each other', async () => {
    s.simulator.setFaults({ delayMs: 150 });
    const t0 = Date.now();
    const a = await send({ pan: CARDS.good.pan, amount: 1 });
    assert.equal(a[39], '00');
    assert.ok(Date.now() - t0 >= 140, `answered after ${Date.now() - t0} ms`);
    s.simulator.setFaults({ jitterMs: 200 });
    s.client.order.length = 0;
    const stans = Array.from({ length: 12 }, () => nextStan());
    await Promise.all(stans.map((st) => send({ pan: CARDS.good.pan, amount: 1, stan: st })));
    assert.notDeepEqual(s.client.order, stans, 'with jitter, answers complete out of order');
    s.simulator.setFaults({});
  });

  it('drop: processed, never answered', async () => {
    s.simulator.setFaults({ dropRate: 1 });
    const before = balance(CARDS.good.pan);
    const msg = s.acquirer.request({ pan: CARDS.good.pan, amount: 3, stan: nextStan() });
    const a = await s.client.send(s.acquirer.sign(msg), 300);
    assert.equal(a, undefined);
    assert.equal(balance(CARDS.good.pan), before - 3, 'the issuer applied it: the acquirer must reverse');
    s.simulator.setFaults({});
    const again = await s.client.send(s.acquirer.sign(msg));
    assert.equal(again?.[39], '00', 'a retransmission gets the recorded answer');
    assert.equal(balance(CARDS.good.pan), before - 3);
  });

  it('disconnect: the connection is closed instead of an answer', async () => {
    const { LinkClient } = await import('./acquirer.js');
    const other = await LinkClient.connect(s.port);
    s.simulator.setFaults({ disconnectRate: 1 });
    const msg = s.acquirer.request({ pan: CARDS.good.pan, amount: 1, stan: nextStan() });
    const a = await other.send(s.acquirer.sign(msg), 1000);
    await other.closed;
    assert.equal(a, undefined);
    assert.ok(s.simulator.stats().disconnected >= 1);
    s.simulator.setFaults({});
  });

  it('setFaults refuses bad settings', () => {
    assert.throws(() => s.simulator.setFaults({ dropRate: 2 }), { code: 'POSKEY_ERR_NETWORK_FAULTS' });
  });
});

describe('the ledger file after all of the above', () => {
  it('holds no clear PIN (main file and WAL)', async () => {
    const { existsSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const path = join(s.dir, 'ledger.sqlite');
    const bytes = Buffer.concat(
      [path, `${path}-wal`].filter((p) => existsSync(p)).map((p) => readFileSync(p)),
    );
    assert.ok(bytes.length > 0);
    for (const card of Object.values(CARDS)) {
      assert.equal(
        bytes.includes(Buffer.from(card.pin, 'latin1')),
        false,
        `PIN of …${card.pan.slice(-4)} in the file`,
      );
    }
  });
});
