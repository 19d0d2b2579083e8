/**
 * Sealed LMK storage: between restarts the LMKs are kept in the data directory encrypted under a
 * key derived with scrypt from a passphrase, or from the ceremony components re-entered.
 *
 * File (JSON, mode 0600, written atomically):
 *   { format: 'poskey-sealed-lmk/1', kdf: { name: 'scrypt', N, r, p, salt }, default,
 *     lmks: [{ id, kcv, dev, iv, ciphertext, tag }] }
 * Each LMK is AES-256-GCM encrypted with a fresh 12-byte IV. The AAD binds the record to its id,
 * KCV and dev flag and to the file's format, KDF parameters and default id, so none of them can be
 * edited without failing the tag. Unsealing checks the tag and then the KCV of the decrypted key;
 * any failure is one error, POSKEY_ERR_LMK_UNSEAL, "wrong passphrase or corrupted file", which
 * deliberately does not say which check failed.
 *
 * Development mode keeps its LMK in a separate file sealed under the fixed DEV_PASSPHRASE below. It
 * protects nothing: its only purpose is that the same dev LMK survives restarts.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { constantTimeEqual, fromHex, toHex, zeroize } from '../crypto/bytes.js';
import {
  assertScryptParams,
  gcmOpen,
  gcmSeal,
  GCM_IV_LENGTH as IV_LENGTH,
  type ScryptParams,
  scryptKey,
  GCM_TAG_LENGTH as TAG_LENGTH,
  writeFileAtomic,
} from '../crypto/sealed.js';
import { HsmError } from './errors.js';
import {
  assertLmkComponents,
  assertLmkId,
  generateDevLmk,
  LMK_LENGTH,
  type Lmk,
  LmkSet,
  lmkFromBytes,
  lmkKey,
} from './lmk.js';

/** Re-exported: other areas import them from here. */
export { type ScryptParams, writeFileAtomic };

export const SEALED_LMK_FORMAT = 'poskey-sealed-lmk/1';

/** File names inside the data directory. */
export const SEALED_LMK_FILE = 'lmk.sealed.json';
export const DEV_LMK_FILE = 'lmk.dev.sealed.json';

/**
 * The fixed development passphrase. Public on purpose: a dev LMK is not a secret, the file only
 * keeps it stable across restarts.
 */
export const DEV_PASSPHRASE = 'poskey-development-lmk-NOT-FOR-PRODUCTION';

/** Shortest accepted passphrase, in characters. */
export const MIN_PASSPHRASE_LENGTH = 8;

/** Production scrypt cost: N = 2^15, r = 8, p = 1 (about 32 MiB and ~0.1 s). */
export const DEFAULT_SCRYPT: Readonly<ScryptParams> = Object.freeze({ N: 2 ** 15, r: 8, p: 1 });

const SALT_LENGTH = 16;
const KCV_RE = /^[0-9A-F]{10}$/;

/** Domain-separation prefixes, so a passphrase can never produce the same secret as components. */
const PASSPHRASE_DOMAIN = 'poskey-seal-passphrase/1\0';
const COMPONENTS_DOMAIN = 'poskey-seal-components/1\0';

let secretBytes: (secret: SealSecret) => Buffer;

/** What the seal key is derived from: a passphrase, or the ceremony components re-entered. */
export class SealSecret {
  readonly kind: 'passphrase' | 'components';
  readonly #bytes: Buffer;

  static {
    secretBytes = (secret) => secret.#bytes;
  }

  private constructor(kind: 'passphrase' | 'components', bytes: Buffer) {
    this.kind = kind;
    this.#bytes = bytes;
  }

  static passphrase(passphrase: string): SealSecret {
    if (typeof passphrase !== 'string' || [...passphrase].length < MIN_PASSPHRASE_LENGTH) {
      throw new HsmError(
        'POSKEY_ERR_LMK_PASSPHRASE',
        `passphrase must have at least ${MIN_PASSPHRASE_LENGTH} characters`,
        { field: 'passphrase' },
      );
    }
    // NFC so the same passphrase typed on different systems gives the same bytes.
    return new SealSecret('passphrase', Buffer.from(PASSPHRASE_DOMAIN + passphrase.normalize('NFC'), 'utf8'));
  }

  static components(components: Uint8Array[]): SealSecret {
    assertLmkComponents(components);
    // Sorted, so custodians may re-enter their components in any order at restart.
    const sorted = [...components].sort((a, b) => Buffer.compare(a, b));
    return new SealSecret('components', Buffer.concat([Buffer.from(COMPONENTS_DOMAIN, 'latin1'), ...sorted]));
  }

