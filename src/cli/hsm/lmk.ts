/** `poskey hsm lmk ceremony|add|list|remove|rotate`: forming, sealing and retiring LMKs. */
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { zeroize } from '../../crypto/bytes.js';
import { PoskeyError } from '../../errors.js';
import { assertLmkId, type FormedLmk, formLmk } from '../../hsm/lmk.js';
import {
  DEV_LMK_FILE,
  parseSealedLmkFile,
  SEALED_LMK_FILE,
  SealSecret,
  saveSealedLmks,
} from '../../hsm/seal.js';
import { action, printJson, printResult } from '../output.js';
import { audit, dataDirOption, ERR_LMK_EXISTS, exists, operator, sealedPath } from './common.js';
import { addComponentOptions, type ComponentOptions, gatherComponents } from './components.js';
import { type Prompter, withPrompter } from './prompt.js';
import { rotate } from './rotate.js';
import { addSecretOptions, openSealed, passphraseSecret, type SecretOptions } from './secrets.js';

interface CeremonyOptions extends ComponentOptions, SecretOptions {
  dataDir: string;
  id: string;
  sealWithComponents?: boolean;
  force?: boolean;
  json?: boolean;
}

async function ceremony(p: Prompter, opts: CeremonyOptions): Promise<void> {
  assertLmkId(opts.id, '--id');
  const dataDir = resolve(opts.dataDir);
  const path = sealedPath(dataDir);
  if (!opts.force && (await exists(path))) {
    throw new PoskeyError(
      ERR_LMK_EXISTS,
      `${path} already holds sealed LMKs: use 'poskey hsm lmk add' for another LMK, or --force to replace them`,
      { field: '--data-dir' },
    );
  }
  if (opts.sealWithComponents && opts.passphraseEnv !== undefined) {
    throw new PoskeyError('POSKEY_ERR_CLI_OPTION', 'choose --passphrase-env or --seal-with-components', {
      field: '--seal-with-components',
    });
  }
  const json = opts.json === true;
  const components = await gatherComponents(p, opts, json);
  let formed: FormedLmk | undefined;
  let secret: SealSecret | undefined;
  try {
    formed = formLmk(opts.id, components);
    secret = opts.sealWithComponents
      ? SealSecret.components(components)
      : await passphraseSecret(p, opts, true);
    zeroize(...components);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await saveSealedLmks(path, formed.lmk, secret);
    const record = { actor: operator(), lmkId: formed.lmk.id, kcv: formed.kcv, result: 'ok' as const };
    await audit(dataDir, [
      { ...record, action: 'lmk.form', detail: `ceremony, ${components.length} components` },
      { ...record, action: 'lmk.seal', detail: `sealed with ${secret.kind}` },
    ]);
    const result = {
      lmkId: formed.lmk.id,
      kcv: formed.kcv,
      componentKcvs: formed.componentKcvs,
      sealed: path,
      sealedWith: secret.kind,
    };
    if (json) printJson(result);
    else
      process.stdout.write(
        `LMK ${result.lmkId} KCV: ${result.kcv} (CMAC)\nsealed: ${path} (${secret.kind})\n`,
      );
  } finally {
    zeroize(...components);
    secret?.destroy();
    formed?.lmk.destroy();
  }
}

interface AddOptions extends ComponentOptions, SecretOptions {
  dataDir: string;
  id: string;
  makeDefault?: boolean;
  json?: boolean;
}

async function addLmk(p: Prompter, opts: AddOptions): Promise<void> {
  assertLmkId(opts.id, '--id');
  const dataDir = resolve(opts.dataDir);
  const { lmks, secret } = await openSealed(p, dataDir, opts);
  try {
    if (lmks.has(opts.id)) {
      throw new PoskeyError('POSKEY_ERR_LMK_DUPLICATE', `LMK ${opts.id} is already sealed here`, {
        field: '--id',
      });
    }
    const json = opts.json === true;
    const components = await gatherComponents(p, opts, json);
    let formed: ReturnType<typeof formLmk>;
    try {
      formed = formLmk(opts.id, components);
    } finally {
      zeroize(...components);
    }
    lmks.add(formed.lmk, { makeDefault: opts.makeDefault === true });
    await saveSealedLmks(sealedPath(dataDir), lmks, secret);
    await audit(dataDir, [
      {
        actor: operator(),
        action: 'lmk.form',
        lmkId: opts.id,
        kcv: formed.kcv,
        result: 'ok',
        detail: 'added to the sealed set',
      },
    ]);
    const result = {
      lmkId: opts.id,
      kcv: formed.kcv,
      componentKcvs: formed.componentKcvs,
      default: lmks.defaultId,
      lmks: lmks.ids(),
    };
    if (json) printJson(result);
    else
      process.stdout.write(
        `LMK ${opts.id} KCV: ${formed.kcv} (CMAC)\nsealed LMKs: ${result.lmks.join(', ')} (default ${result.default})\n`,
      );
  } finally {
    lmks.destroy();
    secret.destroy();
  }
}

