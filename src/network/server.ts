/**
 * The card network simulator's TCP side: NETWORK_PROFILE framing (2-byte length, no header), the
 * `network` dialect, many requests in flight per connection, each answered when it completes (the
 * acquirer matches answers by STAN and RRN, not by order). The issuer (issuer.ts) decides and the
 * ledger commits before an answer is written; faults (faults.ts) delay, drop or cut answers.
 *
 * A frame the decoder cannot take (oversize) closes that connection; an unparseable body is logged
 * and not answered. Logs carry the MTI, STAN, RRN, masked PAN, response code and timing, never a PIN
 * block, a MAC or a track.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { PoskeyError } from '../errors.js';
import type { LmkKeyBlock } from '../hsm/api.js';
import { buildFrame, createFrameDecoder, NETWORK_PROFILE } from '../iso8583/index.js';
import { networkError } from './errors.js';
import { type FaultPlan, type Faults, planFaults, resolveFaults } from './faults.js';
import { Issuer, type IssuerEvent, type IssuerHsm } from './issuer.js';
import type { Ledger } from './ledger.js';
import { ZoneKeyRing } from './zone-ring.js';

/** The subset of a pino logger the simulator uses. */
export interface NetworkLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The host's default network port (src/host/config.ts agrees). */
export const DEFAULT_NETWORK_PORT = 5859;

export interface NetworkSimulatorOptions {
  hsm: IssuerHsm;
  ledger: Ledger;
  /**
   * The network side's ZPK and ZAK (LMK key blocks in `hsm`), with the ZMK for key exchange; or a
   * ring (zone-ring.ts) several simulators share, as the endpoints of one network do.
   */
  zone: { zpk: LmkKeyBlock; zak: LmkKeyBlock; zmk?: LmkKeyBlock } | ZoneKeyRing;
  /** How long the replaced zone key pair is still accepted after a key exchange (default 60 s). */
  keyOverlapMs?: number;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Default DEFAULT_NETWORK_PORT; 0 = any free port. */
  port?: number;
  faults?: Partial<Faults>;
  logger?: NetworkLogger;
  /** The simulator's clock (card expiry). */
  clock?: () => Date;
  /** Random source for faults, [0, 1). */
  random?: () => number;
  maxPinTries?: number;
  authCode?: () => string;
  /** Close the ledger with the simulator. */
  ownsLedger?: boolean;
}

export interface NetworkStats {
  connections: number;
  received: number;
  answered: number;
  /** Requests processed and left unanswered by the drop fault. */
  dropped: number;
  /** Connections closed by the disconnect fault. */
  disconnected: number;
  /** Bodies that did not parse, and response MTIs: no answer. */
  ignored: number;
  /** Answers by response code. */
  codes: Record<string, number>;
}

export interface NetworkSimulator {
  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number }>;
  /** Stops accepting, cancels delayed requests, closes every connection (and the ledger if owned). */
  close(): Promise<void>;
  /**
   * An outage: stops listening and closes every connection, keeping the ledger and the keys;
   * `listen()` then binds the same port again (the acquirer reconnects).
   */
  stop(): Promise<void>;
  /** Replaces the fault settings (absent fields: no fault); returns them validated. */
  setFaults(faults: Partial<Faults>): Readonly<Faults>;
  faults(): Readonly<Faults>;
  stats(): NetworkStats;
  readonly ledger: Ledger;
  readonly issuer: Issuer;
  /** The zone keys in force, delivered and being retired. */
  readonly zoneKeys: ZoneKeyRing;
}

const SILENT: NetworkLogger = { info() {}, warn() {}, error() {} };

function optionError(field: string, reason: string): PoskeyError {
  return networkError('POSKEY_ERR_NETWORK_OPTION', reason, field);
}

function portOf(value: unknown): number {
  if (value === undefined) return DEFAULT_NETWORK_PORT;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535) {
    throw optionError('port', 'must be an integer from 0 to 65535');
  }
  return value;
}

/**
 * The simulator. Nothing listens until `listen()`.
 * @throws POSKEY_ERR_NETWORK_OPTION, POSKEY_ERR_NETWORK_FAULTS
 */
