/** fast-check generators of valid messages for any dialect, shared by the property and fuzz tests. */
import fc from 'fast-check';
import type {
  Dialect,
  FieldSpec,
  IsoMessage,
  SubfieldSpec,
  Subfields,
  TlvItem,
} from '../../src/iso8583/index.js';

const DIGITS = '0123456789';
const ALPHABET: Record<string, string> = {
  'BCD.right': DIGITS,
  'BCD.left': DIGITS,
  'ASCII.numeric': DIGITS,
  'BCD.track': '0123456789ABC=EF',
  ASCII: Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join(''),
  Binary: '0123456789ABCDEF',
  HexASCII: '0123456789ABCDEFabcdef',
};

function text(alphabet: string, min: number, max: number): fc.Arbitrary<string> {
  return fc.array(fc.constantFrom(...alphabet), { minLength: min, maxLength: max }).map((a) => a.join(''));
}

/** A length from 0 (or `min`) to `max`, biased towards short values but reaching the maximum. */
function length(min: number, max: number): fc.Arbitrary<number> {
  return fc.oneof(
    fc.integer({ min, max: Math.min(max, Math.max(min, 24)) }),
    fc.integer({ min, max }),
    fc.constant(max),
  );
}

function composite(
  subs: readonly SubfieldSpec[],
  alphabet: string,
  max: number,
  all: boolean,
): fc.Arbitrary<Subfields> {
  return fc.integer({ min: all ? subs.length : 0, max: subs.length }).chain((count) => {
    const parts: fc.Arbitrary<[number, string | Subfields]>[] = [];
    let used = 0;
    for (const sub of subs.slice(0, count)) {
      const room = Math.min(sub.length, max - used);
      if (room < (sub.variable ? 1 : sub.length)) break;
      if (sub.subfields) {
        parts.push(
          composite(sub.subfields, alphabet, room, !sub.variable)
            .filter((v) => Object.keys(v).length > 0)
            .map((v) => [sub.id, v]),
        );
      } else {
        parts.push(
          (sub.variable
            ? length(1, room).chain((n) => text(alphabet, n, n))
            : text(alphabet, room, room)
          ).map((v) => [sub.id, v]),
        );
      }
      used += sub.variable ? room : sub.length;
    }
    return fc.tuple(...parts).map((entries) => Object.fromEntries(entries) as Subfields);
  });
}

const tag: fc.Arbitrary<string> = fc
  .oneof(
    // one byte: low five bits not all set, not 00/FF
    fc.integer({ min: 1, max: 0xfe }).filter((b) => (b & 0x1f) !== 0x1f),
    // two bytes: xx1F-class first byte, second without continuation
    fc.tuple(fc.constantFrom(0x1f, 0x5f, 0x9f, 0xbf, 0xdf), fc.integer({ min: 0, max: 0x7f })),
    // three bytes
    fc.tuple(
      fc.constantFrom(0x9f, 0xdf),
      fc.integer({ min: 0x80, max: 0xff }),
      fc.integer({ min: 0, max: 0x7f }),
    ),
  )
  .map((t) =>
    Buffer.from(Array.isArray(t) ? t : [t])
      .toString('hex')
      .toUpperCase(),
  );

function tlvItems(max: number): fc.Arbitrary<TlvItem[]> {
  const value = fc
    .oneof(length(0, 40), fc.integer({ min: 120, max: 200 }))
    .chain((n) => text(ALPHABET.Binary!, 2 * n, 2 * n));
  const item = fc.tuple(tag, value).map(([t, v]): TlvItem => ({ tag: t, value: v }));
  return fc.array(item, { maxLength: 8 }).map((items) => {
    // Keep the encoded size within the field's maximum.
    const size = (i: TlvItem) =>
      i.tag.length / 2 +
      i.value.length / 2 +
      (i.value.length / 2 < 128 ? 1 : i.value.length / 2 < 256 ? 2 : 3);
    const out: TlvItem[] = [];
    let total = 0;
    for (const i of items) {
      if (total + size(i) <= max) {
        out.push(i);
        total += size(i);
      }
    }
    return out;
  });
}

/** A valid value for one field spec. */
export function fieldValue(spec: FieldSpec): fc.Arbitrary<string | Subfields | TlvItem[]> {
  const alphabet = ALPHABET[spec.enc.inspect]!;
  if (spec.kind === 'tlv') return tlvItems(spec.length);
  if (spec.kind === 'composite') return composite(spec.subfields!, alphabet, spec.length, spec.prefix.fixed);
  const perUnit = spec.enc.unit === 'byte' ? 2 : 1;
  const n = spec.prefix.fixed ? fc.constant(spec.length) : length(0, spec.length);
  return n.chain((k) => text(alphabet, k * perUnit, k * perUnit));
}

const COMMON_MTIS = [
  '0100',
  '0110',
  '0200',
  '0210',
  '0220',
  '0320',
  '0400',
  '0410',
  '0500',
  '0510',
  '0800',
  '0810',
  '0820',
];

/** A valid message for `dialect`: a known or random MTI and a random subset of its fields. */
export function message(dialect: Dialect): fc.Arbitrary<IsoMessage> {
  const mti = fc.oneof(fc.constantFrom(...COMMON_MTIS), text(DIGITS, 4, 4));
  return mti.chain((m) => {
    const table = dialect.table(m);
    const numbers = table.flatMap((s, n) => (s ? [n] : []));
    return fc.subarray(numbers).chain((chosen) =>
      fc.tuple(...chosen.map((n) => fieldValue(table[n]!))).map((values) => {
        const msg: IsoMessage = { 0: m };
        chosen.forEach((n, i) => {
          msg[n] = values[i];
        });
        return msg;
      }),
    );
  });
}
