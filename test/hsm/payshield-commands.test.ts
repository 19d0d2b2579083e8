/**
 * Every host command over real TCP against a real Hsm (development LMK): happy paths, checked with
 * the clear keys the test imported, and each error code a command can answer with.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createKey } from '../../src/crypto/cipher.js';
import { cmac } from '../../src/crypto/cmac.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { fixParity } from '../../src/crypto/keys.js';
import { decryptPinBlock, encryptPinBlock } from '../../src/crypto/pinblock.js';
import type { Hsm } from '../../src/hsm/hsm.js';
import { loadVectors } from '../helpers/vectors.js';
import { closeEverything, importClear, makeHsm, startServer, TestClient } from './payshield-helpers.js';

/** Odd-parity DES/TDES keys the tests know in clear. */
const odd = (hex: string) => fixParity(Buffer.from(hex, 'hex')).toString('hex').toUpperCase();
const ZMK = odd('3B6A51F2C4D80E9775A1C3E5F7092B4D');
const TMK = odd('7E1C2D3F4A5B6C7D8E9FA0B1C2D3E4F5');
const TPK = odd('13579BDF02468ACE0F1E2D3C4B5A6978');
const ZPK = odd('89ABCDEF01234567FEDCBA9876543210');
const ZPK2 = odd('2A4C6E8091B3D5F7E0C2A48668ACE024');
const TAK = odd('5D2F4B6A7C8E9012A3B5C7D9E1F30517');
const DEK = odd('6B3D5F7A9C1E2041B3D5E7F90A2C4E61');
const AES_TPK = '000102030405060708090A0B0C0D0E0F';
const AES_ZPK = 'F0E1D2C3B4A5968778695A4B3C2D1E0F';
const SM4_TPK = '0123456789ABCDEFFEDCBA9876543210';
const SM4_ZPK = 'F351D490994603795C6EBEE8FAEBB481';
const BDK = '0123456789ABCDEFFEDCBA9876543210';

const PAN = '4012345678909';
/** The payShield 12 N account number: 12 rightmost PAN digits without the check digit. */
const ACCOUNT = '401234567890';

let hsm: Hsm;
let client: TestClient;
let stop: () => Promise<void>;

/** Keys under the LMK, made once. */
type KeyName =
  | 'zmk'
  | 'tmk'
  | 'tpk'
  | 'zpk'
  | 'zpk2'
  | 'tak'
  | 'dek'
  | 'aesTpk'
  | 'aesZpk'
  | 'sm4Tpk'
  | 'sm4Zpk'
  | 'bdk';
const k = {} as Record<KeyName, string>;

before(async () => {
  hsm = makeHsm();
  const started = await startServer({ hsm, allowClearComponents: true });
  client = await TestClient.connect(started.port);
  stop = () => started.server.close();
  k.zmk = importClear(hsm, 'ZMK', 'tdes2', ZMK);
  k.tmk = importClear(hsm, 'TMK', 'tdes2', TMK);
  k.tpk = importClear(hsm, 'TPK', 'tdes2', TPK);
  k.zpk = importClear(hsm, 'ZPK', 'tdes2', ZPK);
  k.zpk2 = importClear(hsm, 'ZPK', 'tdes2', ZPK2);
  k.tak = importClear(hsm, 'TAK', 'tdes2', TAK);
  k.dek = importClear(hsm, 'DEK', 'tdes2', DEK);
  k.aesTpk = importClear(hsm, 'TPK', 'aes128', AES_TPK);
  k.aesZpk = importClear(hsm, 'ZPK', 'aes128', AES_ZPK);
  k.sm4Tpk = importClear(hsm, 'TPK', 'sm4', SM4_TPK);
  k.sm4Zpk = importClear(hsm, 'ZPK', 'sm4', SM4_ZPK);
  k.bdk = importClear(hsm, 'BDK', 'tdes2', BDK);
});

after(async () => {
  await client.close();
  await stop();
  await closeEverything();
});

/** Reads `S` + key block at the front of `text`; returns the block and what follows. */
function takeBlock(text: string): { block: string; rest: string } {
  assert.equal(text[0], 'S', `expected S + key block, got ${text.slice(0, 8)}`);
  const length = Number(text.slice(2, 6));
  return { block: text.slice(1, 1 + length), rest: text.slice(1 + length) };
}

async function ok(text: string, code: string) {
  const r = await client.command(text);
  assert.equal(r.error, '00', `${text.slice(0, 2)} answered ${r.error}`);
  assert.equal(r.code, code);
  return r.body;
}

async function fails(text: string, errorCode: string, code?: string) {
  const r = await client.command(text);
  assert.equal(r.error, errorCode, `${text.slice(0, 12)}… answered ${r.error}, expected ${errorCode}`);
  if (code !== undefined) assert.equal(r.code, code);
  assert.equal(r.header, 'HDR1');
  return r;
}

