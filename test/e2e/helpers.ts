/**
 * The end-to-end world: `startPlatform` (the same function `poskey start` runs) in a temp data
 * directory on port 0, everything real: the host HSM and the network's own HSM with separate dev
 * LMKs, the zone made and imported by both, the store (SQLite, or a fresh PostgreSQL schema), the
 * network simulator, the POSP host and its admin API over HTTP.
 *
 * Terminals are registered through the admin API. `registerKnown` builds the TMK from components
 * the test made (the key ceremony), so the test knows the clear TMK and can open field 62 itself;
 * `terminal()` gives a terminal simulator whose PIN pad holds it. `RawTerminal` sends exactly the
 * bytes a test builds (replays, tampered MACs, bad PIN blocks).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { toHex, xor } from '../../src/crypto/bytes.js';
import { createKey, type KeyHandle } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { combineComponents, generateKey } from '../../src/crypto/keys.js';
import { generateMac } from '../../src/crypto/mac.js';
import { encryptPinBlock } from '../../src/crypto/pinblock.js';
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
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';
import { type Platform, type PlatformOptions, startPlatform } from '../../src/start/platform.js';
import type { TerminalKeyAlgorithm } from '../../src/store/types.js';
import { testCard, track2Of } from '../../src/terminal/cards.js';
import type { TerminalConfig } from '../../src/terminal/config.js';
import type { FrameEvent } from '../../src/terminal/connection.js';
import { PinPad } from '../../src/terminal/pinpad.js';
import { Terminal } from '../../src/terminal/terminal.js';

export const PG_URL = process.env.POSKEY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
/** Small scrypt cost for test LMKs and PIN pad stores. */
export const FAST_KDF = Object.freeze({ N: 1024, r: 8, p: 1 });
export const MID = '898310048990001';

/** Cards of the network ledger (demo data seeded by the platform). */
export const CARDS = {
  good: { ...testCard('unionpay-debit') },
  credit: { ...testCard('unionpay-credit') },
  low: { pan: '6228480000000023', expiry: '3012', pin: '111111' },
  expired: { pan: '6228480000000031', expiry: '2001', pin: '123456' },
  blocked: { pan: '6228480000000049', expiry: '3012', pin: '123456' },
  unknown: { pan: '6228480000009999', expiry: '3012', pin: '123456' },
} as const;

export function swipe(card: { pan: string; expiry: string }): { track2: string } {
  return { track2: track2Of({ pan: card.pan, expiry: card.expiry, serviceCode: '101' }) };
}

export type Backend = 'sqlite' | 'postgres';

export interface KnownTerminal {
  tid: string;
  algorithm: TerminalKeyAlgorithm;
  /** The clear TMK, formed by the test from the components it registered. */
  tmk: Buffer;
  kcv: string;
}

export interface World {
  platform: Platform;
  backend: Backend;
  /** Admin API call over HTTP with the platform's token (or `token`). */
  // biome-ignore lint/suspicious/noExplicitAny: the tests read JSON bodies of many shapes
  admin(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: any }>;
  registerKnown(tid: string, algorithm?: TerminalKeyAlgorithm): Promise<KnownTerminal>;
  terminal(t: KnownTerminal, config?: Partial<TerminalConfig>, onFrame?: (e: FrameEvent) => void): Terminal;
  close(): Promise<void>;
}

let tidCounter = 0;
/** A fresh TID for this process: prefix + counter (8 characters). */
export function nextTid(prefix = 'E'): string {
  tidCounter++;
  return `${prefix}${String(tidCounter).padStart(8 - prefix.length, '0')}`;
}

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
}

/** Two components and the clear key the HSM forms from them (parity fixed for TDES). */
export function knownComponents(algorithm: TerminalKeyAlgorithm): {
  clear: Buffer;
  components: string[];
  kcvs: string[];
} {
  if (algorithm === 'SM4') {
    const parts = [randomBytes(16), randomBytes(16)];
    const kcvs = parts.map((p) => checkValue(createKey('sm4', p), { method: 'legacy', length: 3 }).value);
    return { clear: xor(parts[0]!, parts[1]!), components: parts.map((p) => toHex(p)), kcvs };
  }
  const parts = [generateKey('tdes', 16), generateKey('tdes', 16)];
  const combined = combineComponents('tdes', parts);
  return {
    clear: combined.key,
    components: parts.map((p) => toHex(p)),
    kcvs: combined.components.map((k) => k.value),
  };
}

