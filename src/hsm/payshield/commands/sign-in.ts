/**
 * Y0 (poskey vendor command): the UnionPay POS sign-in key set in one round trip.
 *
 *   Y0: TMK (S + block), algorithm (1 A: T = TDES, S = SM4), PIK length (1 N: 1 single,
 *       2 double), MAK length (1 N: 1 single, 2 double), TDK flag (1 N: 0 none, 1 with TDK)
 *   →  for the TPK (PIK), the TAK (MAK) and, when asked, the TDK:
 *       key under LMK (S + block), key under TMK (16 H, or X + 32 H), check value (8 H)
 *
 * Everything the POSP puts in field 62 (keys under the TMK with 4-byte check values) and keeps for
 * itself (the same keys under the LMK). The length flags apply to TDES; SM4 keys are 16 bytes and
 * take 2. The code Y0/Y1 is not a payShield command.
 */
import type { SignInKey } from '../../api.js';
import { fieldError } from '../fields.js';
import { formatLegacy } from './keys.js';
import { defineCommand } from './types.js';

const LENGTHS = { '1': 'single', '2': 'double' } as const;

interface SignInRequest {
  tmk: string;
  algorithm: 'tdes' | 'sm4';
  pinKeyLength: 'single' | 'double';
  makLength: 'single' | 'double';
  withTdk: boolean;
}

function formatKey(k: SignInKey): string {
  return `S${k.keyBlock}${formatLegacy(k.underTmk.toUpperCase())}${k.checkValue.toUpperCase()}`;
}

export const Y0 = defineCommand({
  code: 'Y0',
  name: 'Generate the sign-in key set (poskey vendor command)',
  parse(c): SignInRequest {
    const tmk = c.lmkKey('tmk');
    const algorithm = c.oneOf('algorithm', 1, ['T', 'S'], 'A7') === 'T' ? 'tdes' : 'sm4';
    const pinKeyLength = LENGTHS[c.oneOf('pinKeyLength', 1, ['1', '2'] as const)];
    const makLength = LENGTHS[c.oneOf('makLength', 1, ['1', '2'] as const)];
    const withTdk = c.oneOf('tdkFlag', 1, ['0', '1']) === '1';
    if (algorithm === 'sm4' && (pinKeyLength !== 'double' || makLength !== 'double')) {
      throw fieldError('makLength', 'SM4 keys are 16 bytes: both length flags must be 2', '15');
    }
    return { tmk, algorithm, pinKeyLength, makLength, withTdk };
  },
  run: (hsm, req, ctx) =>
    hsm.generateSignInKeys(
      req.algorithm === 'sm4'
        ? { tmk: req.tmk, algorithm: 'sm4', withTdk: req.withTdk }
        : { ...req, algorithm: 'tdes' },
      ctx.actor,
    ),
  format: (r) => formatKey(r.tpk) + formatKey(r.tak) + (r.tdk === undefined ? '' : formatKey(r.tdk)),
});
