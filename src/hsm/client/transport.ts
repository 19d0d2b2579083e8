/**
 * The payShield host-command transport: a pool of TCP (or TLS) connections to one or more HSMs,
 * with pipelining, header matching, per-request deadlines, failover and reconnection.
 *
 * - Every request gets a header unique on its connection (a base-36 counter, `headerLength`
 *   characters); the response is matched by the echoed header, not by order. With headerLength 0
 *   there is nothing to match on, so responses are taken in order (a payShield answers in order).
 * - Many requests are in flight per connection (`maxInFlightPerConnection`); the frames of one
 *   tick are built into one buffer and leave in one write. A request goes to the ready connection with the fewest
 *   requests in flight; when every connection is full, requests wait in a FIFO queue.
 * - Deadlines: one coarse timer (a tenth of `timeoutMs`) sweeps the in-flight maps and the queue,
 *   instead of a timer per request; a request fails between timeoutMs and timeoutMs + tick.
 *   `unhealthyAfterTimeouts` consecutive timeouts on a connection close it (it reconnects).
 * - Failover: a connection that fails to connect or drops is marked down and reconnects with
 *   exponential backoff and jitter; meanwhile requests go to the others. Requests in flight on a
 *   dropped connection are sent again elsewhere (`maxRetries`, within their deadline): every
 *   HsmApi operation may safely run twice (a second generation makes a key nobody sees).
 * - close(): no new requests; what is queued or in flight may finish within `closeTimeoutMs`,
 *   then is rejected with POSKEY_ERR_HSM_CLOSED; sockets are ended.
 */
import net from 'node:net';
import tls from 'node:tls';
import { MAX_HEADER_LENGTH, PAYSHIELD_MAX_FRAME, responseCode } from '../payshield/framing.js';
import { clientError, HsmRemoteError } from './errors.js';

export interface HsmAddress {
  host: string;
  port: number;
}

export interface ReconnectOptions {
  /** Delay before the first reconnect attempt, ms (default 100). */
  initialDelayMs?: number;
  /** Longest delay between attempts, ms (default 5000). */
  maxDelayMs?: number;
  /** Growth per consecutive failure (default 2). */
  factor?: number;
}

export interface TransportOptions {
  /** HSMs to spread the load over; at least one. */
  addresses: HsmAddress[];
  /** Connections opened to each address (default 2). */
  connectionsPerAddress?: number;
  /** Requests in flight on one connection (default 64). */
  maxInFlightPerConnection?: number;
  /** Per-request deadline from the call, ms (default 2000). */
  timeoutMs?: number;
  /** payShield message header length configured on the HSM, 0–255 (default 4). */
  headerLength?: number;
  /** TLS options; plain TCP when absent. */
  tls?: tls.ConnectionOptions;
  reconnect?: ReconnectOptions;
  /** Time allowed to open a connection, ms (default timeoutMs). */
  connectTimeoutMs?: number;
  /** Requests allowed to wait for a free connection (default 100000). */
  maxQueued?: number;
  /** Consecutive timeouts after which a connection is closed and reopened (default 3). */
  unhealthyAfterTimeouts?: number;
  /** Times a request is re-sent after its connection dropped (default 2; 0 = never). */
  maxRetries?: number;
  /** How long close() lets queued and in-flight requests finish, ms (default timeoutMs). */
  closeTimeoutMs?: number;
}

/**
 * How a command's response becomes a result. Made once per operation (`defineResponse`) and
 * shared by every request of it, so a request carries no closure of its own.
 */
export interface ResponseSpec<T, C> {
  readonly command: string;
  readonly responseCode: string;
  /**
   * Error codes besides '00' whose response is still an answer (M8: '01' = MAC does not verify);
   * 'any' hands every error code to `decode` (raw commands).
   */
  readonly okCodes: readonly string[] | 'any';
  /** Turns the fields after the error code (latin1) into the result; throws on a malformed answer. */
  readonly decode: (fields: string, errorCode: string, ctx: C) => T;
}

/** Declares a command's response handling. */
export function defineResponse<T, C = undefined>(
  command: string,
  decode: (fields: string, errorCode: string, ctx: C) => T,
  okCodes: readonly string[] | 'any' = [],
): ResponseSpec<T, C> {
  return { command, responseCode: responseCode(command), okCodes, decode };
}

