/**
 * The host's admin API: a Fastify app over the registry (`src/host/registry.ts`), JSON in and out,
 * every route but `/health` behind a bearer token (`Authorization: Bearer <token>`; tokens are kept
 * as SHA-256 digests and compared in constant time, see src/hsm/http/auth.ts).
 *
 *   GET    /health                       liveness and what the caller's `health()` adds (no token)
 *   POST   /merchants                    { mid, name, mcc } → 201 merchant (upsert)
 *   GET    /merchants                    { merchants: [...] }
 *   GET    /merchants/:mid
 *   POST   /terminals                    { tid, mid, keyAlgorithm?, serial?, batchNumber?, tmk? } → 201 { terminal, tmk? }
 *                                        tmk: { components: [hex…], kcvs? } | { tr31, kek } | { generate: true, exportUnder }
 *   GET    /terminals?mid=&state=        { terminals: [...] }
 *   GET    /terminals/:tid
 *   PATCH  /terminals/:tid               { state: 'blocked' | 'active' } → terminal
 *   PUT    /terminals/:tid/tmk           { tmk: source } → { terminal, tmk } (new TMK, working keys dropped)
 *   GET    /journal?tid=&status=&limit=… { entries: [...] } (PANs masked; newest first)
 *   GET    /network                      { keys: { keySet, zpkKcv, zakKcv, rotations… }, links: [...] }
 *   POST   /network/rekey                → { keySet, zpkKcv, zakKcv, rotatedAt, reason } (key exchange now)
 *
 * Errors: `{ code, field?, message }` with 400 (validation, key errors such as a KCV mismatch),
 * 401 (token), 404 (unknown route, merchant or terminal), 409 (TID or serial taken), 502 (the
 * network refused a key exchange or delivered keys that do not verify), 503 (the
 * store or the HSM is unavailable), 500 (a bug: fixed message, logged with hex runs masked).
 * Request bodies are never logged: they may hold key components.
 */
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { z } from 'zod';
import { isPoskeyError, PoskeyError } from '../../errors.js';
import { authenticate, type TokenVerifier, tokenListVerifier } from '../../hsm/http/auth.js';
import type { Registry, TmkSource } from '../registry.js';
import {
  journalQuery,
  merchantBody,
  midParams,
  terminalBody,
  terminalPatch,
  terminalQuery,
  tidParams,
  tmkBody,
} from './schemas.js';

export type AdminErrorCode =
  /** A body, query or path parameter does not have the expected shape (`field` is its path). */
  | 'POSKEY_ERR_ADMIN_VALIDATION'
  /** No route for this method and URL. */
  | 'POSKEY_ERR_ADMIN_ROUTE'
  /** The app was built with bad options (no registry, no or short tokens). */
  | 'POSKEY_ERR_ADMIN_CONFIG'
  /** The admin listener could not start (port in use, address not available). */
  | 'POSKEY_ERR_ADMIN_LISTEN'
  /** Something failed that should not have (a bug). */
  | 'POSKEY_ERR_ADMIN_INTERNAL';

export interface AdminAppOptions {
  registry: Registry;
  /** Accepted bearer tokens (16+ characters), or a verifier returning the actor name. */
  tokens: readonly string[] | TokenVerifier;
  /** Extra fields for GET /health (ports, counters). Must not hold secrets: /health needs no token. */
  health?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** pino options, or false (default) for no request log. */
  logger?: false | { level?: string; stream?: { write(line: string): void } };
  /** Largest request body in bytes; default 64 KiB. */
  bodyLimit?: number;
  /** The network link's zone keys and links (the /network routes exist only with it). */
  network?: AdminNetwork;
}

/** What the /network routes ask of the host (src/host/zone-keys.ts, network-links.ts). */
export interface AdminNetwork {
  status(): Promise<Record<string, unknown>>;
  rekey(): Promise<unknown>;
}

