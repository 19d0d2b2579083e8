/**
 * The terminal's TCP link to the POSP: TERMINAL_PROFILE framing (2-byte length, TPDU, 6-byte
 * header, then the ISO body). One connection carries any number of requests at once; a response
 * is matched to its request by response MTI (request MTI + 10) and STAN (field 11), so answers may
 * come back in any order. A response that matches nothing (a late answer after a timeout) is
 * reported to `onFrame` and otherwise dropped.
 */
import { connect, type Socket } from 'node:net';
import {
  buildFrame,
  createFrameDecoder,
  type Envelope,
  type FrameDecoder,
  parseEnvelope,
  TERMINAL_PROFILE,
  type TerminalHeader,
  type Tpdu,
} from '../iso8583/framing.js';
import { type Dialect, type IsoMessage, unpack } from '../iso8583/index.js';
import { POS_DIALECT } from '../protocol/unionpay-pos.js';
import { TerminalErrorCode as E, TerminalError } from './errors.js';

/** TPDU `60 0003 0000`: destination NII 0003, source 0000. */
export const DEFAULT_TPDU: Tpdu = Object.freeze({ id: 0x60, destination: 0x0003, source: 0x0000 });
/** Header `60 31 00 000000`: magstripe POS application, version 31, normal status. */
export const DEFAULT_HEADER: TerminalHeader = Object.freeze({
  appType: '60',
  version: '31',
  terminalStatus: 0,
  processingRequirement: 0,
  subVersion: '000000',
});

/** A frame on the wire, for tracing (`--trace`) and statistics. */
export interface FrameEvent {
  direction: 'sent' | 'received';
  /** Bytes after the length prefix. */
  length: number;
  envelope?: Envelope;
  message?: IsoMessage;
  /** A received frame that answers no request in flight. */
  unmatched?: boolean;
  /** A received frame that could not be parsed. */
  error?: unknown;
}

export interface ConnectionOptions {
  host: string;
  port: number;
  tpdu?: Tpdu;
  header?: TerminalHeader;
  /** The terminal dialect responses are read with (SM4 terminals: 16-byte field 52). */
  dialect?: Dialect;
  /** Default 5000 ms. */
  connectTimeoutMs?: number;
  onFrame?: (event: FrameEvent) => void;
}

/** A matched response. */
export interface Exchange {
  message: IsoMessage;
  envelope: Envelope;
  /** Milliseconds from writing the request to reading the response. */
  latencyMs: number;
}

interface Pending {
  resolve: (x: Exchange) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
  sentAt: number;
}

/** The response MTI of a request MTI: third digit + 1 (0200 → 0210, 0800 → 0810). */
export function responseMti(mti: string): string {
  if (!/^\d{4}$/.test(mti) || Number(mti[2]) % 2 !== 0) {
    throw new TerminalError(E.RESPONSE, `${mti} is not a request MTI`, { field: 'MTI' });
  }
  return `${mti.slice(0, 2)}${Number(mti[2]) + 1}${mti[3]}`;
}

const matchKey = (mti: string, stan: unknown) => `${mti}:${String(stan)}`;

export class TerminalConnection {
  readonly host: string;
  readonly port: number;
  readonly #tpdu: Tpdu;
  readonly #dialect: Dialect;
  readonly #header: TerminalHeader;
  readonly #connectTimeoutMs: number;
  readonly #onFrame: ((event: FrameEvent) => void) | undefined;
  readonly #pending = new Map<string, Pending>();
  #socket: Socket | undefined;
  #connecting: Promise<Socket> | undefined;
  #closed = false;

  constructor(options: ConnectionOptions) {
    this.host = options.host;
    this.port = options.port;
    this.#tpdu = options.tpdu ?? DEFAULT_TPDU;
    this.#dialect = options.dialect ?? POS_DIALECT;
    this.#header = options.header ?? DEFAULT_HEADER;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.#onFrame = options.onFrame;
  }