  /** Zeroises the secret. */
  destroy(): void {
    this.#bytes.fill(0);
  }

  toString(): string {
    return `SealSecret(${this.kind})`;
  }

  toJSON(): { kind: string } {
    return { kind: this.kind };
  }
}

/**
 * A seal secret from the LMK components re-entered (the same 2–9 components of the ceremony, in
 * any order). The components are copied; the caller zeroises its own.
 * @throws POSKEY_ERR_LMK_COMPONENTS, POSKEY_ERR_LMK_COMPONENT
 */
export function sealKeyFromComponents(components: Uint8Array[]): SealSecret {
  return SealSecret.components(components);
}

/** @throws POSKEY_ERR_LMK_PASSPHRASE when shorter than MIN_PASSPHRASE_LENGTH */
export function sealKeyFromPassphrase(passphrase: string): SealSecret {
  return SealSecret.passphrase(passphrase);
}

/** A passphrase string or a prepared SealSecret. */
export type SealSecretInput = string | SealSecret;

function asSecret(secret: SealSecretInput): { secret: SealSecret; owned: boolean } {
  if (secret instanceof SealSecret) return { secret, owned: false };
  return { secret: SealSecret.passphrase(secret), owned: true };
}

interface SealedLmkRecord {
  id: string;
  kcv: string;
  dev: boolean;
  iv: string;
  ciphertext: string;
  tag: string;
}

/** The sealed file's JSON. Hex fields are upper-case. */
export interface SealedLmkFile {
  format: typeof SEALED_LMK_FORMAT;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  default: string;
  lmks: SealedLmkRecord[];
}

function formatError(reason: string): HsmError {
  return new HsmError('POSKEY_ERR_LMK_SEALED_FORMAT', `not a sealed LMK file: ${reason}`, { field: 'file' });
}

/** One error for every unseal failure, with no cause attached: which check failed is itself a hint. */
function unsealError(): HsmError {
  return new HsmError('POSKEY_ERR_LMK_UNSEAL', 'cannot unseal the LMK: wrong passphrase or corrupted file', {
    field: 'secret',
  });
}

function ioError(what: string, cause: unknown): HsmError {
  const code = (cause as NodeJS.ErrnoException)?.code ?? 'unknown error';
  return new HsmError('POSKEY_ERR_LMK_IO', `cannot ${what} the sealed LMK file (${code})`, {
    field: 'path',
    cause,
  });
}

function deriveSealKey(secret: SealSecret, kdf: ScryptParams, salt: Uint8Array): Promise<Buffer> {
  return scryptKey(secretBytes(secret), salt, kdf);
}

/** AAD: the record's identity and everything in the file outside the ciphertexts. */
function aad(
  file: Pick<SealedLmkFile, 'format' | 'kdf' | 'default'>,
  id: string,
  kcv: string,
  dev: boolean,
): Buffer {
  const { N, r, p, salt } = file.kdf;
  return Buffer.from(
    JSON.stringify([file.format, 'scrypt', N, r, p, salt, file.default, id, kcv, dev]),
    'utf8',
  );
}

function sealOne(
  key: Buffer,
  header: Pick<SealedLmkFile, 'format' | 'kdf' | 'default'>,
  lmk: Lmk,
): SealedLmkRecord {
  const clear = lmkKey(lmk).exportKeyBytes();
  try {
    const { iv, ciphertext, tag } = gcmSeal(key, clear, aad(header, lmk.id, lmk.kcv, lmk.dev));
    return {
      id: lmk.id,
      kcv: lmk.kcv,
      dev: lmk.dev,
      iv: toHex(iv),
      ciphertext: toHex(ciphertext),
      tag: toHex(tag),
    };
  } finally {
    zeroize(clear);
  }
}

export interface SealOptions {
  /** scrypt cost; DEFAULT_SCRYPT unless given (tests pass a small N). */
  kdf?: Partial<ScryptParams>;
}

/**
 * Seals LMKs into the JSON document of a sealed file (no I/O).
 * @throws POSKEY_ERR_LMK_UNKNOWN for an empty set, POSKEY_ERR_LMK_PASSPHRASE, POSKEY_ERR_LMK_KDF
 */
