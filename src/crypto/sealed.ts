/**
 * The building blocks shared by everything poskey seals to disk (the HSM's LMK file, the terminal's
 * PIN pad store): an scrypt storage key with bounded parameters, AES-256-GCM with AAD, and an
 * atomic, durable, owner-only file write. Callers keep their own file formats and error codes.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const scrypt = promisify(scryptCb) as (
  password: Uint8Array,
  salt: Uint8Array,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  r: number;
  p: number;
}

/** Upper bounds accepted from a file, so a crafted file cannot make unsealing eat the machine. */
const MAX_N = 2 ** 20;
const MAX_R = 32;
const MAX_P = 16;

/** AES-256-GCM IV and tag lengths, in bytes. */
export const GCM_IV_LENGTH = 12;
export const GCM_TAG_LENGTH = 16;

/**
 * Checks scrypt parameters against the accepted bounds; `make` turns the reason into the caller's
 * own error.
 */
export function assertScryptParams(params: ScryptParams, make: (reason: string) => Error): void {
  const { N, r, p } = params;
  if (!Number.isInteger(N) || N < 2 || N > MAX_N || (N & (N - 1)) !== 0) {
    throw make(`scrypt N must be a power of two from 2 to 2^20`);
  }
  if (!Number.isInteger(r) || r < 1 || r > MAX_R) throw make(`scrypt r must be 1 to ${MAX_R}`);
  if (!Number.isInteger(p) || p < 1 || p > MAX_P) throw make(`scrypt p must be 1 to ${MAX_P}`);
}

/** scrypt(input, salt) → a 32-byte AES-256 key. Parameters must already be checked. */
export function scryptKey(input: Uint8Array, salt: Uint8Array, params: ScryptParams): Promise<Buffer> {
  const { N, r, p } = params;
  // Node's default maxmem (32 MiB) is exactly 128·N·r at the production cost; give headroom.
  return scrypt(input, salt, 32, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 });
}

export interface GcmSealed {
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/** AES-256-GCM encryption of `clear` under a fresh random IV, authenticating `aad`. */
export function gcmSeal(key: Uint8Array, clear: Uint8Array, aad: Uint8Array): GcmSealed {
  const iv = randomBytes(GCM_IV_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_LENGTH });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(clear), cipher.final()]);
  return { iv, ciphertext, tag: cipher.getAuthTag() };
}

/**
 * AES-256-GCM decryption; throws Node's error for a wrong key, a wrong AAD or an edited
 * ciphertext/tag (callers map it to their own, deliberately vague, error).
 */
export function gcmOpen(key: Uint8Array, sealed: GcmSealed, aad: Uint8Array): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv, { authTagLength: GCM_TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.tag);
  const head = decipher.update(sealed.ciphertext);
  try {
    return Buffer.concat([head, decipher.final()]);
  } finally {
    head.fill(0);
  }
}

/**
 * Writes `data` to `path` atomically: a temp file in the same directory (mode 0600), fsync,
 * rename over the target, then fsync the directory so the rename itself is durable.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  const dh = await open(dir, 'r').catch(() => undefined);
  if (dh !== undefined) {
    // Some platforms cannot fsync a directory; the rename is then as durable as the OS makes it.
    await dh.sync().catch(() => undefined);
    await dh.close();
  }
}
