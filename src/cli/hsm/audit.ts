/** `poskey hsm audit verify`: check the audit log's hash chain. */
import { join } from 'node:path';
import type { Command } from 'commander';
import { verifyAuditLog } from '../../hsm/audit.js';
import { action, EXIT_FAILURE, printJson } from '../output.js';
import { AUDIT_FILE, dataDirOption, ERR_AUDIT_CHAIN } from './common.js';

async function auditVerify(opts: { file?: string; dataDir: string; json?: boolean }): Promise<void> {
  const path = opts.file ?? join(opts.dataDir, AUDIT_FILE);
  const r = await verifyAuditLog(path);
  if (opts.json) printJson({ file: path, ...r });
  if (r.ok) {
    if (!opts.json) {
      process.stdout.write(`ok, ${r.records} records (last seq ${r.last.seq}, hash ${r.last.hash})\n`);
    }
    return;
  }
  process.stderr.write(
    `poskey: ${ERR_AUDIT_CHAIN}: ${path} line ${r.line}: ${r.reason} (${r.records} records verified before it)\n`,
  );
  process.exitCode = EXIT_FAILURE;
}

/** Registers `poskey hsm audit` and `audit verify`. */
export function registerAudit(hsm: Command): void {
  hsm
    .command('audit')
    .description('audit log')
    .command('verify')
    .description('check the hash chain: exit 0 when intact, 1 naming the first bad line')
    .addOption(dataDirOption())
    .option('--file <path>', `the audit log (default <data-dir>/${AUDIT_FILE})`)
    .option('--json', 'print one JSON object')
    .action(action(auditVerify));
}
