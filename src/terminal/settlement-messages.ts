/**
 * The terminal's settlement messages (research iso8583.md §2.8, layout in src/protocol/settlement.ts):
 * 0500 with its totals, the 0320 details of an unbalanced batch and the 0320 end. Without field 64.
 */
import type { IsoMessage } from '../iso8583/index.js';
import {
  addToTotals,
  type BatchTotals,
  emptyTotals,
  SETTLEMENT_CODES,
  totalsField,
  uploadCountField,
} from '../protocol/settlement.js';
import type { BatchRecord } from './batch-store.js';
import type { ResolvedTerminalConfig } from './config.js';

/** The terminal's totals of its batch records. */
export function totalsOf(records: readonly BatchRecord[]): BatchTotals {
  const totals = emptyTotals();
  for (const r of records) addToTotals(totals, r.pan, Number(r.amount), r.credit);
  return totals;
}

export function settlementRequest(
  cfg: ResolvedTerminalConfig,
  stan: string,
  batch: string,
  totals: BatchTotals,
): IsoMessage {
  return {
    0: '0500',
    11: stan,
    41: cfg.tid,
    42: cfg.mid,
    48: totalsField(totals),
    49: cfg.currency,
    60: { 1: '00', 2: batch, 3: SETTLEMENT_CODES.SETTLE },
    63: { 1: cfg.operator },
  } as IsoMessage;
}

/** A 0320 detail: one batch record in its own fields (11 its STAN). */
export function uploadDetail(cfg: ResolvedTerminalConfig, r: BatchRecord): IsoMessage {
  const msg = {
    0: '0320',
    2: r.pan,
    3: r.processingCode,
    4: r.amount,
    11: r.stan,
    41: cfg.tid,
    42: cfg.mid,
    49: cfg.currency,
    60: { 1: r.messageType, 2: r.batch, 3: SETTLEMENT_CODES.UPLOAD_DETAIL },
  } as IsoMessage;
  if (r.rrn !== undefined) msg[37] = r.rrn;
  if (r.authCode !== undefined) msg[38] = r.authCode;
  return msg;
}

/** The 0320 that ends an upload: 48 = the number of details sent. */
export function uploadEnd(
  cfg: ResolvedTerminalConfig,
  stan: string,
  batch: string,
  count: number,
): IsoMessage {
  return {
    0: '0320',
    11: stan,
    41: cfg.tid,
    42: cfg.mid,
    48: uploadCountField(count),
    60: { 1: '00', 2: batch, 3: SETTLEMENT_CODES.UPLOAD_END },
  } as IsoMessage;
}
