/**
 * The follow-up requests the terminal builds (void, refund, pre-auth and its void, completions):
 * MTI, 3, 25 and 60.1 per research §1.6 as the catalogue classifies them, 37 and 61 from the
 * original, the packed message round-tripping, and each malformed original refused with its field.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classify, pack, unpack } from '../../src/iso8583/index.js';
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';
import { readCard } from '../../src/terminal/cards.js';
import { resolveTerminalConfig } from '../../src/terminal/config.js';
import { TerminalError } from '../../src/terminal/errors.js';
import {
  FOLLOW_UP_CODES,
  type FollowUpKind,
  followUpRequest,
  reversalOf,
} from '../../src/terminal/messages.js';

const cfg = resolveTerminalConfig({ tid: '12345678', mid: '123456789012345', host: '127.0.0.1', port: 5000 });
const card = readCard({ track2: '6222021234567890128=30121010000000000' });
const ops = { pinBlock: () => '0000000000000000', encryptTrack: (t: string) => t };
const original = { stan: '000042', rrn: '120000100007' };
const base = {
  card,
  stan: '000050',
  batch: '000003',
  amount: '000000001234',
  ops,
  now: new Date(2026, 11, 7),
};

describe('follow-up requests', () => {
  for (const kind of Object.keys(FOLLOW_UP_CODES) as FollowUpKind[]) {
    it(`${kind}: classified as ${kind}, 61 and 37 from the original (none for a pre-auth)`, () => {
      const msg = followUpRequest(cfg, kind, { ...base, original });
      const codes = FOLLOW_UP_CODES[kind];
      assert.equal(msg[0], codes.mti);
      assert.equal(msg[3], codes.f3);
      assert.equal(msg[25], codes.f25);
      const back = unpack(POS_DIALECT, pack(POS_DIALECT, msg));
      assert.equal(classify(POS_DIALECT, back).name, kind);
      if (kind === 'preauth') {
        assert.equal(back[61], undefined);
        assert.equal(back[37], undefined);
      } else {
        assert.deepEqual(back[61], { 1: '000003', 2: '000042', 3: '1207' });
        assert.equal(back[37], '120000100007');
      }
    });
  }

  it('takes the batch, date and auth code given, and a void reversal repeats 61', () => {
    const msg = followUpRequest(cfg, 'void', {
      ...base,
      original: { ...original, batch: '000002', date: '1130', authCode: '123456' },
    });
    assert.deepEqual(msg[61], { 1: '000002', 2: '000042', 3: '1130' });
    assert.equal(msg[38], '123456');
    assert.deepEqual(reversalOf(msg, '98')[61], msg[61]);
  });

  for (const [field, change] of [
    ['original', undefined],
    ['original.stan', { ...original, stan: '42' }],
    ['original.batch', { ...original, batch: '3' }],
    ['original.date', { ...original, date: '7' }],
    ['original.rrn', { ...original, rrn: 'short' }],
  ] as const) {
    it(`refuses a malformed ${field}`, () => {
      assert.throws(
        () => followUpRequest(cfg, 'refund', change === undefined ? base : { ...base, original: change }),
        (e: unknown) =>
          e instanceof TerminalError && e.code === 'POSKEY_ERR_TERMINAL_INPUT' && e.field === field,
      );
    });
  }
});
