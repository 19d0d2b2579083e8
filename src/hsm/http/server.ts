/**
 * The HSM's HTTP JSON API, modelled on AWS Payment Cryptography: a Fastify app built by a factory
 * (the caller listens; tests use `inject()`), one route table (routes-*.ts) that both Fastify and
 * the OpenAPI document are built from, one error handler, bearer-token auth, pino logging that
 * never records request bodies and redacts tokens, PANs, PIN blocks and key material by path, and
 * (given the HSM's audit log) one audit record per key-management call (audit.ts).
 */
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { isPoskeyError } from '../../errors.js';
import type { Diagnostics, HsmApi } from '../api.js';
import { AuditLog } from '../audit.js';
import { type ApiAuditFacts, ApiAuditor, apiAction } from './audit.js';
import { authenticate, type TokenVerifier, tokenListVerifier } from './auth.js';
import {
  answerFor,
  fieldOfValidation,
  HttpApiError,
  HttpConfigError,
  type HttpErrorAnswer,
  type HttpErrorCode,
  validationReason,
} from './errors.js';
import { KeyTable } from './key-table.js';
import { Arns } from './model.js';
import { buildOpenApi, type OpenApiInfo } from './openapi.js';
import type { RouteDeps, RouteSpec } from './route.js';
import { ALIAS_ROUTES } from './routes-aliases.js';
import { DATA_ROUTES } from './routes-data.js';
import { KEY_ROUTES } from './routes-keys.js';
import { META_ROUTES, OPENAPI_ROUTE } from './routes-meta.js';
import type { JsonSchema } from './schemas.js';

export interface HttpLoggerOptions {
  /** pino level, default 'info'. */
  level?: string;
  /** Where log lines go (default stdout); tests capture them here. */
  stream?: { write(line: string): void };
}

export interface HsmHttpOptions {
  hsm: HsmApi;
  /** The HSM's key table. The caller owns it and closes it after the app. */
  keyTable: KeyTable;
  /** Accepted bearer tokens (16–512 characters), or a verifier returning the actor name. */
  tokens: readonly string[] | TokenVerifier;
  /** false: no logging; true or options: pino with redaction (default true). */
  logger?: boolean | HttpLoggerOptions;
  /** ARN instance name, `arn:poskey:hsm:<instance>:key/…`; default 'local'. */
  instance?: string;
  /** Largest request body in bytes; default 64 KiB. */
  bodyLimit?: number;
  openapi?: OpenApiInfo;
  /**
   * The HSM's audit log (the caller owns it and closes it after the app). Given, every
   * key-management call and every purge is recorded (audit.ts); the app then fails closed when the
   * log cannot be written.
   */
  audit?: AuditLog;
  /**
   * What GET /diagnostics answers (more fields may be added: `dev`, `audit`, `payShield`, see the
   * Diagnostics schema); default: the HSM's diagnostics plus the audit log position.
   */
  diagnostics?: () => Diagnostics;
}

/**
 * Paths pino censors wherever they occur in a log object. Bodies are not logged at all; these
 * catch anything that gets logged by mistake (a handler logging its input, a future debug line).
 */
export const REDACT_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'body',
  'req.body',
  ...['pan', 'primaryAccountNumber', 'pinBlock', 'encryptedPinBlock', 'key', 'keyMaterial', 'components']
    .concat(['plainText', 'keyBlock', 'token'])
    .flatMap((k) => [k, `*.${k}`, `*.*.${k}`]),
];

/** The API's routes, without the OpenAPI document route. */
export const HSM_ROUTES: readonly RouteSpec[] = [
  ...KEY_ROUTES,
  ...ALIAS_ROUTES,
  ...DATA_ROUTES,
  ...META_ROUTES,
];

/** The OpenAPI document of the API, the route serving it included. */
export function hsmOpenApi(info?: OpenApiInfo): Record<string, unknown> {
  return buildOpenApi([...HSM_ROUTES, OPENAPI_ROUTE], info);
}

