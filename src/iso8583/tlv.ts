/**
 * BER-TLV for field 55 (EMV/PBOC ICC data). Decoding keeps every tag, known or not, in wire order;
 * constructed tags (71/72 issuer scripts) keep their value as hex rather than being descended into,
 * so the host stores and forwards them untouched. Multi-byte tags (9F26, up to 4 bytes) and long-form
 * lengths (81 xx, 82 xx xx, 83 xx xx xx) are read; a length written in a longer form than needed is
 * remembered by the caller (`onLongForm`) so repacking gives the same bytes.
 */
import { hexOf, writeHex } from './encodings.js';
import { IsoError, IsoErrorCode } from './errors.js';

/** One data object: tag and value as upper-case hex. */
export interface TlvItem {
  tag: string;
  value: string;
}

const MAX_TAG_BYTES = 4;

function tlvError(detail: string, path: string[], offset: number): IsoError {
  return new IsoError(IsoErrorCode.TLV, detail, path, offset);
}

/** Bytes the minimal length form takes for `len`. */
function lengthBytes(len: number): number {
  return len < 0x80 ? 1 : len <= 0xff ? 2 : len <= 0xffff ? 3 : 4;
}

/**
 * Decodes `buf[start, end)` as a sequence of BER-TLV data objects. Errors name the tag (or `#i`, the
 * item's position, when the tag itself is broken) and the absolute offset.
 * `onLongForm(index, bytes)` is called for each length encoded in more bytes than needed.
 */
export function decodeTlv(
  buf: Uint8Array,
  start: number,
  end: number,
  onLongForm?: (index: number, lengthBytes: number) => void,
): TlvItem[] {
  const items: TlvItem[] = [];
  let p = start;
  while (p < end) {
    const index = items.length;
    const tagStart = p;
    const first = buf[p++]!;
    if (first === 0x00 || first === 0xff)
      throw tlvError(`tag byte ${hexOf(buf, tagStart, 1)} is not a valid tag`, [`#${index}`], tagStart);
    if ((first & 0x1f) === 0x1f) {
      // Subsequent tag bytes continue while bit 8 is set.
      for (;;) {
        if (p >= end) throw tlvError('tag runs past the end of the field', [`#${index}`], tagStart);
        const b = buf[p++]!;
        if (p - tagStart > MAX_TAG_BYTES)
          throw tlvError(`tag longer than ${MAX_TAG_BYTES} bytes`, [`#${index}`], tagStart);
        if ((b & 0x80) === 0) break;
      }
    }
    const tag = hexOf(buf, tagStart, p - tagStart);
    if (p >= end) throw tlvError('length missing', [tag], p);
    const lenStart = p;
    let len = buf[p++]!;
    if (len & 0x80) {
      const count = len & 0x7f;
      if (count === 0 || count > 3)
        throw tlvError(`length form ${hexOf(buf, lenStart, 1)} is not supported`, [tag], lenStart);
      if (p + count > end) throw tlvError('length runs past the end of the field', [tag], lenStart);
      len = 0;
      for (let i = 0; i < count; i++) len = len * 256 + buf[p++]!;
      if (onLongForm && count + 1 !== lengthBytes(len)) onLongForm(index, count + 1);
    }
    if (len > end - p)
      throw tlvError(`value length ${len} exceeds the ${end - p} bytes left`, [tag], lenStart);
    items.push({ tag, value: hexOf(buf, p, len) });
    p += len;
  }
  return items;
}

function packError(detail: string, path: string[]): IsoError {
  return new IsoError(IsoErrorCode.PACK, detail, path);
}

/** Checks a tag's hex and BER structure; returns its byte length. */
function checkTag(tag: unknown, index: number): number {
  if (typeof tag !== 'string' || tag.length === 0 || tag.length & 1 || tag.length > 2 * MAX_TAG_BYTES) {
    throw packError(`tag must be 1 to ${MAX_TAG_BYTES} bytes of hex`, [`#${index}`]);
  }
  if (!/^[0-9A-Fa-f]+$/.test(tag)) throw packError('tag must be hex', [`#${index}`]);
  const bytes = Buffer.from(tag, 'hex');
  const multi = (bytes[0]! & 0x1f) === 0x1f;
  const valid =
    bytes[0] !== 0 &&
    bytes[0] !== 0xff &&
    (multi
      ? bytes.length > 1 &&
        bytes.subarray(1, -1).every((b) => (b & 0x80) !== 0) &&
        (bytes[bytes.length - 1]! & 0x80) === 0
      : bytes.length === 1);
  if (!valid) throw packError('tag bytes do not form one BER tag', [tag.toUpperCase()]);
  return bytes.length;
}

/** Size on the wire of `items`, validating each; `longForm(index)` gives a remembered length size. */
export function tlvSize(items: unknown, longForm?: (index: number) => number | undefined): number {
  if (!Array.isArray(items)) throw packError('TLV value must be an array of { tag, value }', []);
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as Partial<TlvItem> | null;
    if (item === null || typeof item !== 'object')
      throw packError('TLV item must be { tag, value }', [`#${i}`]);
    const tagBytes = checkTag(item.tag, i);
    const v = item.value;
    if (typeof v !== 'string' || v.length & 1)
      throw packError('value must be hex with an even number of digits', [String(item.tag).toUpperCase()]);
    const len = v.length >> 1;
    if (len > 0xffffff) throw packError('value too long', [String(item.tag).toUpperCase()]);
    total += tagBytes + Math.max(lengthBytes(len), longForm?.(i) ?? 0) + len;
  }
  return total;
}

/** Writes items validated by `tlvSize`; returns the bytes written. */
export function encodeTlv(
  items: readonly TlvItem[],
  out: Buffer,
  offset: number,
  longForm?: (index: number) => number | undefined,
): number {
  let p = offset;
  for (let i = 0; i < items.length; i++) {
    const { tag, value } = items[i]!;
    p += writeHex(tag, out, p);
    const len = value.length >> 1;
    const lb = Math.max(lengthBytes(len), longForm?.(i) ?? 0);
    if (lb === 1) out[p++] = len;
    else {
      out[p++] = 0x80 | (lb - 1);
      for (let k = lb - 2; k >= 0; k--) out[p++] = (len >> (8 * k)) & 0xff;
    }
    try {
      p += writeHex(value, out, p);
    } catch (e) {
      throw e instanceof IsoError ? e.within([tag.toUpperCase()]) : e;
    }
  }
  return p - offset;
}

/** Convenience for hosts: the first item with `tag` (case-insensitive), or undefined. */
export function findTag(items: readonly TlvItem[] | undefined, tag: string): TlvItem | undefined {
  const t = tag.toUpperCase();
  return items?.find((i) => i.tag === t);
}
