/**
 * What each HSM key role may be and do, in TR-31 terms. The LMK key block header (usage, algorithm,
 * mode of use, exportability) is the only place a key's permissions live; this table decides what
 * goes into the header when a key is made, and what the header must say before a key is used.
 *
 * | Key type        | Usage            | Mode | Algorithms                         |
 * |-----------------|------------------|------|------------------------------------|
 * | TMK, ZMK, KEK   | K0 (K1 imported) | B    | TDES-2/3, AES, SM4                 |
 * | TPK, ZPK        | P0               | B    | TDES-2/3, AES, SM4                 |
 * | TAK             | M1 / M3 / M6     | C    | DES (UnionPay MAK), TDES, AES, SM4 |
 * | ZAK             | M1 / M3 / M6     | C    | TDES-2/3, AES, SM4                 |
 * | TDK, ZEK, DEK   | D0               | B    | TDES-2/3, AES, SM4                 |
 * | BDK             | B0               | X    | TDES-2 (X9.24-1), AES (X9.24-3)    |
 * | PVK             | V2               | C    | TDES-2 (the Visa PVK pair)         |
 *
 * MAC keys take the usage of the MAC they are made for: M3 (ISO 9797-1 alg 3, X9.19) for TDES,
 * M1 (alg 1) for DES and SM4, M6 (CMAC) for AES. TMK/TPK, ZMK/ZPK… share a usage, so the key type
 * itself travels in a proprietary optional block ('92') of the LMK block, for `describeKey`.
 */
import type { CipherAlgorithm, KeyHandle } from '../crypto/cipher.js';
import type { KcvMethod } from '../crypto/kcv.js';
import type { MacAlgorithm } from '../crypto/mac.js';
import { assertKeyUsage, type Tr31Header } from '../crypto/tr31-header.js';
import type { Exportability, ExportFormat, KeyAlgorithm, KeyType } from './api.js';
import { HsmError } from './errors.js';

/** Proprietary optional block holding the KeyType name ('TPK', 'ZMK'…); numeric IDs are reserved for proprietary use. */
export const KEY_TYPE_BLOCK = '92';

/** What a key is for; decides usage, modes of use and the operations that accept it. */
export type KeyRole = 'kek' | 'pin' | 'mac' | 'data' | 'bdk' | 'pvk';

/**
 * Key types beyond api.ts's KeyType: the issuer's PIN verification key (Visa PVV, src/hsm/pvv.ts).
 * Kept out of KeyType because HsmApi, which others implement, does not offer PVV operations.
 */
export type PinVerificationKeyType = 'PVK';

/** Every key type the HSM knows. */
export type HsmKeyType = KeyType | PinVerificationKeyType;

export interface KeyTypeSpec {
  role: KeyRole;
  /** Usages an imported key of this type may carry. */
  usages: readonly string[];
  /** Mode of use of a generated key. */
  modeOfUse: string;
  /** Modes an imported key of this type may carry. */
  modes: readonly string[];
  algorithms: readonly KeyAlgorithm[];
}

const STRONG: readonly KeyAlgorithm[] = ['tdes2', 'tdes3', 'aes128', 'aes192', 'aes256', 'sm4'];
const WRAP_MODES = ['B', 'D', 'E', 'N'];
const MAC_MODES = ['C', 'G', 'V', 'N'];

const kek: KeyTypeSpec = {
  role: 'kek',
  usages: ['K0', 'K1'],
  modeOfUse: 'B',
  modes: WRAP_MODES,
  algorithms: STRONG,
};
const pin: KeyTypeSpec = {
  role: 'pin',
  usages: ['P0'],
  modeOfUse: 'B',
  modes: WRAP_MODES,
  algorithms: STRONG,
};
const data: KeyTypeSpec = {
  role: 'data',
  usages: ['D0'],
  modeOfUse: 'B',
  modes: WRAP_MODES,
  algorithms: STRONG,
};
const MAC_USAGES = ['M0', 'M1', 'M3', 'M6'];

