/** The dialects poskey ships, by name. */
import { IsoError, IsoErrorCode } from '../errors.js';
import type { Dialect } from '../spec.js';
import { networkDialect } from './network.js';
import { unionPayPosDialect } from './unionpay-pos.js';

export type DialectName =
  | 'unionpay-pos'
  | 'unionpay-pos-padF'
  | 'unionpay-pos-sm4'
  | 'network'
  | 'network-hex';

const BUILDERS: Record<DialectName, () => Dialect> = {
  'unionpay-pos': () => unionPayPosDialect(),
  'unionpay-pos-padF': () => unionPayPosDialect({ pad: 'F' }),
  'unionpay-pos-sm4': () => unionPayPosDialect({ name: 'unionpay-pos-sm4', pinBlockBytes: 16 }),
  network: () => networkDialect(),
  'network-hex': () => networkDialect({ bitmap: 'hex' }),
};

const built = new Map<string, Dialect>();

/** The names `getDialect` accepts. */
export const DIALECT_NAMES: readonly DialectName[] = Object.freeze(Object.keys(BUILDERS) as DialectName[]);

/**
 * A shipped dialect by name: 'unionpay-pos' (pad nibble 0), 'unionpay-pos-padF' (pad nibble F),
 * 'unionpay-pos-sm4' (16-byte field 52 for SM4 PIN blocks),
 * 'network' (binary bitmaps) or 'network-hex' (hex-text bitmaps). Dialects are frozen and built once.
 */
export function getDialect(name: DialectName | string): Dialect {
  const make = (BUILDERS as Record<string, (() => Dialect) | undefined>)[name];
  if (!make) {
    throw new IsoError(
      IsoErrorCode.DIALECT,
      `unknown dialect ${JSON.stringify(name)}; known: ${DIALECT_NAMES.join(', ')}`,
      ['dialect'],
    );
  }
  let d = built.get(name);
  if (!d) {
    d = make();
    built.set(name, d);
  }
  return d;
}