export function createNetworkSimulator(options: NetworkSimulatorOptions): NetworkSimulator {
  if (typeof options !== 'object' || options === null) throw optionError('options', 'must be an object');
  if (typeof options.hsm !== 'object' || options.hsm === null) throw optionError('hsm', 'an HSM is required');
  if (typeof options.ledger !== 'object' || options.ledger === null)
    throw optionError('ledger', 'a ledger is required');
  const zone = options.zone;
  const ring =
    zone instanceof ZoneKeyRing
      ? zone
      : typeof zone?.zpk === 'string' && typeof zone?.zak === 'string'
        ? new ZoneKeyRing({
            initial: { keySet: '000000', zpk: zone.zpk, zak: zone.zak },
            ...(zone.zmk !== undefined ? { zmk: zone.zmk } : {}),
            ...(options.keyOverlapMs !== undefined ? { overlapMs: options.keyOverlapMs } : {}),
          })
        : undefined;
  if (ring === undefined) throw optionError('zone', 'the ZPK and ZAK key blocks are required');
  const host = options.host ?? '127.0.0.1';
  const port = portOf(options.port);
  const logger = options.logger ?? SILENT;
  const random = options.random ?? Math.random;
  let faults = resolveFaults(options.faults);
  const issuerOptions = {
    hsm: options.hsm,
    ledger: options.ledger,
    zone: ring,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.maxPinTries ? { maxPinTries: options.maxPinTries } : {}),
    ...(options.authCode ? { authCode: options.authCode } : {}),
  };
  const issuer = new Issuer(issuerOptions);
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const stats: NetworkStats = {
    connections: 0,
    received: 0,
    answered: 0,
    dropped: 0,
    disconnected: 0,
    ignored: 0,
    codes: {},
  };
  let server: Server | undefined;
  /** The port of the first listen: a listen after `stop()` takes it again. */
  let boundPort: number | undefined;
  let closed = false;

  const after = (ms: number, fn: () => void) => {
    if (ms <= 0) {
      queueMicrotask(fn);
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  // Answers of one event-loop turn leave in one writev per connection (one syscall, not one each):
  // a socket is corked at its turn's first answer and uncorked once that turn's I/O is done.
  const corked = new Set<Socket>();
  const uncorkAll = () => {
    for (const s of corked) if (!s.destroyed) s.uncork();
    corked.clear();
  };
  const answer = (socket: Socket, frame: Buffer) => {
    if (!corked.has(socket)) {
      if (corked.size === 0) setImmediate(uncorkAll);
      socket.cork();
      corked.add(socket);
    }
    socket.write(frame);
  };

  const logEvent = (event: IssuerEvent, plan: FaultPlan, started: number, outcome: string) => {
    const entry: Record<string, unknown> = { ...event, outcome, ms: Date.now() - started };
    if (plan.delayMs > 0) entry.delayMs = plan.delayMs;
    logger.info(entry, 'network message');
  };

  const handleFrame = (socket: Socket, payload: Buffer, plan: FaultPlan, started: number) => {
    if (closed) return;
    let result: ReturnType<Issuer['handle']>;
    try {
      result = issuer.handle(payload, { responseCode: plan.responseCode });
    } catch (e) {
      logger.error({ err: e instanceof PoskeyError ? e.code : String(e) }, 'network message failed');
      return;
    }
    if (result.kind === 'ignored') {
      stats.ignored++;
      logEvent(result.event, plan, started, 'ignored');
      return;
    }
    if (plan.drop) {
      stats.dropped++;
      logEvent(result.event, plan, started, 'dropped');
      return;
    }
    if (plan.disconnect) {
      stats.disconnected++;
      logEvent(result.event, plan, started, 'disconnected');
      socket.destroy();
      return;
    }
    if (socket.destroyed || !socket.writable) {
      logEvent(result.event, plan, started, 'connection gone');
      return;
    }
    answer(socket, buildFrame({ body: result.body }, NETWORK_PROFILE));
    stats.answered++;
    const code = result.event.responseCode ?? '??';
    stats.codes[code] = (stats.codes[code] ?? 0) + 1;
    logEvent(result.event, plan, started, 'answered');
  };

  const onConnection = (socket: Socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    stats.connections = sockets.size;
    socket.setNoDelay(true);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    logger.info({ peer }, 'acquirer connected');
    const decoder = createFrameDecoder(NETWORK_PROFILE);
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = decoder.push(chunk);
      } catch (e) {
        logger.warn({ peer, err: e instanceof PoskeyError ? e.code : String(e) }, 'framing error: closing');
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        stats.received++;
        const started = Date.now();
        const plan = planFaults(faults, random);
        after(plan.delayMs, () => handleFrame(socket, frame, plan, started));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      stats.connections = sockets.size;
      logger.info({ peer }, 'acquirer disconnected');
    });
  };

  return {
    ledger: options.ledger,
    issuer,
    zoneKeys: ring,
    listen() {
      if (server !== undefined) return Promise.reject(optionError('listen', 'already listening'));
      if (closed) return Promise.reject(optionError('listen', 'the simulator is closed'));
      const s = createServer(onConnection);
      server = s;
      return new Promise((resolve, reject) => {
        s.once('error', (e) => {
          server = undefined;
          reject(e);
        });
        s.listen(boundPort ?? port, host, () => {
          s.removeAllListeners('error');
          const address = s.address();
          const bound = typeof address === 'object' && address !== null ? address.port : port;
          boundPort = bound;
          logger.info({ host, port: bound }, 'network simulator listening');
          resolve({ host, port: bound });
        });
      });
    },
    async stop() {
      const s = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
      logger.info({ port: boundPort }, 'network simulator stopped');
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      if (server !== undefined) {
        const s = server;
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
      if (options.ownsLedger) options.ledger.close();
    },
    setFaults(next) {
      faults = resolveFaults(next);
      logger.info({ faults }, 'faults set');
      return faults;
    },
    faults: () => faults,
    stats: () => ({ ...stats, codes: { ...stats.codes } }),
  };
}