export const KEY_TYPES: Readonly<Record<HsmKeyType, KeyTypeSpec>> = Object.freeze({
  TMK: kek,
  ZMK: kek,
  KEK: kek,
  // Single DES survives only for UnionPay 60.3 = 001 terminals (single-length PIK and MAK), which
  // acquirers still run; the host can refuse 001 sign-ins by configuration. Zone keys never.
  TPK: { ...pin, algorithms: ['des', ...pin.algorithms] },
  ZPK: pin,
  TAK: { role: 'mac', usages: MAC_USAGES, modeOfUse: 'C', modes: MAC_MODES, algorithms: ['des', ...STRONG] },
  ZAK: { role: 'mac', usages: MAC_USAGES, modeOfUse: 'C', modes: MAC_MODES, algorithms: STRONG },
  TDK: data,
  ZEK: data,
  DEK: data,
  BDK: {
    role: 'bdk',
    usages: ['B0'],
    modeOfUse: 'X',
    modes: ['X', 'N'],
    algorithms: ['tdes2', 'aes128', 'aes192', 'aes256'],
  },
  // Visa PVV: TDES over the TSP with the double-length PVK pair (V2 = PIN verification, Visa PVV).
  PVK: { role: 'pvk', usages: ['V2'], modeOfUse: 'C', modes: ['C', 'G', 'V', 'N'], algorithms: ['tdes2'] },
});

/** Cipher and key length of each KeyAlgorithm, and its TR-31 algorithm letter. */
export const KEY_ALGORITHMS: Readonly<
  Record<KeyAlgorithm, { cipher: CipherAlgorithm; length: number; letter: string; strength: number }>
> = Object.freeze({
  // Security strength in bits (NIST SP 800-57 part 1 table 2; SM4 as AES-128): a key is never
  // wrapped under a weaker one.
  des: { cipher: 'des', length: 8, letter: 'D', strength: 56 },
  tdes2: { cipher: 'tdes', length: 16, letter: 'T', strength: 80 },
  tdes3: { cipher: 'tdes', length: 24, letter: 'T', strength: 112 },
  aes128: { cipher: 'aes', length: 16, letter: 'A', strength: 128 },
  aes192: { cipher: 'aes', length: 24, letter: 'A', strength: 192 },
  aes256: { cipher: 'aes', length: 32, letter: 'A', strength: 256 },
  sm4: { cipher: 'sm4', length: 16, letter: '4', strength: 128 },
});

/** TR-31 usages accepted by each MAC algorithm. DES-family MAC keys serve algorithms 1 and 3 and the UnionPay MAC alike, as a payShield TAK does. */
export const MAC_ALGORITHM_USAGES: Readonly<Record<MacAlgorithm, readonly string[]>> = Object.freeze({
  cbc: ['M0', 'M1', 'M3'],
  retail: ['M0', 'M1', 'M3'],
  'unionpay-ecb': ['M0', 'M1', 'M3'],
  cmac: ['M6'],
});

/**
 * The spec of a key type.
 * @throws POSKEY_ERR_KEY_TYPE (payShield 04) for an unknown key type
 */
export function keyTypeSpec(keyType: unknown): KeyTypeSpec {
  if (typeof keyType !== 'string' || !Object.hasOwn(KEY_TYPES, keyType)) {
    throw new HsmError('POSKEY_ERR_KEY_TYPE', `unknown key type '${String(keyType)}'`, {
      field: 'keyType',
      payShield: '04',
    });
  }
  return KEY_TYPES[keyType as KeyType];
}

/**
 * Cipher, length and letter of a key algorithm.
 * @throws POSKEY_ERR_KEY_ALGORITHM (A7) for an unknown algorithm
 */
export function keyAlgorithmSpec(
  algorithm: unknown,
  field = 'algorithm',
): (typeof KEY_ALGORITHMS)[KeyAlgorithm] {
  if (typeof algorithm !== 'string' || !Object.hasOwn(KEY_ALGORITHMS, algorithm)) {
    throw new HsmError('POSKEY_ERR_KEY_ALGORITHM', `unknown key algorithm '${String(algorithm)}'`, { field });
  }
  return KEY_ALGORITHMS[algorithm as KeyAlgorithm];
}

