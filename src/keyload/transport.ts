/**
 * The line under the key-loading protocol: a serial port (the `serialport` package, loaded on
 * first use so a platform without its native binding still runs everything else) or TCP, behind
 * one byte-transport interface; and `Link`, the ACK/NAK, retry and duplicate handling both ends
 * share on top of it.
 *
 * Link rules (docs/key-injection.md §3):
 *   - every good frame is answered with ACK, a corrupt one with NAK;
 *   - poskey resends a request on NAK or when no ACK arrives within `ackTimeoutMs`, and when the
 *     answer does not arrive within `responseTimeoutMs`, up to `retries` times;
 *   - the device replays its last answer, without acting again, when a request arrives twice
 *     (byte for byte); it resends an answer on NAK or a missing ACK;
 *   - an incomplete frame is given up after `interByteTimeoutMs` of silence.
 * When nothing usable came back, the error says what was heard instead: nothing (SILENT), bytes
 * that never formed a frame (GARBLED), or another protocol (WRONG_PROTOCOL).
 */
import { randomInt } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  ACK,
  decodeMessage,
  encodeFrame,
  encodeMessage,
  type Frame,
  FrameDecoder,
  type FrameEvent,
  type KeyloadError,
  KeyloadErrorCode,
  type KeyloadMessage,
  keyloadError,
  messageTypeName,
  NAK,
} from './protocol.js';

/** A byte pipe: a serial port or a TCP connection. */
export interface ByteTransport {
  /** Port path or host:port, for reports. */
  readonly name: string;
  write(data: Uint8Array): Promise<void>;
  /** Installs the one consumer of incoming bytes and of the close event. */
  attach(handlers: { data: (chunk: Buffer) => void; close: (error?: Error) => void }): void;
  close(): Promise<void>;
}

/** Where a key-loading port is: a serial device path, or TCP. */
export type LinkTarget = { port: string; baudRate?: number } | { tcp: string };

export const DEFAULT_BAUD_RATE = 115200;
export const DEFAULT_CONNECT_TIMEOUT_MS = 3000;

/**
 * Parses `/dev/ttyUSB0`, `COM3`, `tcp:host:port` or `tcp://host:port` into a target.
 * @throws POSKEY_ERR_KEYLOAD_OPTION for an empty name or a TCP address without a valid port
 */
export function parseTarget(text: string, baudRate?: number): LinkTarget {
  if (typeof text !== 'string' || text.trim() === '') {
    throw keyloadError(KeyloadErrorCode.OPTION, 'give a serial port path or tcp:HOST:PORT', 'port');
  }
  const m = /^tcp:(?:\/\/)?(.+)$/i.exec(text.trim());
  if (m !== null) {
    parseHostPort(m[1]!, 'tcp');
    return { tcp: m[1]! };
  }
  return baudRate === undefined ? { port: text.trim() } : { port: text.trim(), baudRate };
}

/**
 * `host:port` (IPv6 in brackets) into its parts.
 * @throws POSKEY_ERR_KEYLOAD_OPTION
 */
export function parseHostPort(text: string, field: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text ?? '');
  const port = m === null ? Number.NaN : Number(m[3]);
  if (m === null || port < 1 || port > 65535) {
    throw keyloadError(KeyloadErrorCode.OPTION, 'must be HOST:PORT with a port from 1 to 65535', field);
  }
  return { host: (m[1] ?? m[2])!, port };
}

export function targetName(target: LinkTarget): string {
  return 'tcp' in target ? `tcp:${target.tcp}` : target.port;
}

/**
 * Wraps a Node duplex stream (a SerialPort or a Socket). `end` closes it (default `destroy()`;
 * a SerialPort must be closed with `close()`, which releases its fd and lock).
 */
