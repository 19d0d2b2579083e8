/**
 * Request shapes of the admin API (zod, unknown keys refused). The registry checks the values
 * again (the store validates MIDs, TIDs, MCCs; the HSM the key material); these only make sure a
 * request has the right shape, so the error names the field the caller sent.
 */
import { z } from 'zod';
import { JOURNAL_STATUSES, TERMINAL_KEY_ALGORITHMS, TERMINAL_STATES } from '../../store/types.js';

const hex = z.string().regex(/^[0-9A-Fa-f]+$/, 'must be hex');

export const merchantBody = z.strictObject({
  mid: z.string().length(15),
  name: z.string().min(1).max(100),
  mcc: z.string().regex(/^\d{4}$/, 'must be 4 digits'),
});

export const tmkSource = z.union([
  z.strictObject({ components: z.array(hex).min(1).max(9), kcvs: z.array(hex).min(1).max(9).optional() }),
  z.strictObject({ tr31: z.string().min(16).max(2048), kek: z.string().min(1).max(2048) }),
  z.strictObject({ generate: z.literal(true), exportUnder: z.string().min(1).max(2048) }),
]);

export const terminalBody = z.strictObject({
  tid: z.string().length(8),
  mid: z.string().length(15),
  serial: z.string().min(1).max(64).nullable().optional(),
  keyAlgorithm: z.enum(TERMINAL_KEY_ALGORITHMS).default('TDES'),
  batchNumber: z.number().int().min(1).max(999_999).optional(),
  tmk: tmkSource.optional(),
});

export const terminalPatch = z.strictObject({ state: z.enum(['blocked', 'active']) });

export const tmkBody = z.strictObject({ tmk: tmkSource });

export const terminalQuery = z.strictObject({
  mid: z.string().length(15).optional(),
  state: z.enum(TERMINAL_STATES).optional(),
});

const int = (max: number) =>
  z
    .string()
    .regex(/^\d{1,15}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(0).max(max));

export const journalQuery = z.strictObject({
  tid: z.string().length(8).optional(),
  mid: z.string().length(15).optional(),
  batch: int(999_999).optional(),
  stan: int(999_999).optional(),
  rrn: z.string().min(1).max(12).optional(),
  status: z.enum(JOURNAL_STATUSES).optional(),
  from: int(Number.MAX_SAFE_INTEGER).optional(),
  to: int(Number.MAX_SAFE_INTEGER).optional(),
  after: z.string().min(1).max(64).optional(),
  order: z.enum(['asc', 'desc']).optional(),
  limit: int(1000).optional(),
});

export const tidParams = z.strictObject({ tid: z.string().length(8) });
export const midParams = z.strictObject({ mid: z.string().length(15) });
