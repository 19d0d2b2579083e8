/**
 * match-original: the original of a follow-up (void, refund, pre-auth void, completion, completion
 * void), found in this terminal's journal by field 61 (61.1 original batch, 61.2 original POS
 * trace) and checked against the request: the RRN in 37, the card (PAN hash) and the amount.
 *
 * Refusals (all MACed, journalled, never forwarded):
 * - 61 missing or not digits, 37 or 4 missing → 30 (format error);
 * - no original of the right type at that batch and trace, one that was not approved, another RRN
 *   or another card, or (void, completion void) an original in another batch → 25;
 * - an original no longer in the state needed (already voided, completed; settled, except for
 *   refunds, pre-auth voids and completions, which may come after settlement) → 12;
 * - an amount that is not the original's (void, pre-auth void, completion void) or exceeds it
 *   (completion) → 13. Refunds' running total is check-refundable's.
 *
 * The host's check is the first line; the network checks the same against its ledger atomically,
 * so two follow-ups of one original racing through two host processes cannot both apply.
 */
import { RC } from '../../protocol/unionpay-pos.js';
import { isSettled } from '../../store/settlement.js';
import { type Outcome, PREPARED, type Step, subfield, type TxnContext } from '../context.js';

export interface OriginalRule {
  /** Journal txn types the original may have. */
  types: readonly string[];
  /** True when the original must be in the request's batch (60.2). */
  sameBatch: boolean;
  /** How the amount compares with the original's. */
  amount: 'equal' | 'at-most' | 'any';
  /** True when a settled original still qualifies (refunds and completions come after settlement). */
  afterSettlement?: boolean;
}

const DIGITS6 = /^\d{6}$/;

/** 61.1 and 61.2 as numbers, or undefined when 61 is missing or malformed. */
function originalKey(ctx: TxnContext): { batch: number; stan: number } | undefined {
  const batch = subfield(ctx.req, 61, 1);
  const stan = subfield(ctx.req, 61, 2);
  if (batch === undefined || stan === undefined || !DIGITS6.test(batch) || !DIGITS6.test(stan))
    return undefined;
  return { batch: Number(batch), stan: Number(stan) };
}

function isRequestMti(mti: string): boolean {
  return mti.length === 4 && Number(mti[2]) % 2 === 0;
}

async function find(ctx: TxnContext, rule: OriginalRule): Promise<Outcome> {
  const key = originalKey(ctx);
  const rrn = ctx.req[37];
  const amountText = ctx.req[4];
  if (key === undefined || typeof rrn !== 'string' || typeof amountText !== 'string') {
    return ctx.fail(RC.FORMAT_ERROR);
  }
  const journal = ctx.host.store.journal;
  const rows = await journal.list({ tid: ctx.tid, batch: key.batch, stan: key.stan, limit: 10 });
  const o = rows.find((r) => isRequestMti(r.mti) && rule.types.includes(r.txnType));
  if (
    o === undefined ||
    o.responseCode !== RC.APPROVED ||
    o.rrn !== rrn ||
    (rule.sameBatch && o.batch !== ctx.batch) ||
    ctx.pan === undefined ||
    o.panHash !== journal.panHash(ctx.pan)
  ) {
    return ctx.fail(RC.ORIGINAL_NOT_FOUND);
  }
  ctx.original = o;
  const open = o.status === 'approved' && (rule.afterSettlement === true || !isSettled(o));
  if (!open) return ctx.fail(RC.INVALID_TRANSACTION);
  const amount = Number(amountText);
  const fits =
    rule.amount === 'equal'
      ? amount === o.amount
      : rule.amount === 'at-most'
        ? amount <= (o.amount ?? 0)
        : true;
  if (!fits || amount <= 0) return ctx.fail(RC.INVALID_AMOUNT);
  return PREPARED;
}

/** Makes the match-original step for one kind of follow-up. */
export function matchOriginal(rule: OriginalRule): Step {
  return {
    name: 'match-original',
    requires: ['terminal', 'keysValid', 'pan'],
    provides: ['original'],
    prepare: (ctx) => find(ctx, rule),
  };
}