export type ConnectionState = 'connecting' | 'ready' | 'down' | 'closed';

export interface TransportStats {
  /** Frames written (retries included). */
  sent: number;
  /** Requests answered (any error code). */
  answered: number;
  timeouts: number;
  /** Responses that arrived after their request had timed out, or matched nothing. */
  late: number;
  retries: number;
  /** Connections (re)established. */
  connects: number;
  queued: number;
  inFlight: number;
  connections: { address: string; state: ConnectionState; inFlight: number; lastError?: string }[];
}

const DEFAULTS = {
  connectionsPerAddress: 2,
  maxInFlightPerConnection: 64,
  timeoutMs: 2000,
  headerLength: 4,
  maxQueued: 100_000,
  unhealthyAfterTimeouts: 3,
  maxRetries: 2,
  initialDelayMs: 100,
  maxDelayMs: 5000,
  factor: 2,
};

type Resolved = Required<Omit<TransportOptions, 'tls' | 'reconnect'>> & {
  tls: tls.ConnectionOptions | undefined;
  initialDelayMs: number;
  maxDelayMs: number;
  factor: number;
};

/** One request from call to settlement. A class, so every request has the same hidden shape. */
class Pending {
  /** Its header on the connection it was last sent on, as a number (the base-36 counter). */
  key = 0;
  attempts = 0;
  done = false;
  sentOn: Connection | null = null;
  resolve!: (value: unknown) => void;
  reject!: (err: unknown) => void;

  constructor(
    readonly spec: ResponseSpec<unknown, unknown>,
    readonly body: string,
    readonly ctx: unknown,
    readonly deadline: number,
  ) {}
}

function optionError(field: string, reason: string) {
  return clientError('POSKEY_ERR_HSM_OPTION', reason, { field });
}

