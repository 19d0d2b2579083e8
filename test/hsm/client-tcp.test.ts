/**
 * The TCP client's transport: pipelining over a pool, header matching, deadlines, failover,
 * reconnection, close(), and every client-side error code. The HSM is the real payShield server in
 * front of a real Hsm on 127.0.0.1 port 0; faults the real server never commits (silence, answers
 * out of order or malformed, dropped connections) come from tiny fault peers built on the framing
 * helpers.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { fixParity } from '../../src/crypto/keys.js';
import { decryptPinBlock, encryptPinBlock } from '../../src/crypto/pinblock.js';
import { PoskeyError } from '../../src/errors.js';
import type { KeyAlgorithm, KeyType, TranslatePinRequest } from '../../src/hsm/api.js';
import { HsmRemoteError } from '../../src/hsm/client/errors.js';
import {
  connectHsm,
  createTcpClient,
  type TcpClientOptions,
  type TcpHsmClient,
} from '../../src/hsm/client/tcp.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import {
  buildResponse,
  createPayShieldDecoder,
  encodePayShieldFrame,
  parseCommand,
} from '../../src/hsm/payshield/framing.js';
import {
  createPayShieldServer,
  type PayShieldServer,
  type PayShieldServerOptions,
} from '../../src/hsm/payshield/server.js';

const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });

function known(keyType: KeyType, algorithm: KeyAlgorithm, clearHex: string): string {
  const clear = fromHex(clearHex);
  const c1 = Buffer.alloc(clear.length, 0x5a);
  const components = [toHex(c1), toHex(xor(clear, c1))];
  return hsm.importKey({ keyType, algorithm, source: { kind: 'components', components } }).keyBlock;
}

const TPK = toHex(fixParity(fromHex('807A23AD32B36D457AE91FDF927570EA')));
const ZPK = toHex(fixParity(fromHex('6DA2D08FD5E56BB0BF2F0E5E8F20F1DA')));
const tpk = known('TPK', 'tdes2', TPK);
const zpk = known('ZPK', 'tdes2', ZPK);
const PAN = '4012345678909';

/** A translatePin request for PIN `n` (4–8 digits), and the check that its answer opens to it. */
function pinRequest(n: number): TranslatePinRequest {
  const pin = String(1000 + n);
  const block = encryptPinBlock(createKey('tdes', fromHex(TPK)), { format: 0, pin, pan: PAN });
  return {
    source: { kind: 'key', keyBlock: tpk },
    destination: zpk,
    pinBlock: toHex(block),
    fromFormat: 0,
    toFormat: 0,
    pan: PAN,
  };
}

function pinUnderZpk(block: string): string {
  return decryptPinBlock(createKey('tdes', fromHex(ZPK)), fromHex(block), { format: 0, pan: PAN });
}

