/**
 * The payShield host-command TCP server: 2-byte length frames, a configurable header echoed back,
 * one response per command, in order. Optional TLS, with client-certificate verification (mutual
 * TLS) when a CA is configured.
 *
 * Commands are synchronous crypto, so every frame of one read chunk is answered before the next
 * chunk is looked at: pipelined requests come back in order, and all the responses of one chunk go
 * out in one `socket.write`. A malformed command gets its error code and the connection carries on;
 * a frame longer than `maxFrameSize` closes that connection only (its frame boundaries are lost).
 * A client that does not read its responses is paused rather than buffered without bound.
 *
 * Logs (pino-compatible `logger`) carry connection events, command codes and error codes, never a
 * frame's content: no key blocks, PIN blocks, PANs or messages.
 */
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { isPoskeyError, PoskeyError } from '../../errors.js';
import type { HsmApi } from '../api.js';
import { type CommandContext, handleFrame } from './commands/index.js';
import { createPayShieldDecoder, MAX_HEADER_LENGTH, PAYSHIELD_MAX_FRAME } from './framing.js';

/** The subset of a pino logger the server uses. */
export interface PayShieldLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

export interface PayShieldTlsOptions {
  key: string | Buffer;
  cert: string | Buffer;
  /** CA certificate(s) client certificates must chain to. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Require and verify a client certificate; default true when `ca` is given. */
  requestCert?: boolean;
}

export interface PayShieldServerOptions {
  hsm: HsmApi;
  /** Message header length, echoed in every response; default 4. */
  headerLength?: number;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Listen port; default 1500 (0 = any free port). */
  port?: number;
  tls?: PayShieldTlsOptions;
  /** Connections served at once; more are closed on accept. Default 256. */
  maxConnections?: number;
  /** A connection silent this long is closed; 0 = never. Default 300 000 (5 minutes). */
  idleTimeoutMs?: number;
  /** Largest frame payload accepted; a longer one closes the connection. Default and maximum 65535. */
  maxFrameSize?: number;
  /** Accept clear components in A4 (poskey variant; off by default). */
  allowClearComponents?: boolean;
  logger?: PayShieldLogger;
}

export interface PayShieldServerStats {
  /** Connections open now. */
  connections: number;
  accepted: number;
  /** Connections closed on accept because `maxConnections` were open. */
  refused: number;
  /** Connections closed because of a frame the decoder could not take (oversize). */
  frameErrors: number;
  /** Commands answered, by command code ('??' = unreadable). */
  commands: Record<string, number>;
  /** Non-00 answers, by error code. */
  errors: Record<string, number>;
}

export interface PayShieldServer {
  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number }>;
  /** Stops accepting, ends every connection (destroying stragglers after a grace period). */
  close(): Promise<void>;
  stats(): PayShieldServerStats;
}

export const DEFAULT_PAYSHIELD_PORT = 1500;
export const DEFAULT_MAX_CONNECTIONS = 256;
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** How long `close()` lets connections finish before destroying them. */
const CLOSE_GRACE_MS = 2000;

const SILENT: PayShieldLogger = { info() {}, warn() {}, error() {} };

function optionError(field: string, reason: string): PoskeyError {
  return new PoskeyError('POSKEY_ERR_PAYSHIELD_OPTION', reason, { field });
}

