/**
 * Fuzzing the HTTP API: random JSON bodies, wrong types, oversized and malformed hex, unknown and
 * missing properties, raw bodies under random media types, random path parameters and queries.
 * Whatever arrives, the answer is a 4xx with an error code (or, for a request that happens to be
 * valid, a 2xx): never a 5xx. Between runs and at the end the server still serves correct answers,
 * and over a real socket, well-behaved clients carry on while another one sends garbage.
 *
 * The app runs with the audit log, so the audit paths are fuzzed too: its chain must verify at the
 * end, and no request may make the log refuse a record (POSKEY_ERR_AUDIT_*).
 *
 * POSKEY_FUZZ_RUNS scales the number of runs per property (default 120).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { combineComponents } from '../../src/crypto/keys.js';
import { encryptPinBlock } from '../../src/crypto/pinblock.js';
import { AuditLog, verifyAuditLog } from '../../src/hsm/audit.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { KeyTable } from '../../src/hsm/http/key-table.js';
import {
  DUKPT_KEY_TYPES,
  EXPORTABILITIES,
  KCV_ALGORITHMS,
  KEY_ALGORITHMS,
  KEY_TYPES,
  KEY_USAGES,
  MAC_ALGORITHMS,
  PIN_FORMATS,
} from '../../src/hsm/http/model.js';
import type { JsonSchema } from '../../src/hsm/http/schemas.js';
import { createHsmHttpApp, HSM_ROUTES } from '../../src/hsm/http/server.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';

const TOKEN = 'fuzz-token-0123456789-abcdef';
const RUNS = Number(process.env.POSKEY_FUZZ_RUNS ?? 120);
const BODY_LIMIT = 16 * 1024;
const PAN = '4012345678909';
const MESSAGE = '00112233445566778899AABBCCDDEEFF';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field
type Body = Record<string, any>;

interface Template {
  name: string;
  /** The route's operationId: its schemas drive the boundary walk. */
  op: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  query?: Record<string, string>;
  body?: Json;
}

interface Env {
  app: FastifyInstance;
  hsm: Hsm;
  keyTable: KeyTable;
  audit: AuditLog;
  dir: string;
  logs: string[];
  templates: Template[];
  /** A MAC request on a key nobody fuzzes, and its answer. */
  canary: { body: Json; mac: string };
  /** Ids, ARNs and aliases of the table's keys, of every role. */
  identifiers: string[];
}

let env: Env;
/** Error codes answered, with counts: the fuzz must get past the schemas into the handlers and the HSM. */
const seen = new Map<string, number>();

async function call(
  method: string,
  url: string,
  payload?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const res = await env.app.inject({
    method: method as 'GET',
    url,
    headers: { authorization: `Bearer ${TOKEN}`, ...headers },
    ...(payload === undefined ? {} : { payload: payload as string }),
  });
  return { status: res.statusCode, text: res.body };
}

async function ok(method: string, url: string, payload?: Json): Promise<Body> {
  const res = await call(method, url, payload);
  assert.equal(res.status, 200, `${method} ${url}: ${res.text}`);
  return JSON.parse(res.text) as Body;
}

/** The rule under test: a 2xx, or a 4xx with a well-formed error body. Never a 5xx. */
function assertAnswer(res: { status: number; text: string }, what: string): void {
  assert.ok(res.status < 500, `${what} → ${res.status} ${res.text.slice(0, 300)}`);
  if (res.status < 400) return;
  let body: Body;
  try {
    body = JSON.parse(res.text) as Body;
  } catch {
    assert.fail(`${what} → ${res.status} with a body that is not JSON: ${res.text.slice(0, 200)}`);
  }
  assert.match(String(body.code), /^POSKEY_ERR_[A-Z0-9_]+$/, `${what} → ${res.text}`);
  seen.set(body.code, (seen.get(body.code) ?? 0) + 1);
  assert.equal(typeof body.type, 'string', what);
  assert.equal(typeof body.message, 'string', what);
  assert.doesNotMatch(String(body.code), /^POSKEY_ERR_AUDIT/, `${what}: the audit log refused a record`);
  assert.equal(body.stack, undefined, what);
}

