/**
 * HsmApi requests ↔ payShield host commands, for the TCP client. Pure functions: each `encode*`
 * turns an API request into a command body (latin1 text after the command code), each `*_RESPONSE`
 * turns the fields after the error code back into the API's result shape.
 *
 * The layouts are the ones src/hsm/payshield/commands/*.ts parse (payShield with a key-block LMK,
 * plus the poskey vendor codes documented there). Keys travel as `S` + LMK key block; key type
 * code `FFF` + `#` key block attributes say what a new key is.
 *
 * What the wire cannot carry is refused before sending, with POSKEY_ERR_HSM_UNSUPPORTED naming
 * the operation and the option (see UNSUPPORTED in tcp.ts); inputs the HSM would refuse anyway
 * are refused here with the HSM's own code when the layout has no room for them.
 */

import { toHex } from '../../crypto/bytes.js';
import type { CheckValue, KcvMethod } from '../../crypto/kcv.js';
import type { MacAlgorithm } from '../../crypto/mac.js';
import type { PinBlockFormat } from '../../crypto/pinblock.js';
import { parseHeader } from '../../crypto/tr31-header.js';
import type {
  DataRequest,
  Diagnostics,
  ExportFormat,
  KeyAlgorithm,
  KeyInfo,
  KeyType,
  MacRequest,
  SignInKey,
  SignInKeys,
  SignInKeysRequest,
  TranslatePinRequest,
} from '../api.js';
import { HsmError } from '../errors.js';
import { KEY_TYPES, keyTypeOfHeader, usageFor } from '../key-types.js';
import { DEV_BLOCK, DEV_MARK, LMK_ID_BLOCK } from '../keyblock.js';
import {
  ATTRIBUTE_ALGORITHMS,
  blockSizeOf,
  formatWrapped,
  KEY_BLOCK_TYPE,
  KEY_BYTES,
  LEGACY_BY_BYTES,
  NUMERIC_USAGES,
} from '../payshield/commands/keys.js';
import { FORMAT_OF_CODE as PIN_FORMAT_CODE } from '../payshield/commands/pin.js';
import { clientError } from './errors.js';
import { defineResponse } from './transport.js';

// ---------------------------------------------------------------------------------------------
// Errors raised while encoding

/** The operation (or this option of it) has no payShield command. */
export function unsupported(op: string, what: string): HsmError {
  return clientError('POSKEY_ERR_HSM_UNSUPPORTED', `${op}: ${what} has no payShield host command`, {
    field: op,
  });
}

/** An input the HSM would refuse with this code; raised here when the layout cannot carry it. */
function hsmInputError(code: string, field: string, reason: string, payShield = '15'): HsmError {
  return new HsmError(code, reason, { field, payShield });
}

function typeError(field: string, reason: string): HsmError {
  return hsmInputError('POSKEY_ERR_TYPE', field, reason);
}

function protocolError(command: string, reason: string): HsmError {
  return clientError('POSKEY_ERR_HSM_PROTOCOL', `${command} response: ${reason}`, { field: command });
}

/** `S` + key block, after checking it is a string (the HSM's own field name on failure). */
export function lmkKey(block: unknown, field: string): string {
  if (typeof block !== 'string' || block.length < 16) throw typeError(field, 'must be an LMK key block');
  return `S${block}`;
}

/** Cipher block size of a key block's algorithm (header position 7): 16 for AES and SM4, else 8. */
export const blockSizeOfBlock: (block: string) => 8 | 16 = blockSizeOf;

/** The KCV method the HSM uses by default for a key block: CMAC for AES, E_K(0) otherwise. */
export function defaultKcvMethodOfBlock(block: string): KcvMethod {
  return block[7] === 'A' ? 'cmac' : 'legacy';
}

const DEFAULT_KCV_BYTES: Readonly<Record<KcvMethod, number>> = { legacy: 3, cmac: 5 };

// ---------------------------------------------------------------------------------------------
// Response field reader

/** Reads response fields left to right; a short or malformed field is POSKEY_ERR_HSM_PROTOCOL. */
class Reader {
  pos = 0;

  constructor(
    readonly text: string,
    readonly command: string,
  ) {}

  take(n: number, field: string): string {
    if (this.pos + n > this.text.length) throw protocolError(this.command, `${field} is cut short`);
    const value = this.text.slice(this.pos, this.pos + n);
    this.pos += n;
    return value;
  }

  hex(n: number, field: string): string {
    const value = this.take(n, field);
    if (!/^[0-9A-Fa-f]*$/.test(value)) throw protocolError(this.command, `${field} is not hex`);
    return value.toUpperCase();
  }

