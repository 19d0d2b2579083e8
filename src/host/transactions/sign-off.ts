/**
 * Sign-off (0820, 60.3 = 002 → 0830, 39 = 00): the host forgets the terminal's working keys, so
 * its next financial request gets A7 until it signs in again. No MAC either way.
 */
import type { IsoMessage } from '../../iso8583/index.js';
import { RC } from '../../protocol/unionpay-pos.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';
import { journalStep } from '../steps/journal.js';
import { loadTerminal } from '../steps/load-terminal.js';
import { baseReply, respondStep } from '../steps/respond.js';
import { managementField60 } from './sign-in.js';

async function signOff(ctx: TxnContext): Promise<Outcome> {
  const tid = ctx.terminal!.tid;
  const updated = await ctx.host.store.terminals.setWorkingKeys(tid, {
    tpk: null,
    tak: null,
    tdk: null,
    createdAt: ctx.host.clock(),
  });
  const entry = ctx.host.terminals.remember(updated);
  ctx.terminal = entry.terminal;
  ctx.rc = RC.APPROVED;
  return PREPARED;
}

const forgetKeys: Step = {
  name: 'sign-off',
  requires: ['terminal'],
  provides: ['terminal'],
  prepare: signOff,
};

function signOffReply(ctx: TxnContext): IsoMessage {
  const msg = baseReply(ctx);
  msg[60] = managementField60(ctx);
  return msg;
}

export const signOffSteps: readonly Step[] = Object.freeze([
  loadTerminal,
  forgetKeys,
  journalStep({ txnType: 'sign_off', write: 'outcome', duplicates: 'accept' }),
  respondStep(signOffReply, false),
]);
