/** Error codes, data-directory layout and option helpers shared by the `poskey hsm` commands. */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Option } from 'commander';
import { PoskeyError } from '../../errors.js';
import { type AuditEntry, AuditLog } from '../../hsm/audit.js';
import { SEALED_LMK_FILE } from '../../hsm/seal.js';

/** Bad or missing operator input (input ended, unreadable file, missing passphrase variable). */
export const ERR_INPUT = 'POSKEY_ERR_CLI_INPUT';
/** A custodian rejected the KCV shown for their component, or interrupted the prompt. */
export const ERR_ABORTED = 'POSKEY_ERR_CLI_ABORTED';
/** A sealed LMK file is already there: the ceremony would replace it. */
export const ERR_LMK_EXISTS = 'POSKEY_ERR_LMK_EXISTS';
/** `audit verify` found a broken chain. */
export const ERR_AUDIT_CHAIN = 'POSKEY_ERR_AUDIT_CHAIN';
/** `lmk rotate` could not re-wrap some blocks. */
export const ERR_ROTATE = 'POSKEY_ERR_LMK_ROTATE';

// The service module (zod, the HSM, SQLite) is loaded only by the commands that need it, so other
// `poskey` commands start fast; these mirror its constants (a test checks they agree).
export const DEFAULT_DATA_DIR = './data/hsm';
export const AUDIT_FILE = 'audit.log';
export const PASSPHRASE_ENV = 'POSKEY_LMK_PASSPHRASE';
export const KEY_TABLE_FILE = 'hsm-keys.sqlite';

export function inputError(reason: string, field: string, cause?: unknown): PoskeyError {
  return new PoskeyError(ERR_INPUT, reason, { field, cause });
}

export function sealedPath(dataDir: string): string {
  return join(dataDir, SEALED_LMK_FILE);
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export function operator(): string {
  return process.env.USER ?? process.env.USERNAME ?? 'operator';
}

/** Appends LMK events to the data directory's audit log. */
export async function audit(dataDir: string, entries: AuditEntry[]): Promise<void> {
  const log = await AuditLog.open(join(dataDir, AUDIT_FILE));
  try {
    for (const e of entries) await log.append(e);
  } finally {
    await log.close();
  }
}

export function intOption(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) {
      throw new PoskeyError('POSKEY_ERR_CLI_OPTION', `must be an integer from ${min} to ${max}`, {
        field: name,
      });
    }
    return n;
  };
}

export const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

export const dataDirOption = () =>
  new Option('--data-dir <dir>', 'HSM data directory').default(DEFAULT_DATA_DIR);
