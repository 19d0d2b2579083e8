/**
 * `pinblock encode|decode|encrypt|decrypt|translate`: ISO 9564-1 formats 0–4 and the UnionPay SM4
 * block. `decode`/`decrypt` print the clear PIN: that is what a calculator is asked for.
 */
import { toHex } from '../../crypto/bytes.js';
import type { CipherAlgorithm } from '../../crypto/cipher.js';
import {
  decodePinBlock,
  decryptPinBlock,
  encodePinBlock,
  encryptPinBlock,
  type PinBlockFormat,
  parsePinBlockFormat,
  translatePinBlock,
} from '../../crypto/pinblock.js';
import { keyFor, withKey } from './keys.js';
import { defineOp, hex, type Operation, oneOf, text } from './schema.js';

const FORMATS = ['0', '1', '2', '3', '4', 'sm4'] as const;
const PIN_ALGS = ['des', 'tdes', 'aes', 'sm4'] as const;

/** The cipher a format is defined for, used when --alg is not given. */
function defaultAlg(format: PinBlockFormat): CipherAlgorithm {
  return format === 4 ? 'aes' : format === 'sm4' ? 'sm4' : 'tdes';
}

const format = oneOf(FORMATS, 'PIN block format: ISO 9564-1 0-4, or sm4 (UnionPay 16-byte)', {
  required: true,
});
const pin = text('pin', 'PIN, 4 to 12 digits', { required: true });
const pan = text('pan', 'PAN (formats 0, 3, 4, sm4)');
const alg = oneOf(PIN_ALGS, 'key algorithm (default: tdes for 0-3, aes for 4, sm4 for sm4)');
const key = hex('PIN encryption key (TPK/ZPK/PIK)', { required: true });
const block = hex('PIN block', { required: true });

const FIELDS = { pin: '--pin', pan: '--pan', block: '--block', key: '--key', format: '--format' };

const encode = defineOp({
  path: 'pinblock encode',
  summary: 'build a clear PIN block (format 4: the clear PIN field)',
  options: { format, pin, pan },
  example: 'pinblock encode --format 0 --pin 1234 --pan 5555555551234567',
  fields: FIELDS,
  run(a) {
    return {
      pinBlock: toHex(encodePinBlock({ format: parsePinBlockFormat(a.format), pin: a.pin, pan: a.pan })),
    };
  },
});

const decode = defineOp({
  path: 'pinblock decode',
  summary: 'check a clear PIN block and print the PIN',
  options: { format, block, pan },
  example: 'pinblock decode --format 0 --block 041261AAAAEDCBA9 --pan 5555555551234567',
  fields: FIELDS,
  run(a) {
    return { pin: decodePinBlock({ format: parsePinBlockFormat(a.format), block: a.block, pan: a.pan }) };
  },
});

const encrypt = defineOp({
  path: 'pinblock encrypt',
  summary: 'build and encrypt a PIN block',
  options: { format, alg, key, pin, pan },
  example:
    'pinblock encrypt --format 0 --alg tdes --key 0123456789ABCDEFFEDCBA9876543210 --pin 1234 --pan 5555555551234567',
  fields: FIELDS,
  run(a) {
    const f = parsePinBlockFormat(a.format);
    return withKey(a.alg ?? defaultAlg(f), a.key, '--key', (k) => ({
      pinBlock: toHex(encryptPinBlock(k, { format: f, pin: a.pin, pan: a.pan })),
    }));
  },
});

const decrypt = defineOp({
  path: 'pinblock decrypt',
  summary: 'decrypt and check a PIN block; prints the PIN',
  options: { format, alg, key, block, pan },
  example:
    'pinblock decrypt --format 0 --alg tdes --key 0123456789ABCDEFFEDCBA9876543210 --block 230B4C43B8BA2C5C --pan 5555555551234567',
  fields: FIELDS,
  run(a) {
    const f = parsePinBlockFormat(a.format);
    return withKey(a.alg ?? defaultAlg(f), a.key, '--key', (k) => ({
      pin: decryptPinBlock(k, a.block, { format: f, pan: a.pan }),
    }));
  },
});

const translate = defineOp({
  path: 'pinblock translate',
  summary:
    'decrypt a PIN block under one key, check it and re-encrypt it under another (optionally changing format)',
  options: {
    format,
    toFormat: oneOf(FORMATS, 'target format (default: --format)'),
    alg,
    key: hex('source PIN key', { required: true }),
    toAlg: oneOf(PIN_ALGS, 'target key algorithm (default: as for --alg, from the target format)'),
    toKey: hex('target PIN key', { required: true }),
    block,
    pan,
    toPan: text('pan', 'PAN for the target block (default: --pan)'),
  },
  example:
    'pinblock translate --format 0 --key 0123456789ABCDEFFEDCBA9876543210 --to-key 89ABCDEF0123456776543210FEDCBA98 --block 230B4C43B8BA2C5C --pan 5555555551234567',
  fields: { ...FIELDS, from: '--format', to: '--to-format', source: '--key', target: '--to-key' },
  run(a) {
    const from = parsePinBlockFormat(a.format);
    const to = a.toFormat === undefined ? from : parsePinBlockFormat(a.toFormat);
    const source = keyFor(a.alg ?? defaultAlg(from), a.key, '--key');
    try {
      return withKey(a.toAlg ?? defaultAlg(to), a.toKey, '--to-key', (target) => ({
        pinBlock: toHex(translatePinBlock(source, target, a.block, { from, to, pan: a.pan, toPan: a.toPan })),
      }));
    } finally {
      source.destroy();
    }
  },
});

export const pinBlockOps: Operation[] = [encode, decode, encrypt, decrypt, translate];
