import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { type CipherAlgorithm, createKey, encrypt, KEY_LENGTHS } from '../../src/crypto/cipher.js';
import { cmac } from '../../src/crypto/cmac.js';
import { assertCheckValue, checkValue, type KcvMethod, verifyCheckValue } from '../../src/crypto/kcv.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

interface KcvVector {
  alg: CipherAlgorithm;
  key: string;
  method: KcvMethod;
  length: number;
  kcv: string;
  ref: string;
}

const code = (c: string) => (e: unknown) => e instanceof PoskeyError && e.code === c;

/** Flips the lowest bit of the first hex digit pair, giving a different KCV of the same length. */
function corrupt(hex: string): string {
  const b = fromHex(hex);
  b[0]! ^= 0x01;
  return toHex(b);
}

describe('KCV: published vectors', () => {
  for (const v of loadVectors<KcvVector>('kcv.json').vectors) {
    it(`${v.alg} ${v.method} ${v.length} bytes ${v.key.slice(0, 8)}… → ${v.kcv}`, () => {
      const key = createKey(v.alg, fromHex(v.key));
      assert.deepEqual(checkValue(key, { method: v.method, length: v.length }), {
        value: v.kcv,
        method: v.method,
        length: v.length,
      });
      assert.equal(verifyCheckValue(key, v.kcv, v.method), true);
      assert.equal(verifyCheckValue(key, v.kcv.toLowerCase(), v.method), true);
      assert.equal(verifyCheckValue(key, fromHex(v.kcv), v.method), true);
      assert.equal(verifyCheckValue(key, { value: v.kcv, method: v.method, length: v.length }), true);
      assert.doesNotThrow(() => assertCheckValue(key, v.kcv, v.method));
      assert.equal(verifyCheckValue(key, corrupt(v.kcv), v.method), false);
    });
  }
});

describe('KCV: defaults and definitions', () => {
  const tdes = () => createKey('tdes', fromHex('0123456789ABCDEFFEDCBA9876543210'));
  const aes = () => createKey('aes', fromHex('3F419E1CB7079442AA37474C2EFBF8B8'));

  it('defaults to legacy, 3 bytes', () => {
    assert.deepEqual(checkValue(tdes()), { value: '08D7B4', method: 'legacy', length: 3 });
  });

  it('CMAC defaults to 5 bytes', () => {
    assert.deepEqual(checkValue(aes(), { method: 'cmac' }), {
      value: '08793E25AB',
      method: 'cmac',
      length: 5,
    });
  });

  it('the method changes the value: legacy and CMAC KCVs of one AES key differ', () => {
    const k = aes();
    assert.notEqual(checkValue(k, { length: 3 }).value, checkValue(k, { method: 'cmac', length: 3 }).value);
    assert.equal(verifyCheckValue(k, '08793E'), false);
    assert.equal(verifyCheckValue(k, '08793E', 'cmac'), true);
    assert.equal(verifyCheckValue(k, { value: '08793E', method: 'cmac', length: 3 }), true);
  });

  it('an explicit method overrides the CheckValue method', () => {
    assert.equal(verifyCheckValue(aes(), { value: 'E5E07C', method: 'cmac', length: 3 }, 'legacy'), true);
  });

  const keyArb = fc
    .constantFrom<CipherAlgorithm>('des', 'tdes', 'aes', 'sm4')
    .chain((alg) =>
      fc
        .constantFrom(...KEY_LENGTHS[alg])
        .chain((n) => fc.tuple(fc.constant(alg), fc.uint8Array({ minLength: n, maxLength: n }))),
    );

  it('legacy KCV is a prefix of the one-shot ECB encryption of a zero block; CMAC KCV of cmac(zero block)', () => {
    fc.assert(
      fc.property(keyArb, fc.integer({ min: 1, max: 16 }), ([alg, bytes], n) => {
        const key = createKey(alg, bytes);
        const len = Math.min(n, key.blockSize);
        const zero = Buffer.alloc(key.blockSize);
        const legacy = toHex(encrypt(alg, 'ecb', bytes, zero).subarray(0, len));
        assert.equal(checkValue(key, { length: len }).value, legacy);
        const fresh = createKey(alg, bytes);
        assert.equal(checkValue(key, { method: 'cmac', length: len }).value, toHex(cmac(fresh, zero, len)));
        // Asking again on the same handle (cached check block) gives the same answer.
        assert.equal(checkValue(key, { length: len }).value, legacy);
      }),
      { numRuns: 60 },
    );
  });

  it('DES parity bits do not change the KCV', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const flipped = Buffer.from(bytes.map((b) => b ^ 0x01));
        assert.equal(
          checkValue(createKey('tdes', bytes)).value,
          checkValue(createKey('tdes', flipped)).value,
        );
      }),
      { numRuns: 40 },
    );
  });
});

describe('KCV: errors', () => {
  const des = () => createKey('des', fromHex('5BB5C72CD00B7338'));

  it('POSKEY_ERR_LENGTH for a length outside 1..block size', () => {
    for (const length of [0, 9, -1, 1.5]) {
      assert.throws(() => checkValue(des(), { length }), code('POSKEY_ERR_LENGTH'));
    }
    assert.throws(
      () => checkValue(createKey('aes', Buffer.alloc(16)), { length: 17 }),
      code('POSKEY_ERR_LENGTH'),
    );
    assert.doesNotThrow(() => checkValue(createKey('aes', Buffer.alloc(16)), { length: 16 }));
    assert.throws(() => verifyCheckValue(des(), ''), code('POSKEY_ERR_LENGTH'));
    assert.throws(() => verifyCheckValue(des(), '00'.repeat(9)), code('POSKEY_ERR_LENGTH'));
  });

  it('POSKEY_ERR_KCV_METHOD for an unknown method', () => {
    assert.throws(() => checkValue(des(), { method: 'xor' as KcvMethod }), code('POSKEY_ERR_KCV_METHOD'));
    assert.throws(() => verifyCheckValue(des(), 'AB7153', 'sha' as KcvMethod), code('POSKEY_ERR_KCV_METHOD'));
    assert.throws(
      () => verifyCheckValue(des(), { value: 'AB7153', method: 'x' as KcvMethod, length: 3 }),
      code('POSKEY_ERR_KCV_METHOD'),
    );
  });

  it('POSKEY_ERR_HEX for malformed expected hex', () => {
    assert.throws(() => verifyCheckValue(des(), 'AB71ZZ'), code('POSKEY_ERR_HEX'));
    assert.throws(() => verifyCheckValue(des(), 'AB715'), code('POSKEY_ERR_HEX'));
  });

  it('POSKEY_ERR_TYPE for an expected value that is neither hex, bytes nor a CheckValue', () => {
    assert.throws(() => verifyCheckValue(des(), 42 as unknown as string), code('POSKEY_ERR_TYPE'));
  });

  it('POSKEY_ERR_KCV_MISMATCH names the field but neither value', () => {
    const key = des();
    assert.throws(
      () => assertCheckValue(key, 'AB7154', undefined, 'field62.mak'),
      (e: unknown) => {
        assert.ok(e instanceof PoskeyError);
        assert.equal(e.code, 'POSKEY_ERR_KCV_MISMATCH');
        assert.equal(e.field, 'field62.mak');
        assert.ok(!e.message.includes('AB7153') && !e.message.includes('AB7154'), e.message);
        assert.ok(!e.message.toUpperCase().includes(checkValue(key, { length: 8 }).value.slice(0, 4)));
        return true;
      },
    );
  });
});
