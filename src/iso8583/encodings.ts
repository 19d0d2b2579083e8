/**
 * Value encodings: how a field's value (a JS string) becomes wire bytes, independent of its length
 * prefix. Each encoding is a frozen singleton with an `inspect` name so a spec prints and serialises.
 *
 * Value shapes: numeric and text values are strings; binary values are upper-case hex strings. The
 * "unit" an encoding counts (and a length prefix carries) is a digit for the BCD family, a character
 * for ASCII and a byte for binary.
 *
 * Decoders are called only after the caller has checked that `size(units)` bytes are available, so
 * they never read past the buffer. They throw IsoErrors with an absolute offset and no path; the
 * codec adds the field path.
 */
import { IsoError, IsoErrorCode } from './errors.js';

export type EncodingName =
  | 'BCD.right'
  | 'BCD.left'
  | 'BCD.track'
  | 'ASCII'
  | 'ASCII.numeric'
  | 'Binary'
  | 'HexASCII';

export interface Encoding {
  readonly inspect: EncodingName;
  /** True for the BCD family: two units per byte, odd lengths carry a pad nibble. */
  readonly nibbles: boolean;
  /** What a length in this encoding counts. */
  readonly unit: 'digit' | 'char' | 'byte';
  /** Wire bytes taken by a value of `units` units. */
  size(units: number): number;
  /** The length of `value` in units, or -1 when its shape is wrong (odd-length hex). */
  unitsOf(value: string): number;
  /** Decodes `units` units at `offset`; the caller guarantees `size(units)` bytes are there. */
  decode(buf: Uint8Array, offset: number, units: number): string;
  /** Writes `value` at `offset` (capacity checked by the caller) and returns the bytes written. */
  encode(value: string, out: Buffer, offset: number, pad: number): number;
  /** The pad nibble of an odd-length value on the wire, or -1 when there is none. */
  padAt(buf: Uint8Array, offset: number, units: number): number;
}

const HEX_DIGITS = '0123456789ABCDEF';
/** Byte → two upper-case hex characters. */
const HEX_PAIR: string[] = Array.from({ length: 256 }, (_, b) => HEX_DIGITS[b >> 4]! + HEX_DIGITS[b & 15]!);
/** Byte → two decimal digits, or '' when either nibble is above 9. */
const BCD_PAIR: string[] = Array.from({ length: 256 }, (_, b) =>
  b >> 4 > 9 || (b & 15) > 9 ? '' : String(b >> 4) + String(b & 15),
);
/** Track data nibbles: '=' is the field separator D; A–C, E, F only appear in TDK-encrypted tracks. */
const TRACK_CHARS = '0123456789ABC=EF';
const TRACK_PAIR: string[] = Array.from(
  { length: 256 },
  (_, b) => TRACK_CHARS[b >> 4]! + TRACK_CHARS[b & 15]!,
);
/** Char code → track nibble, -1 when not allowed. 'D' is accepted as an alias of '='. */
const TRACK_NIBBLE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) TRACK_NIBBLE[TRACK_CHARS.charCodeAt(i)] = i;
TRACK_NIBBLE['D'.charCodeAt(0)] = 13;
/** Char code → hex nibble, -1 when not a hex digit (either case). */
const HEX_NIBBLE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_NIBBLE[HEX_DIGITS.charCodeAt(i)] = i;
  HEX_NIBBLE[HEX_DIGITS.toLowerCase().charCodeAt(i)] = i;
}

function badValue(detail: string): IsoError {
  return new IsoError(IsoErrorCode.PACK, detail);
}

function badWire(detail: string, offset: number): IsoError {
  return new IsoError(IsoErrorCode.ENCODING, detail, [], offset);
}

function checkPad(nibble: number, offset: number): void {
  if (nibble !== 0 && nibble !== 15) {
    throw badWire(`pad nibble ${HEX_DIGITS[nibble]} is neither 0 nor F`, offset);
  }
}

/** Upper-case hex of `len` bytes; a table walk beats toString('hex').toUpperCase() on short fields. */
export function hexOf(buf: Uint8Array, offset: number, len: number): string {
  if (len > 48)
    return Buffer.from(buf.buffer, buf.byteOffset + offset, len)
      .toString('hex')
      .toUpperCase();
  let s = '';
  for (let i = offset, end = offset + len; i < end; i++) s += HEX_PAIR[buf[i]!];
  return s;
}

/** Writes a hex string (validated here) as bytes; returns the bytes written. */
export function writeHex(value: string, out: Buffer, offset: number): number {
  const n = value.length >> 1;
  for (let i = 0; i < n; i++) {
    const c1 = value.charCodeAt(2 * i);
    const c2 = value.charCodeAt(2 * i + 1);
    const hi = c1 < 128 ? HEX_NIBBLE[c1]! : -1;
    const lo = c2 < 128 ? HEX_NIBBLE[c2]! : -1;
    if (hi < 0 || lo < 0)
      throw badValue(`character at index ${hi < 0 ? 2 * i : 2 * i + 1} is not hexadecimal`);
    out[offset + i] = (hi << 4) | lo;
  }
  return n;
}

