/**
 * The network simulator's reversals (0420 → 0430) over real TCP (the test is the acquirer): the
 * original named by RRN in field 90 is undone once (a purchase credited back, a pre-auth hold
 * released, a void's credit taken back and its sale live again, a refund's credit taken back), a
 * retransmission is replayed, a second reversal of the same original changes nothing, a reversal
 * of an unknown or declined original is acknowledged; refusals 30, 94 and A0. An advice (0220)
 * without card data is the card of its original.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IsoMessage } from '../../src/iso8583/index.js';
import { encodeOriginalData, transmissionTime } from '../../src/protocol/original-data.js';
import { ACQUIRER_ID, CARDS, type Setup, setup } from './acquirer.js';

let s: Setup;
let stan = 700;
const nextStan = () => String(++stan).padStart(6, '0');

before(async () => {
  s = await setup();
});
after(() => s.close());

const balance = (pan: string) => s.ledger.balanceOf(pan);

function field90(original: IsoMessage): string {
  return encodeOriginalData({
    mti: original[0],
    rrn: original[37] as string,
    transmitted: transmissionTime(Date.now()),
    acquirerId: ACQUIRER_ID,
  });
}

function request(mti: string, f3: string, amount: number, original?: IsoMessage, f25 = '00'): IsoMessage {
  const msg = s.acquirer.request({ pan: CARDS.good.pan, amount, stan: nextStan(), expiry: '3012' });
  msg[0] = mti;
  msg[3] = f3;
  msg[25] = f25;
  if (original !== undefined) msg[90] = field90(original);
  return msg;
}

/** The 0420 of `original`, as the host's store-and-forward builds it: no card data. */
function reversal(original: IsoMessage, reason = '98'): IsoMessage {
  const stanNow = nextStan();
  return {
    0: '0420',
    3: original[3] as string,
    4: original[4] as string,
    7: '1124103015',
    11: stanNow,
    25: '00',
    32: ACQUIRER_ID,
    37: `7329${stanNow.padStart(8, '0')}`,
    39: reason,
    41: original[41] as string,
    42: original[42] as string,
    49: '156',
    90: field90(original),
  };
}

async function send(msg: IsoMessage): Promise<IsoMessage> {
  const answer = await s.client.send(s.acquirer.sign(msg));
  assert.ok(answer, 'no answer');
  assert.ok(s.acquirer.macVerifies(answer), 'response MAC must verify');
  return answer;
}

