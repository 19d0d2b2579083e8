/**
 * Packs and unpacks ISO 8583 message bodies (MTI onward; framing, TPDU and headers live elsewhere).
 *
 * A message is a plain object keyed by field number: `msg[0]` is the MTI, `msg[11]` a string,
 * `msg[60]` an object of subfields (`msg[60][1]`), `msg[55]` an ordered array of `{ tag, value }`.
 * Binary values are upper-case hex strings, so a message is JSON-serialisable as is.
 *
 * Round trips: `unpack(pack(m))` deep-equals `m`, and `pack(unpack(b))` equals `b` byte for byte.
 * Where the wire allows two spellings of one value (pad nibble 0 or F, a TLV length in long form,
 * a lower-case hex bitmap), unpack notes the spelling it saw in a non-enumerable property
 * (`msg[WIRE]`, absent from JSON and from deep-equality checks) and pack reuses it. A copy made
 * with `{ ...msg }` or JSON loses the note and packs in the dialect's own spelling.
 */
import { readBitmap, writeBitmap } from './bitmap.js';
import { joinPositional, type Subfields, splitPositional } from './composite.js';
import { atPath, IsoError, IsoErrorCode } from './errors.js';
import type { Dialect, FieldSpec } from './spec.js';
import { decodeTlv, encodeTlv, type TlvItem, tlvSize } from './tlv.js';

export type FieldValue = string | Subfields | TlvItem[];

/** A message: field number → value; 0 is the MTI. Field 1 (the bitmap) is computed, never stored. */
export interface IsoMessage {
  0: string;
  [field: number]: FieldValue | undefined;
}

/** Key of the non-enumerable wire-spelling notes that unpack leaves on a message. */
export const WIRE: unique symbol = Symbol.for('poskey.iso8583.wire') as never;

/** Wire spellings seen on decode: 'pad:<field>' → '0'|'F', 'tlv:<field>:<index>' → length bytes, 'bitmap' → the hex text when not upper case. */
export type WireNotes = Record<string, string>;

function note(msg: IsoMessage, key: string, value: string): void {
  let notes = (msg as unknown as Record<symbol, WireNotes | undefined>)[WIRE];
  if (!notes) {
    notes = {};
    Object.defineProperty(msg, WIRE, { value: notes, enumerable: false, writable: true, configurable: true });
  }
  notes[key] = value;
}

function notesOf(msg: IsoMessage): WireNotes | undefined {
  return (msg as unknown as Record<symbol, WireNotes | undefined>)[WIRE];
}

// --- unpack -----------------------------------------------------------------------------------

function readMti(dialect: Dialect, buf: Uint8Array, end: number): string {
  const enc = dialect.mti.enc;
  const size = enc.size(4);
  if (size > end)
    throw new IsoError(IsoErrorCode.TRUNCATED, `MTI needs ${size} bytes, ${end} left`, ['MTI'], 0);
  try {
    return enc.decode(buf, 0, 4);
  } catch (e) {
    throw new IsoError(IsoErrorCode.MTI, 'not four decimal digits', ['MTI'], 0, e);
  }
}

/** Decodes one field at `off` into `msg[n]`; returns the offset after it. Errors have no path yet. */
function readField(
  spec: FieldSpec,
  n: number,
  buf: Uint8Array,
  off: number,
  end: number,
  msg: IsoMessage,
): number {
  let units = spec.length;
  const prefix = spec.prefix;
  if (!prefix.fixed) {
    if (off + prefix.size > end) {
      throw new IsoError(
        IsoErrorCode.TRUNCATED,
        `length prefix needs ${prefix.size} bytes, ${end - off} left`,
        [],
        off,
      );
    }
    units = prefix.decode(buf, off);
    if (units > spec.length) {
      throw new IsoError(IsoErrorCode.LENGTH, `length ${units} exceeds maximum ${spec.length}`, [], off);
    }
    off += prefix.size;
  }
  const enc = spec.enc;
  const size = enc.size(units);
  if (off + size > end) {
    throw new IsoError(IsoErrorCode.TRUNCATED, `value needs ${size} bytes, ${end - off} left`, [], off);
  }
  if (spec.kind === 'value') {
    msg[n] = enc.decode(buf, off, units);
  } else if (spec.kind === 'composite') {
    msg[n] = splitPositional(enc.decode(buf, off, units), spec.subfields!);
  } else {
    msg[n] = readTlv(spec, n, buf, off, units, size, msg);
  }
  if (enc.nibbles && units & 1) {
    const pad = enc.padAt(buf, off, units);
    if (pad !== spec.padNibble) note(msg, `pad:${n}`, pad === 15 ? 'F' : '0');
  }
  return off + size;
}