  /** A key block: its 4-digit length sits at positions 1–4. */
  block(field: string): string {
    const length = Number(this.text.slice(this.pos + 1, this.pos + 5));
    if (!Number.isInteger(length) || length < 16) {
      throw protocolError(this.command, `${field} has no readable key block length`);
    }
    return this.take(length, field);
  }

  /** `S` + LMK key block. */
  lmkBlock(field: string): string {
    if (this.take(1, field) !== 'S') throw protocolError(this.command, `${field} is not an S key block`);
    return this.block(field);
  }

  /** A key under a KEK: R/S + block, X/U + 32 H, Y/T + 48 H, or 16 H. Returns the value without the letter. */
  wrapped(field: string): string {
    const first = this.text[this.pos];
    if (first === 'R' || first === 'S') {
      this.pos += 1;
      return this.block(field);
    }
    if (first === 'X' || first === 'U') {
      this.pos += 1;
      return this.hex(32, field);
    }
    if (first === 'Y' || first === 'T') {
      this.pos += 1;
      return this.hex(48, field);
    }
    return this.hex(16, field);
  }
}

// ---------------------------------------------------------------------------------------------
// Key vocabulary: API key types and algorithms → key type code and `#` attributes

/** `#` algorithm code of each algorithm: the inverse of ATTRIBUTE_ALGORITHMS, first code wins (DS, not T1). */
const ALGORITHM_ATTRIBUTE: Readonly<Partial<Record<KeyAlgorithm, string>>> = Object.fromEntries(
  Object.entries(ATTRIBUTE_ALGORITHMS)
    .reverse()
    .map(([code, algorithm]) => [algorithm, code]),
);

/**
 * Key type code and `#` usage that make the HSM create exactly this key type. payShield's numeric
 * usages name one type each; MAC keys go by their own type code. KEK has neither: a generic K0
 * block becomes a ZMK on the zone side, so KEK cannot be asked for over the wire.
 */
const WIRE_KEY_TYPES: Readonly<Partial<Record<KeyType, { code: string; usage?: string }>>> = {
  ...Object.fromEntries(
    Object.entries(NUMERIC_USAGES).map(([usage, keyType]) => [keyType, { code: KEY_BLOCK_TYPE, usage }]),
  ),
  BDK: { code: KEY_BLOCK_TYPE, usage: 'B0' },
  TAK: { code: '003' },
  ZAK: { code: '008' },
};

/** Key type code + `#` attributes for a key of this type and algorithm. */
function keyTypeAndAttributes(
  op: string,
  keyType: KeyType,
  algorithm: KeyAlgorithm,
  exportability: string,
): { code: string; attributes: string } {
  const wire = Object.hasOwn(WIRE_KEY_TYPES, keyType) ? WIRE_KEY_TYPES[keyType] : undefined;
  const spec = Object.hasOwn(KEY_TYPES, keyType) ? KEY_TYPES[keyType] : undefined;
  if (wire === undefined || spec === undefined) {
    if (keyType === 'KEK') throw unsupported(op, 'key type KEK (use ZMK or TMK)');
    throw hsmInputError('POSKEY_ERR_KEY_TYPE', 'keyType', `unknown key type '${String(keyType)}'`, '04');
  }
  const alg = Object.hasOwn(ALGORITHM_ATTRIBUTE, algorithm) ? ALGORITHM_ATTRIBUTE[algorithm] : undefined;
  if (alg === undefined) {
    throw hsmInputError(
      'POSKEY_ERR_KEY_ALGORITHM',
      'algorithm',
      `unknown key algorithm '${String(algorithm)}'`,
      'A7',
    );
  }
  if (!spec.algorithms.includes(algorithm)) {
    throw hsmInputError(
      'POSKEY_ERR_KEY_ALGORITHM',
      'algorithm',
      `a ${keyType} cannot be ${algorithm} (allowed: ${spec.algorithms.join(', ')})`,
      'A7',
    );
  }
  if (exportability !== 'E' && exportability !== 'N' && exportability !== 'S') {
    throw hsmInputError(
      'POSKEY_ERR_EXPORTABILITY',
      'exportability',
      `exportability '${exportability}' is not E, N or S`,
      'AA',
    );
  }
  const usage = wire.usage ?? usageFor(keyType, algorithm);
  return { code: wire.code, attributes: `#${usage}${alg}${spec.modeOfUse}00${exportability}00` };
}

function lmkIdField(lmkId: string | undefined): string {
  if (lmkId === undefined) return '';
  if (typeof lmkId !== 'string' || !/^\d{2}$/.test(lmkId)) {
    throw hsmInputError('POSKEY_ERR_LMK_ID', 'lmkId', 'LMK id must be two decimal digits (00-99)', '13');
  }
  return `%${lmkId}`;
}

