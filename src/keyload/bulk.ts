/**
 * Bulk injection: many key-loading ports in parallel (a rack of terminals cabled to one PC through
 * USB-serial hubs). Each port is its own injection with its own timeouts, so a faulty device fails
 * alone and never holds the others up. Progress goes to stderr; the per-device report is CSV.
 *
 * Ports file (CSV, header required, `#` comments and blank lines ignored):
 *   port,tid[,baud]
 *   /dev/ttyUSB0,10000001
 *   tcp:10.0.0.7:4001,10000002
 */
import { PoskeyError } from '../errors.js';
import { type InjectionReport, type InjectOptions, injectTmk } from './loader.js';
import { KeyloadErrorCode, keyloadError } from './protocol.js';
import { type LinkTarget, parseTarget, targetName } from './transport.js';

export interface BulkEntry {
  target: LinkTarget;
  tid: string;
  /** Line in the ports file (1-based), for error messages. */
  line: number;
}

export interface BulkResult {
  port: string;
  tid: string;
  status: 'ok' | 'failed';
  serial?: string;
  model?: string;
  kcv?: string;
  /** Error code of a failure. */
  code?: string;
  reason?: string;
  /** ms since the bulk run started. */
  startedMs: number;
  durationMs: number;
}

export interface BulkProgress {
  total: number;
  done: number;
  ok: number;
  failed: number;
  running: number;
  /** The result that just finished. */
  last?: BulkResult;
}

export interface BulkOptions extends Omit<InjectOptions, 'target' | 'tid' | 'onStep'> {
  entries: readonly BulkEntry[];
  /** Ports injected at once; default 32. */
  concurrency?: number;
  onProgress?: (progress: BulkProgress) => void;
}

export interface BulkReport {
  results: BulkResult[];
  ok: number;
  failed: number;
  durationMs: number;
}

export const DEFAULT_BULK_CONCURRENCY = 32;
const CSV_HEADER = ['port', 'tid', 'baud'];

function fileError(line: number, reason: string): PoskeyError {
  return keyloadError(KeyloadErrorCode.BULK_FILE, `line ${line}: ${reason}`, 'ports');
}

/** Splits one CSV line (double quotes allowed around a field). */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      out.push(field.trim());
      field = '';
    } else field += c;
  }
  out.push(field.trim());
  return out;
}

/**
 * Parses a ports file.
 * @throws POSKEY_ERR_KEYLOAD_BULK_FILE for a missing header, a bad line, a repeated port or TID
 */
export function parsePortsCsv(text: string): BulkEntry[] {
  const lines = text.split(/\r?\n/).map((l, i) => ({ text: l.trim(), line: i + 1 }));
  const body = lines.filter((l) => l.text !== '' && !l.text.startsWith('#'));
  const head = body.shift();
  if (head === undefined) throw fileError(1, 'empty ports file');
  const columns = csvFields(head.text).map((c) => c.toLowerCase());
  if (columns[0] !== 'port' || columns[1] !== 'tid' || columns.some((c) => !CSV_HEADER.includes(c))) {
    throw fileError(head.line, `header must be port,tid[,baud], got ${head.text}`);
  }
  const entries: BulkEntry[] = [];
  const ports = new Set<string>();
  const tids = new Set<string>();
  for (const { text: t, line } of body) {
    const f = csvFields(t);
    if (f.length > columns.length)
      throw fileError(line, `${f.length} fields, the header has ${columns.length}`);
    const [port = '', tid = '', baudText] = f;
    if (port === '' || tid === '') throw fileError(line, 'port and tid are required');
    let baud: number | undefined;
    if (baudText !== undefined && baudText !== '') {
      baud = Number(baudText);
      if (!/^\d+$/.test(baudText) || baud < 50 || baud > 4_000_000)
        throw fileError(line, `bad baud rate ${baudText}`);
    }
    let target: LinkTarget;
    try {
      target = parseTarget(port, baud);
    } catch (e) {
      throw fileError(line, (e as Error).message);
    }
    const name = targetName(target);
    if (ports.has(name)) throw fileError(line, `port ${port} is listed twice`);
    if (tids.has(tid)) throw fileError(line, `TID ${tid} is listed twice`);
    ports.add(name);
    tids.add(tid);
    entries.push({ target, tid, line });
  }
  if (entries.length === 0) throw fileError(head.line, 'no ports listed');
  return entries;
}

/**
 * Injects every entry, `concurrency` at a time. Never throws for a device's failure: it is a
 * `failed` row with the error code and reason.
 */
export async function injectBulk(options: BulkOptions): Promise<BulkReport> {
  const { entries, concurrency = DEFAULT_BULK_CONCURRENCY, onProgress, ...common } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024) {
    throw keyloadError(
      KeyloadErrorCode.OPTION,
      'concurrency must be a whole number from 1 to 1024',
      'concurrency',
    );
  }
  const started = Date.now();
  const results: BulkResult[] = new Array(entries.length);
  const progress: BulkProgress = { total: entries.length, done: 0, ok: 0, failed: 0, running: 0 };
  let next = 0;

  const one = async (index: number): Promise<void> => {
    const entry = entries[index]!;
    const startedMs = Date.now() - started;
    progress.running++;
    let result: BulkResult;
    try {
      const r: InjectionReport = await injectTmk({ ...common, target: entry.target, tid: entry.tid });
      result = {
        port: r.port,
        tid: entry.tid,
        status: 'ok',
        serial: r.serial,
        model: r.model,
        kcv: r.kcv,
        startedMs,
        durationMs: Date.now() - started - startedMs,
      };
    } catch (e) {
      result = {
        port: targetName(entry.target),
        tid: entry.tid,
        status: 'failed',
        code: e instanceof PoskeyError ? e.code : 'POSKEY_ERR_INTERNAL',
        reason: e instanceof Error ? e.message : String(e),
        startedMs,
        durationMs: Date.now() - started - startedMs,
      };
    }
    results[index] = result;
    progress.running--;
    progress.done++;
    if (result.status === 'ok') progress.ok++;
    else progress.failed++;
    onProgress?.({ ...progress, last: result });
  };

  const worker = async (): Promise<void> => {
    while (next < entries.length) await one(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker));
  return { results, ok: progress.ok, failed: progress.failed, durationMs: Date.now() - started };
}

function csvCell(v: string | number | undefined): string {
  const s = v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const REPORT_COLUMNS = [
  'port',
  'tid',
  'status',
  'serial',
  'model',
  'kcv',
  'code',
  'reason',
  'started_ms',
  'duration_ms',
] as const;

/** The per-device report as CSV (header line first, one row per port in file order). */
export function formatBulkCsv(results: readonly BulkResult[]): string {
  const rows = results.map((r) =>
    [r.port, r.tid, r.status, r.serial, r.model, r.kcv, r.code, r.reason, r.startedMs, r.durationMs]
      .map(csvCell)
      .join(','),
  );
  return `${[REPORT_COLUMNS.join(','), ...rows].join('\n')}\n`;
}

/** `[#########-----------] 9/20  ok 8  failed 1  running 4` */
export function progressBar(p: BulkProgress, width = 24): string {
  const filled = p.total === 0 ? width : Math.round((p.done / p.total) * width);
  const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
  return `[${bar}] ${p.done}/${p.total}  ok ${p.ok}  failed ${p.failed}  running ${p.running}`;
}