async function healthy(): Promise<void> {
  const got = await ok('POST', '/mac/generate', env.canary.body);
  assert.equal(got.mac, env.canary.mac);
  await ok('GET', '/keys?maxResults=1');
}

function queryString(q: Record<string, string> | undefined): string {
  if (q === undefined || Object.keys(q).length === 0) return '';
  return `?${Object.entries(q)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&')}`;
}

async function send(t: Template, body: Json | undefined, what: string): Promise<void> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = payload === undefined ? {} : { 'content-type': 'application/json' };
  assertAnswer(await call(t.method, `${t.url}${queryString(t.query)}`, payload, headers), what);
}

// ---- Building the environment ---------------------------------------------------------------

/** Components of every imported key: the fuzz needs real PIN blocks under a known TPK. */
const COMPONENTS = ['0123456789ABCDEFFEDCBA9876543210', '1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C'];

async function importKey(keyType: string, keyAlgorithm: string, extra: Body = {}): Promise<Body> {
  const components = COMPONENTS;
  const got = await ok('POST', '/keys/import', {
    keyType,
    keyAlgorithm,
    keyMaterial: { keyComponents: { components } },
    ...extra,
  });
  return got.key;
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-http-fuzz-'));
  const audit = await AuditLog.open(join(dir, 'audit.log'));
  const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk()]), audit });
  const keyTable = KeyTable.inDataDir(dir);
  const logs: string[] = [];
  const app = createHsmHttpApp({
    hsm,
    keyTable,
    audit,
    tokens: [TOKEN],
    bodyLimit: BODY_LIMIT,
    logger: { level: 'info', stream: { write: (l) => void logs.push(l) } },
  });
  env = {
    app,
    hsm,
    keyTable,
    audit,
    dir,
    logs,
    templates: [],
    canary: { body: null, mac: '' },
    identifiers: [],
  };

  const create = async (keyType: string, keyAlgorithm = 'TDES_2KEY', extra: Body = {}) =>
    (await ok('POST', '/keys', { keyType, keyAlgorithm, ...extra })).key as Body;
  const kek = await create('KEK', 'TDES_2KEY');
  const tpk = await importKey('TPK', 'TDES_2KEY');
  const zpk = await create('ZPK');
  const tak = await create('TAK');
  const canaryTak = await create('TAK');
  const dek = await create('DEK');
  const bdk = await create('BDK');
  const sensitive = await importKey('ZPK', 'TDES_2KEY', { exportability: 'SENSITIVE' });
  const victim = await create('ZEK', 'AES_128');
  await ok('POST', '/aliases', { aliasName: 'alias/fuzz/zpk', keyArn: zpk.keyId });
  env.identifiers = [kek, tpk, zpk, tak, dek, bdk, sensitive, victim].flatMap((k) => [k.keyId, k.keyArn]);
  env.identifiers.push('alias/fuzz/zpk', 'arn:poskey:hsm:local:alias/fuzz/zpk', 'alias/fuzz/none');

  const canaryBody: Json = {
    keyIdentifier: canaryTak.keyId,
    messageData: MESSAGE,
    macAlgorithm: 'ISO9797_ALGORITHM3',
  };
  const mac = (await ok('POST', '/mac/generate', canaryBody)).mac as string;
  env.canary = { body: canaryBody, mac };

  const macBody = { keyIdentifier: tak.keyId, messageData: MESSAGE, macAlgorithm: 'ISO9797_ALGORITHM3' };
  const enc = await ok('POST', `/keys/${dek.keyId}/encrypt`, { plainText: MESSAGE, mode: 'CBC' });
  const tpkClear = combineComponents(
    'tdes',
    COMPONENTS.map((c) => fromHex(c)),
  ).key;
  const pinBlock = toHex(encryptPinBlock(createKey('tdes', tpkClear), { format: 0, pin: '1234', pan: PAN }));
  env.templates = [
    {
      name: 'CreateKey',
      op: 'CreateKey',
      method: 'POST',
      url: '/keys',
      body: { keyType: 'ZPK', keyAlgorithm: 'TDES_2KEY' },
    },
    {
      name: 'CreateKey by usage',
      op: 'CreateKey',
      method: 'POST',
      url: '/keys',
      body: {
        keyUsage: 'TR31_M3_ISO_9797_3_MAC_KEY',
        keyAlgorithm: 'TDES_2KEY',
        exportability: 'SENSITIVE',
        keyCheckValueAlgorithm: 'CMAC',
        enabled: false,
        alias: 'alias/fuzz/new',
      },
    },
    {
      name: 'ImportKey components',
      op: 'ImportKey',
      method: 'POST',
      url: '/keys/import',
      body: {
        keyType: 'ZPK',
        keyAlgorithm: 'TDES_2KEY',
        keyMaterial: {
          keyComponents: {
            components: ['0123456789ABCDEFFEDCBA9876543210', '1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C'],
            keyCheckValues: ['000000', '000000'],
          },
        },
      },
    },
    {
      name: 'ImportKey cryptogram',
      op: 'ImportKey',
      method: 'POST',
      url: '/keys/import',
      body: {
        keyType: 'TAK',
        keyAlgorithm: 'TDES_2KEY',
        keyMaterial: {
          keyCryptogram: {
            wrappingKeyIdentifier: kek.keyId,
            wrappedKey: '654AB695DD877DB3CC4E506ED66472C4',
            keyCheckValue: '053E31',
          },
        },
      },
    },
    {
      name: 'ImportKey TR-31',
      op: 'ImportKey',
      method: 'POST',
      url: '/keys/import',
      body: {
        keyType: 'ZPK',
        keyAlgorithm: 'TDES_2KEY',
        keyMaterial: {
          tr31KeyBlock: {
            wrappingKeyIdentifier: 'alias/fuzz/zpk',
            wrappedKeyBlock: `B0096P0TB00S0000${'A1B2C3D4'.repeat(10)}`,
          },
        },
      },
    },
    {
      name: 'ExportKey',
      op: 'ExportKey',
      method: 'POST',
      url: `/keys/${sensitive.keyId}/export`,
      body: { wrappingKeyIdentifier: kek.keyArn, format: 'legacy' },
    },
    {
      name: 'TranslatePinData',
      op: 'TranslatePinData',
      method: 'POST',
      url: '/pindata/translate',
      body: {
        incomingKeyIdentifier: tpk.keyId,
        outgoingKeyIdentifier: 'alias/fuzz/zpk',
        incomingPinBlockFormat: 'ISO_FORMAT_0',
        outgoingPinBlockFormat: 'ISO_FORMAT_3',
        primaryAccountNumber: PAN,
        encryptedPinBlock: pinBlock,
      },
    },
    {
      name: 'TranslatePinData DUKPT',
      op: 'TranslatePinData',
      method: 'POST',
      url: '/pindata/translate',
      body: {
        incomingKeyIdentifier: bdk.keyId,
        outgoingKeyIdentifier: zpk.keyId,
        incomingPinBlockFormat: 'ISO_FORMAT_0',
        outgoingPinBlockFormat: 'ISO_FORMAT_0',
        primaryAccountNumber: PAN,
        encryptedPinBlock: pinBlock,
        incomingDukptAttributes: { keySerialNumber: 'FFFF9876543210E00001' },
      },
    },
    {
      name: 'GenerateMac',
      op: 'GenerateMac',
      method: 'POST',
      url: '/mac/generate',
      body: { ...macBody, padding: 2, macLength: 8 },
    },
    {
      name: 'GenerateMac UnionPay',
      op: 'GenerateMac',
      method: 'POST',
      url: '/mac/generate',
      body: { ...macBody, macAlgorithm: 'UNIONPAY_ECB', unionPayOutput: 'HEX' },
    },
    {
      name: 'GenerateMac DUKPT',
      op: 'GenerateMac',
      method: 'POST',
      url: '/mac/generate',
      body: {
        ...macBody,
        keyIdentifier: bdk.keyId,
        dukptAttributes: { keySerialNumber: 'FFFF9876543210E00001', direction: 'REQUEST' },
      },
    },
    {
      name: 'VerifyMac',
      op: 'VerifyMac',
      method: 'POST',
      url: '/mac/verify',
      body: { ...macBody, mac: 'A1B2C3D4' },
    },
    {
      name: 'EncryptData',
      op: 'EncryptData',
      method: 'POST',
      url: `/keys/${dek.keyId}/encrypt`,
      body: { plainText: MESSAGE, mode: 'CBC', initializationVector: '0011223344556677' },
    },
    {
      name: 'DecryptData',
      op: 'DecryptData',
      method: 'POST',
      url: `/keys/${dek.keyId}/decrypt`,
      body: { cipherText: enc.cipherText, mode: 'ECB' },
    },
    {
      name: 'CreateAlias',
      op: 'CreateAlias',
      method: 'POST',
      url: '/aliases',
      body: { aliasName: 'alias/fuzz/x', keyArn: tak.keyArn },
    },
    {
      name: 'UpdateAlias',
      op: 'UpdateAlias',
      method: 'PUT',
      url: `/aliases/${encodeURIComponent('alias/fuzz/zpk')}`,
      body: { keyArn: zpk.keyId },
    },
    {
      name: 'ListKeys',
      op: 'ListKeys',
      method: 'GET',
      url: '/keys',
      query: { keyState: 'CREATE_COMPLETE', maxResults: '5' },
    },
    {
      name: 'ListAliases',
      op: 'ListAliases',
      method: 'GET',
      url: '/aliases',
      query: { keyArn: zpk.keyId, maxResults: '2' },
    },
    {
      name: 'DeleteKey',
      op: 'DeleteKey',
      method: 'DELETE',
      url: `/keys/${victim.keyId}`,
      query: { deleteKeyInDays: '3' },
    },
    { name: 'RestoreKey', op: 'RestoreKey', method: 'POST', url: `/keys/${victim.keyId}/restore` },
    { name: 'StopKeyUsage', op: 'StopKeyUsage', method: 'POST', url: `/keys/${victim.keyId}/stop-usage` },
  ];
});

