/**
 * respond: builds the reply, MACs it under the terminal's TAK, and hands it to the connection. It
 * joins even after an abort (`onAbort`) and sends in both commit and abort (jPOS SendResponse), so
 * every request gets an answer, after the journal step has made the outcome durable.
 *
 * The reply is packed once with a placeholder MAC; the MAC is computed over the packed bytes less
 * the last 8 and written over the placeholder. No MAC when the TAK is not usable or not trusted:
 * A0 (bad MAC), A7 (sign in), 97 (unknown terminal), and management messages. Codes after which the
 * terminal must sign in (A0, 99, A7) set the header's processing requirement to 3.
 */
import type { IsoMessage } from '../../iso8583/index.js';
import { pack } from '../../iso8583/index.js';
import { RC, RE_SIGN_IN_CODES } from '../../protocol/unionpay-pos.js';
import { PREPARED, type Step, type TxnContext } from '../context.js';
import { RE_SIGN_IN } from './check-keys.js';
import { responseMti } from './journal.js';

const ZERO_MAC = '0000000000000000';

/** Builds the transaction-specific reply (field 39 and the MAC are added by the step). */
export type ReplyBuilder = (ctx: TxnContext) => IsoMessage;

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** Host local time hhmmss and date MMDD (fields 12 and 13) from the host clock. */
export function hostTime(ctx: TxnContext): { time: string; date: string } {
  const d = new Date(ctx.host.clock());
  return {
    time: pad2(d.getHours()) + pad2(d.getMinutes()) + pad2(d.getSeconds()),
    date: pad2(d.getMonth() + 1) + pad2(d.getDate()),
  };
}

/** Fields every reply to a request carries: MTI, 11, 12, 13, 32, 37, 41, 42 (those the request had). */
export function baseReply(ctx: TxnContext): IsoMessage {
  const req = ctx.req;
  const { time, date } = hostTime(ctx);
  const msg: IsoMessage = { 0: responseMti(req[0]) };
  if (req[11] !== undefined) msg[11] = req[11];
  msg[12] = time;
  msg[13] = date;
  msg[32] = ctx.host.config.acquirerId;
  if (ctx.rrn !== '') msg[37] = ctx.rrn;
  if (req[41] !== undefined) msg[41] = req[41];
  if (req[42] !== undefined) msg[42] = req[42];
  return msg;
}

/** The reply of last resort: when the real one cannot be built or packed. */
function minimalReply(ctx: TxnContext): Buffer {
  const req = ctx.req;
  const msg: IsoMessage = { 0: responseMti(req[0]), 39: RC.SYSTEM_MALFUNCTION };
  if (typeof req[11] === 'string') msg[11] = req[11];
  if (typeof req[41] === 'string') msg[41] = req[41];
  if (typeof req[42] === 'string') msg[42] = req[42];
  try {
    return pack(ctx.dialect, msg);
  } catch {
    return pack(ctx.dialect, { 0: msg[0], 39: RC.SYSTEM_MALFUNCTION });
  }
}

/** Whether the reply gets a MAC: the request's MAC verified and the code does not distrust the TAK. */
function wantsMac(ctx: TxnContext, rc: string): boolean {
  return (
    ctx.keysValid && rc !== RC.MAC_FAILED && rc !== RC.SIGN_IN_REQUIRED && rc !== RC.TERMINAL_NOT_REGISTERED
  );
}

async function macInto(ctx: TxnContext, body: Buffer): Promise<void> {
  const mac = await ctx.host.hsm.generateMac({
    key: { kind: 'key', keyBlock: ctx.terminal!.workingKeys!.tak!.block },
    algorithm: ctx.profile!.mac,
    data: body.subarray(0, body.length - 8),
  });
  body.write(mac, body.length - 8, 'hex');
}

/** Makes the reply step of one transaction; `macs` is false for management messages (no field 64). */
export function respondStep(build: ReplyBuilder, macs = true): Step {
  async function send(ctx: TxnContext): Promise<void> {
    if (ctx.replied) return;
    if (ctx.rc === '') ctx.rc = RC.SYSTEM_MALFUNCTION;
    let body: Buffer;
    try {
      const msg = build(ctx);
      msg[39] = ctx.rc;
      const withMac = macs && wantsMac(ctx, ctx.rc);
      if (withMac) msg[64] = ZERO_MAC;
      body = pack(ctx.dialect, msg);
      if (withMac) await macInto(ctx, body);
    } catch (e) {
      ctx.host.log.error({ err: e, tid: ctx.tid, stan: ctx.stan, rc: ctx.rc }, 'reply could not be built');
      ctx.rc = RC.SYSTEM_MALFUNCTION;
      body = minimalReply(ctx);
    }
    if (RE_SIGN_IN_CODES.has(ctx.rc)) ctx.processingRequirement = RE_SIGN_IN;
    ctx.replied = true;
    ctx.host.metrics.responseCode(ctx.rc);
    ctx.reply.send(ctx, body);
  }
  return {
    name: 'respond',
    requires: ['req'],
    provides: ['replied'],
    onAbort: true,
    prepare: () => PREPARED,
    commit: send,
    abort: send,
  };
}
