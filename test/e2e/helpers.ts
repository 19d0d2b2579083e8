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
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { toHex, xor } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { combineComponents, generateKey } from '../../src/crypto/keys.js';
import { type Platform, type PlatformOptions, startPlatform } from '../../src/start/platform.js';
import type { TerminalKeyAlgorithm } from '../../src/store/types.js';
import { testCard } from '../../src/terminal/cards.js';
import type { TerminalConfig } from '../../src/terminal/config.js';
import type { FrameEvent } from '../../src/terminal/connection.js';
import { PinPad } from '../../src/terminal/pinpad.js';
import { Terminal } from '../../src/terminal/terminal.js';
import {
  type ClearWorkingKeys,
  checkValue4 as hostCheckValue4,
  eventually as hostEventually,
  openKeyBlock,
} from '../host/helpers.js';

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
// Field 62 and a bare terminal: the host tests' helpers, with the e2e world's terminal shape

export {
  packMaced,
  pinBlockHex,
  purchaseMessage,
  type RawKeys,
  type RawReply,
  RawTerminal,
  rawKeys,
  rawSignIn,
  replyMacOk,
  signInMessage,
  swipe,
} from '../host/helpers.js';

export type ClearKeys = ClearWorkingKeys;

/** First 4 bytes of E_K(0) under the clear key (DES for 8 bytes, TDES for 16, SM4). */
export function checkValue4(algorithm: TerminalKeyAlgorithm, key: Buffer): string {
  return hostCheckValue4(algorithm === 'SM4' ? 'sm4' : 'tdes', key);
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
  return openKeyBlock(field62, code, t.tmk, t.algorithm);
}

/** Polls `check` until it holds, or fails after `ms` (longer than the host tests: a whole platform). */
export function eventually(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  return hostEventually(check, ms);
}
