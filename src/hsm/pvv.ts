/**
 * Visa PIN Verification Value (PVV): how an issuer checks a PIN without keeping it.
 *
 * TSP (transformed security parameter, 16 digits) = the 11 rightmost PAN digits excluding the check
 * digit ‖ PVKI (one digit naming the PVK pair) ‖ the 4 leftmost PIN digits. The TSP, read as 8 bytes,
 * is TDES-encrypted (EDE) under the double-length PVK; the PVV is the first 4 decimal digits of the
 * result read left to right, topped up when there are fewer than 4 with the hex digits A–F (as 0–5),
 * again left to right.
 *
 * Consequences an issuer must know: only the first 4 PIN digits count (a 6-digit PIN and its first
 * four verify alike), and a PVV has 10^4 values, so one wrong PIN in about 10 000 verifies by chance
 * (the try counter is what makes that harmless).
 *
 * The HSM methods live on `Hsm` (src/hsm/hsm.ts) and are declared here in `PinVerificationApi`, not
 * in `HsmApi`: the clear PIN enters only `generatePvv` (PIN issuance) and never leaves; verification
 * takes the PIN block under a ZPK, decrypts it inside, and answers a boolean.
 */
import { constantTimeEqual, zeroize } from '../crypto/bytes.js';
import type { KeyHandle } from '../crypto/cipher.js';
import { decryptPinBlock, type PinBlockFormat } from '../crypto/pinblock.js';
import type { KeyType, LmkKeyBlock } from './api.js';
import { HsmError } from './errors.js';
import type { PinVerificationKeyType } from './key-types.js';

/**
 * The PVK key type for `generateKey` / `importKey` requests. api.ts's `KeyType` (shared with every
 * HsmApi implementation) does not name it; the HSM accepts it at run time through key-types.ts.
 */
export const PVK_KEY_TYPE = 'PVK' satisfies PinVerificationKeyType as unknown as KeyType;

/** TR-31 key usage of a Visa PVK. */
export const PVK_USAGE = 'V2';

export interface GeneratePvvRequest {
  /** The PVK (usage V2) under the LMK. */
  pvk: LmkKeyBlock;
  /** Clear PIN, 4–12 digits: accepted here only, at issuance; never returned or logged. */
  pin: string;
  pan: string;
  /** PIN verification key index, one digit. */
  pvki: string;
}

export interface VerifyPinPvvRequest {
  /** The zone PIN key the PIN block is under (usage P0, decrypt permitted). */
  zpk: LmkKeyBlock;
  /** Hex PIN block under the ZPK. */
  pinBlock: string;
  format: PinBlockFormat;
  pan: string;
  pvk: LmkKeyBlock;
  pvki: string;
  /** The PVV on file, 4 digits. */
  pvv: string;
}

/** The issuer's PIN operations (implemented by `Hsm`). */
export interface PinVerificationApi {
  /** The PVV of a PIN (issuance). */
  generatePvv(req: GeneratePvvRequest): string;
  /**
   * True when the PIN in the block matches the PVV (constant-time compare).
   * @throws POSKEY_ERR_PIN_* / POSKEY_ERR_PAN* when the block does not decode under the ZPK
   */
  verifyPinPvv(req: VerifyPinPvvRequest): boolean;
}

function inputError(code: string, field: string, reason: string): HsmError {
  return new HsmError(code, reason, { field, payShield: '15' });
}

/** @throws POSKEY_ERR_PVKI unless `pvki` is one decimal digit */
export function assertPvki(pvki: unknown, field = 'pvki'): asserts pvki is string {
  if (typeof pvki !== 'string' || !/^[0-9]$/.test(pvki)) {
    throw inputError('POSKEY_ERR_PVKI', field, 'PVKI must be one decimal digit');
  }
}

/** @throws POSKEY_ERR_PVV unless `pvv` is four decimal digits */
export function assertPvv(pvv: unknown, field = 'pvv'): asserts pvv is string {
  if (typeof pvv !== 'string' || !/^[0-9]{4}$/.test(pvv)) {
    throw inputError('POSKEY_ERR_PVV', field, 'PVV must be four decimal digits');
  }
}

