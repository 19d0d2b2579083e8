/**
 * `createHostServer`: the terminal-facing TCP server of the POSP host (`unionpay-pos` dialect,
 * TERMINAL_PROFILE framing: 2-byte length, TPDU, optional dial-up LRI, 6-byte header, body).
 *
 * - Long-lived connections and one connection per transaction alike; any number of requests in
 *   flight per connection, answered as they complete (terminals match answers by MTI and STAN).
 *   Past `maxInFlightPerConnection` the server stops reading that socket until one completes.
 * - `maxConnections`: connections beyond it are closed at once (`connections.refused`).
 * - `idleTimeout`: a connection with nothing in flight and no traffic for that long is closed.
 * - Half-close: a terminal that sends and then shuts its side still gets its answers.
 * - `close()` drains: stop accepting, stop reading, let in-flight transactions finish and their
 *   answers go out, then end the connections; after `drainTimeout` the rest are cut.
 *
 * A reply is written in one buffer: length, TPDU with addresses swapped, the request's header
 * echoed (its processing-requirement nibble set when the host wants something) and the body.
 * The server owns no store, HSM or network link: the caller opens and closes those.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { type Logger, pino } from 'pino';
import type { HsmClient } from '../hsm/api.js';
import {
  createFrameDecoder,
  defineFramingProfile,
  type FrameDecoder,
  type FramingProfile,
  hasLri,
  LRI_LENGTH,
  maskPan,
  pack,
  TERMINAL_HEADER_LENGTH,
  TERMINAL_PROFILE,
  TPDU_ID,
  TPDU_LENGTH,
  unpack,
} from '../iso8583/index.js';
import { POS_SM4_DIALECT, RC } from '../protocol/unionpay-pos.js';
import type { Repository } from '../store/types.js';
import { type HostConfig, type HostConfigInput, parseHostConfig } from './config.js';
import { type HostRuntime, type ReplySink, TxnContext, type ZoneKeys } from './context.js';
import { hostError } from './errors.js';
import { RrnSource } from './ids.js';
import { HostMetrics, type MetricsSnapshot } from './metrics.js';
import type { NetworkTransport } from './network-link.js';
import { Router, type RouteTable } from './router.js';
import { StoreAndForward } from './saf.js';
import { DuplicateGuard } from './steps/duplicate.js';
import { responseMti } from './steps/journal.js';
import { TerminalDirectory } from './terminals.js';

export interface HostServerOptions {
  /** Checked with `parseHostConfig` unless already parsed. */
  config: HostConfig | HostConfigInput;
  hsm: HsmClient;
  store: Repository;
  /** The zone keys in `hsm`; without them PIN translation and forwarding answer 96. */
  zone?: ZoneKeys;
  /** The network link (started by the caller); without it forwarded transactions answer 96. */
  link?: NetworkTransport;
  /** Milliseconds since the epoch (tests inject one to age keys). */
  clock?: () => number;
  logger?: Logger;
  /** Transactions by catalogue name (default DEFAULT_ROUTES). */
  routes?: RouteTable;
  /**
   * Run the store-and-forward sender and crash recovery from `listen()` to `close()` (default
   * `config.saf.enabled`). A second server on the same store and node id must not.
   */
  saf?: boolean;
}

export interface HostServer {
  /** Binds the terminal port (`config.port`, 0 = any free port). */
  listen(): Promise<{ host: string; port: number }>;
  /** The bound port, once listening. */
  readonly port: number | undefined;
  /** Stops accepting, lets in-flight transactions finish (up to `drainTimeout`), closes connections. */
  close(): Promise<void>;
  metrics(): MetricsSnapshot;
  readonly runtime: HostRuntime;
  /** The store-and-forward queue and its sender (src/host/saf.ts). */
  readonly saf: StoreAndForward;
}

const MIN_BODY = 2 + 8; // MTI + primary bitmap

function isParsed(config: HostConfig | HostConfigInput): config is HostConfig {
  return Object.isFrozen(config) && typeof (config as HostConfig).journal?.mode === 'string';
}

