/**
 * Putting a network simulator together from a data directory: its own HSM (a sealed LMK, or a
 * development LMK made on first start), the ledger with its PVK, the zone keys, demo cards.
 *
 * Data directory (default ./data/network): `lmk.sealed.json` or `lmk.dev.sealed.json`,
 * `ledger.sqlite` (cards, authorisations, the PVK and the network's zone key blocks), `zone.json`.
 *
 * Zone keys, in order of preference:
 *  1. ZMK components given (POSKEY_ZMK_COMPONENTS): the zone file is imported and the resulting
 *     LMK blocks are stored in the ledger;
 *  2. blocks stored by an earlier start whose KCVs match the zone file: used as they are, so a
 *     restart needs no components;
 *  3. no zone file and creation allowed (development): a new zone is made, the zone file written
 *     (cryptograms only) and the components returned once for the caller to show;
 *  4. otherwise POSKEY_ERR_ZONE_MISSING.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { Hsm } from '../hsm/hsm.js';
import { ensureDevLmk, loadSealedLmks, type ScryptParams, SEALED_LMK_FILE } from '../hsm/seal.js';
import { networkError } from './errors.js';
import { Ledger, type NewCard } from './ledger.js';
import { createNetworkSimulator, type NetworkSimulator, type NetworkSimulatorOptions } from './server.js';
import {
  createZoneKeys,
  importZoneKeys,
  parseZoneFile,
  readZoneFile,
  writeZoneFile,
  type ZoneFile,
  type ZoneKeys,
} from './zone.js';
import { ZoneKeyRing, type ZoneRingState } from './zone-ring.js';

export const DEFAULT_NETWORK_DATA_DIR = './data/network';
export const LEDGER_FILE = 'ledger.sqlite';
export const ZONE_FILE = 'zone.json';
/** Passphrase of a sealed network LMK (production mode). */
export const NETWORK_PASSPHRASE_ENV = 'POSKEY_NETWORK_LMK_PASSPHRASE';

const ZONE_META = 'zone';
/** The key ring after key exchanges: `{ origin: <the zone's ZPK block>, state }`. */
const RING_META = 'zone-ring';

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export interface NetworkHsm {
  hsm: Hsm;
  /** True on a development LMK. */
  dev: boolean;
  /** The development banner to print (dev mode only). */
  warning?: string;
}

/**
 * The network's own HSM: the sealed LMK of `dataDir` when there is one (needs the passphrase),
 * else the development LMK of `dataDir`, made on first use.
 * @throws POSKEY_ERR_NETWORK_OPTION when a sealed LMK exists and no passphrase is given, and the
 *   unseal errors (POSKEY_ERR_LMK_UNSEAL…)
 */
export async function loadNetworkHsm(
  dataDir: string,
  options: { passphrase?: string | undefined; kdf?: Partial<ScryptParams> } = {},
): Promise<NetworkHsm> {
  const sealed = join(dataDir, SEALED_LMK_FILE);
  if (await exists(sealed)) {
    if (options.passphrase === undefined) {
      throw networkError(
        'POSKEY_ERR_NETWORK_OPTION',
        `a sealed LMK needs ${NETWORK_PASSPHRASE_ENV}`,
        'passphrase',
      );
    }
    return { hsm: new Hsm({ lmks: await loadSealedLmks(sealed, options.passphrase) }), dev: false };
  }
  const dev = await ensureDevLmk(dataDir, options.kdf ? { kdf: options.kdf } : {});
  return { hsm: new Hsm({ lmks: dev.lmks }), dev: true, warning: dev.warning };
}

export interface ZoneSource {
  /** Hex, comma-separated or as an array. */
  zmkComponents?: string | readonly string[] | undefined;
  /** The zone file in memory (wins over `zoneFilePath` for reading). */
  zoneFile?: ZoneFile | undefined;
  /** Where the zone file is read from, and written to when a zone is created. */
  zoneFilePath?: string | undefined;
  /** Make a new zone when there is neither a zone file nor stored keys (development only). */
  allowCreate?: boolean;
}

export interface ResolvedZone {
  keys: ZoneKeys;
  zoneFile: ZoneFile;
  source: 'components' | 'stored' | 'created';
  /** Only when `source` is 'created': the new ZMK components, to be shown once and not kept. */
  zmkComponents?: string[];
}

