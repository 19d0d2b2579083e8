/**
 * Key vocabulary shared by the key-management commands: payShield key type codes and key block
 * attributes → the API's KeyType and KeyAlgorithm, key schemes under a ZMK/TMK → export formats,
 * and the 6-hex check values payShield responses carry.
 *
 * Key type codes (3 H, research hsm.md §2, ThalesSim KeyTypeTable / jPOS): 000 ZMK, 001 ZPK,
 * 002 TMK/TPK/PVK, 003 TAK, 008 ZAK, 009 BDK, 00A ZEK, 00B DEK; FFF = "see the key block
 * attributes" (payShield key-block LMK convention).
 */
import type { CheckValue } from '../../../crypto/kcv.js';
import { MODES_OF_USE } from '../../../crypto/tr31-header.js';
import type { ExportFormat, KeyAlgorithm, KeyInfo, KeyType } from '../../api.js';
import { HsmError } from '../../errors.js';
import { type FieldCursor, fieldError, type KeyBlockAttributes, type KeyScheme } from '../fields.js';

/** Key types each code stands for; the first is the one a generate/import command creates. */
export const KEY_TYPE_CODES: Readonly<Record<string, readonly KeyType[]>> = Object.freeze({
  '000': ['ZMK', 'KEK'],
  '001': ['ZPK'],
  '002': ['TMK', 'TPK'],
  '003': ['TAK'],
  '008': ['ZAK'],
  '009': ['BDK'],
  '00A': ['ZEK'],
  '00B': ['DEK', 'TDK'],
});

/** The key type code that defers to `#` key block attributes. */
export const KEY_BLOCK_TYPE = 'FFF';

/**
 * Key block usage → key type. payShield's numeric usages name one type; the generic TR-31 usages
 * name a family whose member depends on the command: zone keys for A0/A6/A4 (keys exchanged with
 * other hosts), terminal keys for HC/HA (keys sent to a terminal under its TMK).
 */
export const NUMERIC_USAGES: Readonly<Record<string, KeyType>> = {
  '21': 'DEK',
  '22': 'ZEK',
  '23': 'TDK',
  '51': 'TMK',
  '52': 'ZMK',
  '71': 'TPK',
  '72': 'ZPK',
};

const GENERIC_USAGES: Readonly<Record<string, { zone: KeyType; terminal: KeyType }>> = {
  K0: { zone: 'ZMK', terminal: 'TMK' },
  P0: { zone: 'ZPK', terminal: 'TPK' },
  D0: { zone: 'ZEK', terminal: 'TDK' },
  B0: { zone: 'BDK', terminal: 'BDK' },
  M0: { zone: 'ZAK', terminal: 'TAK' },
  M1: { zone: 'ZAK', terminal: 'TAK' },
  M3: { zone: 'ZAK', terminal: 'TAK' },
  M6: { zone: 'ZAK', terminal: 'TAK' },
};

/** Usage family of each key type, to check a key type code against `#` attributes. */
const USAGE_FAMILY: Readonly<Record<KeyType, readonly string[]>> = {
  TMK: ['K0', '51'],
  ZMK: ['K0', '52'],
  KEK: ['K0'],
  TPK: ['P0', '71'],
  ZPK: ['P0', '72'],
  TAK: ['M0', 'M1', 'M3', 'M6'],
  ZAK: ['M0', 'M1', 'M3', 'M6'],
  TDK: ['D0', '23'],
  ZEK: ['D0', '22'],
  DEK: ['D0', '21'],
  BDK: ['B0'],
};

/**
 * `#` algorithm codes (2 A) → key algorithm. T2/T3/A1–A3 follow payShield's key block attributes;
 * DS and T1 are single-length DES (legacy UnionPay MAKs only); SM is poskey's vendor code for SM4.
 */
export const ATTRIBUTE_ALGORITHMS: Readonly<Record<string, KeyAlgorithm>> = Object.freeze({
  DS: 'des',
  T1: 'des',
  T2: 'tdes2',
  T3: 'tdes3',
  A1: 'aes128',
  A2: 'aes192',
  A3: 'aes256',
  SM: 'sm4',
});

