/**
 * The network simulator's follow-ups over real TCP (the test is the acquirer): void, refund,
 * pre-auth hold and its void, completion (online and advice) and completion void, each referring
 * to its original by the RRN in field 90. Checked: the ledger balance and holds after each,
 * retransmissions applied once, a reused key with other content 94, and the refusals (25, 12, 13,
 * 30, A0).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IsoMessage } from '../../src/iso8583/index.js';
import {
  decodeOriginalData,
  encodeOriginalData,
  transmissionTime,
} from '../../src/protocol/original-data.js';
import { ACQUIRER_ID, CARDS, type Setup, setup } from './acquirer.js';

let s: Setup;
let stan = 500;
const nextStan = () => String(++stan).padStart(6, '0');

before(async () => {
  s = await setup();
});
after(() => s.close());

const balance = (pan: string) => s.ledger.balanceOf(pan);
const held = (pan: string) => s.ledger.heldOn(pan);

const KINDS = {
  purchase: { mti: '0200', f3: '000000', f25: '00' },
  preauth: { mti: '0100', f3: '030000', f25: '06' },
  void: { mti: '0200', f3: '200000', f25: '00' },
  refund: { mti: '0220', f3: '200000', f25: '00' },
  preauthVoid: { mti: '0100', f3: '200000', f25: '06' },
  completion: { mti: '0200', f3: '000000', f25: '06' },
  completionAdvice: { mti: '0220', f3: '000000', f25: '06' },
  completionVoid: { mti: '0200', f3: '200000', f25: '06' },
} as const;

/** A request of `kind` for `amount` (no PIN), with 90 naming `original` when given. */
function request(
  kind: (typeof KINDS)[keyof typeof KINDS],
  amount: number,
  original?: IsoMessage,
  pan: string = CARDS.good.pan,
): IsoMessage {
  const msg = s.acquirer.request({ pan, amount, stan: nextStan(), expiry: '3012' });
  msg[0] = kind.mti;
  msg[3] = kind.f3;
  msg[25] = kind.f25;
  if (original !== undefined) {
    msg[90] = encodeOriginalData({
      mti: original[0],
      rrn: original[37] as string,
      transmitted: transmissionTime(Date.now()),
      acquirerId: ACQUIRER_ID,
    });
  }
  return msg;
}

async function send(msg: IsoMessage): Promise<IsoMessage> {
  const answer = await s.client.send(s.acquirer.sign(msg));
  assert.ok(answer, 'no answer');
  assert.equal(answer[11], msg[11]);
  assert.ok(s.acquirer.macVerifies(answer), 'response MAC must verify');
  return answer;
}

describe('field 90 (original data)', () => {
  it('round-trips and refuses what does not fit', () => {
    const o = { mti: '0200', rrn: '120000100001', transmitted: '1207120000', acquirerId: '00010000' };
    const text = encodeOriginalData(o);
    assert.equal(text.length, 42);
    assert.deepEqual(decodeOriginalData(text), { ...o, acquirerId: '00000010000' });
    assert.throws(() => encodeOriginalData({ ...o, rrn: 'ABC' }), RangeError);
    assert.equal(decodeOriginalData('12'), undefined);
    assert.equal(decodeOriginalData(undefined), undefined);
  });
});

