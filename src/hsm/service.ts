/**
 * The HSM as a running service: unseal the LMKs (or make the development LMK), open the audit
 * log, then serve the payShield TCP interface and the HTTP API until closed. `poskey hsm serve`
 * calls `startHsmService`, and so will `poskey start`.
 *
 * Config (zod-checked, unknown keys refused, defaults filled in): from a JSON file, flags and the
 * environment. Secrets never go in the config: the seal passphrase comes from
 * POSKEY_LMK_PASSPHRASE or the caller's prompt, HTTP API tokens from POSKEY_HSM_TOKENS (or the
 * `tokens` list of a config file that is kept as secret as the tokens).
 *
 * Shutdown closes the listeners (no new connections, in-flight commands answered), the key table
 * and the audit log (flushed, fsynced), then zeroises the key cache and the LMKs.
 */
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { z } from 'zod';
import { PoskeyError } from '../errors.js';
import type { Diagnostics } from './api.js';
import { AuditLog } from './audit.js';
import { HsmError } from './errors.js';
import { Hsm } from './hsm.js';
import { KeyTable } from './http/key-table.js';
import type { LmkSet } from './lmk.js';
import type { PayShieldServerStats } from './payshield/server.js';
import { ensureDevLmk, loadSealedLmks, SEALED_LMK_FILE, type SealSecretInput } from './seal.js';

/** Defaults a bare `poskey hsm serve` runs with. */
export const DEFAULT_DATA_DIR = './data/hsm';
export const DEFAULT_TCP_PORT = 1500;
export const DEFAULT_HTTP_PORT = 8443;
export const DEFAULT_HEADER_LENGTH = 4;
/** The audit log inside the data directory. */
export const AUDIT_FILE = 'audit.log';
/** Environment: the seal passphrase, and the HTTP API tokens (comma-separated). */
export const PASSPHRASE_ENV = 'POSKEY_LMK_PASSPHRASE';
export const TOKENS_ENV = 'POSKEY_HSM_TOKENS';
/** Shortest API token accepted: a token is a bearer secret, so it must not be guessable. */
export const MIN_TOKEN_LENGTH = 16;

/** A bad config value; `field` is its path (e.g. `tcpPort`, `tls.cert`). */
export const ERR_CONFIG = 'POSKEY_ERR_HSM_CONFIG';
/** A listener could not start (port in use, address not available). */
export const ERR_LISTEN = 'POSKEY_ERR_HSM_LISTEN';

const port = z.number().int().min(0).max(65535);

/** The service config; every field has a default except the optional TLS and file paths. */
export const hsmServiceConfigSchema = z.strictObject({
  /** Sealed LMK file, dev LMK file, audit log and key table live here. */
  dataDir: z.string().min(1).default(DEFAULT_DATA_DIR),
  /** Development mode: a test LMK made on first start, marked in every block it wraps. */
  dev: z.boolean().default(false),
  /** Listen address for both interfaces. */
  host: z.string().min(1).default('127.0.0.1'),
  tcp: z.boolean().default(true),
  tcpPort: port.default(DEFAULT_TCP_PORT),
  /** payShield message header length (echoed back in every response). */
  headerLength: z.number().int().min(0).max(255).default(DEFAULT_HEADER_LENGTH),
  http: z.boolean().default(true),
  httpPort: port.default(DEFAULT_HTTP_PORT),
  /** HTTP API bearer tokens; POSKEY_HSM_TOKENS adds to them. */
  tokens: z.array(z.string().min(MIN_TOKEN_LENGTH)).default([]),
  /** PEM files; with `ca`, clients must present a certificate chaining to it (mutual TLS). */
  tls: z
    .strictObject({ key: z.string().min(1), cert: z.string().min(1), ca: z.string().min(1).optional() })
    .optional(),
  /** Audit log path; `<dataDir>/audit.log` by default. */
  auditFile: z.string().min(1).optional(),
  /** HTTP API log level (pino, to stderr); 'silent' turns logging off. */
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug']).default('info'),
  /** Key cache capacity of the HSM. */
  cacheSize: z.number().int().positive().optional(),
});

export type HsmServiceConfigInput = z.input<typeof hsmServiceConfigSchema>;
export type HsmServiceConfig = z.output<typeof hsmServiceConfigSchema>;

/**
 * Checks a config and fills in defaults, adding tokens from POSKEY_HSM_TOKENS.
 * @throws POSKEY_ERR_HSM_CONFIG naming the first bad field
 */
