/**
 * Zone keys between the acquirer host and the card network: a ZMK formed from components (split
 * knowledge, exchanged out of band), and the ZPK (PINs) and ZAK (MACs) as legacy ECB cryptograms
 * under the ZMK with their KCVs. Each side imports them into its OWN HSM, under its own LMK, and
 * keeps only the LMK key blocks.
 *
 * The zone file holds the cryptograms and check values only, never a clear key; it may be copied
 * and read freely. The ZMK components travel separately (in-process for `poskey start`, the
 * POSKEY_ZMK_COMPONENTS variable or a prompt for standalone servers) and are never written to disk.
 *
 * Zone file (JSON):
 *   { "format": "poskey-zone/1", "zmkKcv": "…", "zpk": { "underZmk": "…", "kcv": "…" },
 *     "zak": { "underZmk": "…", "kcv": "…" } }
 * `format` and `zmkKcv` are optional on read; `zmkKcv` lets a wrong set of components fail with
 * its own error instead of a ZPK KCV mismatch.
 */
import { readFile } from 'node:fs/promises';
import { constantTimeEqual, toHex, zeroize } from '../crypto/bytes.js';
import { generateKey as randomKey } from '../crypto/keys.js';
import { writeFileAtomic } from '../crypto/sealed.js';
import { isPoskeyError } from '../errors.js';
import type {
  GeneratedKey,
  GenerateKeyRequest,
  ImportKeyRequest,
  KeyAlgorithm,
  KeyInfo,
  LmkKeyBlock,
} from '../hsm/api.js';
import { networkError } from './errors.js';

export const ZONE_FILE_FORMAT = 'poskey-zone/1';

/** Environment variable holding the ZMK components, hex, comma-separated. */
export const ZMK_COMPONENTS_ENV = 'POSKEY_ZMK_COMPONENTS';

/** Components dealt by `createZoneKeys` unless told otherwise (three custodians). */
export const DEFAULT_ZMK_COMPONENTS = 3;

/** One zone key as exchanged: the legacy ECB cryptogram under the ZMK and its KCV (hex). */
export interface ZoneKeyCryptogram {
  underZmk: string;
  kcv: string;
}

/** What the zone file holds: cryptograms and check values, no clear key. */
export interface ZoneFile {
  zpk: ZoneKeyCryptogram;
  zak: ZoneKeyCryptogram;
  /** KCV of the ZMK (legacy E_K(0), 6 hex), to check components before anything else. */
  zmkKcv?: string;
}

/** One side's zone keys: LMK key blocks in that side's own HSM. */
export interface ZoneKeys {
  zmk: LmkKeyBlock;
  zpk: LmkKeyBlock;
  zak: LmkKeyBlock;
}

export interface CreatedZone {
  /** The ZMK components (hex), for the custodians; never written to disk. */
  zmkComponents: string[];
  zoneFile: ZoneFile;
  /** The keys in the HSM that made them (the other side imports the zone file). */
  keys: ZoneKeys;
}

type MaybePromise<T> = T | Promise<T>;

/** The HSM operations zone handling needs; an `Hsm` and an async `HsmClient` both fit. */
export interface ZoneHsm {
  importKey(req: ImportKeyRequest, actor?: string): MaybePromise<{ keyBlock: LmkKeyBlock; info: KeyInfo }>;
  generateKey(req: GenerateKeyRequest, actor?: string): MaybePromise<GeneratedKey>;
}

const HEX = /^[0-9A-F]+$/;
/** Zone keys are TDES: the link MAC is X9.19 and the PIN block format 0 (DES-family keys). */
const ALGORITHM_BY_HEX: Readonly<Record<number, KeyAlgorithm>> = { 32: 'tdes2', 48: 'tdes3' };

function fileError(field: string, reason: string, cause?: unknown) {
  return networkError('POSKEY_ERR_ZONE_FILE', reason, field, cause);
}

function algorithmOf(hex: string, field: string, make: (field: string, reason: string) => Error) {
  const alg = ALGORITHM_BY_HEX[hex.length];
  if (alg === undefined || !HEX.test(hex)) {
    throw make(field, 'must be 32 or 48 hex digits (a double- or triple-length TDES key)');
  }
  return alg;
}

function kcvOf(value: unknown, field: string): string {
  if (typeof value !== 'string' || !/^[0-9A-Fa-f]{4,16}$/.test(value) || value.length % 2 !== 0) {
    throw fileError(field, 'a KCV is 4 to 16 hex digits');
  }
  return value.toUpperCase();
}