function readTlv(
  spec: FieldSpec,
  n: number,
  buf: Uint8Array,
  off: number,
  units: number,
  size: number,
  msg: IsoMessage,
) {
  const onLong = (i: number, bytes: number) => note(msg, `tlv:${n}:${i}`, String(bytes));
  if (spec.enc.inspect === 'Binary') return decodeTlv(buf, off, off + size, onLong);
  // A TLV field sent as hex text: decode the text first; offsets inside then point at the field start.
  const raw = Buffer.from(spec.enc.decode(buf, off, units), 'hex');
  try {
    return decodeTlv(raw, 0, raw.length, onLong);
  } catch (e) {
    throw e instanceof IsoError
      ? new IsoError(e.code as typeof IsoErrorCode.TLV, e.detail, e.fieldPath, off)
      : e;
  }
}

/**
 * Decodes a message body. Throws an `IsoError` (never anything else) naming the field, offset and
 * reason; never reads past `bytes` and never sizes anything from a length above the field maximum.
 * The input is not modified and not retained (values are copied into strings).
 */
export function unpack(dialect: Dialect, bytes: Uint8Array): IsoMessage {
  if (!(bytes instanceof Uint8Array))
    throw new IsoError(IsoErrorCode.INPUT, 'unpack expects a Buffer or Uint8Array');
  const end = bytes.length;
  const mti = readMti(dialect, bytes, end);
  const msg = { 0: mti } as IsoMessage;
  const table = dialect.table(mti);
  let off = dialect.mti.enc.size(4);
  const bitmap = readBitmap(dialect.bitmap, bytes, off, end);
  if (bitmap.text !== undefined) note(msg, 'bitmap', bitmap.text);
  const bitmapOffset = off;
  off += bitmap.size;
  const bits = bitmap.bits;
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    if (b === 0) continue;
    for (let k = 0; k < 8; k++) {
      if ((b & (0x80 >> k)) === 0) continue;
      const n = i * 8 + k + 1;
      if (n === 1) continue;
      const spec = table[n];
      if (spec === undefined) {
        throw new IsoError(
          IsoErrorCode.UNKNOWN_FIELD,
          `bit ${n} is set but the ${dialect.name} dialect has no field ${n}`,
          [String(n)],
          bitmapOffset,
        );
      }
      try {
        off = readField(spec, n, bytes, off, end, msg);
      } catch (e) {
        throw atPath(e, [String(n)], off);
      }
    }
  }
  if (off !== end) {
    throw new IsoError(IsoErrorCode.TRAILING, `${end - off} bytes follow the last field`, [], off);
  }
  return msg;
}

// --- pack -------------------------------------------------------------------------------------

/**
 * Scratch space for packing, reused across calls and zeroed after each one (it briefly holds PIN
 * blocks and tracks). Packing is synchronous and never re-entered, so one buffer is enough.
 */
let scratch = Buffer.alloc(4096);
/** End of the region the current pack may have written; zeroed up to here afterwards. */
let highWater = 0;

function ensure(pos: number, extra: number): void {
  if (pos + extra > highWater) highWater = pos + extra;
  if (pos + extra <= scratch.length) return;
  let size = scratch.length * 2;
  while (size < pos + extra) size *= 2;
  const next = Buffer.alloc(size);
  scratch.copy(next, 0, 0, pos);
  scratch.fill(0, 0, pos);
  scratch = next;
}

