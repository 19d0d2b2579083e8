/**
 * Anything the router has no transaction for (void, refund, settlement… until the next issue, and
 * unknown codes): 40, function not supported, journalled, no MAC.
 */
import type { IsoMessage } from '../../iso8583/index.js';
import type { Step, TxnContext } from '../context.js';
import { journalStep } from '../steps/journal.js';
import { baseReply, respondStep } from '../steps/respond.js';
import { RC_FUNCTION_NOT_SUPPORTED } from './sign-in.js';

const refuse: Step = {
  name: 'unsupported',
  requires: ['req'],
  provides: [],
  prepare: (ctx) => ctx.fail(RC_FUNCTION_NOT_SUPPORTED),
};

const ECHOED = [2, 3, 4, 25, 49, 60] as const;

function unsupportedReply(ctx: TxnContext): IsoMessage {
  const msg = baseReply(ctx);
  for (const f of ECHOED) if (ctx.req[f] !== undefined) msg[f] = ctx.req[f];
  return msg;
}

export const unsupportedSteps: readonly Step[] = Object.freeze([
  refuse,
  journalStep({ txnType: 'unsupported', write: 'outcome', duplicates: 'accept' }),
  respondStep(unsupportedReply, false),
]);
