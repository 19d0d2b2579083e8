/**
 * duplicate: a repeated TID + batch + STAN gets 94 and is not forwarded twice.
 *
 * Two lines of defence:
 * 1. In memory (`DuplicateGuard`): keys of requests in flight in this process, and of the last
 *    `recent` ones it finished. A repeat that arrives while the original is still being processed,
 *    or soon after, is answered 94 without touching the database.
 * 2. The journal's unique key (tid, batch, stan, mti): the journal step appends the request row
 *    and a repeat of an older request, or of one another host process handled, fails there (94).
 *
 * The router releases the key when the whole transaction is done (after the reply), so a repeat
 * never slips in between "released" and "journalled".
 */
import { RC } from '../../protocol/unionpay-pos.js';
import { PREPARED, type Step } from '../context.js';

/** Keys of requests in flight, plus a ring of recently finished ones. */
export class DuplicateGuard {
  readonly #inFlight = new Set<string>();
  readonly #recent = new Set<string>();
  readonly #ring: string[];
  #next = 0;

  constructor(recent = 65_536) {
    this.#ring = new Array<string>(Math.max(1, recent)).fill('');
  }

  /** Takes the key; false when it is in flight or was seen recently. */
  claim(key: string): boolean {
    if (this.#inFlight.has(key) || this.#recent.has(key)) return false;
    this.#inFlight.add(key);
    return true;
  }

  /** Releases an in-flight key and remembers it as recently finished. */
  release(key: string): void {
    if (!this.#inFlight.delete(key)) return;
    const old = this.#ring[this.#next]!;
    if (old !== '') this.#recent.delete(old);
    this.#ring[this.#next] = key;
    this.#recent.add(key);
    this.#next = (this.#next + 1) % this.#ring.length;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }
}

export const duplicate: Step = {
  name: 'duplicate',
  requires: ['req'],
  provides: ['dupKey'],
  prepare(ctx) {
    const key = `${ctx.tid}|${ctx.batch}|${ctx.stan}|${ctx.req[0]}`;
    if (!ctx.host.guard.claim(key)) {
      ctx.host.metrics.count('duplicates');
      return ctx.fail(RC.DUPLICATE);
    }
    ctx.dupKey = key;
    return PREPARED;
  },
};
