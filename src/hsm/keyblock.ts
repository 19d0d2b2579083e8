/**
 * Working keys under the LMK. Every key outside the HSM is a TR-31 version D key block (AES-256
 * KBPK = the LMK) that names its LMK, so the stateless HSM knows which loaded LMK opens it:
 *
 *   D…<usage><alg><mode>00<exp><nn>10  90 06 <LMK id>  KP 0E 01<LMK KCV>  [91 07 DEV]  PB…
 *
 * - Key context (position 14) is '1', storage only: these blocks are LMK storage, not exchange.
 * - Optional block '90' carries the LMK id (two digits). TR-31:2018 / X9.143 reserve numeric
 *   values for proprietary use (the "00"–"99" key usages and IDs); we take fully numeric IDs so
 *   the choice holds whether the reservation is read as "numeric first character" or "both digits".
 * - Optional block 'KP' (X9.143: check value of the KBPK) holds '01' (CMAC) + the LMK's 10-hex
 *   KCV, so a block made under a different LMK that happens to share the id is named as such
 *   instead of failing as a generic MAC error.
 * - Optional block '91' = 'DEV' marks blocks made under a development LMK. It is inside the
 *   authenticated header, so it cannot be stripped; a dev block is never accepted by a production
 *   LMK, and no key is re-wrapped between dev and production LMKs.
 *
 * The header (usage, algorithm, mode of use, exportability) is authenticated by the block MAC and
 * enforced with `assertKeyUsage` on every use, cached or not.
 */
import { zeroize } from '../crypto/bytes.js';
import { createKey, type KeyHandle } from '../crypto/cipher.js';
import {
  assertKeyUsage,
  cipherAlgorithmOf,
  parseHeader,
  type RandomSource,
  type Tr31Header,
  type Tr31OptionalBlock,
  unwrapKeyBlock,
  wrapKeyBlock,
} from '../crypto/tr31.js';
import { HsmError } from './errors.js';
import type { CachedKey, KeyCache } from './key-cache.js';
import { assertLmkId, type Lmk, type LmkSet, lmkKey } from './lmk.js';

/** Proprietary optional block carrying the LMK id. */
export const LMK_ID_BLOCK = '90';
/** Proprietary optional block marking a development-LMK block; its data is DEV_MARK. */
export const DEV_BLOCK = '91';
export const DEV_MARK = 'DEV';
/** X9.143 KBPK check value block; data = '01' (CMAC) + KCV. */
export const KBPK_KCV_BLOCK = 'KP';
/** X9.143 key context: storage only. */
export const STORAGE_CONTEXT = '1';

/** Blocks this module writes itself; callers' extra optional blocks may not use these IDs. */
const OWN_BLOCKS = new Set([LMK_ID_BLOCK, DEV_BLOCK, KBPK_KCV_BLOCK, 'PB']);

/** What `assertKeyUsage` checks: usage(s), algorithm letter, operation(s) the mode must permit, export. */
export interface KeyExpectation {
  usage?: string | string[];
  algorithm?: string;
  modeOfUse?: string | string[];
  exportable?: boolean;
}

export interface LmkWrapSpec {
  /** TR-31 key usage, e.g. 'P0', 'M3', 'K0'. */
  usage: string;
  /** TR-31 algorithm letter: 'T', 'A', 'D', or '4' (SM4, poskey proprietary). */
  algorithm: string;
  /** TR-31 mode of use, e.g. 'E', 'C', 'B'. */
  modeOfUse: string;
  /** 'E', 'N' or 'S'. */
  exportability: string;
  /** The clear key; copied into the block, not modified. */
  key: Uint8Array;
  /** LMK to wrap under; the set's default when omitted. */
  lmkId?: string;
  /** Two characters; '00' by default. */
  keyVersion?: string;
  /** Further optional blocks (KS, IK, KC, LB…), kept in order before ours. */
  optionalBlocks?: Tr31OptionalBlock[];
  /** Random source for the payload padding (tests). */
  random?: RandomSource;
}

function blockError(reason: string, field = 'block'): HsmError {
  return new HsmError('POSKEY_ERR_LMK_BLOCK', reason, { field, payShield: 'A3' });
}

function devError(reason: string): HsmError {
  return new HsmError('POSKEY_ERR_LMK_DEV_BLOCK', reason, { field: 'block', payShield: 'A3' });
}

function kpData(lmk: Lmk): string {
  return `01${lmk.kcv}`;
}

