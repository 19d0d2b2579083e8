/**
 * The two HSM clients give the same results: every HsmApi operation through the TCP client (the
 * real payShield server in front of a real Hsm, 127.0.0.1 port 0) against the in-process client on
 * the same Hsm. Keys are imported from components so the test knows them in clear, and every result
 * is also checked against a clear computation (a PIN decrypts to the PIN, a MAC recomputes).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey, decrypt, encrypt } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { fixParity } from '../../src/crypto/keys.js';
import { cbcMac, retailMac, unionPayMac } from '../../src/crypto/mac.js';
import { decryptPinBlock, encryptPinBlock, type PinBlockFormat } from '../../src/crypto/pinblock.js';
import { unwrapKeyBlock, wrapKeyBlock } from '../../src/crypto/tr31.js';
import { PoskeyError } from '../../src/errors.js';
import type { HsmClient, KeyAlgorithm, KeyType, MacRequest } from '../../src/hsm/api.js';
import { payShieldCodeOf } from '../../src/hsm/client/errors.js';
import { createInProcessClient } from '../../src/hsm/client/in-process.js';
import { connectHsm, type TcpHsmClient } from '../../src/hsm/client/tcp.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { createPayShieldServer, type PayShieldServer } from '../../src/hsm/payshield/server.js';
import { loadVectors } from '../helpers/vectors.js';

const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
const local = createInProcessClient(hsm);
let server: PayShieldServer;
let tcp: TcpHsmClient;

before(async () => {
  server = createPayShieldServer({ hsm, port: 0, allowClearComponents: true });
  const { port } = await server.listen();
  tcp = await connectHsm({ host: '127.0.0.1', port, timeoutMs: 10_000 });
});

after(async () => {
  await tcp.close();
  await server.close();
});

/** Runs `fn` through both clients: [in-process result, TCP result]. */
async function both<T>(fn: (c: HsmClient) => Promise<T>): Promise<[T, T]> {
  return [await fn(local), await fn(tcp)];
}

/** The rejection of `p`: code and payShield code. */
async function failure(p: Promise<unknown>): Promise<{ code: string; payShield: string | undefined }> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
    return { code: e.code, payShield: payShieldCodeOf(e) };
  }
  assert.fail('expected a rejection');
}

/** Both clients refuse with the same payShield code; TCP's code is POSKEY_ERR_HSM_<code>, in-process keeps `localCode`. */
async function bothRefuse(fn: (c: HsmClient) => Promise<unknown>, payShield: string, localCode?: string) {
  const [l, r] = [await failure(fn(local)), await failure(fn(tcp))];
  assert.equal(l.payShield, payShield, `in-process ${l.code}`);
  assert.equal(r.payShield, payShield, `tcp ${r.code}`);
  assert.equal(r.code, `POSKEY_ERR_HSM_${payShield}`);
  if (localCode !== undefined) assert.equal(l.code, localCode);
}

function known(
  keyType: KeyType,
  algorithm: KeyAlgorithm,
  clearHex: string,
  exportability: 'E' | 'N' | 'S' = 'E',
) {
  const clear = fromHex(clearHex);
  const c1 = Buffer.alloc(clear.length, 0x5a);
  const components = [toHex(c1), toHex(xor(clear, c1))];
  return hsm.importKey({ keyType, algorithm, exportability, source: { kind: 'components', components } })
    .keyBlock;
}

