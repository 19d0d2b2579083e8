/**
 * Field and message specs as data (the moov-io/iso8583 model): a field spec names its maximum (or
 * fixed) length, value encoding, length prefix and pad nibble separately; composites add positional
 * subfields or BER-TLV. A dialect is a table of field specs by number, plus per-MTI overrides, and
 * serialises to JSON through the parts' `inspect` names.
 */
import { type Encoding, type EncodingName, encodingByName } from './encodings.js';
import { IsoError, IsoErrorCode } from './errors.js';
import { type Prefixer, prefixByName } from './prefix.js';

/** The nibble that fills the spare half-byte of an odd-length BCD value. */
export type PadNibble = '0' | 'F';

/** A positional subfield: fixed width, or (last one only) `variable` up to `length`. */
export interface SubfieldSpec {
  readonly id: number;
  readonly length: number;
  readonly desc: string;
  readonly variable?: boolean;
  /** Nested positional subfields (63.2 → 63.2.1 … 63.2.4). */
  readonly subfields?: readonly SubfieldSpec[];
}

export interface FieldSpec {
  /** Maximum length for variable fields, exact length for fixed ones, in the encoding's units. */
  readonly length: number;
  readonly desc: string;
  readonly enc: Encoding;
  readonly prefix: Prefixer;
  readonly pad: PadNibble;
  /** Positional subfields: the value is an object keyed by subfield number. */
  readonly subfields?: readonly SubfieldSpec[];
  /** BER-TLV: the value is an ordered array of `{ tag, value }`. */
  readonly tlv?: boolean;
  /** Derived: 'value' | 'composite' | 'tlv'. */
  readonly kind: FieldKind;
  /** Derived: `pad` as a number. */
  readonly padNibble: number;
}

export type FieldKind = 'value' | 'composite' | 'tlv';

/** What `defineField` accepts: parts as singletons or by their `inspect` names; pad defaults to '0'. */
export interface FieldSpecInput {
  length: number;
  desc: string;
  enc: Encoding | EncodingName;
  prefix: Prefixer | string;
  pad?: PadNibble;
  subfields?: readonly SubfieldSpec[];
  tlv?: boolean;
}

export interface BitmapSpec {
  /** 'binary': 8 bytes per bitmap; 'hex': 16 hex characters per bitmap. */
  readonly enc: 'binary' | 'hex';
  /** Whether bit 1 may announce a secondary bitmap (fields 65–128). */
  readonly secondary: boolean;
}

export interface Dialect {
  readonly name: string;
  /** The message family the catalogue classifies by: 'unionpay-pos' or 'iso8583-1987'. */
  readonly family: string;
  readonly desc: string;
  /** The MTI: 4 digits, BCD (2 bytes) or ASCII (4 bytes). */
  readonly mti: FieldSpec;
  readonly bitmap: BitmapSpec;
  /** Field specs by number (2–128). */
  readonly fields: Readonly<Record<number, FieldSpec>>;
  /** Per-MTI replacements, e.g. { '0810': { 62: binaryKeyBlock } }. */
  readonly overrides: Readonly<Record<string, Readonly<Record<number, FieldSpec>>>>;
  /** The resolved table for an MTI (index = field number), precomputed for every override. */
  table(mti: string): readonly (FieldSpec | undefined)[];
}

export interface DialectInput {
  name: string;
  /** Defaults to `name`. */
  family?: string;
  desc: string;
  mti: FieldSpecInput;
  bitmap: BitmapSpec;
  fields: Record<number, FieldSpecInput | FieldSpec>;
  overrides?: Record<string, Record<number, FieldSpecInput | FieldSpec>>;
}

function invalid(path: string[], detail: string): IsoError {
  return new IsoError(IsoErrorCode.DIALECT, detail, ['dialect', ...path]);
}

function checkSubfields(
  subs: readonly SubfieldSpec[],
  path: string[],
  parentLength: number,
  fixedParent: boolean,
) {
  let total = 0;
  const seen = new Set<number>();
  subs.forEach((s, i) => {
    const here = [...path, String(s.id)];
    if (!Number.isInteger(s.id) || s.id < 1 || seen.has(s.id))
      throw invalid(here, 'subfield ids must be distinct positive integers');
    seen.add(s.id);
    if (!Number.isInteger(s.length) || s.length < 1)
      throw invalid(here, 'subfield length must be a positive integer');
    if (s.variable && i !== subs.length - 1) throw invalid(here, 'only the last subfield may be variable');
    if (s.subfields) checkSubfields(s.subfields, here, s.length, !s.variable);
    total += s.length;
  });
  const last = subs[subs.length - 1];
  if (fixedParent && total !== parentLength && !last?.variable) {
    throw invalid(path, `subfields cover ${total} units, the field has ${parentLength}`);
  }
  if (total > parentLength && !last?.variable)
    throw invalid(path, `subfields cover ${total} units, more than ${parentLength}`);
}

