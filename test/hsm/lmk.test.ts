import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { PoskeyError } from '../../src/errors.js';
import { HsmError } from '../../src/hsm/errors.js';
import {
  formLmk,
  generateDevLmk,
  LMK_KCV,
  Lmk,
  LmkSet,
  lmkFromBytes,
  lmkKey,
  randomLmkComponent,
} from '../../src/hsm/lmk.js';

/**
 * Ceremony vectors. KCVs are AES-256-CMAC over 16 zero bytes, leftmost 5 bytes, computed
 * independently with OpenSSL 3.0: `openssl mac -cipher AES-256-CBC -macopt hexkey:<key> CMAC`.
 * C3 is the NIST SP 800-38B AES-256 example key.
 */
const C1 = '000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F';
const C2 = '404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F';
const C3 = '603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4';
const KCV = {
  C1: '377822C093',
  C2: '7CF7A49CFF',
  C3: '1A0B2DF267',
  C1C2: '5C03BEC53F',
  C1C2C3: '13F339341A',
};

function code(expected: string) {
  return (e: unknown) => e instanceof PoskeyError && e.code === expected;
}

describe('LMK ceremony', () => {
  it('forms an LMK from two components with each KCV and the final KCV', () => {
    const { lmk, componentKcvs, kcv } = formLmk('00', [fromHex(C1), fromHex(C2)]);
    assert.deepEqual(componentKcvs, [KCV.C1, KCV.C2]);
    assert.equal(kcv, KCV.C1C2);
    assert.equal(lmk.kcv, KCV.C1C2);
    assert.equal(lmk.id, '00');
    assert.equal(lmk.dev, false);
  });

  it('forms an LMK from three components', () => {
    const { componentKcvs, kcv } = formLmk('01', [fromHex(C1), fromHex(C2), fromHex(C3)]);
    assert.deepEqual(componentKcvs, [KCV.C1, KCV.C2, KCV.C3]);
    assert.equal(kcv, KCV.C1C2C3);
  });

  it('does not modify the callers components', () => {
    const a = fromHex(C1);
    const b = fromHex(C2);
    formLmk('00', [a, b]);
    assert.equal(toHex(a), C1);
    assert.equal(toHex(b), C2);
  });

  it('the order of components does not matter (XOR)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        (a, b) => {
          fc.pre(!Buffer.from(a).equals(Buffer.from(b)) && a.some((x) => x) && b.some((x) => x));
          const one = formLmk('00', [a, b]);
          const two = formLmk('00', [b, a]);
          assert.equal(one.kcv, two.kcv);
          const expected = checkValue(createKey('aes', xor(a, b)), LMK_KCV).value;
          assert.equal(one.kcv, expected);
          one.lmk.destroy();
          two.lmk.destroy();
        },
      ),
      { numRuns: 50 },
    );
  });

  it('rejects fewer than 2 components (dual control)', () => {
    assert.throws(() => formLmk('00', [fromHex(C1)]), code('POSKEY_ERR_LMK_COMPONENTS'));
    assert.throws(() => formLmk('00', []), code('POSKEY_ERR_LMK_COMPONENTS'));
    assert.throws(() => formLmk('00', 'nope' as unknown as Uint8Array[]), code('POSKEY_ERR_LMK_COMPONENTS'));
  });

  it('rejects more than 9 components', () => {
    const many = Array.from({ length: 10 }, () => randomLmkComponent());
    assert.throws(() => formLmk('00', many), code('POSKEY_ERR_LMK_COMPONENTS'));
  });

  it('rejects a component that is not 32 bytes', () => {
    assert.throws(
      () => formLmk('00', [fromHex(C1), Buffer.alloc(16, 1)]),
      (e: unknown) => {
        return e instanceof HsmError && e.code === 'POSKEY_ERR_LMK_COMPONENT' && e.field === 'components[1]';
      },
    );
    assert.throws(
      () => formLmk('00', [fromHex(C1), C2 as unknown as Uint8Array]),
      code('POSKEY_ERR_LMK_COMPONENT'),
    );
  });

  it('rejects an all-zero component, a repeated component, and components that cancel out', () => {
    assert.throws(() => formLmk('00', [fromHex(C1), Buffer.alloc(32)]), code('POSKEY_ERR_LMK_COMPONENT'));
    assert.throws(
      () => formLmk('00', [fromHex(C1), fromHex(C2), fromHex(C1)]),
      (e: unknown) => {
        return e instanceof HsmError && e.code === 'POSKEY_ERR_LMK_COMPONENT' && e.field === 'components[2]';
      },
    );
    const c3 = xor(fromHex(C1), fromHex(C2));
    assert.throws(
      () => formLmk('00', [fromHex(C1), fromHex(C2), c3]),
      (e: unknown) => {
        return e instanceof HsmError && e.code === 'POSKEY_ERR_LMK_COMPONENT' && e.field === 'components';
      },
    );
  });

  it('rejects a malformed LMK id', () => {
    for (const id of ['0', '100', 'AB', '', ' 1']) {
      assert.throws(() => formLmk(id, [fromHex(C1), fromHex(C2)]), code('POSKEY_ERR_LMK_ID'));
    }
    assert.throws(() => generateDevLmk('x'), code('POSKEY_ERR_LMK_ID'));
  });

  it('error messages carry no component or key hex', () => {
    try {
      formLmk('00', [fromHex(C1), fromHex(C2), fromHex(C1)]);
      assert.fail('expected a throw');
    } catch (e) {
      const text = `${String(e)} ${JSON.stringify(e)}`;
      assert.ok(!text.includes(C1) && !text.includes(C1.toLowerCase()));
    }
  });
});

