/**
 * Primary and secondary bitmaps, binary (8 bytes each) or hex text (16 characters each). Bit 1 of the
 * primary bitmap announces the secondary one (fields 65–128). A secondary bitmap with no bit set is
 * refused on decode, because repacking would drop it and change the bytes.
 */
import { hexNibble, hexOf } from './encodings.js';
import { IsoError, IsoErrorCode } from './errors.js';
import type { BitmapSpec } from './spec.js';

export interface DecodedBitmap {
  /** 8 or 16 bitmap bytes (binary form), bit 1 of field 1 = the top bit of byte 0. */
  bits: Uint8Array;
  /** Bytes the bitmap took on the wire. */
  size: number;
  /** Hex bitmaps only: the hex text when it was not all upper case (kept so repacking gives the same bytes). */
  text: string | undefined;
}

function fail(code: string, detail: string, offset: number): IsoError {
  return new IsoError(code as typeof IsoErrorCode.BITMAP, detail, ['bitmap'], offset);
}

function readHex(buf: Uint8Array, offset: number, out: Uint8Array, at: number): boolean {
  let lower = false;
  for (let i = 0; i < 8; i++) {
    const c1 = buf[offset + 2 * i]!;
    const c2 = buf[offset + 2 * i + 1]!;
    const hi = hexNibble(c1);
    const lo = hexNibble(c2);
    if (hi < 0 || lo < 0)
      throw fail(IsoErrorCode.BITMAP, 'hex bitmap holds a non-hex character', offset + 2 * i);
    if (c1 >= 97 || c2 >= 97) lower = true;
    out[at + i] = (hi << 4) | lo;
  }
  return lower;
}

function isZero(bits: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bits[i] !== 0) return false;
  return true;
}

function latin1(buf: Uint8Array, offset: number, len: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + offset, len).toString('latin1');
}

/** Reads the bitmap(s) at `offset`; never reads at or past `end`. */
export function readBitmap(spec: BitmapSpec, buf: Uint8Array, offset: number, end: number): DecodedBitmap {
  const width = spec.enc === 'binary' ? 8 : 16;
  if (offset + width > end) {
    throw fail(IsoErrorCode.TRUNCATED, `primary bitmap needs ${width} bytes, ${end - offset} left`, offset);
  }
  const first = spec.enc === 'binary' ? buf[offset]! : hexNibble(buf[offset]!) << 4;
  if (first < 0) throw fail(IsoErrorCode.BITMAP, 'hex bitmap holds a non-hex character', offset);
  const secondary = (first & 0x80) !== 0;
  if (secondary && !spec.secondary) {
    throw fail(
      IsoErrorCode.BITMAP,
      'bit 1 announces a secondary bitmap, which this dialect does not use',
      offset,
    );
  }
  const count = secondary ? 2 : 1;
  if (offset + width * count > end) {
    throw fail(
      IsoErrorCode.TRUNCATED,
      `secondary bitmap needs ${width} bytes, ${end - offset - width} left`,
      offset + width,
    );
  }
  const bits = new Uint8Array(8 * count);
  let lower = false;
  if (spec.enc === 'binary') {
    for (let i = 0; i < 8 * count; i++) bits[i] = buf[offset + i]!;
  } else {
    lower = readHex(buf, offset, bits, 0);
    if (secondary) lower = readHex(buf, offset + 16, bits, 8) || lower;
  }
  if (secondary && isZero(bits, 8, 16)) {
    throw fail(IsoErrorCode.BITMAP, 'secondary bitmap announced but empty', offset + width);
  }
  return { bits, size: width * count, text: lower ? latin1(buf, offset, width * count) : undefined };
}

/**
 * Writes the first `length` bytes of `bits` (8, or 16 with bit 1 set) at `offset`; returns the bytes
 * written. `seen` is the hex text an unpack saw: reused when it spells the same bitmap, so case survives.
 */
export function writeBitmap(
  spec: BitmapSpec,
  bits: Uint8Array,
  length: number,
  out: Buffer,
  offset: number,
  seen?: string,
): number {
  if (spec.enc === 'binary') {
    for (let i = 0; i < length; i++) out[offset + i] = bits[i]!;
    return length;
  }
  const hex = hexOf(bits, 0, length);
  return out.write(seen !== undefined && seen.toUpperCase() === hex ? seen : hex, offset, 'latin1');
}
