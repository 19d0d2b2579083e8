/**
 * AES DUKPT (ANSI X9.24-3:2017): host-side derivation from the BDK and the device-side
 * intermediate-derivation-key registers.
 *
 * KSN (12 bytes) = Initial Key ID (BDK ID 4 ‖ derivation ID 4) ‖ 32-bit transaction counter with at
 * most 16 one-bits (last value 0xFFFF0000). Every key comes from the AES-ECB key derivation function
 * of X9.24-3 6.3: one block of 16-byte derivation data per 128 bits of output,
 *   01 ‖ block counter ‖ key usage (2) ‖ algorithm (2) ‖ length in bits (2) ‖ 8 bytes of KSN data,
 * where the KSN data is the whole Initial Key ID for the initial key and otherwise the rightmost
 * 4 bytes of the Initial Key ID ‖ the counter.
 */
import { inspect } from 'node:util';
import { CryptoError } from '../errors.js';
import { assertLength, toHex, zeroize } from './bytes.js';
import { createKey } from './cipher.js';
import { type DukptCounterLimits, DukptRegisters } from './dukpt-registers.js';

export const DUKPT_AES_KSN_LENGTH = 12;
export const DUKPT_AES_INITIAL_KEY_ID_LENGTH = 8;
export const DUKPT_AES_COUNTER_BITS = 32;
export const DUKPT_AES_MAX_ONE_BITS = 16;
/** The last counter a device can use: sixteen one-bits at the top. */
export const DUKPT_AES_MAX_COUNTER = 0xffff0000;

/** What a working key is for (X9.24-3:2017 6.3.2 table 2): 'mac' and 'data' are the both-ways usages. */
export type AesDukptKeyUsage =
  | 'kek'
  | 'pin'
  | 'mac-gen'
  | 'mac-verify'
  | 'mac'
  | 'data-encrypt'
  | 'data-decrypt'
  | 'data';

/** Algorithm and length of a derived key (X9.24-3:2017 6.2.1, 6.3.2 table 3). */
export type AesDukptKeyType =
  | 'tdes2'
  | 'tdes3'
  | 'aes128'
  | 'aes192'
  | 'aes256'
  | 'hmac128'
  | 'hmac192'
  | 'hmac256';

export const AES_DUKPT_USAGE_CODES: Readonly<Record<AesDukptKeyUsage, number>> = {
  kek: 0x0002,
  pin: 0x1000,
  'mac-gen': 0x2000,
  'mac-verify': 0x2001,
  mac: 0x2002,
  'data-encrypt': 0x3000,
  'data-decrypt': 0x3001,
  data: 0x3002,
};

const USAGE_KEY_DERIVATION = 0x8000;
const USAGE_INITIAL_KEY = 0x8001;

export const AES_DUKPT_KEY_TYPES: Readonly<Record<AesDukptKeyType, { algorithm: number; bits: number }>> = {
  tdes2: { algorithm: 0x0000, bits: 128 },
  tdes3: { algorithm: 0x0001, bits: 192 },
  aes128: { algorithm: 0x0002, bits: 128 },
  aes192: { algorithm: 0x0003, bits: 192 },
  aes256: { algorithm: 0x0004, bits: 256 },
  hmac128: { algorithm: 0x0005, bits: 128 },
  hmac192: { algorithm: 0x0005, bits: 192 },
  hmac256: { algorithm: 0x0005, bits: 256 },
};

/** Derivation keys (BDK, initial key, intermediate keys) are AES; their type follows their length. */
const DERIVATION_TYPES: Readonly<Record<number, AesDukptKeyType>> = {
  16: 'aes128',
  24: 'aes192',
  32: 'aes256',
};
const AES_KEY_LENGTHS = [16, 24, 32];

function ksnError(reason: string, field: string): CryptoError {
  return new CryptoError('POSKEY_ERR_KSN', reason, { field });
}

function popcount(n: number): number {
  let bits = 0;
  for (let v = n >>> 0; v !== 0; v = (v & (v - 1)) >>> 0) bits++;
  return bits;
}