after(async () => {
  await env.app.close();
  env.keyTable.close();
  await env.audit.close();
  env.hsm.destroy();
  rmSync(env.dir, { recursive: true, force: true });
});

// ---- Arbitraries -------------------------------------------------------------------------------

function nested(depth: number): Json {
  let v: Json = 'x';
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v };
  return v;
}

/** Values that break a field: wrong types, bad and oversized hex, odd strings, deep nesting. */
const badValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53, '', ' ', '0', 'true'),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc
    .constantFrom(1, 7, 15, 16, 17, 31, 33, 47, 63, 65, 8191, 8192, 8193, 9000, 9999, 10_000, 20_000)
    .chain((n) =>
      fc.constantFrom<Json>(
        'F'.repeat(n),
        '0'.repeat(n),
        'g'.repeat(n),
        `${'A'.repeat(n - 1)}Z`,
        'ab'.repeat(n),
      ),
    ),
  fc.constantFrom<Json>(
    'alias/',
    'alias/../x',
    'key-',
    'arn:poskey:hsm:local:key/',
    '١٢٣٤',
    '\u0000\u0019',
    '%00',
  ),
  fc.array(fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>, { maxLength: 12 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>, {
    maxKeys: 5,
  }),
  fc.integer({ min: 1, max: 300 }).map(nested),
);

