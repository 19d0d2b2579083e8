/**
 * Visa PVV: the published vectors (pure function and through the HSM), generate-then-verify from a
 * PIN block under a ZPK, the 4-digit property of the scheme, key-role enforcement and every error.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { encryptPinBlock, type PinBlockFormat } from '../../src/crypto/pinblock.js';
import { PoskeyError } from '../../src/errors.js';
import type { KeyAlgorithm, KeyType } from '../../src/hsm/api.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { KEY_TYPES } from '../../src/hsm/key-types.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import {
  assertPvki,
  assertPvv,
  PVK_KEY_TYPE,
  transformedSecurityParameter,
  visaPvv,
} from '../../src/hsm/pvv.js';
import { loadVectors } from '../helpers/vectors.js';

interface PvvVector {
  pvk: string;
  pvki: string;
  pin: string;
  pan: string;
  pvv: string;
  fallback: boolean;
}

const { vectors } = loadVectors<PvvVector>('pvv.json');
const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });

function fails(code: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

/** Imports a key the test knows in clear (component 2 = clear ⊕ component 1). */
function known(keyType: KeyType, algorithm: KeyAlgorithm, clearHex: string): string {
  const clear = fromHex(clearHex);
  const c1 = Buffer.alloc(clear.length, 0x5a);
  const components = [toHex(c1), toHex(xor(clear, c1))];
  return hsm.importKey({ keyType, algorithm, source: { kind: 'components', components } }).keyBlock;
}

const PVK_CLEAR = vectors[0]!.pvk;
const ZPK_CLEAR = '6DA2D08FD5E56BB0BF2F0E5E8F20F1DA';
const pvk = known(PVK_KEY_TYPE, 'tdes2', PVK_CLEAR);
const zpk = known('ZPK', 'tdes2', ZPK_CLEAR);
const zpkHandle = createKey('tdes', fromHex(ZPK_CLEAR));

function pinBlock(pin: string, pan: string, format: PinBlockFormat = 0): string {
  return toHex(encryptPinBlock(zpkHandle, { format, pin, pan }));
}

describe('Visa PVV: published vectors', () => {
  for (const v of vectors) {
    it(`PVKI ${v.pvki}, PAN ${v.pan.slice(-4)}: PVV ${v.pvv}`, () => {
      assert.equal(visaPvv(createKey('tdes', fromHex(v.pvk)), v.pan, v.pvki, v.pin), v.pvv);
      assert.equal(hsm.generatePvv({ pvk, pin: v.pin, pan: v.pan, pvki: v.pvki }), v.pvv);
    });
  }

  it('the vectors cover both decimalisation passes', () => {
    const handle = createKey('tdes', fromHex(PVK_CLEAR));
    for (const v of vectors) {
      const out = toHex(handle.ecbEncrypt(transformedSecurityParameter(v.pan, v.pvki, v.pin)));
      const decimals = out.replace(/[A-F]/g, '').length;
      assert.equal(decimals < 4, v.fallback, `${v.pvv}: ${decimals} decimal digits`);
    }
    assert.ok(vectors.some((v) => v.fallback) && vectors.some((v) => !v.fallback));
  });

  it('TSP = 11 PAN digits before the check digit, PVKI, 4 leftmost PIN digits', () => {
    assert.equal(toHex(transformedSecurityParameter('4761739001010119', '1', '123456')), '7390010101111234');
  });
});

