/**
 * The network link against a small in-process peer with fault flags (ioredis mock-server style):
 * matching by STAN in any order, the deadline sweep (TIMEOUT), a dropped connection (LOST),
 * requests waiting for a connection (sent on connect, or DOWN), BUSY, CLOSED, reconnecting, late
 * answers handed to onUnsolicited. Real sockets on 127.0.0.1:0.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { NetworkLink, type NetworkReply } from '../../src/host/network-link.js';
import {
  buildFrame,
  createFrameDecoder,
  type IsoMessage,
  NETWORK_PROFILE,
  pack,
  unpack,
} from '../../src/iso8583/index.js';
import { NETWORK_DIALECT } from '../../src/protocol/network-link.js';

interface Peer {
  server: Server;
  port: number;
  sockets: Set<Socket>;
  /** STANs received, in order. */
  received: string[];
  /** Answer (after `delay` ms) unless `silent`; `hold` keeps answers until released. */
  mode: { silent: boolean; delay: number; reverse: boolean };
  held: { socket: Socket; msg: IsoMessage }[];
  release(): void;
  close(): Promise<void>;
}

function answer(socket: Socket, msg: IsoMessage): void {
  const reply: IsoMessage = { 0: '0210', 11: msg[11], 39: '00' };
  socket.write(buildFrame({ body: pack(NETWORK_DIALECT, reply) }, NETWORK_PROFILE));
}

async function peer(port = 0): Promise<Peer> {
  const sockets = new Set<Socket>();
  const p = {
    sockets,
    received: [] as string[],
    mode: { silent: false, delay: 0, reverse: false },
    held: [] as { socket: Socket; msg: IsoMessage }[],
  } as Peer;
  p.server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = createFrameDecoder(NETWORK_PROFILE);
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        const msg = unpack(NETWORK_DIALECT, frame);
        p.received.push(String(msg[11]));
        if (p.mode.silent) continue;
        if (p.mode.reverse) p.held.push({ socket, msg });
        else setTimeout(() => answer(socket, msg), p.mode.delay);
      }
    });
  });
  p.release = () => {
    for (const h of p.held.reverse()) answer(h.socket, h.msg);
    p.held = [];
  };
  p.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => p.server.close(() => r()));
  };
  await new Promise<void>((r) => p.server.listen(port, '127.0.0.1', () => r()));
  p.port = (p.server.address() as { port: number }).port;
  return p;
}

function request(stan: string): Buffer {
  return pack(NETWORK_DIALECT, { 0: '0200', 3: '000000', 11: stan });
}

async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code: string }).code;
  }
  assert.fail('expected a rejection');
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function link(port: number, extra: Partial<ConstructorParameters<typeof NetworkLink>[0]> = {}): NetworkLink {
  const l = new NetworkLink({
    host: '127.0.0.1',
    port,
    timeoutMs: 300,
    reconnectMinMs: 10,
    reconnectMaxMs: 40,
    ...extra,
  });
  cleanup.push(() => l.close());
  return l;
}

