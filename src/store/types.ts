/**
 * What the POSP host stores, and the one `Repository` interface it reaches SQLite or PostgreSQL
 * through. Every method is async so both back ends share it.
 *
 * Money is an integer count of minor units (cents, fen) in a JS number: ISO 8583 field 4 has 12
 * digits, so amounts stay below 10^12, far inside the exact range of a double (2^53). Times are
 * milliseconds since the epoch, also plain numbers (BIGINT in PostgreSQL).
 *
 * Nothing clear reaches the database: keys are LMK key blocks (checked structurally on the way
 * in), the PAN is kept only masked (first 6, last 4) and as an HMAC-SHA256 under a store secret,
 * and journal rows have no place for PIN blocks or track data.
 */
import type { ColumnType, Kysely } from 'kysely';

export type Dialect = 'sqlite' | 'postgres';

/** Cipher family of a terminal's keys: its TMK and the working keys it receives. */
export const TERMINAL_KEY_ALGORITHMS = ['TDES', 'SM4'] as const;
export type TerminalKeyAlgorithm = (typeof TERMINAL_KEY_ALGORITHMS)[number];

/** new: registered, not yet signed in; active: may transact; blocked: refused (MAC failures, operator). */
export const TERMINAL_STATES = ['new', 'active', 'blocked'] as const;
export type TerminalState = (typeof TERMINAL_STATES)[number];

/**
 * Life of a journalled request. `received` is written before anything is sent anywhere; the
 * outcome (approved, declined…) follows through `updateOutcome`. `in_doubt` marks a request whose
 * network outcome is unknown (timeout, crash) until a reversal or recovery settles it.
 * Enumerations are checked in code, not by CHECK constraints, so later issues can add values
 * without rebuilding SQLite tables.
 */
export const JOURNAL_STATUSES = [
  'received',
  'forwarded',
  'approved',
  'declined',
  'reversed',
  'voided',
  'in_doubt',
  'failed',
  /** A pre-authorisation a completion has consumed. */
  'completed',
] as const;
export type JournalStatus = (typeof JOURNAL_STATUSES)[number];

// ---------------------------------------------------------------------------------------------
// Registry

export interface Merchant {
  /** Card acceptor ID (field 42), 15 characters. */
  mid: string;
  name: string;
  /** Merchant category code (field 18), 4 digits. */
  mcc: string;
  createdAt: number;
  updatedAt: number;
}

export type MerchantInput = Pick<Merchant, 'mid' | 'name' | 'mcc'>;

/** A key as the store holds it: an LMK key block and its check value (upper-case hex). */
export interface StoredKey {
  block: string;
  kcv: string;
}

export interface WorkingKeys {
  tpk: StoredKey | null;
  tak: StoredKey | null;
  tdk: StoredKey | null;
  createdAt: number;
}

export interface Terminal {
  /** Terminal ID (field 41), 8 characters. */
  tid: string;
  mid: string;
  /** Device serial number; unique when present. */
  serial: string | null;
  keyAlgorithm: TerminalKeyAlgorithm;
  tmk: StoredKey | null;
  state: TerminalState;
  batchNumber: number;
  /** The current TPK/TAK/TDK, replaced together; null until the first sign-in. */
  workingKeys: WorkingKeys | null;
  macFailures: number;
  lastSignInAt: number | null;
  /** Bumped by every update, so several host processes can tell a cached terminal is stale. */
  version: number;
  createdAt: number;
  updatedAt: number;
}

export interface NewTerminal {
  tid: string;
  mid: string;
  keyAlgorithm: TerminalKeyAlgorithm;
  serial?: string | null;
  tmk?: StoredKey | null;
  state?: TerminalState;
  /** 1 when omitted. */
  batchNumber?: number;
}

/** Working keys to install; a missing key is stored as none. */
export interface WorkingKeysInput {
  tpk?: StoredKey | null;
  tak?: StoredKey | null;
  tdk?: StoredKey | null;
  /** Now when omitted. */
  createdAt?: number;
}

export interface MerchantStore {
  /** Creates the merchant or replaces its name and MCC. */
  upsert(merchant: MerchantInput): Promise<Merchant>;
  get(mid: string): Promise<Merchant | undefined>;
  list(): Promise<Merchant[]>;
}

