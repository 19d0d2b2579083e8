/**
 * poskey ISO 8583: a spec-driven codec with the `unionpay-pos` and `network` dialects and a
 * message-type catalogue. See docs/iso8583.md.
 *
 * ```ts
 * const d = getDialect('unionpay-pos');
 * const msg = unpack(d, body);         // { 0: '0200', 2: '6222…', 60: { 1: '22', 2: '000001', 3: '000' }, 55: [{ tag, value }] }
 * msg[39] = '00';
 * const bytes = pack(d, msg);
 * classify(d, msg);                    // { name: 'purchase', direction: 'request' }
 * ```
 */
export { type Classification, classify, type Direction, type TransactionName } from './catalogue.js';
export {
  type FieldValue,
  getValue,
  type IsoMessage,
  pack,
  packField,
  unpack,
  unpackField,
  WIRE,
  type WireNotes,
} from './codec.js';
export { joinPositional, type Subfields, splitPositional } from './composite.js';
export * from './describe.js';
export { DIALECT_NAMES, type DialectName, getDialect } from './dialects/index.js';
export { type NetworkOptions, networkDialect } from './dialects/network.js';
export {
  FIELD44_SUBFIELDS,
  FIELD53_SUBFIELDS,
  FIELD60_SUBFIELDS,
  FIELD61_SUBFIELDS,
  FIELD63_SUBFIELDS,
  SETTLEMENT_TOTALS_SUBFIELDS,
  UNIONPAY_HEADER,
  type UnionPayPosOptions,
  unionPayPosDialect,
} from './dialects/unionpay-pos.js';
export { Enc, type Encoding, type EncodingName } from './encodings.js';
export { IsoError, IsoErrorCode, type IsoErrorCodeValue, isIsoError } from './errors.js';
export * from './framing.js';
export { joinKeyBlock, keyBlockLength, type SignInKeys, splitKeyBlock } from './keyblock.js';
export { Prefix, type Prefixer } from './prefix.js';
export {
  type BitmapSpec,
  type Dialect,
  type DialectInput,
  type DialectJSON,
  defineDialect,
  defineField,
  dialectToJSON,
  type FieldKind,
  type FieldSpec,
  type FieldSpecInput,
  type FieldSpecJSON,
  fieldToJSON,
  type PadNibble,
  type SubfieldSpec,
} from './spec.js';
export { decodeTlv, findTag, type TlvItem } from './tlv.js';