describe('NetworkLink', () => {
  it('matches answers to requests by STAN, whatever their order', async () => {
    const p = await peer();
    cleanup.push(() => p.close());
    const l = link(p.port);
    l.start();
    await l.waitUntilUp();
    p.mode.reverse = true;
    const stans = [l.nextStan(), l.nextStan(), l.nextStan()];
    const pending = stans.map((s) => l.request(s, request(s)));
    while (p.held.length < 3) await new Promise((r) => setTimeout(r, 5));
    p.release();
    const replies = await Promise.all(pending);
    assert.deepEqual(
      replies.map((r) => r.msg[11]),
      stans,
    );
    assert.ok(replies.every((r: NetworkReply) => r.body.length > 0));
    assert.equal(l.stats().answered, 3);
  });

  it('times a silent request out (POSKEY_ERR_NETWORK_TIMEOUT) and hands its late answer to onUnsolicited', async () => {
    const p = await peer();
    cleanup.push(() => p.close());
    const late: NetworkReply[] = [];
    const l = link(p.port, { timeoutMs: 100, onUnsolicited: (r) => late.push(r) });
    l.start();
    await l.waitUntilUp();
    p.mode.delay = 250;
    const stan = l.nextStan();
    const started = Date.now();
    assert.equal(await rejection(l.request(stan, request(stan))), 'POSKEY_ERR_NETWORK_TIMEOUT');
    assert.ok(Date.now() - started < 250, 'the sweep fires near the deadline');
    while (late.length === 0) await new Promise((r) => setTimeout(r, 10));
    assert.equal(late[0]!.msg[11], stan);
    assert.equal(l.stats().late, 1);
    assert.equal(l.stats().timeouts, 1);
  });

  it('rejects requests in flight when the connection drops (POSKEY_ERR_NETWORK_LOST) and reconnects', async () => {
    const p = await peer();
    cleanup.push(() => p.close());
    const l = link(p.port);
    l.start();
    await l.waitUntilUp();
    p.mode.silent = true;
    const stan = l.nextStan();
    const pending = l.request(stan, request(stan));
    while (p.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    for (const s of p.sockets) s.destroy();
    assert.equal(await rejection(pending), 'POSKEY_ERR_NETWORK_LOST');
    p.mode.silent = false;
    await l.waitUntilUp(2000);
    const s2 = l.nextStan();
    assert.equal((await l.request(s2, request(s2))).msg[39], '00');
    assert.equal(l.stats().connects, 2);
  });

  it('holds requests made while down and sends them on connect; past the deadline they fail DOWN', async () => {
    const p = await peer();
    const port = p.port;
    await p.close();
    const l = link(port, { timeoutMs: 400 });
    l.start();
    const s1 = l.nextStan();
    assert.equal(await rejection(l.request(s1, request(s1))), 'POSKEY_ERR_NETWORK_DOWN');
    const s2 = l.nextStan();
    const waiting = l.request(s2, request(s2));
    const p2 = await peer(port);
    cleanup.push(() => p2.close());
    assert.equal((await waiting).msg[11], s2);
    assert.deepEqual(p2.received, [s2], 'the expired request was never sent');
  });

  it('refuses past maxInFlight (BUSY), a STAN already in flight (BUSY), and everything once closed (CLOSED)', async () => {
    const p = await peer();
    cleanup.push(() => p.close());
    const l = link(p.port, { maxInFlight: 1, timeoutMs: 200 });
    l.start();
    await l.waitUntilUp();
    p.mode.silent = true;
    const s1 = l.nextStan();
    const first = l.request(s1, request(s1));
    assert.equal(await rejection(l.request(l.nextStan(), request('000002'))), 'POSKEY_ERR_NETWORK_BUSY');
    const l2 = link(p.port);
    l2.start();
    await l2.waitUntilUp();
    const held = l2.request('000009', request('000009'));
    assert.equal(await rejection(l2.request('000009', request('000009'))), 'POSKEY_ERR_NETWORK_BUSY');
    const heldCode = rejection(held);
    await l2.close();
    assert.equal(await heldCode, 'POSKEY_ERR_NETWORK_CLOSED');
    assert.equal(await rejection(l2.request('000010', request('000010'))), 'POSKEY_ERR_NETWORK_CLOSED');
    await assert.rejects(l2.waitUntilUp(10), { code: 'POSKEY_ERR_NETWORK_CLOSED' });
    assert.equal(await rejection(first), 'POSKEY_ERR_NETWORK_TIMEOUT');
  });

  it('issues 6-digit STANs that wrap from 999999 to 000001 and skip ones in flight', () => {
    const l = new NetworkLink({ host: '127.0.0.1', port: 1, timeoutMs: 100 });
    const seen = new Set<string>();
    for (let i = 0; i < 1_000_001; i++) {
      const s = l.nextStan();
      if (i < 999_999) seen.add(s);
      assert.match(s, /^\d{6}$/);
      assert.notEqual(s, '000000');
    }
    assert.equal(seen.size, 999_999);
  });
});
