/**
 * load-terminal: the terminal named by field 41, from the directory (memory, else the store).
 * Unknown, blocked, or not this merchant's (field 42) → 97. The reply then carries no MAC.
 */
import { RC } from '../../protocol/unionpay-pos.js';
import { isPromise, type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';
import type { TerminalEntry } from '../terminals.js';

function accept(ctx: TxnContext, entry: TerminalEntry | undefined): Outcome {
  if (entry === undefined) return ctx.fail(RC.TERMINAL_NOT_REGISTERED);
  ctx.terminal = entry.terminal;
  ctx.profile = entry.profile;
  const t = entry.terminal;
  if (t.state === 'blocked' || t.mid !== ctx.req[42]) return ctx.fail(RC.TERMINAL_NOT_REGISTERED);
  return PREPARED;
}

async function loadThenAccept(
  ctx: TxnContext,
  pending: Promise<TerminalEntry | undefined>,
): Promise<Outcome> {
  return accept(ctx, await pending);
}

export const loadTerminal: Step = {
  name: 'load-terminal',
  requires: ['req'],
  provides: ['terminal', 'profile'],
  prepare(ctx) {
    const tid = ctx.tid;
    if (tid.length !== 8) return ctx.fail(RC.TERMINAL_NOT_REGISTERED);
    const found = ctx.host.terminals.lookup(tid);
    return isPromise(found) ? loadThenAccept(ctx, found) : accept(ctx, found);
  },
};
