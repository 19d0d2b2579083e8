/**
 * Key check values (KCVs): the short fingerprint custodians, terminals and hosts compare to confirm
 * that both ends hold the same key without revealing it.
 *
 * - `legacy`: E_K(zero block), leftmost bytes. TDES/DES usually 3 bytes (X9.24-1 Annex A), UnionPay
 *   sign-on field 62 uses 4, Chinese SM4 examples 4 or 8.
 * - `cmac`: CMAC_K(zero block), leftmost bytes, at most 5 by convention (X9.24-1:2017 Annex A,
 *   X9.143 KC/KP algorithm "01"); defined for AES, accepted for TDES and SM4 as well.
 *
 * A KCV says which method made it: the same AES key has different legacy and CMAC values.
 * Keep KCVs short: a full-block legacy KCV is E_K(0), the value CMAC derives its subkeys from.
 */
import { CryptoError } from '../errors.js';
import { constantTimeEqual, fromHex, toHex } from './bytes.js';
import type { KeyHandle } from './cipher.js';
import { cmac } from './cmac.js';

export type KcvMethod = 'legacy' | 'cmac';

export const KCV_METHODS: readonly KcvMethod[] = ['legacy', 'cmac'];

/** A computed or received key check value. */
export interface CheckValue {
  /** Upper-case hex. */
  value: string;
  method: KcvMethod;
  /** Length in bytes (half the hex length). */
  length: number;
}

/** Default KCV lengths in bytes: 3 for legacy (6 hex digits), 5 for CMAC (X9.24-1:2017). */
export const DEFAULT_KCV_LENGTH: Readonly<Record<KcvMethod, number>> = { legacy: 3, cmac: 5 };

export interface CheckValueOptions {
  method?: KcvMethod;
  /** Bytes to keep, 1..block size. */
  length?: number;
}

function assertMethod(method: unknown): KcvMethod {
  if (!KCV_METHODS.includes(method as KcvMethod)) {
    throw new CryptoError('POSKEY_ERR_KCV_METHOD', `unknown KCV method '${String(method)}'`, {
      field: 'method',
    });
  }
  return method as KcvMethod;
}

function assertKcvLength(length: number, blockSize: number): number {
  if (!Number.isInteger(length) || length < 1 || length > blockSize) {
    throw new CryptoError('POSKEY_ERR_LENGTH', `KCV length ${length} outside 1..${blockSize}`, {
      field: 'length',
    });
  }
  return length;
}

/**
 * The full check block for a method, cached on the handle: a KCV is asked for on every key import,
 * and comparing one later should not run the cipher again.
 */
function checkBlock(key: KeyHandle, method: KcvMethod): Buffer {
  return key.derived(`kcv-${method}`, () => {
    const zero = Buffer.alloc(key.blockSize);
    return method === 'legacy' ? key.ecbEncrypt(zero) : Buffer.from(cmac(key, zero));
  });
}

/**
 * Computes the check value of a key.
 * @param key any key handle (DES, TDES, AES, SM4)
 * @param opts `method` (default 'legacy'), `length` in bytes (default 3 legacy / 5 CMAC)
 * @returns the KCV as upper-case hex with its method and length
 * @throws POSKEY_ERR_KCV_METHOD for an unknown method
 * @throws POSKEY_ERR_LENGTH when `length` is not between 1 and the key's block size
 * @example checkValue(createKey('tdes', fromHex('0123456789ABCDEFFEDCBA9876543210'))).value // '08D7B4'
 */
export function checkValue(key: KeyHandle, opts: CheckValueOptions = {}): CheckValue {
  const method = assertMethod(opts.method ?? 'legacy');
  const length = assertKcvLength(opts.length ?? DEFAULT_KCV_LENGTH[method], key.blockSize);
  return { value: toHex(checkBlock(key, method).subarray(0, length)), method, length };
}

function expectedBytes(expected: string | Uint8Array | CheckValue): Buffer {
  if (typeof expected === 'string') return fromHex(expected, 'kcv');
  if (expected instanceof Uint8Array) return Buffer.from(expected);
  if (expected !== null && typeof expected === 'object' && typeof expected.value === 'string') {
    return fromHex(expected.value, 'kcv');
  }
  throw new CryptoError('POSKEY_ERR_TYPE', 'must be hex, bytes or a CheckValue', { field: 'kcv' });
}

function resolveMethod(expected: string | Uint8Array | CheckValue, method: KcvMethod | undefined): KcvMethod {
  if (method !== undefined) return assertMethod(method);
  if (typeof expected === 'object' && !(expected instanceof Uint8Array)) return assertMethod(expected.method);
  return 'legacy';
}

/**
 * Compares a received check value with the key's own, in constant time. The KCV length is taken
 * from `expected` (a KCV is a key-entry check, not an authenticator, so its length is the sender's
 * choice).
 * @param expected hex, bytes, or a CheckValue (whose method is used unless `method` is given)
 * @param method default 'legacy' (or the CheckValue's method)
 * @throws POSKEY_ERR_HEX for malformed hex, POSKEY_ERR_LENGTH for a length outside 1..block size,
 *   POSKEY_ERR_KCV_METHOD for an unknown method
 */
export function verifyCheckValue(
  key: KeyHandle,
  expected: string | Uint8Array | CheckValue,
  method?: KcvMethod,
): boolean {
  const want = expectedBytes(expected);
  const m = resolveMethod(expected, method);
  const length = assertKcvLength(want.length, key.blockSize);
  return constantTimeEqual(checkBlock(key, m).subarray(0, length), want);
}

/**
 * Like `verifyCheckValue`, but throws on a mismatch. The message names neither the computed nor
 * the expected value, so logs do not collect fingerprints of keys.
 * @throws POSKEY_ERR_KCV_MISMATCH when the key does not produce `expected`
 */
export function assertCheckValue(
  key: KeyHandle,
  expected: string | Uint8Array | CheckValue,
  method?: KcvMethod,
  field = 'kcv',
): void {
  if (!verifyCheckValue(key, expected, method)) {
    throw new CryptoError('POSKEY_ERR_KCV_MISMATCH', 'key check value does not match the key', { field });
  }
}
