/**
 * Field readers for payShield host-command bodies. A command's fields are read left to right with a
 * `FieldCursor`; every reader validates its field (length, character set, range) before returning it,
 * and a failure is an `HsmError` that names the field and carries the payShield error code to answer
 * with (15 unless the command's layout gives a field its own code, as M6's 02–09 do).
 *
 * Conventions shared by the commands (research hsm.md §2, payShield host command layouts as recorded
 * by ut-codec-payshield `messages.json` and its test frames):
 * - Keys under the LMK: `S` + a key block whose 4-digit length sits at block positions 1–4.
 * - Keys under a ZMK/TMK: `X`/`U` + 32 H, `Y`/`T` + 48 H, 16 H (single length, no scheme letter),
 *   or `R` + a TR-31 block.
 * - `;` opens an optional group, `%` + 2 digits is the LMK identifier, `#` opens key block attributes.
 * - An optional end-of-message delimiter (0x19) and trailer may close any command; it is echoed back.
 */
import { HsmError } from '../errors.js';
import { assertLmkId } from '../lmk.js';

/** End-of-message delimiter; whatever follows it is the trailer, echoed in the response. */
export const END_OF_MESSAGE = 0x19;

/** Longest trailer accepted after the end-of-message delimiter. */
export const MAX_TRAILER_LENGTH = 32;

const HEX_RE = /^[0-9A-Fa-f]*$/;
const DIGITS_RE = /^[0-9]*$/;
const ALNUM_RE = /^[0-9A-Za-z]*$/;
const PRINTABLE_RE = /^[\x20-\x7e]*$/;

/** The smallest key block: a 16-character header (a real one is longer: payload and MAC follow). */
const MIN_KEY_BLOCK = 16;

export type Charset = 'hex' | 'digits' | 'alnum' | 'printable';

const CHARSETS: Readonly<Record<Charset, RegExp>> = {
  hex: HEX_RE,
  digits: DIGITS_RE,
  alnum: ALNUM_RE,
  printable: PRINTABLE_RE,
};

/**
 * A malformed or unsupported field. `payShield` is the error code the response carries.
 * Codes: POSKEY_ERR_PAYSHIELD_FIELD (bad value), POSKEY_ERR_PAYSHIELD_TRUNCATED (the body ends
 * inside the field), POSKEY_ERR_PAYSHIELD_TRAILING (data after the last field),
 * POSKEY_ERR_PAYSHIELD_KEY_SCHEME (a key scheme this command or poskey does not take).
 */
export function fieldError(
  field: string,
  reason: string,
  payShield = '15',
  code = 'POSKEY_ERR_PAYSHIELD_FIELD',
): HsmError {
  return new HsmError(code, reason, { field, payShield });
}

/** A key as it travels under a ZMK/TMK or the LMK: its scheme letter and the value after it. */
export interface WrappedKey {
  /** 'S' LMK key block, 'R' TR-31 block, 'X'/'U'/'Y'/'T' legacy hex, 'Z' single-length hex (no letter on the wire). */
  scheme: KeyScheme;
  /** The key block, or the hex cryptogram (upper case). */
  value: string;
}

export type KeyScheme = 'S' | 'R' | 'X' | 'U' | 'Y' | 'T' | 'Z';

/** Hex length of a legacy cryptogram for each legacy scheme letter. */
export const LEGACY_SCHEME_HEX: Readonly<Record<string, number>> = Object.freeze({
  Z: 16,
  X: 32,
  U: 32,
  Y: 48,
  T: 48,
});

/** Key block attributes after `#` (payShield key-block LMK layout, e.g. `#K0T2B00E00`). */
export interface KeyBlockAttributes {
  usage: string;
  /** Two characters, e.g. T2, A3 (see commands/keys.ts). */
  algorithm: string;
  modeOfUse: string;
  keyVersion: string;
  exportability: string;
  optionalBlocks: number;
}

/**
 * Reads one command body field by field. The body is read as latin1, so each byte is one character
 * and binary message fields survive intact.
 */
export class FieldCursor {
  readonly #text: string;
  #pos = 0;

  constructor(body: Uint8Array) {
    this.#text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('latin1');
  }

  /** Characters consumed so far. */
  get position(): number {
    return this.#pos;
  }

  get remaining(): number {
    return this.#text.length - this.#pos;
  }

  atEnd(): boolean {
    return this.#pos >= this.#text.length;
  }

