/**
 * The host's client for the card network: one persistent TCP connection in the `network` dialect
 * with NETWORK_PROFILE framing (2-byte length, no header), many requests in flight, answers matched
 * by the network STAN (field 11) the host put in the request.
 *
 * - `request(stan, body)` resolves with the matched answer, or rejects with
 *   POSKEY_ERR_NETWORK_TIMEOUT (sent, no answer in time: the outcome is unknown),
 *   POSKEY_ERR_NETWORK_LOST (sent, then the connection dropped: unknown too),
 *   POSKEY_ERR_NETWORK_DOWN (never sent: no connection within the deadline),
 *   POSKEY_ERR_NETWORK_BUSY (too many in flight) or POSKEY_ERR_NETWORK_CLOSED.
 * - Requests made while the link is down wait for it (up to their deadline) and go out on connect.
 * - The link reconnects by itself with a doubling back-off.
 * - Deadlines are kept in one insertion-ordered map swept by one timer: the timeout is the same for
 *   every request, so the oldest entries expire first and a sweep stops at the first live one. No
 *   timer per request.
 * - An answer nobody waits for (it came after its deadline) and anything the network sends on its
 *   own are handed to `onUnsolicited` (the next issue's reversals and network management use it).
 *
 * MACs are not this module's business: the forward step MACs the body before sending and checks
 * the answer's MAC, so the link stays a transport.
 */
import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import {
  createFrameDecoder,
  encodeFrame,
  type FrameDecoder,
  type FramingProfile,
  type IsoMessage,
  NETWORK_PROFILE,
  unpack,
} from '../iso8583/index.js';
import { NETWORK_DIALECT } from '../protocol/network-link.js';
import { type HostErrorCode, hostError } from './errors.js';

export interface NetworkReply {
  msg: IsoMessage;
  /** The answer's bytes (the MAC block is all but the last 8 bytes). */
  body: Buffer;
}

export interface NetworkLinkOptions {
  host: string;
  port: number;
  /** Deadline per request, ms, from the call. */
  timeoutMs: number;
  connectTimeoutMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Requests waiting or in flight before new ones are refused. */
  maxInFlight?: number;
  profile?: FramingProfile;
  log?: Logger;
  /** Answers that came too late, and requests the network sends on its own. */
  onUnsolicited?: (reply: NetworkReply) => void;
  /** Connection state changes (for logs and metrics). */
  onState?: (state: LinkState) => void;
}

export type LinkState = 'connecting' | 'up' | 'down' | 'closed';

/** What the host's steps use of the link: one NetworkLink, or several with failover (network-links.ts). */
export interface NetworkTransport {
  readonly state: LinkState;
  nextStan(): string;
  request(stan: string, body: Buffer): Promise<NetworkReply>;
  stats(): LinkStats;
}

export interface LinkStats {
  state: LinkState;
  pending: number;
  sent: number;
  answered: number;
  timeouts: number;
  lost: number;
  notSent: number;
  late: number;
  connects: number;
}

interface Pending {
  stan: string;
  frame: Buffer;
  deadline: number;
  sent: boolean;
  resolve: (r: NetworkReply) => void;
  reject: (e: Error) => void;
}

const MAX_STAN = 999_999;

function stanText(n: number): string {
  return String(n).padStart(6, '0');
}