/** The header an LMK block gets for `spec` under `lmk`. */
function lmkHeader(lmk: Lmk, spec: Omit<LmkWrapSpec, 'key' | 'lmkId' | 'random'>): Tr31Header {
  const extra = spec.optionalBlocks ?? [];
  extra.forEach((b, i) => {
    if (OWN_BLOCKS.has(b?.id)) {
      throw blockError(`optional block ${b.id} is reserved for the LMK block format`, `optionalBlocks[${i}]`);
    }
  });
  const own: Tr31OptionalBlock[] = [
    { id: LMK_ID_BLOCK, data: lmk.id },
    { id: KBPK_KCV_BLOCK, data: kpData(lmk) },
  ];
  if (lmk.dev) own.push({ id: DEV_BLOCK, data: DEV_MARK });
  return {
    version: 'D',
    usage: spec.usage,
    algorithm: spec.algorithm,
    modeOfUse: spec.modeOfUse,
    keyVersion: spec.keyVersion ?? '00',
    exportability: spec.exportability,
    keyContext: STORAGE_CONTEXT,
    optionalBlocks: [...extra, ...own],
  };
}

/**
 * Wraps a working key under an LMK as a TR-31 version D key block.
 * @returns the key block (ASCII)
 * @throws POSKEY_ERR_LMK_UNKNOWN, POSKEY_ERR_LMK_BLOCK (reserved optional block ID), and the
 *   TR-31 errors of `wrapKeyBlock` (POSKEY_ERR_TR31_HEADER, _KEY_LENGTH, …)
 */
export function wrapUnderLmk(lmks: LmkSet, spec: LmkWrapSpec): string {
  const lmk = lmks.get(spec.lmkId);
  const header = lmkHeader(lmk, spec);
  const opts = { kbpk: lmkKey(lmk), header, key: spec.key };
  return wrapKeyBlock(spec.random ? { ...opts, random: spec.random } : opts);
}

function findBlock(header: Tr31Header, id: string): string | undefined {
  return header.optionalBlocks.find((b) => b.id === id)?.data;
}

/** True when the header carries the development marker. */
export function isDevBlock(header: Tr31Header): boolean {
  return findBlock(header, DEV_BLOCK) === DEV_MARK;
}

/**
 * The LMK id a block names, read from its (not yet authenticated) header.
 * @throws POSKEY_ERR_LMK_BLOCK when the block is not an LMK block (not version D, no '90' block,
 *   not storage context), plus header parse errors
 */
export function lmkIdOfBlock(block: string): string {
  return lmkBlockHeader(block).lmkId;
}

function lmkBlockHeader(block: string): { header: Tr31Header; lmkId: string } {
  const header = parseHeader(block);
  if (header.version !== 'D') throw blockError(`LMK key blocks are version D, not ${header.version}`);
  if (header.keyContext !== STORAGE_CONTEXT)
    throw blockError('not an LMK storage block (key context is not 1)');
  const id = findBlock(header, LMK_ID_BLOCK);
  if (id === undefined) throw blockError(`no LMK id (optional block ${LMK_ID_BLOCK})`);
  try {
    assertLmkId(id);
  } catch {
    throw blockError(`optional block ${LMK_ID_BLOCK} does not hold a two-digit LMK id`);
  }
  return { header, lmkId: id };
}

export interface UnwrappedLmkBlock {
  /** The authenticated header. */
  header: Tr31Header;
  /** The clear key: a fresh Buffer the caller must zeroise (or pass to `createKey` and zeroise). */
  key: Buffer;
  lmkId: string;
  dev: boolean;
}

/**
 * Opens an LMK key block: finds its LMK, checks the LMK's KCV and the block MAC, the dev marker,
 * then the caller's expectations on the authenticated header.
 * @throws POSKEY_ERR_LMK_BLOCK (not an LMK block, or made under another LMK with this id),
 *   POSKEY_ERR_LMK_UNKNOWN (LMK not loaded), POSKEY_ERR_TR31_MAC (tampered block),
 *   POSKEY_ERR_LMK_DEV_BLOCK (dev marker does not match the LMK), POSKEY_ERR_KEY_USAGE /
 *   _ALGORITHM / _MODE / _NOT_EXPORTABLE (expectations), other TR-31 errors
 */
