/**
 * payShield host-command error codes and the mapping from poskey error codes to them.
 *
 * Meanings follow the payShield 9000/10K host programmer's manuals as recorded by ThalesSim
 * (`ThalesSim.Core/Resources/ErrorCodes.cs`) and ut-codec-payshield (`errors/list.json`); research
 * hsm.md §2. Codes are two characters: `00`–`92` general, `A1`–`BD` key-block errors.
 */
import { isPoskeyError } from '../../errors.js';
import { HsmError } from '../errors.js';

export const PAYSHIELD_ERRORS: Readonly<Record<string, string>> = Object.freeze({
  '00': 'No error',
  '01': 'Verification failure or warning of imported key parity error',
  '02': 'Inappropriate key length for algorithm',
  '03': 'Invalid number of components',
  '04': 'Invalid key type code',
  '05': 'Invalid key length flag',
  '10': 'Source key parity error',
  '11': 'Destination key parity error or key all zeros',
  '12': 'Contents of user storage not available',
  '13': 'Invalid LMK identifier',
  '14': 'PIN encrypted under LMK pair 02-03 is invalid',
  '15': 'Invalid input data (invalid format, invalid characters, or not enough data provided)',
  '16': 'Console or printer not ready or not connected',
  '17': 'HSM not in the Authorised state, or not enabled for clear PIN output, or both',
  '18': 'Document format definition not loaded',
  '19': 'Specified Diebold table is invalid',
  '20': 'PIN block does not contain valid values',
  '21': 'Invalid index value, or index/block count would cause an overflow condition',
  '22': 'Invalid account number',
  '23': 'Invalid PIN block format code',
  '24': 'PIN is fewer than 4 or more than 12 digits in length',
  '25': 'Decimalisation table error',
  '26': 'Invalid key scheme',
  '27': 'Incompatible key length',
  '28': 'Invalid key type',
  '29': 'Key function not permitted',
  '30': 'Invalid reference number',
  '31': 'Insufficient solicitation entries for batch',
  '33': 'LMK key change storage is corrupted',
  '39': 'Fraud detection',
  '40': 'Invalid checksum',
  '41': 'Internal hardware/software error',
  '42': 'DES failure',
  '47': 'Algorithm not licensed',
  '49': 'Private key error',
  '51': 'Invalid message header',
  '52': 'Invalid number of commands field',
  '65': 'Transaction key scheme set to none',
  '67': 'Command not licensed',
  '68': 'Command has been disabled',
  '69': 'PIN block format has been disabled',
  '74': 'Invalid digest info syntax',
  '75': 'Single length key masquerading as double or triple length key',
  '76': 'Public key length error',
  '77': 'Clear data block error',
  '78': 'Private key length error',
  '79': 'Hash algorithm object identifier error',
  '80': 'Data length error',
  '81': 'Invalid certificate header',
  '82': 'Invalid check value length',
  '83': 'Key block format error',
  '84': 'Key block check value error',
  '85': 'Invalid OAEP mask generation function',
  '86': 'Invalid OAEP MGF hash function',
  '87': 'OAEP parameter error',
  '90': 'Data parity error in the request message',
  '91': 'Longitudinal redundancy check error',
  '92': 'Count value not between limits',
  A1: 'Incompatible LMK schemes',
  A2: 'Incompatible LMK identifiers',
  A3: 'Incompatible key block LMK identifiers',
  A4: 'Key block authentication failure',
  A5: 'Incompatible key length',
  A6: 'Invalid key usage',
  A7: 'Invalid algorithm',
  A8: 'Invalid mode of use',
  A9: 'Invalid key version number',
  AA: 'Invalid export field',
  AB: 'Invalid number of optional blocks',
  AC: 'Optional header block error',
  AD: 'Key status optional block error',
  AE: 'Invalid start date/time',
  AF: 'Invalid end date/time',
  B0: 'Invalid encryption mode',
  B1: 'Invalid authentication mode',
  B2: 'Miscellaneous key block error',
  B3: 'Invalid number of optional blocks',
  B4: 'Optional block data error',
  B5: 'Incompatible components',
  B6: 'Incompatible key status optional blocks',
  B7: 'Invalid change field',
  B8: 'Invalid old value',
  B9: 'Invalid new value',
  BA: 'No key status block in the key block',
  BB: 'Invalid wrapping key',
  BC: 'Repeated optional block',
  BD: 'Incompatible key types',
});

