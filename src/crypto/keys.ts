/**
 * Key hygiene for DES-family keys (odd parity, weak and semi-weak keys, degenerate TDES), random
 * key generation, and key components (split knowledge: each custodian holds one full-length
 * component, the key is their XOR).
 *
 * AES and SM4: FIPS 197 and GB/T 32907-2016 define no weak keys, so `assertStrongKey` only checks
 * their length. We deliberately do not reject all-zero or other "suspicious" AES/SM4 keys: no
 * standard defines such a class, and a random source that produces one is better caught where the
 * randomness comes from.
 */
import { randomBytes } from 'node:crypto';
import { CryptoError } from '../errors.js';
import { assertLength, zeroize } from './bytes.js';
import { CIPHER_ALGORITHMS, type CipherAlgorithm, createKey, KEY_LENGTHS } from './cipher.js';
import { type CheckValue, type CheckValueOptions, checkValue } from './kcv.js';

/** A random source: returns `n` fresh random bytes. */
export type RandomSource = (n: number) => Uint8Array;

/** Default key lengths in bytes when `generateKey` is given none. */
export const DEFAULT_KEY_LENGTH: Readonly<Record<CipherAlgorithm, number>> = {
  des: 8,
  tdes: 16,
  aes: 16,
  sm4: 16,
};

/** Component counts accepted by `combineComponents` (dual control needs at least two custodians). */
export const MIN_COMPONENTS = 2;
export const MAX_COMPONENTS = 9;

/** The 4 weak and 12 semi-weak DES keys, parity-adjusted (Mbed TLS `des.c` weak_key_table). */
const WEAK_DES_KEYS: readonly string[] = [
  '0101010101010101',
  'FEFEFEFEFEFEFEFE',
  'E0E0E0E0F1F1F1F1',
  '1F1F1F1F0E0E0E0E',
  '011F011F010E010E',
  '1F011F010E010E01',
  '01E001E001F101F1',
  'E001E001F101F101',
  '01FE01FE01FE01FE',
  'FE01FE01FE01FE01',
  '1FE01FE00EF10EF1',
  'E01FE01FF10EF10E',
  '1FFE1FFE0EFE0EFE',
  'FE1FFE1FFE0EFE0E',
  'E0FEE0FEF1FEF1FE',
  'FEE0FEE0FEF1FEF1',
];

const WEAK_SET = new Set(WEAK_DES_KEYS);

function isOddByte(b: number): boolean {
  let v = b ^ (b >>> 4);
  v ^= v >>> 2;
  v ^= v >>> 1;
  return (v & 1) === 1;
}

function assertBytes(data: unknown, field: string): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) throw new CryptoError('POSKEY_ERR_TYPE', 'must be bytes', { field });
}

function assertAlgorithm(alg: unknown): asserts alg is CipherAlgorithm {
  if (!CIPHER_ALGORITHMS.includes(alg as CipherAlgorithm)) {
    throw new CryptoError('POSKEY_ERR_ALGORITHM', `unknown cipher algorithm '${String(alg)}'`, {
      field: 'algorithm',
    });
  }
}

function isDesFamily(alg: CipherAlgorithm): boolean {
  return alg === 'des' || alg === 'tdes';
}

/** True when every byte has an odd number of set bits (DES convention; the LSB is the parity bit). */
export function hasOddParity(key: Uint8Array): boolean {
  assertBytes(key, 'key');
  for (const b of key) if (!isOddByte(b)) return false;
  return true;
}

/** A copy of `key` with each byte's LSB set so that the byte has odd parity. */
export function fixParity(key: Uint8Array): Buffer {
  assertBytes(key, 'key');
  const out = Buffer.from(key);
  for (let i = 0; i < out.length; i++) {
    const b = out[i]!;
    out[i] = isOddByte(b & 0xfe) ? b & 0xfe : b | 0x01;
  }
  return out;
}

/**
 * @throws POSKEY_ERR_KEY_PARITY when some byte of `key` has even parity
 */
export function assertOddParity<T extends Uint8Array>(key: T, field = 'key'): T {
  assertBytes(key, field);
  if (!hasOddParity(key)) {
    throw new CryptoError('POSKEY_ERR_KEY_PARITY', 'key does not have odd parity in every byte', { field });
  }
  return key;
}