/** Every answer opens under the clear ZPK to the PIN its request carried. */
function assertPins(blocks: string[]): void {
  blocks.forEach((block, i) => {
    assert.equal(pinUnderZpk(block), String(1000 + i), `request ${i}`);
  });
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function startHsm(
  options: Partial<PayShieldServerOptions> = {},
): Promise<{ server: PayShieldServer; port: number }> {
  const server = createPayShieldServer({ hsm, port: 0, ...options });
  const { port } = await server.listen();
  cleanups.push(() => server.close());
  return { server, port };
}

function client(options: Partial<TcpClientOptions> & Pick<TcpClientOptions, 'addresses'>): TcpHsmClient {
  const c = createTcpClient({ timeoutMs: 5000, ...options });
  cleanups.push(() => c.close());
  return c;
}

const at = (port: number) => [{ host: '127.0.0.1', port }];

/** A fault peer: a TCP server that decodes payShield frames and hands each to `onFrame`. */
async function faultPeer(
  onFrame: (frame: { header: string; command: string; body: Buffer }, socket: Socket) => void,
  headerLength = 4,
): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = createPayShieldDecoder();
    socket.on('data', (chunk) => {
      for (const f of decoder.push(chunk)) onFrame(parseCommand(f, headerLength), socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { server, port, sockets };
}

function reply(socket: Socket, header: string, command: string, errorCode: string, body = ''): void {
  socket.write(encodePayShieldFrame(buildResponse(header, command, errorCode, body)));
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<PoskeyError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail('condition not reached in time');
    await sleep(5);
  }
}

describe('TCP client: pipelining over a pool', () => {
  it('1,000 pipelined translations over 2 connections all resolve to their own PIN', async () => {
    const { server, port } = await startHsm();
    const c = client({ addresses: at(port), connectionsPerAddress: 2 });
    await c.ready();
    await until(() => c.stats().connections.every((x) => x.state === 'ready'));
    const requests = Array.from({ length: 1000 }, (_, i) => pinRequest(i));
    const pending = requests.map((r) => c.translatePin(r));
    const s = c.stats();
    // Two connections at 64 in flight each; the rest waits in the queue.
    assert.deepEqual([s.inFlight, s.queued], [128, 872]);
    assert.deepEqual(
      s.connections.map((x) => x.inFlight),
      [64, 64],
    );
    const out = await Promise.all(pending);
    assertPins(out);
    assert.equal(server.stats().accepted, 2);
    assert.equal(server.stats().commands.CA, 1000);
    assert.equal(c.stats().sent, 1000);
  });

  it('matches responses by header, not by order (a peer that answers each batch backwards)', async () => {
    const batches = new Map<Socket, { header: string; command: string; body: Buffer }[]>();
    const peer = await faultPeer((f, socket) => {
      const batch = batches.get(socket) ?? [];
      batches.set(socket, batch);
      batch.push(f);
      if (batch.length === 1) {
        setImmediate(() => {
          for (const g of batch.reverse())
            reply(socket, g.header, g.command, '00', g.body.subarray(4).toString('latin1'));
          batch.length = 0;
        });
      }
    });
    const c = client({ addresses: at(peer.port), connectionsPerAddress: 1 });
    const echoes = Array.from({ length: 50 }, (_, i) => `message-${i}`);
    const out = await Promise.all(
      echoes.map((m) => c.command('B2', m.length.toString(16).padStart(4, '0') + m)),
    );
    assert.deepEqual(
      out.map((r) => r.fields),
      echoes,
    );
  });

  it('headerLength 0: responses are taken in order', async () => {
    const { port } = await startHsm({ headerLength: 0 });
    const c = client({ addresses: at(port), headerLength: 0, connectionsPerAddress: 1 });
    const out = await Promise.all(Array.from({ length: 100 }, (_, i) => c.translatePin(pinRequest(i))));
    assertPins(out);
  });

  it('other configured header lengths work end to end (1, 8 and 12 characters)', async () => {
    for (const headerLength of [1, 8, 12]) {
      const { port } = await startHsm({ headerLength });
      const c = client({ addresses: at(port), headerLength, connectionsPerAddress: 1 });
      const out = await Promise.all(Array.from({ length: 40 }, (_, i) => c.translatePin(pinRequest(i))));
      assertPins(out);
    }
  });

  it('raw commands resolve whatever the error code (68 for a command the HSM does not serve)', async () => {
    const { port } = await startHsm();
    const c = client({ addresses: at(port) });
    assert.deepEqual(await c.command('B2', '0003abc'), { errorCode: '00', fields: 'abc' });
    assert.deepEqual(await c.command('ZA'), { errorCode: '68', fields: '' });
  });
});

describe('TCP client: deadlines and health', () => {
  it('a peer that never answers: POSKEY_ERR_HSM_TIMEOUT, and the connection is reopened after repeated timeouts', async () => {
    const peer = await faultPeer(() => undefined);
    const c = client({
      addresses: at(peer.port),
      connectionsPerAddress: 1,
      timeoutMs: 60,
      unhealthyAfterTimeouts: 3,
    });
    // Connected first: on a loaded machine the connect alone can outlast the 60 ms deadline.
    await c.ready();
    const started = Date.now();
    const e = await rejection(c.translatePin(pinRequest(1)));
    assert.equal(e.code, 'POSKEY_ERR_HSM_TIMEOUT');
    assert.equal(e.field, 'CA');
    assert.ok(Date.now() - started >= 55, 'not before the deadline');
    await Promise.allSettled([1, 2, 3].map((i) => c.translatePin(pinRequest(i))));
    await until(() => c.stats().connects >= 2);
    assert.ok(c.stats().timeouts >= 4);
  });

  it('an answer after the deadline is dropped and counted as late', async () => {
    const peer = await faultPeer((f, socket) => {
      setTimeout(() => reply(socket, f.header, f.command, '00', 'late'), 120);
    });
    const c = client({ addresses: at(peer.port), timeoutMs: 40 });
    assert.equal((await rejection(c.command('B2', '0004late'))).code, 'POSKEY_ERR_HSM_TIMEOUT');
    await until(() => c.stats().late === 1);
  });

  it('requests waiting behind a full pool time out too', async () => {
    const peer = await faultPeer(() => undefined);
    const c = client({
      addresses: at(peer.port),
      connectionsPerAddress: 1,
      maxInFlightPerConnection: 1,
      timeoutMs: 50,
      unhealthyAfterTimeouts: 100,
    });
    await c.ready();
    const [a, b] = await Promise.all([
      rejection(c.command('B2', '0001a')),
      rejection(c.command('B2', '0001b')),
    ]);
    assert.deepEqual([a.code, b.code], ['POSKEY_ERR_HSM_TIMEOUT', 'POSKEY_ERR_HSM_TIMEOUT']);
    assert.match(b.message, /waited/);
  });
});

describe('TCP client: failover and reconnection', () => {
  it('two HSMs, one closed mid-run: every request still succeeds on the other', async () => {
    const a = await startHsm();
    const b = await startHsm();
    const c = client({
      addresses: [...at(a.port), ...at(b.port)],
      connectionsPerAddress: 2,
      reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
    });
    await c.ready();
    const results: Promise<string>[] = [];
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 100; i++) results.push(c.translatePin(pinRequest(round * 100 + i)));
      if (round === 4) await a.server.close();
      await sleep(5);
    }
    const out = await Promise.all(results);
    assertPins(out);
    assert.ok(b.server.stats().commands.CA! > 0);
    const down = c.stats().connections.filter((x) => x.address === `127.0.0.1:${a.port}`);
    assert.ok(down.every((x) => x.state !== 'ready'));
  });

  it('reconnects after the HSM restarts on the same port', async () => {
    const first = createPayShieldServer({ hsm, port: 0 });
    const { port } = await first.listen();
    const c = client({
      addresses: at(port),
      connectionsPerAddress: 1,
      timeoutMs: 150,
      reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    });
    assert.equal(pinUnderZpk(await c.translatePin(pinRequest(1))), '1001');
    await first.close();
    await until(() => c.stats().connections[0]!.state !== 'ready');
    const e = await rejection(c.translatePin(pinRequest(2)));
    assert.equal(e.code, 'POSKEY_ERR_HSM_UNAVAILABLE');
    assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    const second = createPayShieldServer({ hsm, port });
    await second.listen();
    cleanups.push(() => second.close());
    await until(() => c.stats().connections[0]!.state === 'ready');
    assert.equal(pinUnderZpk(await c.translatePin(pinRequest(3))), '1003');
    assert.ok(c.stats().connects >= 2);
  });

  it('a connection dropped with requests in flight: re-sent elsewhere, or POSKEY_ERR_HSM_CONNECTION when no retry is left', async () => {
    const dropper = await faultPeer((_f, socket) => socket.destroy());
    const c = client({ addresses: at(dropper.port), connectionsPerAddress: 1, maxRetries: 0 });
    const e = await rejection(c.command('B2', '0001x'));
    assert.equal(e.code, 'POSKEY_ERR_HSM_CONNECTION');
    assert.match(e.message, /lost before B2/);

    const { port } = await startHsm();
    const mixed = client({
      addresses: [...at(dropper.port), ...at(port)],
      connectionsPerAddress: 1,
      maxRetries: 2,
      reconnect: { initialDelayMs: 1000 },
    });
    await until(() => mixed.stats().connections.every((x) => x.state === 'ready'));
    const out = await Promise.all(Array.from({ length: 20 }, (_, i) => mixed.translatePin(pinRequest(i))));
    assertPins(out);
    assert.ok(mixed.stats().retries > 0);
  });

  it('no HSM reachable: POSKEY_ERR_HSM_UNAVAILABLE from requests and from connectHsm', async () => {
    const port = await deadPort();
    const c = client({ addresses: at(port), timeoutMs: 100, reconnect: { initialDelayMs: 10 } });
    const e = await rejection(c.translatePin(pinRequest(1)));
    assert.equal(e.code, 'POSKEY_ERR_HSM_UNAVAILABLE');
    assert.match(e.message, /ECONNREFUSED/);
    const f = await rejection(connectHsm({ host: '127.0.0.1', port, connectTimeoutMs: 100 }));
    assert.equal(f.code, 'POSKEY_ERR_HSM_UNAVAILABLE');
  });
});

