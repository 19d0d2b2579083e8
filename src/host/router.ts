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
import { classify, type Dialect, type IsoMessage, type TransactionName } from '../iso8583/index.js';
import { type ContextKey, INITIAL_CONTEXT_KEYS, type Step, subfield, type TxnContext } from './context.js';
import { hostError } from './errors.js';
import { runPipeline } from './pipeline.js';
import { balanceSteps } from './transactions/balance.js';
import { batchUploadSteps } from './transactions/batch-upload.js';
import { completionAdviceSteps, completionSteps } from './transactions/completion.js';
import { completionVoidSteps } from './transactions/completion-void.js';
import { preauthSteps } from './transactions/preauth.js';
import { preauthVoidSteps } from './transactions/preauth-void.js';
import { purchaseSteps } from './transactions/purchase.js';
import { refundSteps } from './transactions/refund.js';
import { reversalSteps } from './transactions/reversal.js';
import { settlementSteps } from './transactions/settlement.js';
import { signInSteps } from './transactions/sign-in.js';
import { signOffSteps } from './transactions/sign-off.js';
import { unsupportedSteps } from './transactions/unsupported.js';
import { voidSteps } from './transactions/void.js';

export type RouteTable = Readonly<Partial<Record<TransactionName, readonly Step[]>>>;

/** The transactions this host handles. */
export const DEFAULT_ROUTES: RouteTable = Object.freeze({
  'sign-in': signInSteps,
  'sign-off': signOffSteps,
  purchase: purchaseSteps,
  balance: balanceSteps,
  reversal: reversalSteps,
  settlement: settlementSteps,
  'batch-upload': batchUploadSteps,
  void: voidSteps,
  refund: refundSteps,
  preauth: preauthSteps,
  'preauth-void': preauthVoidSteps,
  completion: completionSteps,
  'completion-advice': completionAdviceSteps,
  'completion-void': completionVoidSteps,
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

/** Most distinct classification keys remembered (terminals could send any 60.3). */
const MEMO_LIMIT = 1024;

interface Named {
  readonly request: boolean;
  readonly name: TransactionName;
}

/** Marks an absent (or non-text) field in a memo key; never part of a field's text. */
const ABSENT = '\u0000';
const part = (v: unknown): string => (typeof v === 'string' ? v : ABSENT);

/**
 * The catalogue's answer for a terminal message, remembered by what it depends on (MTI, 3.1–2,
 * 25, 60.1, 60.3 in the unionpay-pos family): classifying builds several objects and strings, and
 * a host sees a handful of distinct combinations.
 */
function memoKey(msg: IsoMessage): string {
  const f3 = msg[3];
  return `${part(msg[0])}|${typeof f3 === 'string' ? f3.slice(0, 2) : ABSENT}|${part(msg[25])}|${part(subfield(msg, 60, 1))}|${part(subfield(msg, 60, 3))}`;
}

export class Router {
  readonly #routes: RouteTable;
  readonly #fallback: readonly Step[];
  readonly #memo = new Map<string, Named>();

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
  #classify(dialect: Dialect, msg: IsoMessage): Named {
    if (dialect.family !== 'unionpay-pos' || Array.isArray(msg[60])) {
      const c = classify(dialect, msg);
      return { request: c.direction === 'request', name: c.name };
    }
    const key = memoKey(msg);
    let named = this.#memo.get(key);
    if (named === undefined) {
      const c = classify(dialect, msg);
      named = { request: c.direction === 'request', name: c.name };
      if (this.#memo.size < MEMO_LIMIT) this.#memo.set(key, named);
    }
    return named;
  }

  async dispatch(ctx: TxnContext): Promise<boolean> {
    const c = this.#classify(ctx.dialect, ctx.req);
    if (!c.request) return false;
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