/**
 * One reply frame: 2-byte length, TPDU (request's source and destination swapped), the request's
 * header with the processing requirement set when `requirement` ≥ 0, then `body`. No LRI.
 */
export function encodeReply(
  payload: Buffer,
  headerOffset: number,
  body: Buffer,
  requirement: number,
): Buffer {
  const n = TPDU_LENGTH + TERMINAL_HEADER_LENGTH + body.length;
  const out = Buffer.allocUnsafe(2 + n);
  out.writeUInt16BE(n, 0);
  out[2] = TPDU_ID;
  out[3] = payload[3]!;
  out[4] = payload[4]!;
  out[5] = payload[1]!;
  out[6] = payload[2]!;
  payload.copy(out, 7, headerOffset, headerOffset + TERMINAL_HEADER_LENGTH);
  if (requirement >= 0) out[9] = (out[9]! & 0xf0) | (requirement & 0x0f);
  body.copy(out, 7 + TERMINAL_HEADER_LENGTH);
  return out;
}

/** The MTI of an unparsable body when it reads as a BCD request MTI, else undefined. */
function requestMtiOf(body: Buffer): string | undefined {
  if (body.length < 2) return undefined;
  const mti = body.toString('hex', 0, 2);
  return /^\d\d[02468]\d$/.test(mti) ? mti : undefined;
}

class TerminalConnection implements ReplySink {
  readonly socket: Socket;
  readonly #server: HostServerImpl;
  readonly #decoder: FrameDecoder;
  inFlight = 0;
  #paused = false;
  #draining = false;
  #peerEnded = false;

  constructor(server: HostServerImpl, socket: Socket, decoder: FrameDecoder) {
    this.#server = server;
    this.socket = socket;
    this.#decoder = decoder;
  }

