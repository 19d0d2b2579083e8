/**
 * TR-31 / ANSI X9.143 key block header: 16 fixed ASCII characters and optional blocks, plus the
 * checks a key store applies to a header before using the key (usage, algorithm, mode, export).
 *
 * Fixed part: version(1) length(4) usage(2) algorithm(1) mode(1) key version(2) exportability(1)
 * optional block count(2) key context(1) reserved(1). The block length is computed on wrap and
 * checked on unwrap, so the header object does not carry it.
 */
import { CryptoError } from '../errors.js';
import type { CipherAlgorithm } from './cipher.js';

export type Tr31Version = 'A' | 'B' | 'C' | 'D';

export interface Tr31OptionalBlock {
  /** Two alphanumeric characters, e.g. KS, KC, PB; unknown IDs are kept verbatim. */
  id: string;
  /** Printable ASCII. */
  data: string;
}

export interface Tr31Header {
  version: Tr31Version;
  usage: string;
  algorithm: string;
  modeOfUse: string;
  keyVersion: string;
  exportability: string;
  keyContext: string;
  optionalBlocks: Tr31OptionalBlock[];
}

export const TR31_HEADER_LENGTH = 16;
export const TR31_MAX_BLOCK_LENGTH = 9999;

/** Cipher block size a version's optional blocks are padded to: 8 for A/B/C (TDES), 16 for D (AES). */
export const TR31_BLOCK_SIZE: Readonly<Record<Tr31Version, number>> = { A: 8, B: 8, C: 8, D: 16 };

/** Key usage codes, ANSI X9.143:2021 table 2 (two-digit numeric codes are proprietary and also accepted). */
export const KEY_USAGES: Readonly<Record<string, string>> = {
  B0: 'BDK base derivation key',
  B1: 'initial DUKPT key',
  B2: 'base key variant key (deprecated)',
  B3: 'key derivation key (non-X9.24)',
  C0: 'CVK card verification key',
  D0: 'symmetric data encryption',
  D1: 'asymmetric data encryption',
  D2: 'data encryption for decimalization table',
  D3: 'data encryption for sensitive data',
  E0: 'EMV/chip issuer master key: application cryptograms',
  E1: 'EMV/chip issuer master key: secure messaging for confidentiality',
  E2: 'EMV/chip issuer master key: secure messaging for integrity',
  E3: 'EMV/chip issuer master key: data authentication code',
  E4: 'EMV/chip issuer master key: dynamic numbers',
  E5: 'EMV/chip issuer master key: card personalisation',
  E6: 'EMV/chip issuer master key: other',
  E7: 'EMV/chip asymmetric key pair for PIN encryption',
  I0: 'initialization vector',
  K0: 'key encryption or wrapping',
  K1: 'TR-31 key block protection key',
  K2: 'TR-34 asymmetric key',
  K3: 'asymmetric key for key agreement/wrapping',
  K4: 'ISO 20038 key block protection key',
  M0: 'ISO 16609 MAC algorithm 1 (TDES)',
  M1: 'ISO 9797-1 MAC algorithm 1',
  M2: 'ISO 9797-1 MAC algorithm 2',
  M3: 'ISO 9797-1 MAC algorithm 3',
  M4: 'ISO 9797-1 MAC algorithm 4',
  M5: 'ISO 9797-1:1999 MAC algorithm 5',
  M6: 'ISO 9797-1:2011 MAC algorithm 5 (CMAC)',
  M7: 'HMAC',
  M8: 'ISO 9797-1:2011 MAC algorithm 6',
  P0: 'PIN encryption',
  P1: 'PIN generation',
  S0: 'asymmetric key pair for digital signature',
  S1: 'asymmetric key pair, CA key',
  S2: 'asymmetric key pair, non-X9.24 key',
  V0: 'PIN verification, KPV, other algorithm',
  V1: 'PIN verification, IBM 3624',
  V2: 'PIN verification, Visa PVV',
  V3: 'PIN verification, X9.132 algorithm 1',
  V4: 'PIN verification, X9.132 algorithm 2',
  V5: 'PIN verification, X9.132 algorithm 3',
};

