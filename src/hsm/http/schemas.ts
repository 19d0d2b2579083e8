/**
 * The JSON Schemas of the HTTP API, written once: Fastify validates requests and serialises
 * responses with them, and `openapi.ts` publishes the same objects. Every object is closed
 * (`additionalProperties: false`) and every string has a pattern or enum and a maximum length.
 * Schemas with a `title` become named components in the OpenAPI document.
 */
import { MAX_COMPONENTS, MIN_COMPONENTS } from '../../crypto/keys.js';
import { DEFAULT_DELETE_DAYS, KEY_STATES, MAX_DELETE_DAYS, MAX_PAGE, MIN_DELETE_DAYS } from './key-table.js';
import {
  DUKPT_KEY_TYPES,
  EXPORTABILITIES,
  KCV_ALGORITHMS,
  KEY_ALGORITHMS,
  KEY_TYPES,
  KEY_USAGES,
  MAC_ALGORITHMS,
  PIN_FORMATS,
} from './model.js';

export type JsonSchema = Readonly<Record<string, unknown>>;

/** Largest data (MAC input, plaintext, ciphertext) in bytes; AWS allows 4096 hex characters. */
export const MAX_DATA_BYTES = 4096;

const HEX_BYTES = '^(?:[0-9A-Fa-f]{2})+$';

/** Hex of a whole number of bytes, `min`–`max` bytes. */
export function hex(min: number, max: number, description: string): JsonSchema {
  return { type: 'string', minLength: min * 2, maxLength: max * 2, pattern: HEX_BYTES, description };
}

/** Hex of exactly one of the given byte lengths. */
function hexOf(lengths: readonly number[], description: string): JsonSchema {
  const alts = lengths.map((n) => `[0-9A-Fa-f]{${n * 2}}`).join('|');
  return {
    type: 'string',
    minLength: Math.min(...lengths) * 2,
    maxLength: Math.max(...lengths) * 2,
    pattern: `^(?:${alts})$`,
    description,
  };
}

function enumOf(values: readonly string[], description: string): JsonSchema {
  return { type: 'string', enum: [...values], description };
}

function object(
  properties: Record<string, JsonSchema>,
  required: string[] = [],
  extra: JsonSchema = {},
): JsonSchema {
  return { type: 'object', properties, required, additionalProperties: false, ...extra };
}

/** `key-` + a UUID v4, or the first format (`key-` + 16 hex digits) still found in older tables. */
const KEY_ID = 'key-(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16})';
const ALIAS = 'alias/[a-zA-Z0-9/_-]+';

export const aliasName: JsonSchema = {
  type: 'string',
  minLength: 7,
  maxLength: 256,
  pattern: `^${ALIAS}$`,
  description: 'alias/ followed by letters, digits, /, _ or -; 7–256 characters',
};

export const keyIdentifier: JsonSchema = {
  type: 'string',
  minLength: 7,
  maxLength: 322,
  pattern: `^(?:${KEY_ID}|${ALIAS}|arn:poskey:hsm:[a-z0-9-]{1,32}:(?:key/${KEY_ID}|${ALIAS}))$`,
  description: 'key id (key-<uuid>), alias name, or the ARN of either',
};

const keyType = enumOf(
  KEY_TYPES,
  'key role: TMK/ZMK/KEK wrap keys, TPK/ZPK PIN, TAK/ZAK MAC, TDK/ZEK/DEK data, BDK',
);
const keyUsage = enumOf(Object.keys(KEY_USAGES), 'TR-31 key usage (AWS names); an alternative to keyType');
const keyAlgorithm = enumOf(
  Object.keys(KEY_ALGORITHMS),
  'algorithm and length; SM4 and DES are poskey additions',
);
const exportability = enumOf(Object.keys(EXPORTABILITIES), 'TR-31 exportability E / N / S');
const kcvAlgorithm = enumOf(Object.keys(KCV_ALGORITHMS), 'ANSI_X9_24: E(0) leftmost 3 bytes; CMAC: 5 bytes');
const keyState = enumOf(KEY_STATES, 'lifecycle state');
const kcv = hex(2, 8, 'key check value, 4–16 hex digits');
const wrappingKeyIdentifier = { ...keyIdentifier, description: 'the KEK/TMK/ZMK the key travels under' };

/** Page controls shared by the list calls. */
const pageQuery = {
  maxResults: { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: MAX_PAGE },
  nextToken: { type: 'string', minLength: 1, maxLength: 400, pattern: '^[A-Za-z0-9_-]+$' },
};

export const keyIdParams = object({ keyId: keyIdentifier }, ['keyId']);
export const aliasParams = object({ aliasName }, ['aliasName']);

// ---- Responses ----

const timestamp: JsonSchema = { type: 'string', format: 'date-time' };