/** Meaning of a payShield error code, or undefined for a code not in the table. */
export function payShieldErrorMeaning(code: string): string | undefined {
  return Object.hasOwn(PAYSHIELD_ERRORS, code) ? PAYSHIELD_ERRORS[code] : undefined;
}

/** A payShield code, or a pair when the answer depends on whether the source or destination key failed. */
type Mapping = string | { source: string; destination: string };

/**
 * poskey error code → payShield error code. One table for every layer, so the wire answer for a
 * failure is decided in one place. `PREFIX_MAP` catches codes added later to each family, and
 * `TR31_HEADER_FIELDS` refines POSKEY_ERR_TR31_HEADER by the header position at fault.
 */
export const POSKEY_TO_PAYSHIELD: Readonly<Record<string, Mapping>> = Object.freeze({
  // Input shape
  POSKEY_ERR_HEX: '15',
  POSKEY_ERR_TYPE: '15',
  POSKEY_ERR_LENGTH: '15',
  POSKEY_ERR_ALGORITHM: 'A7',
  // Keys (src/crypto/keys.ts, kcv.ts, cipher.ts)
  POSKEY_ERR_KEY_PARITY: { source: '10', destination: '11' },
  POSKEY_ERR_WEAK_KEY: { source: '10', destination: '11' },
  POSKEY_ERR_COMPONENT_COUNT: '03',
  POSKEY_ERR_KCV_MISMATCH: '01',
  POSKEY_ERR_KCV_METHOD: '15',
  POSKEY_ERR_KEY_DESTROYED: '41',
  // Key roles and strength (src/hsm/key-types.ts)
  POSKEY_ERR_KEY_TYPE: '04',
  POSKEY_ERR_KEK_STRENGTH: '27',
  POSKEY_ERR_KEY_LENGTH: '27',
  POSKEY_ERR_EXPORTABILITY: 'AA',
  POSKEY_ERR_COMPONENT: '15',
  POSKEY_ERR_AUDIT_IO: '41',
  POSKEY_ERR_RANDOM: '41',
  // Key block enforcement (assertKeyUsage in src/crypto/tr31-header.ts)
  POSKEY_ERR_KEY_USAGE: 'A6',
  POSKEY_ERR_KEY_ALGORITHM: 'A7',
  POSKEY_ERR_KEY_MODE: 'A8',
  POSKEY_ERR_KEY_NOT_EXPORTABLE: 'AA',
  // TR-31 key blocks (src/crypto/tr31.ts)
  POSKEY_ERR_TR31_MAC: 'A4',
  POSKEY_ERR_TR31_KEY_LENGTH: 'A5',
  POSKEY_ERR_TR31_OPTIONAL_BLOCK: 'AC',
  POSKEY_ERR_TR31_HEADER: '83',
  POSKEY_ERR_TR31_LENGTH: '83',
  POSKEY_ERR_TR31_VERSION: '83',
  // MAC (src/crypto/mac.ts)
  POSKEY_ERR_MAC_ALGORITHM: '15',
  POSKEY_ERR_MAC_PADDING: '15',
  POSKEY_ERR_MAC_OUTPUT: '15',
  // PIN (src/crypto/pinblock.ts)
  POSKEY_ERR_PIN_BLOCK_FORMAT: '23',
  POSKEY_ERR_PIN_BLOCK_TRANSLATION: '23',
  POSKEY_ERR_PIN_LENGTH: '24',
  POSKEY_ERR_PIN_DIGITS: '20',
  POSKEY_ERR_PIN_BLOCK_CONTROL: '20',
  POSKEY_ERR_PIN_BLOCK_FILL: '20',
  POSKEY_ERR_PIN_BLOCK_LENGTH: '15',
  POSKEY_ERR_PAN: '22',
  POSKEY_ERR_PAN_MISMATCH: '20',
  // DUKPT
  POSKEY_ERR_KSN: '15',
  POSKEY_ERR_DUKPT_EXHAUSTED: '15',
  POSKEY_ERR_DUKPT_KEY_TYPE: '15',
  POSKEY_ERR_DUKPT_KEY_USAGE: '15',
  // LMK and LMK key blocks (src/hsm)
  POSKEY_ERR_LMK_ID: '13',
  POSKEY_ERR_LMK_UNKNOWN: '13',
  POSKEY_ERR_LMK_COMPONENTS: '03',
  POSKEY_ERR_LMK_COMPONENT: '15',
  POSKEY_ERR_LMK_BLOCK: 'A3',
  POSKEY_ERR_LMK_DEV_BLOCK: 'A3',
  // payShield framing
  POSKEY_ERR_PAYSHIELD_FRAME: '15',
  POSKEY_ERR_PAYSHIELD_COMMAND: '15',
  POSKEY_ERR_PAYSHIELD_HEADER: '51',
});