const odd = (hex: string) => toHex(fixParity(fromHex(hex)));
const TPK = odd('807A23AD32B36D457AE91FDF927570EA');
const ZPK = odd('6DA2D08FD5E56BB0BF2F0E5E8F20F1DA');
const ZPK2 = odd('3D6B1FEA8A19C2D5E50BE3A8F1F23B2F');
const AES_TPK = '2B7E151628AED2A6ABF7158809CF4F3C';
const AES_ZPK = '000102030405060708090A0B0C0D0E0F';
const TAK2 = odd('0123456789ABCDEFFEDCBA9876543210');
const TAK1 = odd('1C2F3E4D5A6B7C8D');
const AES_TAK = '603DEB1015CA71BE2B73AEF0857D7781';
const TDK = odd('F1E2D3C4B5A69788796A5B4C3D2E1F0E');
const AES_DEK = '8E73B0F7DA0E6452C810F32B809079E5';
const ZMK = odd('C8A2D04FB6E5FB1ACE04DA2C8F3BC1A4');
const ZMK3 = odd('A1B2C3D4E5F60718293A4B5C6D7E8F90A2B3C4D5E6F70819');
const KEK = '88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6';
const TMK = odd('13A4F7C2B8D0E9A61F0C5E3B7D9A2C84');
const SM4_TAK = 'F351D490994603795C6EBEE8FAEBB481';

const keys = {
  tpk: known('TPK', 'tdes2', TPK),
  zpk: known('ZPK', 'tdes2', ZPK),
  zpk2: known('ZPK', 'tdes2', ZPK2),
  aesTpk: known('TPK', 'aes128', AES_TPK),
  aesZpk: known('ZPK', 'aes128', AES_ZPK),
  tak2: known('TAK', 'tdes2', TAK2),
  tak1: known('TAK', 'des', TAK1),
  aesTak: known('TAK', 'aes128', AES_TAK),
  sm4Tak: known('TAK', 'sm4', SM4_TAK),
  tdk: known('TDK', 'tdes2', TDK),
  aesDek: known('DEK', 'aes128', AES_DEK),
  zmk: known('ZMK', 'tdes2', ZMK),
  zmk3: known('ZMK', 'tdes3', ZMK3),
  kek: known('KEK', 'aes256', KEK),
  tmk: known('TMK', 'tdes2', TMK),
};

const PAN = '4012345678909';

function pinOf(
  alg: 'tdes' | 'aes',
  keyHex: string,
  format: PinBlockFormat,
  block: string,
  pan = PAN,
): string {
  return decryptPinBlock(createKey(alg, fromHex(keyHex)), fromHex(block), { format, pan });
}

function pinBlock(
  alg: 'tdes' | 'aes',
  keyHex: string,
  format: PinBlockFormat,
  pin: string,
  pan = PAN,
): string {
  return toHex(encryptPinBlock(createKey(alg, fromHex(keyHex)), { format, pin, pan }));
}

