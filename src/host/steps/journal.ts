/**
 * journal: every request and its outcome, through the store's group commit. No reply leaves
 * before its outcome row is durable; if that write fails, an approval becomes 96.
 *
 * Two shapes, chosen per transaction:
 * - `request` (forwarded transactions): the request row is appended in prepare, before the
 *   forward step runs, and its outcome recorded in commit/abort. In `write-ahead` mode (default)
 *   prepare waits for the row to be durable: the network never sees a request the host has no
 *   record of (crash recovery can find it as in doubt), and the journal's unique key
 *   (tid, batch, stan, mti) turns a repeat into 94 before anything is forwarded, even one that
 *   reached another host process. In `overlap` mode the append runs while the request is
 *   forwarded, saving one group-commit round trip of latency; a repeat that only the database
 *   catches is then found after forwarding (counted as `duplicates.forwarded`, answered 94).
 *   In `outcome` mode there is no request row: the one row is appended with the outcome in
 *   commit/abort (one durable write per transaction); a repeat the database catches there was
 *   forwarded too (94, `duplicates.forwarded`).
 * - `outcome` (sign-in, sign-off, reversal, unsupported): one row written once, with the outcome.
 *
 * When a transaction aborts before this step was reached, the step still joins (`onAbort`) and
 * writes one row with the outcome. Requests refused before they were authenticated (97, A7, A0)
 * and duplicates (94) are journalled under the response MTI (0210 for a 0200): the request's own
 * key then stays free for the genuine request (or belongs to the original).
 */
import { PoskeyError } from '../../errors.js';
import { RC } from '../../protocol/unionpay-pos.js';
import type { JournalStatus, NewJournalRow } from '../../store/types.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';

export interface JournalStepOptions {
  /** Lower-case transaction type for the row: purchase, balance, sign_in… */
  txnType: string;
  /** `request`: request row first, outcome later; `outcome`: one row with the outcome. */
  write: 'request' | 'outcome';
  /** A key already journalled: `reject` answers 94; `accept` treats the repeat as done (idempotent). */
  duplicates: 'reject' | 'accept';
  /** Status of a '00' outcome (default 'approved'). */
  okStatus?: JournalStatus;
}

const noop = (): void => undefined;

function isDuplicate(e: unknown): boolean {
  return e instanceof PoskeyError && e.code === 'POSKEY_ERR_STORE_DUPLICATE';
}