interface ErrorBody {
  code: string;
  field?: string;
  message: string;
}

const HEX_RUN = /[0-9A-Fa-f]{16,}/g;
const UNAVAILABLE = new Set(['POSKEY_ERR_STORE_FAILED', 'POSKEY_ERR_STORE_CLOSED', 'POSKEY_ERR_HSM_CLOSED']);
/** The network's fault, not the caller's. */
const BAD_GATEWAY = new Set([
  'POSKEY_ERR_HOST_KEY_EXCHANGE',
  'POSKEY_ERR_HOST_ZONE_KCV',
  'POSKEY_ERR_NETWORK_KEY_DELIVERY',
]);

function adminError(code: AdminErrorCode, reason: string, field?: string): PoskeyError {
  return new PoskeyError(code, reason, { field });
}

/** HTTP status of a poskey error code. */
export function statusOf(code: string): number {
  if (code === 'POSKEY_ERR_UNAUTHORIZED') return 401;
  if (code === 'POSKEY_ERR_ADMIN_ROUTE' || code.endsWith('_NOT_FOUND')) return 404;
  if (code.endsWith('_DUPLICATE')) return 409;
  if (code === 'POSKEY_ERR_ADMIN_INTERNAL') return 500;
  if (BAD_GATEWAY.has(code)) return 502;
  if (UNAVAILABLE.has(code) || /^POSKEY_ERR_HSM_(TIMEOUT|DOWN|UNAVAILABLE|IO|CONNECT)/.test(code)) return 503;
  return 400;
}

function body(e: PoskeyError): ErrorBody {
  return e.field === undefined
    ? { code: e.code, message: e.reason }
    : { code: e.code, field: e.field, message: e.reason };
}

/** Parses `value` with `schema`, or throws POSKEY_ERR_ADMIN_VALIDATION naming the first bad field. */
function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const r = schema.safeParse(value ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.map(String).join('.');
  throw adminError('POSKEY_ERR_ADMIN_VALIDATION', issue.message, path === '' ? where : path);
}

/** Fastify's own request errors (bad JSON, wrong media type, too large), without echoing the body. */
function requestError(err: FastifyError): PoskeyError {
  const status = err.statusCode ?? 500;
  if (status === 413) return adminError('POSKEY_ERR_ADMIN_VALIDATION', 'the body is too large', 'body');
  if (status === 415)
    return adminError('POSKEY_ERR_ADMIN_VALIDATION', 'the body must be application/json', 'body');
  if (status === 400 || err instanceof SyntaxError) {
    return adminError('POSKEY_ERR_ADMIN_VALIDATION', 'the body is not valid JSON', 'body');
  }
  return adminError('POSKEY_ERR_ADMIN_INTERNAL', 'internal error');
}

function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const e = isPoskeyError(err) ? err : requestError(err as FastifyError);
  const status = statusOf(e.code);
  if (status === 500) {
    const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    request.log.error({ bug: text.replace(HEX_RUN, '[hex]') }, 'internal error');
  } else {
    request.log.info({ code: e.code, field: e.field, status }, 'request refused');
  }
  return reply
    .code(status)
    .send(body(status === 500 ? adminError('POSKEY_ERR_ADMIN_INTERNAL', 'internal error') : e));
}

function checkOptions(opts: AdminAppOptions): TokenVerifier {
  if (opts === null || typeof opts !== 'object' || opts.registry === undefined) {
    throw adminError('POSKEY_ERR_ADMIN_CONFIG', 'a registry is required', 'registry');
  }
  if (typeof opts.tokens === 'function') return opts.tokens;
  try {
    return tokenListVerifier(opts.tokens);
  } catch (e) {
    throw new PoskeyError('POSKEY_ERR_ADMIN_CONFIG', isPoskeyError(e) ? e.reason : 'bad tokens', {
      field: 'tokens',
      cause: e,
    });
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    actor: string;
  }
}