function intOption(value: unknown, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw optionError(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

function resolveOptions(o: TransportOptions): Resolved {
  if (o === null || typeof o !== 'object') throw optionError('options', 'must be an object');
  if (!Array.isArray(o.addresses) || o.addresses.length === 0) {
    throw optionError('addresses', 'at least one { host, port } is needed');
  }
  o.addresses.forEach((a, i) => {
    if (a === null || typeof a !== 'object' || typeof a.host !== 'string' || a.host === '') {
      throw optionError(`addresses[${i}].host`, 'must be a non-empty string');
    }
    intOption(a.port, `addresses[${i}].port`, 1, 65535, 0);
  });
  const timeoutMs = intOption(o.timeoutMs, 'timeoutMs', 1, 3_600_000, DEFAULTS.timeoutMs);
  const r = o.reconnect ?? {};
  const initialDelayMs = intOption(
    r.initialDelayMs,
    'reconnect.initialDelayMs',
    0,
    600_000,
    DEFAULTS.initialDelayMs,
  );
  const maxDelayMs = intOption(r.maxDelayMs, 'reconnect.maxDelayMs', 0, 3_600_000, DEFAULTS.maxDelayMs);
  const factor = r.factor ?? DEFAULTS.factor;
  if (typeof factor !== 'number' || !(factor >= 1 && factor <= 10)) {
    throw optionError('reconnect.factor', 'must be a number from 1 to 10');
  }
  return {
    addresses: o.addresses.map((a) => ({ host: a.host, port: a.port })),
    connectionsPerAddress: intOption(o.connectionsPerAddress, 'connectionsPerAddress', 1, 64, 2),
    maxInFlightPerConnection: intOption(o.maxInFlightPerConnection, 'maxInFlightPerConnection', 1, 65536, 64),
    timeoutMs,
    headerLength: intOption(o.headerLength, 'headerLength', 0, MAX_HEADER_LENGTH, DEFAULTS.headerLength),
    tls: o.tls,
    connectTimeoutMs: intOption(o.connectTimeoutMs, 'connectTimeoutMs', 1, 3_600_000, timeoutMs),
    maxQueued: intOption(o.maxQueued, 'maxQueued', 0, 10_000_000, DEFAULTS.maxQueued),
    unhealthyAfterTimeouts: intOption(o.unhealthyAfterTimeouts, 'unhealthyAfterTimeouts', 1, 1_000_000, 3),
    maxRetries: intOption(o.maxRetries, 'maxRetries', 0, 100, DEFAULTS.maxRetries),
    closeTimeoutMs: intOption(o.closeTimeoutMs, 'closeTimeoutMs', 0, 3_600_000, timeoutMs),
    initialDelayMs,
    maxDelayMs: Math.max(maxDelayMs, initialDelayMs),
    factor,
  };
}

/** A FIFO with O(1) push, shift and unshift, for requests waiting for a connection. */
class Queue {
  #items: (Pending | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(p: Pending): void {
    this.#items.push(p);
  }

  unshift(p: Pending): void {
    if (this.#head > 0) this.#items[--this.#head] = p;
    else this.#items.unshift(p);
  }

  peek(): Pending | undefined {
    return this.#items[this.#head];
  }

  shift(): Pending | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const p = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return p;
  }
}

function flush(conn: Connection): void {
  conn.flush();
}

/** Base-36 digit values of the header characters ('0'–'9', 'A'–'Z'), -1 for anything else. */
const DIGIT = new Int8Array(256).fill(-1);
for (let i = 0; i < 36; i++) DIGIT['0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'.charCodeAt(i)] = i;
const DIGIT_CHARS = Buffer.from('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'latin1');

/** Header digits that carry the counter; longer headers are left-padded with '0'. */
const MAX_COUNTER_DIGITS = 8;

function reconnectNow(conn: Connection): void {
  conn.reconnectTimer = null;
  conn.open();
}

/**
 * One socket to one HSM address, with its own header counter and in-flight map. Frames are built
 * straight into one buffer per tick (no Buffer or write per request), and responses are read in
 * place from the socket's chunks: the header is decoded to the counter it carries, so matching a
 * response costs no string.
 */
class Connection {
  state: ConnectionState = 'down';
  socket: net.Socket | null = null;
  /** Requests written on this connection, by header counter, in send order. */
  readonly inFlight = new Map<number, Pending>();
  /** Requests to write at the end of this tick. */
  #outbox: Pending[] = [];
  #flushScheduled = false;
  /** The start of a frame that a chunk cut short. */
  #carry: Buffer | null = null;
  consecutiveTimeouts = 0;
  failures = 0;
  lastError: string | undefined;
  reconnectTimer: NodeJS.Timeout | null = null;
  readonly label: string;
  #counter = 0;
  readonly #modulus: number;
  readonly #capacity: number;
  #connectTimer: NodeJS.Timeout | null = null;
  #closed: Promise<void> = Promise.resolve();

  constructor(
    readonly pool: Transport,
    readonly address: HsmAddress,
  ) {
    this.label = `${address.host}:${address.port}`;
    this.#modulus = 36 ** Math.min(pool.options.headerLength, MAX_COUNTER_DIGITS);
    // A 1-character header has only 36 values: never more in flight than there are headers.
    const { headerLength, maxInFlightPerConnection } = pool.options;
    this.#capacity =
      headerLength === 0 ? maxInFlightPerConnection : Math.min(maxInFlightPerConnection, this.#modulus);
  }

  get usable(): boolean {
    return this.state === 'ready' && this.inFlight.size < this.#capacity;
  }

  open(): void {
    if (this.pool.closing) return;
    const { tls: tlsOptions, connectTimeoutMs } = this.pool.options;
    this.state = 'connecting';
    this.#carry = null;
    const { host, port } = this.address;
    const socket = tlsOptions ? tls.connect({ ...tlsOptions, host, port }) : net.connect({ host, port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    this.#connectTimer = setTimeout(() => {
      this.lastError = `connect timed out after ${connectTimeoutMs} ms`;
      socket.destroy();
    }, connectTimeoutMs);
    this.#connectTimer.unref();
    socket.once(tlsOptions ? 'secureConnect' : 'connect', () => this.#onConnect(socket));
    socket.on('data', (chunk: Buffer) => this.#onData(socket, chunk));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.lastError = e.code ?? e.message;
    });
    this.#closed = new Promise((resolve) => socket.once('close', resolve)).then(() => this.#onClose(socket));
  }

  #onConnect(socket: net.Socket): void {
    if (socket !== this.socket) return;
    this.#clearConnectTimer();
    this.state = 'ready';
    this.failures = 0;
    this.consecutiveTimeouts = 0;
    this.lastError = undefined;
    this.pool.stats.connects += 1;
    this.pool.connected();
  }

  #clearConnectTimer(): void {
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
  }

  #onClose(socket: net.Socket): void {
    if (socket !== this.socket) return;
    this.#clearConnectTimer();
    this.socket = null;
    this.#outbox = [];
    this.#carry = null;
    this.failures += 1;
    this.lastError ??= 'connection closed by the HSM';
    const orphans = [...this.inFlight.values()];
    this.inFlight.clear();
    if (this.pool.closing) {
      this.state = 'closed';
    } else {
      this.state = 'down';
      this.#scheduleReconnect();
    }
    this.pool.orphaned(orphans, this);
  }

  #scheduleReconnect(): void {
    const { initialDelayMs, maxDelayMs, factor } = this.pool.options;
    const base = Math.min(maxDelayMs, initialDelayMs * factor ** Math.max(0, this.failures - 1));
    // ±20 % jitter, so the connections of a pool do not reconnect in lockstep.
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.reconnectTimer = setTimeout(reconnectNow, delay, this);
    this.reconnectTimer.unref();
  }

  /** Closes the socket (its requests are re-sent or failed by `#onClose`). */
  fail(reason: string): void {
    this.lastError = reason;
    this.socket?.destroy();
  }

  /** The next header counter not in flight (with headerLength 0, a plain sequence number). */
  #nextKey(): number {
    if (this.pool.options.headerLength === 0) return this.#counter++;
    let key: number;
    do {
      key = this.#counter;
      this.#counter = (this.#counter + 1) % this.#modulus;
    } while (this.inFlight.has(key));
    return key;
  }

  /** Queues a request for this tick's write; it is in flight from now on. */
  send(p: Pending): void {
    p.key = this.#nextKey();
    p.attempts += 1;
    this.inFlight.set(p.key, p);
    this.#outbox.push(p);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      process.nextTick(flush, this);
    }
  }

  /** Writes every queued request as one buffer: length, header, command, body for each. */
  flush(): void {
    this.#flushScheduled = false;
    const outbox = this.#outbox;
    const socket = this.socket;
    if (outbox.length === 0 || socket === null) return;
    this.#outbox = [];
    const hl = this.pool.options.headerLength;
    let total = 0;
    for (const p of outbox) total += 4 + hl + p.body.length;
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    for (const p of outbox) {
      const payload = hl + 2 + p.body.length;
      out[at] = payload >>> 8;
      out[at + 1] = payload & 0xff;
      this.#writeHeader(out, at + 2, p.key, hl);
      at += 2 + hl;
      out[at] = p.spec.command.charCodeAt(0);
      out[at + 1] = p.spec.command.charCodeAt(1);
      at += 2 + out.write(p.body, at + 2, 'latin1');
    }
    socket.write(out);
    this.pool.stats.sent += outbox.length;
  }

  /** The counter as `hl` base-36 characters, left-padded with '0'. */
  #writeHeader(out: Buffer, at: number, key: number, hl: number): void {
    let k = key;
    for (let i = hl - 1; i >= 0; i--) {
      out[at + i] = DIGIT_CHARS[k % 36]!;
      k = Math.floor(k / 36);
    }
  }

  /** The counter an echoed header carries, or -1 when it is not one of ours. */
  #readKey(buf: Buffer, at: number, hl: number): number {
    let key = 0;
    for (let i = 0; i < hl; i++) {
      const d = DIGIT[buf[at + i]!]!;
      if (d < 0 || (i < hl - MAX_COUNTER_DIGITS && d !== 0)) return -1;
      key = key * 36 + d;
    }
    return key;
  }

  #onData(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    let buf = chunk;
    if (this.#carry !== null) {
      buf = Buffer.concat([this.#carry, chunk]);
      this.#carry = null;
    }
    const n = buf.length;
    let i = 0;
    while (n - i >= 2) {
      const length = (buf[i]! << 8) | buf[i + 1]!;
      if (n - i - 2 < length) break;
      // Zero-length frames carry nothing to match (keep-alives): skipped.
      if (length > 0) this.#onFrame(buf, i + 2, i + 2 + length);
      if (socket.destroyed) return;
      i += 2 + length;
    }
    if (i < n) this.#carry = buf.subarray(i);
    this.pool.pump();
  }

  #onFrame(buf: Buffer, start: number, end: number): void {
    const hl = this.pool.options.headerLength;
    if (end - start < hl + 4) {
      this.fail(`response of ${end - start} bytes is shorter than header + response code + error code`);
      return;
    }
    let p: Pending | undefined;
    if (hl > 0) {
      const key = this.#readKey(buf, start, hl);
      p = this.inFlight.get(key);
      if (p !== undefined) this.inFlight.delete(key);
    } else {
      const first = this.inFlight.entries().next();
      if (!first.done) {
        p = first.value[1];
        this.inFlight.delete(first.value[0]);
      }
    }
    if (p === undefined) {
      this.pool.stats.late += 1;
      return;
    }
    this.consecutiveTimeouts = 0;
    this.pool.answer(p, buf, start + hl, end);
  }

  /** Fails the requests on this connection whose deadline has passed. */
  sweep(now: number): void {
    let expired = 0;
    for (const [key, p] of this.inFlight) {
      if (p.deadline > now) continue;
      this.inFlight.delete(key);
      expired += 1;
      this.pool.timedOut(p, this);
    }
    if (expired === 0) return;
    this.consecutiveTimeouts += expired;
    if (this.consecutiveTimeouts >= this.pool.options.unhealthyAfterTimeouts && this.state === 'ready') {
      this.consecutiveTimeouts = 0;
      this.fail(`unhealthy: ${this.pool.options.unhealthyAfterTimeouts} requests timed out in a row`);
    }
  }

  /** Ends the connection for good (client closing). */
  async shutdown(): Promise<void> {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const socket = this.socket;
    if (socket === null) {
      this.state = 'closed';
      return;
    }
    if (this.state === 'ready') socket.end();
    else socket.destroy();
    const force = setTimeout(() => socket.destroy(), 500);
    force.unref();
    await this.#closed;
    clearTimeout(force);
  }
}

