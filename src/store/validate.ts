/**
 * Input checks for everything the store writes. They run before any SQL, so the database only sees
 * well-formed rows and a batch of journal rows fails only for reasons the database alone can know
 * (a duplicate key). Messages describe the expected form and never repeat the value given.
 */
import { lmkIdOfBlock } from '../hsm/keyblock.js';
import { storeError } from './errors.js';
import { JOURNAL_ID_RE } from './ids.js';
import { maskPan, type PanHasher } from './pan.js';
import {
  JOURNAL_STATUSES,
  type JournalOutcome,
  type JournalRecord,
  type JournalStatus,
  type MerchantInput,
  type NewJournalRow,
  type NewTerminal,
  type StoredKey,
  TERMINAL_KEY_ALGORITHMS,
  TERMINAL_STATES,
  type TerminalKeyAlgorithm,
  type TerminalState,
} from './types.js';

/** Largest amount: ISO 8583 field 4 has 12 digits. */
export const MAX_AMOUNT = 999_999_999_999;
const TR31_MAX = 9999;

function bad(field: string, reason: string): never {
  throw storeError('POSKEY_ERR_STORE_VALUE', reason, field);
}

function text(value: unknown, field: string, re: RegExp, reason: string): string {
  if (typeof value !== 'string' || !re.test(value)) bad(field, reason);
  return value;
}

function optional<T>(value: T | null | undefined, check: (v: T) => unknown): null | T {
  if (value === undefined || value === null) return null;
  check(value);
  return value;
}

