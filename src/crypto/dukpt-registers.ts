/**
 * The originating device's future-key registers, shared by TDES DUKPT (ANSI X9.24-1, 21 counter
 * bits) and AES DUKPT (ANSI X9.24-3, 32 counter bits): the bookkeeping is the same, only the
 * derivation step and the counter limits differ.
 *
 * Register `b` holds the key of the next counter whose lowest one-bit is `b`. Using a key first
 * fills the registers below its lowest bit with keys derived from it (unless the counter already
 * has the maximum number of one-bits), then erases it; the initial key itself is never kept.
 * Counters are handled with arithmetic, not 32-bit bitwise operators, so bit 31 works too.
 */
import { zeroize } from './bytes.js';

/** Derives the key of counter `to` from `key`, the key of counter `from` (0 = the initial key). */
export type DukptStep = (key: Uint8Array, from: number, to: number) => Buffer;

export interface DukptCounterLimits {
  /** Counter bits, hence registers. */
  bits: number;
  /** Most one-bits a used counter may have. */
  maxOneBits: number;
  /** Highest counter the device may use. */
  maxCounter: number;
}

function popcount(n: number): number {
  let ones = 0;
  for (let v = n >>> 0; v !== 0; v = (v & (v - 1)) >>> 0) ones++;
  return ones;
}

function lowestBit(counter: number): number {
  return 31 - Math.clz32(counter & -counter);
}

/** The registers, the counter and the current transaction's key of one device. */
export class DukptRegisters {
  readonly #limits: DukptCounterLimits;
  readonly #step: DukptStep;
  readonly #registers: (Buffer | undefined)[];
  #counter: number;
  #current: Buffer | undefined;
  #currentCounter = 0;
  #exhausted = false;

  /**
   * Fills every register still ahead of `start` (a valid counter, 1 for a fresh load); each comes
   * from the initial key, which the caller keeps and zeroises.
   */
  constructor(limits: DukptCounterLimits, initialKey: Uint8Array, start: number, step: DukptStep) {
    this.#limits = limits;
    this.#step = step;
    this.#registers = new Array(limits.bits).fill(undefined);
    this.#counter = start;
    const low = lowestBit(start);
    for (let b = low; b < limits.bits; b++) {
      const bit = 2 ** b;
      if (b !== low && Math.floor(start / bit) % 2 === 1) continue;
      const above = start - (start % (bit * 2));
      this.#registers[b] = step(initialKey, 0, above + bit);
    }
  }

  /**
   * Moves to the next counter: its key becomes the current key (the previous one is erased), the
   * registers below its lowest bit are refilled from it. Returns the counter. Call only when not
   * `exhausted`.
   */
  advance(): number {
    const c = this.#counter;
    const low = lowestBit(c);
    const key = this.#registers[low]!;
    this.#registers[low] = undefined;
    const ones = popcount(c);
    if (ones < this.#limits.maxOneBits) {
      for (let b = low - 1; b >= 0; b--) {
        zeroize(this.#registers[b]);
        this.#registers[b] = this.#step(key, c, c + 2 ** b);
      }
    }
    zeroize(this.#current);
    this.#current = key;
    this.#currentCounter = c;
    const following = ones < this.#limits.maxOneBits ? c + 1 : c + 2 ** low;
    if (following > this.#limits.maxCounter) this.#exhausted = true;
    else this.#counter = following;
    return c;
  }

  /** The current transaction's key (the register's own Buffer), undefined before `advance`. */
  get current(): Buffer | undefined {
    return this.#current;
  }

  /** Counter of the current transaction (meaningful once `current` is set). */
  get currentCounter(): number {
    return this.#currentCounter;
  }

  /** Counter the next `advance` will use (undefined once exhausted). */
  get nextCounter(): number | undefined {
    return this.#exhausted ? undefined : this.#counter;
  }

  get exhausted(): boolean {
    return this.#exhausted;
  }

  /** Zeroises every register and the current key. */
  destroy(): void {
    zeroize(this.#current, ...this.#registers);
    this.#registers.fill(undefined);
    this.#current = undefined;
  }
}