describe('translatePin through both clients', () => {
  it('CA (TPK → ZPK), format 0: the same PIN block both ways, opening to the PIN under the clear ZPK', async () => {
    const req = {
      source: { kind: 'key' as const, keyBlock: keys.tpk },
      destination: keys.zpk,
      pinBlock: pinBlock('tdes', TPK, 0, '1234'),
      fromFormat: 0 as const,
      toFormat: 0 as const,
      pan: PAN,
    };
    const [a, b] = await both((c) => c.translatePin(req));
    assert.equal(b, a);
    assert.equal(pinOf('tdes', ZPK, 0, b), '1234');
  });

  it('CC (ZPK → ZPK), format 0 → 3 with a 16-digit PAN: random fill differs, the PIN does not', async () => {
    const pan = '5432101234567891';
    const [a, b] = await both((c) =>
      c.translatePin({
        source: { kind: 'key', keyBlock: keys.zpk },
        destination: keys.zpk2,
        pinBlock: pinBlock('tdes', ZPK, 0, '987654', pan),
        fromFormat: 0,
        toFormat: 3,
        pan,
      }),
    );
    assert.equal(pinOf('tdes', ZPK2, 3, a, pan), '987654');
    assert.equal(pinOf('tdes', ZPK2, 3, b, pan), '987654');
  });

  it('AES keys, ISO format 4 (PAN travels whole)', async () => {
    const pan = '4111111111111111';
    const [a, b] = await both((c) =>
      c.translatePin({
        source: { kind: 'key', keyBlock: keys.aesTpk },
        destination: keys.aesZpk,
        pinBlock: pinBlock('aes', AES_TPK, 4, '4321', pan),
        fromFormat: 4,
        toFormat: 4,
        pan,
      }),
    );
    assert.equal(a.length, 32);
    assert.equal(pinOf('aes', AES_ZPK, 4, a, pan), '4321');
    assert.equal(pinOf('aes', AES_ZPK, 4, b, pan), '4321');
  });

  it('G0 (TDES DUKPT → ZPK): every X9.24-1 A.4.2 step gives PIN 1234 both ways', async () => {
    const bdk = known('BDK', 'tdes2', '0123456789ABCDEFFEDCBA9876543210');
    const v = loadVectors<{ ksn: string; encryptedPinBlock: string }>('dukpt-tdes.json');
    for (const { ksn, encryptedPinBlock } of v.vectors.slice(0, 21)) {
      const [a, b] = await both((c) =>
        c.translatePin({
          source: { kind: 'dukpt', bdk, ksn },
          destination: keys.zpk,
          pinBlock: encryptedPinBlock,
          fromFormat: 0,
          toFormat: 0,
          pan: PAN,
        }),
      );
      assert.equal(b, a, ksn);
      assert.equal(pinOf('tdes', ZPK, 0, b), '1234');
    }
  });

  it('G0 (AES-128 DUKPT, X9.24-3) → AES ZPK, format 4', async () => {
    const v = loadVectors<{ kind: string; bdk: string; ksn: string; encryptedPinBlock?: string }>(
      'dukpt-aes.json',
    );
    const row = v.vectors.find(
      (x) => x.kind === 'transaction' && x.encryptedPinBlock && x.bdk.length === 32,
    )!;
    const bdk = known('BDK', 'aes128', row.bdk);
    const pan = '4111111111111111';
    const [a, b] = await both((c) =>
      c.translatePin({
        source: { kind: 'dukpt', bdk, ksn: row.ksn, aes: { keyType: 'aes128' } },
        destination: keys.aesZpk,
        pinBlock: row.encryptedPinBlock!,
        fromFormat: 4,
        toFormat: 4,
        pan,
      }),
    );
    assert.equal(pinOf('aes', AES_ZPK, 4, a, pan), '1234');
    assert.equal(pinOf('aes', AES_ZPK, 4, b, pan), '1234');
  });

  it('refusals carry the same payShield code: wrong PAN (20), bad PAN (22), format 2 (23), key used as the wrong kind (A6)', async () => {
    const base = {
      source: { kind: 'key' as const, keyBlock: keys.tpk },
      destination: keys.zpk,
      pinBlock: pinBlock('tdes', TPK, 0, '1234'),
      fromFormat: 0 as const,
      toFormat: 0 as const,
      pan: PAN,
    };
    await bothRefuse((c) => c.translatePin({ ...base, pan: '4012345678819' }), '20');
    // The TCP client checks the PAN itself (the 12-digit account field could not carry the fault).
    const [lp, rp] = [
      await failure(local.translatePin({ ...base, pan: '40123' })),
      await failure(tcp.translatePin({ ...base, pan: '40123' })),
    ];
    assert.deepEqual(
      [lp, rp],
      [
        { code: 'POSKEY_ERR_PAN', payShield: '22' },
        { code: 'POSKEY_ERR_PAN', payShield: '22' },
      ],
    );
    const l = await failure(local.translatePin({ ...base, toFormat: 2 }));
    const r = await failure(tcp.translatePin({ ...base, toFormat: 2 }));
    assert.deepEqual([l.payShield, r.payShield, r.code], ['23', '23', 'POSKEY_ERR_PIN_BLOCK_TRANSLATION']);
    await bothRefuse((c) => c.translatePin({ ...base, destination: keys.tak2 }), 'A6');
  });
});

