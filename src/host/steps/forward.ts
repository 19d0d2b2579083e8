/**
 * forward: the request to the card network (docs/network-link.md) with the host's own STAN and
 * RRN, the clear track, the PIN block under the ZPK and an X9.19 MAC under the ZAK in field 128;
 * then the network's answer, whose MAC is checked before anything in it is believed.
 *
 * The network's response code passes through (00, 51, 55, 14, 54, 62, 75…); a decline is not an
 * abort: the transaction completed with the issuer's answer. Aborts:
 * - no answer in time, or the connection dropped after sending → 98, journal status `in_doubt`,
 *   and a reversal (39 = 98) queued towards the network (src/host/saf.ts) before the reply;
 * - never sent (link down past the deadline, too busy) → 96, status `failed`, nothing to reverse;
 * - an answer whose MAC does not verify → 96, status `in_doubt`, a reversal (39 = 96) queued.
 * An advice (0220) in any of these cases is not refused: it is queued for the network as sent
 * and the terminal gets 00 (network outcome `queued`).
 */
import { PoskeyError } from '../../errors.js';
import type { MacRequest } from '../../hsm/api.js';
import { type IsoMessage, pack } from '../../iso8583/index.js';
import { NETWORK_DIALECT } from '../../protocol/network-link.js';
import { encodeOriginalData, transmissionTime } from '../../protocol/original-data.js';
import { RC } from '../../protocol/unionpay-pos.js';
import type { JournalRecord } from '../../store/types.js';
import {
  type HostRuntime,
  type Outcome,
  PREPARED,
  type Step,
  type TxnContext,
  type ZoneKeys,
} from '../context.js';
import type { NetworkReply } from '../network-link.js';
import { REVERSAL_REASON } from '../saf.js';

const ZERO_MAC = '0000000000000000';
/** Field 53 on the link with a PIN block: format 0 with the PAN, TDES (the zone keys are TDES). */
const NETWORK_SECURITY_CONTROL = '2600000000000000';
const MAX_BALANCE_LENGTH = 20;

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

function macRequest(zone: ZoneKeys, data: Uint8Array): MacRequest {
  return { key: { kind: 'key', keyBlock: zone.zak }, algorithm: 'retail', data, padding: 1, length: 8 };
}

/** Packs a network message with its MAC in the last field (128): one pack, the MAC patched in. */
export async function packSigned(
  ctx: { host: HostRuntime },
  zone: ZoneKeys,
  msg: IsoMessage,
): Promise<Buffer> {
  msg[128] = ZERO_MAC;
  const body = pack(NETWORK_DIALECT, msg);
  const mac = await ctx.host.hsm.generateMac(macRequest(zone, body.subarray(0, body.length - 8)));
  body.write(mac, body.length - 8, 'hex');
  return body;
}

/** True when a network message's MAC (its last 8 bytes, field 128 or 64) verifies under the ZAK. */
export async function verifySigned(
  ctx: { host: HostRuntime },
  zone: ZoneKeys,
  reply: NetworkReply,
): Promise<boolean> {
  const mac = reply.msg[128] ?? reply.msg[64];
  if (typeof mac !== 'string' || reply.body.length <= 8) return false;
  const data = reply.body.subarray(0, reply.body.length - 8);
  return ctx.host.hsm.verifyMac({ ...macRequest(zone, data), mac });
}

/** Expiry YYMM: field 14, else the 4 digits after the track's separator. */
function expiryOf(ctx: TxnContext): string | undefined {
  const f14 = ctx.req[14];
  if (typeof f14 === 'string') return f14;
  const t = ctx.track2;
  const at = t === undefined ? -1 : t.indexOf('=');
  return at >= 0 && t!.length >= at + 5 ? t!.slice(at + 1, at + 5) : undefined;
}

/** Field 90 of a follow-up (void, refund, completion…): the original as the host journalled it. */
function networkOriginalData(ctx: TxnContext, o: JournalRecord): string {
  return encodeOriginalData({
    mti: o.mti,
    rrn: o.rrn ?? '000000000000',
    transmitted: transmissionTime(o.createdAt),
    acquirerId: ctx.host.config.acquirerId,
  });
}

/** The network request (same MTI) for a terminal financial request; 90 when it has an original. */
export function networkRequest(ctx: TxnContext): IsoMessage {
  const req = ctx.req;
  const d = new Date(ctx.host.clock());
  const utc =
    pad2(d.getUTCMonth() + 1) +
    pad2(d.getUTCDate()) +
    pad2(d.getUTCHours()) +
    pad2(d.getUTCMinutes()) +
    pad2(d.getUTCSeconds());
  const msg: IsoMessage = {
    0: req[0],
    2: ctx.pan!,
    3: req[3] as string,
    4: typeof req[4] === 'string' ? req[4] : '000000000000',
    7: utc,
    11: ctx.networkStan,
    12: pad2(d.getHours()) + pad2(d.getMinutes()) + pad2(d.getSeconds()),
    13: pad2(d.getMonth() + 1) + pad2(d.getDate()),
  };
  const expiry = expiryOf(ctx);
  if (expiry !== undefined) msg[14] = expiry;
  msg[22] = typeof req[22] === 'string' ? req[22] : '000';
  msg[25] = typeof req[25] === 'string' ? req[25] : '00';
  msg[32] = ctx.host.config.acquirerId;
  if (ctx.track2 !== undefined) msg[35] = ctx.track2;
  msg[37] = ctx.rrn;
  msg[41] = req[41] as string;
  msg[42] = req[42] as string;
  msg[49] = typeof req[49] === 'string' ? req[49] : '156';
  if (ctx.pinBlock !== undefined) {
    msg[52] = ctx.pinBlock;
    msg[53] = NETWORK_SECURITY_CONTROL;
  }
  if (ctx.original !== undefined) msg[90] = networkOriginalData(ctx, ctx.original);
  return msg;
}

