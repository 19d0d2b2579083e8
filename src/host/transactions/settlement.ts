/**
 * Settlement (0500, 60.3 = 201 → 0510): the terminal sends its totals of the batch in field 48;
 * the host computes its own from the journal (settlement.ts in the store: approved purchases and
 * completions as debits, refunds as credits, per domestic and foreign card) and answers them with
 * the result digits, 1 balanced or 2 not balanced, for each card class (39 = 00 either way).
 *
 * - Balanced: the batch is closed at once (journal rows marked settled, the terminal's batch
 *   number advanced); the 0510's 60.2 is the new batch.
 * - Not balanced: the settlement is recorded open; the terminal uploads the batch (0320,
 *   batch-upload.ts), and the batch is closed by the upload's end message.
 *
 * MACed both ways like a financial message (the research leaves 0500's MAC to the acquirer).
 * Refusals: 30 for a field 48 or 60.2 that cannot be read, 12 for a batch that is not the one in
 * force; a repeat of a settlement already closed is answered again as balanced, with the new batch.
 */
import type { IsoMessage, Subfields } from '../../iso8583/index.js';
import {
  parseTotals,
  SETTLEMENT_RESULT,
  sameCardTotals,
  splitTotalsDigits,
  totalsDigits,
  totalsField,
} from '../../protocol/settlement.js';
import { RC } from '../../protocol/unionpay-pos.js';
import {
  batchTotals,
  getSettlement,
  recordUnbalanced,
  type SettlementRecord,
  settleBatch,
} from '../../store/settlement.js';
import type { Terminal } from '../../store/types.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';
import { checkKeys } from '../steps/check-keys.js';
import { journalStep } from '../steps/journal.js';
import { loadTerminal } from '../steps/load-terminal.js';
import { baseReply, respondStep } from '../steps/respond.js';
import { verifyMac } from '../steps/verify-mac.js';
import { managementField60 } from './sign-in.js';

/** Puts a terminal record the store returned into the host's directory and the context. */
export function adoptTerminal(ctx: TxnContext, updated: Terminal | undefined): void {
  if (updated === undefined) return;
  const entry = ctx.host.terminals.remember(updated);
  ctx.terminal = entry.terminal;
  ctx.profile = entry.profile;
}

/** The 0510 field 48 of a closed settlement: the host totals it recorded, balanced. */
function closedTotals(s: SettlementRecord): Subfields | undefined {
  const parsed = parseTotals(splitTotalsDigits(s.hostTotals));
  return parsed === undefined
    ? undefined
    : totalsField(parsed, SETTLEMENT_RESULT.BALANCED, SETTLEMENT_RESULT.BALANCED);
}

/** The terminal's batch in force; a cached record that disagrees is read again (another host process may have settled). */
async function batchInForce(ctx: TxnContext): Promise<number> {
  if (ctx.batch === ctx.terminal!.batchNumber) return ctx.batch;
  adoptTerminal(ctx, (await ctx.host.terminals.reload(ctx.tid))?.terminal);
  return ctx.terminal!.batchNumber;
}

async function settle(ctx: TxnContext): Promise<Outcome> {
  const sent = parseTotals(ctx.req[48]);
  const batch = ctx.batch;
  if (sent === undefined || batch < 0) return ctx.fail(RC.FORMAT_ERROR);
  const store = ctx.host.store;
  const tid = ctx.tid;
  const previous = await getSettlement(store, tid, batch);
  if (previous?.state === 'settled') {
    ctx.settlementTotals = closedTotals(previous);
    ctx.rc = RC.APPROVED;
    return PREPARED;
  }
  if (batch !== (await batchInForce(ctx))) return ctx.fail(RC.INVALID_TRANSACTION);
  const host = await batchTotals(store, tid, batch);
  const domestic = sameCardTotals(sent.domestic, host.domestic);
  const foreign = sameCardTotals(sent.foreign, host.foreign);
  const result = (ok: boolean) => (ok ? SETTLEMENT_RESULT.BALANCED : SETTLEMENT_RESULT.UNBALANCED);
  const input = {
    tid,
    batch,
    terminalTotals: totalsDigits(sent),
    hostTotals: totalsDigits(host),
    at: ctx.host.clock(),
  };
  if (domestic && foreign) adoptTerminal(ctx, await settleBatch(store, { ...input, uploaded: 0 }));
  else await recordUnbalanced(store, input);
  ctx.settlementTotals = totalsField(host, result(domestic), result(foreign));
  ctx.rc = RC.APPROVED;
  return PREPARED;
}

const compareTotals: Step = {
  name: 'settle',
  requires: ['terminal', 'keysValid'],
  provides: ['settlementTotals', 'terminal'],
  prepare: settle,
};

function settlementReply(ctx: TxnContext): IsoMessage {
  const msg = baseReply(ctx);
  msg[60] = managementField60(ctx);
  if (ctx.settlementTotals !== undefined && ctx.rc === RC.APPROVED) msg[48] = ctx.settlementTotals;
  return msg;
}

export const settlementSteps: readonly Step[] = Object.freeze([
  loadTerminal,
  checkKeys,
  verifyMac,
  compareTotals,
  journalStep({ txnType: 'settlement', write: 'outcome', duplicates: 'accept' }),
  respondStep(settlementReply),
]);
