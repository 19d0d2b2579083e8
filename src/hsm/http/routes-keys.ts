/**
 * Control plane, keys: CreateKey, ImportKey, ExportKey, GetKey, ListKeys, StartKeyUsage,
 * StopKeyUsage, DeleteKey, RestoreKey (AWS Payment Cryptography semantics, camelCase JSON).
 * Keys live in the key table as LMK key blocks; responses never carry a block or clear key.
 * Every route but GetKey and ListKeys is audited: each notes the key id and KCV it concerns.
 */
import type { CheckValue, KcvMethod } from '../../crypto/kcv.js';
import type { ExportFormat, HsmApi, ImportSource, KeyInfo, KeyType, LmkKeyBlock } from '../api.js';
import { HttpApiError } from './errors.js';
import { DEFAULT_DELETE_DAYS, type KeyOrigin, type KeyRecord, type KeyState } from './key-table.js';
import {
  EXPORTABILITIES,
  KCV_ALGORITHMS,
  KEY_ALGORITHMS,
  KEY_FAMILIES,
  KEY_TYPES,
  KEY_USAGES,
  kcvAlgorithmName,
  keyJson,
  keySummaryJson,
  USAGE_KEY_TYPES,
} from './model.js';
import {
  BASE_ERRORS,
  hsmCall,
  type RouteDeps,
  type RouteInput,
  type RouteSpec,
  resolveKey,
  usableKey,
} from './route.js';
import {
  createKeyBody,
  deleteKeyQuery,
  exportKeyBody,
  exportKeyResponse,
  importKeyBody,
  keyIdParams,
  keyResponse,
  listKeysQuery,
  listKeysResponse,
} from './schemas.js';

interface KeyCommonBody {
  keyAlgorithm: string;
  exportability?: string;
  keyCheckValueAlgorithm?: string;
  enabled: boolean;
  alias?: string;
}

interface CreateKeyBody extends KeyCommonBody {
  keyType?: KeyType;
  keyUsage?: string;
}

interface ImportKeyBody extends KeyCommonBody {
  keyType: KeyType;
  keyMaterial: {
    tr31KeyBlock?: { wrappingKeyIdentifier: string; wrappedKeyBlock: string };
    keyCryptogram?: { wrappingKeyIdentifier: string; wrappedKey: string; keyCheckValue?: string };
    keyComponents?: { components: string[]; keyCheckValues?: string[] };
  };
}

interface ExportKeyBody {
  wrappingKeyIdentifier: string;
  format: ExportFormat;
}

function respondKey(deps: RouteDeps, rec: KeyRecord): { key: Record<string, unknown> } {
  return { key: keyJson(rec, deps.arns, deps.keys.aliasesOf(rec.id)) };
}

/** The key a lifecycle call names, noted for its audit record before anything can fail. */
function lifecycleKey(i: RouteInput, deps: RouteDeps): KeyRecord {
  const key = resolveKey(deps, i.params.keyId!, 'keyId');
  i.note({ keyId: key.id, kcv: key.kcv });
  return key;
}

/** Answers with a key record after noting it for the audit record. */
function respondNoted(i: RouteInput, deps: RouteDeps, rec: KeyRecord) {
  i.note({ keyId: rec.id, kcv: rec.kcv });
  return respondKey(deps, rec);
}

function assertAliasFree(deps: RouteDeps, alias: string | undefined): void {
  if (alias !== undefined && deps.keys.hasAlias(alias)) {
    throw new HttpApiError('POSKEY_ERR_ALIAS_EXISTS', `alias ${alias} already exists`, { field: 'alias' });
  }
}

/** The KCV in the method the caller asked for (the HSM computes it from the block when it differs). */
function kcvIn(hsm: HsmApi, block: LmkKeyBlock, have: CheckValue, want: KcvMethod | undefined): CheckValue {
  return want === undefined || want === have.method ? have : hsm.checkValue(block, want);
}

