/**
 * The issuer's ledger: cards, balances and authorisations in one SQLite file (better-sqlite3, WAL,
 * synchronous=FULL, so a commit is on disk when `authorise` returns and before the network answers).
 *
 * - Cards: PAN, expiry (YYMM), the PIN as a Visa PVV with its PVKI (never the PIN), balance in minor
 *   units, currency, status and the consecutive wrong-PIN count. The PAN is kept in clear: this is
 *   the issuer's card master file, the one place that must map a PAN to an account; everything the
 *   simulator logs or lists shows it masked.
 * - Authorisations: one row per request, keyed by (acquirer id, network STAN, RRN). `authorise`
 *   runs lookup, decision and effects in one IMMEDIATE transaction: a retransmission finds its row
 *   and gets the same answer without a second debit or a second PIN try; a request that reuses the
 *   key for different content gets 94 (duplicate) and changes nothing.
 * - Meta: schema version, the PVK (an LMK key block, made on first open) and the PVKI, and the
 *   network side's zone key blocks.
 *
 * - Holds and follow-ups: an approved pre-auth is a row with status `held` (the available balance
 *   is the balance less every held amount); `followUp` applies voids, refunds, pre-auth voids and
 *   completions against an original found by RRN, linked in `follow_ups`.
 *
 * - Reversals (0420, `reverse`): rows of their own keyed the same way, linked to the original by
 *   RRN in `follow_ups` (kind `reversal`). The original's effect is undone once and it becomes
 *   `reversed`: a retransmission replays its row, a second reversal of the same original (another
 *   key) finds it `reversed` and changes nothing; a reversal of an unknown or declined original is
 *   acknowledged and recorded without effect.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { isPoskeyError } from '../errors.js';
import type { HsmApi, LmkKeyBlock } from '../hsm/api.js';
import { type PinVerificationApi, PVK_KEY_TYPE } from '../hsm/pvv.js';
import { maskPan } from '../iso8583/describe.js';
import { CARD_STATUSES, type CardStatus, DEFAULT_CURRENCY } from './card.js';
import { networkError } from './errors.js';

export { CARD_STATUSES, type CardStatus, DEFAULT_CURRENCY };
/** Largest amount field 4 (n12) can carry. */
export const MAX_AMOUNT = 999_999_999_999;
export const DEFAULT_PVKI = '1';
export const SCHEMA_VERSION = 1;

export interface NewCard {
  pan: string;
  /** YYMM. */
  expiry: string;
  /** Clear PIN, 4–12 digits: turned into a PVV by the HSM at once, never stored. */
  pin: string;
  /** Minor units (fen, cents). */
  balance: number;
  status?: CardStatus;
  currency?: string;
}

/** A card as the issuer sees it (internal: the PAN in clear and the PVV). */
export interface Card {
  id: number;
  pan: string;
  expiry: string;
  pvki: string;
  pvv: string;
  balance: number;
  currency: string;
  status: CardStatus;
  pinTries: number;
}

/** A card as an operator listing shows it: masked PAN, no PVV. */
export interface CardView {
  pan: string;
  expiry: string;
  balance: number;
  currency: string;
  status: CardStatus;
  pinTries: number;
}

export interface AuthorisationKey {
  /** Field 32. */
  acquirerId: string;
  /** Field 11: the acquirer's network STAN. */
  stan: string;
  /** Field 37. */
  rrn: string;
}

/** What identifies a request's content, beyond its key (a retransmission must match it). */
export interface AuthorisationFacts extends AuthorisationKey {
  mti: string;
  processingCode: string;
  pan: string;
  amount: number;
  currency: string;
  tid: string;
  mid: string;
}

/** The issuer's decision about one request, applied by `authorise` with the row. */
export interface Decision {
  responseCode: string;
  authCode?: string;
  /** Amount to debit (approved purchases). */
  debit?: number;
  /** New consecutive wrong-PIN count, when it changes. */
  pinTries?: number;
  /** Report the balance after the request (approved balance inquiries and purchases). */
  reportBalance?: boolean;
  /** Status of the new row: 'applied' by default, 'held' for an approved pre-authorisation. */
  status?: string;
}

/** An earlier authorisation a follow-up (void, refund, completion…) refers to, as `followUp` shows it. */
export interface OriginalAuthorisation {
  mti: string;
  processingCode: string;
  /** purchase, preauth, completion… ('' for a row that is not a follow-up and not a pre-auth). */
  kind: string;
  cardId: number | null;
  amount: number;
  responseCode: string;
  status: string;
  /** What approved refunds have already credited against it. */
  refunded: number;
}

