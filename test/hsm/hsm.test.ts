/**
 * Hsm key management: generation, the UnionPay sign-in set, import, export, migration, statelessness,
 * audit and diagnostics, all with a real (development) LmkSet and real LMK key blocks. PIN, MAC,
 * data and enforcement live in hsm-ops.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey, decrypt, encrypt } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { fixParity } from '../../src/crypto/keys.js';
import { generateMac } from '../../src/crypto/mac.js';
import { decryptPinBlock, encryptPinBlock } from '../../src/crypto/pinblock.js';
import { parseHeader, unwrapKeyBlock, wrapKeyBlock } from '../../src/crypto/tr31.js';
import { PoskeyError } from '../../src/errors.js';
import type { KeyAlgorithm, KeyType } from '../../src/hsm/api.js';
import { AuditLog, verifyAuditLog } from '../../src/hsm/audit.js';
import { HSM_OPERATIONS, HSM_VERSION, Hsm } from '../../src/hsm/hsm.js';
import { KEY_TYPES, keyAlgorithmOf } from '../../src/hsm/key-types.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { toPayShieldError } from '../../src/hsm/payshield/errors.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Asserts the error code and the payShield code the wire layer will answer with. */
function fails(code: string, payShield?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (payShield !== undefined) assert.equal(toPayShieldError(e), payShield, `${e.code}: ${e.message}`);
    return true;
  };
}

const lmks = new LmkSet([generateDevLmk('00'), generateDevLmk('01')], '00');
const hsm = new Hsm({ lmks });

/** Component 1 of every test key; component 2 = clear ⊕ component 1, so the test knows the clear key. */
function componentsOf(clearHex: string): string[] {
  const clear = fromHex(clearHex);
  const c1 = Buffer.alloc(clear.length, 0x5a);
  return [toHex(c1), toHex(xor(clear, c1))];
}

/** Imports a key the test knows in clear, from two components. */
function known(
  keyType: KeyType,
  algorithm: KeyAlgorithm,
  clearHex: string,
  opts: { exportability?: 'E' | 'N' | 'S'; target?: Hsm } = {},
): string {
  const req = {
    keyType,
    algorithm,
    source: { kind: 'components' as const, components: componentsOf(clearHex) },
  };
  const h = opts.target ?? hsm;
  return h.importKey(opts.exportability ? { ...req, exportability: opts.exportability } : req).keyBlock;
}

const TMK_CLEAR = '0123456789ABCDEFFEDCBA9876543210';
const ZPK_CLEAR = '6DA2D08FD5E56BB0BF2F0E5E8F20F1DA';
const KEK_AES_CLEAR = '88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6';
const SM4_TMK_CLEAR = '1234567890ABCDEFABCDEF0987654321';
const tmk = known('TMK', 'tdes2', TMK_CLEAR);
const zpk = known('ZPK', 'tdes2', ZPK_CLEAR);
const kekAes = known('KEK', 'aes256', KEK_AES_CLEAR);

function legacyKcv(alg: 'des' | 'tdes' | 'aes' | 'sm4', keyHex: string, length = 3): string {
  return checkValue(createKey(alg, fromHex(keyHex)), { length }).value;
}

