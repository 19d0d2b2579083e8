/**
 * ISO 9564-1 PIN blocks: formats 0 (= ANSI X9.8), 1, 2, 3 and 4 (AES), plus the 16-byte SM4 variant of
 * format 0 used by UnionPay terminals.
 *
 * Layouts (one nibble per character; L = PIN length, P = PIN digit, f = fill, R = random nibble):
 * - 0: `0LPPPP f…f` ⊕ `0000` + 12 rightmost PAN digits without the check digit; fill F.
 * - 1: `1LPPPP R…R`, no PAN. 2: `2LPPPP F…F`, no PAN (ICC offline PIN only). 3: as 0 with fill A–F.
 * - 4 (16 bytes): PIN field `4LPPPP A…A` ‖ 8 random bytes; PAN field `m` + PAN (left-padded to 12 digits) +
 *   zeros, m = PAN length − 12 (0 when shorter); block = E(K, E(K, PIN field) ⊕ PAN field).
 * - 'sm4' (16 bytes): `0LPPPP F…F` over 32 nibbles ⊕ the format 0 PAN digits right-aligned in 16 bytes.
 *
 * PINs travel internally as one digit per byte so translation can zeroise them; the string API
 * exists for callers (CLI, tests, terminals) that already hold the PIN as text.
 */
import { randomBytes } from 'node:crypto';
import { CryptoError } from '../errors.js';
import { drawRandom } from './bytes.js';
import type { KeyHandle } from './cipher.js';

export type PinBlockFormat = 0 | 1 | 2 | 3 | 4 | 'sm4';

/** Source of random bytes; injectable so tests can make fill deterministic. */
export type RandomSource = (n: number) => Buffer;

export const PIN_BLOCK_FORMATS: readonly PinBlockFormat[] = [0, 1, 2, 3, 4, 'sm4'];

interface FormatSpec {
  control: number;
  /** Clear block size in bytes. */
  size: 8 | 16;
  /** Whether the PAN enters the block (XOR for 0/3/sm4, second encryption step for 4). */
  needsPan: boolean;
  /** Block cipher the format is defined for. */
  cipher: 'tdes' | 'aes' | 'sm4';
}

const SPECS: Readonly<Record<string, FormatSpec>> = {
  '0': { control: 0, size: 8, needsPan: true, cipher: 'tdes' },
  '1': { control: 1, size: 8, needsPan: false, cipher: 'tdes' },
  '2': { control: 2, size: 8, needsPan: false, cipher: 'tdes' },
  '3': { control: 3, size: 8, needsPan: true, cipher: 'tdes' },
  '4': { control: 4, size: 16, needsPan: true, cipher: 'aes' },
  sm4: { control: 0, size: 16, needsPan: true, cipher: 'sm4' },
};

const MIN_PIN = 4;
const MAX_PIN = 12;
/** Nibbles of the 16-byte format 4 PIN field that carry control, length, PIN and A-fill. */
const FORMAT4_FIXED_NIBBLES = 16;

function specOf(format: PinBlockFormat): FormatSpec {
  const spec = SPECS[String(format)];
  if (spec === undefined) {
    throw new CryptoError('POSKEY_ERR_PIN_BLOCK_FORMAT', `unknown PIN block format '${String(format)}'`, {
      field: 'format',
    });
  }
  return spec;
}