export function unwrapUnderLmk(lmks: LmkSet, block: string, expect?: KeyExpectation): UnwrappedLmkBlock {
  const { header: claimed, lmkId } = lmkBlockHeader(block);
  const lmk = lmks.get(lmkId);
  const kp = findBlock(claimed, KBPK_KCV_BLOCK);
  if (kp !== undefined && kp !== kpData(lmk)) {
    throw blockError(`block was made under a different LMK ${lmkId} (KBPK check value differs)`);
  }
  const { header, key } = unwrapKeyBlock({ kbpk: lmkKey(lmk), block });
  try {
    const dev = isDevBlock(header);
    if (dev !== lmk.dev) {
      throw devError(
        dev ? 'development key block under a production LMK' : 'unmarked key block under a dev LMK',
      );
    }
    if (expect !== undefined) assertKeyUsage(header, expect);
    return { header, key, lmkId, dev };
  } catch (e) {
    zeroize(key);
    throw e;
  }
}

/** A key ready for use: the handle plus its authenticated header (the KeyCache entry shape). */
export interface LoadedLmkKey extends CachedKey<Tr31Header> {
  dev: boolean;
}

/**
 * Unwraps a block into a KeyHandle (the clear bytes are zeroised once the handle holds them).
 * @throws as `unwrapUnderLmk`, plus POSKEY_ERR_KEY_ALGORITHM for a non-block-cipher key
 */
export function loadUnderLmk(lmks: LmkSet, block: string, expect?: KeyExpectation): LoadedLmkKey {
  const { header, key, lmkId, dev } = unwrapUnderLmk(lmks, block, expect);
  try {
    const handle: KeyHandle = createKey(cipherAlgorithmOf(header, key.length), key);
    return { handle, header, lmkId, dev };
  } finally {
    zeroize(key);
  }
}

/**
 * The key for a command: from the cache (unwrapping on a miss), with the expectations enforced
 * on every call, hit or miss. The handle belongs to the cache: use it within the command, never
 * destroy it.
 */
export function resolveLmkKey(
  lmks: LmkSet,
  cache: KeyCache<Tr31Header>,
  block: string,
  expect?: KeyExpectation,
): CachedKey<Tr31Header> {
  const entry = cache.get(block, (b) => loadUnderLmk(lmks, b));
  if (!lmks.has(entry.lmkId)) {
    // Its LMK was unloaded since the key was cached: the key must go with it.
    cache.delete(block);
    lmks.get(entry.lmkId);
  }
  if (expect !== undefined) assertKeyUsage(entry.header, expect);
  return entry;
}

/**
 * Re-wraps a block from its LMK to another (migration, `poskey hsm lmk rotate`). Usage, algorithm,
 * mode of use, key version, exportability and the caller's optional blocks carry over.
 * @param newLmkId target LMK; the set's default when omitted
 * @throws everything `unwrapUnderLmk` throws, and POSKEY_ERR_LMK_DEV_BLOCK when moving a key
 *   between a development LMK and a production one (either way)
 */
export function rewrapToLmk(lmks: LmkSet, block: string, newLmkId?: string): string {
  const target = lmks.get(newLmkId);
  const { header, key, dev } = unwrapUnderLmk(lmks, block);
  try {
    // Neither direction is safe: dev keys are not secret, and a dev LMK's passphrase is public.
    if (dev !== target.dev) throw devError('keys cannot move between development and production LMKs');
    return wrapUnderLmk(lmks, {
      usage: header.usage,
      algorithm: header.algorithm,
      modeOfUse: header.modeOfUse,
      exportability: header.exportability,
      keyVersion: header.keyVersion,
      optionalBlocks: header.optionalBlocks.filter((b) => !OWN_BLOCKS.has(b.id)),
      key,
      lmkId: target.id,
    });
  } finally {
    zeroize(key);
  }
}

export interface RewrapFailure {
  index: number;
  code: string;
}

/**
 * Re-wraps a whole key table to `newLmkId`. Blocks that fail stay as they were and are listed
 * with their error code, so one bad row does not stop a rotation.
 * @returns the new blocks in input order (failed rows keep the old block) and the failures
 */
export function rewrapTable(
  lmks: LmkSet,
  blocks: readonly string[],
  newLmkId?: string,
): { blocks: string[]; failures: RewrapFailure[] } {
  lmks.get(newLmkId);
  const failures: RewrapFailure[] = [];
  const out = blocks.map((block, index) => {
    try {
      return rewrapToLmk(lmks, block, newLmkId);
    } catch (e) {
      failures.push({ index, code: (e as { code?: string }).code ?? 'POSKEY_ERR_INTERNAL' });
      return block;
    }
  });
  return { blocks: out, failures };
}