/** Every update throws POSKEY_ERR_STORE_NOT_FOUND (field 'tid') for an unknown terminal. */
export interface TerminalStore {
  /** @throws POSKEY_ERR_STORE_DUPLICATE (tid or serial), POSKEY_ERR_STORE_NOT_FOUND (mid) */
  create(terminal: NewTerminal): Promise<Terminal>;
  get(tid: string): Promise<Terminal | undefined>;
  list(filter?: { mid?: string; state?: TerminalState }): Promise<Terminal[]>;
  setState(tid: string, state: TerminalState): Promise<Terminal>;
  setTmk(tid: string, tmk: StoredKey): Promise<Terminal>;
  /** Replaces TPK, TAK and TDK together in one statement. */
  setWorkingKeys(tid: string, keys: WorkingKeysInput): Promise<Terminal>;
  setBatchNumber(tid: string, batchNumber: number): Promise<Terminal>;
  /** Adds one to the MAC-failure counter atomically; returns the new count. */
  incrementMacFailures(tid: string): Promise<number>;
  resetMacFailures(tid: string): Promise<Terminal>;
  recordSignIn(tid: string, at?: number): Promise<Terminal>;
}

// ---------------------------------------------------------------------------------------------
// Journal

/** A request as the host journals it. Only these fields are read; anything else is ignored. */
export interface NewJournalRow {
  /** Assigned (`journal.newId()`) when omitted. */
  id?: string;
  tid: string;
  mid: string;
  batch: number;
  stan: number;
  /**
   * Message type. Journal repeats (0401…) under their base MTI (0400) so a repeat meets the
   * original's unique key and is caught as a duplicate.
   */
  mti: string;
  /** Lower-case name: purchase, refund, void, reversal, sign_in… */
  txnType: string;
  processingCode?: string | null;
  /** Minor units, 0 ≤ amount < 10^12. */
  amount?: number | null;
  /** ISO 4217 numeric, 3 digits. */
  currency?: string | null;
  /** Clear PAN: masked and hashed on the way in, never stored or kept. */
  pan?: string | null;
  rrn?: string | null;
  authCode?: string | null;
  responseCode?: string | null;
  /** 'received' when omitted. */
  status?: JournalStatus;
  networkOutcome?: string | null;
  /** For voids, refunds and reversals: the original's journal id, STAN and RRN when known. */
  originalId?: string | null;
  originalStan?: number | null;
  originalRrn?: string | null;
  /** Now when omitted. */
  createdAt?: number;
}

export interface JournalRecord {
  id: string;
  /** The host process that journalled the row (crash recovery claims its own in-doubt rows). */
  nodeId: string;
  tid: string;
  mid: string;
  batch: number;
  stan: number;
  mti: string;
  txnType: string;
  processingCode: string | null;
  amount: number | null;
  currency: string | null;
  panMasked: string | null;
  /** HMAC-SHA256 of the PAN under the store's PAN key, lower-case hex. */
  panHash: string | null;
  rrn: string | null;
  authCode: string | null;
  responseCode: string | null;
  status: JournalStatus;
  networkOutcome: string | null;
  originalId: string | null;
  originalStan: number | null;
  originalRrn: string | null;
  createdAt: number;
  updatedAt: number;
  /** When the row's batch was settled (absent until then); see `isSettled` in settlement.ts. */
  settledAt?: number;
}

/**
 * An outcome to record. Fields left out (or null) keep their stored value: outcomes only move
 * forward, so there is no way to blank a response code once written.
 */
export interface JournalOutcome {
  status: JournalStatus;
  responseCode?: string | null;
  authCode?: string | null;
  rrn?: string | null;
  networkOutcome?: string | null;
  /** Now when omitted. */
  at?: number;
}

export interface JournalFilter {
  tid?: string;
  mid?: string;
  batch?: number;
  stan?: number;
  rrn?: string;
  status?: JournalStatus | readonly JournalStatus[];
  nodeId?: string;
  panHash?: string;
  /** Rows that refer to this original (voids, refunds, completions). */
  originalId?: string;
  /** createdAt ≥ from (ms). */
  from?: number;
  /** createdAt < to (ms). */
  to?: number;
  /** Keyset pagination: rows after this id in the chosen order. */
  after?: string;
  order?: 'asc' | 'desc';
  /** 100 by default, at most 1000. */
  limit?: number;
}

export interface JournalStats {
  /** Transactions committed by this process's journal. */
  commits: number;
  /** Transactions that failed as a whole. */
  failedCommits: number;
  /** Appends and updates committed or rejected. */
  ops: number;
  largestBatch: number;
  /** Waiting for the next batch. */
  queued: number;
  /** 1 while a batch is being committed, else 0 (never more than one per process). */
  inFlight: number;
}

export type AppendResult = { id: string; error?: undefined } | { id: string | undefined; error: Error };

