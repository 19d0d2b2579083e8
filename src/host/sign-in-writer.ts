/**
 * Group commit for sign-ins' registry writes. Each sign-in stores its new working keys, its
 * sign-in time and (first time) the state `active` in one registry transaction; on SQLite that
 * transaction runs on the event loop and ends in an fsync (and waits for the journal writer's
 * lock), so one transaction per sign-in caps a sign-in storm at the fsync rate and stalls every
 * other request meanwhile.
 *
 * Instead, the sign-ins that reach this point during one event-loop turn are written together in
 * one transaction (one fsync); at most one batch is in flight and what arrives meanwhile forms the
 * next. Each caller's promise settles only after the transaction holding its write committed, so
 * the 0810 still leaves only once its keys are durable. When a batch fails as a whole (one of its
 * terminals was deleted, say), each of its writes is retried in a transaction of its own, so a
 * failure is reported to its own sign-in only.
 */
import type { RegistryTx, Repository, Terminal, WorkingKeysInput } from '../store/types.js';

/** Largest batch one transaction takes. */
const MAX_BATCH = 256;

interface Pending {
  readonly tid: string;
  readonly keys: WorkingKeysInput;
  readonly at: number;
  readonly resolve: (t: Terminal) => void;
  readonly reject: (e: unknown) => void;
}

/** The registry writes of one sign-in: keys, sign-in time, `new` → `active`. */
async function apply(tx: RegistryTx, p: Pending): Promise<Terminal> {
  await tx.terminals.setWorkingKeys(p.tid, p.keys);
  const after = await tx.terminals.recordSignIn(p.tid, p.at);
  return after.state === 'new' ? tx.terminals.setState(p.tid, 'active') : after;
}

export class SignInWriter {
  readonly #store: Repository;
  #queue: Pending[] = [];
  #scheduled = false;
  #inFlight = false;

  constructor(store: Repository) {
    this.#store = store;
  }

  /** Stores a sign-in's keys; resolves with the updated record once its transaction committed. */
  write(tid: string, keys: WorkingKeysInput, at: number): Promise<Terminal> {
    return new Promise<Terminal>((resolve, reject) => {
      this.#queue.push({ tid, keys, at, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight) return;
    this.#scheduled = true;
    // After this turn's I/O callbacks: every sign-in they started joins the batch.
    setImmediate(() => {
      this.#scheduled = false;
      void this.#commitNext();
    });
  }

  async #commitNext(): Promise<void> {
    if (this.#inFlight || this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, MAX_BATCH);
    this.#inFlight = true;
    try {
      await this.#commit(batch);
    } finally {
      this.#inFlight = false;
      if (this.#queue.length > 0) this.#schedule();
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    let results: Terminal[] | undefined;
    if (batch.length > 1) {
      try {
        results = await this.#store.transaction(async (tx) => {
          const out: Terminal[] = [];
          for (const p of batch) out.push(await apply(tx, p));
          return out;
        });
      } catch {
        results = undefined; // retried one by one below, so each error reaches its own sign-in
      }
    }
    if (results !== undefined) {
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!);
      return;
    }
    for (const p of batch) {
      try {
        p.resolve(await this.#store.transaction((tx) => apply(tx, p)));
      } catch (e) {
        p.reject(e);
      }
    }
  }
}

const writers = new WeakMap<Repository, SignInWriter>();

/** The sign-in writer of `store` (one per repository, made on first use). */
export function signInWriterFor(store: Repository): SignInWriter {
  let w = writers.get(store);
  if (w === undefined) {
    w = new SignInWriter(store);
    writers.set(store, w);
  }
  return w;
}