// --- BCD family -------------------------------------------------------------------------------

/** Char code → BCD digit, -1 when not a digit. */
const DIGIT_NIBBLE = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) DIGIT_NIBBLE[48 + i] = i;

/**
 * Packs `value` two characters per byte through `table` (char code → nibble). Right-aligned odd values
 * start with the pad nibble, left-aligned ones end with it.
 */
function nibbleAt(value: string, k: number, table: Int8Array, what: string): number {
  const c = value.charCodeAt(k);
  const d = c < 128 ? table[c]! : -1;
  if (d < 0) throw badValue(`character at index ${k} is not ${what}`);
  return d;
}

function encodeNibbles(
  value: string,
  out: Buffer,
  offset: number,
  pad: number,
  left: boolean,
  table: Int8Array,
  what: string,
): number {
  const len = value.length;
  let o = offset;
  let i = 0;
  if (len & 1 && !left) {
    out[o++] = (pad << 4) | nibbleAt(value, 0, table, what);
    i = 1;
  }
  for (; i + 1 < len; i += 2)
    out[o++] = (nibbleAt(value, i, table, what) << 4) | nibbleAt(value, i + 1, table, what);
  if (i < len) out[o++] = (nibbleAt(value, i, table, what) << 4) | pad;
  return o - offset;
}

function decodeDigitsLeft(
  buf: Uint8Array,
  offset: number,
  units: number,
  pairs: string[],
  what: string,
): string {
  const whole = units >> 1;
  let s = '';
  for (let i = 0; i < whole; i++) {
    const p = pairs[buf[offset + i]!]!;
    if (p === '') throw badWire(`byte ${HEX_PAIR[buf[offset + i]!]} is not ${what}`, offset + i);
    s += p;
  }
  if (units & 1) {
    const b = buf[offset + whole]!;
    const p = pairs[b & 0xf0]!;
    if (p === '') throw badWire(`byte ${HEX_PAIR[b]} is not ${what}`, offset + whole);
    checkPad(b & 15, offset + whole);
    s += p[0]!;
  }
  return s;
}

function decodeDigitsRight(buf: Uint8Array, offset: number, units: number): string {
  let s = '';
  let i = offset;
  if (units & 1) {
    const b = buf[i]!;
    checkPad(b >> 4, i);
    if ((b & 15) > 9) throw badWire(`byte ${HEX_PAIR[b]} is not BCD`, i);
    s = String(b & 15);
    i++;
  }
  for (const end = offset + ((units + 1) >> 1); i < end; i++) {
    const p = BCD_PAIR[buf[i]!]!;
    if (p === '') throw badWire(`byte ${HEX_PAIR[buf[i]!]} is not BCD`, i);
    s += p;
  }
  return s;
}

const bcdSize = (units: number): number => (units + 1) >> 1;
const strLength = (value: string): number => value.length;

function padLeftAligned(buf: Uint8Array, offset: number, units: number): number {
  return units & 1 ? buf[offset + (units >> 1)]! & 15 : -1;
}

/** Packed BCD, odd lengths padded with a leading nibble (`"123"` → `01 23`). The ISO default for n fields. */
export const bcdRight: Encoding = Object.freeze({
  inspect: 'BCD.right',
  nibbles: true,
  unit: 'digit',
  size: bcdSize,
  unitsOf: strLength,
  decode: decodeDigitsRight,
  encode: (v: string, out: Buffer, o: number, pad: number) =>
    encodeNibbles(v, out, o, pad, false, DIGIT_NIBBLE, 'a digit'),
  padAt: (buf: Uint8Array, offset: number, units: number) => (units & 1 ? buf[offset]! >> 4 : -1),
} as const);

/** Packed BCD, odd lengths padded with a trailing nibble (`"021"` → `02 1x`): UnionPay's variable numerics and field 22. */
export const bcdLeft: Encoding = Object.freeze({
  inspect: 'BCD.left',
  nibbles: true,
  unit: 'digit',
  size: bcdSize,
  unitsOf: strLength,
  decode: (buf: Uint8Array, o: number, u: number) => decodeDigitsLeft(buf, o, u, BCD_PAIR, 'BCD'),
  encode: (v: string, out: Buffer, o: number, pad: number) =>
    encodeNibbles(v, out, o, pad, true, DIGIT_NIBBLE, 'a digit'),
  padAt: padLeftAligned,
} as const);

/**
 * Track data (`z`), left-aligned nibbles: '=' travels as nibble D. Every nibble decodes (A–C, E, F
 * as letters) because a TDK-encrypted track carries ciphertext nibbles in its middle block.
 */
