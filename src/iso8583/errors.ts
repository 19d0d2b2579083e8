/**
 * Typed ISO 8583 errors. Every failure in the codec, decode or encode, is an `IsoError` with a stable
 * code, the path of the field at fault (outer to inner, e.g. ['55', '9F26']) and, when decoding, the
 * byte offset in the message body (MTI = offset 0). Messages name lengths and offsets, never values,
 * so a PAN, track or PIN block never ends up in a log line.
 */
import { PoskeyError } from '../errors.js';

/** The stable error codes of the codec, one per failure class. */
export const IsoErrorCode = {
  /** The buffer ends before a prefix, a field or the bitmap is complete. */
  TRUNCATED: 'POSKEY_ERR_ISO_TRUNCATED',
  /** A length prefix is malformed, above the field's maximum, or a subfield does not fit. */
  LENGTH: 'POSKEY_ERR_ISO_LENGTH',
  /** A value is not valid for its encoding: a BCD nibble above 9, a non-digit, a bad pad nibble. */
  ENCODING: 'POSKEY_ERR_ISO_ENCODING',
  /** The bitmap is malformed: bad hex, a secondary bitmap the dialect does not allow, or an empty one. */
  BITMAP: 'POSKEY_ERR_ISO_BITMAP',
  /** The bitmap (or the message object) names a field the dialect does not define. */
  UNKNOWN_FIELD: 'POSKEY_ERR_ISO_UNKNOWN_FIELD',
  /** BER-TLV data in a TLV field is malformed. */
  TLV: 'POSKEY_ERR_ISO_TLV',
  /** The MTI is not four decimal digits. */
  MTI: 'POSKEY_ERR_ISO_MTI',
  /** A message object cannot be packed: a missing MTI, a value of the wrong type, length or alphabet. */
  PACK: 'POSKEY_ERR_ISO_PACK',
  /** Bytes are left after the last field the bitmap announces. */
  TRAILING: 'POSKEY_ERR_ISO_TRAILING',
  /** The input is not bytes (unpack) or not an object (pack). */
  INPUT: 'POSKEY_ERR_ISO_INPUT',
  /** An unknown dialect name, or a dialect table that fails validation. */
  DIALECT: 'POSKEY_ERR_ISO_DIALECT',
} as const;

export type IsoErrorCodeValue = (typeof IsoErrorCode)[keyof typeof IsoErrorCode];

function describePath(path: readonly string[]): string {
  if (path.length === 0) return '';
  const head = path[0]!;
  if (head === 'MTI' || head === 'bitmap' || head === 'dialect') return path.join('.');
  return `field ${path.join('.')}`;
}

/**
 * A codec error. `message` reads like `field 35: length 41 exceeds maximum 37 at offset 57`;
 * `field` is the dotted path ('35', '55.9F26', 'MTI', 'bitmap'); `offset` is the byte offset in the
 * message body where decoding failed (undefined for pack errors); `detail` is the reason alone.
 */
export class IsoError extends PoskeyError {
  readonly fieldPath: readonly string[];
  readonly offset: number | undefined;
  readonly detail: string;

  constructor(
    code: IsoErrorCodeValue,
    detail: string,
    fieldPath: readonly string[] = [],
    offset?: number,
    cause?: unknown,
  ) {
    const reason = offset === undefined ? detail : `${detail} at offset ${offset}`;
    super(code, reason, { field: fieldPath.length ? fieldPath.join('.') : undefined, cause });
    const where = describePath(fieldPath);
    this.message = where ? `${where}: ${reason}` : reason;
    this.fieldPath = Object.freeze([...fieldPath]);
    this.offset = offset;
    this.detail = detail;
  }

  /** The same error with `outer` prepended to its path (used as errors bubble out of subfields and TLVs). */
  within(outer: readonly string[], offset?: number): IsoError {
    return new IsoError(
      this.code as IsoErrorCodeValue,
      this.detail,
      [...outer, ...this.fieldPath],
      this.offset ?? offset,
      this.cause,
    );
  }
}

export function isIsoError(e: unknown): e is IsoError {
  return e instanceof IsoError;
}

/**
 * Gives any failure caught inside field `path` that path: IsoErrors keep their code and offset (or take
 * `offset` when they have none, as subfield errors do), anything
 * else (which would be a codec bug) becomes a typed ENCODING error so callers never see an untyped throw.
 */
export function atPath(e: unknown, path: readonly string[], offset?: number): IsoError {
  if (e instanceof IsoError) return e.within(path, offset);
  return new IsoError(IsoErrorCode.ENCODING, 'unexpected failure while decoding', path, offset, e);
}
