/**
 * Message authentication codes for card-present messages:
 *
 * - `cbc`: ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC; ANSI X9.9, FIPS 113), any block cipher.
 * - `retail`: ISO/IEC 9797-1 MAC algorithm 3 (ANSI X9.19 "retail MAC"), DES family only.
 * - `cmac`: NIST SP 800-38B / ISO/IEC 9797-1 algorithm 5, via `cmac.ts`.
 * - `unionpay-ecb`: the China UnionPay POS "ECB" MAC (XOR-fold, hex-expand, E / XOR / E), field 64.
 *
 * Everything runs on the caller's `KeyHandle` so its OpenSSL contexts are reused; a host verifying
 * tens of thousands of MACs a second must not build cipher contexts per message.
 */
import { CryptoError } from '../errors.js';
import { constantTimeEqual } from './bytes.js';
import { createKey, type KeyHandle } from './cipher.js';
import { cmac } from './cmac.js';

/** ISO/IEC 9797-1 padding methods 1, 2 and 3. */
export type MacPadding = 1 | 2 | 3;

export type MacAlgorithm = 'cbc' | 'retail' | 'cmac' | 'unionpay-ecb';

export const MAC_ALGORITHMS: readonly MacAlgorithm[] = ['cbc', 'retail', 'cmac', 'unionpay-ecb'];

export interface CbcMacOptions {
  /** ISO 9797-1 padding method, default 1 (zero fill). */
  padding?: MacPadding;
  /** MAC length in bytes, 1..block size; default the full block. */
  length?: number;
}

export interface UnionPayMacOptions {
  /**
   * 'hex' (default): field 64 as acquirers send it, the first 8 upper-case hex characters of the
   * final block as 8 ASCII bytes. 'binary': the first 8 bytes of the final block.
   */
  output?: 'hex' | 'binary';
}

export type MacOptions = CbcMacOptions & UnionPayMacOptions;

function assertBytes(data: unknown, field: string): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) throw new CryptoError('POSKEY_ERR_TYPE', 'must be bytes', { field });
}

function assertMacLength(length: number, blockSize: number): number {
  if (!Number.isInteger(length) || length < 1 || length > blockSize) {
    throw new CryptoError('POSKEY_ERR_LENGTH', `MAC length ${length} outside 1..${blockSize}`, {
      field: 'length',
    });
  }
  return length;
}

/**
 * Pads `data` to whole blocks with an ISO/IEC 9797-1 padding method, into a fresh buffer:
 * 1: zero fill, none if already aligned; empty data becomes one zero block.
 * 2: 0x80 then zero fill; always adds at least one byte.
 * 3: a block holding the data length in bits (big-endian) prepended, then zero fill. Empty data
 *    gives just the length block, as the standard reads ("possibly none" zero bits); psec's
 *    `pad_iso_3` adds a zero block there instead.
 * @throws POSKEY_ERR_MAC_PADDING for any other method, POSKEY_ERR_LENGTH for a bad block size
 */
export function pad(data: Uint8Array, blockSize: number, method: MacPadding): Buffer {
  assertBytes(data, 'data');
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new CryptoError('POSKEY_ERR_LENGTH', `block size ${blockSize} is not a positive integer`, {
      field: 'blockSize',
    });
  }
  const fill = (n: number) => Math.ceil(n / blockSize) * blockSize;
  switch (method) {
    case 1: {
      const out = Buffer.alloc(Math.max(blockSize, fill(data.length)));
      out.set(data);
      return out;
    }
    case 2: {
      const out = Buffer.alloc(fill(data.length + 1));
      out.set(data);
      out[data.length] = 0x80;
      return out;
    }
    case 3: {
      const out = Buffer.alloc(blockSize + fill(data.length));
      writeBitLength(out, blockSize, data.length);
      out.set(data, blockSize);
      return out;
    }
    default:
      throw new CryptoError(
        'POSKEY_ERR_MAC_PADDING',
        `unknown ISO 9797-1 padding method '${String(method)}'`,
        {
          field: 'padding',
        },
      );
  }
}