/**
 * Algorithm codes. TR-31 has no SM4 code; poskey uses the proprietary (numeric) letter '4' for SM4
 * keys so UnionPay terminal keys can live in key blocks. Other implementations will not know it.
 */
export const ALGORITHMS: Readonly<Record<string, string>> = {
  A: 'AES',
  D: 'DES',
  E: 'elliptic curve',
  H: 'HMAC',
  R: 'RSA',
  S: 'DSA',
  T: 'TDES',
  '4': 'SM4 (poskey proprietary code)',
};

export const MODES_OF_USE: Readonly<Record<string, string>> = {
  B: 'encrypt/wrap and decrypt/unwrap',
  C: 'MAC generate and verify',
  D: 'decrypt/unwrap only',
  E: 'encrypt/wrap only',
  G: 'MAC generate only',
  N: 'no special restrictions',
  S: 'signature only',
  V: 'MAC verify only',
  X: 'key derivation',
  Y: 'create key variants',
};

export const EXPORTABILITY: Readonly<Record<string, string>> = {
  E: 'exportable under a trusted key',
  N: 'not exportable',
  S: 'sensitive: exportable only in non-X9.24 forms',
};

export const KEY_CONTEXTS: Readonly<Record<string, string>> = {
  '0': 'determined by the wrapping key',
  '1': 'storage only',
  '2': 'exchange only',
};

/** Optional block IDs known to X9.143 (openemv/tr31 `tr31.h`); others pass through untouched. */
export const OPTIONAL_BLOCK_IDS: Readonly<Record<string, string>> = {
  AL: 'asymmetric key life',
  BI: 'base derivation key identifier',
  CT: 'public key certificate',
  DA: 'derivations allowed',
  FL: 'flags',
  HM: 'HMAC hash algorithm',
  IK: 'initial key identifier (AES DUKPT)',
  KC: 'check value of the wrapped key',
  KP: 'check value of the KBPK',
  KS: 'initial key serial number (TDES DUKPT)',
  KV: 'key block values (deprecated)',
  LB: 'label',
  PB: 'padding block',
  PK: 'check value of the export KBPK',
  TC: 'time of creation',
  TS: 'time stamp',
  WP: 'wrapping pedigree',
};

const ALNUM2 = /^[0-9A-Za-z]{2}$/;
const DIGITS = /^\d+$/;
const HEX = /^[0-9A-Fa-f]+$/;
const PRINTABLE = /^[\x20-\x7e]*$/;

function headerError(field: string, reason: string): CryptoError {
  return new CryptoError('POSKEY_ERR_TR31_HEADER', reason, { field });
}

function optionalError(index: number, reason: string): CryptoError {
  return new CryptoError('POSKEY_ERR_TR31_OPTIONAL_BLOCK', reason, { field: `optionalBlocks[${index}]` });
}

function checkVersion(v: string): asserts v is Tr31Version {
  if (v === 'E') {
    throw new CryptoError('POSKEY_ERR_TR31_VERSION', 'ISO 20038 version E key blocks are not supported', {
      field: 'version',
    });
  }
  if (v !== 'A' && v !== 'B' && v !== 'C' && v !== 'D') {
    throw headerError('version', `version '${v}' is not A, B, C or D`);
  }
}

function checkCode(field: string, value: unknown, table: Readonly<Record<string, string>>, width = 1): void {
  if (typeof value !== 'string' || value.length !== width || !Object.hasOwn(table, value)) {
    throw headerError(field, `'${String(value)}' is not one of ${Object.keys(table).join(' ')}`);
  }
}

/** Validates every fixed field of a header object (used by `buildHeader` and on parse). */
function checkFields(h: Tr31Header): void {
  checkVersion(h.version);
  if (
    typeof h.usage !== 'string' ||
    !ALNUM2.test(h.usage) ||
    !(Object.hasOwn(KEY_USAGES, h.usage) || DIGITS.test(h.usage))
  ) {
    throw headerError(
      'usage',
      `key usage '${String(h.usage)}' is not an X9.143 code or a numeric proprietary one`,
    );
  }
  checkCode('algorithm', h.algorithm, ALGORITHMS);
  checkCode('modeOfUse', h.modeOfUse, MODES_OF_USE);
  if (typeof h.keyVersion !== 'string' || !ALNUM2.test(h.keyVersion)) {
    throw headerError(
      'keyVersion',
      `key version '${String(h.keyVersion)}' is not two alphanumeric characters`,
    );
  }
  checkCode('exportability', h.exportability, EXPORTABILITY);
  checkCode('keyContext', h.keyContext, KEY_CONTEXTS);
}