const modesOfUse = object(
  Object.fromEntries(
    ['encrypt', 'decrypt', 'wrap', 'unwrap', 'generate', 'sign', 'verify', 'deriveKey', 'noRestrictions'].map(
      (k) => [k, { type: 'boolean' }],
    ),
  ),
  ['encrypt', 'decrypt', 'wrap', 'unwrap', 'generate', 'sign', 'verify', 'deriveKey', 'noRestrictions'],
  { title: 'KeyModesOfUse' },
);

const keyAttributes = object(
  {
    keyUsage: { type: 'string', maxLength: 64 },
    keyClass: { type: 'string', enum: ['SYMMETRIC_KEY'] },
    keyAlgorithm: { type: 'string', maxLength: 16 },
    keyModesOfUse: modesOfUse,
  },
  ['keyUsage', 'keyClass', 'keyAlgorithm', 'keyModesOfUse'],
  { title: 'KeyAttributes' },
);

const keyArn = { type: 'string', maxLength: 322 };

export const keyObject = object(
  {
    keyArn,
    keyId: { type: 'string', maxLength: 40 },
    keyType: { type: 'string', maxLength: 8 },
    keyAttributes,
    keyCheckValue: { type: 'string', maxLength: 32 },
    keyCheckValueAlgorithm: { type: 'string', maxLength: 16 },
    exportable: { type: 'boolean' },
    exportability: { type: 'string', maxLength: 16 },
    keyState: { type: 'string', maxLength: 16 },
    enabled: { type: 'boolean' },
    keyOrigin: { type: 'string', maxLength: 16 },
    createTimestamp: timestamp,
    usageStartTimestamp: timestamp,
    usageStopTimestamp: timestamp,
    deletePendingTimestamp: timestamp,
    deleteTimestamp: timestamp,
    lmkId: { type: 'string', maxLength: 2 },
    aliases: { type: 'array', items: { type: 'string', maxLength: 256 } },
  },
  [
    'keyArn',
    'keyId',
    'keyType',
    'keyAttributes',
    'keyCheckValue',
    'keyCheckValueAlgorithm',
    'exportable',
    'keyState',
    'enabled',
    'keyOrigin',
    'createTimestamp',
  ],
  { title: 'Key' },
);

export const keyResponse = object({ key: keyObject }, ['key'], { title: 'KeyResponse' });

const keySummary = object(
  {
    keyArn,
    keyId: { type: 'string', maxLength: 40 },
    keyType: { type: 'string', maxLength: 8 },
    keyAttributes,
    keyCheckValue: { type: 'string', maxLength: 32 },
    exportable: { type: 'boolean' },
    keyState: { type: 'string', maxLength: 16 },
    enabled: { type: 'boolean' },
  },
  ['keyArn', 'keyId', 'keyType', 'keyAttributes', 'keyCheckValue', 'exportable', 'keyState', 'enabled'],
  { title: 'KeySummary' },
);

export const listKeysResponse = object(
  { keys: { type: 'array', items: keySummary }, nextToken: { type: 'string' } },
  ['keys'],
  { title: 'ListKeysResponse' },
);

const aliasObject = object({ aliasName: { type: 'string', maxLength: 256 }, keyArn }, ['aliasName'], {
  title: 'Alias',
});

export const aliasResponse = object({ alias: aliasObject }, ['alias'], { title: 'AliasResponse' });

export const listAliasesResponse = object(
  { aliases: { type: 'array', items: aliasObject }, nextToken: { type: 'string' } },
  ['aliases'],
  { title: 'ListAliasesResponse' },
);

export const emptyResponse = object({}, [], { title: 'Empty' });

export const errorBody = object(
  {
    type: { type: 'string' },
    code: { type: 'string' },
    field: { type: 'string' },
    message: { type: 'string' },
    reason: { type: 'string' },
  },
  ['type', 'code', 'message'],
  { title: 'Error' },
);

// ---- Control plane requests ----

const keyCommon = {
  keyAlgorithm,
  exportability,
  keyCheckValueAlgorithm: kcvAlgorithm,
  enabled: { type: 'boolean', default: true },
  alias: aliasName,
};

export const createKeyBody = object({ keyType, keyUsage, ...keyCommon }, ['keyAlgorithm'], {
  title: 'CreateKeyRequest',
  description: 'keyType or keyUsage is required',
});

const tr31KeyBlock = object(
  {
    wrappingKeyIdentifier,
    wrappedKeyBlock: {
      type: 'string',
      minLength: 16,
      maxLength: 9999,
      pattern: '^[\\x20-\\x7E]+$',
      description: 'TR-31 key block (printable ASCII)',
    },
  },
  ['wrappingKeyIdentifier', 'wrappedKeyBlock'],
);

