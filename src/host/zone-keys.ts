/**
 * Zone key exchange with the card network (docs/network-link.md "Network sign-on and key
 * exchange"). The host signs on (0800 70 = 001) once the link is up and asks for new keys (101) on
 * a schedule (`network.rekeyInterval`) and on demand (`poskey host network rekey`). Each 0810
 * delivers a new ZPK and ZAK under the ZMK in field 48 (src/protocol/network-keys.ts). Before the
 * pair is used:
 *  1. the 0810's MAC must verify under the ZAK in force and 39 must be 00;
 *  2. each key is imported under the ZMK into the host's HSM, and its check value computed there
 *     is compared, in constant time, with the delivered one: a mismatch refuses the pair
 *     (POSKEY_ERR_HOST_ZONE_KCV) and the old pair stays in force;
 *  3. the pair is written to the saved zone keys file atomically, and only then put in force.
 *
 * The host uses the new pair for every transaction that starts after that; a transaction already
 * under way keeps the pair it started with (TxnContext.zoneKeys), and the network accepts the old
 * pair for its overlap, so no transaction fails because of a change. Exchanges never overlap.
 */
import type { Logger } from 'pino';
import type { HsmClient, KeyAlgorithm, LmkKeyBlock } from '../hsm/api.js';
import { type DeliveredKey, decodeKeyDelivery, NMI } from '../protocol/network-keys.js';
import type { HostConfig } from './config.js';
import type { ZoneKeys } from './context.js';
import { hostError } from './errors.js';
import {
  describeZoneKeys,
  readSaved,
  type SavedZoneKeys,
  sameKcv,
  saveZoneKeys,
  ZONE_KEYS_FORMAT,
  zoneKeysPath,
} from './keys.js';
import type { NetworkTransport } from './network-link.js';
import { answerMacVerifies, managementRequest } from './network-management.js';

export type RekeyReason = 'sign-on' | 'on-demand' | 'schedule';

export interface RekeyResult {
  keySet: string;
  zpkKcv: string;
  zakKcv: string;
  rotatedAt: string;
  reason: RekeyReason;
}

export interface ZoneKeyStatus {
  keySet: string | undefined;
  zpkKcv: string | undefined;
  zakKcv: string | undefined;
  signedOn: boolean;
  rotations: number;
  lastRotation: RekeyResult | undefined;
  lastError: { code: string; message: string } | undefined;
  link: string;
}

export interface ZoneKeyManagerOptions {
  hsm: HsmClient;
  link: NetworkTransport;
  /** Where the keys in force live (the host server's runtime). */
  runtime: { zone: ZoneKeys | undefined };
  config: HostConfig;
  log: Logger;
  clock?: () => number;
}

const ALGORITHM_BY_HEX: Readonly<Record<number, KeyAlgorithm>> = { 32: 'tdes2', 48: 'tdes3' };
const SIGN_ON_RETRY_MAX_MS = 30_000;

export class ZoneKeyManager {
  readonly #o: ZoneKeyManagerOptions;
  readonly #clock: () => number;
  #queue: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #signedOn = false;
  #rotations = 0;
  #last: RekeyResult | undefined;
  #lastError: { code: string; message: string } | undefined;

  constructor(options: ZoneKeyManagerOptions) {
    this.#o = options;
    this.#clock = options.clock ?? Date.now;
  }

