import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { type CipherAlgorithm, createKey, KEY_LENGTHS } from '../../src/crypto/cipher.js';
import {
  decodePinBlock,
  decryptPinBlock,
  encodePinBlock,
  encryptPinBlock,
  PIN_BLOCK_FORMATS,
  type PinBlockFormat,
  panField4,
  parsePinBlockFormat,
  pinField4,
  translatePinBlock,
} from '../../src/crypto/pinblock.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  return true;
};
const fixed = (hex: string) => (n: number) => {
  const b = fromHex(hex);
  assert.equal(n, b.length, 'random source asked for an unexpected number of bytes');
  return b;
};
const pan0 = '5555555551234567';

describe('PIN blocks: published clear blocks', () => {
  const { vectors } = loadVectors<{
    format: PinBlockFormat;
    pin: string;
    pan?: string;
    random?: string;
    block: string;
  }>('pinblock-clear.json');
  for (const v of vectors) {
    it(`format ${v.format}: PIN ${v.pin.length} digits → ${v.block}`, () => {
      const random = v.random ? fixed(v.random) : () => assert.fail('format needs no random fill');
      assert.equal(toHex(encodePinBlock({ format: v.format, pin: v.pin, pan: v.pan, random })), v.block);
      assert.equal(decodePinBlock({ format: v.format, block: fromHex(v.block), pan: v.pan }), v.pin);
    });
  }
  for (const v of loadVectors<{ format: PinBlockFormat; block: string; pan?: string; pin: string }>(
    'pinblock-decode.json',
  ).vectors) {
    it(`format ${v.format}: decode ${v.block}`, () => {
      assert.equal(decodePinBlock({ format: v.format, block: fromHex(v.block), pan: v.pan }), v.pin);
    });
  }
  for (const v of loadVectors<{ pan: string; field: string }>('pinblock-panfield4.json').vectors) {
    it(`format 4 PAN field of ${v.pan}`, () => assert.equal(toHex(panField4(v.pan)), v.field));
  }
  it('format 4 PIN field helper matches encodePinBlock', () => {
    assert.equal(toHex(pinField4('1234', fixed('FFFFFFFFFFFFFFFF'))), '441234AAAAAAAAAAFFFFFFFFFFFFFFFF');
  });
  it('format 1 and 3 fill come from the random source', () => {
    assert.equal(
      toHex(encodePinBlock({ format: 1, pin: '1234', random: fixed('00'.repeat(10)) })),
      '1412340000000000',
    );
    assert.equal(
      toHex(encodePinBlock({ format: 1, pin: '1234', random: fixed('3C'.repeat(10)) })),
      '141234CCCCCCCCCC',
    );
    // 0xFF mod 6 = 3 → fill D; XOR the PAN field 0000555555123456.
    const b3 = encodePinBlock({ format: 3, pin: '1234', pan: pan0, random: fixed('FF'.repeat(10)) });
    assert.equal(toHex(b3), '3412618888CFE98B');
    assert.equal(decodePinBlock({ format: 3, block: b3, pan: pan0 }), '1234');
  });
});

describe('PIN blocks: published encrypted blocks', () => {
  const { vectors } = loadVectors<{
    format: PinBlockFormat;
    alg: CipherAlgorithm;
    key: string;
    pin: string;
    pan: string;
    random?: string;
    block: string;
    from: string;
  }>('pinblock-encrypted.json');
  for (const v of vectors) {
    it(`format ${v.format} ${v.from}`, () => {
      const key = createKey(v.alg, fromHex(v.key));
      assert.equal(decryptPinBlock(key, fromHex(v.block), { format: v.format, pan: v.pan }), v.pin);
      const deterministic = v.format === 0 || v.format === 'sm4' || v.random !== undefined;
      if (deterministic) {
        const random = v.random ? fixed(v.random) : () => assert.fail('format needs no random fill');
        assert.equal(
          toHex(encryptPinBlock(key, { format: v.format, pin: v.pin, pan: v.pan, random })),
          v.block,
        );
      }
    });
  }
});