export async function sealLmks(
  lmks: LmkSet | Lmk,
  secretInput: SealSecretInput,
  options: SealOptions = {},
): Promise<SealedLmkFile> {
  const set = lmks instanceof LmkSet ? lmks : new LmkSet([lmks]);
  const defaultLmk = set.get();
  const params: ScryptParams = { ...DEFAULT_SCRYPT, ...options.kdf };
  assertScryptParams(params, (reason) => new HsmError('POSKEY_ERR_LMK_KDF', reason, { field: 'kdf' }));
  const { secret, owned } = asSecret(secretInput);
  const salt = randomBytes(SALT_LENGTH);
  const key = await deriveSealKey(secret, params, salt).finally(() => {
    if (owned) secret.destroy();
  });
  try {
    const header: Pick<SealedLmkFile, 'format' | 'kdf' | 'default'> = {
      format: SEALED_LMK_FORMAT,
      kdf: { name: 'scrypt', ...params, salt: toHex(salt) },
      default: defaultLmk.id,
    };
    const records = set.ids().map((id) => sealOne(key, header, set.get(id)));
    return { ...header, lmks: records };
  } finally {
    zeroize(key);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function hexField(v: unknown, bytes: number | undefined, what: string): string {
  if (typeof v !== 'string' || !/^[0-9A-Fa-f]*$/.test(v) || (bytes !== undefined && v.length !== bytes * 2)) {
    throw formatError(`${what} must be ${bytes ?? 'some'} bytes of hex`);
  }
  return v;
}

/** Checks the document's shape; crypto checks come later. */
export function parseSealedLmkFile(doc: unknown): SealedLmkFile {
  if (!isRecord(doc) || doc.format !== SEALED_LMK_FORMAT)
    throw formatError(`format is not ${SEALED_LMK_FORMAT}`);
  const kdf = doc.kdf;
  if (!isRecord(kdf) || kdf.name !== 'scrypt') throw formatError('kdf must be scrypt');
  const params = { N: kdf.N as number, r: kdf.r as number, p: kdf.p as number };
  assertScryptParams(params, formatError);
  const salt = hexField(kdf.salt, SALT_LENGTH, 'kdf.salt');
  if (!Array.isArray(doc.lmks) || doc.lmks.length === 0) throw formatError('lmks must be a non-empty array');
  const lmks = doc.lmks.map((r: unknown): SealedLmkRecord => {
    if (!isRecord(r)) throw formatError('each lmk must be an object');
    assertLmkId(r.id, 'lmks.id');
    if (typeof r.kcv !== 'string' || !KCV_RE.test(r.kcv)) throw formatError('kcv must be 10 hex digits');
    if (typeof r.dev !== 'boolean') throw formatError('dev must be true or false');
    return {
      id: r.id,
      kcv: r.kcv,
      dev: r.dev,
      iv: hexField(r.iv, IV_LENGTH, 'iv'),
      ciphertext: hexField(r.ciphertext, LMK_LENGTH, 'ciphertext'),
      tag: hexField(r.tag, TAG_LENGTH, 'tag'),
    };
  });
  if (typeof doc.default !== 'string' || !lmks.some((r) => r.id === doc.default)) {
    throw formatError('default must name one of the sealed LMKs');
  }
  return { format: SEALED_LMK_FORMAT, kdf: { name: 'scrypt', ...params, salt }, default: doc.default, lmks };
}

function openOne(key: Buffer, file: SealedLmkFile, r: SealedLmkRecord): Lmk {
  let clear: Buffer | undefined;
  try {
    const sealed = { iv: fromHex(r.iv), ciphertext: fromHex(r.ciphertext), tag: fromHex(r.tag) };
    clear = gcmOpen(key, sealed, aad(file, r.id, r.kcv, r.dev));
  } catch {
    zeroize(clear);
    throw unsealError();
  }
  try {
    const lmk = lmkFromBytes(r.id, clear, r.dev);
    if (!constantTimeEqual(Buffer.from(lmk.kcv, 'latin1'), Buffer.from(r.kcv.toUpperCase(), 'latin1'))) {
      lmk.destroy();
      throw unsealError();
    }
    return lmk;
  } finally {
    zeroize(clear);
  }
}

export interface UnsealOptions {
  /** Accept development LMKs (default false: production refuses to start on a dev LMK). */
  allowDev?: boolean;
}

/**
 * Opens a sealed document into an LmkSet (the sealed default stays the default).
 * @throws POSKEY_ERR_LMK_SEALED_FORMAT for a malformed document, POSKEY_ERR_LMK_UNSEAL for a wrong
 *   secret or a tampered file, POSKEY_ERR_LMK_DEV for a dev LMK without `allowDev`,
 *   POSKEY_ERR_LMK_PASSPHRASE for a too-short passphrase string
 */
export async function unsealLmks(
  doc: unknown,
  secretInput: SealSecretInput,
  options: UnsealOptions = {},
): Promise<LmkSet> {
  const file = parseSealedLmkFile(doc);
  const { secret, owned } = asSecret(secretInput);
  const key = await deriveSealKey(secret, file.kdf, fromHex(file.kdf.salt)).finally(() => {
    if (owned) secret.destroy();
  });
  const set = new LmkSet();
  try {
    for (const r of file.lmks) set.add(openOne(key, file, r));
    set.setDefault(file.default);
  } catch (e) {
    set.destroy();
    throw e;
  } finally {
    zeroize(key);
  }
  if (!options.allowDev && [...set].some((l) => l.dev)) {
    set.destroy();
    throw new HsmError(
      'POSKEY_ERR_LMK_DEV',
      'the sealed file holds a development LMK; refusing outside dev mode',
      {
        field: 'file',
      },
    );
  }
  return set;
}

/**
 * Seals LMKs to `path` (normally `<dataDir>/lmk.sealed.json`), atomically, mode 0600.
 * @returns the document written (no key material in it)
 * @throws everything `sealLmks` throws, POSKEY_ERR_LMK_IO when the file cannot be written
 */
export async function saveSealedLmks(
  path: string,
  lmks: LmkSet | Lmk,
  secret: SealSecretInput,
  options: SealOptions = {},
): Promise<SealedLmkFile> {
  const doc = await sealLmks(lmks, secret, options);
  try {
    await writeFileAtomic(path, `${JSON.stringify(doc, null, 2)}\n`);
  } catch (e) {
    throw ioError('write', e);
  }
  return doc;
}

/**
 * Loads and unseals the LMK file. `poskey hsm start` calls this and refuses to run when it fails.
 * @throws POSKEY_ERR_LMK_MISSING when the file does not exist, POSKEY_ERR_LMK_IO when it cannot be
 *   read, and everything `unsealLmks` throws
 */
export async function loadSealedLmks(
  path: string,
  secret: SealSecretInput,
  options: UnsealOptions = {},
): Promise<LmkSet> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new HsmError('POSKEY_ERR_LMK_MISSING', 'no sealed LMK file: run the LMK ceremony first', {
        field: 'path',
        cause: e,
      });
    }
    throw ioError('read', e);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new HsmError('POSKEY_ERR_LMK_SEALED_FORMAT', 'not a sealed LMK file: invalid JSON', {
      field: 'file',
      cause: e,
    });
  }
  return unsealLmks(doc, secret, options);
}