/** Legacy scheme letter for a cryptogram of this many bytes ('' = 16 H without a letter). */
function legacyScheme(bytes: number): string | undefined {
  const scheme = LEGACY_BY_BYTES[bytes];
  return scheme === undefined ? undefined : formatWrapped(scheme, '');
}

/** What the LMK block's own header says: the key type, LMK id and development marker. */
export function infoFromBlock(keyBlock: string, algorithm: KeyAlgorithm, kcv: CheckValue): KeyInfo {
  const h = parseHeader(keyBlock);
  const find = (id: string) => h.optionalBlocks.find((b) => b.id === id)?.data;
  return {
    keyType: keyTypeOfHeader(h),
    algorithm,
    usage: h.usage,
    modeOfUse: h.modeOfUse,
    exportability: h.exportability as KeyInfo['exportability'],
    lmkId: find(LMK_ID_BLOCK) ?? '',
    dev: find(DEV_BLOCK) === DEV_MARK,
    kcv,
  };
}

/** A 6-hex payShield KCV as the API's default CheckValue, when it is one (legacy, 3 bytes). */
export function kcvFromWire(kcv6: string, algorithm: KeyAlgorithm): CheckValue | undefined {
  const method: KcvMethod = algorithm.startsWith('aes') ? 'cmac' : 'legacy';
  if (method !== 'legacy') return undefined;
  return { value: kcv6.toUpperCase(), method, length: 3 };
}

// ---------------------------------------------------------------------------------------------
// A0: generate a key

export interface A0Plan {
  body: string;
  /** Scheme the key under the KEK comes back in, when exported. */
  exported: boolean;
}

export function encodeA0(req: {
  keyType: KeyType;
  algorithm: KeyAlgorithm;
  exportability?: string | undefined;
  kcvMethod?: KcvMethod | undefined;
  lmkId?: string | undefined;
  exportUnder?: { kek: string; format: ExportFormat } | undefined;
}): A0Plan {
  if (req === null || typeof req !== 'object') throw typeError('request', 'must be an object');
  const { code, attributes } = keyTypeAndAttributes(
    'generateKey',
    req.keyType,
    req.algorithm,
    req.exportability ?? 'E',
  );
  if (
    req.kcvMethod !== undefined &&
    req.kcvMethod !== (req.algorithm.startsWith('aes') ? 'cmac' : 'legacy')
  ) {
    throw unsupported('generateKey', `kcvMethod '${req.kcvMethod}' for ${req.algorithm}`);
  }
  const under = req.exportUnder;
  let mode1 = '';
  if (under !== undefined) {
    if (under === null || typeof under !== 'object') throw typeError('exportUnder', 'must be an object');
    let scheme: string | undefined;
    if (under.format === 'tr31') scheme = 'R';
    else if (under.format === 'legacy') scheme = legacyScheme(KEY_BYTES[req.algorithm]);
    else throw typeError('exportUnder.format', "must be 'tr31' or 'legacy'");
    if (scheme === undefined)
      throw unsupported('generateKey', `a legacy cryptogram of a ${req.algorithm} key`);
    mode1 = `${lmkKey(under.kek, 'exportUnder.kek')}${scheme === '' ? 'Z' : scheme}`;
  }
  const body = `${under === undefined ? '0' : '1'}${code}S${mode1}${lmkIdField(req.lmkId)}${attributes}`;
  return { body, exported: under !== undefined };
}

export interface A0Result {
  keyBlock: string;
  exported: string | undefined;
  kcv6: string;
}

export const A0_RESPONSE = defineResponse('A0', (fields, _code, exported: boolean): A0Result => {
  const r = new Reader(fields, 'A0');
  const keyBlock = r.lmkBlock('keyBlock');
  const underKek = exported ? r.wrapped('exported') : undefined;
  return { keyBlock, exported: underKek, kcv6: r.hex(6, 'kcv') };
});

// ---------------------------------------------------------------------------------------------
// A6 / A4: import a key

