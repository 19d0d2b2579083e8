/**
 * The terminal application: sign-in, balance inquiry, purchase with PIN entry, STAN and batch,
 * response-MAC verification and reversals, against any POSP speaking the UnionPay POS dialect.
 *
 * Rules (notes/e2e.md, research iso8583.md §1.3–§2.7):
 *  - Every request takes the next STAN (persisted before sending when there is a data directory);
 *    the batch is the one the last 0810 returned in 60.2.
 *  - Sign-in loads the PIK, MAK and TDK from field 62 through the PIN pad, each only when its check
 *    value verifies, all or nothing. A transaction signs in first when the keys are missing or old.
 *  - Before a purchase is sent, its reversal is stored (reason 98). An authenticated response
 *    clears it. A response whose MAC fails, or an approval without a MAC, keeps it with reason A0
 *    and is reported as "response MAC failed"; a timeout or a dropped link keeps reason 98.
 *    Pending reversals are sent (0400, MACed, 0410 must carry a valid MAC) right away when
 *    `reverseImmediately`, and in any case before the next transaction, which is refused while one
 *    cannot be delivered.
 *  - A decline without a MAC is accepted (the host answers A0, 99, A7 and 97 unMACed): nothing was
 *    approved, so nothing needs reversing. Only an approval must be authenticated.
 *  - On A0, 99 or A7 (or a header asking for a re-sign-in) the terminal reports the decline and
 *    signs in again at once. It does not retry the transaction: the cardholder decides.
 */
import { toHex } from '../crypto/bytes.js';
import { isPoskeyError } from '../errors.js';
import { type Dialect, type IsoMessage, pack, type Subfields } from '../iso8583/index.js';
import { type BatchTotals, parseTotals, SETTLEMENT_RESULT } from '../protocol/settlement.js';
import { posDialectFor, RC, RE_SIGN_IN_CODES, SM4_TPDU_DESTINATION } from '../protocol/unionpay-pos.js';
import { type BatchRecord, type BatchStore, MemoryBatchStore } from './batch-store.js';
import { type CardInput, readCard } from './cards.js';
import { type ResolvedTerminalConfig, resolveTerminalConfig, type TerminalConfig } from './config.js';
import { DEFAULT_TPDU, type Exchange, type FrameEvent, TerminalConnection } from './connection.js';
import { TerminalErrorCode as E, PinPadError, PinPadErrorCode, TerminalError } from './errors.js';
import {
  type Balance,
  describeResponseCode,
  type FinancialKind,
  type FollowUpKind,
  financialRequest,
  followUpRequest,
  formatAmount,
  hostClock,
  type OriginalRef,
  parseBalances,
  reversalOf,
  signInKeyPlan,
  signInRequest,
  signOffRequest,
} from './messages.js';
import type { PinPad } from './pinpad.js';
import {
  MemoryReversalStore,
  type PendingReversal,
  type ReversalReason,
  type ReversalStore,
} from './reversal-store.js';
import { settlementRequest, totalsOf, uploadDetail, uploadEnd } from './settlement-messages.js';
import { MemoryStateStore, type TerminalStateStore } from './state-store.js';

/** Approved transactions the batch records for settlement, and those that take their original out. */
const BATCH_ADDS: ReadonlySet<string> = new Set(['purchase', 'refund', 'completion', 'completion-advice']);
const BATCH_REMOVES: ReadonlySet<string> = new Set(['void', 'completion-void']);

export type Outcome = 'approved' | 'declined' | 'mac-failed' | 'timeout';

export interface SignInResult {
  approved: boolean;
  responseCode: string | undefined;
  responseText: string;
  stan: string;
  /** Batch in force after the sign-in. */
  batch: string;
  /** KCVs (3 bytes) of the keys loaded, for the operator to compare with the host. */
  keys?: { pik: string; mak: string; tdk?: string };
  latencyMs: number;
}

export interface ReversalOutcome {
  stan: string;
  reason: ReversalReason;
  /** A 0400 went out (this time). */
  sent: boolean;
  acknowledged: boolean;
  responseCode?: string;
  error?: string;
}

