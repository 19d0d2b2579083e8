/**
 * The software payment HSM: one stateless implementation of `HsmApi` behind the payShield TCP
 * commands, the HTTP API and the in-process client.
 *
 * Keys arrive as LMK key blocks (TR-31 version D under an LMK, see keyblock.ts). The clear key of a
 * block lives only in a KeyHandle held by the KeyCache, keyed by the block string, so a repeated
 * command under the same keys costs no unwrap; any Hsm with the same LMKs serves any request. Every
 * use enforces the authenticated header (usage, algorithm, mode of use, exportability) through
 * `assertKeyUsage`, cached or not.
 *
 * Rules beyond the header, and why:
 * - PINs leave only as PIN blocks under a P0 key; no operation returns a clear PIN or a PIN key.
 * - A key is never wrapped under a weaker key (security strength, SP 800-57): POSKEY_ERR_KEK_STRENGTH.
 * - Exportability: N never leaves; E leaves only as a TR-31 block; S may also leave as a legacy ECB
 *   cryptogram (payShield and X9.143 semantics). Delivery at generation (A0 mode 1, sign-in) is
 *   part of making the key and is allowed whatever the exportability of the LMK copy.
 * - K1 keys protect key blocks only (X9.143): legacy ECB wrapping needs a K0 key.
 *
 * Audit: every key-management call (generate, sign-in, import, export, migrate) appends who, what,
 * the KCV, the LMK id and the result, never key material. The API is synchronous and the log
 * group-commits, so a record reaches the disk just after the call returns; if the log ever fails,
 * every later key-management call is refused (fail closed).
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { fromHex, toHex, zeroize } from '../crypto/bytes.js';
import { type CipherAlgorithm, createKey, type KeyHandle } from '../crypto/cipher.js';
import * as dukptAes from '../crypto/dukpt-aes.js';
import * as dukptTdes from '../crypto/dukpt-tdes.js';
import { assertCheckValue, type CheckValue, checkValue, type KcvMethod } from '../crypto/kcv.js';
import {
  assertOddParity,
  assertStrongKey,
  combineComponents,
  generateKey as randomKey,
} from '../crypto/keys.js';
import { generateMac, type MacAlgorithm, type MacOptions, verifyMac } from '../crypto/mac.js';
import { translatePinBlock } from '../crypto/pinblock.js';
import {
  parseHeader,
  type Tr31Header,
  type Tr31OptionalBlock,
  type Tr31Version,
  unwrapKeyBlock,
  wrapKeyBlock,
} from '../crypto/tr31.js';
import { PoskeyError } from '../errors.js';
import { buildKeyToken } from '../keyload/tr34.js';
import type {
  DataRequest,
  Diagnostics,
  Exportability,
  ExportFormat,
  ExportKeyRequest,
  ExportTr34Request,
  GeneratedKey,
  GenerateKeyRequest,
  HsmApi,
  ImportKeyRequest,
  KeyAlgorithm,
  KeyInfo,
  KeyType,
  LmkKeyBlock,
  MacKeySource,
  MacRequest,
  PinSource,
  SignInKey,
  SignInKeys,
  SignInKeysRequest,
  TranslatePinRequest,
} from './api.js';
import { type AuditEntry, type AuditLog, assertAuditEntry } from './audit.js';
import { HsmError } from './errors.js';
import { type CachedKey, DEFAULT_KEY_CACHE_CAPACITY, KeyCache } from './key-cache.js';
import {
  assertExportability,
  assertExportable,
  assertImportedHeader,
  assertKeyTypeAlgorithm,
  assertStrength,
  defaultKcvMethod,
  KEY_ALGORITHMS,
  KEY_TYPE_BLOCK,
  type KeyTypeSpec,
  keyAlgorithmOf,
  keyTypeOfHeader,
  MAC_ALGORITHM_USAGES,
  tightened,
  usageFor,
} from './key-types.js';
import {
  DEV_BLOCK,
  isDevBlock,
  KBPK_KCV_BLOCK,
  type KeyExpectation,
  LMK_ID_BLOCK,
  resolveLmkKey,
  rewrapToLmk,
  wrapUnderLmk,
} from './keyblock.js';
import { assertLmkId, type LmkSet } from './lmk.js';
import { toPayShieldError } from './payshield/errors.js';
import {
  type GeneratePvvRequest,
  type PinVerificationApi,
  PVK_USAGE,
  type VerifyPinPvvRequest,
  verifyPvvFromPinBlock,
  visaPvv,
} from './pvv.js';

/** Reported by `diagnostics()`; kept equal to package.json's version (a test checks). */
export const HSM_VERSION = '0.1.0';

export interface HsmOptions {
  lmks: LmkSet;
  audit?: AuditLog;
  /** Key cache capacity (unwrapped keys kept); DEFAULT_KEY_CACHE_CAPACITY by default. */
  cacheSize?: number;
  /** Random source for keys, key block padding, PIN block fill and `randomBytes` (tests). */
  random?: (n: number) => Buffer;
  /** Time source for uptime (tests). */
  clock?: () => Date;
}

/** Every operation counted by `diagnostics()`, as `<op>.ok` and `<op>.error`. */
export const HSM_OPERATIONS = [
  'generateKey',
  'generateSignInKeys',
  'importKey',
  'exportKey',
  'exportKeyTr34',
  'describeKey',
  'checkValue',
  'translatePin',
  'generateMac',
  'verifyMac',
  'encryptData',
  'decryptData',
  'migrateKey',
  'randomBytes',
  'diagnostics',
] as const;

export type HsmOperation = (typeof HSM_OPERATIONS)[number];

type Counter = { ok: number; error: number };
type Entry = CachedKey<Tr31Header>;
type Role = 'source' | 'destination';

