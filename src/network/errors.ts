/**
 * Errors of the card network and issuer simulator. Stable codes, the field at fault, and messages
 * that never carry a PAN, a PIN or key material.
 */
import { PoskeyError } from '../errors.js';

export type NetworkErrorCode =
  /** An option of the simulator, the ledger or the CLI is out of range. */
  | 'POSKEY_ERR_NETWORK_OPTION'
  /** A fault setting is out of range (delay, rate, response code). */
  | 'POSKEY_ERR_NETWORK_FAULTS'
  /** The zone file is not a poskey zone file (format, hex, lengths). */
  | 'POSKEY_ERR_ZONE_FILE'
  /** ZMK components are missing or malformed. */
  | 'POSKEY_ERR_ZONE_COMPONENTS'
  /** The ZMK formed from the components does not have the zone file's KCV. */
  | 'POSKEY_ERR_ZONE_ZMK_KCV'
  /** No usable zone keys: no components given and none stored that match the zone file. */
  | 'POSKEY_ERR_ZONE_MISSING'
  /** A card field is malformed (PAN, expiry, balance, status, currency). */
  | 'POSKEY_ERR_LEDGER_CARD'
  /** A card with this PAN is already on file. */
  | 'POSKEY_ERR_LEDGER_DUPLICATE'
  /** No card with this PAN. */
  | 'POSKEY_ERR_LEDGER_NOT_FOUND'
  /** The ledger has no PVK usable with this HSM (other LMK, or opened without an HSM). */
  | 'POSKEY_ERR_LEDGER_PVK'
  /** SQLite failed (I/O, busy past the timeout, a newer schema). */
  | 'POSKEY_ERR_LEDGER_IO'
  /** The ledger was used after close(). */
  | 'POSKEY_ERR_LEDGER_CLOSED';

export class NetworkError extends PoskeyError {
  declare readonly code: NetworkErrorCode;

  constructor(
    code: NetworkErrorCode,
    reason: string,
    options: { field?: string | undefined; cause?: unknown } = {},
  ) {
    super(code, reason, options);
  }
}

export function networkError(
  code: NetworkErrorCode,
  reason: string,
  field?: string,
  cause?: unknown,
): NetworkError {
  return new NetworkError(code, reason, { field, cause });
}