describe('MACs through both clients', () => {
  const data = toHex(Buffer.from('0200 3020058020C00000 000000 000000000100 000123 0210 1234', 'latin1'));

  const cases: { name: string; req: MacRequest; expect: () => string }[] = [
    {
      name: 'retail (ISO 9797-1 alg 3), 8 bytes',
      req: { key: { kind: 'key', keyBlock: keys.tak2 }, algorithm: 'retail', data, length: 8 },
      expect: () => toHex(retailMac(createKey('tdes', fromHex(TAK2)), fromHex(data), { length: 8 })),
    },
    {
      name: 'CBC-MAC (alg 1), padding 2, 4 bytes',
      req: { key: { kind: 'key', keyBlock: keys.tak2 }, algorithm: 'cbc', data, padding: 2, length: 4 },
      expect: () => toHex(cbcMac(createKey('tdes', fromHex(TAK2)), fromHex(data), { padding: 2, length: 4 })),
    },
    {
      name: 'AES-CMAC, 8 bytes',
      req: { key: { kind: 'key', keyBlock: keys.aesTak }, algorithm: 'cmac', data, length: 8 },
      expect: () => '',
    },
    {
      name: 'UnionPay ECB MAC, single-DES MAK, hex output (field 64 ASCII)',
      req: { key: { kind: 'key', keyBlock: keys.tak1 }, algorithm: 'unionpay-ecb', data },
      expect: () => toHex(unionPayMac(createKey('des', fromHex(TAK1)), fromHex(data))),
    },
    {
      name: 'UnionPay ECB MAC, SM4 MAK, binary output',
      req: { key: { kind: 'key', keyBlock: keys.sm4Tak }, algorithm: 'unionpay-ecb', data, output: 'binary' },
      expect: () =>
        toHex(unionPayMac(createKey('sm4', fromHex(SM4_TAK)), fromHex(data), { output: 'binary' })),
    },
  ];

  for (const { name, req, expect } of cases) {
    it(`${name}: same MAC, verifies both ways, a changed MAC or message does not`, async () => {
      const [a, b] = await both((c) => c.generateMac(req));
      assert.equal(b, a);
      if (expect() !== '') assert.equal(b, expect());
      assert.deepEqual(await both((c) => c.verifyMac({ ...req, mac: a })), [true, true]);
      const flipped = (a[0] === '0' ? '1' : '0') + a.slice(1);
      assert.deepEqual(await both((c) => c.verifyMac({ ...req, mac: flipped })), [false, false]);
      const other = { ...req, data: `${data.slice(0, -2)}FF`, mac: a };
      assert.deepEqual(await both((c) => c.verifyMac(other)), [false, false]);
      assert.deepEqual(await both((c) => c.verifyMac({ ...req, mac: a.slice(0, -2) })), [false, false]);
    });
  }

  it('refusals: a PIN key for a MAC (A6), bad hex (15), a short MAC length (15)', async () => {
    const req: MacRequest = {
      key: { kind: 'key', keyBlock: keys.tpk },
      algorithm: 'retail',
      data,
      length: 8,
    };
    await bothRefuse((c) => c.generateMac(req), 'A6');
    const l = await failure(
      local.generateMac({ ...req, key: { kind: 'key', keyBlock: keys.tak2 }, data: 'XYZ1' }),
    );
    const r = await failure(
      tcp.generateMac({ ...req, key: { kind: 'key', keyBlock: keys.tak2 }, data: 'XYZ1' }),
    );
    assert.deepEqual(
      [l.code, r.code, l.payShield, r.payShield],
      ['POSKEY_ERR_HEX', 'POSKEY_ERR_HEX', '15', '15'],
    );
    const short = { ...req, key: { kind: 'key' as const, keyBlock: keys.tak2 }, length: 2 };
    const [ls, rs] = [await failure(local.generateMac(short)), await failure(tcp.generateMac(short))];
    assert.deepEqual([ls.code, rs.code, rs.payShield], ['POSKEY_ERR_LENGTH', 'POSKEY_ERR_LENGTH', '15']);
  });
});