export function encodeA6(req: {
  keyType: KeyType;
  algorithm: KeyAlgorithm;
  exportability?: string | undefined;
  lmkId?: string | undefined;
  kek: string;
  key: { kind: 'tr31'; block: string } | { kind: 'legacy'; cryptogram: string };
}): string {
  let key: string;
  let exportability = req.exportability;
  if (req.key.kind === 'tr31') {
    const block = req.key.block;
    if (typeof block !== 'string' || block.length < 16)
      throw typeError('source.block', 'must be a TR-31 key block');
    // The HSM keeps the received block's exportability unless the request tightens it.
    exportability ??= block[11];
    key = `R${block}`;
  } else {
    const hex = req.key.cryptogram;
    if (typeof hex !== 'string' || !/^[0-9A-Fa-f]*$/.test(hex) || hex.length % 2 !== 0 || hex.length === 0) {
      throw hsmInputError('POSKEY_ERR_HEX', 'source.cryptogram', 'must contain only hexadecimal characters');
    }
    const scheme = legacyScheme(hex.length / 2);
    if (scheme === undefined)
      throw unsupported('importKey', `a legacy cryptogram of ${hex.length / 2} bytes`);
    exportability ??= 'E';
    key = scheme + hex.toUpperCase();
  }
  const { code, attributes } = keyTypeAndAttributes(
    'importKey',
    req.keyType,
    req.algorithm,
    exportability ?? 'E',
  );
  return `${code}${lmkKey(req.kek, 'source.kek')}${key}S${lmkIdField(req.lmkId)}${attributes}`;
}

export function encodeA4(req: {
  keyType: KeyType;
  algorithm: KeyAlgorithm;
  exportability?: string | undefined;
  lmkId?: string | undefined;
  components: string[];
}): string {
  const { code, attributes } = keyTypeAndAttributes(
    'importKey',
    req.keyType,
    req.algorithm,
    req.exportability ?? 'E',
  );
  const parts = req.components;
  if (!Array.isArray(parts)) throw typeError('source.components', 'must be an array of hex components');
  if (parts.length < 2 || parts.length > 9) {
    throw hsmInputError(
      'POSKEY_ERR_COMPONENT_COUNT',
      'source.components',
      'a key is formed from 2 to 9 components',
      '03',
    );
  }
  const wire = parts.map((c, i) => {
    if (typeof c !== 'string' || !/^[0-9A-Fa-f]*$/.test(c) || c.length % 2 !== 0 || c.length === 0) {
      throw hsmInputError(
        'POSKEY_ERR_HEX',
        `source.components[${i}]`,
        'must contain only hexadecimal characters',
      );
    }
    const scheme = legacyScheme(c.length / 2);
    if (scheme === undefined) throw unsupported('importKey', `a clear component of ${c.length / 2} bytes`);
    return scheme + c.toUpperCase();
  });
  return `${parts.length}${code}S${wire.join('')}${lmkIdField(req.lmkId)}${attributes}`;
}

export interface ImportResult {
  keyBlock: string;
  kcv6: string;
}

function decodeImport(command: string) {
  return (fields: string): ImportResult => {
    const r = new Reader(fields, command);
    return { keyBlock: r.lmkBlock('keyBlock'), kcv6: r.hex(6, 'kcv') };
  };
}

export const A6_RESPONSE = defineResponse('A6', decodeImport('A6'));
export const A4_RESPONSE = defineResponse('A4', decodeImport('A4'));

// ---------------------------------------------------------------------------------------------
// A8: export a key

/** Schemes to try for a legacy export, by the key block's algorithm letter (T may be 2 or 3 keys). */
export function legacyExportSchemes(keyBlock: string): string[] {
  switch (keyBlock[7]) {
    case 'D':
      return ['Z'];
    case 'T':
      return ['X', 'Y'];
    default:
      return ['X'];
  }
}

export function encodeA8(keyBlock: string, kek: string, scheme: string): string {
  return `FFF${lmkKey(kek, 'kek')}${lmkKey(keyBlock, 'keyBlock')}${scheme}`;
}

export const A8_RESPONSE = defineResponse('A8', (fields): ImportResult => {
  const r = new Reader(fields, 'A8');
  return { keyBlock: r.wrapped('key'), kcv6: r.hex(6, 'kcv') };
});

// ---------------------------------------------------------------------------------------------
// BU: key check value

/**
 * BU for a key: type 1 gives 3 bytes, type 0 gives 8; the API's shorter lengths are the leftmost
 * bytes of either (a KCV is a prefix of the check block).
 */
export function encodeBU(keyBlock: string, bytes: number): string {
  return `FFF${lmkKey(keyBlock, 'keyBlock')};FFF;00${bytes <= 3 ? '1' : '0'}`;
}

export const BU_RESPONSE = defineResponse('BU', (fields): string => {
  if (!/^([0-9A-Fa-f]{6}|[0-9A-Fa-f]{16})$/.test(fields)) throw protocolError('BU', 'KCV is not 6 or 16 H');
  return fields.toUpperCase();
});