/** Serialises one optional block, choosing the extended length form only when the short one overflows. */
function encodeOptionalBlock(b: Tr31OptionalBlock, index: number): string {
  if (typeof b?.id !== 'string' || !ALNUM2.test(b.id)) {
    throw optionalError(index, `optional block ID '${String(b?.id)}' is not two alphanumeric characters`);
  }
  if (typeof b.data !== 'string' || !PRINTABLE.test(b.data)) {
    throw optionalError(index, `optional block ${b.id} data must be printable ASCII`);
  }
  const short = 4 + b.data.length;
  if (short <= 0xff) return `${b.id}${hex(short, 2)}${b.data}`;
  const long = 10 + b.data.length;
  if (long > 0xffff)
    throw optionalError(index, `optional block ${b.id} is too long (${b.data.length} characters)`);
  // Extended form: "00", length-of-length 02 (bytes), then a 4-hex-digit length.
  return `${b.id}0002${hex(long, 4)}${b.data}`;
}

function hex(n: number, width: number): string {
  return n.toString(16).toUpperCase().padStart(width, '0');
}

/**
 * Serialises a header: the 16 fixed characters with `blockLength` (default 0000) and the optional
 * blocks exactly as listed (including any PB). Every field is validated.
 * @throws POSKEY_ERR_TR31_HEADER (field = position name), POSKEY_ERR_TR31_OPTIONAL_BLOCK, POSKEY_ERR_TR31_VERSION
 */
export function buildHeader(h: Tr31Header, blockLength = 0): string {
  checkFields(h);
  if (!Number.isInteger(blockLength) || blockLength < 0 || blockLength > TR31_MAX_BLOCK_LENGTH) {
    throw new CryptoError('POSKEY_ERR_TR31_LENGTH', `key block length ${blockLength} outside 0-9999`, {
      field: 'length',
    });
  }
  const blocks = Array.isArray(h.optionalBlocks) ? h.optionalBlocks : [];
  if (blocks.length > 99) {
    throw new CryptoError('POSKEY_ERR_TR31_OPTIONAL_BLOCK', `${blocks.length} optional blocks, at most 99`, {
      field: 'optionalBlocks',
    });
  }
  const fixed =
    h.version +
    String(blockLength).padStart(4, '0') +
    h.usage +
    h.algorithm +
    h.modeOfUse +
    h.keyVersion +
    h.exportability +
    String(blocks.length).padStart(2, '0') +
    h.keyContext +
    '0';
  return fixed + blocks.map(encodeOptionalBlock).join('');
}

/** Result of reading a header off the front of a key block. */
export interface ParsedHeader {
  header: Tr31Header;
  /** The length declared at positions 1–4. */
  declaredLength: number;
  /** Characters taken by the fixed header and the optional blocks. */
  headerLength: number;
}

function readOptionalBlock(
  text: string,
  pos: number,
  index: number,
): { block: Tr31OptionalBlock; end: number } {
  const id = text.slice(pos, pos + 2);
  if (!ALNUM2.test(id))
    throw optionalError(index, `optional block ID '${id}' is not two alphanumeric characters`);
  const len = text.slice(pos + 2, pos + 4);
  if (len.length !== 2 || !HEX.test(len))
    throw optionalError(index, `block ${id} length '${len}' is not 2 hex digits`);
  let total = Number.parseInt(len, 16);
  let overhead = 4;
  if (total === 0) {
    // Extended form: "00", length of the length in bytes (2 hex), then the length itself.
    const lol = text.slice(pos + 4, pos + 6);
    if (lol.length !== 2 || !HEX.test(lol)) {
      throw optionalError(index, `block ${id} length-of-length '${lol}' is not 2 hex digits`);
    }
    const digits = Number.parseInt(lol, 16) * 2;
    if (digits === 0 || digits > 4)
      throw optionalError(index, `block ${id} length-of-length ${lol} must be 01 or 02`);
    const ext = text.slice(pos + 6, pos + 6 + digits);
    if (ext.length !== digits || !HEX.test(ext)) {
      throw optionalError(index, `block ${id} extended length '${ext}' is not ${digits} hex digits`);
    }
    total = Number.parseInt(ext, 16);
    overhead = 6 + digits;
  }
  if (total < overhead)
    throw optionalError(index, `block ${id} length ${total} does not cover its ID and length`);
  if (pos + total > text.length) throw optionalError(index, `block ${id} runs past the end of the header`);
  const data = text.slice(pos + overhead, pos + total);
  if (!PRINTABLE.test(data)) throw optionalError(index, `block ${id} data is not printable ASCII`);
  return { block: { id, data }, end: pos + total };
}