function legacyKcv(alg: 'tdes' | 'des' | 'aes' | 'sm4', hex: string, length = 3): string {
  return checkValue(createKey(alg, Buffer.from(hex, 'hex')), { method: 'legacy', length }).value;
}

function ecbDecrypt(alg: 'tdes' | 'aes' | 'sm4', keyHex: string, dataHex: string): string {
  return createKey(alg, Buffer.from(keyHex, 'hex'))
    .ecbDecrypt(Buffer.from(dataHex, 'hex'))
    .toString('hex')
    .toUpperCase();
}

describe('NC and B2', () => {
  it('NC → ND 00 + 16-character LMK check value + 9-character firmware', async () => {
    const body = await ok('NC', 'ND');
    assert.equal(body.length, 25);
    const lmk = hsm.diagnostics().lmks[0]!;
    assert.equal(body.slice(0, 16), lmk.kcv.padEnd(16, '0'));
    assert.equal(body.slice(16).trim(), hsm.diagnostics().version);
  });

  it('B2 echoes the message; a bad length is 15', async () => {
    assert.equal(await ok('B20004PING', 'B3'), 'PING');
    assert.equal(await ok('B20009\x00\x19\xffbinary', 'B3'), '\x00\x19\xffbinary');
    await fails('B20000', '15', 'B3');
    await fails('B2000GPING', '15');
    await fails('B20005PING', '15');
  });
});

describe('A0 generate a key', () => {
  it('mode 0: a key block under the LMK and its 6-hex KCV', async () => {
    const { block, rest } = takeBlock(await ok('A00002S', 'A1'));
    const info = hsm.describeKey(block);
    assert.equal(info.keyType, 'TMK');
    assert.equal(info.algorithm, 'tdes2');
    assert.equal(rest, info.kcv.value.slice(0, 6));
  });

  it('mode 1: also under the ZMK as X + 32 H, which A6 imports back to the same key', async () => {
    const body = await ok(`A01001S;0S${k.zmk}X`, 'A1');
    const { block, rest } = takeBlock(body);
    assert.match(rest, /^X[0-9A-F]{32}[0-9A-F]{6}$/);
    const clear = ecbDecrypt('tdes', ZMK, rest.slice(1, 33));
    assert.equal(rest.slice(33), legacyKcv('tdes', clear));
    assert.equal(hsm.describeKey(block).kcv.value, legacyKcv('tdes', clear));
    const back = await ok(`A6001S${k.zmk}${rest.slice(0, 33)}S`, 'A7');
    assert.equal(takeBlock(back).rest, rest.slice(33));
  });

  it('mode 1 without the ; and flag, and with a TR-31 (R) block under the ZMK', async () => {
    const body = await ok(`A01001S0S${k.zmk}R`, 'A1');
    const { rest } = takeBlock(body);
    assert.equal(rest[0], 'R');
    const tr31 = rest.slice(1, 1 + Number(rest.slice(2, 6)));
    assert.equal(tr31[0], 'B');
    const kcv = rest.slice(1 + tr31.length);
    const back = await ok(`A6001S${k.zmk}R${tr31}S`, 'A7');
    assert.equal(takeBlock(back).rest, kcv);
  });

  it('# key block attributes choose the key (payShield key-block LMK form)', async () => {
    const cases: [string, string, string][] = [
      ['FFF', '#P0T2B00E00', 'ZPK'],
      ['FFF', '#K0T3B00E00', 'ZMK'],
      ['FFF', '#72A1B00E00', 'ZPK'],
      ['FFF', '#D0SMB00N00', 'ZEK'],
      ['FFF', '#M3T2C00E00', 'ZAK'],
      ['003', '#M3T2C00E00', 'TAK'],
      ['FFF', '#B0A3X00N00', 'BDK'],
    ];
    for (const [code, attrs, type] of cases) {
      const { block } = takeBlock(await ok(`A00${code}S%00${attrs}`, 'A1'));
      const info = hsm.describeKey(block);
      assert.equal(info.keyType, type, attrs);
      assert.equal(info.exportability, attrs[8]);
    }
  });

  it('answers each error with its code', async () => {
    await fails('A00XYZS', '04', 'A1');
    await fails('A00402S', '04');
    await fails('A00FFFS', '04');
    await fails('A00002U', '26');
    await fails('A02002S', '15');
    await fails('A00002S%01', '13');
    await fails('A00002S%0X', '13');
    await fails('A00FFFS#V1T2B00E00', 'A6');
    await fails('A00003S#P0T2B00E00', 'A6');
    await fails('A00FFFS#M1T2C00E00', 'A6'); // the HSM gives TDES MAC keys M3
    await fails('A00FFFS#P0ZZB00E00', 'A7');
    await fails('A00FFFS#P0T2E00E00', 'A8'); // the HSM gives PIN keys mode B
    await fails('A00FFFS#P0T2Q00E00', 'A8');
    await fails('A00FFFS#P0T2B01E00', 'A9');
    await fails('A00FFFS#P0T2B00X00', 'AA');
    await fails('A00FFFS#P0T2B00E01', 'AB');
    await fails('A00001S#P0DSB00E00', 'A7'); // no single-DES PIN keys
    await fails(`A01001S;0S${k.zmk}Y`, '26'); // Y is triple length, the key double
    await fails(`A01001S;0S${k.zmk}Q`, '26');
    await fails(`A01001S;0S${k.zpk}X`, 'A6'); // a ZPK cannot wrap keys
    await fails(`A01001S;0S${k.zmk.slice(0, 40)}`, '15');
    await fails('A00002Sjunk', '15');
  });
});

