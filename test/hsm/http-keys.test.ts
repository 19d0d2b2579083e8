import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuditLog, type AuditRecord, verifyAuditLog } from '../../src/hsm/audit.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { KEY_TABLE_FILE, KeyTable } from '../../src/hsm/http/key-table.js';
import { createHsmHttpApp, type HsmHttpOptions } from '../../src/hsm/http/server.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { loadVectors } from '../helpers/vectors.js';

const TOKEN = 'test-token-0123456789-abcdef';
const DAY = 86_400_000;

interface ComponentVector {
  name: string;
  alg: string;
  components: string[];
  componentKcvs: string[];
  key: string;
  kcv: string;
}
const COMPONENTS = loadVectors<ComponentVector>('components.json').vectors;
const TDES3 = COMPONENTS[0]!;
const TDES2 = COMPONENTS[1]!;
const AES = COMPONENTS[2]!;

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are asserted field by field
type Body = Record<string, any>;

/** A real Hsm (dev LMK) and a real SQLite key table in a temp directory, driven with inject(). */
function setup(clock?: () => number, more: Partial<HsmHttpOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-http-keys-'));
  const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk()]), ...(more.audit ? { audit: more.audit } : {}) });
  const keyTable = KeyTable.inDataDir(dir, clock ? { clock } : {});
  const app = createHsmHttpApp({ hsm, keyTable, tokens: [TOKEN], logger: false, ...more });
  const call = async (method: string, url: string, payload?: unknown) => {
    const res = await app.inject({
      method: method as 'GET',
      url,
      headers: { authorization: `Bearer ${TOKEN}` },
      ...(payload === undefined ? {} : { payload: payload as Body }),
    });
    return { status: res.statusCode, body: res.json() as Body, headers: res.headers };
  };
  const close = async () => {
    await app.close();
    keyTable.close();
    hsm.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  return { app, hsm, keyTable, dir, call, close };
}

type Env = ReturnType<typeof setup>;

/** Expects an error answer with this status, code and (when given) field. */
function refused(res: { status: number; body: Body }, status: number, code: string, field?: string) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.code, code, JSON.stringify(res.body));
  if (field !== undefined) assert.equal(res.body.field, field, JSON.stringify(res.body));
  assert.equal(typeof res.body.message, 'string');
  assert.equal(res.body.stack, undefined);
}

