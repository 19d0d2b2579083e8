/**
 * Errors raised by the store. Every code is stable and safe to match on; `field` names the input
 * at fault. Messages never echo the offending value: a PAN or a key typed into the wrong field must
 * not end up in a log line.
 */
import { PoskeyError } from '../errors.js';

export type StoreErrorCode =
  /** `openStore` target is not 'sqlite:PATH', a path, {dataDir} or 'postgres://…'. */
  | 'POSKEY_ERR_STORE_TARGET'
  /** An option is out of range: panKey, schema name, nodeId, maxBatch… */
  | 'POSKEY_ERR_STORE_CONFIG'
  /** A field of a merchant, terminal or journal row is malformed. */
  | 'POSKEY_ERR_STORE_VALUE'
  /** A key field does not hold an LMK key block (it might be a clear key). */
  | 'POSKEY_ERR_STORE_KEY_BLOCK'
  /** A unique key is taken: journal (tid, batch, stan, mti), TID, device serial. */
  | 'POSKEY_ERR_STORE_DUPLICATE'
  /** The merchant, terminal or journal row does not exist. */
  | 'POSKEY_ERR_STORE_NOT_FOUND'
  /** The database schema is newer than this build, or its migration record is inconsistent. */
  | 'POSKEY_ERR_STORE_SCHEMA'
  /** The database failed the operation: unreachable, I/O error, busy past the timeout, writer gone. */
  | 'POSKEY_ERR_STORE_FAILED'
  /** The store was used after `close()`. */
  | 'POSKEY_ERR_STORE_CLOSED';

export class StoreError extends PoskeyError {
  declare readonly code: StoreErrorCode;

  constructor(
    code: StoreErrorCode,
    reason: string,
    options: { field?: string | undefined; cause?: unknown } = {},
  ) {
    super(code, reason, options);
  }
}

export function storeError(
  code: StoreErrorCode,
  reason: string,
  field?: string,
  cause?: unknown,
): StoreError {
  return new StoreError(code, reason, { field, cause });
}

/** The `code` property of a driver error (SQLite 'SQLITE_…' names, PostgreSQL SQLSTATEs, errno names). */
export function driverCode(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** A driver error's message without anything but the driver's own words. */
export function driverMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