/** @throws POSKEY_ERR_PAN unless `pan` is 12–19 digits (11 digits before the check digit feed the TSP) */
function assertPan(pan: unknown, field = 'pan'): asserts pan is string {
  if (typeof pan !== 'string' || !/^[0-9]{12,19}$/.test(pan)) {
    throw inputError('POSKEY_ERR_PAN', field, 'PAN must be 12 to 19 decimal digits');
  }
}

/** @throws POSKEY_ERR_PIN_LENGTH, POSKEY_ERR_PIN_DIGITS */
function assertPin(pin: unknown): asserts pin is string {
  if (typeof pin !== 'string' || !/^[0-9]*$/.test(pin)) {
    throw inputError('POSKEY_ERR_PIN_DIGITS', 'pin', 'PIN must contain only decimal digits');
  }
  if (pin.length < 4 || pin.length > 12) {
    throw inputError('POSKEY_ERR_PIN_LENGTH', 'pin', `PIN has ${pin.length} digits, expected 4 to 12`);
  }
}

/** @throws POSKEY_ERR_KEY_ALGORITHM unless the PVK is a double-length TDES key */
function assertPvkHandle(pvk: KeyHandle): void {
  if (pvk.algorithm !== 'tdes' || pvk.length !== 16) {
    throw new HsmError('POSKEY_ERR_KEY_ALGORITHM', 'a PVK is a double-length TDES key', {
      field: 'pvk',
      payShield: 'A7',
    });
  }
}

/** The 8-byte TSP: PAN digits 11 before the check digit ‖ PVKI ‖ 4 leftmost PIN digits. */
export function transformedSecurityParameter(pan: string, pvki: string, pin: string): Buffer {
  assertPan(pan);
  assertPvki(pvki);
  assertPin(pin);
  return Buffer.from(pan.slice(-12, -1) + pvki + pin.slice(0, 4), 'hex');
}

/** Decimal digits left to right, then A–F as 0–5 left to right, until four. */
function decimalise(block: Uint8Array): string {
  const nibbles: number[] = [];
  for (const b of block) nibbles.push(b >> 4, b & 15);
  let out = '';
  for (const n of nibbles) if (n < 10 && out.length < 4) out += String(n);
  for (const n of nibbles) if (n >= 10 && out.length < 4) out += String(n - 10);
  nibbles.fill(0);
  return out;
}

/**
 * The PVV from a clear PVK handle (the HSM's internal step; exported for the published vectors).
 * @throws POSKEY_ERR_PAN, POSKEY_ERR_PVKI, POSKEY_ERR_PIN_LENGTH, POSKEY_ERR_PIN_DIGITS,
 *   POSKEY_ERR_KEY_ALGORITHM
 */
export function visaPvv(pvk: KeyHandle, pan: string, pvki: string, pin: string): string {
  assertPvkHandle(pvk);
  const tsp = transformedSecurityParameter(pan, pvki, pin);
  const encrypted = pvk.ecbEncrypt(tsp);
  try {
    return decimalise(encrypted);
  } finally {
    zeroize(tsp, encrypted);
  }
}

/**
 * Decrypts the PIN block under the ZPK, computes its PVV and compares it with the one on file in
 * constant time. The PIN exists only inside this call.
 */
export function verifyPvvFromPinBlock(zpk: KeyHandle, pvk: KeyHandle, req: VerifyPinPvvRequest): boolean {
  assertPan(req.pan);
  assertPvki(req.pvki);
  assertPvv(req.pvv);
  assertPvkHandle(pvk);
  if (typeof req.pinBlock !== 'string' || !/^[0-9A-Fa-f]+$/.test(req.pinBlock)) {
    throw inputError('POSKEY_ERR_PIN_BLOCK_LENGTH', 'pinBlock', 'PIN block must be hex');
  }
  const block = Buffer.from(req.pinBlock, 'hex');
  const pin = decryptPinBlock(zpk, block, { format: req.format, pan: req.pan });
  const computed = Buffer.from(visaPvv(pvk, req.pan, req.pvki, pin), 'latin1');
  try {
    return constantTimeEqual(computed, Buffer.from(req.pvv, 'latin1'));
  } finally {
    zeroize(block, computed);
  }
}