/** Method and length the request resolves to, checked as the HSM would. */
export function resolveKcvRequest(
  keyBlock: string,
  method: KcvMethod | undefined,
  length: number | undefined,
): { method: KcvMethod; length: number } {
  if (typeof keyBlock !== 'string') throw typeError('keyBlock', 'must be an LMK key block');
  const own = defaultKcvMethodOfBlock(keyBlock);
  if (method !== undefined && method !== 'legacy' && method !== 'cmac') {
    throw hsmInputError('POSKEY_ERR_KCV_METHOD', 'method', `unknown KCV method '${String(method)}'`);
  }
  const m = method ?? own;
  if (m !== own) throw unsupported('checkValue', `method '${m}' for this key (BU gives '${own}')`);
  const n = length ?? DEFAULT_KCV_BYTES[m];
  const blockSize = blockSizeOfBlock(keyBlock);
  if (!Number.isInteger(n) || n < 1 || n > blockSize) {
    throw hsmInputError('POSKEY_ERR_LENGTH', 'length', `KCV length ${n} outside 1..${blockSize}`);
  }
  if (n > 8) throw unsupported('checkValue', `a ${n}-byte KCV (BU gives at most 8)`);
  return { method: m, length: n };
}

// ---------------------------------------------------------------------------------------------
// CA / CC / G0: PIN translation

function pinFormatCode(format: PinBlockFormat, field: string): string {
  const code = PIN_FORMAT_CODE.get(format);
  if (code !== undefined) return code;
  if (format === 2) {
    // The HSM refuses it too: format 2 is for ICC offline PIN and is never translated.
    throw hsmInputError('POSKEY_ERR_PIN_BLOCK_TRANSLATION', field, 'format 2 is never translated', '23');
  }
  throw hsmInputError(
    'POSKEY_ERR_PIN_BLOCK_FORMAT',
    field,
    `unknown PIN block format '${String(format)}'`,
    '23',
  );
}

function panError(reason: string): HsmError {
  return hsmInputError('POSKEY_ERR_PAN', 'pan', reason, '22');
}

/**
 * The account number field: 12 N (the 12 rightmost digits before the check digit, as formats 0
 * and 3 use them), or 2 N length + the whole PAN when a format is 4. Checked as the HSM checks a
 * PAN for the formats that use one.
 */
function accountField(pan: string, from: PinBlockFormat, to: PinBlockFormat): string {
  if (from === 4 || to === 4) {
    if (typeof pan !== 'string' || !/^\d{1,19}$/.test(pan))
      throw panError('PAN must be 1 to 19 decimal digits');
    return String(pan.length).padStart(2, '0') + pan;
  }
  if (pan === undefined || pan === null || pan === '') {
    if (from === 1 && to === 1) return '000000000000';
    throw panError('a PAN is required for this PIN block format');
  }
  if (typeof pan !== 'string' || !/^\d{13,19}$/.test(pan))
    throw panError('PAN must be 13 to 19 decimal digits');
  return pan.slice(-13, -1);
}

/** Source key type from an LMK block's '92' optional block, cached: the same keys come back all day. */
const SOURCE_TYPES = new Map<string, KeyType | undefined>();
const SOURCE_TYPES_MAX = 4096;

function sourceKeyType(block: string): KeyType | undefined {
  let type = SOURCE_TYPES.get(block);
  if (type === undefined && !SOURCE_TYPES.has(block)) {
    try {
      type = keyTypeOfHeader(parseHeader(block));
    } catch {
      type = undefined;
    }
    if (SOURCE_TYPES.size >= SOURCE_TYPES_MAX) SOURCE_TYPES.clear();
    SOURCE_TYPES.set(block, type);
  }
  return type;
}

/** Most digits a PIN may have; the API does not limit translations further. */
const MAX_PIN_LENGTH = '12';

/** The TDES KSN descriptor that sizes a KSN of `hexLength` digits (lengths sum + 5 counter digits). */
function ksnDescriptor(hexLength: number): string {
  let rest = Math.max(0, hexLength - 5);
  const digits: number[] = [];
  for (let i = 0; i < 3; i++) {
    const d = Math.min(15, rest);
    digits.push(d);
    rest -= d;
  }
  return digits.map((d) => d.toString(16).toUpperCase()).join('');
}

