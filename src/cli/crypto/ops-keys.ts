/** `kcv` and `components combine`: key check values and key forming from custodians' components. */
import { toHex, zeroize } from '../../crypto/bytes.js';
import { CIPHER_ALGORITHMS } from '../../crypto/cipher.js';
import { checkValue, KCV_METHODS } from '../../crypto/kcv.js';
import { combineComponents, MAX_COMPONENTS } from '../../crypto/keys.js';
import { withKey } from './keys.js';
import { defineOp, hex, int, type Operation, oneOf } from './schema.js';

const kcv = defineOp({
  path: 'kcv',
  summary: 'key check value: E(key, zero block) (legacy) or CMAC(key, zero block), leftmost bytes',
  options: {
    alg: oneOf(CIPHER_ALGORITHMS, 'key algorithm', { required: true }),
    key: hex('clear key', { required: true }),
    method: oneOf(KCV_METHODS, 'legacy (DES/TDES, SM4) or cmac (AES, X9.24-1:2017)', { default: 'legacy' }),
    length: int('KCV length in bytes (default 3 legacy, 5 cmac)', 1, 16),
  },
  example: 'kcv --alg tdes --key 0123456789ABCDEFFEDCBA9876543210',
  fields: { length: '--length', method: '--method' },
  run({ alg, key, method, length }) {
    return withKey(alg, key, '--key', (k) => {
      const cv = checkValue(k, { method, length });
      return { kcv: cv.value, kcvMethod: cv.method };
    });
  },
});

const combine = defineOp({
  path: 'components combine',
  summary: 'XOR 2-9 key components into a key (DES/TDES parity-fixed); prints the CLEAR key and the KCVs',
  options: {
    alg: oneOf(CIPHER_ALGORITHMS, 'key algorithm', { required: true }),
    component: hex(`a clear key component, given 2 to ${MAX_COMPONENTS} times`, {
      required: true,
      repeated: true,
    }),
    kcvMethod: oneOf(KCV_METHODS, 'KCV method', { default: 'legacy' }),
    kcvLength: int('KCV length in bytes (default 3 legacy, 5 cmac)', 1, 16),
  },
  example:
    'components combine --alg tdes --component 0123456789ABCDEFFEDCBA9876543210 --component 40404040404040404040404040404040',
  fields: { components: '--component', length: '--kcv-length', method: '--kcv-method' },
  run({ alg, component, kcvMethod, kcvLength }) {
    const combined = combineComponents(alg, component, { kcv: { method: kcvMethod, length: kcvLength } });
    try {
      return {
        key: toHex(combined.key),
        kcv: combined.kcv.value,
        kcvMethod: combined.kcv.method,
        components: combined.components.map((c) => c.value),
        ...(combined.componentParity
          ? { componentParity: combined.componentParity.map((p) => (p ? 'odd' : 'even')) }
          : {}),
      };
    } finally {
      zeroize(combined.key);
    }
  },
});

export const kcvOps: Operation[] = [kcv];
export const componentOps: Operation[] = [combine];
