/**
 * Control plane, aliases: CreateAlias, GetAlias, ListAliases, UpdateAlias, DeleteAlias. An alias
 * (`alias/…`, 7–256 characters) names at most one key; a key may have many aliases; an alias may
 * exist without a key (AWS semantics). In URLs the alias's slashes are percent-encoded:
 * `GET /aliases/alias%2Fpos%2Fzpk`. CreateAlias, UpdateAlias and DeleteAlias are audited: the
 * record names the alias (detail) and the key it now names, or named (key id, KCV).
 */
import type { AliasRecord } from './key-table.js';
import {
  BASE_ERRORS,
  type RouteDeps,
  type RouteInput,
  type RouteSpec,
  resolveKey,
  resolveKeyId,
} from './route.js';
import {
  aliasParams,
  aliasResponse,
  createAliasBody,
  emptyResponse,
  listAliasesQuery,
  listAliasesResponse,
  updateAliasBody,
} from './schemas.js';

function aliasJson(a: AliasRecord, deps: RouteDeps): { aliasName: string; keyArn?: string } {
  return a.keyId === undefined
    ? { aliasName: a.name }
    : { aliasName: a.name, keyArn: deps.arns.key(a.keyId) };
}

/** The key an alias call names (if any), noted for the audit record with the alias. */
function aliasTarget(i: RouteInput, deps: RouteDeps, alias: string, keyArn: string | undefined) {
  i.note({ detail: keyArn === undefined ? alias : `${alias} -> ${keyArn}` });
  if (keyArn === undefined) return undefined;
  const key = resolveKey(deps, keyArn, 'keyArn');
  i.note({ keyId: key.id, kcv: key.kcv, detail: `${alias} -> ${key.id}` });
  return key.id;
}

export const ALIAS_ROUTES: readonly RouteSpec[] = [
  {
    method: 'POST',
    url: '/aliases',
    operationId: 'CreateAlias',
    summary: 'Create an alias, optionally naming a key',
    tag: 'aliases',
    audited: true,
    body: createAliasBody,
    response: aliasResponse,
    errors: [...BASE_ERRORS, 404, 409, 503],
    handler: (i, d) => {
      const b = i.body as { aliasName: string; keyArn?: string };
      const keyId = aliasTarget(i, d, b.aliasName, b.keyArn);
      return { alias: aliasJson(d.keys.createAlias(b.aliasName, keyId, 'keyArn'), d) };
    },
  },
  {
    method: 'GET',
    url: '/aliases/:aliasName',
    operationId: 'GetAlias',
    summary: 'The key an alias names',
    tag: 'aliases',
    params: aliasParams,
    response: aliasResponse,
    errors: [...BASE_ERRORS, 404],
    handler: (i, d) => ({ alias: aliasJson(d.keys.getAlias(i.params.aliasName!), d) }),
  },
  {
    method: 'GET',
    url: '/aliases',
    operationId: 'ListAliases',
    summary: 'List aliases by name, optionally only those of one key; paginated with nextToken',
    tag: 'aliases',
    querystring: listAliasesQuery,
    response: listAliasesResponse,
    errors: [...BASE_ERRORS, 404],
    handler: (i, d) => {
      const q = i.query as { keyArn?: string; maxResults?: number; nextToken?: string };
      const keyId = resolveKeyId(d, q.keyArn, 'keyArn');
      const page = d.keys.listAliases({
        ...(keyId === undefined ? {} : { keyId }),
        ...(q.maxResults === undefined ? {} : { limit: q.maxResults }),
        ...(q.nextToken === undefined ? {} : { nextToken: q.nextToken }),
      });
      const aliases = page.items.map((a) => aliasJson(a, d));
      return page.nextToken === undefined ? { aliases } : { aliases, nextToken: page.nextToken };
    },
  },
  {
    method: 'PUT',
    url: '/aliases/:aliasName',
    operationId: 'UpdateAlias',
    summary: 'Point an alias at another key, or at none',
    tag: 'aliases',
    audited: true,
    params: aliasParams,
    body: updateAliasBody,
    response: aliasResponse,
    errors: [...BASE_ERRORS, 404, 503],
    handler: (i, d) => {
      const b = i.body as { keyArn?: string };
      const keyId = aliasTarget(i, d, i.params.aliasName!, b.keyArn);
      return { alias: aliasJson(d.keys.updateAlias(i.params.aliasName!, keyId, 'keyArn'), d) };
    },
  },
  {
    method: 'DELETE',
    url: '/aliases/:aliasName',
    operationId: 'DeleteAlias',
    summary: 'Delete an alias (the key is untouched)',
    tag: 'aliases',
    audited: true,
    params: aliasParams,
    response: emptyResponse,
    errors: [...BASE_ERRORS, 404, 503],
    handler: (i, d) => {
      const name = i.params.aliasName!;
      i.note({ detail: name });
      const named = d.keys.getAlias(name).keyId;
      if (named !== undefined) {
        const key = d.keys.get(named);
        i.note({ keyId: key.id, kcv: key.kcv, detail: `${name} (named ${key.id})` });
      }
      d.keys.deleteAlias(name);
      return {};
    },
  },
];