/** Lists the sealed file(s) without unsealing: the ids and KCVs are stored in clear (and authenticated on unseal). */
async function listLmks(opts: { dataDir: string; json?: boolean }): Promise<void> {
  const dataDir = resolve(opts.dataDir);
  const rows: { id: string; kcv: string; dev: boolean; default: boolean; file: string }[] = [];
  for (const name of [SEALED_LMK_FILE, DEV_LMK_FILE]) {
    const path = join(dataDir, name);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      continue;
    }
    let doc: ReturnType<typeof parseSealedLmkFile>;
    try {
      doc = parseSealedLmkFile(JSON.parse(text));
    } catch (e) {
      if (e instanceof PoskeyError) throw e;
      throw new PoskeyError('POSKEY_ERR_LMK_SEALED_FORMAT', `${path} is not JSON`, {
        field: 'file',
        cause: e,
      });
    }
    for (const r of doc.lmks)
      rows.push({ id: r.id, kcv: r.kcv, dev: r.dev, default: r.id === doc.default, file: name });
  }
  if (rows.length === 0) {
    throw new PoskeyError('POSKEY_ERR_LMK_MISSING', `no sealed LMK in ${dataDir}`, { field: '--data-dir' });
  }
  if (opts.json) {
    printJson({ lmks: rows });
    return;
  }
  for (const r of rows) {
    const flags = [r.default ? 'default' : '', r.dev ? 'DEVELOPMENT' : ''].filter(Boolean).join(', ');
    process.stdout.write(`${r.id}  KCV ${r.kcv}  ${r.file}${flags ? `  (${flags})` : ''}\n`);
  }
}

async function removeLmk(
  p: Prompter,
  opts: SecretOptions & { dataDir: string; id: string; json?: boolean },
): Promise<void> {
  assertLmkId(opts.id, '--id');
  const dataDir = resolve(opts.dataDir);
  const { lmks, secret } = await openSealed(p, dataDir, opts);
  try {
    const kcv = lmks.get(opts.id).kcv;
    if (lmks.size === 1) {
      throw new PoskeyError(
        'POSKEY_ERR_LMK_UNKNOWN',
        `LMK ${opts.id} is the only sealed LMK; it cannot be removed`,
        {
          field: '--id',
        },
      );
    }
    lmks.remove(opts.id);
    await saveSealedLmks(sealedPath(dataDir), lmks, secret);
    await audit(dataDir, [{ actor: operator(), action: 'lmk.remove', lmkId: opts.id, kcv, result: 'ok' }]);
    printResult({ removed: opts.id, lmks: lmks.ids(), default: lmks.defaultId }, opts.json === true);
  } finally {
    lmks.destroy();
    secret.destroy();
  }
}

/** Registers `poskey hsm lmk` and its subcommands. */
export function registerLmk(hsm: Command): void {
  const lmk = hsm.command('lmk').description('LMK ceremony, sealing, migration');
  addSecretOptions(
    addComponentOptions(
      lmk
        .command('ceremony')
        .description('form an LMK from custodian components (split knowledge, dual control) and seal it')
        .addOption(dataDirOption())
        .option('--id <nn>', 'LMK id, two digits', '00'),
    ),
    false,
  )
    .option('--seal-with-components', 'seal under the components themselves instead of a passphrase')
    .option('--force', 'replace an existing sealed LMK file')
    .option('--json', 'print one JSON object (KCV lines go to stderr)')
    .action(withPrompter(ceremony));

  addSecretOptions(
    addComponentOptions(
      lmk
        .command('add')
        .description('form another LMK (new id) into the sealed set, e.g. before a rotation')
        .addOption(dataDirOption())
        .requiredOption('--id <nn>', 'the new LMK id, two digits'),
    ),
  )
    .option('--make-default', 'new keys go under this LMK from now on')
    .option('--json', 'print one JSON object')
    .action(withPrompter(addLmk));

  lmk
    .command('list')
    .description('sealed LMK ids, KCVs and dev flags (read from the file; no secret needed)')
    .addOption(dataDirOption())
    .option('--json', 'print one JSON object')
    .action(action(listLmks));

  addSecretOptions(
    lmk
      .command('rotate')
      .description('re-wrap the key table (or --file of key blocks) from LMK --from to LMK --to')
      .addOption(dataDirOption())
      .requiredOption('--from <nn>', 'the old LMK id')
      .requiredOption('--to <nn>', 'the new LMK id'),
  )
    .option('--file <path>', "a host's key blocks, one per line, instead of the HSM key table")
    .option('--out <path>', 'where the re-wrapped --file goes (default <file>.rewrapped)')
    .option('--keep-default', 'leave the default LMK as it is (default: --to becomes the default)')
    .option('--json', 'print one JSON object')
    .action(withPrompter(rotate));

  addSecretOptions(
    lmk
      .command('remove')
      .description('unload a retired LMK from the sealed set (after every table is rotated)')
      .addOption(dataDirOption())
      .requiredOption('--id <nn>', 'the LMK id to remove'),
  )
    .option('--json', 'print one JSON object')
    .action(withPrompter(removeLmk));
}
