/**
 * Sign-in (0800 → 0810, 60.3 = 001, 003, 004; 006 for SM4 terminals). No MAC either way.
 *
 * 1. The HSM generates the working keys under the terminal's TMK: PIK and MAK, and a TDK for
 *    004/006 (001 single-length PIK and MAK; 003/004 double PIK, single MAK; 006 all SM4).
 * 2. The host stores their LMK blocks (one registry transaction: keys, sign-in time, state active,
 *    shared by the sign-ins of one event-loop turn, sign-in-writer.ts), replacing the previous
 *    ones: every sign-in rotates the keys.
 * 3. The 0810 carries field 62 in the research notes' layout, each key under the TMK followed by
 *    its 4-byte check value (003/004: the 8-byte MAK then 8 zero bytes), the host's time and date
 *    (12/13) and the batch number in force (60.2).
 *
 * Refusals: unknown or blocked terminal, or another merchant's → 97; a 60.3 the host does not
 * allow, or one that does not fit the terminal's key algorithm (006 ⇔ SM4) → 40; a terminal
 * without a TMK → 96.
 */
import type { SignInKeysRequest } from '../../hsm/api.js';
import { type IsoMessage, joinKeyBlock, type Subfields } from '../../iso8583/index.js';
import { RC } from '../../protocol/unionpay-pos.js';
import type { Terminal } from '../../store/types.js';
import { type Outcome, PREPARED, type Step, subfield, type TxnContext } from '../context.js';
import { signInWriterFor } from '../sign-in-writer.js';
import { journalStep } from '../steps/journal.js';
import { loadTerminal } from '../steps/load-terminal.js';
import { assignReference } from '../steps/reference.js';
import { baseReply, respondStep } from '../steps/respond.js';

/** Field 39 for a request the host does not support (a transaction, or a sign-in variant). */
export const RC_FUNCTION_NOT_SUPPORTED = '40';

/** The HSM request for each 60.3 code. */
const PLANS: Readonly<Record<string, Omit<SignInKeysRequest, 'tmk'>>> = {
  '001': { algorithm: 'tdes', pinKeyLength: 'single', makLength: 'single', withTdk: false },
  '003': { algorithm: 'tdes', pinKeyLength: 'double', makLength: 'single', withTdk: false },
  '004': { algorithm: 'tdes', pinKeyLength: 'double', makLength: 'single', withTdk: true },
  '006': { algorithm: 'sm4', withTdk: true },
};

/** 003/004 carry the 8-byte MAK in a 16-byte slot, followed by zeros (research §1.4). */
const MAK_FILL = '0000000000000000';

async function signIn(ctx: TxnContext): Promise<Outcome> {
  const code = subfield(ctx.req, 60, 3) ?? '';
  const t = ctx.terminal!;
  const plan = PLANS[code];
  const allowed = (ctx.host.config.signInCodes as readonly string[]).includes(code);
  if (plan === undefined || !allowed || (plan.algorithm === 'sm4') !== (t.keyAlgorithm === 'SM4')) {
    return ctx.fail(RC_FUNCTION_NOT_SUPPORTED);
  }
  if (t.tmk === null) {
    ctx.host.log.warn({ tid: t.tid }, 'sign-in refused: the terminal has no TMK');
    return ctx.fail(RC.SYSTEM_MALFUNCTION);
  }
  const keys = await ctx.host.hsm.generateSignInKeys({ tmk: t.tmk.block, ...plan }, 'host');
  const createdAt = ctx.host.clock();
  const stored = (k: { keyBlock: string; checkValue: string } | undefined) =>
    k === undefined ? null : { block: k.keyBlock, kcv: k.checkValue };
  const updated: Terminal = await signInWriterFor(ctx.host.store).write(
    t.tid,
    { tpk: stored(keys.tpk), tak: stored(keys.tak), tdk: stored(keys.tdk), createdAt },
    createdAt,
  );
  const entry = ctx.host.terminals.remember(updated);
  ctx.terminal = entry.terminal;
  ctx.profile = entry.profile;
  const mak = code === '001' || code === '006' ? keys.tak.underTmk : keys.tak.underTmk + MAK_FILL;
  const block: Parameters<typeof joinKeyBlock>[0] = {
    pik: keys.tpk.underTmk,
    pikCv: keys.tpk.checkValue,
    mak,
    makCv: keys.tak.checkValue,
  };
  if (keys.tdk !== undefined) {
    block.tdk = keys.tdk.underTmk;
    block.tdkCv = keys.tdk.checkValue;
  }
  ctx.keyBlock = joinKeyBlock(block, code);
  ctx.host.metrics.count('signIns');
  ctx.rc = RC.APPROVED;
  return PREPARED;
}

const generateKeys: Step = {
  name: 'sign-in',
  requires: ['terminal'],
  provides: ['keyBlock', 'terminal', 'profile'],
  prepare: signIn,
};

/** 60 of a management reply: 60.1 echoed, 60.2 the batch in force (when known), 60.3 echoed. */
export function managementField60(ctx: TxnContext): Subfields {
  const req = ctx.req;
  const code = subfield(req, 60, 3);
  const batch =
    ctx.terminal === undefined ? subfield(req, 60, 2) : String(ctx.terminal.batchNumber).padStart(6, '0');
  const out: Subfields = { 1: subfield(req, 60, 1) ?? '00' };
  if (batch !== undefined || code !== undefined) out[2] = batch ?? '000000';
  if (code !== undefined) out[3] = code;
  return out;
}

function signInReply(ctx: TxnContext): IsoMessage {
  const msg = baseReply(ctx);
  msg[60] = managementField60(ctx);
  if (ctx.rc === RC.APPROVED && ctx.keyBlock !== undefined) msg[62] = ctx.keyBlock;
  return msg;
}

export const signInSteps: readonly Step[] = Object.freeze([
  assignReference,
  loadTerminal,
  generateKeys,
  journalStep({ txnType: 'sign_in', write: 'outcome', duplicates: 'accept' }),
  respondStep(signInReply, false),
]);
