/**
 * Shared by the payShield server and command tests: a real Hsm under a development LMK, keys with
 * known clear values (imported from components through the API), a TCP/TLS test client that speaks
 * the 2-byte-length framing, and a server on 127.0.0.1 port 0.
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import type { KeyAlgorithm, KeyType } from '../../src/hsm/api.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { createPayShieldDecoder, encodePayShieldFrame } from '../../src/hsm/payshield/framing.js';
import {
  createPayShieldServer,
  type PayShieldServer,
  type PayShieldServerOptions,
} from '../../src/hsm/payshield/server.js';

export function makeHsm(): Hsm {
  return new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
}

/** An LMK key block holding `hex` (imported as two components: `hex` ⊕ r and r). */
export function importClear(
  hsm: Hsm,
  keyType: KeyType,
  algorithm: KeyAlgorithm,
  hex: string,
  exportability: 'E' | 'N' | 'S' = 'E',
): string {
  const key = Buffer.from(hex, 'hex');
  const r = randomBytes(key.length);
  const other = Buffer.from(key.map((b, i) => b ^ r[i]!));
  const out = hsm.importKey({
    keyType,
    algorithm,
    exportability,
    source: { kind: 'components', components: [other.toString('hex'), r.toString('hex')] },
  });
  return out.keyBlock;
}

/** Splits a response payload: header, response code, error code, fields. */
export function splitResponse(payload: Buffer, headerLength = 4) {
  const text = payload.toString('latin1');
  return {
    header: text.slice(0, headerLength),
    code: text.slice(headerLength, headerLength + 2),
    error: text.slice(headerLength + 2, headerLength + 4),
    body: text.slice(headerLength + 4),
  };
}

/** A client that sends frames and collects whole response payloads in arrival order. */
export class TestClient {
  readonly socket: Socket;
  readonly #decoder = createPayShieldDecoder();
  readonly #received: Buffer[] = [];
  #waiters: { n: number; resolve: (b: Buffer[]) => void; reject: (e: Error) => void }[] = [];
  closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = track(socket);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.#decoder.push(chunk)) this.#received.push(f);
      this.#settle();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      for (const w of this.#waiters) w.reject(new Error('connection closed'));
      this.#waiters = [];
    });
  }

  static connect(port: number, tls?: ConnectionOptions): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const socket =
        tls === undefined
          ? netConnect({ port, host: '127.0.0.1' }, () => resolve(new TestClient(socket)))
          : tlsConnect({ port, host: '127.0.0.1', ...tls }, () => resolve(new TestClient(socket)));
      socket.once('error', reject);
    });
  }

  #settle(): void {
    while (this.#waiters.length > 0 && this.#received.length >= this.#waiters[0]!.n) {
      const w = this.#waiters.shift()!;
      w.resolve(this.#received.splice(0, w.n));
    }
  }

  /** Sends raw bytes (already framed) and waits for `n` responses. */
  sendRaw(bytes: Buffer, n: number): Promise<Buffer[]> {
    const p = new Promise<Buffer[]>((resolve, reject) => this.#waiters.push({ n, resolve, reject }));
    this.socket.write(bytes);
    this.#settle();
    return p;
  }

  /** Frames every payload, sends them in one write, waits for as many responses. */
  sendMany(payloads: (string | Buffer)[]): Promise<Buffer[]> {
    const frames = payloads.map((p) =>
      encodePayShieldFrame(typeof p === 'string' ? Buffer.from(p, 'latin1') : p),
    );
    return this.sendRaw(Buffer.concat(frames), payloads.length);
  }

  async send(payload: string | Buffer): Promise<Buffer> {
    const [r] = await this.sendMany([payload]);
    return r!;
  }

  /** Sends a command with header HDR1 and returns the split response. */
  async command(text: string, header = 'HDR1') {
    return splitResponse(await this.send(header + text), header.length);
  }

  close(): Promise<void> {
    this.socket.end();
    return this.closed;
  }
}

const openServers = new Set<PayShieldServer>();
const openSockets = new Set<Socket>();

export async function startServer(
  options: Partial<PayShieldServerOptions> & { hsm: Hsm },
): Promise<{ server: PayShieldServer; port: number }> {
  const server = createPayShieldServer({ port: 0, ...options });
  const { port } = await server.listen();
  openServers.add(server);
  return { server, port };
}

/** Tracks a socket so `closeEverything` can end it when a test fails half-way. */
export function track<T extends Socket>(socket: T): T {
  openSockets.add(socket);
  socket.once('close', () => openSockets.delete(socket));
  return socket;
}

/** Destroys every test socket and closes every test server (an `after` hook: a failed test must not hang the run). */
export async function closeEverything(): Promise<void> {
  for (const s of openSockets) s.destroy();
  openSockets.clear();
  await Promise.all([...openServers].map((s) => s.close()));
  openServers.clear();
}
