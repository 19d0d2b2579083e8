/** The secret an LMK file is sealed under: a passphrase, or the custodians' components. */

import type { Command } from 'commander';
import { zeroize } from '../../crypto/bytes.js';
import { MAX_COMPONENTS, MIN_COMPONENTS } from '../../crypto/keys.js';
import { PoskeyError } from '../../errors.js';
import type { LmkSet } from '../../hsm/lmk.js';
import { loadSealedLmks, SealSecret } from '../../hsm/seal.js';
import { ERR_INPUT, exists, inputError, intOption, PASSPHRASE_ENV, sealedPath } from './common.js';
import { parseComponent } from './components.js';
import type { Prompter } from './prompt.js';

export interface SecretOptions {
  passphraseEnv?: string;
  unsealComponents?: number;
}

/**
 * The passphrase: from the variable named by --passphrase-env (default POSKEY_LMK_PASSPHRASE),
 * else prompted (twice when `confirm`, so a typo does not seal the LMK under an unknown secret).
 */
export async function passphraseSecret(
  p: Prompter,
  opts: SecretOptions,
  confirm: boolean,
): Promise<SealSecret> {
  const variable = opts.passphraseEnv ?? PASSPHRASE_ENV;
  const fromEnv = process.env[variable];
  if (fromEnv !== undefined && fromEnv !== '') return SealSecret.passphrase(fromEnv);
  if (opts.passphraseEnv !== undefined) {
    throw inputError(`environment variable ${variable} is not set`, '--passphrase-env');
  }
  const first = await p.secret('LMK passphrase: ').catch((e: unknown) => {
    // A service started with stdin closed: name the variable instead of "input ended".
    if (e instanceof PoskeyError && e.code === ERR_INPUT) {
      throw inputError(`no passphrase: set ${variable} or type it at the prompt`, 'passphrase', e);
    }
    throw e;
  });
  if (confirm && p.tty) {
    const again = await p.secret('LMK passphrase again: ');
    if (again !== first) throw inputError('the two passphrases differ', 'passphrase');
  }
  return SealSecret.passphrase(first);
}

/** The secret a sealed file opens with: the passphrase, or the sealing components re-entered. */
export async function unsealSecret(p: Prompter, opts: SecretOptions): Promise<SealSecret> {
  if (opts.unsealComponents === undefined) return passphraseSecret(p, opts, false);
  const n = opts.unsealComponents;
  const comps: Buffer[] = [];
  try {
    for (let i = 1; i <= n; i++) {
      const c = parseComponent(
        await p.secret(`Custodian ${i} of ${n}: re-enter your component: `),
        `component ${i}`,
      );
      comps.push(c);
    }
    return SealSecret.components(comps);
  } finally {
    zeroize(...comps);
  }
}

/** The seal secret's flags; `unseal` adds the components alternative for opening a sealed file. */
export function addSecretOptions(cmd: Command, unseal = true): Command {
  cmd.option(
    '--passphrase-env <var>',
    `environment variable holding the seal passphrase (default ${PASSPHRASE_ENV})`,
  );
  if (!unseal) return cmd;
  return cmd.option(
    '--unseal-components <n>',
    'the file was sealed with components: re-enter that many components',
    intOption('--unseal-components', MIN_COMPONENTS, MAX_COMPONENTS),
  );
}

/** Opens the sealed set with the operator's secret; the caller destroys both. */
export async function openSealed(
  p: Prompter,
  dataDir: string,
  opts: SecretOptions,
): Promise<{ lmks: LmkSet; secret: SealSecret }> {
  const path = sealedPath(dataDir);
  if (!(await exists(path))) {
    throw new PoskeyError(
      'POSKEY_ERR_LMK_MISSING',
      `no sealed LMK in ${dataDir}: run 'poskey hsm lmk ceremony' first`,
      {
        field: '--data-dir',
      },
    );
  }
  const secret = await unsealSecret(p, opts);
  try {
    return { lmks: await loadSealedLmks(path, secret), secret };
  } catch (e) {
    secret.destroy();
    throw e;
  }
}