describe('data encryption through both clients', () => {
  const clear = '4012345678909D987000000000000000';

  it('TDK (TDES) ECB and CBC with an IV: same ciphertext, decrypts back', async () => {
    for (const req of [
      { keyBlock: keys.tdk, mode: 'ecb' as const, data: clear },
      { keyBlock: keys.tdk, mode: 'cbc' as const, iv: '0102030405060708', data: clear },
    ]) {
      const [a, b] = await both((c) => c.encryptData(req));
      assert.equal(b, a);
      const iv = req.iv === undefined ? undefined : fromHex(req.iv);
      assert.equal(b, toHex(encrypt('tdes', req.mode, fromHex(TDK), fromHex(clear), iv)));
      assert.deepEqual(await both((c) => c.decryptData({ ...req, data: b })), [clear, clear]);
    }
  });

  it('AES DEK, CBC without an IV (zeros)', async () => {
    const req = { keyBlock: keys.aesDek, mode: 'cbc' as const, data: clear };
    const [a, b] = await both((c) => c.encryptData(req));
    assert.equal(b, a);
    assert.equal(b, toHex(encrypt('aes', 'cbc', fromHex(AES_DEK), fromHex(clear))));
  });

  it('refusals: a MAC key for data (A6), an IV with ECB (15)', async () => {
    await bothRefuse((c) => c.encryptData({ keyBlock: keys.tak2, mode: 'ecb', data: clear }), 'A6');
    const req = { keyBlock: keys.tdk, mode: 'ecb' as const, iv: '0000000000000000', data: clear };
    const [l, r] = [await failure(local.encryptData(req)), await failure(tcp.encryptData(req))];
    assert.deepEqual([l.code, r.code, r.payShield], ['POSKEY_ERR_TYPE', 'POSKEY_ERR_TYPE', '15']);
  });
});

describe('key information through both clients', () => {
  it('checkValue: default, 8-byte, and AES CMAC KCVs are equal and match the clear keys', async () => {
    assert.deepEqual(await both((c) => c.checkValue(keys.zpk)), [
      checkValue(createKey('tdes', fromHex(ZPK))),
      checkValue(createKey('tdes', fromHex(ZPK))),
    ]);
    const [a, b] = await both((c) => c.checkValue(keys.zpk, 'legacy', 8));
    assert.deepEqual(b, a);
    assert.equal(b.value.length, 16);
    const [c1, c2] = await both((c) => c.checkValue(keys.aesZpk));
    assert.deepEqual(c2, c1);
    assert.deepEqual(c2, checkValue(createKey('aes', fromHex(AES_ZPK)), { method: 'cmac' }));
    const [d1, d2] = await both((c) => c.checkValue(keys.aesZpk, undefined, 2));
    assert.deepEqual(d2, d1);
  });

  it('describeKey: same KeyInfo for DES and SM4 blocks; TDES/AES key lengths are not on the wire', async () => {
    for (const block of [keys.tak1, keys.sm4Tak]) {
      const [a, b] = await both((c) => c.describeKey(block));
      assert.deepEqual(b, a);
    }
    const r = await failure(tcp.describeKey(keys.zpk));
    assert.equal(r.code, 'POSKEY_ERR_HSM_UNSUPPORTED');
  });

  it('diagnostics: version and LMK check value agree', async () => {
    const [a, b] = await both((c) => c.diagnostics());
    assert.equal(b.version, a.version);
    assert.equal(b.lmks[0]!.kcv, a.lmks[0]!.kcv);
    assert.ok(b.counters['client.sent']! > 0);
  });
});

