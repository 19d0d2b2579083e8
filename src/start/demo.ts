/**
 * Demo data for `poskey start`: the simulated factory's transport keys, one merchant, TDES and SM4
 * terminals whose TMKs the host's HSM generates and delivers into sealed simulated PIN pads, and
 * test cards in the network's ledger. Everything here is test data for a development platform.
 *
 * Key path of a demo terminal (the one a real acquirer follows, minus the courier):
 *  1. the simulated factory has a transport key (K0) per key family; it is injected in clear into
 *     every PIN pad it builds (slot 31) and imported into the host's HSM from two components;
 *  2. the registry asks the HSM to generate the terminal's TMK and deliver it under that transport
 *     key (legacy cryptogram + KCV);
 *  3. the PIN pad decrypts it inside (`provisionFromTransportCryptogram`), checks the KCV, and is
 *     sealed into `<data>/terminals/<TID>/pinpad.json`.
 * The factory keys live only in memory for the run: a restart makes new ones, and pads provisioned
 * earlier keep their TMKs.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { toHex, xor, zeroize } from '../crypto/bytes.js';
import { combineComponents, generateKey } from '../crypto/keys.js';
import type { Registry } from '../host/registry.js';
import type { HsmClient, LmkKeyBlock } from '../hsm/api.js';
import type { Ledger } from '../network/ledger.js';
import { DEMO_CARDS } from '../network/setup.js';
import type { Repository, TerminalKeyAlgorithm } from '../store/types.js';
import { TEST_CARDS } from '../terminal/cards.js';
import { SIMULATED_APPS, TRANSPORT_SLOT } from '../terminal/fleet.js';
import { type MasterKeyAlgorithm, PinPad } from '../terminal/pinpad.js';
import { PINPAD_STORE_FILE, PinPadStore, type ScryptParams } from '../terminal/pinpad-store.js';
import { DEMO_PINPAD_SECRET, DEMO_PINPAD_SECRET_ENV } from './layout.js';

export { DEMO_PINPAD_SECRET, DEMO_PINPAD_SECRET_ENV };

/** The demo merchant (MID is field 42, 15 characters). */
export const DEMO_MERCHANT = Object.freeze({ mid: '898310048990001', name: 'poskey demo shop', mcc: '5411' });
/** Balance of every demo test card (minor units): 1,000,000.00. */
export const DEMO_CARD_BALANCE = 100_000_000;
/** Names under which the registry knows the factory transport keys. */
export const FACTORY_KEK = Object.freeze({ TDES: 'factory', SM4: 'factory-sm4' } as const);

/** A factory transport key: clear for the simulated key loading device, an LMK block for the HSM. */
export interface FactoryKey {
  algorithm: MasterKeyAlgorithm;
  /** Clear key, injected into simulated PIN pads (simulation only). */
  key: Buffer;
  kek: LmkKeyBlock;
  kcv: string;
}

export interface DemoTerminal {
  tid: string;
  keyAlgorithm: TerminalKeyAlgorithm;
  /** The terminal's data directory (sealed PIN pad, STAN, batch, reversals). */
  dataDir: string;
  tmkKcv: string;
  /** True when this start registered or re-keyed it. */
  provisioned: boolean;
}

export interface DemoCard {
  name: string;
  pan: string;
  expiry: string;
  pin: string;
  note: string;
}

export interface DemoData {
  merchant: typeof DEMO_MERCHANT;
  terminals: DemoTerminal[];
  cards: DemoCard[];
  pinpadSecret: { env: string; value: string };
}

/**
 * Makes the factory transport key of a family and imports it into the HSM as a KEK from two
 * components (the factory's own small ceremony).
 */
