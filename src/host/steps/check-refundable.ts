/**
 * check-refundable: refunds against one sale cannot exceed it in total. The approved refunds
 * already journalled against the original (by `original_id`) plus this one must stay within the
 * original's amount, else 13. The network keeps the same running total in its ledger, atomically.
 */
import { RC } from '../../protocol/unionpay-pos.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';

/** Most refunds read against one original (far more than any sale sees). */
const MAX_REFUNDS = 1000;

async function check(ctx: TxnContext): Promise<Outcome> {
  const o = ctx.original!;
  const refunds = await ctx.host.store.journal.list({ originalId: o.id, limit: MAX_REFUNDS });
  let total = Number(ctx.req[4]);
  for (const r of refunds) {
    if (r.txnType === 'refund' && r.responseCode === RC.APPROVED) total += r.amount ?? 0;
  }
  return total <= (o.amount ?? 0) ? PREPARED : ctx.fail(RC.INVALID_AMOUNT);
}

export const checkRefundable: Step = {
  name: 'check-refundable',
  requires: ['original'],
  provides: [],
  prepare: check,
};