/**
 * True for the 4 weak and 12 semi-weak single-DES keys. Parity bits are ignored by DES, so the
 * key is compared after parity adjustment.
 * @throws POSKEY_ERR_LENGTH unless `key` is 8 bytes
 */
export function isWeakDesKey(key: Uint8Array): boolean {
  assertLength(key, [8], 'key');
  const adjusted = fixParity(key);
  const weak = WEAK_SET.has(adjusted.toString('hex').toUpperCase());
  zeroize(adjusted);
  return weak;
}

/** Equal as DES keys, i.e. ignoring parity bits. */
function sameDesKey(a: Uint8Array, b: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i]! ^ b[i]!) & 0xfe;
  return diff === 0;
}

function tdesDegenerate(key: Uint8Array): boolean {
  const k1 = key.subarray(0, 8);
  const k2 = key.subarray(8, 16);
  if (sameDesKey(k1, k2)) return true;
  // 3-key: E(K1) D(K2) E(K3) with K2 = K3 collapses to E(K1), just like K1 = K2 collapses to E(K3).
  return key.length === 24 && sameDesKey(k2, key.subarray(16, 24));
}

/** Why a key of `alg` is unsafe, or undefined when it is not (lengths already checked). */
function weakness(alg: CipherAlgorithm, key: Uint8Array): string | undefined {
  if (!isDesFamily(alg)) return undefined;
  for (let i = 0; i < key.length; i += 8) {
    if (isWeakDesKey(key.subarray(i, i + 8))) {
      const part = alg === 'des' ? 'key' : `part ${i / 8 + 1} of the key`;
      return `${part} is a weak or semi-weak DES key`;
    }
  }
  if (alg === 'tdes' && tdesDegenerate(key)) return 'TDES key parts repeat, so it degenerates to single DES';
  return undefined;
}

/**
 * Rejects keys the DES family defines as unsafe: a weak or semi-weak DES key, a TDES key with a
 * weak or semi-weak 8-byte part, and a TDES key that degenerates to single DES (K1 = K2, or for
 * 3-key K2 = K3). K1 = K3 is ordinary 2-key TDES and is accepted. AES and SM4 keys are only
 * checked for length (see the module note).
 * @returns `key`, for chaining
 * @throws POSKEY_ERR_ALGORITHM for an unknown algorithm, POSKEY_ERR_LENGTH for a bad length,
 *   POSKEY_ERR_WEAK_KEY for a weak, semi-weak or degenerate key
 */
export function assertStrongKey<T extends Uint8Array>(alg: CipherAlgorithm, key: T, field = 'key'): T {
  assertAlgorithm(alg);
  assertLength(key, KEY_LENGTHS[alg], field);
  const reason = weakness(alg, key);
  if (reason !== undefined) throw new CryptoError('POSKEY_ERR_WEAK_KEY', reason, { field });
  return key;
}

/** With a sound random source a weak DES key turns up with probability 2^-52 per draw. */
const MAX_DRAWS = 16;

/**
 * A random key for `alg`. DES and TDES keys get odd parity and are drawn again while weak,
 * semi-weak or degenerate.
 * @param length bytes; defaults to des 8, tdes 16, aes 16, sm4 16
 * @param random injectable random source (tests pass a deterministic one)
 * @throws POSKEY_ERR_ALGORITHM, POSKEY_ERR_LENGTH for an invalid length,
 *   POSKEY_ERR_RANDOM when the source returns the wrong length or only weak keys
 */
export function generateKey(
  alg: CipherAlgorithm,
  length?: number,
  random: RandomSource = randomBytes,
): Buffer {
  assertAlgorithm(alg);
  const n = length ?? DEFAULT_KEY_LENGTH[alg];
  if (!KEY_LENGTHS[alg].includes(n)) {
    throw new CryptoError(
      'POSKEY_ERR_LENGTH',
      `key length ${n} bytes, expected ${KEY_LENGTHS[alg].join(' or ')}`,
      {
        field: 'length',
      },
    );
  }
  for (let draw = 0; draw < MAX_DRAWS; draw++) {
    const raw = random(n);
    if (!(raw instanceof Uint8Array) || raw.length !== n) {
      throw new CryptoError('POSKEY_ERR_RANDOM', `random source did not return ${n} bytes`, {
        field: 'random',
      });
    }
    const key = isDesFamily(alg) ? fixParity(raw) : Buffer.from(raw);
    // The default source's buffer is ours to wipe; an injected source keeps ownership of its output.
    if (random === randomBytes) zeroize(raw);
    if (weakness(alg, key) === undefined) return key;
    zeroize(key);
  }
  throw new CryptoError('POSKEY_ERR_RANDOM', `random source gave only weak keys in ${MAX_DRAWS} draws`, {
    field: 'random',
  });
}