  onData(chunk: Buffer): void {
    if (this.#draining) return;
    let frames: Buffer[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (e) {
      this.#server.badFrame(this, e);
      return;
    }
    for (let i = 0; i < frames.length; i++) this.#server.onFrame(this, frames[i]!);
  }

  onEnd(): void {
    this.#peerEnded = true;
    if (this.inFlight === 0) this.socket.end();
  }

  onTimeout(): void {
    if (this.inFlight > 0) return;
    this.#server.hostMetrics.count('connections.idleClosed');
    this.socket.end();
  }

  started(max: number): void {
    this.inFlight++;
    if (this.inFlight >= max && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    }
  }

  finished(max: number): void {
    this.inFlight--;
    if (this.inFlight === 0 && (this.#draining || this.#peerEnded)) {
      this.socket.end();
      return;
    }
    if (this.#paused && this.inFlight < max && !this.#draining) {
      this.#paused = false;
      this.socket.resume();
    }
  }

  /** Stop reading; end now when idle, else after the last answer. */
  drain(): void {
    this.#draining = true;
    this.socket.pause();
    if (this.inFlight === 0) this.socket.end();
  }

  send(ctx: TxnContext, body: Buffer): void {
    this.#server.replied(ctx);
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(encodeReply(ctx.payload, ctx.headerOffset, body, ctx.processingRequirement));
  }
}

class HostServerImpl implements HostServer {
  readonly runtime: HostRuntime;
  readonly hostMetrics: HostMetrics;
  readonly saf: StoreAndForward;
  readonly #runSaf: boolean;
  readonly #config: HostConfig;
  readonly #sm4Destinations: ReadonlySet<number>;
  readonly #router: Router;
  readonly #net: Server;
  readonly #connections = new Set<TerminalConnection>();
  readonly #profile: FramingProfile;
  #port: number | undefined;
  #listening = false;
  #closing: Promise<void> | undefined;
  #allClosed: (() => void) | undefined;

  constructor(options: HostServerOptions) {
    const config = isParsed(options.config) ? options.config : parseHostConfig(options.config);
    this.#config = config;
    this.#sm4Destinations = new Set(config.sm4TpduDestinations);
    this.hostMetrics = new HostMetrics();
    this.#profile = defineFramingProfile(
      { name: 'terminal', maxFrameSize: config.maxFrameSize, zeroLength: 'ignore' },
      TERMINAL_PROFILE,
    );
    const log =
      options.logger ?? pino({ level: config.logLevel, base: { component: 'host' } }, process.stderr);
    this.saf = new StoreAndForward(() => this.runtime);
    this.#runSaf = options.saf ?? config.saf.enabled;
    this.runtime = {
      config,
      hsm: options.hsm,
      store: options.store,
      terminals: new TerminalDirectory(options.store.terminals, {
        ttlMs: config.terminalCacheTtl,
        macAlgorithm: config.macAlgorithm,
        terminalMac: config.terminalMac,
      }),
      link: options.link,
      zone: options.zone,
      clock: options.clock ?? Date.now,
      log,
      metrics: this.hostMetrics,
      guard: new DuplicateGuard(),
      ids: new RrnSource(config.rrnNode),
      saf: this.saf,
    };
    this.#router = new Router(options.routes);
    this.#net = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#accept(socket));
  }

  get port(): number | undefined {
    return this.#port;
  }

  metrics(): MetricsSnapshot {
    return this.hostMetrics.snapshot();
  }

  listen(): Promise<{ host: string; port: number }> {
    if (this.#listening || this.#closing) {
      return Promise.reject(hostError('POSKEY_ERR_HOST_STATE', 'the server is already listening or closed'));
    }
    this.#listening = true;
    const { host, port } = this.#config;
    // Recovery runs before the first terminal can connect: what it finds is not in flight here.
    const recovered = this.#runSaf ? this.saf.start() : Promise.resolve();
    return recovered.then(() => this.#bind(host, port));
  }

  #bind(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (e: unknown) => {
        const code = (e as NodeJS.ErrnoException).code ?? 'error';
        reject(hostError('POSKEY_ERR_HOST_LISTEN', `cannot listen on ${host}:${port} (${code})`, 'port', e));
      };
      this.#net.once('error', onError);
      this.#net.listen({ host, port }, () => {
        this.#net.off('error', onError);
        const address = this.#net.address();
        this.#port = typeof address === 'object' && address !== null ? address.port : port;
        this.runtime.log.info({ host, port: this.#port }, 'host listening for terminals');
        resolve({ host, port: this.#port });
      });
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#drain();
    return this.#closing;
  }

  async #drain(): Promise<void> {
    const log = this.runtime.log;
    log.info({ connections: this.#connections.size, inFlight: this.hostMetrics.inFlight }, 'host draining');
    const stopped = new Promise<void>((resolve) => {
      if (!this.#net.listening) resolve();
      else this.#net.close(() => resolve());
    });
    const allClosed = new Promise<void>((resolve) => {
      this.#allClosed = resolve;
    });
    for (const c of this.#connections) c.drain();
    this.#checkClosed();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#config.drainTimeout);
    });
    const result = await Promise.race([allClosed, timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      log.warn(
        { connections: this.#connections.size, inFlight: this.hostMetrics.inFlight },
        'drain timed out; cutting connections',
      );
      for (const c of this.#connections) c.socket.destroy();
    }
    await stopped;
    await this.saf.close();
    log.info('host closed');
  }

  #checkClosed(): void {
    if (this.#connections.size === 0 && this.#allClosed !== undefined) this.#allClosed();
  }

  #accept(socket: Socket): void {
    const metrics = this.hostMetrics;
    if (this.#closing !== undefined || this.#connections.size >= this.#config.maxConnections) {
      metrics.count('connections.refused');
      socket.destroy();
      return;
    }
    metrics.count('connections.accepted');
    const conn = new TerminalConnection(this, socket, createFrameDecoder(this.#profile));
    this.#connections.add(conn);
    metrics.connections = this.#connections.size;
    socket.setNoDelay(true);
    socket.setTimeout(this.#config.idleTimeout);
    socket.on('data', (chunk: Buffer) => conn.onData(chunk));
    socket.on('end', () => conn.onEnd());
    socket.on('timeout', () => conn.onTimeout());
    socket.on('error', (e) => this.runtime.log.debug({ err: e }, 'terminal connection error'));
    socket.on('close', () => {
      this.#connections.delete(conn);
      metrics.connections = this.#connections.size;
      this.#checkClosed();
    });
  }

  badFrame(conn: TerminalConnection, e: unknown): void {
    this.hostMetrics.count('frames.bad');
    this.runtime.log.warn(
      { err: e, remote: conn.socket.remoteAddress },
      'bad terminal frame; closing the connection',
    );
    conn.socket.destroy();
  }

  onFrame(conn: TerminalConnection, payload: Buffer): void {
    const metrics = this.hostMetrics;
    if (payload.length < TPDU_LENGTH + TERMINAL_HEADER_LENGTH + MIN_BODY || payload[0] !== TPDU_ID) {
      this.badFrame(conn, hostError('POSKEY_ERR_HOST_STATE', 'frame too short or TPDU id is not 0x60'));
      return;
    }
    const headerOffset = TPDU_LENGTH + (hasLri(payload, TPDU_LENGTH) ? LRI_LENGTH : 0);
    const ctx = new TxnContext(this.runtime, conn, payload, headerOffset, performance.now());
    metrics.count('requests');
    if (this.#sm4Destinations.has(payload.readUInt16BE(1))) ctx.dialect = POS_SM4_DIALECT;
    try {
      ctx.req = unpack(ctx.dialect, ctx.body);
    } catch (e) {
      this.#unparsable(conn, ctx, e);
      return;
    }
    conn.started(this.#config.maxInFlightPerConnection);
    metrics.inFlight++;
    void this.#run(conn, ctx);
  }

  async #run(conn: TerminalConnection, ctx: TxnContext): Promise<void> {
    try {
      await this.#router.dispatch(ctx);
    } catch (e) {
      this.runtime.log.error({ err: e, tid: ctx.tid, stan: ctx.stan }, 'transaction failed');
    } finally {
      this.hostMetrics.inFlight--;
      conn.finished(this.#config.maxInFlightPerConnection);
    }
  }

  /** A body that does not unpack: answer 96 when its MTI is readable as a request, else drop it. */
  #unparsable(conn: TerminalConnection, ctx: TxnContext, e: unknown): void {
    this.hostMetrics.count('requests.unparsable');
    const mti = requestMtiOf(ctx.body);
    this.runtime.log.warn({ err: e, mti }, 'terminal message does not unpack');
    if (mti === undefined) return;
    ctx.name = 'unparsable';
    ctx.rc = RC.SYSTEM_MALFUNCTION;
    conn.send(ctx, pack(ctx.dialect, { 0: responseMti(mti), 39: RC.SYSTEM_MALFUNCTION }));
  }

  /** Bookkeeping for every reply: latency, and one debug line with the PAN masked. */
  replied(ctx: TxnContext): void {
    const metrics = this.hostMetrics;
    metrics.count('replies');
    const ms = performance.now() - ctx.receivedAt;
    metrics.latency.record(ms);
    const log = this.runtime.log;
    if (log.isLevelEnabled('debug')) {
      log.debug(
        {
          txn: ctx.name,
          mti: ctx.req[0],
          tid: ctx.tid,
          stan: ctx.stan,
          rc: ctx.rc,
          pan: ctx.pan === undefined ? undefined : maskPan(ctx.pan),
          abortedBy: ctx.abortedBy || undefined,
          ms: Math.round(ms * 1000) / 1000,
        },
        'transaction',
      );
    }
  }
}

/** Builds the terminal server (not yet listening). @throws POSKEY_ERR_HOST_CONFIG, POSKEY_ERR_HOST_ROUTE */
export function createHostServer(options: HostServerOptions): HostServer {
  return new HostServerImpl(options);
}
