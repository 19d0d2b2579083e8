import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { type CipherAlgorithm, createKey } from '../../src/crypto/cipher.js';
import { cmac } from '../../src/crypto/cmac.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

describe('CMAC', () => {
  for (const v of loadVectors<{ alg: CipherAlgorithm; key: string; data: string; mac: string }>('cmac.json')
    .vectors) {
    it(`${v.alg} ${v.data.length / 2} bytes`, () => {
      const key = createKey(v.alg, fromHex(v.key));
      assert.equal(toHex(cmac(key, fromHex(v.data))), v.mac);
      // A second call on the same handle must give the same answer (kept context, cached subkeys).
      assert.equal(toHex(cmac(key, fromHex(v.data), 4)), v.mac.slice(0, 8));
    });
  }
  it('rejects a MAC length outside the block', () => {
    const key = createKey('aes', Buffer.alloc(16));
    for (const n of [0, 17, 1.5]) {
      assert.throws(
        () => cmac(key, Buffer.alloc(3), n),
        (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_LENGTH',
      );
    }
  });
});