/**
 * Builds the admin app (routes registered, not listening: call `listen` or use `inject`).
 * @throws POSKEY_ERR_ADMIN_CONFIG
 */
export function createAdminApp(opts: AdminAppOptions): FastifyInstance {
  const verify = checkOptions(opts);
  const registry = opts.registry;
  const log = opts.logger;
  const app = Fastify({
    logger:
      log === undefined || log === false
        ? false
        : {
            level: log.level ?? 'info',
            ...(log.stream ? { stream: log.stream } : {}),
            redact: { paths: ['req.headers.authorization', 'body', 'req.body'], censor: '[REDACTED]' },
          },
    bodyLimit: opts.bodyLimit ?? 64 * 1024,
  });
  app.decorateRequest('actor', '');
  app.setErrorHandler((err, request, reply) => sendError(err, request, reply));
  app.setNotFoundHandler((request, reply) =>
    sendError(adminError('POSKEY_ERR_ADMIN_ROUTE', 'no such route'), request, reply),
  );
  app.addHook('onRequest', async (request) => {
    if (request.url === '/health' || request.url.startsWith('/health?')) return;
    request.actor = `admin:${authenticate(request.headers.authorization, verify)}`;
  });

  app.get('/health', async () => ({ status: 'ok', ...(opts.health ? await opts.health() : {}) }));

  app.post('/merchants', async (req, reply) => {
    const input = parse(merchantBody, req.body, 'body');
    return reply.code(201).send(await registry.addMerchant(input, req.actor));
  });
  app.get('/merchants', async () => ({ merchants: await registry.listMerchants() }));
  app.get('/merchants/:mid', async (req) => registry.getMerchant(parse(midParams, req.params, 'mid').mid));

  app.post('/terminals', async (req, reply) => {
    const input = parse(terminalBody, req.body, 'body');
    const { tmk, ...rest } = input;
    const created = await registry.addTerminal(
      { ...rest, ...(tmk === undefined ? {} : { tmk: tmk as TmkSource }) },
      req.actor,
    );
    return reply.code(201).send(created);
  });
  app.get('/terminals', async (req) => {
    const q = parse(terminalQuery, req.query, 'query');
    return { terminals: await registry.listTerminals(q) };
  });
  app.get('/terminals/:tid', async (req) => registry.getTerminal(parse(tidParams, req.params, 'tid').tid));
  app.patch('/terminals/:tid', async (req) => {
    const { tid } = parse(tidParams, req.params, 'tid');
    const { state } = parse(terminalPatch, req.body, 'body');
    return registry.setTerminalState(tid, state, req.actor);
  });
  app.put('/terminals/:tid/tmk', async (req) => {
    const { tid } = parse(tidParams, req.params, 'tid');
    const { tmk } = parse(tmkBody, req.body, 'body');
    return registry.replaceTmk(tid, tmk as TmkSource, req.actor);
  });

  app.get('/journal', async (req) => {
    const q = parse(journalQuery, req.query, 'query');
    return { entries: await registry.journal(q) };
  });

  const network = opts.network;
  if (network !== undefined) {
    app.get('/network', async () => network.status());
    app.post('/network/rekey', async (req) => {
      req.log.info({ actor: req.actor }, 'zone key exchange requested');
      return network.rekey();
    });
  }
  return app;
}

/** Starts the admin app on `host:port` (0 = any free port); resolves with the bound port. */
export async function listenAdmin(app: FastifyInstance, host: string, port: number): Promise<number> {
  try {
    await app.listen({ host, port });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new PoskeyError(
      'POSKEY_ERR_ADMIN_LISTEN' satisfies AdminErrorCode,
      `cannot listen on ${host}:${port} (${code})`,
      {
        field: 'adminPort',
        cause: e,
      },
    );
  }
  const address = app.server.address();
  return typeof address === 'object' && address !== null ? address.port : port;
}