function cryptogramOf(doc: Record<string, unknown>, name: 'zpk' | 'zak'): ZoneKeyCryptogram {
  const entry = doc[name];
  if (typeof entry !== 'object' || entry === null) throw fileError(name, 'missing');
  const { underZmk, kcv } = entry as Record<string, unknown>;
  if (typeof underZmk !== 'string') throw fileError(`${name}.underZmk`, 'must be hex');
  const hex = underZmk.toUpperCase();
  algorithmOf(hex, `${name}.underZmk`, fileError);
  return { underZmk: hex, kcv: kcvOf(kcv, `${name}.kcv`) };
}

/**
 * Validates a zone file document (already JSON-parsed).
 * @throws POSKEY_ERR_ZONE_FILE naming the field at fault
 */
export function parseZoneFile(doc: unknown): ZoneFile {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw fileError('file', 'must be an object');
  const d = doc as Record<string, unknown>;
  if (d.format !== undefined && d.format !== ZONE_FILE_FORMAT) {
    throw fileError('format', `must be '${ZONE_FILE_FORMAT}'`);
  }
  const zone: ZoneFile = { zpk: cryptogramOf(d, 'zpk'), zak: cryptogramOf(d, 'zak') };
  if (d.zmkKcv !== undefined) zone.zmkKcv = kcvOf(d.zmkKcv, 'zmkKcv');
  return zone;
}

/** The zone file's JSON text (with its format tag). */
export function serializeZoneFile(zone: ZoneFile): string {
  const doc: Record<string, unknown> = { format: ZONE_FILE_FORMAT };
  if (zone.zmkKcv !== undefined) doc.zmkKcv = zone.zmkKcv;
  doc.zpk = { underZmk: zone.zpk.underZmk, kcv: zone.zpk.kcv };
  doc.zak = { underZmk: zone.zak.underZmk, kcv: zone.zak.kcv };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * Reads and validates a zone file.
 * @throws POSKEY_ERR_ZONE_FILE when it cannot be read or is malformed
 */
export async function readZoneFile(path: string): Promise<ZoneFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw fileError('path', `cannot read the zone file (${code})`, e);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw fileError('file', 'not JSON', e);
  }
  return parseZoneFile(doc);
}

/** Writes the zone file atomically (it holds cryptograms only, but 0600 all the same). */
export async function writeZoneFile(path: string, zone: ZoneFile): Promise<void> {
  await writeFileAtomic(path, serializeZoneFile(parseZoneFile(zone)));
}

function componentsError(field: string, reason: string) {
  return networkError('POSKEY_ERR_ZONE_COMPONENTS', reason, field);
}

/**
 * ZMK components from text: hex, comma-separated (POSKEY_ZMK_COMPONENTS), spaces ignored.
 * @throws POSKEY_ERR_ZONE_COMPONENTS for fewer than 2 or more than 9, bad hex or unequal lengths
 */
export function parseZmkComponents(input: string | readonly string[]): string[] {
  const parts = typeof input === 'string' ? input.split(',') : [...input];
  const hex = parts.map((p) => (typeof p === 'string' ? p.replace(/\s+/g, '').toUpperCase() : ''));
  if (hex.length < 2 || hex.length > 9) {
    throw componentsError('zmkComponents', `a ZMK needs 2 to 9 components, got ${hex.length}`);
  }
  hex.forEach((c, i) => {
    algorithmOf(c, `zmkComponents[${i}]`, componentsError);
    if (c.length !== hex[0]!.length)
      throw componentsError(`zmkComponents[${i}]`, 'components differ in length');
  });
  return hex;
}

/** Re-throws an HSM refusal of a zone key as a zone error naming the key. */
function asZoneError(e: unknown, field: string, what: string): unknown {
  if (!isPoskeyError(e)) return e;
  return fileError(field, `${what}: ${e.code}: ${e.reason}`, e);
}

/**
 * Imports the zone keys into `hsm`: the ZMK from its components, then the ZPK and ZAK from their
 * cryptograms under it, each checked against its KCV.
 * @returns the three LMK key blocks of this side
 * @throws POSKEY_ERR_ZONE_COMPONENTS, POSKEY_ERR_ZONE_ZMK_KCV (components do not form the zone
 *   file's ZMK), POSKEY_ERR_ZONE_FILE (malformed file, or a key the HSM refuses: KCV mismatch)
 */
