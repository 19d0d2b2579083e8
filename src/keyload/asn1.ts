/**
 * A small, strict DER (ITU-T X.690) encoder and decoder: just what X.509 certificates and CMS
 * (RFC 5652) tokens need. Only the low-tag-number form (tag numbers 0–30) is used by those
 * structures, so the decoder rejects the high form instead of half-supporting it.
 *
 * The decoder is strict on purpose: a TR-34 token is checked for integrity by signature, and a
 * lax parser (indefinite lengths, non-minimal lengths or integers, trailing bytes) would give an
 * attacker room to present bytes that parse differently from what was signed. Every failure is a
 * POSKEY_ERR_ASN1 naming the field at fault.
 */
import { PoskeyError } from '../errors.js';

/** Universal tags (identifier octets) used by X.509 and CMS. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Nesting deeper than this is refused: no X.509 or CMS structure comes close, a hostile input might. */
export const MAX_DEPTH = 48;

/** One decoded TLV. `value` and `der` are views into the input buffer. */
export interface Asn1 {
  /** The identifier octet: class (bits 8–7), constructed (bit 6), tag number (bits 5–1). */
  readonly tag: number;
  readonly constructed: boolean;
  /** Contents octets. */
  readonly value: Buffer;
  /** The whole encoding (identifier, length, contents). */
  readonly der: Buffer;
  /** Decoded contents of a constructed encoding; empty for a primitive one. */
  readonly children: readonly Asn1[];
}

