import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { combineComponents } from '../../src/crypto/keys.js';
import { encodePinBlock, encryptPinBlock } from '../../src/crypto/pinblock.js';
import { PoskeyError } from '../../src/errors.js';
import type { HsmApi } from '../../src/hsm/api.js';
import { HsmError } from '../../src/hsm/errors.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { authenticate, tokenListVerifier } from '../../src/hsm/http/auth.js';
import {
  answerFor,
  fieldOfValidation,
  HTTP_ERRORS,
  HttpApiError,
  mapField,
  VerificationFailedError,
} from '../../src/hsm/http/errors.js';
import { KEY_TABLE_FILE, KeyTable } from '../../src/hsm/http/key-table.js';
import { createHsmHttpApp, type HsmHttpOptions } from '../../src/hsm/http/server.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { loadVectors } from '../helpers/vectors.js';

const TOKEN = 'sec-token-aaaaaaaaaaaaaaaaaaaa';
const OTHER_TOKEN = 'sec-token-bbbbbbbbbbbbbbbbbbbb';
const PAN = '4012345678909';

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are asserted field by field
type Body = Record<string, any>;

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Every HsmApi method of `hsm`, bound (Hsm keeps its state in private fields), with overrides. */
function delegate(hsm: Hsm, over: Partial<HsmApi> = {}): HsmApi {
  const api = {} as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(Hsm.prototype)) {
    const fn = (hsm as unknown as Record<string, unknown>)[name];
    if (name !== 'constructor' && typeof fn === 'function') api[name] = fn.bind(hsm);
  }
  return Object.assign(api, over) as unknown as HsmApi;
}

function setup(opts: Partial<HsmHttpOptions> & { level?: string; over?: Partial<HsmApi> } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-http-sec-'));
  dirs.push(dir);
  const logs: string[] = [];
  const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk()]) });
  const keyTable = KeyTable.inDataDir(dir);
  const app = createHsmHttpApp({
    hsm: delegate(hsm, opts.over),
    keyTable,
    tokens: opts.tokens ?? [TOKEN, OTHER_TOKEN],
    logger: { level: opts.level ?? 'info', stream: { write: (l) => void logs.push(l) } },
    ...(opts.bodyLimit === undefined ? {} : { bodyLimit: opts.bodyLimit }),
  });
  const responses: string[] = [];
  const call = async (
    method: string,
    url: string,
    payload?: unknown,
    headers: Record<string, string> = {},
  ) => {
    const res = await app.inject({
      method: method as 'GET',
      url,
      headers: { authorization: `Bearer ${TOKEN}`, ...headers },
      ...(payload === undefined ? {} : { payload: payload as Body }),
    });
    responses.push(res.body);
    return { status: res.statusCode, body: res.json() as Body, headers: res.headers };
  };
  const close = async () => {
    await app.close();
    keyTable.close();
    hsm.destroy();
  };
  return { app, hsm, keyTable, dir, logs, responses, call, close };
}

function refused(res: { status: number; body: Body }, status: number, code: string, field?: string) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.code, code, JSON.stringify(res.body));
  if (field !== undefined) assert.equal(res.body.field, field, JSON.stringify(res.body));
  assert.deepEqual(
    Object.keys(res.body).filter((k) => !['type', 'code', 'field', 'message', 'reason'].includes(k)),
    [],
  );
}

