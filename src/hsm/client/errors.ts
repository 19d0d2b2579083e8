/**
 * Errors of the HSM clients. Two families:
 *
 * - The HSM said no: the TCP client gets a payShield two-character error code back, and raises an
 *   `HsmRemoteError` with code `POSKEY_ERR_HSM_<xx>` (e.g. POSKEY_ERR_HSM_15), the code itself in
 *   `payShield`, the command in `command`, and the code's meaning as the reason. The in-process
 *   client raises the HSM's own error (its code, field and reason unchanged) with `payShield` filled
 *   from the one mapping table (payshield/errors.ts). So `payShield` reads the same through either
 *   client, and `payShieldCodeOf(err)` is the client-agnostic way for a host to branch (01
 *   verification failure vs 15 bad input vs 10/11 key parity…).
 * - The path to the HSM failed: timeouts, no reachable HSM, lost connections, a closed client,
 *   malformed answers. These have their own codes (`CLIENT_ERRORS`) and no payShield code of their
 *   own (a real payShield never sent one).
 */
import { isPoskeyError } from '../../errors.js';
import { HsmError } from '../errors.js';
import { payShieldErrorMeaning, toPayShieldError } from '../payshield/errors.js';

/** Codes raised by the clients themselves, with when. */
export const CLIENT_ERRORS = Object.freeze({
  POSKEY_ERR_HSM_TIMEOUT: 'no response within timeoutMs (the request was sent)',
  POSKEY_ERR_HSM_UNAVAILABLE: 'no HSM connection could take the request before its deadline',
  POSKEY_ERR_HSM_CONNECTION: 'the connection carrying the request was lost and no retry was left',
  POSKEY_ERR_HSM_CLOSED: 'the client is closed, or closed before the request completed',
  POSKEY_ERR_HSM_OVERLOADED: 'more requests are waiting for a connection than maxQueued',
  POSKEY_ERR_HSM_PROTOCOL: 'the response is malformed or does not answer the command sent',
  POSKEY_ERR_HSM_UNSUPPORTED: 'the operation has no payShield host command',
  POSKEY_ERR_HSM_OPTION: 'invalid client options',
  POSKEY_ERR_HSM_REQUEST: 'the request cannot be expressed in the command layout',
} as const);

export type ClientErrorCode = keyof typeof CLIENT_ERRORS;

/** An error raised by the client side (transport, options, encoding), never by the HSM. */
export function clientError(
  code: ClientErrorCode,
  reason: string,
  options: { field?: string | undefined; cause?: unknown } = {},
): HsmError {
  return new HsmError(code, reason, options);
}

/** The HSM answered a command with a non-zero error code. */
export class HsmRemoteError extends HsmError {
  /** The command that failed, e.g. 'CA'. */
  readonly command: string;
  declare readonly payShield: string;

  constructor(command: string, errorCode: string, field?: string) {
    const meaning = payShieldErrorMeaning(errorCode) ?? 'unknown payShield error code';
    super(`POSKEY_ERR_HSM_${errorCode}`, `${command} failed with payShield error ${errorCode}: ${meaning}`, {
      field,
      payShield: errorCode,
    });
    this.command = command;
  }
}

/**
 * The payShield error code an error stands for, whichever client raised it: the code the HSM sent
 * (TCP), or the code the HSM would have sent for that error (in process). Undefined for a failure
 * of the path to the HSM (timeout, connection, closed client…), which has no payShield code.
 */
export function payShieldCodeOf(err: unknown): string | undefined {
  if (err instanceof HsmError) {
    if (err.payShield !== undefined) return err.payShield;
    if (Object.hasOwn(CLIENT_ERRORS, err.code)) return undefined;
  }
  return isPoskeyError(err) ? toPayShieldError(err) : undefined;
}

/**
 * An in-process HSM error as the clients raise it: the same code, field and reason, plus the
 * payShield code the wire would carry. A non-poskey error (a bug) becomes POSKEY_ERR_HSM_41,
 * exactly what the TCP client would see, with the original as `cause`.
 */
export function withPayShieldCode(err: unknown, command?: string): HsmError {
  if (err instanceof HsmError && err.payShield !== undefined) return err;
  if (!isPoskeyError(err)) {
    const e = new HsmRemoteError(command ?? 'HSM', '41');
    Object.defineProperty(e, 'cause', { value: err, enumerable: false });
    return e;
  }
  return new HsmError(err.code, err.reason, {
    field: err.field,
    cause: err,
    payShield: toPayShieldError(err),
  });
}
