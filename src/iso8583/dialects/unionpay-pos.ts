/**
 * `unionpay-pos`: terminal ↔ acquirer host (POSP) under the China UnionPay POS terminal spec, as laid
 * out in /work/shared/domain/research/iso8583.md §1.2 and §2.2 (sources there: Bestpay posp_server,
 * chinaljp/posp, ProjectAfcApp). BCD MTI, one binary 64-bit bitmap, BCD numerics with BCD length
 * prefixes that count digits for BCD values and bytes otherwise.
 */
import { Enc } from '../encodings.js';
import { Prefix } from '../prefix.js';
import {
  type Dialect,
  defineDialect,
  defineField,
  type FieldSpecInput,
  type PadNibble,
  type SubfieldSpec,
} from '../spec.js';

type Extra = Partial<Pick<FieldSpecInput, 'subfields' | 'tlv'>>;

const sub = (id: number, length: number, desc: string, variable?: boolean): SubfieldSpec =>
  variable ? { id, length, desc, variable } : { id, length, desc };

/** Options for building a UnionPay POS dialect variant. */
export interface UnionPayPosOptions {
  /** Pad nibble for odd-length BCD values (fields 2, 22, 32, 35, 60…); acquirers use 0 or F. Default '0'. */
  pad?: PadNibble;
  /** Dialect name; defaults to 'unionpay-pos' (or 'unionpay-pos-padF' with pad F). */
  name?: string;
  /**
   * Bytes of field 52. 8 for TDES/DES PIN blocks; 16 for SM4 terminals, whose PIN block is the
   * 16-byte SM4 variant of format 0 (research keys.md §3.2). The host picks the SM4 dialect for the
   * terminals routed to it (by TPDU destination), since field 52 precedes anything that names the terminal.
   */
  pinBlockBytes?: 8 | 16;
}

/** Field 60 (§2.2): 60.1–60.3 always; 60.4–60.7 on financial messages. */
export const FIELD60_SUBFIELDS: readonly SubfieldSpec[] = [
  sub(1, 2, 'message type code'),
  sub(2, 6, 'batch number'),
  sub(3, 3, 'network management information code'),
  sub(4, 1, 'terminal reading capability'),
  sub(5, 1, 'IC card condition code (2 = fallback)'),
  sub(6, 1, 'partial approval and balance return support'),
  sub(7, 3, 'account type'),
];

/** Field 61 (§1.6): original batch, trace and date; pre-authorisation adds 61.4 and 61.5. */
export const FIELD61_SUBFIELDS: readonly SubfieldSpec[] = [
  sub(1, 6, 'original batch number'),
  sub(2, 6, 'original POS trace number'),
  sub(3, 4, 'original transaction date MMDD'),
  sub(4, 2, 'original authorisation method'),
  sub(5, 11, 'original authorising institution code'),
];

/** Field 53 (§2.2): PIN format, encryption algorithm, track encryption, then 13 reserved digits. */
export const FIELD53_SUBFIELDS: readonly SubfieldSpec[] = [
  sub(1, 1, 'PIN format: 0 none, 1 ANSI X9.8 without PAN, 2 with PAN'),
  sub(2, 1, 'encryption algorithm: 0 single DES, 6 double-length 3DES, 4 SM4'),
  sub(3, 1, 'track encryption: 0 none, 1 TDK'),
  sub(4, 13, 'reserved'),
];

/** Field 63: 63.1 operator code (request) or card organisation code (response), 63.2 response text. */
export const FIELD63_SUBFIELDS: readonly SubfieldSpec[] = [
  sub(1, 3, 'operator code / card organisation code'),
  sub(2, 160, 'issuer, CUP, acquirer and terminal information (20/20/20/60)', true),
];

/** Field 44: issuer and acquirer institution IDs. */
export const FIELD44_SUBFIELDS: readonly SubfieldSpec[] = [
  sub(1, 11, 'issuer institution ID'),
  sub(2, 14, 'acquirer institution ID', true),
];

/** Field 48 in 0500/0510 (§2.8): domestic then foreign card totals. */
export const SETTLEMENT_TOTALS_SUBFIELDS: readonly SubfieldSpec[] = [
  sub(1, 12, 'domestic debit amount'),
  sub(2, 3, 'domestic debit count'),
  sub(3, 12, 'domestic credit amount'),
  sub(4, 3, 'domestic credit count'),
  sub(5, 1, 'domestic settlement result: 1 balanced, 2 not balanced, 3 error'),
  sub(6, 12, 'foreign debit amount'),
  sub(7, 3, 'foreign debit count'),
  sub(8, 12, 'foreign credit amount'),
  sub(9, 3, 'foreign credit count'),
  sub(10, 1, 'foreign settlement result'),
];

/** The 6-byte message header (§2.1), for framing: 12 BCD digits in five subfields. */
export const UNIONPAY_HEADER = defineField({
  length: 12,
  desc: 'UnionPay POS message header',
  enc: Enc.bcdRight,
  prefix: Prefix.fixed,
  subfields: [
    sub(1, 2, 'application type: 60 magstripe, 61 IC'),
    sub(2, 2, 'software master version'),
    sub(3, 1, 'terminal status'),
    sub(4, 1, 'processing requirement'),
    sub(5, 6, 'software sub-version'),
  ],
});