describe('void and refund', () => {
  it('voids once: credited back, a retransmission replayed, a second void 12, another card 25, another amount 13', async () => {
    const start = balance(CARDS.good.pan);
    const sale = request(KINDS.purchase, 1000);
    assert.equal((await send(sale))[39], '00');
    assert.equal(balance(CARDS.good.pan), start - 1000);
    assert.equal((await send(request(KINDS.void, 1000, sale, CARDS.low.pan)))[39], '25');
    assert.equal((await send(request(KINDS.void, 999, sale)))[39], '13');
    const v = request(KINDS.void, 1000, sale);
    const first = await send(v);
    assert.equal(first[0], '0210');
    assert.equal(first[39], '00');
    assert.equal(balance(CARDS.good.pan), start);
    const replay = await send(v);
    assert.equal(replay[39], '00');
    assert.equal(replay[38], first[38]);
    assert.equal(balance(CARDS.good.pan), start, 'a retransmission credits nothing twice');
    assert.equal((await send({ ...v, 4: '000000000999' }))[39], '94');
    assert.equal((await send(request(KINDS.void, 1000, sale)))[39], '12');
    assert.equal(balance(CARDS.good.pan), start);
  });

  it('refunds up to the sale in total (13 beyond), 25 for an unknown original, 30 without field 90, A0 for a bad MAC', async () => {
    const start = balance(CARDS.good.pan);
    const sale = request(KINDS.purchase, 500);
    await send(sale);
    const r1 = await send(request(KINDS.refund, 300, sale));
    assert.equal(r1[0], '0230');
    assert.equal(r1[39], '00');
    assert.equal((await send(request(KINDS.refund, 201, sale)))[39], '13');
    assert.equal((await send(request(KINDS.refund, 200, sale)))[39], '00');
    assert.equal(balance(CARDS.good.pan), start);
    const unknown = request(KINDS.refund, 1, { 0: '0200', 37: '999999999999' } as IsoMessage);
    assert.equal((await send(unknown))[39], '25');
    const no90 = request(KINDS.refund, 1);
    assert.equal((await send(no90))[39], '30');
    const bad = s.acquirer.sign(request(KINDS.refund, 1, sale));
    bad[bad.length - 1]! ^= 0xff;
    assert.equal((await s.client.send(bad))?.[39], 'A0');
    assert.equal(balance(CARDS.good.pan), start);
  });
});

describe('pre-authorisation', () => {
  it('holds (available balance down, balance not), releases on void, 12 on a second void', async () => {
    const start = balance(CARDS.low.pan);
    const pre = request(KINDS.preauth, 400, undefined, CARDS.low.pan);
    const a = await send(pre);
    assert.equal(a[0], '0110');
    assert.equal(a[39], '00');
    assert.equal(balance(CARDS.low.pan), start);
    assert.equal(held(CARDS.low.pan), 400);
    assert.equal((await send(request(KINDS.purchase, 200, undefined, CARDS.low.pan)))[39], '51');
    assert.equal((await send(request(KINDS.preauth, 200, undefined, CARDS.low.pan)))[39], '51');
    assert.equal((await send(request(KINDS.preauthVoid, 400, pre, CARDS.low.pan)))[39], '00');
    assert.equal(held(CARDS.low.pan), 0);
    assert.equal((await send(request(KINDS.preauthVoid, 400, pre, CARDS.low.pan)))[39], '12');
  });

  it('completes (hold → debit, at most the hold), voids the completion; 25 without a pre-auth, 12 twice', async () => {
    const start = balance(CARDS.good.pan);
    const pre = request(KINDS.preauth, 2000);
    await send(pre);
    assert.equal((await send(request(KINDS.completion, 2001, pre)))[39], '13');
    assert.equal((await send(request(KINDS.completion, 100, request(KINDS.purchase, 1))))[39], '25');
    const done = request(KINDS.completion, 1500, pre);
    assert.equal((await send(done))[39], '00');
    assert.equal(balance(CARDS.good.pan), start - 1500);
    assert.equal(held(CARDS.good.pan), 0);
    assert.equal((await send(request(KINDS.completionAdvice, 100, pre)))[39], '12');
    assert.equal((await send(request(KINDS.completionVoid, 1500, done)))[39], '00');
    assert.equal(balance(CARDS.good.pan), start);
    assert.equal((await send(request(KINDS.completionVoid, 1500, done)))[39], '12');

    const pre2 = request(KINDS.preauth, 300);
    await send(pre2);
    const advice = await send(request(KINDS.completionAdvice, 300, pre2));
    assert.equal(advice[0], '0230');
    assert.equal(advice[39], '00');
    assert.equal(balance(CARDS.good.pan), start - 300);
  });
});
