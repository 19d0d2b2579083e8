/**
 * `poskey crypto batch`: JSON Lines in, JSON Lines out. Each input line is an object whose `op` is
 * an operation path (`"pinblock encrypt"`) and whose other keys are that operation's options in
 * camelCase; the same `runOperation` as the command line validates them. An optional `id` is echoed
 * back so a script can match results to requests. A failing line yields
 * `{"error": {"code", "message", "field"?}}` and the batch goes on.
 */
import { PoskeyError } from '../../errors.js';
import { type Operation, type OpResult, runOperation } from './schema.js';

/** The line is not a JSON object, or its `op` is missing or unknown. */
export const ERR_BATCH_LINE = 'POSKEY_ERR_CLI_BATCH_LINE';
/** An operation failed with something other than a PoskeyError (a bug, or an OpenSSL failure). */
export const ERR_INTERNAL = 'POSKEY_ERR_CLI_INTERNAL';

export interface BatchError {
  error: { code: string; message: string; field?: string };
}

/** Keys a batch line may carry besides the operation's options (`json` is accepted and ignored). */
const RESERVED = new Set(['op', 'id', 'json']);

function toBatchError(e: unknown): BatchError {
  if (e instanceof PoskeyError) return { error: e.toJSON() };
  const message = e instanceof Error ? e.message : String(e);
  return { error: { code: ERR_INTERNAL, message } };
}

function lineError(reason: string, field?: string): PoskeyError {
  return new PoskeyError(ERR_BATCH_LINE, reason, { field });
}

function parseLine(line: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw lineError('not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw lineError('must be a JSON object');
  }
  return value as Record<string, unknown>;
}

/** Runs one batch line against the operation table; never throws. */
export function runBatchLine(
  line: string,
  operations: ReadonlyMap<string, Operation>,
): OpResult | BatchError {
  let id: unknown;
  try {
    const request = parseLine(line);
    id = request.id;
    const path = typeof request.op === 'string' ? request.op.trim().replace(/\s+/g, ' ') : undefined;
    if (path === undefined) throw lineError('is required (a subcommand path such as "kcv")', 'op');
    const op = operations.get(path);
    if (op === undefined) {
      throw lineError(`unknown operation '${path}'; known: ${[...operations.keys()].join(', ')}`, 'op');
    }
    const raw = Object.fromEntries(Object.entries(request).filter(([k]) => !RESERVED.has(k)));
    const result = runOperation(op, raw);
    return id === undefined ? result : { id, ...result };
  } catch (e) {
    const failure = toBatchError(e);
    return id === undefined ? failure : { id, ...failure };
  }
}

export function isBatchError(result: OpResult | BatchError): result is BatchError {
  return typeof result.error === 'object' && result.error !== null;
}

/**
 * Streams `lines` through the table, handing each result line (JSON, no newline) to `write` in
 * input order. Blank lines are skipped. Returns how many lines succeeded and failed.
 */
export async function runBatch(
  lines: AsyncIterable<string>,
  operations: ReadonlyMap<string, Operation>,
  write: (line: string) => void | Promise<void>,
): Promise<{ ok: number; failed: number }> {
  const counts = { ok: 0, failed: 0 };
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const result = runBatchLine(line, operations);
    if (isBatchError(result)) counts.failed++;
    else counts.ok++;
    await write(JSON.stringify(result));
  }
  return counts;
}