describe('A6 import and A8 export', () => {
  it('imports a key the test encrypted under the ZMK (X + 32 H) and a single-length 16 H TAK', async () => {
    const key = odd('0E1F2A3B4C5D6E7F8091A2B3C4D5E6F7');
    const cryptogram = createKey('tdes', Buffer.from(ZMK, 'hex')).ecbEncrypt(Buffer.from(key, 'hex'));
    const body = await ok(`A6001S${k.zmk}X${cryptogram.toString('hex').toUpperCase()}S`, 'A7');
    const { block, rest } = takeBlock(body);
    assert.equal(rest, legacyKcv('tdes', key));
    assert.equal(hsm.describeKey(block).keyType, 'ZPK');
    const mak = odd('C24A8FB57AA20123');
    const single = createKey('tdes', Buffer.from(ZMK, 'hex')).ecbEncrypt(Buffer.from(mak, 'hex'));
    const tak = await ok(`A6003S${k.zmk}${single.toString('hex')}S`, 'A7');
    assert.equal(hsm.describeKey(takeBlock(tak).block).algorithm, 'des');
  });

  it('A6 errors: parity 10, ZPK as ZMK A6, single-length ZPK A7, bad scheme 26, short key 15', async () => {
    const badKey = createKey('tdes', Buffer.from(ZMK, 'hex')).ecbEncrypt(
      Buffer.from('22222222222222224444444444444444', 'hex'),
    );
    await fails(`A6001S${k.zmk}X${badKey.toString('hex')}S`, '10', 'A7');
    await fails(`A6001S${k.zpk}X${'0'.repeat(32)}S`, 'A6');
    await fails(`A6001S${k.zmk}${'1'.repeat(16)}S`, 'A7');
    await fails(`A6001S${k.zmk}Q${'1'.repeat(32)}S`, '26');
    await fails(`A6001S${k.zmk}X${'1'.repeat(30)}`, '15');
    await fails(`A6001S${k.zmk}X${'1'.repeat(32)}U`, '26');
  });

  it('A8 exports an S key as X + 32 H, E keys only as a key block', async () => {
    const { block } = takeBlock(await ok('A00001S#P0T2B00S00', 'A1'));
    const body = await ok(`A8001S${k.zmk}S${block}X`, 'A9');
    assert.match(body, /^X[0-9A-F]{32}[0-9A-F]{6}$/);
    const clear = ecbDecrypt('tdes', ZMK, body.slice(1, 33));
    assert.equal(body.slice(33), legacyKcv('tdes', clear));
    assert.equal(body.slice(33), hsm.describeKey(block).kcv.value);

    const { block: eKey } = takeBlock(await ok('A00001S', 'A1'));
    await fails(`A8001S${k.zmk}S${eKey}X`, 'AA', 'A9');
    const tr31 = await ok(`A8001;0S${k.zmk}S${eKey}R%00&E`, 'A9');
    assert.equal(tr31[0], 'R');
    await fails(`A8001S${k.zmk}S${eKey}R&N`, 'AA');
    await fails(`A8001S${k.zmk}S${eKey}X&E`, '15');
    await fails(`A8003S${k.zmk}S${eKey}R`, 'BD');
    await fails(`A8001S${k.zmk}S${eKey}Y`, '26');
    await fails(`A8001S${k.tak}S${eKey}R`, 'A6');
  });
});