function packError(detail: string, path: string[]): IsoError {
  return new IsoError(IsoErrorCode.PACK, detail, path);
}

function writeField(
  spec: FieldSpec,
  n: number,
  value: unknown,
  pos: number,
  notes: WireNotes | undefined,
): number {
  const enc = spec.enc;
  let text: string;
  let units: number;
  let tlv: TlvItem[] | undefined;
  const longForm = notes
    ? (i: number) => (notes[`tlv:${n}:${i}`] ? Number(notes[`tlv:${n}:${i}`]) : undefined)
    : undefined;
  if (spec.kind === 'tlv') {
    units = tlvSize(value, longForm);
    tlv = value as TlvItem[];
    text = '';
  } else {
    if (spec.kind === 'composite') text = joinPositional(value, spec.subfields!);
    else if (typeof value === 'string') text = value;
    else throw packError('value must be a string', []);
    units = enc.unitsOf(text);
    if (units < 0) throw packError('hex value must have an even number of digits', []);
  }
  if (spec.prefix.fixed ? units !== spec.length : units > spec.length) {
    throw packError(`length ${units}, ${spec.prefix.fixed ? 'expected' : 'maximum'} ${spec.length}`, []);
  }
  const size = enc.size(units);
  ensure(pos, spec.prefix.size + size);
  spec.prefix.encode(units, scratch, pos);
  pos += spec.prefix.size;
  if (tlv) {
    if (enc.inspect === 'Binary') return pos + encodeTlv(tlv, scratch, pos, longForm);
    const raw = Buffer.alloc(units);
    encodeTlv(tlv, raw, 0, longForm);
    return pos + enc.encode(raw.toString('hex').toUpperCase(), scratch, pos, 0);
  }
  const padNote = notes?.[`pad:${n}`];
  const pad = padNote === undefined ? spec.padNibble : padNote === 'F' ? 15 : 0;
  return pos + enc.encode(text, scratch, pos, pad);
}

