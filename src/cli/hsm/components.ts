/** Custodian components for an LMK ceremony: typed, read from files or dealt, each shown by its KCV. */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { fromHex, toHex, zeroize } from '../../crypto/bytes.js';
import { createKey } from '../../crypto/cipher.js';
import { checkValue } from '../../crypto/kcv.js';
import { MAX_COMPONENTS, MIN_COMPONENTS } from '../../crypto/keys.js';
import { PoskeyError } from '../../errors.js';
import { LMK_KCV, LMK_LENGTH, randomLmkComponent } from '../../hsm/lmk.js';
import { collect, ERR_ABORTED, inputError, intOption } from './common.js';
import type { Prompter } from './prompt.js';

const HEX_DIGITS = LMK_LENGTH * 2;
/** Attempts a custodian gets at a terminal before the ceremony stops. */
const MAX_ATTEMPTS = 3;

/** CMAC KCV of one 32-byte component, as the custodian is shown it. */
export function componentKcv(component: Uint8Array): string {
  const handle = createKey('aes', component);
  try {
    return checkValue(handle, LMK_KCV).value;
  } finally {
    handle.destroy();
  }
}

/** A typed or filed component: 64 hex digits, spaces and dashes allowed between groups. */
export function parseComponent(text: string, field: string): Buffer {
  const hex = text.replace(/[\s-]/g, '');
  if (!/^[0-9A-Fa-f]*$/.test(hex) || hex.length !== HEX_DIGITS) {
    throw new PoskeyError(
      'POSKEY_ERR_LMK_COMPONENT',
      `a component is ${HEX_DIGITS} hex digits (AES-256), got ${hex.length} characters`,
      { field },
    );
  }
  return fromHex(hex, field);
}

/**
 * A component file: the component's hex (groups may be split by spaces, dashes or lines), then
 * optionally `KCV <10 hex>` which must match.
 */
async function readComponentFile(path: string, index: number): Promise<Buffer> {
  const field = `--component-file ${index + 1}`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw inputError(`cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, field, e);
  }
  const m = /^([\s\S]*?)(?:\bKCV\b[\s:=]*([0-9A-Fa-f]+))?\s*$/i.exec(text);
  const component = parseComponent(m?.[1] ?? '', field);
  const expected = m?.[2];
  if (expected !== undefined && expected.toUpperCase() !== componentKcv(component)) {
    zeroize(component);
    throw new PoskeyError('POSKEY_ERR_LMK_COMPONENT', 'the KCV in the file does not match its component', {
      field,
    });
  }
  return component;
}

export interface ComponentOptions {
  components?: number;
  componentFile?: string[];
  generate?: boolean;
  yes?: boolean;
}

/** Shows a component's KCV; stdout unless stdout is reserved for JSON. */
function showKcv(line: string, json: boolean): void {
  (json ? process.stderr : process.stdout).write(`${line}\n`);
}

/** Entry mistakes a custodian may correct at a terminal (anything else stops the ceremony). */
const RETRYABLE = new Set(['POSKEY_ERR_LMK_COMPONENT', 'POSKEY_ERR_HEX', ERR_ABORTED]);

/** One custodian at the prompt: enter, see the KCV, confirm. Retries at a terminal only. */
async function promptComponent(p: Prompter, i: number, n: number, opts: { yes?: boolean; json: boolean }) {
  const field = `component ${i}`;
  for (let attempt = 1; ; attempt++) {
    let component: Buffer | undefined;
    let problem: PoskeyError;
    try {
      const typed = await p.secret(`Custodian ${i} of ${n}: enter component (${HEX_DIGITS} hex digits): `);
      component = parseComponent(typed, field);
      const kcv = componentKcv(component);
      showKcv(`component ${i} KCV: ${kcv}`, opts.json);
      if (opts.yes || (await p.confirm(`Custodian ${i}: is ${kcv} the KCV on your component form?`))) {
        return component;
      }
      problem = new PoskeyError(ERR_ABORTED, `custodian ${i} did not confirm the component KCV`, { field });
    } catch (e) {
      zeroize(component);
      // An interrupt (Ctrl-C) is ERR_ABORTED too, but from the prompt itself: it always stops.
      if (!(e instanceof PoskeyError) || e.code === ERR_ABORTED) throw e;
      problem = e;
    }
    zeroize(component);
    if (!p.tty || attempt >= MAX_ATTEMPTS || !RETRYABLE.has(problem.code)) throw problem;
    process.stderr.write(`${problem.message}; try again\n`);
  }
}

/** Deals random components (the HSM as dealer), showing each custodian theirs in turn. */
async function dealComponents(p: Prompter, n: number, json: boolean): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 1; i <= n; i++) {
    const c = randomLmkComponent();
    out.push(c);
    const hex = toHex(c).replace(/(.{8})(?!$)/g, '$1 ');
    showKcv(`component ${i}: ${hex}  KCV: ${componentKcv(c)}`, json);
    if (p.tty) {
      await p.answer(`Custodian ${i}: record your component, then press Enter to clear the screen `);
      process.stdout.write('\x1b[2J\x1b[H');
    }
  }
  return out;
}

/** Collects the ceremony's components from files, prompts, or the dealer. The caller zeroises them. */
export async function gatherComponents(
  p: Prompter,
  opts: ComponentOptions,
  json: boolean,
): Promise<Buffer[]> {
  const files = opts.componentFile ?? [];
  const n = opts.components ?? files.length;
  if (!Number.isInteger(n) || n < MIN_COMPONENTS || n > MAX_COMPONENTS) {
    throw new PoskeyError(
      'POSKEY_ERR_LMK_COMPONENTS',
      `an LMK needs ${MIN_COMPONENTS} to ${MAX_COMPONENTS} components (dual control), got ${n}`,
      { field: '--components' },
    );
  }
  if (files.length > n) {
    throw new PoskeyError(
      'POSKEY_ERR_LMK_COMPONENTS',
      `${files.length} component files for ${n} components`,
      {
        field: '--component-file',
      },
    );
  }
  if (opts.generate) {
    if (files.length > 0)
      throw inputError('--generate deals every component; drop --component-file', '--generate');
    return dealComponents(p, n, json);
  }
  const out: Buffer[] = [];
  try {
    for (const [i, path] of files.entries()) {
      const c = await readComponentFile(path, i);
      out.push(c);
      showKcv(`component ${i + 1} KCV: ${componentKcv(c)} (from file)`, json);
    }
    for (let i = files.length + 1; i <= n; i++) {
      out.push(await promptComponent(p, i, n, { yes: opts.yes, json }));
    }
    return out;
  } catch (e) {
    zeroize(...out);
    throw e;
  }
}

/** The ceremony's component flags (`lmk ceremony`, `lmk add`). */
export function addComponentOptions(cmd: Command): Command {
  return cmd
    .option(
      '--components <n>',
      `number of custodian components (${MIN_COMPONENTS}-${MAX_COMPONENTS})`,
      intOption('--components', 1, 99),
    )
    .option(
      '--component-file <path>',
      'a component from a file (repeatable; counts toward --components)',
      collect,
    )
    .option('--generate', 'deal random components and show each custodian theirs (HSM as dealer)')
    .option('-y, --yes', 'do not ask each custodian to confirm their KCV (scripted ceremonies)');
}