function assertKsn(ksn: Uint8Array, field = 'ksn'): Uint8Array {
  if (!(ksn instanceof Uint8Array)) throw new CryptoError('POSKEY_ERR_TYPE', 'must be bytes', { field });
  if (ksn.length !== DUKPT_AES_KSN_LENGTH) {
    throw ksnError(`KSN must be ${DUKPT_AES_KSN_LENGTH} bytes, got ${ksn.length}`, field);
  }
  return ksn;
}

function assertTransactionCounter(counter: number, field: string): number {
  if (counter === 0) throw ksnError('transaction counter is zero', field);
  if (popcount(counter) > DUKPT_AES_MAX_ONE_BITS) {
    throw ksnError(`transaction counter ${counter.toString(16)} has more than 16 one-bits`, field);
  }
  return counter;
}

function assertCounterRange(counter: number): void {
  if (!Number.isInteger(counter) || counter < 0 || counter > 0xffffffff) {
    throw ksnError(`counter ${counter} outside 0..FFFFFFFF`, 'counter');
  }
}

/** The 32-bit transaction counter of a 12-byte KSN. */
export function ksnCounter(ksn: Uint8Array): number {
  assertKsn(ksn);
  return Buffer.from(ksn.buffer, ksn.byteOffset, ksn.byteLength).readUInt32BE(8);
}

/** The Initial Key ID (leftmost 8 bytes) of a KSN, as a fresh Buffer. */
export function initialKeyId(ksn: Uint8Array): Buffer {
  return Buffer.from(assertKsn(ksn).subarray(0, DUKPT_AES_INITIAL_KEY_ID_LENGTH));
}

/** Initial Key ID ‖ counter. */
export function makeKsn(initialKeyIdBytes: Uint8Array, counter: number): Buffer {
  assertInitialKeyId(initialKeyIdBytes);
  assertCounterRange(counter);
  const ksn = Buffer.alloc(DUKPT_AES_KSN_LENGTH);
  ksn.set(initialKeyIdBytes);
  ksn.writeUInt32BE(counter, 8);
  return ksn;
}

/**
 * The counter a device uses after `counter`: the next value with at most 16 one-bits.
 * @throws POSKEY_ERR_DUKPT_EXHAUSTED after 0xFFFF0000
 */
export function nextCounter(counter: number): number {
  assertCounterRange(counter);
  let next = counter + 1;
  while (next <= DUKPT_AES_MAX_COUNTER && popcount(next) > DUKPT_AES_MAX_ONE_BITS)
    next += lowestBitValue(next);
  if (next > DUKPT_AES_MAX_COUNTER) {
    throw new CryptoError('POSKEY_ERR_DUKPT_EXHAUSTED', 'transaction counter exhausted (last is FFFF0000)', {
      field: 'counter',
    });
  }
  return next;
}

function assertInitialKeyId(id: Uint8Array): void {
  if (!(id instanceof Uint8Array)) {
    throw new CryptoError('POSKEY_ERR_TYPE', 'must be bytes', { field: 'initialKeyId' });
  }
  if (id.length !== DUKPT_AES_INITIAL_KEY_ID_LENGTH) {
    throw ksnError(`Initial Key ID must be 8 bytes, got ${id.length}`, 'initialKeyId');
  }
}

function keyTypeOf(type: AesDukptKeyType): { algorithm: number; bits: number } {
  const spec = Object.hasOwn(AES_DUKPT_KEY_TYPES, type) ? AES_DUKPT_KEY_TYPES[type] : undefined;
  if (spec === undefined) {
    throw new CryptoError('POSKEY_ERR_DUKPT_KEY_TYPE', `unknown AES DUKPT key type '${String(type)}'`, {
      field: 'keyType',
    });
  }
  return spec;
}

