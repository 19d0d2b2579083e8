/**
 * Errors the POSP host raises. Every code is stable and safe to match on; `field` names the
 * option or input at fault. Messages never carry card data, PIN blocks or keys.
 *
 * Transaction failures are not errors: a step that cannot go on aborts the transaction with a
 * response code (A0, 94, 97, 98…) and the terminal gets an answer. These codes are for the host's
 * own set-up (config, listeners, zone keys) and for the network link's callers.
 */
import { PoskeyError } from '../errors.js';

export type HostErrorCode =
  /** A config value is missing or out of range (`field` is its path, e.g. `network.port`). */
  | 'POSKEY_ERR_HOST_CONFIG'
  /** The terminal listener could not start (port in use, address not available). */
  | 'POSKEY_ERR_HOST_LISTEN'
  /** The server was asked to listen twice, or used after close(). */
  | 'POSKEY_ERR_HOST_STATE'
  /** Zone keys (ZMK components, zone file, stored zone key blocks) are missing or do not verify. */
  | 'POSKEY_ERR_HOST_ZONE'
  /** A ZPK or ZAK delivered by the network does not have its check value: refused, the old pair stays. */
  | 'POSKEY_ERR_HOST_ZONE_KCV'
  /** A sign-on or key exchange with the network failed (no answer, refused, bad MAC, no ZMK). */
  | 'POSKEY_ERR_HOST_KEY_EXCHANGE'
  /** A route table names a step whose `requires` no earlier step provides. */
  | 'POSKEY_ERR_HOST_ROUTE'
  /** The network did not answer a request within its deadline. */
  | 'POSKEY_ERR_NETWORK_TIMEOUT'
  /** The request could not be sent: no connection to the network within the deadline. */
  | 'POSKEY_ERR_NETWORK_DOWN'
  /** The connection dropped after the request was sent: its outcome is unknown. */
  | 'POSKEY_ERR_NETWORK_LOST'
  /** The link was closed (host shutting down). */
  | 'POSKEY_ERR_NETWORK_CLOSED'
  /** Too many requests in flight on the link. */
  | 'POSKEY_ERR_NETWORK_BUSY';

export class HostError extends PoskeyError {
  declare readonly code: HostErrorCode;

  constructor(
    code: HostErrorCode,
    reason: string,
    options: { field?: string | undefined; cause?: unknown } = {},
  ) {
    super(code, reason, options);
  }
}

export function hostError(code: HostErrorCode, reason: string, field?: string, cause?: unknown): HostError {
  return new HostError(code, reason, { field, cause });
}