/** Parses CLI input '0'..'4' or 'sm4' (any case) into a format. */
export function parsePinBlockFormat(s: string): PinBlockFormat {
  const t = typeof s === 'string' ? s.trim().toLowerCase() : '';
  if (t === 'sm4') return 'sm4';
  if (/^[0-4]$/.test(t)) return Number(t) as PinBlockFormat;
  throw new CryptoError(
    'POSKEY_ERR_PIN_BLOCK_FORMAT',
    `unknown PIN block format '${String(s)}' (0-4 or sm4)`,
    {
      field: 'format',
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Nibbles, PIN digits, PAN fields

function nibble(b: Uint8Array, i: number): number {
  const byte = b[i >> 1]!;
  return i & 1 ? byte & 0x0f : byte >> 4;
}

function setNibble(b: Uint8Array, i: number, v: number): void {
  const j = i >> 1;
  b[j] = i & 1 ? (b[j]! & 0xf0) | v : (b[j]! & 0x0f) | (v << 4);
}

/** PIN text → one digit value per byte (caller zeroises). */
function pinDigits(pin: string): Buffer {
  if (typeof pin !== 'string') {
    throw new CryptoError('POSKEY_ERR_PIN_DIGITS', 'PIN must be a string of decimal digits', {
      field: 'pin',
    });
  }
  if (pin.length < MIN_PIN || pin.length > MAX_PIN) {
    throw new CryptoError('POSKEY_ERR_PIN_LENGTH', `PIN has ${pin.length} digits, expected 4 to 12`, {
      field: 'pin',
    });
  }
  const digits = Buffer.alloc(pin.length);
  for (let i = 0; i < pin.length; i++) {
    const d = pin.charCodeAt(i) - 48;
    if (d < 0 || d > 9) {
      digits.fill(0);
      throw new CryptoError('POSKEY_ERR_PIN_DIGITS', 'PIN must contain only decimal digits', {
        field: 'pin',
      });
    }
    digits[i] = d;
  }
  return digits;
}

function digitsToPin(digits: Uint8Array): string {
  let s = '';
  for (const d of digits) s += String.fromCharCode(48 + d);
  return s;
}

function panDigits(pan: string | undefined, min: number): string {
  if (pan === undefined || pan === null || pan === '') {
    throw new CryptoError('POSKEY_ERR_PAN', 'a PAN is required for this PIN block format', { field: 'pan' });
  }
  if (typeof pan !== 'string' || !/^\d+$/.test(pan)) {
    throw new CryptoError('POSKEY_ERR_PAN', 'PAN must contain only decimal digits', { field: 'pan' });
  }
  if (pan.length < min || pan.length > 19) {
    throw new CryptoError('POSKEY_ERR_PAN', `PAN has ${pan.length} digits, expected ${min} to 19`, {
      field: 'pan',
    });
  }
  return pan;
}

/**
 * The format 0/3 (8 bytes) or SM4 (16 bytes) PAN field: the 12 rightmost PAN digits excluding the
 * check digit, right-aligned after zeros.
 */
function panField0(pan: string | undefined, size: 8 | 16): Buffer {
  const digits = panDigits(pan, 13);
  const twelve = digits.slice(-13, -1);
  const out = Buffer.alloc(size);
  const start = size * 2 - 12;
  for (let i = 0; i < 12; i++) setNibble(out, start + i, twelve.charCodeAt(i) - 48);
  return out;
}

/** The 16-byte format 4 PAN field: (length − 12, floor 0) ‖ PAN left-padded to 12 digits ‖ zero pad. */
export function panField4(pan: string): Buffer {
  const digits = panDigits(pan, 1);
  const padded = digits.padStart(12, '0');
  const out = Buffer.alloc(16);
  setNibble(out, 0, padded.length - 12);
  for (let i = 0; i < padded.length; i++) setNibble(out, 1 + i, padded.charCodeAt(i) - 48);
  return out;
}

/** Writes control, length, digits and fill into a fresh PIN field (before any PAN XOR). */
function buildPinField(format: PinBlockFormat, digits: Uint8Array, random: RandomSource): Buffer {
  const spec = specOf(format);
  const field = Buffer.alloc(spec.size);
  setNibble(field, 0, spec.control);
  setNibble(field, 1, digits.length);
  for (let i = 0; i < digits.length; i++) setNibble(field, 2 + i, digits[i]!);
  const from = 2 + digits.length;
  const fixedEnd = format === 4 ? FORMAT4_FIXED_NIBBLES : spec.size * 2;
  if (format === 0 || format === 2 || format === 'sm4') {
    for (let i = from; i < fixedEnd; i++) setNibble(field, i, 0xf);
  } else if (format === 4) {
    for (let i = from; i < fixedEnd; i++) setNibble(field, i, 0xa);
    drawRandom(random, 8).copy(field, 8);
  } else {
    const r = drawRandom(random, fixedEnd - from);
    // Format 1: any nibble. Format 3: A–F; the mod-6 bias (4/256) does not matter for fill.
    for (let i = from; i < fixedEnd; i++) {
      const b = r[i - from]!;
      setNibble(field, i, format === 1 ? b & 0x0f : 0xa + (b % 6));
    }
  }
  return field;
}

function fillOk(format: PinBlockFormat, v: number): boolean {
  switch (format) {
    case 0:
    case 2:
    case 'sm4':
      return v === 0xf;
    case 3:
      return v >= 0xa;
    case 4:
      return v === 0xa;
    default:
      return true;
  }
}

/**
 * A wrong PAN shows up in formats 0/sm4 as bad fill. When every fill nibble outside the PAN field is F
 * and every fill nibble inside it is F ⊕ (a decimal digit), the block is a valid block for some other
 * PAN: report that rather than a fill error. `block` is the clear block before the PAN XOR.
 */
function madeForOtherPan(format: PinBlockFormat, block: Uint8Array, pinLength: number): boolean {
  if (format !== 0 && format !== 'sm4') return false;
  const nibbles = block.length * 2;
  const panStart = nibbles - 12;
  for (let i = 2 + pinLength; i < nibbles; i++) {
    const v = nibble(block, i);
    if (i < panStart ? v !== 0xf : (v ^ 0xf) > 9) return false;
  }
  return true;
}

/** Nibble `i` of the PIN field: the block with the PAN field (if any) XORed out. */
function fieldNibble(block: Uint8Array, panField: Uint8Array | undefined, i: number): number {
  return panField === undefined ? nibble(block, i) : nibble(block, i) ^ nibble(panField, i);
}

/**
 * Validates the PIN field inside `block` (PAN field XORed out on the fly, nothing allocated) and
 * returns the PIN length. Checks run control → length → fill → digits so that a wrong PAN, which
 * disturbs fill and digits alike, is diagnosed from the fill.
 */
function checkPinField(format: PinBlockFormat, block: Uint8Array, panField: Uint8Array | undefined): number {
  const spec = specOf(format);
  const control = fieldNibble(block, panField, 0);
  if (control !== spec.control) {
    throw new CryptoError(
      'POSKEY_ERR_PIN_BLOCK_CONTROL',
      `control nibble ${control.toString(16).toUpperCase()} is not format ${String(format)}'s ${spec.control}`,
      { field: 'block' },
    );
  }
  const length = fieldNibble(block, panField, 1);
  if (length < MIN_PIN || length > MAX_PIN) {
    throw new CryptoError('POSKEY_ERR_PIN_LENGTH', `PIN length nibble ${length} outside 4-12`, {
      field: 'block',
    });
  }
  const fixedEnd = format === 4 ? FORMAT4_FIXED_NIBBLES : spec.size * 2;
  for (let i = 2 + length; i < fixedEnd; i++) {
    if (!fillOk(format, fieldNibble(block, panField, i))) {
      if (madeForOtherPan(format, block, length)) {
        throw new CryptoError(
          'POSKEY_ERR_PAN_MISMATCH',
          'PIN block is consistent with a different PAN (12 rightmost digits before the check digit)',
          { field: 'pan' },
        );
      }
      throw new CryptoError('POSKEY_ERR_PIN_BLOCK_FILL', `fill is not as format ${String(format)} requires`, {
        field: 'block',
      });
    }
  }
  for (let i = 0; i < length; i++) {
    if (fieldNibble(block, panField, 2 + i) > 9) {
      throw new CryptoError('POSKEY_ERR_PIN_DIGITS', 'PIN block holds a non-decimal PIN digit', {
        field: 'block',
      });
    }
  }
  return length;
}

/** Validates and extracts the PIN digits, one per byte (caller zeroises). */
function readPinField(format: PinBlockFormat, block: Uint8Array, panField: Uint8Array | undefined): Buffer {
  const length = checkPinField(format, block, panField);
  const digits = Buffer.alloc(length);
  for (let i = 0; i < length; i++) digits[i] = fieldNibble(block, panField, 2 + i);
  return digits;
}

function assertBlockLength(format: PinBlockFormat, block: Uint8Array): void {
  const { size } = specOf(format);
  if (!(block instanceof Uint8Array) || block.length !== size) {
    throw new CryptoError(
      'POSKEY_ERR_PIN_BLOCK_LENGTH',
      `format ${String(format)} PIN block must be ${size} bytes, got ${block instanceof Uint8Array ? block.length : typeof block}`,
      { field: 'block' },
    );
  }
}

function assertKeyFits(format: PinBlockFormat, key: KeyHandle, field = 'key'): void {
  const { cipher } = specOf(format);
  const ok = cipher === 'tdes' ? key.blockSize === 8 : key.algorithm === cipher;
  if (!ok) {
    throw new CryptoError(
      'POSKEY_ERR_KEY_ALGORITHM',
      `format ${String(format)} PIN blocks need ${cipher === 'tdes' ? 'a DES/TDES' : cipher === 'aes' ? 'an AES' : 'an SM4'} key, got ${key.algorithm}`,
      { field },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Clear blocks from digits (internal, zeroisable)

function encodeDigits(
  format: PinBlockFormat,
  digits: Uint8Array,
  pan: string | undefined,
  random: RandomSource,
): Buffer {
  const spec = specOf(format);
  // Validate the PAN before building anything secret.
  const panField = spec.needsPan && format !== 4 ? panField0(pan, spec.size) : undefined;
  const field = buildPinField(format, digits, random);
  if (panField === undefined) return field;
  for (let i = 0; i < field.length; i++) field[i]! ^= panField[i]!;
  return field;
}

function decodeDigits(format: PinBlockFormat, block: Uint8Array, pan: string | undefined): Buffer {
  assertBlockLength(format, block);
  const spec = specOf(format);
  const panField = spec.needsPan && format !== 4 ? panField0(pan, spec.size) : undefined;
  return readPinField(format, block, panField);
}

/** E(K, E(K, PIN field) ⊕ PAN field). */
function encipher4(key: KeyHandle, pinField: Buffer, panField: Buffer): Buffer {
  const inner = key.ecbEncrypt(pinField);
  for (let i = 0; i < 16; i++) inner[i]! ^= panField[i]!;
  const out = key.ecbEncrypt(inner);
  inner.fill(0);
  return out;
}

function encryptDigits(
  key: KeyHandle,
  format: PinBlockFormat,
  digits: Uint8Array,
  pan: string | undefined,
  random: RandomSource,
): Buffer {
  assertKeyFits(format, key);
  if (format === 4) {
    const panField = panField4(pan as string);
    const field = buildPinField(4, digits, random);
    try {
      return encipher4(key, field, panField);
    } finally {
      field.fill(0);
    }
  }
  const clear = encodeDigits(format, digits, pan, random);
  try {
    return key.ecbEncrypt(clear);
  } finally {
    clear.fill(0);
  }
}

function decryptDigits(
  key: KeyHandle,
  format: PinBlockFormat,
  block: Uint8Array,
  pan: string | undefined,
): Buffer {
  assertKeyFits(format, key);
  assertBlockLength(format, block);
  if (format === 4) {
    const panField = panField4(pan as string);
    const inner = key.ecbDecrypt(block);
    for (let i = 0; i < 16; i++) inner[i]! ^= panField[i]!;
    const field = key.ecbDecrypt(inner);
    inner.fill(0);
    try {
      return readPinField(4, field, undefined);
    } finally {
      field.fill(0);
    }
  }
  const clear = key.ecbDecrypt(block);
  try {
    return decodeDigits(format, clear, pan);
  } finally {
    clear.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

/** The 16-byte format 4 PIN field: `4L` PIN, A-fill to 8 bytes, then 8 random bytes. */
export function pinField4(pin: string, random: RandomSource = randomBytes): Buffer {
  const digits = pinDigits(pin);
  try {
    return buildPinField(4, digits, random);
  } finally {
    digits.fill(0);
  }
}

/**
 * The clear PIN block. For format 4 this is the PIN field alone (the PAN enters between the two
 * encryptions, see `encryptPinBlock`).
 * @throws POSKEY_ERR_PIN_LENGTH, POSKEY_ERR_PIN_DIGITS, POSKEY_ERR_PAN, POSKEY_ERR_PIN_BLOCK_FORMAT
 */
export function encodePinBlock(opts: {
  format: PinBlockFormat;
  pin: string;
  pan?: string;
  random?: RandomSource;
}): Buffer {
  specOf(opts.format);
  const digits = pinDigits(opts.pin);
  try {
    return encodeDigits(opts.format, digits, opts.pan, opts.random ?? randomBytes);
  } finally {
    digits.fill(0);
  }
}

/**
 * The PIN inside a clear block (for format 4, the clear PIN field; `pan` is not used).
 *
 * Each failure has its own code: POSKEY_ERR_PIN_BLOCK_LENGTH, _CONTROL, POSKEY_ERR_PIN_LENGTH,
 * POSKEY_ERR_PIN_BLOCK_FILL, POSKEY_ERR_PIN_DIGITS, POSKEY_ERR_PAN. A wrong PAN is only detectable
 * where it disturbs the fill: for formats 0 and sm4, a block that is valid for some other PAN throws
 * POSKEY_ERR_PAN_MISMATCH. A PAN that differs only in digits under the PIN digits yields a wrong PIN
 * (inherent to format 0); in format 3 a wrong PAN shows as fill or digit errors (random A–F fill
 * cannot be told apart), and in format 4 it scrambles the whole field (usually a control error).
 */
export function decodePinBlock(opts: { format: PinBlockFormat; block: Uint8Array; pan?: string }): string {
  const digits = decodeDigits(opts.format, opts.block, opts.pan);
  try {
    return digitsToPin(digits);
  } finally {
    digits.fill(0);
  }
}

/**
 * Encrypted PIN block: ECB of the clear block for 0–3 (DES/TDES) and sm4 (SM4); for format 4 (AES)
 * E(K, E(K, PIN field) ⊕ PAN field).
 * @throws POSKEY_ERR_KEY_ALGORITHM when the key does not fit the format, plus the encode errors
 */
export function encryptPinBlock(
  key: KeyHandle,
  opts: { format: PinBlockFormat; pin: string; pan?: string; random?: RandomSource },
): Buffer {
  specOf(opts.format);
  assertKeyFits(opts.format, key);
  const digits = pinDigits(opts.pin);
  try {
    return encryptDigits(key, opts.format, digits, opts.pan, opts.random ?? randomBytes);
  } finally {
    digits.fill(0);
  }
}

/** Decrypts and validates a PIN block, returning the PIN. Errors as for `decodePinBlock`. */
export function decryptPinBlock(
  key: KeyHandle,
  block: Uint8Array,
  opts: { format: PinBlockFormat; pan?: string },
): string {
  const digits = decryptDigits(key, opts.format, block, opts.pan);
  try {
    return digitsToPin(digits);
  } finally {
    digits.fill(0);
  }
}

const ONLINE_GROUP = new Set<string>(['0', '1', '3', '4']);
const SM4_GROUP = new Set<string>(['0', 'sm4']);

function assertTranslation(from: PinBlockFormat, to: PinBlockFormat): void {
  specOf(from);
  specOf(to);
  const f = String(from);
  const t = String(to);
  if (f === '2' || t === '2') {
    throw new CryptoError(
      'POSKEY_ERR_PIN_BLOCK_TRANSLATION',
      'format 2 is for ICC offline PIN only and is never translated',
      { field: f === '2' ? 'from' : 'to' },
    );
  }
  if (!(ONLINE_GROUP.has(f) && ONLINE_GROUP.has(t)) && !(SM4_GROUP.has(f) && SM4_GROUP.has(t))) {
    throw new CryptoError(
      'POSKEY_ERR_PIN_BLOCK_TRANSLATION',
      `translation from format ${f} to ${t} is not allowed (0/1/3/4 among themselves, sm4 with 0)`,
      { field: 'to' },
    );
  }
}

/**
 * Re-encrypts a PIN block from `source` to `target`, optionally changing format: decrypt, validate,
 * re-encode, encrypt; clear intermediates are zeroised. `pan` is the PAN of the source block and the
 * default for the target; `toPan` overrides it for the target (e.g. format 1 → 0).
 *
 * Format 0 → 0 under one PAN (the HSM hot path) never decodes the PIN: the validated clear block is
 * re-encrypted as is, two kept-context ECB calls and one small buffer.
 * @throws POSKEY_ERR_PIN_BLOCK_TRANSLATION for format 2 or a pair outside 0/1/3/4 and sm4↔0
 */
export function translatePinBlock(
  source: KeyHandle,
  target: KeyHandle,
  block: Uint8Array,
  opts: { from: PinBlockFormat; to: PinBlockFormat; pan?: string; toPan?: string; random?: RandomSource },
): Buffer {
  const { from, to, pan } = opts;
  assertTranslation(from, to);
  assertKeyFits(from, source, 'source');
  assertKeyFits(to, target, 'target');
  const toPan = opts.toPan ?? pan;
  if (from === 0 && to === 0 && toPan === pan) return translateFormat0(source, target, block, pan);
  const digits = decryptDigits(source, from, block, pan);
  try {
    return encryptDigits(target, to, digits, toPan, opts.random ?? randomBytes);
  } finally {
    digits.fill(0);
  }
}

function translateFormat0(source: KeyHandle, target: KeyHandle, block: Uint8Array, pan?: string): Buffer {
  assertBlockLength(0, block);
  const panField = panField0(pan, 8);
  const clear = source.ecbDecrypt(block);
  try {
    checkPinField(0, clear, panField);
    return target.ecbEncrypt(clear);
  } finally {
    clear.fill(0);
  }
}