/** Builds the UnionPay POS dialect; `getDialect('unionpay-pos')` is this with the defaults. */
export function unionPayPosDialect(options: UnionPayPosOptions = {}): Dialect {
  const pad = options.pad ?? '0';
  const n = (length: number, desc: string, extra: Extra = {}): FieldSpecInput => ({
    length,
    desc,
    enc: Enc.bcdRight,
    prefix: Prefix.fixed,
    pad,
    ...extra,
  });
  const nLeft = (length: number, desc: string, prefix = Prefix.fixed, extra: Extra = {}): FieldSpecInput => ({
    length,
    desc,
    enc: Enc.bcdLeft,
    prefix,
    pad,
    ...extra,
  });
  const z = (length: number, desc: string, prefix = Prefix.bcd.LL): FieldSpecInput => ({
    length,
    desc,
    enc: Enc.track,
    prefix,
    pad,
  });
  const an = (length: number, desc: string, prefix = Prefix.fixed, extra: Extra = {}): FieldSpecInput => ({
    length,
    desc,
    enc: Enc.ascii,
    prefix,
    ...extra,
  });
  const b = (length: number, desc: string, prefix = Prefix.fixed, extra: Extra = {}): FieldSpecInput => ({
    length,
    desc,
    enc: Enc.binary,
    prefix,
    ...extra,
  });
  return defineDialect({
    name: options.name ?? (pad === '0' ? 'unionpay-pos' : 'unionpay-pos-padF'),
    family: 'unionpay-pos',
    desc: 'China UnionPay POS terminal ↔ acquirer host: BCD MTI, binary bitmap (64 fields), BCD numerics',
    mti: { length: 4, desc: 'message type indicator', enc: Enc.bcdRight, prefix: Prefix.fixed },
    bitmap: { enc: 'binary', secondary: false },
    fields: {
      2: nLeft(19, 'primary account number', Prefix.bcd.LL),
      3: n(6, 'processing code'),
      4: n(12, 'amount, transaction (fen)'),
      11: n(6, 'system trace audit number (POS trace)'),
      12: n(6, 'time, local transaction hhmmss'),
      13: n(4, 'date, local transaction MMDD'),
      14: n(4, 'date, expiration YYMM'),
      15: n(4, 'date, settlement MMDD'),
      22: nLeft(3, 'POS entry mode (left-aligned)'),
      23: n(3, 'card sequence number'),
      25: n(2, 'POS condition code'),
      26: n(2, 'POS PIN capture code'),
      32: nLeft(11, 'acquiring institution ID', Prefix.bcd.LL),
      35: z(37, 'track 2 data'),
      36: z(104, 'track 3 data', Prefix.bcd.LLL),
      37: an(12, 'retrieval reference number'),
      38: an(6, 'authorisation identification response'),
      39: an(2, 'response code'),
      41: an(8, 'card acceptor terminal ID'),
      42: an(15, 'card acceptor ID (merchant)'),
      44: an(25, 'additional response data', Prefix.bcd.LL, { subfields: FIELD44_SUBFIELDS }),
      48: nLeft(322, 'additional data, private', Prefix.bcd.LLL),
      49: an(3, 'currency code, transaction'),
      52: b(options.pinBlockBytes ?? 8, 'PIN data'),
      53: n(16, 'security related control information', { subfields: FIELD53_SUBFIELDS }),
      54: an(20, 'balance amount', Prefix.bcd.LLL),
      55: b(255, 'ICC system related data', Prefix.bcd.LLL, { tlv: true }),
      59: an(999, 'custom (terminal information)', Prefix.bcd.LLL),
      60: nLeft(17, 'custom: message type, batch, network management code…', Prefix.bcd.LLL, {
        subfields: FIELD60_SUBFIELDS,
      }),
      61: nLeft(29, 'original message data', Prefix.bcd.LLL, { subfields: FIELD61_SUBFIELDS }),
      62: an(512, 'custom', Prefix.bcd.LLL),
      63: an(163, 'custom: operator / card organisation code and text', Prefix.bcd.LLL, {
        subfields: FIELD63_SUBFIELDS,
      }),
      64: b(8, 'message authentication code'),
    },
    overrides: {
      // Sign-in response: the working keys under the TMK with their check values (§1.4).
      '0810': { 62: b(512, 'working key block (PIK, MAK, TDK with check values)', Prefix.bcd.LLL) },
      '0500': {
        48: nLeft(62, 'settlement totals', Prefix.bcd.LLL, { subfields: SETTLEMENT_TOTALS_SUBFIELDS }),
      },
      '0510': {
        48: nLeft(62, 'settlement totals', Prefix.bcd.LLL, { subfields: SETTLEMENT_TOTALS_SUBFIELDS }),
      },
    },
  });
}