function intOption(value: unknown, field: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw optionError(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

interface ResolvedOptions {
  hsm: HsmApi;
  headerLength: number;
  host: string;
  port: number;
  tls: PayShieldTlsOptions | undefined;
  maxConnections: number;
  idleTimeoutMs: number;
  maxFrameSize: number;
  allowClearComponents: boolean;
  logger: PayShieldLogger;
}

function resolveOptions(o: PayShieldServerOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw optionError('options', 'must be an object');
  if (typeof o.hsm !== 'object' || o.hsm === null) throw optionError('hsm', 'an HsmApi is required');
  if (o.tls !== undefined && (o.tls.key === undefined || o.tls.cert === undefined)) {
    throw optionError('tls', 'TLS needs a key and a certificate');
  }
  return {
    hsm: o.hsm,
    headerLength: intOption(o.headerLength, 'headerLength', 4, 0, MAX_HEADER_LENGTH),
    host: o.host ?? '127.0.0.1',
    port: intOption(o.port, 'port', DEFAULT_PAYSHIELD_PORT, 0, 65535),
    tls: o.tls,
    maxConnections: intOption(o.maxConnections, 'maxConnections', DEFAULT_MAX_CONNECTIONS, 1, 1_000_000),
    idleTimeoutMs: intOption(o.idleTimeoutMs, 'idleTimeoutMs', DEFAULT_IDLE_TIMEOUT_MS, 0, 2 ** 31 - 1),
    maxFrameSize: intOption(o.maxFrameSize, 'maxFrameSize', PAYSHIELD_MAX_FRAME, 1, PAYSHIELD_MAX_FRAME),
    allowClearComponents: o.allowClearComponents === true,
    logger: o.logger ?? SILENT,
  };
}

/** Prefixes each payload with its 2-byte length, all into one buffer (one write per read chunk). */
function frameAll(payloads: readonly Buffer[]): Buffer {
  let total = 0;
  for (const p of payloads) total += 2 + p.length;
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const p of payloads) {
    out.writeUInt16BE(p.length, at);
    p.copy(out, at + 2);
    at += 2 + p.length;
  }
  return out;
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** Who is on the other end, for logs and the audit log: the TLS client's CN, or address:port. */
function peerName(socket: Socket, tls: boolean): string {
  const address = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  if (!tls) return address;
  const cn = (socket as TLSSocket).getPeerCertificate?.()?.subject?.CN;
  return typeof cn === 'string' && /^[\x20-\x7e]{1,64}$/.test(cn) ? `${cn}@${address}` : address;
}

/**
 * Creates the server (not yet listening).
 * @throws POSKEY_ERR_PAYSHIELD_OPTION for a bad option
 */
export function createPayShieldServer(options: PayShieldServerOptions): PayShieldServer {
  const o = resolveOptions(options);
  const log = o.logger;
  const sockets = new Set<Socket>();
  const counters = { accepted: 0, refused: 0, frameErrors: 0 };
  const commands: Record<string, number> = {};
  const errors: Record<string, number> = {};

  const serve = (socket: Socket): void => {
    if (sockets.size >= o.maxConnections) {
      counters.refused++;
      log.warn(
        { remote: socket.remoteAddress, max: o.maxConnections },
        'payShield connection refused: limit reached',
      );
      socket.destroy();
      return;
    }
    counters.accepted++;
    sockets.add(socket);
    socket.setNoDelay(true);
    const peer = peerName(socket, o.tls !== undefined);
    const ctx: CommandContext = { actor: `payshield:${peer}`, allowClearComponents: o.allowClearComponents };
    const decoder = createPayShieldDecoder(o.maxFrameSize);
    let closing = false;
    log.info({ peer }, 'payShield connection opened');
    if (o.idleTimeoutMs > 0) {
      socket.setTimeout(o.idleTimeoutMs, () => {
        log.info({ peer }, 'payShield connection idle: closed');
        socket.destroy();
      });
    }

    const answer = (frames: readonly Buffer[]): void => {
      const responses: Buffer[] = [];
      for (const frame of frames) {
        const outcome = handleFrame(o.hsm, frame, o.headerLength, ctx);
        bump(commands, outcome.command);
        if (outcome.errorCode !== '00') {
          bump(errors, outcome.errorCode);
          const err = outcome.error;
          const detail = {
            peer,
            command: outcome.command,
            errorCode: outcome.errorCode,
            code: isPoskeyError(err) ? err.code : undefined,
            field: isPoskeyError(err) ? err.field : undefined,
          };
          // 41 is a bug or an environment failure; everything else is the client's input.
          if (outcome.errorCode === '41')
            log.error(
              { ...detail, reason: err instanceof Error ? err.message : String(err) },
              'payShield command failed',
            );
          else log.debug?.(detail, 'payShield command refused');
        }
        responses.push(outcome.response);
      }
      if (responses.length > 0 && !socket.destroyed && !socket.write(frameAll(responses))) {
        // The client is not reading: stop reading its requests until it catches up.
        socket.pause();
        socket.once('drain', () => {
          if (!closing) socket.resume();
        });
      }
    };

    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
      let frames: readonly Buffer[];
      let failure: unknown;
      try {
        frames = decoder.push(chunk);
      } catch (e) {
        failure = e;
        frames = (e as { frames?: readonly Buffer[] }).frames ?? [];
      }
      answer(frames);
      if (failure !== undefined) {
        closing = true;
        counters.frameErrors++;
        log.warn(
          { peer, code: isPoskeyError(failure) ? failure.code : 'POSKEY_ERR_INTERNAL' },
          'payShield connection closed: unusable frame',
        );
        socket.end();
        setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) =>
      log.debug?.({ peer, code: e.code }, 'payShield socket error'),
    );
    socket.on('close', () => {
      sockets.delete(socket);
      log.info({ peer }, 'payShield connection closed');
    });
  };

  let server: Server;
  if (o.tls === undefined) {
    server = createNetServer(serve);
  } else {
    const requestCert = o.tls.requestCert ?? o.tls.ca !== undefined;
    server = createTlsServer(
      { key: o.tls.key, cert: o.tls.cert, ca: o.tls.ca, requestCert, rejectUnauthorized: requestCert },
      serve,
    );
    server.on('tlsClientError', (e: NodeJS.ErrnoException, socket: TLSSocket) => {
      log.warn({ remote: socket.remoteAddress, code: e.code }, 'payShield TLS handshake refused');
    });
  }
  server.on('error', (e: NodeJS.ErrnoException) => log.error({ code: e.code }, 'payShield server error'));

  return {
    listen() {
      return new Promise((resolve, reject) => {
        const onError = (e: NodeJS.ErrnoException) => {
          reject(
            new PoskeyError(
              'POSKEY_ERR_PAYSHIELD_LISTEN',
              `cannot listen on ${o.host}:${o.port} (${e.code ?? 'error'})`,
              {
                field: 'port',
                cause: e,
              },
            ),
          );
        };
        server.once('error', onError);
        server.listen(o.port, o.host, () => {
          server.off('error', onError);
          const address = server.address();
          const port = typeof address === 'object' && address !== null ? address.port : o.port;
          log.info({ host: o.host, port, tls: o.tls !== undefined }, 'payShield interface listening');
          resolve({ host: o.host, port });
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        if (!server.listening) {
          for (const s of sockets) s.destroy();
          resolve();
          return;
        }
        server.close(() => resolve());
        for (const s of sockets) s.end();
        const timer = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, CLOSE_GRACE_MS);
        timer.unref();
      });
    },
    stats() {
      return { connections: sockets.size, ...counters, commands: { ...commands }, errors: { ...errors } };
    },
  };
}