describe('key management through both clients', () => {
  it('generateKey: same KeyInfo shape and attributes; the TCP key is a working key of the HSM', async () => {
    for (const [keyType, algorithm] of [
      ['ZPK', 'tdes2'],
      ['TPK', 'tdes3'],
      ['TAK', 'des'],
      ['ZAK', 'aes256'],
      ['BDK', 'aes128'],
      ['TMK', 'tdes2'],
      ['ZEK', 'sm4'],
      ['TDK', 'tdes2'],
      ['DEK', 'aes128'],
      ['ZMK', 'tdes3'],
    ] as [KeyType, KeyAlgorithm][]) {
      const [a, b] = await both((c) => c.generateKey({ keyType, algorithm, exportability: 'S' }));
      assert.deepEqual(
        { ...b.info, kcv: { ...b.info.kcv, value: '' } },
        { ...a.info, kcv: { ...a.info.kcv, value: '' } },
      );
      assert.deepEqual(b.info, hsm.describeKey(b.keyBlock), `${keyType} ${algorithm}`);
      assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
    }
  });

  it('generateKey with exportUnder: the legacy cryptogram opens under the clear ZMK to the key', async () => {
    const [a, b] = await both((c) =>
      c.generateKey({ keyType: 'ZPK', algorithm: 'tdes2', exportUnder: { kek: keys.zmk, format: 'legacy' } }),
    );
    for (const g of [a, b]) {
      assert.equal(g.exported?.format, 'legacy');
      const clear = decrypt('tdes', 'ecb', fromHex(ZMK), fromHex(g.exported!.cryptogram));
      assert.equal(checkValue(createKey('tdes', clear)).value, g.info.kcv.value);
    }
    const [c, d] = await both((cl) =>
      cl.generateKey({ keyType: 'ZAK', algorithm: 'aes128', exportUnder: { kek: keys.kek, format: 'tr31' } }),
    );
    for (const g of [c, d]) {
      const { key } = unwrapKeyBlock({ kbpk: createKey('aes', fromHex(KEK)), block: g.exported!.cryptogram });
      assert.deepEqual(checkValue(createKey('aes', key), { method: 'cmac' }), g.info.kcv);
    }
  });

  it('importKey: TR-31 under a KEK, legacy under a ZMK (with KCV), components (with KCVs) — same results', async () => {
    const zpkClear = odd('0F1E2D3C4B5A69788796A5B4C3D2E1F0');
    const kcv = checkValue(createKey('tdes', fromHex(zpkClear))).value;
    const block = wrapKeyBlock({
      kbpk: createKey('aes', fromHex(KEK)),
      header: {
        version: 'D',
        usage: 'P0',
        algorithm: 'T',
        modeOfUse: 'B',
        keyVersion: '00',
        exportability: 'E',
        keyContext: '0',
        optionalBlocks: [],
      },
      key: fromHex(zpkClear),
    });
    const [t1, t2] = await both((c) =>
      c.importKey({ keyType: 'ZPK', algorithm: 'tdes2', source: { kind: 'tr31', kek: keys.kek, block } }),
    );
    assert.deepEqual(t2.info, t1.info);
    assert.equal(t2.info.kcv.value, kcv);

    const cryptogram = toHex(encrypt('tdes', 'ecb', fromHex(ZMK), fromHex(zpkClear)));
    const legacy = { kind: 'legacy' as const, kek: keys.zmk, cryptogram, kcv };
    const [l1, l2] = await both((c) => c.importKey({ keyType: 'ZPK', algorithm: 'tdes2', source: legacy }));
    assert.deepEqual(l2.info, l1.info);
    const long = checkValue(createKey('tdes', fromHex(zpkClear)), { length: 8 }).value;
    const [m1, m2] = await both((c) =>
      c.importKey({ keyType: 'ZPK', algorithm: 'tdes2', source: { ...legacy, kcv: long } }),
    );
    assert.deepEqual(m2.info, m1.info);
    await bothRefuseLocalCode(
      (c) => c.importKey({ keyType: 'ZPK', algorithm: 'tdes2', source: { ...legacy, kcv: '000000' } }),
      'POSKEY_ERR_KCV_MISMATCH',
      '01',
    );

    const c1 = 'A1B2C3D4E5F60718293A4B5C6D7E8F90';
    const c2 = toHex(xor(fromHex(c1), fromHex(zpkClear)));
    const kcvs = [c1, c2].map((c) => checkValue(createKey('tdes', fromHex(c))).value);
    const source = { kind: 'components' as const, components: [c1, c2], kcvs };
    const [p1, p2] = await both((c) => c.importKey({ keyType: 'ZPK', algorithm: 'tdes2', source }));
    assert.deepEqual(p2.info, p1.info);
    assert.equal(p2.info.kcv.value, kcv);
    await bothRefuseLocalCode(
      (c) =>
        c.importKey({
          keyType: 'ZPK',
          algorithm: 'tdes2',
          source: { ...source, kcvs: [kcvs[0]!, '123456'] },
        }),
      'POSKEY_ERR_KCV_MISMATCH',
      '01',
    );
  });

  it('exportKey: legacy cryptograms are identical (ECB), TDES-3 included; TR-31 blocks open to the same key', async () => {
    const s2 = known('ZPK', 'tdes2', ZPK2, 'S');
    const s3 = known('ZPK', 'tdes3', ZMK3, 'S');
    for (const [block, kek, kekClear, clear] of [
      [s2, keys.zmk, ZMK, ZPK2],
      [s3, keys.zmk3, ZMK3, ZMK3],
    ] as const) {
      const [a, b] = await both((c) => c.exportKey({ keyBlock: block, kek, format: 'legacy' }));
      assert.deepEqual(b, a);
      assert.equal(toHex(decrypt('tdes', 'ecb', fromHex(kekClear), fromHex(b.cryptogram))), clear);
    }
    const [a, b] = await both((c) => c.exportKey({ keyBlock: keys.aesZpk, kek: keys.kek, format: 'tr31' }));
    assert.deepEqual(b.kcv, a.kcv);
    for (const x of [a, b]) {
      const { key } = unwrapKeyBlock({ kbpk: createKey('aes', fromHex(KEK)), block: x.cryptogram });
      assert.equal(toHex(key), AES_ZPK);
    }
    await bothRefuse((c) => c.exportKey({ keyBlock: keys.zpk, kek: keys.zmk, format: 'legacy' }), 'AA');
  });

  it('generateSignInKeys: TDES with TDK and SM4 sets; keys open under the clear TMK to their check values', async () => {
    const [a, b] = await both((c) =>
      c.generateSignInKeys({ tmk: keys.tmk, algorithm: 'tdes', withTdk: true }),
    );
    assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
    for (const set of [a, b]) {
      for (const k of [set.tpk, set.tak, set.tdk!]) {
        const clear = decrypt('tdes', 'ecb', fromHex(TMK), fromHex(k.underTmk));
        const alg = clear.length === 8 ? 'des' : 'tdes';
        assert.equal(checkValue(createKey(alg, clear), { length: 4 }).value, k.checkValue);
        assert.equal(hsm.checkValue(k.keyBlock, 'legacy', 4).value, k.checkValue);
      }
      assert.equal(set.tak.underTmk.length, 16);
    }
    await bothRefuse((c) => c.generateSignInKeys({ tmk: keys.tmk, algorithm: 'sm4' }), 'A7');
  });

  it('a tampered key block is A4 (key block authentication failure) both ways', async () => {
    const last = keys.zpk.at(-1) === '0' ? '1' : '0';
    const tampered = keys.zpk.slice(0, -1) + last;
    await bothRefuse((c) => c.checkValue(tampered), 'A4');
  });

  it('operations without a host command are POSKEY_ERR_HSM_UNSUPPORTED over TCP, and work in process', async () => {
    assert.equal((await failure(tcp.migrateKey(keys.zpk, '00'))).code, 'POSKEY_ERR_HSM_UNSUPPORTED');
    assert.equal((await failure(tcp.randomBytes(8))).code, 'POSKEY_ERR_HSM_UNSUPPORTED');
    assert.equal((await local.randomBytes(8)).length, 16);
    const kek = await failure(tcp.generateKey({ keyType: 'KEK', algorithm: 'aes256' }));
    assert.equal(kek.code, 'POSKEY_ERR_HSM_UNSUPPORTED');
  });
});

/** Both refuse with `localCode` in process and the same payShield code over TCP. */
async function bothRefuseLocalCode(
  fn: (c: HsmClient) => Promise<unknown>,
  localCode: string,
  payShield: string,
) {
  const [l, r] = [await failure(fn(local)), await failure(fn(tcp))];
  assert.deepEqual([l.code, l.payShield, r.payShield], [localCode, payShield, payShield]);
}
