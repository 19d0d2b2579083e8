/**
 * Zone keys in the host's HSM. The ZMK comes as components (never written anywhere), the ZPK and
 * ZAK as cryptograms under it from the shared zone file (`src/network/zone.ts`); the host's HSM
 * imports them under its own LMK and the host keeps only the LMK key blocks.
 *
 * The blocks are saved to `<dataDir>/zone-keys.json` (0600; LMK blocks are useless without the
 * LMK), so a restart needs no components: a host started without them reads the saved blocks and,
 * when a zone file is configured, checks their KCVs against it, so a rotated zone file is never
 * paired with old keys.
 *
 * After a key exchange with the network (zone-keys.ts) the file holds the delivered pair, its key
 * set, the ZMK block (to import the next pair) and `origin`: the KCVs of the zone file's pair it
 * grew from, which is what a restart then checks against the zone file. The file is replaced
 * atomically (write, fsync, rename): a crash leaves the old pair or the new one, never neither.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { constantTimeEqual } from '../crypto/bytes.js';
import type { HsmClient, LmkKeyBlock } from '../hsm/api.js';
import { writeFileAtomic } from '../hsm/seal.js';
import { importZoneKeys, readZoneFile, type ZoneFile } from '../network/zone.js';
import type { HostConfig } from './config.js';
import type { ZoneKeys } from './context.js';
import { hostError } from './errors.js';

/** File name of the saved zone key blocks in the host data directory. */
export const ZONE_KEYS_FILE = 'zone-keys.json';
export const ZONE_KEYS_FORMAT = 'poskey-host-zone-keys/1';

export interface SavedZoneKeys {
  format: typeof ZONE_KEYS_FORMAT;
  zpk: LmkKeyBlock;
  zak: LmkKeyBlock;
  /** The ZMK under this host's LMK (absent in files saved before key exchange existed). */
  zmk?: LmkKeyBlock;
  /** The network's name for the pair; '000000' or absent: the zone file's pair. */
  keySet?: string;
  /** KCVs of the zone file's pair this one replaced (present once a key exchange happened). */
  origin?: { zpkKcv: string; zakKcv: string };
  /** When the pair was delivered (ISO 8601). */
  rotatedAt?: string;
}

export interface LoadZoneKeysOptions {
  /** ZMK components (hex); default: the variable named by `zone.componentsEnv`. */
  zmkComponents?: string | readonly string[];
  /** The zone file's content, instead of reading `zone.file`. */
  zoneFile?: ZoneFile;
  env?: Record<string, string | undefined>;
  /** Told when components were given but not used (the saved pair is newer than the zone file's). */
  warn?: (message: string) => void;
}

export function zoneKeysPath(config: HostConfig): string {
  return config.zone.keysFile ?? join(config.dataDir, ZONE_KEYS_FILE);
}

/** Checks the blocks are a ZPK and a ZAK the HSM can open, and reads the link's PIN format. */
export async function describeZoneKeys(
  hsm: HsmClient,
  zpk: LmkKeyBlock,
  zak: LmkKeyBlock,
): Promise<ZoneKeys> {
  try {
    const [p, a] = await Promise.all([hsm.describeKey(zpk), hsm.describeKey(zak)]);
    if (p.keyType !== 'ZPK' || a.keyType !== 'ZAK') {
      throw hostError(
        'POSKEY_ERR_HOST_ZONE',
        `expected a ZPK and a ZAK, found ${p.keyType} and ${a.keyType}`,
        'zone',
      );
    }
    return { zpk, zak, pinFormat: p.algorithm === 'sm4' ? 'sm4' : 0, keySet: '000000' };
  } catch (e) {
    if (e instanceof Error && 'code' in e && e.code === 'POSKEY_ERR_HOST_ZONE') throw e;
    throw hostError(
      'POSKEY_ERR_HOST_ZONE',
      'the saved zone keys do not open under this HSM',
      'zone.keysFile',
      e,
    );
  }
}

export async function readSaved(path: string): Promise<SavedZoneKeys | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw hostError('POSKEY_ERR_HOST_ZONE', `cannot read ${path}`, 'zone.keysFile', e);
  }
  try {
    const doc = JSON.parse(text) as Partial<SavedZoneKeys>;
    if (doc.format !== ZONE_KEYS_FORMAT || typeof doc.zpk !== 'string' || typeof doc.zak !== 'string')
      throw 0;
    return doc as SavedZoneKeys;
  } catch (e) {
    throw hostError('POSKEY_ERR_HOST_ZONE', `${path} is not a saved zone key file`, 'zone.keysFile', e);
  }
}