function usageOf(usage: AesDukptKeyUsage): number {
  const code = Object.hasOwn(AES_DUKPT_USAGE_CODES, usage) ? AES_DUKPT_USAGE_CODES[usage] : undefined;
  if (code === undefined) {
    throw new CryptoError('POSKEY_ERR_DUKPT_KEY_USAGE', `unknown AES DUKPT key usage '${String(usage)}'`, {
      field: 'usage',
    });
  }
  return code;
}

/** The 8 KSN bytes of derivation data for a counter: rightmost half of the Initial Key ID ‖ counter. */
function counterData(ikid: Uint8Array, counter: number): Buffer {
  const data = Buffer.alloc(8);
  data.set(ikid.subarray(4, 8));
  data.writeUInt32BE(counter >>> 0, 4);
  return data;
}

/**
 * X9.24-3 6.3.1 key derivation: AES-ECB of one derivation-data block per 128 output bits, under a
 * single handle for `key`.
 */
function kdf(key: Uint8Array, usage: number, type: AesDukptKeyType, ksnData: Uint8Array): Buffer {
  const { algorithm, bits } = AES_DUKPT_KEY_TYPES[type];
  const blocks = Math.ceil(bits / 128);
  const data = Buffer.alloc(blocks * 16);
  for (let i = 0; i < blocks; i++) {
    const o = i * 16;
    data[o] = 0x01;
    data[o + 1] = i + 1;
    data.writeUInt16BE(usage, o + 2);
    data.writeUInt16BE(algorithm, o + 4);
    data.writeUInt16BE(bits, o + 6);
    data.set(ksnData, o + 8);
  }
  const handle = createKey('aes', key);
  try {
    const out = handle.ecbEncrypt(data);
    const derived = Buffer.from(out.subarray(0, bits / 8));
    zeroize(out);
    return derived;
  } finally {
    handle.destroy();
  }
}

function derivationType(key: Uint8Array, field: string): AesDukptKeyType {
  assertLength(key, AES_KEY_LENGTHS, field);
  return DERIVATION_TYPES[key.length]!;
}

/**
 * The initial key (IK) a device is loaded with; same length as the BDK.
 * @throws POSKEY_ERR_LENGTH unless the BDK is an AES key; POSKEY_ERR_KSN unless the ID is 8 bytes
 */
export function deriveInitialKey(bdk: Uint8Array, initialKeyIdBytes: Uint8Array): Buffer {
  const type = derivationType(bdk, 'bdk');
  assertInitialKeyId(initialKeyIdBytes);
  return kdf(bdk, USAGE_INITIAL_KEY, type, initialKeyIdBytes);
}

/** The derivation key of `counter` reached from `base`, whose own counter is `from` (a prefix of it). */
function walk(base: Uint8Array, ikid: Uint8Array, from: number, counter: number): Buffer {
  const type = DERIVATION_TYPES[base.length]!;
  let working = from >>> 0;
  let key: Buffer = Buffer.from(base);
  for (let b = DUKPT_AES_COUNTER_BITS - 1; b >= 0; b--) {
    const bit = 2 ** b;
    if (!hasBit(counter, bit) || hasBit(working, bit)) continue;
    working += bit;
    const next = kdf(key, USAGE_KEY_DERIVATION, type, counterData(ikid, working));
    zeroize(key);
    key = next;
  }
  return key;
}

function hasBit(value: number, bit: number): boolean {
  return Math.floor(value / bit) % 2 === 1;
}

/**
 * The intermediate derivation key for the KSN's counter (the "transaction key" of the X9.24-3
 * supplement vectors): one derivation per set counter bit, from the top.
 * @throws POSKEY_ERR_KSN for a zero counter or one with more than 16 one-bits
 */
export function deriveDerivationKey(initialKey: Uint8Array, ksn: Uint8Array): Buffer {
  derivationType(initialKey, 'initialKey');
  const counter = assertTransactionCounter(ksnCounter(ksn), 'ksn');
  return walk(initialKey, ksn.subarray(0, DUKPT_AES_INITIAL_KEY_ID_LENGTH), 0, counter);
}