/** Clear key length in bytes. */
export const KEY_BYTES: Readonly<Record<KeyAlgorithm, number>> = Object.freeze({
  des: 8,
  tdes2: 16,
  tdes3: 24,
  aes128: 16,
  aes192: 24,
  aes256: 32,
  sm4: 16,
});

/** Legacy scheme letters by key length (what a response uses when the request names no scheme). */
export const LEGACY_BY_BYTES: Readonly<Record<number, KeyScheme>> = { 8: 'Z', 16: 'X', 24: 'Y' };

/** Reads a 3-character key type code: one of KEY_TYPE_CODES or FFF (error 04 otherwise). */
export function readKeyTypeCode(cursor: FieldCursor, payShield = '04', field = 'keyType'): string {
  const code = cursor.fixed(field, 3, 'alnum', payShield).toUpperCase();
  if (code !== KEY_BLOCK_TYPE && !Object.hasOwn(KEY_TYPE_CODES, code)) {
    throw fieldError(
      field,
      `key type code ${code} is not supported`,
      payShield,
      'POSKEY_ERR_PAYSHIELD_KEY_TYPE',
    );
  }
  return code;
}

/**
 * Checks the `#` attributes this HSM can honour: a known usage, algorithm and mode of use, and key
 * version 00 (the API does not carry versions).
 * @throws A6 usage, A7 algorithm, A8 mode of use, A9 key version
 */
export function assertAttributes(attrs: KeyBlockAttributes): void {
  if (!Object.hasOwn(NUMERIC_USAGES, attrs.usage) && !Object.hasOwn(GENERIC_USAGES, attrs.usage)) {
    throw fieldError('keyUsage', `key usage ${attrs.usage} is not one this HSM generates`, 'A6');
  }
  if (!Object.hasOwn(ATTRIBUTE_ALGORITHMS, attrs.algorithm)) {
    throw fieldError(
      'algorithm',
      `algorithm ${attrs.algorithm} is not T1, T2, T3, DS, A1, A2, A3 or SM`,
      'A7',
    );
  }
  if (!Object.hasOwn(MODES_OF_USE, attrs.modeOfUse)) {
    throw fieldError('modeOfUse', `mode of use ${attrs.modeOfUse} is not a TR-31 mode`, 'A8');
  }
  if (attrs.keyVersion !== '00') {
    throw fieldError('keyVersion', 'key version numbers other than 00 are not supported', 'A9');
  }
}

/**
 * The key type a command creates from its key type code and `#` attributes.
 * @param side zone keys (A0, A6, A4) or terminal keys (HC, HA) for the generic TR-31 usages
 * @throws 04 for FFF without attributes, A6 for a usage outside the code's family
 */
export function resolveKeyType(
  code: string,
  attrs: KeyBlockAttributes | undefined,
  side: 'zone' | 'terminal',
): KeyType {
  if (attrs !== undefined) assertAttributes(attrs);
  if (code !== KEY_BLOCK_TYPE) {
    const keyType = KEY_TYPE_CODES[code]![0]!;
    if (attrs !== undefined && !USAGE_FAMILY[keyType].includes(attrs.usage)) {
      throw fieldError(
        'keyUsage',
        `key usage ${attrs.usage} does not fit key type ${code} (${keyType})`,
        'A6',
      );
    }
    return keyType;
  }
  if (attrs === undefined) {
    throw fieldError(
      'keyType',
      'key type FFF needs key block attributes (#…)',
      '04',
      'POSKEY_ERR_PAYSHIELD_KEY_TYPE',
    );
  }
  return NUMERIC_USAGES[attrs.usage] ?? GENERIC_USAGES[attrs.usage]![side];
}

/** The algorithm from `#` attributes, else `fallback`. */
export function resolveAlgorithm(
  attrs: KeyBlockAttributes | undefined,
  fallback: KeyAlgorithm,
): KeyAlgorithm {
  return attrs === undefined ? fallback : ATTRIBUTE_ALGORITHMS[attrs.algorithm]!;
}

/**
 * Refuses a generated or imported key whose authenticated attributes differ from what the request
 * asked for in `#` (the HSM assigns mode of use and the precise TR-31 usage per key type).
 * @throws A8 for another mode of use, A6 for another TR-31 usage
 */
