/**
 * API tokens: `Authorization: Bearer <token>`. Configured tokens are kept only as SHA-256 digests
 * and a presented token is compared with every one of them in constant time (equal-length digests,
 * `timingSafeEqual`, no early exit), so timing reveals neither a prefix nor which token matched.
 * Errors never echo the header. The audit actor is `token:` + 12 hex digits of the digest: enough
 * to tell tokens apart, too short to be mistaken for key material by the audit log.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { HttpApiError, HttpConfigError } from './errors.js';

/** A custom check: the actor name for a good token, undefined for a bad one. */
export type TokenVerifier = (token: string) => string | undefined;

/** Shortest configured token accepted: 128 bits as hex, or more as base64. */
export const MIN_TOKEN_LENGTH = 16;
/** Longest bearer token read from a request. */
export const MAX_TOKEN_LENGTH = 512;

const TOKEN_RE = /^[A-Za-z0-9._~+/=-]+$/;
const BEARER_RE = /^Bearer +(\S+) *$/i;

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * A verifier over a fixed token list.
 * @throws POSKEY_ERR_HTTP_CONFIG for an empty list or a token that is short or not token68 text
 */
export function tokenListVerifier(tokens: readonly string[]): TokenVerifier {
  if (!Array.isArray(tokens) || tokens.length === 0) {
    throw new HttpConfigError('at least one API token is required', 'tokens');
  }
  const digests = tokens.map((t, i) => {
    if (
      typeof t !== 'string' ||
      t.length < MIN_TOKEN_LENGTH ||
      t.length > MAX_TOKEN_LENGTH ||
      !TOKEN_RE.test(t)
    ) {
      throw new HttpConfigError(
        `API tokens must be ${MIN_TOKEN_LENGTH}-${MAX_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / = -`,
        `tokens[${i}]`,
      );
    }
    return digest(t);
  });
  return (token) => {
    const d = digest(token);
    let match: Buffer | undefined;
    for (const c of digests) {
      if (timingSafeEqual(c, d)) match = c;
    }
    return match === undefined ? undefined : `token:${match.toString('hex').slice(0, 12)}`;
  };
}

function unauthorized(): HttpApiError {
  return new HttpApiError('POSKEY_ERR_UNAUTHORIZED', 'missing or invalid API token', {
    field: 'authorization',
  });
}

/**
 * The actor for a request's Authorization header.
 * @throws POSKEY_ERR_UNAUTHORIZED when the header is missing, not `Bearer <token>`, or the token
 *   is not accepted (one message for all three, so probing learns nothing)
 */
export function authenticate(header: string | string[] | undefined, verify: TokenVerifier): string {
  if (typeof header !== 'string' || header.length > MAX_TOKEN_LENGTH + 16) throw unauthorized();
  const m = BEARER_RE.exec(header);
  const token = m?.[1];
  if (token === undefined || token.length > MAX_TOKEN_LENGTH || !TOKEN_RE.test(token)) throw unauthorized();
  let actor: string | undefined;
  try {
    actor = verify(token);
  } catch {
    actor = undefined;
  }
  if (typeof actor !== 'string' || actor.length === 0) throw unauthorized();
  return actor;
}
