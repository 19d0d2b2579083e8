/**
 * TDES DUKPT (ANSI X9.24-1:2009, Annex A): host-side derivation from the BDK and the device-side
 * future-key-register state machine.
 *
 * KSN (10 bytes, 80 bits) = Key Set ID ‖ TRSM ID ‖ 21-bit transaction counter. The counter never
 * has more than 10 one-bits, so its last value is 0x1FF800. Only full 10-byte KSNs are accepted:
 * the 8-byte "short" KSN that some terminals send has no standard padding (moov-io/dukpt assumes a
 * leading FFFF), so callers pad it themselves, explicitly, before it reaches key derivation.
 */
import { inspect } from 'node:util';
import { CryptoError } from '../errors.js';
import { assertLength, toHex, xor, zeroize } from './bytes.js';
import { createKey } from './cipher.js';
import { type DukptCounterLimits, DukptRegisters } from './dukpt-registers.js';

export const DUKPT_TDES_KSN_LENGTH = 10;
export const DUKPT_TDES_KEY_LENGTH = 16;
/** Bits of the KSN that count transactions (the rightmost 21). */
export const DUKPT_TDES_COUNTER_BITS = 21;
/** A counter may have at most this many one-bits; others are skipped. */
export const DUKPT_TDES_MAX_ONE_BITS = 10;
/** The last counter a device can use: ten one-bits at the top. */
export const DUKPT_TDES_MAX_COUNTER = 0x1ff800;

const COUNTER_MASK = (1 << DUKPT_TDES_COUNTER_BITS) - 1;

/** Key mask of the IPEK right half and of the left half of each NRKGP step (X9.24-1 A.6). */
const C0_MASK = Buffer.from('C0C0C0C000000000C0C0C0C000000000', 'hex');

/** Working keys derived from a transaction key. */
export type DukptTdesKeyType = 'pin' | 'mac' | 'mac-response' | 'data' | 'data-response';

/** Variant constants XORed onto the transaction key (X9.24-1:2009 A.6; 'mac'/'data' are the request keys). */
export const DUKPT_TDES_VARIANTS: Readonly<Record<DukptTdesKeyType, string>> = {
  pin: '00000000000000FF00000000000000FF',
  mac: '000000000000FF00000000000000FF00',
  'mac-response': '00000000FF00000000000000FF000000',
  data: '0000000000FF00000000000000FF0000',
  'data-response': '000000FF00000000000000FF00000000',
};

const VARIANT_BYTES = new Map<string, Buffer>(
  Object.entries(DUKPT_TDES_VARIANTS).map(([k, v]) => [k, Buffer.from(v, 'hex')]),
);

function ksnError(reason: string, field: string): CryptoError {
  return new CryptoError('POSKEY_ERR_KSN', reason, { field });
}

function popcount(n: number): number {
  let bits = 0;
  for (let v = n; v !== 0; v &= v - 1) bits++;
  return bits;
}

function assertKsn(ksn: Uint8Array, field = 'ksn'): Uint8Array {
  if (!(ksn instanceof Uint8Array)) throw new CryptoError('POSKEY_ERR_TYPE', 'must be bytes', { field });
  if (ksn.length !== DUKPT_TDES_KSN_LENGTH) {
    throw ksnError(`KSN must be ${DUKPT_TDES_KSN_LENGTH} bytes, got ${ksn.length}`, field);
  }
  return ksn;
}

function counterOf(ksn: Uint8Array): number {
  return ((ksn[7]! & 0x1f) << 16) | (ksn[8]! << 8) | ksn[9]!;
}

/** Checks that a counter can name a transaction: non-zero, at most 10 one-bits. */
function assertTransactionCounter(counter: number, field: string): number {
  if (counter === 0) throw ksnError('transaction counter is zero (that is the initial KSN)', field);
  if (popcount(counter) > DUKPT_TDES_MAX_ONE_BITS) {
    throw ksnError(`transaction counter ${counter.toString(16)} has more than 10 one-bits`, field);
  }
  return counter;
}