/**
 * Checks that `algorithm` is allowed for `keyType` (e.g. single DES only for a TAK).
 * @throws POSKEY_ERR_KEY_TYPE, POSKEY_ERR_KEY_ALGORITHM (A7)
 */
export function assertKeyTypeAlgorithm(
  keyType: KeyType,
  algorithm: KeyAlgorithm,
  field = 'algorithm',
): KeyTypeSpec {
  const spec = keyTypeSpec(keyType);
  keyAlgorithmSpec(algorithm, field);
  if (!spec.algorithms.includes(algorithm)) {
    throw new HsmError(
      'POSKEY_ERR_KEY_ALGORITHM',
      `a ${keyType} cannot be ${algorithm} (allowed: ${spec.algorithms.join(', ')})`,
      { field },
    );
  }
  return spec;
}

/** The usage a generated key of this type and algorithm gets. */
export function usageFor(keyType: KeyType, algorithm: KeyAlgorithm): string {
  const spec = keyTypeSpec(keyType);
  if (spec.role !== 'mac') return spec.usages[0]!;
  const cipher = KEY_ALGORITHMS[algorithm].cipher;
  if (cipher === 'aes') return 'M6';
  return cipher === 'tdes' ? 'M3' : 'M1';
}

/** Cipher and length: all a key's algorithm is decided by. */
export type KeyShape = Pick<KeyHandle, 'algorithm' | 'length'>;

/** The KeyAlgorithm of a live key handle (from its cipher and length). */
export function keyAlgorithmOf(handle: KeyShape): KeyAlgorithm {
  switch (handle.algorithm) {
    case 'des':
      return 'des';
    case 'tdes':
      return handle.length === 24 ? 'tdes3' : 'tdes2';
    case 'aes':
      return handle.length === 32 ? 'aes256' : handle.length === 24 ? 'aes192' : 'aes128';
    default:
      return 'sm4';
  }
}

/** Default KCV method: CMAC for AES (X9.24-1:2017 Annex A), E_K(0) for the others. */
export function defaultKcvMethod(algorithm: KeyAlgorithm): KcvMethod {
  return KEY_ALGORITHMS[algorithm].cipher === 'aes' ? 'cmac' : 'legacy';
}

/**
 * The key type of an LMK block: its '92' block, or a best guess from the usage for blocks made
 * elsewhere (K0/K1 → KEK, P0 → ZPK, M → ZAK, D0 → DEK, B0 → BDK).
 */
export function keyTypeOfHeader(header: Tr31Header): KeyType {
  const named = header.optionalBlocks.find((b) => b.id === KEY_TYPE_BLOCK)?.data;
  if (named !== undefined && Object.hasOwn(KEY_TYPES, named)) return named as KeyType;
  const u = header.usage;
  if (u === 'K0' || u === 'K1') return 'KEK';
  if (u === 'P0') return 'ZPK';
  if (u.startsWith('M')) return 'ZAK';
  if (u === 'B0') return 'BDK';
  return 'DEK';
}

/** Strictness of exportability: S (any export) < E (key blocks only) < N (never). */
const EXPORT_RANK: Readonly<Record<string, number>> = { S: 0, E: 1, N: 2 };

/**
 * Validates an exportability flag.
 * @throws POSKEY_ERR_EXPORTABILITY (payShield AA) unless it is E, N or S
 */
export function assertExportability(value: unknown, field = 'exportability'): Exportability {
  if (typeof value !== 'string' || !Object.hasOwn(EXPORT_RANK, value)) {
    throw new HsmError('POSKEY_ERR_EXPORTABILITY', `exportability '${String(value)}' is not E, N or S`, {
      field,
      payShield: 'AA',
    });
  }
  return value as Exportability;
}