const keyCryptogram = object(
  {
    wrappingKeyIdentifier,
    wrappedKey: hexOf([8, 16, 24, 32], 'the key encrypted (ECB) under the wrapping key'),
    keyCheckValue: kcv,
  },
  ['wrappingKeyIdentifier', 'wrappedKey'],
);

const componentHex = hexOf([8, 16, 24, 32], 'one clear key component');

const keyComponents = object(
  {
    components: { type: 'array', minItems: MIN_COMPONENTS, maxItems: MAX_COMPONENTS, items: componentHex },
    keyCheckValues: { type: 'array', minItems: MIN_COMPONENTS, maxItems: MAX_COMPONENTS, items: kcv },
  },
  ['components'],
);

export const importKeyBody = object(
  {
    keyType,
    ...keyCommon,
    keyMaterial: object({ tr31KeyBlock, keyCryptogram, keyComponents }, [], {
      minProperties: 1,
      maxProperties: 1,
      description: 'exactly one of tr31KeyBlock, keyCryptogram, keyComponents',
    }),
  },
  ['keyType', 'keyAlgorithm', 'keyMaterial'],
  { title: 'ImportKeyRequest' },
);

export const exportKeyBody = object(
  { wrappingKeyIdentifier, format: enumOf(['tr31', 'legacy'], 'TR-31 key block, or legacy ECB cryptogram') },
  ['wrappingKeyIdentifier', 'format'],
  { title: 'ExportKeyRequest' },
);

export const exportKeyResponse = object(
  {
    wrappedKey: object(
      {
        wrappingKeyArn: keyArn,
        wrappedKeyMaterialFormat: { type: 'string', enum: ['TR31_KEY_BLOCK', 'KEY_CRYPTOGRAM'] },
        keyMaterial: { type: 'string', maxLength: 9999 },
        keyCheckValue: { type: 'string', maxLength: 32 },
        keyCheckValueAlgorithm: { type: 'string', maxLength: 16 },
      },
      [
        'wrappingKeyArn',
        'wrappedKeyMaterialFormat',
        'keyMaterial',
        'keyCheckValue',
        'keyCheckValueAlgorithm',
      ],
    ),
  },
  ['wrappedKey'],
  { title: 'ExportKeyResponse' },
);

export const listKeysQuery = object({ keyState, ...pageQuery });

export const deleteKeyQuery = object({
  deleteKeyInDays: {
    type: 'integer',
    minimum: MIN_DELETE_DAYS,
    maximum: MAX_DELETE_DAYS,
    default: DEFAULT_DELETE_DAYS,
    description: 'waiting period before the key is deleted',
  },
});

export const createAliasBody = object({ aliasName, keyArn: keyIdentifier }, ['aliasName'], {
  title: 'CreateAliasRequest',
});

export const updateAliasBody = object({ keyArn: keyIdentifier }, [], {
  title: 'UpdateAliasRequest',
  description: 'without keyArn the alias is disassociated from its key',
});

export const listAliasesQuery = object({ keyArn: keyIdentifier, ...pageQuery });

// ---- Data plane ----

const pan = {
  type: 'string',
  minLength: 12,
  maxLength: 19,
  pattern: '^[0-9]+$',
  description: 'primary account number, 12–19 digits',
};
const pinFormat = enumOf(Object.keys(PIN_FORMATS), 'PIN block format');
const ksn = {
  type: 'string',
  minLength: 20,
  maxLength: 24,
  pattern: '^(?:[0-9A-Fa-f]{20}|[0-9A-Fa-f]{24})$',
  description: 'key serial number: 20 hex (TDES DUKPT) or 24 hex (AES DUKPT)',
};

export const translatePinBody = object(
  {
    incomingKeyIdentifier: keyIdentifier,
    outgoingKeyIdentifier: keyIdentifier,
    incomingPinBlockFormat: pinFormat,
    outgoingPinBlockFormat: pinFormat,
    primaryAccountNumber: pan,
    encryptedPinBlock: hexOf([8, 16], 'the PIN block under the incoming key'),
    incomingDukptAttributes: object(
      {
        keySerialNumber: ksn,
        dukptKeyDerivationType: enumOf(Object.keys(DUKPT_KEY_TYPES), 'AES DUKPT working key type'),
      },
      ['keySerialNumber'],
      { description: 'when present, the incoming key is a BDK and the PIN key is derived with the KSN' },
    ),
  },
  [
    'incomingKeyIdentifier',
    'outgoingKeyIdentifier',
    'incomingPinBlockFormat',
    'outgoingPinBlockFormat',
    'encryptedPinBlock',
  ],
  { title: 'TranslatePinRequest' },
);