const DEFAULT_BODY_LIMIT = 64 * 1024;
const INSTANCE_RE = /^[a-z0-9-]{1,32}$/;

interface RouteConfig {
  auth: boolean;
  numericQuery: readonly string[];
  /** The audit action of a key-management route. */
  audit?: string;
}

function checkOptions(opts: HsmHttpOptions): TokenVerifier {
  if (opts === null || typeof opts !== 'object') throw new HttpConfigError('options are required', 'options');
  const h = opts.hsm as unknown as Record<string, unknown> | undefined;
  if (h === null || typeof h !== 'object' || typeof h.generateKey !== 'function') {
    throw new HttpConfigError('an HsmApi implementation is required', 'hsm');
  }
  if (!(opts.keyTable instanceof KeyTable)) throw new HttpConfigError('a KeyTable is required', 'keyTable');
  if (opts.instance !== undefined && !INSTANCE_RE.test(opts.instance)) {
    throw new HttpConfigError('instance must be 1-32 of a-z 0-9 -', 'instance');
  }
  const limit = opts.bodyLimit;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1024 || limit > 1024 * 1024)) {
    throw new HttpConfigError('bodyLimit must be an integer from 1024 to 1048576', 'bodyLimit');
  }
  if (opts.audit !== undefined && !(opts.audit instanceof AuditLog)) {
    throw new HttpConfigError('audit must be an AuditLog', 'audit');
  }
  if (opts.diagnostics !== undefined && typeof opts.diagnostics !== 'function') {
    throw new HttpConfigError('diagnostics must be a function', 'diagnostics');
  }
  return typeof opts.tokens === 'function' ? opts.tokens : tokenListVerifier(opts.tokens);
}

function loggerConfig(logger: HsmHttpOptions['logger']) {
  if (logger === false) return false;
  const o = logger === true || logger === undefined ? {} : logger;
  return {
    level: o.level ?? 'info',
    ...(o.stream === undefined ? {} : { stream: o.stream }),
    redact: { paths: [...REDACT_PATHS], censor: '[REDACTED]' },
  };
}

/** Integer query parameters: Fastify's coercion is off (it would also coerce bodies), so these convert here. */
function numericKeys(schema: JsonSchema | undefined): string[] {
  const props = (schema?.properties ?? {}) as Record<string, { type?: string }>;
  return Object.keys(props).filter((k) => props[k]?.type === 'integer');
}

const FIXED_REQUEST_ERRORS: Readonly<Record<string, [HttpErrorCode, string]>> = {
  FST_ERR_CTP_EMPTY_JSON_BODY: ['POSKEY_ERR_JSON', 'the body is empty'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ['POSKEY_ERR_MEDIA_TYPE', 'the body must be application/json'],
  FST_ERR_CTP_BODY_TOO_LARGE: ['POSKEY_ERR_BODY_LIMIT', 'the body is too large'],
};

/**
 * Fastify's own request errors, re-expressed in the catalogue with fixed messages: a JSON parse
 * error's text quotes the body, which may hold key material.
 */
function requestError(err: FastifyError): HttpApiError | undefined {
  if (err.validation !== undefined && err.validation.length > 0) {
    const v = err.validation[0]!;
    const field = fieldOfValidation(v) || (err.validationContext ?? 'body');
    return new HttpApiError('POSKEY_ERR_VALIDATION', validationReason(v), { field });
  }
  const fixed = err.code === undefined ? undefined : FIXED_REQUEST_ERRORS[err.code];
  if (fixed !== undefined) return new HttpApiError(fixed[0], fixed[1]);
  const status = err.statusCode ?? 500;
  if (status === 413) return new HttpApiError('POSKEY_ERR_BODY_LIMIT', 'the body is too large');
  if (status === 415) return new HttpApiError('POSKEY_ERR_MEDIA_TYPE', 'the body must be application/json');
  if (err instanceof SyntaxError || status === 400) {
    return new HttpApiError('POSKEY_ERR_JSON', 'the body is not valid JSON');
  }
  return undefined;
}

/** Errors the router raises before a route is chosen: answered without echoing the URL. */
function routerError(err: FastifyError): HttpApiError {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return new HttpApiError('POSKEY_ERR_VALIDATION', 'a path parameter is too long', { field: 'path' });
  }
  if (err.code === 'FST_ERR_BAD_URL') {
    return new HttpApiError('POSKEY_ERR_VALIDATION', 'the URL is malformed', { field: 'path' });
  }
  return new HttpApiError('POSKEY_ERR_INTERNAL', 'internal error');
}