export function encodeTranslatePin(req: TranslatePinRequest): { command: 'CA' | 'CC' | 'G0'; body: string } {
  if (req === null || typeof req !== 'object') throw typeError('request', 'must be an object');
  const destination = lmkKey(req.destination, 'destination');
  if (typeof req.pinBlock !== 'string' || !/^[0-9A-Fa-f]+$/.test(req.pinBlock)) {
    throw hsmInputError('POSKEY_ERR_HEX', 'pinBlock', 'must contain only hexadecimal characters');
  }
  const formats = pinFormatCode(req.fromFormat, 'fromFormat') + pinFormatCode(req.toFormat, 'toFormat');
  const tail = req.pinBlock + formats + accountField(req.pan, req.fromFormat, req.toFormat);
  const source = req.source;
  if (source?.kind === 'key') {
    const command = sourceKeyType(source.keyBlock) === 'ZPK' ? 'CC' : 'CA';
    return {
      command,
      body: lmkKey(source.keyBlock, 'source.keyBlock') + destination + MAX_PIN_LENGTH + tail,
    };
  }
  if (source?.kind === 'dukpt') {
    if (source.aes !== undefined && source.aes?.keyType !== 'aes128') {
      throw unsupported(
        'translatePin',
        `AES DUKPT working key type '${String(source.aes?.keyType)}' (G0 derives aes128)`,
      );
    }
    const ksn = source.ksn;
    if (typeof ksn !== 'string' || !/^[0-9A-Fa-f]+$/.test(ksn)) {
      throw hsmInputError('POSKEY_ERR_HEX', 'source.ksn', 'must contain only hexadecimal characters');
    }
    const bdk = lmkKey(source.bdk, 'source.bdk');
    return { command: 'G0', body: bdk + destination + ksnDescriptor(ksn.length) + ksn + tail };
  }
  throw typeError('source.kind', "must be 'key' or 'dukpt'");
}

/** PIN length (2 N), the PIN block, its format code (2 N): the block is everything between. */
function decodePin(command: string) {
  return (fields: string): string => {
    const block = fields.slice(2, -2);
    if (fields.length < 20 || !/^[0-9A-F]+$/i.test(block)) throw protocolError(command, 'no PIN block');
    return block.toUpperCase();
  };
}

export const CA_RESPONSE = defineResponse('CA', decodePin('CA'));
export const CC_RESPONSE = defineResponse('CC', decodePin('CC'));
export const G0_RESPONSE = defineResponse('G0', decodePin('G0'));

// ---------------------------------------------------------------------------------------------
// M6 / M8: MAC

const MAC_ALGORITHM_CODE: Readonly<Record<MacAlgorithm, string>> = {
  cbc: '1',
  retail: '3',
  cmac: 'C',
  'unionpay-ecb': 'U',
};

/** How the MAC travels for a request: size flag, and whether it is UnionPay's 8 ASCII characters. */
export interface MacShape {
  sizeFlag: '0' | '1';
  /** MAC hex digits on the wire. */
  wireHex: number;
  /** UnionPay 'hex' output: the wire MAC is 8 characters, the API MAC the hex of them. */
  ascii: boolean;
}

function macShape(op: string, req: MacRequest): MacShape {
  if (req.algorithm === 'unionpay-ecb') {
    if (req.length !== undefined && req.length !== 8) {
      throw hsmInputError('POSKEY_ERR_LENGTH', 'length', 'the UnionPay MAC is always 8 bytes');
    }
    const output = req.output ?? 'hex';
    if (output !== 'hex' && output !== 'binary') {
      throw hsmInputError(
        'POSKEY_ERR_MAC_OUTPUT',
        'output',
        `unknown UnionPay MAC output '${String(output)}'`,
      );
    }
    return output === 'hex'
      ? { sizeFlag: '0', wireHex: 8, ascii: true }
      : { sizeFlag: '1', wireHex: 16, ascii: false };
  }
  const keyBlock = req.key?.kind === 'key' ? req.key.keyBlock : '';
  const length = req.length ?? blockSizeOfBlock(keyBlock);
  if (length === 4) return { sizeFlag: '0', wireHex: 8, ascii: false };
  if (length === 8) return { sizeFlag: '1', wireHex: 16, ascii: false };
  if (!Number.isSafeInteger(length) || length < 4) {
    throw hsmInputError('POSKEY_ERR_LENGTH', 'length', 'MAC length must be at least 4 bytes');
  }
  throw unsupported(op, `a ${length}-byte MAC (M6/M8 carry 4 or 8 bytes)`);
}