export interface CombineOptions {
  /** How the KCVs are computed (method and length); legacy 3 bytes by default. */
  kcv?: CheckValueOptions;
}

export interface CombinedKey {
  /** The clear key: XOR of the components, parity-fixed for DES/TDES. */
  key: Buffer;
  /** Check value of the combined key. */
  kcv: CheckValue;
  /** Check value of each component, in input order, for custodians to confirm their entry. */
  components: CheckValue[];
  /**
   * DES/TDES only: whether each component had odd parity as entered. Reported, not enforced:
   * custodians' components are often keyed in without parity, and DES ignores the parity bits.
   */
  componentParity?: boolean[];
}

function kcvOf(alg: CipherAlgorithm, bytes: Uint8Array, opts: CheckValueOptions | undefined): CheckValue {
  const handle = createKey(alg, bytes);
  try {
    return checkValue(handle, opts);
  } finally {
    handle.destroy();
  }
}

function assertComponents(alg: CipherAlgorithm, components: unknown): asserts components is Uint8Array[] {
  if (!Array.isArray(components)) {
    throw new CryptoError('POSKEY_ERR_TYPE', 'must be an array of components', { field: 'components' });
  }
  if (components.length < MIN_COMPONENTS || components.length > MAX_COMPONENTS) {
    throw new CryptoError(
      'POSKEY_ERR_COMPONENT_COUNT',
      `${components.length} components, expected ${MIN_COMPONENTS} to ${MAX_COMPONENTS}`,
      { field: 'components' },
    );
  }
  const first = components[0] as unknown;
  components.forEach((c: unknown, i) => {
    const field = `components[${i}]`;
    assertBytes(c, field);
    assertLength(c, KEY_LENGTHS[alg], field);
    if (c.length !== (first as Uint8Array).length) {
      throw new CryptoError('POSKEY_ERR_LENGTH', 'components differ in length', { field });
    }
  });
}

/**
 * Forms a key from 2–9 key components by XOR (split knowledge / dual control), as an HSM does
 * when custodians key in their parts. DES/TDES results are parity-fixed, because an even number of
 * odd-parity components XORs to even parity. The result is checked like any key.
 * @returns the key, its KCV, each component's KCV and (DES/TDES) each component's parity
 * @throws POSKEY_ERR_COMPONENT_COUNT for fewer than 2 or more than 9 components,
 *   POSKEY_ERR_LENGTH when lengths differ or are invalid for `alg`, POSKEY_ERR_ALGORITHM,
 *   POSKEY_ERR_WEAK_KEY when the combined key is weak or degenerate (see `assertStrongKey`),
 *   POSKEY_ERR_KCV_METHOD / POSKEY_ERR_LENGTH for bad KCV options
 */
export function combineComponents(
  alg: CipherAlgorithm,
  components: Uint8Array[],
  opts: CombineOptions = {},
): CombinedKey {
  assertAlgorithm(alg);
  assertComponents(alg, components);
  const sum = Buffer.alloc(components[0]!.length);
  for (const c of components) for (let i = 0; i < sum.length; i++) sum[i]! ^= c[i]!;
  const key = isDesFamily(alg) ? fixParity(sum) : sum;
  if (key !== sum) zeroize(sum);
  try {
    assertStrongKey(alg, key, 'components');
    const result: CombinedKey = {
      key,
      kcv: kcvOf(alg, key, opts.kcv),
      components: components.map((c) => kcvOf(alg, c, opts.kcv)),
    };
    if (isDesFamily(alg)) result.componentParity = components.map((c) => hasOddParity(c));
    return result;
  } catch (e) {
    zeroize(key);
    throw e;
  }
}
