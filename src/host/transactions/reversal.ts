/**
 * Reversal (0400 → 0410): the terminal reverses a financial request it got no (trusted) answer
 * for; 39 carries the reason (98, A0, 96, 06), 11 the original's STAN.
 *
 * The MAC is verified like any financial request, the original is looked up (same TID, batch and
 * STAN, MTI 0200), and a row is written with status `received`, the reason as network outcome
 * (`reversal_98`, `reversal_a0`…) and a link to the original. When the network approved the
 * original or may have (approved, in doubt, still in flight…), a network reversal (0420, same
 * reason) is queued durably first (src/host/saf.ts) and the original becomes `reversed` in the
 * journal (a void's sale `approved` again); an original still in flight becomes `reversed` when
 * the network acknowledges. Then 0410 with 39 = 00, MACed; 96 when the queue cannot be written
 * (the terminal keeps its reversal and sends it again).
 *
 * Idempotent: a repeated reversal meets its own row's unique key and is acknowledged again
 * without a second row. A reversal whose original is unknown is acknowledged too, so the terminal
 * can clear it.
 */
import type { IsoMessage } from '../../iso8583/index.js';
import { RC } from '../../protocol/unionpay-pos.js';
import type { JournalStatus } from '../../store/types.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';
import { checkKeys } from '../steps/check-keys.js';
import { journalStep } from '../steps/journal.js';
import { loadTerminal } from '../steps/load-terminal.js';
import { baseReply, respondStep } from '../steps/respond.js';
import { verifyMac } from '../steps/verify-mac.js';

/** The MTI of the requests a terminal reverses. */
const ORIGINAL_MTI = '0200';

async function findOriginal(ctx: TxnContext): Promise<Outcome> {
  const stan = Number(ctx.stan);
  const batch = ctx.batch;
  if (Number.isInteger(stan) && batch >= 0) {
    ctx.original = await ctx.host.store.journal.get(ctx.tid, batch, stan, ORIGINAL_MTI);
  }
  if (ctx.original?.rrn) ctx.rrn = ctx.original.rrn;
  const pan = ctx.req[2];
  if (typeof pan === 'string') ctx.pan = pan;
  const reason = ctx.req[39];
  ctx.networkOutcome =
    typeof reason === 'string' && /^[0-9A-Za-z]{2}$/.test(reason)
      ? `reversal_${reason.toLowerCase()}`
      : 'reversal';
  ctx.rc = RC.APPROVED;
  return PREPARED;
}

const original: Step = {
  name: 'find-original',
  requires: ['terminal', 'keysValid'],
  provides: ['original', 'rrn', 'pan'],
  prepare: findOriginal,
};

/** Original statuses whose network effect may stand: they are reversed towards the network. */
const NETWORK_MAY_HAVE_APPLIED: ReadonlySet<JournalStatus> = new Set([
  'received',
  'forwarded',
  'approved',
  'in_doubt',
  'voided',
  'completed',
]);

async function reverseAtNetwork(ctx: TxnContext): Promise<void> {
  const o = ctx.original;
  if (ctx.rc !== RC.APPROVED || o === undefined || !NETWORK_MAY_HAVE_APPLIED.has(o.status)) return;
  const reason = ctx.req[39];
  const journal = ctx.host.store.journal;
  try {
    await ctx.host.saf.queueReversal(o, typeof reason === 'string' && reason.length === 2 ? reason : '06');
    // In flight: its outcome is still to be written; the network's acknowledgement marks it.
    if (o.status === 'received' || o.status === 'forwarded') return;
    await journal.updateOutcome(o.id, { status: 'reversed', at: ctx.host.clock() });
    if (o.txnType === 'void' && o.originalId !== null) {
      await journal.updateOutcome(o.originalId, { status: 'approved', at: ctx.host.clock() });
    }
  } catch (e) {
    ctx.host.metrics.count('saf.failures');
    ctx.host.log.error({ err: e, tid: ctx.tid, stan: ctx.stan }, 'network reversal not queued');
    ctx.rc = RC.SYSTEM_MALFUNCTION;
  }
}

const towardsNetwork: Step = {
  name: 'reverse-at-network',
  requires: ['original'],
  provides: [],
  prepare: () => PREPARED,
  commit: reverseAtNetwork,
};

/** Request fields a 0410 echoes. */
const ECHOED = [2, 3, 4, 25, 49, 60] as const;

function reversalReply(ctx: TxnContext): IsoMessage {
  const msg = baseReply(ctx);
  for (const f of ECHOED) if (ctx.req[f] !== undefined) msg[f] = ctx.req[f];
  return msg;
}

export const reversalSteps: readonly Step[] = Object.freeze([
  loadTerminal,
  checkKeys,
  verifyMac,
  original,
  towardsNetwork,
  journalStep({ txnType: 'reversal', write: 'outcome', duplicates: 'accept', okStatus: 'received' }),
  respondStep(reversalReply),
]);
