/**
 * The HSM's one internal API. The payShield TCP commands, the HTTP API and the in-process client all
 * call these operations; nothing else touches clear keys. Every key that crosses this boundary is a
 * key block under an LMK (`LmkKeyBlock`), or a cryptogram under a KEK/TMK/ZMK for the outside world.
 * PINs cross it only as encrypted PIN blocks.
 */

import type { CheckValue, KcvMethod } from '../crypto/kcv.js';
import type { MacAlgorithm, MacPadding } from '../crypto/mac.js';
import type { PinBlockFormat } from '../crypto/pinblock.js';
import type { KeyTokenSpec } from '../keyload/tr34.js';

/** A TR-31 version D key block under one of the HSM's LMKs (the LMK id travels inside it). */
export type LmkKeyBlock = string;

/**
 * The key roles of a POS acquirer. Each maps to a TR-31 usage and mode of use (see key-types.ts):
 * TMK/ZMK/KEK K0 wrap/unwrap, TPK/ZPK P0, TAK/ZAK M-usage MAC, TDK/ZEK/DEK D0, BDK B0.
 */
export type KeyType = 'TMK' | 'ZMK' | 'KEK' | 'TPK' | 'ZPK' | 'TAK' | 'ZAK' | 'TDK' | 'ZEK' | 'DEK' | 'BDK';

/** Key algorithm and length in one word. `des` exists only for legacy single-length UnionPay MAKs (60.3 = 001). */
export type KeyAlgorithm = 'des' | 'tdes2' | 'tdes3' | 'aes128' | 'aes192' | 'aes256' | 'sm4';

/** TR-31 exportability: E exportable under a KEK, N never, S sensitive (non-X9.24 forms allowed). */
export type Exportability = 'E' | 'N' | 'S';

/** How a key leaves the HSM under a KEK/TMK/ZMK: a TR-31 block, or the legacy ECB cryptogram (hex). */
export type ExportFormat = 'tr31' | 'legacy';

export interface KeyInfo {
  keyType: KeyType;
  algorithm: KeyAlgorithm;
  usage: string;
  modeOfUse: string;
  exportability: Exportability;
  lmkId: string;
  /** True when the block was made under a development LMK. */
  dev: boolean;
  kcv: CheckValue;
}

export interface GeneratedKey {
  keyBlock: LmkKeyBlock;
  info: KeyInfo;
  /** Present when `exportUnder` was given: the same key under that KEK/TMK/ZMK. */
  exported?: { format: ExportFormat; cryptogram: string };
}

export interface GenerateKeyRequest {
  keyType: KeyType;
  algorithm: KeyAlgorithm;
  exportability?: Exportability;
  kcvMethod?: KcvMethod;
  lmkId?: string;
  /** Also return the key under this key-encryption key (payShield A0 mode 1). */
  exportUnder?: { kek: LmkKeyBlock; format: ExportFormat };
}

/** One working key of a sign-in: under the LMK for the host, under the TMK for the terminal, with its check value. */
export interface SignInKey {
  keyBlock: LmkKeyBlock;
  /** Hex ECB cryptogram under the TMK, as field 62 carries it. */
  underTmk: string;
  /** Legacy check value, 4 bytes (8 hex), as field 62 carries it. */
  checkValue: string;
}

/**
 * The UnionPay sign-in key set (field 62). 60.3 = 001: single-length PIK and MAK; 003: double-length
 * PIK with an 8-byte MAK; 004: as 003 plus a double-length TDK; SM4 terminals: all keys SM4.
 */
export interface SignInKeysRequest {
  tmk: LmkKeyBlock;
  algorithm: 'tdes' | 'sm4';
  /** TDES only. Default: PIK double, MAK single (the 003/004 layout). */
  pinKeyLength?: 'single' | 'double';
  makLength?: 'single' | 'double';
  withTdk?: boolean;
}

export interface SignInKeys {
  tpk: SignInKey;
  tak: SignInKey;
  tdk?: SignInKey;
}

export type ImportSource =
  | { kind: 'tr31'; kek: LmkKeyBlock; block: string }
  | { kind: 'legacy'; kek: LmkKeyBlock; cryptogram: string; kcv?: string }
  | { kind: 'components'; components: string[]; kcvs?: string[] };

export interface ImportKeyRequest {
  keyType: KeyType;
  algorithm: KeyAlgorithm;
  exportability?: Exportability;
  source: ImportSource;
  lmkId?: string;
}

