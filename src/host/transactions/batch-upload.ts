/**
 * Batch upload (0320 → 0330) after a settlement the host found not balanced.
 *
 * - Detail (60.3 = 201, also 203/205/206): one transaction of the batch in its own fields (2, 3,
 *   4, 11 its STAN, 37 its RRN, 60.1 its message type code); the host records it, linked to its
 *   journal row for the same TID, batch and STAN when it has one. A repeat is recorded once.
 * - End (60.3 = 202 or 207): field 48 = the number of details sent (n4). When it matches what the
 *   host recorded, the batch is closed (journal rows settled, the terminal's batch advanced) and
 *   the 0330's 60.2 is the new batch.
 *
 * Refusals: 30 for an unreadable 60.2 or end count, 12 when no unbalanced settlement of the batch
 * is open (upload without 0500, or the count differs: the terminal uploads again). An end repeated
 * after the batch closed is answered 00 again. MACed both ways.
 */
import type { IsoMessage } from '../../iso8583/index.js';
import { parseUploadCount } from '../../protocol/settlement.js';
import { RC } from '../../protocol/unionpay-pos.js';
import { getSettlement, recordUpload, settleBatch, uploadCount } from '../../store/settlement.js';
import { type Outcome, PREPARED, type Step, subfield, type TxnContext } from '../context.js';
import { checkKeys } from '../steps/check-keys.js';
import { journalStep } from '../steps/journal.js';
import { loadTerminal } from '../steps/load-terminal.js';
import { baseReply, respondStep } from '../steps/respond.js';
import { verifyMac } from '../steps/verify-mac.js';
import { adoptTerminal } from './settlement.js';
import { managementField60 } from './sign-in.js';

/** 60.3 of the upload's end message (202 magstripe path, 207 EMV path: vendors differ, §2.8). */
const END_CODES = new Set(['202', '207']);

const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

async function detail(ctx: TxnContext, batch: number): Promise<Outcome> {
  const stan = Number(ctx.stan);
  const amount = text(ctx.req[4]);
  const pan = text(ctx.req[2]);
  if (pan !== null) ctx.pan = pan;
  await recordUpload(ctx.host.store, {
    tid: ctx.tid,
    batch,
    stan,
    messageType: subfield(ctx.req, 60, 1) ?? '',
    processingCode: text(ctx.req[3]),
    amount: amount === null ? null : Number(amount),
    pan,
    rrn: text(ctx.req[37]),
    at: ctx.host.clock(),
  });
  ctx.rc = RC.APPROVED;
  return PREPARED;
}

async function end(ctx: TxnContext, batch: number): Promise<Outcome> {
  const count = parseUploadCount(ctx.req[48]);
  if (count === undefined) return ctx.fail(RC.FORMAT_ERROR);
  const store = ctx.host.store;
  const open = await getSettlement(store, ctx.tid, batch);
  if (open === undefined) return ctx.fail(RC.INVALID_TRANSACTION);
  if (open.state === 'unbalanced') {
    if ((await uploadCount(store, ctx.tid, batch)) !== count) return ctx.fail(RC.INVALID_TRANSACTION);
    const input = { ...open, uploaded: count, at: ctx.host.clock() };
    adoptTerminal(ctx, await settleBatch(store, input));
  }
  ctx.rc = RC.APPROVED;
  return PREPARED;
}

async function upload(ctx: TxnContext): Promise<Outcome> {
  const batch = ctx.batch;
  if (batch < 0 || !/^\d{6}$/.test(ctx.stan)) return ctx.fail(RC.FORMAT_ERROR);
  if (END_CODES.has(subfield(ctx.req, 60, 3) ?? '')) return end(ctx, batch);
  const open = await getSettlement(ctx.host.store, ctx.tid, batch);
  if (open?.state !== 'unbalanced') return ctx.fail(RC.INVALID_TRANSACTION);
  return detail(ctx, batch);
}

const recordItem: Step = {
  name: 'batch-upload',
  requires: ['terminal', 'keysValid'],
  provides: ['terminal', 'pan'],
  prepare: upload,
};

function uploadReply(ctx: TxnContext): IsoMessage {
  const msg = baseReply(ctx);
  if (ctx.req[4] !== undefined) msg[4] = ctx.req[4];
  msg[60] = managementField60(ctx);
  return msg;
}

export const batchUploadSteps: readonly Step[] = Object.freeze([
  loadTerminal,
  checkKeys,
  verifyMac,
  recordItem,
  journalStep({ txnType: 'batch_upload', write: 'outcome', duplicates: 'accept' }),
  respondStep(uploadReply),
]);
