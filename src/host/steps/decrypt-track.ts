/**
 * decrypt-track: reads field 53, decrypts track 2 under the TDK when 53.3 = 1 (one block, as
 * `transformTrack` defines it), and settles the PAN: field 2, else the track's digits before '='.
 *
 * - field 53 unreadable → 99 (the terminal's security settings are off: sign in again);
 * - track encrypted but the terminal holds no TDK (signed in with 001/003) → A7 (sign in with 004/006);
 * - no PAN at all, or a decrypted track whose PAN differs from field 2 → 14 (invalid card).
 */
import { PoskeyError } from '../../errors.js';
import { RC, readSecurityControl, transformTrack } from '../../protocol/unionpay-pos.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';
import { RE_SIGN_IN } from './check-keys.js';

// transformTrack calls its cipher synchronously: these module-level slots carry the block in and
// out without a closure per request (nothing else runs between set and use).
let captured: Buffer = Buffer.alloc(0);
let replacement: Buffer = Buffer.alloc(0);
const capture = (block: Buffer): Buffer => {
  captured = block;
  return block;
};
const substitute = (): Buffer => replacement;

function panOf(ctx: TxnContext, track: string | undefined): Outcome {
  const f2 = ctx.req[2];
  const fromTrack = track === undefined ? undefined : track.split('=', 1)[0];
  if (typeof f2 === 'string' && fromTrack !== undefined && fromTrack !== f2) return ctx.fail(RC.INVALID_CARD);
  const pan = typeof f2 === 'string' ? f2 : fromTrack;
  if (pan === undefined || !/^\d{12,19}$/.test(pan)) return ctx.fail(RC.INVALID_CARD);
  ctx.pan = pan;
  ctx.track2 = track;
  return PREPARED;
}

async function decrypt(ctx: TxnContext, track: string): Promise<Outcome> {
  const tdk = ctx.terminal!.workingKeys?.tdk;
  if (tdk === undefined || tdk === null) {
    ctx.processingRequirement = RE_SIGN_IN;
    return ctx.fail(RC.SIGN_IN_REQUIRED);
  }
  const bytes = ctx.profile!.blockBytes;
  let clear: string;
  try {
    transformTrack(track, bytes, capture);
    const hex = await ctx.host.hsm.decryptData({
      keyBlock: tdk.block,
      mode: 'ecb',
      data: captured.toString('hex'),
    });
    replacement = Buffer.from(hex, 'hex');
    clear = transformTrack(track, bytes, substitute);
  } catch (e) {
    if (e instanceof PoskeyError && e.code === 'POSKEY_ERR_POS_TRACK') return ctx.fail(RC.INVALID_CARD);
    throw e;
  }
  if (!/^\d{1,19}=\d*$/.test(clear)) return ctx.fail(RC.INVALID_CARD);
  return panOf(ctx, clear);
}

export const decryptTrack: Step = {
  name: 'decrypt-track',
  requires: ['req', 'terminal', 'profile'],
  provides: ['security', 'pan', 'track2'],
  prepare(ctx) {
    try {
      ctx.security = readSecurityControl(ctx.req[53]);
    } catch {
      ctx.processingRequirement = RE_SIGN_IN;
      return ctx.fail(RC.PIN_FORMAT_ERROR);
    }
    const track = ctx.req[35];
    if (typeof track !== 'string') return panOf(ctx, undefined);
    if (ctx.security?.trackEncrypted) return decrypt(ctx, track);
    return panOf(ctx, track);
  },
};
