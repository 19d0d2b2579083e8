/**
 * `openStore`: the one way in. SQLite in the data directory by default, PostgreSQL when given a
 * postgres:// URL (`--database`). The database is migrated on open.
 *
 *   openStore({ dataDir: '/var/lib/poskey' })          → SQLite /var/lib/poskey/poskey.db
 *   openStore('sqlite:/srv/poskey/host.db')            → SQLite at that path
 *   openStore('/srv/poskey/host.db')                   → the same
 *   openStore('postgres://u@db:5432/poskey?schema=h1', { panKeyFile }) → PostgreSQL, schema h1
 *
 * PAN key: the HMAC key for PAN hashes lives outside the database. For SQLite it defaults to
 * `pan-hash.key` beside the database file, created (mode 0600) on first open. PostgreSQL needs
 * `panKey` or an existing `panKeyFile`: every host process sharing the database must use the same
 * key, so none of them may invent one.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { StoreError, storeError } from './errors.js';
import { createIdGenerator } from './ids.js';
import { assertMaxBatch } from './journal.js';
import { PAN_KEY_MAX, PAN_KEY_MIN, PanHasher } from './pan.js';
import { openPostgresStore } from './postgres.js';
import type { RepositoryOptions } from './repository.js';
import { openSqliteStore } from './sqlite.js';
import type { Repository } from './types.js';
import { checkNodeId } from './validate.js';

/** File name of the SQLite database in a data directory. */
export const SQLITE_FILE = 'poskey.db';
/** File name of the PAN key beside a SQLite database. */
export const PAN_KEY_FILE = 'pan-hash.key';

export type StoreTarget = string | { dataDir: string };

export type ParsedTarget =
  | { dialect: 'sqlite'; path: string }
  | { dialect: 'postgres'; url: string; schema: string | undefined };

export interface OpenStoreOptions {
  /** Names this host process in journal rows; the host name when omitted. Keep it stable across restarts. */
  nodeId?: string;
  /** HMAC key for PAN hashes, 32–64 bytes. */
  panKey?: Uint8Array;
  /** File holding the PAN key as hex. */
  panKeyFile?: string;
  /** Largest journal batch per transaction. */
  maxBatch?: number;
  /** SQLite: how long a writer waits for the lock (ms, default 5000). */
  busyTimeoutMs?: number;
  /** PostgreSQL: schema (overrides ?schema= in the URL; 'public' by default). */
  schema?: string;
  /** PostgreSQL: connections in the pool (default 10). */
  poolSize?: number;
  /** Clock (ms since the epoch), for tests. */
  now?: () => number;
}

function badTarget(reason: string): never {
  throw storeError('POSKEY_ERR_STORE_TARGET', reason, 'database');
}

/**
 * Reads a target without touching anything.
 * @throws POSKEY_ERR_STORE_TARGET
 */
export function parseStoreTarget(target: StoreTarget): ParsedTarget {
  if (typeof target === 'object' && target !== null) {
    if (typeof target.dataDir !== 'string' || target.dataDir === '')
      badTarget('dataDir must be a directory path');
    return { dialect: 'sqlite', path: resolve(target.dataDir, SQLITE_FILE) };
  }
  if (typeof target !== 'string' || target.trim() === '')
    badTarget('give a path, sqlite:PATH or postgres://…');
  if (/^postgres(ql)?:\/\//i.test(target)) {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      badTarget('not a valid postgres:// URL');
    }
    const schema = url.searchParams.get('schema') ?? undefined;
    url.searchParams.delete('schema');
    return { dialect: 'postgres', url: url.toString(), schema };
  }
  const path = target.startsWith('sqlite:') ? target.slice('sqlite:'.length) : target;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path))
    badTarget('only sqlite: and postgres:// databases are supported');
  if (path === '' || path === ':memory:' || path.startsWith('file:')) {
    badTarget('SQLite needs a file path (the journal writer opens its own connection)');
  }
  return { dialect: 'sqlite', path: resolve(path) };
}

function readKeyFile(file: string): Uint8Array {
  const hex = readFileSync(file, 'latin1').trim();
  if (!/^(?:[0-9A-Fa-f]{2})+$/.test(hex) || hex.length < PAN_KEY_MIN * 2 || hex.length > PAN_KEY_MAX * 2) {
    throw storeError(
      'POSKEY_ERR_STORE_CONFIG',
      `must hold ${PAN_KEY_MIN} to ${PAN_KEY_MAX} bytes as hex`,
      'panKeyFile',
    );
  }
  return Buffer.from(hex, 'hex');
}

/** Reads `file`, or creates it with a fresh key; link() makes creation atomic between processes. */
function readOrCreateKeyFile(file: string): Uint8Array {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, `${randomBytes(PAN_KEY_MIN).toString('hex')}\n`, { mode: 0o600 });
  try {
    linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    unlinkSync(tmp);
  }
  return readKeyFile(file);
}

function panKeyFor(target: ParsedTarget, o: OpenStoreOptions): Uint8Array {
  if (o.panKey !== undefined) return o.panKey;
  try {
    if (o.panKeyFile !== undefined) return readKeyFile(o.panKeyFile);
    if (target.dialect === 'postgres') {
      throw storeError(
        'POSKEY_ERR_STORE_CONFIG',
        'PostgreSQL needs panKey or panKeyFile: every host process sharing the database must hash PANs with the same key',
        'panKey',
      );
    }
    return readOrCreateKeyFile(join(dirname(target.path), PAN_KEY_FILE));
  } catch (e) {
    if (e instanceof StoreError) throw e;
    throw storeError(
      'POSKEY_ERR_STORE_CONFIG',
      `cannot read the PAN key file: ${(e as Error).message}`,
      'panKeyFile',
      e,
    );
  }
}

function defaultNodeId(): string {
  return (
    hostname()
      .replace(/[^A-Za-z0-9._:-]/g, '-')
      .slice(0, 64) || 'poskey'
  );
}

/**
 * Opens the store named by `target`, migrating it to the current schema.
 * @throws POSKEY_ERR_STORE_TARGET, POSKEY_ERR_STORE_CONFIG, POSKEY_ERR_STORE_FAILED (cannot
 *   open or reach the database), POSKEY_ERR_STORE_SCHEMA (database newer than this build)
 */
export async function openStore(target: StoreTarget, options: OpenStoreOptions = {}): Promise<Repository> {
  const parsed = parseStoreTarget(target);
  if (options.maxBatch !== undefined) assertMaxBatch(options.maxBatch);
  const now = options.now ?? Date.now;
  const common: RepositoryOptions = {
    nodeId: checkNodeId(options.nodeId ?? defaultNodeId()),
    hasher: new PanHasher(panKeyFor(parsed, options)),
    now,
    newId: createIdGenerator(now),
    maxBatch: options.maxBatch,
  };
  if (parsed.dialect === 'sqlite') {
    return openSqliteStore({ ...common, path: parsed.path, busyTimeoutMs: options.busyTimeoutMs });
  }
  return openPostgresStore({
    ...common,
    url: parsed.url,
    schema: options.schema ?? parsed.schema,
    poolSize: options.poolSize,
  });
}