/** Mode, input format, size, algorithm, padding, key type, key, message length, message. */
function macBody(op: string, req: MacRequest, shape: MacShape): string {
  if (req === null || typeof req !== 'object') throw typeError('request', 'must be an object');
  const alg = Object.hasOwn(MAC_ALGORITHM_CODE, req.algorithm)
    ? MAC_ALGORITHM_CODE[req.algorithm]
    : undefined;
  if (alg === undefined) {
    throw hsmInputError(
      'POSKEY_ERR_MAC_ALGORITHM',
      'algorithm',
      `unknown MAC algorithm '${String(req.algorithm)}'`,
    );
  }
  if (req.key?.kind === 'dukpt') throw unsupported(op, 'a DUKPT MAC key');
  if (req.key?.kind !== 'key') throw typeError('key.kind', "must be 'key' or 'dukpt'");
  const padding = req.padding ?? 1;
  if (padding !== 1 && padding !== 2 && padding !== 3) {
    throw hsmInputError(
      'POSKEY_ERR_MAC_PADDING',
      'padding',
      `unknown ISO 9797-1 padding method ${String(padding)}`,
    );
  }
  const data = req.data instanceof Uint8Array ? toHex(req.data) : req.data;
  if (typeof data !== 'string' || !/^[0-9A-Fa-f]*$/.test(data) || data.length % 2 !== 0) {
    throw hsmInputError('POSKEY_ERR_HEX', 'data', 'must contain only hexadecimal characters');
  }
  // Hex input while its length fits the 4 H field; binary (half as long) beyond.
  const message =
    data.length <= 0xffff
      ? `1${lengthField(data.length)}${data}`
      : `0${lengthField(data.length / 2)}${Buffer.from(data, 'hex').toString('latin1')}`;
  const head = `0${message[0]}${shape.sizeFlag}${alg}${padding}FFF${lmkKey(req.key.keyBlock, 'key.keyBlock')}`;
  return head + message.slice(1);
}

function lengthField(n: number): string {
  if (n > 0xffff || n < 1)
    throw hsmInputError('POSKEY_ERR_LENGTH', 'data', `message of ${n} bytes does not fit 1..65535`);
  return n.toString(16).toUpperCase().padStart(4, '0');
}

export function encodeM6(req: MacRequest): { body: string; shape: MacShape } {
  const shape = macShape('generateMac', req);
  return { body: macBody('generateMac', req, shape), shape };
}

export const M6_RESPONSE = defineResponse('M6', (fields, _code, shape: MacShape): string => {
  if (fields.length !== shape.wireHex)
    throw protocolError('M6', `MAC is ${fields.length} characters, not ${shape.wireHex}`);
  const mac = shape.ascii ? Buffer.from(fields, 'latin1').toString('hex') : fields;
  if (!/^[0-9A-Fa-f]+$/.test(mac)) throw protocolError('M6', 'MAC is not hex');
  return mac.toUpperCase();
});

/**
 * M8. The HSM compares a MAC of the length the request names, never of the length received; a
 * MAC of another length is sent as zeros of the right length (so the key is still checked) and
 * reported as not verifying.
 */
export function encodeM8(req: MacRequest & { mac: string }): { body: string; wrongLength: boolean } {
  const shape = macShape('verifyMac', req);
  const mac = req.mac;
  if (typeof mac !== 'string' || !/^[0-9A-Fa-f]*$/.test(mac) || mac.length % 2 !== 0) {
    throw hsmInputError('POSKEY_ERR_HEX', 'mac', 'must contain only hexadecimal characters');
  }
  let wire = shape.ascii ? Buffer.from(mac, 'hex').toString('latin1') : mac;
  const wrongLength = wire.length !== shape.wireHex || !/^[0-9A-Fa-f]*$/.test(wire);
  if (wrongLength) wire = '0'.repeat(shape.wireHex);
  return { body: macBody('verifyMac', req, shape) + wire, wrongLength };
}

/** M8: 00 verifies, 01 does not (a verification failure, not an error). */
export const M8_RESPONSE = defineResponse(
  'M8',
  (_fields, code, wrongLength: boolean) => code === '00' && !wrongLength,
  ['01'],
);

// ---------------------------------------------------------------------------------------------
// M0 / M2: data

export function encodeData(op: 'encryptData' | 'decryptData', req: DataRequest): string {
  if (req === null || typeof req !== 'object') throw typeError('request', 'must be an object');
  const key = lmkKey(req.keyBlock, 'keyBlock');
  if (req.mode !== 'ecb' && req.mode !== 'cbc') throw typeError('mode', "must be 'ecb' or 'cbc'");
  if (req.mode === 'ecb' && req.iv !== undefined) throw typeError('iv', 'an IV is for CBC only');
  const blockSize = blockSizeOfBlock(req.keyBlock);
  let iv = '';
  if (req.mode === 'cbc') {
    iv = req.iv ?? '0'.repeat(blockSize * 2);
    if (typeof iv !== 'string' || !/^[0-9A-Fa-f]*$/.test(iv) || iv.length % 2 !== 0) {
      throw hsmInputError('POSKEY_ERR_HEX', 'iv', 'must contain only hexadecimal characters');
    }
    if (iv.length !== blockSize * 2) {
      throw hsmInputError('POSKEY_ERR_LENGTH', 'iv', `IV must be ${blockSize} bytes`);
    }
  }
  const data = req.data;
  if (typeof data !== 'string' || !/^[0-9A-Fa-f]*$/.test(data) || data.length % 2 !== 0) {
    throw hsmInputError('POSKEY_ERR_HEX', 'data', 'must contain only hexadecimal characters');
  }
  if (data.length === 0) throw unsupported(op, 'an empty message');
  const hex = data.length <= 0xffff;
  const format = hex ? '11' : '00';
  const message = hex
    ? lengthField(data.length) + data
    : lengthField(data.length / 2) + Buffer.from(data, 'hex').toString('latin1');
  return `${req.mode === 'ecb' ? '00' : '01'}${format}FFF${key}${iv}${message}`;
}