export interface DevLmk {
  lmks: LmkSet;
  lmk: Lmk;
  /** True when this call generated the dev LMK (first start). */
  created: boolean;
  /** Path of the dev sealed file. */
  path: string;
  /** For the caller to print loudly (stderr, framed) at every start. */
  warning: string;
}

/**
 * Development mode: loads the dev LMK from `<dataDir>/lmk.dev.sealed.json`, creating it (and the
 * directory) on first use. The file is sealed under the public DEV_PASSPHRASE; it never touches
 * the production sealed file.
 */
export async function ensureDevLmk(
  dataDir: string,
  options: { id?: string; kdf?: Partial<ScryptParams> } = {},
): Promise<DevLmk> {
  const path = join(dataDir, DEV_LMK_FILE);
  let lmks: LmkSet;
  let created = false;
  try {
    lmks = await loadSealedLmks(path, DEV_PASSPHRASE, { allowDev: true });
  } catch (e) {
    if (!(e instanceof HsmError && e.code === 'POSKEY_ERR_LMK_MISSING')) throw e;
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    lmks = new LmkSet([generateDevLmk(options.id ?? '00')]);
    await saveSealedLmks(path, lmks, DEV_PASSPHRASE, options.kdf ? { kdf: options.kdf } : {});
    created = true;
  }
  const lmk = lmks.get();
  return { lmks, lmk, created, path, warning: devWarning(lmk) };
}

/** The banner dev mode prints: it names the KCV so a dev LMK is recognisable wherever it shows up. */
export function devWarning(lmk: Lmk): string {
  const line = '!'.repeat(72);
  return [
    line,
    '!! DEVELOPMENT MODE: TEST LMK IN USE. NOT FOR PRODUCTION.',
    `!! LMK ${lmk.id}, KCV ${lmk.kcv} (CMAC). Sealed under a PUBLIC passphrase.`,
    '!! Every key block made under it is marked as a development block.',
    line,
  ].join('\n');
}
