/**
 * The one error type every poskey interface throws. `code` is stable (POSKEY_ERR_*) and safe to
 * match on; `field` names the input at fault; the message never carries key or PIN material.
 */
export class PoskeyError extends Error {
  readonly code: string;
  readonly field: string | undefined;
  readonly reason: string;

  constructor(code: string, reason: string, options: { field?: string | undefined; cause?: unknown } = {}) {
    super(options.field ? `${options.field}: ${reason}` : reason, { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.field = options.field;
    this.reason = reason;
  }

  toJSON(): { code: string; field?: string; message: string } {
    return this.field === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, field: this.field, message: this.message };
  }
}

/** Errors from src/crypto: bad key lengths, parity, formats, failed integrity checks. */
export class CryptoError extends PoskeyError {}

export function isPoskeyError(e: unknown): e is PoskeyError {
  return e instanceof PoskeyError;
}
