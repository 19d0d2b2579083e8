/**
 * The per-transaction context and the step contract (jPOS TransactionManager, style.md §4).
 *
 * A transaction is an ordered list of small steps sharing one `TxnContext`. Each step decides in
 * `prepare` (PREPARED or ABORTED, with `ctx.rc` set when it aborts) and acts in `commit` or
 * `abort`, which must be idempotent. After the first abort only steps marked `onAbort` are still
 * prepared (the journal and the reply), so a declined request still gets journalled and answered.
 *
 * The context is a class with every field initialised in the constructor, so all contexts share
 * one hidden class and steps read plain properties. Steps are module-level objects: nothing is
 * allocated per request besides the context itself and what the codec and HSM return.
 */
import type { Logger } from 'pino';
import type { HsmClient, LmkKeyBlock } from '../hsm/api.js';
import type { Dialect, IsoMessage, Subfields, TransactionName } from '../iso8583/index.js';
import { POS_DIALECT, type SecurityControl } from '../protocol/unionpay-pos.js';
import type { JournalRecord, JournalStatus, Repository, Terminal } from '../store/types.js';
import type { HostConfig } from './config.js';
import type { HostMetrics } from './metrics.js';
import type { NetworkTransport } from './network-link.js';
import type { SafQueue } from './saf.js';
import type { DuplicateGuard } from './steps/duplicate.js';
import type { TerminalDirectory, TerminalProfile } from './terminals.js';

export const PREPARED = 0;
export const ABORTED = 1;
export type Outcome = typeof PREPARED | typeof ABORTED;

/** Subfield `index` of composite field `field` when it is a plain string (60.2, 60.3…). */
export function subfield(msg: IsoMessage, field: number, index: number): string | undefined {
  const f = msg[field];
  if (f === undefined || typeof f !== 'object' || Array.isArray(f)) return undefined;
  const v = f[index];
  return typeof v === 'string' ? v : undefined;
}

/** True for a promise (steps return plain values when they can decide without I/O). */
export function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as Promise<T> | null)?.then === 'function';
}

/** Keys of the context a step may declare it reads (`requires`) or fills (`provides`). */
export type ContextKey = Exclude<keyof TxnContext, 'host' | 'reply'>;

/**
 * One participant of a transaction.
 * - `prepare` decides; it may do work whose result later steps need (an HSM call, forwarding),
 *   and returns a value synchronously when it can, so the pipeline awaits only real I/O.
 * - `commit` / `abort` run, in list order, for every step that was prepared, once the outcome is
 *   known; irreversible effects (journal outcome, the reply) happen there.
 * - `onAbort`: still prepared after an earlier step aborted (it then sees `ctx.aborted`).
 */
export interface Step {
  readonly name: string;
  /** Context fields this step reads; the router checks an earlier step (or the server) provides them. */
  readonly requires: readonly ContextKey[];
  /** Context fields this step fills. */
  readonly provides: readonly ContextKey[];
  readonly onAbort?: boolean;
  prepare(ctx: TxnContext): Outcome | Promise<Outcome>;
  commit?(ctx: TxnContext): void | Promise<void>;
  abort?(ctx: TxnContext): void | Promise<void>;
}

/** Fields the server fills before the first step runs. */
export const INITIAL_CONTEXT_KEYS: readonly ContextKey[] = [
  'payload',
  'headerOffset',
  'body',
  'req',
  'name',
  'receivedAt',
];

/** Zone keys as the host's HSM holds them (LMK key blocks) and the PIN block format on the link. */
export interface ZoneKeys {
  zpk: LmkKeyBlock;
  zak: LmkKeyBlock;
  /** ISO 9564 format 0 for a TDES ZPK, the SM4 block for an SM4 ZPK. */
  pinFormat: 0 | 'sm4';
  /** The pair's name from the network's key exchange ('000000': the zone file's pair). */
  keySet?: string;
}

/** Where the reply goes: the terminal connection the request came on. */
export interface ReplySink {
  /** Frames and writes `body` as the reply to `ctx` (TPDU swapped, header echoed). */
  send(ctx: TxnContext, body: Buffer): void;
}

/** Issues network STANs and RRNs. */
export interface IdSource {
  /** The next RRN: 12 digits, unique per process and day (see ids.ts). */
  rrn(now: number): string;
}

/** What every step can reach: the host's services, shared by all transactions. */
export interface HostRuntime {
  readonly config: HostConfig;
  readonly hsm: HsmClient;
  readonly store: Repository;
  readonly terminals: TerminalDirectory;
  /** Undefined when the host runs without a network: forwarded transactions then get 96. */
  readonly link: NetworkTransport | undefined;
  /** The zone keys in force; a key exchange replaces them (src/host/zone-keys.ts). */
  zone: ZoneKeys | undefined;
  /** Milliseconds since the epoch (injectable for TAK-age tests). */
  readonly clock: () => number;
  readonly log: Logger;
  readonly metrics: HostMetrics;
  /** TID|batch|STAN of financial requests in flight or recently done here (first line of duplicate defence). */
  readonly guard: DuplicateGuard;
  readonly ids: IdSource;
  /** Store-and-forward towards the network (src/host/saf.ts). */
  readonly saf: SafQueue;
}