/** The error every decoding failure raises. */
export function asn1Error(reason: string, field: string): PoskeyError {
  return new PoskeyError('POSKEY_ERR_ASN1', reason, { field });
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

function readLength(buf: Buffer, pos: number, field: string): { length: number; next: number } {
  const first = buf[pos];
  if (first === undefined) throw asn1Error('truncated before the length', field);
  if (first < 0x80) return { length: first, next: pos + 1 };
  if (first === 0x80) throw asn1Error('indefinite length is not DER', field);
  const count = first & 0x7f;
  if (count > 4) throw asn1Error(`length of ${count} octets is too large`, field);
  if (pos + 1 + count > buf.length) throw asn1Error('truncated inside the length', field);
  if (buf[pos + 1] === 0) throw asn1Error('length has a leading zero octet (not DER)', field);
  let length = 0;
  for (let i = 0; i < count; i++) length = length * 256 + buf[pos + 1 + i]!;
  if (length < 0x80) throw asn1Error('length in long form below 128 (not DER)', field);
  return { length, next: pos + 1 + count };
}

function decodeAt(buf: Buffer, pos: number, field: string, depth: number): Asn1 {
  if (depth > MAX_DEPTH) throw asn1Error(`nesting deeper than ${MAX_DEPTH}`, field);
  const tag = buf[pos];
  if (tag === undefined) throw asn1Error('truncated before the tag', field);
  if ((tag & 0x1f) === 0x1f) throw asn1Error('high tag numbers are not supported', field);
  const { length, next } = readLength(buf, pos + 1, field);
  const end = next + length;
  if (end > buf.length) throw asn1Error(`content of ${length} octets runs past the end`, field);
  const value = buf.subarray(next, end);
  const der = buf.subarray(pos, end);
  const constructed = (tag & 0x20) !== 0;
  const children: Asn1[] = [];
  if (constructed) {
    let p = next;
    while (p < end) {
      const child = decodeAt(buf.subarray(0, end), p, `${field}[${children.length}]`, depth + 1);
      children.push(child);
      p += child.der.length;
    }
  } else {
    checkPrimitive(tag, value, field);
  }
  return { tag, constructed, value, der, children };
}

/** DER rules for the primitive universal types whose encodings DER constrains. */
function checkPrimitive(tag: number, value: Buffer, field: string): void {
  switch (tag) {
    case TAG.BOOLEAN:
      if (value.length !== 1 || (value[0] !== 0 && value[0] !== 0xff)) {
        throw asn1Error('BOOLEAN must be one octet 00 or FF', field);
      }
      return;
    case TAG.INTEGER:
      if (value.length === 0) throw asn1Error('empty INTEGER', field);
      if (
        value.length > 1 &&
        ((value[0] === 0 && value[1]! < 0x80) || (value[0] === 0xff && value[1]! >= 0x80))
      ) {
        throw asn1Error('INTEGER is not minimally encoded', field);
      }
      return;
    case TAG.NULL:
      if (value.length !== 0) throw asn1Error('NULL must be empty', field);
      return;
    case TAG.BIT_STRING:
      if (value.length === 0 || value[0]! > 7 || (value.length === 1 && value[0] !== 0)) {
        throw asn1Error('malformed BIT STRING', field);
      }
      return;
    case TAG.OID:
      if (value.length === 0 || (value[value.length - 1]! & 0x80) !== 0)
        throw asn1Error('malformed OBJECT IDENTIFIER', field);
      return;
  }
}

/**
 * Decodes exactly one DER element covering all of `data` (trailing bytes are an error).
 * @throws POSKEY_ERR_ASN1 naming `field` (with the child index path where the fault was found)
 */
export function decodeDer(data: Uint8Array, field = 'der'): Asn1 {
  if (!(data instanceof Uint8Array)) throw new PoskeyError('POSKEY_ERR_TYPE', 'must be bytes', { field });
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const node = decodeAt(buf, 0, field, 0);
  if (node.der.length !== buf.length) {
    throw asn1Error(`${buf.length - node.der.length} trailing bytes after the element`, field);
  }
  return node;
}

// ---------------------------------------------------------------------------------------------
// Reading typed values from decoded nodes
// ---------------------------------------------------------------------------------------------

/** Returns `node` if its tag is `tag`, else a POSKEY_ERR_ASN1. */
export function expectTag(node: Asn1 | undefined, tag: number, field: string): Asn1 {
  if (node === undefined) throw asn1Error(`missing element (expected tag ${hexTag(tag)})`, field);
  if (node.tag !== tag) throw asn1Error(`tag ${hexTag(node.tag)}, expected ${hexTag(tag)}`, field);
  return node;
}

/** The children of a SEQUENCE (or other constructed `tag`), with a count check. */
export function expectChildren(
  node: Asn1 | undefined,
  tag: number,
  field: string,
  min: number,
  max = min,
): readonly Asn1[] {
  const n = expectTag(node, tag, field);
  if (n.children.length < min || n.children.length > max) {
    const want = min === max ? `${min}` : `${min}..${max}`;
    throw asn1Error(`${n.children.length} elements, expected ${want}`, field);
  }
  return n.children;
}

/** INTEGER as a (signed) bigint. */
export function readInteger(node: Asn1 | undefined, field: string): bigint {
  const v = expectTag(node, TAG.INTEGER, field).value;
  let n = BigInt(`0x${v.toString('hex')}`);
  if (v[0]! >= 0x80) n -= 1n << BigInt(v.length * 8);
  return n;
}

/** INTEGER as a small non-negative number (versions, counters). */
export function readSmallInt(node: Asn1 | undefined, field: string): number {
  const n = readInteger(node, field);
  if (n < 0n || n > 0xffffffffn) throw asn1Error(`integer ${n} out of range`, field);
  return Number(n);
}

export function readOctets(node: Asn1 | undefined, field: string): Buffer {
  return expectTag(node, TAG.OCTET_STRING, field).value;
}

/** BIT STRING contents with no unused bits (keys and signatures are whole octets). */
export function readBitString(node: Asn1 | undefined, field: string): Buffer {
  const v = expectTag(node, TAG.BIT_STRING, field).value;
  if (v[0] !== 0) throw asn1Error('BIT STRING with unused bits where whole octets are expected', field);
  return v.subarray(1);
}

export function readBoolean(node: Asn1 | undefined, field: string): boolean {
  return expectTag(node, TAG.BOOLEAN, field).value[0] === 0xff;
}

export function readOid(node: Asn1 | undefined, field: string): string {
  const v = expectTag(node, TAG.OID, field).value;
  const arcs: bigint[] = [];
  let acc = 0n;
  let start = true;
  for (const byte of v) {
    if (start && byte === 0x80) throw asn1Error('OID arc with a leading 0x80 octet (not DER)', field);
    acc = (acc << 7n) | BigInt(byte & 0x7f);
    start = (byte & 0x80) === 0;
    if (start) {
      arcs.push(acc);
      acc = 0n;
    }
  }
  const first = arcs[0]!;
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join('.');
}

const STRING_TAGS: readonly number[] = [
  TAG.UTF8_STRING,
  TAG.PRINTABLE_STRING,
  TAG.T61_STRING,
  TAG.IA5_STRING,
  TAG.BMP_STRING,
];

/** Any of the directory string types, as a JS string. */
export function readString(node: Asn1 | undefined, field: string): string {
  if (node === undefined || !STRING_TAGS.includes(node.tag)) {
    throw asn1Error('expected a character string', field);
  }
  if (node.tag === TAG.BMP_STRING) {
    if (node.value.length % 2 !== 0) throw asn1Error('BMPString of odd length', field);
    return Buffer.from(node.value).swap16().toString('utf16le');
  }
  return node.value.toString(node.tag === TAG.UTF8_STRING ? 'utf8' : 'latin1');
}

const UTC_RE = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;
const GEN_RE = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** UTCTime or GeneralizedTime in the DER form X.509 requires (seconds, 'Z', no fraction). */
export function readTime(node: Asn1 | undefined, field: string): Date {
  if (node === undefined) throw asn1Error('missing time', field);
  const text = node.value.toString('latin1');
  const m =
    node.tag === TAG.UTC_TIME
      ? UTC_RE.exec(text)
      : node.tag === TAG.GENERALIZED_TIME
        ? GEN_RE.exec(text)
        : null;
  if (m === null) throw asn1Error(`malformed time '${text}'`, field);
  const yy = Number(m[1]);
  // RFC 5280 §4.1.2.5.1: two-digit years 50–99 are 19xx, 00–49 are 20xx.
  const year = node.tag === TAG.UTC_TIME ? (yy >= 50 ? 1900 + yy : 2000 + yy) : yy;
  const [mo, d, h, mi, s] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  // setUTCFullYear, unlike Date.UTC, does not map years 0–99 to 1900–1999.
  const date = new Date(0);
  date.setUTCFullYear(year, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  if (date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) {
    throw asn1Error(`invalid calendar time '${text}'`, field);
  }
  return date;
}

function hexTag(tag: number): string {
  return `0x${tag.toString(16).padStart(2, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV from an identifier octet and contents (concatenated). */
export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) {
    throw new PoskeyError('POSKEY_ERR_ASN1', `cannot encode tag ${tag}`, { field: 'tag' });
  }
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export const seq = (...items: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...items);

/** SET OF: DER orders the elements by their encodings (X.690 §11.6). */
export function set(...items: Uint8Array[]): Buffer {
  const sorted = items.map((i) => Buffer.from(i)).sort(Buffer.compare);
  return tlv(TAG.SET, ...sorted);
}

/**
 * INTEGER from a bigint/number (two's complement, minimal), or from unsigned big-endian bytes
 * (a serial number or an RSA/EC value: a 00 is prefixed when the top bit is set).
 */
export function integer(v: bigint | number | Uint8Array): Buffer {
  if (v instanceof Uint8Array) {
    let b = Buffer.from(v);
    let i = 0;
    while (i < b.length - 1 && b[i] === 0 && b[i + 1]! < 0x80) i++;
    b = b.subarray(i);
    if (b.length === 0) b = Buffer.from([0]);
    if (b[0]! >= 0x80) b = Buffer.concat([Buffer.from([0]), b]);
    return tlv(TAG.INTEGER, b);
  }
  let n = BigInt(v);
  const bytes: number[] = [];
  if (n >= 0n) {
    do {
      bytes.unshift(Number(n & 0xffn));
      n >>= 8n;
    } while (n > 0n);
    if (bytes[0]! >= 0x80) bytes.unshift(0);
  } else {
    do {
      bytes.unshift(Number(n & 0xffn));
      n >>= 8n;
    } while (n < -1n || (n === -1n && bytes[0]! < 0x80));
  }
  return tlv(TAG.INTEGER, Buffer.from(bytes));
}

const OID_RE = /^[0-2]\.(0|[1-9]\d*)(\.(0|[1-9]\d*))*$/;

export function oid(dotted: string): Buffer {
  if (!OID_RE.test(dotted)) {
    throw new PoskeyError('POSKEY_ERR_ASN1', `malformed OID '${dotted}'`, { field: 'oid' });
  }
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const [a0, a1] = arcs as [bigint, bigint];
  if (a0 < 2n && a1 > 39n) {
    throw new PoskeyError('POSKEY_ERR_ASN1', `second arc of '${dotted}' must be below 40`, { field: 'oid' });
  }
  const out: number[] = [];
  for (const arc of [a0 * 40n + a1, ...arcs.slice(2)]) {
    const chunk: number[] = [Number(arc & 0x7fn)];
    for (let n = arc >> 7n; n > 0n; n >>= 7n) chunk.unshift(Number(n & 0x7fn) | 0x80);
    out.push(...chunk);
  }
  return tlv(TAG.OID, Buffer.from(out));
}

export const octets = (b: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, b);
export const bitString = (b: Uint8Array): Buffer => tlv(TAG.BIT_STRING, Buffer.from([0]), b);
export const nullValue = (): Buffer => Buffer.from([TAG.NULL, 0]);
export const bool = (b: boolean): Buffer => tlv(TAG.BOOLEAN, Buffer.from([b ? 0xff : 0]));
export const utf8 = (s: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'));

const PRINTABLE_RE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** PrintableString; characters outside its repertoire are a POSKEY_ERR_ASN1. */
export function printable(s: string): Buffer {
  if (!PRINTABLE_RE.test(s)) {
    throw new PoskeyError('POSKEY_ERR_ASN1', 'character outside the PrintableString set', {
      field: 'printable',
    });
  }
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(s, 'latin1'));
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** UTCTime for 1950–2049 and GeneralizedTime otherwise, as RFC 5280 §4.1.2.5 requires. Seconds precision. */
export function time(d: Date): Buffer {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) {
    throw new PoskeyError('POSKEY_ERR_ASN1', 'invalid date', { field: 'time' });
  }
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999)
    throw new PoskeyError('POSKEY_ERR_ASN1', `year ${y} out of range`, { field: 'time' });
  const rest = `${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG.UTC_TIME, Buffer.from(`${pad2(y % 100)}${rest}`, 'latin1'));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'latin1'));
}

