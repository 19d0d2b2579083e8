/**
 * Application conventions of the UnionPay POS dialect that both ends of the terminal link share:
 * the MAC block, field 53, the sign-in codes of 60.3 and the response codes. The host and the
 * terminal simulator both use these, so they cannot disagree about what is MACed or what a code
 * means (research/iso8583.md §1.3–§2.8).
 */
import { PoskeyError } from '../errors.js';
import { getDialect, type IsoMessage, pack, type Subfields } from '../iso8583/index.js';

export const POS_DIALECT = getDialect('unionpay-pos');

/**
 * SM4 terminals send a 16-byte PIN block in field 52. Field 52 comes before anything that names the
 * terminal, so the host cannot pick the layout from the registry: SM4 terminals are routed by their
 * TPDU destination address (NII), as acquirers route terminal populations, to this dialect.
 */
export const POS_SM4_DIALECT = getDialect('unionpay-pos-sm4');

/** The TPDU destination SM4 terminals use by default, and the host maps to POS_SM4_DIALECT. */
export const SM4_TPDU_DESTINATION = 0x0006;

/** The terminal-side dialect for a terminal's key algorithm. */
export function posDialectFor(algorithm: 'des' | 'tdes' | 'sm4'): typeof POS_DIALECT {
  return algorithm === 'sm4' ? POS_SM4_DIALECT : POS_DIALECT;
}

/** Response codes (field 39) as the POS spec uses them; A0 and 99 make the terminal sign in again. */
export const RC = Object.freeze({
  APPROVED: '00',
  INVALID_TRANSACTION: '12',
  INVALID_AMOUNT: '13',
  INVALID_CARD: '14',
  ORIGINAL_NOT_FOUND: '25',
  FORMAT_ERROR: '30',
  INSUFFICIENT_FUNDS: '51',
  EXPIRED_CARD: '54',
  WRONG_PIN: '55',
  RESTRICTED_CARD: '62',
  PIN_TRIES_EXCEEDED: '75',
  DUPLICATE: '94',
  SYSTEM_MALFUNCTION: '96',
  TERMINAL_NOT_REGISTERED: '97',
  ISSUER_TIMEOUT: '98',
  PIN_FORMAT_ERROR: '99',
  MAC_FAILED: 'A0',
  /** Not in the research table: used by poskey for "working keys missing or too old, sign in again". */
  SIGN_IN_REQUIRED: 'A7',
} as const);

export type ResponseCode = (typeof RC)[keyof typeof RC];

/** Codes after which a terminal must sign in again before the next transaction. */
export const RE_SIGN_IN_CODES: ReadonlySet<string> = new Set([
  RC.MAC_FAILED,
  RC.PIN_FORMAT_ERROR,
  RC.SIGN_IN_REQUIRED,
]);

/** Network management information codes (60.3) of a sign-in and the key layout each asks for. */
export const SIGN_IN_CODES = Object.freeze({
  /** Single-length PIK and MAK (DES). */
  SINGLE: '001',
  /** Double-length PIK, 8-byte MAK. */
  DOUBLE: '003',
  /** As 003 plus a double-length TDK. */
  DOUBLE_WITH_TDK: '004',
  /** SM4 PIK, MAK and TDK (Bestpay usage). */
  SM4: '006',
} as const);

export type SignInCode = (typeof SIGN_IN_CODES)[keyof typeof SIGN_IN_CODES];

export function isSignInCode(code: string | undefined): code is SignInCode {
  return code === '001' || code === '003' || code === '004' || code === '006';
}

/** Field 53, security control information (n16): PIN method, algorithm, track encryption. */
export interface SecurityControl {
  /** 0 none, 1 ANSI X9.8 without PAN, 2 ANSI X9.8 with PAN. */
  pinMethod: '0' | '1' | '2';
  /** 0 single-length DES, 6 double-length TDES, 4 SM4 (Bestpay). */
  algorithm: '0' | '6' | '4';
  /** True when the track (35/36) is encrypted under the TDK. */
  trackEncrypted: boolean;
}

/** Reads field 53 as the codec returns it (a 16-digit string or its subfields). */
export function readSecurityControl(field53: IsoMessage[number]): SecurityControl | undefined {
  if (field53 === undefined) return undefined;
  const digits =
    typeof field53 === 'string'
      ? field53
      : Array.isArray(field53)
        ? ''
        : Object.keys(field53)
            .sort((a, b) => Number(a) - Number(b))
            .map((k) => (field53 as Subfields)[Number(k)])
            .join('');
  const pinMethod = digits[0];
  const algorithm = digits[1];
  if (
    (pinMethod !== '0' && pinMethod !== '1' && pinMethod !== '2') ||
    !['0', '6', '4'].includes(algorithm ?? '')
  ) {
    throw new PoskeyError('POSKEY_ERR_POS_FIELD_53', `unsupported security control ${digits.slice(0, 3)}`, {
      field: '53',
    });
  }
  return {
    pinMethod,
    algorithm: algorithm as SecurityControl['algorithm'],
    trackEncrypted: digits[2] === '1',
  };
}

/** Field 53 as 16 digits. */
export function securityControlDigits(sc: SecurityControl): string {
  return `${sc.pinMethod}${sc.algorithm}${sc.trackEncrypted ? '1' : '0'}0000000000000`;
}

const ZERO_MAC = '0000000000000000';

/**
 * The MAC block (MAB): the packed message from the MTI up to, not including, field 64, with bit 64
 * set in the bitmap. Field 64 is the last field and 8 bytes long, so it is the packed message with
 * a placeholder MAC, less its last 8 bytes.
 */
export function macBlock(msg: IsoMessage, dialect = POS_DIALECT): Buffer {
  const packed = pack(dialect, { ...msg, 64: ZERO_MAC });
  return packed.subarray(0, packed.length - 8);
}

/** Packs `msg` with `mac` (16 hex digits) as field 64. */
export function packWithMac(msg: IsoMessage, mac: string, dialect = POS_DIALECT): Buffer {
  return pack(dialect, { ...msg, 64: mac });
}

/**
 * TDK track encryption (53.3 = 1, research/iso8583.md §2.6): only one block of the track's digit
 * string is enciphered, the 16 digits (8 bytes; 32 digits for SM4) that end just before the last
 * digit when the length is odd, or before the last two when it is even. The codec shows the
 * separator nibble D as '=', so the track is handled as its nibble string with '=' ↔ D; `cipher`
 * encrypts (terminal) or decrypts (host) the one block.
 */
export function transformTrack(track: string, blockBytes: 8 | 16, cipher: (block: Buffer) => Buffer): string {
  const nibbles = track.replaceAll('=', 'D').toUpperCase();
  if (!/^[0-9A-F]*$/.test(nibbles)) {
    throw new PoskeyError('POSKEY_ERR_POS_TRACK', 'track data must be digits and separators', {
      field: '35',
    });
  }
  const end = nibbles.length % 2 === 1 ? nibbles.length - 1 : nibbles.length - 2;
  const start = end - blockBytes * 2;
  if (start < 0) {
    throw new PoskeyError('POSKEY_ERR_POS_TRACK', `track of ${track.length} digits is too short to encrypt`, {
      field: '35',
    });
  }
  const out = cipher(Buffer.from(nibbles.slice(start, end), 'hex'));
  if (out.length !== blockBytes) {
    throw new PoskeyError('POSKEY_ERR_POS_TRACK', 'track cipher returned a block of the wrong size', {
      field: '35',
    });
  }
  return `${nibbles.slice(0, start)}${out.toString('hex').toUpperCase()}${nibbles.slice(end)}`.replaceAll(
    'D',
    '=',
  );
}