/**
 * Values a schema lets through but that may not fit the request: every enum value of the API, small
 * integers, hex of any whole byte length, digit strings, and the ids of keys of every role. These
 * reach the handlers and the HSM (wrong key role, PIN format against key algorithm, MAC length…).
 */
function plausibleValue(): fc.Arbitrary<Json> {
  const enums = [
    ...KEY_TYPES,
    ...Object.keys(KEY_ALGORITHMS),
    ...Object.keys(KEY_USAGES),
    ...Object.keys(EXPORTABILITIES),
    ...Object.keys(KCV_ALGORITHMS),
    ...Object.keys(PIN_FORMATS),
    ...Object.keys(MAC_ALGORITHMS),
    ...Object.keys(DUKPT_KEY_TYPES),
    ...['ECB', 'CBC', 'HEX', 'BINARY', 'REQUEST', 'RESPONSE', 'tr31', 'legacy'],
    ...['CREATE_COMPLETE', 'DELETE_PENDING', 'DELETE_COMPLETE'],
  ];
  return fc.oneof(
    fc.constantFrom<Json>(...enums),
    fc.integer({ min: -1, max: 20 }),
    fc.boolean(),
    fc.uint8Array({ minLength: 1, maxLength: 48 }).map((b) => Buffer.from(b).toString('hex').toUpperCase()),
    fc
      .constantFrom(8, 16, 24, 32)
      .chain((n) => fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b).toString('hex'))),
    fc.stringMatching(/^[0-9]{10,20}$/),
    fc.constantFrom<Json>(...env.identifiers),
    fc.array(
      fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('hex')),
      { minLength: 1, maxLength: 10 },
    ),
  );
}

