/**
 * Errors of the PIN pad and the terminal simulator. Both are ordinary PoskeyErrors: a stable
 * `POSKEY_ERR_*` code, the `field` at fault, and a message that never carries a key, a PIN or a PAN.
 */
import { PoskeyError } from '../errors.js';

/** PIN pad failures: every code the secure device can raise. */
export const PinPadErrorCode = Object.freeze({
  /** A slot number outside the device, or a slot whose kind does not fit the call (a TMK slot as a target of a working key). */
  SLOT: 'POSKEY_ERR_PINPAD_SLOT',
  /** The slot holds no key. */
  EMPTY: 'POSKEY_ERR_PINPAD_EMPTY',
  /** The key in the slot may not do this (a MAC key cannot encrypt PINs). */
  ROLE: 'POSKEY_ERR_PINPAD_ROLE',
  /** Unknown algorithm, or one that does not fit the key under it or the operation. */
  ALGORITHM: 'POSKEY_ERR_PINPAD_ALGORITHM',
  /** A key or cryptogram of the wrong length, or not hex. */
  KEY: 'POSKEY_ERR_PINPAD_KEY',
  /** The check value of a key to load does not match: nothing was loaded. */
  KCV: 'POSKEY_ERR_PINPAD_KCV',
  /** The device was attacked and zeroised; only a new injection brings it back. */
  TAMPERED: 'POSKEY_ERR_PINPAD_TAMPERED',
  /** The sealed store cannot be opened (wrong device secret, corrupted or unknown file). */
  STORE: 'POSKEY_ERR_PINPAD_STORE',
  /** A device option (serial, slot count, application name) is invalid. */
  OPTION: 'POSKEY_ERR_PINPAD_OPTION',
});

export class PinPadError extends PoskeyError {}

/** Terminal application, connection and fleet failures. */
export const TerminalErrorCode = Object.freeze({
  /** Terminal or fleet configuration is invalid (TID length, algorithm and sign-in code disagree, …). */
  CONFIG: 'POSKEY_ERR_TERMINAL_CONFIG',
  /** Card data (PAN, expiry, track 2) or an amount cannot be used. */
  INPUT: 'POSKEY_ERR_TERMINAL_INPUT',
  /** The host cannot be reached, or the connection dropped with the request in flight. */
  CONNECTION: 'POSKEY_ERR_TERMINAL_CONNECTION',
  /** No response within the response timeout. */
  TIMEOUT: 'POSKEY_ERR_TERMINAL_TIMEOUT',
  /** The host's response is malformed or is not the answer to the request. */
  RESPONSE: 'POSKEY_ERR_TERMINAL_RESPONSE',
  /** The host declined the sign-in, or its key block is unusable. */
  SIGN_IN: 'POSKEY_ERR_TERMINAL_SIGN_IN',
  /** A pending reversal could not be delivered, so the next transaction is refused. */
  REVERSAL_PENDING: 'POSKEY_ERR_TERMINAL_REVERSAL_PENDING',
  /** The data directory holds a state or reversal file that cannot be read. */
  STATE: 'POSKEY_ERR_TERMINAL_STATE',
  /** The same MTI and STAN is already in flight on the connection. */
  DUPLICATE: 'POSKEY_ERR_TERMINAL_DUPLICATE',
  /** The terminal was closed. */
  CLOSED: 'POSKEY_ERR_TERMINAL_CLOSED',
});

export class TerminalError extends PoskeyError {}