/** Big-endian bit length, right-aligned in the first block (lengths stay below 2^53 bits). */
function writeBitLength(out: Buffer, blockSize: number, byteLength: number): void {
  let bits = byteLength * 8;
  for (let i = blockSize - 1; i >= 0 && bits > 0; i--) {
    out[i] = bits % 256;
    bits = Math.floor(bits / 256);
  }
}

/**
 * ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC, X9.9): CBC under `key` with a zero IV, the last block
 * is the MAC. Works with any algorithm's block size.
 * @throws POSKEY_ERR_MAC_PADDING, POSKEY_ERR_LENGTH (MAC length outside 1..block size)
 * @example toHex(cbcMac(createKey('des', fromHex('0123456789ABCDEF')), Buffer.from('7654321 Now is the time for ')))
 *   // 'F1D30F6849312CA4'
 */
export function cbcMac(key: KeyHandle, data: Uint8Array, opts: CbcMacOptions = {}): Buffer {
  const bs = key.blockSize;
  const length = assertMacLength(opts.length ?? bs, bs);
  const chain = key.cbcEncrypt(pad(data, bs, opts.padding ?? 1));
  return chain.subarray(chain.length - bs, chain.length - bs + length);
}

/**
 * The retail MAC's two handles, made once per caller handle and destroyed with it: single-DES KL
 * for the CBC pass, and 2-key TDES KL‖KR for the last block, because D(KR) then E(KL) after the
 * last CBC step under KL is exactly one EDE encryption under KL‖KR. That saves a cipher call (each
 * costs more than the DES work for one block) and a DES operation per MAC.
 */
function retailHandles(key: KeyHandle): [KeyHandle, KeyHandle] {
  return key.derived('retail-mac', () => {
    const bytes = key.exportKeyBytes();
    try {
      return [createKey('des', bytes.subarray(0, 8)), createKey('tdes', bytes.subarray(0, 16))] as [
        KeyHandle,
        KeyHandle,
      ];
    } finally {
      bytes.fill(0);
    }
  });
}

/**
 * ISO/IEC 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC): single-DES CBC under KL over all blocks,
 * then the last block is decrypted under KR and encrypted again under KL.
 *
 * - TDES key: KL = bytes 0–7, KR = bytes 8–15. A 24-byte key's third part is not used.
 * - DES key: KL = KR, where D(KR) then E(KL) cancel out, so this is plain algorithm 1.
 * @throws POSKEY_ERR_ALGORITHM for an AES or SM4 key, POSKEY_ERR_MAC_PADDING, POSKEY_ERR_LENGTH
 * @example toHex(retailMac(createKey('tdes', fromHex('7CA110454A1A6E570131D9619DC1376E')), Buffer.from('Hello World !!!!')))
 *   // 'F09B856213BAB83B'
 */
export function retailMac(key: KeyHandle, data: Uint8Array, opts: CbcMacOptions = {}): Buffer {
  if (key.algorithm === 'des') return cbcMac(key, data, opts);
  if (key.algorithm !== 'tdes') {
    throw new CryptoError(
      'POSKEY_ERR_ALGORITHM',
      `retail MAC needs a DES or TDES key, not ${key.algorithm}`,
      {
        field: 'key',
      },
    );
  }
  const length = assertMacLength(opts.length ?? 8, 8);
  const padded = pad(data, 8, opts.padding ?? 1);
  const [kl, klkr] = retailHandles(key);
  const last = padded.subarray(padded.length - 8);
  if (padded.length > 8) {
    // CBC under KL up to the last block, then that block xor the chain value (`padded` is ours).
    const chain = kl.cbcEncrypt(padded.subarray(0, padded.length - 8));
    for (let i = 0; i < 8; i++) last[i]! ^= chain[chain.length - 8 + i]!;
  }
  return klkr.ecbEncrypt(last).subarray(0, length);
}

const UNIONPAY_MAC_LENGTH = 8;

