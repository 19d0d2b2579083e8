/**
 * `network`: acquirer host ↔ card network, ISO 8583:1987 with ASCII numerics and 128 fields (the
 * shape of the acquirer–CUPS link in research/iso8583.md §2.10: ASCII body, binary bitmaps with a
 * secondary, field 52 binary 8, field 53 ASCII n16, MACs in 64 and 128 binary 8). Field 52 carries
 * the PIN block under the zone PIN key and 64/128 the MAC under the zone MAC key; the codec only
 * carries them. Lengths and formats of the other fields follow the ISO 8583:1987 data element table.
 */
import { Enc } from '../encodings.js';
import { Prefix } from '../prefix.js';
import { type Dialect, defineDialect, type FieldSpecInput } from '../spec.js';

export interface NetworkOptions {
  /** Bitmap form: 8 raw bytes per bitmap (default) or 16 hex characters. */
  bitmap?: 'binary' | 'hex';
  /** Dialect name; defaults to 'network' (or 'network-hex'). */
  name?: string;
}

const n = (length: number, desc: string): FieldSpecInput => ({
  length,
  desc,
  enc: Enc.asciiNumeric,
  prefix: Prefix.fixed,
});
const nv = (length: number, desc: string): FieldSpecInput => ({
  length,
  desc,
  enc: Enc.asciiNumeric,
  prefix: length > 99 ? Prefix.ascii.LLL : Prefix.ascii.LL,
});
const an = (length: number, desc: string): FieldSpecInput => ({
  length,
  desc,
  enc: Enc.ascii,
  prefix: Prefix.fixed,
});
const anv = (length: number, desc: string): FieldSpecInput => ({
  length,
  desc,
  enc: Enc.ascii,
  prefix: length > 99 ? Prefix.ascii.LLL : Prefix.ascii.LL,
});
const b = (length: number, desc: string): FieldSpecInput => ({
  length,
  desc,
  enc: Enc.binary,
  prefix: Prefix.fixed,
});

function reserved(from: number, to: number, desc: string): Record<number, FieldSpecInput> {
  const out: Record<number, FieldSpecInput> = {};
  for (let i = from; i <= to; i++) out[i] = anv(999, desc);
  return out;
}

