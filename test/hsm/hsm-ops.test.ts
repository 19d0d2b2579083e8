/**
 * Hsm data-plane operations: PIN translation (TPK/ZPK/DUKPT → ZPK), MACs (key and DUKPT), data
 * encryption, and the key block enforcement each of them applies, with the payShield code every
 * refusal maps to. Keys are imported from components so the test knows them in clear.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey, decrypt, encrypt } from '../../src/crypto/cipher.js';
import { cmac } from '../../src/crypto/cmac.js';
import { cbcMac, retailMac } from '../../src/crypto/mac.js';
import { decryptPinBlock, encryptPinBlock, type PinBlockFormat } from '../../src/crypto/pinblock.js';
import { wrapKeyBlock } from '../../src/crypto/tr31.js';
import { PoskeyError } from '../../src/errors.js';
import type { KeyAlgorithm, KeyType, MacRequest, TranslatePinRequest } from '../../src/hsm/api.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { toPayShieldError } from '../../src/hsm/payshield/errors.js';
import { loadVectors } from '../helpers/vectors.js';

function fails(code: string, payShield?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (payShield !== undefined) assert.equal(toPayShieldError(e), payShield, `${e.code}: ${e.message}`);
    return true;
  };
}

const lmks = new LmkSet([generateDevLmk('00')]);
const hsm = new Hsm({ lmks });

function known(keyType: KeyType, algorithm: KeyAlgorithm, clearHex: string): string {
  const clear = fromHex(clearHex);
  const c1 = Buffer.alloc(clear.length, 0x5a);
  const components = [toHex(c1), toHex(xor(clear, c1))];
  return hsm.importKey({ keyType, algorithm, source: { kind: 'components', components } }).keyBlock;
}

const KEK_CLEAR = '88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6';
const kek = known('KEK', 'aes256', KEK_CLEAR);

/** A key block of arbitrary attributes, brought in as TR-31 under the known KEK. */
function odd(
  keyType: KeyType,
  algorithm: KeyAlgorithm,
  usage: string,
  alg: string,
  mode: string,
  keyHex: string,
): string {
  const block = wrapKeyBlock({
    kbpk: createKey('aes', fromHex(KEK_CLEAR)),
    header: {
      version: 'D',
      usage,
      algorithm: alg,
      modeOfUse: mode,
      keyVersion: '00',
      exportability: 'E',
      keyContext: '0',
      optionalBlocks: [],
    },
    key: fromHex(keyHex),
  });
  return hsm.importKey({ keyType, algorithm, source: { kind: 'tr31', kek, block } }).keyBlock;
}

const TPK = '807A23AD32B36D457AE91FDF927570EA';
const ZPK = '6DA2D08FD5E56BB0BF2F0E5E8F20F1DA';
const ZPK2 = '3D6B1FEA8A19C2D5E50BE3A8F1F23B2F';
const AES_ZPK = '2B7E151628AED2A6ABF7158809CF4F3C';
const SM4_TPK = 'F351D490994603795C6EBEE8FAEBB481';
const tpk = known('TPK', 'tdes2', TPK);
const zpk = known('ZPK', 'tdes2', ZPK);
const zpk2 = known('ZPK', 'tdes2', toHex(fixOdd(ZPK2)));
const aesZpk = known('ZPK', 'aes128', AES_ZPK);
const sm4Tpk = known('TPK', 'sm4', SM4_TPK);

function fixOdd(hex: string): Buffer {
  const b = fromHex(hex);
  for (let i = 0; i < b.length; i++) {
    let ones = 0;
    for (let v = b[i]! & 0xfe; v; v >>= 1) ones += v & 1;
    b[i] = (b[i]! & 0xfe) | (ones % 2 === 0 ? 1 : 0);
  }
  return b;
}

const PAN = '4012345678909';

function pinUnder(
  alg: 'tdes' | 'aes' | 'sm4',
  keyHex: string,
  format: PinBlockFormat,
  pin: string,
  pan = PAN,
): string {
  return toHex(encryptPinBlock(createKey(alg, fromHex(keyHex)), { format, pin, pan }));
}