describe('PVK key type', () => {
  it('is a V2 TDES-2 key, named PVK in its block', () => {
    const info = hsm.describeKey(pvk);
    assert.equal(info.keyType, 'PVK');
    assert.equal(info.usage, 'V2');
    assert.equal(info.modeOfUse, 'C');
    assert.equal(info.algorithm, 'tdes2');
    assert.deepEqual(KEY_TYPES.PVK.algorithms, ['tdes2']);
  });

  it('can be generated', () => {
    const made = hsm.generateKey({ keyType: PVK_KEY_TYPE, algorithm: 'tdes2' });
    assert.equal(made.info.keyType, 'PVK');
    assert.match(
      hsm.generatePvv({ pvk: made.keyBlock, pin: '1234', pan: '4761739001010119', pvki: '1' }),
      /^\d{4}$/,
    );
  });

  it('refuses a triple-length PVK', () => {
    assert.throws(
      () => hsm.generateKey({ keyType: PVK_KEY_TYPE, algorithm: 'tdes3' }),
      fails('POSKEY_ERR_KEY_ALGORITHM'),
    );
  });
});

describe('verifyPinPvv', () => {
  const pan = '4761739001010119';
  const pvv = hsm.generatePvv({ pvk, pin: '1234', pan, pvki: '1' });
  const req = { zpk, pvk, pvki: '1', pvv, pan, format: 0 as const };

  it('accepts the right PIN and refuses a wrong one', () => {
    assert.equal(hsm.verifyPinPvv({ ...req, pinBlock: pinBlock('1234', pan) }), true);
    assert.equal(hsm.verifyPinPvv({ ...req, pinBlock: pinBlock('4321', pan) }), false);
  });

  it('reads formats 1 and 3 as well', () => {
    assert.equal(hsm.verifyPinPvv({ ...req, format: 1, pinBlock: pinBlock('1234', pan, 1) }), true);
    assert.equal(hsm.verifyPinPvv({ ...req, format: 3, pinBlock: pinBlock('1234', pan, 3) }), true);
  });

  it('counts only the 4 leftmost PIN digits (a property of the Visa scheme)', () => {
    const six = hsm.generatePvv({ pvk, pin: '123456', pan, pvki: '1' });
    assert.equal(six, pvv);
    assert.equal(hsm.verifyPinPvv({ ...req, pinBlock: pinBlock('123499', pan) }), true);
  });

  it('depends on the PVKI and the PAN', () => {
    assert.equal(
      hsm.verifyPinPvv({ ...req, pvki: '2', pinBlock: pinBlock('1234', pan) }),
      hsm.generatePvv({ pvk, pin: '1234', pan, pvki: '2' }) === pvv,
    );
    const other = '4761739001010127';
    const otherPvv = hsm.generatePvv({ pvk, pin: '1234', pan: other, pvki: '1' });
    assert.equal(
      hsm.verifyPinPvv({ ...req, pan: other, pvv: otherPvv, pinBlock: pinBlock('1234', other) }),
      true,
    );
  });

  it('property: generate then verify is true; another PIN verifies only on a PVV collision', () => {
    const digits = (min: number, max: number) =>
      fc.array(fc.integer({ min: 0, max: 9 }), { minLength: min, maxLength: max }).map((a) => a.join(''));
    fc.assert(
      fc.property(
        digits(4, 12),
        digits(4, 12),
        digits(13, 19),
        fc.integer({ min: 0, max: 9 }),
        (pin, other, p, k) => {
          const pvki = String(k);
          const value = hsm.generatePvv({ pvk, pin, pan: p, pvki });
          const base = { zpk, pvk, pvki, pvv: value, pan: p, format: 0 as const };
          assert.equal(hsm.verifyPinPvv({ ...base, pinBlock: pinBlock(pin, p) }), true);
          const collides = hsm.generatePvv({ pvk, pin: other, pan: p, pvki }) === value;
          assert.equal(hsm.verifyPinPvv({ ...base, pinBlock: pinBlock(other, p) }), collides);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('a block under another ZPK never verifies', () => {
    const stranger = createKey('tdes', fromHex('0123456789ABCDEFFEDCBA9876543210'));
    const block = toHex(encryptPinBlock(stranger, { format: 0, pin: '1234', pan }));
    let ok = false;
    try {
      ok = hsm.verifyPinPvv({ ...req, pinBlock: block });
    } catch (e) {
      assert.ok(e instanceof PoskeyError && /^POSKEY_ERR_(PIN|PAN)/.test(e.code), String(e));
    }
    assert.equal(ok, false);
  });
});

describe('PVV errors', () => {
  const pan = '4761739001010119';

  it('POSKEY_ERR_PVKI', () => {
    assert.throws(() => assertPvki('A'), fails('POSKEY_ERR_PVKI'));
    assert.throws(() => hsm.generatePvv({ pvk, pin: '1234', pan, pvki: '11' }), fails('POSKEY_ERR_PVKI'));
  });

  it('POSKEY_ERR_PVV', () => {
    assert.throws(() => assertPvv('123'), fails('POSKEY_ERR_PVV'));
    const pinBlockHex = pinBlock('1234', pan);
    assert.throws(
      () => hsm.verifyPinPvv({ zpk, pvk, pvki: '1', pvv: 'abcd', pan, format: 0, pinBlock: pinBlockHex }),
      fails('POSKEY_ERR_PVV'),
    );
  });

  it('POSKEY_ERR_PAN', () => {
    assert.throws(
      () => hsm.generatePvv({ pvk, pin: '1234', pan: '12345678901', pvki: '1' }),
      fails('POSKEY_ERR_PAN'),
    );
    assert.throws(
      () => hsm.generatePvv({ pvk, pin: '1234', pan: '47617390010101A9', pvki: '1' }),
      fails('POSKEY_ERR_PAN'),
    );
  });

  it('POSKEY_ERR_PIN_LENGTH and POSKEY_ERR_PIN_DIGITS', () => {
    assert.throws(() => hsm.generatePvv({ pvk, pin: '123', pan, pvki: '1' }), fails('POSKEY_ERR_PIN_LENGTH'));
    assert.throws(
      () => hsm.generatePvv({ pvk, pin: '1234567890123', pan, pvki: '1' }),
      fails('POSKEY_ERR_PIN_LENGTH'),
    );
    assert.throws(
      () => hsm.generatePvv({ pvk, pin: '12a4', pan, pvki: '1' }),
      fails('POSKEY_ERR_PIN_DIGITS'),
    );
  });

  it('POSKEY_ERR_KEY_ALGORITHM for a PVK handle that is not TDES-2', () => {
    assert.throws(
      () => visaPvv(createKey('des', fromHex('0123456789ABCDEF')), pan, '1', '1234'),
      fails('POSKEY_ERR_KEY_ALGORITHM'),
    );
    assert.throws(
      () => visaPvv(createKey('aes', Buffer.alloc(16, 1)), pan, '1', '1234'),
      fails('POSKEY_ERR_KEY_ALGORITHM'),
    );
  });

  it('POSKEY_ERR_PIN_BLOCK_LENGTH for a PIN block that is not hex', () => {
    assert.throws(
      () => hsm.verifyPinPvv({ zpk, pvk, pvki: '1', pvv: '1234', pan, format: 0, pinBlock: 'not hex!' }),
      fails('POSKEY_ERR_PIN_BLOCK_LENGTH'),
    );
  });

  it('key roles: a ZPK is no PVK and a PVK is no ZPK', () => {
    assert.throws(
      () => hsm.generatePvv({ pvk: zpk, pin: '1234', pan, pvki: '1' }),
      fails('POSKEY_ERR_KEY_USAGE'),
    );
    assert.throws(
      () =>
        hsm.verifyPinPvv({
          zpk: pvk,
          pvk,
          pvki: '1',
          pvv: '1234',
          pan,
          format: 0,
          pinBlock: pinBlock('1234', pan),
        }),
      fails('POSKEY_ERR_KEY_USAGE'),
    );
  });

  it('messages never carry the PIN', () => {
    try {
      hsm.generatePvv({ pvk, pin: '98765', pan: '123', pvki: '1' });
      assert.fail('expected an error');
    } catch (e) {
      assert.ok(!String((e as Error).message).includes('98765'));
    }
  });
});
