/**
 * The router: the message-type catalogue (`classify`) names the transaction, and a table maps the
 * name to its step list. One file per transaction under transactions/; the next issue adds void,
 * refund, pre-auth, settlement… as new entries without touching the existing lists. Anything not
 * in the table gets the `unsupported` list (40).
 *
 * The table is checked when the router is built: every step's `requires` must be provided by the
 * server or by an earlier step of the same list (jPOS declared data flow, checked once instead of
 * per request).
 */
import { classify, type TransactionName } from '../iso8583/index.js';
import { type ContextKey, INITIAL_CONTEXT_KEYS, type Step, type TxnContext } from './context.js';
import { hostError } from './errors.js';
import { runPipeline } from './pipeline.js';
import { balanceSteps } from './transactions/balance.js';
import { purchaseSteps } from './transactions/purchase.js';
import { reversalSteps } from './transactions/reversal.js';
import { signInSteps } from './transactions/sign-in.js';
import { signOffSteps } from './transactions/sign-off.js';
import { unsupportedSteps } from './transactions/unsupported.js';

export type RouteTable = Readonly<Partial<Record<TransactionName, readonly Step[]>>>;

/** The transactions this host handles. */
export const DEFAULT_ROUTES: RouteTable = Object.freeze({
  'sign-in': signInSteps,
  'sign-off': signOffSteps,
  purchase: purchaseSteps,
  balance: balanceSteps,
  reversal: reversalSteps,
});

/**
 * Checks that each step's inputs come from the server or an earlier step.
 * @throws POSKEY_ERR_HOST_ROUTE naming the route and step
 */
export function checkSteps(name: string, steps: readonly Step[]): void {
  const provided = new Set<ContextKey>(INITIAL_CONTEXT_KEYS);
  for (const step of steps) {
    for (const key of step.requires) {
      if (!provided.has(key)) {
        throw hostError(
          'POSKEY_ERR_HOST_ROUTE',
          `step ${step.name} requires ${key}, which no earlier step provides`,
          name,
        );
      }
    }
    for (const key of step.provides) provided.add(key);
  }
  if (!steps.some((s) => s.onAbort === true && s.name === 'respond')) {
    throw hostError('POSKEY_ERR_HOST_ROUTE', 'a route must end with a respond step', name);
  }
}

export class Router {
  readonly #routes: RouteTable;
  readonly #fallback: readonly Step[];

  constructor(routes: RouteTable = DEFAULT_ROUTES, fallback: readonly Step[] = unsupportedSteps) {
    for (const [name, steps] of Object.entries(routes)) checkSteps(name, steps as readonly Step[]);
    checkSteps('unsupported', fallback);
    this.#routes = routes;
    this.#fallback = fallback;
  }

  /** The steps for a transaction name. */
  stepsFor(name: TransactionName): readonly Step[] {
    return this.#routes[name] ?? this.#fallback;
  }

  /**
   * Classifies `ctx.req` and runs its steps. Terminal-originated responses (odd third MTI digit)
   * are not requests: false, and nothing runs.
   */
  async dispatch(ctx: TxnContext): Promise<boolean> {
    const c = classify(ctx.dialect, ctx.req);
    if (c.direction !== 'request') return false;
    ctx.name = c.name;
    ctx.host.metrics.transaction(c.name);
    try {
      await runPipeline(this.stepsFor(c.name), ctx);
    } finally {
      if (ctx.dupKey !== '') ctx.host.guard.release(ctx.dupKey);
    }
    return true;
  }
}
