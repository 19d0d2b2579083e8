/**
 * check-keys: the terminal is signed in and its working keys are younger than `maxTakAge`
 * (24 h by default). Otherwise A7 with processing requirement 3 in the header: the terminal
 * signs in again. A cached record that fails the check is read again first: another host process
 * may have signed the terminal in since.
 */
import { RC } from '../../protocol/unionpay-pos.js';
import type { Terminal } from '../../store/types.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';

/** Header processing-requirement nibble: sign in again. */
export const RE_SIGN_IN = 3;

/** True when `t` holds a TPK and TAK made less than `maxAgeMs` before `now`. */
export function keysCurrent(t: Terminal, now: number, maxAgeMs: number): boolean {
  const wk = t.workingKeys;
  return wk !== null && wk.tak !== null && wk.tpk !== null && now - wk.createdAt <= maxAgeMs;
}

function signInRequired(ctx: TxnContext): Outcome {
  ctx.keysValid = false;
  ctx.processingRequirement = RE_SIGN_IN;
  return ctx.fail(RC.SIGN_IN_REQUIRED);
}

async function recheck(ctx: TxnContext): Promise<Outcome> {
  const entry = await ctx.host.terminals.reload(ctx.tid);
  if (entry === undefined) return ctx.fail(RC.TERMINAL_NOT_REGISTERED);
  ctx.terminal = entry.terminal;
  ctx.profile = entry.profile;
  const now = ctx.host.clock();
  if (!keysCurrent(entry.terminal, now, ctx.host.config.maxTakAge)) return signInRequired(ctx);
  ctx.keysValid = true;
  askRotationWhenDue(ctx, now);
  return PREPARED;
}

/** Key freshness: keys past `keyRotationAge` still work, but the reply asks for a new sign-in. */
function askRotationWhenDue(ctx: TxnContext, now: number): void {
  const wk = ctx.terminal!.workingKeys!;
  if (now - wk.createdAt > ctx.host.config.keyRotationAge) ctx.processingRequirement = RE_SIGN_IN;
}

export const checkKeys: Step = {
  name: 'check-keys',
  requires: ['terminal'],
  provides: ['keysValid'],
  prepare(ctx) {
    const now = ctx.host.clock();
    if (keysCurrent(ctx.terminal!, now, ctx.host.config.maxTakAge)) {
      ctx.keysValid = true;
      askRotationWhenDue(ctx, now);
      return PREPARED;
    }
    return recheck(ctx);
  },
};