describe('A4 form a key from components (clear components, poskey variant)', () => {
  it('XORs the components and answers the KCV', async () => {
    const a = odd('0123456789ABCDEF1122334455667788');
    const b = odd('F1E2D3C4B5A69788A1B2C3D4E5F60718');
    const body = await ok(`A42000SX${a}X${b}`, 'A5');
    const combined = fixParity(Buffer.from(a, 'hex').map((x, i) => x ^ Buffer.from(b, 'hex')[i]!)).toString(
      'hex',
    );
    const { block, rest } = takeBlock(body);
    assert.equal(rest, legacyKcv('tdes', combined));
    assert.equal(hsm.describeKey(block).keyType, 'ZMK');
  });

  it('errors: count 03, mixed lengths 27, key block component 26, repeated component 15', async () => {
    await fails(`A41000SX${'1'.repeat(32)}`, '03');
    await fails(`A42000SX${'1'.repeat(32)}${'2'.repeat(16)}`, '27');
    await fails(`A42000SS${k.zmk}X${'2'.repeat(32)}`, '26');
    await fails(`A42000SX${ZMK}X${ZMK}`, '15');
  });

  it('is refused with 17 when the port does not allow clear components', async () => {
    const other = await startServer({ hsm });
    const c = await TestClient.connect(other.port);
    const r = await c.command(`A42000SX${ZMK}X${TMK}`);
    assert.equal(r.error, '17');
    await c.close();
    await other.server.close();
  });
});

describe('BU key check value', () => {
  it('6 H with KCV type 1, 16 H by default and with type 0', async () => {
    assert.equal(await ok(`BUFFFS${k.zpk};FFF;001`, 'BV'), legacyKcv('tdes', ZPK));
    assert.equal(await ok(`BU011S${k.zpk};001`, 'BV'), legacyKcv('tdes', ZPK));
    assert.equal(await ok(`BUFFFS${k.zpk}`, 'BV'), legacyKcv('tdes', ZPK, 8));
    assert.equal(await ok(`BUFFFS${k.zpk};001;000`, 'BV'), legacyKcv('tdes', ZPK, 8));
  });

  it('errors: key type code 04, length flag 05, key type mismatch BD, KCV type 15, scheme 26', async () => {
    await fails(`BUZZ1S${k.zpk}`, '04', 'BV');
    await fails(`BUFFXS${k.zpk}`, '05');
    await fails(`BUFFFS${k.zpk};003`, 'BD');
    await fails(`BUFFFS${k.zpk};FFF;002`, '15');
    await fails(`BUFFFU${'1'.repeat(32)}`, '26');
  });
});

describe('HC and HA (terminal keys under the TMK)', () => {
  it('HC: a new TMK under the current TMK and under the LMK', async () => {
    const body = await ok(`HCS${k.tmk};XS`, 'HD');
    assert.match(body, /^X[0-9A-F]{32}S/);
    const clear = ecbDecrypt('tdes', TMK, body.slice(1, 33));
    const { block } = takeBlock(body.slice(33));
    const info = hsm.describeKey(block);
    assert.equal(info.keyType, 'TMK');
    assert.equal(info.kcv.value, legacyKcv('tdes', clear));
  });

  it('HC with # attributes makes a TPK; without ; the scheme follows the key length', async () => {
    const body = await ok(`HCS${k.tmk}#P0T2B00E00`, 'HD');
    const clear = ecbDecrypt('tdes', TMK, body.slice(1, 33));
    const { block } = takeBlock(body.slice(33));
    assert.equal(hsm.describeKey(block).keyType, 'TPK');
    assert.equal(hsm.describeKey(block).kcv.value, legacyKcv('tdes', clear));
  });

  it('HA: a TAK under the TMK and under the LMK', async () => {
    const body = await ok(`HAS${k.tmk};XS0`, 'HB');
    const clear = ecbDecrypt('tdes', TMK, body.slice(1, 33));
    const { block } = takeBlock(body.slice(33));
    const info = hsm.describeKey(block);
    assert.equal(info.keyType, 'TAK');
    assert.equal(info.usage, 'M3');
    assert.equal(info.kcv.value, legacyKcv('tdes', clear));
  });

  it('errors: a ZPK cannot carry keys A6, bad scheme 26, LMK scheme 26', async () => {
    await fails(`HCS${k.zpk};XS`, 'A6', 'HD');
    await fails(`HAS${k.tmk};QS`, '26', 'HB');
    await fails(`HAS${k.tmk};XU`, '26');
    await fails(`HAS${k.tmk};YS`, '26');
  });
});

