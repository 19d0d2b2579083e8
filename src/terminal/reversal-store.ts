/**
 * Pending reversals. A terminal stores the reversal of a financial request BEFORE it sends the
 * request (research iso8583.md §2.7), so that a crash, a timeout or a response that fails its MAC
 * still leaves a record to reverse; the record goes when the response is accepted or the 0400 is
 * acknowledged.
 *
 * With a data directory the records live in `<dataDir>/reversals.json` (mode 0600), rewritten
 * atomically with fsync before `put` resolves. They hold what a 0400 carries: the PAN, amount and
 * STAN of the original, never a PIN block or a track. Without a data directory they are kept in
 * memory.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../crypto/sealed.js';
import type { IsoMessage } from '../iso8583/index.js';
import { TerminalError, TerminalErrorCode } from './errors.js';

/** Field 39 of a 0400: why the terminal reverses. */
export type ReversalReason = '98' | 'A0' | '96' | '06';

export const REVERSAL_REASONS: Readonly<Record<ReversalReason, string>> = Object.freeze({
  '98': 'no response in time',
  A0: 'response MAC failed',
  '96': 'terminal failure',
  '06': 'other',
});

export interface PendingReversal {
  /** STAN of the original request (the 0400 carries it in field 11). */
  stan: string;
  /** The 0400 without field 64: the original's fields and 39 = reason. */
  message: IsoMessage;
  reason: ReversalReason;
  /** ISO time the record was made. */
  createdAt: string;
  /** 0400s sent so far. */
  attempts: number;
}

export interface ReversalStore {
  /** Every pending reversal, oldest first. */
  list(): Promise<PendingReversal[]>;
  /** Adds or replaces the record of `reversal.stan`; durable when the promise resolves. */
  put(reversal: PendingReversal): Promise<void>;
  /** Drops the record of `stan` (no-op when absent). */
  remove(stan: string): Promise<void>;
}

export const REVERSAL_FILE = 'reversals.json';
const FORMAT = 'poskey-reversals/1';

function copy(r: PendingReversal): PendingReversal {
  return JSON.parse(JSON.stringify(r)) as PendingReversal;
}

/** Reversals kept in memory (a terminal without a data directory, the fleet simulator). */
export class MemoryReversalStore implements ReversalStore {
  readonly #records = new Map<string, PendingReversal>();

  async list(): Promise<PendingReversal[]> {
    return [...this.#records.values()].map(copy);
  }

  async put(reversal: PendingReversal): Promise<void> {
    this.#records.set(reversal.stan, copy(reversal));
  }

  async remove(stan: string): Promise<void> {
    this.#records.delete(stan);
  }
}

function stateError(reason: string, cause?: unknown): TerminalError {
  return new TerminalError(TerminalErrorCode.STATE, reason, { field: REVERSAL_FILE, cause });
}

function isRecord(r: unknown): r is PendingReversal {
  const x = r as PendingReversal;
  return (
    x !== null &&
    typeof x === 'object' &&
    typeof x.stan === 'string' &&
    /^\d{6}$/.test(x.stan) &&
    typeof x.message === 'object' &&
    x.message !== null &&
    x.message[0] === '0400' &&
    x.reason in REVERSAL_REASONS &&
    typeof x.createdAt === 'string' &&
    Number.isInteger(x.attempts)
  );
}

/** Reversals in `<dir>/reversals.json`; every change is written atomically and fsynced. */
export class FileReversalStore implements ReversalStore {
  readonly path: string;
  readonly #records: Map<string, PendingReversal>;
  /** Writes are serialised so the file always reflects the last completed change. */
  #chain: Promise<void> = Promise.resolve();

  private constructor(path: string, records: PendingReversal[]) {
    this.path = path;
    this.#records = new Map(records.map((r) => [r.stan, r]));
  }

  /**
   * Opens the store in `dir` (created if missing) and reads any records left by an earlier run.
   * @throws POSKEY_ERR_TERMINAL_STATE when the file exists but is not a reversal file
   */
  static async open(dir: string): Promise<FileReversalStore> {
    const path = join(dir, REVERSAL_FILE);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        throw stateError('cannot read the reversal file', e);
    }
    if (text === undefined) return new FileReversalStore(path, []);
    let doc: { format?: unknown; reversals?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch (e) {
      throw stateError('reversal file is not JSON', e);
    }
    if (doc?.format !== FORMAT || !Array.isArray(doc.reversals) || !doc.reversals.every(isRecord)) {
      throw stateError('not a poskey reversal file');
    }
    return new FileReversalStore(path, doc.reversals as PendingReversal[]);
  }

  async list(): Promise<PendingReversal[]> {
    return [...this.#records.values()].map(copy);
  }

  async put(reversal: PendingReversal): Promise<void> {
    this.#records.set(reversal.stan, copy(reversal));
    await this.#flush();
  }

  async remove(stan: string): Promise<void> {
    if (!this.#records.delete(stan)) return;
    await this.#flush();
  }

  #flush(): Promise<void> {
    const text = `${JSON.stringify({ format: FORMAT, reversals: [...this.#records.values()] }, null, 2)}\n`;
    const next = this.#chain.then(() => writeFileAtomic(this.path, text));
    this.#chain = next.catch(() => undefined);
    return next.catch((e) => {
      throw stateError('cannot write the reversal file', e);
    });
  }
}