export const track: Encoding = Object.freeze({
  inspect: 'BCD.track',
  nibbles: true,
  unit: 'digit',
  size: bcdSize,
  unitsOf: strLength,
  decode: (buf: Uint8Array, o: number, u: number) => decodeDigitsLeft(buf, o, u, TRACK_PAIR, 'track data'),
  encode: (v: string, out: Buffer, o: number, pad: number) =>
    encodeNibbles(v, out, o, pad, true, TRACK_NIBBLE, "a digit, '=' or a track nibble A-F"),
  padAt: padLeftAligned,
} as const);

// --- byte encodings ---------------------------------------------------------------------------

function decodeLatin1(buf: Uint8Array, offset: number, units: number): string {
  // Short fields (TID, RRN, response code) are faster by hand than through Buffer#toString.
  if (units > 24) return Buffer.from(buf.buffer, buf.byteOffset + offset, units).toString('latin1');
  let s = '';
  for (let i = offset, end = offset + units; i < end; i++) s += String.fromCharCode(buf[i]!);
  return s;
}

function encodeLatin1(value: string, out: Buffer, offset: number, digitsOnly: boolean): number {
  const len = value.length;
  for (let i = 0; i < len; i++) {
    const c = value.charCodeAt(i);
    if (digitsOnly ? c < 48 || c > 57 : c > 0xff) {
      throw badValue(`character at index ${i} is not ${digitsOnly ? 'a digit' : 'a single byte (latin1)'}`);
    }
    out[offset + i] = c;
  }
  return len;
}

const noPad = (): number => -1;
const identity = (units: number): number => units;

/**
 * One byte per character, read and written as latin1 so any byte survives a round trip (GBK text
 * in field 63 comes back as the same bytes; convert it with a decoder of your choice).
 */
export const ascii: Encoding = Object.freeze({
  inspect: 'ASCII',
  nibbles: false,
  unit: 'char',
  size: identity,
  unitsOf: strLength,
  decode: decodeLatin1,
  encode: (v: string, out: Buffer, o: number) => encodeLatin1(v, out, o, false),
  padAt: noPad,
} as const);

/** ASCII restricted to the digits 0–9: numeric fields of an ASCII dialect. */
export const asciiNumeric: Encoding = Object.freeze({
  inspect: 'ASCII.numeric',
  nibbles: false,
  unit: 'char',
  size: identity,
  unitsOf: strLength,
  decode: (buf: Uint8Array, offset: number, units: number) => {
    for (let i = offset, end = offset + units; i < end; i++) {
      const c = buf[i]!;
      if (c < 48 || c > 57) throw badWire(`byte ${HEX_PAIR[c]} is not an ASCII digit`, i);
    }
    return decodeLatin1(buf, offset, units);
  },
  encode: (v: string, out: Buffer, o: number) => encodeLatin1(v, out, o, true),
  padAt: noPad,
} as const);

const hexUnits = (value: string): number => (value.length & 1 ? -1 : value.length >> 1);

/** Raw bytes; the value is an upper-case hex string (lower case is accepted when packing). */
export const binary: Encoding = Object.freeze({
  inspect: 'Binary',
  nibbles: false,
  unit: 'byte',
  size: identity,
  unitsOf: hexUnits,
  decode: hexOf,
  encode: (v: string, out: Buffer, o: number) => writeHex(v, out, o),
  padAt: noPad,
} as const);

/**
 * Bytes sent as hex text (two ASCII characters per byte), as some ASCII dialects send b-fields. The
 * value keeps the case seen on the wire, so repacking gives the same bytes; the unit is the byte.
 */
export const hexAscii: Encoding = Object.freeze({
  inspect: 'HexASCII',
  nibbles: false,
  unit: 'byte',
  size: (units: number) => units * 2,
  unitsOf: hexUnits,
  decode: (buf: Uint8Array, offset: number, units: number) => {
    for (let i = offset, end = offset + units * 2; i < end; i++) {
      const c = buf[i]!;
      if (c >= 128 || HEX_NIBBLE[c]! < 0) throw badWire(`byte ${HEX_PAIR[c]} is not a hex character`, i);
    }
    return decodeLatin1(buf, offset, units * 2);
  },
  encode: (v: string, out: Buffer, o: number) => {
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c >= 128 || HEX_NIBBLE[c]! < 0) throw badValue(`character at index ${i} is not hexadecimal`);
      out[o + i] = c;
    }
    return v.length;
  },
  padAt: noPad,
} as const);

/** The encodings by family, as the builders and `inspect` names use them. */
export const Enc = Object.freeze({ bcdRight, bcdLeft, track, ascii, asciiNumeric, binary, hexAscii });

const BY_NAME: ReadonlyMap<string, Encoding> = new Map(Object.values(Enc).map((e) => [e.inspect, e]));

/** Looks an encoding up by its `inspect` name (for specs loaded from JSON). */
export function encodingByName(name: string): Encoding | undefined {
  return BY_NAME.get(name);
}

/** True when `c` (a char code) is a hex digit; shared by the bitmap and TLV code. */
export function hexNibble(c: number): number {
  return c < 128 ? HEX_NIBBLE[c]! : -1;
}