describe('Hsm.generateKey', () => {
  const cases: [KeyType, KeyAlgorithm, string][] = [
    ['TMK', 'tdes2', 'K0'],
    ['ZMK', 'tdes3', 'K0'],
    ['KEK', 'aes256', 'K0'],
    ['TPK', 'tdes2', 'P0'],
    ['ZPK', 'aes128', 'P0'],
    ['TPK', 'sm4', 'P0'],
    ['TAK', 'des', 'M1'],
    ['TAK', 'tdes2', 'M3'],
    ['ZAK', 'aes256', 'M6'],
    ['ZAK', 'sm4', 'M1'],
    ['TDK', 'tdes2', 'D0'],
    ['ZEK', 'aes192', 'D0'],
    ['DEK', 'sm4', 'D0'],
    ['BDK', 'tdes2', 'B0'],
    ['BDK', 'aes128', 'B0'],
  ];
  for (const [keyType, algorithm, usage] of cases) {
    it(`makes a ${algorithm} ${keyType} (${usage}) that describeKey reads back`, () => {
      const g = hsm.generateKey({ keyType, algorithm });
      assert.equal(g.info.keyType, keyType);
      assert.equal(g.info.algorithm, algorithm);
      assert.equal(g.info.usage, usage);
      assert.equal(g.info.modeOfUse, KEY_TYPES[keyType].modeOfUse);
      assert.equal(g.info.exportability, 'E');
      assert.equal(g.info.lmkId, '00');
      assert.equal(g.info.dev, true);
      assert.equal(g.info.kcv.method, algorithm.startsWith('aes') ? 'cmac' : 'legacy');
      assert.deepEqual(new Hsm({ lmks }).describeKey(g.keyBlock), g.info);
      const header = parseHeader(g.keyBlock);
      assert.equal(header.version, 'D');
      assert.equal(header.usage, usage);
    });
  }

  it('honours lmkId, exportability and kcvMethod', () => {
    const g = hsm.generateKey({
      keyType: 'ZPK',
      algorithm: 'tdes2',
      lmkId: '01',
      exportability: 'N',
      kcvMethod: 'cmac',
    });
    assert.equal(g.info.lmkId, '01');
    assert.equal(g.info.exportability, 'N');
    assert.equal(g.info.kcv.method, 'cmac');
    assert.equal(g.info.kcv.length, 5);
  });

  it('also delivers the key under a KEK as TR-31 (A0 mode 1)', () => {
    const g = hsm.generateKey({
      keyType: 'ZPK',
      algorithm: 'aes128',
      exportUnder: { kek: kekAes, format: 'tr31' },
    });
    assert.equal(g.exported?.format, 'tr31');
    const opened = unwrapKeyBlock({
      kbpk: createKey('aes', fromHex(KEK_AES_CLEAR)),
      block: g.exported.cryptogram,
    });
    assert.equal(opened.header.usage, 'P0');
    assert.equal(opened.header.algorithm, 'A');
    assert.equal(
      opened.header.optionalBlocks.find((b) => b.id === '90'),
      undefined,
      'no LMK blocks in an export',
    );
    assert.equal(checkValue(createKey('aes', opened.key), { method: 'cmac' }).value, g.info.kcv.value);
  });

  it('also delivers the key under a TMK as a legacy ECB cryptogram', () => {
    const g = hsm.generateKey({
      keyType: 'TAK',
      algorithm: 'tdes2',
      exportUnder: { kek: tmk, format: 'legacy' },
    });
    const clear = toHex(decrypt('tdes', 'ecb', fromHex(TMK_CLEAR), fromHex(g.exported!.cryptogram)));
    assert.equal(legacyKcv('tdes', clear), g.info.kcv.value);
  });

  it('refuses algorithms a key type may not have, and unknown key types', () => {
    assert.throws(
      () => hsm.generateKey({ keyType: 'ZPK', algorithm: 'des' }),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
    assert.throws(
      () => hsm.generateKey({ keyType: 'BDK', algorithm: 'sm4' }),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
    assert.throws(
      () => hsm.generateKey({ keyType: 'ZPK', algorithm: 'rc4' as KeyAlgorithm }),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
    assert.throws(
      () => hsm.generateKey({ keyType: 'CVK' as KeyType, algorithm: 'tdes2' }),
      fails('POSKEY_ERR_KEY_TYPE', '04'),
    );
    assert.throws(
      () => hsm.generateKey({ keyType: 'ZPK', algorithm: 'tdes2', exportability: 'X' as 'E' }),
      fails('POSKEY_ERR_EXPORTABILITY', 'AA'),
    );
    assert.throws(
      () => hsm.generateKey({ keyType: 'ZPK', algorithm: 'tdes2', lmkId: '07' }),
      fails('POSKEY_ERR_LMK_UNKNOWN', '13'),
    );
  });

  it('never wraps a key under a weaker KEK', () => {
    assert.throws(
      () =>
        hsm.generateKey({ keyType: 'ZPK', algorithm: 'aes256', exportUnder: { kek: tmk, format: 'tr31' } }),
      fails('POSKEY_ERR_KEK_STRENGTH', '27'),
    );
  });

  it('refuses an unknown export format', () => {
    assert.throws(
      () =>
        hsm.generateKey({
          keyType: 'ZPK',
          algorithm: 'tdes2',
          exportUnder: { kek: tmk, format: 'x917' as 'tr31' },
        }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
  });
});

describe('Hsm.generateSignInKeys (UnionPay field 62)', () => {
  function openUnderTmk(alg: 'tdes' | 'sm4', tmkHex: string, cryptogram: string): string {
    return toHex(decrypt(alg, 'ecb', fromHex(tmkHex), fromHex(cryptogram)));
  }

  it('TDES: TPK, single-length TAK and TDK under the TMK with 4-byte check values that match the LMK copies', () => {
    const set = hsm.generateSignInKeys({ tmk, algorithm: 'tdes', withTdk: true });
    const tpk = openUnderTmk('tdes', TMK_CLEAR, set.tpk.underTmk);
    const tak = openUnderTmk('tdes', TMK_CLEAR, set.tak.underTmk);
    const tdk = openUnderTmk('tdes', TMK_CLEAR, set.tdk!.underTmk);
    assert.equal(tpk.length, 32);
    assert.equal(tak.length, 16, 'a single-length MAK is 8 bytes');
    assert.equal(tdk.length, 32);
    assert.equal(set.tpk.checkValue, legacyKcv('tdes', tpk, 4));
    assert.equal(set.tak.checkValue, legacyKcv('des', tak, 4));
    assert.equal(set.tdk!.checkValue, legacyKcv('tdes', tdk, 4));
    assert.equal(hsm.describeKey(set.tpk.keyBlock).keyType, 'TPK');
    assert.equal(hsm.describeKey(set.tak.keyBlock).algorithm, 'des');
    assert.equal(hsm.describeKey(set.tdk!.keyBlock).usage, 'D0');
    assert.equal(hsm.describeKey(set.tpk.keyBlock).exportability, 'N');

    // The LMK copies are the same keys: a PIN the terminal encrypts under the clear TPK translates,
    // a MAC it computes under the clear TAK verifies, data under the clear TDK decrypts.
    const pinBlock = toHex(
      encryptPinBlock(createKey('tdes', fromHex(tpk)), {
        format: 0,
        pin: '123456',
        pan: '6230606601007726888',
      }),
    );
    const out = hsm.translatePin({
      source: { kind: 'key', keyBlock: set.tpk.keyBlock },
      destination: zpk,
      pinBlock,
      fromFormat: 0,
      toFormat: 0,
      pan: '6230606601007726888',
    });
    const pin = decryptPinBlock(createKey('tdes', fromHex(ZPK_CLEAR)), fromHex(out), {
      format: 0,
      pan: '6230606601007726888',
    });
    assert.equal(pin, '123456');
    const mab = Buffer.from('0200302004C020C09811', 'hex');
    const mac = toHex(generateMac('unionpay-ecb', createKey('des', fromHex(tak)), mab));
    assert.ok(
      hsm.verifyMac({
        key: { kind: 'key', keyBlock: set.tak.keyBlock },
        algorithm: 'unionpay-ecb',
        data: toHex(mab),
        mac,
      }),
    );
    const track = toHex(encrypt('tdes', 'ecb', fromHex(tdk), Buffer.from('6230606601007726888D2512')));
    const clearTrack = hsm.decryptData({ keyBlock: set.tdk!.keyBlock, mode: 'ecb', data: track });
    assert.equal(Buffer.from(clearTrack, 'hex').toString(), '6230606601007726888D2512');
  });

  it('60.3 = 001: single-length PIK and MAK for legacy terminals', () => {
    const set = hsm.generateSignInKeys({ tmk, algorithm: 'tdes', pinKeyLength: 'single' });
    const tpk = openUnderTmk('tdes', TMK_CLEAR, set.tpk.underTmk);
    assert.equal(tpk.length, 16, 'a single-length PIK is 8 bytes');
    assert.equal(set.tpk.checkValue, legacyKcv('des', tpk, 4));
    const pan = '6230606601007726888';
    const pinBlock = toHex(encryptPinBlock(createKey('des', fromHex(tpk)), { format: 0, pin: '2468', pan }));
    const out = hsm.translatePin({
      source: { kind: 'key', keyBlock: set.tpk.keyBlock },
      destination: zpk,
      pinBlock,
      fromFormat: 0,
      toFormat: 0,
      pan,
    });
    assert.equal(
      decryptPinBlock(createKey('tdes', fromHex(ZPK_CLEAR)), fromHex(out), { format: 0, pan }),
      '2468',
    );
  });

  it('TDES with a double-length MAK and no TDK', () => {
    const set = hsm.generateSignInKeys({ tmk, algorithm: 'tdes', makLength: 'double' });
    assert.equal(set.tdk, undefined);
    const tak = openUnderTmk('tdes', TMK_CLEAR, set.tak.underTmk);
    assert.equal(tak.length, 32);
    assert.equal(set.tak.checkValue, legacyKcv('tdes', tak, 4));
    assert.equal(hsm.describeKey(set.tak.keyBlock).usage, 'M3');
  });

  it('SM4: SM4 keys, SM4-ECB under an SM4 TMK, 4-byte SM4 check values', () => {
    const sm4Tmk = known('TMK', 'sm4', SM4_TMK_CLEAR);
    const set = hsm.generateSignInKeys({ tmk: sm4Tmk, algorithm: 'sm4', withTdk: true });
    for (const k of [set.tpk, set.tak, set.tdk!]) {
      assert.equal(k.underTmk.length, 32);
      const clear = openUnderTmk('sm4', SM4_TMK_CLEAR, k.underTmk);
      assert.equal(k.checkValue, legacyKcv('sm4', clear, 4));
      assert.equal(hsm.describeKey(k.keyBlock).algorithm, 'sm4');
    }
  });

  it('refuses a TMK of the wrong algorithm or role, and unknown key lengths', () => {
    assert.throws(
      () => hsm.generateSignInKeys({ tmk, algorithm: 'sm4' }),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
    assert.throws(
      () => hsm.generateSignInKeys({ tmk: zpk, algorithm: 'tdes' }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    assert.throws(
      () => hsm.generateSignInKeys({ tmk, algorithm: 'tdes', pinKeyLength: 'triple' as 'single' }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
    assert.throws(
      () => hsm.generateSignInKeys({ tmk, algorithm: 'aes' as 'tdes' }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
    const k1 = hsm.importKey({
      keyType: 'KEK',
      algorithm: 'aes256',
      source: { kind: 'tr31', kek: kekAes, block: tr31Under(KEK_AES_CLEAR, 'K1', 'A', 'B', KEK_AES_CLEAR) },
    }).keyBlock;
    assert.throws(
      () => hsm.generateSignInKeys({ tmk: k1, algorithm: 'tdes' }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
  });
});

/** A TR-31 block made by "the other side" under a KEK the test knows. */
function tr31Under(
  kekHex: string,
  usage: string,
  alg: string,
  mode: string,
  keyHex: string,
  exportability = 'E',
): string {
  const kbpk = createKey(kekHex.length === 64 || kekHex.length === 32 ? 'aes' : 'tdes', fromHex(kekHex));
  return wrapKeyBlock({
    kbpk,
    header: {
      version: kbpk.algorithm === 'aes' ? 'D' : 'B',
      usage,
      algorithm: alg,
      modeOfUse: mode,
      keyVersion: '00',
      exportability,
      keyContext: '0',
      optionalBlocks: [],
    },
    key: fromHex(keyHex),
  });
}

describe('Hsm.importKey', () => {
  // UnionPay sign-on worked example (code456.com, shared research keys.md 3.2): field 62 under the TMK.
  const UP_TMK = 'CA5D92598DCA48CE8A4C76361A9269E9';
  const upTmk = known('TMK', 'tdes2', toHex(fixParity(fromHex(UP_TMK))));

  it('imports legacy ECB cryptograms under a TMK, verifying the published KCVs', () => {
    const tpk = hsm.importKey({
      keyType: 'TPK',
      algorithm: 'tdes2',
      source: { kind: 'legacy', kek: upTmk, cryptogram: '6701EAD6A9AD51E51AA406E2C27FCFA9', kcv: '8D0A74B8' },
    });
    assert.equal(tpk.info.kcv.value, '8D0A74');
    assert.equal(hsm.checkValue(tpk.keyBlock, 'legacy', 4).value, '8D0A74B8');
    const tak = hsm.importKey({
      keyType: 'TAK',
      algorithm: 'des',
      source: { kind: 'legacy', kek: upTmk, cryptogram: 'B651F9E9BACE9AE1', kcv: 'AB7153CA' },
    });
    assert.equal(hsm.checkValue(tak.keyBlock, 'legacy', 4).value, 'AB7153CA');
    assert.equal(tak.info.algorithm, 'des');
  });

  it('rejects a legacy import whose KCV does not match', () => {
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'TPK',
          algorithm: 'tdes2',
          source: {
            kind: 'legacy',
            kek: upTmk,
            cryptogram: '6701EAD6A9AD51E51AA406E2C27FCFA9',
            kcv: '8D0A74B9',
          },
        }),
      fails('POSKEY_ERR_KCV_MISMATCH', '01'),
    );
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'TPK',
          algorithm: 'tdes2',
          source: { kind: 'legacy', kek: upTmk, cryptogram: '6701EAD6A9AD51E5', kcv: '8D0A74B8' },
        }),
      fails('POSKEY_ERR_LENGTH', '15'),
    );
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'TPK',
          algorithm: 'tdes2',
          source: { kind: 'legacy', kek: upTmk, cryptogram: '6701EAD6A9AD51E51AA406E2C27FCFA9', kcv: '8D' },
        }),
      fails('POSKEY_ERR_LENGTH', '15'),
    );
  });

  it('rejects legacy keys with even parity or weak halves', () => {
    const evenParity = toHex(
      encrypt('tdes', 'ecb', fromHex(TMK_CLEAR), fromHex('0023456789ABCDEFFEDCBA9876543210')),
    );
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'tdes2',
          source: { kind: 'legacy', kek: tmk, cryptogram: evenParity },
        }),
      fails('POSKEY_ERR_KEY_PARITY', '10'),
    );
    const degenerate = toHex(
      encrypt('tdes', 'ecb', fromHex(TMK_CLEAR), fromHex('0123456789ABCDEF0123456789ABCDEF')),
    );
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'tdes2',
          source: { kind: 'legacy', kek: tmk, cryptogram: degenerate },
        }),
      fails('POSKEY_ERR_WEAK_KEY', '10'),
    );
  });

  it('imports clear components, checking every KCV given', () => {
    const [c1, c2] = componentsOf(ZPK_CLEAR) as [string, string];
    const kcvs = [legacyKcv('tdes', c1), legacyKcv('tdes', c2)];
    const r = hsm.importKey({
      keyType: 'ZPK',
      algorithm: 'tdes2',
      source: { kind: 'components', components: [c1, c2], kcvs },
    });
    assert.equal(r.info.kcv.value, legacyKcv('tdes', ZPK_CLEAR));
    const wrong = [kcvs[0]!, '000000'];
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'tdes2',
          source: { kind: 'components', components: [c1, c2], kcvs: wrong },
        }),
      (e: unknown) =>
        fails('POSKEY_ERR_KCV_MISMATCH', '01')(e) && (e as PoskeyError).field === 'source.kcvs[1]',
    );
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'tdes2',
          source: { kind: 'components', components: [c1, c2], kcvs: [kcvs[0]!] },
        }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
  });

  it('uses CMAC KCVs for AES components', () => {
    const [c1, c2] = componentsOf(KEK_AES_CLEAR) as [string, string];
    const cmacKcv = (hex: string) => checkValue(createKey('aes', fromHex(hex)), { method: 'cmac' }).value;
    const r = hsm.importKey({
      keyType: 'ZMK',
      algorithm: 'aes256',
      source: { kind: 'components', components: [c1, c2], kcvs: [cmacKcv(c1), cmacKcv(c2)] },
    });
    assert.equal(r.info.kcv.value, cmacKcv(KEK_AES_CLEAR));
  });

  it('refuses repeated, too few or wrong-length components', () => {
    const c = '11'.repeat(16);
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'aes128',
          source: { kind: 'components', components: [c, c] },
        }),
      fails('POSKEY_ERR_COMPONENT', '15'),
    );
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'aes128',
          source: { kind: 'components', components: [c] },
        }),
      fails('POSKEY_ERR_COMPONENT_COUNT', '03'),
    );
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'aes256',
          source: { kind: 'components', components: [c, '22'.repeat(16)] },
        }),
      fails('POSKEY_ERR_LENGTH', '15'),
    );
    assert.throws(
      () => hsm.importKey({ keyType: 'ZPK', algorithm: 'aes128', source: { kind: 'smartcard' } as never }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
  });

  it('imports a TR-31 block under a KEK, keeping its attributes', () => {
    const keyHex = 'F351D490994603795C6EBEE8FAEBB481';
    const block = tr31Under(KEK_AES_CLEAR, 'P0', 'A', 'D', keyHex);
    const r = hsm.importKey({
      keyType: 'ZPK',
      algorithm: 'aes128',
      source: { kind: 'tr31', kek: kekAes, block },
    });
    assert.equal(r.info.usage, 'P0');
    assert.equal(r.info.modeOfUse, 'D');
    assert.equal(r.info.exportability, 'E');
    assert.equal(r.info.kcv.value, checkValue(createKey('aes', fromHex(keyHex)), { method: 'cmac' }).value);
    const tightened = hsm.importKey({
      keyType: 'ZPK',
      algorithm: 'aes128',
      exportability: 'N',
      source: { kind: 'tr31', kek: kekAes, block },
    });
    assert.equal(tightened.info.exportability, 'N');
  });

  it('rejects TR-31 imports that do not fit: usage, mode, algorithm, length, exportability, tampering, KEK', () => {
    const key16 = 'F351D490994603795C6EBEE8FAEBB481';
    const imp = (
      keyType: KeyType,
      algorithm: KeyAlgorithm,
      block: string,
      extra: { exportability?: 'E' | 'S' } = {},
    ) => hsm.importKey({ keyType, algorithm, ...extra, source: { kind: 'tr31', kek: kekAes, block } });
    assert.throws(
      () => imp('TAK', 'aes128', tr31Under(KEK_AES_CLEAR, 'P0', 'A', 'B', key16)),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    assert.throws(
      () => imp('ZPK', 'aes128', tr31Under(KEK_AES_CLEAR, 'P0', 'A', 'C', key16)),
      fails('POSKEY_ERR_KEY_MODE', 'A8'),
    );
    assert.throws(
      () => imp('ZPK', 'sm4', tr31Under(KEK_AES_CLEAR, 'P0', 'A', 'B', key16)),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
    assert.throws(
      () => imp('ZPK', 'aes256', tr31Under(KEK_AES_CLEAR, 'P0', 'A', 'B', key16)),
      fails('POSKEY_ERR_KEY_LENGTH', '27'),
    );
    assert.throws(
      () =>
        imp('ZPK', 'aes128', tr31Under(KEK_AES_CLEAR, 'P0', 'A', 'B', key16, 'N'), { exportability: 'E' }),
      fails('POSKEY_ERR_EXPORTABILITY', 'AA'),
    );
    const good = tr31Under(KEK_AES_CLEAR, 'P0', 'A', 'B', key16);
    const tampered = `${good.slice(0, -1)}${good.endsWith('0') ? '1' : '0'}`;
    assert.throws(() => imp('ZPK', 'aes128', tampered), fails('POSKEY_ERR_TR31_MAC', 'A4'));
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'aes128',
          source: { kind: 'tr31', kek: zpk, block: good },
        }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    const tdesKek = known('ZMK', 'tdes2', TMK_CLEAR);
    const versionA = wrapKeyBlock({
      kbpk: createKey('tdes', fromHex(TMK_CLEAR)),
      header: {
        version: 'A',
        usage: 'P0',
        algorithm: 'T',
        modeOfUse: 'B',
        keyVersion: '00',
        exportability: 'E',
        keyContext: '0',
        optionalBlocks: [],
      },
      key: fromHex(ZPK_CLEAR),
    });
    assert.throws(
      () =>
        hsm.importKey({
          keyType: 'ZPK',
          algorithm: 'tdes2',
          source: { kind: 'tr31', kek: tdesKek, block: versionA },
        }),
      fails('POSKEY_ERR_TR31_VERSION', '83'),
    );
  });
});