/** Writes the saved zone keys atomically (0600). */
export async function saveZoneKeys(path: string, saved: SavedZoneKeys): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, `${JSON.stringify(saved, null, 2)}\n`);
}

/** True when two hex check values are equal (case-insensitive), compared in constant time. */
export function sameKcv(a: string, b: string): boolean {
  return constantTimeEqual(Buffer.from(a.toUpperCase(), 'latin1'), Buffer.from(b.toUpperCase(), 'latin1'));
}

async function assertMatchesZoneFile(hsm: HsmClient, saved: SavedZoneKeys, zone: ZoneFile): Promise<void> {
  for (const [name, block, entry, origin] of [
    ['zpk', saved.zpk, zone.zpk, saved.origin?.zpkKcv],
    ['zak', saved.zak, zone.zak, saved.origin?.zakKcv],
  ] as const) {
    // A pair from a key exchange is checked by the zone file pair it grew from.
    const kcv = origin ?? (await hsm.checkValue(block, 'legacy', entry.kcv.length / 2)).value;
    if (!sameKcv(kcv.slice(0, entry.kcv.length), entry.kcv)) {
      throw hostError(
        'POSKEY_ERR_HOST_ZONE',
        `the saved ${name.toUpperCase()} is not the zone file's (KCV differs): supply the ZMK components to import it`,
        `zone.${name}`,
      );
    }
  }
}

/**
 * The saved pair when a key exchange replaced exactly this zone file's pair: importing the file
 * again would overwrite keys the network has moved on to (its sign-on would then fail the MAC).
 */
async function rotatedFromZoneFile(path: string, zone: ZoneFile): Promise<SavedZoneKeys | undefined> {
  // An unreadable file is what an import with components repairs: it does not stop it.
  const saved = await readSaved(path).catch(() => undefined);
  const origin = saved?.origin;
  if (origin === undefined) return undefined;
  const same = (kcv: string, entry: string) => sameKcv(kcv.slice(0, entry.length), entry);
  return same(origin.zpkKcv, zone.zpk.kcv) && same(origin.zakKcv, zone.zak.kcv) ? saved : undefined;
}

/**
 * The zone keys for the host: imported from components + zone file (and saved), or the saved ones.
 * @throws POSKEY_ERR_HOST_ZONE when neither works; zone import errors (POSKEY_ERR_ZONE_*) pass through
 */
export async function loadZoneKeys(
  hsm: HsmClient,
  config: HostConfig,
  options: LoadZoneKeysOptions = {},
): Promise<ZoneKeys> {
  const env = options.env ?? process.env;
  const components = options.zmkComponents ?? env[config.zone.componentsEnv];
  const path = zoneKeysPath(config);
  let zoneFile = options.zoneFile;
  if (zoneFile === undefined && config.zone.file !== undefined)
    zoneFile = await readZoneFile(config.zone.file);
  if (components !== undefined && components !== '' && zoneFile !== undefined) {
    const rotated = await rotatedFromZoneFile(path, zoneFile);
    if (rotated !== undefined) {
      options.warn?.(
        `ZMK components ignored: the saved zone keys (key set ${rotated.keySet ?? '?'}) came from a key exchange with the network and replace this zone file's pair; re-importing would put the host back on keys the network no longer uses. Start without ${config.zone.componentsEnv}; to import the zone file's pair anyway, remove ${path} first`,
      );
      const keys = await describeZoneKeys(hsm, rotated.zpk, rotated.zak);
      return { ...keys, keySet: rotated.keySet ?? '000000' };
    }
    const imported = await importZoneKeys(hsm, components, zoneFile, { actor: 'host' });
    const keys = await describeZoneKeys(hsm, imported.zpk, imported.zak);
    await saveZoneKeys(path, {
      format: ZONE_KEYS_FORMAT,
      zpk: keys.zpk,
      zak: keys.zak,
      zmk: imported.zmk,
      keySet: '000000',
    });
    return keys;
  }
  const saved = await readSaved(path);
  if (saved === undefined) {
    throw hostError(
      'POSKEY_ERR_HOST_ZONE',
      `no zone keys: give the zone file and the ZMK components (${config.zone.componentsEnv}) once`,
      'zone',
    );
  }
  const keys = await describeZoneKeys(hsm, saved.zpk, saved.zak);
  if (zoneFile !== undefined) await assertMatchesZoneFile(hsm, saved, zoneFile);
  return { ...keys, keySet: saved.keySet ?? '000000' };
}