/**
 * A working key for one usage and algorithm, from the KSN's derivation key.
 * @throws POSKEY_ERR_DUKPT_KEY_TYPE for an unknown type or one longer (stronger) than the derivation key;
 *   POSKEY_ERR_DUKPT_KEY_USAGE for an unknown usage
 */
export function deriveWorkingKey(
  derivationKey: Uint8Array,
  ksn: Uint8Array,
  usage: AesDukptKeyUsage,
  keyType: AesDukptKeyType,
): Buffer {
  derivationType(derivationKey, 'derivationKey');
  const counter = assertTransactionCounter(ksnCounter(ksn), 'ksn');
  return workingKeyFor(
    derivationKey,
    ksn.subarray(0, DUKPT_AES_INITIAL_KEY_ID_LENGTH),
    counter,
    usage,
    keyType,
  );
}

/**
 * Validates a working-key request against the derivation key length and returns its usage code.
 * @throws POSKEY_ERR_DUKPT_KEY_USAGE, POSKEY_ERR_DUKPT_KEY_TYPE
 */
function checkWorkingKey(usage: AesDukptKeyUsage, keyType: AesDukptKeyType, derivationBytes: number): number {
  const code = usageOf(usage);
  // X9.24-3:2017 6.1.3: a working key is never stronger than the key it is derived from.
  if (keyTypeOf(keyType).bits > derivationBytes * 8) {
    throw new CryptoError(
      'POSKEY_ERR_DUKPT_KEY_TYPE',
      `a ${keyType} working key is stronger than the ${derivationBytes * 8}-bit derivation key`,
      { field: 'keyType' },
    );
  }
  return code;
}

function workingKeyFor(
  derivationKey: Uint8Array,
  ikid: Uint8Array,
  counter: number,
  usage: AesDukptKeyUsage,
  keyType: AesDukptKeyType,
): Buffer {
  const code = checkWorkingKey(usage, keyType, derivationKey.length);
  return kdf(derivationKey, code, keyType, counterData(ikid, counter));
}

/** Everything the host derives for one KSN. The caller owns (and should zeroise) the three buffers. */
export interface AesDukptHostKeys {
  initialKey: Buffer;
  derivationKey: Buffer;
  key: Buffer;
}

/** BDK + KSN → initial key, derivation key and the working key for `usage`/`keyType`. */
export function deriveHostKey(
  bdk: Uint8Array,
  ksn: Uint8Array,
  usage: AesDukptKeyUsage,
  keyType: AesDukptKeyType,
): AesDukptHostKeys {
  derivationType(bdk, 'bdk');
  const counter = assertTransactionCounter(ksnCounter(ksn), 'ksn');
  const ikid = ksn.subarray(0, DUKPT_AES_INITIAL_KEY_ID_LENGTH);
  // Checked before any derivation so a bad request leaves no key material behind.
  checkWorkingKey(usage, keyType, bdk.length);
  const initialKey = deriveInitialKey(bdk, ikid);
  const derivationKey = walk(initialKey, ikid, 0, counter);
  return { initialKey, derivationKey, key: workingKeyFor(derivationKey, ikid, counter, usage, keyType) };
}

function lowestBitValue(counter: number): number {
  return (counter & -counter) >>> 0;
}

const AES_LIMITS: DukptCounterLimits = Object.freeze({
  bits: DUKPT_AES_COUNTER_BITS,
  maxOneBits: DUKPT_AES_MAX_ONE_BITS,
  maxCounter: DUKPT_AES_MAX_COUNTER,
});

/**
 * The originating device side: 32 intermediate derivation key registers, one per counter bit.
 * Register `b` holds the derivation key of the next counter whose lowest one-bit is `b`. Starting a
 * transaction fills the registers below that bit from its key (unless the counter already has 16
 * one-bits) and erases the register; the initial key is never kept. Working keys leave the device
 * only as fresh Buffers owned by the caller.
 *
 * Built from the initial key and either the 8-byte Initial Key ID or a 12-byte KSN. A KSN with a
 * non-zero counter starts the device at that counter, as if the earlier ones had been used
 * (simulators, tests).
 */
