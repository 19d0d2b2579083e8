/**
 * `poskey hsm …`: the operator's side of the software HSM.
 *
 *   lmk ceremony   form an LMK from 2–9 custodian components and seal it in the data directory
 *   lmk add        form another LMK (new id) into the sealed set
 *   lmk list       ids, KCVs and dev flags of the sealed LMKs (read from the file, no secret needed)
 *   lmk rotate     re-wrap the key table (or a host's file of key blocks) from one LMK to another
 *   lmk remove     unload a retired LMK from the sealed set
 *   serve | start  run the payShield TCP interface and the HTTP API
 *   audit verify   check the audit log's hash chain
 *   diag           ask a running HSM for its diagnostics over TCP
 *
 * Components and passphrases are read with echo off from a terminal; when stdin is not a terminal
 * they are read as lines from it, so a ceremony can be scripted. They are never printed (except
 * components dealt by `--generate`, which is the point of that flag) and never logged.
 */
import type { Command } from 'commander';
import { registerAudit } from './hsm/audit.js';
import { registerDiag } from './hsm/diag.js';
import { registerLmk } from './hsm/lmk.js';
import { registerServe } from './hsm/serve.js';

export {
  AUDIT_FILE,
  DEFAULT_DATA_DIR,
  ERR_ABORTED,
  ERR_AUDIT_CHAIN,
  ERR_INPUT,
  ERR_LMK_EXISTS,
  ERR_ROTATE,
  PASSPHRASE_ENV,
} from './hsm/common.js';
export { componentKcv } from './hsm/components.js';
export { Prompter } from './hsm/prompt.js';

/** Registers `poskey hsm` and its subcommands on `program`. */
export function registerHsmCommands(program: Command): void {
  const hsm = program.command('hsm').description('software payment HSM: LMK ceremony, service, audit');
  registerLmk(hsm);
  registerServe(hsm);
  registerAudit(hsm);
  registerDiag(hsm);
}
