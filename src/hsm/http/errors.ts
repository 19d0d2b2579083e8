/**
 * The HTTP API's error catalogue and the one mapping from any thrown error to a status and an
 * AWS-style body `{ type, code, field?, message, reason? }`:
 *
 * - `type` is the AWS Payment Cryptography exception name (ValidationException, ResourceNotFound…),
 *   also sent as the `x-amzn-errortype` header, so AWS-minded clients can branch on it;
 * - `code` is the stable poskey code (`POSKEY_ERR_*`), the specific answer;
 * - `field` names the input at fault (a JSON path into the body, or a parameter name);
 * - `reason` only on VerificationFailedException: INVALID_MAC, INVALID_PIN, … (AWS `Reason`).
 *
 * Bodies are built from codes and the errors' own reasons, which never carry key material; a
 * non-poskey error (a bug) is answered with a fixed message, never its text or stack.
 */
import { isPoskeyError, PoskeyError } from '../../errors.js';

/** AWS exception names used as `type`. */
export type ErrorType =
  | 'ValidationException'
  | 'AccessDeniedException'
  | 'ResourceNotFoundException'
  | 'ConflictException'
  | 'VerificationFailedException'
  | 'UnknownOperationException'
  | 'ServiceUnavailableException'
  | 'InternalServerException';

export interface ErrorSpec {
  status: number;
  type: ErrorType;
  /** When the API answers with this code (for docs/hsm-http-api.md and the tests). */
  doc: string;
}

/** Codes defined by the HTTP layer. Other poskey codes map through `statusOf`. */
export const HTTP_ERRORS = Object.freeze({
  POSKEY_ERR_UNAUTHORIZED: {
    status: 401,
    type: 'AccessDeniedException',
    doc: 'missing or unknown API token',
  },
  POSKEY_ERR_VALIDATION: {
    status: 400,
    type: 'ValidationException',
    doc: 'a field breaks the route schema (type, pattern, length, range, unknown property)',
  },
  POSKEY_ERR_JSON: { status: 400, type: 'ValidationException', doc: 'the body is not valid JSON' },
  POSKEY_ERR_MEDIA_TYPE: {
    status: 415,
    type: 'ValidationException',
    doc: 'the body is not application/json',
  },
  POSKEY_ERR_BODY_LIMIT: { status: 413, type: 'ValidationException', doc: 'the body exceeds the size limit' },
  POSKEY_ERR_ROUTE: { status: 404, type: 'UnknownOperationException', doc: 'no such route' },
  POSKEY_ERR_KEY_NOT_FOUND: { status: 404, type: 'ResourceNotFoundException', doc: 'no key with this id' },
  POSKEY_ERR_ALIAS_NOT_FOUND: {
    status: 404,
    type: 'ResourceNotFoundException',
    doc: 'no such alias, or the alias names no key',
  },
  POSKEY_ERR_KEY_DELETED: {
    status: 404,
    type: 'ResourceNotFoundException',
    doc: 'the key is DELETE_COMPLETE: its deletion date has passed and its material is gone',
  },
  POSKEY_ERR_ALIAS_EXISTS: { status: 409, type: 'ConflictException', doc: 'the alias already exists' },
  POSKEY_ERR_KEY_DISABLED: {
    status: 409,
    type: 'ConflictException',
    doc: 'the key is disabled (stop-usage, or restored and not yet started)',
  },
  POSKEY_ERR_KEY_DELETE_PENDING: {
    status: 409,
    type: 'ConflictException',
    doc: 'the key is scheduled for deletion (DELETE_PENDING); restore it first',
  },
  POSKEY_ERR_KEY_STATE: {
    status: 409,
    type: 'ConflictException',
    doc: 'the lifecycle call does not fit the key state (restore a key not pending deletion, …)',
  },
  POSKEY_ERR_VERIFICATION_FAILED: {
    status: 400,
    type: 'VerificationFailedException',
    doc: 'a MAC (reason INVALID_MAC) or PIN (INVALID_PIN) did not verify',
  },
  POSKEY_ERR_INTERNAL: { status: 500, type: 'InternalServerException', doc: 'a bug: the details are logged' },
  POSKEY_ERR_HTTP_CONFIG: {
    status: 500,
    type: 'InternalServerException',
    doc: 'createHsmHttpApp options are invalid (thrown at start-up, never sent to a client)',
  },
} satisfies Record<string, ErrorSpec>) as Readonly<Record<HttpErrorCode, ErrorSpec>>;

export type HttpErrorCode =
  | 'POSKEY_ERR_UNAUTHORIZED'
  | 'POSKEY_ERR_VALIDATION'
  | 'POSKEY_ERR_JSON'
  | 'POSKEY_ERR_MEDIA_TYPE'
  | 'POSKEY_ERR_BODY_LIMIT'
  | 'POSKEY_ERR_ROUTE'
  | 'POSKEY_ERR_KEY_NOT_FOUND'
  | 'POSKEY_ERR_ALIAS_NOT_FOUND'
  | 'POSKEY_ERR_KEY_DELETED'
  | 'POSKEY_ERR_ALIAS_EXISTS'
  | 'POSKEY_ERR_KEY_DISABLED'
  | 'POSKEY_ERR_KEY_DELETE_PENDING'
  | 'POSKEY_ERR_KEY_STATE'
  | 'POSKEY_ERR_VERIFICATION_FAILED'
  | 'POSKEY_ERR_INTERNAL'
  | 'POSKEY_ERR_HTTP_CONFIG';

/** AWS verification failure reasons. */
export type VerificationReason =
  | 'INVALID_MAC'
  | 'INVALID_PIN'
  | 'INVALID_VALIDATION_DATA'
  | 'INVALID_AUTH_REQUEST_CRYPTOGRAM';

