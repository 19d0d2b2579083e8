/**
 * The host's test world: everything real, on ephemeral loopback ports.
 *
 * - a store (SQLite in a temp dir, or a fresh schema in the test PostgreSQL) from test/store/helpers;
 * - the host's HSM in process (its own dev LMK) and the network simulator with its OWN HSM and LMK,
 *   a zone made by the network and imported by the host from the zone file + ZMK components;
 * - the network simulator from src/network (demo cards), faults settable per test;
 * - the host server from src/host on port 0, with an injectable clock;
 * - terminals registered through the store's repository + the host HSM: each TMK is imported from
 *   two components the test made, so the test knows the clear TMK and can open field 62 itself;
 * - the real terminal simulator (src/terminal) for the normal flows, and `RawTerminal`, a bare
 *   framer that sends exactly the bytes a test builds (replays, bad MACs, bad PIN blocks).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { toHex, xor } from '../../src/crypto/bytes.js';
import { createKey, type KeyHandle } from '../../src/crypto/cipher.js';
import { generateKey } from '../../src/crypto/keys.js';
import { generateMac } from '../../src/crypto/mac.js';
import { encryptPinBlock } from '../../src/crypto/pinblock.js';
import { type HostConfig, type HostConfigInput, parseHostConfig } from '../../src/host/config.js';
import type { ZoneKeys } from '../../src/host/context.js';
import { loadZoneKeys } from '../../src/host/keys.js';
import { NetworkLink } from '../../src/host/network-link.js';
import { createHostServer, type HostServer } from '../../src/host/server.js';
import type { HsmClient } from '../../src/hsm/api.js';
import { createInProcessClient } from '../../src/hsm/client/in-process.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import {
  buildFrame,
  createFrameDecoder,
  type Envelope,
  type IsoMessage,
  pack,
  parseEnvelope,
  splitKeyBlock,
  TERMINAL_PROFILE,
  unpack,
} from '../../src/iso8583/index.js';
import { type OpenedNetwork, openNetworkSimulator } from '../../src/network/setup.js';
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';
import type { Repository, TerminalKeyAlgorithm } from '../../src/store/types.js';
import { track2Of } from '../../src/terminal/cards.js';
import type { TerminalConfig } from '../../src/terminal/config.js';
import type { FrameEvent } from '../../src/terminal/connection.js';
import { PinPad } from '../../src/terminal/pinpad.js';
import { Terminal } from '../../src/terminal/terminal.js';
import type { StoreFixture } from '../store/helpers.js';

export const MID = '898310048990001';
export const OTHER_MID = '104110070110814';

/** Demo cards of the network simulator (src/network/setup.ts DEMO_CARDS). */
export const CARDS = {
  good: { pan: '6228480000000015', expiry: '3012', pin: '123456' },
  low: { pan: '6228480000000023', expiry: '3012', pin: '111111' },
} as const;

/** A swipe of a demo card. */
export function swipe(card: { pan: string; expiry: string }): { track2: string } {
  return { track2: track2Of({ pan: card.pan, expiry: card.expiry, serviceCode: '101' }) };
}

export interface WorldOptions {
  /** Host config overrides (port 0, short network timeout and silent logs are the defaults). */
  host?: Partial<HostConfigInput>;
}

export interface RegisteredTerminal {
  tid: string;
  algorithm: TerminalKeyAlgorithm;
  /** The clear TMK (the test made its components). */
  tmk: Buffer;
}

export interface World {
  fixture: StoreFixture;
  store: Repository;
  hsm: Hsm;
  client: HsmClient;
  network: OpenedNetwork;
  zone: ZoneKeys;
  link: NetworkLink;
  config: HostConfig;
  server: HostServer;
  port: number;
  /** Added to the real time by the host's clock. */
  clock: { offsetMs: number };
  register(
    tid: string,
    options?: { algorithm?: TerminalKeyAlgorithm; mid?: string },
  ): Promise<RegisteredTerminal>;
  /** A terminal simulator for a registered terminal, its PIN pad holding the TMK. */
  terminal(
    t: RegisteredTerminal,
    config?: Partial<TerminalConfig>,
    onFrame?: (e: FrameEvent) => void,
  ): Terminal;
  /** A second server on the same store, HSM and link (for drain tests). */
  extraServer(overrides?: Partial<HostConfigInput>): Promise<{ server: HostServer; port: number }>;
  close(): Promise<void>;
}

