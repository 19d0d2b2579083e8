/**
 * Store-and-forward (SAF) towards the card network: what the host owes the network is written to
 * the store's `saf_queue` (durable before the terminal is answered) and sent until the network
 * acknowledges it, across restarts.
 *
 * - Reversals (0420 → 0430): of an original the network approved or may have approved, when a
 *   terminal reverses it (0400), when the network did not answer in time, when its answer's MAC
 *   did not verify, and, on start, for every in-doubt journal row (crash recovery).
 * - Advices (0220 → 0230): a refund or completion advice that could not reach the network is
 *   accepted (00 to the terminal) and forwarded later with the same network STAN and RRN, so the
 *   network answers a repeat from its row.
 *
 * Entries carry no PAN, track or PIN block: the network knows the card from the original named in
 * field 90. Each attempt reuses the entry's STAN and RRN (one ledger key). A 0430/0230 whose MAC
 * verifies acknowledges the entry with its code, except 91/96/A0 (try again); anything else (no
 * answer, link down, a bad MAC, another MTI) is retried after a back-off doubling from
 * `saf.retryMin` to `saf.retryMax`. On acknowledgement the journal row is settled: a reversed
 * original becomes `reversed`; an advice gets the network's outcome.
 */
import { randomInt } from 'node:crypto';
import { PoskeyError } from '../errors.js';
import type { IsoMessage } from '../iso8583/index.js';
import { encodeOriginalData, transmissionTime } from '../protocol/original-data.js';
import { RC } from '../protocol/unionpay-pos.js';
import type { JournalRecord, NewSafEntry, SafEntry } from '../store/types.js';
import type { HostRuntime } from './context.js';
import { packSigned, verifySigned } from './steps/forward.js';

/** What a reversal needs of the journal row it reverses. */
export type ReversalTarget = Pick<
  JournalRecord,
  'id' | 'mti' | 'processingCode' | 'amount' | 'currency' | 'tid' | 'mid' | 'rrn' | 'createdAt'
>;

/** Reversal reasons in field 39 of a 0420 (the terminal's own reason passes through). */
export const REVERSAL_REASON = Object.freeze({
  /** No answer in time (or the connection dropped after sending). */
  timeout: '98',
  /** The host failed after sending: a bad answer MAC, a crash (recovery). */
  hostFailure: '96',
});

/** Network answers that mean "not now": the entry stays queued. */
const RETRY_CODES: ReadonlySet<string> = new Set(['91', '96', RC.MAC_FAILED]);

/** Fields an advice is stored without (they never reach the disk; see saf.ts in src/store). */
const NOT_STORED = [2, 14, 35, 36, 52, 53, 64, 128] as const;

function toStored(msg: IsoMessage): Record<string, string> {
  const out: Record<string, string> = {};
  const skip = new Set<number>(NOT_STORED);
  for (const [k, v] of Object.entries(msg)) {
    if (!skip.has(Number(k)) && typeof v === 'string') out[k] = v;
  }
  return out;
}

function fromStored(stored: Record<string, string>): IsoMessage {
  const msg: IsoMessage = { 0: stored['0'] ?? '' };
  for (const [k, v] of Object.entries(stored)) if (k !== '0') msg[Number(k)] = v;
  return msg;
}

/**
 * The 0420 naming `target` (docs/network-link.md): 3, 4, 49, 41, 42 of the original, its own
 * STAN (11) and RRN (37), the reason in 39, and the original in 90 (MTI, RRN, time, acquirer).
 */
export function reversalMessage(
  host: HostRuntime,
  target: ReversalTarget,
  reason: string,
  stan: string,
  rrn: string,
): IsoMessage {
  const acquirerId = host.config.acquirerId;
  return {
    0: '0420',
    3: target.processingCode ?? '000000',
    4: String(target.amount ?? 0).padStart(12, '0'),
    7: transmissionTime(host.clock()),
    11: stan,
    25: '00',
    32: acquirerId,
    37: rrn,
    39: reason,
    41: target.tid,
    42: target.mid,
    49: target.currency ?? '156',
    90: encodeOriginalData({
      mti: target.mti,
      rrn: target.rrn!,
      transmitted: transmissionTime(target.createdAt),
      acquirerId,
    }),
  };
}