/** Most random bytes one call returns. */
export const MAX_RANDOM_BYTES = 1024;
/** Shortest MAC the HSM generates or accepts (ISO/IEC 9797-1 recommends at least 32 bits). */
export const MIN_MAC_LENGTH = 4;
/** Shortest KCV accepted on import. */
const MIN_KCV_LENGTH = 2;
/** UnionPay field 62 check values: 4 bytes of E_K(0). */
const SIGN_IN_KCV = { method: 'legacy', length: 4 } as const;

// Expectations are constants so that enforcing them on the hot path allocates nothing.
const PIN_SOURCE: KeyExpectation = { usage: ['P0'], modeOfUse: ['D'] };
const PIN_DESTINATION: KeyExpectation = { usage: ['P0'], modeOfUse: ['E'] };
const BDK: KeyExpectation = { usage: ['B0'], modeOfUse: ['X'] };
const DATA_ENCRYPT: KeyExpectation = { usage: ['D0'], modeOfUse: ['E'] };
const DATA_DECRYPT: KeyExpectation = { usage: ['D0'], modeOfUse: ['D'] };
const PVK_GENERATE: KeyExpectation = { usage: [PVK_USAGE], modeOfUse: ['G'] };
const PVK_VERIFY: KeyExpectation = { usage: [PVK_USAGE], modeOfUse: ['V'] };
const KEK: Readonly<Record<ExportFormat, { wrap: KeyExpectation; unwrap: KeyExpectation }>> = {
  tr31: {
    wrap: { usage: ['K0', 'K1'], modeOfUse: ['E'] },
    unwrap: { usage: ['K0', 'K1'], modeOfUse: ['D'] },
  },
  legacy: { wrap: { usage: ['K0'], modeOfUse: ['E'] }, unwrap: { usage: ['K0'], modeOfUse: ['D'] } },
};
const MAC_EXPECT = Object.fromEntries(
  Object.entries(MAC_ALGORITHM_USAGES).map(([alg, usage]) => [
    alg,
    { G: { usage, modeOfUse: ['G'] }, V: { usage, modeOfUse: ['V'] } },
  ]),
) as Record<MacAlgorithm, { G: KeyExpectation; V: KeyExpectation }>;

/** Optional blocks that describe the LMK wrapping or a transport KBPK; they never cross between the two. */
const WRAPPING_BLOCKS = new Set([LMK_ID_BLOCK, DEV_BLOCK, KBPK_KCV_BLOCK, KEY_TYPE_BLOCK, 'PB', 'PK']);

function typeError(field: string, reason: string): HsmError {
  return new HsmError('POSKEY_ERR_TYPE', reason, { field, payShield: '15' });
}

function assertRequest(req: unknown, field = 'request'): void {
  if (typeof req !== 'object' || req === null) throw typeError(field, 'must be an object');
}

/** Re-throws a key's error naming the request field, with the payShield code it maps to for that role. */
function inContext(e: unknown, field: string, role: Role): unknown {
  if (!(e instanceof PoskeyError)) return e;
  return new HsmError(e.code, e.reason, {
    field: e.field === undefined ? field : `${field}.${e.field}`,
    cause: e,
    payShield: toPayShieldError(e, role),
  });
}

function codeOf(e: unknown): string {
  return e instanceof PoskeyError ? e.code : 'POSKEY_ERR_INTERNAL';
}

function keepBlocks(blocks: readonly Tr31OptionalBlock[]): Tr31OptionalBlock[] {
  return blocks.filter((b) => !WRAPPING_BLOCKS.has(b.id));
}

/** What goes into an LMK block besides the key. */
interface StoreSpec {
  keyType: KeyType;
  algorithm: KeyAlgorithm;
  usage: string;
  modeOfUse: string;
  exportability: Exportability;
  lmkId?: string | undefined;
  keyVersion?: string;
  optionalBlocks?: Tr31OptionalBlock[];
}

/** What an audit record says about one key. */
interface AuditFacts {
  kcv?: string;
  lmkId?: string;
  detail?: string;
}

/** Result of an audited operation body: its value and one record per key concerned. */
interface Audited<T> {
  value: T;
  records: AuditFacts[];
}

/**
 * The HSM. Construct one per process (or several: they share nothing but the LmkSet) and call it
 * synchronously; every method throws PoskeyError subclasses whose `toPayShieldError` code is the
 * wire answer.
 * @example
 * const hsm = new Hsm({ lmks, audit });
 * const { keyBlock } = hsm.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' }, 'ops');
 * hsm.translatePin({ source: { kind: 'key', keyBlock: tpk }, destination: keyBlock, pinBlock, fromFormat: 0, toFormat: 0, pan });
 */
export class Hsm implements HsmApi, PinVerificationApi {
  readonly #lmks: LmkSet;
  readonly #cache: KeyCache<Tr31Header>;
  readonly #audit: AuditLog | undefined;
  readonly #random: ((n: number) => Buffer) | undefined;
  readonly #draw: (n: number) => Buffer;
  readonly #clock: () => Date;
  readonly #started: number;
  readonly #counters: Record<HsmOperation, Counter>;
  #auditFailure: unknown;

  constructor(options: HsmOptions) {
    assertRequest(options, 'options');
    if (options.lmks === undefined || options.lmks === null) throw typeError('lmks', 'an LmkSet is required');
    this.#lmks = options.lmks;
    this.#cache = new KeyCache<Tr31Header>(options.cacheSize ?? DEFAULT_KEY_CACHE_CAPACITY);
    this.#audit = options.audit;
    this.#random = options.random;
    this.#draw = options.random ?? nodeRandomBytes;
    this.#clock = options.clock ?? (() => new Date());
    this.#started = this.#clock().getTime();
    this.#counters = Object.fromEntries(HSM_OPERATIONS.map((op) => [op, { ok: 0, error: 0 }])) as Record<
      HsmOperation,
      Counter
    >;
  }

