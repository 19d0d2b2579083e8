/**
 * Remote key loading over HTTPS: a Fastify plugin over `RklService`, and `createRklServer`, the
 * HTTPS listener of the key distribution host with its own config (TLS certificate and key, the
 * trusted vendor CA, the KDH signing certificate and key).
 *
 *   POST /rkl/v1/token    { tid, certificate, nonce } → 201 { session, token, keyBlockHeader, kcv, … }
 *   POST /rkl/v1/confirm  { session, kcv }            → 200 { tid, serial, kcv, serialRecorded }
 *
 * Errors: `{ code, field, message }` with 400 (bad JSON or input, tampered or foreign certificate,
 * KCV mismatch), 403 (certificate outside its validity, wrong chain or role), 404 (unknown TID or
 * session), 409 (replayed nonce, wrong device), 503 (HSM or store unavailable), 500 (a bug: fixed
 * message). Bodies are never logged.
 */
import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import { isPoskeyError, PoskeyError } from '../../errors.js';
import { asCertificate } from '../../keyload/ca.js';
import type { AuditSink } from '../../keyload/loader.js';
import type { Repository } from '../../store/types.js';
import { RklService, type RklServiceOptions } from './service.js';

export interface RklPluginOptions {
  service: RklService;
}

const STATUS: Readonly<Record<string, number>> = {
  POSKEY_ERR_RKL_INPUT: 400,
  POSKEY_ERR_ASN1: 400,
  POSKEY_ERR_PEM: 400,
  POSKEY_ERR_CERT_FORMAT: 400,
  POSKEY_ERR_KEY_ALGORITHM: 400,
  POSKEY_ERR_RKL_ALGORITHM: 400,
  POSKEY_ERR_RKL_KCV_MISMATCH: 400,
  POSKEY_ERR_CERT_CHAIN: 403,
  POSKEY_ERR_CERT_EXPIRED: 403,
  POSKEY_ERR_CERT_NOT_YET_VALID: 403,
  POSKEY_ERR_CERT_ROLE: 403,
  POSKEY_ERR_RKL_UNKNOWN_TID: 404,
  POSKEY_ERR_RKL_SESSION: 404,
  POSKEY_ERR_RKL_NONCE_REPLAY: 409,
  POSKEY_ERR_RKL_WRONG_DEVICE: 409,
  POSKEY_ERR_KEYLOAD_SERIAL_MISMATCH: 409,
  POSKEY_ERR_RKL_HSM: 503,
  POSKEY_ERR_STORE_FAILED: 503,
  POSKEY_ERR_STORE_CLOSED: 503,
};

function errorBody(err: unknown): {
  status: number;
  body: { code: string; field?: string; message: string };
} {
  if (isPoskeyError(err)) {
    const status = STATUS[err.code] ?? (err.code.startsWith('POSKEY_ERR_TR34_') ? 400 : 500);
    if (status !== 500) return { status, body: err.toJSON() };
  }
  const fe = err as Partial<FastifyError>;
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code = fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'body too large' : 'not valid JSON';
    return {
      status: 400,
      body: { code: 'POSKEY_ERR_RKL_INPUT', field: 'body', message: `body: ${code}` },
    };
  }
  return { status: 500, body: { code: 'POSKEY_ERR_RKL_INTERNAL', message: 'internal error' } };
}

export const rklPlugin: FastifyPluginAsync<RklPluginOptions> = async (app, { service }) => {
  app.setErrorHandler((err, request, reply) => {
    const { status, body } = errorBody(err);
    if (status >= 500)
      request.log.error({ code: isPoskeyError(err) ? err.code : 'internal' }, 'rkl request failed');
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({
      code: 'POSKEY_ERR_RKL_ROUTE',
      field: 'url',
      message: `url: no route ${request.method} ${request.url.split('?')[0]}`,
    });
  });
  app.post('/rkl/v1/token', async (request, reply) =>
    reply.code(201).send(await service.issue(request.body)),
  );
  app.post('/rkl/v1/confirm', async (request) => service.confirm(request.body));
};