/** Upper-case hex digits as ASCII bytes, written without an intermediate string. */
function hexAscii(block: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(block.length * 2);
  for (let i = 0; i < block.length; i++) {
    const hi = block[i]! >>> 4;
    const lo = block[i]! & 0x0f;
    out[2 * i] = hi < 10 ? 0x30 + hi : 0x37 + hi;
    out[2 * i + 1] = lo < 10 ? 0x30 + lo : 0x37 + lo;
  }
  return out;
}

/**
 * The China UnionPay POS "ECB" MAC over a MAB (MTI up to, not including, field 64):
 * zero-pad, XOR all blocks into one, hex-expand it to L‖R (2 × block size ASCII bytes),
 * E(E(L) ⊕ R), hex-expand. Field 64 is the first 8 ASCII hex characters ('hex') or the first
 * 8 bytes of the final block ('binary'); acquirers differ, so it is an option.
 *
 * Block size 8 for DES and TDES MAKs (a double-length TDES MAK encrypts as 2-key TDES), 16 for SM4.
 * @throws POSKEY_ERR_ALGORITHM for an AES key (UnionPay defines no AES variant),
 *   POSKEY_ERR_MAC_OUTPUT for an unknown output form
 */
export function unionPayMac(key: KeyHandle, data: Uint8Array, opts: UnionPayMacOptions = {}): Buffer {
  assertBytes(data, 'data');
  const output = opts.output ?? 'hex';
  if (output !== 'hex' && output !== 'binary') {
    throw new CryptoError('POSKEY_ERR_MAC_OUTPUT', `unknown UnionPay MAC output '${String(output)}'`, {
      field: 'output',
    });
  }
  if (key.algorithm === 'aes') {
    throw new CryptoError('POSKEY_ERR_ALGORITHM', 'UnionPay POS MAC needs a DES, TDES or SM4 key, not aes', {
      field: 'key',
    });
  }
  const bs = key.blockSize;
  const folded = Buffer.alloc(bs);
  for (let off = 0; off < data.length; off += bs) {
    const end = Math.min(bs, data.length - off);
    for (let j = 0; j < end; j++) folded[j]! ^= data[off + j]!;
  }
  // E(E(L) xor R) is exactly the last block of CBC over L‖R with a zero IV: one call, kept context.
  const final = key.cbcEncrypt(hexAscii(folded)).subarray(bs);
  return output === 'binary'
    ? Buffer.from(final.subarray(0, UNIONPAY_MAC_LENGTH))
    : hexAscii(final.subarray(0, UNIONPAY_MAC_LENGTH / 2));
}

/**
 * Generates a MAC with the named algorithm; `opts` carries padding/length (cbc, retail), length
 * (cmac) or output (unionpay-ecb).
 * @throws POSKEY_ERR_MAC_ALGORITHM for an unknown algorithm, plus the algorithm's own errors
 */
export function generateMac(
  algorithm: MacAlgorithm,
  key: KeyHandle,
  data: Uint8Array,
  opts: MacOptions = {},
): Buffer {
  switch (algorithm) {
    case 'cbc':
      return cbcMac(key, data, opts);
    case 'retail':
      return retailMac(key, data, opts);
    case 'cmac':
      assertBytes(data, 'data');
      return cmac(key, data, opts.length ?? key.blockSize);
    case 'unionpay-ecb':
      return unionPayMac(key, data, opts);
    default:
      throw new CryptoError('POSKEY_ERR_MAC_ALGORITHM', `unknown MAC algorithm '${String(algorithm)}'`, {
        field: 'algorithm',
      });
  }
}

/**
 * Recomputes the MAC and compares in constant time. The expected length comes from `opts`
 * (default: the algorithm's full length), never from `mac`: trusting the received length would
 * let a sender shorten the MAC to one byte and succeed one time in 256.
 * @returns true when `mac` is the MAC of `data`
 * @throws POSKEY_ERR_TYPE when `mac` is not bytes, plus everything `generateMac` throws
 */
export function verifyMac(
  algorithm: MacAlgorithm,
  key: KeyHandle,
  data: Uint8Array,
  mac: Uint8Array,
  opts: MacOptions = {},
): boolean {
  assertBytes(mac, 'mac');
  return constantTimeEqual(generateMac(algorithm, key, data, opts), mac);
}