function text(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** The response MTI of a request MTI (0200 → 0210). */
export function responseMti(mti: string): string {
  return mti.length === 4 ? `${mti.slice(0, 2)}${Number(mti[2]) + 1}${mti[3]}` : mti;
}

/** Whether the row goes under the response MTI (see the module comment). */
function underResponseMti(ctx: TxnContext): boolean {
  return ctx.aborted && (ctx.rc === RC.DUPLICATE || !ctx.keysValid) && ctx.req[0].length === 4;
}

function row(ctx: TxnContext, txnType: string, withOutcome: boolean, status: JournalStatus): NewJournalRow {
  const req = ctx.req;
  const amount = text(req[4]);
  const r: NewJournalRow = {
    tid: ctx.tid,
    mid: text(req[42]) ?? '',
    batch: Math.max(0, ctx.batch),
    stan: Number(ctx.stan),
    mti: withOutcome && underResponseMti(ctx) ? responseMti(req[0]) : req[0],
    txnType,
    processingCode: text(req[3]),
    amount: amount === null ? null : Number(amount),
    currency: text(req[49]),
    pan: ctx.pan ?? null,
    rrn: ctx.rrn === '' ? null : ctx.rrn,
    createdAt: ctx.host.clock(),
    status: withOutcome ? status : 'received',
  };
  if (ctx.rowId !== undefined) r.id = ctx.rowId;
  if (withOutcome) {
    r.responseCode = ctx.rc;
    r.authCode = ctx.authCode ?? null;
    r.networkOutcome = ctx.networkOutcome ?? null;
  }
  if (ctx.original !== undefined) {
    r.originalId = ctx.original.id;
    r.originalRrn = ctx.original.rrn;
    r.originalStan = ctx.original.stan;
  }
  if (txnType === 'reversal') r.originalStan = Number(ctx.stan);
  return r;
}

function outcomeStatus(ctx: TxnContext, okStatus: JournalStatus): JournalStatus {
  if (ctx.status !== undefined) return ctx.status;
  if (ctx.rc === RC.APPROVED) return okStatus;
  if (ctx.rc === RC.SYSTEM_MALFUNCTION || ctx.rc === '') return 'failed';
  return 'declined';
}

/** A durable-write failure: never answer '00' without the row. */
function writeFailed(ctx: TxnContext, e: unknown): void {
  ctx.host.metrics.count('journal.failures');
  ctx.host.log.error({ err: e, tid: ctx.tid, stan: ctx.stan }, 'journal write failed');
  if (ctx.rc === RC.APPROVED || ctx.rc === '') ctx.rc = RC.SYSTEM_MALFUNCTION;
}

/** A repeat the journal's unique key caught only after it was forwarded (overlap / outcome modes). */
function repeatForwarded(ctx: TxnContext): void {
  ctx.host.metrics.count('duplicates.forwarded');
  ctx.host.log.error(
    { tid: ctx.tid, stan: ctx.stan },
    'a repeated request was forwarded before the journal caught it',
  );
  ctx.rc = RC.DUPLICATE;
}

/**
 * What the forward step left for the network (a reversal of this request, or the advice itself)
 * is queued durably before the outcome row and the reply: the queue entry names the row, whose
 * id is fixed here when it is not appended yet. If the queue cannot be written, an advice becomes
 * 96 (`in_doubt`: crash recovery reverses it); a request already in doubt stays so and is
 * reversed by recovery on the next start.
 */
async function queueForNetwork(ctx: TxnContext): Promise<void> {
  const host = ctx.host;
  if (ctx.journalId === undefined) ctx.rowId ??= host.store.journal.newId();
  const id = ctx.journalId ?? (ctx.rowId as string);
  try {
    if (ctx.saf === 'advice' && ctx.networkMessage !== undefined) {
      await host.saf.queueAdvice(id, ctx.networkMessage);
      return;
    }
    const req = ctx.req;
    const amount = text(req[4]);
    await host.saf.queueReversal(
      {
        id,
        mti: req[0],
        processingCode: text(req[3]),
        amount: amount === null ? null : Number(amount),
        currency: text(req[49]),
        tid: ctx.tid,
        mid: text(req[42]) ?? '',
        rrn: ctx.rrn === '' ? null : ctx.rrn,
        createdAt: host.clock(),
      },
      ctx.safReason || '06',
    );
  } catch (e) {
    host.metrics.count('saf.failures');
    host.log.error({ err: e, tid: ctx.tid, stan: ctx.stan }, 'store-and-forward entry not written');
    if (ctx.saf === 'advice') {
      ctx.rc = RC.SYSTEM_MALFUNCTION;
      ctx.status = 'in_doubt';
      ctx.networkOutcome = 'not_queued';
    }
  }
}

/** Makes the journal step of one transaction type. */
export function journalStep(options: JournalStepOptions): Step {
  const { txnType, write, duplicates } = options;
  const okStatus = options.okStatus ?? 'approved';

  async function appendRequest(ctx: TxnContext): Promise<Outcome> {
    try {
      ctx.journalId = await ctx.host.store.journal.append(row(ctx, txnType, false, 'received'));
      return PREPARED;
    } catch (e) {
      if (!isDuplicate(e)) throw e;
      ctx.journalId = '';
      if (duplicates === 'accept') return PREPARED;
      ctx.host.metrics.count('duplicates');
      return ctx.fail(RC.DUPLICATE);
    }
  }

  /** Overlap mode: settle the request row's append, which ran while the request was forwarded. */
  async function settlePending(ctx: TxnContext, pending: Promise<string>): Promise<boolean> {
    ctx.journalPending = undefined;
    try {
      ctx.journalId = await pending;
      return true;
    } catch (e) {
      if (!isDuplicate(e)) throw e;
      ctx.journalId = '';
      repeatForwarded(ctx);
      return false;
    }
  }

  async function record(ctx: TxnContext): Promise<void> {
    try {
      if (ctx.journalPending !== undefined && !(await settlePending(ctx, ctx.journalPending))) return;
      if (ctx.journalId === '') return;
      if (ctx.saf !== undefined) await queueForNetwork(ctx);
      const status = outcomeStatus(ctx, okStatus);
      const journal = ctx.host.store.journal;
      if (ctx.journalId !== undefined) {
        await journal.updateOutcome(ctx.journalId, {
          status,
          responseCode: ctx.rc,
          authCode: ctx.authCode ?? null,
          rrn: ctx.rrn === '' ? null : ctx.rrn,
          networkOutcome: ctx.networkOutcome ?? null,
          at: ctx.host.clock(),
        });
        return;
      }
      try {
        ctx.journalId = await journal.append(row(ctx, txnType, true, status));
      } catch (e) {
        // A repeat of an already-recorded outcome (sign-in resent, reversal resent, repeated refusal).
        if (!isDuplicate(e)) throw e;
        ctx.journalId = '';
        // `outcome` mode: a forwarded request whose key another process (or an earlier run) holds.
        if (write === 'request' && !underResponseMti(ctx)) repeatForwarded(ctx);
      }
    } catch (e) {
      writeFailed(ctx, e);
    }
  }

  return {
    name: 'journal',
    requires: ['req'],
    provides: ['journalId'],
    onAbort: true,
    prepare(ctx) {
      if (ctx.aborted || write === 'outcome') return PREPARED;
      const mode = ctx.host.config.journal.mode;
      if (mode === 'write-ahead') return appendRequest(ctx);
      // `outcome` mode: the one row is appended, with the outcome, in commit/abort.
      if (mode === 'outcome') return PREPARED;
      const pending = ctx.host.store.journal.append(row(ctx, txnType, false, 'received'));
      pending.catch(noop);
      ctx.journalPending = pending;
      return PREPARED;
    },
    commit: record,
    abort: record,
  };
}