/** An error raised by the HTTP layer; `code` is one of HTTP_ERRORS. */
export class HttpApiError extends PoskeyError {
  constructor(
    code: HttpErrorCode,
    reason: string,
    options: { field?: string | undefined; cause?: unknown } = {},
  ) {
    super(code, reason, options);
  }
}

/** Invalid createHsmHttpApp options (thrown by the factory, never sent to a client). */
export class HttpConfigError extends HttpApiError {
  constructor(reason: string, field: string) {
    super('POSKEY_ERR_HTTP_CONFIG', reason, { field });
  }
}

/** A MAC or PIN that did not verify (AWS VerificationFailedException with its Reason). */
export class VerificationFailedError extends HttpApiError {
  readonly verification: VerificationReason;

  constructor(verification: VerificationReason, reason: string, field?: string) {
    super('POSKEY_ERR_VERIFICATION_FAILED', reason, { field });
    this.verification = verification;
  }
}

/** Lower-layer codes that are the server's fault or state, not the caller's input. */
const OTHER_CODES: Readonly<Record<string, ErrorSpec>> = Object.freeze({
  POSKEY_ERR_KEY_DESTROYED: {
    status: 500,
    type: 'InternalServerException',
    doc: 'a key handle was destroyed',
  },
  POSKEY_ERR_RANDOM: { status: 500, type: 'InternalServerException', doc: 'the random source failed' },
  POSKEY_ERR_LMK_UNKNOWN: {
    status: 503,
    type: 'ServiceUnavailableException',
    doc: 'the LMK the key is stored under is not loaded',
  },
  POSKEY_ERR_AUDIT_IO: {
    status: 503,
    type: 'ServiceUnavailableException',
    doc: 'the audit log cannot be written; the HSM fails closed',
  },
  POSKEY_ERR_AUDIT_CLOSED: {
    status: 503,
    type: 'ServiceUnavailableException',
    doc: 'the audit log is closed (the service is shutting down)',
  },
});

/** Default for any other poskey code: the input was refused (bad hex, key usage, KCV mismatch, …). */
const INPUT_ERROR: ErrorSpec = { status: 400, type: 'ValidationException', doc: 'input refused' };

/** Status and type for a poskey error code. */
export function specOf(code: string): ErrorSpec {
  if (Object.hasOwn(HTTP_ERRORS, code)) return HTTP_ERRORS[code as HttpErrorCode];
  if (Object.hasOwn(OTHER_CODES, code)) return OTHER_CODES[code]!;
  return INPUT_ERROR;
}

export interface ErrorBody {
  type: ErrorType;
  code: string;
  field?: string;
  message: string;
  reason?: VerificationReason;
}

export interface HttpErrorAnswer {
  status: number;
  body: ErrorBody;
  /** True for a 5xx answer to a non-poskey error: log it as a bug. */
  internal: boolean;
}

const INTERNAL_MESSAGE = 'internal error';

/**
 * Turns a thrown value into the answer. Poskey errors keep their code, field and reason text
 * (fields already renamed to the request's by `hsmCall`); anything else is an internal error
 * answered with a fixed message.
 */
export function answerFor(err: unknown): HttpErrorAnswer {
  if (!isPoskeyError(err)) {
    const spec = HTTP_ERRORS.POSKEY_ERR_INTERNAL;
    return {
      status: spec.status,
      body: { type: spec.type, code: 'POSKEY_ERR_INTERNAL', message: INTERNAL_MESSAGE },
      internal: true,
    };
  }
  const spec = specOf(err.code);
  const field = err.field;
  const body: ErrorBody = {
    type: spec.type,
    code: err.code,
    message: field === undefined ? err.reason : `${field}: ${err.reason}`,
  };
  if (field !== undefined) body.field = field;
  if (err instanceof VerificationFailedError) body.reason = err.verification;
  return { status: spec.status, body, internal: false };
}

/**
 * Renames a field path by its longest mapped prefix. An index right after the prefix is kept
 * (`source.components[1]` → `keyMaterial.keyComponents.components[1]`); a deeper part naming the
 * HSM's internals is dropped (`key.keyBlock.usage` → `keyIdentifier`).
 */
export function mapField(field: string, fieldMap?: Readonly<Record<string, string>>): string {
  if (fieldMap === undefined) return field;
  let best: string | undefined;
  for (const k of Object.keys(fieldMap)) {
    const hit = field === k || field.startsWith(`${k}.`) || field.startsWith(`${k}[`);
    if (hit && (best === undefined || k.length > best.length)) best = k;
  }
  if (best === undefined) return field;
  const index = /^\[\d+\]/.exec(field.slice(best.length))?.[0] ?? '';
  return `${fieldMap[best]}${index}`;
}

/** Ajv error → field path: `/keyMaterial/components/1` + missing `x` → `keyMaterial.components[1].x`. */
export function fieldOfValidation(v: {
  instancePath?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}): string {
  const parts = (v.instancePath ?? '')
    .split('/')
    .filter((p) => p !== '')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const extra = v.params?.missingProperty ?? v.params?.additionalProperty;
  if (typeof extra === 'string') parts.push(extra);
  return parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc === '' ? p : `${acc}.${p}`), '');
}

/** Ajv messages name the rule broken, never the value (no `verbose`); unknown-property gets its own. */
export function validationReason(v: { keyword?: string; message?: string }): string {
  if (v.keyword === 'additionalProperties') return 'unknown property';
  if (v.keyword === 'required') return 'is required';
  return v.message ?? 'is invalid';
}