export const translatePinResponse = object(
  { pinBlock: { type: 'string', maxLength: 32 }, keyArn, keyCheckValue: { type: 'string', maxLength: 32 } },
  ['pinBlock', 'keyArn', 'keyCheckValue'],
  { title: 'TranslatePinResponse' },
);

const macCommon = {
  keyIdentifier,
  messageData: hex(1, MAX_DATA_BYTES, 'the message (MAB), hex'),
  macAlgorithm: enumOf(Object.keys(MAC_ALGORITHMS), 'MAC algorithm'),
  padding: { type: 'integer', enum: [1, 2, 3], description: 'ISO 9797-1 padding method (default 1)' },
  macLength: { type: 'integer', minimum: 4, maximum: 16, description: 'MAC length in bytes' },
  unionPayOutput: enumOf(['HEX', 'BINARY'], 'UNIONPAY_ECB only: 8 ASCII hex characters or 8 bytes'),
  dukptAttributes: object(
    { keySerialNumber: ksn, direction: enumOf(['REQUEST', 'RESPONSE'], 'DUKPT MAC key variant') },
    ['keySerialNumber', 'direction'],
    { description: 'when present, the key is a BDK and the MAC key is derived with the KSN' },
  ),
};

export const generateMacBody = object(macCommon, ['keyIdentifier', 'messageData', 'macAlgorithm'], {
  title: 'GenerateMacRequest',
});

export const verifyMacBody = object(
  { ...macCommon, mac: hex(4, 16, 'the MAC to verify') },
  ['keyIdentifier', 'messageData', 'macAlgorithm', 'mac'],
  { title: 'VerifyMacRequest' },
);

export const generateMacResponse = object(
  { mac: { type: 'string', maxLength: 32 }, keyArn, keyCheckValue: { type: 'string', maxLength: 32 } },
  ['mac', 'keyArn', 'keyCheckValue'],
  { title: 'GenerateMacResponse' },
);

export const verifyMacResponse = object(
  { verified: { type: 'boolean' }, keyArn, keyCheckValue: { type: 'string', maxLength: 32 } },
  ['verified', 'keyArn', 'keyCheckValue'],
  { title: 'VerifyMacResponse' },
);

const dataCommon = {
  mode: enumOf(['ECB', 'CBC'], 'block cipher mode'),
  initializationVector: hexOf([8, 16], 'CBC only: the IV (default zeros)'),
};

export const encryptBody = object(
  { plainText: hex(1, MAX_DATA_BYTES, 'whole blocks of plaintext, hex'), ...dataCommon },
  ['plainText', 'mode'],
  { title: 'EncryptDataRequest' },
);

export const decryptBody = object(
  { cipherText: hex(1, MAX_DATA_BYTES, 'whole blocks of ciphertext, hex'), ...dataCommon },
  ['cipherText', 'mode'],
  { title: 'DecryptDataRequest' },
);

export const encryptResponse = object(
  {
    cipherText: { type: 'string', maxLength: MAX_DATA_BYTES * 2 },
    keyArn,
    keyCheckValue: { type: 'string' },
  },
  ['cipherText', 'keyArn', 'keyCheckValue'],
  { title: 'EncryptDataResponse' },
);

export const decryptResponse = object(
  { plainText: { type: 'string', maxLength: MAX_DATA_BYTES * 2 }, keyArn, keyCheckValue: { type: 'string' } },
  ['plainText', 'keyArn', 'keyCheckValue'],
  { title: 'DecryptDataResponse' },
);

// ---- Meta ----

const count = { type: 'integer', minimum: 0 };
const counts = { type: 'object', additionalProperties: count };

/** GET /diagnostics: the HSM's diagnostics, plus what the service adds (audit position, payShield). */
export const diagnosticsResponse = object(
  {
    version: { type: 'string', maxLength: 32 },
    uptimeSeconds: { type: 'number', minimum: 0 },
    dev: { type: 'boolean' },
    lmks: {
      type: 'array',
      items: object({ id: { type: 'string' }, kcv: { type: 'string' }, dev: { type: 'boolean' } }, [
        'id',
        'kcv',
        'dev',
      ]),
    },
    counters: counts,
    keyCache: object({ size: count, hits: count, misses: count, evictions: count }, [
      'size',
      'hits',
      'misses',
      'evictions',
    ]),
    audit: object({ file: { type: 'string' }, lastSeq: count, writes: count }, ['lastSeq', 'writes']),
    payShield: object(
      {
        connections: count,
        accepted: count,
        refused: count,
        frameErrors: count,
        commands: counts,
        errors: counts,
      },
      ['connections', 'accepted', 'refused', 'frameErrors', 'commands', 'errors'],
    ),
  },
  ['version', 'uptimeSeconds', 'lmks', 'counters', 'keyCache'],
  { title: 'Diagnostics' },
);