/** Every path into a JSON value (objects and arrays), the root included as []. */
function pathsOf(v: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out = [prefix];
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) out.push(...pathsOf(x, [...prefix, i]));
  } else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) out.push(...pathsOf(x, [...prefix, k]));
  }
  return out;
}

type Mutation = { kind: 'replace' | 'delete' | 'add'; at: number; value: Json; key: string };

function mutate(body: Json, m: Mutation): Json {
  const copy = structuredClone(body) as Json;
  const paths = pathsOf(copy);
  const path = paths[m.at % paths.length]!;
  if (path.length === 0) {
    if (m.kind === 'replace') return m.value;
    if (copy !== null && typeof copy === 'object' && !Array.isArray(copy)) copy[m.key] = m.value;
    return copy;
  }
  let parent = copy as Json;
  for (const p of path.slice(0, -1)) parent = (parent as Record<string | number, Json>)[p] as Json;
  const last = path[path.length - 1]!;
  const container = parent as Record<string | number, Json>;
  if (m.kind === 'replace') container[last] = m.value;
  else if (m.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete container[last];
  } else {
    const target = container[last];
    if (target !== null && typeof target === 'object' && !Array.isArray(target)) target[m.key] = m.value;
    else if (Array.isArray(target)) target.push(m.value);
    else container[`${String(last)}Extra`] = m.value;
  }
  return copy;
}

/** A mutation: built once the table's identifiers are known. */
function mutation(): fc.Arbitrary<Mutation> {
  return fc.record({
    kind: fc.constantFrom<Mutation['kind']>('replace', 'replace', 'replace', 'delete', 'add'),
    at: fc.nat(),
    value: fc.oneof(badValue, plausibleValue()),
    key: fc.oneof(
      fc.string({ maxLength: 10 }),
      fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'padding', 'keyType'),
    ),
  });
}

function pick<T>(list: readonly T[], i: number): T {
  return list[i % list.length]!;
}

// ---- Boundary walk: every field of every template through its schema's edges ------------------

function routeOf(t: Template) {
  const route = HSM_ROUTES.find((r) => r.operationId === t.op);
  assert.ok(route, t.op);
  return route;
}

/** The schema of the value at `path` (objects by property, arrays by items). */
function schemaAt(schema: JsonSchema | undefined, path: (string | number)[]): JsonSchema | undefined {
  let s = schema;
  for (const p of path) {
    if (s === undefined) return undefined;
    s = (typeof p === 'number' ? s.items : (s.properties as Record<string, JsonSchema> | undefined)?.[p]) as
      | JsonSchema
      | undefined;
  }
  return s;
}

const hexOf = (chars: number) =>
  randomBytes(Math.ceil(chars / 2))
    .toString('hex')
    .slice(0, chars)
    .toUpperCase();

/** Lengths a string schema names: its bounds, one either side, and every `{n}` of its pattern. */
function lengthsOf(schema: JsonSchema): number[] {
  const min = (schema.minLength as number | undefined) ?? 0;
  const max = (schema.maxLength as number | undefined) ?? 64;
  const exact = [...String(schema.pattern ?? '').matchAll(/\{(\d+)\}/g)].map((m) => Number(m[1]));
  const all = [min - 1, min, min + 1, max - 1, max, max + 1, ...exact, ...exact.map((n) => n + 2)];
  return [...new Set(all.filter((n) => n >= 0 && n <= 20_000))];
}