function int(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    bad(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

function oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    bad(field, `must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

export const assertTid = (v: unknown, field = 'tid') =>
  text(v, field, /^[\x21-\x7e][\x20-\x7e]{7}$/, 'a TID is 8 printable ASCII characters');
export const assertMid = (v: unknown, field = 'mid') =>
  text(v, field, /^[\x21-\x7e][\x20-\x7e]{14}$/, 'a MID is 15 printable ASCII characters');
export const assertBatch = (v: unknown, field = 'batch') => int(v, field, 0, 999_999);
export const assertStan = (v: unknown, field = 'stan') => int(v, field, 0, 999_999);
export const assertMti = (v: unknown, field = 'mti') => text(v, field, /^\d{4}$/, 'an MTI is 4 digits');
export const assertTime = (v: unknown, field: string) => int(v, field, 0, Number.MAX_SAFE_INTEGER);
export const assertJournalId = (v: unknown, field = 'id') =>
  text(v, field, JOURNAL_ID_RE, 'a journal id is 26 Crockford base-32 characters (ULID)');
export const assertStatus = (v: unknown, field = 'status'): JournalStatus =>
  oneOf(v, field, JOURNAL_STATUSES);
export const assertTerminalState = (v: unknown, field = 'state'): TerminalState =>
  oneOf(v, field, TERMINAL_STATES);
export const assertKeyAlgorithm = (v: unknown, field = 'keyAlgorithm'): TerminalKeyAlgorithm =>
  oneOf(v, field, TERMINAL_KEY_ALGORITHMS);
const RRN_RE = /^[0-9A-Za-z ]{12}$/;
const assertRrn = (v: unknown, field: string) =>
  text(v, field, RRN_RE, 'an RRN is 12 letters, digits or spaces');
const assertName = (v: unknown, field: string) =>
  text(v, field, /^[a-z][a-z0-9_]{0,31}$/, 'must be a lower-case name of 1 to 32 letters, digits or _');

/** A merchant as it will be written. */
export function checkMerchant(m: MerchantInput): MerchantInput {
  if (typeof m !== 'object' || m === null) bad('merchant', 'must be an object');
  return {
    mid: assertMid(m.mid),
    // Control characters would corrupt receipts and logs; anything printable, any script, is fine.
    name: text(
      m.name,
      'name',
      /^[^\p{Cc}]{1,100}$/u,
      'a name is 1 to 100 characters without control characters',
    ),
    mcc: text(m.mcc, 'mcc', /^\d{4}$/, 'an MCC is 4 digits'),
  };
}

/**
 * A key to store: its block must be an LMK key block (TR-31 version D, storage context, naming
 * its LMK), which a clear key never is, and its KCV 4–16 hex digits (stored upper-case).
 * @throws POSKEY_ERR_STORE_KEY_BLOCK, POSKEY_ERR_STORE_VALUE
 */
export function checkStoredKey(key: StoredKey, field: string): StoredKey {
  if (typeof key !== 'object' || key === null) bad(field, 'must be { block, kcv }');
  const { block, kcv } = key;
  if (typeof block !== 'string' || block.length > TR31_MAX) {
    throw storeError('POSKEY_ERR_STORE_KEY_BLOCK', 'must be an LMK key block', `${field}.block`);
  }
  try {
    lmkIdOfBlock(block);
  } catch (cause) {
    throw storeError('POSKEY_ERR_STORE_KEY_BLOCK', 'must be an LMK key block', `${field}.block`, cause);
  }
  text(kcv, `${field}.kcv`, /^[0-9A-Fa-f]{4,16}$/, 'a KCV is 4 to 16 hex digits');
  return { block, kcv: kcv.toUpperCase() };
}

export function checkSerial(v: unknown, field = 'serial'): string {
  return text(
    v,
    field,
    /^[\x21-\x7e]{1,64}$/,
    'a serial is 1 to 64 printable ASCII characters without spaces',
  );
}

export function checkBatchNumber(v: unknown, field = 'batchNumber'): number {
  return assertBatch(v, field);
}

export interface CheckedTerminal {
  tid: string;
  mid: string;
  keyAlgorithm: TerminalKeyAlgorithm;
  serial: string | null;
  tmk: StoredKey | null;
  state: TerminalState;
  batchNumber: number;
}

export function checkNewTerminal(t: NewTerminal): CheckedTerminal {
  if (typeof t !== 'object' || t === null) bad('terminal', 'must be an object');
  return {
    tid: assertTid(t.tid),
    mid: assertMid(t.mid),
    keyAlgorithm: assertKeyAlgorithm(t.keyAlgorithm),
    serial: optional(t.serial, (v) => checkSerial(v)),
    tmk: t.tmk === undefined || t.tmk === null ? null : checkStoredKey(t.tmk, 'tmk'),
    state: t.state === undefined ? 'new' : assertTerminalState(t.state),
    batchNumber: t.batchNumber === undefined ? 1 : checkBatchNumber(t.batchNumber),
  };
}

/** What the journal needs to turn a request into a stored row. */
export interface RecordContext {
  nodeId: string;
  now: () => number;
  newId: () => string;
  hasher: PanHasher;
}

/**
 * Builds the stored row: picks the known fields (so a PIN block or track that rode along on the
 * request object is dropped), masks and hashes the PAN, fills id, status and times.
 */
export function toJournalRecord(row: NewJournalRow, ctx: RecordContext): JournalRecord {
  if (typeof row !== 'object' || row === null) bad('row', 'must be an object');
  const createdAt = row.createdAt === undefined ? ctx.now() : assertTime(row.createdAt, 'createdAt');
  const pan = row.pan ?? null; // masked and hashed below; both check it is 12–19 digits
  return {
    id: row.id === undefined ? ctx.newId() : assertJournalId(row.id),
    nodeId: ctx.nodeId,
    tid: assertTid(row.tid),
    mid: assertMid(row.mid),
    batch: assertBatch(row.batch),
    stan: assertStan(row.stan),
    mti: assertMti(row.mti),
    txnType: assertName(row.txnType, 'txnType'),
    processingCode: optional(row.processingCode, (v) =>
      text(v, 'processingCode', /^\d{6}$/, 'a processing code is 6 digits'),
    ),
    amount: optional(row.amount, (v) => int(v, 'amount', 0, MAX_AMOUNT)),
    currency: optional(row.currency, (v) =>
      text(v, 'currency', /^\d{3}$/, 'a currency is 3 digits (ISO 4217)'),
    ),
    panMasked: pan === null ? null : maskPan(pan),
    panHash: pan === null ? null : ctx.hasher.hash(pan),
    rrn: optional(row.rrn, (v) => assertRrn(v, 'rrn')),
    authCode: optional(row.authCode, (v) => assertAuthCode(v)),
    responseCode: optional(row.responseCode, (v) => assertResponseCode(v)),
    status: row.status === undefined ? 'received' : assertStatus(row.status),
    networkOutcome: optional(row.networkOutcome, (v) => assertName(v, 'networkOutcome')),
    originalId: optional(row.originalId, (v) => assertJournalId(v, 'originalId')),
    originalStan: optional(row.originalStan, (v) => assertStan(v, 'originalStan')),
    originalRrn: optional(row.originalRrn, (v) => assertRrn(v, 'originalRrn')),
    createdAt,
    updatedAt: createdAt,
  };
}

function assertAuthCode(v: unknown, field = 'authCode'): string {
  return text(v, field, /^[0-9A-Za-z ]{6}$/, 'an authorization code is 6 letters, digits or spaces');
}

function assertResponseCode(v: unknown, field = 'responseCode'): string {
  return text(v, field, /^[0-9A-Za-z]{2}$/, 'a response code is 2 letters or digits');
}

/** An outcome with every field present (null = keep the stored value). */
export interface CheckedOutcome {
  status: JournalStatus;
  responseCode: string | null;
  authCode: string | null;
  rrn: string | null;
  networkOutcome: string | null;
  at: number;
}

export function checkOutcome(o: JournalOutcome, now: () => number): CheckedOutcome {
  if (typeof o !== 'object' || o === null) bad('outcome', 'must be an object');
  return {
    status: assertStatus(o.status),
    responseCode: optional(o.responseCode, (v) => assertResponseCode(v)),
    authCode: optional(o.authCode, (v) => assertAuthCode(v)),
    rrn: optional(o.rrn, (v) => assertRrn(v, 'rrn')),
    networkOutcome: optional(o.networkOutcome, (v) => assertName(v, 'networkOutcome')),
    at: o.at === undefined ? now() : assertTime(o.at, 'at'),
  };
}

/** Node ids name host processes: 1–64 of letters, digits, '.', '_', ':', '-'. */
export function checkNodeId(v: unknown): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9._:-]{1,64}$/.test(v)) {
    throw storeError(
      'POSKEY_ERR_STORE_CONFIG',
      'a node id is 1 to 64 letters, digits, ".", "_", ":" or "-"',
      'nodeId',
    );
  }
  return v;
}
