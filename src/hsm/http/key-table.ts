/**
 * The HSM's own key table: the HTTP API is stateful by design (AWS Payment Cryptography style), so
 * each key has an id, lifecycle state and metadata next to its LMK key block.
 *
 * One SQLite file (better-sqlite3) in the HSM data directory, WAL journal, `synchronous=FULL` so a
 * key the API has answered for survives a crash, `secure_delete` so a purged block's bytes are
 * overwritten. The key block is a TR-31 block under the LMK: ciphertext, safe on disk. No clear
 * key, component or PIN is ever written here.
 *
 * States follow AWS: CREATE_COMPLETE → (DeleteKey) DELETE_PENDING → (deletion date passes)
 * DELETE_COMPLETE, or back to CREATE_COMPLETE with RestoreKey. A pending key whose date has passed
 * is purged (state DELETE_COMPLETE, block removed, aliases released) the next time the table is
 * touched, so the clock alone decides it: no timer has to run. `onPurge` listeners hear of each
 * purge (the HTTP app audits it).
 *
 * Key ids are `key-` + a random UUID v4. Its longest run of hex digits is 12, so an id passes the
 * audit log's rule against 16+ hex digits in a row (possible key material). Ids of the first
 * format, `key-` + 16 hex digits, are still found by `get`.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Exportability, KeyAlgorithm, KeyType } from '../api.js';
import { HttpApiError } from './errors.js';

/** File name of the key table inside the HSM data directory. */
export const KEY_TABLE_FILE = 'hsm-keys.sqlite';

export type KeyState = 'CREATE_COMPLETE' | 'DELETE_PENDING' | 'DELETE_COMPLETE';
export const KEY_STATES: readonly KeyState[] = ['CREATE_COMPLETE', 'DELETE_PENDING', 'DELETE_COMPLETE'];

/** EXTERNAL: imported; POSKEY_HSM: generated here (AWS says AWS_PAYMENT_CRYPTOGRAPHY). */
export type KeyOrigin = 'EXTERNAL' | 'POSKEY_HSM';

/** AWS deletion window, days. */
export const MIN_DELETE_DAYS = 3;
export const MAX_DELETE_DAYS = 180;
export const DEFAULT_DELETE_DAYS = 7;
const DAY_MS = 86_400_000;

/** Page size bounds for list calls. */
export const MAX_PAGE = 100;

export interface KeyRecord {
  /** `key-` + a UUID v4 (lower case); older tables may hold `key-` + 16 hex digits. */
  id: string;
  /** The TR-31 block under the LMK; undefined once DELETE_COMPLETE. */
  keyBlock: string | undefined;
  keyType: KeyType;
  /** TR-31 key usage code, e.g. 'P0'. */
  usage: string;
  algorithm: KeyAlgorithm;
  /** TR-31 mode of use letter, e.g. 'B'. */
  modeOfUse: string;
  exportability: Exportability;
  /** Upper-case hex. */
  kcv: string;
  kcvMethod: 'legacy' | 'cmac';
  origin: KeyOrigin;
  state: KeyState;
  enabled: boolean;
  /** Times in ms since the epoch. */
  created: number;
  usageStart: number | undefined;
  usageStop: number | undefined;
  deletePending: number | undefined;
  deleteAt: number | undefined;
}

/** What a caller supplies for a new key; id, state and times are the table's. */
export type NewKeyRecord = Pick<
  KeyRecord,
  'keyType' | 'usage' | 'algorithm' | 'modeOfUse' | 'exportability' | 'kcv' | 'kcvMethod' | 'origin'
> & { keyBlock: string; enabled: boolean };

export interface AliasRecord {
  name: string;
  /** The key the alias names, or undefined for an alias not (or no longer) associated. */
  keyId: string | undefined;
}

export interface Page<T> {
  items: T[];
  /** Opaque; pass back as `nextToken` for the next page. */
  nextToken: string | undefined;
}