function pinOf(
  alg: 'tdes' | 'aes' | 'sm4',
  keyHex: string,
  format: PinBlockFormat,
  block: string,
  pan = PAN,
): string {
  return decryptPinBlock(createKey(alg, fromHex(keyHex)), fromHex(block), { format, pan });
}

function translate(
  source: string,
  destination: string,
  pinBlock: string,
  fromFormat: PinBlockFormat,
  toFormat: PinBlockFormat,
  pan = PAN,
) {
  return hsm.translatePin({
    source: { kind: 'key', keyBlock: source },
    destination,
    pinBlock,
    fromFormat,
    toFormat,
    pan,
  });
}

describe('Hsm.translatePin', () => {
  it('TPK → ZPK, format 0, checked under the clear ZPK', () => {
    const out = translate(tpk, zpk, pinUnder('tdes', TPK, 0, '1234'), 0, 0);
    assert.equal(pinOf('tdes', ZPK, 0, out), '1234');
  });

  it('ZPK → ZPK with format conversion 0 → 3, 3 → 1, 1 → 0', () => {
    const b3 = translate(zpk, zpk2, pinUnder('tdes', ZPK, 0, '98765'), 0, 3);
    assert.equal(pinOf('tdes', toHex(fixOdd(ZPK2)), 3, b3), '98765');
    const b1 = translate(zpk2, zpk, b3, 3, 1);
    assert.equal(pinOf('tdes', ZPK, 1, b1), '98765');
    const b0 = translate(zpk, zpk2, b1, 1, 0);
    assert.equal(pinOf('tdes', toHex(fixOdd(ZPK2)), 0, b0), '98765');
  });

  it('TDES format 0 → AES format 4, and AES 4 → 4', () => {
    const b4 = translate(tpk, aesZpk, pinUnder('tdes', TPK, 0, '4321'), 0, 4);
    assert.equal(b4.length, 32);
    assert.equal(pinOf('aes', AES_ZPK, 4, b4), '4321');
    const aesZpk2 = hsm.generateKey({ keyType: 'ZPK', algorithm: 'aes256' }).keyBlock;
    const again = translate(aesZpk, aesZpk2, b4, 4, 4);
    assert.equal(pinOf('aes', AES_ZPK, 4, translate(aesZpk2, aesZpk, again, 4, 4)), '4321');
  });

  it('SM4 TPK (16-byte UnionPay block) → TDES ZPK format 0', () => {
    const pan = '6230606601007726888';
    const out = translate(sm4Tpk, zpk, pinUnder('sm4', SM4_TPK, 'sm4', '123654', pan), 'sm4', 0, pan);
    assert.equal(pinOf('tdes', ZPK, 0, out, pan), '123654');
  });

  it('round-trips any PIN and PAN through a chain of keys (property)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9]{4,12}$/), fc.stringMatching(/^[0-9]{13,19}$/), (pin, pan) => {
        const b = translate(tpk, zpk, pinUnder('tdes', TPK, 0, pin, pan), 0, 0, pan);
        const c = translate(zpk, aesZpk, b, 0, 4, pan);
        assert.equal(pinOf('aes', AES_ZPK, 4, c, pan), pin);
      }),
      { numRuns: 50 },
    );
  });

  it('reports bad PIN blocks with their payShield codes', () => {
    assert.throws(
      () => translate(tpk, zpk, pinUnder('tdes', TPK, 0, '1234'), 0, 0, '5555555555554444'),
      fails('POSKEY_ERR_PAN_MISMATCH', '20'),
    );
    assert.throws(() => translate(tpk, zpk, 'XYZ', 0, 0), fails('POSKEY_ERR_HEX', '15'));
    assert.throws(() => translate(tpk, zpk, '0011', 0, 0), fails('POSKEY_ERR_PIN_BLOCK_LENGTH', '15'));
    assert.throws(
      () => translate(tpk, zpk, pinUnder('tdes', TPK, 0, '1234'), 0, 2),
      fails('POSKEY_ERR_PIN_BLOCK_TRANSLATION', '23'),
    );
    assert.throws(
      () => translate(tpk, zpk, pinUnder('tdes', TPK, 0, '1234'), 0, 7 as PinBlockFormat),
      fails('POSKEY_ERR_PIN_BLOCK_FORMAT', '23'),
    );
    const badLength = toHex(
      encrypt('tdes', 'ecb', fromHex(TPK), xor(fromHex('0D12345678901234'), fromHex('0000456789012345'))),
    );
    assert.throws(
      () => translate(tpk, zpk, badLength, 0, 0, '1234567890123'),
      fails('POSKEY_ERR_PIN_LENGTH', '24'),
    );
  });

  it('never returns a clear PIN: the output differs from the clear block and only opens under the destination key', () => {
    const clear = '041274EDCBA9876F';
    const out = translate(tpk, zpk, toHex(encrypt('tdes', 'ecb', fromHex(TPK), fromHex(clear))), 0, 0);
    assert.notEqual(out, clear);
    assert.equal(toHex(decrypt('tdes', 'ecb', fromHex(ZPK), fromHex(out))), clear);
  });
});

