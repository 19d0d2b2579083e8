/** `mac`: CBC-MAC (ISO 9797-1 alg 1), retail MAC (alg 3), CMAC and the UnionPay POS ECB MAC. */
import { toHex } from '../../crypto/bytes.js';
import { CIPHER_ALGORITHMS } from '../../crypto/cipher.js';
import { generateMac, MAC_ALGORITHMS, type MacPadding } from '../../crypto/mac.js';
import { withKey } from './keys.js';
import { assertAllowed, defineOp, hex, int, type Operation, oneOf } from './schema.js';

const mac = defineOp({
  path: 'mac',
  summary: 'MAC over hex data: cbc (ISO 9797-1 alg 1), retail (alg 3, X9.19), cmac, unionpay-ecb',
  options: {
    algorithm: oneOf(MAC_ALGORITHMS, 'MAC algorithm', { required: true }),
    alg: oneOf(CIPHER_ALGORITHMS, 'key algorithm', { required: true }),
    key: hex('MAC key', { required: true }),
    data: hex('message (MAB) to authenticate', { required: true }),
    padding: oneOf(['1', '2', '3'], 'ISO 9797-1 padding method for cbc and retail', { default: '1' }),
    length: int('MAC length in bytes (default: full block; retail 8)', 1, 16),
    output: oneOf(['hex', 'binary'], 'unionpay-ecb field 64 form: 8 ASCII hex chars or 8 bytes', {
      default: 'hex',
    }),
  },
  example:
    'mac --algorithm retail --alg tdes --key 7CA110454A1A6E570131D9619DC1376E --data 48656C6C6F20576F726C642021212121',
  fields: { key: '--key', data: '--data', length: '--length', padding: '--padding', output: '--output' },
  run({ algorithm, alg, key, data, padding, length, output }) {
    const padded = algorithm === 'cbc' || algorithm === 'retail';
    assertAllowed('padding', padded || padding === '1', 'only applies to --algorithm cbc and retail');
    assertAllowed(
      'length',
      algorithm !== 'unionpay-ecb' || length === undefined,
      'does not apply to unionpay-ecb',
    );
    assertAllowed(
      'output',
      algorithm === 'unionpay-ecb' || output === 'hex',
      'only applies to --algorithm unionpay-ecb',
    );
    return withKey(alg, key, '--key', (k) => {
      const value = generateMac(algorithm, k, data, {
        padding: Number(padding) as MacPadding,
        length,
        output,
      });
      // The UnionPay 'hex' form is already 8 ASCII hex characters: show them as text, as field 64 reads.
      const ascii = algorithm === 'unionpay-ecb' && output === 'hex';
      return { mac: ascii ? value.toString('latin1') : toHex(value) };
    });
  },
});

export const macOps: Operation[] = [mac];