export function duplexTransport(
  stream: Duplex,
  name: string,
  end?: (done: () => void) => void,
): ByteTransport {
  let closed = false;
  let handlers: { data: (chunk: Buffer) => void; close: (error?: Error) => void } | undefined;
  let lastError: Error | undefined;
  stream.on('data', (chunk: Buffer) => handlers?.data(chunk));
  stream.on('error', (e: Error) => {
    lastError = e;
  });
  stream.on('close', () => {
    closed = true;
    handlers?.close(lastError);
  });
  return {
    name,
    attach(h) {
      handlers = h;
    },
    write(data) {
      if (closed || stream.destroyed) {
        return Promise.reject(keyloadError(KeyloadErrorCode.CLOSED, 'the line is closed', 'link'));
      }
      return new Promise((resolve, reject) => {
        stream.write(Buffer.from(data), (e) => {
          if (e) reject(keyloadError(KeyloadErrorCode.CLOSED, `write failed: ${e.message}`, 'link', e));
          else resolve();
        });
      });
    },
    close() {
      if (closed || stream.destroyed) return Promise.resolve();
      return new Promise((resolve) => {
        stream.once('close', () => resolve());
        if (end === undefined) stream.destroy();
        else end(() => resolve());
      });
    },
  };
}

type SerialPortModule = typeof import('serialport');
let serialModule: Promise<SerialPortModule> | undefined;

/**
 * The `serialport` package, imported once.
 * @throws POSKEY_ERR_KEYLOAD_SERIAL_DRIVER when its native binding does not load here
 */
export async function loadSerialDriver(): Promise<SerialPortModule> {
  serialModule ??= import('serialport');
  try {
    return await serialModule;
  } catch (e) {
    serialModule = undefined;
    throw keyloadError(
      KeyloadErrorCode.SERIAL_DRIVER,
      `the serial driver (serialport native binding) does not load on ${process.platform}/${process.arch}: ${(e as Error).message}`,
      'serialport',
      e,
    );
  }
}

/** Maps an open failure (an errno code, or serialport's message text) to a keyload error. */
export function portOpenError(path: string, e: unknown): KeyloadError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const text = e instanceof Error ? e.message : String(e);
  if (code === 'ENOENT' || /No such file|ENOENT|cannot find the file/i.test(text)) {
    return keyloadError(KeyloadErrorCode.PORT_NOT_FOUND, `no such serial port ${path}`, 'port', e);
  }
  if (code === 'EACCES' || code === 'EPERM' || /Permission denied|EACCES|Access denied/i.test(text)) {
    return keyloadError(KeyloadErrorCode.PORT_PERMISSION, `no permission to open ${path}`, 'port', e);
  }
  if (code === 'EBUSY' || /Cannot lock port|Resource temporarily unavailable|EBUSY|busy/i.test(text)) {
    return keyloadError(KeyloadErrorCode.PORT_BUSY, `${path} is held by another program`, 'port', e);
  }
  return keyloadError(KeyloadErrorCode.PORT_OPEN, `cannot open ${path}: ${text}`, 'port', e);
}

/**
 * Opens a serial port (8N1, no flow control) with an exclusive lock.
 * @throws POSKEY_ERR_KEYLOAD_SERIAL_DRIVER, _PORT_NOT_FOUND, _PORT_PERMISSION, _PORT_BUSY, _PORT_OPEN
 */
export async function openSerial(path: string, baudRate = DEFAULT_BAUD_RATE): Promise<ByteTransport> {
  if (typeof path !== 'string' || path === '') {
    throw keyloadError(KeyloadErrorCode.OPTION, 'give a serial port path', 'port');
  }
  if (!Number.isInteger(baudRate) || baudRate < 50 || baudRate > 4_000_000) {
    throw keyloadError(
      KeyloadErrorCode.OPTION,
      'baud rate must be a whole number from 50 to 4000000',
      'baudRate',
    );
  }
  // On POSIX a missing path is clearer from stat than from the binding's message.
  if (process.platform !== 'win32') {
    try {
      await stat(path);
    } catch (e) {
      throw portOpenError(path, e);
    }
  }
  const { SerialPort } = await loadSerialDriver();
  return new Promise((resolve, reject) => {
    const port = new SerialPort(
      { path, baudRate, dataBits: 8, stopBits: 1, parity: 'none', lock: true },
      (e) => {
        if (e) reject(portOpenError(path, e));
        else resolve(duplexTransport(port, path, (done) => port.close(() => done())));
      },
    );
  });
}