/** MTI of the advices the host stores and forwards when the network cannot take them now. */
const ADVICE_MTI = '0220';

/**
 * An advice the network did not take (not sent, no answer, a bad answer): accepted for the
 * terminal and queued as sent (same STAN and RRN), so the network answers a repeat from its row.
 */
function queueAdvice(ctx: TxnContext, why: string): Outcome {
  ctx.saf = 'advice';
  ctx.rc = RC.APPROVED;
  ctx.status = 'approved';
  ctx.networkOutcome = 'queued';
  ctx.host.log.warn({ tid: ctx.tid, stan: ctx.stan, why }, 'advice stored for forwarding');
  return PREPARED;
}

/** A request the network may have applied: declined to the terminal, reversed towards the network. */
function inDoubt(ctx: TxnContext, rc: string, reason: string): Outcome {
  ctx.status = 'in_doubt';
  ctx.saf = 'reversal';
  ctx.safReason = reason;
  return ctx.fail(rc);
}

function failure(ctx: TxnContext, e: unknown): Outcome {
  const code = e instanceof PoskeyError ? e.code : '';
  const metrics = ctx.host.metrics;
  const advice = ctx.req[0] === ADVICE_MTI;
  if (code === 'POSKEY_ERR_NETWORK_TIMEOUT' || code === 'POSKEY_ERR_NETWORK_LOST') {
    metrics.count(code === 'POSKEY_ERR_NETWORK_TIMEOUT' ? 'network.timeouts' : 'network.lost');
    ctx.networkOutcome = code === 'POSKEY_ERR_NETWORK_TIMEOUT' ? 'timeout' : 'lost';
    ctx.host.log.warn(
      { tid: ctx.tid, stan: ctx.stan, networkStan: ctx.networkStan, code },
      'network outcome unknown',
    );
    if (advice) return queueAdvice(ctx, code);
    return inDoubt(ctx, RC.ISSUER_TIMEOUT, REVERSAL_REASON.timeout);
  }
  if (code.startsWith('POSKEY_ERR_NETWORK_')) {
    metrics.count('network.notSent');
    if (advice && code !== 'POSKEY_ERR_NETWORK_CLOSED') return queueAdvice(ctx, code);
    // Never written to a connection: the network cannot have seen it, there is nothing to reverse.
    ctx.status = 'failed';
    ctx.networkOutcome = 'not_sent';
    ctx.host.log.warn({ tid: ctx.tid, stan: ctx.stan, code }, 'request not sent to the network');
    return ctx.fail(RC.SYSTEM_MALFUNCTION);
  }
  throw e;
}

function accept(ctx: TxnContext, msg: IsoMessage): Outcome {
  const rc = msg[39];
  // A0 from the network is about the host's MAC, not the terminal's: the terminal must not re-sign-in.
  ctx.rc = typeof rc === 'string' && rc.length === 2 && rc !== RC.MAC_FAILED ? rc : RC.SYSTEM_MALFUNCTION;
  ctx.networkOutcome = ctx.rc === RC.APPROVED ? 'approved' : 'declined';
  if (typeof msg[38] === 'string' && ctx.rc === RC.APPROVED) ctx.authCode = msg[38];
  const balance = msg[54];
  if (typeof balance === 'string') ctx.balance = balance.slice(0, MAX_BALANCE_LENGTH);
  return PREPARED;
}

async function forward(ctx: TxnContext): Promise<Outcome> {
  const link = ctx.host.link;
  ctx.zoneKeys ??= ctx.host.zone;
  const zone = ctx.zoneKeys;
  if (link === undefined || zone === undefined) {
    ctx.status = 'failed';
    ctx.networkOutcome = 'not_sent';
    return ctx.fail(RC.SYSTEM_MALFUNCTION);
  }
  ctx.networkStan = link.nextStan();
  ctx.networkMessage = networkRequest(ctx);
  const body = await packSigned(ctx, zone, ctx.networkMessage);
  let reply: NetworkReply;
  try {
    ctx.host.metrics.count('network.sent');
    reply = await link.request(ctx.networkStan, body);
  } catch (e) {
    return failure(ctx, e);
  }
  if (!(await verifySigned(ctx, zone, reply))) {
    ctx.host.metrics.count('network.badMac');
    ctx.networkOutcome = 'bad_mac';
    ctx.host.log.error(
      { tid: ctx.tid, stan: ctx.stan, networkStan: ctx.networkStan },
      'network answer MAC does not verify',
    );
    if (ctx.req[0] === ADVICE_MTI) return queueAdvice(ctx, 'bad MAC');
    return inDoubt(ctx, RC.SYSTEM_MALFUNCTION, REVERSAL_REASON.hostFailure);
  }
  return accept(ctx, reply.msg);
}

export const forwardStep: Step = {
  name: 'forward',
  requires: ['terminal', 'pan', 'pinBlock', 'rrn', 'journalId'],
  provides: ['networkStan', 'authCode', 'balance', 'networkOutcome'],
  prepare: forward,
};
