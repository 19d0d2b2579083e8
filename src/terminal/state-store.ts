/**
 * The terminal's counters: the STAN (system trace audit number, field 11) and the batch number in
 * force (60.2, set by the host's 0810). With a data directory they live in
 * `<dataDir>/terminal.json` and every change is written (atomically, fsync) before the request that
 * uses it is sent, so a restarted terminal never reuses a STAN the host has already seen.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TerminalError, TerminalErrorCode } from './errors.js';
import { SerialFileWriter } from './file-writer.js';

export interface TerminalCounters {
  /** Last STAN used, 0 before the first request. */
  stan: number;
  /** Batch number, 6 digits. */
  batch: string;
}

export interface TerminalStateStore {
  load(): Promise<TerminalCounters | undefined>;
  save(counters: TerminalCounters): Promise<void>;
}

export const STATE_FILE = 'terminal.json';
const FORMAT = 'poskey-terminal-state/1';

export class MemoryStateStore implements TerminalStateStore {
  #counters: TerminalCounters | undefined;

  constructor(initial?: TerminalCounters) {
    this.#counters = initial === undefined ? undefined : { ...initial };
  }

  async load(): Promise<TerminalCounters | undefined> {
    return this.#counters === undefined ? undefined : { ...this.#counters };
  }

  async save(counters: TerminalCounters): Promise<void> {
    this.#counters = { ...counters };
  }
}

function stateError(reason: string, cause?: unknown): TerminalError {
  return new TerminalError(TerminalErrorCode.STATE, reason, { field: STATE_FILE, cause });
}

/** Counters in `<dir>/terminal.json`. */
export class FileStateStore implements TerminalStateStore {
  readonly path: string;
  readonly #writer: SerialFileWriter;

  constructor(dir: string) {
    this.path = join(dir, STATE_FILE);
    this.#writer = new SerialFileWriter(this.path);
  }

  /** @throws POSKEY_ERR_TERMINAL_STATE when the file exists but is not a terminal state file */
  async load(): Promise<TerminalCounters | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw stateError('cannot read the terminal state', e);
    }
    let doc: { format?: unknown; stan?: unknown; batch?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch (e) {
      throw stateError('terminal state is not JSON', e);
    }
    const { stan, batch } = doc ?? {};
    if (
      doc?.format !== FORMAT ||
      !Number.isInteger(stan) ||
      (stan as number) < 0 ||
      (stan as number) > 999999 ||
      typeof batch !== 'string' ||
      !/^\d{6}$/.test(batch)
    ) {
      throw stateError('not a poskey terminal state file');
    }
    return { stan: stan as number, batch };
  }

  save(counters: TerminalCounters): Promise<void> {
    const text = `${JSON.stringify({ format: FORMAT, ...counters }, null, 2)}\n`;
    return this.#writer.write(text, (e) => stateError('cannot write the terminal state', e));
  }
}
