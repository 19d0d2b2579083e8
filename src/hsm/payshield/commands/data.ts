/**
 * Data encryption: M0 (encrypt), M2 (decrypt).
 *
 *   M0/M2: mode (2 N: 00 ECB, 01 CBC), input format (1 N), output format (1 N), key type (3 H),
 *          key, [IV (CBC: 16 H, or 32 H for AES/SM4 keys)], message length (4 H), message
 *   →  [IV for the next block of a chained message (CBC)], message length (4 H), message
 *
 * Layout: ut-codec-payshield `messages.json` and its M0/M2 frames. Error codes (payShield M0/M2):
 * 02 mode, 03 input format, 04 output format, 05 key type, 06 message length. The message length
 * counts the field as it travels (bytes, or hex characters for hex). Messages must fill whole
 * cipher blocks: this layer adds no padding.
 */
import type { DataRequest, HsmApi } from '../../api.js';
import { type FieldCursor, fieldError } from '../fields.js';
import { blockSizeOf } from './keys.js';
import { type InputFormat, MAX_MESSAGE_LENGTH, readMessage } from './mac.js';
import { defineCommand } from './types.js';

interface DataFields {
  mode: 'ecb' | 'cbc';
  output: '0' | '1';
  keyBlock: string;
  iv?: string;
  data: string;
}

function parseData(c: FieldCursor): DataFields {
  const mode = c.oneOf('mode', 2, ['00', '01'], '02') === '00' ? 'ecb' : 'cbc';
  const input = c.oneOf('inputFormat', 1, ['0', '1', '2'] as const, '03') as InputFormat;
  const output = c.oneOf('outputFormat', 1, ['0', '1'] as const, '04');
  c.oneOf('keyType', 3, ['00A', '00B', 'FFF'], '05');
  const keyBlock = c.lmkKey('key');
  const blockSize = blockSizeOf(keyBlock);
  const iv = mode === 'cbc' ? c.hex('iv', blockSize * 2) : undefined;
  const length = c.hexNumber('messageLength', 4, 1, MAX_MESSAGE_LENGTH, '06');
  const data = readMessage(c, input, length, '06');
  if ((data.length / 2) % blockSize !== 0) {
    throw fieldError('message', `message must fill whole ${blockSize}-byte blocks`, '06');
  }
  return { mode, output, keyBlock, iv, data };
}

interface DataResult {
  nextIv?: string;
  data: string;
  output: '0' | '1';
}

/** Runs one direction; for CBC the next IV is the last ciphertext block (output of M0, input of M2). */
function runData(
  op: (req: DataRequest) => string,
  req: DataFields,
  ciphertextOf: (input: string, output: string) => string,
): DataResult {
  const api: DataRequest = { keyBlock: req.keyBlock, mode: req.mode, iv: req.iv, data: req.data };
  const out = op(api).toUpperCase();
  if ((req.output === '1' ? out.length : out.length / 2) > MAX_MESSAGE_LENGTH) {
    throw fieldError('outputFormat', 'the result does not fit a 4 H length: ask for binary output', '06');
  }
  if (req.mode === 'ecb') return { data: out, output: req.output };
  const ciphertext = ciphertextOf(req.data, out);
  return { nextIv: ciphertext.slice(-(req.iv?.length ?? 16)), data: out, output: req.output };
}

function formatData(r: DataResult): string {
  const field = r.output === '1' ? r.data : Buffer.from(r.data, 'hex').toString('latin1');
  const length = field.length.toString(16).toUpperCase().padStart(4, '0');
  return `${r.nextIv ?? ''}${length}${field}`;
}

export const M0 = defineCommand({
  code: 'M0',
  name: 'Encrypt a data block',
  parse: parseData,
  run: (hsm: HsmApi, req) =>
    runData(
      (r) => hsm.encryptData(r),
      req,
      (_input, output) => output,
    ),
  format: formatData,
});

export const M2 = defineCommand({
  code: 'M2',
  name: 'Decrypt a data block',
  parse: parseData,
  run: (hsm: HsmApi, req) =>
    runData(
      (r) => hsm.decryptData(r),
      req,
      (input) => input,
    ),
  format: formatData,
});
