/**
 * Runs a transaction's steps, prepare / commit / abort style (jPOS TransactionManager):
 *
 * 1. `prepare` each step in order. The first ABORTED (or a throw, which becomes rc 96) switches
 *    the run to abort mode: later steps are skipped unless marked `onAbort` (journal, respond),
 *    which are still prepared so that they join.
 * 2. Then every joined step gets `commit` (no abort) or `abort`, in list order: the journal's
 *    outcome is durable before the reply step writes the answer.
 *
 * A step's prepare is awaited only when it returns a promise, so steps that decide from memory
 * (duplicate guard, risk, key age) cost no microtask hop. Each prepare's time is recorded under
 * the step's name. An error thrown by commit/abort is logged and never stops the steps after it:
 * the reply must still go out.
 */
import { ABORTED, isPromise, type Outcome, PREPARED, type Step, type TxnContext } from './context.js';

/** Response code for a step that threw instead of deciding. */
export const RC_SYSTEM_ERROR = '96';

function prepareFailed(ctx: TxnContext, step: Step, e: unknown): Outcome {
  if (ctx.error === undefined) ctx.error = e;
  ctx.host.log.error({ err: e, step: step.name, tid: ctx.tid, stan: ctx.stan }, 'step failed');
  return ctx.fail(RC_SYSTEM_ERROR);
}

function settle(ctx: TxnContext, step: Step, outcome: Outcome): void {
  ctx.joined.push(step);
  if (outcome === ABORTED && !ctx.aborted) {
    ctx.aborted = true;
    ctx.abortedBy = step.name;
    if (ctx.rc === '' || ctx.rc === '00') ctx.rc = RC_SYSTEM_ERROR;
  }
}

/** Runs `steps` on `ctx`; resolves when every commit/abort has run (the reply is written by then). */
export async function runPipeline(steps: readonly Step[], ctx: TxnContext): Promise<void> {
  const metrics = ctx.host.metrics;
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (ctx.aborted && step.onAbort !== true) continue;
    const t0 = performance.now();
    let outcome: Outcome;
    try {
      const r = step.prepare(ctx);
      outcome = isPromise(r) ? await r : r;
    } catch (e) {
      outcome = prepareFailed(ctx, step, e);
    }
    metrics.step(step.name).record(performance.now() - t0);
    settle(ctx, step, outcome === PREPARED ? PREPARED : ABORTED);
  }
  await finish(ctx);
}

async function finish(ctx: TxnContext): Promise<void> {
  const joined = ctx.joined;
  for (let i = 0; i < joined.length; i++) {
    const step = joined[i]!;
    const fn = ctx.aborted ? step.abort : step.commit;
    if (fn === undefined) continue;
    try {
      const r = fn.call(step, ctx);
      if (isPromise(r)) await r;
    } catch (e) {
      if (ctx.error === undefined) ctx.error = e;
      ctx.host.log.error(
        { err: e, step: step.name, phase: ctx.aborted ? 'abort' : 'commit', tid: ctx.tid, stan: ctx.stan },
        'step failed after prepare',
      );
    }
  }
}
