/**
 * Moving keys in and out: A6 (import a key from under a ZMK/TMK), A8 (export a key to under a
 * ZMK/TMK), A4 (form a key from components, poskey variant with clear components).
 *
 *   A6: key type, ZMK, key under ZMK (X/U/Y/T/16 H legacy, R/S key block), key scheme LMK,
 *       [%LMK id], [#attributes]  →  key under LMK, KCV (6 H)
 *   A8: key type, [; ZMK/TMK flag], ZMK/TMK, key, key scheme ZMK, [%LMK id], [& exportability]
 *       →  key under ZMK/TMK, KCV (6 H)
 *   A4: number of components (2–9), key type, key scheme LMK, components, [%LMK id], [#attributes]
 *       →  key under LMK, KCV (6 H)
 */
import { parseHeader } from '../../../crypto/tr31-header.js';
import type { ImportSource, KeyAlgorithm, KeyType } from '../../api.js';
import { HsmError } from '../../errors.js';
import {
  type FieldCursor,
  fieldError,
  type KeyBlockAttributes,
  type KeyScheme,
  LEGACY_SCHEME_HEX,
  type WrappedKey,
} from '../fields.js';
import { EXPORT_SCHEMES } from './generate.js';
import {
  ATTRIBUTE_ALGORITHMS,
  assertAttributes,
  assertKeyTypeCode,
  assertSchemeFits,
  exportFormatOf,
  formatWrapped,
  KEY_BLOCK_TYPE,
  kcv6,
  readKeyTypeCode,
  resolveAlgorithm,
  resolveKeyType,
} from './keys.js';
import { defineCommand } from './types.js';

/** Algorithm a legacy cryptogram's length implies when no `#` attributes say otherwise. */
const ALGORITHM_BY_BYTES: Readonly<Record<number, KeyAlgorithm>> = { 8: 'des', 16: 'tdes2', 24: 'tdes3' };

/** TR-31 algorithm letter → the algorithm assumed for an import that names none (length is inside the block). */
const ALGORITHM_BY_LETTER: Readonly<Record<string, KeyAlgorithm>> = {
  T: 'tdes2',
  A: 'aes128',
  D: 'des',
  '4': 'sm4',
};

/** Generic TR-31 usages a received key block may carry → key type (zone side). */
const TR31_USAGE_TYPES: Readonly<Record<string, KeyType>> = {
  K0: 'ZMK',
  P0: 'ZPK',
  D0: 'ZEK',
  B0: 'BDK',
  M0: 'ZAK',
  M1: 'ZAK',
  M3: 'ZAK',
  M6: 'ZAK',
};

interface ImportRequest {
  keyTypeCode: string;
  zmk: string;
  key: WrappedKey;
  lmkId?: string;
  attrs?: KeyBlockAttributes;
}

/** Key type and algorithm of a received TR-31 block, from its (not yet authenticated) header. */
function describeReceivedBlock(block: string): { keyType: KeyType; algorithm: KeyAlgorithm } {
  let header: ReturnType<typeof parseHeader>;
  try {
    header = parseHeader(block);
  } catch (e) {
    throw new HsmError('POSKEY_ERR_PAYSHIELD_FIELD', 'key block header is malformed', {
      field: 'key',
      payShield: '83',
      cause: e,
    });
  }
  const keyType = TR31_USAGE_TYPES[header.usage];
  if (keyType === undefined) {
    throw fieldError('key', `key block usage ${header.usage} is not one this HSM imports`, 'A6');
  }
  const algorithm = ALGORITHM_BY_LETTER[header.algorithm];
  if (algorithm === undefined)
    throw fieldError('key', `key block algorithm ${header.algorithm} is not supported`, 'A7');
  return { keyType, algorithm };
}

function importTarget(req: ImportRequest): {
  keyType: KeyType;
  algorithm: KeyAlgorithm;
  source: ImportSource;
} {
  if (req.key.scheme === 'R' || req.key.scheme === 'S') {
    const fromBlock = describeReceivedBlock(req.key.value);
    const keyType =
      req.keyTypeCode === KEY_BLOCK_TYPE && req.attrs === undefined
        ? fromBlock.keyType
        : resolveKeyType(req.keyTypeCode, req.attrs, 'zone');
    return {
      keyType,
      algorithm: resolveAlgorithm(req.attrs, fromBlock.algorithm),
      source: { kind: 'tr31', kek: req.zmk, block: req.key.value },
    };
  }
  const keyType = resolveKeyType(req.keyTypeCode, req.attrs, 'zone');
  const algorithm = resolveAlgorithm(req.attrs, ALGORITHM_BY_BYTES[req.key.value.length / 2]!);
  assertSchemeFits(req.key.scheme, algorithm, 'key');
  return { keyType, algorithm, source: { kind: 'legacy', kek: req.zmk, cryptogram: req.key.value } };
}