function answer(err: unknown): HttpErrorAnswer {
  if (isPoskeyError(err)) return answerFor(err);
  return answerFor(requestError(err as FastifyError) ?? err);
}

/** Runs of 16+ hex digits: what a DES key, a component or a PAN looks like (the audit log's rule too). */
const HEX_RUN = /[0-9A-Fa-f]{16,}/g;

/** A bug's name, message and stack for the log, with anything that looks like key material masked. */
function bugReport(err: unknown): { type: string; message: string; stack?: string } {
  const e = err instanceof Error ? err : new Error(String(err));
  const mask = (t: string) => t.replace(HEX_RUN, '[hex]');
  return e.stack === undefined
    ? { type: e.name, message: mask(e.message) }
    : { type: e.name, message: mask(e.message), stack: mask(e.stack) };
}

function sendError(
  err: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  a: HttpErrorAnswer = answer(err),
): FastifyReply {
  if (a.internal) request.log.error({ err: bugReport(err) }, 'internal error');
  else if (a.status >= 500) request.log.error({ code: a.body.code, field: a.body.field }, 'request failed');
  else request.log.info({ code: a.body.code, field: a.body.field, status: a.status }, 'request refused');
  return reply.code(a.status).header('x-amzn-errortype', a.body.type).send(a.body);
}

/**
 * Builds the HSM HTTP app (routes registered, not listening).
 * @throws POSKEY_ERR_HTTP_CONFIG for invalid options (no tokens, a short token, no HSM, no table)
 */
export function createHsmHttpApp(opts: HsmHttpOptions): FastifyInstance {
  const verify = checkOptions(opts);
  const auditor = new ApiAuditor(opts.audit);
  const deps: RouteDeps = {
    hsm: opts.hsm,
    keys: opts.keyTable,
    arns: new Arns(opts.instance ?? 'local'),
    diagnostics: opts.diagnostics ?? defaultDiagnostics(opts.hsm, opts.audit),
  };
  const app = Fastify({
    logger: loggerConfig(opts.logger),
    bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT,
    requestTimeout: 30_000,
    // Long enough for any identifier the schemas allow (322 characters, percent-encoded), so a
    // too-long one gets the field-specific schema error; longer still is refused in frameworkErrors.
    routerOptions: { maxParamLength: 1024 },
    frameworkErrors: (err, request, reply) => sendError(routerError(err), request, reply),
    // Bodies are validated strictly: no coercion ("1" is not 1), no silent removal of unknown keys.
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false },
    },
  });
  const ctx: AppContext = { auditor, actors: new WeakMap(), facts: new WeakMap() };
  const { actors } = ctx;

  app.addHook('onRequest', async (request) => {
    if (configOf(request).auth === false) return;
    actors.set(request, authenticate(request.headers.authorization, verify));
  });
  app.addHook('preValidation', async (request) => {
    const q = request.query as Record<string, unknown>;
    for (const k of configOf(request).numericQuery ?? []) {
      const v = q[k];
      if (typeof v === 'string' && /^-?[0-9]{1,9}$/.test(v)) q[k] = Number(v);
    }
  });
  // JSON only: a text/plain body would otherwise reach the schemas as a string.
  app.removeContentTypeParser('text/plain');
  app.setErrorHandler(async (err, request, reply) => {
    const a = answer(err);
    await auditRefusal(ctx, request, a.body.code);
    return sendError(err, request, reply, a);
  });
  // Purges happen inside table calls, whichever route made them; the clock is the actor.
  const stopPurgeAudit = opts.keyTable.onPurge((keys) => auditor.purged(keys));
  app.addHook('onClose', async () => {
    stopPurgeAudit();
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(
      new HttpApiError('POSKEY_ERR_ROUTE', `no route ${request.method} ${request.url.split('?')[0]}`),
      request,
      reply,
    ),
  );

  for (const route of HSM_ROUTES) register(app, route, deps, ctx);
  const document = hsmOpenApi(opts.openapi);
  register(app, { ...OPENAPI_ROUTE, handler: () => document }, deps, ctx);
  return app;
}