/** The edge values of a schema: enums and one outsider, ranges and one past each end, lengths, types. */
function edgeValues(schema: JsonSchema | undefined): Json[] {
  const wrongTypes: Json[] = [null, true, 0, 'x', [], {}];
  if (schema === undefined) return wrongTypes;
  if (Array.isArray(schema.enum)) {
    const e = schema.enum as Json[];
    return [...e, typeof e[0] === 'number' ? 99 : 'NOT_IN_ENUM', ...wrongTypes];
  }
  switch (schema.type) {
    case 'integer': {
      const min = (schema.minimum as number | undefined) ?? -1;
      const max = (schema.maximum as number | undefined) ?? 100;
      return [min - 1, min, min + 1, max - 1, max, max + 1, 1.5, -0, 2 ** 53, String(min), ...wrongTypes];
    }
    case 'boolean':
      return [true, false, 'true', 1, null, []];
    case 'array': {
      const items = edgeValues(schemaAt(schema, [0]));
      const max = (schema.maxItems as number | undefined) ?? 10;
      const good = items.find((v) => typeof v === 'string') ?? 'x';
      return [[], [good], Array(max).fill(good), Array(max + 1).fill(good), items, 'x', {}];
    }
    case 'object':
      return [{}, null, [], 'x', { unknownProperty: 1 }];
    case 'string': {
      const pattern = String(schema.pattern ?? '');
      const out: Json[] = [...wrongTypes.filter((v) => typeof v !== 'string'), '', ' '];
      for (const n of lengthsOf(schema)) {
        if (pattern.includes('0-9A-Fa-f')) out.push(hexOf(n), `${hexOf(Math.max(n - 1, 0))}G`);
        else if (pattern.includes('[0-9]')) out.push('9'.repeat(n), `${'1'.repeat(Math.max(n - 1, 0))}a`);
        else out.push('a'.repeat(n));
      }
      if (pattern.includes('alias/') || pattern.includes('key-')) out.push(...env.identifiers);
      return out;
    }
    default:
      return wrongTypes;
  }
}

// ---- Properties ------------------------------------------------------------------------------