export interface JournalStore {
  /**
   * Queues a row; resolves with its id once the transaction holding it is durable. Rows queued in
   * one event-loop turn share one transaction.
   * @throws POSKEY_ERR_STORE_VALUE, POSKEY_ERR_STORE_DUPLICATE (this row only), POSKEY_ERR_STORE_FAILED
   */
  append(row: NewJournalRow): Promise<string>;
  /** Appends rows together; one row's failure does not fail the others. */
  appendMany(rows: readonly NewJournalRow[]): Promise<AppendResult[]>;
  /**
   * Records an outcome through the same group commit; resolves once durable. Appends and updates
   * are applied in the order they were queued.
   * @throws POSKEY_ERR_STORE_NOT_FOUND when no row has this id
   */
  updateOutcome(id: string, outcome: JournalOutcome): Promise<void>;
  /** The row with this key; without `mti`, the first one journalled for (tid, batch, stan). */
  get(tid: string, batch: number, stan: number, mti?: string): Promise<JournalRecord | undefined>;
  getById(id: string): Promise<JournalRecord | undefined>;
  list(filter?: JournalFilter): Promise<JournalRecord[]>;
  /** A fresh id, time-ordered (ULID form), for callers that want to know it before appending. */
  newId(): string;
  /** The keyed hash the journal stores for `pan`, for matching voids and refunds. */
  panHash(pan: string): string;
  /** Resolves when everything queued so far has been committed or rejected. */
  flush(): Promise<void>;
  stats(): JournalStats;
}

/** What a `transaction` callback works with: registry stores bound to the transaction, and the raw builder. */
export interface RegistryTx {
  merchants: MerchantStore;
  terminals: TerminalStore;
  db: Kysely<Schema>;
}

// ---------------------------------------------------------------------------------------------
// Store-and-forward queue (migration 4)

/** `reversal`: an 0420 naming a journal row; `advice`: a 0220 the network has not acknowledged yet. */
export const SAF_KINDS = ['reversal', 'advice'] as const;
export type SafKind = (typeof SAF_KINDS)[number];

/** `pending` until the network acknowledges it, then `done`. */
export type SafState = 'pending' | 'done';

export interface NewSafEntry {
  kind: SafKind;
  /** The journal row it is about: the reversed original, or the advice itself. */
  journalId: string;
  /** Network MTI: 0420 or 0220. */
  mti: string;
  /** Field 11 and 37 of every attempt: one key, so the network answers a retransmission from its row. */
  networkStan: string;
  rrn: string;
  /** The network message's fields, without PAN, track, PIN block or MAC (none of them reach the disk). */
  message: Record<string, string>;
  /** Now when omitted. */
  createdAt?: number;
}

export interface SafEntry extends Required<NewSafEntry> {
  id: string;
  nodeId: string;
  state: SafState;
  attempts: number;
  nextAttemptAt: number;
  responseCode: string | null;
  lastError: string | null;
  updatedAt: number;
}

export interface SafStore {
  /**
   * Queues an entry (durable when it resolves). Resolves with the entry's id, or undefined when
   * one of this kind for this journal row is already queued (or done): nothing is queued twice.
   */
  enqueue(entry: NewSafEntry): Promise<string | undefined>;
  /** Pending entries whose next attempt is due at `now`, oldest first. */
  due(now: number, limit: number): Promise<SafEntry[]>;
  /** Records a failed attempt and when to try again. */
  retryLater(id: string, nextAttemptAt: number, error: string): Promise<void>;
  /** Marks an entry done with the network's response code. */
  acknowledge(id: string, responseCode: string): Promise<void>;
  get(id: string): Promise<SafEntry | undefined>;
  /** Entries of one journal row (any kind), or all of them, oldest first. */
  list(filter?: { journalId?: string; state?: SafState; kind?: SafKind }): Promise<SafEntry[]>;
  /** How many are pending. */
  pending(): Promise<number>;
}