export async function makeFactoryKey(hsm: HsmClient, algorithm: MasterKeyAlgorithm): Promise<FactoryKey> {
  const parts =
    algorithm === 'sm4'
      ? [generateKey('sm4', 16), generateKey('sm4', 16)]
      : [generateKey('tdes', 16), generateKey('tdes', 16)];
  try {
    const key = algorithm === 'sm4' ? xor(parts[0]!, parts[1]!) : combineComponents('tdes', parts).key;
    const imported = await hsm.importKey(
      {
        keyType: 'KEK',
        algorithm: algorithm === 'sm4' ? 'sm4' : 'tdes2',
        source: { kind: 'components', components: parts.map((p) => toHex(p)) },
      },
      'factory',
    );
    return { algorithm, key, kek: imported.keyBlock, kcv: imported.info.kcv.value };
  } finally {
    zeroize(...parts);
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** The demo terminals: `tdes` TDES ones, then `sm4` SM4 ones, TIDs T0000001… */
export function demoTids(tdes: number, sm4: number): { tid: string; keyAlgorithm: TerminalKeyAlgorithm }[] {
  return Array.from({ length: tdes + sm4 }, (_, i) => ({
    tid: `T${String(i + 1).padStart(7, '0')}`,
    keyAlgorithm: i < tdes ? ('TDES' as const) : ('SM4' as const),
  }));
}

export interface SeedOptions {
  registry: Registry;
  store: Repository;
  ledger: Ledger;
  factory: { TDES: FactoryKey; SM4: FactoryKey };
  terminalsDir: string;
  tdes: number;
  sm4: number;
  /** scrypt cost of new PIN pad stores (tests use a small one). */
  scrypt?: ScryptParams;
}

/**
 * Provisions one PIN pad: factory transport key in, TMK from the HSM's cryptogram, sealed to disk.
 * @throws PIN pad errors (POSKEY_ERR_PINPAD_KCV when the delivery does not match its KCV)
 */
export async function provisionPinPad(
  dir: string,
  tid: string,
  factory: FactoryKey,
  delivery: { cryptogram: string; kcv: string },
  scrypt?: ScryptParams,
): Promise<void> {
  const pad = new PinPad({ serial: `DEMO-${tid}`, apps: SIMULATED_APPS });
  pad.injectTransportKey(TRANSPORT_SLOT, factory.key, { algorithm: factory.algorithm });
  pad.provisionFromTransportCryptogram(0, TRANSPORT_SLOT, delivery.cryptogram, delivery.kcv);
  const store = await PinPadStore.open(dir, DEMO_PINPAD_SECRET, scrypt ? { scrypt } : {});
  try {
    await store.save(pad);
  } finally {
    store.close();
  }
}

/**
 * Seeds what is missing: the merchant, each terminal (registered with a TMK generated by the HSM,
 * or re-keyed when its PIN pad is gone), and the test cards. Idempotent.
 */
export async function seedDemo(o: SeedOptions): Promise<DemoData> {
  const m = DEMO_MERCHANT;
  if ((await o.store.merchants.get(m.mid)) === undefined) await o.registry.addMerchant(m, 'demo-seed');
  const terminals: DemoTerminal[] = [];
  for (const { tid, keyAlgorithm } of demoTids(o.tdes, o.sm4)) {
    const dataDir = join(o.terminalsDir, tid);
    const known = await o.store.terminals.get(tid);
    const hasPad = await exists(join(dataDir, PINPAD_STORE_FILE));
    if (known !== undefined && known.tmk !== null && hasPad) {
      terminals.push({
        tid,
        keyAlgorithm: known.keyAlgorithm,
        dataDir,
        tmkKcv: known.tmk.kcv,
        provisioned: false,
      });
      continue;
    }
    const factory = o.factory[known?.keyAlgorithm ?? keyAlgorithm];
    const source = {
      generate: true as const,
      exportUnder: FACTORY_KEK[factory.algorithm === 'sm4' ? 'SM4' : 'TDES'],
    };
    const made =
      known === undefined
        ? await o.registry.addTerminal(
            { tid, mid: m.mid, keyAlgorithm, serial: `DEMO-${tid}`, tmk: source },
            'demo-seed',
          )
        : await o.registry.replaceTmk(tid, source, 'demo-seed');
    const delivery = made.tmk?.delivery;
    if (delivery === undefined) throw new Error(`no TMK delivery for ${tid}`);
    await provisionPinPad(dataDir, tid, factory, delivery, o.scrypt);
    terminals.push({
      tid,
      keyAlgorithm: made.terminal.keyAlgorithm,
      dataDir,
      tmkKcv: delivery.kcv,
      provisioned: true,
    });
  }
  return {
    merchant: m,
    terminals,
    cards: seedCards(o.ledger),
    pinpadSecret: { env: DEMO_PINPAD_SECRET_ENV, value: DEMO_PINPAD_SECRET },
  };
}

/**
 * The terminal simulator's test cards (`--card NAME`) and the network's demo cards, added to the
 * ledger when missing. Returns them all (their PINs are published test data).
 */
export function seedCards(ledger: Ledger): DemoCard[] {
  const out: DemoCard[] = [];
  for (const c of TEST_CARDS) {
    if (ledger.getCard(c.pan) === undefined) {
      ledger.addCard({ pan: c.pan, expiry: c.expiry, pin: c.pin, balance: DEMO_CARD_BALANCE });
    }
    out.push({ name: c.name, pan: c.pan, expiry: c.expiry, pin: c.pin, note: 'swipe with --card' });
  }
  for (const c of DEMO_CARDS) {
    out.push({ name: '', pan: c.pan, expiry: c.expiry, pin: c.pin, note: c.note });
  }
  return out;
}
