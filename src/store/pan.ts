/**
 * The only forms of a PAN the store keeps: masked (first 6 and last 4 digits, PCI DSS 3.4) for
 * display, and an HMAC-SHA256 under a store secret for matching voids and refunds to their
 * original. An unkeyed hash would not do: with BIN and last four known, only about 10^5 PANs fit a
 * masked value, so a plain SHA-256 falls to a dictionary in milliseconds. The key lives outside the
 * database (a file beside the SQLite database, or configuration shared by the host processes).
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { storeError } from './errors.js';

const PAN_RE = /^\d{12,19}$/;
/** Bytes of PAN key the store accepts: 32 (HMAC-SHA256's block strength) up to 64. */
export const PAN_KEY_MIN = 32;
export const PAN_KEY_MAX = 64;

/** @throws POSKEY_ERR_STORE_VALUE (field) when `pan` is not 12–19 digits; the value is not echoed */
export function assertPan(pan: unknown, field = 'pan'): asserts pan is string {
  if (typeof pan !== 'string' || !PAN_RE.test(pan)) {
    throw storeError('POSKEY_ERR_STORE_VALUE', 'a PAN is 12 to 19 digits', field);
  }
}

/** First 6 and last 4 digits, the rest '*'. */
export function maskPan(pan: string): string {
  assertPan(pan);
  return pan.slice(0, 6) + '*'.repeat(pan.length - 10) + pan.slice(-4);
}

/** Keyed PAN hashing; holds its own copy of the key as a KeyObject. */
export class PanHasher {
  readonly #key: KeyObject;

  /** @throws POSKEY_ERR_STORE_CONFIG (field 'panKey') for a key shorter than 32 or longer than 64 bytes */
  constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length < PAN_KEY_MIN || key.length > PAN_KEY_MAX) {
      throw storeError(
        'POSKEY_ERR_STORE_CONFIG',
        `the PAN key must be ${PAN_KEY_MIN} to ${PAN_KEY_MAX} bytes`,
        'panKey',
      );
    }
    this.#key = createSecretKey(Buffer.from(key));
  }

  /** HMAC-SHA256(key, PAN digits), lower-case hex. */
  hash(pan: string): string {
    assertPan(pan);
    return createHmac('sha256', this.#key).update(pan, 'latin1').digest('hex');
  }
}