/**
 * Opens a TCP connection to a key-loading port.
 * @throws POSKEY_ERR_KEYLOAD_CONNECT
 */
export function connectTcp(address: string, timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): Promise<ByteTransport> {
  const { host, port } = parseHostPort(address, 'tcp');
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        keyloadError(KeyloadErrorCode.CONNECT, `no connection to ${address} within ${timeoutMs} ms`, 'tcp'),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(duplexTransport(socket, `tcp:${address}`));
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        keyloadError(
          KeyloadErrorCode.CONNECT,
          `cannot connect to ${address}: ${e.code ?? e.message}`,
          'tcp',
          e,
        ),
      );
    });
  });
}

/** Opens a target: a serial port or TCP. */
export function openTarget(target: LinkTarget, connectTimeoutMs?: number): Promise<ByteTransport> {
  return 'tcp' in target
    ? connectTcp(target.tcp, connectTimeoutMs)
    : openSerial(target.port, target.baudRate);
}

// ---------------------------------------------------------------------------------------------
// Link: ACK/NAK, retries, duplicates

export interface LinkOptions {
  /** How long a sender waits for ACK/NAK (default 500 ms). */
  ackTimeoutMs?: number;
  /** How long poskey waits for the device's answer after the ACK (default 3000 ms). */
  responseTimeoutMs?: number;
  /** Resends after the first attempt (default 3). */
  retries?: number;
  /** Silence after which an incomplete frame is given up (default 200 ms). */
  interByteTimeoutMs?: number;
  /** Called for every frame and control byte, for --trace. Payload bytes are never passed. */
  trace?: (line: string) => void;
}

export const DEFAULT_LINK_OPTIONS: Readonly<Required<Omit<LinkOptions, 'trace'>>> = Object.freeze({
  ackTimeoutMs: 500,
  responseTimeoutMs: 3000,
  retries: 3,
  interByteTimeoutMs: 200,
});

/** What the link heard: the basis of every "why is it not answering" diagnosis. */
export interface LinkStats {
  bytesIn: number;
  bytesOut: number;
  /** Valid frames of this protocol received. */
  framesIn: number;
  framesOut: number;
  acksIn: number;
  naksIn: number;
  naksOut: number;
  /** Frames with a bad LRC or ETX. */
  corrupt: number;
  /** Bytes outside any frame. */
  noiseBytes: number;
  /** The first noise bytes (up to 64), to show what answered. */
  noiseSample: Buffer;
  /** Well-formed frames with a type this protocol does not have. */
  foreignFrames: number;
  /** Frames sent again (NAK, missing ACK or answer). */
  resends: number;
}

const NOISE_SAMPLE = 64;

function newStats(): LinkStats {
  return {
    bytesIn: 0,
    bytesOut: 0,
    framesIn: 0,
    framesOut: 0,
    acksIn: 0,
    naksIn: 0,
    naksOut: 0,
    corrupt: 0,
    noiseBytes: 0,
    noiseSample: Buffer.alloc(0),
    foreignFrames: 0,
    resends: 0,
  };
}

/** True when the bytes look like text (AT-command replies, a console banner): another protocol. */
export function looksLikeText(bytes: Uint8Array): boolean {
  if (bytes.length === 0) return false;
  let printable = 0;
  for (const b of bytes) if ((b >= 0x20 && b <= 0x7e) || b === 0x0d || b === 0x0a || b === 0x09) printable++;
  return printable / bytes.length >= 0.9;
}

/** Printable rendering of a noise sample for a message: text as is, binary as hex. */
export function showNoise(bytes: Uint8Array): string {
  const b = Buffer.from(bytes);
  if (looksLikeText(b)) return JSON.stringify(b.toString('latin1').trim().slice(0, 40));
  return `hex ${b.subarray(0, 16).toString('hex').toUpperCase()}${b.length > 16 ? '…' : ''}`;
}