describe('Hsm.exportKey', () => {
  it('exports an exportable key as TR-31 under a KEK; the other side opens it', () => {
    const r = hsm.exportKey({ keyBlock: zpk, kek: kekAes, format: 'tr31' });
    const opened = unwrapKeyBlock({ kbpk: createKey('aes', fromHex(KEK_AES_CLEAR)), block: r.cryptogram });
    assert.equal(toHex(opened.key), ZPK_CLEAR);
    assert.equal(opened.header.usage, 'P0');
    assert.equal(opened.header.exportability, 'E');
    assert.equal(r.kcv.value, legacyKcv('tdes', ZPK_CLEAR));
  });

  it('exports TR-31 version B under a TDES KEK', () => {
    const tdesKek = known(
      'ZMK',
      'tdes3',
      toHex(fixParity(fromHex('0123456789ABCDEFFEDCBA987654321089ABCDEF01234567'))),
    );
    const r = hsm.exportKey({ keyBlock: zpk, kek: tdesKek, format: 'tr31' });
    assert.equal(r.cryptogram[0], 'B');
  });

  it('exports a sensitive (S) key as a legacy ECB cryptogram', () => {
    const s = known('ZPK', 'tdes2', ZPK_CLEAR, { exportability: 'S' });
    const r = hsm.exportKey({ keyBlock: s, kek: tmk, format: 'legacy' });
    assert.equal(toHex(decrypt('tdes', 'ecb', fromHex(TMK_CLEAR), fromHex(r.cryptogram))), ZPK_CLEAR);
    assert.equal(hsm.exportKey({ keyBlock: s, kek: kekAes, format: 'tr31' }).format, 'tr31');
  });

  it('enforces exportability, KEK usage, KEK mode and strength', () => {
    const n = known('ZPK', 'tdes2', ZPK_CLEAR, { exportability: 'N' });
    assert.throws(
      () => hsm.exportKey({ keyBlock: n, kek: kekAes, format: 'tr31' }),
      fails('POSKEY_ERR_KEY_NOT_EXPORTABLE', 'AA'),
    );
    assert.throws(
      () => hsm.exportKey({ keyBlock: n, kek: tmk, format: 'legacy' }),
      fails('POSKEY_ERR_KEY_NOT_EXPORTABLE', 'AA'),
    );
    assert.throws(
      () => hsm.exportKey({ keyBlock: zpk, kek: tmk, format: 'legacy' }),
      fails('POSKEY_ERR_KEY_NOT_EXPORTABLE', 'AA'),
    );
    assert.throws(
      () => hsm.exportKey({ keyBlock: zpk, kek: zpk, format: 'tr31' }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    const unwrapOnly = hsm.importKey({
      keyType: 'KEK',
      algorithm: 'aes256',
      source: { kind: 'tr31', kek: kekAes, block: tr31Under(KEK_AES_CLEAR, 'K0', 'A', 'D', KEK_AES_CLEAR) },
    }).keyBlock;
    assert.throws(
      () => hsm.exportKey({ keyBlock: zpk, kek: unwrapOnly, format: 'tr31' }),
      fails('POSKEY_ERR_KEY_MODE', 'A8'),
    );
    const aes256 = hsm.generateKey({ keyType: 'ZPK', algorithm: 'aes256' }).keyBlock;
    assert.throws(
      () => hsm.exportKey({ keyBlock: aes256, kek: tmk, format: 'tr31' }),
      fails('POSKEY_ERR_KEK_STRENGTH', '27'),
    );
    const desMak = known('TAK', 'des', '5BB5C72CD00B7338', { exportability: 'S' });
    assert.throws(
      () => hsm.exportKey({ keyBlock: desMak, kek: kekAes, format: 'legacy' }),
      fails('POSKEY_ERR_KEY_LENGTH', '27'),
    );
    const sm4Kek = known('ZMK', 'sm4', SM4_TMK_CLEAR);
    assert.throws(
      () => hsm.exportKey({ keyBlock: zpk, kek: sm4Kek, format: 'tr31' }),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
  });

  it('round-trips: export as TR-31, import elsewhere, same KCV (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const clear = toHex(Buffer.from(bytes));
        const block = known('DEK', 'aes128', clear);
        const out = hsm.exportKey({ keyBlock: block, kek: kekAes, format: 'tr31' });
        const back = new Hsm({ lmks }).importKey({
          keyType: 'DEK',
          algorithm: 'aes128',
          source: { kind: 'tr31', kek: kekAes, block: out.cryptogram },
        });
        assert.equal(back.info.kcv.value, out.kcv.value);
      }),
      { numRuns: 25 },
    );
  });
});

