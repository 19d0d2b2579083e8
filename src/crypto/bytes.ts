import { timingSafeEqual } from 'node:crypto';
import { CryptoError } from '../errors.js';

const HEX_RE = /^[0-9A-Fa-f]*$/;

/** Parses hex into a fresh Buffer; odd length or a non-hex character is a POSKEY_ERR_HEX naming `field`. */
export function fromHex(hex: string, field = 'hex'): Buffer {
  if (typeof hex !== 'string' || !HEX_RE.test(hex)) {
    throw new CryptoError('POSKEY_ERR_HEX', 'must contain only hexadecimal characters', { field });
  }
  if (hex.length % 2 !== 0) {
    throw new CryptoError('POSKEY_ERR_HEX', `odd number of hex digits (${hex.length})`, { field });
  }
  return Buffer.from(hex, 'hex');
}

/** Upper-case hex, the form payment tooling prints keys, KCVs and blocks in. */
export function toHex(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex').toUpperCase();
}

/** XOR of two equal-length byte strings into a fresh Buffer. */
export function xor(a: Uint8Array, b: Uint8Array): Buffer {
  if (a.length !== b.length) {
    throw new CryptoError('POSKEY_ERR_LENGTH', `cannot XOR ${a.length} bytes with ${b.length} bytes`);
  }
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Constant-time equality for MACs and check values; different lengths are simply unequal. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length || a.length === 0) return false;
  return timingSafeEqual(a, b);
}

/** Throws POSKEY_ERR_LENGTH unless `data.length` is one of `lengths`. Returns `data` for chaining. */
export function assertLength<T extends Uint8Array>(data: T, lengths: readonly number[], field: string): T {
  if (!(data instanceof Uint8Array)) {
    throw new CryptoError('POSKEY_ERR_TYPE', 'must be bytes', { field });
  }
  if (!lengths.includes(data.length)) {
    throw new CryptoError(
      'POSKEY_ERR_LENGTH',
      `length ${data.length} bytes, expected ${lengths.join(' or ')}`,
      {
        field,
      },
    );
  }
  return data;
}

/** Throws POSKEY_ERR_LENGTH unless `data` is a whole, non-empty number of `blockSize` blocks. */
export function assertBlocks<T extends Uint8Array>(data: T, blockSize: number, field: string): T {
  if (!(data instanceof Uint8Array)) {
    throw new CryptoError('POSKEY_ERR_TYPE', 'must be bytes', { field });
  }
  if (data.length === 0 || data.length % blockSize !== 0) {
    throw new CryptoError(
      'POSKEY_ERR_LENGTH',
      `length ${data.length} bytes is not a whole number of ${blockSize}-byte blocks`,
      { field },
    );
  }
  return data;
}

/** Overwrites secret material in place once it is no longer needed. */
export function zeroize(...buffers: (Uint8Array | undefined)[]): void {
  for (const b of buffers) b?.fill(0);
}

/**
 * `n` bytes from an injectable random source, checked: a source that returns the wrong length
 * would otherwise leave predictable padding.
 * @throws POSKEY_ERR_LENGTH when the source returns anything but `n` bytes
 */
export function drawRandom(random: (n: number) => Uint8Array, n: number): Buffer {
  const r = random(n);
  if (!(r instanceof Uint8Array) || r.length !== n) {
    throw new CryptoError('POSKEY_ERR_LENGTH', `random source returned ${r?.length} bytes, expected ${n}`, {
      field: 'random',
    });
  }
  return Buffer.from(r.buffer, r.byteOffset, r.length);
}
