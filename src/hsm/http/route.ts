/**
 * A route is data: method, URL, schemas, the statuses it can answer with, and a handler. The
 * server registers the table with Fastify and `openapi.ts` publishes the same table, so the
 * document cannot drift from what is served.
 */
import { isPoskeyError, PoskeyError } from '../../errors.js';
import type { HsmApi, KeyType, LmkKeyBlock } from '../api.js';
import type { ApiAuditFacts } from './audit.js';
import { HttpApiError, mapField } from './errors.js';
import type { KeyRecord, KeyTable } from './key-table.js';
import type { Arns } from './model.js';
import type { JsonSchema } from './schemas.js';

export interface RouteDeps {
  hsm: HsmApi;
  keys: KeyTable;
  arns: Arns;
  /** What GET /diagnostics answers. */
  diagnostics: () => unknown;
}

export interface RouteInput {
  params: Record<string, string>;
  query: Record<string, unknown>;
  body: unknown;
  /** Who is calling, for the HSM's audit log: `token:<12 hex of SHA-256(token)>` or the verifier's name. */
  actor: string;
  /**
   * Notes what an audited route's record says (key id, KCV, detail). Later notes add to or replace
   * earlier ones; what is noted when the handler throws goes into the error record.
   */
  note(facts: ApiAuditFacts): void;
}

export interface RouteSpec {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Fastify syntax (`/keys/:keyId`). */
  url: string;
  operationId: string;
  summary: string;
  tag: 'keys' | 'aliases' | 'data' | 'meta';
  /** Default true: the route needs a bearer token. */
  auth?: boolean;
  /**
   * Key management: every call, refused ones included, is appended to the audit log (when the
   * app has one) as action `api.<operationId>`, before the answer goes out.
   */
  audited?: boolean;
  /** Success status, default 200. */
  status?: number;
  params?: JsonSchema;
  querystring?: JsonSchema;
  body?: JsonSchema;
  /** Success body schema; undefined = not serialised through a schema (the OpenAPI document itself). */
  response?: JsonSchema;
  /** Error statuses the route can answer with, for the document. */
  errors: readonly number[];
  handler(input: RouteInput, deps: RouteDeps): unknown;
}

/** Error statuses every authenticated route can give. */
export const BASE_ERRORS = [400, 401, 500] as const;

/**
 * The key a request names by id, alias or ARN. An alias that names no key is reported as the alias
 * not being found, with the request's field.
 * @throws POSKEY_ERR_KEY_NOT_FOUND, POSKEY_ERR_ALIAS_NOT_FOUND
 */
export function resolveKey(deps: RouteDeps, identifier: string, field: string): KeyRecord {
  const ref = deps.arns.parse(identifier);
  if (ref === undefined) {
    throw new HttpApiError('POSKEY_ERR_KEY_NOT_FOUND', 'the ARN names another HSM instance', { field });
  }
  if (ref.kind === 'key') return deps.keys.get(ref.name, field);
  const alias = deps.keys.getAlias(ref.name, field);
  if (alias.keyId === undefined) {
    throw new HttpApiError('POSKEY_ERR_ALIAS_NOT_FOUND', `alias ${ref.name} names no key`, { field });
  }
  return deps.keys.get(alias.keyId, field);
}

/** A key id from an identifier, for alias calls that only need the id. */
export function resolveKeyId(
  deps: RouteDeps,
  identifier: string | undefined,
  field: string,
): string | undefined {
  return identifier === undefined ? undefined : resolveKey(deps, identifier, field).id;
}

export type UsableKey = KeyRecord & { keyBlock: LmkKeyBlock };

/**
 * A key a cryptographic operation may use: present, enabled, not pending deletion, and of a role
 * the operation accepts (checked here from the table, so the error names the request field; the
 * HSM checks the authenticated key block header again).
 * @throws POSKEY_ERR_KEY_NOT_FOUND, POSKEY_ERR_ALIAS_NOT_FOUND, POSKEY_ERR_KEY_DELETED,
 *   POSKEY_ERR_KEY_DELETE_PENDING, POSKEY_ERR_KEY_DISABLED, POSKEY_ERR_KEY_USAGE
 */
export function usableKey(
  deps: RouteDeps,
  identifier: string,
  field: string,
  roles: readonly KeyType[],
  purpose: string,
): UsableKey {
  const key = resolveKey(deps, identifier, field);
  if (key.state === 'DELETE_COMPLETE' || key.keyBlock === undefined) {
    throw new HttpApiError('POSKEY_ERR_KEY_DELETED', `key ${key.id} has been deleted`, { field });
  }
  if (key.state === 'DELETE_PENDING') {
    throw new HttpApiError('POSKEY_ERR_KEY_DELETE_PENDING', `key ${key.id} is scheduled for deletion`, {
      field,
    });
  }
  if (!key.enabled) throw new HttpApiError('POSKEY_ERR_KEY_DISABLED', `key ${key.id} is disabled`, { field });
  if (!roles.includes(key.keyType)) {
    throw new PoskeyError(
      'POSKEY_ERR_KEY_USAGE',
      `key ${key.id} is a ${key.keyType} (usage ${key.usage}); ${purpose} needs a ${roles.join(' or ')}`,
      { field },
    );
  }
  return key as UsableKey;
}

/**
 * Runs an HSM call, renaming the field of a poskey error it throws from the HSM's name (`pinBlock`,
 * `components[1]`) to the request's (`encryptedPinBlock`, `keyMaterial.keyComponents.components[1]`),
 * so the caller is told what to fix in terms of what it sent. Other errors pass unchanged.
 */
export function hsmCall<T>(fieldMap: Readonly<Record<string, string>>, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!isPoskeyError(e) || e instanceof HttpApiError || e.field === undefined) throw e;
    const field = mapField(e.field, fieldMap);
    if (field === e.field) throw e;
    throw new PoskeyError(e.code, e.reason, { field, cause: e });
  }
}
