import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { type CipherAlgorithm, createKey, decrypt, encrypt, KEY_LENGTHS } from '../../src/crypto/cipher.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

interface CipherVector {
  alg: CipherAlgorithm;
  mode: 'ecb' | 'cbc';
  key: string;
  iv?: string;
  plain: string;
  cipher: string;
}

describe('ciphers: published vectors', () => {
  for (const v of loadVectors<CipherVector>('ciphers.json').vectors) {
    it(`${v.alg}-${v.mode} ${v.key.slice(0, 8)}…`, () => {
      const iv = v.iv ? fromHex(v.iv) : undefined;
      assert.equal(toHex(encrypt(v.alg, v.mode, fromHex(v.key), fromHex(v.plain), iv)), v.cipher);
      assert.equal(toHex(decrypt(v.alg, v.mode, fromHex(v.key), fromHex(v.cipher), iv)), v.plain);
    });
  }
});

const algs: CipherAlgorithm[] = ['des', 'tdes', 'aes', 'sm4'];
const keyFor = (alg: CipherAlgorithm) =>
  fc.constantFrom(...KEY_LENGTHS[alg]).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));

describe('ciphers: kept contexts behave like fresh ones', () => {
  for (const alg of algs) {
    const bs = alg === 'aes' || alg === 'sm4' ? 16 : 8;
    const blocks = fc
      .integer({ min: 1, max: 6 })
      .chain((n) => fc.uint8Array({ minLength: n * bs, maxLength: n * bs }));
    it(`${alg}: repeated CBC calls with varying IVs match one-shot CBC and decrypt back`, () => {
      fc.assert(
        fc.property(
          keyFor(alg),
          fc.array(fc.tuple(blocks, fc.uint8Array({ minLength: bs, maxLength: bs })), {
            minLength: 1,
            maxLength: 5,
          }),
          (key, calls) => {
            const handle = createKey(alg, key);
            for (const [data, iv] of calls) {
              const c = handle.cbcEncrypt(data, iv);
              assert.deepEqual(c, encrypt(alg, 'cbc', key, data, iv));
              assert.deepEqual(handle.cbcDecrypt(c, iv), Buffer.from(data));
              assert.deepEqual(handle.ecbDecrypt(handle.ecbEncrypt(data)), Buffer.from(data));
            }
          },
        ),
        { numRuns: 60 },
      );
    });
  }

  it('single DES equals 2-key TDES with K||K (cross-check with OpenSSL des-ede)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        (k, block) => {
          const ref = createCipheriv('des-ede-ecb', Buffer.concat([k, k]), null)
            .setAutoPadding(false)
            .update(block);
          assert.deepEqual(encrypt('des', 'ecb', k, block), ref);
        },
      ),
    );
  });

  it('does not modify the caller buffer', () => {
    const data = Buffer.alloc(16, 7);
    createKey('tdes', Buffer.alloc(16, 1)).cbcEncrypt(data, Buffer.alloc(8, 9));
    assert.deepEqual(data, Buffer.alloc(16, 7));
  });
});

describe('ciphers: errors', () => {
  const code = (fn: () => unknown, expected: string, field?: string) =>
    assert.throws(
      fn,
      (e: unknown) =>
        e instanceof PoskeyError && e.code === expected && (field === undefined || e.field === field),
    );

  it('rejects a key of the wrong length', () =>
    code(() => createKey('tdes', Buffer.alloc(12)), 'POSKEY_ERR_LENGTH', 'key'));
  it('rejects an unknown algorithm', () =>
    code(() => createKey('rc4' as CipherAlgorithm, Buffer.alloc(16)), 'POSKEY_ERR_ALGORITHM'));
  it('rejects partial blocks', () =>
    code(() => createKey('aes', Buffer.alloc(16)).ecbEncrypt(Buffer.alloc(15)), 'POSKEY_ERR_LENGTH', 'data'));
  it('rejects empty data', () =>
    code(() => createKey('aes', Buffer.alloc(16)).ecbEncrypt(Buffer.alloc(0)), 'POSKEY_ERR_LENGTH', 'data'));
  it('rejects a wrong-size IV', () =>
    code(
      () => createKey('sm4', Buffer.alloc(16)).cbcEncrypt(Buffer.alloc(16), Buffer.alloc(8)),
      'POSKEY_ERR_LENGTH',
      'iv',
    ));
  it('rejects odd hex', () => code(() => fromHex('ABC', 'key'), 'POSKEY_ERR_HEX', 'key'));
  it('rejects non-hex', () => code(() => fromHex('GG', 'key'), 'POSKEY_ERR_HEX', 'key'));
  it('refuses use after destroy, and hides the key from inspection', () => {
    const k = createKey('aes', fromHex('00112233445566778899AABBCCDDEEFF'));
    assert.doesNotMatch(`${k} ${JSON.stringify(k)}`, /00112233/);
    k.destroy();
    code(() => k.exportKeyBytes(), 'POSKEY_ERR_KEY_DESTROYED');
  });
});
