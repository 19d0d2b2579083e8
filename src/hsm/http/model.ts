/**
 * Names on the wire ↔ poskey values. The API speaks AWS Payment Cryptography's enum names
 * (TDES_2KEY, TR31_P0_PIN_ENCRYPTION_KEY, ISO_FORMAT_0, ISO9797_ALGORITHM3…) with poskey additions
 * where AWS has none (SM4, DES, the UnionPay ECB MAC, the SM4 PIN block); HsmApi speaks poskey.
 */
import type { MacAlgorithm } from '../../crypto/mac.js';
import type { PinBlockFormat } from '../../crypto/pinblock.js';
import type { Exportability, KeyAlgorithm, KeyType } from '../api.js';
import { lmkIdOfBlock } from '../keyblock.js';
import type { KeyRecord } from './key-table.js';

/** Key roles (HsmApi `KeyType`). */
export const KEY_TYPES: readonly KeyType[] = [
  'TMK',
  'ZMK',
  'KEK',
  'TPK',
  'ZPK',
  'TAK',
  'ZAK',
  'TDK',
  'ZEK',
  'DEK',
  'BDK',
];

/** Which key roles an operation accepts; the table's key type decides before the HSM is asked. */
export const KEY_FAMILIES = Object.freeze({
  wrapping: ['TMK', 'ZMK', 'KEK'],
  pin: ['TPK', 'ZPK'],
  mac: ['TAK', 'ZAK'],
  data: ['TDK', 'ZEK', 'DEK'],
  dukpt: ['BDK'],
} satisfies Record<string, readonly KeyType[]>);

export const KEY_ALGORITHMS: Readonly<Record<string, KeyAlgorithm>> = Object.freeze({
  TDES_2KEY: 'tdes2',
  TDES_3KEY: 'tdes3',
  AES_128: 'aes128',
  AES_192: 'aes192',
  AES_256: 'aes256',
  SM4: 'sm4',
  DES: 'des',
});

export const EXPORTABILITIES: Readonly<Record<string, Exportability>> = Object.freeze({
  EXPORTABLE: 'E',
  NON_EXPORTABLE: 'N',
  SENSITIVE: 'S',
});

export const KCV_ALGORITHMS: Readonly<Record<string, 'legacy' | 'cmac'>> = Object.freeze({
  ANSI_X9_24: 'legacy',
  CMAC: 'cmac',
});

/** AWS KeyUsage names of the TR-31 usages poskey keys carry. */
export const KEY_USAGES: Readonly<Record<string, string>> = Object.freeze({
  TR31_B0_BASE_DERIVATION_KEY: 'B0',
  TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY: 'D0',
  TR31_K0_KEY_ENCRYPTION_KEY: 'K0',
  TR31_K1_KEY_BLOCK_PROTECTION_KEY: 'K1',
  TR31_M0_ISO_16609_MAC_KEY: 'M0',
  TR31_M1_ISO_9797_1_MAC_KEY: 'M1',
  TR31_M3_ISO_9797_3_MAC_KEY: 'M3',
  TR31_M6_ISO_9797_5_CMAC_KEY: 'M6',
  TR31_P0_PIN_ENCRYPTION_KEY: 'P0',
});

/** The key role CreateKey makes for a usage given without a keyType. */
export const USAGE_KEY_TYPES: Readonly<Record<string, KeyType>> = Object.freeze({
  B0: 'BDK',
  D0: 'DEK',
  K0: 'KEK',
  K1: 'KEK',
  M0: 'ZAK',
  M1: 'ZAK',
  M3: 'ZAK',
  M6: 'ZAK',
  P0: 'ZPK',
});

export const PIN_FORMATS: Readonly<Record<string, PinBlockFormat>> = Object.freeze({
  ISO_FORMAT_0: 0,
  ISO_FORMAT_1: 1,
  ISO_FORMAT_3: 3,
  ISO_FORMAT_4: 4,
  SM4_ISO_FORMAT_0: 'sm4',
});

export const MAC_ALGORITHMS: Readonly<Record<string, MacAlgorithm>> = Object.freeze({
  ISO9797_ALGORITHM1: 'cbc',
  ISO9797_ALGORITHM3: 'retail',
  CMAC: 'cmac',
  UNIONPAY_ECB: 'unionpay-ecb',
});

/** AES DUKPT derivation key types (AWS DukptDerivationType); absent = TDES DUKPT. */
export const DUKPT_KEY_TYPES: Readonly<Record<string, 'aes128' | 'aes256' | 'tdes2'>> = Object.freeze({
  AES_128: 'aes128',
  AES_256: 'aes256',
  TDES_2KEY: 'tdes2',
});

function nameOf<V>(table: Readonly<Record<string, V>>, value: V): string | undefined {
  return Object.keys(table).find((k) => table[k] === value);
}

/** AWS name of a TR-31 usage code; `TR31_<code>` for one without an AWS name. */
export function usageName(code: string): string {
  return nameOf(KEY_USAGES, code) ?? `TR31_${code}`;
}