/**
 * Why no usable answer came: nothing at all (SILENT), another protocol: text or frames of unknown
 * types (WRONG_PROTOCOL), bytes that never formed a frame (GARBLED), or a device of this protocol
 * that answered before or acknowledges but stopped answering (TIMEOUT).
 */
export function silenceError(stats: LinkStats, name: string, waitedMs: number): KeyloadError {
  if (stats.framesIn > 0) {
    return keyloadError(
      KeyloadErrorCode.TIMEOUT,
      `${name}: the device stopped answering (${waitedMs} ms)`,
      'link',
    );
  }
  if (stats.bytesIn === 0) {
    return keyloadError(KeyloadErrorCode.SILENT, `${name}: no answer at all within ${waitedMs} ms`, 'link');
  }
  if (stats.foreignFrames > 0 || looksLikeText(stats.noiseSample)) {
    return keyloadError(
      KeyloadErrorCode.WRONG_PROTOCOL,
      `${name}: something answered in another protocol (${stats.foreignFrames > 0 ? 'unknown frame types' : showNoise(stats.noiseSample)})`,
      'link',
    );
  }
  if (stats.noiseBytes === 0 && stats.corrupt === 0) {
    // Only ACK/NAK bytes: a device of this protocol that takes requests but never answers.
    return keyloadError(
      KeyloadErrorCode.TIMEOUT,
      `${name}: the device acknowledges but never answers (${waitedMs} ms)`,
      'link',
    );
  }
  return keyloadError(
    KeyloadErrorCode.GARBLED,
    `${name}: ${stats.bytesIn} bytes arrived but never formed a frame (${showNoise(stats.noiseSample)})`,
    'link',
  );
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

type AckOutcome = 'ack' | 'nak' | 'timeout' | 'superseded' | 'closed';
type Awaited =
  | { kind: 'message'; message: KeyloadMessage }
  | { kind: 'error'; error: KeyloadError }
  | { kind: 'closed' };

/** Answers a request on the device side. */
export type RequestHandler = (message: KeyloadMessage) => Promise<KeyloadMessage>;

/**
 * One end of the key-loading protocol over a byte transport. poskey calls `request`; the device
 * calls `serve`. Both share the frame decoder, ACK/NAK and the statistics.
 */
export class Link {
  readonly name: string;
  readonly #t: ByteTransport;
  readonly #o: Required<Omit<LinkOptions, 'trace'>>;
  readonly #trace: ((line: string) => void) | undefined;
  readonly #decoder = new FrameDecoder();
  readonly #stats = newStats();
  #seq: number;
  #ackWaiter: Deferred<AckOutcome> | undefined;
  #pending: { seq: number; answer: Deferred<Awaited> } | undefined;
  #handler: RequestHandler | undefined;
  #lastRequest: Buffer | undefined;
  #lastAnswer: Buffer | undefined;
  #busy = false;
  #closed = false;
  #closeError: Error | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  readonly #closedSignal = deferred<void>();

  constructor(transport: ByteTransport, options: LinkOptions = {}) {
    this.name = transport.name;
    this.#t = transport;
    this.#o = { ...DEFAULT_LINK_OPTIONS, ...stripUndefined(options) } as Required<Omit<LinkOptions, 'trace'>>;
    for (const k of ['ackTimeoutMs', 'responseTimeoutMs', 'interByteTimeoutMs', 'retries'] as const) {
      const v = this.#o[k];
      if (!Number.isInteger(v) || v < 0 || v > 600_000) {
        throw keyloadError(KeyloadErrorCode.OPTION, 'must be a whole number from 0 to 600000', k);
      }
    }
    this.#trace = options.trace;
    this.#seq = randomInt(256);
    transport.attach({ data: (c) => this.#onData(c), close: (e) => this.#onClose(e) });
  }

  /** A snapshot of what the link heard and sent. */
  get stats(): LinkStats {
    return { ...this.#stats, noiseSample: Buffer.from(this.#stats.noiseSample) };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves when the transport closes. */
  get done(): Promise<void> {
    return this.#closedSignal.promise;
  }

  /** Device side: answers every request with `handler`. */
  serve(handler: RequestHandler): void {
    this.#handler = handler;
  }

  /**
   * poskey side: sends a request and returns the device's answer (an ERROR message is returned,
   * not thrown: the caller knows what it means).
   * @throws POSKEY_ERR_KEYLOAD_SILENT, _GARBLED, _WRONG_PROTOCOL, _TIMEOUT (no usable answer after
   *   the retries), _MESSAGE (a malformed answer), _CLOSED
   */
  async request(message: KeyloadMessage): Promise<KeyloadMessage> {
    this.#assertOpen();
    if (this.#pending !== undefined) {
      throw keyloadError(KeyloadErrorCode.MESSAGE, 'one request at a time on a key-loading line', 'link');
    }
    this.#seq = (this.#seq + 1) & 0xff;
    const seq = this.#seq;
    const { type, payload } = encodeMessage(message);
    const frame = encodeFrame(type, seq, payload);
    const started = Date.now();
    const answer = deferred<Awaited>();
    this.#pending = { seq, answer };
    try {
      for (let attempt = 0; attempt <= this.#o.retries; attempt++) {
        if (attempt > 0) this.#stats.resends++;
        const ack = this.#expectAck();
        await this.#write(frame, `→ ${message.type} seq ${seq}${attempt > 0 ? ` (resend ${attempt})` : ''}`);
        const first = await Promise.race([ack, answer.promise]);
        if (typeof first !== 'string') return this.#settle(first);
        if (first === 'closed') return this.#settle({ kind: 'closed' });
        if (first !== 'ack' && first !== 'superseded') continue;
        const got = await withTimeout(answer.promise, this.#o.responseTimeoutMs);
        if (got !== undefined) return this.#settle(got);
      }
      throw silenceError(this.#stats, this.name, Date.now() - started);
    } finally {
      this.#pending = undefined;
      this.#ackWaiter = undefined;
    }
  }

  async close(): Promise<void> {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    await this.#t.close();
    this.#onClose();
  }

  // --- internals -------------------------------------------------------------------------------

  #settle(got: Awaited): KeyloadMessage {
    if (got.kind === 'message') return got.message;
    if (got.kind === 'error') throw got.error;
    throw keyloadError(
      KeyloadErrorCode.CLOSED,
      `${this.name}: the line closed${this.#closeError ? ` (${this.#closeError.message})` : ''}`,
      'link',
    );
  }

  #assertOpen(): void {
    if (this.#closed) throw keyloadError(KeyloadErrorCode.CLOSED, `${this.name}: the line is closed`, 'link');
  }

  #expectAck(): Promise<AckOutcome> {
    const waiter = deferred<AckOutcome>();
    this.#ackWaiter = waiter;
    const timer = setTimeout(() => waiter.resolve('timeout'), this.#o.ackTimeoutMs);
    return waiter.promise.finally(() => clearTimeout(timer));
  }

  async #write(bytes: Uint8Array, what: string): Promise<void> {
    this.#trace?.(`${this.name} ${what}`);
    this.#stats.bytesOut += bytes.length;
    if (bytes.length > 1) this.#stats.framesOut++;
    await this.#t.write(bytes);
  }

  #control(byte: number): void {
    if (byte === NAK) this.#stats.naksOut++;
    this.#write(Buffer.from([byte]), byte === ACK ? '→ ACK' : '→ NAK').catch(() => undefined);
  }

  #onData(chunk: Buffer): void {
    this.#stats.bytesIn += chunk.length;
    for (const ev of this.#decoder.push(chunk)) this.#onEvent(ev);
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    if (this.#decoder.pending > 0) {
      this.#flushTimer = setTimeout(() => {
        for (const ev of this.#decoder.flush()) this.#onEvent(ev);
      }, this.#o.interByteTimeoutMs);
    }
  }

  #onEvent(ev: FrameEvent): void {
    switch (ev.kind) {
      case 'ack':
      case 'nak':
        if (ev.kind === 'ack') this.#stats.acksIn++;
        else this.#stats.naksIn++;
        this.#trace?.(`${this.name} ← ${ev.kind.toUpperCase()}`);
        this.#ackWaiter?.resolve(ev.kind);
        return;
      case 'corrupt':
        this.#stats.corrupt++;
        this.#trace?.(`${this.name} ← corrupt frame (${ev.reason})`);
        this.#control(NAK);
        return;
      case 'noise': {
        this.#stats.noiseBytes += ev.bytes.length;
        const s = this.#stats.noiseSample;
        if (s.length < NOISE_SAMPLE) {
          this.#stats.noiseSample = Buffer.concat([s, ev.bytes.subarray(0, NOISE_SAMPLE - s.length)]);
        }
        this.#trace?.(`${this.name} ← ${ev.bytes.length} noise bytes`);
        return;
      }
      case 'frame':
        this.#onFrame(ev.frame);
    }
  }

  #onFrame(frame: Frame): void {
    const typeName = messageTypeName(frame.type);
    if (typeName === undefined) {
      this.#stats.foreignFrames++;
      this.#trace?.(`${this.name} ← foreign frame type 0x${frame.type.toString(16)}`);
      return;
    }
    this.#stats.framesIn++;
    this.#trace?.(`${this.name} ← ${typeName} seq ${frame.seq}`);
    this.#control(ACK);
    if (this.#handler !== undefined) {
      this.#onRequest(frame);
      return;
    }
    const pending = this.#pending;
    if (pending === undefined || frame.seq !== pending.seq) return; // a late duplicate answer
    try {
      pending.answer.resolve({ kind: 'message', message: decodeMessage(frame) });
    } catch (e) {
      pending.answer.resolve({ kind: 'error', error: e as KeyloadError });
    }
  }

  /** Device side: a new request is handled; a repeated one gets the last answer again. */
  #onRequest(frame: Frame): void {
    const raw = encodeFrame(frame.type, frame.seq, frame.payload);
    if (this.#lastRequest?.equals(raw)) {
      if (this.#lastAnswer !== undefined) void this.#sendAnswer(this.#lastAnswer, 'again');
      return; // still working on it: the answer is on its way
    }
    this.#ackWaiter?.resolve('superseded'); // a new request means our last answer arrived
    if (this.#busy) return; // poskey sends one request at a time; ignore overlap
    this.#lastRequest = raw;
    this.#lastAnswer = undefined;
    this.#busy = true;
    void this.#answer(frame);
  }

  async #answer(frame: Frame): Promise<void> {
    let reply: KeyloadMessage;
    try {
      reply = await this.#handler!(decodeMessage(frame));
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      reply = { type: 'ERROR', code: 0x01, reason: reason.slice(0, 200) };
    }
    const { type, payload } = encodeMessage(reply);
    const bytes = encodeFrame(type, frame.seq, payload);
    this.#lastAnswer = bytes;
    // Free for the next request now: its arrival is also the ACK of this answer.
    this.#busy = false;
    await this.#sendAnswer(bytes, reply.type);
  }

  async #sendAnswer(bytes: Buffer, what: string): Promise<void> {
    for (let attempt = 0; attempt <= this.#o.retries && !this.#closed; attempt++) {
      if (attempt > 0) this.#stats.resends++;
      const ack = this.#expectAck();
      try {
        await this.#write(bytes, `→ ${what}${attempt > 0 ? ` (resend ${attempt})` : ''}`);
      } catch {
        return;
      }
      const got = await ack;
      if (got === 'ack' || got === 'superseded' || got === 'closed') return;
    }
  }

  #onClose(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeError = error;
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#ackWaiter?.resolve('closed');
    this.#pending?.answer.resolve({ kind: 'closed' });
    this.#closedSignal.resolve();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Resolves with the promise's value, or undefined after `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