describe('Hsm.migrateKey and statelessness', () => {
  it('re-wraps a key under a second LMK, which then serves it', () => {
    const moved = hsm.migrateKey(zpk, '01');
    assert.notEqual(moved, zpk);
    const info = hsm.describeKey(moved);
    assert.equal(info.lmkId, '01');
    assert.equal(info.kcv.value, legacyKcv('tdes', ZPK_CLEAR));
    const block = toHex(
      encryptPinBlock(createKey('tdes', fromHex(ZPK_CLEAR)), {
        format: 0,
        pin: '4321',
        pan: '4012345678909',
      }),
    );
    const out = hsm.translatePin({
      source: { kind: 'key', keyBlock: moved },
      destination: zpk,
      pinBlock: block,
      fromFormat: 0,
      toFormat: 0,
      pan: '4012345678909',
    });
    assert.equal(out, block);
    assert.throws(() => hsm.migrateKey(zpk, '07'), fails('POSKEY_ERR_LMK_UNKNOWN', '13'));
    assert.throws(() => hsm.migrateKey(zpk, '7'), fails('POSKEY_ERR_LMK_ID', '13'));
  });

  it('two Hsm instances with the same LmkSet serve the same blocks', () => {
    const a = new Hsm({ lmks });
    const b = new Hsm({ lmks });
    const tak = a.generateKey({ keyType: 'TAK', algorithm: 'tdes2' }).keyBlock;
    const mac = a.generateMac({ key: { kind: 'key', keyBlock: tak }, algorithm: 'retail', data: '00112233' });
    assert.ok(
      b.verifyMac({ key: { kind: 'key', keyBlock: tak }, algorithm: 'retail', data: '00112233', mac }),
    );
    assert.equal(b.diagnostics().keyCache.misses, 1);
  });

  it('another LMK with the same id does not open the blocks', () => {
    const other = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
    assert.throws(() => other.describeKey(zpk), fails('POSKEY_ERR_LMK_BLOCK', 'A3'));
  });

  it('refuses what is not a key block', () => {
    assert.throws(() => hsm.describeKey(42 as unknown as string), fails('POSKEY_ERR_TYPE', '15'));
    assert.throws(
      () => hsm.describeKey('not a key block at all'),
      (e: unknown) => e instanceof PoskeyError,
    );
    const tampered = `${zpk.slice(0, -1)}${zpk.endsWith('0') ? '1' : '0'}`;
    assert.throws(() => new Hsm({ lmks }).describeKey(tampered), fails('POSKEY_ERR_TR31_MAC', 'A4'));
  });
});