  // -------------------------------------------------------------------------------------------
  // Key management (audited)

  /** Generates a key under the LMK, optionally also delivered under a KEK (payShield A0 mode 1). */
  generateKey(req: GenerateKeyRequest, actor?: string): GeneratedKey {
    return this.#audited('generateKey', 'key.generate', actor, () => {
      assertRequest(req);
      const spec = assertKeyTypeAlgorithm(req.keyType, req.algorithm);
      const exportability = req.exportability === undefined ? 'E' : assertExportability(req.exportability);
      const kcvMethod = req.kcvMethod ?? defaultKcvMethod(req.algorithm);
      const under = req.exportUnder;
      if (under !== undefined) assertRequest(under, 'exportUnder');
      const kek = under === undefined ? undefined : this.#exportKek(under.kek, under.format, 'exportUnder.');
      const { cipher, length } = KEY_ALGORITHMS[req.algorithm];
      if (kek !== undefined) assertStrength({ algorithm: cipher, length }, kek.handle);
      const clear = randomKey(cipher, length, this.#draw);
      try {
        const { block, entry } = this.#store(
          {
            keyType: req.keyType,
            algorithm: req.algorithm,
            usage: usageFor(req.keyType, req.algorithm),
            modeOfUse: spec.modeOfUse,
            exportability,
            lmkId: req.lmkId,
          },
          clear,
        );
        const info = this.#info(entry, kcvMethod);
        const value: GeneratedKey = { keyBlock: block, info };
        let detail = `${req.keyType} ${req.algorithm} ${exportability}`;
        if (kek !== undefined && under !== undefined) {
          const format = under.format;
          value.exported = { format, cryptogram: this.#wrapOut(entry, kek, format, true) };
          detail += ` delivered ${format} under KEK ${this.#kcvOf(kek)}`;
        }
        return { value, records: [{ kcv: info.kcv.value, lmkId: entry.lmkId, detail }] };
      } finally {
        zeroize(clear);
      }
    });
  }

  /**
   * The UnionPay sign-in working keys: TPK, TAK and optionally TDK, each under the LMK and under the
   * terminal's TMK as the legacy ECB cryptogram, with the 4-byte check value field 62 carries.
   * The LMK copies are not exportable: the terminal already has them, and a new sign-in makes new keys.
   */
  generateSignInKeys(req: SignInKeysRequest, actor?: string): SignInKeys {
    return this.#audited('generateSignInKeys', 'key.signin', actor, () => {
      assertRequest(req);
      const plan = signInPlan(req);
      const tmk = this.#key(req.tmk, KEK.legacy.wrap, 'tmk');
      const want: CipherAlgorithm = req.algorithm === 'sm4' ? 'sm4' : 'tdes';
      if (tmk.handle.algorithm !== want) {
        throw new HsmError('POSKEY_ERR_KEY_ALGORITHM', `a ${req.algorithm} sign-in needs a ${want} TMK`, {
          field: 'tmk.algorithm',
          payShield: 'A7',
        });
      }
      const keys = plan.map(([keyType, algorithm]) => this.#signInKey(keyType, algorithm, tmk));
      const value: SignInKeys = { tpk: keys[0]!.key, tak: keys[1]!.key };
      if (keys[2] !== undefined) value.tdk = keys[2].key;
      const tmkKcv = this.#kcvOf(tmk);
      const records = keys.map(({ key, lmkId }, i) => ({
        kcv: key.checkValue,
        lmkId,
        detail: `${plan[i]![0]} ${plan[i]![1]} under TMK ${tmkKcv}`,
      }));
      return { value, records };
    });
  }

  /** Imports a key: a TR-31 block under a KEK, a legacy ECB cryptogram under a TMK/ZMK, or clear components. */
  importKey(req: ImportKeyRequest, actor?: string): { keyBlock: LmkKeyBlock; info: KeyInfo } {
    return this.#audited('importKey', 'key.import', actor, () => {
      assertRequest(req);
      const spec = assertKeyTypeAlgorithm(req.keyType, req.algorithm);
      if (req.exportability !== undefined) assertExportability(req.exportability);
      assertRequest(req.source, 'source');
      const kind = req.source.kind;
      let stored: { block: string; entry: Entry };
      if (kind === 'tr31') stored = this.#importTr31(req, spec);
      else if (kind === 'legacy') stored = this.#importLegacy(req, spec);
      else if (kind === 'components') stored = this.#importComponents(req, spec);
      else throw typeError('source.kind', "must be 'tr31', 'legacy' or 'components'");
      const { block, entry } = stored;
      const info = this.#info(entry);
      const detail = `${req.keyType} ${req.algorithm} ${info.exportability} from ${kind}`;
      return {
        value: { keyBlock: block, info },
        records: [{ kcv: info.kcv.value, lmkId: entry.lmkId, detail }],
      };
    });
  }

  /** Exports a key under a KEK: TR-31 (needs exportability E or S) or legacy ECB (needs S). */
  exportKey(
    req: ExportKeyRequest,
    actor?: string,
  ): { format: ExportFormat; cryptogram: string; kcv: CheckValue } {
    return this.#audited('exportKey', 'key.export', actor, () => {
      assertRequest(req);
      const key = this.#key(req.keyBlock, undefined, 'keyBlock');
      const kek = this.#exportKek(req.kek, req.format, '');
      const cryptogram = this.#wrapOut(key, kek, req.format);
      const kcv = this.#kcv(key);
      const detail = `${keyTypeOfHeader(key.header)} ${req.format} under KEK ${this.#kcvOf(kek)}`;
      return {
        value: { format: req.format, cryptogram, kcv },
        records: [{ kcv: kcv.value, lmkId: key.lmkId, detail }],
      };
    });
  }

  /**
   * Builds the TR-34 key token for one device around a key of this HSM: the clear key exists only
   * here, for the time the envelope takes (RSA-OAEP or SM2 to the device's certificate).
   */
  exportKeyTr34(req: ExportTr34Request, actor?: string): { token: string; kcv: CheckValue } {
    return this.#audited('exportKeyTr34', 'key.export', actor, () => {
      assertRequest(req);
      const key = this.#key(req.keyBlock, undefined, 'keyBlock');
      assertExportable(key.header, 'tr31');
      const bytes = key.handle.exportKeyBytes();
      try {
        const token = buildKeyToken({ ...req.token, clearKey: bytes }).toString('base64');
        const kcv = this.#kcv(key);
        const detail = `${keyTypeOfHeader(key.header)} TR-34 token for ${req.token.algorithm ?? 'rsa'} device`;
        return { value: { token, kcv }, records: [{ kcv: kcv.value, lmkId: key.lmkId, detail }] };
      } finally {
        zeroize(bytes);
      }
    });
  }

  /** Re-wraps a key block under another loaded LMK (migration, rotation). */
  migrateKey(keyBlock: LmkKeyBlock, toLmkId: string, actor?: string): LmkKeyBlock {
    return this.#audited('migrateKey', 'key.migrate', actor, () => {
      assertLmkId(toLmkId, 'toLmkId');
      const key = this.#key(keyBlock, undefined, 'keyBlock');
      const block = rewrapToLmk(this.#lmks, keyBlock, toLmkId);
      return {
        value: block,
        records: [{ kcv: this.#kcv(key).value, lmkId: toLmkId, detail: `from LMK ${key.lmkId}` }],
      };
    });
  }

  // -------------------------------------------------------------------------------------------
  // Key information

  describeKey(keyBlock: LmkKeyBlock): KeyInfo {
    return this.#counted('describeKey', () => this.#info(this.#key(keyBlock, undefined, 'keyBlock')));
  }

  checkValue(keyBlock: LmkKeyBlock, method?: KcvMethod, length?: number): CheckValue {
    return this.#counted('checkValue', () => {
      const key = this.#key(keyBlock, undefined, 'keyBlock');
      const m = method ?? defaultKcvMethod(keyAlgorithmOf(key.handle));
      return length === undefined
        ? checkValue(key.handle, { method: m })
        : checkValue(key.handle, { method: m, length });
    });
  }

  // -------------------------------------------------------------------------------------------
  // PIN, MAC, data (hot paths: no closures, constant expectations, hex parsed once)

  translatePin(req: TranslatePinRequest): string {
    const counter = this.#counters.translatePin;
    try {
      assertRequest(req);
      const destination = this.#key(req.destination, PIN_DESTINATION, 'destination', 'destination').handle;
      const block = fromHex(req.pinBlock, 'pinBlock');
      const opts = { from: req.fromFormat, to: req.toFormat, pan: req.pan, random: this.#random };
      const source = req.source;
      let out: Buffer;
      if (source?.kind === 'key') {
        const key = this.#key(source.keyBlock, PIN_SOURCE, 'source.keyBlock').handle;
        out = translatePinBlock(key, destination, block, opts);
      } else {
        const key = this.#dukptPinKey(source);
        try {
          out = translatePinBlock(key, destination, block, opts);
        } finally {
          key.destroy();
        }
      }
      counter.ok++;
      return toHex(out);
    } catch (e) {
      counter.error++;
      throw e;
    }
  }

  generateMac(req: MacRequest): string {
    const counter = this.#counters.generateMac;
    try {
      assertRequest(req);
      const opts = macOptions(req);
      const data = macData(req.data);
      const key = this.#macKey(req, 'G');
      let mac: Buffer;
      try {
        mac = generateMac(req.algorithm, key, data, opts);
      } finally {
        if (req.key.kind === 'dukpt') key.destroy();
      }
      counter.ok++;
      return toHex(mac);
    } catch (e) {
      counter.error++;
      throw e;
    }
  }

  /** Recomputes the MAC and compares in constant time; the length expected comes from `length`, never from `mac`. */
  verifyMac(req: MacRequest & { mac: string }): boolean {
    const counter = this.#counters.verifyMac;
    try {
      assertRequest(req);
      const opts = macOptions(req);
      const data = macData(req.data);
      const mac = fromHex(req.mac, 'mac');
      const key = this.#macKey(req, 'V');
      let ok: boolean;
      try {
        ok = verifyMac(req.algorithm, key, data, mac, opts);
      } finally {
        if (req.key.kind === 'dukpt') key.destroy();
      }
      counter.ok++;
      return ok;
    } catch (e) {
      counter.error++;
      throw e;
    }
  }

  encryptData(req: DataRequest): string {
    return this.#counted('encryptData', () => this.#data(req, true));
  }

  /** Decrypts data under a D0 key (TDK track data). PIN keys are P0, so no PIN block can be opened here. */
  decryptData(req: DataRequest): string {
    return this.#counted('decryptData', () => this.#data(req, false));
  }

  randomBytes(length: number): string {
    return this.#counted('randomBytes', () => {
      if (!Number.isSafeInteger(length) || length < 1 || length > MAX_RANDOM_BYTES) {
        throw new HsmError('POSKEY_ERR_LENGTH', `length must be 1 to ${MAX_RANDOM_BYTES} bytes`, {
          field: 'length',
          payShield: '15',
        });
      }
      const bytes = this.#draw(length);
      if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
        throw new HsmError('POSKEY_ERR_RANDOM', 'random source returned the wrong length', {
          field: 'random',
        });
      }
      return toHex(bytes);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Issuer PIN verification (PinVerificationApi, src/hsm/pvv.ts; not part of HsmApi)

  /** The Visa PVV of a PIN at issuance: the only operation a clear PIN enters; it is never kept. */
  generatePvv(req: GeneratePvvRequest): string {
    assertRequest(req);
    const pvk = this.#key(req.pvk, PVK_GENERATE, 'pvk').handle;
    return visaPvv(pvk, req.pan, req.pvki, req.pin);
  }

  /** Decrypts the PIN block under the ZPK inside, and compares its PVV with `pvv` in constant time. */
  verifyPinPvv(req: VerifyPinPvvRequest): boolean {
    assertRequest(req);
    const zpk = this.#key(req.zpk, PIN_SOURCE, 'zpk').handle;
    const pvk = this.#key(req.pvk, PVK_VERIFY, 'pvk').handle;
    return verifyPvvFromPinBlock(zpk, pvk, req);
  }

  // -------------------------------------------------------------------------------------------
  // Diagnostics

  diagnostics(): Diagnostics {
    return this.#counted('diagnostics', () => {
      const counters: Record<string, number> = {};
      for (const op of HSM_OPERATIONS) {
        counters[`${op}.ok`] = this.#counters[op].ok;
        counters[`${op}.error`] = this.#counters[op].error;
      }
      const { size, hits, misses, evictions } = this.#cache.stats();
      return {
        version: HSM_VERSION,
        uptimeSeconds: Math.max(0, Math.floor((this.#clock().getTime() - this.#started) / 1000)),
        lmks: this.#lmks.ids().map((id) => {
          const lmk = this.#lmks.get(id);
          return { id: lmk.id, kcv: lmk.kcv, dev: lmk.dev };
        }),
        counters,
        keyCache: { size, hits, misses, evictions },
      };
    });
  }

  /** Drops and zeroises every cached key (shutdown). The Hsm keeps working, unwrapping afresh. */
  destroy(): void {
    this.#cache.clear();
  }

  // -------------------------------------------------------------------------------------------
  // Internals: counting, audit

  #counted<T>(op: HsmOperation, body: () => T): T {
    const counter = this.#counters[op];
    try {
      const value = body();
      counter.ok++;
      return value;
    } catch (e) {
      counter.error++;
      throw e;
    }
  }

  #audited<T>(op: HsmOperation, action: string, actor: string | undefined, body: () => Audited<T>): T {
    return this.#counted(op, () => {
      const who = actor ?? 'system';
      // Checked before the work, so a bad actor name is the caller's error, not a failed audit write.
      assertAuditEntry({ actor: who, action, result: 'ok' });
      this.#assertAuditable();
      let done: Audited<T>;
      try {
        done = body();
      } catch (e) {
        this.#log({ actor: who, action, result: 'error', detail: codeOf(e) });
        throw e;
      }
      for (const facts of done.records) this.#log({ actor: who, action, result: 'ok', ...facts });
      return done.value;
    });
  }

  #assertAuditable(): void {
    if (this.#auditFailure !== undefined) {
      throw new HsmError(
        'POSKEY_ERR_AUDIT_IO',
        'the audit log failed; key management is refused until it is fixed',
        {
          field: 'audit',
          cause: this.#auditFailure,
          payShield: '41',
        },
      );
    }
  }

  #log(entry: AuditEntry): void {
    if (this.#audit === undefined) return;
    this.#audit.append(entry).catch((e: unknown) => {
      this.#auditFailure ??= e;
    });
  }

  // -------------------------------------------------------------------------------------------
  // Internals: keys

  /** The cached key of an LMK block, with `expect` enforced; errors name `field`. */
  #key(block: unknown, expect: KeyExpectation | undefined, field: string, role: Role = 'source'): Entry {
    if (typeof block !== 'string') throw typeError(field, 'must be an LMK key block');
    try {
      return resolveLmkKey(this.#lmks, this.#cache, block, expect);
    } catch (e) {
      throw inContext(e, field, role);
    }
  }

  #exportKek(kek: LmkKeyBlock, format: ExportFormat, prefix: string): Entry {
    const expect = Object.hasOwn(KEK, format) ? KEK[format].wrap : undefined;
    if (expect === undefined) throw typeError(`${prefix}format`, "must be 'tr31' or 'legacy'");
    return this.#key(kek, expect, `${prefix}kek`, 'destination');
  }

  /** Wraps a new or imported key under the LMK and caches its handle (the next command finds it warm). */
  #store(spec: StoreSpec, clear: Buffer, handle?: KeyHandle): { block: string; entry: Entry } {
    const { letter, cipher } = KEY_ALGORITHMS[spec.algorithm];
    let made: KeyHandle | undefined = handle;
    try {
      const block = wrapUnderLmk(this.#lmks, {
        usage: spec.usage,
        algorithm: letter,
        modeOfUse: spec.modeOfUse,
        exportability: spec.exportability,
        key: clear,
        lmkId: spec.lmkId,
        keyVersion: spec.keyVersion ?? '00',
        optionalBlocks: [...(spec.optionalBlocks ?? []), { id: KEY_TYPE_BLOCK, data: spec.keyType }],
        random: this.#random,
      });
      const header = parseHeader(block);
      const lmkId = this.#lmks.get(spec.lmkId).id;
      made ??= createKey(cipher, clear);
      const own = made;
      const entry = this.#cache.get(block, () => ({ handle: own, header, lmkId }));
      // Only a cache that already held this very block (never, with random padding) keeps its own handle.
      if (entry.handle === own) made = undefined;
      return { block, entry };
    } finally {
      made?.destroy();
    }
  }

  #info(entry: Entry, method?: KcvMethod): KeyInfo {
    const h = entry.header;
    return {
      keyType: keyTypeOfHeader(h),
      algorithm: keyAlgorithmOf(entry.handle),
      usage: h.usage,
      modeOfUse: h.modeOfUse,
      exportability: h.exportability as Exportability,
      lmkId: entry.lmkId,
      dev: isDevBlock(h),
      kcv: this.#kcv(entry, method),
    };
  }

  #kcv(entry: Entry, method?: KcvMethod): CheckValue {
    return checkValue(entry.handle, { method: method ?? defaultKcvMethod(keyAlgorithmOf(entry.handle)) });
  }

  /** A KEK's KCV for audit details. */
  #kcvOf(entry: Entry): string {
    return this.#kcv(entry).value;
  }

  /** `key` under `kek` as a TR-31 block or a legacy ECB cryptogram (hex), after the export rules. */
  #wrapOut(key: Entry, kek: Entry, format: ExportFormat, delivery = false): string {
    if (!delivery) assertExportable(key.header, format);
    assertStrength(key.handle, kek.handle);
    const bytes = key.handle.exportKeyBytes();
    try {
      if (format === 'legacy') {
        if (bytes.length % kek.handle.blockSize !== 0) {
          throw new HsmError(
            'POSKEY_ERR_KEY_LENGTH',
            `a ${bytes.length}-byte key cannot be ECB-wrapped under a ${kek.handle.blockSize}-byte-block KEK`,
            { field: 'kek', payShield: '27' },
          );
        }
        const wrapped = kek.handle.ecbEncrypt(bytes);
        return toHex(wrapped);
      }
      const wrap = { kbpk: kek.handle, header: exportHeader(key.header, kek.handle), key: bytes };
      return wrapKeyBlock(this.#random === undefined ? wrap : { ...wrap, random: this.#random });
    } finally {
      zeroize(bytes);
    }
  }

  #signInKey(keyType: KeyType, algorithm: KeyAlgorithm, tmk: Entry): { key: SignInKey; lmkId: string } {
    const { cipher, length } = KEY_ALGORITHMS[algorithm];
    const clear = randomKey(cipher, length, this.#draw);
    try {
      const { block, entry } = this.#store(
        {
          keyType,
          algorithm,
          usage: usageFor(keyType, algorithm),
          modeOfUse: assertKeyTypeAlgorithm(keyType, algorithm).modeOfUse,
          exportability: 'N',
        },
        clear,
      );
      const key: SignInKey = {
        keyBlock: block,
        underTmk: this.#wrapOut(entry, tmk, 'legacy', true),
        checkValue: checkValue(entry.handle, SIGN_IN_KCV).value,
      };
      return { key, lmkId: entry.lmkId };
    } finally {
      zeroize(clear);
    }
  }

  #importTr31(req: ImportKeyRequest, spec: KeyTypeSpec): { block: string; entry: Entry } {
    const src = req.source as Extract<ImportKeyRequest['source'], { kind: 'tr31' }>;
    const kek = this.#key(src.kek, KEK.tr31.unwrap, 'source.kek');
    if (typeof src.block !== 'string') throw typeError('source.block', 'must be a TR-31 key block');
    let opened: { header: Tr31Header; key: Buffer };
    try {
      opened = unwrapKeyBlock({ kbpk: kek.handle, block: src.block });
    } catch (e) {
      throw inContext(e, 'source.block', 'source');
    }
    const { header, key } = opened;
    try {
      if (header.version === 'A') {
        throw new HsmError(
          'POSKEY_ERR_TR31_VERSION',
          'version A (variant binding) is deprecated by X9.143; refused',
          {
            field: 'source.block.version',
            payShield: '83',
          },
        );
      }
      assertImportedHeader(header, spec, req.algorithm, key.length);
      assertStrongKey(KEY_ALGORITHMS[req.algorithm].cipher, key, 'source.block');
      return this.#store(
        {
          keyType: req.keyType,
          algorithm: req.algorithm,
          usage: header.usage,
          modeOfUse: header.modeOfUse,
          exportability: tightened(req.exportability, header.exportability),
          lmkId: req.lmkId,
          keyVersion: header.keyVersion,
          optionalBlocks: keepBlocks(header.optionalBlocks),
        },
        key,
      );
    } finally {
      zeroize(key);
    }
  }

  #importLegacy(req: ImportKeyRequest, spec: KeyTypeSpec): { block: string; entry: Entry } {
    const src = req.source as Extract<ImportKeyRequest['source'], { kind: 'legacy' }>;
    const kek = this.#key(src.kek, KEK.legacy.unwrap, 'source.kek');
    const { cipher, length } = KEY_ALGORITHMS[req.algorithm];
    const cryptogram = fromHex(src.cryptogram, 'source.cryptogram');
    if (cryptogram.length !== length || length % kek.handle.blockSize !== 0) {
      throw new HsmError(
        'POSKEY_ERR_LENGTH',
        `a ${req.algorithm} key under this KEK is a ${length}-byte cryptogram in whole ${kek.handle.blockSize}-byte blocks, got ${cryptogram.length}`,
        { field: 'source.cryptogram', payShield: '15' },
      );
    }
    const key = kek.handle.ecbDecrypt(cryptogram);
    let handle: KeyHandle | undefined;
    try {
      if (cipher === 'des' || cipher === 'tdes') assertOddParity(key, 'source.cryptogram');
      assertStrongKey(cipher, key, 'source.cryptogram');
      handle = createKey(cipher, key);
      if (src.kcv !== undefined) assertGivenKcv(handle, src.kcv, req.algorithm, 'source.kcv');
      const stored = this.#store(this.#importSpec(req, spec, 'E'), key, handle);
      handle = undefined;
      return stored;
    } finally {
      handle?.destroy();
      zeroize(key);
    }
  }

  #importComponents(req: ImportKeyRequest, spec: KeyTypeSpec): { block: string; entry: Entry } {
    const src = req.source as Extract<ImportKeyRequest['source'], { kind: 'components' }>;
    if (!Array.isArray(src.components))
      throw typeError('source.components', 'must be an array of hex components');
    if (src.kcvs !== undefined && (!Array.isArray(src.kcvs) || src.kcvs.length !== src.components.length)) {
      throw typeError('source.kcvs', 'must give one KCV per component');
    }
    const { cipher, length } = KEY_ALGORITHMS[req.algorithm];
    const parts: Buffer[] = [];
    let combined: Buffer | undefined;
    try {
      src.components.forEach((c, i) => {
        parts.push(fromHex(c, `source.components[${i}]`));
      });
      assertComponents(parts, length);
      src.kcvs?.forEach((kcv, i) => {
        const h = createKey(cipher, parts[i]!);
        try {
          assertGivenKcv(h, kcv, req.algorithm, `source.kcvs[${i}]`);
        } finally {
          h.destroy();
        }
      });
      combined = combineComponents(cipher, parts).key;
      if (combined.every((b) => b === 0)) {
        throw new HsmError('POSKEY_ERR_COMPONENT', 'components cancel out to an all-zero key', {
          field: 'source.components',
          payShield: '15',
        });
      }
      return this.#store(this.#importSpec(req, spec, 'E'), combined);
    } finally {
      zeroize(...parts, combined);
    }
  }

  #importSpec(req: ImportKeyRequest, spec: KeyTypeSpec, exportability: Exportability): StoreSpec {
    return {
      keyType: req.keyType,
      algorithm: req.algorithm,
      usage: usageFor(req.keyType, req.algorithm),
      modeOfUse: spec.modeOfUse,
      exportability: req.exportability ?? exportability,
      lmkId: req.lmkId,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Internals: DUKPT, MAC, data

  /** BDK clear bytes, kept on the cached handle (zeroised with it) so DUKPT does not export per call. */
  #bdk(source: { bdk: LmkKeyBlock; ksn: string }): { bytes: Buffer; handle: KeyHandle; ksn: Buffer } {
    const entry = this.#key(source.bdk, BDK, 'source.bdk');
    const handle = entry.handle;
    const bytes = handle.derived('hsm-bdk', () => handle.exportKeyBytes());
    return { bytes, handle, ksn: fromHex(source.ksn, 'source.ksn') };
  }

  #dukptPinKey(source: PinSource | undefined): KeyHandle {
    if (source?.kind !== 'dukpt') throw typeError('source.kind', "must be 'key' or 'dukpt'");
    const { bytes, handle, ksn } = this.#bdk(source);
    if (handle.algorithm === 'aes') {
      const keyType = source.aes?.keyType ?? keyAlgorithmOf(handle);
      if (keyType !== 'aes128' && keyType !== 'aes192' && keyType !== 'aes256' && keyType !== 'tdes2') {
        throw typeError('source.aes.keyType', "must be 'aes128', 'aes256' or 'tdes2'");
      }
      return dukptKey(
        dukptAes.deriveHostKey(bytes, ksn, 'pin', keyType),
        keyType === 'tdes2' ? 'tdes' : 'aes',
      );
    }
    if (source.aes !== undefined) {
      throw new HsmError('POSKEY_ERR_KEY_ALGORITHM', 'AES DUKPT needs an AES BDK', {
        field: 'source.aes',
        payShield: 'A7',
      });
    }
    return dukptKey(dukptTdes.deriveHostKey(bytes, ksn, 'pin'), 'tdes');
  }

  #dukptMacKey(source: Extract<MacKeySource, { kind: 'dukpt' }>): KeyHandle {
    const { bytes, handle, ksn } = this.#bdk(source);
    const response = source.direction === 'response';
    if (!response && source.direction !== 'request')
      throw typeError('key.direction', "must be 'request' or 'response'");
    if (handle.algorithm === 'aes') {
      // X9.24-3: the terminal MACs requests with the MAC-generation key and checks responses with
      // the MAC-verification key; the host uses the same key for the same message.
      const keyType = keyAlgorithmOf(handle) as 'aes128' | 'aes192' | 'aes256';
      return dukptKey(
        dukptAes.deriveHostKey(bytes, ksn, response ? 'mac-verify' : 'mac-gen', keyType),
        'aes',
      );
    }
    return dukptKey(dukptTdes.deriveHostKey(bytes, ksn, response ? 'mac-response' : 'mac'), 'tdes');
  }

  /** The MAC key: a cached handle for 'key', a fresh one (the caller destroys it) for 'dukpt'. */
  #macKey(req: MacRequest, op: 'G' | 'V'): KeyHandle {
    const source = req.key;
    if (source?.kind === 'key')
      return this.#key(source.keyBlock, MAC_EXPECT[req.algorithm][op], 'key.keyBlock').handle;
    if (source?.kind === 'dukpt') return this.#dukptMacKey(source);
    throw typeError('key.kind', "must be 'key' or 'dukpt'");
  }

  #data(req: DataRequest, encrypt: boolean): string {
    assertRequest(req);
    const key = this.#key(req.keyBlock, encrypt ? DATA_ENCRYPT : DATA_DECRYPT, 'keyBlock').handle;
    if (req.mode !== 'ecb' && req.mode !== 'cbc') throw typeError('mode', "must be 'ecb' or 'cbc'");
    if (req.mode === 'ecb' && req.iv !== undefined) throw typeError('iv', 'an IV is for CBC only');
    const data = fromHex(req.data, 'data');
    const iv = req.iv === undefined ? undefined : fromHex(req.iv, 'iv');
    let out: Buffer;
    if (req.mode === 'ecb') out = encrypt ? key.ecbEncrypt(data) : key.ecbDecrypt(data);
    else out = encrypt ? key.cbcEncrypt(data, iv) : key.cbcDecrypt(data, iv);
    try {
      return toHex(out);
    } finally {
      zeroize(out, data);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers without state

/** Working key handle from DUKPT host keys; every intermediate buffer is zeroised. */
function dukptKey(keys: { key: Buffer }, cipher: CipherAlgorithm): KeyHandle {
  try {
    return createKey(cipher, keys.key);
  } finally {
    for (const b of Object.values(keys)) if (b instanceof Uint8Array) zeroize(b);
  }
}

const NO_MAC_OPTIONS: MacOptions = Object.freeze({});

/** The MAB as bytes: used as given (only read, during the call), or parsed from hex. */
function macData(data: unknown): Uint8Array {
  return data instanceof Uint8Array ? data : fromHex(data as string, 'data');
}

/** MAC options from a request (a shared empty object when there are none: no per-call garbage). */
function macOptions(req: MacRequest): MacOptions {
  if (!Object.hasOwn(MAC_EXPECT, req.algorithm)) {
    throw new HsmError('POSKEY_ERR_MAC_ALGORITHM', `unknown MAC algorithm '${String(req.algorithm)}'`, {
      field: 'algorithm',
      payShield: '15',
    });
  }
  if (req.padding === undefined && req.output === undefined && req.length === undefined)
    return NO_MAC_OPTIONS;
  const opts: MacOptions = {};
  if (req.padding !== undefined) opts.padding = req.padding;
  if (req.output !== undefined) opts.output = req.output;
  if (req.length !== undefined) {
    const unionPay = req.algorithm === 'unionpay-ecb';
    if (!Number.isSafeInteger(req.length) || req.length < MIN_MAC_LENGTH || (unionPay && req.length !== 8)) {
      throw new HsmError(
        'POSKEY_ERR_LENGTH',
        unionPay
          ? 'the UnionPay MAC is always 8 bytes'
          : `MAC length must be at least ${MIN_MAC_LENGTH} bytes`,
        { field: 'length', payShield: '15' },
      );
    }
    if (!unionPay) opts.length = req.length;
  }
  return opts;
}

/** The TDES/SM4 sign-in key set: [type, algorithm] for TPK, TAK and optionally TDK. */
function signInPlan(req: SignInKeysRequest): [KeyType, KeyAlgorithm][] {
  if (req.algorithm !== 'tdes' && req.algorithm !== 'sm4')
    throw typeError('algorithm', "must be 'tdes' or 'sm4'");
  if (req.algorithm === 'sm4') {
    const plan: [KeyType, KeyAlgorithm][] = [
      ['TPK', 'sm4'],
      ['TAK', 'sm4'],
    ];
    if (req.withTdk) plan.push(['TDK', 'sm4']);
    return plan;
  }
  const pin = req.pinKeyLength ?? 'double';
  const mak = req.makLength ?? 'single';
  if (pin !== 'single' && pin !== 'double') throw typeError('pinKeyLength', "must be 'single' or 'double'");
  if (mak !== 'single' && mak !== 'double') throw typeError('makLength', "must be 'single' or 'double'");
  const plan: [KeyType, KeyAlgorithm][] = [
    ['TPK', pin === 'single' ? 'des' : 'tdes2'],
    ['TAK', mak === 'single' ? 'des' : 'tdes2'],
  ];
  if (req.withTdk) plan.push(['TDK', 'tdes2']);
  return plan;
}

/** TR-31 header for an export: the LMK block's attributes, LMK-only optional blocks removed. */
function exportHeader(h: Tr31Header, kbpk: KeyHandle): Tr31Header {
  let version: Tr31Version;
  if (kbpk.algorithm === 'aes') version = 'D';
  else if (kbpk.algorithm === 'tdes') version = 'B';
  else {
    throw new HsmError(
      'POSKEY_ERR_KEY_ALGORITHM',
      `TR-31 has no key block version for a ${kbpk.algorithm} KBPK`,
      {
        field: 'kek',
        payShield: 'A7',
      },
    );
  }
  return {
    version,
    usage: h.usage,
    algorithm: h.algorithm,
    modeOfUse: h.modeOfUse,
    keyVersion: h.keyVersion,
    exportability: h.exportability,
    keyContext: '0',
    optionalBlocks: keepBlocks(h.optionalBlocks),
  };
}

/** Checks a KCV the sender gave (legacy E_K(0), or CMAC for AES) in constant time. */
function assertGivenKcv(key: KeyHandle, kcv: unknown, algorithm: KeyAlgorithm, field: string): void {
  if (typeof kcv !== 'string') throw typeError(field, 'must be hex');
  const bytes = fromHex(kcv, field);
  if (bytes.length < MIN_KCV_LENGTH || bytes.length > key.blockSize) {
    throw new HsmError('POSKEY_ERR_LENGTH', `a KCV is ${MIN_KCV_LENGTH} to ${key.blockSize} bytes`, {
      field,
      payShield: '15',
    });
  }
  assertCheckValue(key, bytes, defaultKcvMethod(algorithm), field);
}

/** Components: the algorithm's length, no two alike (equal components cancel out and reveal the key). */
function assertComponents(parts: Buffer[], length: number): void {
  parts.forEach((p, i) => {
    if (p.length !== length) {
      throw new HsmError('POSKEY_ERR_LENGTH', `component is ${p.length} bytes, expected ${length}`, {
        field: `source.components[${i}]`,
        payShield: '15',
      });
    }
    if (parts.findIndex((q) => q.equals(p)) < i) {
      throw new HsmError('POSKEY_ERR_COMPONENT', 'component repeats an earlier one', {
        field: `source.components[${i}]`,
        payShield: '15',
      });
    }
  });
}