function randomStan(): string {
  return String(randomInt(1, 1_000_000)).padStart(6, '0');
}

export interface SafQueue {
  /**
   * Queues the reversal of `target` (once per journal row: a second call is a no-op) and resolves
   * once it is durable, with true when this call queued it.
   * @throws store errors (the caller decides what the terminal gets)
   */
  queueReversal(target: ReversalTarget, reason: string): Promise<boolean>;
  /** Queues an advice as it was sent (same STAN and RRN); durable when it resolves. */
  queueAdvice(journalId: string, sent: IsoMessage): Promise<boolean>;
}

/** The queue's sender: recovery on start, then rounds of due entries until closed. */
export class StoreAndForward implements SafQueue {
  readonly #runtime: () => HostRuntime;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  #again = false;
  #started = false;
  #closed = false;

  /** `runtime` is read lazily: the host's runtime holds this queue. */
  constructor(runtime: () => HostRuntime) {
    this.#runtime = runtime;
  }

  get #host(): HostRuntime {
    return this.#runtime();
  }

  async queueReversal(target: ReversalTarget, reason: string): Promise<boolean> {
    const host = this.#host;
    if (target.rrn === null) {
      host.log.error({ journalId: target.id }, 'a row without RRN cannot be named in a reversal');
      return false;
    }
    const stan = host.link?.nextStan() ?? randomStan();
    const rrn = host.ids.rrn(host.clock());
    const queued = await this.#enqueue({
      kind: 'reversal',
      journalId: target.id,
      mti: '0420',
      networkStan: stan,
      rrn,
      message: toStored(reversalMessage(host, target, reason, stan, rrn)),
    });
    if (queued) host.log.warn({ journalId: target.id, tid: target.tid, reason }, 'network reversal queued');
    return queued;
  }

  async queueAdvice(journalId: string, sent: IsoMessage): Promise<boolean> {
    const queued = await this.#enqueue({
      kind: 'advice',
      journalId,
      mti: sent[0],
      networkStan: sent[11] as string,
      rrn: sent[37] as string,
      message: toStored(sent),
    });
    if (queued) this.#host.log.warn({ journalId }, 'advice queued for the network');
    return queued;
  }

  async #enqueue(entry: NewSafEntry): Promise<boolean> {
    const id = await this.#host.store.saf.enqueue({ ...entry, createdAt: this.#host.clock() });
    if (id === undefined) return false;
    this.#host.metrics.count('saf.queued');
    this.kick();
    return true;
  }

  /** Recovers in-doubt rows, then starts sending. Idempotent. */
  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    try {
      await this.recover();
    } catch (e) {
      this.#host.log.error({ err: e }, 'crash recovery failed; the queue runs anyway');
    }
    this.kick();
  }

  /**
   * Crash recovery: every journal row of this node that is in doubt gets a reversal queued
   * (once: the queue's key). In doubt: `in_doubt`, or `received` with no response code (the
   * request row of write-ahead mode whose outcome never came: it may have reached the network).
   * Such a `received` row becomes `in_doubt` (network outcome `crash`). Runs before any
   * transaction of this process, so nothing it finds is in flight here.
   * @returns how many reversals it queued
   */
  async recover(): Promise<number> {
    const { journal, nodeId } = this.#host.store;
    let queued = 0;
    let after: string | undefined;
    for (;;) {
      const rows = await journal.list({
        nodeId,
        status: ['received', 'in_doubt'],
        order: 'asc',
        limit: 1000,
        ...(after === undefined ? {} : { after }),
      });
      for (const row of rows) if (await this.#recoverRow(row)) queued++;
      if (rows.length < 1000) break;
      after = rows[rows.length - 1]!.id;
    }
    if (queued > 0) this.#host.log.warn({ queued }, 'crash recovery queued network reversals');
    return queued;
  }

  async #recoverRow(row: JournalRecord): Promise<boolean> {
    const unanswered = row.status === 'received' && row.responseCode === null && row.txnType !== 'reversal';
    if (!unanswered && row.status !== 'in_doubt') return false;
    if (row.rrn === null) return false;
    const queued = await this.queueReversal(row, REVERSAL_REASON.hostFailure);
    if (unanswered) {
      await this.#host.store.journal.updateOutcome(row.id, { status: 'in_doubt', networkOutcome: 'crash' });
    }
    return queued;
  }

  /** Runs a round soon (after a queueing, or to retry what is due). */
  kick(): void {
    if (!this.#started || this.#closed) return;
    if (this.#round !== undefined) {
      this.#again = true;
      return;
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#round = this.#runRound().finally(() => {
      this.#round = undefined;
      if (this.#closed) return;
      if (this.#again) {
        this.#again = false;
        this.kick();
      } else {
        this.#timer = setTimeout(() => this.kick(), this.#host.config.saf.poll);
        this.#timer.unref();
      }
    });
  }

  async #runRound(): Promise<void> {
    const host = this.#host;
    try {
      const due = await host.store.saf.due(host.clock(), host.config.saf.batch);
      await Promise.all(due.map((e) => this.#deliver(e)));
      if (due.length === host.config.saf.batch) this.#again = true;
    } catch (e) {
      if (!this.#closed) host.log.error({ err: e }, 'store-and-forward round failed');
    }
  }

  async #deliver(entry: SafEntry): Promise<void> {
    const host = this.#host;
    let code: string;
    try {
      code = await this.#send(entry);
    } catch (e) {
      const reason = e instanceof PoskeyError ? e.code : e instanceof Error ? e.message : String(e);
      const { retryMin, retryMax } = host.config.saf;
      const delay = Math.min(retryMax, retryMin * 2 ** Math.min(entry.attempts, 20));
      host.metrics.count('saf.retries');
      if (this.#closed) return;
      await host.store.saf.retryLater(entry.id, host.clock() + delay, reason);
      return;
    }
    // The journal first: should the host stop in between, the entry is sent again and replayed.
    await this.#settle(entry, code);
    await host.store.saf.acknowledge(entry.id, code);
    host.metrics.count('saf.acknowledged');
  }

  /** One attempt: resolves with the network's response code, or throws (retry). */
  async #send(entry: SafEntry): Promise<string> {
    const host = this.#host;
    const link = host.link;
    const zone = host.zone;
    if (link === undefined || zone === undefined) throw new Error('no network link');
    const msg = fromStored(entry.message);
    const body = await packSigned({ host }, zone, msg);
    host.metrics.count('saf.sent');
    const reply = await link.request(entry.networkStan, body);
    if (!(await verifySigned({ host }, zone, reply))) {
      host.metrics.count('network.badMac');
      throw new Error('answer MAC does not verify');
    }
    const expected = `${entry.mti.slice(0, 2)}${Number(entry.mti[2]) + 1}${entry.mti[3]}`;
    const rc = reply.msg[39];
    if (reply.msg[0] !== expected) throw new Error(`answer MTI ${reply.msg[0]}, expected ${expected}`);
    if (typeof rc !== 'string' || !/^[0-9A-Z]{2}$/.test(rc)) throw new Error('answer without field 39');
    if (RETRY_CODES.has(rc)) throw new Error(`network answered ${rc}`);
    if (rc !== RC.APPROVED)
      host.log.error({ journalId: entry.journalId, kind: entry.kind, rc }, 'network refused');
    return rc;
  }

  /** The journal row once the network has answered. */
  async #settle(entry: SafEntry, code: string): Promise<void> {
    const journal = this.#host.store.journal;
    try {
      if (entry.kind === 'reversal') {
        // A refused reversal (51: the credit it would take back is spent) leaves the row as it is.
        if (code === RC.APPROVED) {
          await journal.updateOutcome(entry.journalId, { status: 'reversed', networkOutcome: 'reversed' });
        }
      } else if (code === RC.APPROVED) {
        await journal.updateOutcome(entry.journalId, { status: 'approved', networkOutcome: 'approved' });
      } else {
        await journal.updateOutcome(entry.journalId, {
          status: 'declined',
          networkOutcome: `advice_declined_${code.toLowerCase()}`,
        });
      }
    } catch (e) {
      this.#host.log.error(
        { err: e, journalId: entry.journalId },
        'journal not updated after the network answered',
      );
    }
  }

  /** Resolves once nothing is pending (tests, drain), or rejects after `ms`. */
  async drained(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while ((await this.#host.store.saf.pending()) > 0) {
      if (Date.now() > until) throw new Error('store-and-forward queue not drained in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops sending (entries stay queued for the next start); waits for the round in progress. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#round;
  }
}
