/**
 * Optional persistence of the PIN pad's secure storage in the terminal's data directory, so a
 * terminal keeps its TMK and working keys between runs of `poskey terminal …`.
 *
 * File `<dataDir>/pinpad.json` (mode 0600, written atomically with fsync):
 *   { format: 'poskey-pinpad-store/1', kdf: { name: 'scrypt', N, r, p, salt }, pad: SealedPinPad }
 * The device storage key is scrypt(device secret, salt); `PinPad.seal` encrypts the keys under it
 * with AES-256-GCM and authenticates the slot table and the KDF parameters. Clear keys never reach
 * the disk, and a wrong secret or an edited file is one error, POSKEY_ERR_PINPAD_STORE.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fromHex, toHex, zeroize } from '../crypto/bytes.js';
import { assertScryptParams, type ScryptParams, scryptKey, writeFileAtomic } from '../crypto/sealed.js';
import { PinPadError, PinPadErrorCode } from './errors.js';
import { PinPad, type PinPadOptions, type SealedPinPad } from './pinpad.js';

export type { ScryptParams };

export const PINPAD_STORE_FILE = 'pinpad.json';
export const PINPAD_STORE_FORMAT = 'poskey-pinpad-store/1';
/** Shortest device secret accepted, in characters (or bytes). */
export const MIN_DEVICE_SECRET_LENGTH = 8;

/** scrypt cost: N = 2^15, r = 8, p = 1 (about 32 MiB and 0.1 s, once per process). */
export const DEFAULT_PINPAD_SCRYPT: Readonly<ScryptParams> = Object.freeze({ N: 2 ** 15, r: 8, p: 1 });

const SALT_BYTES = 16;
/** Domain separation: the same passphrase used elsewhere never yields this storage key. */
const DOMAIN = 'poskey-pinpad-storage/1\0';

export interface PinPadStoreFile {
  format: typeof PINPAD_STORE_FORMAT;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  pad: SealedPinPad;
}

function storeError(reason: string, cause?: unknown): PinPadError {
  return new PinPadError(PinPadErrorCode.STORE, reason, { field: 'store', cause });
}

function checkParams(p: ScryptParams): ScryptParams {
  assertScryptParams(p, () => storeError('scrypt parameters out of range'));
  return p;
}

function secretBytes(secret: string | Uint8Array): Buffer {
  const raw = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret ?? []);
  if (raw.length < MIN_DEVICE_SECRET_LENGTH) {
    zeroize(raw);
    throw new PinPadError(
      PinPadErrorCode.STORE,
      `device secret must be at least ${MIN_DEVICE_SECRET_LENGTH} characters`,
      { field: 'secret' },
    );
  }
  const out = Buffer.concat([Buffer.from(DOMAIN, 'utf8'), raw]);
  zeroize(raw);
  return out;
}

/** scrypt(domain ‖ secret, salt) → the 32-byte device storage key. */
export async function deriveStorageKey(
  secret: string | Uint8Array,
  salt: Uint8Array,
  params: ScryptParams = DEFAULT_PINPAD_SCRYPT,
): Promise<Buffer> {
  checkParams(params);
  const input = secretBytes(secret);
  try {
    return await scryptKey(input, salt, params);
  } finally {
    zeroize(input);
  }
}

function parseStoreFile(text: string): PinPadStoreFile {
  let doc: PinPadStoreFile;
  try {
    doc = JSON.parse(text) as PinPadStoreFile;
  } catch (e) {
    throw storeError('PIN pad store is not JSON', e);
  }
  const kdf = doc?.kdf;
  if (doc?.format !== PINPAD_STORE_FORMAT || kdf?.name !== 'scrypt' || typeof kdf.salt !== 'string') {
    throw storeError('not a poskey PIN pad store');
  }
  checkParams(kdf);
  return doc;
}

/** The KDF record is bound into the sealed pad's authenticated data, so it cannot be swapped. */
function contextOf(kdf: PinPadStoreFile['kdf']): string {
  return `${PINPAD_STORE_FORMAT} scrypt N=${kdf.N} r=${kdf.r} p=${kdf.p} salt=${kdf.salt.toUpperCase()}`;
}

/** The sealed PIN pad of one data directory. `open` derives the storage key once; `close` zeroises it. */
export class PinPadStore {
  readonly path: string;
  readonly #kdf: PinPadStoreFile['kdf'];
  #key: Buffer | undefined;
  #existing: PinPadStoreFile | undefined;

  private constructor(path: string, kdf: PinPadStoreFile['kdf'], key: Buffer, existing?: PinPadStoreFile) {
    this.path = path;
    this.#kdf = kdf;
    this.#key = key;
    this.#existing = existing;
  }

  /**
   * Opens (or prepares) `<dir>/pinpad.json` with the device secret. An existing file keeps its salt
   * and scrypt cost; a new one gets a fresh salt and `options.scrypt` (default N = 2^15).
   * @throws POSKEY_ERR_PINPAD_STORE for a short secret or an unreadable / foreign file
   */
  static async open(
    dir: string,
    secret: string | Uint8Array,
    options: { scrypt?: ScryptParams } = {},
  ): Promise<PinPadStore> {
    const path = join(dir, PINPAD_STORE_FILE);
    let existing: PinPadStoreFile | undefined;
    try {
      existing = parseStoreFile(await readFile(path, 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw e instanceof PinPadError ? e : storeError('cannot read the PIN pad store', e);
      }
    }
    const params = existing?.kdf ?? options.scrypt ?? DEFAULT_PINPAD_SCRYPT;
    const kdf = {
      name: 'scrypt' as const,
      N: params.N,
      r: params.r,
      p: params.p,
      salt: existing?.kdf.salt ?? toHex(randomBytes(SALT_BYTES)),
    };
    const key = await deriveStorageKey(secret, fromHex(kdf.salt, 'salt'), kdf);
    return new PinPadStore(path, kdf, key, existing);
  }

  /** True when the directory already holds a sealed pad. */
  get exists(): boolean {
    return this.#existing !== undefined;
  }

  /**
   * The stored pad, or undefined when there is none yet.
   * @throws POSKEY_ERR_PINPAD_STORE for a wrong secret or a corrupted file
   */
  load(options: Pick<PinPadOptions, 'now'> = {}): PinPad | undefined {
    if (this.#existing === undefined) return undefined;
    return PinPad.unseal(this.#existing.pad, this.#liveKey(), contextOf(this.#kdf), options);
  }

  /** Seals `pad` and writes the file atomically (fsync), creating the directory if needed. */
  async save(pad: PinPad): Promise<void> {
    const doc: PinPadStoreFile = {
      format: PINPAD_STORE_FORMAT,
      kdf: this.#kdf,
      pad: pad.seal(this.#liveKey(), contextOf(this.#kdf)),
    };
    const dir = dirname(this.path);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.path, `${JSON.stringify(doc, null, 2)}\n`);
    } catch (e) {
      throw storeError('cannot write the PIN pad store', e);
    }
    this.#existing = doc;
  }

  /** Zeroises the storage key; the store cannot be used afterwards. */
  close(): void {
    zeroize(this.#key);
    this.#key = undefined;
  }

  #liveKey(): Buffer {
    if (this.#key === undefined) throw storeError('PIN pad store is closed');
    return this.#key;
  }
}