describe('CA, CC and G0 PIN translation', () => {
  const tdes = (hex: string) => createKey('tdes', Buffer.from(hex, 'hex'));
  const pinBlock = (key: string, format: 0 | 1 | 3, pin = '1234') =>
    encryptPinBlock(tdes(key), { format, pin, pan: PAN }).toString('hex').toUpperCase();

  it('CA: TPK → ZPK, ISO 0 → ISO 0, PIN length not reported (00)', async () => {
    const body = await ok(`CAS${k.tpk}S${k.zpk}12${pinBlock(TPK, 0)}0101${ACCOUNT}`, 'CB');
    assert.match(body, /^00[0-9A-F]{16}01$/);
    assert.equal(
      decryptPinBlock(tdes(ZPK), Buffer.from(body.slice(2, 18), 'hex'), { format: 0, pan: PAN }),
      '1234',
    );
  });

  it('CA: ISO 1 → ISO 3 and ISO 0 → ISO 4 (AES ZPK, length-prefixed PAN)', async () => {
    const to3 = await ok(`CAS${k.tpk}S${k.zpk}12${pinBlock(TPK, 1, '98765')}0547${ACCOUNT}`, 'CB');
    assert.equal(
      decryptPinBlock(tdes(ZPK), Buffer.from(to3.slice(2, 18), 'hex'), { format: 3, pan: PAN }),
      '98765',
    );
    const to4 = await ok(`CAS${k.tpk}S${k.aesZpk}12${pinBlock(TPK, 0)}0148${PAN.length}${PAN}`, 'CB');
    assert.match(to4, /^00[0-9A-F]{32}48$/);
    const aes = createKey('aes', Buffer.from(AES_ZPK, 'hex'));
    assert.equal(decryptPinBlock(aes, Buffer.from(to4.slice(2, 34), 'hex'), { format: 4, pan: PAN }), '1234');
  });

  it('CA: AES ISO 4 → ISO 4 (32 H blocks) and SM4 (vendor format 90)', async () => {
    const aesTpk = createKey('aes', Buffer.from(AES_TPK, 'hex'));
    const src = encryptPinBlock(aesTpk, { format: 4, pin: '123456', pan: PAN }).toString('hex');
    const body = await ok(`CAS${k.aesTpk}S${k.aesZpk}12${src}4848${PAN.length}${PAN}`, 'CB');
    const aesZpk = createKey('aes', Buffer.from(AES_ZPK, 'hex'));
    assert.equal(
      decryptPinBlock(aesZpk, Buffer.from(body.slice(2, 34), 'hex'), { format: 4, pan: PAN }),
      '123456',
    );

    const sm4Tpk = createKey('sm4', Buffer.from(SM4_TPK, 'hex'));
    const sm4 = encryptPinBlock(sm4Tpk, { format: 'sm4', pin: '4321', pan: PAN }).toString('hex');
    const out = await ok(`CAS${k.sm4Tpk}S${k.sm4Zpk}12${sm4}9090${ACCOUNT}`, 'CB');
    assert.match(out, /^00[0-9A-F]{32}90$/);
    const sm4Zpk = createKey('sm4', Buffer.from(SM4_ZPK, 'hex'));
    assert.equal(
      decryptPinBlock(sm4Zpk, Buffer.from(out.slice(2, 34), 'hex'), { format: 'sm4', pan: PAN }),
      '4321',
    );
  });

  it('CC: ZPK → ZPK', async () => {
    const body = await ok(`CCS${k.zpk}S${k.zpk2}12${pinBlock(ZPK, 0)}0101${ACCOUNT}`, 'CD');
    assert.equal(
      decryptPinBlock(tdes(ZPK2), Buffer.from(body.slice(2, 18), 'hex'), { format: 0, pan: PAN }),
      '1234',
    );
  });

  it('G0: DUKPT (X9.24-1 A.4, KSN FFFF9876543210E00001) → ZPK', async () => {
    const { vectors, clearPinBlock } = loadVectors<{ ksn: string; encryptedPinBlock: string }>(
      'dukpt-tdes.json',
    ) as {
      vectors: { ksn: string; encryptedPinBlock: string }[];
      clearPinBlock: string;
    } & { source: string };
    for (const v of vectors.slice(0, 3)) {
      const body = await ok(`G0S${k.bdk}S${k.zpk}A05${v.ksn}${v.encryptedPinBlock}0101${ACCOUNT}`, 'G1');
      const clear = tdes(ZPK)
        .ecbDecrypt(Buffer.from(body.slice(2, 18), 'hex'))
        .toString('hex')
        .toUpperCase();
      assert.equal(clear, clearPinBlock);
      assert.equal(body.slice(18), '01');
    }
    // A shorter KSN (descriptor 605 = 16 H) is left-padded with F.
    const v = vectors[0]!;
    const body = await ok(
      `G0S${k.bdk}S${k.zpk}605${v.ksn.slice(4)}${v.encryptedPinBlock}0101${ACCOUNT}`,
      'G1',
    );
    assert.equal(
      tdes(ZPK)
        .ecbDecrypt(Buffer.from(body.slice(2, 18), 'hex'))
        .toString('hex')
        .toUpperCase(),
      clearPinBlock,
    );
  });

  it('errors: format 23, PAN mismatch 20, PIN length 24, TAK as TPK A6, format/key A7, max length 15, hex 15, scheme 26', async () => {
    const good = pinBlock(TPK, 0);
    await fails(`CAS${k.tpk}S${k.zpk}12${good}9901${ACCOUNT}`, '23', 'CB');
    await fails(`CAS${k.tpk}S${k.zpk}12${good}0102${ACCOUNT}`, '23');
    await fails(`CAS${k.tpk}S${k.zpk}12${good}0101999999999999`, '20');
    // A clear block announcing a 3-digit PIN, ISO 0 under the TPK.
    const panField = Buffer.from(`0000${ACCOUNT}`, 'hex');
    const clear = Buffer.from('03123FFFFFFFFFFF', 'hex').map((b, i) => b ^ panField[i]!);
    const short = tdes(TPK).ecbEncrypt(Buffer.from(clear)).toString('hex');
    await fails(`CAS${k.tpk}S${k.zpk}12${short}0101${ACCOUNT}`, '24');
    await fails(`CAS${k.tak}S${k.zpk}12${good}0101${ACCOUNT}`, 'A6');
    await fails(`CAS${k.tpk}S${k.tak}12${good}0101${ACCOUNT}`, 'A6');
    await fails(`CAS${k.tpk}S${k.zpk}03${good}0101${ACCOUNT}`, '15');
    await fails(`CAS${k.tpk}S${k.zpk}12${good.slice(0, 15)}G0101${ACCOUNT}`, '15');
    await fails(`CAS${k.tpk}S${k.zpk}12${good}0101${ACCOUNT.slice(0, 11)}`, '15');
    await fails(`CAU${'1'.repeat(32)}S${k.zpk}12${good}0101${ACCOUNT}`, '26');
    await fails(`CAS${k.tpk}S${k.aesZpk}12${good}0101${ACCOUNT}`, 'A7'); // ISO 0 under an AES key
    await fails(`G0S${k.bdk}S${k.zpk}F05${'F'.repeat(20)}${good}0101${ACCOUNT}`, '15'); // KSN over 20 H
    await fails(`G0S${k.tpk}S${k.zpk}A05${'F'.repeat(20)}${good}0101${ACCOUNT}`, 'A6'); // a TPK is no BDK
  });
});