describe('HTTP API fuzzing: every malformed request gets a 4xx with its code, never a 5xx', () => {
  it('the valid templates are valid (so the mutations start from real requests)', async () => {
    for (const t of env.templates) {
      const madeUp = ['ImportKey cryptogram', 'ImportKey TR-31', 'ImportKey components', 'VerifyMac'];
      if ([...madeUp, 'TranslatePinData DUKPT'].includes(t.name)) {
        // These carry made-up material: refused by the HSM (KCV, MAC, TR-31 authentication), with a code.
        await send(t, t.body, t.name);
        continue;
      }
      const res = await call(t.method, `${t.url}${queryString(t.query)}`, t.body);
      assert.ok(res.status === 200 || t.name === 'RestoreKey', `${t.name}: ${res.status} ${res.text}`);
    }
    await healthy();
  });

  it('every field of every body through the edges of its schema, one at a time', async () => {
    let sent = 0;
    for (const t of env.templates.filter((x) => x.body !== undefined)) {
      const schema = routeOf(t).body;
      for (const [at, path] of pathsOf(t.body!).entries()) {
        if (path.length === 0) continue;
        for (const value of edgeValues(schemaAt(schema, path))) {
          const body = mutate(t.body!, { kind: 'replace', at, value, key: '' });
          await send(t, body, `${t.name} ${path.join('.')} = ${JSON.stringify(value).slice(0, 80)}`);
          sent++;
        }
      }
    }
    assert.ok(sent > 500, `only ${sent} requests`);
    await healthy();
  });

  it('every query parameter through the edges of its schema', async () => {
    for (const t of env.templates.filter((x) => x.query !== undefined)) {
      const schema = routeOf(t).querystring;
      for (const name of Object.keys((schema?.properties ?? {}) as object)) {
        for (const value of edgeValues(schemaAt(schema, [name]))) {
          const text = typeof value === 'string' ? value : JSON.stringify(value);
          const query = { ...t.query, [name]: text.slice(0, 3000) };
          await send({ ...t, query }, undefined, `${t.name} ?${name}=${text.slice(0, 60)}`);
        }
      }
    }
    await healthy();
  });

  it('one field replaced, removed or added, in any body', async () => {
    const withBody = env.templates.filter((t) => t.body !== undefined);
    await fc.assert(
      fc.asyncProperty(fc.nat(), mutation(), async (i, m) => {
        const t = pick(withBody, i);
        await send(t, mutate(t.body!, m), `${t.name} ${JSON.stringify(m).slice(0, 200)}`);
      }),
      { numRuns: RUNS * 4 },
    );
    await healthy();
  });

  it('several mutations at once', async () => {
    const withBody = env.templates.filter((t) => t.body !== undefined);
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.array(mutation(), { minLength: 2, maxLength: 6 }), async (i, ms) => {
        const t = pick(withBody, i);
        const body = ms.reduce<Json>((b, m) => mutate(b, m), t.body!);
        await send(t, body, `${t.name} ×${ms.length}`);
      }),
      { numRuns: RUNS * 3 },
    );
    await healthy();
  });

  it('any JSON value as the body, on every route', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<Json>, async (i, body) => {
        const t = pick(env.templates, i);
        await send(t, body, `${t.name} with ${JSON.stringify(body).slice(0, 120)}`);
      }),
      { numRuns: RUNS * 2 },
    );
    await healthy();
  });

  it('raw bodies: broken JSON, other media types, prototype keys, too large', async () => {
    const posts = env.templates.filter((t) => t.method === 'POST' || t.method === 'PUT');
    const raw = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.constantFrom(
        '{',
        '{"keyType":',
        '[]',
        'null',
        '"string"',
        '{"__proto__":{"enabled":false},"keyType":"ZPK","keyAlgorithm":"TDES_2KEY"}',
        '{"constructor":{"prototype":{"x":1}}}',
        '{"keyType":"ZPK","keyType":"TAK","keyAlgorithm":"TDES_2KEY"}',
        `{"a":"${'F'.repeat(BODY_LIMIT)}"}`,
        '\uFEFF{}',
      ),
    );
    const media = fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/octet-stream',
      'multipart/form-data; boundary=x',
      'application/problem+json',
      '',
    );
    await fc.assert(
      fc.asyncProperty(fc.nat(), raw, media, async (i, body, type) => {
        const t = pick(posts, i);
        const headers: Record<string, string> = type === '' ? {} : { 'content-type': type };
        const res = await call(t.method, t.url, body, headers);
        assertAnswer(res, `${t.name} raw ${type} ${JSON.stringify(body).slice(0, 80)}`);
      }),
      { numRuns: RUNS * 2 },
    );
    await healthy();
  });

  it('random path parameters and query strings', async () => {
    const shapes = [
      (p: string) => `/keys/${p}`,
      (p: string) => `/keys/${p}/export`,
      (p: string) => `/keys/${p}/start-usage`,
      (p: string) => `/keys/${p}/encrypt`,
      (p: string) => `/aliases/${p}`,
    ];
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;
    const param = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 60 }).map(encodeURIComponent),
      fc.string({ maxLength: 60 }),
      fc.constantFrom(
        '%',
        '%zz',
        '..',
        '%2e%2e',
        'alias%2F',
        `key-${'0'.repeat(2000)}`,
        'arn%3Aposkey%3Ahsm%3Aother%3Akey%2Fkey-0123456789abcdef',
        'key-00000000-0000-4000-8000-000000000000',
      ),
    );
    const query = fc.dictionary(
      fc.constantFrom('maxResults', 'nextToken', 'keyState', 'keyArn', 'deleteKeyInDays', 'x', '__proto__'),
      fc.oneof(
        fc.string({ maxLength: 30 }),
        fc.constantFrom('0', '-1', '101', '1e3', '3.5', '99999999999', ''),
      ),
      { maxKeys: 3 },
    );
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.nat(), param, query, async (s, m, p, q) => {
        const method = pick(methods, m);
        const url = `${pick(shapes, s)(p)}${queryString(q)}`;
        const res = await call(method, url, method === 'GET' || method === 'DELETE' ? undefined : '{}', {
          'content-type': 'application/json',
        });
        assertAnswer(res, `${method} ${url.slice(0, 200)}`);
      }),
      { numRuns: RUNS * 2 },
    );
    await ok('GET', '/keys?maxResults=100');
    for (const q of [
      'maxResults=0',
      'maxResults=abc',
      'keyState=GONE',
      'nextToken=!!',
      'maxResults=1&maxResults=2',
    ]) {
      assertAnswer(await call('GET', `/keys?${q}`), q);
    }
    await healthy();
  });

  it('leaves the audit chain intact and logs no internal error', async () => {
    await env.audit.flush();
    const v = await verifyAuditLog(env.audit.path);
    assert.equal(v.ok, true, JSON.stringify(v));
    assert.ok(v.ok && v.records > 20);
    const bugs = env.logs.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
    assert.deepEqual(bugs, []);
    if (process.env.POSKEY_FUZZ_STATS) console.log(Object.fromEntries([...seen].sort()));
    // The fuzz got past the schemas: the table, the key roles and the HSM's own checks answered too.
    assert.ok(seen.size >= 12, [...seen.keys()].join(' '));
    for (const code of ['POSKEY_ERR_KEY_USAGE', 'POSKEY_ERR_KCV_MISMATCH', 'POSKEY_ERR_ALIAS_EXISTS']) {
      assert.ok(seen.has(code), `no request reached ${code}`);
    }
  });
});