/**
 * The connection pool. `request(spec, body, ctx)` sends `spec.command` with `body` (latin1 text
 * after the command code) and resolves with `spec.decode(fields, errorCode, ctx)`.
 */
export class Transport {
  readonly options: Resolved;
  readonly stats = {
    sent: 0,
    answered: 0,
    timeouts: 0,
    late: 0,
    retries: 0,
    connects: 0,
  };
  closing = false;
  readonly #connections: Connection[] = [];
  readonly #queue = new Queue();
  #outstanding = 0;
  #timer: NodeJS.Timeout | null = null;
  #next = 0;
  #drained: (() => void) | null = null;
  #closePromise: Promise<void> | null = null;
  #readyWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(options: TransportOptions) {
    this.options = resolveOptions(options);
    for (let i = 0; i < this.options.connectionsPerAddress; i++) {
      for (const address of this.options.addresses) this.#connections.push(new Connection(this, address));
    }
    for (const c of this.#connections) c.open();
  }

  /** Sends one command. Rejects with HsmRemoteError for a non-OK error code, or a client error. */
  request<T, C>(spec: ResponseSpec<T, C>, body: string, ctx: C): Promise<T> {
    if (this.closing) {
      return Promise.reject(
        clientError('POSKEY_ERR_HSM_CLOSED', 'the HSM client is closed', { field: spec.command }),
      );
    }
    if (body.length + this.options.headerLength + 2 > PAYSHIELD_MAX_FRAME) {
      return Promise.reject(
        clientError('POSKEY_ERR_HSM_REQUEST', `${spec.command} request does not fit a 2-byte length`, {
          field: spec.command,
        }),
      );
    }
    const p = new Pending(
      spec as ResponseSpec<unknown, unknown>,
      body,
      ctx,
      Date.now() + this.options.timeoutMs,
    );
    const promise = new Promise<T>((resolve, reject) => {
      p.resolve = resolve as (value: unknown) => void;
      p.reject = reject;
    });
    this.#outstanding += 1;
    this.#dispatch(p);
    if (this.#timer === null) this.#startTimer();
    return promise;
  }

  #pick(): Connection | undefined {
    const conns = this.#connections;
    const n = conns.length;
    let best: Connection | undefined;
    // Start after the last pick, so equal loads are shared round robin.
    for (let k = 0; k < n; k++) {
      const c = conns[(this.#next + k) % n]!;
      if (c.usable && (best === undefined || c.inFlight.size < best.inFlight.size)) best = c;
    }
    if (best !== undefined) this.#next = (conns.indexOf(best) + 1) % n;
    return best;
  }

  #dispatch(p: Pending, front = false): void {
    if (this.#queue.length === 0) {
      const c = this.#pick();
      if (c !== undefined) {
        c.send(p);
        return;
      }
    }
    if (front) {
      this.#queue.unshift(p);
    } else if (this.#queue.length >= this.options.maxQueued) {
      this.#fail(
        p,
        clientError(
          'POSKEY_ERR_HSM_OVERLOADED',
          `more than ${this.options.maxQueued} requests waiting for an HSM`,
          {
            field: p.spec.command,
          },
        ),
      );
    } else {
      this.#queue.push(p);
    }
  }

