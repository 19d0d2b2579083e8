/**
 * Control plane, aliases: CreateAlias, GetAlias, ListAliases, UpdateAlias, DeleteAlias. An alias
 * (`alias/…`, 7–256 characters) names at most one key; a key may have many aliases; an alias may
 * exist without a key (AWS semantics). In URLs the alias's slashes are percent-encoded:
 * `GET /aliases/alias%2Fpos%2Fzpk`.
 */
import type { AliasRecord } from './key-table.js';
import { BASE_ERRORS, type RouteDeps, type RouteSpec, resolveKeyId } from './route.js';
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

export const ALIAS_ROUTES: readonly RouteSpec[] = [
  {
    method: 'POST',
    url: '/aliases',
    operationId: 'CreateAlias',
    summary: 'Create an alias, optionally naming a key',
    tag: 'aliases',
    body: createAliasBody,
    response: aliasResponse,
    errors: [...BASE_ERRORS, 404, 409],
    handler: (i, d) => {
      const b = i.body as { aliasName: string; keyArn?: string };
      const keyId = resolveKeyId(d, b.keyArn, 'keyArn');
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
    params: aliasParams,
    body: updateAliasBody,
    response: aliasResponse,
    errors: [...BASE_ERRORS, 404],
    handler: (i, d) => {
      const b = i.body as { keyArn?: string };
      const keyId = resolveKeyId(d, b.keyArn, 'keyArn');
      return { alias: aliasJson(d.keys.updateAlias(i.params.aliasName!, keyId, 'keyArn'), d) };
    },
  },
  {
    method: 'DELETE',
    url: '/aliases/:aliasName',
    operationId: 'DeleteAlias',
    summary: 'Delete an alias (the key is untouched)',
    tag: 'aliases',
    params: aliasParams,
    response: emptyResponse,
    errors: [...BASE_ERRORS, 404],
    handler: (i, d) => {
      d.keys.deleteAlias(i.params.aliasName!);
      return {};
    },
  },
];