  /** Signs on in the background (retrying with back-off) and starts the rotation schedule. */
  start(): void {
    const n = this.#o.config.network;
    if (n.signOn) void this.#signOnLoop();
    if (n.rekeyInterval > 0) {
      this.#timer = setInterval(() => {
        this.rekey('schedule').catch(() => undefined);
      }, n.rekeyInterval);
      this.#timer.unref();
    }
  }

  /** Signs on (70 = 001): the 0810 delivers a new pair. */
  signOn(): Promise<RekeyResult> {
    return this.#serial(() => this.#exchange(NMI.SIGN_ON, 'sign-on'));
  }

  /** Asks the network for a new pair (70 = 101) and puts it in force once verified. */
  rekey(reason: RekeyReason = 'on-demand'): Promise<RekeyResult> {
    return this.#serial(() => this.#exchange(NMI.KEY_EXCHANGE, reason));
  }

  async status(): Promise<ZoneKeyStatus> {
    const zone = this.#o.runtime.zone;
    const kcv = async (block: LmkKeyBlock | undefined) =>
      block === undefined ? undefined : (await this.#o.hsm.checkValue(block, 'legacy')).value;
    return {
      keySet: zone?.keySet,
      zpkKcv: await kcv(zone?.zpk),
      zakKcv: await kcv(zone?.zak),
      signedOn: this.#signedOn,
      rotations: this.#rotations,
      lastRotation: this.#last,
      lastError: this.#lastError,
      link: this.#o.link.state,
    };
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
  }

  async #signOnLoop(): Promise<void> {
    let wait = 500;
    while (!this.#closed && !this.#signedOn) {
      if (this.#o.link.state === 'up') {
        try {
          await this.signOn();
          return;
        } catch {
          // logged by #exchange; try again after the back-off
        }
      }
      await new Promise((r) => setTimeout(r, wait).unref());
      wait = Math.min(SIGN_ON_RETRY_MAX_MS, wait * 2);
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #exchange(code: string, reason: RekeyReason): Promise<RekeyResult> {
    try {
      const result = await this.#exchangeOnce(code, reason);
      if (code === NMI.SIGN_ON) this.#signedOn = true;
      this.#rotations++;
      this.#last = result;
      this.#lastError = undefined;
      this.#o.log.info({ ...result }, 'zone keys rotated');
      return result;
    } catch (e) {
      const err = e as { code?: string; message?: string };
      this.#lastError = {
        code: err.code ?? 'POSKEY_ERR_HOST_KEY_EXCHANGE',
        message: err.message ?? String(e),
      };
      this.#o.log.warn(
        { code: err.code, reason, why: err.message },
        'zone key exchange failed; keys unchanged',
      );
      throw e;
    }
  }

  async #exchangeOnce(code: string, reason: RekeyReason): Promise<RekeyResult> {
    const { hsm, link, config, runtime } = this.#o;
    const current = runtime.zone;
    const path = zoneKeysPath(config);
    const saved = await readSaved(path);
    if (current === undefined || saved?.zmk === undefined) {
      throw hostError(
        'POSKEY_ERR_HOST_KEY_EXCHANGE',
        'no ZMK saved with the zone keys: start once with the ZMK components to enable key exchange',
        'zone.keysFile',
      );
    }
    const stan = link.nextStan();
    const body = await managementRequest({
      code,
      stan,
      acquirerId: config.acquirerId,
      now: this.#clock(),
      mac: { hsm, zak: current.zak },
    });
    let reply: Awaited<ReturnType<NetworkTransport['request']>>;
    try {
      reply = await link.request(stan, body);
    } catch (e) {
      throw hostError(
        'POSKEY_ERR_HOST_KEY_EXCHANGE',
        `no answer from the network (${codeOf(e)})`,
        'network',
        e,
      );
    }
    if (!(await answerMacVerifies(hsm, current.zak, reply))) {
      throw hostError('POSKEY_ERR_HOST_KEY_EXCHANGE', 'the 0810 MAC does not verify under the ZAK', '128');
    }
    if (reply.msg[39] !== '00') {
      throw hostError('POSKEY_ERR_HOST_KEY_EXCHANGE', `the network answered ${String(reply.msg[39])}`, '39');
    }
    const delivery = decodeKeyDelivery(reply.msg[48]);
    const zpk = await this.#import('ZPK', delivery.zpk, saved.zmk);
    const zak = await this.#import('ZAK', delivery.zak, saved.zmk);
    const keys = await describeZoneKeys(hsm, zpk, zak);
    const rotatedAt = new Date(this.#clock()).toISOString();
    const next: SavedZoneKeys = {
      format: ZONE_KEYS_FORMAT,
      zpk,
      zak,
      zmk: saved.zmk,
      keySet: delivery.keySet,
      origin: saved.origin ?? (await this.#originOf(saved)),
      rotatedAt,
    };
    await saveZoneKeys(path, next);
    runtime.zone = { ...keys, keySet: delivery.keySet };
    return { keySet: delivery.keySet, zpkKcv: delivery.zpk.kcv, zakKcv: delivery.zak.kcv, rotatedAt, reason };
  }

  /** Imports one delivered key under the ZMK and checks its KCV (constant time) before it is used. */
  async #import(keyType: 'ZPK' | 'ZAK', key: DeliveredKey, zmk: LmkKeyBlock): Promise<LmkKeyBlock> {
    const hsm = this.#o.hsm;
    const algorithm = ALGORITHM_BY_HEX[key.underZmk.length]!;
    let block: LmkKeyBlock;
    try {
      const imported = await hsm.importKey(
        { keyType, algorithm, source: { kind: 'legacy', kek: zmk, cryptogram: key.underZmk } },
        'host',
      );
      block = imported.keyBlock;
    } catch (e) {
      throw hostError(
        'POSKEY_ERR_HOST_KEY_EXCHANGE',
        `the delivered ${keyType} does not import under the ZMK (${codeOf(e)})`,
        `${keyType.toLowerCase()}.underZmk`,
        e,
      );
    }
    const kcv = await hsm.checkValue(block, 'legacy', key.kcv.length / 2);
    if (!sameKcv(kcv.value, key.kcv)) {
      throw hostError(
        'POSKEY_ERR_HOST_ZONE_KCV',
        `the delivered ${keyType} does not have its check value: the new keys are refused and the old ones stay in force`,
        `${keyType.toLowerCase()}.kcv`,
      );
    }
    return block;
  }

  async #originOf(saved: SavedZoneKeys): Promise<{ zpkKcv: string; zakKcv: string }> {
    const hsm = this.#o.hsm;
    const [p, a] = await Promise.all([
      hsm.checkValue(saved.zpk, 'legacy'),
      hsm.checkValue(saved.zak, 'legacy'),
    ]);
    return { zpkKcv: p.value, zakKcv: a.value };
  }
}

function codeOf(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : 'error';
}