// ---- Over a real socket ----------------------------------------------------------------------

/** Writes raw bytes on a fresh connection; resolves with what came back before the server closed (or 3 s). */
function rawExchange(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let got = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, 3000);
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
    });
    socket.on('close', done);
    socket.on('error', done);
    socket.on('connect', () => socket.write(bytes));
  });
}

describe('HTTP API fuzzing over a real socket', () => {
  it('well-behaved clients carry on while another sends garbage and malformed requests', async () => {
    await env.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = env.app.server.address() as AddressInfo;
    const base = `http://127.0.0.1:${port}`;
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    let goodAnswers = 0;
    const good = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const res = await fetch(`${base}/mac/generate`, {
          method: 'POST',
          headers,
          body: JSON.stringify(env.canary.body),
        });
        assert.equal(res.status, 200);
        assert.equal(((await res.json()) as Body).mac, env.canary.mac);
        goodAnswers++;
      }
    };
    const garbage = [
      'GARBAGE\r\n\r\n',
      'GET /keys HTTP/9.9\r\n\r\n',
      `POST /keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{`,
      `GET /keys HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      `POST /keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      `POST /keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{"a":`,
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01, 0x00, 0x00, 0xfb, 0x03, 0x03]),
      `GET /keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\nGET /%zz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`,
    ];
    const bad = async () => {
      for (const g of garbage) {
        const answer = await rawExchange(port, g);
        // Either nothing (the connection was dropped) or HTTP answers, none of them a 5xx.
        for (const status of answer.match(/HTTP\/1\.1 (\d{3})/g) ?? []) {
          assert.ok(Number(status.slice(9)) < 500, `${String(g).slice(0, 60)} → ${status}`);
        }
      }
      for (let i = 0; i < 40; i++) {
        const t = env.templates[i % env.templates.length]!;
        const body = fc.sample(fc.jsonValue({ maxDepth: 3 }), { numRuns: 1, seed: i })[0];
        const res = await fetch(`${base}${t.url}`, {
          method: t.method === 'GET' ? 'POST' : t.method,
          headers,
          body: JSON.stringify(body),
        });
        assertAnswer({ status: res.status, text: await res.text() }, `${t.name} over the socket`);
      }
    };
    await Promise.all([good(60), good(60), bad(), good(60)]);
    assert.equal(goodAnswers, 180);
    await good(1);
  });
});
