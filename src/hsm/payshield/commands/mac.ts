/**
 * MACs: M6 (generate), M8 (verify).
 *
 *   M6: mode (1), input format (1), MAC size (1), MAC algorithm (1), padding (1), key type (3 H),
 *       key, [IV (modes 2, 3)], message length (4 H), message  →  MAC
 *   M8: the same without IV, then the MAC  →  (error 01 when it does not verify)
 *
 * Layout: ut-codec-payshield `messages.json` and M8 frames (e.g. `M80101 1FFFS…0008ABCDEF12F9369211`);
 * ThalesSim's 2-digit "MAC algorithm" (01, 03) is the same bytes read as MAC size 0 + algorithm.
 * Field-specific error codes (payShield M6/M8): 02 mode, 03 input format, 04 MAC algorithm,
 * 05 key type, 06 message length, 09 padding method.
 *
 * The message length counts the message field as it travels: bytes for binary and text input,
 * hex characters for hex input.
 */
import type { MacAlgorithm, MacPadding } from '../../../crypto/mac.js';
import type { MacRequest } from '../../api.js';
import { HsmError } from '../../errors.js';
import { type FieldCursor, fieldError } from '../fields.js';
import { blockSizeOf } from './keys.js';
import { defineCommand } from './types.js';

/** MAC algorithm codes: payShield 1 and 3; C and U are poskey vendor codes. */
export const MAC_ALGORITHM_CODES: Readonly<Record<string, MacAlgorithm>> = Object.freeze({
  '1': 'cbc',
  '3': 'retail',
  C: 'cmac',
  U: 'unionpay-ecb',
});

/** MAC size flag → MAC bytes: 0 = 4 bytes (8 H), 1 = 8 bytes (16 H). */
const MAC_BYTES: Readonly<Record<string, number>> = { '0': 4, '1': 8 };

/** The largest message a 4 H length can announce. */
export const MAX_MESSAGE_LENGTH = 0xffff;

export type InputFormat = '0' | '1' | '2';

/**
 * A message field of `length` characters in an input format: 0 binary, 1 hex-encoded binary,
 * 2 text. Returns the message bytes as hex (what the API takes).
 */
export function readMessage(c: FieldCursor, format: InputFormat, length: number, lengthCode: string): string {
  if (format === '1') {
    if (length % 2 !== 0)
      throw fieldError('messageLength', `hex message length ${length} is odd`, lengthCode);
    return c.hex('message', length, lengthCode);
  }
  return c.bytes('message', length, lengthCode).toString('hex').toUpperCase();
}

interface MacFields {
  algorithm: MacAlgorithm;
  macBytes: number;
  /** undefined for padding method 0 (none: the message must fill whole blocks). */
  padding: MacPadding | undefined;
  key: string;
  data: string;
}

/** Mode, input format, MAC size, algorithm, padding, key type, key — the head of M6 and M8. */
function readMacHead(c: FieldCursor, modes: readonly string[]) {
  const mode = c.oneOf('mode', 1, modes, '02');
  const input = c.oneOf('inputFormat', 1, ['0', '1', '2'] as const, '03');
  const macBytes = MAC_BYTES[c.oneOf('macSize', 1, ['0', '1'])]!;
  const algorithm = MAC_ALGORITHM_CODES[c.oneOf('macAlgorithm', 1, Object.keys(MAC_ALGORITHM_CODES), '04')]!;
  const paddingFlag = c.oneOf('padding', 1, ['0', '1', '2', '3'], '09');
  c.oneOf('keyType', 3, ['003', '008', 'FFF'], '05');
  const key = c.lmkKey('key');
  const padding = paddingFlag === '0' ? undefined : (Number(paddingFlag) as MacPadding);
  return { mode, input, macBytes, algorithm, padding, key };
}

function readMessageField(c: FieldCursor, input: InputFormat): string {
  const length = c.hexNumber('messageLength', 4, 1, MAX_MESSAGE_LENGTH, '06');
  return readMessage(c, input, length, '06');
}

/**
 * The API request. Padding 0 means the message must already fill whole cipher blocks (ISO 9797-1
 * method 1 then adds nothing). CMAC and the UnionPay MAC pad by their own definition, so the padding
 * flag is not used for them. For the UnionPay MAC, size 0 returns field 64's 8 ASCII hex
 * characters, size 1 the 8 binary bytes.
 */
function macRequest(f: MacFields): MacRequest {
  if (f.algorithm === 'unionpay-ecb') {
    return {
      key: { kind: 'key', keyBlock: f.key },
      algorithm: f.algorithm,
      data: f.data,
      output: f.macBytes === 4 ? 'hex' : 'binary',
    };
  }
  if (f.padding === undefined && f.algorithm !== 'cmac' && (f.data.length / 2) % blockSizeOf(f.key) !== 0) {
    throw fieldError('message', `padding 0 needs whole ${blockSizeOf(f.key)}-byte blocks`, '15');
  }
  return {
    key: { kind: 'key', keyBlock: f.key },
    algorithm: f.algorithm,
    data: f.data,
    padding: f.algorithm === 'cmac' ? undefined : (f.padding ?? 1),
    length: f.macBytes,
  };
}

/** The MAC as the response carries it (UnionPay size 0: the API returns the hex of 8 ASCII characters). */
function wireMac(f: MacFields, apiMac: string): string {
  if (f.algorithm === 'unionpay-ecb' && f.macBytes === 4)
    return Buffer.from(apiMac, 'hex').toString('latin1');
  return apiMac.toUpperCase();
}

/** The API form of a received MAC (the inverse of wireMac). */
function apiMac(f: MacFields, wire: string): string {
  if (f.algorithm === 'unionpay-ecb' && f.macBytes === 4) return Buffer.from(wire, 'latin1').toString('hex');
  return wire;
}

export const M6 = defineCommand({
  code: 'M6',
  name: 'Generate a MAC',
  parse(c): MacFields {
    const head = readMacHead(c, ['0', '1', '2', '3']);
    if (head.mode !== '0') {
      if (head.mode === '2' || head.mode === '3') c.hex('iv', blockSizeOf(head.key) * 2);
      throw fieldError('mode', 'only mode 0 (the whole message in one command) is supported', '02');
    }
    return { ...head, data: readMessageField(c, head.input) };
  },
  run: (hsm, req) => ({ mac: wireMac(req, hsm.generateMac(macRequest(req))) }),
  format: (r) => r.mac,
});

export const M8 = defineCommand({
  code: 'M8',
  name: 'Verify a MAC',
  parse(c) {
    const head = readMacHead(c, ['0']);
    const data = readMessageField(c, head.input);
    const mac = c.hex('mac', head.macBytes * 2);
    return { ...head, data, mac };
  },
  run(hsm, req) {
    if (!hsm.verifyMac({ ...macRequest(req), mac: apiMac(req, req.mac) })) {
      throw new HsmError('POSKEY_ERR_PAYSHIELD_MAC_VERIFY', 'MAC verification failed', {
        field: 'mac',
        payShield: '01',
      });
    }
    return {};
  },
  format: () => '',
});