export class NetworkLink implements NetworkTransport {
  readonly #o: Required<Omit<NetworkLinkOptions, 'log' | 'onUnsolicited' | 'onState'>> &
    Pick<NetworkLinkOptions, 'log' | 'onUnsolicited' | 'onState'>;
  readonly #pending = new Map<string, Pending>();
  #socket: Socket | undefined;
  #state: LinkState = 'down';
  #stan = 0;
  #backoff: number;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #started = false;
  readonly #stats = { sent: 0, answered: 0, timeouts: 0, lost: 0, notSent: 0, late: 0, connects: 0 };
  /** The socket corked for this event-loop turn's writes, until the scheduled uncork runs. */
  #corked: Socket | undefined;
  readonly #uncork = (): void => {
    const socket = this.#corked;
    this.#corked = undefined;
    if (socket !== undefined && !socket.destroyed) socket.uncork();
  };

  constructor(options: NetworkLinkOptions) {
    this.#o = {
      connectTimeoutMs: 2000,
      reconnectMinMs: 100,
      reconnectMaxMs: 5000,
      maxInFlight: 50_000,
      profile: NETWORK_PROFILE,
      ...options,
    };
    this.#backoff = this.#o.reconnectMinMs;
    this.#stan = Math.floor(Math.random() * MAX_STAN);
  }

  get state(): LinkState {
    return this.#state;
  }

  /** `host:port` of the network end. */
  get endpoint(): string {
    return `${this.#o.host}:${this.#o.port}`;
  }

  /** Opens the connection (and keeps it open) and starts the deadline sweeper. */
  start(): void {
    if (this.#started || this.#state === 'closed') return;
    this.#started = true;
    const tick = Math.min(100, Math.max(5, Math.floor(this.#o.timeoutMs / 10)));
    this.#sweeper = setInterval(() => this.#sweep(), tick);
    this.#sweeper.unref();
    this.#connect();
  }

  /** Resolves once connected, or rejects after `ms`. */
  async waitUntilUp(ms = this.#o.connectTimeoutMs): Promise<void> {
    const until = Date.now() + ms;
    while (this.#state !== 'up') {
      if (this.#state === 'closed')
        throw hostError('POSKEY_ERR_NETWORK_CLOSED', 'the network link is closed');
      if (Date.now() > until)
        throw hostError('POSKEY_ERR_NETWORK_DOWN', `no connection to the network in ${ms} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** The next network STAN (field 11), skipping any still in flight. */
  nextStan(): string {
    for (;;) {
      this.#stan = this.#stan >= MAX_STAN ? 1 : this.#stan + 1;
      const s = stanText(this.#stan);
      if (!this.#pending.has(s)) return s;
    }
  }

  /**
   * Sends `body` (a packed network message whose field 11 is `stan`) and resolves with the answer
   * carrying the same STAN.
   */
  request(stan: string, body: Buffer): Promise<NetworkReply> {
    if (this.#state === 'closed')
      return Promise.reject(hostError('POSKEY_ERR_NETWORK_CLOSED', 'the network link is closed'));
    if (this.#pending.size >= this.#o.maxInFlight) {
      this.#stats.notSent++;
      return Promise.reject(
        hostError('POSKEY_ERR_NETWORK_BUSY', `${this.#pending.size} requests already in flight`),
      );
    }
    if (this.#pending.has(stan)) {
      return Promise.reject(hostError('POSKEY_ERR_NETWORK_BUSY', 'that STAN is already in flight', 'stan'));
    }
    const frame = encodeFrame(body, this.#o.profile);
    return new Promise<NetworkReply>((resolve, reject) => {
      const p: Pending = {
        stan,
        frame,
        deadline: performance.now() + this.#o.timeoutMs,
        sent: false,
        resolve,
        reject,
      };
      this.#pending.set(stan, p);
      // The sweeper keeps the process alive only while something waits on it.
      if (this.#pending.size === 1) this.#sweeper?.ref();
      if (this.#state === 'up') this.#write(p);
    });
  }

  stats(): LinkStats {
    return { state: this.#state, pending: this.#pending.size, ...this.#stats };
  }

  /** Drops the connection (a failed echo: the peer is gone); the link reconnects with back-off. */
  drop(reason: string): void {
    const socket = this.#socket;
    if (socket === undefined || this.#state !== 'up') return;
    this.#o.log?.warn({ host: this.#o.host, port: this.#o.port, reason }, 'dropping the network link');
    socket.destroy();
  }

  /** Rejects everything pending (POSKEY_ERR_NETWORK_CLOSED) and closes the connection. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#setState('closed');
    if (this.#sweeper) clearInterval(this.#sweeper);
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    for (const p of this.#pending.values()) {
      p.reject(hostError('POSKEY_ERR_NETWORK_CLOSED', 'the network link was closed'));
    }
    this.#pending.clear();
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      });
    }
  }

  #setState(state: LinkState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#o.onState?.(state);
  }

  #connect(): void {
    if (this.#state === 'closed') return;
    this.#setState('connecting');
    const socket = connect({ host: this.#o.host, port: this.#o.port, noDelay: true, keepAlive: true });
    const decoder = createFrameDecoder(this.#o.profile);
    this.#socket = socket;
    socket.setTimeout(this.#o.connectTimeoutMs, () => {
      if (this.#state === 'connecting') socket.destroy();
    });
    socket.once('connect', () => {
      socket.setTimeout(0);
      this.#stats.connects++;
      this.#backoff = this.#o.reconnectMinMs;
      this.#setState('up');
      this.#o.log?.info({ host: this.#o.host, port: this.#o.port }, 'network link up');
      for (const p of this.#pending.values()) if (!p.sent) this.#write(p);
    });
    socket.on('data', (chunk: Buffer) => this.#onData(decoder, chunk));
    socket.on('error', (e) => this.#o.log?.warn({ err: e }, 'network link error'));
    socket.once('close', () => this.#onClose(socket));
  }

  #write(p: Pending): void {
    p.sent = true;
    this.#stats.sent++;
    const socket = this.#socket!;
    // Requests made during one event-loop turn leave in one writev (one syscall, not one each):
    // the socket is corked at the turn's first write and uncorked once that turn's I/O is done.
    if (this.#corked !== socket) {
      if (this.#corked !== undefined) this.#uncork();
      socket.cork();
      this.#corked = socket;
      setImmediate(this.#uncork);
    }
    socket.write(p.frame);
  }

  #onData(decoder: FrameDecoder, chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (e) {
      this.#o.log?.error({ err: e }, 'network link framing failed; reconnecting');
      this.#socket?.destroy();
      return;
    }
    for (const body of frames) this.#onFrame(body);
  }

  #onFrame(body: Buffer): void {
    let msg: IsoMessage;
    try {
      msg = unpack(NETWORK_DIALECT, body);
    } catch (e) {
      this.#o.log?.error({ err: e }, 'network sent a message that does not unpack');
      return;
    }
    const stan = msg[11];
    const isResponse = (msg[0].charCodeAt(2) - 48) % 2 === 1;
    const p = isResponse && typeof stan === 'string' ? this.#pending.get(stan) : undefined;
    if (p === undefined || !p.sent) {
      if (isResponse) this.#stats.late++;
      this.#o.onUnsolicited?.({ msg, body });
      return;
    }
    this.#settled(stan as string);
    this.#stats.answered++;
    p.resolve({ msg, body });
  }

  #onClose(socket: Socket): void {
    if (this.#socket !== socket) return;
    this.#socket = undefined;
    if (this.#state === 'closed') return;
    const wasUp = this.#state === 'up';
    this.#setState('down');
    if (wasUp) this.#o.log?.warn({ host: this.#o.host, port: this.#o.port }, 'network link down');
    // Sent requests are in doubt now; unsent ones wait for the next connection.
    for (const p of this.#pending.values()) {
      if (!p.sent) continue;
      this.#settled(p.stan);
      this.#stats.lost++;
      p.reject(hostError('POSKEY_ERR_NETWORK_LOST', 'the connection dropped before the network answered'));
    }
    this.#reconnectTimer = setTimeout(() => this.#connect(), this.#backoff);
    this.#reconnectTimer.unref();
    this.#backoff = Math.min(this.#o.reconnectMaxMs, this.#backoff * 2);
  }

  #settled(stan: string): void {
    this.#pending.delete(stan);
    if (this.#pending.size === 0) this.#sweeper?.unref();
  }

  #sweep(): void {
    const now = performance.now();
    for (const p of this.#pending.values()) {
      if (p.deadline > now) break;
      this.#settled(p.stan);
      let code: HostErrorCode;
      if (p.sent) {
        code = 'POSKEY_ERR_NETWORK_TIMEOUT';
        this.#stats.timeouts++;
      } else {
        code = 'POSKEY_ERR_NETWORK_DOWN';
        this.#stats.notSent++;
      }
      p.reject(
        hostError(code, p.sent ? 'the network did not answer in time' : 'no connection to the network'),
      );
    }
  }
}