describe('M6 and M8 MACs', () => {
  interface MacVector {
    algorithm: 'cbc' | 'retail' | 'cmac' | 'unionpay-ecb';
    keyAlg: 'des' | 'tdes' | 'aes' | 'sm4';
    key: string;
    data?: string;
    text?: string;
    padding?: number;
    length?: number;
    output?: 'hex' | 'binary';
    ascii?: string;
    mac: string;
  }
  const ALG = { cbc: '1', retail: '3', cmac: 'C', 'unionpay-ecb': 'U' } as const;
  const KEY_ALG = { des: 'des', tdes: 'tdes2', aes: 'aes128', sm4: 'sm4' } as const;

  it('generates and verifies the published MAC vectors (test/vectors/mac.json)', async () => {
    const { vectors } = loadVectors<MacVector>('mac.json');
    for (const v of vectors) {
      if (v.data === '') continue; // M6 takes at least one byte
      const block = importClear(hsm, 'TAK', KEY_ALG[v.keyAlg], v.key);
      const unionHex = v.algorithm === 'unionpay-ecb' && v.output === 'hex';
      const size = unionHex || v.length === 4 ? '0' : '1';
      const message = v.text === undefined ? v.data! : v.text;
      const input = v.text === undefined ? '1' : '2';
      const length = message.length.toString(16).toUpperCase().padStart(4, '0');
      const padding = v.padding === undefined ? '0' : String(v.padding);
      const head = `${input}${size}${ALG[v.algorithm]}${padding}FFFS${block}`;
      const got = await ok(`M60${head}${length}${message}`, 'M7');
      const want = unionHex ? v.ascii! : v.mac.slice(0, size === '0' ? 8 : 16);
      assert.equal(got, want, `${v.algorithm} ${v.keyAlg} ${v.key}`);
      await ok(`M80${head}${length}${message}${got}`, 'M9');
    }
  });

  interface MacFields {
    mode?: string;
    input?: string;
    size?: string;
    alg?: string;
    pad?: string;
    type?: string;
    key?: string;
    message?: string;
    length?: string;
    mac?: string;
  }
  /** An M6/M8 body: mode, input format, MAC size, algorithm, padding, key type, key, length, message, MAC. */
  const mac = (cmd: 'M6' | 'M8', f: MacFields = {}) => {
    const message = f.message ?? 'ABCDEF12';
    const length = f.length ?? message.length.toString(16).toUpperCase().padStart(4, '0');
    const key = f.key ?? k.tak;
    return `${cmd}${f.mode ?? '0'}${f.input ?? '1'}${f.size ?? '0'}${f.alg ?? '1'}${f.pad ?? '1'}${f.type ?? '003'}S${key}${length}${message}${f.mac ?? ''}`;
  };

  it('binary input carries any byte, 0x19 included', async () => {
    const data = Buffer.from([0x19, 0x00, 0xff, 0x41, 0x19, 0x80, 0x7f, 0x01]);
    const binary = await client.command(
      mac('M6', { input: '0', alg: '3', message: data.toString('latin1') }),
    );
    assert.equal(binary.error, '00');
    const hex = await ok(
      mac('M6', { input: '1', alg: '3', message: data.toString('hex').toUpperCase() }),
      'M7',
    );
    assert.equal(binary.body, hex);
    assert.equal(hex.length, 8);
  });

  it('CMAC (vendor code C) with an AES TAK, 8-byte MAC', async () => {
    const RFC4493_KEY = '2B7E151628AED2A6ABF7158809CF4F3C';
    const block = importClear(hsm, 'TAK', 'aes128', RFC4493_KEY);
    const message = '6BC1BEE22E409F96E93D7E117393172A';
    const out = await ok(mac('M6', { key: block, alg: 'C', size: '1', pad: '0', message }), 'M7');
    const want = cmac(createKey('aes', Buffer.from(RFC4493_KEY, 'hex')), Buffer.from(message, 'hex'), 8);
    assert.equal(out, want.toString('hex').toUpperCase());
    // RFC 4493 example 2: this message's full CMAC is 070A16B46B4D4144F79BDD9DD04A287C.
    assert.equal(out, '070A16B46B4D4144');
    await ok(mac('M8', { key: block, alg: 'C', size: '1', pad: '0', message, mac: out }), 'M9');
  });

  it('M8 answers 01 when the MAC does not verify', async () => {
    const text = 'Hello World';
    const good = await ok(mac('M6', { input: '2', alg: '3', message: text }), 'M7');
    await ok(mac('M8', { input: '2', alg: '3', message: text, mac: good }), 'M9');
    const wrong = (good[0] === '0' ? '1' : '0') + good.slice(1);
    await fails(mac('M8', { input: '2', alg: '3', message: text, mac: wrong }), '01', 'M9');
  });

  it('errors: mode 02, input 03, algorithm 04, key type 05, length 06, padding 09, TPK A6', async () => {
    await fails(mac('M6', { mode: '4' }), '02', 'M7');
    await fails(mac('M6', { mode: '1' }), '02');
    await fails(mac('M6', { input: '3' }), '03');
    await fails(mac('M6', { alg: '9' }), '04');
    await fails(mac('M6', { pad: '4' }), '09');
    await fails(mac('M6', { type: '001' }), '05');
    await fails(mac('M6', { message: '', length: '0000' }), '06');
    await fails(mac('M6', { message: 'ABCDEF123', length: '0009' }), '06');
    await fails(mac('M6', { length: '0010' }), '06');
    await fails(mac('M6', { key: k.tpk }), 'A6');
    await fails(mac('M6', { pad: '0' }), '15'); // padding 0 needs whole blocks
    await fails(mac('M6', { size: '2' }), '15');
    await fails(mac('M8', { mode: '1', mac: '12345678' }), '02', 'M9');
    await fails(mac('M8', { mac: '1234567' }), '15');
  });
});