/** Stores a key the HSM just made or imported, with the caller's lifecycle choices. */
function store(
  deps: RouteDeps,
  body: KeyCommonBody,
  made: { keyBlock: LmkKeyBlock; info: KeyInfo },
  keyType: KeyType,
  origin: KeyOrigin,
): KeyRecord {
  const want =
    body.keyCheckValueAlgorithm === undefined ? undefined : KCV_ALGORITHMS[body.keyCheckValueAlgorithm];
  const kcv = kcvIn(deps.hsm, made.keyBlock, made.info.kcv, want);
  return deps.keys.insert(
    {
      keyBlock: made.keyBlock,
      keyType,
      usage: made.info.usage,
      algorithm: made.info.algorithm,
      modeOfUse: made.info.modeOfUse,
      exportability: made.info.exportability,
      kcv: kcv.value,
      kcvMethod: kcv.method,
      origin,
      enabled: body.enabled,
    },
    body.alias,
  );
}

function exportabilityOf(body: KeyCommonBody) {
  return body.exportability === undefined ? undefined : EXPORTABILITIES[body.exportability];
}

function createKey(i: RouteInput, deps: RouteDeps) {
  const body = i.body as CreateKeyBody;
  const actor = i.actor;
  const usage = body.keyUsage === undefined ? undefined : KEY_USAGES[body.keyUsage];
  const keyType = body.keyType ?? (usage === undefined ? undefined : USAGE_KEY_TYPES[usage]);
  i.note({ detail: `${keyType ?? body.keyUsage ?? '?'} ${body.keyAlgorithm}` });
  if (keyType === undefined) {
    throw new HttpApiError('POSKEY_ERR_VALIDATION', 'keyType or keyUsage is required', { field: 'keyType' });
  }
  assertAliasFree(deps, body.alias);
  const kcvMethod =
    body.keyCheckValueAlgorithm === undefined ? undefined : KCV_ALGORITHMS[body.keyCheckValueAlgorithm];
  const made = hsmCall(CREATE_FIELDS, () =>
    deps.hsm.generateKey(
      {
        keyType,
        algorithm: KEY_ALGORITHMS[body.keyAlgorithm]!,
        ...(body.exportability === undefined ? {} : { exportability: exportabilityOf(body)! }),
        ...(kcvMethod === undefined ? {} : { kcvMethod }),
      },
      actor,
    ),
  );
  if (usage !== undefined && made.info.usage !== usage) {
    // Nothing is stored: the block is dropped and the caller asks again with a keyType.
    throw new HttpApiError(
      'POSKEY_ERR_VALIDATION',
      `a ${body.keyAlgorithm} ${keyType} has usage ${made.info.usage}, not ${usage}; give keyType instead`,
      { field: 'keyUsage' },
    );
  }
  return respondNoted(i, deps, store(deps, body, made, keyType, 'POSKEY_HSM'));
}

/** HSM field names → request field names (see `hsmCall`). */
const CREATE_FIELDS = {
  keyType: 'keyType',
  algorithm: 'keyAlgorithm',
  kcvMethod: 'keyCheckValueAlgorithm',
  exportability: 'exportability',
};

const IMPORT_FIELDS = {
  tr31: {
    'source.kek': 'keyMaterial.tr31KeyBlock.wrappingKeyIdentifier',
    'source.block': 'keyMaterial.tr31KeyBlock.wrappedKeyBlock',
  },
  legacy: {
    'source.kek': 'keyMaterial.keyCryptogram.wrappingKeyIdentifier',
    'source.cryptogram': 'keyMaterial.keyCryptogram.wrappedKey',
    'source.kcv': 'keyMaterial.keyCryptogram.keyCheckValue',
  },
  components: {
    'source.components': 'keyMaterial.keyComponents.components',
    'source.kcvs': 'keyMaterial.keyComponents.keyCheckValues',
  },
} as const;

const EXPORT_FIELDS = {
  keyBlock: 'keyId',
  exportability: 'keyId',
  kek: 'wrappingKeyIdentifier',
  format: 'format',
};

