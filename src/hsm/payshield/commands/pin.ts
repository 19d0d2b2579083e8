/**
 * PIN translation: CA (TPK → ZPK), CC (ZPK → ZPK), G0 (DUKPT BDK + KSN → ZPK).
 *
 *   CA/CC: source key, destination key, maximum PIN length (2 N), source PIN block,
 *          source format (2 N), destination format (2 N), account number
 *   G0:    BDK, ZPK, KSN descriptor (3 H), KSN, source PIN block, source format,
 *          destination format, account number
 *   →  PIN length (2 N), destination PIN block, destination format (2 N)
 *
 * Layouts: ut-codec-payshield CA/CC/G0 frames, ThalesSim CA, pythales CA. PIN blocks are 16 H under
 * DES/TDES keys and 32 H under AES and SM4 keys (the key block's algorithm letter decides). The
 * account number is the payShield 12 N (the 12 rightmost PAN digits without the check digit); when
 * either format is ISO 4 (48) it is instead a 2 N length and the whole PAN, which format 4 needs.
 */
import type { PinBlockFormat } from '../../../crypto/pinblock.js';
import type { HsmApi, PinSource, TranslatePinRequest } from '../../api.js';
import { HsmError } from '../../errors.js';
import { type FieldCursor, fieldError } from '../fields.js';
import { blockAlgorithmLetter, blockSizeOf } from './keys.js';
import { defineCommand } from './types.js';

/** payShield PIN block format codes → poskey formats. 90 is poskey's vendor code for UnionPay SM4. */
export const PIN_FORMAT_CODES: Readonly<Record<string, PinBlockFormat>> = Object.freeze({
  '01': 0,
  '05': 1,
  '47': 3,
  '48': 4,
  '90': 'sm4',
});

/** poskey PIN block formats → payShield format codes (the inverse of PIN_FORMAT_CODES). */
export const FORMAT_OF_CODE: ReadonlyMap<PinBlockFormat, string> = new Map<PinBlockFormat, string>(
  Object.entries(PIN_FORMAT_CODES).map(([code, format]) => [format, code]),
);

/** The 12-digit account number field stands in for a PAN whose check digit it leaves out. */
const PLACEHOLDER_CHECK_DIGIT = '0';

interface PinFields {
  maxPinLength: number;
  pinBlock: string;
  fromFormat: PinBlockFormat;
  toFormat: PinBlockFormat;
  pan: string;
}

/** A 2 N PIN block format code (error 23 when unknown). */
export function readPinFormat(c: FieldCursor, field: string): PinBlockFormat {
  const code = c.digits(field, 2, '23');
  const format = PIN_FORMAT_CODES[code];
  if (format === undefined) {
    throw fieldError(
      field,
      `PIN block format ${code} is not 01, 05, 47, 48 or 90`,
      '23',
      'POSKEY_ERR_PAYSHIELD_PIN_FORMAT',
    );
  }
  return format;
}

/** The account number: 12 N, or 2 N length + PAN when a format is ISO 4. Returned as a PAN. */
function readAccount(c: FieldCursor, formats: readonly PinBlockFormat[]): string {
  if (formats.includes(4)) {
    const length = c.decimal('panLength', 2, 1, 19);
    return c.digits('pan', length);
  }
  return c.digits('accountNumber', 12) + PLACEHOLDER_CHECK_DIGIT;
}

/** PIN block, formats and account number: the tail CA, CC and G0 share. */
function readPinTail(c: FieldCursor, pinKey: string, maxPinLength: number): PinFields {
  const pinBlock = c.hex('pinBlock', blockSizeOf(pinKey) * 2);
  const fromFormat = readPinFormat(c, 'sourceFormat');
  const toFormat = readPinFormat(c, 'destinationFormat');
  const pan = readAccount(c, [fromFormat, toFormat]);
  return { maxPinLength, pinBlock, fromFormat, toFormat, pan };
}

/** Maximum PIN length field (2 N, 04–12). */
function readMaxPinLength(c: FieldCursor): number {
  return c.decimal('maxPinLength', 2, 4, 12);
}

interface TranslateRequest extends PinFields {
  source: PinSource;
  destination: string;
}

export interface PinResult {
  pinBlock: string;
  /** Digits in the PIN, when the HSM reports it. */
  pinLength?: number;
  toFormat: PinBlockFormat;
}

