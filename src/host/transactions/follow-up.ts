/**
 * What void, refund, pre-auth void, completion and completion void share: a forwarded financial
 * transaction (financial.ts) with its original matched first (match-original, from field 61 and
 * 37), refunds' running total checked, and the original's new status recorded once approved
 * (mark-original) before the follow-up's outcome and the reply.
 */
import type { IsoMessage } from '../../iso8583/index.js';
import type { JournalStatus } from '../../store/types.js';
import type { Step, TxnContext } from '../context.js';
import { checkRefundable } from '../steps/check-refundable.js';
import { forwardStep } from '../steps/forward.js';
import { journalStep } from '../steps/journal.js';
import { markOriginal } from '../steps/mark-original.js';
import { matchOriginal, type OriginalRule } from '../steps/match-original.js';
import { respondStep } from '../steps/respond.js';
import { risk } from '../steps/risk.js';
import { CARD_REQUEST_STEPS, financialReply } from './financial.js';

export interface FollowUpOptions extends OriginalRule {
  /** Journal txn type of the follow-up. */
  txnType: string;
  /** The original's status once approved; undefined leaves it (refund). */
  originalStatus?: JournalStatus;
  /** Refunds: check the running total against the original. */
  refund?: boolean;
}

/** A follow-up's reply: a financial reply echoing 61 as well. */
function followUpReply(ctx: TxnContext): IsoMessage {
  const msg = financialReply(ctx);
  if (ctx.req[61] !== undefined) msg[61] = ctx.req[61];
  return msg;
}

export function followUpSteps(options: FollowUpOptions): readonly Step[] {
  const steps: Step[] = [...CARD_REQUEST_STEPS, matchOriginal(options)];
  if (options.refund === true) steps.push(checkRefundable);
  steps.push(risk);
  if (options.originalStatus !== undefined) steps.push(markOriginal(options.originalStatus));
  steps.push(
    journalStep({ txnType: options.txnType, write: 'request', duplicates: 'reject' }),
    forwardStep,
    respondStep(followUpReply),
  );
  return Object.freeze(steps);
}
