/**
 * Errors raised by the software HSM. They are ordinary PoskeyErrors (stable `POSKEY_ERR_*` code,
 * `field`, no key material in the message) that may also carry the payShield error code the wire
 * layer should answer with, when the code alone does not decide it.
 */
import { PoskeyError } from '../errors.js';

export class HsmError extends PoskeyError {
  /** Two-character payShield error code to answer with, overriding the table in payshield/errors.ts. */
  readonly payShield: string | undefined;

  constructor(
    code: string,
    reason: string,
    options: { field?: string | undefined; cause?: unknown; payShield?: string | undefined } = {},
  ) {
    super(code, reason, options);
    this.payShield = options.payShield;
  }
}