function isFourDigits(mti: string): boolean {
  if (mti.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const c = mti.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** True for a canonical field-number key: 1–3 digits, no leading zero. */
function isFieldKey(key: string): boolean {
  const len = key.length;
  if (len === 0 || len > 3 || (len > 1 && key.charCodeAt(0) === 48)) return false;
  for (let i = 0; i < len; i++) {
    const c = key.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * Sets the bitmap bits of the fields present and returns their numbers, ascending (Object.keys
 * lists integer keys first, in ascending order). Keys that are not fields are refused rather than
 * dropped, so a misspelt key ('60.1', 'mti') cannot silently vanish from the wire.
 */
function fieldNumbers(
  dialect: Dialect,
  msg: IsoMessage,
  table: readonly (FieldSpec | undefined)[],
  bits: Uint8Array,
): number[] {
  const present: number[] = [];
  const keys = Object.keys(msg);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (!isFieldKey(key)) throw packError('not a field number', [key]);
    const n = +key;
    if (n === 0 || msg[n] === undefined) continue;
    if (n === 1) throw packError('the bitmap is computed from the fields present; leave field 1 out', ['1']);
    if (n > 128) throw packError('not a field number', [key]);
    if (table[n] === undefined) {
      throw new IsoError(IsoErrorCode.UNKNOWN_FIELD, `the ${dialect.name} dialect has no field ${n}`, [key]);
    }
    present.push(n);
    bits[(n - 1) >> 3]! |= 0x80 >> ((n - 1) & 7);
  }
  return present;
}

/**
 * Encodes a message object into a fresh Buffer (MTI, bitmap, fields). Every failure is an IsoError:
 * POSKEY_ERR_ISO_PACK naming the field (wrong type, length or alphabet), UNKNOWN_FIELD for a field
 * the dialect lacks, INPUT when `msg` is not an object. Per-MTI overrides apply (62 in 0810).
 */
export function pack(dialect: Dialect, msg: IsoMessage): Buffer {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    throw new IsoError(IsoErrorCode.INPUT, 'pack expects a message object');
  }
  const mti = msg[0];
  if (typeof mti !== 'string' || !isFourDigits(mti)) {
    throw packError('MTI (field 0) must be four decimal digits', ['MTI']);
  }
  const table = dialect.table(mti);
  const bits = new Uint8Array(16);
  const present = fieldNumbers(dialect, msg, table, bits);
  const secondary = present.length > 0 && present[present.length - 1]! > 64;
  if (secondary) bits[0]! |= 0x80;
  const notes = notesOf(msg);
  let pos = 0;
  try {
    ensure(0, 4 + 32);
    pos += dialect.mti.enc.encode(mti, scratch, pos, 0);
    pos += writeBitmap(dialect.bitmap, bits, secondary ? 16 : 8, scratch, pos, notes?.bitmap);
    for (const n of present) {
      try {
        pos = writeField(table[n]!, n, msg[n], pos, notes);
      } catch (e) {
        throw e instanceof IsoError
          ? e.within([String(n)])
          : packError('unexpected failure while packing', [String(n)]);
      }
    }
    return copyOut(pos);
  } finally {
    scratch.fill(0, 0, Math.min(scratch.length, highWater));
    highWater = 0;
  }
}

function copyOut(length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  scratch.copy(out, 0, 0, length);
  return out;
}

/**
 * Reads a value by dotted path: `getValue(msg, 11)`, `getValue(msg, '60.3')`, `getValue(msg, '63.2.1')`,
 * `getValue(msg, '55.9F26')` (the first TLV item with that tag). Undefined when absent or not a string.
 */
export function getValue(msg: IsoMessage, path: number | string): string | undefined {
  const parts = String(path).split('.');
  let cur: unknown = msg[Number(parts[0])];
  for (let i = 1; i < parts.length && cur !== undefined; i++) {
    const key = parts[i]!;
    if (Array.isArray(cur)) cur = (cur as TlvItem[]).find((t) => t.tag === key.toUpperCase())?.value;
    else cur = cur !== null && typeof cur === 'object' ? (cur as Subfields)[Number(key)] : undefined;
  }
  return typeof cur === 'string' ? cur : undefined;
}

/**
 * Decodes a single field laid out by `spec` at `offset` (the 6-byte UnionPay header, or a field taken
 * out of a message). `read` is the bytes consumed; `pad` is set when an odd BCD value used the other
 * pad nibble. `name` labels errors (default 'field').
 */
export function unpackField(
  spec: FieldSpec,
  bytes: Uint8Array,
  options: { offset?: number; end?: number; name?: string } = {},
): { value: FieldValue; read: number; pad?: '0' | 'F' } {
  if (!(bytes instanceof Uint8Array))
    throw new IsoError(IsoErrorCode.INPUT, 'unpackField expects a Buffer or Uint8Array');
  const offset = options.offset ?? 0;
  const end = Math.min(options.end ?? bytes.length, bytes.length);
  const holder = { 0: '' } as IsoMessage;
  try {
    const next = readField(spec, 1, bytes, offset, end, holder);
    const pad = notesOf(holder)?.['pad:1'] as '0' | 'F' | undefined;
    return pad ? { value: holder[1]!, read: next - offset, pad } : { value: holder[1]!, read: next - offset };
  } catch (e) {
    throw atPath(e, [options.name ?? 'field'], offset);
  }
}

/** Encodes a single field (prefix included) into a fresh Buffer; `pad` overrides the spec's pad nibble. */
export function packField(
  spec: FieldSpec,
  value: FieldValue,
  options: { pad?: '0' | 'F'; name?: string } = {},
): Buffer {
  let pos = 0;
  try {
    pos = writeField(spec, 1, value, 0, options.pad ? { 'pad:1': options.pad } : undefined);
    return copyOut(pos);
  } catch (e) {
    throw e instanceof IsoError
      ? e.within([options.name ?? 'field'])
      : packError('unexpected failure while packing', [options.name ?? 'field']);
  } finally {
    scratch.fill(0, 0, Math.min(scratch.length, highWater));
    highWater = 0;
  }
}