/** Per-app request state: who called, and what an audited call has noted so far. */
interface AppContext {
  auditor: ApiAuditor;
  actors: WeakMap<FastifyRequest, string>;
  facts: WeakMap<FastifyRequest, ApiAuditFacts>;
}

function configOf(r: FastifyRequest): Partial<RouteConfig> {
  return (r.routeOptions?.config ?? {}) as unknown as Partial<RouteConfig>;
}

function defaultDiagnostics(hsm: HsmApi, audit: AuditLog | undefined): () => Diagnostics {
  return () => {
    const d = hsm.diagnostics();
    return audit === undefined ? d : { ...d, audit: { file: audit.path, ...audit.stats() } };
  };
}

/**
 * The error record of a refused key-management call: only for an authenticated caller (a 401 is
 * in the request log, not the audit chain). The path's key identifier or alias stands in for
 * what the handler did not get to note (it never ran after a schema refusal).
 */
async function auditRefusal(ctx: AppContext, request: FastifyRequest, code: string): Promise<void> {
  const action = configOf(request).audit;
  const actor = ctx.actors.get(request);
  if (action === undefined || actor === undefined || !ctx.auditor.enabled) return;
  const p = (request.params ?? {}) as Record<string, unknown>;
  const facts: ApiAuditFacts = {};
  if (typeof p.keyId === 'string') facts.keyId = p.keyId;
  if (typeof p.aliasName === 'string') facts.detail = p.aliasName;
  await ctx.auditor.error(actor, action, { ...facts, ...ctx.facts.get(request) }, code);
}

function register(app: FastifyInstance, route: RouteSpec, deps: RouteDeps, ctx: AppContext): void {
  const status = route.status ?? 200;
  const config: RouteConfig = { auth: route.auth !== false, numericQuery: numericKeys(route.querystring) };
  if (route.audited) config.audit = apiAction(route.operationId);
  app.route({
    method: route.method,
    url: route.url,
    config,
    schema: {
      ...(route.params === undefined ? {} : { params: route.params }),
      ...(route.querystring === undefined ? {} : { querystring: route.querystring }),
      ...(route.body === undefined ? {} : { body: route.body }),
      ...(route.response === undefined ? {} : { response: { [status]: route.response } }),
    },
    handler: async (request, reply) => {
      const actor = ctx.actors.get(request) ?? 'anonymous';
      const facts: ApiAuditFacts = {};
      if (config.audit !== undefined) {
        ctx.facts.set(request, facts);
        ctx.auditor.assertReady(actor, config.audit);
      }
      const out = route.handler(
        {
          params: request.params as Record<string, string>,
          query: request.query as Record<string, unknown>,
          body: request.body,
          actor,
          note: (f) => Object.assign(facts, f),
        },
        deps,
      );
      if (config.audit !== undefined) await ctx.auditor.ok(actor, config.audit, facts);
      reply.code(status);
      return out;
    },
  });
}
