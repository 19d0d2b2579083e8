import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { combineComponents } from '../../src/crypto/keys.js';
import { generateMac } from '../../src/crypto/mac.js';
import { decryptPinBlock, encryptPinBlock } from '../../src/crypto/pinblock.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { KeyTable } from '../../src/hsm/http/key-table.js';
import { createHsmHttpApp } from '../../src/hsm/http/server.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { loadVectors } from '../helpers/vectors.js';

const TOKEN = 'data-plane-token-0123456789';
const PAN = '4012345678909';

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are asserted field by field
type Body = Record<string, any>;

interface ComponentVector {
  components: string[];
  componentKcvs: string[];
  key: string;
}
const [TDES3, TDES2, AES] = loadVectors<ComponentVector>('components.json').vectors as [
  ComponentVector,
  ComponentVector,
  ComponentVector,
];

interface DukptFile {
  bdk: string;
  clearPinBlock: string;
  vectors: { ksn: string; encryptedPinBlock: string }[];
}
const DUKPT = loadVectors<DukptFile['vectors'][number]>('dukpt-tdes.json') as unknown as DukptFile;

/** Clear components of the MAC and data keys (ours; the expected keys are their combination). */
const TAK_COMPONENTS = ['0123456789ABCDEFFEDCBA9876543210', '1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C'];
const DEK_COMPONENTS = ['2B7E151628AED2A6ABF7158809CF4F3C', '000102030405060708090A0B0C0D0E0F'];
/** BDK = C1 xor C2 (research keys.md 4.1: the X9.24-1 A.4 BDK). */
const BDK_COMPONENTS = ['40404040404040404040404040404040', '41630527C9EB8DAFBE9CFAD836147250'];

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-http-data-'));
  const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk()]) });
  const keyTable = KeyTable.inDataDir(dir);
  const app = createHsmHttpApp({ hsm, keyTable, tokens: [TOKEN], logger: false });
  const call = async (method: string, url: string, payload?: unknown) => {
    const res = await app.inject({
      method: method as 'GET',
      url,
      headers: { authorization: `Bearer ${TOKEN}` },
      ...(payload === undefined ? {} : { payload: payload as Body }),
    });
    return { status: res.statusCode, body: res.json() as Body };
  };
  const close = async () => {
    await app.close();
    keyTable.close();
    hsm.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  return { call, close };
}
type Env = ReturnType<typeof setup>;

function refused(res: { status: number; body: Body }, status: number, code: string, field?: string) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.code, code, JSON.stringify(res.body));
  if (field !== undefined) assert.equal(res.body.field, field, JSON.stringify(res.body));
}