/**
 * Reads the header at the front of `text` (a whole key block or just a header), validating each
 * position. Text after the optional blocks is ignored.
 * @throws POSKEY_ERR_TR31_HEADER (field = position name), POSKEY_ERR_TR31_OPTIONAL_BLOCK, POSKEY_ERR_TR31_VERSION
 */
export function readHeader(text: string): ParsedHeader {
  if (typeof text !== 'string' || text.length < TR31_HEADER_LENGTH) {
    throw headerError('header', `a key block header needs ${TR31_HEADER_LENGTH} characters`);
  }
  const length = text.slice(1, 5);
  const count = text.slice(12, 14);
  const header: Tr31Header = {
    version: text[0] as Tr31Version,
    usage: text.slice(5, 7),
    algorithm: text[7]!,
    modeOfUse: text[8]!,
    keyVersion: text.slice(9, 11),
    exportability: text[11]!,
    keyContext: text[14]!,
    optionalBlocks: [],
  };
  checkVersion(header.version);
  if (!/^\d{4}$/.test(length)) throw headerError('length', `key block length '${length}' is not 4 digits`);
  checkFields(header);
  if (!/^\d{2}$/.test(count))
    throw headerError('optionalBlockCount', `optional block count '${count}' is not 2 digits`);
  if (text[15] !== '0') throw headerError('reserved', `reserved position 15 is '${text[15]}', expected '0'`);
  let pos = TR31_HEADER_LENGTH;
  for (let i = 0; i < Number(count); i++) {
    const { block, end } = readOptionalBlock(text, pos, i);
    header.optionalBlocks.push(block);
    pos = end;
  }
  return { header, declaredLength: Number(length), headerLength: pos };
}

/** Parses a header (or the header of a key block). Errors as for `readHeader`. */
export function parseHeader(text: string): Tr31Header {
  return readHeader(text).header;
}

/**
 * The optional blocks to write for `version`: any PB given is dropped and a fresh PB (filled with
 * '0') is appended when needed so the header is a whole number of cipher blocks.
 */
export function padOptionalBlocks(
  blocks: readonly Tr31OptionalBlock[],
  version: Tr31Version,
): Tr31OptionalBlock[] {
  const bs = TR31_BLOCK_SIZE[version];
  const kept = blocks.filter((b) => b.id !== 'PB');
  const used = kept.reduce((n, b, i) => n + encodeOptionalBlock(b, i).length, 0);
  const gap = (bs - (used % bs)) % bs;
  if (gap === 0) return kept;
  // A PB block is at least 4 characters (ID + length), so a gap under 4 takes one more cipher block.
  const size = gap >= 4 ? gap : gap + bs;
  return [...kept, { id: 'PB', data: '0'.repeat(size - 4) }];
}

// ---------------------------------------------------------------------------------------------
// Enforcement

/** Which requested operations each block mode of use permits. */
const MODE_PERMITS: Readonly<Record<string, string>> = {
  B: 'BDE',
  C: 'CGV',
  D: 'D',
  E: 'E',
  G: 'G',
  S: 'S',
  V: 'V',
  X: 'X',
  Y: 'Y',
};

function list(x: string | string[]): string[] {
  return Array.isArray(x) ? x : [x];
}

