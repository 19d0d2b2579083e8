/**
 * CMAC (NIST SP 800-38B, RFC 4493) for AES, TDES and SM4. Node 20 has no CMAC, so it runs as a
 * CBC-MAC on the key handle's kept CBC context, with the subkeys derived once per handle.
 */
import { CryptoError } from '../errors.js';
import { createKey, type KeyHandle } from './cipher.js';

/** Doubling in GF(2^n): shift left one bit, fold the carry back with Rb (0x87 for 128-bit, 0x1B for 64-bit blocks). */
function double(block: Buffer): Buffer {
  const out = Buffer.allocUnsafe(block.length);
  let carry = 0;
  for (let i = block.length - 1; i >= 0; i--) {
    const b = block[i]!;
    out[i] = ((b << 1) | carry) & 0xff;
    carry = b >>> 7;
  }
  if (carry) out[block.length - 1]! ^= block.length === 16 ? 0x87 : 0x1b;
  return out;
}

/** The CMAC subkeys K1 and K2 of a key, kept on the handle. */
export function cmacSubkeys(key: KeyHandle): [Buffer, Buffer] {
  return key.derived('cmac-subkeys', () => {
    const l = key.ecbEncrypt(Buffer.alloc(key.blockSize));
    const k1 = double(l);
    const k2 = double(k1);
    l.fill(0);
    return [k1, k2] as [Buffer, Buffer];
  });
}

/**
 * CMAC of `data`, truncated to `length` bytes (the full block by default).
 * @throws POSKEY_ERR_LENGTH when `length` is not between 1 and the block size
 */
export function cmac(key: KeyHandle, data: Uint8Array, length = key.blockSize): Buffer {
  const bs = key.blockSize;
  if (!Number.isInteger(length) || length < 1 || length > bs) {
    throw new CryptoError('POSKEY_ERR_LENGTH', `MAC length ${length} outside 1..${bs}`, { field: 'length' });
  }
  const [k1, k2] = cmacSubkeys(key);
  const complete = data.length > 0 && data.length % bs === 0;
  const padded = Buffer.alloc(complete ? data.length : (Math.floor(data.length / bs) + 1) * bs);
  padded.set(data);
  if (!complete) padded[data.length] = 0x80;
  const last = padded.length - bs;
  const sub = complete ? k1 : k2;
  for (let i = 0; i < bs; i++) padded[last + i]! ^= sub[i]!;
  const out = key.cbcEncrypt(padded);
  return out.subarray(out.length - bs, out.length - bs + length);
}

/**
 * CMAC counter-mode KDF (NIST SP 800-108): CMAC(key, inputOf(1)) ‖ CMAC(key, inputOf(2)) ‖ …, cut
 * to the key's own length, as a new key of the same algorithm. The intermediate bytes are zeroised.
 */
export function cmacCounterKdf(key: KeyHandle, inputOf: (counter: number) => Uint8Array): KeyHandle {
  const parts: Buffer[] = [];
  for (let counter = 1; parts.length * key.blockSize < key.length; counter++) {
    parts.push(cmac(key, inputOf(counter)));
  }
  const material = Buffer.concat(parts);
  try {
    return createKey(key.algorithm, material.subarray(0, key.length));
  } finally {
    material.fill(0);
    for (const p of parts) p.fill(0);
  }
}