describe('M0 and M2 data encryption', () => {
  const DATA = '0400980C0002AE900AF140D0C21230D7';

  it('ECB: M0 encrypts as TDES-ECB, M2 decrypts back', async () => {
    const enc = await ok(`M00011FFFS${k.dek}0020${DATA}`, 'M1');
    const want = createKey('tdes', Buffer.from(DEK, 'hex'))
      .ecbEncrypt(Buffer.from(DATA, 'hex'))
      .toString('hex')
      .toUpperCase();
    assert.equal(enc, `0020${want}`);
    assert.equal(await ok(`M20011FFFS${k.dek}0020${want}`, 'M3'), `0020${DATA}`);
  });

  it('CBC: IV in, next IV out; binary output', async () => {
    const iv = '0102030405060708';
    const enc = await ok(`M00111FFFS${k.dek}${iv}0020${DATA}`, 'M1');
    const want = createKey('tdes', Buffer.from(DEK, 'hex'))
      .cbcEncrypt(Buffer.from(DATA, 'hex'), Buffer.from(iv, 'hex'))
      .toString('hex')
      .toUpperCase();
    assert.equal(enc, `${want.slice(-16)}0020${want}`);
    const dec = await ok(`M20110FFFS${k.dek}${iv}0020${want}`, 'M3');
    assert.equal(dec.slice(0, 16), want.slice(-16));
    assert.equal(dec.slice(16, 20), '0010');
    assert.equal(Buffer.from(dec.slice(20), 'latin1').toString('hex').toUpperCase(), DATA);
  });

  it('errors: mode 02, input 03, output 04, key type 05, length 06, TAK A6', async () => {
    await fails(`M00211FFFS${k.dek}0020${DATA}`, '02', 'M1');
    await fails(`M00031FFFS${k.dek}0020${DATA}`, '03');
    await fails(`M00012FFFS${k.dek}0020${DATA}`, '04');
    await fails(`M00011003S${k.dek}0020${DATA}`, '05');
    await fails(`M00011FFFS${k.dek}001E${DATA.slice(0, 30)}`, '06');
    await fails(`M00011FFFS${k.dek}0040${DATA}`, '06');
    await fails(`M00011FFFS${k.tak}0020${DATA}`, 'A6');
  });
});