/** [n] EXPLICIT: a constructed context-specific wrapper around complete encodings. */
export const explicit = (n: number, ...inner: Uint8Array[]): Buffer => tlv(0xa0 | n, ...inner);

/** [n] IMPLICIT: re-tags a complete encoding, keeping its constructed bit. */
export function implicit(n: number, encoded: Uint8Array): Buffer {
  const node = decodeDer(encoded, 'implicit');
  return tlv(0x80 | (node.constructed ? 0x20 : 0) | n, node.value);
}

/** The same contents under another identifier octet (e.g. [0] IMPLICIT SET → SET for signing). */
export function retag(node: Asn1, tag: number): Buffer {
  return tlv(tag, node.value);
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL } */
export function algorithmId(algorithm: string, parameters?: Uint8Array): Buffer {
  return parameters === undefined ? seq(oid(algorithm)) : seq(oid(algorithm), parameters);
}

/** Reads an AlgorithmIdentifier: the OID and the parameters element, if any. */
export function readAlgorithmId(
  node: Asn1 | undefined,
  field: string,
): { oid: string; params: Asn1 | undefined } {
  const [alg, params] = expectChildren(node, TAG.SEQUENCE, field, 1, 2);
  return { oid: readOid(alg, `${field}.algorithm`), params };
}