const NO_MESSAGE: IsoMessage = Object.freeze({ 0: '' }) as IsoMessage;

export class TxnContext {
  // --- from the server -----------------------------------------------------------------------
  readonly host: HostRuntime;
  readonly reply: ReplySink;
  /** The frame payload after the length prefix: TPDU, optional LRI, header, body. */
  readonly payload: Buffer;
  /** Offset of the 6-byte terminal header in `payload`. */
  readonly headerOffset: number;
  /** The ISO message bytes (MTI onward); the MAC block is all of it but the last 8 bytes. */
  readonly body: Buffer;
  /** performance.now() when the frame arrived. */
  readonly receivedAt: number;
  /** The terminal dialect of this frame, chosen by its TPDU destination (SM4 terminals: 16-byte field 52). */
  dialect: Dialect = POS_DIALECT;
  req: IsoMessage = NO_MESSAGE;
  name: TransactionName | 'unparsable' = 'unknown';

  // --- terminal --------------------------------------------------------------------------------
  terminal: Terminal | undefined = undefined;
  profile: TerminalProfile | undefined = undefined;
  /** The TAK verified (or, for management messages, is current): the reply carries a MAC. */
  keysValid = false;

  // --- card and PIN ----------------------------------------------------------------------------
  /** Field 53 as read (undefined when absent). */
  security: SecurityControl | undefined = undefined;
  /** Clear PAN (from field 2 or the track); never logged unmasked. */
  pan: string | undefined = undefined;
  /** Clear track 2 (decrypted when 53.3 = 1). */
  track2: string | undefined = undefined;
  /** PIN block under the ZPK, hex. */
  pinBlock: string | undefined = undefined;
  /** The zone keys this transaction uses, taken once: its PIN block and MAC are under one pair. */
  zoneKeys: ZoneKeys | undefined = undefined;

  // --- duplicates and journal ------------------------------------------------------------------
  /** The in-flight key this transaction holds ('' when none). */
  dupKey = '';
  journalId: string | undefined = undefined;
  /** The request row's append, while it is in flight (overlap mode). */
  journalPending: Promise<string> | undefined = undefined;
  /** The original of a reversal, when found. */
  original: JournalRecord | undefined = undefined;
  /** Status for the outcome row; derived from rc when left undefined. */
  status: JournalStatus | undefined = undefined;
  /** What the network said or did: 'approved', 'declined', 'timeout', 'not_sent', 'bad_mac'… */
  networkOutcome: string | undefined = undefined;
  /** What to queue towards the network before the outcome is journalled (src/host/saf.ts). */
  saf: 'reversal' | 'advice' | undefined = undefined;
  /** Field 39 of a queued reversal. */
  safReason = '';
  /** The id the outcome row gets when it is appended (known early so a queue entry can name it). */
  rowId: string | undefined = undefined;

  // --- network ---------------------------------------------------------------------------------
  networkStan = '';
  /** The request as sent to the network (for an advice that has to be queued). */
  networkMessage: IsoMessage | undefined = undefined;
  rrn = '';
  authCode: string | undefined = undefined;
  /** Field 54 of a balance inquiry. */
  balance: string | undefined = undefined;

  // --- sign-in ---------------------------------------------------------------------------------
  /** Field 62 of the 0810. */
  keyBlock: string | undefined = undefined;

  // --- settlement ------------------------------------------------------------------------------
  /** Field 48 of the 0510: the host's totals of the batch with the result digits. */
  settlementTotals: Subfields | undefined = undefined;

  // --- outcome ---------------------------------------------------------------------------------
  /** Response code (field 39); '' until a step decides. */
  rc = '';
  aborted = false;
  abortedBy = '';
  /** Header processing-requirement nibble for the reply (3 = sign in again). */
  processingRequirement = -1;
  /** The first unexpected error, for the log. */
  error: unknown = undefined;
  /** Steps prepared so far, in order (commit/abort go to these). */
  readonly joined: Step[] = [];
  /** True once the reply was written. */
  replied = false;

  constructor(
    host: HostRuntime,
    reply: ReplySink,
    payload: Buffer,
    headerOffset: number,
    receivedAt: number,
  ) {
    this.host = host;
    this.reply = reply;
    this.payload = payload;
    this.headerOffset = headerOffset;
    this.body = payload.subarray(headerOffset + 6);
    this.receivedAt = receivedAt;
  }

  /** Aborts with `rc` (keeps an earlier decision) and returns ABORTED, for `return ctx.fail('A0')`. */
  fail(rc: string): Outcome {
    if (this.rc === '' || this.rc === '00') this.rc = rc;
    return ABORTED;
  }

  /** The request's TID (field 41) or ''. */
  get tid(): string {
    const v = this.req[41];
    return typeof v === 'string' ? v : '';
  }

  /** The request's STAN (field 11) or ''. */
  get stan(): string {
    const v = this.req[11];
    return typeof v === 'string' ? v : '';
  }

  /** The batch number of 60.2, or -1 when absent. */
  get batch(): number {
    const v = subfield(this.req, 60, 2);
    return v === undefined || !/^\d{1,6}$/.test(v) ? -1 : Number(v);
  }
}