/** POSKEY_ERR_TR31_HEADER by header position: the A-family code payShield gives for that field. */
const TR31_HEADER_FIELDS: Readonly<Record<string, string>> = Object.freeze({
  usage: 'A6',
  algorithm: 'A7',
  modeOfUse: 'A8',
  keyVersion: 'A9',
  exportability: 'AA',
  optionalBlockCount: 'AB',
});

/** Families: a code not in the table above falls back to its family's code. Longest prefix wins. */
const PREFIX_MAP: readonly (readonly [string, string])[] = [
  ['POSKEY_ERR_TR31_', 'B2'],
  ['POSKEY_ERR_PIN_', '20'],
  ['POSKEY_ERR_LMK_', '13'],
  ['POSKEY_ERR_ISO_', '15'],
  ['POSKEY_ERR_FRAME_', '15'],
];

/** payShield code for a poskey error code alone, or undefined when neither table knows it. */
export function payShieldCodeFor(
  code: string,
  role: 'source' | 'destination' = 'source',
): string | undefined {
  const m = Object.hasOwn(POSKEY_TO_PAYSHIELD, code) ? POSKEY_TO_PAYSHIELD[code] : undefined;
  if (m !== undefined) return typeof m === 'string' ? m : m[role];
  return PREFIX_MAP.find(([prefix]) => code.startsWith(prefix))?.[1];
}

/** Fields whose length error means a key of the wrong length rather than malformed data. */
const KEY_FIELD_RE = /(^|[.[_])(key|kbpk|kek|tmk|zmk|tpk|zpk|tak|bdk)(\]|$|[.[])/i;

/**
 * The payShield error code to answer with for a failure.
 *  - an HsmError carrying `payShield` answers with it;
 *  - a PoskeyError answers by its code (table above, then family prefix); a POSKEY_ERR_LENGTH on a
 *    key field is '27' (incompatible key length), on anything else '15'; a POSKEY_ERR_TR31_HEADER
 *    names the position at fault (usage → A6, algorithm → A7, mode → A8, …), else '83';
 *  - an unmapped PoskeyError is '15' (our errors are input checks unless they say otherwise);
 *  - anything else is a bug or an environment failure: '41' (internal error).
 * @param role which key of a translate command failed, for the codes that distinguish (10/11)
 */
export function toPayShieldError(err: unknown, role: 'source' | 'destination' = 'source'): string {
  if (err instanceof HsmError && err.payShield !== undefined) return err.payShield;
  if (!isPoskeyError(err)) return '41';
  if (err.code === 'POSKEY_ERR_LENGTH' && err.field !== undefined && KEY_FIELD_RE.test(err.field))
    return '27';
  if (
    err.code === 'POSKEY_ERR_TR31_HEADER' &&
    err.field !== undefined &&
    Object.hasOwn(TR31_HEADER_FIELDS, err.field)
  ) {
    return TR31_HEADER_FIELDS[err.field]!;
  }
  return payShieldCodeFor(err.code, role) ?? '15';
}