export interface TransactionResult {
  type: FinancialKind | FollowUpKind;
  outcome: Outcome;
  approved: boolean;
  stan: string;
  responseCode?: string;
  responseText: string;
  /** Field 4 (minor units, n12) for purchases. */
  amount?: string;
  rrn?: string;
  authCode?: string;
  balances?: Balance[];
  /** True: the response MAC verified; false: it failed; null: the response carried none. */
  macVerified: boolean | null;
  /** Request to response, milliseconds (absent on timeout). */
  latencyMs?: number;
  /** The reversal of this purchase, when one is still pending or was just sent. */
  reversal?: ReversalOutcome;
  /** Reversals of earlier transactions delivered before this one. */
  earlierReversals?: ReversalOutcome[];
  /** The automatic sign-in after A0/99/A7. */
  signIn?: { approved: boolean; responseCode?: string; error?: string };
}

/** What `settle()` did (0500, and the batch upload when the host was not balanced). */
export interface SettlementResult {
  approved: boolean;
  responseCode?: string;
  responseText: string;
  /** The batch that was settled (or tried). */
  batch: string;
  /** The batch in force afterwards (the host's 60.2). */
  newBatch: string;
  /** The host's result before the upload: true when both card classes balanced. */
  balanced: boolean;
  terminalTotals: BatchTotals;
  /** The host's totals from the 0510, when it answered them. */
  hostTotals?: BatchTotals;
  /** 0320 details sent (0 when balanced). */
  uploaded: number;
  stan: string;
  /** The sign-in the host asked for (header processing requirement 3). */
  signIn?: { approved: boolean; responseCode?: string; error?: string };
}

export interface TerminalDeps {
  pinPad: PinPad;
  /** The batch's approved transactions, for settlement; default in memory. */
  batch?: BatchStore;
  /** Default: in memory. */
  reversals?: ReversalStore;
  /** STAN and batch; default in memory. */
  state?: TerminalStateStore;
  /** Saves the PIN pad after a sign-in changed its keys (a sealed store in the data directory). */
  pinPadStore?: { save(pad: PinPad): Promise<void> };
  /** Every frame sent and received (for --trace). */
  onFrame?: (event: FrameEvent) => void;
}

const ZERO_MAC = '0000000000000000';
/** 0410 codes that close a reversal: done, or the host never saw the original. */
const REVERSAL_DONE = new Set(['00', RC.ORIGINAL_NOT_FOUND]);

export class Terminal {
  readonly config: ResolvedTerminalConfig;
  readonly pinPad: PinPad;
  readonly #dialect: Dialect;
  readonly #reversals: ReversalStore;
  /** The last approved purchase, which `reverseLast` can still undo. */
  #lastPurchase: IsoMessage | undefined;
  readonly #batchStore: BatchStore;
  readonly #state: TerminalStateStore;
  readonly #padStore: TerminalDeps['pinPadStore'];
  readonly #onFrame: TerminalDeps['onFrame'];
  #stan = 0;
  #batch = '000001';
  #loaded: Promise<void> | undefined;
  #connection: TerminalConnection | undefined;
  #signingIn: Promise<SignInResult> | undefined;
  #flushing: Promise<ReversalOutcome[]> | undefined;
  #forceSignIn = false;
  #closed = false;

  constructor(config: TerminalConfig, deps: TerminalDeps) {
    this.config = resolveTerminalConfig(config);
    this.#dialect = posDialectFor(this.config.algorithm);
    if (deps?.pinPad === undefined) {
      throw new TerminalError(E.CONFIG, 'a terminal needs a PIN pad', { field: 'pinPad' });
    }
    this.pinPad = deps.pinPad;
    this.#reversals = deps.reversals ?? new MemoryReversalStore();
    this.#batchStore = deps.batch ?? new MemoryBatchStore();
    this.#state = deps.state ?? new MemoryStateStore();
    this.#padStore = deps.pinPadStore;
    this.#onFrame = deps.onFrame;
  }