export class DukptAesDevice {
  readonly #ikid: Buffer;
  readonly #keyBits: number;
  readonly #registers: DukptRegisters;
  #destroyed = false;

  constructor(initialKey: Uint8Array, initialKeyIdOrKsn: Uint8Array) {
    derivationType(initialKey, 'initialKey');
    let start = 0;
    if (initialKeyIdOrKsn instanceof Uint8Array && initialKeyIdOrKsn.length === DUKPT_AES_KSN_LENGTH) {
      start = ksnCounter(initialKeyIdOrKsn);
      this.#ikid = initialKeyId(initialKeyIdOrKsn);
    } else {
      assertInitialKeyId(initialKeyIdOrKsn);
      this.#ikid = Buffer.from(initialKeyIdOrKsn);
    }
    this.#keyBits = initialKey.length * 8;
    const ikid = this.#ikid;
    this.#registers = new DukptRegisters(
      AES_LIMITS,
      initialKey,
      start === 0 ? 1 : assertTransactionCounter(start, 'ksn'),
      (key, from, to) => walk(key, ikid, from, to),
    );
  }

  /**
   * Starts the next transaction and returns its KSN. The previous transaction's key is erased.
   * @throws POSKEY_ERR_DUKPT_EXHAUSTED once 0xFFFF0000 has been used
   */
  next(): Buffer {
    this.#live();
    if (this.#registers.exhausted) {
      throw new CryptoError(
        'POSKEY_ERR_DUKPT_EXHAUSTED',
        'device has used its last KSN; load a new initial key',
        {
          field: 'ksn',
        },
      );
    }
    return makeKsn(this.#ikid, this.#registers.advance());
  }

  /**
   * A working key of the current transaction.
   * @throws POSKEY_ERR_DUKPT_STATE before the first `next()`
   */
  workingKey(usage: AesDukptKeyUsage, keyType: AesDukptKeyType): Buffer {
    this.#live();
    const current = this.#registers.current;
    if (current === undefined) {
      throw new CryptoError('POSKEY_ERR_DUKPT_STATE', 'no transaction in progress; call next() first');
    }
    return workingKeyFor(current, this.#ikid, this.#registers.currentCounter, usage, keyType);
  }

  /** `next()` plus one working key. */
  nextKey(usage: AesDukptKeyUsage, keyType: AesDukptKeyType): { ksn: Buffer; key: Buffer } {
    // Reject a bad request before the counter moves.
    checkWorkingKey(usage, keyType, this.#keyBits / 8);
    const ksn = this.next();
    return { ksn, key: this.workingKey(usage, keyType) };
  }

  /** KSN of the transaction in progress, if any. */
  get ksn(): Buffer | undefined {
    const r = this.#registers;
    return r.current === undefined ? undefined : makeKsn(this.#ikid, r.currentCounter);
  }

  /** Counter the next call to `next()` will use (undefined once exhausted). */
  get nextCounter(): number | undefined {
    return this.#registers.nextCounter;
  }

  get exhausted(): boolean {
    return this.#registers.exhausted;
  }

  /** Zeroises every register and the current key; the device is unusable afterwards. */
  destroy(): void {
    this.#registers.destroy();
    this.#destroyed = true;
  }

  toJSON(): { initialKeyId: string; keyBits: number; nextCounter: number | null; exhausted: boolean } {
    return {
      initialKeyId: toHex(this.#ikid),
      keyBits: this.#keyBits,
      nextCounter: this.nextCounter ?? null,
      exhausted: this.exhausted,
    };
  }

  toString(): string {
    return `DukptAesDevice(${toHex(this.#ikid)}, AES-${this.#keyBits}, next ${this.nextCounter?.toString(16) ?? 'none'})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  #live(): void {
    if (this.#destroyed) throw new CryptoError('POSKEY_ERR_KEY_DESTROYED', 'DUKPT device has been destroyed');
  }
}