describe('reversal (0420)', () => {
  it('credits an approved purchase back once: replayed on retransmission, a second reversal changes nothing', async () => {
    const start = balance(CARDS.good.pan);
    const sale = request('0200', '000000', 1200);
    assert.equal((await send(sale))[39], '00');
    assert.equal(balance(CARDS.good.pan), start - 1200);
    const rev = reversal(sale);
    const ack = await send(rev);
    assert.equal(ack[0], '0430');
    assert.equal(ack[39], '00');
    assert.equal(ack[11], rev[11]);
    assert.equal(ack[90], rev[90]);
    assert.equal(balance(CARDS.good.pan), start);
    const original = s.ledger.findAuthorisation({
      acquirerId: ACQUIRER_ID,
      stan: sale[11] as string,
      rrn: sale[37] as string,
    });
    assert.equal(original?.status, 'reversed');
    assert.equal((await send(rev))[39], '00', 'retransmission acknowledged');
    assert.equal((await send(reversal(sale, '96')))[39], '00', 'another reversal of it acknowledged');
    assert.equal(balance(CARDS.good.pan), start, 'credited once');
    // A reused key with other content.
    assert.equal((await send({ ...rev, 4: '000000000001' }))[39], '94');
    assert.equal(balance(CARDS.good.pan), start);
  });

  it('acknowledges a reversal of an unknown original and records it; a declined original stays as it was', async () => {
    const start = balance(CARDS.good.pan);
    const ghost = { ...request('0200', '000000', 50), 37: '999999999998' };
    const rev = reversal(ghost);
    assert.equal((await send(rev))[39], '00');
    const row = s.ledger.findAuthorisation({
      acquirerId: ACQUIRER_ID,
      stan: rev[11] as string,
      rrn: rev[37] as string,
    });
    assert.equal(row?.mti, '0420');
    assert.equal(row?.responseCode, '00');
    const low = s.acquirer.request({ pan: CARDS.low.pan, amount: 99_999, stan: nextStan(), expiry: '3012' });
    assert.equal((await send(low))[39], '51');
    const lowStart = balance(CARDS.low.pan);
    assert.equal((await send(reversal(low)))[39], '00');
    assert.equal(balance(CARDS.low.pan), lowStart);
    assert.equal(balance(CARDS.good.pan), start);
  });

  it('reverses a void: the credit taken back once and the sale can be voided again', async () => {
    const start = balance(CARDS.good.pan);
    const sale = request('0200', '000000', 800);
    await send(sale);
    const v = request('0200', '200000', 800, sale);
    assert.equal((await send(v))[39], '00');
    assert.equal(balance(CARDS.good.pan), start);
    const rev = reversal(v);
    assert.equal((await send(rev))[39], '00');
    assert.equal(balance(CARDS.good.pan), start - 800, 're-debited');
    assert.equal((await send(rev))[39], '00');
    assert.equal(balance(CARDS.good.pan), start - 800, 'once');
    assert.equal((await send(request('0200', '200000', 800, sale)))[39], '00', 'the sale is live again');
    assert.equal(balance(CARDS.good.pan), start);
  });

  it('releases a pre-authorisation hold, and takes a refund back', async () => {
    const pre = request('0100', '030000', 300, undefined, '06');
    assert.equal((await send(pre))[39], '00');
    assert.equal(s.ledger.heldOn(CARDS.good.pan), 300);
    assert.equal((await send(reversal(pre)))[39], '00');
    assert.equal(s.ledger.heldOn(CARDS.good.pan), 0);
    const start = balance(CARDS.good.pan);
    const sale = request('0200', '000000', 400);
    await send(sale);
    const refund = request('0220', '200000', 150, sale);
    assert.equal((await send(refund))[39], '00');
    assert.equal(balance(CARDS.good.pan), start - 250);
    assert.equal((await send(reversal(refund)))[39], '00');
    assert.equal(balance(CARDS.good.pan), start - 400);
    // The reversed refund no longer counts: the whole sale can be refunded again.
    assert.equal((await send(request('0220', '200000', 400, sale)))[39], '00');
    assert.equal(balance(CARDS.good.pan), start);
  });

  it('refuses a reversal without field 90 (30), without field 37 (30), and with a bad MAC (A0)', async () => {
    const start = balance(CARDS.good.pan);
    const sale = request('0200', '000000', 100);
    await send(sale);
    const { 90: _90, ...no90 } = reversal(sale);
    assert.equal((await send(no90 as IsoMessage))[39], '30');
    const { 37: _37, ...no37 } = reversal(sale);
    const answer = await s.client.send(s.acquirer.sign(no37 as IsoMessage));
    assert.equal(answer?.[39], '30');
    const bad = s.acquirer.sign(reversal(sale));
    bad[bad.length - 1]! ^= 0xff;
    const refused = await s.client.send(bad);
    assert.equal(refused?.[39], 'A0');
    assert.equal(balance(CARDS.good.pan), start - 100, 'nothing reversed');
  });
});

describe('advice without card data (stored and forwarded)', () => {
  it('is the card of the original it names; a repeat is replayed', async () => {
    const start = balance(CARDS.good.pan);
    const sale = request('0200', '000000', 600);
    await send(sale);
    const { 2: _pan, 14: _exp, ...refund } = request('0220', '200000', 600, sale);
    const first = await send(refund as IsoMessage);
    assert.equal(first[39], '00');
    assert.equal(balance(CARDS.good.pan), start);
    assert.equal((await send(refund as IsoMessage))[39], '00');
    assert.equal(balance(CARDS.good.pan), start, 'applied once');
    const orphan: IsoMessage = {
      ...request('0220', '200000', 1),
      90: field90({ 0: '0200', 37: '999999999997' }),
    };
    delete orphan[2];
    delete orphan[14];
    assert.equal((await send(orphan))[39], '30', 'no card to be found');
  });
});
