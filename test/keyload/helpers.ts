/**
 * The key-injection test world, everything real:
 * - serial lines are socat pseudo-terminal pairs (`pty,raw,echo=0,link=…`), one end for the
 *   simulated device, the other for poskey;
 * - the HSM runs in process with a development LMK; the registry is the host's SQLite store;
 * - the transport KBPK is made from two components the test knows, imported into the HSM as a KEK
 *   (poskey's side) and given clear to the simulated PIN pad (its factory key).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toHex, xor } from '../../src/crypto/bytes.js';
import { fixParity } from '../../src/crypto/keys.js';
import { AuditLog } from '../../src/hsm/audit.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { KeyloadDevice, type KeyloadDeviceOptions } from '../../src/keyload/device.js';
import { storeRegistry, type TransportKey } from '../../src/keyload/loader.js';
import { kbpkAuthenticator, REQUIRED_APP_ORDER, transportKeyHandle } from '../../src/keyload/protocol.js';
import { openStore } from '../../src/store/open.js';
import type { Repository } from '../../src/store/types.js';
import { PinPad, type PinPadOptions } from '../../src/terminal/pinpad.js';

export const MID = '898310048990001';

const dirs: string[] = [];
/** A temporary directory removed by `cleanupDirs`. */
export function tempDir(prefix = 'poskey-keyload-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function cleanupDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export interface PtyPair {
  /** poskey's end. */
  a: string;
  /** The device's end. */
  b: string;
  stop(): Promise<void>;
}

/**
 * Starts `socat -d -d pty,raw,echo=0,link=DIR/a pty,raw,echo=0,link=DIR/b` and waits until socat
 * has both ptys and is moving data. `aOptions` are extra socat pty options for end a (e.g.
 * `perm=0660,group=dialout`).
 */
export async function ptyPair(dir = tempDir('poskey-pty-'), aOptions = ''): Promise<PtyPair> {
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const extra = aOptions === '' ? '' : `,${aOptions}`;
  const child: ChildProcess = spawn(
    'socat',
    ['-d', '-d', `pty,raw,echo=0,link=${a}${extra}`, `pty,raw,echo=0,link=${b}`],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let log = '';
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socat did not start: ${log}`)), 5000);
    child.stderr!.on('data', (d: Buffer) => {
      log += d;
      if (log.includes('starting data transfer loop')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`socat exited (${code}): ${log}`));
    });
    child.once('error', reject);
  });
  await ready;
  for (const link of [a, b]) lstatSync(link); // both links exist
  return {
    a,
    b,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Clear KBPK (double-length TDES, odd parity) and its two components. */
export function transportKeyMaterial(): { clear: Buffer; components: string[] } {
  const clear = fixParity(randomBytes(16));
  const c1 = fixParity(randomBytes(16));
  return { clear, components: [toHex(c1), toHex(xor(clear, c1))] };
}

export interface World {
  hsm: Hsm;
  lmks: LmkSet;
  store: Repository;
  registry: ReturnType<typeof storeRegistry>;
  transportKey: TransportKey;
  /** The clear KBPK every simulated PIN pad of this world was born with. */
  kbpk: Buffer;
  audit: AuditLog;
  auditPath: string;
  dataDir: string;
  /** Registers a terminal (TDES unless said otherwise). */
  register(tid: string, options?: { serial?: string; keyAlgorithm?: 'TDES' | 'SM4' }): Promise<void>;
  close(): Promise<void>;
}

export async function makeWorld(): Promise<World> {
  const dataDir = tempDir();
  const lmks = new LmkSet([generateDevLmk('00')]);
  const hsm = new Hsm({ lmks });
  const store = await openStore({ dataDir });
  await store.merchants.upsert({ mid: MID, name: 'Test merchant', mcc: '5411' });
  const { clear, components } = transportKeyMaterial();
  const kek = hsm.importKey({
    keyType: 'KEK',
    algorithm: 'tdes2',
    source: { kind: 'components', components },
  });
  const handle = transportKeyHandle('tdes', clear);
  const auth = kbpkAuthenticator(handle);
  handle.destroy();
  const auditPath = join(dataDir, 'keyload-audit.log');
  const audit = await AuditLog.open(auditPath);
  return {
    hsm,
    lmks,
    store,
    registry: storeRegistry(store),
    transportKey: { kbpk: kek.keyBlock, auth },
    kbpk: clear,
    audit,
    auditPath,
    dataDir,
    async register(tid, options = {}) {
      await store.terminals.create({
        tid,
        mid: MID,
        keyAlgorithm: options.keyAlgorithm ?? 'TDES',
        ...(options.serial !== undefined ? { serial: options.serial } : {}),
      });
    },
    async close() {
      auth.destroy();
      await audit.close();
      await store.close();
      hsm.destroy();
    },
  };
}

/** A bare simulated terminal's PIN pad with its apps installed in the required order. */
export function bareTerminal(options: PinPadOptions = {}): PinPad {
  return new PinPad({ model: 'SIM-900', firmware: '2.4.1', apps: REQUIRED_APP_ORDER, ...options });
}

/** A device simulator holding `kbpk` (the world's, unless the test gives another). */
export function simulator(
  kbpk: Uint8Array,
  options: Partial<KeyloadDeviceOptions> & { padOptions?: PinPadOptions } = {},
): KeyloadDevice {
  const { padOptions, ...rest } = options;
  return new KeyloadDevice({
    pad: options.pad ?? bareTerminal(padOptions),
    kbpk: { algorithm: 'tdes', key: kbpk },
    ...rest,
  });
}

/** Quick link timings for tests (a pty answers in microseconds). */
export const FAST_LINK = Object.freeze({
  ackTimeoutMs: 300,
  responseTimeoutMs: 1500,
  retries: 2,
  interByteTimeoutMs: 100,
});
