/**
 * TR-31 / ANSI X9.143 key blocks, versions A, B, C (TDES KBPK) and D (AES KBPK).
 *
 * Block = header (ASCII) ‖ hex(encrypted payload) ‖ hex(MAC); payload = key length in bits (2 bytes)
 * ‖ key ‖ random padding to the cipher block (and, by default, padding that hides the key length,
 * as X9.143 asks).
 * - A / C (variant binding): KBEK = KBPK ⊕ 45…, KBAK = KBPK ⊕ 4D…; TDES-CBC with IV = first 8 header
 *   bytes; MAC = TDES CBC-MAC over header ‖ encrypted payload, 4 bytes.
 * - B / D (CMAC binding): KBEK/KBAK from a CMAC counter KDF (SP 800-108); MAC = CMAC over header ‖
 *   clear payload (8 bytes TDES, 16 AES) and doubles as the CBC IV.
 * Derived keys are cached on the KBPK handle: an HSM unwraps many blocks under one KBPK.
 */
import { randomBytes } from 'node:crypto';
import { CryptoError } from '../errors.js';
import { constantTimeEqual, drawRandom, toHex } from './bytes.js';
import { createKey, type KeyHandle } from './cipher.js';
import { cmac, cmacCounterKdf } from './cmac.js';
import {
  allowedKeyLengths,
  buildHeader,
  padOptionalBlocks,
  parseHeader,
  readHeader,
  TR31_BLOCK_SIZE,
  TR31_MAX_BLOCK_LENGTH,
  type Tr31Header,
  type Tr31Version,
} from './tr31-header.js';

export * from './tr31-header.js';

export type RandomSource = (n: number) => Buffer;

const MAC_LENGTH: Readonly<Record<Tr31Version, number>> = { A: 4, B: 8, C: 4, D: 16 };
const UPPER_HEX = /^[0-9A-F]*$/;

/** Largest key of each cipher algorithm: the default length a wrapped key is padded to. */
const MASK_TO: Readonly<Record<string, number>> = { T: 24, D: 8, A: 32, '4': 16 };

interface BindingKeys {
  kbek: KeyHandle;
  kbak: KeyHandle;
}

function assertKbpk(kbpk: KeyHandle, version: Tr31Version): void {
  const ok =
    version === 'D'
      ? kbpk.algorithm === 'aes'
      : version === 'B'
        ? kbpk.algorithm === 'tdes'
        : kbpk.algorithm === 'tdes' || kbpk.algorithm === 'des';
  if (!ok) {
    const need = version === 'D' ? 'an AES' : version === 'B' ? 'a 2- or 3-key TDES' : 'a DES/TDES';
    throw new CryptoError(
      'POSKEY_ERR_TR31_VERSION',
      `version ${version} key blocks need ${need} KBPK, got ${kbpk.algorithm} (${kbpk.length * 8} bits)${kbpk.algorithm === 'aes' ? '; AES KBPKs use version D' : ''}`,
      { field: 'kbpk' },
    );
  }
}

/** Variant binding (A, C): the KBPK XOR a constant byte, per half. */
function variantKeys(kbpk: KeyHandle): BindingKeys {
  return kbpk.derived('tr31-variant', () => {
    const k = kbpk.exportKeyBytes();
    const v = Buffer.alloc(k.length);
    const derive = (c: number) => {
      for (let i = 0; i < k.length; i++) v[i] = k[i]! ^ c;
      return createKey(kbpk.algorithm, v);
    };
    try {
      return { kbek: derive(0x45), kbak: derive(0x4d) };
    } finally {
      k.fill(0);
      v.fill(0);
    }
  });
}

/** CMAC counter-mode KDF (B, D): counter ‖ usage (0000 enc, 0001 MAC) ‖ 00 ‖ algorithm ‖ bits. */
function cmacKdf(kbpk: KeyHandle, usage: 0 | 1): KeyHandle {
  const bits = kbpk.length * 8;
  const alg =
    kbpk.algorithm === 'aes'
      ? ({ 16: 2, 24: 3, 32: 4 } as Record<number, number>)[kbpk.length]!
      : kbpk.length === 16
        ? 0
        : 1;
  const input = Buffer.from([0, 0, usage, 0, 0, alg, bits >> 8, bits & 0xff]);
  return cmacCounterKdf(kbpk, (counter) => {
    input[0] = counter;
    return input;
  });
}