describe('Y0 sign-in key set (vendor command)', () => {
  it('TDES: TPK double, TAK single, no TDK; keys under the TMK match their check values', async () => {
    const body = await ok(`Y0S${k.tmk}T210`, 'Y1');
    const tpk = takeBlock(body);
    assert.match(tpk.rest, /^X[0-9A-F]{32}[0-9A-F]{8}S/);
    const tpkClear = ecbDecrypt('tdes', TMK, tpk.rest.slice(1, 33));
    assert.equal(tpk.rest.slice(33, 41), legacyKcv('tdes', tpkClear, 4));
    assert.equal(hsm.describeKey(tpk.block).keyType, 'TPK');
    const tak = takeBlock(tpk.rest.slice(41));
    assert.match(tak.rest, /^[0-9A-F]{16}[0-9A-F]{8}$/);
    const takClear = ecbDecrypt('tdes', TMK, tak.rest.slice(0, 16));
    assert.equal(tak.rest.slice(16), legacyKcv('des', takClear, 4));
  });

  it('TDES with a double MAK and a TDK; SM4 with an SM4 TMK', async () => {
    const body = await ok(`Y0S${k.tmk}T221`, 'Y1');
    let rest = body;
    const types: string[] = [];
    for (let i = 0; i < 3; i++) {
      const t = takeBlock(rest);
      types.push(hsm.describeKey(t.block).keyType);
      assert.match(t.rest, /^X[0-9A-F]{32}[0-9A-F]{8}/);
      rest = t.rest.slice(41);
    }
    assert.deepEqual(types, ['TPK', 'TAK', 'TDK']);
    assert.equal(rest, '');
    const sm4Tmk = importClear(hsm, 'TMK', 'sm4', SM4_ZPK);
    const sm4 = await ok(`Y0S${sm4Tmk}S220`, 'Y1');
    const t = takeBlock(sm4);
    const clear = ecbDecrypt('sm4', SM4_ZPK, t.rest.slice(1, 33));
    assert.equal(t.rest.slice(33, 41), legacyKcv('sm4', clear, 4));
  });

  it('TDES legacy layout (60.3 = 001): single-length PIK and MAK travel as 16 H', async () => {
    const tpk = takeBlock(await ok(`Y0S${k.tmk}T110`, 'Y1'));
    assert.match(tpk.rest, /^[0-9A-F]{16}[0-9A-F]{8}S/);
    assert.equal(hsm.describeKey(tpk.block).algorithm, 'des');
  });

  it('errors: SM4 with a TDES TMK A7, SM4 length flags 15, algorithm A7, ZPK as TMK A6', async () => {
    await fails(`Y0S${k.tmk}S220`, 'A7', 'Y1');
    await fails(`Y0S${k.tmk}S210`, '15');
    await fails(`Y0S${k.tmk}Q220`, 'A7');
    await fails(`Y0S${k.zpk}T220`, 'A6');
  });
});

describe('framing-level answers', () => {
  it('an unknown command is answered with its response code and 68', async () => {
    const r = await client.command('XX1234');
    assert.deepEqual([r.code, r.error], ['XY', '68']);
  });

  it('an unreadable command code is answered ZZ 15', async () => {
    const r = await client.command('nc');
    assert.deepEqual([r.code, r.error], ['ZZ', '15']);
  });

  it('a trailer after 0x19 is echoed, and a trailing %nn LMK identifier is accepted', async () => {
    const r = await client.command('NC\x19TRAILER');
    assert.equal(r.error, '00');
    assert.ok(r.body.endsWith('\x19TRAILER'));
    assert.equal((await client.command(`BUFFFS${k.zpk};FFF;001%00`)).error, '00');
    assert.equal((await client.command('NC\x19\x01')).error, '15');
  });
});
