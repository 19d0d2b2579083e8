/**
 * The OpenAPI 3.1 document, built from the same route table and schema objects Fastify validates
 * with (no @fastify/swagger). Schemas carrying a `title` are published once under
 * `components.schemas` and referenced by `$ref`; two different schemas may not share a title.
 */
import { STATUS_CODES } from 'node:http';
import { HttpApiError } from './errors.js';
import type { RouteSpec } from './route.js';
import { errorBody, type JsonSchema } from './schemas.js';

export interface OpenApiInfo {
  title?: string;
  version?: string;
}

type Json = Record<string, unknown>;

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Replaces titled object schemas with `$ref`s, collecting them in `components`. */
function hoist(schema: unknown, components: Record<string, Json>): unknown {
  if (Array.isArray(schema)) return schema.map((s) => hoist(s, components));
  if (!isPlainObject(schema)) return schema;
  const copy: Json = {};
  for (const [k, v] of Object.entries(schema)) copy[k] = hoist(v, components);
  if (typeof schema.title === 'string' && schema.type === 'object') {
    const name = schema.title;
    const seen = components[name];
    if (seen !== undefined && JSON.stringify(seen) !== JSON.stringify(copy)) {
      throw new HttpApiError('POSKEY_ERR_INTERNAL', `two different schemas are titled ${name}`, {
        field: 'title',
      });
    }
    components[name] = copy;
    return { $ref: `#/components/schemas/${name}` };
  }
  return copy;
}

/** `/keys/:keyId/export` → `/keys/{keyId}/export`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function parameters(route: RouteSpec, components: Record<string, Json>): Json[] {
  const out: Json[] = [];
  const add = (where: 'path' | 'query', schema: JsonSchema | undefined) => {
    if (schema === undefined) return;
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    const required = new Set((schema.required ?? []) as string[]);
    for (const [name, s] of Object.entries(props)) {
      const p: Json = { name, in: where, required: where === 'path' || required.has(name) };
      if (typeof s.description === 'string') p.description = s.description;
      p.schema = hoist(s, components);
      out.push(p);
    }
  };
  add('path', route.params);
  add('query', route.querystring);
  return out;
}

function jsonContent(schema: unknown): Json {
  return { 'application/json': { schema } };
}

function operation(route: RouteSpec, components: Record<string, Json>): Json {
  const op: Json = { operationId: route.operationId, summary: route.summary, tags: [route.tag] };
  const params = parameters(route, components);
  if (params.length > 0) op.parameters = params;
  if (route.body !== undefined) {
    op.requestBody = { required: true, content: jsonContent(hoist(route.body, components)) };
  }
  const ok = String(route.status ?? 200);
  const responses: Json = {
    [ok]: {
      description: 'OK',
      content: jsonContent(hoist(route.response ?? { type: 'object' }, components)),
    },
  };
  for (const status of route.errors) {
    responses[String(status)] = {
      description: STATUS_CODES[status] ?? 'Error',
      content: jsonContent({ $ref: '#/components/schemas/Error' }),
    };
  }
  op.responses = responses;
  if (route.auth === false) op.security = [];
  return op;
}

/** The OpenAPI 3.1 document for a route table. */
export function buildOpenApi(routes: readonly RouteSpec[], info: OpenApiInfo = {}): Json {
  const components: Record<string, Json> = {};
  hoist(errorBody, components);
  const paths: Record<string, Json> = {};
  for (const route of routes) {
    const path = openApiPath(route.url);
    paths[path] ??= {};
    paths[path]![route.method.toLowerCase()] = operation(route, components);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: info.title ?? 'poskey HSM API',
      version: info.version ?? '1',
      description:
        'Software payment HSM, modelled on AWS Payment Cryptography. Errors are ' +
        '{ type, code, field?, message, reason? }: type is the AWS exception name, code the stable ' +
        'POSKEY_ERR_* code, field the input at fault.',
    },
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(components).sort(([a], [b]) => a.localeCompare(b))),
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
    },
  };
}