export function parseHsmServiceConfig(
  input: unknown,
  env: Record<string, string | undefined> = process.env,
): HsmServiceConfig {
  const parsed = hsmServiceConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || 'config';
    throw new PoskeyError(ERR_CONFIG, issue.message, { field });
  }
  const fromEnv = (env[TOKENS_ENV] ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  for (const t of fromEnv) {
    if (t.length < MIN_TOKEN_LENGTH) {
      throw new PoskeyError(ERR_CONFIG, `tokens must have at least ${MIN_TOKEN_LENGTH} characters`, {
        field: TOKENS_ENV,
      });
    }
  }
  return Object.freeze({ ...parsed.data, tokens: [...new Set([...parsed.data.tokens, ...fromEnv])] });
}

/**
 * Reads a JSON config file (unchecked: `parseHsmServiceConfig` checks it, after flags are merged).
 * @throws POSKEY_ERR_HSM_CONFIG when it cannot be read or is not a JSON object
 */
export async function readHsmConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new PoskeyError(ERR_CONFIG, `cannot read ${path} (${code})`, { field: 'config', cause: e });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new PoskeyError(ERR_CONFIG, `${path} is not valid JSON`, { field: 'config', cause: e });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new PoskeyError(ERR_CONFIG, `${path} must hold a JSON object`, { field: 'config' });
  }
  return doc as Record<string, unknown>;
}

export interface StartHsmServiceOptions {
  /**
   * The seal secret, or a function asked for it only when a sealed file exists (so an operator
   * is not prompted for a passphrase just to be told there is no LMK). Default: POSKEY_LMK_PASSPHRASE.
   */
  secret?: SealSecretInput | (() => SealSecretInput | Promise<SealSecretInput>);
  /** Where notices go (the dev warning, shutdown). Default: stderr. */
  log?: (line: string) => void;
  /** Close gracefully on SIGTERM/SIGINT (the CLI sets this; embedding callers handle signals). */
  handleSignals?: boolean;
  /** Overrides the environment for POSKEY_HSM_TOKENS and POSKEY_LMK_PASSPHRASE (tests). */
  env?: Record<string, string | undefined>;
}

export interface HsmService {
  readonly config: HsmServiceConfig;
  /** The HSM itself, for in-process callers sharing the service. */
  readonly hsm: Hsm;
  readonly host: string;
  /** Bound ports (the real ones when 0 was asked); undefined when that interface is off. */
  readonly tcpPort: number | undefined;
  readonly httpPort: number | undefined;
  readonly dev: boolean;
  readonly lmks: { id: string; kcv: string; dev: boolean; default: boolean }[];
  /** The HSM's diagnostics plus the service's: audit log position, payShield connection counters (what GET /diagnostics answers). */
  diagnostics(): ServiceDiagnostics;
  /** Stops listening, lets in-flight work finish, closes files, zeroises keys. Idempotent. */
  close(): Promise<void>;
  /** Resolves once the service has closed (by `close()` or a signal). */
  readonly closed: Promise<void>;
}

/** What `GET /diagnostics` and `HsmService.diagnostics()` return. */
export interface ServiceDiagnostics extends Diagnostics {
  dev: boolean;
  audit: { file: string; lastSeq: number; writes: number };
  /** Present when the TCP interface runs. */
  payShield?: PayShieldServerStats;
}