/** The HSM's import source for the one key material the body carries. */
function importSource(deps: RouteDeps, m: ImportKeyBody['keyMaterial']): ImportSource {
  const kek = (identifier: string, field: string) =>
    usableKey(deps, identifier, field, KEY_FAMILIES.wrapping, 'unwrapping a key').keyBlock;
  if (m.tr31KeyBlock !== undefined) {
    const t = m.tr31KeyBlock;
    const kekField = IMPORT_FIELDS.tr31['source.kek'];
    return { kind: 'tr31', kek: kek(t.wrappingKeyIdentifier, kekField), block: t.wrappedKeyBlock };
  }
  if (m.keyCryptogram !== undefined) {
    const c = m.keyCryptogram;
    const src: ImportSource = {
      kind: 'legacy',
      kek: kek(c.wrappingKeyIdentifier, IMPORT_FIELDS.legacy['source.kek']),
      cryptogram: c.wrappedKey,
    };
    return c.keyCheckValue === undefined ? src : { ...src, kcv: c.keyCheckValue };
  }
  const k = m.keyComponents!;
  if (k.keyCheckValues !== undefined && k.keyCheckValues.length !== k.components.length) {
    throw new HttpApiError('POSKEY_ERR_VALIDATION', 'one check value per component', {
      field: IMPORT_FIELDS.components['source.kcvs'],
    });
  }
  return k.keyCheckValues === undefined
    ? { kind: 'components', components: k.components }
    : { kind: 'components', components: k.components, kcvs: k.keyCheckValues };
}

/** How the key arrives, for the audit record (the KEK by table id; never the material). */
function importDetail(body: ImportKeyBody): string {
  const m = body.keyMaterial;
  const how =
    m.tr31KeyBlock !== undefined
      ? `TR-31 block under ${m.tr31KeyBlock.wrappingKeyIdentifier}`
      : m.keyCryptogram !== undefined
        ? `cryptogram under ${m.keyCryptogram.wrappingKeyIdentifier}`
        : `${m.keyComponents?.components.length ?? 0} clear components`;
  return `${body.keyType} ${body.keyAlgorithm} from ${how}`;
}

function importKey(i: RouteInput, deps: RouteDeps) {
  const body = i.body as ImportKeyBody;
  const actor = i.actor;
  i.note({ detail: importDetail(body) });
  assertAliasFree(deps, body.alias);
  const source = importSource(deps, body.keyMaterial);
  const fields = { ...CREATE_FIELDS, ...IMPORT_FIELDS[source.kind] };
  const made = hsmCall(fields, () =>
    deps.hsm.importKey(
      {
        keyType: body.keyType,
        algorithm: KEY_ALGORITHMS[body.keyAlgorithm]!,
        ...(body.exportability === undefined ? {} : { exportability: exportabilityOf(body)! }),
        source,
      },
      actor,
    ),
  );
  return respondNoted(i, deps, store(deps, body, made, body.keyType, 'EXTERNAL'));
}

function exportKey(i: RouteInput, deps: RouteDeps) {
  const body = i.body as ExportKeyBody;
  const actor = i.actor;
  i.note({ detail: `${body.format} under ${body.wrappingKeyIdentifier}` });
  const named = resolveKey(deps, i.params.keyId!, 'keyId');
  i.note({ keyId: named.id, kcv: named.kcv });
  const key = usableKey(deps, named.id, 'keyId', KEY_TYPES, 'export');
  const kek = usableKey(
    deps,
    body.wrappingKeyIdentifier,
    'wrappingKeyIdentifier',
    KEY_FAMILIES.wrapping,
    'wrapping',
  );
  i.note({ detail: `${body.format} under ${kek.id}` });
  const out = hsmCall(EXPORT_FIELDS, () =>
    deps.hsm.exportKey({ keyBlock: key.keyBlock, kek: kek.keyBlock, format: body.format }, actor),
  );
  return {
    wrappedKey: {
      wrappingKeyArn: deps.arns.key(kek.id),
      wrappedKeyMaterialFormat: body.format === 'tr31' ? 'TR31_KEY_BLOCK' : 'KEY_CRYPTOGRAM',
      keyMaterial: out.cryptogram,
      keyCheckValue: out.kcv.value,
      keyCheckValueAlgorithm: kcvAlgorithmName(out.kcv.method),
    },
  };
}

const withKey = (extra: number[] = []) => [...BASE_ERRORS, 404, ...extra];