describe('PIN blocks: every failure has its own code', () => {
  const { vectors } = loadVectors<{
    format: PinBlockFormat;
    block: string;
    pan?: string;
    alg?: CipherAlgorithm;
    key?: string;
    code: string;
  }>('pinblock-errors.json');
  for (const v of vectors) {
    it(`format ${v.format} ${v.block} → ${v.code}`, () => {
      const block = fromHex(v.block);
      if (v.key && v.alg) {
        const key = createKey(v.alg, fromHex(v.key));
        assert.throws(() => decryptPinBlock(key, block, { format: v.format, pan: v.pan }), code(v.code));
      } else {
        assert.throws(() => decodePinBlock({ format: v.format, block, pan: v.pan }), code(v.code));
      }
    });
  }

  it('POSKEY_ERR_PIN_BLOCK_FORMAT for unknown formats', () => {
    assert.equal(parsePinBlockFormat('0'), 0);
    assert.equal(parsePinBlockFormat('4'), 4);
    assert.equal(parsePinBlockFormat('SM4'), 'sm4');
    for (const s of ['5', 'iso0', '', '01', ' 1x']) {
      assert.throws(() => parsePinBlockFormat(s), code('POSKEY_ERR_PIN_BLOCK_FORMAT'));
    }
    assert.throws(
      () => encodePinBlock({ format: 7 as PinBlockFormat, pin: '1234' }),
      code('POSKEY_ERR_PIN_BLOCK_FORMAT'),
    );
  });

  it('POSKEY_ERR_PIN_LENGTH and POSKEY_ERR_PIN_DIGITS on encode', () => {
    for (const pin of ['123', '1234567890123', '']) {
      assert.throws(() => encodePinBlock({ format: 2, pin }), code('POSKEY_ERR_PIN_LENGTH'));
    }
    for (const pin of ['123A', '12 34', '１２３４']) {
      assert.throws(() => encodePinBlock({ format: 2, pin }), code('POSKEY_ERR_PIN_DIGITS'));
    }
  });

  it('POSKEY_ERR_PAN when the PAN is missing, not decimal or too short', () => {
    for (const format of [0, 3, 'sm4'] as PinBlockFormat[]) {
      for (const pan of [undefined, '', '555555555555', '5555555551234A', '55555555512345678901']) {
        assert.throws(() => encodePinBlock({ format, pin: '1234', pan }), code('POSKEY_ERR_PAN'));
      }
    }
    const aes = createKey('aes', Buffer.alloc(16, 1));
    for (const pan of [undefined, '', '12345678901234567890', '41111111x1111111']) {
      assert.throws(() => encryptPinBlock(aes, { format: 4, pin: '1234', pan }), code('POSKEY_ERR_PAN'));
    }
  });

  it('POSKEY_ERR_PIN_BLOCK_FILL in format 0 when no PAN could explain the fill', () => {
    // PIN field 041234FFFFFFFF0F: nibble 14 is 0, under PAN digit 5, so the block is F ⊕ 5 ⊕ 0 = A there:
    // no decimal PAN digit gives that, so this is bad fill, not a wrong PAN.
    const panField = fromHex('0000555555123456');
    const block = Buffer.from(fromHex('041234FFFFFFFF0F').map((b, i) => b ^ panField[i]!));
    assert.throws(() => decodePinBlock({ format: 0, block, pan: pan0 }), code('POSKEY_ERR_PIN_BLOCK_FILL'));
  });

  it('POSKEY_ERR_PIN_BLOCK_FILL in sm4 outside the PAN field', () => {
    const good = encodePinBlock({ format: 'sm4', pin: '123654', pan: '6230606601007726888' });
    const bad = Buffer.from(good);
    bad[6] = 0xfe;
    assert.throws(
      () => decodePinBlock({ format: 'sm4', block: bad, pan: '6230606601007726888' }),
      code('POSKEY_ERR_PIN_BLOCK_FILL'),
    );
  });

  it('POSKEY_ERR_KEY_ALGORITHM when the key does not fit the format', () => {
    const tdes = createKey('tdes', Buffer.alloc(16, 2));
    const aes = createKey('aes', Buffer.alloc(16, 2));
    const sm4 = createKey('sm4', Buffer.alloc(16, 2));
    assert.throws(
      () => encryptPinBlock(aes, { format: 0, pin: '1234', pan: pan0 }),
      code('POSKEY_ERR_KEY_ALGORITHM'),
    );
    assert.throws(
      () => encryptPinBlock(tdes, { format: 4, pin: '1234', pan: pan0 }),
      code('POSKEY_ERR_KEY_ALGORITHM'),
    );
    assert.throws(
      () => encryptPinBlock(aes, { format: 'sm4', pin: '1234', pan: pan0 }),
      code('POSKEY_ERR_KEY_ALGORITHM'),
    );
    assert.throws(
      () => decryptPinBlock(sm4, Buffer.alloc(8), { format: 1 }),
      code('POSKEY_ERR_KEY_ALGORITHM'),
    );
    assert.throws(
      () => translatePinBlock(tdes, aes, Buffer.alloc(8), { from: 0, to: 0, pan: pan0 }),
      code('POSKEY_ERR_KEY_ALGORITHM'),
    );
  });

  it('POSKEY_ERR_PIN_BLOCK_LENGTH for encrypted blocks of the wrong size', () => {
    const tdes = createKey('tdes', Buffer.alloc(16, 2));
    assert.throws(
      () => decryptPinBlock(tdes, Buffer.alloc(16), { format: 0, pan: pan0 }),
      code('POSKEY_ERR_PIN_BLOCK_LENGTH'),
    );
    assert.throws(
      () => translatePinBlock(tdes, tdes, Buffer.alloc(7), { from: 0, to: 0, pan: pan0 }),
      code('POSKEY_ERR_PIN_BLOCK_LENGTH'),
    );
  });

  it('POSKEY_ERR_LENGTH when the random source misbehaves', () => {
    assert.throws(
      () => encodePinBlock({ format: 1, pin: '1234', random: () => Buffer.alloc(3) }),
      code('POSKEY_ERR_LENGTH'),
    );
  });

  it('POSKEY_ERR_PIN_BLOCK_TRANSLATION for format 2 and pairs outside the allowed groups', () => {
    const tdes = createKey('tdes', Buffer.alloc(16, 3));
    const aes = createKey('aes', Buffer.alloc(16, 3));
    const sm4 = createKey('sm4', Buffer.alloc(16, 3));
    const block = encryptPinBlock(tdes, { format: 2, pin: '1234' });
    assert.throws(
      () => translatePinBlock(tdes, tdes, block, { from: 2, to: 0, pan: pan0 }),
      code('POSKEY_ERR_PIN_BLOCK_TRANSLATION'),
    );
    assert.throws(
      () => translatePinBlock(tdes, tdes, Buffer.alloc(8), { from: 0, to: 2, pan: pan0 }),
      code('POSKEY_ERR_PIN_BLOCK_TRANSLATION'),
    );
    assert.throws(
      () => translatePinBlock(sm4, tdes, Buffer.alloc(16), { from: 'sm4', to: 3, pan: pan0 }),
      code('POSKEY_ERR_PIN_BLOCK_TRANSLATION'),
    );
    assert.throws(
      () => translatePinBlock(aes, sm4, Buffer.alloc(16), { from: 4, to: 'sm4', pan: pan0 }),
      code('POSKEY_ERR_PIN_BLOCK_TRANSLATION'),
    );
  });
});

