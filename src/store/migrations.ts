/**
 * The database schema as one ordered list of migrations. Each has a version, a name and the SQL
 * for each dialect; `openStore` applies the missing ones in one transaction and records each in
 * `schema_migrations`. Later issues append to the list (never edit an applied entry).
 *
 * Dialect differences are kept to column types and table options: SQLite tables are STRICT
 * (INTEGER is 64-bit) and its journal is WITHOUT ROWID (ids only grow, so rows append at the
 * right edge of one b-tree instead of two); PostgreSQL needs BIGINT for amounts and times. Journal ids use the "C" collation in
 * PostgreSQL so they sort by bytes, as ULIDs must.
 *
 * The journal has no foreign key to terminals: a request from an unknown TID is journalled too.
 */
import { storeError } from './errors.js';
import type { Dialect } from './types.js';

export interface Migration {
  version: number;
  name: string;
  statements(dialect: Dialect): string[];
}

interface Types {
  bigint: string;
  id: string;
  strict: string;
  /** Table options of the journal: in SQLite the ULID primary key is the table itself. */
  journal: string;
}

function types(dialect: Dialect): Types {
  return dialect === 'sqlite'
    ? { bigint: 'INTEGER', id: 'TEXT', strict: ' STRICT', journal: ' STRICT, WITHOUT ROWID' }
    : { bigint: 'BIGINT', id: 'TEXT COLLATE "C"', strict: '', journal: '' };
}

/** The bookkeeping table; created before anything else, outside the numbered list. */
export function migrationsTableSql(dialect: Dialect): string {
  const t = types(dialect);
  return `CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at ${t.bigint} NOT NULL
  )${t.strict}`;
}