describe('Lmk', () => {
  it('never shows its key: toString, JSON and inspect give id, KCV and dev flag only', () => {
    const { lmk } = formLmk('07', [fromHex(C1), fromHex(C2)]);
    const lmkHex = '40'.repeat(32);
    for (const text of [String(lmk), JSON.stringify(lmk), inspect(lmk, { showHidden: true, depth: 5 })]) {
      assert.ok(!text.includes(lmkHex), text);
      assert.ok(text.includes(KCV.C1C2), text);
    }
    assert.deepEqual(JSON.parse(JSON.stringify(lmk)), { id: '07', kcv: KCV.C1C2, dev: false });
    assert.deepEqual(Object.keys(lmk).sort(), ['dev', 'id', 'kcv']);
  });

  it('destroy() zeroises the key handle', () => {
    const { lmk } = formLmk('00', [fromHex(C1), fromHex(C2)]);
    const handle = lmkKey(lmk);
    assert.equal(toHex(handle.exportKeyBytes()), '40'.repeat(32));
    lmk.destroy();
    assert.equal(lmk.destroyed, true);
    assert.equal(handle.destroyed, true);
    assert.throws(() => lmkKey(lmk), code('POSKEY_ERR_KEY_DESTROYED'));
  });

  it('lmkFromBytes rejects anything but 32 bytes, and the constructor anything but AES-256', () => {
    assert.throws(() => lmkFromBytes('00', Buffer.alloc(16, 1), false), code('POSKEY_ERR_LMK_KEY'));
    assert.throws(
      () => new Lmk('00', createKey('aes', Buffer.alloc(16, 1)), false),
      code('POSKEY_ERR_LMK_KEY'),
    );
    assert.throws(
      () => new Lmk('00', createKey('tdes', Buffer.alloc(24, 3)), false),
      code('POSKEY_ERR_LMK_KEY'),
    );
  });

  it('generateDevLmk makes a random, marked AES-256 LMK', () => {
    const a = generateDevLmk();
    const b = generateDevLmk('05');
    assert.equal(a.dev, true);
    assert.equal(a.id, '00');
    assert.equal(b.id, '05');
    assert.notEqual(a.kcv, b.kcv);
    assert.match(a.kcv, /^[0-9A-F]{10}$/);
    assert.match(String(a), /DEVELOPMENT/);
  });
});

describe('LmkSet', () => {
  function twoLmks(): [Lmk, Lmk] {
    return [formLmk('00', [fromHex(C1), fromHex(C2)]).lmk, formLmk('01', [fromHex(C1), fromHex(C3)]).lmk];
  }

  it('holds several LMKs by id, the first one being the default', () => {
    const [a, b] = twoLmks();
    const set = new LmkSet([a, b]);
    assert.equal(set.defaultId, '00');
    assert.equal(set.get(), a);
    assert.equal(set.get('01'), b);
    assert.deepEqual(set.ids(), ['00', '01']);
    assert.equal(set.size, 2);
    assert.equal(set.has('01'), true);
    set.setDefault('01');
    assert.equal(set.get(), b);
  });

  it('throws POSKEY_ERR_LMK_UNKNOWN for an unknown id, with payShield code 13', () => {
    const set = new LmkSet(twoLmks());
    assert.throws(
      () => set.get('42'),
      (e: unknown) => e instanceof HsmError && e.code === 'POSKEY_ERR_LMK_UNKNOWN' && e.payShield === '13',
    );
    assert.throws(() => new LmkSet().get(), code('POSKEY_ERR_LMK_UNKNOWN'));
    assert.throws(() => set.setDefault('42'), code('POSKEY_ERR_LMK_UNKNOWN'));
  });

  it('refuses a second LMK with the same id', () => {
    const [a] = twoLmks();
    const set = new LmkSet([a]);
    assert.throws(() => set.add(generateDevLmk('00')), code('POSKEY_ERR_LMK_DUPLICATE'));
    assert.throws(() => set.add({} as Lmk), code('POSKEY_ERR_TYPE'));
  });

  it('add with makeDefault, remove zeroises and moves the default', () => {
    const [a, b] = twoLmks();
    const set = new LmkSet([a]);
    set.add(b, { makeDefault: true });
    assert.equal(set.defaultId, '01');
    set.remove('01');
    assert.equal(b.destroyed, true);
    assert.equal(set.defaultId, '00');
    assert.throws(() => set.remove('01'), code('POSKEY_ERR_LMK_UNKNOWN'));
  });

  it('destroy() zeroises every LMK; JSON shows ids and KCVs only', () => {
    const [a, b] = twoLmks();
    const set = new LmkSet([a, b], '01');
    assert.deepEqual(set.toJSON(), {
      default: '01',
      lmks: [
        { id: '00', kcv: a.kcv, dev: false },
        { id: '01', kcv: b.kcv, dev: false },
      ],
    });
    assert.ok(!inspect(set).includes('40'.repeat(32)));
    set.destroy();
    assert.equal(a.destroyed && b.destroyed, true);
    assert.equal(set.size, 0);
  });
});
