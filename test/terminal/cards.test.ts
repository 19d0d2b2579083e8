import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  isLuhnValid,
  luhnCheckDigit,
  parseTrack2,
  randomPan,
  readCard,
  TEST_CARDS,
  testCard,
  track2Of,
} from '../../src/terminal/cards.js';
import { TerminalError } from '../../src/terminal/errors.js';

const input = (e: unknown) => e instanceof TerminalError && e.code === 'POSKEY_ERR_TERMINAL_INPUT';

describe('test cards', () => {
  it('Luhn check digits: known PANs', () => {
    // 6230606601007726888 is the PAN of the published SM4 PIN block example (keys.md §3.2).
    assert.equal(isLuhnValid('6230606601007726888'), true);
    assert.equal(isLuhnValid('6230606601007726887'), false);
    assert.equal(luhnCheckDigit('7992739871'), '3'); // the textbook example 79927398713
    assert.throws(() => luhnCheckDigit('12a'), input);
  });

  it('every test card is Luhn-valid and swipes a track 2 of at most 37 characters', () => {
    for (const c of TEST_CARDS) {
      assert.ok(isLuhnValid(c.pan), c.name);
      const t = track2Of(c);
      assert.ok(t.length <= 37);
      assert.deepEqual(parseTrack2(t).pan, c.pan);
      assert.equal(t, `${c.pan}=${c.expiry}${c.serviceCode}${'0'.repeat(37 - c.pan.length - 8)}`);
    }
    assert.equal(testCard('sm4-example').pin, '123654');
    assert.throws(() => testCard('nope'), input);
  });

  it('property: track2Of and parseTrack2 round-trip; random PANs are Luhn-valid', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 12, max: 19 }),
        fc.integer({ min: 0, max: 99 }),
        fc.integer({ min: 1, max: 12 }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        (len, yy, mm, seed) => {
          let x = seed;
          const pan = randomPan('62', len, () => {
            x = (x * 9301 + 0.49297) % 1;
            return x;
          });
          assert.ok(isLuhnValid(pan));
          const expiry = `${String(yy).padStart(2, '0')}${String(mm).padStart(2, '0')}`;
          const t = track2Of({ pan, expiry, serviceCode: '201' });
          assert.deepEqual(parseTrack2(t), {
            pan,
            expiry,
            serviceCode: '201',
            discretionary: t.slice(len + 8),
          });
        },
      ),
    );
  });

  it('reads swiped and keyed card input, and rejects bad input with POSKEY_ERR_TERMINAL_INPUT', () => {
    assert.deepEqual(readCard({ track2: '6222021234567890128D30121010000000000' }), {
      pan: '6222021234567890128',
      expiry: '3012',
      track2: '6222021234567890128=30121010000000000',
      entry: 'swiped',
    });
    assert.deepEqual(readCard({ pan: '6222021234567890128', expiry: '3012' }), {
      pan: '6222021234567890128',
      expiry: '3012',
      entry: 'manual',
    });
    assert.deepEqual(readCard({ pan: '6222021234567890128' }), {
      pan: '6222021234567890128',
      entry: 'manual',
    });
    for (const bad of [
      { pan: '1234' },
      { pan: '6222021234567890128', expiry: '3013' },
      { track2: '6222021234567890128' },
      { track2: '6222021234567890128=301' },
      { track2: `6222021234567890128=3012101${'0'.repeat(11)}` },
      {},
    ]) {
      assert.throws(() => readCard(bad as never), input, JSON.stringify(bad));
    }
    assert.throws(() => track2Of({ pan: '6222021234567890128', expiry: '3012', serviceCode: '1' }), input);
    assert.throws(
      () => track2Of({ pan: '6222021234567890128', expiry: '3012', serviceCode: '101', discretionary: 'x' }),
      input,
    );
    assert.throws(() => randomPan('62', 11), input);
  });
});
