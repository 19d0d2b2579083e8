/**
 * Zone keys in the host's HSM. The ZMK comes as components (never written anywhere), the ZPK and
 * ZAK as cryptograms under it from the shared zone file (`src/network/zone.ts`); the host's HSM
 * imports them under its own LMK and the host keeps only the LMK key blocks.
 *
 * The blocks are saved to `<dataDir>/zone-keys.json` (0600; LMK blocks are useless without the
 * LMK), so a restart needs no components: a host started without them reads the saved blocks and,
 * when a zone file is configured, checks their KCVs against it, so a rotated zone file is never
 * paired with old keys.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { HsmClient, LmkKeyBlock } from '../hsm/api.js';
import { writeFileAtomic } from '../hsm/seal.js';
import { importZoneKeys, readZoneFile, type ZoneFile } from '../network/zone.js';
import type { HostConfig } from './config.js';
import type { ZoneKeys } from './context.js';
import { hostError } from './errors.js';

/** File name of the saved zone key blocks in the host data directory. */
export const ZONE_KEYS_FILE = 'zone-keys.json';
const ZONE_KEYS_FORMAT = 'poskey-host-zone-keys/1';

interface SavedZoneKeys {
  format: typeof ZONE_KEYS_FORMAT;
  zpk: LmkKeyBlock;
  zak: LmkKeyBlock;
}

export interface LoadZoneKeysOptions {
  /** ZMK components (hex); default: the variable named by `zone.componentsEnv`. */
  zmkComponents?: string | readonly string[];
  /** The zone file's content, instead of reading `zone.file`. */
  zoneFile?: ZoneFile;
  env?: Record<string, string | undefined>;
}

function zoneKeysPath(config: HostConfig): string {
  return config.zone.keysFile ?? join(config.dataDir, ZONE_KEYS_FILE);
}

/** Checks the blocks are a ZPK and a ZAK the HSM can open, and reads the link's PIN format. */
async function describe(hsm: HsmClient, zpk: LmkKeyBlock, zak: LmkKeyBlock): Promise<ZoneKeys> {
  try {
    const [p, a] = await Promise.all([hsm.describeKey(zpk), hsm.describeKey(zak)]);
    if (p.keyType !== 'ZPK' || a.keyType !== 'ZAK') {
      throw hostError(
        'POSKEY_ERR_HOST_ZONE',
        `expected a ZPK and a ZAK, found ${p.keyType} and ${a.keyType}`,
        'zone',
      );
    }
    return { zpk, zak, pinFormat: p.algorithm === 'sm4' ? 'sm4' : 0 };
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

async function readSaved(path: string): Promise<SavedZoneKeys | undefined> {
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

/** Constant-time enough for public check values; the point is refusing a mismatch. */
async function assertMatchesZoneFile(hsm: HsmClient, keys: ZoneKeys, zone: ZoneFile): Promise<void> {
  for (const [name, block, entry] of [
    ['zpk', keys.zpk, zone.zpk],
    ['zak', keys.zak, zone.zak],
  ] as const) {
    const kcv = await hsm.checkValue(block, 'legacy', entry.kcv.length / 2);
    if (kcv.value.toUpperCase() !== entry.kcv.toUpperCase()) {
      throw hostError(
        'POSKEY_ERR_HOST_ZONE',
        `the saved ${name.toUpperCase()} is not the zone file's (KCV differs): supply the ZMK components to import it`,
        `zone.${name}`,
      );
    }
  }
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
    const imported = await importZoneKeys(hsm, components, zoneFile, { actor: 'host' });
    const keys = await describe(hsm, imported.zpk, imported.zak);
    const saved: SavedZoneKeys = { format: ZONE_KEYS_FORMAT, zpk: keys.zpk, zak: keys.zak };
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, `${JSON.stringify(saved, null, 2)}\n`);
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
  const keys = await describe(hsm, saved.zpk, saved.zak);
  if (zoneFile !== undefined) await assertMatchesZoneFile(hsm, keys, zoneFile);
  return keys;
}