async function imported(
  env: Env,
  keyType: string,
  keyAlgorithm: string,
  components: string[],
): Promise<string> {
  const res = await env.call('POST', '/keys/import', {
    keyType,
    keyAlgorithm,
    keyMaterial: { keyComponents: { components } },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.key.keyId;
}

async function created(env: Env, body: Body): Promise<Body> {
  const res = await env.call('POST', '/keys', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.key;
}

function clearKey(alg: 'tdes' | 'aes', components: string[]) {
  return createKey(
    alg,
    combineComponents(
      alg,
      components.map((c) => fromHex(c)),
    ).key,
  );
}

describe('HTTP API: data plane', () => {
  let env: Env;
  const ids: Record<string, string> = {};
  const zpkA = createKey('tdes', fromHex(TDES3.key));
  const zpkB = createKey('tdes', fromHex(TDES2.key));
  const zpkAes = createKey('aes', fromHex(AES.key));
  const tak = clearKey('tdes', TAK_COMPONENTS);
  const dek = clearKey('aes', DEK_COMPONENTS);

  before(async () => {
    env = setup();
    ids.zpkA = await imported(env, 'ZPK', 'TDES_2KEY', TDES3.components);
    ids.zpkB = await imported(env, 'ZPK', 'TDES_2KEY', TDES2.components);
    ids.zpkAes = await imported(env, 'ZPK', 'AES_128', AES.components);
    ids.tak = await imported(env, 'TAK', 'TDES_2KEY', TAK_COMPONENTS);
    ids.dek = await imported(env, 'DEK', 'AES_128', DEK_COMPONENTS);
    ids.bdk = await imported(env, 'BDK', 'TDES_2KEY', BDK_COMPONENTS);
  });
  after(() => env.close());

  const translate = (over: Body) =>
    env.call('POST', '/pindata/translate', {
      incomingKeyIdentifier: ids.zpkA,
      outgoingKeyIdentifier: ids.zpkB,
      incomingPinBlockFormat: 'ISO_FORMAT_0',
      outgoingPinBlockFormat: 'ISO_FORMAT_0',
      primaryAccountNumber: PAN,
      ...over,
    });

  it('translates a PIN block ZPK→ZPK, ISO 0→0 and 0→1, and TDES ISO 0 → AES ISO 4', async () => {
    for (const pin of ['1234', '987654321012']) {
      const block = toHex(encryptPinBlock(zpkA, { format: 0, pin, pan: PAN }));
      const same = await translate({ encryptedPinBlock: block });
      assert.equal(same.status, 200, JSON.stringify(same.body));
      assert.equal(decryptPinBlock(zpkB, fromHex(same.body.pinBlock), { format: 0, pan: PAN }), pin);
      assert.equal(same.body.keyCheckValue, createKeyKcv(zpkB));
      const one = await translate({ encryptedPinBlock: block, outgoingPinBlockFormat: 'ISO_FORMAT_1' });
      assert.equal(decryptPinBlock(zpkB, fromHex(one.body.pinBlock), { format: 1 }), pin);
      const four = await translate({
        encryptedPinBlock: block,
        outgoingKeyIdentifier: ids.zpkAes,
        outgoingPinBlockFormat: 'ISO_FORMAT_4',
      });
      assert.equal(four.status, 200, JSON.stringify(four.body));
      assert.equal(four.body.pinBlock.length, 32);
      assert.equal(decryptPinBlock(zpkAes, fromHex(four.body.pinBlock), { format: 4, pan: PAN }), pin);
    }
  });

  it('translates a DUKPT PIN block (BDK + KSN, X9.24-1 A.4) to a ZPK', async () => {
    assert.equal(
      combineComponents(
        'tdes',
        BDK_COMPONENTS.map((c) => fromHex(c)),
      ).key.toString('hex'),
      DUKPT.bdk.toLowerCase(),
    );
    for (const v of DUKPT.vectors.slice(0, 3)) {
      const res = await translate({
        incomingKeyIdentifier: ids.bdk,
        encryptedPinBlock: v.encryptedPinBlock,
        incomingDukptAttributes: { keySerialNumber: v.ksn },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(toHex(zpkB.ecbDecrypt(fromHex(res.body.pinBlock))), DUKPT.clearPinBlock);
    }
    const noKsn = await translate({
      incomingKeyIdentifier: ids.bdk,
      encryptedPinBlock: DUKPT.vectors[0]!.encryptedPinBlock,
    });
    refused(noKsn, 400, 'POSKEY_ERR_KEY_USAGE', 'incomingKeyIdentifier');
    const badKsn = await translate({
      incomingKeyIdentifier: ids.bdk,
      encryptedPinBlock: DUKPT.vectors[0]!.encryptedPinBlock,
      incomingDukptAttributes: { keySerialNumber: 'FFFF9876543210E0000' },
    });
    refused(badKsn, 400, 'POSKEY_ERR_VALIDATION', 'incomingDukptAttributes.keySerialNumber');
  });

  it('enforces key usage: a MAC key cannot translate PINs, a PIN key cannot MAC or encrypt', async () => {
    const block = toHex(encryptPinBlock(zpkA, { format: 0, pin: '1234', pan: PAN }));
    refused(
      await translate({ incomingKeyIdentifier: ids.tak, encryptedPinBlock: block }),
      400,
      'POSKEY_ERR_KEY_USAGE',
      'incomingKeyIdentifier',
    );
    refused(
      await translate({ outgoingKeyIdentifier: ids.dek, encryptedPinBlock: block }),
      400,
      'POSKEY_ERR_KEY_USAGE',
      'outgoingKeyIdentifier',
    );
    const mac = await env.call('POST', '/mac/generate', {
      keyIdentifier: ids.zpkA,
      messageData: '00',
      macAlgorithm: 'ISO9797_ALGORITHM3',
    });
    refused(mac, 400, 'POSKEY_ERR_KEY_USAGE', 'keyIdentifier');
    const enc = await env.call('POST', `/keys/${ids.zpkA}/encrypt`, {
      plainText: '00'.repeat(8),
      mode: 'ECB',
    });
    refused(enc, 400, 'POSKEY_ERR_KEY_USAGE', 'keyId');
  });

  it('names the translate field at fault', async () => {
    const block = toHex(encryptPinBlock(zpkA, { format: 0, pin: '1234', pan: PAN }));
    refused(
      await translate({ encryptedPinBlock: block.slice(2) }),
      400,
      'POSKEY_ERR_VALIDATION',
      'encryptedPinBlock',
    );
    refused(
      await translate({ encryptedPinBlock: 'Z'.repeat(16) }),
      400,
      'POSKEY_ERR_VALIDATION',
      'encryptedPinBlock',
    );
    refused(
      await translate({ encryptedPinBlock: block, primaryAccountNumber: '40123' }),
      400,
      'POSKEY_ERR_VALIDATION',
      'primaryAccountNumber',
    );
    refused(
      await translate({ encryptedPinBlock: block, incomingPinBlockFormat: 'ISO_FORMAT_9' }),
      400,
      'POSKEY_ERR_VALIDATION',
      'incomingPinBlockFormat',
    );
    const wrongPan = await translate({ encryptedPinBlock: block, primaryAccountNumber: '5500000000000004' });
    assert.equal(wrongPan.status, 400);
    assert.equal(wrongPan.body.code, 'POSKEY_ERR_PAN_MISMATCH');
    assert.equal(wrongPan.body.field, 'primaryAccountNumber');
    const aesIn = await translate({ encryptedPinBlock: block, outgoingKeyIdentifier: ids.zpkAes });
    assert.equal(aesIn.status, 400, JSON.stringify(aesIn.body));
    assert.equal(aesIn.body.field, 'outgoingKeyIdentifier');
    refused(
      await translate({ encryptedPinBlock: block, incomingKeyIdentifier: 'alias/missing' }),
      404,
      'POSKEY_ERR_ALIAS_NOT_FOUND',
      'incomingKeyIdentifier',
    );
  });

  it('generates and verifies a retail MAC equal to the crypto library, and CMAC with an AES key', async () => {
    const data = '0123456789ABCDEF00112233445566778899';
    const gen = await env.call('POST', '/mac/generate', {
      keyIdentifier: ids.tak,
      messageData: data,
      macAlgorithm: 'ISO9797_ALGORITHM3',
      padding: 2,
    });
    assert.equal(gen.status, 200, JSON.stringify(gen.body));
    assert.equal(gen.body.mac, toHex(generateMac('retail', tak, fromHex(data), { padding: 2 })));
    const ok = await env.call('POST', '/mac/verify', {
      keyIdentifier: ids.tak,
      messageData: data,
      macAlgorithm: 'ISO9797_ALGORITHM3',
      padding: 2,
      mac: gen.body.mac,
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.verified, true);
    const zak = await created(env, { keyType: 'ZAK', keyAlgorithm: 'AES_256' });
    const cmac = await env.call('POST', '/mac/generate', {
      keyIdentifier: zak.keyId,
      messageData: data,
      macAlgorithm: 'CMAC',
      macLength: 8,
    });
    assert.equal(cmac.body.mac.length, 16);
    const short = await env.call('POST', '/mac/verify', {
      keyIdentifier: zak.keyId,
      messageData: data,
      macAlgorithm: 'CMAC',
      macLength: 8,
      mac: cmac.body.mac,
    });
    assert.equal(short.body.verified, true);
    const up = await env.call('POST', '/mac/generate', {
      keyIdentifier: ids.tak,
      messageData: data,
      macAlgorithm: 'UNIONPAY_ECB',
      unionPayOutput: 'HEX',
    });
    assert.equal(up.body.mac, toHex(generateMac('unionpay-ecb', tak, fromHex(data), { output: 'hex' })));
  });

  it('a MAC that does not verify is a VerificationFailedException with reason INVALID_MAC', async () => {
    const data = '00112233445566778899';
    const gen = await env.call('POST', '/mac/generate', {
      keyIdentifier: ids.tak,
      messageData: data,
      macAlgorithm: 'ISO9797_ALGORITHM1',
    });
    const flipped = (gen.body.mac[0] === '0' ? '1' : '0') + gen.body.mac.slice(1);
    for (const mac of [flipped, gen.body.mac.slice(0, 8)]) {
      const res = await env.call('POST', '/mac/verify', {
        keyIdentifier: ids.tak,
        messageData: data,
        macAlgorithm: 'ISO9797_ALGORITHM1',
        mac,
      });
      refused(res, 400, 'POSKEY_ERR_VERIFICATION_FAILED', 'mac');
      assert.equal(res.body.type, 'VerificationFailedException');
      assert.equal(res.body.reason, 'INVALID_MAC');
    }
    const other = await env.call('POST', '/mac/verify', {
      keyIdentifier: ids.tak,
      messageData: `${data}01`,
      macAlgorithm: 'ISO9797_ALGORITHM1',
      mac: gen.body.mac,
    });
    assert.equal(other.body.reason, 'INVALID_MAC');
  });

  it('names the MAC field at fault and holds the input limits', async () => {
    const base = { keyIdentifier: ids.tak, macAlgorithm: 'ISO9797_ALGORITHM3' };
    const gen = (over: Body) => env.call('POST', '/mac/generate', { ...base, messageData: '00', ...over });
    refused(await gen({ messageData: '0' }), 400, 'POSKEY_ERR_VALIDATION', 'messageData');
    refused(await gen({ messageData: '' }), 400, 'POSKEY_ERR_VALIDATION', 'messageData');
    refused(await gen({ messageData: '00'.repeat(4097) }), 400, 'POSKEY_ERR_VALIDATION', 'messageData');
    assert.equal((await gen({ messageData: '00'.repeat(4096) })).status, 200);
    refused(await gen({ macLength: 3 }), 400, 'POSKEY_ERR_VALIDATION', 'macLength');
    refused(await gen({ macLength: 12 }), 400, 'POSKEY_ERR_LENGTH', 'macLength');
    refused(await gen({ padding: 4 }), 400, 'POSKEY_ERR_VALIDATION', 'padding');
    refused(await gen({ macAlgorithm: 'CMAC' }), 400, 'POSKEY_ERR_KEY_USAGE', 'keyIdentifier');
    const verify = await env.call('POST', '/mac/verify', { ...base, messageData: '00', mac: 'XYZ' });
    refused(verify, 400, 'POSKEY_ERR_VALIDATION', 'mac');
  });

  it('encrypts and decrypts data (ECB and CBC) as the crypto library does', async () => {
    const plain = '000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F';
    const iv = 'F0E0D0C0B0A090807060504030201000';
    const ecb = await env.call('POST', `/keys/${ids.dek}/encrypt`, { plainText: plain, mode: 'ECB' });
    assert.equal(ecb.status, 200, JSON.stringify(ecb.body));
    assert.equal(ecb.body.cipherText, toHex(dek.ecbEncrypt(fromHex(plain))));
    const cbc = await env.call('POST', `/keys/${ids.dek}/encrypt`, {
      plainText: plain,
      mode: 'CBC',
      initializationVector: iv,
    });
    assert.equal(cbc.body.cipherText, toHex(dek.cbcEncrypt(fromHex(plain), fromHex(iv))));
    const back = await env.call('POST', `/keys/${ids.dek}/decrypt`, {
      cipherText: cbc.body.cipherText,
      mode: 'CBC',
      initializationVector: iv,
    });
    assert.equal(back.body.plainText, plain);
    refused(
      await env.call('POST', `/keys/${ids.dek}/encrypt`, { plainText: '0011', mode: 'ECB' }),
      400,
      'POSKEY_ERR_LENGTH',
      'plainText',
    );
    refused(
      await env.call('POST', `/keys/${ids.dek}/decrypt`, { cipherText: '0011', mode: 'ECB' }),
      400,
      'POSKEY_ERR_LENGTH',
      'cipherText',
    );
    const ivEcb = await env.call('POST', `/keys/${ids.dek}/encrypt`, {
      plainText: plain,
      mode: 'ECB',
      initializationVector: iv,
    });
    refused(ivEcb, 400, 'POSKEY_ERR_TYPE', 'initializationVector');
    refused(
      await env.call('POST', `/keys/${ids.dek}/encrypt`, { plainText: plain, mode: 'CTR' }),
      400,
      'POSKEY_ERR_VALIDATION',
      'mode',
    );
    refused(
      await env.call('POST', `/keys/${ids.dek}/encrypt`, { mode: 'ECB' }),
      400,
      'POSKEY_ERR_VALIDATION',
      'plainText',
    );
  });

  it('round-trips random data through encrypt and decrypt (property)', async () => {
    const samples = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 8 }), 10);
    for (const s of samples) {
      const plain = toHex(Buffer.concat([Buffer.from(s), Buffer.alloc(16 - s.length)]));
      const enc = await env.call('POST', `/keys/${ids.dek}/encrypt`, { plainText: plain, mode: 'CBC' });
      const dec = await env.call('POST', `/keys/${ids.dek}/decrypt`, {
        cipherText: enc.body.cipherText,
        mode: 'CBC',
      });
      assert.equal(dec.body.plainText, plain);
    }
  });

  it('refuses disabled and pending-deletion keys, and serves them again once enabled or restored', async () => {
    const gen = () =>
      env.call('POST', '/mac/generate', {
        keyIdentifier: ids.tak,
        messageData: '00',
        macAlgorithm: 'ISO9797_ALGORITHM3',
      });
    await env.call('POST', `/keys/${ids.tak}/stop-usage`);
    const off = await gen();
    refused(off, 409, 'POSKEY_ERR_KEY_DISABLED', 'keyIdentifier');
    assert.equal(off.body.type, 'ConflictException');
    await env.call('POST', `/keys/${ids.tak}/start-usage`);
    assert.equal((await gen()).status, 200);
    await env.call('DELETE', `/keys/${ids.tak}`);
    refused(await gen(), 409, 'POSKEY_ERR_KEY_DELETE_PENDING', 'keyIdentifier');
    await env.call('POST', `/keys/${ids.tak}/restore`);
    refused(await gen(), 409, 'POSKEY_ERR_KEY_DISABLED', 'keyIdentifier');
    await env.call('POST', `/keys/${ids.tak}/start-usage`);
    assert.equal((await gen()).status, 200);
    await env.call('POST', `/keys/${ids.dek}/stop-usage`);
    refused(
      await env.call('POST', `/keys/${ids.dek}/encrypt`, { plainText: '00'.repeat(16), mode: 'ECB' }),
      409,
      'POSKEY_ERR_KEY_DISABLED',
      'keyId',
    );
    await env.call('POST', `/keys/${ids.dek}/start-usage`);
  });
});

function createKeyKcv(key: ReturnType<typeof createKey>): string {
  return toHex(key.ecbEncrypt(Buffer.alloc(8)).subarray(0, 3));
}
