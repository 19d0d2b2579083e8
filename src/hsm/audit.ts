/**
 * The HSM audit log: every key-management operation and LMK event, one JSON line each, chained by
 * SHA-256 so that an edited, removed or reordered line is detected by `verifyAuditLog`.
 *
 * A record's fields, in this fixed order (its canonical form is JSON.stringify of exactly these
 * keys, absent optional fields left out):
 *   seq     1, 2, 3… with no gaps (a gap reveals a removed line)
 *   time    ISO 8601 UTC
 *   actor, action, keyId?, kcv?, lmkId?, result ('ok' | 'error'), detail?
 *   prev    `hash` of the previous record (64 zeros before the first)
 *   hash    SHA-256 (lower-case hex) of the canonical record without `hash`
 * Each line is the canonical record with `hash` appended as the last key, so a line that is not
 * byte-for-byte its canonical form has been edited.
 *
 * Never clear keys, components or PINs: entries accept only the fields above, as strings, and any
 * free-text field holding a run of 16 or more hex digits (a DES key, a key component, a PAN) is
 * refused. Key ids should be aliases, UUIDs or KCVs, not hex digests.
 *
 * Limits: the chain cannot show that lines were cut off the END of the file; compare `last` from
 * `verifyAuditLog` with a copy kept elsewhere (a later issue can anchor it). One process writes a
 * log at a time.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { HsmError } from './errors.js';

export type AuditResult = 'ok' | 'error';

/** What a caller logs. */
export interface AuditEntry {
  /** Who: operator, custodian name, client certificate subject, or 'system'. */
  actor: string;
  /** What: e.g. 'lmk.form', 'lmk.load', 'key.generate', 'key.import', 'lmk.rotate'. */
  action: string;
  keyId?: string;
  /** Check value of the key concerned (4–16 hex digits). */
  kcv?: string;
  lmkId?: string;
  result: AuditResult;
  /** Short free text: never key material. */
  detail?: string;
}

export interface AuditRecord extends AuditEntry {
  seq: number;
  time: string;
  prev: string;
  hash: string;
}

export const GENESIS_HASH = '0'.repeat(64);

/** Longest line accepted, in bytes; keeps the tail read at open() bounded. */
export const MAX_AUDIT_LINE = 4096;

const ENTRY_KEYS = ['actor', 'action', 'keyId', 'kcv', 'lmkId', 'result', 'detail'] as const;
const RECORD_KEYS = [
  'seq',
  'time',
  'actor',
  'action',
  'keyId',
  'kcv',
  'lmkId',
  'result',
  'detail',
  'prev',
] as const;
const TEXT_LIMITS: Readonly<Record<string, number>> = {
  actor: 128,
  action: 64,
  keyId: 128,
  lmkId: 2,
  detail: 1024,
};
const SECRET_RUN_RE = /[0-9A-Fa-f]{16,}/;
const KCV_RE = /^[0-9A-Fa-f]{4,16}$/;
const HASH_RE = /^[0-9a-f]{64}$/;
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function entryError(reason: string, field: string): HsmError {
  return new HsmError('POSKEY_ERR_AUDIT_ENTRY', reason, { field });
}

/**
 * Checks an entry before it is logged.
 * @throws POSKEY_ERR_AUDIT_ENTRY for an unknown field, a missing or malformed field;
 *   POSKEY_ERR_AUDIT_SECRET for a field that looks like key material (16+ hex digits in a row)
 */
export function assertAuditEntry(entry: unknown): asserts entry is AuditEntry {
  if (typeof entry !== 'object' || entry === null) throw entryError('must be an object', 'entry');
  for (const key of Object.keys(entry)) {
    if (!(ENTRY_KEYS as readonly string[]).includes(key)) throw entryError('unknown audit field', key);
  }
  const e = entry as Record<string, unknown>;
  for (const key of ENTRY_KEYS) {
    const v = e[key];
    if (v === undefined && key !== 'actor' && key !== 'action' && key !== 'result') continue;
    if (typeof v !== 'string' || v.length === 0) throw entryError('must be a non-empty string', key);
    if (key === 'result') {
      if (v !== 'ok' && v !== 'error') throw entryError("must be 'ok' or 'error'", key);
    } else if (key === 'kcv') {
      if (!KCV_RE.test(v)) throw entryError('must be 4 to 16 hex digits', key);
    } else {
      if (v.length > TEXT_LIMITS[key]!) throw entryError(`longer than ${TEXT_LIMITS[key]} characters`, key);
      if (SECRET_RUN_RE.test(v)) {
        throw new HsmError(
          'POSKEY_ERR_AUDIT_SECRET',
          'looks like key material or a PAN; refusing to log it',
          {
            field: key,
          },
        );
      }
    }
  }
}