const testLog = pino({ level: process.env.POSKEY_TEST_LOG ?? 'silent' });

/** Two random components and the clear key they form (parity-correct for TDES). */
function knownTmk(algorithm: TerminalKeyAlgorithm): { clear: Buffer; components: string[] } {
  const clear = algorithm === 'SM4' ? randomBytes(16) : generateKey('tdes', 16);
  const c1 = algorithm === 'SM4' ? randomBytes(16) : generateKey('tdes', 16);
  return { clear, components: [toHex(c1), toHex(xor(clear, c1))] };
}

export async function startWorld(fixture: StoreFixture, options: WorldOptions = {}): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-host-'));
  const store = await fixture.open();
  await store.merchants.upsert({ mid: MID, name: 'Host test shop', mcc: '5411' });
  await store.merchants.upsert({ mid: OTHER_MID, name: 'Other shop', mcc: '5812' });
  const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
  const client = createInProcessClient(hsm, { actor: 'host-test' });
  const network = await openNetworkSimulator({
    dataDir: join(dir, 'network'),
    hsm: new Hsm({ lmks: new LmkSet([generateDevLmk('01')]) }),
    zone: { allowCreate: true },
    seed: 'demo',
    simulator: { port: 0 },
  });
  const netAddress = await network.simulator.listen();
  const config = parseHostConfig({
    dataDir: join(dir, 'host'),
    port: 0,
    logLevel: 'silent',
    network: { host: '127.0.0.1', port: netAddress.port, timeout: 1500 },
    ...options.host,
  });
  const zone = await loadZoneKeys(client, config, {
    zmkComponents: network.zone.zmkComponents!,
    zoneFile: network.zone.zoneFile,
  });
  const link = new NetworkLink({
    host: '127.0.0.1',
    port: netAddress.port,
    timeoutMs: config.network.timeout,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    log: testLog,
  });
  link.start();
  await link.waitUntilUp(5000);
  const clock = { offsetMs: 0 };
  const hostClock = () => Date.now() + clock.offsetMs;
  // Only the main server runs store-and-forward and crash recovery: extra servers share its node id.
  const make = (cfg: HostConfig, saf = true) =>
    createHostServer({ config: cfg, hsm: client, store, zone, link, clock: hostClock, logger: testLog, saf });
  const server = make(config);
  const { port } = await server.listen();
  const extras: HostServer[] = [];

  return {
    fixture,
    store,
    hsm,
    client,
    network,
    zone,
    link,
    config,
    server,
    port,
    clock,
    async register(tid, opts = {}) {
      const algorithm = opts.algorithm ?? 'TDES';
      const { clear, components } = knownTmk(algorithm);
      const imported = hsm.importKey({
        keyType: 'TMK',
        algorithm: algorithm === 'SM4' ? 'sm4' : 'tdes2',
        source: { kind: 'components', components },
      });
      await store.terminals.create({
        tid,
        mid: opts.mid ?? MID,
        keyAlgorithm: algorithm,
        tmk: { block: imported.keyBlock, kcv: imported.info.kcv.value },
      });
      return { tid, algorithm, tmk: clear };
    },
    terminal(t, cfg = {}, onFrame) {
      const pinPad = new PinPad();
      pinPad.injectTmk(0, t.tmk, { algorithm: t.algorithm === 'SM4' ? 'sm4' : 'tdes' });
      return new Terminal(
        {
          tid: t.tid,
          mid: MID,
          host: '127.0.0.1',
          port,
          algorithm: t.algorithm === 'SM4' ? 'sm4' : 'tdes',
          timeouts: { responseMs: 10_000, connectMs: 2000 },
          ...cfg,
        },
        onFrame === undefined ? { pinPad } : { pinPad, onFrame },
      );
    },
    async extraServer(overrides = {}) {
      const s = make(parseHostConfig({ ...config, port: 0, ...overrides }), false);
      extras.push(s);
      return { server: s, port: (await s.listen()).port };
    },
    async close() {
      for (const s of [server, ...extras]) await s.close();
      await link.close();
      await network.simulator.close();
      await client.close();
      await fixture.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Field 62 opened by the test, and a bare terminal

export interface ClearWorkingKeys {
  tpk: Buffer;
  tak: Buffer;
  tdk?: Buffer;
}

/** The first 4 bytes of E_K(0) with the clear key (DES for 8 bytes, TDES for 16, SM4). */
export function checkValue4(algorithm: 'tdes' | 'sm4', key: Buffer): string {
  const k = createKey(algorithm === 'sm4' ? 'sm4' : key.length === 8 ? 'des' : 'tdes', key);
  try {
    return toHex(k.ecbEncrypt(Buffer.alloc(k.blockSize))).slice(0, 8);
  } finally {
    k.destroy();
  }
}

/**
 * Opens field 62 of an 0810 under the clear TMK and checks every check value.
 * @throws AssertionError-like Error naming the key whose CV does not match
 */
export function openKeyBlock(
  field62: string,
  code: string,
  tmk: Buffer,
  algorithm: TerminalKeyAlgorithm,
): ClearWorkingKeys {
  const parts = splitKeyBlock(field62, code);
  const cipher = algorithm === 'SM4' ? 'sm4' : 'tdes';
  const kek = createKey(cipher, tmk);
  const keyLen = code === '001' ? 8 : 16;
  const open = (hex: string, len: number) => kek.ecbDecrypt(Buffer.from(hex.slice(0, len * 2), 'hex'));
  const makLen = cipher === 'sm4' ? 16 : 8;
  const out: ClearWorkingKeys = { tpk: open(parts.pik, keyLen), tak: open(parts.mak, makLen) };
  if (code === '003' || code === '004') {
    if (parts.mak.slice(16) !== '0000000000000000')
      throw new Error('003/004 MAK slot must end in 8 zero bytes');
  }
  if (parts.tdk !== undefined) out.tdk = open(parts.tdk, 16);
  const check = (name: string, key: Buffer, cv: string | undefined) => {
    if (checkValue4(cipher, key) !== cv) throw new Error(`${name} check value does not match`);
  };
  check('PIK', out.tpk, parts.pikCv);
  check('MAK', out.tak, parts.makCv);
  if (out.tdk !== undefined) check('TDK', out.tdk, parts.tdkCv);
  kek.destroy();
  return out;
}

export interface RawReply {
  envelope: Envelope;
  msg: IsoMessage;
}

const TPDU = { id: 0x60, destination: 0x0003, source: 0x0000 };
const HEADER = {
  appType: '60',
  version: '31',
  terminalStatus: 0,
  processingRequirement: 0,
  subVersion: '000000',
};

/** A bare terminal connection: sends exactly the bytes given, reads replies in order of arrival. */
export class RawTerminal {
  readonly socket: Socket;
  readonly replies: RawReply[] = [];
  readonly #waiters: ((r: RawReply) => void)[] = [];
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    const decoder = createFrameDecoder(TERMINAL_PROFILE);
    socket.on('data', (chunk: Buffer) => {
      for (const payload of decoder.push(chunk)) {
        const envelope = parseEnvelope(payload, TERMINAL_PROFILE);
        const reply = { envelope, msg: unpack(POS_DIALECT, envelope.body) };
        const w = this.#waiters.shift();
        if (w) w(reply);
        else this.replies.push(reply);
      }
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(port: number): Promise<RawTerminal> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new RawTerminal(s)));
      s.once('error', reject);
    });
  }

  /** Writes a framed body (TPDU 60 0003 0000, header 603100000000). */
  write(body: Buffer): void {
    this.socket.write(buildFrame({ tpdu: TPDU, header: HEADER, body }, TERMINAL_PROFILE));
  }

  /** The next reply, or an error after `ms`. */
  next(ms = 5000): Promise<RawReply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within ${ms} ms`)), ms);
      this.#waiters.push((r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  async exchange(body: Buffer, ms = 5000): Promise<RawReply> {
    this.write(body);
    return this.next(ms);
  }

  close(): void {
    this.socket.end();
  }
}

/** Keys as a raw test terminal holds them after opening field 62. */
export interface RawKeys {
  tak: KeyHandle;
  tpk: KeyHandle;
  tdk?: KeyHandle;
  macAlgorithm: 'unionpay-ecb' | 'retail';
}

export function rawKeys(
  keys: ClearWorkingKeys,
  algorithm: TerminalKeyAlgorithm,
  mac: 'unionpay-ecb' | 'retail' = 'unionpay-ecb',
): RawKeys {
  const cipher = (k: Buffer) => createKey(algorithm === 'SM4' ? 'sm4' : k.length === 8 ? 'des' : 'tdes', k);
  const out: RawKeys = { tak: cipher(keys.tak), tpk: cipher(keys.tpk), macAlgorithm: mac };
  if (keys.tdk) out.tdk = cipher(keys.tdk);
  return out;
}

/** Packs `msg` with field 64 MACed under the raw terminal's TAK (or a given wrong MAC). */
export function packMaced(msg: IsoMessage, keys: RawKeys, wrongMac?: string): Buffer {
  const packed = pack(POS_DIALECT, { ...msg, 64: '0000000000000000' });
  const mac =
    wrongMac === undefined
      ? generateMac(keys.macAlgorithm, keys.tak, packed.subarray(0, packed.length - 8))
      : Buffer.from(wrongMac, 'hex');
  mac.copy(packed, packed.length - 8);
  return packed;
}

/** True when a reply's field 64 verifies under the raw terminal's TAK. */
export function replyMacOk(reply: RawReply, keys: RawKeys): boolean {
  const body = reply.envelope.body;
  const want = generateMac(keys.macAlgorithm, keys.tak, body.subarray(0, body.length - 8));
  return typeof reply.msg[64] === 'string' && want.equals(body.subarray(body.length - 8));
}

/** A format-0 PIN block under the raw terminal's TPK. */
export function pinBlockHex(keys: RawKeys, pin: string, pan: string): string {
  return toHex(encryptPinBlock(keys.tpk, { format: 0, pin, pan }));
}

/** The 0800 of a raw terminal. */
export function signInMessage(tid: string, stan: string, code: string, mid = MID): IsoMessage {
  return {
    0: '0800',
    11: stan,
    41: tid,
    42: mid,
    60: { 1: '00', 2: '000001', 3: code },
    63: { 1: '001' },
  } as IsoMessage;
}

/** A raw purchase 0200 (swiped card with PIN) without its MAC. */
export function purchaseMessage(
  tid: string,
  stan: string,
  p: { pan: string; expiry: string; amount: number; pinBlock?: string; batch?: string },
): IsoMessage {
  const msg: IsoMessage = {
    0: '0200',
    2: p.pan,
    3: '000000',
    4: String(p.amount).padStart(12, '0'),
    11: stan,
    14: p.expiry,
    22: p.pinBlock === undefined ? '022' : '021',
    25: '00',
    35: track2Of({ pan: p.pan, expiry: p.expiry, serviceCode: '101' }),
    41: tid,
    42: MID,
    49: '156',
    60: { 1: '22', 2: p.batch ?? '000001', 3: '000' },
  } as IsoMessage;
  if (p.pinBlock !== undefined) {
    msg[26] = '12';
    msg[52] = p.pinBlock;
    msg[53] = { 1: '2', 2: '6', 3: '0', 4: '0000000000000' };
  }
  return msg;
}

/** Signs a raw terminal in (60.3 = `code`) and opens its keys. */
export async function rawSignIn(
  raw: RawTerminal,
  t: RegisteredTerminal,
  stan: string,
  code = '003',
): Promise<{ reply: RawReply; keys: RawKeys; clear: ClearWorkingKeys }> {
  const reply = await raw.exchange(pack(POS_DIALECT, signInMessage(t.tid, stan, code)));
  if (reply.msg[39] !== '00') throw new Error(`sign-in answered ${String(reply.msg[39])}`);
  const clear = openKeyBlock(reply.msg[62] as string, code, t.tmk, t.algorithm);
  return { reply, keys: rawKeys(clear, t.algorithm), clear };
}

/** Waits until `check()` is true (polling), or fails after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
