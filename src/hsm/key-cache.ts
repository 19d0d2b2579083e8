/**
 * The HSM is stateless: the host stores key blocks and passes them in with each command. Unwrapping
 * a block costs a KDF, a CBC decryption and a CMAC, and a fresh key handle costs new cipher
 * contexts, so the HSM keeps recently used keys in a bounded LRU keyed by the block string.
 *
 * Every handle the cache drops (eviction, `delete`, `dropLmk`, `clear`) is destroyed, which
 * zeroises the key and everything derived from it. A caller must therefore use a handle
 * synchronously, within the command that fetched it, and never destroy it itself.
 */
import type { KeyHandle } from '../crypto/cipher.js';
import { HsmError } from './errors.js';

/** What the cache keeps per block. `H` is the parsed block header (TR-31 header in practice). */
export interface CachedKey<H = unknown> {
  handle: KeyHandle;
  header: H;
  lmkId: string;
}

export interface KeyCacheStats {
  size: number;
  capacity: number;
  hits: number;
  misses: number;
  evictions: number;
}

/** Default capacity: enough for the working keys of a few thousand terminals' recent traffic. */
export const DEFAULT_KEY_CACHE_CAPACITY = 4096;

export class KeyCache<H = unknown> {
  readonly capacity: number;
  /** Map iteration order is insertion order: the first entry is the least recently used. */
  readonly #entries = new Map<string, CachedKey<H>>();
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  /** @throws POSKEY_ERR_CACHE_CAPACITY unless `capacity` is a positive integer */
  constructor(capacity = DEFAULT_KEY_CACHE_CAPACITY) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new HsmError('POSKEY_ERR_CACHE_CAPACITY', 'cache capacity must be a positive integer', {
        field: 'capacity',
      });
    }
    this.capacity = capacity;
  }

  /**
   * The cached key for `block`, or `load(block)`'s result, cached. A load that throws caches
   * nothing. The entry becomes the most recently used.
   */
  get(block: string, load: (block: string) => CachedKey<H>): CachedKey<H> {
    const hit = this.#entries.get(block);
    if (hit !== undefined && !hit.handle.destroyed) {
      this.#hits++;
      this.#entries.delete(block);
      this.#entries.set(block, hit);
      return hit;
    }
    if (hit !== undefined) this.#entries.delete(block);
    this.#misses++;
    const entry = load(block);
    this.#entries.set(block, entry);
    this.#evictOverflow();
    return entry;
  }

  /** The cached entry without loading or touching recency. */
  peek(block: string): CachedKey<H> | undefined {
    return this.#entries.get(block);
  }

  has(block: string): boolean {
    return this.#entries.has(block);
  }

  /** Drops and zeroises one entry. Returns whether it was cached. */
  delete(block: string): boolean {
    const entry = this.#entries.get(block);
    if (entry === undefined) return false;
    this.#entries.delete(block);
    entry.handle.destroy();
    return true;
  }

  /** Drops and zeroises every key unwrapped under `lmkId` (after that LMK is unloaded). */
  dropLmk(lmkId: string): number {
    let dropped = 0;
    for (const [block, entry] of this.#entries) {
      if (entry.lmkId === lmkId) {
        this.#entries.delete(block);
        entry.handle.destroy();
        dropped++;
      }
    }
    return dropped;
  }

  /** Drops and zeroises everything; the counters are kept. */
  clear(): void {
    for (const entry of this.#entries.values()) entry.handle.destroy();
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Counters for diagnostics (no block strings, no key material). */
  stats(): KeyCacheStats {
    return {
      size: this.#entries.size,
      capacity: this.capacity,
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
    };
  }

  #evictOverflow(): void {
    while (this.#entries.size > this.capacity) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) return;
      const entry = this.#entries.get(oldest.value)!;
      this.#entries.delete(oldest.value);
      entry.handle.destroy();
      this.#evictions++;
    }
  }
}