/** The ISO 8583:1987 data elements 2–128 (65, the tertiary bitmap, is not supported). */
const FIELDS_1987: Record<number, FieldSpecInput> = {
  2: nv(19, 'primary account number'),
  3: n(6, 'processing code'),
  4: n(12, 'amount, transaction'),
  5: n(12, 'amount, settlement'),
  6: n(12, 'amount, cardholder billing'),
  7: n(10, 'transmission date and time MMDDhhmmss'),
  8: n(8, 'amount, cardholder billing fee'),
  9: n(8, 'conversion rate, settlement'),
  10: n(8, 'conversion rate, cardholder billing'),
  11: n(6, 'system trace audit number'),
  12: n(6, 'time, local transaction hhmmss'),
  13: n(4, 'date, local transaction MMDD'),
  14: n(4, 'date, expiration YYMM'),
  15: n(4, 'date, settlement MMDD'),
  16: n(4, 'date, conversion MMDD'),
  17: n(4, 'date, capture MMDD'),
  18: n(4, 'merchant type'),
  19: n(3, 'acquiring institution country code'),
  20: n(3, 'PAN extended, country code'),
  21: n(3, 'forwarding institution country code'),
  22: n(3, 'point of service entry mode'),
  23: n(3, 'card sequence number'),
  24: n(3, 'network international identifier'),
  25: n(2, 'point of service condition code'),
  26: n(2, 'point of service PIN capture code'),
  27: n(1, 'authorising identification response length'),
  28: an(9, 'amount, transaction fee (x+n8)'),
  29: an(9, 'amount, settlement fee (x+n8)'),
  30: an(9, 'amount, transaction processing fee (x+n8)'),
  31: an(9, 'amount, settlement processing fee (x+n8)'),
  32: nv(11, 'acquiring institution identification code'),
  33: nv(11, 'forwarding institution identification code'),
  34: anv(28, 'primary account number, extended'),
  35: anv(37, 'track 2 data'),
  36: anv(104, 'track 3 data'),
  37: an(12, 'retrieval reference number'),
  38: an(6, 'authorisation identification response'),
  39: an(2, 'response code'),
  40: an(3, 'service restriction code'),
  41: an(8, 'card acceptor terminal identification'),
  42: an(15, 'card acceptor identification code'),
  43: an(40, 'card acceptor name/location'),
  44: anv(25, 'additional response data'),
  45: anv(76, 'track 1 data'),
  46: anv(999, 'additional data, ISO'),
  47: anv(999, 'additional data, national'),
  48: anv(999, 'additional data, private'),
  49: an(3, 'currency code, transaction'),
  50: an(3, 'currency code, settlement'),
  51: an(3, 'currency code, cardholder billing'),
  52: b(8, 'PIN data (under the zone PIN key)'),
  53: n(16, 'security related control information'),
  54: anv(120, 'additional amounts'),
  55: { length: 255, desc: 'ICC system related data', enc: Enc.binary, prefix: Prefix.ascii.LLL, tlv: true },
  ...reserved(56, 63, 'reserved'),
  64: b(8, 'message authentication code (zone MAC key)'),
  66: n(1, 'settlement code'),
  67: n(2, 'extended payment code'),
  68: n(3, 'receiving institution country code'),
  69: n(3, 'settlement institution country code'),
  70: n(3, 'network management information code'),
  71: n(4, 'message number'),
  72: n(4, 'message number, last'),
  73: n(6, 'date, action YYMMDD'),
  74: n(10, 'credits, number'),
  75: n(10, 'credits, reversal number'),
  76: n(10, 'debits, number'),
  77: n(10, 'debits, reversal number'),
  78: n(10, 'transfer, number'),
  79: n(10, 'transfer, reversal number'),
  80: n(10, 'inquiries, number'),
  81: n(10, 'authorisations, number'),
  82: n(12, 'credits, processing fee amount'),
  83: n(12, 'credits, transaction fee amount'),
  84: n(12, 'debits, processing fee amount'),
  85: n(12, 'debits, transaction fee amount'),
  86: n(16, 'credits, amount'),
  87: n(16, 'credits, reversal amount'),
  88: n(16, 'debits, amount'),
  89: n(16, 'debits, reversal amount'),
  90: n(42, 'original data elements'),
  91: an(1, 'file update code'),
  92: an(2, 'file security code'),
  93: an(5, 'response indicator'),
  94: an(7, 'service indicator'),
  95: an(42, 'replacement amounts'),
  96: b(8, 'message security code'),
  97: an(17, 'amount, net settlement (x+n16)'),
  98: an(25, 'payee'),
  99: nv(11, 'settlement institution identification code'),
  100: nv(11, 'receiving institution identification code'),
  101: anv(17, 'file name'),
  102: anv(28, 'account identification 1'),
  103: anv(28, 'account identification 2'),
  104: anv(100, 'transaction description'),
  ...reserved(105, 111, 'reserved for ISO use'),
  ...reserved(112, 119, 'reserved for national use'),
  ...reserved(120, 127, 'reserved for private use'),
  128: b(8, 'message authentication code (zone MAC key)'),
};

/** Builds the network dialect; `getDialect('network')` is this with binary bitmaps. */
export function networkDialect(options: NetworkOptions = {}): Dialect {
  const bitmap = options.bitmap ?? 'binary';
  return defineDialect({
    name: options.name ?? (bitmap === 'binary' ? 'network' : 'network-hex'),
    family: 'iso8583-1987',
    desc: 'Acquirer host ↔ card network: ISO 8583:1987, ASCII numerics, 128 fields, binary PIN block and MACs',
    mti: { length: 4, desc: 'message type indicator', enc: Enc.asciiNumeric, prefix: Prefix.fixed },
    bitmap: { enc: bitmap, secondary: true },
    fields: FIELDS_1987,
  });
}
