/**
 * The terminal's own record of its batch: every approved transaction it will settle (0500 totals)
 * and, when the host finds the batch not balanced, upload (0320). A record goes when the batch is
 * settled; a void removes its original (`remove`).
 *
 * With a data directory the records live in `<dataDir>/batch.json` (mode 0600), rewritten
 * atomically with fsync before `add` resolves. They hold what a 0320 carries (PAN, amount, STAN,
 * RRN), never a PIN block or a track.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TerminalError, TerminalErrorCode } from './errors.js';
import { SerialFileWriter } from './file-writer.js';

export interface BatchRecord {
  /** Batch number, 6 digits. */
  batch: string;
  stan: string;
  /** 60.1 of the transaction: 22 purchase, 25 refund, 20/24 completion… */
  messageType: string;
  processingCode: string;
  /** Field 4, n12. */
  amount: string;
  pan: string;
  rrn?: string;
  authCode?: string;
  /** True for refunds (credits in the totals). */
  credit: boolean;
}

export interface BatchStore {
  /** The records of `batch`, in the order they were added. */
  list(batch: string): Promise<BatchRecord[]>;
  /** Adds or replaces the record of (batch, stan); durable when the promise resolves. */
  add(record: BatchRecord): Promise<void>;
  /** Drops the record of (batch, stan), e.g. when it is voided. */
  remove(batch: string, stan: string): Promise<void>;
  /** Drops every record of `batch` (after it settled). */
  clear(batch: string): Promise<void>;
}

export const BATCH_FILE = 'batch.json';
const FORMAT = 'poskey-batch/1';

const key = (batch: string, stan: string) => `${batch}:${stan}`;

/** Batch records in memory (no data directory, the fleet simulator). */
export class MemoryBatchStore implements BatchStore {
  protected readonly records = new Map<string, BatchRecord>();

  async list(batch: string): Promise<BatchRecord[]> {
    return [...this.records.values()].filter((r) => r.batch === batch).map((r) => ({ ...r }));
  }

  async add(record: BatchRecord): Promise<void> {
    this.records.set(key(record.batch, record.stan), { ...record });
    await this.persist();
  }

  async remove(batch: string, stan: string): Promise<void> {
    if (this.records.delete(key(batch, stan))) await this.persist();
  }

  async clear(batch: string): Promise<void> {
    for (const [k, r] of this.records) if (r.batch === batch) this.records.delete(k);
    await this.persist();
  }

  protected async persist(): Promise<void> {}
}

function batchError(reason: string, cause?: unknown): TerminalError {
  return new TerminalError(TerminalErrorCode.STATE, reason, { field: BATCH_FILE, cause });
}

/** Batch records in `<dir>/batch.json`. */
export class FileBatchStore extends MemoryBatchStore {
  readonly path: string;
  readonly #writer: SerialFileWriter;

  private constructor(dir: string) {
    super();
    this.path = join(dir, BATCH_FILE);
    this.#writer = new SerialFileWriter(this.path);
  }

  /** @throws POSKEY_ERR_TERMINAL_STATE when the file exists but is not a batch file */
  static async open(dir: string): Promise<FileBatchStore> {
    const store = new FileBatchStore(dir);
    let text: string;
    try {
      text = await readFile(store.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return store;
      throw batchError('cannot read the batch file', e);
    }
    let doc: { format?: unknown; records?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch (e) {
      throw batchError('batch file is not JSON', e);
    }
    if (doc?.format !== FORMAT || !Array.isArray(doc.records)) throw batchError('not a poskey batch file');
    for (const r of doc.records as BatchRecord[]) store.records.set(key(r.batch, r.stan), r);
    return store;
  }

  protected override persist(): Promise<void> {
    const text = `${JSON.stringify({ format: FORMAT, records: [...this.records.values()] }, null, 2)}\n`;
    return this.#writer.write(text, (e) => batchError('cannot write the batch file', e));
  }
}