export function assertGranted(attrs: KeyBlockAttributes | undefined, info: KeyInfo): void {
  if (attrs === undefined) return;
  if (info.modeOfUse !== attrs.modeOfUse) {
    throw fieldError('modeOfUse', `this HSM gives ${info.keyType} keys mode of use ${info.modeOfUse}`, 'A8');
  }
  if (!/^\d\d$/.test(attrs.usage) && info.usage !== attrs.usage) {
    throw fieldError('keyUsage', `this HSM gives ${info.keyType} keys usage ${info.usage}`, 'A6');
  }
}

/**
 * Refuses a key whose type does not match an explicit key type code (FFF matches anything).
 * @throws BD (incompatible key types)
 */
export function assertKeyTypeCode(code: string | undefined, info: KeyInfo, field = 'keyType'): void {
  if (code === undefined || code === KEY_BLOCK_TYPE) return;
  if (!KEY_TYPE_CODES[code]!.includes(info.keyType)) {
    throw new HsmError('POSKEY_ERR_PAYSHIELD_KEY_TYPE', `key is a ${info.keyType}, not key type ${code}`, {
      field,
      payShield: 'BD',
    });
  }
}

/** R and S travel as key blocks; the legacy letters as an ECB cryptogram. */
export function exportFormatOf(scheme: KeyScheme): ExportFormat {
  return scheme === 'R' || scheme === 'S' ? 'tr31' : 'legacy';
}

/**
 * Refuses a legacy scheme whose length does not fit the key (X/U double, Y/T triple, Z single).
 * @throws 26 (invalid key scheme for this key)
 */
export function assertSchemeFits(scheme: KeyScheme, algorithm: KeyAlgorithm, field = 'keyScheme'): void {
  if (exportFormatOf(scheme) === 'tr31') return;
  const want = { Z: 8, X: 16, U: 16, Y: 24, T: 24 }[scheme as 'Z' | 'X' | 'U' | 'Y' | 'T'];
  if (KEY_BYTES[algorithm] !== want) {
    throw fieldError(
      field,
      `scheme ${scheme} carries a ${want}-byte key, not ${algorithm}`,
      '26',
      'POSKEY_ERR_PAYSHIELD_KEY_SCHEME',
    );
  }
}

/** The scheme a response uses when the request names none: legacy by length, R for AES-256. */
export function defaultScheme(algorithm: KeyAlgorithm): KeyScheme {
  return LEGACY_BY_BYTES[KEY_BYTES[algorithm]] ?? 'R';
}

/** A key under a ZMK/TMK as the wire carries it: scheme letter + value, no letter for Z. */
export function formatWrapped(scheme: KeyScheme, value: string): string {
  return scheme === 'Z' ? value : scheme + value;
}

/** A legacy cryptogram with the scheme letter its length implies (16 H bare, 32 H X, 48 H Y). */
export function formatLegacy(hex: string): string {
  const scheme = LEGACY_BY_BYTES[hex.length / 2];
  if (scheme === undefined) {
    throw new HsmError(
      'POSKEY_ERR_PAYSHIELD_KEY_SCHEME',
      `no legacy scheme carries ${hex.length / 2} bytes`,
      {
        field: 'key',
        payShield: '26',
      },
    );
  }
  return formatWrapped(scheme, hex);
}

/** The 6-hex check value payShield key-management responses carry. */
export function kcv6(kcv: CheckValue): string {
  return kcv.value.slice(0, 6).toUpperCase();
}

/**
 * The algorithm letter at position 7 of a key block header, read without opening the block, to
 * size fields that depend on the key (PIN blocks and IVs are 16 H for DES/TDES keys, 32 H for AES
 * and SM4). The HSM authenticates the header when it uses the key, so a forged letter only gets
 * the command a wrong-length field and then a key block error.
 */
export function blockAlgorithmLetter(block: string): string {
  return block[7] ?? '';
}

/** Cipher block size in bytes for a key block: 16 for AES ('A') and SM4 ('4'), else 8. */
export function blockSizeOf(block: string): 8 | 16 {
  const letter = blockAlgorithmLetter(block);
  return letter === 'A' || letter === '4' ? 16 : 8;
}