describe('PIN blocks: a wrong PAN', () => {
  const otherPan = '4000001234562'; // 12-digit window 000000123456
  it('format 0: decoding with the wrong PAN throws POSKEY_ERR_PAN_MISMATCH', () => {
    const block = encodePinBlock({ format: 0, pin: '1234', pan: pan0 });
    assert.throws(() => decodePinBlock({ format: 0, block, pan: otherPan }), code('POSKEY_ERR_PAN_MISMATCH'));
  });
  it('format 3 and 4: decoding with the wrong PAN throws', () => {
    const block3 = encodePinBlock({ format: 3, pin: '1234', pan: pan0, random: fixed('FF'.repeat(10)) });
    assert.throws(() => decodePinBlock({ format: 3, block: block3, pan: otherPan }), PoskeyError);
    const aes = createKey('aes', Buffer.alloc(32, 9));
    const block4 = encryptPinBlock(aes, { format: 4, pin: '1234', pan: pan0 });
    assert.throws(() => decryptPinBlock(aes, block4, { format: 4, pan: otherPan }), PoskeyError);
  });

  const digits = (min: number, max: number) =>
    fc.array(fc.integer({ min: 0, max: 9 }), { minLength: min, maxLength: max }).map((d) => d.join(''));
  for (const format of [0, 'sm4'] as PinBlockFormat[]) {
    it(`format ${format}: a PAN differing under the fill is always reported as a mismatch`, () => {
      fc.assert(
        fc.property(
          digits(4, 12),
          digits(13, 19),
          fc.nat(),
          fc.integer({ min: 1, max: 9 }),
          (pin, pan, at, d) => {
            // Change one digit of the 12-digit window at a position the PIN does not cover.
            const window = pan.length - 13;
            const firstFill = Math.max(0, pin.length - 2);
            const pos = window + firstFill + (at % (12 - firstFill));
            const changed = (Number(pan[pos]) + d) % 10;
            const wrong = pan.slice(0, pos) + String(changed) + pan.slice(pos + 1);
            const block = encodePinBlock({ format, pin, pan });
            assert.throws(
              () => decodePinBlock({ format, block, pan: wrong }),
              code('POSKEY_ERR_PAN_MISMATCH'),
            );
          },
        ),
        { numRuns: 200 },
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Properties

const pinArb = fc
  .array(fc.integer({ min: 0, max: 9 }), { minLength: 4, maxLength: 12 })
  .map((d) => d.join(''));
const panArb = fc
  .array(fc.integer({ min: 0, max: 9 }), { minLength: 13, maxLength: 19 })
  .map((d) => d.join(''));
const cipherOf = (f: PinBlockFormat): CipherAlgorithm[] =>
  f === 4 ? ['aes'] : f === 'sm4' ? ['sm4'] : ['tdes', 'des'];
const keyArb = (f: PinBlockFormat) =>
  fc
    .constantFrom(...cipherOf(f))
    .chain((alg) =>
      fc
        .constantFrom(...KEY_LENGTHS[alg])
        .chain((n) => fc.uint8Array({ minLength: n, maxLength: n }).map((k) => createKey(alg, k))),
    );

describe('PIN blocks: properties', () => {
  for (const format of PIN_BLOCK_FORMATS) {
    it(`format ${format}: decode(encode(pin)) = pin`, () => {
      fc.assert(
        fc.property(pinArb, panArb, (pin, pan) => {
          assert.equal(decodePinBlock({ format, block: encodePinBlock({ format, pin, pan }), pan }), pin);
        }),
        { numRuns: 150 },
      );
    });
    it(`format ${format}: decrypt(encrypt(pin)) = pin, input block untouched`, () => {
      fc.assert(
        fc.property(keyArb(format), pinArb, panArb, (key, pin, pan) => {
          const block = encryptPinBlock(key, { format, pin, pan });
          const copy = Buffer.from(block);
          assert.equal(decryptPinBlock(key, block, { format, pan }), pin);
          assert.deepEqual(block, copy);
        }),
        { numRuns: 80 },
      );
    });
  }

  const pairs: [PinBlockFormat, PinBlockFormat][] = [];
  for (const a of [0, 1, 3, 4] as PinBlockFormat[])
    for (const b of [0, 1, 3, 4] as PinBlockFormat[]) pairs.push([a, b]);
  pairs.push([0, 'sm4'], ['sm4', 0], ['sm4', 'sm4']);
  for (const [from, to] of pairs) {
    it(`translate ${from} → ${to}, then decrypt under the target gives the PIN`, () => {
      fc.assert(
        fc.property(keyArb(from), keyArb(to), pinArb, panArb, panArb, (src, dst, pin, pan, toPan) => {
          const block = encryptPinBlock(src, { format: from, pin, pan });
          const copy = Buffer.from(block);
          const out = translatePinBlock(src, dst, block, { from, to, pan, toPan });
          assert.equal(decryptPinBlock(dst, out, { format: to, pan: toPan }), pin);
          assert.deepEqual(block, copy);
        }),
        { numRuns: 40 },
      );
    });
  }

  it('translate 0 → 0 keeps the clear block and rejects a block made for another PAN', () => {
    fc.assert(
      fc.property(keyArb(0), keyArb(0), pinArb, panArb, (src, dst, pin, pan) => {
        const clear = encodePinBlock({ format: 0, pin, pan });
        const out = translatePinBlock(src, dst, src.ecbEncrypt(clear), { from: 0, to: 0, pan });
        assert.deepEqual(dst.ecbDecrypt(out), clear);
      }),
      { numRuns: 100 },
    );
    const src = createKey('tdes', Buffer.alloc(16, 5));
    const block = encryptPinBlock(src, { format: 0, pin: '1234', pan: pan0 });
    assert.throws(
      () => translatePinBlock(src, src, block, { from: 0, to: 0, pan: '4000001234562' }),
      code('POSKEY_ERR_PAN_MISMATCH'),
    );
    assert.throws(
      () =>
        translatePinBlock(src, src, src.ecbEncrypt(fromHex('0F1261AAAAEDCBA9')), {
          from: 0,
          to: 0,
          pan: pan0,
        }),
      code('POSKEY_ERR_PIN_LENGTH'),
    );
  });

  it('translate 1 → 0 needs a PAN for the target', () => {
    const k = createKey('tdes', Buffer.alloc(16, 6));
    const block = encryptPinBlock(k, { format: 1, pin: '1234' });
    assert.throws(() => translatePinBlock(k, k, block, { from: 1, to: 0 }), code('POSKEY_ERR_PAN'));
    const out = translatePinBlock(k, k, block, { from: 1, to: 0, toPan: pan0 });
    assert.equal(decryptPinBlock(k, out, { format: 0, pan: pan0 }), '1234');
  });
});