/**
 * Refuses a key whose block does not allow what the caller is about to do.
 * - `usage`: the block's key usage must be one of these (e.g. ['K0', 'K1'] for a KEK).
 * - `algorithm`: the block's algorithm letter must equal this ('T', 'A', …).
 * - `modeOfUse`: every listed operation must be permitted by the block's mode ('E' is permitted by
 *   E, B and N; 'G' by G, C and N; …).
 * - `exportable: true`: the block must say E (exportable under a trusted key).
 * @throws POSKEY_ERR_KEY_USAGE, POSKEY_ERR_KEY_ALGORITHM, POSKEY_ERR_KEY_MODE, POSKEY_ERR_KEY_NOT_EXPORTABLE
 */
export function assertKeyUsage(
  header: Tr31Header,
  want: {
    usage?: string | string[];
    algorithm?: string;
    modeOfUse?: string | string[];
    exportable?: boolean;
  },
): void {
  if (want.usage !== undefined && !list(want.usage).includes(header.usage)) {
    throw new CryptoError(
      'POSKEY_ERR_KEY_USAGE',
      `key block usage is ${header.usage} (${KEY_USAGES[header.usage] ?? 'proprietary'}), expected ${list(want.usage).join(' or ')}`,
      { field: 'usage' },
    );
  }
  if (want.algorithm !== undefined && header.algorithm !== want.algorithm) {
    throw new CryptoError(
      'POSKEY_ERR_KEY_ALGORITHM',
      `key block algorithm is ${header.algorithm} (${ALGORITHMS[header.algorithm] ?? '?'}), expected ${want.algorithm}`,
      { field: 'algorithm' },
    );
  }
  if (want.modeOfUse !== undefined) {
    const permits = header.modeOfUse === 'N' ? undefined : (MODE_PERMITS[header.modeOfUse] ?? '');
    for (const op of list(want.modeOfUse)) {
      if (permits !== undefined && !permits.includes(op)) {
        throw new CryptoError(
          'POSKEY_ERR_KEY_MODE',
          `key block mode of use is ${header.modeOfUse} (${MODES_OF_USE[header.modeOfUse] ?? '?'}), which does not permit ${op}`,
          { field: 'modeOfUse' },
        );
      }
    }
  }
  if (want.exportable === true && header.exportability !== 'E') {
    throw new CryptoError(
      'POSKEY_ERR_KEY_NOT_EXPORTABLE',
      `key block exportability is ${header.exportability} (${EXPORTABILITY[header.exportability] ?? '?'}), export needs E`,
      { field: 'exportability' },
    );
  }
}

const CIPHER_KEY_LENGTHS: Readonly<Record<string, readonly number[]>> = {
  T: [8, 16, 24],
  D: [8],
  A: [16, 24, 32],
  '4': [16],
};

/**
 * The poskey cipher for a block cipher key block: T → tdes (a single-length T key is des), D → des,
 * A → aes, '4' → sm4 (poskey's proprietary SM4 code).
 * @throws POSKEY_ERR_KEY_ALGORITHM for non block cipher algorithms, POSKEY_ERR_TR31_KEY_LENGTH for a bad length
 */
export function cipherAlgorithmOf(header: Pick<Tr31Header, 'algorithm'>, keyLength: number): CipherAlgorithm {
  const lengths = CIPHER_KEY_LENGTHS[header.algorithm];
  if (lengths === undefined) {
    throw new CryptoError(
      'POSKEY_ERR_KEY_ALGORITHM',
      `algorithm ${header.algorithm} (${ALGORITHMS[header.algorithm] ?? '?'}) is not a block cipher poskey can use`,
      { field: 'algorithm' },
    );
  }
  if (!lengths.includes(keyLength)) {
    throw new CryptoError(
      'POSKEY_ERR_TR31_KEY_LENGTH',
      `a ${ALGORITHMS[header.algorithm]} key is ${lengths.join(', ')} bytes, got ${keyLength}`,
      { field: 'keyLength' },
    );
  }
  switch (header.algorithm) {
    case 'T':
      return keyLength === 8 ? 'des' : 'tdes';
    case 'D':
      return 'des';
    case 'A':
      return 'aes';
    default:
      return 'sm4';
  }
}

/** Key lengths a key block may carry for each cipher algorithm letter (others are not checked). */
export function allowedKeyLengths(algorithm: string): readonly number[] | undefined {
  return CIPHER_KEY_LENGTHS[algorithm];
}
