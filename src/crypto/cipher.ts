/**
 * Block ciphers behind one key handle: DES, TDES (2- and 3-key), AES and SM4 in ECB and CBC.
 *
 * Node 20 has no single DES, so DES runs as 3DES with K‖K‖K. A handle keeps its OpenSSL
 * contexts alive because `createCipheriv` costs ~6 µs against ~1.5 µs for an `update` on a kept
 * context (shared research, perf.md §2.2); that is what makes PIN translation and MACs fast.
 */
import { type Cipher, createCipheriv, createDecipheriv, type Decipher } from 'node:crypto';
import { inspect } from 'node:util';
import { CryptoError } from '../errors.js';
import { assertBlocks, assertLength } from './bytes.js';

export type CipherAlgorithm = 'des' | 'tdes' | 'aes' | 'sm4';

export const CIPHER_ALGORITHMS: readonly CipherAlgorithm[] = ['des', 'tdes', 'aes', 'sm4'];

export const BLOCK_SIZE: Readonly<Record<CipherAlgorithm, number>> = { des: 8, tdes: 8, aes: 16, sm4: 16 };

export const KEY_LENGTHS: Readonly<Record<CipherAlgorithm, readonly number[]>> = {
  des: [8],
  tdes: [16, 24],
  aes: [16, 24, 32],
  sm4: [16],
};

type Mode = 'ecb' | 'cbc';

function opensslName(alg: CipherAlgorithm, keyLength: number, mode: Mode): string {
  switch (alg) {
    case 'des':
      return `des-ede3-${mode}`;
    case 'tdes':
      return keyLength === 16 ? `des-ede-${mode}` : `des-ede3-${mode}`;
    case 'aes':
      return `aes-${keyLength * 8}-${mode}`;
    case 'sm4':
      return `sm4-${mode}`;
  }
}

/** A CBC context kept across calls; `chain` mirrors the context's internal IV (its last ciphertext block). */
interface CbcContext<T extends Cipher | Decipher> {
  ctx: T;
  chain: Buffer;
}

/**
 * A symmetric key ready for use. Its bytes are private: only `exportKeyBytes()` returns them, for
 * the few callers whose job is to wrap or export a key. `destroy()` zeroises the key and drops
 * the contexts.
 */
export class KeyHandle {
  readonly algorithm: CipherAlgorithm;
  readonly length: number;
  readonly blockSize: number;
  #key: Buffer;
  #material: Buffer;
  #ecbEnc: Cipher | undefined;
  #ecbDec: Decipher | undefined;
  #cbcEnc: CbcContext<Cipher> | undefined;
  #cbcDec: CbcContext<Decipher> | undefined;
  #derived = new Map<string, unknown>();
  #destroyed = false;

  constructor(algorithm: CipherAlgorithm, key: Uint8Array) {
    if (!CIPHER_ALGORITHMS.includes(algorithm)) {
      throw new CryptoError('POSKEY_ERR_ALGORITHM', `unknown cipher algorithm '${String(algorithm)}'`, {
        field: 'algorithm',
      });
    }
    assertLength(key, KEY_LENGTHS[algorithm], 'key');
    this.algorithm = algorithm;
    this.length = key.length;
    this.blockSize = BLOCK_SIZE[algorithm];
    this.#key = Buffer.from(key);
    this.#material = algorithm === 'des' ? Buffer.concat([this.#key, this.#key, this.#key]) : this.#key;
  }

  /** ECB encryption of whole blocks. */
  ecbEncrypt(data: Uint8Array): Buffer {
    assertBlocks(data, this.blockSize, 'data');
    this.#ecbEnc ??= this.#open(createCipheriv, 'ecb');
    return this.#ecbEnc.update(data);
  }

  /** ECB decryption of whole blocks. */
  ecbDecrypt(data: Uint8Array): Buffer {
    assertBlocks(data, this.blockSize, 'data');
    this.#ecbDec ??= this.#open(createDecipheriv, 'ecb');
    return this.#ecbDec.update(data);
  }

  /** CBC encryption of whole blocks (no padding); the IV defaults to zeros. */
  cbcEncrypt(data: Uint8Array, iv?: Uint8Array): Buffer {
    assertBlocks(data, this.blockSize, 'data');
    const start = this.#iv(iv);
    this.#cbcEnc ??= this.#openCbc(createCipheriv);
    const { ctx, chain } = this.#cbcEnc;
    // The kept context chains from its last ciphertext block; folding (IV xor chain) into the first
    // plaintext block makes it behave as if freshly started with `iv`.
    const input = Buffer.from(data);
    for (let i = 0; i < this.blockSize; i++) input[i]! ^= start[i]! ^ chain[i]!;
    const out = ctx.update(input);
    out.copy(chain, 0, out.length - this.blockSize);
    return out;
  }

