/** The POSP host's storage: `openStore` and the types of what it returns. */
export { StoreError, type StoreErrorCode } from './errors.js';
export { JOURNAL_ID_RE } from './ids.js';
export { DEFAULT_MAX_BATCH } from './journal.js';
export { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';
export {
  type OpenStoreOptions,
  openStore,
  PAN_KEY_FILE,
  type ParsedTarget,
  parseStoreTarget,
  SQLITE_FILE,
  type StoreTarget,
} from './open.js';
export { maskPan } from './pan.js';
export { isSettled } from './settlement.js';
export * from './types.js';
export { MAX_AMOUNT } from './validate.js';