/** Validates and freezes a field spec; part names ('BCD.left', 'BCD.LLL') resolve to the singletons. */
export function defineField(input: FieldSpecInput | FieldSpec, path: string[] = []): FieldSpec {
  const enc = typeof input.enc === 'string' ? encodingByName(input.enc) : input.enc;
  const prefix = typeof input.prefix === 'string' ? prefixByName(input.prefix) : input.prefix;
  if (!enc) throw invalid(path, `unknown encoding ${String(input.enc)}`);
  if (!prefix) throw invalid(path, `unknown length prefix ${String(input.prefix)}`);
  if (!Number.isInteger(input.length) || input.length < 1)
    throw invalid(path, 'length must be a positive integer');
  if (!prefix.fixed && input.length > prefix.max) {
    throw invalid(
      path,
      `maximum ${input.length} does not fit prefix ${prefix.inspect} (at most ${prefix.max})`,
    );
  }
  const pad = input.pad ?? '0';
  if (pad !== '0' && pad !== 'F') throw invalid(path, "pad must be '0' or 'F'");
  if (input.tlv && enc.unit !== 'byte') throw invalid(path, 'a TLV field must have a byte encoding');
  if (input.tlv && input.subfields) throw invalid(path, 'a field is either TLV or positional, not both');
  if (input.subfields) {
    if (enc.unit === 'byte') throw invalid(path, 'positional subfields need a digit or character encoding');
    checkSubfields(input.subfields, path, input.length, prefix.fixed);
  }
  const kind: FieldKind = input.tlv ? 'tlv' : input.subfields ? 'composite' : 'value';
  return Object.freeze({
    length: input.length,
    desc: input.desc,
    enc,
    prefix,
    pad,
    ...(input.subfields ? { subfields: freezeSubfields(input.subfields) } : {}),
    ...(input.tlv ? { tlv: true } : {}),
    kind,
    padNibble: pad === 'F' ? 15 : 0,
  });
}

function freezeSubfields(subs: readonly SubfieldSpec[]): readonly SubfieldSpec[] {
  return Object.freeze(
    subs.map((s) =>
      Object.freeze({ ...s, ...(s.subfields ? { subfields: freezeSubfields(s.subfields) } : {}) }),
    ),
  );
}

function checkFieldNumber(n: number, secondary: boolean, path: string[]): void {
  const max = secondary ? 128 : 64;
  if (!Number.isInteger(n) || n < 2 || n > max || n === 65) {
    throw invalid(path, `field numbers run from 2 to ${max} (65 is the tertiary bitmap)`);
  }
}

function buildTable(fields: Readonly<Record<number, FieldSpec>>): readonly (FieldSpec | undefined)[] {
  const table: (FieldSpec | undefined)[] = new Array(129).fill(undefined);
  for (const [k, spec] of Object.entries(fields)) table[Number(k)] = spec;
  return Object.freeze(table);
}

/** Validates a dialect table, resolves part names, precomputes per-MTI tables and freezes it all. */
export function defineDialect(input: DialectInput): Dialect {
  if (input.bitmap.enc !== 'binary' && input.bitmap.enc !== 'hex')
    throw invalid(['bitmap'], "enc must be 'binary' or 'hex'");
  const mti = defineField(input.mti, ['MTI']);
  if (
    !mti.prefix.fixed ||
    mti.length !== 4 ||
    (mti.enc.unit !== 'digit' && mti.enc.inspect !== 'ASCII.numeric')
  ) {
    throw invalid(['MTI'], 'the MTI must be 4 fixed digits, BCD or ASCII numeric');
  }
  const resolve = (src: Record<number, FieldSpecInput | FieldSpec>, at: string[]) => {
    const out: Record<number, FieldSpec> = {};
    for (const [k, f] of Object.entries(src)) {
      const n = Number(k);
      checkFieldNumber(n, input.bitmap.secondary, [...at, k]);
      out[n] = defineField(f, [...at, k]);
    }
    return Object.freeze(out);
  };
  const fields = resolve(input.fields, []);
  const overrides: Record<string, Readonly<Record<number, FieldSpec>>> = {};
  const tables = new Map<string, readonly (FieldSpec | undefined)[]>();
  for (const [m, o] of Object.entries(input.overrides ?? {})) {
    if (!/^\d{4}$/.test(m)) throw invalid(['overrides', m], 'override keys are 4-digit MTIs');
    overrides[m] = resolve(o, ['overrides', m]);
    tables.set(m, buildTable({ ...fields, ...overrides[m] }));
  }
  const base = buildTable(fields);
  return Object.freeze({
    name: input.name,
    family: input.family ?? input.name,
    desc: input.desc,
    mti,
    bitmap: Object.freeze({ ...input.bitmap }),
    fields,
    overrides: Object.freeze(overrides),
    table: (m: string) => tables.get(m) ?? base,
  });
}

/** A field spec as plain JSON: parts by `inspect` name. */
export interface FieldSpecJSON {
  length: number;
  desc: string;
  enc: EncodingName;
  prefix: string;
  pad: PadNibble;
  subfields?: SubfieldSpec[];
  tlv?: boolean;
}

export function fieldToJSON(spec: FieldSpec): FieldSpecJSON {
  return {
    length: spec.length,
    desc: spec.desc,
    enc: spec.enc.inspect,
    prefix: spec.prefix.inspect,
    pad: spec.pad,
    ...(spec.subfields ? { subfields: JSON.parse(JSON.stringify(spec.subfields)) as SubfieldSpec[] } : {}),
    ...(spec.tlv ? { tlv: true } : {}),
  };
}

/** The whole dialect as JSON; `defineDialect(dialectToJSON(d))` rebuilds an equivalent dialect. */
export interface DialectJSON extends DialectInput {
  mti: FieldSpecJSON;
  fields: Record<number, FieldSpecJSON>;
  overrides: Record<string, Record<number, FieldSpecJSON>>;
}

export function dialectToJSON(d: Dialect): DialectJSON {
  const map = (src: Readonly<Record<number, FieldSpec>>) =>
    Object.fromEntries(Object.entries(src).map(([k, f]) => [k, fieldToJSON(f)])) as Record<
      number,
      FieldSpecJSON
    >;
  return {
    name: d.name,
    family: d.family,
    desc: d.desc,
    mti: fieldToJSON(d.mti),
    bitmap: { ...d.bitmap },
    fields: map(d.fields),
    overrides: Object.fromEntries(Object.entries(d.overrides).map(([m, o]) => [m, map(o)])),
  };
}
