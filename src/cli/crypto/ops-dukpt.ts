/**
 * `dukpt`: host-side DUKPT derivation from a BDK and a KSN; prints the CLEAR IPEK (or AES initial
 * key) and working key, which is this calculator's job: production BDKs stay in the HSM.
 */
import { toHex, zeroize } from '../../crypto/bytes.js';
import type { CipherAlgorithm } from '../../crypto/cipher.js';
import * as aes from '../../crypto/dukpt-aes.js';
import * as tdes from '../../crypto/dukpt-tdes.js';
import { checkValue, type KcvMethod } from '../../crypto/kcv.js';
import { withKey } from './keys.js';
import { assertAllowed, defineOp, flag, hex, type Operation, oneOf } from './schema.js';

const TDES_TYPES = Object.keys(tdes.DUKPT_TDES_VARIANTS) as tdes.DukptTdesKeyType[];
const AES_USAGES = Object.keys(aes.AES_DUKPT_USAGE_CODES) as aes.AesDukptKeyUsage[];
const AES_KEY_ALGS = Object.keys(aes.AES_DUKPT_KEY_TYPES) as aes.AesDukptKeyType[];
const KEY_TYPES = [...new Set<string>([...TDES_TYPES, ...AES_USAGES])];

function kcvOf(
  alg: CipherAlgorithm,
  method: KcvMethod,
  key: Uint8Array,
): { kcv: string; kcvMethod: KcvMethod } {
  return withKey(alg, key, 'key', (k) => ({ kcv: checkValue(k, { method }).value, kcvMethod: method }));
}

/** The check value a working key of this AES DUKPT type is usually quoted with; none for HMAC keys. */
function workingKcv(keyAlg: aes.AesDukptKeyType, key: Uint8Array): { kcv?: string; kcvMethod?: KcvMethod } {
  if (keyAlg.startsWith('tdes')) return kcvOf('tdes', 'legacy', key);
  if (keyAlg.startsWith('aes')) return kcvOf('aes', 'cmac', key);
  return {};
}

function runTdes(bdk: Buffer, ksn: Buffer, keyType: string) {
  assertAllowed(
    'keyType',
    (TDES_TYPES as string[]).includes(keyType),
    `must be one of ${TDES_TYPES.join(', ')} for TDES DUKPT`,
  );
  assertAllowed('ksn', ksn.length !== aes.DUKPT_AES_KSN_LENGTH, 'is a 12-byte AES DUKPT KSN: add --aes');
  if (ksn.length === tdes.DUKPT_TDES_KSN_LENGTH && tdes.ksnCounter(ksn) === 0) {
    // An initial KSN names no transaction: only the IPEK exists.
    const ipek = tdes.deriveIpek(bdk, ksn);
    try {
      return { ipek: toHex(ipek), ...kcvOf('tdes', 'legacy', ipek) };
    } finally {
      zeroize(ipek);
    }
  }
  const keys = tdes.deriveHostKey(bdk, ksn, keyType as tdes.DukptTdesKeyType);
  try {
    return {
      ipek: toHex(keys.ipek),
      transactionKey: toHex(keys.transactionKey),
      keyType,
      key: toHex(keys.key),
      ...kcvOf('tdes', 'legacy', keys.key),
      counter: tdes.ksnCounter(ksn),
    };
  } finally {
    zeroize(keys.ipek, keys.transactionKey, keys.key);
  }
}

function runAes(bdk: Buffer, ksn: Buffer, keyType: string, keyAlg: aes.AesDukptKeyType) {
  assertAllowed(
    'keyType',
    (AES_USAGES as string[]).includes(keyType),
    `must be one of ${AES_USAGES.join(', ')} for AES DUKPT`,
  );
  if (ksn.length === aes.DUKPT_AES_KSN_LENGTH && aes.ksnCounter(ksn) === 0) {
    const ik = aes.deriveInitialKey(bdk, aes.initialKeyId(ksn));
    try {
      return { ipek: toHex(ik), ...kcvOf('aes', 'cmac', ik) };
    } finally {
      zeroize(ik);
    }
  }
  const keys = aes.deriveHostKey(bdk, ksn, keyType as aes.AesDukptKeyUsage, keyAlg);
  try {
    return {
      ipek: toHex(keys.initialKey),
      derivationKey: toHex(keys.derivationKey),
      keyType,
      keyAlg,
      key: toHex(keys.key),
      ...workingKcv(keyAlg, keys.key),
      counter: aes.ksnCounter(ksn),
    };
  } finally {
    zeroize(keys.initialKey, keys.derivationKey, keys.key);
  }
}

const dukpt = defineOp({
  path: 'dukpt',
  summary:
    'derive the DUKPT IPEK and working key for a KSN (TDES X9.24-1, or AES X9.24-3 with --aes); prints CLEAR keys',
  options: {
    bdk: hex('base derivation key', { required: true }),
    ksn: hex('key serial number: 10 bytes (TDES) or 12 bytes (AES)', { required: true }),
    keyType: oneOf(KEY_TYPES, 'working key; *-response are TDES only, kek and one-way usages AES only', {
      default: 'pin',
    }),
    aes: flag('AES DUKPT (ANSI X9.24-3:2017)'),
    keyAlg: oneOf(AES_KEY_ALGS, 'AES DUKPT working key algorithm, default aes128'),
  },
  example: 'dukpt --bdk 0123456789ABCDEFFEDCBA9876543210 --ksn FFFF9876543210E00001 --key-type pin',
  fields: {
    bdk: '--bdk',
    ksn: '--ksn',
    initialKeyId: '--ksn',
    type: '--key-type',
    usage: '--key-type',
    keyType: '--key-alg',
  },
  run({ bdk, ksn, keyType, aes: isAes, keyAlg }) {
    assertAllowed('keyAlg', isAes || keyAlg === undefined, 'only applies to AES DUKPT (--aes)');
    return isAes ? runAes(bdk, ksn, keyType, keyAlg ?? 'aes128') : runTdes(bdk, ksn, keyType);
  },
});

export const dukptOps: Operation[] = [dukpt];
