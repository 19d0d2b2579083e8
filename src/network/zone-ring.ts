/**
 * The network side's zone keys over time: the pair in force (`active`), a pair delivered to the
 * acquirer by a key exchange and not yet used by it (`pending`), and the pair it replaced
 * (`previous`), still accepted until the overlap ends.
 *
 * A message names no key: the ring tries the ZAKs in the order active, pending, previous, and the
 * pair whose ZAK verifies the MAC is the pair of that message: its PIN block is decrypted under
 * that pair's ZPK and its answer MACed under that pair's ZAK. The first message under the pending
 * pair promotes it (the acquirer has it): it becomes active and the old active pair previous, for
 * `overlapMs`. So a delivery the acquirer never received (a lost 0810) costs nothing: the old pair
 * stays active, and the next exchange replaces the unused pending pair.
 *
 * Every change is handed to `persist` before it takes effect (the simulator keeps it in the
 * ledger's meta table), so a restart never forgets a pair the acquirer may hold.
 */
import type { GeneratedKey, GenerateKeyRequest, LmkKeyBlock } from '../hsm/api.js';
import type { KeyDelivery } from '../protocol/network-keys.js';
import { networkError } from './errors.js';

/** One ZPK/ZAK pair (LMK key blocks) and the 6 digits naming it. */
export interface ZoneKeySet {
  keySet: string;
  zpk: LmkKeyBlock;
  zak: LmkKeyBlock;
}

/** What the ring persists and restores. */
export interface ZoneRingState {
  active: ZoneKeySet;
  pending?: ZoneKeySet;
  /** The replaced pair and when it stops being accepted (ms since the epoch). */
  previous?: ZoneKeySet & { until: number };
}

/** Default overlap: the old pair is accepted this long after the acquirer moved to the new one. */
export const DEFAULT_KEY_OVERLAP_MS = 60_000;

export interface ZoneKeyRingOptions {
  /** The pair in force, or a saved state. */
  initial: ZoneKeySet | ZoneRingState;
  /** The ZMK (LMK block); without it key exchange is refused. */
  zmk?: LmkKeyBlock;
  overlapMs?: number;
  clock?: () => number;
  persist?: (state: ZoneRingState) => void;
}

/** The HSM call a key exchange needs (sync `Hsm`). */
export type RingHsm = { generateKey(req: GenerateKeyRequest, actor?: string): GeneratedKey };

function isState(v: ZoneKeySet | ZoneRingState): v is ZoneRingState {
  return (v as ZoneRingState).active !== undefined;
}

function nextKeySet(keySet: string): string {
  const n = Number(keySet);
  return String(n >= 999_999 ? 1 : n + 1).padStart(6, '0');
}

export class ZoneKeyRing {
  #state: ZoneRingState;
  readonly #zmk: LmkKeyBlock | undefined;
  readonly #overlapMs: number;
  readonly #clock: () => number;
  readonly #persist: ((state: ZoneRingState) => void) | undefined;

  constructor(options: ZoneKeyRingOptions) {
    const overlap = options.overlapMs ?? DEFAULT_KEY_OVERLAP_MS;
    if (!Number.isSafeInteger(overlap) || overlap < 0) {
      throw networkError(
        'POSKEY_ERR_NETWORK_OPTION',
        'must be a whole number of ms, 0 or more',
        'keyOverlapMs',
      );
    }
    const initial = options.initial;
    this.#state = isState(initial) ? { ...initial } : { active: { ...initial } };
    this.#zmk = options.zmk;
    this.#overlapMs = overlap;
    this.#clock = options.clock ?? Date.now;
    this.#persist = options.persist;
  }

  get active(): ZoneKeySet {
    return this.#state.active;
  }

  get canExchange(): boolean {
    return this.#zmk !== undefined;
  }

  state(): ZoneRingState {
    return structuredClone(this.#state);
  }

  /** The pairs a message may be under, most likely first. */
  candidates(): ZoneKeySet[] {
    const s = this.#state;
    const out = [s.active];
    if (s.pending) out.push(s.pending);
    if (s.previous && this.#clock() < s.previous.until) out.push(s.previous);
    return out;
  }

  /** A message verified under `set`: the first one under the pending pair promotes it. */
  used(set: ZoneKeySet): void {
    const s = this.#state;
    if (s.pending === undefined || set.keySet !== s.pending.keySet) return;
    this.#commit({ active: s.pending, previous: { ...s.active, until: this.#clock() + this.#overlapMs } });
  }

  /**
   * A new pair generated in `hsm` and delivered under the ZMK: it becomes the pending pair (an
   * unused pending pair is dropped).
   * @throws POSKEY_ERR_NETWORK_OPTION when the ring has no ZMK
   */
  exchange(hsm: RingHsm, actor = 'network'): KeyDelivery {
    const zmk = this.#zmk;
    if (zmk === undefined)
      throw networkError('POSKEY_ERR_NETWORK_OPTION', 'no ZMK: key exchange is off', 'zmk');
    const s = this.#state;
    const algorithm = 'tdes2';
    const make = (keyType: 'ZPK' | 'ZAK') => {
      const made = hsm.generateKey(
        { keyType, algorithm, exportability: 'N', exportUnder: { kek: zmk, format: 'legacy' } },
        actor,
      );
      return { block: made.keyBlock, underZmk: made.exported!.cryptogram, kcv: made.info.kcv.value };
    };
    const zpk = make('ZPK');
    const zak = make('ZAK');
    const keySet = nextKeySet(s.pending?.keySet ?? s.active.keySet);
    const next: ZoneRingState = { active: s.active, pending: { keySet, zpk: zpk.block, zak: zak.block } };
    if (s.previous) next.previous = s.previous;
    this.#commit(next);
    return {
      keySet,
      zpk: { underZmk: zpk.underZmk, kcv: zpk.kcv },
      zak: { underZmk: zak.underZmk, kcv: zak.kcv },
    };
  }

  #commit(next: ZoneRingState): void {
    this.#persist?.(next);
    this.#state = next;
  }
}