  /** The next `n` characters without consuming them (fewer at the end of the body). */
  peek(n = 1, offset = 0): string {
    return this.#text.slice(this.#pos + offset, this.#pos + offset + n);
  }

  /** Consumes `literal` when it comes next; true if it did. */
  take(literal: string): boolean {
    if (this.#text.startsWith(literal, this.#pos)) {
      this.#pos += literal.length;
      return true;
    }
    return false;
  }

  /** The next `length` characters, however they look (after checking they are there). */
  raw(field: string, length: number, payShield = '15'): string {
    if (!Number.isInteger(length) || length < 0) {
      throw fieldError(field, `length ${length} is not a whole number`, payShield);
    }
    if (this.remaining < length) {
      throw fieldError(
        field,
        `needs ${length} characters, ${this.remaining} left`,
        payShield,
        'POSKEY_ERR_PAYSHIELD_TRUNCATED',
      );
    }
    const value = this.#text.slice(this.#pos, this.#pos + length);
    this.#pos += length;
    return value;
  }

  /** A fixed-length field of one character set. */
  fixed(field: string, length: number, charset: Charset, payShield = '15'): string {
    const value = this.raw(field, length, payShield);
    if (!CHARSETS[charset].test(value)) {
      this.#pos -= length;
      throw fieldError(field, `must be ${length} ${describe(charset)} characters`, payShield);
    }
    return value;
  }

  /** Fixed-length hex, returned upper case. */
  hex(field: string, length: number, payShield = '15'): string {
    return this.fixed(field, length, 'hex', payShield).toUpperCase();
  }

  /** Fixed-length decimal digits. */
  digits(field: string, length: number, payShield = '15'): string {
    return this.fixed(field, length, 'digits', payShield);
  }

  /** A fixed-length field that must be one of `values`. */
  oneOf<T extends string>(field: string, length: number, values: readonly T[], payShield = '15'): T {
    const value = this.raw(field, length, payShield);
    if (!(values as readonly string[]).includes(value)) {
      this.#pos -= length;
      throw fieldError(field, `'${printable(value)}' is not one of ${values.join(', ')}`, payShield);
    }
    return value as T;
  }

  /** A fixed-width decimal number within [min, max]. */
  decimal(field: string, length: number, min: number, max: number, payShield = '15'): number {
    const n = Number(this.digits(field, length, payShield));
    if (n < min || n > max) {
      this.#pos -= length;
      throw fieldError(field, `${n} is outside ${min}–${max}`, payShield);
    }
    return n;
  }

  /** A fixed-width hexadecimal number within [min, max] (payShield's 4 H message lengths). */
  hexNumber(field: string, length: number, min: number, max: number, payShield = '15'): number {
    const n = Number.parseInt(this.hex(field, length, payShield), 16);
    if (n < min || n > max) {
      this.#pos -= length;
      throw fieldError(field, `${n} is outside ${min}–${max}`, payShield);
    }
    return n;
  }

  /** `length` raw bytes (binary message fields). */
  bytes(field: string, length: number, payShield = '15'): Buffer {
    return Buffer.from(this.raw(field, length, payShield), 'latin1');
  }

  /**
   * A key block: version character, 4-digit total length, then the rest of the block. The length
   * decides where the field ends, so nothing after it is read.
   */
  keyBlock(field: string, payShield = '15'): string {
    const lengthText = this.peek(4, 1);
    if (lengthText.length < 4) {
      throw fieldError(
        field,
        'key block is cut short before its length',
        payShield,
        'POSKEY_ERR_PAYSHIELD_TRUNCATED',
      );
    }
    if (!/^\d{4}$/.test(lengthText)) {
      throw fieldError(field, `key block length '${printable(lengthText)}' is not 4 digits`, payShield);
    }
    const length = Number(lengthText);
    if (length < MIN_KEY_BLOCK) {
      throw fieldError(field, `key block length ${length} is shorter than a header`, payShield);
    }
    return this.fixed(field, length, 'printable', payShield);
  }

  /** A key under the LMK: `S` + key block. Any other scheme is error 26 (this HSM has a key-block LMK). */
  lmkKey(field: string): string {
    const scheme = this.peek();
    if (scheme !== 'S') {
      if (scheme === '') {
        throw fieldError(field, 'key is missing', '15', 'POSKEY_ERR_PAYSHIELD_TRUNCATED');
      }
      throw fieldError(
        field,
        `key scheme '${printable(scheme)}' is not S: keys under the LMK are key blocks`,
        '26',
        'POSKEY_ERR_PAYSHIELD_KEY_SCHEME',
      );
    }
    this.#pos += 1;
    return this.keyBlock(field);
  }