/** The issuer's decision about a follow-up, applied by `followUp` with its row. */
export interface FollowUpDecision extends Decision {
  /** Amount to credit back (void, refund, completion void). */
  credit?: number;
  /** New status of the original row (voided, released, completed). */
  originalStatus?: string;
}

export interface AuthorisationOutcome {
  responseCode: string;
  authCode?: string;
  /** Balance after the request, when the decision reports it. */
  balance?: number;
  /** True when this is a retransmission answered from the stored row. */
  replayed: boolean;
}

export interface AuthorisationRecord extends AuthorisationKey {
  mti: string;
  processingCode: string;
  panMasked: string;
  amount: number;
  currency: string;
  tid: string;
  mid: string;
  responseCode: string;
  authCode: string | undefined;
  balanceAfter: number | undefined;
  status: string;
  createdAt: string;
}

/** What the ledger needs from the HSM: a PVK made once, PVVs at card issuance. */
export type LedgerHsm = Pick<HsmApi, 'generateKey' | 'describeKey'> & Pick<PinVerificationApi, 'generatePvv'>;

export interface LedgerOptions {
  /** SQLite file (created with its directory), or ':memory:'. */
  path: string;
  /** Needed to add cards (PVV generation) and to make the PVK on first open. */
  hsm?: LedgerHsm;
  /** PVKI of a PVK made on first open; default '1'. */
  pvki?: string;
  clock?: () => Date;
  busyTimeoutMs?: number;
}

/** A reversal (0420) as the ledger keys and checks it; the original is named by RRN. */
export interface ReversalFacts extends AuthorisationKey {
  mti: string;
  processingCode: string;
  amount: number;
  currency: string;
  tid: string;
  mid: string;
  originalRrn: string;
}

/** What a reversal did to its original. */
export type ReversalEffect =
  | 'credited'
  | 'debited'
  | 'released'
  | 'already-reversed'
  | 'no-effect'
  | 'unknown-original'
  | 'declined-original'
  | 'insufficient-funds';

export interface ReversalOutcome extends AuthorisationOutcome {
  effect: ReversalEffect | 'replayed' | 'duplicate';
}

/** Response code of a request that reuses an authorisation key for different content. */
export const DUPLICATE_CODE = '94';
const RC_INSUFFICIENT_FUNDS = '51';

