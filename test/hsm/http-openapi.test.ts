import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PoskeyError } from '../../src/errors.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { KeyTable } from '../../src/hsm/http/key-table.js';
import { buildOpenApi, openApiPath } from '../../src/hsm/http/openapi.js';
import type { RouteSpec } from '../../src/hsm/http/route.js';
import { createHsmHttpApp, HSM_ROUTES, hsmOpenApi } from '../../src/hsm/http/server.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';

const TOKEN = 'openapi-token-0123456789abcdef';
// biome-ignore lint/suspicious/noExplicitAny: JSON answers are asserted field by field
type Json = Record<string, any>;

/** Every operation the issue asks for, plus the document itself. */
const OPERATIONS = [
  'CreateKey',
  'ImportKey',
  'ExportKey',
  'GetKey',
  'ListKeys',
  'StartKeyUsage',
  'StopKeyUsage',
  'DeleteKey',
  'RestoreKey',
  'CreateAlias',
  'GetAlias',
  'ListAliases',
  'UpdateAlias',
  'DeleteAlias',
  'TranslatePinData',
  'GenerateMac',
  'VerifyMac',
  'EncryptData',
  'DecryptData',
  'GetDiagnostics',
  'GetOpenApiDocument',
];

const METHODS = ['get', 'post', 'put', 'delete'];

function operations(doc: Json): { path: string; method: string; op: Json }[] {
  return Object.entries(doc.paths as Json).flatMap(([path, item]) =>
    Object.entries(item as Json)
      .filter(([m]) => METHODS.includes(m))
      .map(([method, op]) => ({ path, method, op: op as Json })),
  );
}

function deref(doc: Json, schema: Json): Json {
  if (typeof schema.$ref !== 'string') return schema;
  const name = schema.$ref.replace('#/components/schemas/', '');
  const target = doc.components.schemas[name];
  assert.ok(target, `unresolved ${schema.$ref}`);
  return target;
}

/** Walks a request schema: closed objects, bounded strings, integers and arrays. */
function assertBounded(doc: Json, schema: Json, where: string): void {
  const s = deref(doc, schema);
  switch (s.type) {
    case 'object':
      assert.equal(s.additionalProperties, false, `${where} is open`);
      for (const [k, v] of Object.entries((s.properties ?? {}) as Json))
        assertBounded(doc, v, `${where}.${k}`);
      break;
    case 'string':
      assert.ok(typeof s.maxLength === 'number' || Array.isArray(s.enum), `${where} has no maxLength`);
      assert.ok(typeof s.pattern === 'string' || Array.isArray(s.enum), `${where} has no pattern or enum`);
      break;
    case 'integer':
      assert.ok(
        Array.isArray(s.enum) || (s.minimum !== undefined && s.maximum !== undefined),
        `${where} unbounded`,
      );
      break;
    case 'array':
      assert.equal(typeof s.maxItems, 'number', `${where} has no maxItems`);
      assertBounded(doc, s.items, `${where}[]`);
      break;
    case 'boolean':
      break;
    default:
      assert.fail(`${where}: unexpected schema ${JSON.stringify(s)}`);
  }
}

describe('HTTP API: OpenAPI document', () => {
  const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk()]) });
  const keyTable = new KeyTable(':memory:');
  const app = createHsmHttpApp({
    hsm,
    keyTable,
    tokens: [TOKEN],
    logger: false,
    openapi: { version: '9.9' },
  });
  let doc: Json;
  before(async () => {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    doc = res.json();
  });
  after(async () => {
    await app.close();
    keyTable.close();
  });

  it('is served without a token and is the document built from the route table', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.info.version, '9.9');
    assert.deepEqual(doc, JSON.parse(JSON.stringify(hsmOpenApi({ version: '9.9' }))));
    assert.deepEqual(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer' });
    assert.deepEqual(doc.security, [{ bearerAuth: [] }]);
  });

  it('lists every operation once, and only the document is open without a token', () => {
    const ops = operations(doc);
    assert.deepEqual(ops.map((o) => o.op.operationId).sort(), [...OPERATIONS].sort());
    for (const { op } of ops) {
      assert.ok(op.summary, op.operationId);
      assert.ok(op.responses['200'], op.operationId);
      if (op.operationId === 'GetOpenApiDocument') assert.deepEqual(op.security, []);
      else {
        assert.equal(op.security, undefined);
        for (const s of ['400', '401', '500']) assert.ok(op.responses[s], `${op.operationId} ${s}`);
      }
    }
    assert.equal(ops.length, HSM_ROUTES.length + 1);
  });

  it('every documented operation is served (none answers "no such route")', async () => {
    for (const { path, method, op } of operations(doc)) {
      const url = path.replace('{keyId}', 'key-0000000000000000').replace('{aliasName}', 'alias%2Fnone');
      const res = await app.inject({
        method: method.toUpperCase() as 'GET',
        url,
        headers: { authorization: `Bearer ${TOKEN}` },
        ...(op.requestBody ? { payload: {} } : {}),
      });
      const code = res.statusCode === 404 ? res.json().code : undefined;
      assert.notEqual(code, 'POSKEY_ERR_ROUTE', `${op.operationId}: ${method} ${url}`);
    }
  });

  it('resolves every $ref and publishes the error body', () => {
    const refs = JSON.stringify(doc).match(/"#\/components\/schemas\/[A-Za-z]+"/g) ?? [];
    assert.ok(refs.length > 20);
    for (const r of refs) deref(doc, { $ref: JSON.parse(r) });
    assert.deepEqual(doc.components.schemas.Error.required, ['type', 'code', 'message']);
  });

  it('closes every request object and bounds every request field', () => {
    for (const { op } of operations(doc)) {
      const body = op.requestBody?.content?.['application/json']?.schema;
      if (body) assertBounded(doc, body, `${op.operationId} body`);
      for (const p of (op.parameters ?? []) as Json[])
        assertBounded(doc, p.schema, `${op.operationId} ${p.name}`);
    }
  });

  it('documents path and query parameters', () => {
    const del = doc.paths['/keys/{keyId}'].delete;
    const names = del.parameters.map((p: Json) => `${p.in}:${p.name}:${p.required}`);
    assert.deepEqual(names, ['path:keyId:true', 'query:deleteKeyInDays:false']);
    const days = del.parameters[1].schema;
    assert.deepEqual([days.minimum, days.maximum, days.default], [3, 180, 7]);
    assert.equal(openApiPath('/aliases/:aliasName'), '/aliases/{aliasName}');
  });

  it('refuses two different schemas under one title', () => {
    const route = (type: string): RouteSpec => ({
      method: 'POST',
      url: `/x/${type}`,
      operationId: `X${type}`,
      summary: 'x',
      tag: 'meta',
      body: { type: 'object', title: 'Same', properties: { a: { type } }, additionalProperties: false },
      errors: [],
      handler: () => ({}),
    });
    assert.throws(
      () => buildOpenApi([route('string'), route('integer')]),
      (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_INTERNAL',
    );
    assert.doesNotThrow(() => buildOpenApi([route('string'), { ...route('string'), url: '/y' }]));
  });
});
