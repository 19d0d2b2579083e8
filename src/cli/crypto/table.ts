/**
 * The operation table: the single source of truth for `poskey crypto`. Commander subcommands and
 * `batch` are both generated from it.
 */
import { cipherOps } from './ops-cipher.js';
import { dukptOps } from './ops-dukpt.js';
import { componentOps, kcvOps } from './ops-keys.js';
import { macOps } from './ops-mac.js';
import { pinBlockOps } from './ops-pinblock.js';
import { tr31Ops } from './ops-tr31.js';
import type { Operation } from './schema.js';

export const OPERATIONS: readonly Operation[] = [
  ...kcvOps,
  ...cipherOps,
  ...pinBlockOps,
  ...macOps,
  ...tr31Ops,
  ...dukptOps,
  ...componentOps,
];

/** Operations by path (`"pinblock encrypt"`), in table order. */
export const OPERATIONS_BY_PATH: ReadonlyMap<string, Operation> = new Map(
  OPERATIONS.map((op) => [op.path, op]),
);

/** Descriptions of the command groups that paths with two words create. */
export const GROUPS: Readonly<Record<string, string>> = {
  pinblock: 'PIN blocks: ISO 9564-1 formats 0-4 and the UnionPay SM4 block',
  tr31: 'TR-31 / ANSI X9.143 key blocks',
  components: 'key components (split knowledge, dual control)',
};