function bindingKeys(kbpk: KeyHandle, version: Tr31Version): BindingKeys {
  if (version === 'A' || version === 'C') return variantKeys(kbpk);
  return kbpk.derived('tr31-cmac', () => ({ kbek: cmacKdf(kbpk, 0), kbak: cmacKdf(kbpk, 1) }));
}

/** TDES CBC-MAC (ISO 9797-1 alg 1, data already block aligned), first 4 bytes. */
function variantMac(kbak: KeyHandle, data: Buffer): Buffer {
  const c = kbak.cbcEncrypt(data);
  return Buffer.from(c.subarray(c.length - 8, c.length - 4));
}

function checkKeyLength(header: Tr31Header, length: number, field: string): void {
  const allowed = allowedKeyLengths(header.algorithm);
  if (length === 0 || (allowed !== undefined && !allowed.includes(length))) {
    throw new CryptoError(
      'POSKEY_ERR_TR31_KEY_LENGTH',
      `key of ${length} bytes does not fit algorithm ${header.algorithm}${allowed ? ` (${allowed.join(', ')} bytes)` : ''}`,
      { field },
    );
  }
}

/**
 * Wraps `key` under `kbpk`. Any PB block in the header is replaced by one computed for the version.
 * The payload hides the key length by padding the key to `maskedKeyLength` bytes (default: the
 * largest key of the header's algorithm, e.g. 24 for T, 32 for A; pass the key length to disable).
 * @throws POSKEY_ERR_TR31_VERSION (KBPK does not fit the version), POSKEY_ERR_TR31_KEY_LENGTH,
 *   POSKEY_ERR_TR31_HEADER / _OPTIONAL_BLOCK (bad header), POSKEY_ERR_TR31_LENGTH (over 9999 characters)
 */
export function wrapKeyBlock(opts: {
  kbpk: KeyHandle;
  header: Tr31Header | string;
  key: Uint8Array;
  random?: RandomSource;
  maskedKeyLength?: number;
}): string {
  const { kbpk, key } = opts;
  const given = typeof opts.header === 'string' ? parseHeader(opts.header) : opts.header;
  buildHeader(given); // validate before touching key material
  assertKbpk(kbpk, given.version);
  if (!(key instanceof Uint8Array)) {
    throw new CryptoError('POSKEY_ERR_TYPE', 'key must be bytes', { field: 'key' });
  }
  checkKeyLength(given, key.length, 'key');
  const masked = opts.maskedKeyLength ?? MASK_TO[given.algorithm] ?? key.length;
  if (!Number.isInteger(masked) || masked < 0) {
    throw new CryptoError('POSKEY_ERR_TR31_KEY_LENGTH', `masked key length ${masked} is not a byte count`, {
      field: 'maskedKeyLength',
    });
  }
  if (key.length * 8 > 0xffff) {
    throw new CryptoError('POSKEY_ERR_TR31_KEY_LENGTH', `key of ${key.length} bytes is too long`, {
      field: 'key',
    });
  }
  const version = given.version;
  const bs = TR31_BLOCK_SIZE[version];
  const header: Tr31Header = { ...given, optionalBlocks: padOptionalBlocks(given.optionalBlocks, version) };
  const headerLength = buildHeader(header).length;
  const payloadLength = Math.ceil((2 + Math.max(key.length, masked)) / bs) * bs;
  const total = headerLength + 2 * payloadLength + 2 * MAC_LENGTH[version];
  if (total > TR31_MAX_BLOCK_LENGTH) {
    throw new CryptoError('POSKEY_ERR_TR31_LENGTH', `key block would be ${total} characters, at most 9999`, {
      field: 'length',
    });
  }
  const headerBytes = Buffer.from(buildHeader(header, total), 'ascii');
  const payload = Buffer.alloc(payloadLength);
  payload.writeUInt16BE(key.length * 8, 0);
  payload.set(key, 2);
  drawRandom(opts.random ?? randomBytes, payloadLength - 2 - key.length).copy(payload, 2 + key.length);
  const { kbek, kbak } = bindingKeys(kbpk, version);
  let encrypted: Buffer;
  let mac: Buffer;
  if (version === 'A' || version === 'C') {
    encrypted = kbek.cbcEncrypt(payload, headerBytes.subarray(0, 8));
    mac = variantMac(kbak, Buffer.concat([headerBytes, encrypted]));
  } else {
    const macInput = Buffer.concat([headerBytes, payload]);
    mac = Buffer.from(cmac(kbak, macInput));
    macInput.fill(0);
    encrypted = kbek.cbcEncrypt(payload, mac);
  }
  payload.fill(0);
  return headerBytes.toString('ascii') + toHex(encrypted) + toHex(mac);
}