export interface ExportKeyRequest {
  keyBlock: LmkKeyBlock;
  kek: LmkKeyBlock;
  format: ExportFormat;
}

/**
 * A TR-34 two-pass key token built inside the HSM around one of its keys (remote key loading):
 * everything the token needs but the clear key, which never leaves the HSM.
 */
export interface ExportTr34Request {
  keyBlock: LmkKeyBlock;
  token: Omit<KeyTokenSpec, 'clearKey'>;
}

/** Where a PIN block comes from: a TPK/ZPK, or DUKPT (BDK + KSN). */
export type PinSource =
  | { kind: 'key'; keyBlock: LmkKeyBlock }
  | { kind: 'dukpt'; bdk: LmkKeyBlock; ksn: string; aes?: { keyType: 'aes128' | 'aes256' | 'tdes2' } };

export interface TranslatePinRequest {
  source: PinSource;
  destination: LmkKeyBlock;
  /** Hex PIN block under the source key. */
  pinBlock: string;
  fromFormat: PinBlockFormat;
  toFormat: PinBlockFormat;
  pan: string;
}

export type MacKeySource =
  | { kind: 'key'; keyBlock: LmkKeyBlock }
  | { kind: 'dukpt'; bdk: LmkKeyBlock; ksn: string; direction: 'request' | 'response' };

export interface MacRequest {
  key: MacKeySource;
  algorithm: MacAlgorithm;
  /**
   * The message (MAB): hex, or the bytes themselves, which spares an in-process caller the hex
   * round trip of a 200-byte MAB per call (the TCP client sends them as hex).
   */
  data: string | Uint8Array;
  padding?: MacPadding;
  /** MAC length in bytes; the UnionPay ECB MAC is always 8. */
  length?: number;
  output?: 'hex' | 'binary';
}

export interface DataRequest {
  keyBlock: LmkKeyBlock;
  mode: 'ecb' | 'cbc';
  iv?: string;
  data: string;
}

export interface Diagnostics {
  version: string;
  uptimeSeconds: number;
  lmks: { id: string; kcv: string; dev: boolean }[];
  counters: Record<string, number>;
  keyCache: { size: number; hits: number; misses: number; evictions: number };
}

/**
 * The operations. Implementations throw PoskeyError subclasses whose codes map to payShield error
 * codes (src/hsm/payshield/errors.ts) and HTTP statuses. Every key-management call is audited.
 */
export interface HsmApi {
  generateKey(req: GenerateKeyRequest, actor?: string): GeneratedKey;
  generateSignInKeys(req: SignInKeysRequest, actor?: string): SignInKeys;
  importKey(req: ImportKeyRequest, actor?: string): { keyBlock: LmkKeyBlock; info: KeyInfo };
  exportKey(
    req: ExportKeyRequest,
    actor?: string,
  ): { format: ExportFormat; cryptogram: string; kcv: CheckValue };
  /** The KT-KDH token (DER, base64) enveloping the key for one device; needs exportability E or S. */
  exportKeyTr34(req: ExportTr34Request, actor?: string): { token: string; kcv: CheckValue };
  describeKey(keyBlock: LmkKeyBlock): KeyInfo;
  checkValue(keyBlock: LmkKeyBlock, method?: KcvMethod, length?: number): CheckValue;
  /** Returns the PIN block (hex) under the destination key. */
  translatePin(req: TranslatePinRequest): string;
  /** Returns the MAC as hex (for `output: 'hex'` UnionPay MACs: the hex of the 8 ASCII characters). */
  generateMac(req: MacRequest): string;
  /** True when `mac` (hex) verifies; compared in constant time. */
  verifyMac(req: MacRequest & { mac: string }): boolean;
  encryptData(req: DataRequest): string;
  decryptData(req: DataRequest): string;
  /** Re-wraps a key block under another loaded LMK (migration, rotation). */
  migrateKey(keyBlock: LmkKeyBlock, toLmkId: string, actor?: string): LmkKeyBlock;
  randomBytes(length: number): string;
  diagnostics(): Diagnostics;
}

/**
 * What the host holds: the same operations, asynchronous, whether the HSM runs in process or behind
 * the payShield TCP interface (pooled, pipelined, with failover). Swapping one for the other, or for
 * a real payShield, needs no change in the host.
 */
export type HsmClient = {
  [K in keyof HsmApi]: (...args: Parameters<HsmApi[K]>) => Promise<ReturnType<HsmApi[K]>>;
} & { close(): Promise<void> };