const SCHEMA = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cards (
  id INTEGER PRIMARY KEY,
  pan TEXT NOT NULL UNIQUE,
  expiry TEXT NOT NULL,
  pvki TEXT NOT NULL,
  pvv TEXT NOT NULL,
  balance INTEGER NOT NULL CHECK (balance >= 0),
  currency TEXT NOT NULL,
  status TEXT NOT NULL,
  pin_tries INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE authorisations (
  acquirer_id TEXT NOT NULL,
  stan TEXT NOT NULL,
  rrn TEXT NOT NULL,
  mti TEXT NOT NULL,
  processing_code TEXT NOT NULL,
  card_id INTEGER REFERENCES cards(id),
  pan_masked TEXT NOT NULL,
  amount INTEGER NOT NULL,
  currency TEXT NOT NULL,
  tid TEXT NOT NULL,
  mid TEXT NOT NULL,
  response_code TEXT NOT NULL,
  auth_code TEXT,
  balance_after INTEGER,
  status TEXT NOT NULL DEFAULT 'applied',
  created_at TEXT NOT NULL,
  PRIMARY KEY (acquirer_id, stan, rrn)
);
CREATE INDEX authorisations_card ON authorisations (card_id);
`;

/**
 * Follow-ups (void, refund, pre-auth void, completion…): which original (by RRN) each row refers
 * to and what kind it is. Created when missing, so ledgers made before it need no migration.
 */
const FOLLOW_UP_SCHEMA = `
CREATE TABLE IF NOT EXISTS follow_ups (
  acquirer_id TEXT NOT NULL,
  stan TEXT NOT NULL,
  rrn TEXT NOT NULL,
  kind TEXT NOT NULL,
  original_rrn TEXT,
  PRIMARY KEY (acquirer_id, stan, rrn)
);
CREATE INDEX IF NOT EXISTS follow_ups_original ON follow_ups (acquirer_id, original_rrn);
CREATE INDEX IF NOT EXISTS authorisations_rrn ON authorisations (acquirer_id, rrn);
`;

interface CardRow {
  id: number;
  pan: string;
  expiry: string;
  pvki: string;
  pvv: string;
  balance: number;
  currency: string;
  status: string;
  pin_tries: number;
}

interface AuthRow {
  acquirer_id: string;
  stan: string;
  rrn: string;
  mti: string;
  processing_code: string;
  card_id: number | null;
  pan_masked: string;
  amount: number;
  currency: string;
  tid: string;
  mid: string;
  response_code: string;
  auth_code: string | null;
  balance_after: number | null;
  status: string;
  created_at: string;
}

function cardError(field: string, reason: string) {
  return networkError('POSKEY_ERR_LEDGER_CARD', reason, field);
}

/** Wraps a driver failure; our own errors pass through. */
function ioError(e: unknown): unknown {
  if (isPoskeyError(e)) return e;
  const code = (e as { code?: string })?.code ?? 'error';
  return networkError('POSKEY_ERR_LEDGER_IO', `SQLite failed (${code})`, undefined, e);
}

function assertPan(pan: unknown, field = 'pan'): asserts pan is string {
  if (typeof pan !== 'string' || !/^\d{13,19}$/.test(pan)) throw cardError(field, 'a PAN is 13 to 19 digits');
}

function assertExpiry(expiry: unknown): asserts expiry is string {
  if (typeof expiry !== 'string' || !/^\d{2}(0[1-9]|1[0-2])$/.test(expiry)) {
    throw cardError('expiry', 'expiry is YYMM');
  }
}

function assertBalance(balance: unknown, field = 'balance'): asserts balance is number {
  if (typeof balance !== 'number' || !Number.isSafeInteger(balance) || balance < 0 || balance > MAX_AMOUNT) {
    throw cardError(field, `must be an integer number of minor units from 0 to ${MAX_AMOUNT}`);
  }
}

function assertStatus(status: unknown): asserts status is CardStatus {
  if (!CARD_STATUSES.includes(status as CardStatus)) {
    throw cardError('status', `must be one of ${CARD_STATUSES.join(', ')}`);
  }
}

function assertCurrency(currency: unknown): asserts currency is string {
  if (typeof currency !== 'string' || !/^\d{3}$/.test(currency)) {
    throw cardError('currency', 'an ISO 4217 numeric code, 3 digits');
  }
}

function toCard(r: CardRow): Card {
  return {
    id: r.id,
    pan: r.pan,
    expiry: r.expiry,
    pvki: r.pvki,
    pvv: r.pvv,
    balance: r.balance,
    currency: r.currency,
    status: r.status as CardStatus,
    pinTries: r.pin_tries,
  };
}

function toView(r: CardRow): CardView {
  return {
    pan: maskPan(r.pan),
    expiry: r.expiry,
    balance: r.balance,
    currency: r.currency,
    status: r.status as CardStatus,
    pinTries: r.pin_tries,
  };
}

function toRecord(r: AuthRow): AuthorisationRecord {
  return {
    acquirerId: r.acquirer_id,
    stan: r.stan,
    rrn: r.rrn,
    mti: r.mti,
    processingCode: r.processing_code,
    panMasked: r.pan_masked,
    amount: r.amount,
    currency: r.currency,
    tid: r.tid,
    mid: r.mid,
    responseCode: r.response_code,
    authCode: r.auth_code ?? undefined,
    balanceAfter: r.balance_after ?? undefined,
    status: r.status,
    createdAt: r.created_at,
  };
}

/** Same request content as the stored row (a retransmission), judged without the clear PAN. */
function sameRequest(row: AuthRow, f: AuthorisationFacts, cardId: number | null): boolean {
  return (
    row.mti === f.mti &&
    row.processing_code === f.processingCode &&
    row.amount === f.amount &&
    row.currency === f.currency &&
    row.tid === f.tid &&
    row.mid === f.mid &&
    row.card_id === cardId &&
    row.pan_masked === maskPan(f.pan)
  );
}

function replay(row: AuthRow): AuthorisationOutcome {
  const out: AuthorisationOutcome = { responseCode: row.response_code, replayed: true };
  if (row.auth_code !== null) out.authCode = row.auth_code;
  if (row.balance_after !== null) out.balance = row.balance_after;
  return out;
}

function openDatabase(path: string, busyTimeoutMs: number): Database.Database {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path);
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    if (path !== ':memory:') {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal')
        throw networkError('POSKEY_ERR_LEDGER_IO', `SQLite refused WAL mode (${String(mode)})`);
    }
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrate(db);
    db.exec(FOLLOW_UP_SCHEMA);
    return db;
  } catch (e) {
    db.close();
    throw ioError(e);
  }
}

function migrate(db: Database.Database): void {
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw networkError(
        'POSKEY_ERR_LEDGER_IO',
        `the ledger schema is version ${version}, newer than this build (${SCHEMA_VERSION})`,
        'path',
      );
    }
    if (version === 0) {
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }
  }).immediate();
}

/**
 * The ledger. Synchronous: better-sqlite3 commits (and fsyncs) inside the call, so an
 * authorisation is durable when `authorise` returns.
 */
export class Ledger {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #hsm: LedgerHsm | undefined;
  readonly #clock: () => Date;
  #pvk: { keyBlock: LmkKeyBlock; pvki: string } | undefined;
  readonly #statements = new Map<string, Database.Statement>();
  #closed = false;

  private constructor(options: LedgerOptions) {
    if (
      typeof options !== 'object' ||
      options === null ||
      typeof options.path !== 'string' ||
      !options.path
    ) {
      throw networkError('POSKEY_ERR_NETWORK_OPTION', 'a ledger path is required', 'path');
    }
    this.path = options.path;
    this.#hsm = options.hsm;
    this.#clock = options.clock ?? (() => new Date());
    this.#db = openDatabase(options.path, options.busyTimeoutMs ?? 5000);
  }

  /**
   * Opens (creating and migrating) a ledger. With an HSM, makes the PVK on first open and checks
   * on every open that the stored one is usable under that HSM's LMKs.
   * @throws POSKEY_ERR_NETWORK_OPTION, POSKEY_ERR_LEDGER_IO, POSKEY_ERR_LEDGER_PVK
   */
  static open(options: LedgerOptions): Ledger {
    const ledger = new Ledger(options);
    try {
      if (options.hsm !== undefined) ledger.#ensurePvk(options.hsm, options.pvki ?? DEFAULT_PVKI);
    } catch (e) {
      ledger.close();
      throw e;
    }
    return ledger;
  }

  /** The PVK block and PVKI cards are issued under. @throws POSKEY_ERR_LEDGER_PVK when there is none */
  get pvk(): { keyBlock: LmkKeyBlock; pvki: string } {
    this.#assertOpen();
    if (this.#pvk === undefined) {
      const keyBlock = this.getMeta('pvk');
      const pvki = this.getMeta('pvki');
      if (keyBlock === undefined || pvki === undefined) {
        throw networkError('POSKEY_ERR_LEDGER_PVK', 'the ledger has no PVK yet (open it with an HSM)', 'pvk');
      }
      this.#pvk = { keyBlock, pvki };
    }
    return this.#pvk;
  }

  #ensurePvk(hsm: LedgerHsm, pvki: string): void {
    if (!/^[0-9]$/.test(pvki)) throw networkError('POSKEY_ERR_NETWORK_OPTION', 'PVKI is one digit', 'pvki');
    let block = this.getMeta('pvk');
    if (block === undefined) {
      block = hsm.generateKey(
        { keyType: PVK_KEY_TYPE, algorithm: 'tdes2', exportability: 'N' },
        'network',
      ).keyBlock;
      this.#db.transaction(() => {
        this.setMeta('pvk', block as string);
        this.setMeta('pvki', pvki);
      })();
    }
    try {
      const info = hsm.describeKey(block);
      if (info.usage !== 'V2') throw new Error('not a PVK');
    } catch (e) {
      throw networkError(
        'POSKEY_ERR_LEDGER_PVK',
        "the ledger's PVK is not usable with this HSM (another LMK?)",
        'pvk',
        e,
      );
    }
  }

  /**
   * Issues a card: the PIN becomes a PVV in the HSM at once and is not kept.
   * @throws POSKEY_ERR_LEDGER_CARD, POSKEY_ERR_LEDGER_DUPLICATE, POSKEY_ERR_LEDGER_PVK, the HSM's
   *   PIN errors (POSKEY_ERR_PIN_LENGTH, POSKEY_ERR_PIN_DIGITS)
   */
  addCard(card: NewCard): CardView {
    this.#assertOpen();
    if (typeof card !== 'object' || card === null) throw cardError('card', 'must be an object');
    assertPan(card.pan);
    assertExpiry(card.expiry);
    assertBalance(card.balance);
    const status = card.status ?? 'active';
    assertStatus(status);
    const currency = card.currency ?? DEFAULT_CURRENCY;
    assertCurrency(currency);
    if (this.#hsm === undefined) {
      throw networkError('POSKEY_ERR_LEDGER_PVK', 'adding a card needs the HSM (PVV generation)', 'hsm');
    }
    const { keyBlock, pvki } = this.pvk;
    const pvv = this.#hsm.generatePvv({ pvk: keyBlock, pin: card.pin, pan: card.pan, pvki });
    const now = this.#clock().toISOString();
    try {
      this.#stmt(
        `INSERT INTO cards (pan, expiry, pvki, pvv, balance, currency, status, pin_tries, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`,
      ).run(card.pan, card.expiry, pvki, pvv, card.balance, currency, status, now, now);
    } catch (e) {
      if ((e as { code?: string })?.code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw networkError(
          'POSKEY_ERR_LEDGER_DUPLICATE',
          'a card with this PAN is already on file',
          'pan',
          e,
        );
      }
      throw ioError(e);
    }
    return this.#view(card.pan);
  }

  /** The card on file, or undefined. */
  getCard(pan: string): Card | undefined {
    this.#assertOpen();
    const row = this.#stmt('SELECT * FROM cards WHERE pan = ?').get(pan) as CardRow | undefined;
    return row === undefined ? undefined : toCard(row);
  }

  /** Every card, masked, by PAN. */
  listCards(): CardView[] {
    this.#assertOpen();
    return (this.#stmt('SELECT * FROM cards ORDER BY pan').all() as CardRow[]).map(toView);
  }

  /** @throws POSKEY_ERR_LEDGER_NOT_FOUND */
  balanceOf(pan: string): number {
    const card = this.getCard(pan);
    if (card === undefined) throw this.#notFound();
    return card.balance;
  }

  /**
   * Operator changes: status, balance, a reset of the wrong-PIN count.
   * @throws POSKEY_ERR_LEDGER_CARD, POSKEY_ERR_LEDGER_NOT_FOUND
   */
  updateCard(
    pan: string,
    change: { status?: CardStatus; balance?: number; resetPinTries?: boolean },
  ): CardView {
    this.#assertOpen();
    assertPan(pan);
    if (change.status !== undefined) assertStatus(change.status);
    if (change.balance !== undefined) assertBalance(change.balance);
    const now = this.#clock().toISOString();
    const run = this.#db.transaction(() => {
      const row = this.#stmt('SELECT * FROM cards WHERE pan = ?').get(pan) as CardRow | undefined;
      if (row === undefined) throw this.#notFound();
      this.#stmt('UPDATE cards SET status = ?, balance = ?, pin_tries = ?, updated_at = ? WHERE id = ?').run(
        change.status ?? row.status,
        change.balance ?? row.balance,
        change.resetPinTries ? 0 : row.pin_tries,
        now,
        row.id,
      );
    });
    try {
      run.immediate();
    } catch (e) {
      throw ioError(e);
    }
    return this.#view(pan);
  }

  /**
   * Decides and applies one request atomically: a stored row for this key answers a matching
   * retransmission (no second effect) and a different request with 94; otherwise `decide` sees the
   * card (undefined when unknown) and its decision is applied with a new row, all in one IMMEDIATE
   * transaction that is durable when this returns. If `decide` throws, nothing is written.
   */
  authorise(facts: AuthorisationFacts, decide: (card: Card | undefined) => Decision): AuthorisationOutcome {
    this.#assertOpen();
    const run = this.#db.transaction((): AuthorisationOutcome => {
      const row = this.#stmt('SELECT * FROM cards WHERE pan = ?').get(facts.pan) as CardRow | undefined;
      const cardId = row?.id ?? null;
      const existing = this.#stmt(
        'SELECT * FROM authorisations WHERE acquirer_id = ? AND stan = ? AND rrn = ?',
      ).get(facts.acquirerId, facts.stan, facts.rrn) as AuthRow | undefined;
      if (existing !== undefined) {
        return sameRequest(existing, facts, cardId)
          ? replay(existing)
          : { responseCode: DUPLICATE_CODE, replayed: false };
      }
      const card = row === undefined ? undefined : this.#available(toCard(row));
      const decision = decide(card);
      return this.#apply(facts, card, decision);
    });
    try {
      return run.immediate();
    } catch (e) {
      throw ioError(e);
    }
  }

  #apply(facts: AuthorisationFacts, card: Card | undefined, d: Decision): AuthorisationOutcome {
    const now = this.#clock().toISOString();
    let balance = card?.balance;
    if (card !== undefined && d.pinTries !== undefined) {
      this.#stmt('UPDATE cards SET pin_tries = ?, updated_at = ? WHERE id = ?').run(d.pinTries, now, card.id);
    }
    if (card !== undefined && d.debit !== undefined && d.debit > 0) {
      const done = this.#stmt(
        'UPDATE cards SET balance = balance - ?, updated_at = ? WHERE id = ? AND balance >= ?',
      ).run(d.debit, now, card.id, d.debit);
      if (done.changes !== 1)
        throw networkError('POSKEY_ERR_LEDGER_IO', 'debit exceeds the balance', 'debit');
      balance = (balance as number) - d.debit;
    }
    const reported = d.reportBalance && balance !== undefined ? balance : null;
    this.#stmt(
      `INSERT INTO authorisations (acquirer_id, stan, rrn, mti, processing_code, card_id, pan_masked, amount,
           currency, tid, mid, response_code, auth_code, balance_after, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      facts.acquirerId,
      facts.stan,
      facts.rrn,
      facts.mti,
      facts.processingCode,
      card?.id ?? null,
      maskPan(facts.pan),
      facts.amount,
      facts.currency,
      facts.tid,
      facts.mid,
      d.responseCode,
      d.authCode ?? null,
      reported,
      d.status ?? 'applied',
      now,
    );
    const out: AuthorisationOutcome = { responseCode: d.responseCode, replayed: false };
    if (d.authCode !== undefined) out.authCode = d.authCode;
    if (reported !== null) out.balance = reported;
    return out;
  }

  /** The card with its balance less what approved pre-authorisations hold: what it can spend. */
  #available(card: Card): Card {
    const held = this.#stmt(
      "SELECT COALESCE(SUM(amount), 0) AS held FROM authorisations WHERE card_id = ? AND status = 'held'",
    ).get(card.id) as { held: number };
    return held.held === 0 ? card : { ...card, balance: card.balance - held.held };
  }

  /** What approved pre-authorisations hold on a card (0 for an unknown PAN). */
  heldOn(pan: string): number {
    const card = this.getCard(pan);
    return card === undefined ? 0 : card.balance - this.#available(card).balance;
  }

  /**
   * A request that refers to an earlier authorisation by its RRN (void, refund, pre-auth void,
   * completion, completion void), decided and applied atomically like `authorise`: a
   * retransmission is answered from its row, a reused key with other content gets 94; otherwise
   * `decide` sees the card (its available balance) and the original (undefined when unknown), and
   * its decision is applied (debit or credit, the original's new status, the row and its link) in
   * one IMMEDIATE transaction.
   */
  followUp(
    facts: AuthorisationFacts,
    follow: { kind: string; originalRrn: string },
    decide: (card: Card | undefined, original: OriginalAuthorisation | undefined) => FollowUpDecision,
  ): AuthorisationOutcome {
    this.#assertOpen();
    const run = this.#db.transaction((): AuthorisationOutcome => {
      const row = this.#stmt('SELECT * FROM cards WHERE pan = ?').get(facts.pan) as CardRow | undefined;
      const existing = this.#stmt(
        'SELECT * FROM authorisations WHERE acquirer_id = ? AND stan = ? AND rrn = ?',
      ).get(facts.acquirerId, facts.stan, facts.rrn) as AuthRow | undefined;
      if (existing !== undefined) {
        return sameRequest(existing, facts, row?.id ?? null)
          ? replay(existing)
          : { responseCode: DUPLICATE_CODE, replayed: false };
      }
      const card = row === undefined ? undefined : this.#available(toCard(row));
      const original = this.#original(facts.acquirerId, follow.originalRrn);
      const d = decide(card, original?.view);
      if (card !== undefined && d.credit !== undefined && d.credit > 0) {
        this.#stmt('UPDATE cards SET balance = balance + ?, updated_at = ? WHERE id = ?').run(
          d.credit,
          this.#clock().toISOString(),
          card.id,
        );
        card.balance += d.credit;
      }
      if (original !== undefined && d.originalStatus !== undefined) {
        this.#stmt('UPDATE authorisations SET status = ? WHERE acquirer_id = ? AND stan = ? AND rrn = ?').run(
          d.originalStatus,
          facts.acquirerId,
          original.stan,
          follow.originalRrn,
        );
      }
      this.#stmt(
        'INSERT INTO follow_ups (acquirer_id, stan, rrn, kind, original_rrn) VALUES (?, ?, ?, ?, ?)',
      ).run(facts.acquirerId, facts.stan, facts.rrn, follow.kind, follow.originalRrn);
      return this.#apply(facts, card, d);
    });
    try {
      return run.immediate();
    } catch (e) {
      throw ioError(e);
    }
  }

  /** The approved-or-not original with this RRN (the latest, should an RRN repeat), and its refunds. */
  #original(acquirerId: string, rrn: string): { stan: string; view: OriginalAuthorisation } | undefined {
    const row = this.#stmt(
      'SELECT * FROM authorisations WHERE acquirer_id = ? AND rrn = ? ORDER BY rowid DESC LIMIT 1',
    ).get(acquirerId, rrn) as AuthRow | undefined;
    if (row === undefined) return undefined;
    const kind = this.#stmt('SELECT kind FROM follow_ups WHERE acquirer_id = ? AND stan = ? AND rrn = ?').get(
      acquirerId,
      row.stan,
      rrn,
    ) as { kind: string } | undefined;
    const refunded = this.#stmt(
      `SELECT COALESCE(SUM(a.amount), 0) AS total FROM follow_ups f JOIN authorisations a
         ON a.acquirer_id = f.acquirer_id AND a.stan = f.stan AND a.rrn = f.rrn
       WHERE f.acquirer_id = ? AND f.original_rrn = ? AND f.kind = 'refund' AND a.response_code = '00'
         AND a.status <> 'reversed'`,
    ).get(acquirerId, rrn) as { total: number };
    const base = row.processing_code.startsWith('03') ? 'preauth' : 'purchase';
    return {
      stan: row.stan,
      view: {
        mti: row.mti,
        processingCode: row.processing_code,
        kind: kind?.kind ?? base,
        cardId: row.card_id,
        amount: row.amount,
        responseCode: row.response_code,
        status: row.status,
        refunded: refunded.total,
      },
    };
  }

  /**
   * Reverses the original named by RRN, once, in one IMMEDIATE transaction (see the module
   * comment): a retransmission of this key replays; a reused key with other content gets 94. The
   * answer is 00 whatever the effect (the acquirer must stop resending), except 51 when undoing a
   * credit would take the card below zero (nothing is changed then).
   */
  reverse(f: ReversalFacts): ReversalOutcome {
    this.#assertOpen();
    const run = this.#db.transaction((): ReversalOutcome => {
      const existing = this.#stmt(
        'SELECT * FROM authorisations WHERE acquirer_id = ? AND stan = ? AND rrn = ?',
      ).get(f.acquirerId, f.stan, f.rrn) as AuthRow | undefined;
      if (existing !== undefined) {
        const link = this.#stmt(
          'SELECT original_rrn FROM follow_ups WHERE acquirer_id = ? AND stan = ? AND rrn = ?',
        ).get(f.acquirerId, f.stan, f.rrn) as { original_rrn: string | null } | undefined;
        const same =
          existing.mti === f.mti &&
          existing.processing_code === f.processingCode &&
          existing.amount === f.amount &&
          existing.tid === f.tid &&
          existing.mid === f.mid &&
          link?.original_rrn === f.originalRrn;
        return same
          ? { ...replay(existing), effect: 'replayed' }
          : { responseCode: DUPLICATE_CODE, replayed: false, effect: 'duplicate' };
      }
      const original = this.#stmt(
        'SELECT * FROM authorisations WHERE acquirer_id = ? AND rrn = ? ORDER BY rowid DESC LIMIT 1',
      ).get(f.acquirerId, f.originalRrn) as AuthRow | undefined;
      const effect = original === undefined ? 'unknown-original' : this.#undo(original);
      const code = effect === 'insufficient-funds' ? RC_INSUFFICIENT_FUNDS : '00';
      this.#stmt(
        `INSERT INTO authorisations (acquirer_id, stan, rrn, mti, processing_code, card_id, pan_masked, amount,
             currency, tid, mid, response_code, auth_code, balance_after, status, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 'applied', ?)`,
      ).run(
        f.acquirerId,
        f.stan,
        f.rrn,
        f.mti,
        f.processingCode,
        original?.card_id ?? null,
        original?.pan_masked ?? '',
        f.amount,
        f.currency,
        f.tid,
        f.mid,
        code,
        this.#clock().toISOString(),
      );
      this.#stmt(
        "INSERT INTO follow_ups (acquirer_id, stan, rrn, kind, original_rrn) VALUES (?, ?, ?, 'reversal', ?)",
      ).run(f.acquirerId, f.stan, f.rrn, f.originalRrn);
      return { responseCode: code, replayed: false, effect };
    });
    try {
      return run.immediate();
    } catch (e) {
      throw ioError(e);
    }
  }

  /** Undoes an original's effect and marks it `reversed` (inside `reverse`'s transaction). */
  #undo(o: AuthRow): ReversalEffect {
    if (o.response_code !== '00') return 'declined-original';
    if (o.status === 'reversed') return 'already-reversed';
    const kind = this.#kindOf(o);
    const now = this.#clock().toISOString();
    const mark = () =>
      this.#stmt(
        "UPDATE authorisations SET status = 'reversed' WHERE acquirer_id = ? AND stan = ? AND rrn = ?",
      ).run(o.acquirer_id, o.stan, o.rrn);
    if (kind === 'preauth') {
      if (o.status !== 'held') return 'no-effect';
      mark();
      return 'released';
    }
    if (o.status !== 'applied' || o.card_id === null) return 'no-effect';
    if (kind === 'void' || kind === 'completion-void' || kind === 'refund') {
      // The credit it gave is taken back; a void's original counts again.
      const done = this.#stmt(
        'UPDATE cards SET balance = balance - ?, updated_at = ? WHERE id = ? AND balance >= ?',
      ).run(o.amount, now, o.card_id, o.amount);
      if (done.changes !== 1) return 'insufficient-funds';
      if (kind !== 'refund') this.#restoreVoided(o);
      mark();
      return 'debited';
    }
    // A purchase or completion: its debit comes back, less what refunds already credited.
    const refunded = this.#original(o.acquirer_id, o.rrn)?.view.refunded ?? 0;
    this.#stmt('UPDATE cards SET balance = balance + ?, updated_at = ? WHERE id = ?').run(
      o.amount - refunded,
      now,
      o.card_id,
    );
    mark();
    return 'credited';
  }

  /** A row's kind: its follow-up kind, else pre-auth or purchase by processing code. */
  #kindOf(o: AuthRow): string {
    const link = this.#stmt('SELECT kind FROM follow_ups WHERE acquirer_id = ? AND stan = ? AND rrn = ?').get(
      o.acquirer_id,
      o.stan,
      o.rrn,
    ) as { kind: string } | undefined;
    return link?.kind ?? (o.processing_code.startsWith('03') ? 'preauth' : 'purchase');
  }

  /** The sale a reversed void had voided is `applied` again. */
  #restoreVoided(voidRow: AuthRow): void {
    const link = this.#stmt(
      'SELECT original_rrn FROM follow_ups WHERE acquirer_id = ? AND stan = ? AND rrn = ?',
    ).get(voidRow.acquirer_id, voidRow.stan, voidRow.rrn) as { original_rrn: string | null } | undefined;
    if (link?.original_rrn == null) return;
    const sale = this.#original(voidRow.acquirer_id, link.original_rrn);
    if (sale === undefined || sale.view.status !== 'voided') return;
    this.#stmt(
      "UPDATE authorisations SET status = 'applied' WHERE acquirer_id = ? AND stan = ? AND rrn = ?",
    ).run(voidRow.acquirer_id, sale.stan, link.original_rrn);
  }

  /** The clear PAN of the card an original (by RRN) was made with: advices stored without one name it so. */
  originalCardPan(acquirerId: string, rrn: string): string | undefined {
    this.#assertOpen();
    const row = this.#stmt(
      `SELECT c.pan FROM authorisations a JOIN cards c ON c.id = a.card_id
       WHERE a.acquirer_id = ? AND a.rrn = ? ORDER BY a.rowid DESC LIMIT 1`,
    ).get(acquirerId, rrn) as { pan: string } | undefined;
    return row?.pan;
  }

  /** The stored row for a key, if any. */
  findAuthorisation(key: AuthorisationKey): AuthorisationRecord | undefined {
    this.#assertOpen();
    const row = this.#stmt('SELECT * FROM authorisations WHERE acquirer_id = ? AND stan = ? AND rrn = ?').get(
      key.acquirerId,
      key.stan,
      key.rrn,
    ) as AuthRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  /** Every authorisation in the order recorded (reconciliation, tests). */
  listAuthorisations(): AuthorisationRecord[] {
    this.#assertOpen();
    return (this.#stmt('SELECT * FROM authorisations ORDER BY rowid').all() as AuthRow[]).map(toRecord);
  }

  getMeta(key: string): string | undefined {
    this.#assertOpen();
    const row = this.#stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.#assertOpen();
    try {
      this.#stmt(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ).run(key, value);
    } catch (e) {
      throw ioError(e);
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the database (checkpointing the WAL). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /** Prepared statements, kept (the hot path runs the same few). */
  #stmt(sql: string): Database.Statement {
    let stmt = this.#statements.get(sql);
    if (stmt === undefined) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  #view(pan: string): CardView {
    const row = this.#stmt('SELECT * FROM cards WHERE pan = ?').get(pan) as CardRow | undefined;
    if (row === undefined) throw this.#notFound();
    return toView(row);
  }

  #notFound() {
    return networkError('POSKEY_ERR_LEDGER_NOT_FOUND', 'no card with this PAN', 'pan');
  }

  #assertOpen(): void {
    if (this.#closed) throw networkError('POSKEY_ERR_LEDGER_CLOSED', 'the ledger is closed', 'ledger');
  }
}