/** The 21-bit transaction counter of a 10-byte KSN. */
export function ksnCounter(ksn: Uint8Array): number {
  return counterOf(assertKsn(ksn));
}

/** The KSN with its counter set to `counter` (a fresh Buffer). */
export function ksnWithCounter(ksn: Uint8Array, counter: number): Buffer {
  assertKsn(ksn);
  if (!Number.isInteger(counter) || counter < 0 || counter > COUNTER_MASK) {
    throw ksnError(`counter ${counter} outside 0..${COUNTER_MASK}`, 'counter');
  }
  const out = Buffer.from(ksn);
  out[7] = (out[7]! & 0xe0) | (counter >>> 16);
  out[8] = (counter >>> 8) & 0xff;
  out[9] = counter & 0xff;
  return out;
}

/** The initial KSN (IKSN): the KSN with its 21 counter bits cleared. */
export function initialKsn(ksn: Uint8Array): Buffer {
  return ksnWithCounter(ksn, 0);
}

/**
 * The counter a device uses after `counter`: the next value with at most 10 one-bits.
 * @throws POSKEY_ERR_DUKPT_EXHAUSTED after 0x1FF800
 */
export function nextCounter(counter: number): number {
  if (!Number.isInteger(counter) || counter < 0 || counter > COUNTER_MASK) {
    throw ksnError(`counter ${counter} outside 0..${COUNTER_MASK}`, 'counter');
  }
  let next = counter + 1;
  // Adding the lowest set bit clears the run of low ones, the quickest way back under 11 one-bits.
  while (next <= COUNTER_MASK && popcount(next) > DUKPT_TDES_MAX_ONE_BITS) next += next & -next;
  if (next > DUKPT_TDES_MAX_COUNTER) {
    throw new CryptoError('POSKEY_ERR_DUKPT_EXHAUSTED', 'transaction counter exhausted (last is 1FF800)', {
      field: 'counter',
    });
  }
  return next;
}

/**
 * Initial PIN Encryption Key: left = TDES(BDK, IKSN₈), right = TDES(BDK ⊕ C0C0C0C0…, IKSN₈), where
 * IKSN₈ is the leftmost 8 bytes of the KSN with its counter cleared.
 * @throws POSKEY_ERR_LENGTH unless the BDK is 16 bytes; POSKEY_ERR_KSN unless the KSN is 10 bytes
 */
export function deriveIpek(bdk: Uint8Array, ksn: Uint8Array): Buffer {
  assertLength(bdk, [DUKPT_TDES_KEY_LENGTH], 'bdk');
  const iksn = initialKsn(ksn).subarray(0, 8);
  const ipek = Buffer.alloc(DUKPT_TDES_KEY_LENGTH);
  const masked = xor(bdk, C0_MASK);
  const left = createKey('tdes', bdk);
  const right = createKey('tdes', masked);
  try {
    left.ecbEncrypt(iksn).copy(ipek, 0);
    right.ecbEncrypt(iksn).copy(ipek, 8);
    return ipek;
  } finally {
    left.destroy();
    right.destroy();
    zeroize(masked);
  }
}

/** One half of the non-reversible key generation: (DES_KL(reg ⊕ KR)) ⊕ KR into `out` at `offset`. */
function nrkgpHalf(key: Uint8Array, reg: Uint8Array, out: Buffer, offset: number): void {
  const kr = key.subarray(8, 16);
  const input = xor(reg, kr);
  const des = createKey('des', key.subarray(0, 8));
  try {
    const enc = des.ecbEncrypt(input);
    for (let i = 0; i < 8; i++) out[offset + i] = enc[i]! ^ kr[i]!;
    zeroize(enc);
  } finally {
    des.destroy();
    zeroize(input);
  }
}