function lengthError(reason: string): CryptoError {
  return new CryptoError('POSKEY_ERR_TR31_LENGTH', reason, { field: 'length' });
}

function bodyHex(hex: string, field: string): Buffer {
  if (!UPPER_HEX.test(hex)) {
    throw new CryptoError('POSKEY_ERR_HEX', 'key block body must be upper-case hexadecimal', { field });
  }
  return Buffer.from(hex, 'hex');
}

/**
 * Verifies and decrypts a key block. Authentication happens before the payload is interpreted, so a
 * tampered block or a wrong KBPK fails with POSKEY_ERR_TR31_MAC, never with a wrong key.
 * @throws POSKEY_ERR_TR31_HEADER / _OPTIONAL_BLOCK / _VERSION / _LENGTH / _MAC / _KEY_LENGTH, POSKEY_ERR_HEX
 */
export function unwrapKeyBlock(opts: { kbpk: KeyHandle; block: string }): {
  header: Tr31Header;
  key: Buffer;
} {
  const { kbpk, block } = opts;
  const { header, declaredLength, headerLength } = readHeader(block);
  const version = header.version;
  assertKbpk(kbpk, version);
  const bs = TR31_BLOCK_SIZE[version];
  if (declaredLength !== block.length) {
    throw lengthError(`header declares ${declaredLength} characters, block has ${block.length}`);
  }
  if (block.length % bs !== 0) throw lengthError(`block length ${block.length} is not a multiple of ${bs}`);
  if (headerLength % bs !== 0) {
    throw new CryptoError(
      'POSKEY_ERR_TR31_OPTIONAL_BLOCK',
      `header with optional blocks is ${headerLength} characters, not a multiple of ${bs} (missing PB block)`,
      { field: 'optionalBlocks' },
    );
  }
  const macChars = 2 * MAC_LENGTH[version];
  const payloadChars = block.length - headerLength - macChars;
  if (payloadChars <= 0 || payloadChars % (2 * bs) !== 0) {
    throw lengthError(
      `encrypted payload of ${Math.max(payloadChars, 0)} hex digits is not whole ${bs}-byte blocks`,
    );
  }
  const headerBytes = Buffer.from(block.slice(0, headerLength), 'ascii');
  const encrypted = bodyHex(block.slice(headerLength, headerLength + payloadChars), 'payload');
  const mac = bodyHex(block.slice(headerLength + payloadChars), 'mac');
  const { kbek, kbak } = bindingKeys(kbpk, version);
  let payload: Buffer;
  if (version === 'A' || version === 'C') {
    authenticate(variantMac(kbak, Buffer.concat([headerBytes, encrypted])), mac);
    payload = kbek.cbcDecrypt(encrypted, headerBytes.subarray(0, 8));
  } else {
    payload = kbek.cbcDecrypt(encrypted, mac);
    const macInput = Buffer.concat([headerBytes, payload]);
    try {
      authenticate(cmac(kbak, macInput), mac);
    } catch (e) {
      payload.fill(0);
      throw e;
    } finally {
      macInput.fill(0);
    }
  }
  try {
    return { header, key: extractKey(header, payload) };
  } finally {
    payload.fill(0);
  }
}

function authenticate(expected: Uint8Array, received: Uint8Array): void {
  if (!constantTimeEqual(expected, received)) {
    throw new CryptoError(
      'POSKEY_ERR_TR31_MAC',
      'key block authentication failed (tampered block or wrong KBPK)',
      {
        field: 'mac',
      },
    );
  }
}

function extractKey(header: Tr31Header, payload: Buffer): Buffer {
  const bits = payload.readUInt16BE(0);
  if (bits === 0 || bits % 8 !== 0 || 2 + bits / 8 > payload.length) {
    throw new CryptoError(
      'POSKEY_ERR_TR31_KEY_LENGTH',
      `decrypted key length field (${bits} bits) does not fit a ${payload.length - 2}-byte payload`,
      { field: 'key' },
    );
  }
  const length = bits / 8;
  checkKeyLength(header, length, 'key');
  return Buffer.from(payload.subarray(2, 2 + length));
}