  get connected(): boolean {
    return this.#socket !== undefined;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  /** Opens the connection if it is not open; concurrent callers share one attempt. */
  async connect(): Promise<void> {
    await this.#open();
  }

  /**
   * Sends a packed request and resolves with its response.
   * @param message the request as packed in `body` (its MTI and field 11 are the match key)
   * @throws POSKEY_ERR_TERMINAL_CONNECTION (cannot connect, or the link dropped with the request
   *   in flight), _TIMEOUT (no answer in `timeoutMs`), _DUPLICATE (same MTI and STAN in flight),
   *   _CLOSED
   */
  async request(message: IsoMessage, body: Buffer, timeoutMs: number): Promise<Exchange> {
    const key = matchKey(responseMti(message[0]), message[11]);
    const socket = await this.#open();
    if (this.#pending.has(key)) {
      throw new TerminalError(E.DUPLICATE, `MTI ${message[0]} STAN ${message[11]} is already in flight`, {
        field: '11',
      });
    }
    const envelope: Envelope = { tpdu: this.#tpdu, header: this.#header, body };
    const frame = buildFrame(envelope, TERMINAL_PROFILE);
    return new Promise<Exchange>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(key);
        reject(
          new TerminalError(
            E.TIMEOUT,
            `no response to ${message[0]} STAN ${message[11]} in ${timeoutMs} ms`,
            {
              field: 'timeout',
            },
          ),
        );
      }, timeoutMs);
      this.#pending.set(key, { resolve, reject, timer, sentAt: performance.now() });
      this.#onFrame?.({ direction: 'sent', length: frame.length - 2, envelope, message });
      socket.write(frame);
    });
  }

  /** Closes the link; requests in flight fail with POSKEY_ERR_TERMINAL_CLOSED. */
  async close(): Promise<void> {
    this.#closed = true;
    const socket = this.#socket ?? (await this.#connecting?.catch(() => undefined));
    this.#failAll(new TerminalError(E.CLOSED, 'connection closed by the terminal'));
    if (socket === undefined || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    });
  }

  #open(): Promise<Socket> {
    if (this.#closed) return Promise.reject(new TerminalError(E.CLOSED, 'connection is closed'));
    if (this.#socket !== undefined) return Promise.resolve(this.#socket);
    this.#connecting ??= this.#dial().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  #dial(): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const socket = connect({ host: this.host, port: this.port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(this.#connectError(`connect timeout after ${this.#connectTimeoutMs} ms`));
      }, this.#connectTimeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(this.#connectError((e as NodeJS.ErrnoException).code ?? e.message, e));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        this.#attach(socket);
        resolve(socket);
      });
    });
  }

  #connectError(reason: string, cause?: unknown): TerminalError {
    return new TerminalError(E.CONNECTION, `cannot connect to ${this.host}:${this.port}: ${reason}`, {
      field: 'host',
      cause,
    });
  }

  #attach(socket: Socket): void {
    this.#socket = socket;
    const decoder = createFrameDecoder(TERMINAL_PROFILE);
    socket.on('data', (chunk: Buffer) => this.#receive(decoder, socket, chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.#socket === socket) this.#socket = undefined;
      this.#failAll(
        new TerminalError(E.CONNECTION, `connection to ${this.host}:${this.port} closed by the host`, {
          field: 'host',
        }),
      );
    });
  }

  #receive(decoder: FrameDecoder, socket: Socket, chunk: Buffer): void {
    let payloads: Buffer[];
    try {
      payloads = decoder.push(chunk);
    } catch (e) {
      // Frame boundaries are lost: nothing more on this connection can be trusted.
      this.#onFrame?.({ direction: 'received', length: chunk.length, error: e });
      socket.destroy();
      return;
    }
    for (const payload of payloads) this.#dispatch(payload);
  }

  #dispatch(payload: Buffer): void {
    let envelope: Envelope;
    let message: IsoMessage;
    try {
      envelope = parseEnvelope(payload, TERMINAL_PROFILE);
      message = unpack(this.#dialect, envelope.body);
    } catch (e) {
      this.#onFrame?.({ direction: 'received', length: payload.length, error: e });
      return;
    }
    const key = matchKey(message[0], message[11]);
    const pending = this.#pending.get(key);
    this.#onFrame?.({
      direction: 'received',
      length: payload.length,
      envelope,
      message,
      ...(pending === undefined ? { unmatched: true } : {}),
    });
    if (pending === undefined) return;
    this.#pending.delete(key);
    clearTimeout(pending.timer);
    pending.resolve({ message, envelope, latencyMs: performance.now() - pending.sentAt });
  }

  #failAll(error: TerminalError): void {
    for (const [key, p] of this.#pending) {
      clearTimeout(p.timer);
      this.#pending.delete(key);
      p.reject(error);
    }
  }
}
