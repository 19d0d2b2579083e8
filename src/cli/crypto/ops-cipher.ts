/** `encrypt` / `decrypt`: raw block cipher calculator, ECB or CBC without padding. */
import { assertBlocks, assertLength, toHex } from '../../crypto/bytes.js';
import { BLOCK_SIZE, CIPHER_ALGORITHMS } from '../../crypto/cipher.js';
import { withKey } from './keys.js';
import { assertAllowed, defineOp, hex, type Operation, oneOf } from './schema.js';

const options = {
  alg: oneOf(CIPHER_ALGORITHMS, 'block cipher', { required: true }),
  mode: oneOf(['ecb', 'cbc'], 'mode of operation (no padding: data must be whole blocks)', {
    required: true,
  }),
  key: hex('key', { required: true }),
  data: hex('data, a whole number of blocks', { required: true }),
  iv: hex('initial vector for CBC (default: zeros)'),
};

function cipherOp(direction: 'encrypt' | 'decrypt', example: string): Operation {
  return defineOp({
    path: direction,
    summary: `${direction} whole blocks with DES, TDES, AES or SM4 (ECB or CBC, no padding)`,
    options,
    example,
    run({ alg, mode, key, data, iv }) {
      assertAllowed('iv', iv === undefined || mode === 'cbc', 'only applies to --mode cbc');
      assertBlocks(data, BLOCK_SIZE[alg], '--data');
      if (iv) assertLength(iv, [BLOCK_SIZE[alg]], '--iv');
      return withKey(alg, key, '--key', (k) => {
        const out =
          mode === 'ecb'
            ? direction === 'encrypt'
              ? k.ecbEncrypt(data)
              : k.ecbDecrypt(data)
            : direction === 'encrypt'
              ? k.cbcEncrypt(data, iv)
              : k.cbcDecrypt(data, iv);
        return { data: toHex(out) };
      });
    },
  });
}

export const cipherOps: Operation[] = [
  cipherOp(
    'encrypt',
    'encrypt --alg aes --mode ecb --key 2B7E151628AED2A6ABF7158809CF4F3C --data 6BC1BEE22E409F96E93D7E117393172A',
  ),
  cipherOp('decrypt', 'decrypt --alg des --mode ecb --key 0123456789ABCDEF --data 3FA40E8A984D4815'),
];