/**
 * Runs the translation. HsmApi.translatePin returns the PIN block only; an implementation that also
 * reports the PIN length (`{ pinBlock, pinLength }`) gets it into the response, otherwise the PIN
 * length field is 00 ("not reported"): this layer never sees the PIN.
 */
function translate(hsm: HsmApi, req: TranslateRequest): PinResult {
  const apiRequest: TranslatePinRequest = {
    source: req.source,
    destination: req.destination,
    pinBlock: req.pinBlock,
    fromFormat: req.fromFormat,
    toFormat: req.toFormat,
    pan: req.pan,
  };
  const out = hsm.translatePin(apiRequest) as string | { pinBlock: string; pinLength?: number };
  const result: PinResult =
    typeof out === 'string'
      ? { pinBlock: out, toFormat: req.toFormat }
      : { pinBlock: out.pinBlock, pinLength: out.pinLength, toFormat: req.toFormat };
  if (result.pinLength !== undefined && result.pinLength > req.maxPinLength) {
    throw new HsmError('POSKEY_ERR_PIN_LENGTH', `PIN is longer than the maximum ${req.maxPinLength}`, {
      field: 'maxPinLength',
      payShield: '24',
    });
  }
  return result;
}

function formatPinResult(r: PinResult): string {
  const length = String(r.pinLength ?? 0).padStart(2, '0');
  return `${length}${r.pinBlock.toUpperCase()}${FORMAT_OF_CODE.get(r.toFormat)!}`;
}

function parseKeyToKey(c: FieldCursor, sourceField: string, destinationField: string): TranslateRequest {
  const sourceKey = c.lmkKey(sourceField);
  const destination = c.lmkKey(destinationField);
  const maxPinLength = readMaxPinLength(c);
  return {
    source: { kind: 'key', keyBlock: sourceKey },
    destination,
    ...readPinTail(c, sourceKey, maxPinLength),
  };
}

export const CA = defineCommand({
  code: 'CA',
  name: 'Translate a PIN from TPK to ZPK',
  parse: (c) => parseKeyToKey(c, 'sourceTpk', 'destinationZpk'),
  run: (hsm, req) => translate(hsm, req),
  format: formatPinResult,
});

export const CC = defineCommand({
  code: 'CC',
  name: 'Translate a PIN from ZPK to ZPK',
  parse: (c) => parseKeyToKey(c, 'sourceZpk', 'destinationZpk'),
  run: (hsm, req) => translate(hsm, req),
  format: formatPinResult,
});

/** TDES DUKPT KSNs travel as up to 20 H; shorter ones are left-padded with F to the 10-byte KSN. */
const TDES_KSN_HEX = 20;
/** AES DUKPT KSNs (X9.24-3) are 12 bytes. */
const AES_KSN_HEX = 24;

/**
 * KSN descriptor (3 H: BDK-ID, sub-key and device-ID lengths in hex digits) and the KSN it sizes:
 * the three lengths plus 5 for the counter, at most 20 (e.g. A05 and 906 → 20 H). AES BDKs take a
 * 24 H KSN whatever the descriptor.
 */
function readKsn(c: FieldCursor, bdk: string): string {
  const descriptor = c.hex('ksnDescriptor', 3);
  if (blockAlgorithmLetter(bdk) === 'A') return c.hex('ksn', AES_KSN_HEX);
  const length = [...descriptor].reduce((n, d) => n + Number.parseInt(d, 16), 5);
  if (length > TDES_KSN_HEX) {
    throw fieldError('ksnDescriptor', `descriptor ${descriptor} sizes a ${length}-digit KSN, more than 20`);
  }
  return c.hex('ksn', length).padStart(TDES_KSN_HEX, 'F');
}

export const G0 = defineCommand({
  code: 'G0',
  name: 'Translate a PIN from DUKPT (BDK) to ZPK',
  parse(c): TranslateRequest {
    const bdk = c.lmkKey('bdk');
    const destination = c.lmkKey('zpk');
    const ksn = readKsn(c, bdk);
    const aes = blockAlgorithmLetter(bdk) === 'A' ? { keyType: 'aes128' as const } : undefined;
    const source: PinSource =
      aes === undefined ? { kind: 'dukpt', bdk, ksn } : { kind: 'dukpt', bdk, ksn, aes };
    return { source, destination, ...readPinTail(c, bdk, 12) };
  },
  run: (hsm, req) => translate(hsm, req),
  format: formatPinResult,
});