describe('TCP client: close()', () => {
  it('drains what is in flight against a live HSM, then refuses new requests with POSKEY_ERR_HSM_CLOSED', async () => {
    const { port } = await startHsm();
    const c = client({ addresses: at(port) });
    await c.ready();
    const pending = Array.from({ length: 300 }, (_, i) => c.translatePin(pinRequest(i)));
    const closed = c.close();
    const out = await Promise.all(pending);
    assertPins(out);
    await closed;
    const e = await rejection(c.translatePin(pinRequest(1)));
    assert.equal(e.code, 'POSKEY_ERR_HSM_CLOSED');
    await c.close();
    assert.ok(c.stats().connections.every((x) => x.state === 'closed'));
  });

  it('rejects requests still pending after closeTimeoutMs (in flight and queued) with POSKEY_ERR_HSM_CLOSED', async () => {
    const peer = await faultPeer(() => undefined);
    const c = client({
      addresses: at(peer.port),
      connectionsPerAddress: 1,
      maxInFlightPerConnection: 2,
      timeoutMs: 10_000,
      closeTimeoutMs: 30,
    });
    await c.ready();
    const pending = Array.from({ length: 4 }, (_, i) => rejection(c.command('B2', `0001${i}`)));
    await sleep(10);
    assert.deepEqual([c.stats().inFlight, c.stats().queued], [2, 2]);
    const started = Date.now();
    await c.close();
    assert.ok(Date.now() - started < 2000);
    for (const e of await Promise.all(pending)) {
      assert.equal(e.code, 'POSKEY_ERR_HSM_CLOSED');
      assert.match(e.message, /closed before B2 was (answered|sent)/);
    }
  });

  it('ready() after close, or waiting while it closes, is POSKEY_ERR_HSM_CLOSED', async () => {
    const { port } = await startHsm();
    const c = client({ addresses: at(port) });
    await c.close();
    assert.equal((await rejection(c.ready())).code, 'POSKEY_ERR_HSM_CLOSED');
    const dead = client({ addresses: at(await deadPort()), connectTimeoutMs: 5000 });
    const waiting = rejection(dead.ready());
    await dead.close();
    assert.equal((await waiting).code, 'POSKEY_ERR_HSM_CLOSED');
  });
});