export async function startWorld(
  backend: Backend = 'sqlite',
  options: Partial<PlatformOptions> = {},
): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-e2e-'));
  const schema = `poskey_e2e_${randomBytes(6).toString('hex')}`;
  let platform: Platform;
  try {
    platform = await startPlatform({
      dataDir: dir,
      terminalPort: 0,
      networkPort: 0,
      adminPort: 0,
      hsmService: false,
      logLevel: 'silent',
      kdf: FAST_KDF,
      demoTerminals: { tdes: 1, sm4: 1 },
      networkTimeoutMs: 1500,
      ...(backend === 'postgres' ? { database: `${PG_URL}?schema=${schema}` } : {}),
      ...options,
    });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const base = `http://127.0.0.1:${platform.ports.admin}`;
  const world: World = {
    platform,
    backend,
    async admin(method, path, body, token = platform.adminToken) {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
    },
    async registerKnown(tid, algorithm = 'TDES') {
      const { clear, components, kcvs } = knownComponents(algorithm);
      const r = await world.admin('POST', '/terminals', {
        tid,
        mid: MID,
        keyAlgorithm: algorithm,
        tmk: { components, kcvs },
      });
      if (r.status !== 201) throw new Error(`registering ${tid}: ${r.status} ${JSON.stringify(r.body)}`);
      return { tid, algorithm, tmk: clear, kcv: r.body.tmk.kcv };
    },
    terminal(t, config = {}, onFrame) {
      const pinPad = new PinPad();
      pinPad.injectTmk(0, t.tmk, { algorithm: t.algorithm === 'SM4' ? 'sm4' : 'tdes', kcv: t.kcv });
      return new Terminal(
        {
          tid: t.tid,
          mid: MID,
          host: '127.0.0.1',
          port: platform.ports.terminal,
          algorithm: t.algorithm === 'SM4' ? 'sm4' : 'tdes',
          timeouts: { responseMs: 10_000, connectMs: 2000 },
          ...config,
        },
        onFrame === undefined ? { pinPad } : { pinPad, onFrame },
      );
    },
    async close() {
      await platform.close();
      if (backend === 'postgres') await dropSchema(schema);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return world;
}

// ---------------------------------------------------------------------------------------------
// Field 62, opened by the test under the known TMK

export interface ClearKeys {
  tpk: Buffer;
  tak: Buffer;
  tdk?: Buffer;
}

/** First 4 bytes of E_K(0) under the clear key (DES for 8 bytes, TDES for 16, SM4). */
export function checkValue4(algorithm: TerminalKeyAlgorithm, key: Buffer): string {
  const k = createKey(algorithm === 'SM4' ? 'sm4' : key.length === 8 ? 'des' : 'tdes', key);
  try {
    return toHex(k.ecbEncrypt(Buffer.alloc(k.blockSize))).slice(0, 8);
  } finally {
    k.destroy();
  }
}

/**
 * Decrypts every key of field 62 under the TMK and checks each against the check value beside it.
 * @throws Error naming the key whose check value does not match
 */
export function openField62(
  field62: string,
  code: string,
  t: Pick<KnownTerminal, 'tmk' | 'algorithm'>,
): ClearKeys {
  const parts = splitKeyBlock(field62, code);
  const kek = createKey(t.algorithm === 'SM4' ? 'sm4' : 'tdes', t.tmk);
  try {
    const keyLen = code === '001' ? 8 : 16;
    const makLen = t.algorithm === 'SM4' ? 16 : code === '001' ? 8 : 8;
    const open = (hex: string, len: number) => kek.ecbDecrypt(Buffer.from(hex.slice(0, len * 2), 'hex'));
    const out: ClearKeys = { tpk: open(parts.pik, keyLen), tak: open(parts.mak, makLen) };
    if (parts.tdk !== undefined) out.tdk = open(parts.tdk, 16);
    const check = (name: string, key: Buffer, cv: string | undefined) => {
      if (checkValue4(t.algorithm, key) !== cv?.toUpperCase())
        throw new Error(`${name} check value does not match`);
    };
    check('PIK', out.tpk, parts.pikCv);
    check('MAK', out.tak, parts.makCv);
    if (out.tdk !== undefined) check('TDK', out.tdk, parts.tdkCv);
    return out;
  } finally {
    kek.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// A bare terminal

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

/** Sends exactly the bodies given (framed with TPDU and header) and reads replies in arrival order. */
export class RawTerminal {
  readonly socket: Socket;
  readonly #replies: RawReply[] = [];
  readonly #waiters: ((r: RawReply) => void)[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    const decoder = createFrameDecoder(TERMINAL_PROFILE);
    socket.on('data', (chunk: Buffer) => {
      for (const payload of decoder.push(chunk)) {
        const envelope = parseEnvelope(payload, TERMINAL_PROFILE);
        const reply = { envelope, msg: unpack(POS_DIALECT, envelope.body) };
        const w = this.#waiters.shift();
        if (w) w(reply);
        else this.#replies.push(reply);
      }
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawTerminal> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new RawTerminal(s)));
      s.once('error', reject);
    });
  }

  next(ms = 5000): Promise<RawReply> {
    const ready = this.#replies.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within ${ms} ms`)), ms);
      this.#waiters.push((r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  exchange(body: Buffer, ms = 5000): Promise<RawReply> {
    this.socket.write(buildFrame({ tpdu: TPDU, header: HEADER, body }, TERMINAL_PROFILE));
    return this.next(ms);
  }

  close(): void {
    this.socket.end();
  }
}

/** Working keys as a raw terminal holds them after opening field 62. */
export interface RawKeys {
  tak: KeyHandle;
  tpk: KeyHandle;
}

export function rawKeys(keys: ClearKeys, algorithm: TerminalKeyAlgorithm): RawKeys {
  const cipher = (k: Buffer) => createKey(algorithm === 'SM4' ? 'sm4' : k.length === 8 ? 'des' : 'tdes', k);
  return { tak: cipher(keys.tak), tpk: cipher(keys.tpk) };
}

/** Packs `msg` with its UnionPay ECB MAC in field 64 (or `wrongMac` instead). */
export function packMaced(msg: IsoMessage, keys: RawKeys, wrongMac?: string): Buffer {
  const packed = pack(POS_DIALECT, { ...msg, 64: '0000000000000000' });
  const mac =
    wrongMac === undefined
      ? generateMac('unionpay-ecb', keys.tak, packed.subarray(0, packed.length - 8))
      : Buffer.from(wrongMac, 'hex');
  mac.copy(packed, packed.length - 8);
  return packed;
}

/** True when a reply's field 64 verifies under the raw terminal's TAK. */
export function replyMacOk(reply: RawReply, keys: RawKeys): boolean {
  const body = reply.envelope.body;
  const want = generateMac('unionpay-ecb', keys.tak, body.subarray(0, body.length - 8));
  return typeof reply.msg[64] === 'string' && want.equals(body.subarray(body.length - 8));
}

export function signInMessage(tid: string, stan: string, code: string): IsoMessage {
  return {
    0: '0800',
    11: stan,
    41: tid,
    42: MID,
    60: { 1: '00', 2: '000001', 3: code },
    63: { 1: '001' },
  } as IsoMessage;
}

/** A raw purchase 0200 (swiped, with a PIN block when given), without its MAC. */
export function purchaseMessage(
  tid: string,
  stan: string,
  p: { pan: string; expiry: string; amount: number; pinBlock?: string },
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
    60: { 1: '22', 2: '000001', 3: '000' },
  } as IsoMessage;
  if (p.pinBlock !== undefined) {
    msg[26] = '12';
    msg[52] = p.pinBlock;
    msg[53] = { 1: '2', 2: '6', 3: '0', 4: '0000000000000' };
  }
  return msg;
}

/** A format-0 PIN block under the raw terminal's TPK. */
export function pinBlockHex(keys: RawKeys, pin: string, pan: string): string {
  return toHex(encryptPinBlock(keys.tpk, { format: 0, pin, pan }));
}

/** Signs a raw terminal in and opens (and checks) its keys. */
export async function rawSignIn(raw: RawTerminal, t: KnownTerminal, stan: string, code = '003') {
  const reply = await raw.exchange(pack(POS_DIALECT, signInMessage(t.tid, stan, code)));
  if (reply.msg[39] !== '00') throw new Error(`sign-in answered ${String(reply.msg[39])}`);
  const clear = openField62(reply.msg[62] as string, code, t);
  return { reply, clear, keys: rawKeys(clear, t.algorithm) };
}

/** Polls `check` until it holds, or fails after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