/**
 * Non-reversible key generation process (X9.24-1:2009 A.2): the key for the 8-byte crypto register
 * `reg` (rightmost 64 KSN bits with the counter bits reached so far) from the key one step above.
 */
function nrkgp(key: Uint8Array, reg: Uint8Array): Buffer {
  const out = Buffer.alloc(DUKPT_TDES_KEY_LENGTH);
  nrkgpHalf(key, reg, out, 8);
  const masked = xor(key, C0_MASK);
  try {
    nrkgpHalf(masked, reg, out, 0);
  } finally {
    zeroize(masked);
  }
  return out;
}

/** The key of `counter` reached from `base`, whose own counter is `from` (a prefix of `counter`'s bits). */
function walk(base: Uint8Array, ksn: Uint8Array, from: number, counter: number): Buffer {
  const reg = ksnWithCounter(ksn, from).subarray(2);
  let working = from;
  let key: Buffer = Buffer.from(base);
  for (let bit = 1 << (DUKPT_TDES_COUNTER_BITS - 1); bit !== 0; bit >>>= 1) {
    if ((counter & bit) === 0 || (working & bit) !== 0) continue;
    working |= bit;
    reg[5] = (reg[5]! & 0xe0) | (working >>> 16);
    reg[6] = (working >>> 8) & 0xff;
    reg[7] = working & 0xff;
    const next = nrkgp(key, reg);
    zeroize(key);
    key = next;
  }
  return key;
}

/**
 * The transaction key (current key) for a KSN: one NRKGP step per set counter bit, from the top.
 * @throws POSKEY_ERR_KSN for a zero counter or one with more than 10 one-bits
 */
export function deriveTransactionKey(ipek: Uint8Array, ksn: Uint8Array): Buffer {
  assertLength(ipek, [DUKPT_TDES_KEY_LENGTH], 'ipek');
  const counter = assertTransactionCounter(ksnCounter(ksn), 'ksn');
  return walk(ipek, ksn, 0, counter);
}

/** IPEK then transaction key, the IPEK zeroised on the way. */
export function deriveTransactionKeyFromBdk(bdk: Uint8Array, ksn: Uint8Array): Buffer {
  const ipek = deriveIpek(bdk, ksn);
  try {
    return deriveTransactionKey(ipek, ksn);
  } finally {
    zeroize(ipek);
  }
}

/**
 * A working key from a transaction key: the variant of `type` XORed on, and for data keys the
 * one-way step DK = TDES(V, V_left) ‖ TDES(V, V_right).
 * @throws POSKEY_ERR_DUKPT_KEY_TYPE for an unknown type
 */
export function deriveWorkingKey(transactionKey: Uint8Array, type: DukptTdesKeyType): Buffer {
  assertLength(transactionKey, [DUKPT_TDES_KEY_LENGTH], 'transactionKey');
  const variant = VARIANT_BYTES.get(type);
  if (variant === undefined) {
    throw new CryptoError('POSKEY_ERR_DUKPT_KEY_TYPE', `unknown TDES DUKPT key type '${String(type)}'`, {
      field: 'type',
    });
  }
  const key = xor(transactionKey, variant);
  if (type !== 'data' && type !== 'data-response') return key;
  const handle = createKey('tdes', key);
  try {
    return handle.ecbEncrypt(key);
  } finally {
    handle.destroy();
    zeroize(key);
  }
}

/** Everything the host derives for one KSN. The caller owns (and should zeroise) the three buffers. */
export interface DukptTdesHostKeys {
  ipek: Buffer;
  transactionKey: Buffer;
  key: Buffer;
}

/** BDK + KSN → IPEK, transaction key and the working key of `type`. */
export function deriveHostKey(bdk: Uint8Array, ksn: Uint8Array, type: DukptTdesKeyType): DukptTdesHostKeys {
  const ipek = deriveIpek(bdk, ksn);
  const transactionKey = deriveTransactionKey(ipek, ksn);
  return { ipek, transactionKey, key: deriveWorkingKey(transactionKey, type) };
}

