/**
 * The test's acquirer: its own HSM and dev LMK (separate from the network's), the zone keys
 * imported from the zone file and the components, a TPK it knows in clear (the terminal's side),
 * and a TCP client that frames 0200/0800s, keeps many in flight and matches answers by STAN+RRN.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { encryptPinBlock } from '../../src/crypto/pinblock.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import {
  buildFrame,
  createFrameDecoder,
  type IsoMessage,
  NETWORK_PROFILE,
  unpack,
} from '../../src/iso8583/index.js';
import { Ledger, type NewCard } from '../../src/network/ledger.js';
import {
  createNetworkSimulator,
  type NetworkSimulator,
  type NetworkSimulatorOptions,
} from '../../src/network/server.js';
import { createZoneKeys, importZoneKeys, type ZoneKeys } from '../../src/network/zone.js';
import {
  NETWORK_DIALECT,
  NETWORK_MAC,
  networkMacBlock,
  packNetworkWithMac,
} from '../../src/protocol/network-link.js';

export const TPK_CLEAR = '0123456789ABCDEFFEDCBA9876543210';
export const ACQUIRER_ID = '48020000';
/** The simulator's clock in these tests: 24 Nov 2026. */
export const NOW = new Date(Date.UTC(2026, 10, 24, 10, 30, 15));

/** Test cards; PINs chosen so that they cannot occur by accident in the ledger file. */
export const CARDS = {
  good: { pan: '6228480000000015', expiry: '3012', pin: '739264', balance: 100_000 },
  low: { pan: '6228480000000023', expiry: '3012', pin: '582019', balance: 500 },
  expired: { pan: '6228480000000031', expiry: '2610', pin: '640372', balance: 100_000 },
  blocked: { pan: '6228480000000049', expiry: '3012', pin: '918273', balance: 100_000, status: 'blocked' },
  lost: { pan: '6228480000000056', expiry: '3012', pin: '273645', balance: 100_000, status: 'lost' },
  pins: { pan: '6228480000000064', expiry: '3012', pin: '836104', balance: 100_000 },
  reset: { pan: '4761739001010119', expiry: '3012', pin: '495817', balance: 100_000 },
} as const satisfies Record<string, NewCard>;

