/**
 * What purchase and balance inquiry share: the reply layout of a 0210 (e2e contract) and the step
 * list of a transaction that is forwarded to the card network.
 */
import type { IsoMessage } from '../../iso8583/index.js';
import type { Step, TxnContext } from '../context.js';
import { checkKeys } from '../steps/check-keys.js';
import { decryptTrack } from '../steps/decrypt-track.js';
import { duplicate } from '../steps/duplicate.js';
import { forwardStep } from '../steps/forward.js';
import { journalStep } from '../steps/journal.js';
import { loadTerminal } from '../steps/load-terminal.js';
import { assignReference } from '../steps/reference.js';
import { baseReply, respondStep } from '../steps/respond.js';
import { risk } from '../steps/risk.js';
import { translatePin } from '../steps/translate-pin.js';
import { verifyMac } from '../steps/verify-mac.js';

/** Request fields a 0210 echoes, when the request had them. */
const ECHOED = [2, 3, 4, 14, 25, 49, 53, 60] as const;

/** The 0210: base fields, the echoed request fields, 38 when approved, 54 for a balance. */
export function financialReply(ctx: TxnContext): IsoMessage {
  const msg = baseReply(ctx);
  const req = ctx.req;
  for (const f of ECHOED) if (req[f] !== undefined) msg[f] = req[f];
  if (ctx.authCode !== undefined && ctx.rc === '00') msg[38] = ctx.authCode;
  if (ctx.balance !== undefined && ctx.rc === '00') msg[54] = ctx.balance;
  return msg;
}

/**
 * The steps of a forwarded financial transaction: reference, terminal, keys, MAC, duplicate
 * guard, card data, PIN, risk, journal (request row), forward, reply.
 */
/** What every forwarded request runs first: reference, terminal, keys, MAC, duplicate guard, card data, PIN. */
export const CARD_REQUEST_STEPS: readonly Step[] = Object.freeze([
  assignReference,
  loadTerminal,
  checkKeys,
  verifyMac,
  duplicate,
  decryptTrack,
  translatePin,
]);

export function forwardedSteps(txnType: string): readonly Step[] {
  return Object.freeze([
    ...CARD_REQUEST_STEPS,
    risk,
    journalStep({ txnType, write: 'request', duplicates: 'reject' }),
    forwardStep,
    respondStep(financialReply),
  ]);
}