/** [next IV (CBC)], message length (4 H), message: hex output (as asked) or binary for long ones. */
function decodeData(command: string) {
  return (fields: string, _code: string, ctx: { ivHex: number; hexOutput: boolean }): string => {
    const r = new Reader(fields, command);
    if (ctx.ivHex > 0) r.hex(ctx.ivHex, 'iv');
    const length = Number.parseInt(r.hex(4, 'messageLength'), 16);
    if (ctx.hexOutput) return r.hex(length, 'message');
    return Buffer.from(r.take(length, 'message'), 'latin1').toString('hex').toUpperCase();
  };
}

export function dataContext(req: DataRequest): { ivHex: number; hexOutput: boolean } {
  return {
    ivHex: req.mode === 'cbc' ? blockSizeOfBlock(req.keyBlock) * 2 : 0,
    hexOutput: req.data.length <= 0xffff,
  };
}

export const M0_RESPONSE = defineResponse('M0', decodeData('M0'));
export const M2_RESPONSE = defineResponse('M2', decodeData('M2'));

// ---------------------------------------------------------------------------------------------
// Y0: sign-in key set (poskey vendor command)

export function encodeY0(req: SignInKeysRequest): string {
  if (req === null || typeof req !== 'object') throw typeError('request', 'must be an object');
  const tmk = lmkKey(req.tmk, 'tmk');
  if (req.algorithm === 'sm4') return `${tmk}S22${req.withTdk ? '1' : '0'}`;
  if (req.algorithm !== 'tdes') throw typeError('algorithm', "must be 'tdes' or 'sm4'");
  const flag = (value: unknown, fallback: string, field: string): string => {
    const v = value ?? fallback;
    if (v === 'single') return '1';
    if (v === 'double') return '2';
    throw typeError(field, "must be 'single' or 'double'");
  };
  return `${tmk}T${flag(req.pinKeyLength, 'double', 'pinKeyLength')}${flag(req.makLength, 'single', 'makLength')}${req.withTdk ? '1' : '0'}`;
}

function readSignInKey(r: Reader, field: string): SignInKey {
  const keyBlock = r.lmkBlock(`${field}.keyBlock`);
  const underTmk = r.wrapped(`${field}.underTmk`);
  return { keyBlock, underTmk, checkValue: r.hex(8, `${field}.checkValue`) };
}

export const Y0_RESPONSE = defineResponse('Y0', (fields, _code, withTdk: boolean): SignInKeys => {
  const r = new Reader(fields, 'Y0');
  const keys: SignInKeys = { tpk: readSignInKey(r, 'tpk'), tak: readSignInKey(r, 'tak') };
  if (withTdk) keys.tdk = readSignInKey(r, 'tdk');
  return keys;
});

// ---------------------------------------------------------------------------------------------
// NC: diagnostics

/** NC gives the LMK check value (16 H, a poskey 10-hex CMAC KCV padded with zeros) and the firmware. */
export const NC_RESPONSE = defineResponse('NC', (fields): { kcv: string; firmware: string } => {
  const r = new Reader(fields, 'NC');
  const kcv = r.hex(16, 'lmkKcv');
  return { kcv, firmware: fields.slice(16).trim() };
});

/**
 * Diagnostics from NC. payShield reports one LMK check value and a firmware number; the LMK id,
 * development flag, uptime and key cache are not on the wire (empty/zero here), and `counters`
 * holds the client's own counters (`client.*`).
 */
export function diagnosticsFromNc(
  nc: { kcv: string; firmware: string },
  counters: Record<string, number>,
): Diagnostics {
  // poskey pads its 10-hex CMAC KCV to the 16 H field with zeros.
  const kcv = nc.kcv.endsWith('000000') ? nc.kcv.slice(0, 10) : nc.kcv;
  return {
    version: nc.firmware,
    uptimeSeconds: 0,
    lmks: [{ id: '', kcv, dev: false }],
    counters,
    keyCache: { size: 0, hits: 0, misses: 0, evictions: 0 },
  };
}