export async function importZoneKeys(
  hsm: ZoneHsm,
  zmkComponents: string | readonly string[],
  zoneFile: ZoneFile,
  options: { actor?: string } = {},
): Promise<ZoneKeys> {
  const components = parseZmkComponents(zmkComponents);
  const zone = parseZoneFile(zoneFile);
  const actor = options.actor ?? 'network';
  const algorithm = ALGORITHM_BY_HEX[components[0]!.length]!;
  let zmk: { keyBlock: LmkKeyBlock; info: KeyInfo };
  try {
    zmk = await hsm.importKey(
      { keyType: 'ZMK', algorithm, source: { kind: 'components', components } },
      actor,
    );
  } catch (e) {
    throw isPoskeyError(e) ? componentsError('zmkComponents', `${e.code}: ${e.reason}`) : e;
  }
  if (zone.zmkKcv !== undefined) {
    const have = Buffer.from(zmk.info.kcv.value.slice(0, zone.zmkKcv.length), 'latin1');
    if (!constantTimeEqual(have, Buffer.from(zone.zmkKcv, 'latin1'))) {
      throw networkError(
        'POSKEY_ERR_ZONE_ZMK_KCV',
        'the ZMK components do not form the ZMK of this zone file (KCV mismatch)',
        'zmkComponents',
      );
    }
  }
  const load = async (keyType: 'ZPK' | 'ZAK', entry: ZoneKeyCryptogram, field: string) => {
    const alg = ALGORITHM_BY_HEX[entry.underZmk.length]!;
    const source = { kind: 'legacy' as const, kek: zmk.keyBlock, cryptogram: entry.underZmk, kcv: entry.kcv };
    try {
      return (await hsm.importKey({ keyType, algorithm: alg, source }, actor)).keyBlock;
    } catch (e) {
      throw asZoneError(e, field, `the ${keyType} does not import under this ZMK`);
    }
  };
  return {
    zmk: zmk.keyBlock,
    zpk: await load('ZPK', zone.zpk, 'zpk'),
    zak: await load('ZAK', zone.zak, 'zak'),
  };
}

/**
 * A new zone: a random ZMK dealt as components, imported into `hsm`, and a ZPK and ZAK generated
 * there and delivered under the ZMK (legacy ECB cryptograms with KCVs). Nothing touches the disk.
 * The LMK copies made here are not exportable: the other side imports the zone file instead.
 */
export async function createZoneKeys(
  hsm: ZoneHsm,
  options: { components?: number; algorithm?: 'tdes2' | 'tdes3'; actor?: string } = {},
): Promise<CreatedZone> {
  const n = options.components ?? DEFAULT_ZMK_COMPONENTS;
  if (!Number.isInteger(n) || n < 2 || n > 9) throw componentsError('components', 'must be 2 to 9');
  const algorithm = options.algorithm ?? 'tdes2';
  if (algorithm !== 'tdes2' && algorithm !== 'tdes3') {
    throw networkError('POSKEY_ERR_NETWORK_OPTION', "must be 'tdes2' or 'tdes3'", 'algorithm');
  }
  const actor = options.actor ?? 'network';
  const raw = Array.from({ length: n }, () => randomKey('tdes', algorithm === 'tdes2' ? 16 : 24));
  const zmkComponents = raw.map((c) => toHex(c));
  zeroize(...raw);
  const zmk = await hsm.importKey(
    { keyType: 'ZMK', algorithm, source: { kind: 'components', components: zmkComponents } },
    actor,
  );
  const deliver = async (keyType: 'ZPK' | 'ZAK') => {
    const made = await hsm.generateKey(
      { keyType, algorithm, exportability: 'N', exportUnder: { kek: zmk.keyBlock, format: 'legacy' } },
      actor,
    );
    const cryptogram = made.exported?.cryptogram;
    if (cryptogram === undefined) {
      throw networkError(
        'POSKEY_ERR_ZONE_FILE',
        `the HSM did not deliver the ${keyType} under the ZMK`,
        keyType,
      );
    }
    return { keyBlock: made.keyBlock, entry: { underZmk: cryptogram, kcv: made.info.kcv.value } };
  };
  const zpk = await deliver('ZPK');
  const zak = await deliver('ZAK');
  return {
    zmkComponents,
    zoneFile: { zmkKcv: zmk.info.kcv.value, zpk: zpk.entry, zak: zak.entry },
    keys: { zmk: zmk.keyBlock, zpk: zpk.keyBlock, zak: zak.keyBlock },
  };
}