describe('Hsm.translatePin from DUKPT', () => {
  const tdes = loadVectors<{
    ksn: string;
    encryptedPinBlock: string;
    requestMac?: string;
    responseMac?: string;
  }>('dukpt-tdes.json');
  const aes = loadVectors<{
    kind: string;
    bdk: string;
    ksn: string;
    encryptedPinBlock?: string;
    cmacRequest?: string;
    cmacResponse?: string;
  }>('dukpt-aes.json');
  const bdk = known('BDK', 'tdes2', '0123456789ABCDEFFEDCBA9876543210');

  it('X9.24-1 A.4: KSN FFFF9876543210E00001, block 1B9C1845EB993A7A → ZPK, PIN 1234', () => {
    const out = hsm.translatePin({
      source: { kind: 'dukpt', bdk, ksn: 'FFFF9876543210E00001' },
      destination: zpk,
      pinBlock: '1B9C1845EB993A7A',
      fromFormat: 0,
      toFormat: 0,
      pan: PAN,
    });
    assert.equal(pinOf('tdes', ZPK, 0, out), '1234');
    assert.equal(toHex(decrypt('tdes', 'ecb', fromHex(ZPK), fromHex(out))), '041274EDCBA9876F');
  });

  it('every published A.4.2 step translates', () => {
    for (const v of tdes.vectors.slice(0, 21)) {
      const req: TranslatePinRequest = {
        source: { kind: 'dukpt', bdk, ksn: v.ksn },
        destination: zpk,
        pinBlock: v.encryptedPinBlock,
        fromFormat: 0,
        toFormat: 0,
        pan: PAN,
      };
      assert.equal(pinOf('tdes', ZPK, 0, hsm.translatePin(req)), '1234', v.ksn);
    }
  });

  it('X9.24-3 AES DUKPT (AES-128 BDK, ISO 4) → AES ZPK', () => {
    const v = aes.vectors.find(
      (x) => x.kind === 'transaction' && x.encryptedPinBlock !== undefined && x.bdk.length === 32,
    )!;
    const aesBdk = known('BDK', 'aes128', v.bdk);
    const pan = '4111111111111111';
    const out = hsm.translatePin({
      source: { kind: 'dukpt', bdk: aesBdk, ksn: v.ksn, aes: { keyType: 'aes128' } },
      destination: aesZpk,
      pinBlock: v.encryptedPinBlock!,
      fromFormat: 4,
      toFormat: 4,
      pan,
    });
    assert.equal(pinOf('aes', AES_ZPK, 4, out, pan), '1234');
    assert.throws(
      () =>
        hsm.translatePin({
          source: { kind: 'dukpt', bdk, ksn: 'FFFF9876543210E00001', aes: { keyType: 'aes128' } },
          destination: zpk,
          pinBlock: '1B9C1845EB993A7A',
          fromFormat: 0,
          toFormat: 0,
          pan: PAN,
        }),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
  });

  it('DUKPT MACs: X9.19 request/response (TDES) and CMAC mac-gen/mac-verify (AES)', () => {
    const data = toHex(Buffer.from('4012345678909D987'));
    for (const v of tdes.vectors.filter((x) => x.requestMac !== undefined)) {
      const req = (direction: 'request' | 'response'): MacRequest => ({
        key: { kind: 'dukpt', bdk, ksn: v.ksn, direction },
        algorithm: 'retail',
        data,
      });
      assert.equal(hsm.generateMac(req('request')), v.requestMac, v.ksn);
      assert.ok(hsm.verifyMac({ ...req('response'), mac: v.responseMac! }), v.ksn);
      assert.equal(hsm.verifyMac({ ...req('request'), mac: v.responseMac! }), false);
    }
    const a = aes.vectors.find((x) => x.cmacRequest !== undefined && x.bdk.length === 32)!;
    const aesBdk = known('BDK', 'aes128', a.bdk);
    const areq = (direction: 'request' | 'response'): MacRequest => ({
      key: { kind: 'dukpt', bdk: aesBdk, ksn: a.ksn, direction },
      algorithm: 'cmac',
      data,
    });
    assert.equal(hsm.generateMac(areq('request')), a.cmacRequest);
    assert.ok(hsm.verifyMac({ ...areq('response'), mac: a.cmacResponse! }));
  });

  it('refuses a BDK that is not B0, and a bad KSN', () => {
    assert.throws(
      () =>
        hsm.translatePin({
          source: { kind: 'dukpt', bdk: zpk, ksn: 'FFFF9876543210E00001' },
          destination: zpk,
          pinBlock: '1B9C1845EB993A7A',
          fromFormat: 0,
          toFormat: 0,
          pan: PAN,
        }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    assert.throws(
      () =>
        hsm.translatePin({
          source: { kind: 'dukpt', bdk, ksn: 'FFFF9876543210E0' },
          destination: zpk,
          pinBlock: '1B9C1845EB993A7A',
          fromFormat: 0,
          toFormat: 0,
          pan: PAN,
        }),
      fails('POSKEY_ERR_KSN', '15'),
    );
  });
});

describe('Hsm MACs', () => {
  const TAK = '7CA110454A1A6E570131D9619DC1376E';
  const tak = known('TAK', 'tdes2', TAK);
  const macReq = (
    keyBlock: string,
    algorithm: MacRequest['algorithm'],
    data: string,
    extra: Partial<MacRequest> = {},
  ): MacRequest => ({
    key: { kind: 'key', keyBlock },
    algorithm,
    data,
    ...extra,
  });
  const hello = toHex(Buffer.from('Hello World !!!!'));

  it('retail (ISO 9797-1 alg 3): published vector, verify true and false', () => {
    assert.equal(hsm.generateMac(macReq(tak, 'retail', hello)), 'F09B856213BAB83B');
    assert.ok(hsm.verifyMac({ ...macReq(tak, 'retail', hello), mac: 'F09B856213BAB83B' }));
    assert.equal(hsm.verifyMac({ ...macReq(tak, 'retail', `${hello}00`), mac: 'F09B856213BAB83B' }), false);
    assert.equal(hsm.verifyMac({ ...macReq(tak, 'retail', hello), mac: 'F09B856213BAB83A' }), false);
    assert.equal(hsm.generateMac(macReq(tak, 'retail', hello, { length: 4 })), 'F09B8562');
    assert.ok(hsm.verifyMac({ ...macReq(tak, 'retail', hello, { length: 4 }), mac: 'F09B8562' }));
    assert.equal(
      hsm.verifyMac({ ...macReq(tak, 'retail', hello), mac: 'F09B8562' }),
      false,
      'length comes from the request',
    );
  });

  it('takes the MAB as bytes as well as hex, with the same MAC; other data types are refused', () => {
    const bytes = Buffer.from('Hello World !!!!');
    assert.equal(hsm.generateMac({ ...macReq(tak, 'retail', hello), data: bytes }), 'F09B856213BAB83B');
    const inside = Buffer.concat([Buffer.from('xx'), bytes, Buffer.from('yy')]).subarray(2, 18);
    assert.ok(hsm.verifyMac({ ...macReq(tak, 'retail', hello), data: inside, mac: 'F09B856213BAB83B' }));
    assert.equal(
      hsm.verifyMac({ ...macReq(tak, 'retail', hello), data: inside.subarray(1), mac: 'F09B856213BAB83B' }),
      false,
    );
    assert.deepEqual(inside, bytes, 'the caller bytes are left as they were');
    assert.throws(
      () => hsm.generateMac({ ...macReq(tak, 'retail', hello), data: 42 as never }),
      fails('POSKEY_ERR_HEX', '15'),
    );
  });

  it('ISO 9797-1 alg 1 with padding 2, and CMAC with an AES ZAK', () => {
    const data = '00112233445566778899';
    const expected = toHex(cbcMac(createKey('tdes', fromHex(TAK)), fromHex(data), { padding: 2 }));
    assert.equal(hsm.generateMac(macReq(tak, 'cbc', data, { padding: 2 })), expected);
    const AES_ZAK = '2B7E151628AED2A6ABF7158809CF4F3C';
    const zak = known('ZAK', 'aes128', AES_ZAK);
    // NIST SP 800-38B example 2 (AES-128, 16 bytes).
    const m = '6BC1BEE22E409F96E93D7E117393172A';
    assert.equal(hsm.generateMac(macReq(zak, 'cmac', m)), '070A16B46B4D4144F79BDD9DD04A287C');
    assert.ok(
      hsm.verifyMac({
        ...macReq(zak, 'cmac', m),
        mac: toHex(cmac(createKey('aes', fromHex(AES_ZAK)), fromHex(m))),
      }),
    );
  });

  it('UnionPay ECB MAC with a single-DES MAK and an SM4 MAK (hex and binary field 64)', () => {
    const vectors = loadVectors<{
      algorithm: string;
      keyAlg: string;
      key: string;
      data: string;
      output: 'hex' | 'binary';
      mac: string;
    }>('mac.json').vectors.filter((v) => v.algorithm === 'unionpay-ecb');
    assert.ok(vectors.length >= 4);
    for (const v of vectors) {
      const block = known('TAK', v.keyAlg === 'des' ? 'des' : 'sm4', v.key);
      const req = macReq(block, 'unionpay-ecb', v.data, { output: v.output });
      assert.equal(hsm.generateMac(req), v.mac);
      assert.ok(hsm.verifyMac({ ...req, mac: v.mac }));
    }
    assert.throws(
      () => hsm.generateMac(macReq(tak, 'unionpay-ecb', hello, { length: 4 })),
      fails('POSKEY_ERR_LENGTH', '15'),
    );
  });

  it('refuses short MACs, unknown algorithms and bad hex', () => {
    assert.throws(
      () => hsm.generateMac(macReq(tak, 'retail', hello, { length: 2 })),
      fails('POSKEY_ERR_LENGTH', '15'),
    );
    assert.throws(
      () => hsm.generateMac(macReq(tak, 'hmac' as 'cbc', hello)),
      fails('POSKEY_ERR_MAC_ALGORITHM', '15'),
    );
    assert.throws(
      () => hsm.verifyMac({ ...macReq(tak, 'retail', hello), mac: 'G0' }),
      fails('POSKEY_ERR_HEX', '15'),
    );
    assert.throws(
      () => hsm.generateMac(macReq(tak, 'retail', hello, { padding: 4 as 1 })),
      fails('POSKEY_ERR_MAC_PADDING', '15'),
    );
    assert.throws(
      () => hsm.generateMac({ key: { kind: 'hsm' } as never, algorithm: 'retail', data: hello }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
  });

  it('enforces mode of use: a verify-only key cannot generate, a generate-only key cannot verify', () => {
    const verifyOnly = odd('ZAK', 'tdes2', 'M3', 'T', 'V', TAK);
    const generateOnly = odd('ZAK', 'tdes2', 'M3', 'T', 'G', TAK);
    assert.ok(hsm.verifyMac({ ...macReq(verifyOnly, 'retail', hello), mac: 'F09B856213BAB83B' }));
    assert.throws(
      () => hsm.generateMac(macReq(verifyOnly, 'retail', hello)),
      fails('POSKEY_ERR_KEY_MODE', 'A8'),
    );
    assert.equal(hsm.generateMac(macReq(generateOnly, 'retail', hello)), 'F09B856213BAB83B');
    assert.throws(
      () => hsm.verifyMac({ ...macReq(generateOnly, 'retail', hello), mac: 'F09B856213BAB83B' }),
      fails('POSKEY_ERR_KEY_MODE', 'A8'),
    );
  });

  it('verifies within a few hundred thousand calls without leaking handles (cache hit path)', () => {
    const h = new Hsm({ lmks });
    const req = { ...macReq(tak, 'retail', hello), mac: 'F09B856213BAB83B' };
    for (let i = 0; i < 1000; i++) assert.ok(h.verifyMac(req));
    const d = h.diagnostics();
    assert.equal(d.keyCache.misses, 1);
    assert.equal(d.keyCache.hits, 999);
    assert.equal(d.counters['verifyMac.ok'], 1000);
  });

  it('matches mac.ts for random messages (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (msg) => {
        const expected = toHex(retailMac(createKey('tdes', fromHex(TAK)), msg));
        assert.equal(hsm.generateMac(macReq(tak, 'retail', toHex(msg))), expected);
      }),
      { numRuns: 50 },
    );
  });
});

describe('Hsm data encryption', () => {
  const DEK = '0123456789ABCDEFFEDCBA9876543210';
  const dek = known('DEK', 'tdes2', DEK);

  it('ECB and CBC under a D0 key match the cipher', () => {
    const data = '00112233445566778899AABBCCDDEEFF';
    assert.equal(
      hsm.encryptData({ keyBlock: dek, mode: 'ecb', data }),
      toHex(encrypt('tdes', 'ecb', fromHex(DEK), fromHex(data))),
    );
    const iv = '0102030405060708';
    const c = hsm.encryptData({ keyBlock: dek, mode: 'cbc', data, iv });
    assert.equal(c, toHex(encrypt('tdes', 'cbc', fromHex(DEK), fromHex(data), fromHex(iv))));
    assert.equal(hsm.decryptData({ keyBlock: dek, mode: 'cbc', data: c, iv }), data);
  });

  it('round-trips any whole-block data (property)', () => {
    const aesDek = hsm.generateKey({ keyType: 'DEK', algorithm: 'aes256' }).keyBlock;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.uint8Array({ minLength: 128, maxLength: 128 }),
        (blocks, bytes) => {
          const data = toHex(Buffer.from(bytes.subarray(0, blocks * 16)));
          const c = hsm.encryptData({ keyBlock: aesDek, mode: 'cbc', data });
          assert.equal(hsm.decryptData({ keyBlock: aesDek, mode: 'cbc', data: c }), data);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('refuses partial blocks, a bad mode, an ECB IV, and keys that are not D0', () => {
    assert.throws(
      () => hsm.encryptData({ keyBlock: dek, mode: 'ecb', data: '0011' }),
      fails('POSKEY_ERR_LENGTH', '15'),
    );
    assert.throws(
      () => hsm.encryptData({ keyBlock: dek, mode: 'ofb' as 'ecb', data: '0011223344556677' }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
    assert.throws(
      () => hsm.encryptData({ keyBlock: dek, mode: 'ecb', data: '0011223344556677', iv: '0000000000000000' }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
    assert.throws(
      () => hsm.decryptData({ keyBlock: zpk, mode: 'ecb', data: '0011223344556677' }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    const encryptOnly = odd('TDK', 'tdes2', 'D0', 'T', 'E', DEK);
    assert.throws(
      () => hsm.decryptData({ keyBlock: encryptOnly, mode: 'ecb', data: '0011223344556677' }),
      fails('POSKEY_ERR_KEY_MODE', 'A8'),
    );
  });
});

describe('Hsm enforcement on every operation', () => {
  const tak = known('TAK', 'tdes2', '7CA110454A1A6E570131D9619DC1376E');
  const pin0 = pinUnder('tdes', TPK, 0, '1234');

  it('a TAK cannot encrypt or translate a PIN (A6), whether the key is cached or not', () => {
    assert.throws(() => translate(tak, zpk, pin0, 0, 0), fails('POSKEY_ERR_KEY_USAGE', 'A6'));
    assert.throws(() => translate(tpk, tak, pin0, 0, 0), fails('POSKEY_ERR_KEY_USAGE', 'A6'));
    hsm.generateMac({ key: { kind: 'key', keyBlock: tak }, algorithm: 'retail', data: '00' });
    assert.throws(() => translate(tak, zpk, pin0, 0, 0), fails('POSKEY_ERR_KEY_USAGE', 'A6'));
  });

  it('names the key at fault and answers 10/11-style roles through the payShield code', () => {
    assert.throws(
      () => translate(tpk, tak, pin0, 0, 0),
      (e: unknown) => e instanceof PoskeyError && e.field === 'destination.usage',
    );
  });

  it('a TPK cannot MAC (A6)', () => {
    assert.throws(
      () => hsm.generateMac({ key: { kind: 'key', keyBlock: tpk }, algorithm: 'retail', data: '00' }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    assert.throws(
      () =>
        hsm.verifyMac({
          key: { kind: 'key', keyBlock: tpk },
          algorithm: 'cbc',
          data: '00',
          mac: '0000000000000000',
        }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
  });

  it('a PIN key cannot act as a KEK, and a KEK cannot translate PINs', () => {
    assert.throws(
      () => hsm.exportKey({ keyBlock: tak, kek: zpk, format: 'tr31' }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    assert.throws(() => translate(tpk, kek, pin0, 0, 0), fails('POSKEY_ERR_KEY_USAGE', 'A6'));
  });

  it('encrypt-only / decrypt-only PIN keys are held to their direction (A8)', () => {
    const encryptOnly = odd('ZPK', 'tdes2', 'P0', 'T', 'E', ZPK);
    assert.throws(
      () => translate(encryptOnly, zpk, pinUnder('tdes', ZPK, 0, '1234'), 0, 0),
      fails('POSKEY_ERR_KEY_MODE', 'A8'),
    );
    assert.equal(pinOf('tdes', ZPK, 0, translate(tpk, encryptOnly, pin0, 0, 0)), '1234');
  });

  it('an AES PIN key needs format 4; a TDES key cannot do format 4 (A7)', () => {
    assert.throws(() => translate(tpk, aesZpk, pin0, 0, 0), fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'));
    assert.throws(
      () => translate(aesZpk, zpk, '00'.repeat(16), 4, 4),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
    assert.throws(() => translate(sm4Tpk, zpk, pin0, 0, 0), fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'));
  });

  it('retail MAC needs DES/TDES (A7); CMAC needs an M6 key (A6)', () => {
    const aesM3 = odd('ZAK', 'aes128', 'M3', 'A', 'C', '2B7E151628AED2A6ABF7158809CF4F3C');
    assert.throws(
      () => hsm.generateMac({ key: { kind: 'key', keyBlock: aesM3 }, algorithm: 'retail', data: '00' }),
      fails('POSKEY_ERR_ALGORITHM', 'A7'),
    );
    assert.throws(
      () => hsm.generateMac({ key: { kind: 'key', keyBlock: tak }, algorithm: 'cmac', data: '00' }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
  });

  it('malformed requests are input errors (15), not internal ones', () => {
    assert.throws(() => hsm.translatePin(null as never), fails('POSKEY_ERR_TYPE', '15'));
    assert.throws(
      () =>
        hsm.translatePin({
          source: { kind: 'magic' } as never,
          destination: zpk,
          pinBlock: pin0,
          fromFormat: 0,
          toFormat: 0,
          pan: PAN,
        }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
    assert.throws(
      () =>
        hsm.translatePin({
          source: { kind: 'key', keyBlock: tpk },
          destination: undefined as never,
          pinBlock: pin0,
          fromFormat: 0,
          toFormat: 0,
          pan: PAN,
        }),
      fails('POSKEY_ERR_TYPE', '15'),
    );
  });
});