const TDES_LIMITS: DukptCounterLimits = Object.freeze({
  bits: DUKPT_TDES_COUNTER_BITS,
  maxOneBits: DUKPT_TDES_MAX_ONE_BITS,
  maxCounter: DUKPT_TDES_MAX_COUNTER,
});

/**
 * The originating device (PIN pad) side: 21 future-key registers, one per counter bit. Register `b`
 * holds the key of the next counter whose lowest one-bit is `b`. Using a key first fills the
 * registers below its lowest bit with keys derived from it, then erases it; the IPEK itself is
 * never kept. Keys leave the device only as fresh Buffers owned by the caller.
 *
 * The KSN given to the constructor normally has a zero counter (a fresh load). A non-zero counter
 * starts the device as if it had already used every earlier counter (simulators, tests); its
 * registers are then filled by host-style derivation from the IPEK.
 */
export class DukptTdesDevice {
  readonly #ksn: Buffer;
  readonly #registers: DukptRegisters;
  #destroyed = false;

  constructor(ipek: Uint8Array, ksn: Uint8Array) {
    assertLength(ipek, [DUKPT_TDES_KEY_LENGTH], 'ipek');
    const start = ksnCounter(ksn);
    const iksn = initialKsn(ksn);
    this.#ksn = iksn;
    this.#registers = new DukptRegisters(
      TDES_LIMITS,
      ipek,
      start === 0 ? 1 : assertTransactionCounter(start, 'ksn'),
      (key, from, to) => walk(key, iksn, from, to),
    );
  }

  /**
   * Starts the next transaction: takes the key for the next counter, refills the registers below
   * its lowest bit and erases the register it came from. Returns that transaction's KSN.
   * @throws POSKEY_ERR_DUKPT_EXHAUSTED once 0x1FF800 has been used
   */
  next(): Buffer {
    this.#live();
    if (this.#registers.exhausted) {
      throw new CryptoError('POSKEY_ERR_DUKPT_EXHAUSTED', 'device has used its last KSN; reload an IPEK', {
        field: 'ksn',
      });
    }
    return ksnWithCounter(this.#ksn, this.#registers.advance());
  }

  /** The current transaction's key (a copy the caller owns). */
  transactionKey(): Buffer {
    return Buffer.from(this.#currentKey());
  }

  /** A working key of the current transaction. */
  workingKey(type: DukptTdesKeyType): Buffer {
    return deriveWorkingKey(this.#currentKey(), type);
  }

  /** `next()` plus the transaction key, or the working key of `type` when given. */
  nextKey(type?: DukptTdesKeyType): { ksn: Buffer; key: Buffer } {
    const ksn = this.next();
    return { ksn, key: type === undefined ? this.transactionKey() : this.workingKey(type) };
  }

  /** KSN of the transaction in progress, if any. */
  get ksn(): Buffer | undefined {
    const r = this.#registers;
    return r.current === undefined ? undefined : ksnWithCounter(this.#ksn, r.currentCounter);
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

  toJSON(): { iksn: string; nextCounter: number | null; exhausted: boolean } {
    return { iksn: toHex(this.#ksn), nextCounter: this.nextCounter ?? null, exhausted: this.exhausted };
  }

  toString(): string {
    return `DukptTdesDevice(${toHex(this.#ksn)}, next ${this.nextCounter?.toString(16) ?? 'none'})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  #currentKey(): Buffer {
    this.#live();
    const current = this.#registers.current;
    if (current === undefined) {
      throw new CryptoError('POSKEY_ERR_DUKPT_STATE', 'no transaction in progress; call next() first');
    }
    return current;
  }

  #live(): void {
    if (this.#destroyed) throw new CryptoError('POSKEY_ERR_KEY_DESTROYED', 'DUKPT device has been destroyed');
  }
}