/** `poskey host serve` RKL settings: paths of PEM files, and where to listen. */
export interface RklConfig {
  host: string;
  port: number;
  /** HTTPS certificate and key of the KDH. */
  tls: { cert: string; key: string };
  /**
   * One per key algorithm: the vendor root device certificates must chain to, and the KDH signing
   * certificate and PKCS#8 private key (RSA for TDES terminals, SM2 for SM4 ones).
   */
  profiles: readonly { vendorCa: string; kdh: { cert: string; key: string } }[];
}

const configError = (field: string, reason: string) =>
  new PoskeyError('POSKEY_ERR_RKL_CONFIG', reason, { field });

export function parseRklConfig(input: unknown): RklConfig {
  if (typeof input !== 'object' || input === null) throw configError('rkl', 'must be an object');
  const o = input as Record<string, unknown>;
  const str = (v: unknown, field: string): string => {
    if (typeof v !== 'string' || v === '') throw configError(field, 'must be a file path');
    return v;
  };
  const pair = (v: unknown, field: string) => {
    const p = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
    return { cert: str(p.cert, `${field}.cert`), key: str(p.key, `${field}.key`) };
  };
  const port = o.port ?? 0;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw configError('rkl.port', 'must be an integer from 0 to 65535');
  const host = o.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host === '') throw configError('rkl.host', 'must be an address');
  return Object.freeze({
    host,
    port,
    tls: pair(o.tls, 'rkl.tls'),
    profiles: profiles(o.profiles).map((p, i) => ({
      vendorCa: str(p.vendorCa, `rkl.profiles[${i}].vendorCa`),
      kdh: pair(p.kdh, `rkl.profiles[${i}].kdh`),
    })),
  });
}

function profiles(v: unknown): Record<string, unknown>[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > 2)
    throw configError('rkl.profiles', 'must list one or two profiles (RSA, SM2)');
  return v.map((p) => (typeof p === 'object' && p !== null ? p : {}) as Record<string, unknown>);
}

export interface RklServer {
  readonly app: FastifyInstance;
  listen(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
}

export interface RklServerOptions extends Omit<RklServiceOptions, 'profiles'> {
  config: RklConfig;
  store: Pick<Repository, 'terminals' | 'transaction'>;
  audit?: AuditSink;
}

async function readPem(path: string, field: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new PoskeyError(
      'POSKEY_ERR_RKL_CONFIG',
      `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
      {
        field,
        cause: e,
      },
    );
  }
}

/** Reads the config's files and builds the HTTPS app (not yet listening). */
export async function createRklServer(options: RklServerOptions): Promise<RklServer> {
  const { config } = options;
  const [tlsCert, tlsKey] = await Promise.all([
    readPem(config.tls.cert, 'rkl.tls.cert'),
    readPem(config.tls.key, 'rkl.tls.key'),
  ]);
  const files = await Promise.all(
    config.profiles.map(async (p, i) => ({
      vendorCa: await readPem(p.vendorCa, `rkl.profiles[${i}].vendorCa`),
      cert: await readPem(p.kdh.cert, `rkl.profiles[${i}].kdh.cert`),
      key: await readPem(p.kdh.key, `rkl.profiles[${i}].kdh.key`),
    })),
  );
  let service: RklService;
  try {
    service = new RklService({
      ...options,
      profiles: files.map((f) => ({
        vendorCa: asCertificate(f.vendorCa),
        kdh: { cert: asCertificate(f.cert), privateKey: createPrivateKey(f.key) },
      })),
    });
  } catch (e) {
    throw new PoskeyError(
      'POSKEY_ERR_RKL_CONFIG',
      `bad certificate or key: ${isPoskeyError(e) ? e.reason : 'unreadable'}`,
      {
        field: 'rkl',
        cause: e,
      },
    );
  }
  const app = Fastify({
    https: { cert: tlsCert, key: tlsKey, minVersion: 'TLSv1.2' },
    logger: false,
    bodyLimit: 64 * 1024,
  });
  await app.register(rklPlugin, { service });
  return {
    app,
    async listen() {
      try {
        await app.listen({ host: config.host, port: config.port });
      } catch (e) {
        throw new PoskeyError(
          'POSKEY_ERR_RKL_LISTEN',
          `cannot listen on ${config.host}:${config.port}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
          {
            field: 'rkl.port',
            cause: e,
          },
        );
      }
      const address = app.server.address();
      return {
        host: config.host,
        port: typeof address === 'object' && address !== null ? address.port : config.port,
      };
    },
    close: () => app.close(),
  };
}
