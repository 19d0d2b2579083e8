/**
 * mark-original: when a follow-up is approved, moves its original to the status it now has
 * (void → `voided`, completion → the pre-auth `completed`…), durably, before the follow-up's own
 * outcome is recorded and answered. It sits before the journal step in the list so its commit
 * runs first: if the write fails, the approval becomes 96 and the follow-up is journalled
 * `in_doubt` (the network applied it, the host could not record it), for recovery to settle.
 */
import { RC } from '../../protocol/unionpay-pos.js';
import type { JournalStatus } from '../../store/types.js';
import { PREPARED, type Step, type TxnContext } from '../context.js';

async function mark(ctx: TxnContext, status: JournalStatus): Promise<void> {
  if (ctx.rc !== RC.APPROVED || ctx.original === undefined) return;
  try {
    await ctx.host.store.journal.updateOutcome(ctx.original.id, { status, at: ctx.host.clock() });
  } catch (e) {
    ctx.host.metrics.count('journal.failures');
    ctx.host.log.error({ err: e, tid: ctx.tid, stan: ctx.stan }, 'original status not recorded');
    ctx.rc = RC.SYSTEM_MALFUNCTION;
    ctx.status = 'in_doubt';
  }
}

/** Makes the step that gives the original `status` once the follow-up is approved. */
export function markOriginal(status: JournalStatus): Step {
  return {
    name: 'mark-original',
    requires: ['original'],
    provides: [],
    prepare: () => PREPARED,
    commit: (ctx) => mark(ctx, status),
  };
}