export const KEY_ROUTES: readonly RouteSpec[] = [
  {
    method: 'POST',
    url: '/keys',
    operationId: 'CreateKey',
    summary: 'Generate a key under the LMK and store it',
    tag: 'keys',
    audited: true,
    body: createKeyBody,
    response: keyResponse,
    errors: [...BASE_ERRORS, 409, 503],
    handler: createKey,
  },
  {
    method: 'POST',
    url: '/keys/import',
    operationId: 'ImportKey',
    summary: 'Import a key: TR-31 block or legacy cryptogram under a stored KEK, or clear components',
    tag: 'keys',
    audited: true,
    body: importKeyBody,
    response: keyResponse,
    errors: withKey([409, 503]),
    handler: importKey,
  },
  {
    method: 'POST',
    url: '/keys/:keyId/export',
    operationId: 'ExportKey',
    summary: 'Export a key under a stored KEK/TMK/ZMK as a TR-31 block or legacy cryptogram',
    tag: 'keys',
    audited: true,
    params: keyIdParams,
    body: exportKeyBody,
    response: exportKeyResponse,
    errors: withKey([409, 503]),
    handler: exportKey,
  },
  {
    method: 'GET',
    url: '/keys/:keyId',
    operationId: 'GetKey',
    summary: 'Key metadata: attributes, KCV, state, times, aliases',
    tag: 'keys',
    params: keyIdParams,
    response: keyResponse,
    errors: withKey(),
    handler: (i, d) => respondKey(d, resolveKey(d, i.params.keyId!, 'keyId')),
  },
  {
    method: 'GET',
    url: '/keys',
    operationId: 'ListKeys',
    summary: 'List keys in creation order, optionally by state; paginated with nextToken',
    tag: 'keys',
    querystring: listKeysQuery,
    response: listKeysResponse,
    errors: BASE_ERRORS,
    handler: (i, d) => {
      const q = i.query as { keyState?: KeyState; maxResults?: number; nextToken?: string };
      const page = d.keys.list({
        ...(q.keyState === undefined ? {} : { state: q.keyState }),
        ...(q.maxResults === undefined ? {} : { limit: q.maxResults }),
        ...(q.nextToken === undefined ? {} : { nextToken: q.nextToken }),
      });
      const keys = page.items.map((k) => keySummaryJson(k, d.arns));
      return page.nextToken === undefined ? { keys } : { keys, nextToken: page.nextToken };
    },
  },
  {
    method: 'POST',
    url: '/keys/:keyId/start-usage',
    operationId: 'StartKeyUsage',
    summary: 'Enable a key for cryptographic operations',
    tag: 'keys',
    audited: true,
    params: keyIdParams,
    response: keyResponse,
    errors: withKey([409, 503]),
    handler: (i, d) => respondNoted(i, d, d.keys.setEnabled(lifecycleKey(i, d).id, true, 'keyId')),
  },
  {
    method: 'POST',
    url: '/keys/:keyId/stop-usage',
    operationId: 'StopKeyUsage',
    summary: 'Disable a key: data operations refuse it until usage is started again',
    tag: 'keys',
    audited: true,
    params: keyIdParams,
    response: keyResponse,
    errors: withKey([409, 503]),
    handler: (i, d) => respondNoted(i, d, d.keys.setEnabled(lifecycleKey(i, d).id, false, 'keyId')),
  },
  {
    method: 'DELETE',
    url: '/keys/:keyId',
    operationId: 'DeleteKey',
    summary: 'Schedule deletion after deleteKeyInDays (3–180, default 7); usage stops now',
    tag: 'keys',
    audited: true,
    params: keyIdParams,
    querystring: deleteKeyQuery,
    response: keyResponse,
    errors: withKey([409, 503]),
    handler: (i, d) => {
      const days = (i.query as { deleteKeyInDays?: number }).deleteKeyInDays;
      i.note({ detail: `deletion in ${days ?? DEFAULT_DELETE_DAYS} days` });
      const rec = d.keys.scheduleDeletion(lifecycleKey(i, d).id, days, 'keyId');
      i.note({ detail: `deletion on ${new Date(rec.deleteAt ?? 0).toISOString()}` });
      return respondNoted(i, d, rec);
    },
  },
  {
    method: 'POST',
    url: '/keys/:keyId/restore',
    operationId: 'RestoreKey',
    summary: 'Cancel a scheduled deletion; the key comes back disabled (start usage to use it)',
    tag: 'keys',
    audited: true,
    params: keyIdParams,
    response: keyResponse,
    errors: withKey([409, 503]),
    handler: (i, d) => respondNoted(i, d, d.keys.restore(lifecycleKey(i, d).id, 'keyId')),
  },
];