export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: 'registry and journal',
    statements(dialect: Dialect): string[] {
      const t = types(dialect);
      return [
        `CREATE TABLE merchants (
          mid TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          mcc TEXT NOT NULL,
          created_at ${t.bigint} NOT NULL,
          updated_at ${t.bigint} NOT NULL
        )${t.strict}`,
        `CREATE TABLE terminals (
          tid TEXT PRIMARY KEY,
          mid TEXT NOT NULL REFERENCES merchants (mid),
          serial TEXT UNIQUE,
          key_algorithm TEXT NOT NULL,
          tmk_block TEXT,
          tmk_kcv TEXT,
          state TEXT NOT NULL,
          batch_number INTEGER NOT NULL,
          tpk_block TEXT,
          tpk_kcv TEXT,
          tak_block TEXT,
          tak_kcv TEXT,
          tdk_block TEXT,
          tdk_kcv TEXT,
          working_keys_at ${t.bigint},
          mac_failures INTEGER NOT NULL DEFAULT 0,
          last_sign_in_at ${t.bigint},
          version INTEGER NOT NULL DEFAULT 1,
          created_at ${t.bigint} NOT NULL,
          updated_at ${t.bigint} NOT NULL
        )${t.strict}`,
        'CREATE INDEX terminals_mid ON terminals (mid)',
        `CREATE TABLE journal (
          id ${t.id} PRIMARY KEY,
          node_id TEXT NOT NULL,
          tid TEXT NOT NULL,
          mid TEXT NOT NULL,
          batch INTEGER NOT NULL,
          stan INTEGER NOT NULL,
          mti TEXT NOT NULL,
          txn_type TEXT NOT NULL,
          processing_code TEXT,
          amount ${t.bigint},
          currency TEXT,
          pan_masked TEXT,
          pan_hash TEXT,
          rrn TEXT,
          auth_code TEXT,
          response_code TEXT,
          status TEXT NOT NULL,
          network_outcome TEXT,
          original_id TEXT,
          original_stan INTEGER,
          original_rrn TEXT,
          created_at ${t.bigint} NOT NULL,
          updated_at ${t.bigint} NOT NULL,
          CONSTRAINT journal_request_key UNIQUE (tid, batch, stan, mti)
        )${t.journal}`,
        // Voids/refunds by RRN or card, crash recovery by status and node, console by time.
        'CREATE INDEX journal_rrn ON journal (rrn)',
        'CREATE INDEX journal_pan_hash ON journal (pan_hash)',
        'CREATE INDEX journal_status_node ON journal (status, node_id)',
        'CREATE INDEX journal_created ON journal (created_at)',
      ];
    },
  },
  {
    version: 2,
    name: 'journal rows by original',
    // Refunds sum what was already refunded against a sale; voids and completions link theirs.
    statements: () => ['CREATE INDEX journal_original ON journal (original_id)'],
  },
  {
    version: 3,
    name: 'settlement, batch upload and day-end',
    statements(dialect: Dialect): string[] {
      const t = types(dialect);
      return [
        // Set on the rows of a batch once it is settled (voids of them are then refused).
        `ALTER TABLE journal ADD COLUMN settled_at ${t.bigint}`,
        'CREATE INDEX journal_batch ON journal (tid, batch)',
        `CREATE TABLE settlements (
          tid TEXT NOT NULL,
          batch INTEGER NOT NULL,
          state TEXT NOT NULL,
          terminal_totals TEXT NOT NULL,
          host_totals TEXT NOT NULL,
          uploaded INTEGER NOT NULL DEFAULT 0,
          created_at ${t.bigint} NOT NULL,
          updated_at ${t.bigint} NOT NULL,
          settled_at ${t.bigint},
          PRIMARY KEY (tid, batch)
        )${t.strict}`,
        `CREATE TABLE batch_uploads (
          tid TEXT NOT NULL,
          batch INTEGER NOT NULL,
          stan INTEGER NOT NULL,
          message_type TEXT NOT NULL,
          processing_code TEXT,
          amount ${t.bigint},
          pan_masked TEXT,
          rrn TEXT,
          journal_id TEXT,
          created_at ${t.bigint} NOT NULL,
          PRIMARY KEY (tid, batch, stan)
        )${t.strict}`,
        `CREATE TABLE business_days (
          business_date TEXT PRIMARY KEY,
          closed_at ${t.bigint} NOT NULL,
          merchants INTEGER NOT NULL,
          files TEXT NOT NULL
        )${t.strict}`,
      ];
    },
  },
  {
    version: 4,
    name: 'store-and-forward queue',
    statements(dialect: Dialect): string[] {
      const t = types(dialect);
      return [
        // One entry per (kind, journal row): a reversal is queued once per original however many
        // paths (terminal 0400, network timeout, crash recovery) ask for it.
        `CREATE TABLE saf_queue (
          id ${t.id} PRIMARY KEY,
          node_id TEXT NOT NULL,
          kind TEXT NOT NULL,
          journal_id TEXT NOT NULL,
          mti TEXT NOT NULL,
          network_stan TEXT NOT NULL,
          rrn TEXT NOT NULL,
          message TEXT NOT NULL,
          state TEXT NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0,
          next_attempt_at ${t.bigint} NOT NULL,
          response_code TEXT,
          last_error TEXT,
          created_at ${t.bigint} NOT NULL,
          updated_at ${t.bigint} NOT NULL,
          CONSTRAINT saf_queue_key UNIQUE (kind, journal_id)
        )${t.strict}`,
        'CREATE INDEX saf_queue_due ON saf_queue (state, next_attempt_at)',
      ];
    },
  },
]);

/** The version this build expects the database to be at. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/**
 * The migrations still to apply, given the versions recorded in the database.
 * @throws POSKEY_ERR_STORE_SCHEMA when the database records a version this build does not know
 *   (a newer poskey migrated it: running older code against it could corrupt it)
 */
export function pendingMigrations(
  applied: readonly number[],
  migrations: readonly Migration[] = MIGRATIONS,
): Migration[] {
  const known = new Set(migrations.map((m) => m.version));
  const unknown = applied.filter((v) => !known.has(v));
  if (unknown.length > 0) {
    throw storeError(
      'POSKEY_ERR_STORE_SCHEMA',
      `the database has schema version ${Math.max(...unknown)}, newer than this poskey knows (${Math.max(...known)}); upgrade poskey`,
      'schema_migrations',
    );
  }
  const done = new Set(applied);
  return migrations.filter((m) => !done.has(m.version)).sort((a, b) => a.version - b.version);
}

/** Checks the list itself: versions strictly increasing from 1, names present. */
export function assertMigrationList(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1 || !m.name) {
      throw storeError(
        'POSKEY_ERR_STORE_SCHEMA',
        `migration ${i} must have version ${i + 1} and a name`,
        'migrations',
      );
    }
  });
}