export function tmpDir(prefix = 'poskey-network-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Imports a key the test knows in clear (component 2 = clear ⊕ component 1). */
export function knownKey(hsm: Hsm, keyType: 'TPK', clearHex: string): string {
  const clear = fromHex(clearHex);
  const c1 = Buffer.alloc(clear.length, 0x3c);
  const components = [toHex(c1), toHex(xor(clear, c1))];
  return hsm.importKey({ keyType, algorithm: 'tdes2', source: { kind: 'components', components } }).keyBlock;
}

export interface PurchaseSpec {
  pan?: string | undefined;
  amount?: number;
  pin?: string;
  stan: string;
  rrn?: string;
  expiry?: string;
  track?: string;
  processingCode?: string;
  currency?: string;
}

/** The acquirer's side: HSM, zone keys, TPK, message building and checking. */
export class Acquirer {
  readonly hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
  readonly tpk = knownKey(this.hsm, 'TPK', TPK_CLEAR);
  readonly #tpkHandle = createKey('tdes', fromHex(TPK_CLEAR));
  zone!: ZoneKeys;

  async importZone(components: string[], zoneFile: Parameters<typeof importZoneKeys>[2]): Promise<void> {
    this.zone = await importZoneKeys(this.hsm, components, zoneFile, { actor: 'acquirer' });
  }

  /** PIN block format 0 under the ZPK: encrypted under the TPK (the PIN pad), translated by the HSM. */
  pinBlock(pin: string, pan: string): string {
    const underTpk = toHex(encryptPinBlock(this.#tpkHandle, { format: 0, pin, pan }));
    return this.hsm.translatePin({
      source: { kind: 'key', keyBlock: this.tpk },
      destination: this.zone.zpk,
      pinBlock: underTpk,
      fromFormat: 0,
      toFormat: 0,
      pan,
    });
  }

  mac(msg: IsoMessage): string {
    return this.hsm.generateMac({
      key: { kind: 'key', keyBlock: this.zone.zak },
      algorithm: NETWORK_MAC.algorithm,
      padding: NETWORK_MAC.padding,
      length: NETWORK_MAC.length,
      data: toHex(networkMacBlock(msg)),
    });
  }

  macVerifies(msg: IsoMessage): boolean {
    const mac = (msg[128] ?? msg[64]) as string | undefined;
    if (mac === undefined) return false;
    return this.hsm.verifyMac({
      key: { kind: 'key', keyBlock: this.zone.zak },
      algorithm: NETWORK_MAC.algorithm,
      padding: NETWORK_MAC.padding,
      length: NETWORK_MAC.length,
      data: toHex(networkMacBlock(msg)),
      mac,
    });
  }

  /** A 0200 (without its MAC). */
  request(spec: PurchaseSpec): IsoMessage {
    const msg: IsoMessage = {
      0: '0200',
      3: spec.processingCode ?? '000000',
      4: String(spec.amount ?? 0).padStart(12, '0'),
      7: '1124103015',
      11: spec.stan,
      12: '103015',
      13: '1124',
      22: '021',
      25: '00',
      32: ACQUIRER_ID,
      37: spec.rrn ?? `6329${spec.stan.padStart(8, '0')}`,
      41: '12345678',
      42: '898310048160001',
      49: spec.currency ?? '156',
    };
    if (spec.pan !== undefined) msg[2] = spec.pan;
    if (spec.expiry !== undefined) msg[14] = spec.expiry;
    if (spec.track !== undefined) msg[35] = spec.track;
    if (spec.pin !== undefined) {
      msg[52] = this.pinBlock(spec.pin, (spec.pan ?? spec.track?.split('=')[0]) as string);
      msg[53] = '2600000000000000';
    }
    return msg;
  }

  /** Packs with a valid MAC in 128. */
  sign(msg: IsoMessage): Buffer {
    return packNetworkWithMac(msg, this.mac(msg));
  }
}

/** A TCP client on the network link: many requests in flight, answers matched by STAN+RRN. */
export class LinkClient {
  readonly socket: Socket;
  readonly #pending = new Map<string, (m: IsoMessage) => void>();
  readonly closed: Promise<void>;
  readonly unmatched: IsoMessage[] = [];
  readonly order: string[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    const decoder = createFrameDecoder(NETWORK_PROFILE);
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        const msg = unpack(NETWORK_DIALECT, frame);
        const key = `${msg[11]}:${msg[37] ?? ''}`;
        this.order.push(String(msg[11]));
        const resolve = this.#pending.get(key);
        if (resolve === undefined) this.unmatched.push(msg);
        else {
          this.#pending.delete(key);
          resolve(msg);
        }
      }
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<LinkClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new LinkClient(s)));
      s.once('error', reject);
    });
  }

  /** Sends a packed body; resolves with the answer, or undefined after `timeoutMs`. */
  send(body: Buffer, timeoutMs = 3000): Promise<IsoMessage | undefined> {
    const msg = unpack(NETWORK_DIALECT, body);
    const key = `${msg[11]}:${msg[37] ?? ''}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(key);
        resolve(undefined);
      }, timeoutMs);
      this.#pending.set(key, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.socket.write(buildFrame({ body }, NETWORK_PROFILE));
    });
  }

  /** Writes raw bytes (malformed frames). */
  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface Setup {
  dir: string;
  ledger: Ledger;
  networkHsm: Hsm;
  acquirer: Acquirer;
  simulator: NetworkSimulator;
  client: LinkClient;
  port: number;
  close(): Promise<void>;
}

/** Both trust domains, a zone between them, the test cards, a listening simulator and a connected client. */
export async function setup(options: Partial<NetworkSimulatorOptions> = {}): Promise<Setup> {
  const dir = tmpDir();
  const networkHsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
  const ledger = Ledger.open({ path: join(dir, 'ledger.sqlite'), hsm: networkHsm, clock: () => NOW });
  for (const card of Object.values(CARDS)) ledger.addCard(card);
  const zone = await createZoneKeys(networkHsm);
  const acquirer = new Acquirer();
  await acquirer.importZone(zone.zmkComponents, zone.zoneFile);
  assert.notEqual(acquirer.zone.zpk, zone.keys.zpk, 'each side has its own LMK blocks');
  const simulator = createNetworkSimulator({
    hsm: networkHsm,
    ledger,
    zone: zone.keys,
    port: 0,
    clock: () => NOW,
    ownsLedger: true,
    ...options,
  });
  const { port } = await simulator.listen();
  const client = await LinkClient.connect(port);
  return {
    dir,
    ledger,
    networkHsm,
    acquirer,
    simulator,
    client,
    port,
    async close() {
      client.close();
      await simulator.close();
    },
  };
}