/** The canonical form hashed for a record: its fields in the fixed order, `hash` excluded. */
export function canonicalAuditRecord(record: Omit<AuditRecord, 'hash'>): string {
  const ordered: Record<string, unknown> = {};
  for (const key of RECORD_KEYS) {
    const v = record[key];
    if (v !== undefined) ordered[key] = v;
  }
  return JSON.stringify(ordered);
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** The line for a record: canonical form with `hash` as the last key. */
function lineOf(canonical: string, hash: string): string {
  return `${canonical.slice(0, -1)},"hash":"${hash}"}`;
}

function buildRecord(
  entry: AuditEntry,
  seq: number,
  time: string,
  prev: string,
): { record: AuditRecord; line: string } {
  const base: Omit<AuditRecord, 'hash'> = { seq, time, ...pickEntry(entry), prev };
  const canonical = canonicalAuditRecord(base);
  const hash = sha256Hex(canonical);
  return { record: { ...base, hash }, line: lineOf(canonical, hash) };
}

function pickEntry(entry: AuditEntry): AuditEntry {
  const out: Record<string, unknown> = {};
  for (const key of ENTRY_KEYS) if (entry[key] !== undefined) out[key] = entry[key];
  return out as unknown as AuditEntry;
}

type ParsedLine = { ok: true; record: AuditRecord } | { ok: false; reason: 'malformed' | 'edited' };

/** Parses one line; `edited` when it parses but is not its own canonical form or its hash is wrong. */
function parseLine(line: string): ParsedLine {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, reason: 'malformed' };
  const r = v as Record<string, unknown>;
  const { seq, time, prev, hash, ...rest } = r;
  if (!Number.isSafeInteger(seq) || (seq as number) < 1) return { ok: false, reason: 'malformed' };
  if (typeof time !== 'string' || !TIME_RE.test(time)) return { ok: false, reason: 'malformed' };
  if (typeof prev !== 'string' || !HASH_RE.test(prev)) return { ok: false, reason: 'malformed' };
  if (typeof hash !== 'string' || !HASH_RE.test(hash)) return { ok: false, reason: 'malformed' };
  try {
    assertAuditEntry(rest);
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  const base = { seq: seq as number, time, ...rest, prev } as Omit<AuditRecord, 'hash'>;
  const canonical = canonicalAuditRecord(base);
  if (sha256Hex(canonical) !== hash || lineOf(canonical, hash) !== line)
    return { ok: false, reason: 'edited' };
  return { ok: true, record: { ...base, hash } };
}

interface Pending {
  line: string;
  record: AuditRecord;
  resolve: (r: AuditRecord) => void;
  reject: (e: unknown) => void;
}

export interface AuditLogOptions {
  /** Time source, for tests. */
  clock?: () => Date;
}

/**
 * An open audit log. `append` assigns the sequence number and chain hash at once, in call order;
 * the lines are written and fsynced in groups: every append made while no write is running (or
 * while one is) goes into the next single write + fsync. The promise resolves once the record is
 * on disk. After a failed write the log refuses further appends (POSKEY_ERR_AUDIT_IO): the
 * in-memory chain has moved past what the file holds, and an HSM must fail closed.
 */
export class AuditLog {
  readonly path: string;
  readonly #fh: FileHandle;
  readonly #clock: () => Date;
  #seq: number;
  #last: string;
  #pending: Pending[] = [];
  #scheduled = false;
  #writing: Promise<void> | undefined;
  #failure: unknown;
  #closed = false;
  #writes = 0;

  private constructor(path: string, fh: FileHandle, seq: number, last: string, clock: () => Date) {
    this.path = path;
    this.#fh = fh;
    this.#seq = seq;
    this.#last = last;
    this.#clock = clock;
  }

  /**
   * Opens (or creates, mode 0600) the log at `path` and continues its chain from the last line.
   * @throws POSKEY_ERR_AUDIT_IO when the file cannot be opened,
   *   POSKEY_ERR_AUDIT_CORRUPT when the last line is incomplete, malformed or fails its hash
   *   (run `poskey hsm audit verify`; the HSM refuses to extend a broken chain)
   */
  static async open(path: string, options: AuditLogOptions = {}): Promise<AuditLog> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'a+', 0o600);
    } catch (e) {
      throw auditIoError('open', e);
    }
    try {
      const { seq, hash } = await readTail(fh);
      return new AuditLog(path, fh, seq, hash, options.clock ?? (() => new Date()));
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Sequence number of the last record (0 for an empty log). */
  get lastSeq(): number {
    return this.#seq;
  }

  /** Hash of the last record (GENESIS_HASH for an empty log). */
  get lastHash(): string {
    return this.#last;
  }

  /**
   * Appends a record; resolves with it once it is written and fsynced.
   * @throws (rejects) POSKEY_ERR_AUDIT_ENTRY, POSKEY_ERR_AUDIT_SECRET, POSKEY_ERR_AUDIT_CLOSED,
   *   POSKEY_ERR_AUDIT_IO
   */
  append(entry: AuditEntry): Promise<AuditRecord> {
    try {
      this.#assertWritable();
      assertAuditEntry(entry);
      const built = buildRecord(entry, this.#seq + 1, this.#clock().toISOString(), this.#last);
      if (Buffer.byteLength(built.line) > MAX_AUDIT_LINE) {
        throw entryError(`record longer than ${MAX_AUDIT_LINE} bytes`, 'entry');
      }
      this.#seq = built.record.seq;
      this.#last = built.record.hash;
      return new Promise((resolve, reject) => {
        this.#pending.push({ ...built, resolve, reject });
        this.#schedule();
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Resolves once everything appended so far is on disk (or has failed). */
  async flush(): Promise<void> {
    while (this.#writing !== undefined || this.#pending.length > 0 || this.#scheduled) {
      if (this.#writing) await this.#writing;
      else await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** Flushes and closes; later appends reject with POSKEY_ERR_AUDIT_CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    await this.#fh.close();
  }

  /** Diagnostics: the last sequence number and how many write+fsync batches this handle made. */
  stats(): { lastSeq: number; writes: number } {
    return { lastSeq: this.#seq, writes: this.#writes };
  }

  #assertWritable(): void {
    if (this.#closed)
      throw new HsmError('POSKEY_ERR_AUDIT_CLOSED', 'audit log is closed', { field: 'audit' });
    if (this.#failure !== undefined) {
      throw new HsmError('POSKEY_ERR_AUDIT_IO', 'audit log write failed earlier; refusing to continue', {
        field: 'audit',
        cause: this.#failure,
      });
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing !== undefined) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#writing = this.#writeBatch().finally(() => {
        this.#writing = undefined;
        if (this.#pending.length > 0) this.#schedule();
      });
    });
  }

  async #writeBatch(): Promise<void> {
    const batch = this.#pending.splice(0);
    if (batch.length === 0) return;
    if (this.#failure !== undefined) {
      for (const p of batch) p.reject(this.#ioError(this.#failure));
      return;
    }
    try {
      const data = Buffer.from(batch.map((p) => `${p.line}\n`).join(''), 'utf8');
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await this.#fh.write(data, off, data.length - off);
        off += bytesWritten;
      }
      await this.#fh.sync();
      this.#writes++;
      for (const p of batch) p.resolve(p.record);
    } catch (e) {
      this.#failure = e;
      for (const p of batch) p.reject(this.#ioError(e));
    }
  }

  #ioError(cause: unknown): HsmError {
    return auditIoError('write', cause);
  }
}

function auditIoError(what: string, cause: unknown): HsmError {
  const code = (cause as NodeJS.ErrnoException)?.code ?? 'unknown error';
  return new HsmError('POSKEY_ERR_AUDIT_IO', `cannot ${what} the audit log (${code})`, {
    field: 'audit',
    cause,
  });
}

function corrupt(reason: string): HsmError {
  return new HsmError('POSKEY_ERR_AUDIT_CORRUPT', `audit log tail is unusable: ${reason}`, {
    field: 'audit',
  });
}

/** Last record's seq and hash, from the end of the file only. */
async function readTail(fh: FileHandle): Promise<{ seq: number; hash: string }> {
  const { size } = await fh.stat();
  if (size === 0) return { seq: 0, hash: GENESIS_HASH };
  const len = Math.min(size, MAX_AUDIT_LINE + 1);
  const buf = Buffer.alloc(len);
  await fh.read(buf, 0, len, size - len);
  if (buf[len - 1] !== 0x0a) throw corrupt('last line is incomplete (no newline)');
  const text = buf.toString('utf8', 0, len - 1);
  const nl = text.lastIndexOf('\n');
  if (nl < 0 && len < size) throw corrupt('last line is too long');
  const parsed = parseLine(text.slice(nl + 1));
  if (!parsed.ok) throw corrupt(`last line is ${parsed.reason}`);
  return { seq: parsed.record.seq, hash: parsed.record.hash };
}

export type AuditFailure = 'edited' | 'removed' | 'reordered' | 'malformed';

export type AuditVerification =
  | { ok: true; records: number; last: { seq: number; hash: string } }
  | { ok: false; line: number; reason: AuditFailure; records: number };

/** Lines of a file as they stream in; the last one reports whether a newline ended it. */
async function* readLines(path: string): AsyncGenerator<{ text: string; terminated: boolean }> {
  let rest = '';
  for await (const chunk of createReadStream(path, { encoding: 'utf8', highWaterMark: 64 * 1024 })) {
    rest += chunk as string;
    let nl = rest.indexOf('\n');
    while (nl >= 0) {
      yield { text: rest.slice(0, nl), terminated: true };
      rest = rest.slice(nl + 1);
      nl = rest.indexOf('\n');
    }
    if (rest.length > 4 * MAX_AUDIT_LINE) {
      yield { text: rest, terminated: false };
      return;
    }
  }
  if (rest.length > 0) yield { text: rest, terminated: false };
}

/**
 * Checks the whole chain. The first failure wins, at line `line` (1-based):
 *  - `malformed`: not a complete, well-formed record (bad JSON, wrong fields, torn last line);
 *  - `edited`: the line is not its canonical form, its hash does not match, or its `prev` does not
 *    match the line before (that line, or this one, was altered and re-hashed);
 *  - `removed`: the sequence number jumps and the missing number appears nowhere later;
 *  - `reordered`: a sequence number appears out of place (moved, swapped or duplicated lines).
 * `records` counts the lines verified before the failure.
 * @throws POSKEY_ERR_AUDIT_IO when the file cannot be read (a missing file is not an empty log)
 */
export async function verifyAuditLog(path: string): Promise<AuditVerification> {
  try {
    return await verifyLines(readLines(path));
  } catch (e) {
    if (e instanceof HsmError) throw e;
    throw auditIoError('read', e);
  }
}

async function verifyLines(
  lines: AsyncIterable<{ text: string; terminated: boolean }>,
): Promise<AuditVerification> {
  let lineNo = 0;
  let expectSeq = 1;
  let prev = GENESIS_HASH;
  // A jump in seq is a removal unless the skipped number turns up later (then lines were moved).
  let jump: { line: number; missing: number } | undefined;
  for await (const { text, terminated } of lines) {
    lineNo++;
    if (jump !== undefined) {
      const later = parseLine(text);
      if (later.ok && later.record.seq === jump.missing) {
        return { ok: false, line: jump.line, reason: 'reordered', records: jump.line - 1 };
      }
      continue;
    }
    const parsed = terminated ? parseLine(text) : ({ ok: false, reason: 'malformed' } as const);
    if (!parsed.ok) return { ok: false, line: lineNo, reason: parsed.reason, records: lineNo - 1 };
    const { record } = parsed;
    if (record.seq < expectSeq) return { ok: false, line: lineNo, reason: 'reordered', records: lineNo - 1 };
    if (record.seq > expectSeq) {
      jump = { line: lineNo, missing: expectSeq };
      continue;
    }
    if (record.prev !== prev) return { ok: false, line: lineNo, reason: 'edited', records: lineNo - 1 };
    prev = record.hash;
    expectSeq++;
  }
  if (jump !== undefined) return { ok: false, line: jump.line, reason: 'removed', records: jump.line - 1 };
  return { ok: true, records: lineNo, last: { seq: expectSeq - 1, hash: prev } };
}