export interface KeyTableOptions {
  /** Time source in ms since the epoch (tests inject one to cross a deletion date). */
  clock?: () => number;
}

/** Called after a purge with the keys it completed (state DELETE_COMPLETE, block gone). */
export type PurgeListener = (keys: readonly KeyRecord[]) => void;

// better-sqlite3 ships no types and @types/better-sqlite3 is not a dependency: the few calls used.
interface Statement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}
interface Database {
  prepare(sql: string): Statement;
  exec(sql: string): void;
  pragma(sql: string, opts?: { simple?: boolean }): unknown;
  transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
  close(): void;
  readonly open: boolean;
}
type DatabaseCtor = new (path: string, opts?: { timeout?: number }) => Database;
const BetterSqlite3 = createRequire(import.meta.url)('better-sqlite3') as DatabaseCtor;

interface KeyRow {
  rowid: number;
  id: string;
  key_block: string | null;
  key_type: string;
  usage: string;
  algorithm: string;
  mode_of_use: string;
  exportability: string;
  kcv: string;
  kcv_method: string;
  origin: string;
  state: string;
  enabled: number;
  created: number;
  usage_start: number | null;
  usage_stop: number | null;
  delete_pending: number | null;
  delete_at: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY,
  key_block TEXT,
  key_type TEXT NOT NULL,
  usage TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  mode_of_use TEXT NOT NULL,
  exportability TEXT NOT NULL,
  kcv TEXT NOT NULL,
  kcv_method TEXT NOT NULL,
  origin TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('CREATE_COMPLETE', 'DELETE_PENDING', 'DELETE_COMPLETE')),
  enabled INTEGER NOT NULL,
  created INTEGER NOT NULL,
  usage_start INTEGER,
  usage_stop INTEGER,
  delete_pending INTEGER,
  delete_at INTEGER,
  CHECK ((state = 'DELETE_COMPLETE') = (key_block IS NULL))
);
CREATE INDEX IF NOT EXISTS keys_pending ON keys (delete_at) WHERE state = 'DELETE_PENDING';
CREATE TABLE IF NOT EXISTS aliases (
  name TEXT PRIMARY KEY,
  key_id TEXT REFERENCES keys (id),
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS aliases_key ON aliases (key_id);
`;

const SCHEMA_VERSION = 1;

function keyNotFound(id: string, field: string): HttpApiError {
  return new HttpApiError('POSKEY_ERR_KEY_NOT_FOUND', `no key ${id}`, { field });
}

function aliasNotFound(name: string, field: string): HttpApiError {
  return new HttpApiError('POSKEY_ERR_ALIAS_NOT_FOUND', `no alias ${name}`, { field });
}

function stateError(reason: string, field = 'keyIdentifier'): HttpApiError {
  return new HttpApiError('POSKEY_ERR_KEY_STATE', reason, { field });
}

function opt(v: number | null): number | undefined {
  return v === null ? undefined : v;
}

function toRecord(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    keyBlock: r.key_block ?? undefined,
    keyType: r.key_type as KeyType,
    usage: r.usage,
    algorithm: r.algorithm as KeyAlgorithm,
    modeOfUse: r.mode_of_use,
    exportability: r.exportability as Exportability,
    kcv: r.kcv,
    kcvMethod: r.kcv_method as KeyRecord['kcvMethod'],
    origin: r.origin as KeyOrigin,
    state: r.state as KeyState,
    enabled: r.enabled === 1,
    created: r.created,
    usageStart: opt(r.usage_start),
    usageStop: opt(r.usage_stop),
    deletePending: opt(r.delete_pending),
    deleteAt: opt(r.delete_at),
  };
}

function encodeToken(v: string): string {
  return Buffer.from(v, 'utf8').toString('base64url');
}

function decodeToken(token: string, valid: RegExp): string {
  const v = /^[A-Za-z0-9_-]{1,400}$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  if (!valid.test(v)) {
    throw new HttpApiError('POSKEY_ERR_VALIDATION', 'not a token this API returned', { field: 'nextToken' });
  }
  return v;
}

function pageSize(limit: number | undefined): number {
  return limit === undefined ? MAX_PAGE : Math.min(Math.max(Math.trunc(limit), 1), MAX_PAGE);
}

/** The key and alias table. Methods are synchronous (better-sqlite3) and each is one transaction. */
export class KeyTable {
  readonly path: string;
  readonly #db: Database;
  readonly #clock: () => number;
  readonly #stmt: Record<string, Statement>;
  readonly #purgeListeners = new Set<PurgeListener>();

  /**
   * Opens (creating, mode 0600) the table at `path`, or an in-memory one for ':memory:'.
   * @throws whatever SQLite throws for an unreadable file (not a poskey error: a deployment fault)
   */
  constructor(path: string, options: KeyTableOptions = {}) {
    this.path = path;
    this.#clock = options.clock ?? Date.now;
    if (path !== ':memory:') closeSync(openSync(path, 'a', 0o600));
    this.#db = new BetterSqlite3(path, { timeout: 5000 });
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma('secure_delete = ON');
    this.#db.exec(SCHEMA);
    this.#db.pragma(`user_version = ${SCHEMA_VERSION}`);
    this.#stmt = this.#prepare();
  }

  /** Opens `KEY_TABLE_FILE` in the HSM data directory. */
  static inDataDir(dataDir: string, options: KeyTableOptions = {}): KeyTable {
    return new KeyTable(join(dataDir, KEY_TABLE_FILE), options);
  }

  #prepare(): Record<string, Statement> {
    const p = (sql: string) => this.#db.prepare(sql);
    return {
      insert: p(`INSERT INTO keys (id, key_block, key_type, usage, algorithm, mode_of_use, exportability, kcv,
        kcv_method, origin, state, enabled, created, usage_start, usage_stop)
        VALUES (@id, @keyBlock, @keyType, @usage, @algorithm, @modeOfUse, @exportability, @kcv, @kcvMethod,
        @origin, 'CREATE_COMPLETE', @enabled, @now, @usageStart, @usageStop)`),
      get: p('SELECT rowid, * FROM keys WHERE id = ?'),
      exists: p('SELECT 1 FROM keys WHERE id = ?'),
      page: p(`SELECT rowid, * FROM keys WHERE rowid > @after AND (@state IS NULL OR state = @state)
        ORDER BY rowid LIMIT @limit`),
      due: p(`SELECT id FROM keys WHERE state = 'DELETE_PENDING' AND delete_at <= ?`),
      purge: p(`UPDATE keys SET state = 'DELETE_COMPLETE', key_block = NULL, enabled = 0 WHERE id = ?`),
      releaseAliases: p('UPDATE aliases SET key_id = NULL, updated = @now WHERE key_id = @id'),
      enable: p(`UPDATE keys SET enabled = 1, usage_start = @now, usage_stop = NULL WHERE id = @id`),
      disable: p(`UPDATE keys SET enabled = 0, usage_stop = @now WHERE id = @id`),
      schedule:
        p(`UPDATE keys SET state = 'DELETE_PENDING', enabled = 0, usage_stop = COALESCE(usage_stop, @now),
        delete_pending = @now, delete_at = @deleteAt WHERE id = @id`),
      restore: p(`UPDATE keys SET state = 'CREATE_COMPLETE', delete_pending = NULL, delete_at = NULL
        WHERE id = @id`),
      blocks: p('SELECT id, key_block FROM keys WHERE key_block IS NOT NULL ORDER BY rowid'),
      setBlock: p('UPDATE keys SET key_block = @block WHERE id = @id'),
      aliasGet: p('SELECT name, key_id FROM aliases WHERE name = ?'),
      aliasInsert: p(
        'INSERT INTO aliases (name, key_id, created, updated) VALUES (@name, @keyId, @now, @now)',
      ),
      aliasUpdate: p('UPDATE aliases SET key_id = @keyId, updated = @now WHERE name = @name'),
      aliasDelete: p('DELETE FROM aliases WHERE name = ?'),
      aliasPage:
        p(`SELECT name, key_id FROM aliases WHERE name > @after AND (@keyId IS NULL OR key_id = @keyId)
        ORDER BY name LIMIT @limit`),
      aliasesOf: p('SELECT name FROM aliases WHERE key_id = ? ORDER BY name'),
    };
  }

  /**
   * Listens for purges; returns the function that stops listening. A listener must not throw:
   * the purge has happened by the time it is called, and the table call that triggered it goes on.
   */
  onPurge(listener: PurgeListener): () => void {
    this.#purgeListeners.add(listener);
    return () => this.#purgeListeners.delete(listener);
  }

  /** Purges every pending key whose deletion date has passed; returns how many. */
  purgeExpired(): number {
    const due = this.#stmt.due!.all(this.#clock()) as { id: string }[];
    if (due.length === 0) return 0;
    const now = this.#clock();
    this.#db.transaction(() => {
      for (const { id } of due) {
        this.#stmt.purge!.run(id);
        this.#stmt.releaseAliases!.run({ now, id });
      }
    })();
    // Checkpoint so the purged blocks' old pages leave the WAL file as well.
    this.#db.pragma('wal_checkpoint(TRUNCATE)');
    if (this.#purgeListeners.size > 0) {
      const purged = due.map(({ id }) => this.#row(id, 'keyIdentifier'));
      for (const listener of this.#purgeListeners) listener(purged);
    }
    return due.length;
  }

  #row(id: string, field: string): KeyRecord {
    const row = this.#stmt.get!.get(id) as KeyRow | undefined;
    if (row === undefined) throw keyNotFound(id, field);
    return toRecord(row);
  }

  #newId(): string {
    for (;;) {
      const id = `key-${randomUUID()}`;
      if (this.#stmt.exists!.get(id) === undefined) return id;
    }
  }

  /**
   * Adds a key (state CREATE_COMPLETE), and its alias when given, in one transaction.
   * @throws POSKEY_ERR_ALIAS_EXISTS (nothing is stored)
   */
  insert(key: NewKeyRecord, alias?: string): KeyRecord {
    this.purgeExpired();
    const now = this.#clock();
    const id = this.#db.transaction(() => {
      if (alias !== undefined) this.#assertNoAlias(alias, 'alias');
      const id = this.#newId();
      this.#stmt.insert!.run({
        ...key,
        id,
        now,
        enabled: key.enabled ? 1 : 0,
        usageStart: key.enabled ? now : null,
        usageStop: key.enabled ? null : now,
      });
      if (alias !== undefined) this.#stmt.aliasInsert!.run({ name: alias, keyId: id, now });
      return id;
    })();
    return this.#row(id, 'keyIdentifier');
  }

  /**
   * The key with this id, in its current state (purging it first if its deletion date passed).
   * @throws POSKEY_ERR_KEY_NOT_FOUND
   */
  get(id: string, field = 'keyIdentifier'): KeyRecord {
    this.purgeExpired();
    return this.#row(id, field);
  }

  /** Keys in creation order, optionally only those in `state`. */
  list(opts: { state?: KeyState; limit?: number; nextToken?: string } = {}): Page<KeyRecord> {
    this.purgeExpired();
    const limit = pageSize(opts.limit);
    const after =
      opts.nextToken === undefined ? 0 : Number(decodeToken(opts.nextToken, /^k[0-9]{1,15}$/).slice(1));
    const rows = this.#stmt.page!.all({ after, state: opts.state ?? null, limit: limit + 1 }) as KeyRow[];
    const more = rows.length > limit;
    const items = rows.slice(0, limit);
    const last = items[items.length - 1];
    return {
      items: items.map(toRecord),
      nextToken: more && last ? encodeToken(`k${last.rowid}`) : undefined,
    };
  }

  #live(id: string, field: string): KeyRecord {
    const key = this.#row(id, field);
    if (key.state === 'DELETE_COMPLETE') {
      throw new HttpApiError('POSKEY_ERR_KEY_DELETED', `key ${id} has been deleted`, { field });
    }
    return key;
  }

  /**
   * StartKeyUsage (`enabled` true) or StopKeyUsage. A key pending deletion must be restored first.
   * @throws POSKEY_ERR_KEY_NOT_FOUND, POSKEY_ERR_KEY_DELETED, POSKEY_ERR_KEY_DELETE_PENDING
   */
  setEnabled(id: string, enabled: boolean, field = 'keyIdentifier'): KeyRecord {
    this.purgeExpired();
    const key = this.#live(id, field);
    if (key.state === 'DELETE_PENDING') {
      throw new HttpApiError('POSKEY_ERR_KEY_DELETE_PENDING', `key ${id} is scheduled for deletion`, {
        field,
      });
    }
    if (key.enabled !== enabled) this.#stmt[enabled ? 'enable' : 'disable']!.run({ id, now: this.#clock() });
    return this.#row(id, field);
  }

  /**
   * DeleteKey: stops usage and schedules deletion `days` (3–180) days from now.
   * @throws POSKEY_ERR_VALIDATION for days outside 3–180, POSKEY_ERR_KEY_NOT_FOUND,
   *   POSKEY_ERR_KEY_DELETED, POSKEY_ERR_KEY_STATE when already pending
   */
  scheduleDeletion(id: string, days = DEFAULT_DELETE_DAYS, field = 'keyIdentifier'): KeyRecord {
    if (!Number.isInteger(days) || days < MIN_DELETE_DAYS || days > MAX_DELETE_DAYS) {
      throw new HttpApiError(
        'POSKEY_ERR_VALIDATION',
        `must be an integer from ${MIN_DELETE_DAYS} to ${MAX_DELETE_DAYS}`,
        { field: 'deleteKeyInDays' },
      );
    }
    this.purgeExpired();
    const key = this.#live(id, field);
    if (key.state === 'DELETE_PENDING')
      throw stateError(`key ${id} is already scheduled for deletion`, field);
    const now = this.#clock();
    this.#stmt.schedule!.run({ id, now, deleteAt: now + days * DAY_MS });
    return this.#row(id, field);
  }

  /**
   * RestoreKey: cancels a pending deletion. The key comes back CREATE_COMPLETE but still disabled,
   * so its usage must be started again explicitly.
   * @throws POSKEY_ERR_KEY_NOT_FOUND, POSKEY_ERR_KEY_DELETED (too late), POSKEY_ERR_KEY_STATE
   */
  restore(id: string, field = 'keyIdentifier'): KeyRecord {
    this.purgeExpired();
    const key = this.#live(id, field);
    if (key.state !== 'DELETE_PENDING') throw stateError(`key ${id} is not scheduled for deletion`, field);
    this.#stmt.restore!.run({ id });
    return this.#row(id, field);
  }

  /**
   * Re-wraps every stored key block with `fn` (LMK rotation) in one transaction: if `fn` throws for
   * any block, nothing changes. Returns the number of blocks rewritten.
   */
  rewrapAll(fn: (block: string, id: string) => string): number {
    return this.#db.transaction(() => {
      let n = 0;
      for (const row of this.#stmt.blocks!.all() as { id: string; key_block: string }[]) {
        const block = fn(row.key_block, row.id);
        if (typeof block !== 'string' || block.length === 0) {
          throw new HttpApiError('POSKEY_ERR_INTERNAL', 're-wrap returned no key block', { field: 'block' });
        }
        if (block !== row.key_block) {
          this.#stmt.setBlock!.run({ id: row.id, block });
          n++;
        }
      }
      return n;
    })();
  }

  #assertNoAlias(name: string, field: string): void {
    if (this.#stmt.aliasGet!.get(name) !== undefined) {
      throw new HttpApiError('POSKEY_ERR_ALIAS_EXISTS', `alias ${name} already exists`, { field });
    }
  }

  #assertKeyForAlias(keyId: string | undefined, field: string): void {
    if (keyId !== undefined) this.#live(keyId, field);
  }

  /**
   * CreateAlias, optionally naming a key (which must exist and not be deleted).
   * @throws POSKEY_ERR_ALIAS_EXISTS, POSKEY_ERR_KEY_NOT_FOUND, POSKEY_ERR_KEY_DELETED
   */
  createAlias(name: string, keyId?: string, keyField = 'keyIdentifier'): AliasRecord {
    this.purgeExpired();
    this.#db.transaction(() => {
      this.#assertNoAlias(name, 'aliasName');
      this.#assertKeyForAlias(keyId, keyField);
      this.#stmt.aliasInsert!.run({ name, keyId: keyId ?? null, now: this.#clock() });
    })();
    return this.#alias(name, 'aliasName');
  }

  /** True when an alias with this name exists (associated or not). */
  hasAlias(name: string): boolean {
    return this.#stmt.aliasGet!.get(name) !== undefined;
  }

  /** @throws POSKEY_ERR_ALIAS_NOT_FOUND */
  getAlias(name: string, field = 'aliasName'): AliasRecord {
    this.purgeExpired();
    return this.#alias(name, field);
  }

  #alias(name: string, field: string): AliasRecord {
    const row = this.#stmt.aliasGet!.get(name) as { name: string; key_id: string | null } | undefined;
    if (row === undefined) throw aliasNotFound(name, field);
    return { name: row.name, keyId: row.key_id ?? undefined };
  }

  /**
   * UpdateAlias: points the alias at another key, or at none when `keyId` is undefined.
   * @throws POSKEY_ERR_ALIAS_NOT_FOUND, POSKEY_ERR_KEY_NOT_FOUND, POSKEY_ERR_KEY_DELETED
   */
  updateAlias(name: string, keyId: string | undefined, keyField = 'keyIdentifier'): AliasRecord {
    this.purgeExpired();
    this.#db.transaction(() => {
      this.#alias(name, 'aliasName');
      this.#assertKeyForAlias(keyId, keyField);
      this.#stmt.aliasUpdate!.run({ name, keyId: keyId ?? null, now: this.#clock() });
    })();
    return this.#alias(name, 'aliasName');
  }

  /** @throws POSKEY_ERR_ALIAS_NOT_FOUND */
  deleteAlias(name: string): void {
    if (this.#stmt.aliasDelete!.run(name).changes === 0) throw aliasNotFound(name, 'aliasName');
  }

  /** Aliases by name, optionally only those naming `keyId`. */
  listAliases(opts: { keyId?: string; limit?: number; nextToken?: string } = {}): Page<AliasRecord> {
    this.purgeExpired();
    const limit = pageSize(opts.limit);
    const after =
      opts.nextToken === undefined ? '' : decodeToken(opts.nextToken, /^a:alias\/.{1,250}$/).slice(2);
    const rows = this.#stmt.aliasPage!.all({ after, keyId: opts.keyId ?? null, limit: limit + 1 }) as {
      name: string;
      key_id: string | null;
    }[];
    const more = rows.length > limit;
    const items = rows.slice(0, limit).map((r) => ({ name: r.name, keyId: r.key_id ?? undefined }));
    const last = items[items.length - 1];
    return { items, nextToken: more && last ? encodeToken(`a:${last.name}`) : undefined };
  }

  /** Names of the aliases pointing at a key. */
  aliasesOf(keyId: string): string[] {
    return (this.#stmt.aliasesOf!.all(keyId) as { name: string }[]).map((r) => r.name);
  }

  /** Closes the database (checkpointing the WAL). Idempotent. */
  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