describe('TCP client: client-side error codes', () => {
  it('POSKEY_ERR_HSM_OVERLOADED when more than maxQueued requests wait', async () => {
    const peer = await faultPeer(() => undefined);
    const c = client({
      addresses: at(peer.port),
      connectionsPerAddress: 1,
      maxInFlightPerConnection: 1,
      maxQueued: 1,
      closeTimeoutMs: 0,
    });
    await c.ready();
    const first = c.command('B2', '0001a').catch((e) => e);
    const second = c.command('B2', '0001b').catch((e) => e);
    const e = await rejection(c.command('B2', '0001c'));
    assert.equal(e.code, 'POSKEY_ERR_HSM_OVERLOADED');
    await c.close();
    assert.equal((await first).code, 'POSKEY_ERR_HSM_CLOSED');
    assert.equal((await second).code, 'POSKEY_ERR_HSM_CLOSED');
  });

  it('POSKEY_ERR_HSM_PROTOCOL for a wrong response code or unreadable fields; the connection carries on', async () => {
    const peer = await faultPeer((f, socket) => {
      if (f.body.toString('latin1') === 'wrong') reply(socket, f.header, 'XX', '00');
      else if (f.command === 'NC') reply(socket, f.header, 'NC', '00', 'short');
      else reply(socket, f.header, f.command, '00', 'ok');
    });
    const c = client({ addresses: at(peer.port), connectionsPerAddress: 1 });
    const e = await rejection(c.command('B2', 'wrong'));
    assert.equal(e.code, 'POSKEY_ERR_HSM_PROTOCOL');
    assert.match(e.message, /XY/);
    const d = await rejection(c.diagnostics());
    assert.equal(d.code, 'POSKEY_ERR_HSM_PROTOCOL');
    assert.deepEqual(await c.command('B2', 'x'), { errorCode: '00', fields: 'ok' });
  });

  it('a frame too short for header and codes closes the connection (its requests are re-sent)', async () => {
    let n = 0;
    const peer = await faultPeer((f, socket) => {
      if (n++ === 0) socket.write(Buffer.from([0, 2, 0x41, 0x42]));
      else reply(socket, f.header, f.command, '00', 'ok');
    });
    const c = client({
      addresses: at(peer.port),
      connectionsPerAddress: 1,
      reconnect: { initialDelayMs: 5 },
    });
    assert.deepEqual(await c.command('B2', 'x'), { errorCode: '00', fields: 'ok' });
    assert.equal(c.stats().retries, 1);
    assert.equal(c.stats().connects, 2);
  });

  it('POSKEY_ERR_HSM_REQUEST for a body that does not fit a 2-byte length', async () => {
    const { port } = await startHsm();
    const c = client({ addresses: at(port) });
    const e = await rejection(c.command('B2', 'x'.repeat(0x10000)));
    assert.equal(e.code, 'POSKEY_ERR_HSM_REQUEST');
  });

  it('an HSM error code is an HsmRemoteError: POSKEY_ERR_HSM_<code>, payShield code and command kept', async () => {
    const { port } = await startHsm();
    const c = client({ addresses: at(port) });
    const e = await rejection(c.checkValue(`${zpk.slice(0, -1)}${zpk.at(-1) === '0' ? '1' : '0'}`));
    assert.ok(e instanceof HsmRemoteError);
    assert.deepEqual([e.code, e.payShield, e.command], ['POSKEY_ERR_HSM_A4', 'A4', 'BU']);
    assert.match(e.message, /Key block authentication failure/);
  });

  it('POSKEY_ERR_HSM_OPTION for invalid options', () => {
    const bad: [Partial<TcpClientOptions>, string][] = [
      [{}, 'addresses'],
      [{ addresses: [] }, 'addresses'],
      [{ addresses: [{ host: '', port: 1 }] }, 'addresses[0].host'],
      [{ addresses: [{ host: 'h', port: 70000 }] }, 'addresses[0].port'],
      [{ addresses: at(1), headerLength: 256 }, 'headerLength'],
      [{ addresses: at(1), timeoutMs: 0 }, 'timeoutMs'],
      [{ addresses: at(1), maxInFlightPerConnection: 0 }, 'maxInFlightPerConnection'],
      [{ addresses: at(1), reconnect: { factor: 0.5 } }, 'reconnect.factor'],
    ];
    for (const [options, field] of bad) {
      assert.throws(
        () => createTcpClient(options as TcpClientOptions),
        (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_HSM_OPTION' && e.field === field,
        field,
      );
    }
  });
});

describe('TCP client over TLS', () => {
  let dir: string | undefined;
  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('verifies the HSM certificate and serves requests', async () => {
    dir = mkdtempSync(join(tmpdir(), 'poskey-client-tls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'hsm.key');
    ssl(
      'req',
      '-x509',
      '-new',
      '-key',
      'hsm.key',
      '-subj',
      '/CN=hsm',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-days',
      '1',
      '-out',
      'hsm.pem',
    );
    const key = readFileSync(join(dir, 'hsm.key'));
    const cert = readFileSync(join(dir, 'hsm.pem'));
    const { port } = await startHsm({ tls: { key, cert } });
    const c = client({ addresses: at(port), tls: { ca: cert } });
    assert.equal(pinUnderZpk(await c.translatePin(pinRequest(42))), '1042');
    const untrusted = client({
      addresses: at(port),
      tls: {},
      timeoutMs: 200,
      reconnect: { initialDelayMs: 50 },
    });
    const e = await rejection(untrusted.translatePin(pinRequest(1)));
    assert.equal(e.code, 'POSKEY_ERR_HSM_UNAVAILABLE');
  });
});
