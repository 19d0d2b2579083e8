/**
 * The crash test's world: the host as a child process that the test SIGKILLs, everything else in
 * the test process and surviving the kills.
 *
 * - the card network simulator (src/network) with its own HSM (dev LMK 01), a zone it made, and
 *   test cards with known starting balances in its ledger (SQLite, WAL, synchronous=FULL);
 * - the host's store: SQLite in the host data directory, or a fresh schema of the test PostgreSQL;
 *   terminals and the merchant are registered in it before the host first starts, their TMKs made
 *   from components the test chose and imported under the host's development LMK, which the test
 *   creates in the host's HSM directory (small scrypt cost) so the child opens the same one;
 * - `poskey host serve` (test/host/host-process.ts) on a fixed port, restarted on the same data
 *   directory and database after each kill;
 * - terminal simulators (src/terminal) with PIN pads holding the TMKs, in memory: a terminal keeps
 *   its STAN, batch and pending reversals across host restarts, as a real one does.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { toHex, xor } from '../../src/crypto/bytes.js';
import { generateKey } from '../../src/crypto/keys.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { ensureDevLmk } from '../../src/hsm/seal.js';
import type { Faults } from '../../src/network/faults.js';
import { type OpenedNetwork, openNetworkSimulator } from '../../src/network/setup.js';
import { openStore } from '../../src/store/open.js';
import type { Repository } from '../../src/store/types.js';
import { withCheckDigit } from '../../src/terminal/cards.js';
import { PinPad } from '../../src/terminal/pinpad.js';
import { Terminal } from '../../src/terminal/terminal.js';
import { PG_URL } from '../store/helpers.js';
import { freePort, HostProcess } from './host-process.js';

export type Backend = 'sqlite' | 'postgres';

export const CRASH_MID = '898310048990001';

/** A card of the test's ledger; `initial` is its balance before any load (minor units). */
export interface CrashCard {
  pan: string;
  expiry: string;
  pin: string;
  initial: number;
}

export interface CrashTerminal {
  tid: string;
  /** The clear TMK (the test made its components). */
  tmk: Buffer;
}

export interface CrashWorldOptions {
  terminals: number;
  /** Balances of the cards to issue; a small one makes some purchases decline with 51. */
  balances: readonly number[];
  /** Network faults for the whole run (jitter keeps requests at the network when the host dies). */
  faults?: Partial<Faults>;
  /** `--network-timeout` of the host. */
  networkTimeout?: string;
  /** Extra `poskey host serve` arguments. */
  hostArgs?: readonly string[];
}

export interface CrashWorld {
  backend: Backend;
  network: OpenedNetwork;
  /**
   * The host process. Its first start needs `firstStartEnv` (the ZMK components, as an operator
   * gives them once); restarts use the zone keys it saved, rotated by its network sign-ons.
   */
  host: HostProcess;
  firstStartEnv: Record<string, string>;
  /** The host's fixed terminal port. */
  port: number;
  terminals: CrashTerminal[];
  cards: CrashCard[];
  /** The host's database through a connection of the test's own (read it; do not write). */
  openHostStore(): Promise<Repository>;
  /** Runs a read-only query on the host's database; undefined when `table` does not exist. */
  queryHost(table: string, sql: string): Promise<Record<string, unknown>[] | undefined>;
  terminal(t: CrashTerminal, responseMs?: number): Terminal;
  close(): Promise<void>;
}

/** Two random components and the TDES key they form. */
function tmkComponents(): { clear: Buffer; components: string[] } {
  const clear = generateKey('tdes', 16);
  const c1 = generateKey('tdes', 16);
  return { clear, components: [toHex(c1), toHex(xor(clear, c1))] };
}

/** Distinct PANs whose masked forms (first 6, last 4) differ too: the ledger rows show only those. */
function cardPan(i: number): string {
  return withCheckDigit(`62284899${String(i).padStart(4, '0')}00${String(i).padStart(3, '0')}`);
}