async function create(env: Env, body: Body): Promise<Body> {
  const res = await env.call('POST', '/keys', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.key;
}

async function importComponents(
  env: Env,
  keyType: string,
  keyAlgorithm: string,
  v: ComponentVector,
  extra = {},
) {
  const res = await env.call('POST', '/keys/import', {
    keyType,
    keyAlgorithm,
    keyMaterial: { keyComponents: { components: v.components, keyCheckValues: v.componentKcvs } },
    ...extra,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.key as Body;
}

describe('HTTP API: CreateKey, GetKey, ListKeys', () => {
  let env: Env;
  before(() => {
    env = setup();
  });
  after(() => env.close());

  it('creates a key by keyType and stores its LMK block in the table, not in the response', async () => {
    const res = await env.call('POST', '/keys', { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
    assert.equal(res.status, 200);
    const key = res.body.key;
    assert.match(key.keyId, /^key-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(key.keyArn, `arn:poskey:hsm:local:key/${key.keyId}`);
    assert.equal(key.keyType, 'ZPK');
    assert.deepEqual(key.keyAttributes.keyUsage, 'TR31_P0_PIN_ENCRYPTION_KEY');
    assert.equal(key.keyAttributes.keyAlgorithm, 'TDES_2KEY');
    assert.equal(key.keyAttributes.keyModesOfUse.encrypt, true);
    assert.equal(key.keyAttributes.keyModesOfUse.generate, false);
    assert.equal(key.keyState, 'CREATE_COMPLETE');
    assert.equal(key.enabled, true);
    assert.equal(key.exportability, 'EXPORTABLE');
    assert.equal(key.keyOrigin, 'POSKEY_HSM');
    assert.equal(key.keyCheckValueAlgorithm, 'ANSI_X9_24');
    assert.equal(key.lmkId, '00');
    const block = env.keyTable.get(key.keyId).keyBlock!;
    assert.equal(env.hsm.checkValue(block, 'legacy').value, key.keyCheckValue);
    assert.equal(JSON.stringify(res.body).includes(block), false);
    assert.ok(!Number.isNaN(Date.parse(key.createTimestamp)));
  });

  it('creates a key by TR-31 key usage, with a CMAC KCV, disabled, under an alias', async () => {
    const key = await create(env, {
      keyUsage: 'TR31_M6_ISO_9797_5_CMAC_KEY',
      keyAlgorithm: 'AES_128',
      keyCheckValueAlgorithm: 'CMAC',
      enabled: false,
      exportability: 'NON_EXPORTABLE',
      alias: 'alias/mac/aes',
    });
    assert.equal(key.keyType, 'ZAK');
    assert.equal(key.keyAttributes.keyUsage, 'TR31_M6_ISO_9797_5_CMAC_KEY');
    assert.match(key.keyCheckValue, /^[0-9A-F]{10}$/);
    assert.equal(key.keyCheckValueAlgorithm, 'CMAC');
    assert.equal(key.enabled, false);
    assert.equal(key.exportable, false);
    assert.ok(key.usageStopTimestamp);
    assert.deepEqual(key.aliases, ['alias/mac/aes']);
  });

  it('refuses a usage the algorithm does not get, storing nothing', async () => {
    const before = (await env.call('GET', '/keys')).body.keys.length;
    const res = await env.call('POST', '/keys', {
      keyUsage: 'TR31_M6_ISO_9797_5_CMAC_KEY',
      keyAlgorithm: 'TDES_2KEY',
    });
    refused(res, 400, 'POSKEY_ERR_VALIDATION', 'keyUsage');
    assert.equal((await env.call('GET', '/keys')).body.keys.length, before);
  });

  it('answers bad input with the field at fault', async () => {
    const cases: [Body, string, string][] = [
      [{ keyAlgorithm: 'TDES_2KEY' }, 'POSKEY_ERR_VALIDATION', 'keyType'],
      [{ keyType: 'ZPK' }, 'POSKEY_ERR_VALIDATION', 'keyAlgorithm'],
      [{ keyType: 'ZPK', keyAlgorithm: 'TDES_9KEY' }, 'POSKEY_ERR_VALIDATION', 'keyAlgorithm'],
      [{ keyType: 'XYZ', keyAlgorithm: 'TDES_2KEY' }, 'POSKEY_ERR_VALIDATION', 'keyType'],
      [{ keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY', colour: 'red' }, 'POSKEY_ERR_VALIDATION', 'colour'],
      [{ keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY', enabled: 'true' }, 'POSKEY_ERR_VALIDATION', 'enabled'],
      [{ keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY', alias: 'zpk-main' }, 'POSKEY_ERR_VALIDATION', 'alias'],
      [{ keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY', alias: 'alias/' }, 'POSKEY_ERR_VALIDATION', 'alias'],
      [
        { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY', alias: `alias/${'a'.repeat(251)}` },
        'POSKEY_ERR_VALIDATION',
        'alias',
      ],
      [{ keyType: 'ZPK', keyAlgorithm: 'DES' }, 'POSKEY_ERR_KEY_ALGORITHM', 'keyAlgorithm'],
      [{ keyType: 'BDK', keyAlgorithm: 'SM4' }, 'POSKEY_ERR_KEY_ALGORITHM', 'keyAlgorithm'],
    ];
    for (const [body, code, field] of cases) refused(await env.call('POST', '/keys', body), 400, code, field);
  });

  it('refuses an alias that exists with 409, storing no key', async () => {
    await create(env, { keyType: 'KEK', keyAlgorithm: 'AES_256', alias: 'alias/kek/main' });
    const before = (await env.call('GET', '/keys')).body.keys.length;
    const res = await env.call('POST', '/keys', {
      keyType: 'KEK',
      keyAlgorithm: 'AES_256',
      alias: 'alias/kek/main',
    });
    refused(res, 409, 'POSKEY_ERR_ALIAS_EXISTS', 'alias');
    assert.equal(res.body.type, 'ConflictException');
    assert.equal(res.headers['x-amzn-errortype'], 'ConflictException');
    assert.equal((await env.call('GET', '/keys')).body.keys.length, before);
  });

  it('gets a key by id, alias (percent-encoded), key ARN and alias ARN', async () => {
    const key = await create(env, { keyType: 'TPK', keyAlgorithm: 'TDES_3KEY', alias: 'alias/tpk/1' });
    for (const id of [key.keyId, 'alias/tpk/1', key.keyArn, 'arn:poskey:hsm:local:alias/tpk/1']) {
      const res = await env.call('GET', `/keys/${encodeURIComponent(id)}`);
      assert.equal(res.status, 200, id);
      assert.equal(res.body.key.keyId, key.keyId);
      assert.deepEqual(res.body.key.aliases, ['alias/tpk/1']);
    }
  });

  it('answers 404 for unknown keys and aliases, 400 for malformed identifiers', async () => {
    refused(await env.call('GET', '/keys/key-0000000000000000'), 404, 'POSKEY_ERR_KEY_NOT_FOUND', 'keyId');
    const nf = await env.call('GET', `/keys/${encodeURIComponent('alias/nope')}`);
    refused(nf, 404, 'POSKEY_ERR_ALIAS_NOT_FOUND', 'keyId');
    assert.equal(nf.body.type, 'ResourceNotFoundException');
    const other = encodeURIComponent('arn:poskey:hsm:elsewhere:key/key-0000000000000000');
    refused(await env.call('GET', `/keys/${other}`), 404, 'POSKEY_ERR_KEY_NOT_FOUND', 'keyId');
    refused(await env.call('GET', '/keys/key-XYZ'), 400, 'POSKEY_ERR_VALIDATION', 'keyId');
    refused(await env.call('GET', `/keys/key-${'0'.repeat(400)}`), 400, 'POSKEY_ERR_VALIDATION', 'keyId');
    const huge = await env.call('GET', `/keys/key-${'0'.repeat(5000)}`);
    refused(huge, 400, 'POSKEY_ERR_VALIDATION', 'path');
    assert.equal(JSON.stringify(huge.body).includes('0'.repeat(100)), false);
    refused(await env.call('GET', '/keys/%E0%A4%A'), 400, 'POSKEY_ERR_VALIDATION', 'path');
  });

  it('lists keys with maxResults and nextToken, and filters by state', async () => {
    const all = (await env.call('GET', '/keys')).body.keys as Body[];
    assert.ok(all.length >= 4);
    assert.equal(all[0]!.keyCheckValue.length > 0, true);
    const seen: string[] = [];
    let url = '/keys?maxResults=2';
    for (;;) {
      const page = await env.call('GET', url);
      assert.equal(page.status, 200);
      assert.ok(page.body.keys.length <= 2);
      seen.push(...page.body.keys.map((k: Body) => k.keyId));
      if (page.body.nextToken === undefined) break;
      url = `/keys?maxResults=2&nextToken=${page.body.nextToken}`;
    }
    assert.deepEqual(
      seen,
      all.map((k) => k.keyId),
    );
    const pending = await env.call('GET', '/keys?keyState=DELETE_PENDING');
    assert.deepEqual(pending.body.keys, []);
    refused(await env.call('GET', '/keys?maxResults=0'), 400, 'POSKEY_ERR_VALIDATION', 'maxResults');
    refused(await env.call('GET', '/keys?maxResults=101'), 400, 'POSKEY_ERR_VALIDATION', 'maxResults');
    refused(await env.call('GET', '/keys?maxResults=ten'), 400, 'POSKEY_ERR_VALIDATION', 'maxResults');
    refused(await env.call('GET', '/keys?keyState=GONE'), 400, 'POSKEY_ERR_VALIDATION', 'keyState');
    refused(await env.call('GET', '/keys?nextToken=forged'), 400, 'POSKEY_ERR_VALIDATION', 'nextToken');
    refused(await env.call('GET', '/keys?colour=red'), 400, 'POSKEY_ERR_VALIDATION', 'colour');
  });
});

describe('HTTP API: key lifecycle', () => {
  const now = { t: Date.UTC(2025, 5, 1) };
  let env: Env;
  before(() => {
    env = setup(() => now.t);
  });
  after(() => env.close());

  it('stops and starts key usage', async () => {
    const key = await create(env, { keyType: 'ZAK', keyAlgorithm: 'TDES_2KEY' });
    const off = await env.call('POST', `/keys/${key.keyId}/stop-usage`);
    assert.equal(off.status, 200);
    assert.equal(off.body.key.enabled, false);
    assert.equal(off.body.key.keyState, 'CREATE_COMPLETE');
    const on = await env.call('POST', `/keys/${key.keyId}/start-usage`);
    assert.equal(on.body.key.enabled, true);
    refused(
      await env.call('POST', '/keys/key-0000000000000000/stop-usage'),
      404,
      'POSKEY_ERR_KEY_NOT_FOUND',
      'keyId',
    );
    refused(
      await env.call('POST', '/keys/key-0000000000000000/start-usage'),
      404,
      'POSKEY_ERR_KEY_NOT_FOUND',
    );
  });

  it('schedules deletion (default 7 days), refuses windows outside 3-180, restores disabled', async () => {
    const key = await create(env, { keyType: 'ZPK', keyAlgorithm: 'AES_128', alias: 'alias/lifecycle' });
    for (const days of ['2', '181', '0', '-5', 'seven', '3.5']) {
      const res = await env.call('DELETE', `/keys/${key.keyId}?deleteKeyInDays=${days}`);
      refused(res, 400, 'POSKEY_ERR_VALIDATION', 'deleteKeyInDays');
    }
    const del = await env.call('DELETE', `/keys/${key.keyId}`);
    assert.equal(del.status, 200);
    assert.equal(del.body.key.keyState, 'DELETE_PENDING');
    assert.equal(del.body.key.enabled, false);
    assert.equal(
      Date.parse(del.body.key.deleteTimestamp) - Date.parse(del.body.key.deletePendingTimestamp),
      7 * DAY,
    );
    refused(await env.call('DELETE', `/keys/${key.keyId}`), 409, 'POSKEY_ERR_KEY_STATE', 'keyId');
    refused(
      await env.call('POST', `/keys/${key.keyId}/start-usage`),
      409,
      'POSKEY_ERR_KEY_DELETE_PENDING',
      'keyId',
    );
    const restored = await env.call('POST', `/keys/${encodeURIComponent('alias/lifecycle')}/restore`);
    assert.equal(restored.status, 200);
    assert.equal(restored.body.key.keyState, 'CREATE_COMPLETE');
    assert.equal(restored.body.key.enabled, false);
    assert.equal(restored.body.key.deleteTimestamp, undefined);
    refused(await env.call('POST', `/keys/${key.keyId}/restore`), 409, 'POSKEY_ERR_KEY_STATE', 'keyId');
    assert.equal((await env.call('POST', `/keys/${key.keyId}/start-usage`)).body.key.enabled, true);
    const d180 = await env.call('DELETE', `/keys/${key.keyId}?deleteKeyInDays=180`);
    assert.equal(Date.parse(d180.body.key.deleteTimestamp) - now.t, 180 * DAY);
  });

  it('a key past its deletion date is DELETE_COMPLETE: material gone, not restorable, not usable', async () => {
    const key = await create(env, { keyType: 'ZAK', keyAlgorithm: 'TDES_2KEY', alias: 'alias/short-lived' });
    const del = await env.call('DELETE', `/keys/${key.keyId}?deleteKeyInDays=3`);
    assert.equal(del.body.key.keyState, 'DELETE_PENDING');
    now.t += 3 * DAY - 1000;
    assert.equal((await env.call('GET', `/keys/${key.keyId}`)).body.key.keyState, 'DELETE_PENDING');
    now.t += 1000;
    const got = await env.call('GET', `/keys/${key.keyId}`);
    assert.equal(got.body.key.keyState, 'DELETE_COMPLETE');
    assert.equal(got.body.key.enabled, false);
    assert.equal(got.body.key.lmkId, undefined);
    assert.equal(env.keyTable.get(key.keyId).keyBlock, undefined);
    refused(await env.call('POST', `/keys/${key.keyId}/restore`), 404, 'POSKEY_ERR_KEY_DELETED', 'keyId');
    refused(await env.call('POST', `/keys/${key.keyId}/start-usage`), 404, 'POSKEY_ERR_KEY_DELETED', 'keyId');
    const mac = await env.call('POST', '/mac/generate', {
      keyIdentifier: key.keyId,
      messageData: '00112233',
      macAlgorithm: 'ISO9797_ALGORITHM3',
    });
    refused(mac, 404, 'POSKEY_ERR_KEY_DELETED', 'keyIdentifier');
    const alias = await env.call('GET', `/aliases/${encodeURIComponent('alias/short-lived')}`);
    assert.deepEqual(alias.body.alias, { aliasName: 'alias/short-lived' });
    const listed = await env.call('GET', '/keys?keyState=DELETE_COMPLETE');
    assert.deepEqual(
      listed.body.keys.map((k: Body) => k.keyId),
      [key.keyId],
    );
  });
});

describe('HTTP API: ImportKey and ExportKey', () => {
  let env: Env;
  let kek: Body;
  before(async () => {
    env = setup();
    kek = await create(env, { keyType: 'KEK', keyAlgorithm: 'TDES_3KEY', alias: 'alias/kek' });
  });
  after(() => env.close());

  it('imports clear components checked against their KCVs (published vectors)', async () => {
    const zpk = await importComponents(env, 'ZPK', 'TDES_2KEY', TDES3);
    assert.equal(zpk.keyCheckValue, TDES3.kcv);
    assert.equal(zpk.keyOrigin, 'EXTERNAL');
    const two = await importComponents(env, 'ZPK', 'TDES_2KEY', TDES2);
    assert.equal(two.keyCheckValue, TDES2.kcv);
    const aes = await importComponents(env, 'ZPK', 'AES_128', AES);
    assert.equal(aes.keyCheckValue, AES.kcv);
    assert.equal(aes.keyCheckValueAlgorithm, 'CMAC');
  });

  it('names the component or KCV at fault', async () => {
    const send = (keyComponents: Body, keyAlgorithm = 'TDES_2KEY') =>
      env.call('POST', '/keys/import', { keyType: 'ZPK', keyAlgorithm, keyMaterial: { keyComponents } });
    const bad = [...TDES3.componentKcvs];
    bad[1] = '000000';
    refused(
      await send({ components: TDES3.components, keyCheckValues: bad }),
      400,
      'POSKEY_ERR_KCV_MISMATCH',
      'keyMaterial.keyComponents.keyCheckValues[1]',
    );
    refused(
      await send({ components: TDES3.components, keyCheckValues: TDES3.componentKcvs.slice(1) }),
      400,
      'POSKEY_ERR_VALIDATION',
      'keyMaterial.keyComponents.keyCheckValues',
    );
    refused(
      await send({ components: [TDES3.components[0]] }),
      400,
      'POSKEY_ERR_VALIDATION',
      'keyMaterial.keyComponents.components',
    );
    refused(
      await send({ components: ['0123', TDES3.components[1]] }),
      400,
      'POSKEY_ERR_VALIDATION',
      'keyMaterial.keyComponents.components[0]',
    );
    refused(
      await send({ components: TDES3.components }, 'AES_256'),
      400,
      'POSKEY_ERR_LENGTH',
      'keyMaterial.keyComponents.components[0]',
    );
    refused(
      await send({ components: [TDES3.components[0], TDES3.components[0]] }),
      400,
      'POSKEY_ERR_COMPONENT',
      'keyMaterial.keyComponents.components[1]',
    );
    const both = await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      keyMaterial: {
        keyComponents: { components: TDES3.components },
        keyCryptogram: { wrappingKeyIdentifier: kek.keyId, wrappedKey: '00'.repeat(16) },
      },
    });
    refused(both, 400, 'POSKEY_ERR_VALIDATION', 'keyMaterial');
    const none = await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      keyMaterial: {},
    });
    refused(none, 400, 'POSKEY_ERR_VALIDATION', 'keyMaterial');
  });

  it('exports under a KEK as TR-31 and imports the block back (same KCV)', async () => {
    const zpk = await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
    const out = await env.call('POST', `/keys/${zpk.keyId}/export`, {
      wrappingKeyIdentifier: 'alias/kek',
      format: 'tr31',
    });
    assert.equal(out.status, 200, JSON.stringify(out.body));
    const w = out.body.wrappedKey;
    assert.equal(w.wrappedKeyMaterialFormat, 'TR31_KEY_BLOCK');
    assert.equal(w.wrappingKeyArn, kek.keyArn);
    assert.equal(w.keyCheckValue, zpk.keyCheckValue);
    assert.match(w.keyMaterial, /^B/);
    const back = await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      alias: 'alias/zpk/reimported',
      keyMaterial: { tr31KeyBlock: { wrappingKeyIdentifier: kek.keyArn, wrappedKeyBlock: w.keyMaterial } },
    });
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.equal(back.body.key.keyCheckValue, zpk.keyCheckValue);
    assert.notEqual(back.body.key.keyId, zpk.keyId);
    const tampered = `${w.keyMaterial.slice(0, -1)}${w.keyMaterial.endsWith('0') ? '1' : '0'}`;
    const bad = await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      keyMaterial: { tr31KeyBlock: { wrappingKeyIdentifier: kek.keyId, wrappedKeyBlock: tampered } },
    });
    refused(bad, 400, 'POSKEY_ERR_TR31_MAC', 'keyMaterial.tr31KeyBlock.wrappedKeyBlock');
  });

  it('exports a SENSITIVE key as a legacy cryptogram and imports it back with its KCV', async () => {
    const zpk = await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY', exportability: 'SENSITIVE' });
    const out = await env.call('POST', `/keys/${zpk.keyId}/export`, {
      wrappingKeyIdentifier: kek.keyId,
      format: 'legacy',
    });
    assert.equal(out.status, 200, JSON.stringify(out.body));
    assert.equal(out.body.wrappedKey.wrappedKeyMaterialFormat, 'KEY_CRYPTOGRAM');
    assert.match(out.body.wrappedKey.keyMaterial, /^[0-9A-F]{32}$/);
    const keyCryptogram = {
      wrappingKeyIdentifier: kek.keyId,
      wrappedKey: out.body.wrappedKey.keyMaterial,
      keyCheckValue: zpk.keyCheckValue,
    };
    const back = await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      keyMaterial: { keyCryptogram },
    });
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.equal(back.body.key.keyCheckValue, zpk.keyCheckValue);
    const wrongKcv = await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      keyMaterial: { keyCryptogram: { ...keyCryptogram, keyCheckValue: '123456' } },
    });
    refused(wrongKcv, 400, 'POSKEY_ERR_KCV_MISMATCH', 'keyMaterial.keyCryptogram.keyCheckValue');
  });

  it('enforces exportability and the wrapping key role', async () => {
    const e = await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
    const legacy = await env.call('POST', `/keys/${e.keyId}/export`, {
      wrappingKeyIdentifier: kek.keyId,
      format: 'legacy',
    });
    refused(legacy, 400, 'POSKEY_ERR_KEY_NOT_EXPORTABLE', 'keyId');
    const n = await create(env, {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      exportability: 'NON_EXPORTABLE',
    });
    const tr31 = await env.call('POST', `/keys/${n.keyId}/export`, {
      wrappingKeyIdentifier: kek.keyId,
      format: 'tr31',
    });
    refused(tr31, 400, 'POSKEY_ERR_KEY_NOT_EXPORTABLE', 'keyId');
    const underZpk = await env.call('POST', `/keys/${e.keyId}/export`, {
      wrappingKeyIdentifier: n.keyId,
      format: 'tr31',
    });
    refused(underZpk, 400, 'POSKEY_ERR_KEY_USAGE', 'wrappingKeyIdentifier');
    const weakKek = await create(env, { keyType: 'KEK', keyAlgorithm: 'TDES_2KEY' });
    const aes = await create(env, { keyType: 'ZPK', keyAlgorithm: 'AES_256' });
    const weak = await env.call('POST', `/keys/${aes.keyId}/export`, {
      wrappingKeyIdentifier: weakKek.keyId,
      format: 'tr31',
    });
    refused(weak, 400, 'POSKEY_ERR_KEK_STRENGTH', 'wrappingKeyIdentifier');
    const fmt = await env.call('POST', `/keys/${e.keyId}/export`, {
      wrappingKeyIdentifier: kek.keyId,
      format: 'tr34',
    });
    refused(fmt, 400, 'POSKEY_ERR_VALIDATION', 'format');
    const missing = await env.call('POST', `/keys/${e.keyId}/export`, {
      wrappingKeyIdentifier: 'alias/none',
      format: 'tr31',
    });
    refused(missing, 404, 'POSKEY_ERR_ALIAS_NOT_FOUND', 'wrappingKeyIdentifier');
  });

  it('refuses a disabled wrapping key for import and export', async () => {
    const k2 = await create(env, { keyType: 'KEK', keyAlgorithm: 'TDES_3KEY' });
    const zpk = await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
    const block = (
      await env.call('POST', `/keys/${zpk.keyId}/export`, { wrappingKeyIdentifier: k2.keyId, format: 'tr31' })
    ).body.wrappedKey.keyMaterial;
    await env.call('POST', `/keys/${k2.keyId}/stop-usage`);
    const imp = await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      keyMaterial: { tr31KeyBlock: { wrappingKeyIdentifier: k2.keyId, wrappedKeyBlock: block } },
    });
    refused(imp, 409, 'POSKEY_ERR_KEY_DISABLED', 'keyMaterial.tr31KeyBlock.wrappingKeyIdentifier');
    const exp = await env.call('POST', `/keys/${zpk.keyId}/export`, {
      wrappingKeyIdentifier: k2.keyId,
      format: 'tr31',
    });
    refused(exp, 409, 'POSKEY_ERR_KEY_DISABLED', 'wrappingKeyIdentifier');
  });
});

describe('HTTP API: aliases', () => {
  let env: Env;
  let a: Body;
  let b: Body;
  before(async () => {
    env = setup();
    a = await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
    b = await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
  });
  after(() => env.close());

  const path = (name: string) => `/aliases/${encodeURIComponent(name)}`;

  it('creates, gets, updates, disassociates and deletes an alias', async () => {
    const created = await env.call('POST', '/aliases', { aliasName: 'alias/pos/zpk', keyArn: a.keyArn });
    assert.equal(created.status, 200);
    assert.deepEqual(created.body.alias, { aliasName: 'alias/pos/zpk', keyArn: a.keyArn });
    assert.deepEqual((await env.call('GET', path('alias/pos/zpk'))).body.alias.keyArn, a.keyArn);
    const moved = await env.call('PUT', path('alias/pos/zpk'), { keyArn: b.keyId });
    assert.equal(moved.body.alias.keyArn, b.keyArn);
    assert.deepEqual((await env.call('GET', `/keys/${b.keyId}`)).body.key.aliases, ['alias/pos/zpk']);
    const freed = await env.call('PUT', path('alias/pos/zpk'), {});
    assert.deepEqual(freed.body.alias, { aliasName: 'alias/pos/zpk' });
    refused(
      await env.call('GET', `/keys/${encodeURIComponent('alias/pos/zpk')}`),
      404,
      'POSKEY_ERR_ALIAS_NOT_FOUND',
      'keyId',
    );
    const del = await env.call('DELETE', path('alias/pos/zpk'));
    assert.equal(del.status, 200);
    assert.deepEqual(del.body, {});
    refused(await env.call('GET', path('alias/pos/zpk')), 404, 'POSKEY_ERR_ALIAS_NOT_FOUND', 'aliasName');
    refused(await env.call('DELETE', path('alias/pos/zpk')), 404, 'POSKEY_ERR_ALIAS_NOT_FOUND', 'aliasName');
    refused(await env.call('PUT', path('alias/pos/zpk'), {}), 404, 'POSKEY_ERR_ALIAS_NOT_FOUND', 'aliasName');
  });

  it('lists aliases, by key and by page', async () => {
    for (const n of ['alias/l/1', 'alias/l/2', 'alias/l/3']) {
      assert.equal((await env.call('POST', '/aliases', { aliasName: n, keyArn: a.keyId })).status, 200);
    }
    await env.call('POST', '/aliases', { aliasName: 'alias/l/free' });
    const byKey = await env.call('GET', `/aliases?keyArn=${a.keyId}`);
    assert.deepEqual(
      byKey.body.aliases.map((x: Body) => x.aliasName),
      ['alias/l/1', 'alias/l/2', 'alias/l/3'],
    );
    const p1 = await env.call('GET', '/aliases?maxResults=2');
    const p2 = await env.call('GET', `/aliases?maxResults=2&nextToken=${p1.body.nextToken}`);
    assert.deepEqual(
      [...p1.body.aliases, ...p2.body.aliases].map((x: Body) => x.aliasName),
      ['alias/l/1', 'alias/l/2', 'alias/l/3', 'alias/l/free'],
    );
    refused(
      await env.call('GET', '/aliases?keyArn=key-0000000000000000'),
      404,
      'POSKEY_ERR_KEY_NOT_FOUND',
      'keyArn',
    );
  });

  it('answers 409 for an existing alias and 400/404 for bad names and keys', async () => {
    await env.call('POST', '/aliases', { aliasName: 'alias/dup' });
    refused(
      await env.call('POST', '/aliases', { aliasName: 'alias/dup' }),
      409,
      'POSKEY_ERR_ALIAS_EXISTS',
      'aliasName',
    );
    refused(
      await env.call('POST', '/aliases', { aliasName: 'dup' }),
      400,
      'POSKEY_ERR_VALIDATION',
      'aliasName',
    );
    refused(
      await env.call('POST', '/aliases', { aliasName: 'alias/a b' }),
      400,
      'POSKEY_ERR_VALIDATION',
      'aliasName',
    );
    refused(await env.call('POST', '/aliases', {}), 400, 'POSKEY_ERR_VALIDATION', 'aliasName');
    const noKey = await env.call('POST', '/aliases', {
      aliasName: 'alias/x',
      keyArn: 'key-0000000000000000',
    });
    refused(noKey, 404, 'POSKEY_ERR_KEY_NOT_FOUND', 'keyArn');
    refused(await env.call('GET', '/aliases/not-an-alias'), 400, 'POSKEY_ERR_VALIDATION', 'aliasName');
    refused(
      await env.call('PUT', path('alias/dup'), { keyArn: 'nonsense!' }),
      400,
      'POSKEY_ERR_VALIDATION',
      'keyArn',
    );
  });
});

describe('HTTP API: audit records of key management', () => {
  const now = { t: Date.UTC(2025, 5, 1) };
  let env: Env;
  let audit: AuditLog;
  let auditDir: string;
  before(async () => {
    auditDir = mkdtempSync(join(tmpdir(), 'poskey-http-audit-'));
    audit = await AuditLog.open(join(auditDir, 'audit.log'));
    env = setup(() => now.t, { audit });
  });
  after(async () => {
    await env.close();
    await audit.close();
    rmSync(auditDir, { recursive: true, force: true });
  });

  /** The records written since `from` (a sequence number), once on disk. */
  async function since(from: number): Promise<AuditRecord[]> {
    await audit.flush();
    return readFileSync(audit.path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord)
      .filter((r) => r.seq > from);
  }
  const apiOnly = (rs: AuditRecord[]) =>
    rs.filter((r) => r.action.startsWith('api.') || r.action === 'key.purge');

  it('records every lifecycle call with the actor, key id, KCV and result', async () => {
    const start = audit.lastSeq;
    const zpk = await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY', alias: 'alias/a/zpk' });
    const kek = await create(env, { keyType: 'KEK', keyAlgorithm: 'TDES_2KEY' });
    const imported = await importComponents(env, 'ZPK', 'TDES_2KEY', TDES2, { exportability: 'SENSITIVE' });
    const ok = async (method: string, url: string, body?: Body) => {
      const res = await env.call(method, url, body);
      assert.equal(res.status, 200, `${method} ${url} ${JSON.stringify(res.body)}`);
    };
    await ok('POST', `/keys/${zpk.keyId}/stop-usage`);
    await ok('POST', `/keys/${zpk.keyId}/start-usage`);
    await ok('POST', `/keys/${imported.keyId}/export`, {
      wrappingKeyIdentifier: kek.keyId,
      format: 'legacy',
    });
    await ok('DELETE', `/keys/${zpk.keyId}?deleteKeyInDays=3`);
    await ok('POST', `/keys/${zpk.keyId}/restore`);
    await ok('POST', '/aliases', { aliasName: 'alias/a/two', keyArn: imported.keyArn });
    await ok('PUT', `/aliases/${encodeURIComponent('alias/a/two')}`, { keyArn: zpk.keyId });
    await ok('DELETE', `/aliases/${encodeURIComponent('alias/a/two')}`);
    // Reads are not key management: no records.
    await ok('GET', `/keys/${zpk.keyId}`);
    await ok('GET', '/aliases');

    const records = await since(start);
    const actor = records.find((r) => r.action === 'api.CreateKey')!.actor;
    assert.match(actor, /^token:[0-9a-f]{12}$/);
    const api = records.filter((r) => r.action.startsWith('api.'));
    assert.deepEqual(
      api.map((r) => [r.action, r.keyId, r.kcv, r.result]),
      [
        ['api.CreateKey', zpk.keyId, zpk.keyCheckValue, 'ok'],
        ['api.CreateKey', kek.keyId, kek.keyCheckValue, 'ok'],
        ['api.ImportKey', imported.keyId, imported.keyCheckValue, 'ok'],
        ['api.StopKeyUsage', zpk.keyId, zpk.keyCheckValue, 'ok'],
        ['api.StartKeyUsage', zpk.keyId, zpk.keyCheckValue, 'ok'],
        ['api.ExportKey', imported.keyId, imported.keyCheckValue, 'ok'],
        ['api.DeleteKey', zpk.keyId, zpk.keyCheckValue, 'ok'],
        ['api.RestoreKey', zpk.keyId, zpk.keyCheckValue, 'ok'],
        ['api.CreateAlias', imported.keyId, imported.keyCheckValue, 'ok'],
        ['api.UpdateAlias', zpk.keyId, zpk.keyCheckValue, 'ok'],
        ['api.DeleteAlias', zpk.keyId, zpk.keyCheckValue, 'ok'],
      ],
    );
    for (const r of api) assert.equal(r.actor, actor);
    const detail = (action: string) => api.find((r) => r.action === action)!.detail!;
    assert.equal(detail('api.ImportKey'), 'ZPK TDES_2KEY from 2 clear components');
    assert.equal(detail('api.ExportKey'), `legacy under ${kek.keyId}`);
    assert.match(detail('api.DeleteKey'), /^deletion on 2025-06-04T/);
    assert.equal(detail('api.UpdateAlias'), `alias/a/two -> ${zpk.keyId}`);
    // The HSM's own records sit next to the API's (same actor), and the chain holds.
    assert.deepEqual(
      records.filter((r) => r.action.startsWith('key.')).map((r) => r.action),
      ['key.generate', 'key.generate', 'key.import', 'key.export'],
    );
    const text = readFileSync(audit.path, 'utf8');
    for (const c of TDES2.components) assert.equal(text.toUpperCase().includes(c.toUpperCase()), false);
    assert.equal((await verifyAuditLog(audit.path)).ok, true);
  });

  it('records refused calls with the error code, but not unauthenticated ones', async () => {
    const key = await create(env, { keyType: 'TAK', keyAlgorithm: 'TDES_2KEY' });
    const start = audit.lastSeq;
    const unknown = 'key-00000000-0000-4000-8000-000000000000';
    refused(await env.call('POST', `/keys/${unknown}/stop-usage`), 404, 'POSKEY_ERR_KEY_NOT_FOUND');
    refused(await env.call('POST', `/keys/${key.keyId}/restore`), 409, 'POSKEY_ERR_KEY_STATE');
    refused(
      await env.call('DELETE', `/keys/${key.keyId}?deleteKeyInDays=1`),
      400,
      'POSKEY_ERR_VALIDATION',
      'deleteKeyInDays',
    );
    refused(await env.call('POST', '/keys', { keyAlgorithm: 'TDES_2KEY' }), 400, 'POSKEY_ERR_VALIDATION');
    refused(await env.call('POST', '/aliases', { aliasName: 'alias/a/zpk' }), 409, 'POSKEY_ERR_ALIAS_EXISTS');
    const anonymous = await env.app.inject({ method: 'POST', url: `/keys/${key.keyId}/stop-usage` });
    assert.equal(anonymous.statusCode, 401);
    const records = apiOnly(await since(start));
    assert.deepEqual(
      records.map((r) => [r.action, r.keyId, r.kcv, r.result, r.detail]),
      [
        ['api.StopKeyUsage', unknown, undefined, 'error', 'POSKEY_ERR_KEY_NOT_FOUND'],
        ['api.RestoreKey', key.keyId, key.keyCheckValue, 'error', 'POSKEY_ERR_KEY_STATE'],
        ['api.DeleteKey', key.keyId, undefined, 'error', 'POSKEY_ERR_VALIDATION'],
        ['api.CreateKey', undefined, undefined, 'error', 'POSKEY_ERR_VALIDATION: ? TDES_2KEY'],
        ['api.CreateAlias', undefined, undefined, 'error', 'POSKEY_ERR_ALIAS_EXISTS: alias/a/zpk'],
      ],
    );
  });

  it('records a purge when the deletion date passes, with the clock as the actor', async () => {
    const key = await create(env, { keyType: 'ZEK', keyAlgorithm: 'AES_128' });
    assert.equal((await env.call('DELETE', `/keys/${key.keyId}?deleteKeyInDays=3`)).status, 200);
    const start = audit.lastSeq;
    now.t += 4 * DAY;
    const got = await env.call('GET', `/keys/${key.keyId}`);
    assert.equal(got.body.key.keyState, 'DELETE_COMPLETE');
    const records = apiOnly(await since(start));
    assert.deepEqual(
      records.map((r) => [r.actor, r.action, r.keyId, r.kcv, r.result, r.detail]),
      [['system', 'key.purge', key.keyId, key.keyCheckValue, 'ok', 'ZEK: deletion date passed']],
    );
  });

  it('finds keys with ids of the first format (key-<16 hex>) and masks them in the log', async () => {
    const key = await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
    const old = 'key-0123456789abcdef';
    const Database = createRequire(import.meta.url)('better-sqlite3') as new (
      p: string,
    ) => { prepare(s: string): { run(...a: unknown[]): unknown }; close(): void };
    const db = new Database(join(env.dir, KEY_TABLE_FILE));
    db.prepare('UPDATE keys SET id = ? WHERE id = ?').run(old, key.keyId);
    db.close();
    assert.equal((await env.call('GET', `/keys/${old}`)).body.key.keyId, old);
    const start = audit.lastSeq;
    assert.equal((await env.call('POST', `/keys/${old}/stop-usage`)).status, 200);
    const [r] = apiOnly(await since(start));
    assert.deepEqual([r?.action, r?.keyId, r?.result], ['api.StopKeyUsage', 'key-[hex]', 'ok']);
  });

  it('refuses key management for an actor name the log would refuse, and no one else', async () => {
    const hexy = setup(undefined, {
      audit,
      tokens: (t) => (t === TOKEN ? 'ops 0123456789abcdef0123' : undefined),
    });
    try {
      refused(
        await hexy.call('POST', '/keys', { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' }),
        400,
        'POSKEY_ERR_AUDIT_SECRET',
      );
      assert.equal((await hexy.call('GET', '/keys')).status, 200);
      // The log is fine: other apps' callers carry on.
      await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
    } finally {
      await hexy.close();
    }
  });

  it('fails closed once the log cannot be written: 503, and later calls refused before the table', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-http-audit-closed-'));
    const log = await AuditLog.open(join(dir, 'audit.log'));
    const closing = setup(undefined, { audit: log });
    try {
      const key = await create(closing, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
      await log.close();
      refused(await closing.call('POST', `/keys/${key.keyId}/stop-usage`), 503, 'POSKEY_ERR_AUDIT_CLOSED');
      refused(await closing.call('POST', `/keys/${key.keyId}/start-usage`), 503, 'POSKEY_ERR_AUDIT_IO');
      assert.equal((await closing.call('GET', `/keys/${key.keyId}`)).body.key.enabled, false);
      refused(
        await closing.call('POST', '/aliases', { aliasName: 'alias/never' }),
        503,
        'POSKEY_ERR_AUDIT_IO',
      );
      refused(
        await closing.call('GET', `/aliases/${encodeURIComponent('alias/never')}`),
        404,
        'POSKEY_ERR_ALIAS_NOT_FOUND',
      );
    } finally {
      await closing.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('HTTP API: GET /diagnostics', () => {
  it('needs a token and answers the HSM diagnostics with the audit position, or the given function', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-http-diag-'));
    const log = await AuditLog.open(join(dir, 'audit.log'));
    const env = setup(undefined, { audit: log });
    const custom = setup(undefined, {
      diagnostics: () => ({ ...custom.hsm.diagnostics(), dev: true, extra: 'dropped' }),
    });
    try {
      await create(env, { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
      assert.equal((await env.app.inject({ method: 'GET', url: '/diagnostics' })).statusCode, 401);
      const d = await env.call('GET', '/diagnostics');
      assert.equal(d.status, 200);
      assert.deepEqual(d.body.lmks, [{ id: '00', kcv: env.hsm.diagnostics().lmks[0]!.kcv, dev: true }]);
      assert.equal(d.body.counters['generateKey.ok'], 1);
      assert.equal(typeof d.body.uptimeSeconds, 'number');
      assert.deepEqual(Object.keys(d.body.keyCache).sort(), ['evictions', 'hits', 'misses', 'size']);
      await log.flush();
      assert.equal(d.body.audit.lastSeq, 2);
      assert.equal(d.body.audit.file, log.path);
      const c = await custom.call('GET', '/diagnostics');
      assert.equal(c.body.dev, true);
      assert.equal(c.body.extra, undefined);
      assert.equal(c.body.audit, undefined);
    } finally {
      await env.close();
      await custom.close();
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