  /**
   * A key under a ZMK/TMK: `S`/`R` + key block, `X`/`U` + 32 H, `Y`/`T` + 48 H, or 16 H alone
   * (single length, scheme Z). Hex is returned upper case.
   */
  wrappedKey(field: string): WrappedKey {
    const first = this.peek();
    if (first === 'S' || first === 'R') {
      this.#pos += 1;
      return { scheme: first, value: this.keyBlock(field) };
    }
    const hexLength = LEGACY_SCHEME_HEX[first];
    if (hexLength !== undefined && first !== 'Z') {
      this.#pos += 1;
      return { scheme: first as KeyScheme, value: this.hex(field, hexLength) };
    }
    if (first !== '' && HEX_RE.test(first)) return { scheme: 'Z', value: this.hex(field, 16) };
    if (first === '') throw fieldError(field, 'key is missing', '15', 'POSKEY_ERR_PAYSHIELD_TRUNCATED');
    throw fieldError(
      field,
      `key scheme '${printable(first)}' is not S, R, X, U, Y, T or 16 H`,
      '26',
      'POSKEY_ERR_PAYSHIELD_KEY_SCHEME',
    );
  }

  /** A one-character key scheme flag (the scheme a response key should use). */
  schemeFlag(field: string, allowed: readonly KeyScheme[]): KeyScheme {
    const value = this.raw(field, 1);
    if (!(allowed as readonly string[]).includes(value)) {
      this.#pos -= 1;
      throw fieldError(
        field,
        `key scheme '${printable(value)}' is not one of ${allowed.join(', ')}`,
        '26',
        'POSKEY_ERR_PAYSHIELD_KEY_SCHEME',
      );
    }
    return value as KeyScheme;
  }

  /** `%` + two-digit LMK identifier, when present. */
  lmkId(): string | undefined {
    if (!this.take('%')) return undefined;
    const id = this.raw('lmkId', 2, '13');
    assertLmkId(id, 'lmkId');
    return id;
  }

  /**
   * `#` + key block attributes, when present: usage (2), algorithm (2), mode of use (1), key
   * version (2), exportability (1), number of optional blocks (2). Optional blocks themselves are
   * not accepted (their count must be 00: error AB otherwise).
   */
  keyBlockAttributes(): KeyBlockAttributes | undefined {
    if (!this.take('#')) return undefined;
    const usage = this.fixed('keyUsage', 2, 'alnum', 'A6').toUpperCase();
    const algorithm = this.fixed('algorithm', 2, 'alnum', 'A7').toUpperCase();
    const modeOfUse = this.fixed('modeOfUse', 1, 'alnum', 'A8').toUpperCase();
    const keyVersion = this.fixed('keyVersion', 2, 'alnum', 'A9');
    const exportability = this.oneOf('exportability', 1, ['E', 'N', 'S'], 'AA');
    const optionalBlocks = this.decimal('optionalBlocks', 2, 0, 0, 'AB');
    return { usage, algorithm, modeOfUse, keyVersion, exportability, optionalBlocks };
  }

  /**
   * Ends the body: an optional trailing `%nn` LMK identifier (ignored: every key block names its
   * LMK), then an optional end-of-message delimiter and trailer. Anything else is error 15.
   * @returns the trailer (after 0x19), or undefined
   */
  finish(): string | undefined {
    this.lmkId();
    if (this.atEnd()) return undefined;
    if (this.#text.charCodeAt(this.#pos) === END_OF_MESSAGE) {
      const trailer = this.#text.slice(this.#pos + 1);
      if (trailer.length > MAX_TRAILER_LENGTH || !PRINTABLE_RE.test(trailer)) {
        throw fieldError('trailer', `trailer must be at most ${MAX_TRAILER_LENGTH} printable characters`);
      }
      this.#pos = this.#text.length;
      return trailer;
    }
    throw fieldError(
      'body',
      `${this.remaining} unexpected characters after the last field`,
      '15',
      'POSKEY_ERR_PAYSHIELD_TRAILING',
    );
  }
}

function describe(charset: Charset): string {
  switch (charset) {
    case 'hex':
      return 'hexadecimal';
    case 'digits':
      return 'decimal';
    case 'alnum':
      return 'alphanumeric';
    default:
      return 'printable';
  }
}

/** Shows a field value in an error message without control characters (never a key or PIN). */
function printable(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?').slice(0, 8);
}