export const A6 = defineCommand({
  code: 'A6',
  name: 'Import a key',
  parse(c): ImportRequest {
    const keyTypeCode = readKeyTypeCode(c);
    const zmk = c.lmkKey('zmk');
    const key = c.wrappedKey('key');
    c.schemeFlag('keySchemeLmk', ['S']);
    return { keyTypeCode, zmk, key, lmkId: c.lmkId(), attrs: c.keyBlockAttributes() };
  },
  run(hsm, req, ctx) {
    const { keyType, algorithm, source } = importTarget(req);
    const out = hsm.importKey(
      {
        keyType,
        algorithm,
        exportability: req.attrs?.exportability as 'E' | 'N' | 'S' | undefined,
        source,
        lmkId: req.lmkId,
      },
      ctx.actor,
    );
    return { keyBlock: out.keyBlock, kcv: kcv6(out.info.kcv) };
  },
  format: (r) => `S${r.keyBlock}${r.kcv}`,
});

interface ExportRequest {
  keyTypeCode: string;
  kek: string;
  key: string;
  scheme: KeyScheme;
  exportability?: string;
}

export const A8 = defineCommand({
  code: 'A8',
  name: 'Export a key',
  parse(c): ExportRequest {
    const keyTypeCode = readKeyTypeCode(c);
    if (c.take(';')) c.oneOf('zmkTmkFlag', 1, ['0', '1']);
    const kek = c.lmkKey('zmkTmk');
    const key = c.lmkKey('key');
    const scheme = c.schemeFlag('keySchemeZmk', EXPORT_SCHEMES);
    c.lmkId();
    const req: ExportRequest = { keyTypeCode, kek, key, scheme };
    if (c.take('&')) {
      if (exportFormatOf(scheme) !== 'tr31')
        throw fieldError('exportability', 'only key block exports take &', '15');
      req.exportability = c.oneOf('exportability', 1, ['E', 'N', 'S'], 'AA');
    }
    return req;
  },
  run(hsm, req, ctx) {
    const info = hsm.describeKey(req.key);
    assertKeyTypeCode(req.keyTypeCode, info, 'key');
    assertSchemeFits(req.scheme, info.algorithm);
    const out = hsm.exportKey(
      { keyBlock: req.key, kek: req.kek, format: exportFormatOf(req.scheme) },
      ctx.actor,
    );
    // TR-31 header position 11 is the exported block's exportability.
    if (req.exportability !== undefined && out.cryptogram[11] !== req.exportability) {
      throw fieldError('exportability', `exported block has exportability ${out.cryptogram[11]}`, 'AA');
    }
    return { key: formatWrapped(req.scheme, out.cryptogram), kcv: kcv6(out.kcv) };
  },
  format: (r) => `${r.key}${r.kcv}`,
});

interface ComponentsRequest {
  keyTypeCode: string;
  components: string[];
  lmkId?: string;
  attrs?: KeyBlockAttributes;
}

/** One clear component: X/U + 32 H, Y/T + 48 H, or 16 H. Key blocks are refused (they are not clear). */
function readComponent(c: FieldCursor, field: string): string {
  const scheme = c.peek();
  if (scheme === 'S' || scheme === 'R') {
    throw fieldError(
      field,
      'components are clear hex in this HSM (X/U/Y/T + hex or 16 H)',
      '26',
      'POSKEY_ERR_PAYSHIELD_KEY_SCHEME',
    );
  }
  return c.wrappedKey(field).value;
}

export const A4 = defineCommand({
  code: 'A4',
  name: 'Form a key from components',
  parse(c): ComponentsRequest {
    const count = c.decimal('numberOfComponents', 1, 2, 9, '03');
    const keyTypeCode = readKeyTypeCode(c);
    c.schemeFlag('keySchemeLmk', ['S']);
    const components: string[] = [];
    for (let i = 0; i < count; i++) components.push(readComponent(c, `components[${i}]`));
    if (components.some((x) => x.length !== components[0]!.length)) {
      throw fieldError('components', 'components must all have the same length', '27');
    }
    return { keyTypeCode, components, lmkId: c.lmkId(), attrs: c.keyBlockAttributes() };
  },
  run(hsm, req, ctx) {
    if (!ctx.allowClearComponents) {
      throw new HsmError(
        'POSKEY_ERR_PAYSHIELD_NOT_AUTHORISED',
        'clear components are disabled on this port',
        {
          field: 'components',
          payShield: '17',
        },
      );
    }
    if (req.attrs !== undefined) assertAttributes(req.attrs);
    const keyType = resolveKeyType(req.keyTypeCode, req.attrs, 'zone');
    const bytes = req.components[0]!.length / 2;
    const algorithm =
      req.attrs === undefined ? ALGORITHM_BY_BYTES[bytes]! : ATTRIBUTE_ALGORITHMS[req.attrs.algorithm]!;
    assertSchemeFits(schemeForBytes(bytes), algorithm, 'components');
    const out = hsm.importKey(
      {
        keyType,
        algorithm,
        exportability: req.attrs?.exportability as 'E' | 'N' | 'S' | undefined,
        source: { kind: 'components', components: req.components },
        lmkId: req.lmkId,
      },
      ctx.actor,
    );
    return { keyBlock: out.keyBlock, kcv: kcv6(out.info.kcv) };
  },
  format: (r) => `S${r.keyBlock}${r.kcv}`,
});

function schemeForBytes(bytes: number): KeyScheme {
  const entry = Object.entries(LEGACY_SCHEME_HEX).find(([, hex]) => hex === bytes * 2);
  return (entry?.[0] ?? 'Z') as KeyScheme;
}