describe('Hsm audit', () => {
  it('logs every key-management operation with actor, KCV and LMK id, and no clear key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-hsm-'));
    dirs.push(dir);
    const path = join(dir, 'audit.jsonl');
    const audit = await AuditLog.open(path);
    const h = new Hsm({ lmks, audit });
    const tmkA = known('TMK', 'tdes2', TMK_CLEAR, { target: h });
    const zpkA = known('ZPK', 'tdes2', ZPK_CLEAR, { target: h, exportability: 'S' });
    h.generateKey({ keyType: 'ZAK', algorithm: 'tdes2' }, 'alice');
    const set = h.generateSignInKeys({ tmk: tmkA, algorithm: 'tdes', withTdk: true }, 'posp');
    h.exportKey({ keyBlock: zpkA, kek: tmkA, format: 'legacy' }, 'bob');
    h.migrateKey(zpkA, '01', 'carol');
    assert.throws(() => h.exportKey({ keyBlock: set.tpk.keyBlock, kek: tmkA, format: 'tr31' }, 'mallory'));
    assert.throws(
      () => h.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' }, '0123456789ABCDEF0123'),
      fails('POSKEY_ERR_AUDIT_SECRET'),
    );
    await audit.close();

    assert.deepEqual(await verifyAuditLog(path).then((v) => v.ok), true);
    const text = readFileSync(path, 'utf8');
    const records = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const actions = records.map((r) => `${r.action}:${r.actor}:${r.result}`);
    assert.deepEqual(actions, [
      'key.import:system:ok',
      'key.import:system:ok',
      'key.generate:alice:ok',
      'key.signin:posp:ok',
      'key.signin:posp:ok',
      'key.signin:posp:ok',
      'key.export:bob:ok',
      'key.migrate:carol:ok',
      'key.export:mallory:error',
    ]);
    for (const r of records.filter((x) => x.result === 'ok')) {
      assert.match(r.kcv, /^[0-9A-F]{6,10}$/);
      assert.match(r.lmkId, /^0[01]$/);
    }
    assert.equal(records[3].kcv, set.tpk.checkValue);
    assert.equal(records.at(-1).detail, 'POSKEY_ERR_KEY_NOT_EXPORTABLE');
    const clearKeys = [TMK_CLEAR, ZPK_CLEAR, ...componentsOf(TMK_CLEAR), ...componentsOf(ZPK_CLEAR)];
    for (const k of [set.tpk, set.tak, set.tdk!])
      clearKeys.push(toHex(decrypt('tdes', 'ecb', fromHex(TMK_CLEAR), fromHex(k.underTmk))));
    for (const k of clearKeys) {
      assert.ok(!text.toUpperCase().includes(k), 'the audit log must not hold a clear key');
      assert.ok(!text.toUpperCase().includes(k.slice(0, 16)), 'nor half of one');
    }
  });

  it('fails closed once the audit log cannot be written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-hsm-'));
    dirs.push(dir);
    const audit = await AuditLog.open(join(dir, 'audit.jsonl'));
    const h = new Hsm({ lmks, audit });
    await audit.close();
    h.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' });
    await new Promise((r) => setImmediate(r));
    assert.throws(
      () => h.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' }),
      fails('POSKEY_ERR_AUDIT_IO', '41'),
    );
    // Data operations are not key management and keep working.
    assert.equal(h.randomBytes(8).length, 16);
  });
});