describe('HTTP API: authentication', () => {
  it('answers 401 without a token, with a wrong scheme or token, and never echoes the header', async () => {
    const env = setup();
    const headers = [
      {},
      { authorization: '' },
      { authorization: `Basic ${TOKEN}` },
      { authorization: 'Bearer wrong-token-0123456789abcdef' },
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Bearer ${TOKEN} extra` },
      { authorization: `Bearer ${'A'.repeat(600)}` },
      { authorization: 'Bearer tok\u00e9n-0123456789abcdef' },
    ];
    for (const h of headers) {
      const res = await env.app.inject({ method: 'GET', url: '/keys', headers: h });
      assert.equal(res.statusCode, 401, JSON.stringify(h));
      const body = res.json();
      refused({ status: res.statusCode, body }, 401, 'POSKEY_ERR_UNAUTHORIZED', 'authorization');
      assert.equal(body.type, 'AccessDeniedException');
      assert.equal(res.headers['x-amzn-errortype'], 'AccessDeniedException');
      const auth = (h as { authorization?: string }).authorization;
      if (auth) assert.equal(res.body.includes(auth.split(' ').pop()!), false);
    }
    assert.equal(env.logs.join('').includes('wrong-token'), false);
    await env.close();
  });

  it('accepts every configured token, and protects unknown routes too', async () => {
    const env = setup();
    for (const t of [TOKEN, OTHER_TOKEN]) {
      const res = await env.app.inject({
        method: 'GET',
        url: '/keys',
        headers: { authorization: `bearer ${t}` },
      });
      assert.equal(res.statusCode, 200);
    }
    const anon = await env.app.inject({ method: 'GET', url: '/no/such/route' });
    assert.equal(anon.statusCode, 401);
    refused(await env.call('GET', '/no/such/route'), 404, 'POSKEY_ERR_ROUTE');
    refused(await env.call('POST', '/keys/key-0000000000000000/explode'), 404, 'POSKEY_ERR_ROUTE');
    await env.close();
  });

  it('passes the token fingerprint to the HSM as the audit actor, or the verifier’s name', async () => {
    const actors: (string | undefined)[] = [];
    const spy = (hsm: Hsm): Partial<HsmApi> => ({
      generateKey: (req, actor) => {
        actors.push(actor);
        return hsm.generateKey(req, actor);
      },
    });
    const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk()]) });
    const keyTable = new KeyTable(':memory:');
    for (const tokens of [[TOKEN], (t: string) => (t === TOKEN ? 'ops-console' : undefined)] as const) {
      const app = createHsmHttpApp({ hsm: delegate(hsm, spy(hsm)), keyTable, tokens, logger: false });
      const res = await app.inject({
        method: 'POST',
        url: '/keys',
        headers: { authorization: `Bearer ${TOKEN}` },
        payload: { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' },
      });
      assert.equal(res.statusCode, 200);
      const denied = await app.inject({
        method: 'GET',
        url: '/keys',
        headers: { authorization: `Bearer ${OTHER_TOKEN}` },
      });
      assert.equal(denied.statusCode, 401);
      await app.close();
    }
    assert.match(actors[0]!, /^token:[0-9a-f]{12}$/);
    assert.equal(actors[1], 'ops-console');
    keyTable.close();
  });

  it('treats a throwing verifier as a refusal', () => {
    const boom = () => {
      throw new Error('db down');
    };
    assert.throws(
      () => authenticate(`Bearer ${TOKEN}`, boom),
      (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_UNAUTHORIZED',
    );
    const verify = tokenListVerifier([TOKEN]);
    assert.equal(authenticate(`Bearer ${TOKEN}`, verify), verify(TOKEN));
    assert.equal(verify(OTHER_TOKEN), undefined);
  });

  it('refuses bad options with POSKEY_ERR_HTTP_CONFIG', () => {
    const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk()]) });
    const keyTable = new KeyTable(':memory:');
    const base: HsmHttpOptions = { hsm, keyTable, tokens: [TOKEN], logger: false };
    const bad: [Partial<HsmHttpOptions>, string][] = [
      [{ tokens: [] }, 'tokens'],
      [{ tokens: ['short'] }, 'tokens[0]'],
      [{ tokens: [TOKEN, 'has spaces in it, sadly'] }, 'tokens[1]'],
      [{ hsm: {} as HsmApi }, 'hsm'],
      [{ keyTable: {} as KeyTable }, 'keyTable'],
      [{ instance: 'Upper Case' }, 'instance'],
      [{ bodyLimit: 10 }, 'bodyLimit'],
    ];
    for (const [over, field] of bad) {
      assert.throws(
        () => createHsmHttpApp({ ...base, ...over }),
        (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_HTTP_CONFIG' && e.field === field,
        field,
      );
    }
    keyTable.close();
  });
});

describe('HTTP API: error answers', () => {
  it('answers malformed JSON, wrong media types and big bodies without echoing the body', async () => {
    const env = setup({ bodyLimit: 2048 });
    const secret = '0123456789ABCDEFFEDCBA9876543210';
    const res = await env.app.inject({
      method: 'POST',
      url: '/keys/import',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      payload: `{"keyMaterial": {"keyComponents": {"components": ["${secret}"`,
    });
    assert.equal(res.statusCode, 400);
    refused({ status: 400, body: res.json() }, 400, 'POSKEY_ERR_JSON');
    assert.equal(res.body.includes(secret), false);
    const empty = await env.app.inject({
      method: 'POST',
      url: '/keys',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      payload: '',
    });
    refused({ status: empty.statusCode, body: empty.json() }, 400, 'POSKEY_ERR_JSON');
    const text = await env.app.inject({
      method: 'POST',
      url: '/keys',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/plain' },
      payload: secret,
    });
    refused({ status: text.statusCode, body: text.json() }, 415, 'POSKEY_ERR_MEDIA_TYPE');
    const big = await env.call('POST', '/keys', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      pad: 'x'.repeat(4096),
    });
    refused(big, 413, 'POSKEY_ERR_BODY_LIMIT');
    const proto = await env.app.inject({
      method: 'POST',
      url: '/keys',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      payload: '{"keyType":"ZPK","keyAlgorithm":"TDES_2KEY","__proto__":{"enabled":false}}',
    });
    assert.equal(proto.statusCode, 400);
    assert.equal(env.logs.join('').includes(secret), false);
    await env.close();
  });

  it('answers an internal error with a fixed message and logs the cause server-side only', async () => {
    const secret = 'FEDCBA98765432100123456789ABCDEF';
    const env = setup({
      over: {
        generateKey: () => {
          throw new TypeError(`cannot read property of ${secret}`);
        },
      },
    });
    const res = await env.call('POST', '/keys', { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' });
    refused(res, 500, 'POSKEY_ERR_INTERNAL');
    assert.equal(res.body.message, 'internal error');
    assert.equal(res.body.type, 'InternalServerException');
    assert.equal(JSON.stringify(res.body).includes(secret), false);
    const bug = env.logs.find((l) => l.includes('"level":50') && l.includes('internal error'));
    assert.ok(bug?.includes('cannot read property of [hex]'), bug);
    assert.equal(env.logs.join('').includes(secret), false);
    // The app keeps serving after a failure.
    assert.equal((await env.call('GET', '/keys')).status, 200);
    await env.close();
  });

  it('maps lower-layer codes to AWS types and statuses', () => {
    const cases: [unknown, number, string][] = [
      [
        new HsmError('POSKEY_ERR_LMK_UNKNOWN', 'LMK 05 is not loaded', { field: 'keyBlock' }),
        503,
        'ServiceUnavailableException',
      ],
      [
        new HsmError('POSKEY_ERR_AUDIT_IO', 'audit failed', { field: 'audit' }),
        503,
        'ServiceUnavailableException',
      ],
      [new HsmError('POSKEY_ERR_KEY_DESTROYED', 'gone'), 500, 'InternalServerException'],
      [new PoskeyError('POSKEY_ERR_RANDOM', 'short read'), 500, 'InternalServerException'],
      [new PoskeyError('POSKEY_ERR_HEX', 'not hex', { field: 'data' }), 400, 'ValidationException'],
      [new HttpApiError('POSKEY_ERR_KEY_STATE', 'not pending'), 409, 'ConflictException'],
      [
        new VerificationFailedError('INVALID_PIN', 'PIN did not verify', 'pin'),
        400,
        'VerificationFailedException',
      ],
      [new Error('bug'), 500, 'InternalServerException'],
      ['a string', 500, 'InternalServerException'],
    ];
    for (const [err, status, type] of cases) {
      const a = answerFor(err);
      assert.equal(a.status, status, String(err));
      assert.equal(a.body.type, type);
    }
    assert.equal(answerFor(new VerificationFailedError('INVALID_PIN', 'x')).body.reason, 'INVALID_PIN');
    assert.deepEqual(answerFor(new PoskeyError('POSKEY_ERR_HEX', 'not hex', { field: 'data' })).body, {
      type: 'ValidationException',
      code: 'POSKEY_ERR_HEX',
      field: 'data',
      message: 'data: not hex',
    });
    assert.equal(answerFor(new Error('0123456789ABCDEF')).body.message, 'internal error');
    for (const [code, spec] of Object.entries(HTTP_ERRORS)) {
      assert.match(code, /^POSKEY_ERR_[A-Z_]+$/);
      assert.ok(spec.status >= 400 && spec.status < 600);
    }
  });

  it('renames HSM field paths to request fields, and ajv errors to JSON paths', () => {
    const map = {
      'source.components': 'keyMaterial.keyComponents.components',
      source: 'in',
      'key.keyBlock': 'keyIdentifier',
    };
    assert.equal(mapField('source.components[2]', map), 'keyMaterial.keyComponents.components[2]');
    assert.equal(mapField('source.components', map), 'keyMaterial.keyComponents.components');
    assert.equal(mapField('source.kek', map), 'in');
    assert.equal(mapField('key.keyBlock.usage', map), 'keyIdentifier');
    assert.equal(mapField('sourcey', map), 'sourcey');
    assert.equal(mapField('data'), 'data');
    assert.equal(
      fieldOfValidation({ instancePath: '/keyMaterial/keyComponents/components/1' }),
      'keyMaterial.keyComponents.components[1]',
    );
    assert.equal(fieldOfValidation({ instancePath: '', params: { missingProperty: 'keyType' } }), 'keyType');
    assert.equal(fieldOfValidation({ instancePath: '/a', params: { additionalProperty: 'b' } }), 'a.b');
    assert.equal(fieldOfValidation({ instancePath: '/a~1b' }), 'a/b');
  });

  it('documents every error code of the catalogue in docs/hsm-http-api.md', () => {
    const doc = readFileSync(new URL('../../docs/hsm-http-api.md', import.meta.url), 'utf8');
    for (const [code, spec] of Object.entries(HTTP_ERRORS)) {
      assert.ok(doc.includes(code), `${code} missing from docs/hsm-http-api.md`);
      assert.ok(doc.includes(spec.type), `${spec.type} missing from docs/hsm-http-api.md`);
    }
  });
});

describe('HTTP API: no clear key material in logs, files or responses', () => {
  interface ComponentVector {
    components: string[];
    componentKcvs: string[];
    key: string;
  }
  const [TDES3, TDES2] = loadVectors<ComponentVector>('components.json').vectors as [
    ComponentVector,
    ComponentVector,
  ];
  const TAK_COMPONENTS = ['0123456789ABCDEFFEDCBA9876543210', '1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C'];

  it('keeps components, clear keys and clear PIN blocks out of the SQLite file, the logs and the answers', async () => {
    const env = setup({ level: 'trace' });
    const imp = async (keyType: string, components: string[], kcvs?: string[]) => {
      const res = await env.call('POST', '/keys/import', {
        keyType,
        keyAlgorithm: 'TDES_2KEY',
        keyMaterial: { keyComponents: kcvs ? { components, keyCheckValues: kcvs } : { components } },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.key.keyId as string;
    };
    const a = await imp('ZPK', TDES3.components, TDES3.componentKcvs);
    const b = await imp('ZPK', TDES2.components);
    const tak = await imp('TAK', TAK_COMPONENTS);
    const kek = (await env.call('POST', '/keys', { keyType: 'KEK', keyAlgorithm: 'TDES_3KEY' })).body.key
      .keyId;
    // Refused imports carry components too.
    await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'TDES_2KEY',
      keyMaterial: {
        keyComponents: { components: TDES3.components, keyCheckValues: ['000000', '000000', '000000'] },
      },
    });
    await env.call('POST', '/keys/import', {
      keyType: 'ZPK',
      keyAlgorithm: 'AES_256',
      keyMaterial: { keyComponents: { components: TDES2.components } },
    });
    const zpkA = createKey('tdes', fromHex(TDES3.key));
    const pinBlock = toHex(encryptPinBlock(zpkA, { format: 0, pin: '4321', pan: PAN }));
    const clearPinBlock = toHex(encodePinBlock({ format: 0, pin: '4321', pan: PAN }));
    const t = await env.call('POST', '/pindata/translate', {
      incomingKeyIdentifier: a,
      outgoingKeyIdentifier: b,
      incomingPinBlockFormat: 'ISO_FORMAT_0',
      outgoingPinBlockFormat: 'ISO_FORMAT_0',
      primaryAccountNumber: PAN,
      encryptedPinBlock: pinBlock,
    });
    assert.equal(t.status, 200);
    await env.call('POST', '/mac/generate', {
      keyIdentifier: tak,
      messageData: '0011',
      macAlgorithm: 'ISO9797_ALGORITHM3',
    });
    await env.call('POST', `/keys/${a}/export`, { wrappingKeyIdentifier: kek, format: 'tr31' });
    env.app.log.info(
      {
        body: { components: TDES3.components },
        primaryAccountNumber: PAN,
        keyMaterial: { keyComponents: { components: TAK_COMPONENTS } },
        request: { pan: PAN, encryptedPinBlock: pinBlock, key: TDES3.key },
        req: { headers: { authorization: `Bearer ${TOKEN}` } },
      },
      'redaction probe',
    );
    await env.close();

    const takKey = toHex(
      combineComponents(
        'tdes',
        TAK_COMPONENTS.map((c) => fromHex(c)),
      ).key,
    );
    const secrets = [
      ...TDES3.components,
      ...TDES2.components,
      ...TAK_COMPONENTS,
      TDES3.key,
      TDES2.key,
      takKey,
      clearPinBlock,
    ];
    const files = ['', '-wal', '-shm']
      .map((s) => join(env.dir, KEY_TABLE_FILE + s))
      .filter((p) => existsSync(p))
      .map((p) => readFileSync(p));
    assert.ok(files.length >= 1);
    const logs = env.logs.join('');
    assert.ok(logs.includes('redaction probe'));
    assert.ok(logs.includes('[REDACTED]'));
    const answers = env.responses.join('\n');
    for (const s of secrets) {
      for (const form of [s.toUpperCase(), s.toLowerCase()]) {
        assert.equal(logs.includes(form), false, `log holds ${form}`);
        assert.equal(answers.includes(form), false, `a response holds ${form}`);
        for (const f of files) assert.equal(f.includes(form), false, `key table holds ${form}`);
      }
      for (const f of files) assert.equal(f.includes(fromHex(s)), false, `key table holds the bytes of ${s}`);
    }
    for (const s of [PAN, TOKEN, pinBlock]) assert.equal(logs.includes(s), false, `log holds ${s}`);
  });
});

describe('HTTP API: over a real socket', () => {
  it('listens on 127.0.0.1:0, serves concurrent clients with fetch, and keeps accepted keys across a restart', async () => {
    const env = setup();
    await env.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = env.app.server.address() as AddressInfo;
    const base = `http://127.0.0.1:${port}`;
    const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const open = await fetch(`${base}/openapi.json`);
    assert.equal(open.status, 200);
    assert.equal(((await open.json()) as Body).openapi, '3.1.0');
    assert.equal((await fetch(`${base}/keys`)).status, 401);
    const posts = Array.from({ length: 30 }, (_, i) =>
      fetch(`${base}/keys`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify(
          i % 3 === 0
            ? { keyType: 'ZPK', keyAlgorithm: 'NOPE' }
            : { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' },
        ),
      }),
    );
    const answers = await Promise.all(posts);
    const ids: string[] = [];
    for (const [i, r] of answers.entries()) {
      const body = (await r.json()) as Body;
      if (i % 3 === 0) {
        assert.equal(r.status, 400);
        assert.equal(body.field, 'keyAlgorithm');
      } else {
        assert.equal(r.status, 200, JSON.stringify(body));
        ids.push(body.key.keyId);
      }
    }
    const got = await fetch(`${base}/keys/${ids[0]}`, { headers: auth });
    assert.equal(((await got.json()) as Body).key.keyId, ids[0]);
    await env.close();
    const reopened = KeyTable.inDataDir(env.dir);
    const stored = reopened.list().items.map((k) => k.id);
    assert.deepEqual([...stored].sort(), [...ids].sort());
    reopened.close();
  });
});