  /** A connection became ready: wake `ready()` waiters, send what waits. */
  connected(): void {
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const w of waiters) w.resolve();
    this.pump();
  }

  /**
   * Resolves once a connection is ready; rejects with POSKEY_ERR_HSM_UNAVAILABLE when none is within
   * `connectTimeoutMs` (the pool keeps trying in the background), or POSKEY_ERR_HSM_CLOSED.
   */
  ready(): Promise<void> {
    if (this.closing) {
      return Promise.reject(
        clientError('POSKEY_ERR_HSM_CLOSED', 'the HSM client is closed', { field: 'ready' }),
      );
    }
    if (this.#connections.some((c) => c.state === 'ready')) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.#readyWaiters = this.#readyWaiters.filter((w) => w !== waiter);
        reject(
          clientError(
            'POSKEY_ERR_HSM_UNAVAILABLE',
            `no HSM reachable within ${this.options.connectTimeoutMs} ms (${this.#describeDown()})`,
            { field: 'addresses' },
          ),
        );
      }, this.options.connectTimeoutMs);
      this.#readyWaiters.push(waiter);
    });
  }

  /** Sends waiting requests while a connection has room. */
  pump(): void {
    while (this.#queue.length > 0) {
      const c = this.#pick();
      if (c === undefined) return;
      c.send(this.#queue.shift()!);
    }
  }

  /** A response for `p`: `buf[at..end)` holds response code, error code and fields. */
  answer(p: Pending, buf: Buffer, at: number, end: number): void {
    this.stats.answered += 1;
    const spec = p.spec;
    const rc = spec.responseCode;
    if (buf[at] !== rc.charCodeAt(0) || buf[at + 1] !== rc.charCodeAt(1)) {
      const got = buf.toString('latin1', at, at + 2);
      this.#fail(
        p,
        clientError(
          'POSKEY_ERR_HSM_PROTOCOL',
          `${spec.command} answered with ${JSON.stringify(got)}, not ${rc}`,
          {
            field: spec.command,
          },
        ),
      );
      return;
    }
    const ok = buf[at + 2] === 0x30 && buf[at + 3] === 0x30;
    const errorCode = ok ? '00' : buf.toString('latin1', at + 2, at + 4);
    if (!ok && spec.okCodes !== 'any' && !spec.okCodes.includes(errorCode)) {
      this.#fail(p, new HsmRemoteError(spec.command, errorCode));
      return;
    }
    let value: unknown;
    try {
      value = spec.decode(buf.toString('latin1', at + 4, end), errorCode, p.ctx);
    } catch (e) {
      this.#fail(p, e);
      return;
    }
    this.#settle(p);
    p.resolve(value);
  }

  timedOut(p: Pending, c: Connection): void {
    this.stats.timeouts += 1;
    this.#fail(
      p,
      clientError(
        'POSKEY_ERR_HSM_TIMEOUT',
        `no answer to ${p.spec.command} from ${c.label} within ${this.options.timeoutMs} ms`,
        { field: p.spec.command },
      ),
    );
  }

  /** Requests that were in flight on a connection that dropped: send again, or fail. */
  orphaned(orphans: Pending[], c: Connection): void {
    const now = Date.now();
    // Re-queue from the last, so the oldest ends up first.
    for (let i = orphans.length - 1; i >= 0; i--) {
      const p = orphans[i]!;
      if (!this.closing && p.attempts <= this.options.maxRetries && p.deadline > now) {
        this.stats.retries += 1;
        this.#dispatch(p, true);
      } else {
        this.#fail(
          p,
          clientError(
            'POSKEY_ERR_HSM_CONNECTION',
            `connection to ${c.label} was lost before ${p.spec.command} was answered (${c.lastError ?? 'closed'})`,
            { field: p.spec.command },
          ),
        );
      }
    }
    this.pump();
    if (this.closing && !this.#connections.some((x) => x.state === 'ready')) this.#rejectQueued();
  }

  #settle(p: Pending): boolean {
    if (p.done) return false;
    p.done = true;
    this.#outstanding -= 1;
    if (this.#drained !== null && this.#outstanding === 0) this.#drained();
    return true;
  }

  #fail(p: Pending, err: unknown): void {
    if (this.#settle(p)) p.reject(err);
  }

  #startTimer(): void {
    const tick = Math.max(5, Math.min(250, Math.floor(this.options.timeoutMs / 10)));
    this.#timer = setInterval(() => this.#sweep(), tick);
  }

  #sweep(): void {
    const now = Date.now();
    for (const c of this.#connections) if (c.inFlight.size > 0) c.sweep(now);
    while (this.#queue.length > 0 && this.#queue.peek()!.deadline <= now) {
      this.#expireQueued(this.#queue.shift()!);
    }
    if (this.#outstanding === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  /** A request that never left the queue: timed out behind busy connections, or had none. */
  #expireQueued(p: Pending): void {
    const ready = this.#connections.some((c) => c.state === 'ready');
    if (ready) {
      this.stats.timeouts += 1;
      this.#fail(
        p,
        clientError(
          'POSKEY_ERR_HSM_TIMEOUT',
          `${p.spec.command} waited ${this.options.timeoutMs} ms for a free HSM connection`,
          { field: p.spec.command },
        ),
      );
      return;
    }
    this.#fail(
      p,
      clientError(
        'POSKEY_ERR_HSM_UNAVAILABLE',
        `no HSM reachable within ${this.options.timeoutMs} ms for ${p.spec.command} (${this.#describeDown()})`,
        { field: p.spec.command },
      ),
    );
  }

  #describeDown(): string {
    const seen = new Map<string, string>();
    for (const c of this.#connections) if (!seen.has(c.label)) seen.set(c.label, c.lastError ?? c.state);
    return [...seen].map(([label, why]) => `${label}: ${why}`).join('; ');
  }

  #rejectQueued(): void {
    for (let p = this.#queue.shift(); p !== undefined; p = this.#queue.shift()) {
      this.#fail(
        p,
        clientError('POSKEY_ERR_HSM_CLOSED', `the HSM client closed before ${p.spec.command} was sent`, {
          field: p.spec.command,
        }),
      );
    }
  }

  /** Counters and the state of every connection. */
  snapshot(): TransportStats {
    let inFlight = 0;
    const connections = this.#connections.map((c) => {
      inFlight += c.inFlight.size;
      const row: TransportStats['connections'][number] = {
        address: c.label,
        state: c.state,
        inFlight: c.inFlight.size,
      };
      if (c.lastError !== undefined) row.lastError = c.lastError;
      return row;
    });
    return { ...this.stats, queued: this.#queue.length, inFlight, connections };
  }

  /**
   * Stops taking requests, lets queued and in-flight ones finish within closeTimeoutMs, rejects
   * the rest with POSKEY_ERR_HSM_CLOSED, and closes every connection. Idempotent.
   */
  close(): Promise<void> {
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    this.closing = true;
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const w of waiters) {
      w.reject(
        clientError('POSKEY_ERR_HSM_CLOSED', 'the HSM client closed before a connection was up', {
          field: 'ready',
        }),
      );
    }
    for (const c of this.#connections) {
      if (c.reconnectTimer !== null) {
        clearTimeout(c.reconnectTimer);
        c.reconnectTimer = null;
        c.state = 'closed';
      }
    }
    if (!this.#connections.some((c) => c.state === 'ready')) this.#rejectQueued();
    if (this.#outstanding > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.closeTimeoutMs);
        this.#drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#drained = null;
    }
    this.#rejectQueued();
    for (const c of this.#connections) {
      const pending = [...c.inFlight.values()];
      c.inFlight.clear();
      for (const p of pending) {
        this.#fail(
          p,
          clientError(
            'POSKEY_ERR_HSM_CLOSED',
            `the HSM client closed before ${p.spec.command} was answered`,
            {
              field: p.spec.command,
            },
          ),
        );
      }
    }
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await Promise.all(this.#connections.map((c) => c.shutdown()));
  }
}
