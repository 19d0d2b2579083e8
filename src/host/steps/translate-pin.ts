/**
 * translate-pin: the PIN block (field 52) from the terminal's TPK to the network's ZPK, inside the
 * HSM; the clear PIN never reaches the host. ISO format 0 (SM4 terminals: the SM4 block) in, the
 * link's format out. A block that does not decode (control nibble, length, fill, digits, a PAN
 * that does not match) gets 99 and processing requirement 3: the terminal signs in again. No
 * field 52 (entry mode …2, no PIN) is not an error: nothing to translate.
 */
import { PoskeyError } from '../../errors.js';
import { RC } from '../../protocol/unionpay-pos.js';
import { type Outcome, PREPARED, type Step, type TxnContext } from '../context.js';
import { RE_SIGN_IN } from './check-keys.js';

/** HSM/crypto error codes that mean "this PIN block is not well formed". */
const PIN_FORMAT_CODES: ReadonlySet<string> = new Set([
  'POSKEY_ERR_PIN_BLOCK_CONTROL',
  'POSKEY_ERR_PIN_BLOCK_FILL',
  'POSKEY_ERR_PIN_BLOCK_LENGTH',
  'POSKEY_ERR_PIN_BLOCK_FORMAT',
  'POSKEY_ERR_PIN_LENGTH',
  'POSKEY_ERR_PIN_DIGITS',
  'POSKEY_ERR_PAN_MISMATCH',
  'POSKEY_ERR_PAN',
]);

/** True for an error that says the PIN block (not the HSM or the keys) is at fault. */
export function isPinFormatError(e: unknown): boolean {
  return e instanceof PoskeyError && PIN_FORMAT_CODES.has(e.code);
}

function formatError(ctx: TxnContext): Outcome {
  ctx.processingRequirement = RE_SIGN_IN;
  return ctx.fail(RC.PIN_FORMAT_ERROR);
}

async function translate(ctx: TxnContext, pinBlock: string): Promise<Outcome> {
  ctx.zoneKeys ??= ctx.host.zone;
  const zone = ctx.zoneKeys;
  if (zone === undefined) return ctx.fail(RC.SYSTEM_MALFUNCTION);
  try {
    ctx.pinBlock = await ctx.host.hsm.translatePin({
      source: { kind: 'key', keyBlock: ctx.terminal!.workingKeys!.tpk!.block },
      destination: zone.zpk,
      pinBlock,
      fromFormat: ctx.profile!.pinFormat,
      toFormat: zone.pinFormat,
      pan: ctx.pan!,
    });
  } catch (e) {
    if (isPinFormatError(e)) return formatError(ctx);
    throw e;
  }
  return PREPARED;
}

export const translatePin: Step = {
  name: 'translate-pin',
  requires: ['terminal', 'profile', 'pan', 'security'],
  provides: ['pinBlock'],
  prepare(ctx) {
    const pinBlock = ctx.req[52];
    if (pinBlock === undefined) return PREPARED;
    // 53.1 = 1 (X9.8 without the PAN) is not a block the host can translate to format 0.
    if (typeof pinBlock !== 'string' || ctx.security?.pinMethod === '1' || ctx.security?.pinMethod === '0') {
      return formatError(ctx);
    }
    return translate(ctx, pinBlock);
  },
};