/** True when `wanted` is at least as strict as `current` (an import may tighten, never loosen). */
export function isStricterOrEqual(wanted: Exportability, current: string): boolean {
  return (EXPORT_RANK[wanted] ?? -1) >= (EXPORT_RANK[current] ?? 3);
}

// ---------------------------------------------------------------------------------------------
// Policy on key attributes (export, wrapping strength, imports)

/**
 * Export rules (X9.143 / payShield exportability): N never; E only as a key block under a KEK;
 * S (sensitive) in any form, legacy ECB included.
 * @throws POSKEY_ERR_KEY_NOT_EXPORTABLE (AA)
 */
export function assertExportable(header: Tr31Header, format: ExportFormat): void {
  if (format === 'tr31') {
    if (header.exportability !== 'S') assertKeyUsage(header, { exportable: true });
    return;
  }
  if (header.exportability !== 'S') {
    throw new HsmError(
      'POSKEY_ERR_KEY_NOT_EXPORTABLE',
      `key block exportability is ${header.exportability}; a legacy (non key block) export needs S`,
      { field: 'exportability', payShield: 'AA' },
    );
  }
}

/**
 * A key is never wrapped under a key of lower security strength (SP 800-57 strengths above).
 * @throws POSKEY_ERR_KEK_STRENGTH (payShield 27)
 */
export function assertStrength(key: KeyShape, kek: KeyShape): void {
  const k = keyAlgorithmOf(key);
  const w = keyAlgorithmOf(kek);
  if (KEY_ALGORITHMS[w].strength < KEY_ALGORITHMS[k].strength) {
    throw new HsmError('POSKEY_ERR_KEK_STRENGTH', `a ${w} KEK is weaker than the ${k} key it would wrap`, {
      field: 'kek',
      payShield: '27',
    });
  }
}

/**
 * An imported TR-31 header must fit the key type asked for: usage, mode, algorithm and length.
 * @throws POSKEY_ERR_KEY_USAGE (A6), POSKEY_ERR_KEY_MODE (A8), POSKEY_ERR_KEY_ALGORITHM (A7),
 *   POSKEY_ERR_KEY_LENGTH (27)
 */
export function assertImportedHeader(
  header: Tr31Header,
  spec: KeyTypeSpec,
  algorithm: KeyAlgorithm,
  keyLength: number,
): void {
  assertKeyUsage(header, { usage: spec.usages as string[] });
  if (!spec.modes.includes(header.modeOfUse)) {
    throw new HsmError(
      'POSKEY_ERR_KEY_MODE',
      `mode of use ${header.modeOfUse} does not fit a ${spec.role} key`,
      {
        field: 'source.block.modeOfUse',
        payShield: 'A8',
      },
    );
  }
  const want = KEY_ALGORITHMS[algorithm];
  const letterOk = header.algorithm === want.letter || (algorithm === 'des' && header.algorithm === 'T');
  if (!letterOk) {
    throw new HsmError(
      'POSKEY_ERR_KEY_ALGORITHM',
      `block algorithm ${header.algorithm} is not ${algorithm}`,
      {
        field: 'source.block.algorithm',
        payShield: 'A7',
      },
    );
  }
  if (keyLength !== want.length) {
    throw new HsmError(
      'POSKEY_ERR_KEY_LENGTH',
      `block holds a ${keyLength}-byte key, ${algorithm} is ${want.length}`,
      {
        field: 'source.block',
        payShield: '27',
      },
    );
  }
}

/**
 * The exportability of an imported key: the block's, or a stricter one the caller asks for.
 * @throws POSKEY_ERR_EXPORTABILITY (AA) when the caller would loosen it
 */
export function tightened(wanted: Exportability | undefined, current: string): Exportability {
  if (wanted === undefined) return current as Exportability;
  if (!isStricterOrEqual(wanted, current)) {
    throw new HsmError(
      'POSKEY_ERR_EXPORTABILITY',
      `an import cannot loosen exportability ${current} to ${wanted}`,
      {
        field: 'exportability',
        payShield: 'AA',
      },
    );
  }
  return wanted;
}