async function pgSide<T>(schema: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({
    connectionString: PG_URL,
    connectionTimeoutMillis: 5000,
    options: `-c search_path=${schema}`,
  });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function startCrashWorld(backend: Backend, options: CrashWorldOptions): Promise<CrashWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-crash-'));
  const hostDir = join(dir, 'host');
  const hsmDir = join(dir, 'hsm');
  mkdirSync(hostDir, { recursive: true });
  const schema = `poskey_crash_${randomBytes(6).toString('hex')}`;
  const panKeyFile = join(dir, 'pan-hash.key');
  writeFileSync(panKeyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const database =
    backend === 'postgres' ? `${PG_URL}?schema=${schema}` : `sqlite:${join(hostDir, 'poskey.db')}`;
  const openHostStore = () => openStore(database, { panKeyFile, nodeId: 'crash-test-reader' });

  const network = await openNetworkSimulator({
    dataDir: join(dir, 'network'),
    hsm: new Hsm({ lmks: new LmkSet([generateDevLmk('01')]) }),
    zone: { allowCreate: true },
    simulator: { port: 0, ...(options.faults ? { faults: options.faults } : {}) },
  });
  const netPort = (await network.simulator.listen()).port;
  const cards = options.balances.map((balance, i) => {
    const card = { pan: cardPan(i + 1), expiry: '3012', pin: '123456', initial: balance };
    network.ledger.addCard({ pan: card.pan, expiry: card.expiry, pin: card.pin, balance });
    return card;
  });

  // The host's development LMK, made here so the test can import TMKs under it.
  const dev = await ensureDevLmk(hsmDir, { kdf: { N: 1024, r: 8, p: 1 } });
  const hostHsm = new Hsm({ lmks: dev.lmks });
  const terminals: CrashTerminal[] = [];
  const setup = await openHostStore();
  try {
    await setup.merchants.upsert({ mid: CRASH_MID, name: 'Crash test shop', mcc: '5411' });
    for (let i = 1; i <= options.terminals; i++) {
      const tid = `K${String(i).padStart(7, '0')}`;
      const { clear, components } = tmkComponents();
      const imported = hostHsm.importKey({
        keyType: 'TMK',
        algorithm: 'tdes2',
        source: { kind: 'components', components },
      });
      await setup.terminals.create({
        tid,
        mid: CRASH_MID,
        keyAlgorithm: 'TDES',
        tmk: { block: imported.keyBlock, kcv: imported.info.kcv.value },
      });
      terminals.push({ tid, tmk: clear });
    }
  } finally {
    await setup.close();
    hostHsm.destroy();
  }

  const port = await freePort();
  const host = new HostProcess({
    args: [
      '--port',
      String(port),
      '--data-dir',
      hostDir,
      '--database',
      database,
      '--pan-key-file',
      panKeyFile,
      '--node-id',
      'crash-host',
      '--hsm-data-dir',
      hsmDir,
      '--dev',
      '--network',
      `127.0.0.1:${netPort}`,
      '--network-timeout',
      options.networkTimeout ?? '2s',
      '--zone-file',
      join(dir, 'network', 'zone.json'),
      '--log-level',
      process.env.POSKEY_TEST_LOG ?? 'error',
      ...(options.hostArgs ?? []),
    ],
  });

  return {
    backend,
    network,
    host,
    firstStartEnv: { POSKEY_ZMK_COMPONENTS: network.zone.zmkComponents!.join(',') },
    port,
    terminals,
    cards,
    openHostStore,
    async queryHost(table, sql) {
      if (backend === 'postgres') {
        return pgSide(schema, async (c) => {
          const found = await c.query('SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2', [
            schema,
            table,
          ]);
          return found.rowCount === 0 ? undefined : (await c.query(sql)).rows;
        });
      }
      const { default: Database } = await import('better-sqlite3');
      const db = new Database(join(hostDir, 'poskey.db'), { readonly: true, fileMustExist: true });
      try {
        const found = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table);
        return found === undefined ? undefined : (db.prepare(sql).all() as Record<string, unknown>[]);
      } finally {
        db.close();
      }
    },
    terminal(t, responseMs = 15_000) {
      const pinPad = new PinPad();
      pinPad.injectTmk(0, t.tmk, { algorithm: 'tdes' });
      return new Terminal(
        {
          tid: t.tid,
          mid: CRASH_MID,
          host: '127.0.0.1',
          port,
          algorithm: 'tdes',
          timeouts: { responseMs, connectMs: 2000 },
        },
        { pinPad },
      );
    },
    async close() {
      await host.kill();
      await network.simulator.close();
      if (backend === 'postgres') {
        const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
        await c.connect();
        try {
          await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        } finally {
          await c.end();
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