  /** Last STAN used (6 digits). */
  get stan(): string {
    return String(this.#stan).padStart(6, '0');
  }

  get batch(): string {
    return this.#batch;
  }

  /** True when the PIN pad holds working keys that are recent enough to transact with. */
  get signedIn(): boolean {
    return !this.#needsSignIn();
  }

  /** Reversals waiting to be delivered. */
  pendingReversals(): Promise<PendingReversal[]> {
    return this.#reversals.list();
  }

  /** The approved transactions of the batch in force (what `settle()` totals and uploads). */
  async batchRecords(): Promise<BatchRecord[]> {
    await this.#load();
    return this.#batchStore.list(this.#batch);
  }

  // --- sign-in / sign-off ----------------------------------------------------------------------

  /**
   * 0800 → 0810. On 00, loads the working keys from field 62 through the PIN pad (each check value
   * verified, all or nothing) and takes the batch from 60.2. A decline is returned, not thrown.
   * @throws POSKEY_ERR_PINPAD_KCV when a key's check value does not match ("working key download
   *   failed"), POSKEY_ERR_TERMINAL_SIGN_IN for an unusable key block, connection and timeout errors
   */
  signIn(): Promise<SignInResult> {
    this.#signingIn ??= this.#signIn().finally(() => {
      this.#signingIn = undefined;
    });
    return this.#signingIn;
  }

  async #signIn(): Promise<SignInResult> {
    await this.#load();
    this.#assertTmk();
    const cfg = this.config;
    const stan = await this.#nextStan();
    const request = signInRequest(cfg, stan, this.#batch);
    const ex = await this.#exchange(request, pack(this.#dialect, request));
    const res = ex.message;
    this.#checkEcho(request, res);
    const code = res[39] as string | undefined;
    const base = {
      responseCode: code,
      responseText: describeResponseCode(code),
      stan,
      latencyMs: ex.latencyMs,
    };
    if (code !== RC.APPROVED) return { ...base, approved: false, batch: this.#batch };
    const loaded = this.pinPad.loadWorkingKeySet(signInKeyPlan(res[62], cfg.signInCode, cfg.slots));
    const batch = (res[60] as Subfields | undefined)?.[2];
    if (typeof batch === 'string' && /^\d{6}$/.test(batch)) this.#batch = batch;
    const clock = hostClock(res, this.pinPad.clock());
    if (clock !== undefined) this.pinPad.setClock(clock);
    this.#forceSignIn = false;
    await this.#state.save({ stan: this.#stan, batch: this.#batch });
    await this.#padStore?.save(this.pinPad);
    const [pik, mak, tdk] = loaded;
    const keys: SignInResult['keys'] = { pik: pik!.kcv, mak: mak!.kcv };
    if (tdk !== undefined) keys.tdk = tdk.kcv;
    return { ...base, approved: true, batch: this.#batch, keys };
  }

  /** 0820 (60.3 = 002) → 0830; the working keys are erased from the PIN pad either way. */
  async signOff(): Promise<{ approved: boolean; responseCode?: string; responseText: string }> {
    await this.#load();
    const stan = await this.#nextStan();
    const request = signOffRequest(this.config, stan, this.#batch);
    try {
      const ex = await this.#exchange(request, pack(this.#dialect, request));
      const code = ex.message[39] as string | undefined;
      const out = { approved: code === RC.APPROVED, responseText: describeResponseCode(code) };
      return code === undefined ? out : { ...out, responseCode: code };
    } finally {
      const { pin, mac, data } = this.config.slots;
      for (const slot of [pin, mac, data]) this.pinPad.erase(slot);
      await this.#padStore?.save(this.pinPad);
    }
  }

  // --- transactions ----------------------------------------------------------------------------

  /**
   * Purchase: 0200 with processing code 000000. `amount` is in minor units (fen); `pin` is entered
   * on the PIN pad and leaves it only as a PIN block. Declines, MAC failures and timeouts are
   * results; only local errors (bad card data, a tampered pad, an unreachable host) throw.
   */
  async purchase(
    card: CardInput,
    amount: number | bigint | string,
    pin?: string,
  ): Promise<TransactionResult> {
    return this.#financial('purchase', card, formatAmount(amount), pin);
  }

  /** Balance inquiry: 0200 with processing code 310000, no amount, no reversal. */
  balance(card: CardInput, pin?: string): Promise<TransactionResult> {
    return this.#financial('balance', card, undefined, pin);
  }

  /** Void of a purchase in this batch (0200, 200000, 60.1 = 23); `amount` must be the original's. */
  void(card: CardInput, original: OriginalRef, amount: number | bigint | string, pin?: string) {
    return this.#financial('void', card, formatAmount(amount), pin, original);
  }

  /** Refund (0220, 60.1 = 25) against a sale; refunds in total cannot exceed it. */
  refund(card: CardInput, original: OriginalRef, amount: number | bigint | string, pin?: string) {
    return this.#financial('refund', card, formatAmount(amount), pin, original);
  }

  /** Pre-authorisation (0100, 030000, 25 = 06, 60.1 = 10): a hold for `amount`. */
  preauth(card: CardInput, amount: number | bigint | string, pin?: string) {
    return this.#financial('preauth', card, formatAmount(amount), pin);
  }

  /** Pre-authorisation void (0100, 200000, 60.1 = 11): releases the hold; `amount` is the pre-auth's. */
  preauthVoid(card: CardInput, original: OriginalRef, amount: number | bigint | string, pin?: string) {
    return this.#financial('preauth-void', card, formatAmount(amount), pin, original);
  }

  /** Completion online (0200, 000000, 25 = 06, 60.1 = 20) of a pre-auth, for at most its amount. */
  complete(card: CardInput, original: OriginalRef, amount: number | bigint | string, pin?: string) {
    return this.#financial('completion', card, formatAmount(amount), pin, original);
  }

  /** Completion advice (0220, 60.1 = 24): a completion the terminal made offline, told afterwards. */
  completeAdvice(card: CardInput, original: OriginalRef, amount: number | bigint | string) {
    return this.#financial('completion-advice', card, formatAmount(amount), undefined, original);
  }

  /** Completion void (0200, 200000, 25 = 06, 60.1 = 21); `amount` is the completion's. */
  completionVoid(card: CardInput, original: OriginalRef, amount: number | bigint | string, pin?: string) {
    return this.#financial('completion-void', card, formatAmount(amount), pin, original);
  }

  /**
   * Sends every pending reversal (0400) and returns what happened to each. Acknowledged ones
   * (0410 with a valid MAC and 00 or 25) are dropped; when the host answers A0/99/A7 the terminal
   * signs in and tries once more.
   */
  sendPendingReversals(): Promise<ReversalOutcome[]> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  /**
   * Reverses the last purchase after its approval (0400, reason 96 by default): what a terminal
   * does when it cannot finish the sale, e.g. the receipt did not print. The sale leaves the batch
   * and the reversal is sent at once (or stays pending, like any other). Undefined when the last
   * purchase was not approved or was already reversed.
   */
  async reverseLast(reason: ReversalReason = '96'): Promise<ReversalOutcome | undefined> {
    const last = this.#lastPurchase;
    if (last === undefined) return undefined;
    this.#lastPurchase = undefined;
    const stan = last[11] as string;
    await this.#reversals.put({
      stan,
      message: reversalOf(last, reason),
      reason,
      createdAt: new Date().toISOString(),
      attempts: 0,
    });
    await this.#batchStore.remove(((last[60] as Subfields)[2] as string | undefined) ?? this.#batch, stan);
    const outcomes = await this.sendPendingReversals();
    return outcomes.find((o) => o.stan === stan) ?? { stan, reason, sent: false, acknowledged: false };
  }

  /** Closes the connection. Stores keep their data; the terminal cannot be used afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#connection?.close();
    this.#connection = undefined;
  }

  async #financial(
    kind: FinancialKind | FollowUpKind,
    cardInput: CardInput,
    amount: string | undefined,
    pin: string | undefined,
    original?: OriginalRef,
  ): Promise<TransactionResult> {
    const card = readCard(cardInput);
    await this.#load();
    if (this.#needsSignIn()) await this.#signInOrThrow();
    const earlier = await this.#deliverReversals();
    const stan = await this.#nextStan();
    const pad = this.pinPad;
    const { slots } = this.config;
    const parts = {
      card,
      stan,
      batch: this.#batch,
      ...(amount === undefined ? {} : { amount }),
      ...(pin === undefined ? {} : { pin }),
      ops: {
        pinBlock: (p: string, pan: string) => toHex(pad.encryptPin(slots.pin, { pin: p, pan })),
        encryptTrack: (t: string) => pad.encryptTrack(slots.data, t),
      },
    };
    const request =
      kind === 'purchase' || kind === 'balance'
        ? financialRequest(this.config, kind, parts)
        : followUpRequest(this.config, kind, original === undefined ? parts : { ...parts, original });
    const body = this.#macAndPack(request);
    // Advices (0220) are not reversed: a refund or completion advice is sent again instead.
    const reversal = kind !== 'balance' && request[0] !== '0220' ? this.#newReversal(request) : undefined;
    const result: TransactionResult = {
      type: kind,
      outcome: 'timeout',
      approved: false,
      stan,
      responseText: 'no response in time',
      macVerified: null,
    };
    if (amount !== undefined) result.amount = amount;
    if (earlier.length > 0) result.earlierReversals = earlier;
    let sending = false;
    let ex: Exchange;
    try {
      ex = await this.#exchange(request, body, async () => {
        if (reversal !== undefined) await this.#reversals.put(reversal);
        sending = true;
      });
    } catch (e) {
      // Failed before sending (no link, the reversal could not be stored): nothing to reverse.
      if (!sending) throw e;
      // Sent and no answer (timeout, or the link dropped): the reversal (reason 98) stays.
      if (e instanceof TerminalError && e.code !== E.TIMEOUT) result.responseText = e.reason;
      if (reversal !== undefined) result.reversal = await this.#afterFailure(reversal);
      return result;
    }
    const accepted = await this.#accept(result, ex, reversal);
    if (accepted.approved) await this.#updateBatch(kind, request, accepted, original);
    if (kind === 'purchase') this.#lastPurchase = accepted.approved ? request : undefined;
    return accepted;
  }

  /**
   * What settlement totals: sales, completions and refunds join the batch; a void takes its
   * original out (the host excludes voided rows the same way). Pre-auths and their voids move no
   * money and stay out.
   */
  async #updateBatch(
    kind: FinancialKind | FollowUpKind,
    request: IsoMessage,
    result: TransactionResult,
    original: OriginalRef | undefined,
  ): Promise<void> {
    if (BATCH_ADDS.has(kind)) await this.#recordInBatch(request, result);
    else if (BATCH_REMOVES.has(kind) && original !== undefined) {
      await this.#batchStore.remove(original.batch ?? this.#batch, original.stan);
    }
  }

  /** Keeps an approved transaction for settlement (60.1 = 25, a refund, counts as a credit). */
  async #recordInBatch(request: IsoMessage, result: TransactionResult): Promise<void> {
    const f60 = request[60] as Subfields;
    const record: BatchRecord = {
      batch: (f60[2] as string | undefined) ?? this.#batch,
      stan: request[11] as string,
      messageType: (f60[1] as string | undefined) ?? '22',
      processingCode: request[3] as string,
      amount: request[4] as string,
      pan: request[2] as string,
      credit: f60[1] === '25',
    };
    if (result.rrn !== undefined) record.rrn = result.rrn;
    if (result.authCode !== undefined) record.authCode = result.authCode;
    await this.#batchStore.add(record);
  }

  // --- settlement ------------------------------------------------------------------------------

  /**
   * Settles the batch in force: 0500 with the totals of the terminal's own records; when the host
   * answers not balanced, uploads every record (0320) and ends the upload (0320, 60.3 = 202).
   * Then takes the new batch from the host's 60.2 and forgets the settled records. Pending
   * reversals are delivered first, since they change the host's totals.
   * @throws POSKEY_ERR_TERMINAL_RESPONSE when a response fails its MAC or refuses an upload,
   *   connection and timeout errors
   */
  async settle(): Promise<SettlementResult> {
    await this.#load();
    if (this.#needsSignIn()) await this.#signInOrThrow();
    await this.#deliverReversals();
    const batch = this.#batch;
    const records = await this.#batchStore.list(batch);
    const totals = totalsOf(records);
    const stan = await this.#nextStan();
    const first = await this.#settlementExchange(settlementRequest(this.config, stan, batch, totals));
    const result: SettlementResult = {
      approved: false,
      responseText: describeResponseCode(first.code),
      batch,
      newBatch: batch,
      balanced: false,
      terminalTotals: totals,
      uploaded: 0,
      stan,
    };
    if (first.code !== undefined) result.responseCode = first.code;
    if (first.code !== RC.APPROVED) return this.#afterSettlement(result, first.signIn);
    const host = parseTotals(first.message[48]);
    if (host === undefined) {
      throw new TerminalError(E.RESPONSE, 'the 0510 carries no readable totals', { field: '48' });
    }
    result.hostTotals = { domestic: host.domestic, foreign: host.foreign };
    result.balanced =
      host.domesticResult === SETTLEMENT_RESULT.BALANCED && host.foreignResult === SETTLEMENT_RESULT.BALANCED;
    let last = first;
    if (!result.balanced) {
      for (const r of records) await this.#settlementExchange(uploadDetail(this.config, r), true);
      result.uploaded = records.length;
      const endStan = await this.#nextStan();
      last = await this.#settlementExchange(uploadEnd(this.config, endStan, batch, records.length), true);
    }
    result.approved = true;
    await this.#advanceBatch(batch, last.message);
    result.newBatch = this.#batch;
    return this.#afterSettlement(result, first.signIn || last.signIn);
  }

  async #afterSettlement(result: SettlementResult, signIn: boolean): Promise<SettlementResult> {
    if (signIn) result.signIn = await this.#signInAgain();
    return result;
  }

  /** The batch after `settled`: the host's 60.2 when it moved on, else the next number. */
  async #advanceBatch(settled: string, reply: IsoMessage): Promise<void> {
    const given = (reply[60] as Subfields | undefined)?.[2];
    const next =
      typeof given === 'string' && /^\d{6}$/.test(given) && given !== settled
        ? given
        : String((Number(settled) % 999_999) + 1).padStart(6, '0');
    await this.#batchStore.clear(settled);
    this.#batch = next;
    await this.#state.save({ stan: this.#stan, batch: this.#batch });
  }

  /**
   * One settlement-family exchange whose answer must carry a valid MAC when approved;
   * `mustApprove` turns any other answer into an error (an upload cannot go on after a refusal).
   */
  async #settlementExchange(
    msg: IsoMessage,
    mustApprove = false,
  ): Promise<{ message: IsoMessage; code: string | undefined; signIn: boolean }> {
    const ex = await this.#exchange(msg, this.#macAndPack(msg));
    const code = typeof ex.message[39] === 'string' ? ex.message[39] : undefined;
    const verified = this.#verifyResponseMac(ex);
    if (verified === false || (verified === null && code === RC.APPROVED)) {
      throw new TerminalError(E.RESPONSE, 'response MAC failed', { field: '64' });
    }
    if (mustApprove && code !== RC.APPROVED) {
      throw new TerminalError(
        E.RESPONSE,
        `${msg[0]} STAN ${String(msg[11])} refused: ${code} ${describeResponseCode(code)}`,
        { field: '39' },
      );
    }
    const signIn = RE_SIGN_IN_CODES.has(code ?? '') || ex.envelope.header?.processingRequirement === 3;
    return { message: ex.message, code, signIn };
  }

  async #accept(
    result: TransactionResult,
    ex: Exchange,
    reversal: PendingReversal | undefined,
  ): Promise<TransactionResult> {
    const res = ex.message;
    result.latencyMs = ex.latencyMs;
    const code = typeof res[39] === 'string' ? res[39] : undefined;
    const verified = this.#verifyResponseMac(ex);
    result.macVerified = verified;
    // Accept an authenticated response, or a decline that carries no MAC; never an unMACed approval.
    if (verified === false || (verified === null && (code === undefined || code === RC.APPROVED))) {
      result.outcome = 'mac-failed';
      result.responseText = 'response MAC failed';
      if (code !== undefined) result.responseCode = code;
      if (reversal !== undefined) {
        reversal.reason = 'A0';
        reversal.message[39] = 'A0';
        await this.#reversals.put(reversal);
        result.reversal = await this.#afterFailure(reversal);
      }
      return result;
    }
    if (reversal !== undefined) await this.#reversals.remove(reversal.stan);
    result.responseCode = code!;
    result.responseText = describeResponseCode(code);
    result.approved = code === RC.APPROVED;
    result.outcome = result.approved ? 'approved' : 'declined';
    if (typeof res[37] === 'string') result.rrn = res[37];
    if (typeof res[38] === 'string') result.authCode = res[38];
    if (result.type === 'balance' && res[54] !== undefined) {
      const balances = parseBalances(res[54]);
      if (balances !== undefined) result.balances = balances;
    }
    if (RE_SIGN_IN_CODES.has(code!) || ex.envelope.header?.processingRequirement === 3) {
      result.signIn = await this.#signInAgain();
    }
    return result;
  }

  // --- reversals -------------------------------------------------------------------------------

  #newReversal(request: IsoMessage): PendingReversal {
    return {
      stan: request[11] as string,
      message: reversalOf(request, '98'),
      reason: '98',
      createdAt: new Date().toISOString(),
      attempts: 0,
    };
  }

  /** After a timeout or a bad MAC: try the reversal now (when configured), report its state. */
  async #afterFailure(reversal: PendingReversal): Promise<ReversalOutcome> {
    const pending: ReversalOutcome = {
      stan: reversal.stan,
      reason: reversal.reason,
      sent: false,
      acknowledged: false,
    };
    if (!this.config.reverseImmediately || this.#closed) return pending;
    const outcomes = await this.sendPendingReversals().catch((e: unknown) => [
      { ...pending, error: errorText(e) },
    ]);
    return outcomes.find((o) => o.stan === reversal.stan) ?? pending;
  }

  /** Delivers pending reversals before a transaction; refuses the transaction while one remains. */
  async #deliverReversals(): Promise<ReversalOutcome[]> {
    if ((await this.#reversals.list()).length === 0) return [];
    const outcomes = await this.sendPendingReversals();
    const stuck = outcomes.find((o) => !o.acknowledged);
    if (stuck !== undefined) {
      throw new TerminalError(
        E.REVERSAL_PENDING,
        `reversal of STAN ${stuck.stan} not acknowledged (${stuck.error ?? describeResponseCode(stuck.responseCode)})`,
        { field: 'reversal' },
      );
    }
    return outcomes;
  }

  async #flush(): Promise<ReversalOutcome[]> {
    await this.#load();
    const outcomes: ReversalOutcome[] = [];
    for (const r of await this.#reversals.list()) {
      const outcome = await this.#sendReversal(r, true);
      outcomes.push(outcome);
      if (!outcome.acknowledged) break;
    }
    return outcomes;
  }

  async #sendReversal(r: PendingReversal, mayRetry: boolean): Promise<ReversalOutcome> {
    const outcome: ReversalOutcome = { stan: r.stan, reason: r.reason, sent: false, acknowledged: false };
    if (this.#needsSignIn()) {
      const s = await this.#signInAgain();
      if (!s.approved) return { ...outcome, error: `sign-in failed: ${s.error ?? s.responseCode}` };
    }
    r.attempts += 1;
    await this.#reversals.put(r);
    let ex: Exchange;
    try {
      const msg = { ...r.message } as IsoMessage;
      ex = await this.#exchange(msg, this.#macAndPack(msg), async () => {
        outcome.sent = true;
      });
    } catch (e) {
      return { ...outcome, error: errorText(e) };
    }
    const code = typeof ex.message[39] === 'string' ? ex.message[39] : undefined;
    if (code !== undefined) outcome.responseCode = code;
    const verified = this.#verifyResponseMac(ex);
    if (verified === true && REVERSAL_DONE.has(code ?? '')) {
      await this.#reversals.remove(r.stan);
      return { ...outcome, acknowledged: true };
    }
    if (verified !== false && RE_SIGN_IN_CODES.has(code ?? '') && mayRetry) {
      const s = await this.#signInAgain();
      if (s.approved) return this.#sendReversal(r, false);
    }
    if (verified === false) outcome.error = 'response MAC failed';
    return outcome;
  }

  // --- plumbing --------------------------------------------------------------------------------

  async #signInOrThrow(): Promise<void> {
    const s = await this.signIn();
    if (!s.approved) {
      throw new TerminalError(E.SIGN_IN, `sign-in declined: ${s.responseCode} ${s.responseText}`, {
        field: '39',
      });
    }
  }

  /** A sign-in that reports instead of throwing (after A0/99/A7, before a reversal). */
  async #signInAgain(): Promise<{ approved: boolean; responseCode?: string; error?: string }> {
    this.#forceSignIn = true;
    try {
      const s = await this.signIn();
      return s.responseCode === undefined
        ? { approved: s.approved }
        : { approved: s.approved, responseCode: s.responseCode };
    } catch (e) {
      return { approved: false, error: errorText(e) };
    }
  }

  #needsSignIn(): boolean {
    if (this.#forceSignIn) return true;
    const { tmk, pin, mac, data } = this.config.slots;
    const pad = this.pinPad;
    if (pad.state === 'tampered') return true;
    const keys = [pad.slotInfo(pin), pad.slotInfo(mac)];
    if (this.config.trackEncryption) keys.push(pad.slotInfo(data));
    const oldest = Date.now() - this.config.maxKeyAgeMs;
    return !keys.every((k) => k !== undefined && k.under === tmk && Date.parse(k.loadedAt) >= oldest);
  }

  #assertTmk(): void {
    const pad = this.pinPad;
    if (pad.state === 'tampered') {
      throw new PinPadError(PinPadErrorCode.TAMPERED, 'security attack: the PIN pad must be injected again');
    }
    const tmk = pad.slotInfo(this.config.slots.tmk);
    if (tmk === undefined || tmk.role !== 'tmk') {
      throw new TerminalError(
        E.CONFIG,
        `no TMK in PIN pad slot ${this.config.slots.tmk}: inject or provision it`,
        {
          field: 'slots.tmk',
        },
      );
    }
    if (tmk.algorithm !== this.config.algorithm) {
      throw new TerminalError(
        E.CONFIG,
        `the TMK is ${tmk.algorithm}, the terminal is configured for ${this.config.algorithm}`,
        {
          field: 'algorithm',
        },
      );
    }
  }

  /** Packs with a zero MAC, MACs everything before field 64 (the MAB) and writes the MAC in place. */
  #macAndPack(msg: IsoMessage): Buffer {
    const packed = pack(this.#dialect, { ...msg, 64: ZERO_MAC });
    const mac = this.pinPad.mac(this.config.slots.mac, this.config.macAlgorithm, packed.subarray(0, -8));
    mac.copy(packed, packed.length - 8);
    msg[64] = toHex(mac);
    return packed;
  }

  /** True/false when field 64 is present and does/does not verify over the body as received; null when absent. */
  #verifyResponseMac(ex: Exchange): boolean | null {
    const mac = ex.message[64];
    if (typeof mac !== 'string') return null;
    const body = ex.envelope.body;
    try {
      return this.pinPad.verifyMac(
        this.config.slots.mac,
        this.config.macAlgorithm,
        body.subarray(0, body.length - 8),
        body.subarray(body.length - 8),
      );
    } catch (e) {
      if (isPoskeyError(e) && e.code === PinPadErrorCode.TAMPERED) throw e;
      return false;
    }
  }

  #checkEcho(request: IsoMessage, response: IsoMessage): void {
    if (response[41] !== undefined && response[41] !== request[41]) {
      throw new TerminalError(E.RESPONSE, 'response is for another terminal', { field: '41' });
    }
  }

  /**
   * One request/response. `beforeSend` runs once the link is up and before the bytes go out: the
   * reversal is stored there, so a failure to connect leaves nothing to reverse.
   */
  async #exchange(msg: IsoMessage, body: Buffer, beforeSend?: () => Promise<void>): Promise<Exchange> {
    if (this.#closed) throw new TerminalError(E.CLOSED, 'terminal is closed');
    const perTransaction = this.config.connection === 'per-transaction';
    if (!perTransaction) this.#connection ??= this.#newConnection();
    const conn = this.#connection ?? this.#newConnection();
    try {
      await conn.connect();
      await beforeSend?.();
      return await conn.request(msg, body, this.config.timeouts.responseMs);
    } finally {
      if (perTransaction) await conn.close();
    }
  }

  #newConnection(): TerminalConnection {
    const { host, port, header, timeouts } = this.config;
    // SM4 terminals are routed to the host's SM4 dialect by their TPDU destination.
    const tpdu =
      this.config.tpdu ??
      (this.config.algorithm === 'sm4' ? { ...DEFAULT_TPDU, destination: SM4_TPDU_DESTINATION } : undefined);
    return new TerminalConnection({
      host,
      port,
      dialect: this.#dialect,
      connectTimeoutMs: timeouts.connectMs,
      ...(tpdu === undefined ? {} : { tpdu }),
      ...(header === undefined ? {} : { header }),
      ...(this.#onFrame === undefined ? {} : { onFrame: this.#onFrame }),
    });
  }

  #load(): Promise<void> {
    this.#loaded ??= this.#state.load().then((c) => {
      if (c !== undefined) {
        this.#stan = c.stan;
        this.#batch = c.batch;
      }
    });
    return this.#loaded;
  }

  async #nextStan(): Promise<string> {
    this.#stan = this.#stan >= 999999 ? 1 : this.#stan + 1;
    const stan = this.stan;
    await this.#state.save({ stan: this.#stan, batch: this.#batch });
    return stan;
  }
}

function errorText(e: unknown): string {
  if (isPoskeyError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}