  /** CBC decryption of whole blocks (no padding); the IV defaults to zeros. */
  cbcDecrypt(data: Uint8Array, iv?: Uint8Array): Buffer {
    assertBlocks(data, this.blockSize, 'data');
    const start = this.#iv(iv);
    this.#cbcDec ??= this.#openCbc(createDecipheriv);
    const { ctx, chain } = this.#cbcDec;
    const out = ctx.update(data);
    for (let i = 0; i < this.blockSize; i++) out[i]! ^= start[i]! ^ chain[i]!;
    chain.set(data.subarray(data.length - this.blockSize));
    return out;
  }

  /**
   * A value derived once from this key and kept with it (CMAC subkeys, key variants).
   * Derived buffers are zeroised by `destroy()`.
   */
  derived<T>(name: string, make: () => T): T {
    this.#live();
    if (!this.#derived.has(name)) this.#derived.set(name, make());
    return this.#derived.get(name) as T;
  }

  /** A copy of the clear key. Only key wrapping, export and combining code should call this. */
  exportKeyBytes(): Buffer {
    this.#live();
    return Buffer.from(this.#key);
  }

  /** Zeroises the key and everything derived from it; the handle is unusable afterwards. */
  destroy(): void {
    this.#key.fill(0);
    this.#material.fill(0);
    for (const v of this.#derived.values()) zeroizeDerived(v);
    this.#derived.clear();
    this.#ecbEnc = this.#ecbDec = undefined;
    this.#cbcEnc = this.#cbcDec = undefined;
    this.#destroyed = true;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  toString(): string {
    return `KeyHandle(${this.algorithm}, ${this.length * 8} bits)`;
  }

  toJSON(): { algorithm: CipherAlgorithm; bits: number } {
    return { algorithm: this.algorithm, bits: this.length * 8 };
  }

  [inspect.custom](): string {
    return this.toString();
  }

  #live(): void {
    if (this.#destroyed) throw new CryptoError('POSKEY_ERR_KEY_DESTROYED', 'key handle has been destroyed');
  }

  #iv(iv: Uint8Array | undefined): Uint8Array {
    if (iv === undefined) return Buffer.alloc(this.blockSize);
    return assertLength(iv, [this.blockSize], 'iv');
  }

  #open<T extends Cipher | Decipher>(
    factory: (name: string, key: Buffer, iv: Buffer | null) => T,
    mode: Mode,
    iv: Buffer | null = null,
  ): T {
    this.#live();
    const ctx = factory(opensslName(this.algorithm, this.length, mode), this.#material, iv);
    ctx.setAutoPadding(false);
    return ctx;
  }

  #openCbc<T extends Cipher | Decipher>(
    factory: (name: string, key: Buffer, iv: Buffer | null) => T,
  ): CbcContext<T> {
    const chain = Buffer.alloc(this.blockSize);
    return { ctx: this.#open(factory, 'cbc', Buffer.from(chain)), chain };
  }
}

function zeroizeDerived(v: unknown): void {
  if (v instanceof Uint8Array) v.fill(0);
  else if (v instanceof KeyHandle) v.destroy();
  else if (Array.isArray(v)) for (const x of v) zeroizeDerived(x);
}

/** Makes a key handle; the key bytes are copied, so the caller may zeroise its own buffer. */
export function createKey(algorithm: CipherAlgorithm, key: Uint8Array): KeyHandle {
  return new KeyHandle(algorithm, key);
}

/** One-shot helpers for callers that do not keep a handle (CLI, tests). */
export function encrypt(
  algorithm: CipherAlgorithm,
  mode: Mode,
  key: Uint8Array,
  data: Uint8Array,
  iv?: Uint8Array,
): Buffer {
  const k = createKey(algorithm, key);
  try {
    return mode === 'ecb' ? k.ecbEncrypt(data) : k.cbcEncrypt(data, iv);
  } finally {
    k.destroy();
  }
}

export function decrypt(
  algorithm: CipherAlgorithm,
  mode: Mode,
  key: Uint8Array,
  data: Uint8Array,
  iv?: Uint8Array,
): Buffer {
  const k = createKey(algorithm, key);
  try {
    return mode === 'ecb' ? k.ecbDecrypt(data) : k.cbcDecrypt(data, iv);
  } finally {
    k.destroy();
  }
}

export type CipherMode = Mode;
