/**
 * verify-mac: field 64 under the terminal's TAK, by the terminal's MAC profile (UnionPay ECB MAC
 * or X9.19). The MAC block is the request body as received less its last 8 bytes: field 64 is the
 * last field and 8 bytes long, so nothing is packed again and the host MACs exactly the bytes the
 * terminal MACed.
 *
 * A MAC that does not verify with a cached TAK is tried once more after re-reading the terminal
 * (another host process may have rotated the keys). Then: A0, no MAC on the reply, processing
 * requirement 3 (sign in again), and the terminal's MAC-failure counter goes up by one.
 */
import type { MacRequest } from '../../hsm/api.js';
import { RC } from '../../protocol/unionpay-pos.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';
import { RE_SIGN_IN } from './check-keys.js';

/** The MAC request for `data` (hex) under the current TAK; one object, no nested closures. */
function macRequest(ctx: TxnContext, data: Uint8Array, mac: string): MacRequest & { mac: string } {
  return {
    key: { kind: 'key', keyBlock: ctx.terminal!.workingKeys!.tak!.block },
    algorithm: ctx.profile!.mac,
    data,
    mac,
  };
}

async function badMac(ctx: TxnContext): Promise<Outcome> {
  ctx.keysValid = false;
  ctx.processingRequirement = RE_SIGN_IN;
  ctx.host.metrics.count('mac.failures');
  try {
    await ctx.host.store.terminals.incrementMacFailures(ctx.tid);
  } catch (e) {
    ctx.host.log.error({ err: e, tid: ctx.tid }, 'could not count a MAC failure');
  }
  return ctx.fail(RC.MAC_FAILED);
}

async function verify(ctx: TxnContext): Promise<Outcome> {
  const mac = ctx.req[64];
  const body = ctx.body;
  if (typeof mac !== 'string' || body.length <= 8) return badMac(ctx);
  const data = body.subarray(0, body.length - 8);
  const hsm = ctx.host.hsm;
  if (await hsm.verifyMac(macRequest(ctx, data, mac))) return PREPARED;
  // A stale cached TAK? Re-read once; only new keys are worth a second try.
  const before = ctx.terminal!.workingKeys!.tak!.block;
  const entry = await ctx.host.terminals.reload(ctx.tid);
  const tak = entry?.terminal.workingKeys?.tak;
  if (entry === undefined || tak === undefined || tak === null || tak.block === before) return badMac(ctx);
  ctx.terminal = entry.terminal;
  ctx.profile = entry.profile;
  return (await hsm.verifyMac(macRequest(ctx, data, mac))) ? PREPARED : badMac(ctx);
}

export const verifyMac: Step = {
  name: 'verify-mac',
  requires: ['terminal', 'profile', 'keysValid', 'body'],
  provides: ['keysValid'],
  prepare: verify,
};
