/** `poskey hsm lmk rotate`: re-wrap key blocks from one LMK to another. */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PoskeyError } from '../../errors.js';
import { lmkIdOfBlock, rewrapTable, rewrapToLmk } from '../../hsm/keyblock.js';
import { assertLmkId, type LmkSet } from '../../hsm/lmk.js';
import { saveSealedLmks, writeFileAtomic } from '../../hsm/seal.js';
import { EXIT_FAILURE, printJson } from '../output.js';
import { audit, ERR_ROTATE, exists, inputError, KEY_TABLE_FILE, operator, sealedPath } from './common.js';
import type { Prompter } from './prompt.js';
import { openSealed, type SecretOptions } from './secrets.js';

export interface RotateOptions extends SecretOptions {
  dataDir: string;
  from: string;
  to: string;
  file?: string;
  out?: string;
  keepDefault?: boolean;
  json?: boolean;
}

interface RotateReport {
  from: string;
  to: string;
  target: string;
  rewrapped: number;
  unchanged: number;
  failed: { line?: number; key?: string; code: string }[];
}

/** Re-wraps the key table in one transaction: one block that cannot move leaves the table as it was. */
async function rotateTable(lmks: LmkSet, dataDir: string, from: string, to: string): Promise<RotateReport> {
  const { KeyTable } = await import('../../hsm/http/key-table.js');
  const table = KeyTable.inDataDir(dataDir);
  let unchanged = 0;
  try {
    const rewrapped = table.rewrapAll((block, id) => {
      if (lmkIdOfBlock(block) !== from) {
        unchanged++;
        return block;
      }
      try {
        return rewrapToLmk(lmks, block, to);
      } catch (e) {
        const err = e as PoskeyError;
        throw new PoskeyError(
          err.code ?? 'POSKEY_ERR_INTERNAL',
          `key ${id}: ${err.reason ?? 'cannot re-wrap'}; nothing was changed`,
          {
            field: 'keyTable',
            cause: e,
          },
        );
      }
    });
    return { from, to, target: table.path, rewrapped, unchanged, failed: [] };
  } finally {
    table.close();
  }
}

/** Re-wraps a host's file of key blocks (one per line); failed lines are kept as they were and reported. */
async function rotateFile(
  lmks: LmkSet,
  file: string,
  out: string,
  from: string,
  to: string,
): Promise<RotateReport> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw inputError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, '--file', e);
  }
  const lines = text.split('\n');
  const picked: { line: number; block: string }[] = [];
  let unchanged = 0;
  const failed: RotateReport['failed'] = [];
  lines.forEach((raw, i) => {
    const block = raw.trim();
    if (block === '' || block.startsWith('#')) return;
    let id: string;
    try {
      id = lmkIdOfBlock(block);
    } catch (e) {
      failed.push({ line: i + 1, code: (e as PoskeyError).code ?? 'POSKEY_ERR_INTERNAL' });
      return;
    }
    if (id === from) picked.push({ line: i, block });
    else unchanged++;
  });
  const { blocks, failures } = rewrapTable(
    lmks,
    picked.map((x) => x.block),
    to,
  );
  for (const f of failures) failed.push({ line: picked[f.index]!.line + 1, code: f.code });
  const failedLines = new Set(failures.map((f) => picked[f.index]!.line));
  picked.forEach((x, k) => {
    if (!failedLines.has(x.line)) lines[x.line] = blocks[k]!;
  });
  await writeFileAtomic(out, lines.join('\n'));
  failed.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  return { from, to, target: out, rewrapped: picked.length - failures.length, unchanged, failed };
}

/** Re-wraps under LMK --to and makes it the default (unless --keep-default); exit 1 when blocks failed. */
export async function rotate(p: Prompter, opts: RotateOptions): Promise<void> {
  assertLmkId(opts.from, '--from');
  assertLmkId(opts.to, '--to');
  if (opts.from === opts.to) {
    throw new PoskeyError('POSKEY_ERR_CLI_OPTION', '--from and --to name the same LMK', { field: '--to' });
  }
  const dataDir = resolve(opts.dataDir);
  if (opts.file === undefined && !(await exists(join(dataDir, KEY_TABLE_FILE)))) {
    throw inputError(
      `no key table (${KEY_TABLE_FILE}) in ${dataDir}; give --file for a host's key blocks`,
      '--data-dir',
    );
  }
  const { lmks, secret } = await openSealed(p, dataDir, opts);
  try {
    lmks.get(opts.from);
    lmks.get(opts.to);
    const report =
      opts.file === undefined
        ? await rotateTable(lmks, dataDir, opts.from, opts.to)
        : await rotateFile(lmks, opts.file, opts.out ?? `${opts.file}.rewrapped`, opts.from, opts.to);
    if (!opts.keepDefault && lmks.defaultId !== opts.to) {
      lmks.setDefault(opts.to);
      await saveSealedLmks(sealedPath(dataDir), lmks, secret);
    }
    await audit(dataDir, [
      {
        actor: operator(),
        action: 'lmk.rotate',
        lmkId: opts.to,
        kcv: lmks.get(opts.to).kcv,
        result: report.failed.length === 0 ? 'ok' : 'error',
        detail: `from LMK ${opts.from}: ${report.rewrapped} re-wrapped, ${report.unchanged} unchanged, ${report.failed.length} failed (${opts.file === undefined ? 'key table' : 'file'})`,
      },
    ]);
    printReport(report, lmks.defaultId, opts.json === true);
    if (report.failed.length > 0) process.exitCode = EXIT_FAILURE;
  } finally {
    lmks.destroy();
    secret.destroy();
  }
}

function printReport(r: RotateReport, defaultId: string | undefined, json: boolean): void {
  if (json) {
    printJson({ ...r, default: defaultId });
    return;
  }
  process.stdout.write(
    `re-wrapped ${r.rewrapped} key block(s) from LMK ${r.from} to LMK ${r.to} in ${r.target}\n` +
      `unchanged (other LMKs): ${r.unchanged}\nfailed: ${r.failed.length}\ndefault LMK: ${defaultId}\n`,
  );
  for (const f of r.failed) {
    process.stderr.write(`poskey: ${ERR_ROTATE}: line ${f.line}: ${f.code} (kept as it was)\n`);
  }
}