export interface Repository {
  readonly dialect: Dialect;
  readonly nodeId: string;
  readonly merchants: MerchantStore;
  readonly terminals: TerminalStore;
  readonly journal: JournalStore;
  /** The store-and-forward queue towards the card network. */
  readonly saf: SafStore;
  /**
   * Runs `fn` in one database transaction (SQLite: BEGIN IMMEDIATE). Journal writes are not part
   * of it: they go through group commit. Keep it short: on SQLite it holds the write lock. Use
   * only `tx` inside: on SQLite the repository's own stores wait for the transaction to end.
   */
  transaction<T>(fn: (tx: RegistryTx) => Promise<T>): Promise<T>;
  /** The highest migration applied. */
  schemaVersion(): Promise<number>;
  /** Commits what is queued in the journal, then closes connections and the writer thread. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Database schema (snake_case, as Kysely sees it)

/** BIGINT: numbers in, numbers from SQLite, strings from PostgreSQL. */
type BigIntColumn = ColumnType<number | string, number, number>;
type NullableBigIntColumn = ColumnType<number | string | null, number | null, number | null>;

export interface MerchantTable {
  mid: string;
  name: string;
  mcc: string;
  created_at: BigIntColumn;
  updated_at: BigIntColumn;
}

export interface TerminalTable {
  tid: string;
  mid: string;
  serial: string | null;
  key_algorithm: string;
  tmk_block: string | null;
  tmk_kcv: string | null;
  state: string;
  batch_number: number;
  tpk_block: string | null;
  tpk_kcv: string | null;
  tak_block: string | null;
  tak_kcv: string | null;
  tdk_block: string | null;
  tdk_kcv: string | null;
  working_keys_at: NullableBigIntColumn;
  mac_failures: number;
  last_sign_in_at: NullableBigIntColumn;
  version: number;
  created_at: BigIntColumn;
  updated_at: BigIntColumn;
}

export interface JournalTable {
  id: string;
  node_id: string;
  tid: string;
  mid: string;
  batch: number;
  stan: number;
  mti: string;
  txn_type: string;
  processing_code: string | null;
  amount: NullableBigIntColumn;
  currency: string | null;
  pan_masked: string | null;
  pan_hash: string | null;
  rrn: string | null;
  auth_code: string | null;
  response_code: string | null;
  status: string;
  network_outcome: string | null;
  original_id: string | null;
  original_stan: number | null;
  original_rrn: string | null;
  created_at: BigIntColumn;
  updated_at: BigIntColumn;
  /** Migration 3; the journal writers never bind it. */
  settled_at?: NullableBigIntColumn;
}

/** One settlement per terminal batch (migration 3). */
export interface SettlementTable {
  tid: string;
  batch: number;
  /** 'unbalanced' (waiting for the batch upload) or 'settled'. */
  state: string;
  /** Field 48 digits as the terminal sent them, and as the host computed them. */
  terminal_totals: string;
  host_totals: string;
  uploaded: number;
  created_at: BigIntColumn;
  updated_at: BigIntColumn;
  settled_at: NullableBigIntColumn;
}

/** A transaction a terminal uploaded (0320) for an unbalanced batch. */
export interface BatchUploadTable {
  tid: string;
  batch: number;
  stan: number;
  message_type: string;
  processing_code: string | null;
  amount: NullableBigIntColumn;
  pan_masked: string | null;
  rrn: string | null;
  /** The host's journal row for it, when it has one. */
  journal_id: string | null;
  created_at: BigIntColumn;
}

/** A closed business date and the reconciliation files written for it. */
export interface BusinessDayTable {
  business_date: string;
  closed_at: BigIntColumn;
  merchants: number;
  /** JSON array of file names. */
  files: string;
}

export interface SchemaMigrationTable {
  version: number;
  name: string;
  applied_at: BigIntColumn;
}

/** An entry of the store-and-forward queue (migration 4). */
export interface SafQueueTable {
  id: string;
  node_id: string;
  kind: string;
  journal_id: string;
  mti: string;
  network_stan: string;
  rrn: string;
  /** JSON object of field number → value. */
  message: string;
  state: string;
  attempts: number;
  next_attempt_at: BigIntColumn;
  response_code: string | null;
  last_error: string | null;
  created_at: BigIntColumn;
  updated_at: BigIntColumn;
}

export interface Schema {
  saf_queue: SafQueueTable;
  merchants: MerchantTable;
  terminals: TerminalTable;
  journal: JournalTable;
  schema_migrations: SchemaMigrationTable;
  settlements: SettlementTable;
  batch_uploads: BatchUploadTable;
  business_days: BusinessDayTable;
}

/** Journal columns in the order the writers bind them (SQLite worker, PostgreSQL unnest). */
export const JOURNAL_COLUMNS = [
  'id',
  'node_id',
  'tid',
  'mid',
  'batch',
  'stan',
  'mti',
  'txn_type',
  'processing_code',
  'amount',
  'currency',
  'pan_masked',
  'pan_hash',
  'rrn',
  'auth_code',
  'response_code',
  'status',
  'network_outcome',
  'original_id',
  'original_stan',
  'original_rrn',
  'created_at',
  'updated_at',
] as const satisfies readonly (keyof JournalTable)[];

/** The outcome columns an update binds, in order, after the row id. */
export const OUTCOME_COLUMNS = [
  'status',
  'response_code',
  'auth_code',
  'rrn',
  'network_outcome',
  'updated_at',
] as const satisfies readonly (keyof JournalTable)[];