interface StoredZone {
  keys: ZoneKeys;
  zoneFile: ZoneFile;
}

function readStored(ledger: Ledger): StoredZone | undefined {
  const text = ledger.getMeta(ZONE_META);
  if (text === undefined) return undefined;
  const doc = JSON.parse(text) as StoredZone;
  return { keys: doc.keys, zoneFile: parseZoneFile(doc.zoneFile) };
}

function store(ledger: Ledger, zone: StoredZone): void {
  ledger.setMeta(ZONE_META, JSON.stringify(zone));
}

function sameZone(a: ZoneFile, b: ZoneFile): boolean {
  return a.zpk.kcv === b.zpk.kcv && a.zak.kcv === b.zak.kcv && a.zpk.underZmk === b.zpk.underZmk;
}

/**
 * The network side's zone keys (see the module comment for the order).
 * @throws POSKEY_ERR_ZONE_MISSING, and the zone import errors
 */
export async function resolveZoneKeys(hsm: Hsm, ledger: Ledger, source: ZoneSource): Promise<ResolvedZone> {
  const path = source.zoneFilePath;
  const file =
    source.zoneFile ?? (path !== undefined && (await exists(path)) ? await readZoneFile(path) : undefined);
  if (source.zmkComponents !== undefined) {
    if (file === undefined) {
      throw networkError(
        'POSKEY_ERR_ZONE_MISSING',
        'ZMK components were given but there is no zone file',
        'zoneFile',
      );
    }
    const keys = await importZoneKeys(hsm, source.zmkComponents, file);
    store(ledger, { keys, zoneFile: file });
    return { keys, zoneFile: file, source: 'components' };
  }
  const stored = readStored(ledger);
  if (stored !== undefined && (file === undefined || sameZone(file, stored.zoneFile))) {
    try {
      hsm.describeKey(stored.keys.zpk);
      hsm.describeKey(stored.keys.zak);
    } catch (e) {
      throw networkError(
        'POSKEY_ERR_ZONE_MISSING',
        'the stored zone keys are not usable with this HSM',
        'zone',
        e,
      );
    }
    return { keys: stored.keys, zoneFile: stored.zoneFile, source: 'stored' };
  }
  if (file === undefined && source.allowCreate) {
    const created = await createZoneKeys(hsm);
    if (path !== undefined) await writeZoneFile(path, created.zoneFile);
    store(ledger, { keys: created.keys, zoneFile: created.zoneFile });
    return {
      keys: created.keys,
      zoneFile: created.zoneFile,
      source: 'created',
      zmkComponents: created.zmkComponents,
    };
  }
  const why =
    file === undefined ? 'no zone file and no stored zone keys' : 'the zone file is not the stored zone';
  throw networkError(
    'POSKEY_ERR_ZONE_MISSING',
    `${why}: give the ZMK components (POSKEY_ZMK_COMPONENTS)`,
    'zmkComponents',
  );
}

/**
 * The zone key ring of this ledger: the saved one when it grew from the zone in use (a restart
 * keeps every pair the acquirer may hold), else a new one starting at the zone's pair. Every change
 * is written to the ledger's meta table before it takes effect.
 */
export function openZoneRing(
  ledger: Ledger,
  zone: ResolvedZone,
  options: { overlapMs?: number | undefined; clock?: () => number } = {},
): ZoneKeyRing {
  const origin = zone.keys.zpk;
  let initial: ZoneRingState | undefined;
  const text = zone.source === 'stored' ? ledger.getMeta(RING_META) : undefined;
  if (text !== undefined) {
    const doc = JSON.parse(text) as { origin?: string; state?: ZoneRingState };
    if (doc.origin === origin && doc.state?.active !== undefined) initial = doc.state;
  }
  return new ZoneKeyRing({
    initial: initial ?? { keySet: '000000', zpk: zone.keys.zpk, zak: zone.keys.zak },
    zmk: zone.keys.zmk,
    ...(options.overlapMs !== undefined ? { overlapMs: options.overlapMs } : {}),
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
    persist: (state) => ledger.setMeta(RING_META, JSON.stringify({ origin, state })),
  });
}