/** Path of the production sealed file for a data directory. */
export function sealedLmkPath(dataDir: string): string {
  return join(dataDir, SEALED_LMK_FILE);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The LMKs the service runs on: the dev LMK, or the sealed set opened with the operator's secret. */
async function loadLmks(
  config: HsmServiceConfig,
  options: StartHsmServiceOptions,
  log: (line: string) => void,
): Promise<LmkSet> {
  const dataDir = resolve(config.dataDir);
  if (config.dev) {
    const dev = await ensureDevLmk(dataDir);
    log(dev.warning);
    return dev.lmks;
  }
  const path = sealedLmkPath(dataDir);
  if (!(await exists(path))) {
    throw new HsmError(
      'POSKEY_ERR_LMK_MISSING',
      `no sealed LMK in ${dataDir}: run 'poskey hsm lmk ceremony --data-dir ${config.dataDir}' first, or start with --dev for a development LMK`,
      { field: 'dataDir' },
    );
  }
  const secret = await resolveSecret(options);
  return loadSealedLmks(path, secret);
}

async function resolveSecret(options: StartHsmServiceOptions): Promise<SealSecretInput> {
  const given = options.secret;
  if (typeof given === 'function') return given();
  if (given !== undefined) return given;
  const env = options.env ?? process.env;
  const passphrase = env[PASSPHRASE_ENV];
  if (passphrase === undefined || passphrase === '') {
    throw new HsmError(
      'POSKEY_ERR_LMK_PASSPHRASE',
      `no passphrase to unseal the LMK: set ${PASSPHRASE_ENV}`,
      {
        field: PASSPHRASE_ENV,
      },
    );
  }
  return passphrase;
}

function listenError(what: string, e: unknown): PoskeyError {
  const code = (e as NodeJS.ErrnoException)?.code ?? 'error';
  return new PoskeyError(ERR_LISTEN, `cannot start the ${what} (${code})`, { field: what, cause: e });
}

/** Something with an async close: listeners, the key table, the audit log. */
type Closer = { name: string; close: () => unknown };

/**
 * Starts the HSM service.
 * @throws POSKEY_ERR_HSM_CONFIG, POSKEY_ERR_LMK_MISSING (no sealed LMK and not --dev),
 *   POSKEY_ERR_LMK_PASSPHRASE (no secret), POSKEY_ERR_LMK_UNSEAL (wrong secret or tampered file),
 *   POSKEY_ERR_LMK_DEV (a dev LMK in the production file), POSKEY_ERR_AUDIT_CORRUPT (the audit
 *   log's tail is broken), POSKEY_ERR_HSM_TOKENS (HTTP on without tokens), POSKEY_ERR_HSM_LISTEN
 */
export async function startHsmService(
  input: HsmServiceConfigInput | HsmServiceConfig,
  options: StartHsmServiceOptions = {},
): Promise<HsmService> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const config = parseHsmServiceConfig(input, options.env ?? process.env);
  if (config.http && config.tokens.length === 0 && !config.dev) {
    throw new PoskeyError(
      'POSKEY_ERR_HSM_TOKENS',
      `the HTTP API needs at least one token: set ${TOKENS_ENV}, add "tokens" to the config file, or turn HTTP off`,
      { field: 'tokens' },
    );
  }
  const tls = config.tls === undefined ? undefined : await readTls(config.tls);
  const dataDir = resolve(config.dataDir);
  const lmks = await loadLmks(config, options, log);
  const closers: Closer[] = [];
  let hsm: Hsm | undefined;
  const shutdown = async () => {
    // Listeners first (stop taking work), then the files the work writes to, then the keys.
    for (const c of closers.reverse()) {
      try {
        await c.close();
      } catch (e) {
        log(`poskey hsm: closing the ${c.name} failed: ${(e as Error).message}`);
      }
    }
    hsm?.destroy();
    lmks.destroy();
  };
  try {
    const audit = await AuditLog.open(config.auditFile ?? join(dataDir, AUDIT_FILE));
    closers.push({ name: 'audit log', close: () => audit.close() });
    // Closed in reverse order: this runs once the listeners are shut, just before the log closes.
    closers.push({
      name: 'audit record',
      close: () => audit.append({ actor: 'system', action: 'hsm.stop', lmkId: lmks.defaultId, result: 'ok' }),
    });
    const running = new Hsm({ lmks, audit, ...(config.cacheSize ? { cacheSize: config.cacheSize } : {}) });
    hsm = running;
    await audit.append({
      actor: 'system',
      action: 'hsm.start',
      lmkId: lmks.defaultId,
      kcv: lmks.get().kcv,
      result: 'ok',
      detail: `LMKs ${lmks.ids().join(',')}${config.dev ? ', DEVELOPMENT' : ''}`,
    });
    const tcp = config.tcp ? await startTcp(running, config, tls, closers) : undefined;
    const diagnostics = (): ServiceDiagnostics => ({
      ...running.diagnostics(),
      dev: config.dev,
      audit: { file: audit.path, ...audit.stats() },
      ...(tcp === undefined ? {} : { payShield: tcp.stats() }),
    });
    const httpPort = config.http
      ? await startHttp(
          { hsm: running, audit, diagnostics },
          { ...config, tokens: httpTokens(config, log) },
          dataDir,
          tls,
          closers,
        )
      : undefined;
    return makeService({
      config,
      hsm: running,
      tcpPort: tcp?.port,
      httpPort,
      lmks,
      shutdown,
      options,
      log,
      diagnostics,
    });
  } catch (e) {
    await shutdown();
    throw e;
  }
}

/** The configured tokens; in dev mode without any, one made for this run (the API is never open). */
function httpTokens(config: HsmServiceConfig, log: (line: string) => void): string[] {
  if (config.tokens.length > 0 || !config.dev) return [...config.tokens];
  const token = newApiToken();
  log(`poskey hsm: development mode, HTTP API token for this run: ${token}`);
  return [token];
}

interface TlsFiles {
  key: Buffer;
  cert: Buffer;
  ca?: Buffer;
}

