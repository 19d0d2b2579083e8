/**
 * The terminal registry as the host's hot path sees it: terminal records kept in memory for a
 * short time (`terminalCacheTtl`) with their derived profile (MAC algorithm, PIN block format), so
 * a purchase does not read the database before verifying its MAC.
 *
 * Several host processes may share one database, so a cached record can be stale (another
 * process signed the terminal in and rotated its keys). The steps therefore re-read the record
 * before refusing a request for a reason a newer record could change: a MAC that does not verify,
 * keys that look missing or too old, an unknown TID. Writes made by this process (sign-in,
 * sign-off) replace the cached record at once.
 */
import type { Terminal, TerminalStore } from '../store/types.js';
import type { TerminalMacAlgorithm } from './config.js';

/** How the host talks to one terminal: derived from its key algorithm and MAC profile. */
export interface TerminalProfile {
  /** HSM MAC algorithm for field 64: the UnionPay ECB MAC, or X9.19 (ISO 9797-1 alg 3). */
  readonly mac: 'unionpay-ecb' | 'retail';
  /** PIN block format under the TPK: ISO format 0 (DES/TDES) or the SM4 block. */
  readonly pinFormat: 0 | 'sm4';
  /** Block size of the terminal's working keys (TDK track block: 8 or 16 bytes). */
  readonly blockBytes: 8 | 16;
}

export interface TerminalEntry {
  readonly terminal: Terminal;
  readonly profile: TerminalProfile;
  /** performance.now() when read from the store. */
  readonly loadedAt: number;
}

export interface TerminalDirectoryOptions {
  ttlMs: number;
  macAlgorithm: TerminalMacAlgorithm;
  /** TID → MAC algorithm overrides. */
  terminalMac?: Readonly<Record<string, TerminalMacAlgorithm>>;
  /** Most records kept; the oldest is dropped beyond it. */
  maxEntries?: number;
}

const PROFILES = {
  'TDES:unionpay-ecb': { mac: 'unionpay-ecb', pinFormat: 0, blockBytes: 8 },
  'TDES:x919': { mac: 'retail', pinFormat: 0, blockBytes: 8 },
  'SM4:unionpay-ecb': { mac: 'unionpay-ecb', pinFormat: 'sm4', blockBytes: 16 },
  // X9.19 is DES-only; an SM4 terminal keeps the UnionPay MAC (SM4 variant).
  'SM4:x919': { mac: 'unionpay-ecb', pinFormat: 'sm4', blockBytes: 16 },
} as const satisfies Record<string, TerminalProfile>;

export class TerminalDirectory {
  readonly #store: TerminalStore;
  readonly #ttl: number;
  readonly #mac: TerminalMacAlgorithm;
  readonly #overrides: Readonly<Record<string, TerminalMacAlgorithm>>;
  readonly #max: number;
  readonly #cache = new Map<string, TerminalEntry>();

  constructor(store: TerminalStore, options: TerminalDirectoryOptions) {
    this.#store = store;
    this.#ttl = options.ttlMs;
    this.#mac = options.macAlgorithm;
    this.#overrides = options.terminalMac ?? {};
    this.#max = options.maxEntries ?? 200_000;
  }

  /** The profile a terminal record implies. */
  profileOf(terminal: Terminal): TerminalProfile {
    const mac = this.#overrides[terminal.tid] ?? this.#mac;
    return PROFILES[`${terminal.keyAlgorithm}:${mac}`];
  }

  /** The cached entry while fresh (synchronously), else a read from the store. */
  lookup(tid: string): TerminalEntry | Promise<TerminalEntry | undefined> {
    const hit = this.#cache.get(tid);
    if (hit !== undefined && performance.now() - hit.loadedAt < this.#ttl) return hit;
    return this.reload(tid);
  }

  /** Reads the record from the store (the cached one may be stale), caching what it finds. */
  async reload(tid: string): Promise<TerminalEntry | undefined> {
    const terminal = await this.#store.get(tid);
    if (terminal === undefined) {
      this.#cache.delete(tid);
      return undefined;
    }
    return this.remember(terminal);
  }

  /** Caches a record this process just wrote or read. */
  remember(terminal: Terminal): TerminalEntry {
    const entry: TerminalEntry = { terminal, profile: this.profileOf(terminal), loadedAt: performance.now() };
    this.#cache.delete(terminal.tid);
    if (this.#cache.size >= this.#max) {
      const oldest = this.#cache.keys().next();
      if (!oldest.done) this.#cache.delete(oldest.value);
    }
    this.#cache.set(terminal.tid, entry);
    return entry;
  }

  /** True when `entry` came from the store within the last `withinMs` (not worth re-reading). */
  isFresh(entry: TerminalEntry, withinMs = 0): boolean {
    return performance.now() - entry.loadedAt <= withinMs;
  }

  forget(tid: string): void {
    this.#cache.delete(tid);
  }

  get size(): number {
    return this.#cache.size;
  }
}