/**
 * Demo cards for `--seed demo`. Their PINs are published here on purpose: test cards only.
 * Balances in minor units (fen).
 */
export const DEMO_CARDS: readonly (NewCard & { note: string })[] = Object.freeze([
  { pan: '6228480000000015', expiry: '3012', pin: '123456', balance: 10_000_000, note: 'approves' },
  { pan: '6228480000000023', expiry: '3012', pin: '111111', balance: 5_000, note: '51 above 50.00' },
  { pan: '6228480000000031', expiry: '2001', pin: '123456', balance: 10_000_000, note: '54 expired' },
  {
    pan: '6228480000000049',
    expiry: '3012',
    pin: '123456',
    balance: 10_000_000,
    status: 'blocked',
    note: '62 blocked',
  },
  {
    pan: '6228480000000056',
    expiry: '3012',
    pin: '123456',
    balance: 10_000_000,
    status: 'lost',
    note: '62 lost',
  },
  {
    pan: '4761739001010119',
    expiry: '3012',
    pin: '1234',
    balance: 1_000_000,
    note: 'approves (Visa test PAN)',
  },
]);

/** Adds the demo cards not on file yet; returns how many were added. */
export function seedDemoCards(ledger: Ledger): number {
  let added = 0;
  for (const { note: _note, ...card } of DEMO_CARDS) {
    if (ledger.getCard(card.pan) !== undefined) continue;
    ledger.addCard(card);
    added++;
  }
  return added;
}

export interface OpenNetworkOptions {
  dataDir?: string;
  /** Default `<dataDir>/ledger.sqlite`. */
  ledgerPath?: string;
  /** An HSM to use instead of loading the data directory's LMK. */
  hsm?: Hsm;
  passphrase?: string | undefined;
  /** scrypt cost for a development LMK made here (tests pass a small N). */
  kdf?: Partial<ScryptParams>;
  /** Zone keys; `zoneFilePath` defaults to `<dataDir>/zone.json`. */
  zone?: ZoneSource;
  seed?: 'demo';
  /** Listener, faults, logger, clock… */
  simulator?: Omit<NetworkSimulatorOptions, 'hsm' | 'ledger' | 'zone' | 'ownsLedger'>;
}

export interface OpenedNetwork {
  simulator: NetworkSimulator;
  hsm: Hsm;
  ledger: Ledger;
  zone: ResolvedZone;
  dev: boolean;
  warning?: string;
  /** Demo cards added by this start. */
  seeded: number;
}

/**
 * A ready simulator (not yet listening) from a data directory: HSM, ledger + PVK, zone keys, seed.
 * The simulator owns the ledger: `simulator.close()` closes it.
 */
export async function openNetworkSimulator(options: OpenNetworkOptions = {}): Promise<OpenedNetwork> {
  const dataDir = options.dataDir ?? DEFAULT_NETWORK_DATA_DIR;
  const loaded: NetworkHsm =
    options.hsm !== undefined
      ? { hsm: options.hsm, dev: options.hsm.diagnostics().lmks.some((l) => l.dev) }
      : await loadNetworkHsm(dataDir, {
          passphrase: options.passphrase,
          ...(options.kdf ? { kdf: options.kdf } : {}),
        });
  const ledger = Ledger.open({ path: options.ledgerPath ?? join(dataDir, LEDGER_FILE), hsm: loaded.hsm });
  try {
    const zone = await resolveZoneKeys(loaded.hsm, ledger, {
      zoneFilePath: join(dataDir, ZONE_FILE),
      allowCreate: loaded.dev,
      ...options.zone,
    });
    const seeded = options.seed === 'demo' ? seedDemoCards(ledger) : 0;
    const simulator = createNetworkSimulator({
      ...options.simulator,
      hsm: loaded.hsm,
      ledger,
      zone: openZoneRing(ledger, zone, { overlapMs: options.simulator?.keyOverlapMs }),
      ownsLedger: true,
    });
    const opened: OpenedNetwork = { simulator, hsm: loaded.hsm, ledger, zone, dev: loaded.dev, seeded };
    if (loaded.warning !== undefined) opened.warning = loaded.warning;
    return opened;
  } catch (e) {
    ledger.close();
    throw e;
  }
}