async function readTls(tls: NonNullable<HsmServiceConfig['tls']>): Promise<TlsFiles> {
  const read = async (path: string, field: string) => {
    try {
      return await readFile(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      throw new PoskeyError(ERR_CONFIG, `cannot read ${path} (${code})`, { field, cause: e });
    }
  };
  const out: TlsFiles = { key: await read(tls.key, 'tls.key'), cert: await read(tls.cert, 'tls.cert') };
  if (tls.ca !== undefined) out.ca = await read(tls.ca, 'tls.ca');
  return out;
}

/** The payShield host-command interface. Its listen errors are already poskey errors. */
async function startTcp(
  hsm: Hsm,
  config: HsmServiceConfig,
  tls: TlsFiles | undefined,
  closers: Closer[],
): Promise<{ port: number; stats: () => PayShieldServerStats }> {
  const { createPayShieldServer } = await import('./payshield/server.js');
  const server = createPayShieldServer({
    hsm,
    headerLength: config.headerLength,
    host: config.host,
    port: config.tcpPort,
    ...(tls === undefined ? {} : { tls }),
    logger: pino({ level: config.logLevel, base: { component: 'payshield' } }, process.stderr),
  });
  const { port } = await server.listen();
  closers.push({ name: 'payShield listener', close: () => server.close() });
  return { port, stats: () => server.stats() };
}

/** Binds a server, turning a bind failure (EADDRINUSE…) into POSKEY_ERR_HSM_LISTEN. */
function listen(server: NetServer, host: string, port: number, what: string): Promise<number> {
  return new Promise((resolveListen, reject) => {
    const onError = (e: unknown) => reject(listenError(what, e));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolveListen((server.address() as AddressInfo).port);
    });
  });
}

/** Closes a node server: no new connections; idle keep-alive sockets are dropped so close completes. */
function closeServer(server: NetServer & { closeIdleConnections?: () => void }): Promise<void> {
  return new Promise((resolveClose) => {
    server.close(() => resolveClose());
    server.closeIdleConnections?.();
  });
}

/**
 * The HTTP API. The app is built by `createHsmHttpApp` (with the service's audit log, so every
 * key-management call is audited, and the service's diagnostics for GET /diagnostics) and served
 * by a node http(s) server of ours handing each request to the app's router: that is how TLS is
 * added without the app knowing.
 */
async function startHttp(
  parts: { hsm: Hsm; audit: AuditLog; diagnostics: () => ServiceDiagnostics },
  config: HsmServiceConfig,
  dataDir: string,
  tls: TlsFiles | undefined,
  closers: Closer[],
): Promise<number> {
  const { createHsmHttpApp } = await import('./http/server.js');
  const keyTable = KeyTable.inDataDir(dataDir);
  closers.push({ name: 'key table', close: () => keyTable.close() });
  const app = createHsmHttpApp({
    ...parts,
    keyTable,
    tokens: config.tokens,
    logger: config.logLevel === 'silent' ? false : { level: config.logLevel, stream: process.stderr },
  });
  closers.push({ name: 'HTTP app', close: () => app.close() });
  await app.ready();
  const handler = (req: IncomingMessage, res: ServerResponse) => app.routing(req, res);
  const server = tls === undefined ? createHttpServer(handler) : createHttpsServer(tlsOptions(tls), handler);
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  const port = await listen(server, config.host, config.httpPort, 'HTTP API');
  closers.push({ name: 'HTTP listener', close: () => closeServer(server) });
  return port;
}

function tlsOptions(tls: TlsFiles) {
  return tls.ca === undefined
    ? { key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' as const }
    : {
        key: tls.key,
        cert: tls.cert,
        ca: tls.ca,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2' as const,
      };
}

function makeService(parts: {
  config: HsmServiceConfig;
  hsm: Hsm;
  tcpPort: number | undefined;
  httpPort: number | undefined;
  lmks: LmkSet;
  shutdown: () => Promise<void>;
  options: StartHsmServiceOptions;
  log: (line: string) => void;
  diagnostics: () => ServiceDiagnostics;
}): HsmService {
  const { config, lmks } = parts;
  let closing: Promise<void> | undefined;
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((r) => {
    markClosed = r;
  });
  const signals: NodeJS.Signals[] = parts.options.handleSignals ? ['SIGTERM', 'SIGINT'] : [];
  const onSignal = (signal: NodeJS.Signals) => {
    parts.log(`poskey hsm: ${signal}, closing`);
    void close();
  };
  const close = (): Promise<void> => {
    closing ??= (async () => {
      for (const s of signals) process.off(s, onSignal);
      await parts.shutdown();
      markClosed();
    })();
    return closing;
  };
  for (const s of signals) process.on(s, onSignal);
  const lmkList = lmks.ids().map((id) => ({ ...lmks.get(id).toJSON(), default: id === lmks.defaultId }));
  return {
    config,
    hsm: parts.hsm,
    host: config.host,
    tcpPort: parts.tcpPort,
    httpPort: parts.httpPort,
    dev: config.dev,
    lmks: lmkList,
    diagnostics: parts.diagnostics,
    close,
    closed,
  };
}

/** A random API token, for operators who need one (`poskey hsm serve` prints none by itself). */
export function newApiToken(): string {
  return randomBytes(24).toString('base64url');
}