export function algorithmName(alg: KeyAlgorithm): string {
  return nameOf(KEY_ALGORITHMS, alg) ?? alg;
}

export function exportabilityName(e: Exportability): string {
  return nameOf(EXPORTABILITIES, e) ?? e;
}

export function kcvAlgorithmName(method: 'legacy' | 'cmac'): string {
  return nameOf(KCV_ALGORITHMS, method) ?? method;
}

export interface KeyModesOfUse {
  encrypt: boolean;
  decrypt: boolean;
  wrap: boolean;
  unwrap: boolean;
  generate: boolean;
  sign: boolean;
  verify: boolean;
  deriveKey: boolean;
  noRestrictions: boolean;
}

const MODE_FLAGS: Readonly<Record<string, readonly (keyof KeyModesOfUse)[]>> = {
  B: ['encrypt', 'decrypt', 'wrap', 'unwrap'],
  C: ['generate', 'verify'],
  D: ['decrypt', 'unwrap'],
  E: ['encrypt', 'wrap'],
  G: ['generate'],
  N: ['noRestrictions'],
  S: ['sign'],
  V: ['verify'],
  X: ['deriveKey'],
  Y: ['deriveKey'],
};

/** AWS KeyModesOfUse booleans for a TR-31 mode of use letter. */
export function modesOfUse(mode: string): KeyModesOfUse {
  const on = new Set(MODE_FLAGS[mode] ?? []);
  const flag = (k: keyof KeyModesOfUse) => on.has(k);
  return {
    encrypt: flag('encrypt'),
    decrypt: flag('decrypt'),
    wrap: flag('wrap'),
    unwrap: flag('unwrap'),
    generate: flag('generate'),
    sign: flag('sign'),
    verify: flag('verify'),
    deriveKey: flag('deriveKey'),
    noRestrictions: flag('noRestrictions'),
  };
}

/** Key ARNs: `arn:poskey:hsm:<instance>:key/<id>` and `…:alias/<name>`. */
export class Arns {
  readonly instance: string;

  constructor(instance: string) {
    this.instance = instance;
  }

  key(id: string): string {
    return `arn:poskey:hsm:${this.instance}:key/${id}`;
  }

  /**
   * Splits a key identifier (id, alias name, or either as an ARN of this instance).
   * @returns undefined for an ARN of another instance
   */
  parse(identifier: string): { kind: 'key' | 'alias'; name: string } | undefined {
    const m = /^arn:poskey:hsm:([a-z0-9-]+):(key\/|alias\/)(.+)$/.exec(identifier);
    if (m === null)
      return identifier.startsWith('alias/')
        ? { kind: 'alias', name: identifier }
        : { kind: 'key', name: identifier };
    if (m[1] !== this.instance) return undefined;
    return m[2] === 'key/' ? { kind: 'key', name: m[3]! } : { kind: 'alias', name: `alias/${m[3]}` };
  }
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

function lmkIdOf(block: string | undefined): string | undefined {
  if (block === undefined) return undefined;
  try {
    return lmkIdOfBlock(block);
  } catch {
    return undefined;
  }
}

/** The KeyAttributes object of a key record. */
function keyAttributesJson(rec: KeyRecord): Record<string, unknown> {
  return {
    keyUsage: usageName(rec.usage),
    keyClass: 'SYMMETRIC_KEY',
    keyAlgorithm: algorithmName(rec.algorithm),
    keyModesOfUse: modesOfUse(rec.modeOfUse),
  };
}

/** The Key object of every key-returning response. Never the key block: keys leave only by ExportKey. */
export function keyJson(rec: KeyRecord, arns: Arns, aliases?: string[]): Record<string, unknown> {
  return {
    keyArn: arns.key(rec.id),
    keyId: rec.id,
    keyType: rec.keyType,
    keyAttributes: keyAttributesJson(rec),
    keyCheckValue: rec.kcv,
    keyCheckValueAlgorithm: kcvAlgorithmName(rec.kcvMethod),
    exportable: rec.exportability !== 'N',
    exportability: exportabilityName(rec.exportability),
    keyState: rec.state,
    enabled: rec.enabled,
    keyOrigin: rec.origin,
    createTimestamp: iso(rec.created),
    usageStartTimestamp: iso(rec.usageStart),
    usageStopTimestamp: iso(rec.usageStop),
    deletePendingTimestamp: iso(rec.deletePending),
    deleteTimestamp: iso(rec.deleteAt),
    lmkId: lmkIdOf(rec.keyBlock),
    aliases,
  };
}

/** The short form ListKeys returns. */
export function keySummaryJson(rec: KeyRecord, arns: Arns): Record<string, unknown> {
  return {
    keyArn: arns.key(rec.id),
    keyId: rec.id,
    keyType: rec.keyType,
    keyAttributes: keyAttributesJson(rec),
    keyCheckValue: rec.kcv,
    exportable: rec.exportability !== 'N',
    keyState: rec.state,
    enabled: rec.enabled,
  };
}