describe('Hsm.diagnostics', () => {
  it('reports version, uptime, LMK KCVs, counters and cache stats', () => {
    let now = Date.UTC(2025, 0, 1);
    const h = new Hsm({ lmks, clock: () => new Date(now) });
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    assert.equal(HSM_VERSION, pkg.version);
    h.describeKey(zpk);
    h.describeKey(zpk);
    assert.throws(() => h.describeKey('D0000'));
    now += 90_500;
    const d = h.diagnostics();
    assert.equal(d.version, HSM_VERSION);
    assert.equal(d.uptimeSeconds, 90);
    assert.deepEqual(
      d.lmks,
      [...lmks].map((l) => ({ id: l.id, kcv: l.kcv, dev: true })).sort((x, y) => x.id.localeCompare(y.id)),
    );
    assert.equal(d.counters['describeKey.ok'], 2);
    assert.equal(d.counters['describeKey.error'], 1);
    assert.equal(d.counters['translatePin.ok'], 0);
    assert.equal(Object.keys(d.counters).length, HSM_OPERATIONS.length * 2);
    assert.deepEqual(d.keyCache, { size: 1, hits: 1, misses: 2, evictions: 0 });
    assert.equal(h.diagnostics().counters['diagnostics.ok'], 1);
  });

  it('evicts beyond the cache size', () => {
    const h = new Hsm({ lmks, cacheSize: 2 });
    h.describeKey(zpk);
    h.describeKey(tmk);
    h.describeKey(kekAes);
    assert.equal(h.diagnostics().keyCache.evictions, 1);
    h.destroy();
    assert.equal(h.diagnostics().keyCache.size, 0);
    assert.equal(h.describeKey(zpk).keyType, 'ZPK');
  });

  it('checkValue computes legacy and CMAC KCVs of any length', () => {
    assert.equal(hsm.checkValue(zpk).value, legacyKcv('tdes', ZPK_CLEAR));
    assert.equal(hsm.checkValue(zpk, 'legacy', 8).value, legacyKcv('tdes', ZPK_CLEAR, 8));
    assert.equal(hsm.checkValue(kekAes).method, 'cmac');
    assert.throws(() => hsm.checkValue(zpk, 'legacy', 9), fails('POSKEY_ERR_LENGTH', '15'));
    assert.equal(keyAlgorithmOf(createKey('tdes', fromHex(TMK_CLEAR))), 'tdes2');
  });

  it('randomBytes returns fresh hex of the length asked', () => {
    assert.match(hsm.randomBytes(16), /^[0-9A-F]{32}$/);
    assert.notEqual(hsm.randomBytes(16), hsm.randomBytes(16));
    assert.throws(() => hsm.randomBytes(0), fails('POSKEY_ERR_LENGTH', '15'));
    assert.throws(() => hsm.randomBytes(1025), fails('POSKEY_ERR_LENGTH', '15'));
    const fixed = new Hsm({ lmks, random: (n) => Buffer.alloc(n, 0xab) });
    assert.equal(fixed.randomBytes(2), 'ABAB');
    const broken = new Hsm({ lmks, random: (n) => Buffer.alloc(n - 1) });
    assert.throws(() => broken.randomBytes(4), fails('POSKEY_ERR_RANDOM', '41'));
  });
});
