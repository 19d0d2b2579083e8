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
import { mkdir, readFile, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { type Command, Option } from 'commander';
import { fromHex, toHex, zeroize } from '../crypto/bytes.js';
import { createKey } from '../crypto/cipher.js';
import { checkValue } from '../crypto/kcv.js';
import { MAX_COMPONENTS, MIN_COMPONENTS } from '../crypto/keys.js';
import { PoskeyError } from '../errors.js';
import { type AuditEntry, AuditLog, verifyAuditLog } from '../hsm/audit.js';
import { lmkIdOfBlock, rewrapTable, rewrapToLmk } from '../hsm/keyblock.js';
import {
  assertLmkId,
  type FormedLmk,
  formLmk,
  LMK_KCV,
  LMK_LENGTH,
  type LmkSet,
  randomLmkComponent,
} from '../hsm/lmk.js';
import {
  DEV_LMK_FILE,
  loadSealedLmks,
  parseSealedLmkFile,
  SEALED_LMK_FILE,
  SealSecret,
  saveSealedLmks,
  writeFileAtomic,
} from '../hsm/seal.js';
import type { HsmServiceConfigInput } from '../hsm/service.js';
import { action, EXIT_FAILURE, printJson, printResult } from './output.js';

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
const KEY_TABLE_FILE = 'hsm-keys.sqlite';

const HEX_DIGITS = LMK_LENGTH * 2;
/** Attempts a custodian gets at a terminal before the ceremony stops. */
const MAX_ATTEMPTS = 3;

function inputError(reason: string, field: string, cause?: unknown): PoskeyError {
  return new PoskeyError(ERR_INPUT, reason, { field, cause });
}

// --- operator input -----------------------------------------------------------------------------

/**
 * Reads operator input. At a terminal: raw mode, nothing echoed for secrets. From a pipe: one line
 * per answer, in order, so tests and scripts can drive a ceremony.
 */
export class Prompter {
  readonly tty: boolean;
  #rl: Interface | undefined;
  #lines: AsyncIterator<string> | undefined;

  constructor(tty = process.stdin.isTTY === true) {
    this.tty = tty;
  }

  /** A secret: echo off at a terminal. */
  secret(prompt: string): Promise<string> {
    return this.#read(prompt, true);
  }

  /** A visible answer (y/n). */
  answer(prompt: string): Promise<string> {
    return this.#read(prompt, false);
  }

  /** Asks a yes/no question; anything but y/yes is no. */
  async confirm(prompt: string): Promise<boolean> {
    const a = (await this.answer(`${prompt} [y/N] `)).trim().toLowerCase();
    return a === 'y' || a === 'yes';
  }

  close(): void {
    this.#rl?.close();
    this.#rl = undefined;
    this.#lines = undefined;
  }

  async #read(prompt: string, hidden: boolean): Promise<string> {
    process.stderr.write(prompt);
    if (this.tty) return readTty(hidden);
    if (this.#lines === undefined) {
      this.#rl = createInterface({
        input: process.stdin,
        crlfDelay: Number.POSITIVE_INFINITY,
        terminal: false,
      });
      this.#lines = this.#rl[Symbol.asyncIterator]();
    }
    const next = await this.#lines.next();
    if (next.done) {
      process.stderr.write('\n');
      throw inputError('input ended before every answer was given', 'stdin');
    }
    if (!hidden) process.stderr.write('\n');
    else process.stderr.write('(read)\n');
    return next.value;
  }
}

/** One line from the terminal in raw mode; secrets show nothing, not even asterisks. */
function readTty(hidden: boolean): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolveLine, reject) => {
    let text = '';
    const finish = (err?: PoskeyError) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolveLine(text);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') {
          return finish(new PoskeyError(ERR_ABORTED, 'interrupted at the prompt', { field: 'stdin' }));
        }
        if (ch === '\u007f' || ch === '\b') {
          if (text.length > 0 && !hidden) process.stderr.write('\b \b');
          text = text.slice(0, -1);
        } else if (ch === '\u0015') {
          text = '';
        } else if (ch >= ' ') {
          text += ch;
          if (!hidden) process.stderr.write(ch);
        }
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

// --- components -----------------------------------------------------------------------------------

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
function parseComponent(text: string, field: string): Buffer {
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

interface ComponentOptions {
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
async function gatherComponents(p: Prompter, opts: ComponentOptions, json: boolean): Promise<Buffer[]> {
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

// --- seal secrets ------------------------------------------------------------------------------------

interface SecretOptions {
  passphraseEnv?: string;
  unsealComponents?: number;
}

/**
 * The passphrase: from the variable named by --passphrase-env (default POSKEY_LMK_PASSPHRASE),
 * else prompted (twice when `confirm`, so a typo does not seal the LMK under an unknown secret).
 */
async function passphraseSecret(p: Prompter, opts: SecretOptions, confirm: boolean): Promise<SealSecret> {
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
async function unsealSecret(p: Prompter, opts: SecretOptions): Promise<SealSecret> {
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

// --- helpers -----------------------------------------------------------------------------------------

function sealedPath(dataDir: string): string {
  return join(dataDir, SEALED_LMK_FILE);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function operator(): string {
  return process.env.USER ?? process.env.USERNAME ?? 'operator';
}

/** Appends LMK events to the data directory's audit log. */
async function audit(dataDir: string, entries: AuditEntry[]): Promise<void> {
  const log = await AuditLog.open(join(dataDir, AUDIT_FILE));
  try {
    for (const e of entries) await log.append(e);
  } finally {
    await log.close();
  }
}

function intOption(name: string, min: number, max: number) {
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

const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

function withPrompter<A extends unknown[]>(fn: (p: Prompter, ...args: A) => Promise<void>) {
  return action(async (...args: A) => {
    const p = new Prompter();
    try {
      await fn(p, ...args);
    } finally {
      p.close();
    }
  });
}

function addComponentOptions(cmd: Command): Command {
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

/** The seal secret's flags; `unseal` adds the components alternative for opening a sealed file. */
function addSecretOptions(cmd: Command, unseal = true): Command {
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

// --- lmk ceremony / add / list / remove ----------------------------------------------------------

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

/** Opens the sealed set with the operator's secret; the caller destroys both. */
async function openSealed(
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

// --- lmk rotate ---------------------------------------------------------------------------------------

interface RotateOptions extends SecretOptions {
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
  const { KeyTable } = await import('../hsm/http/key-table.js');
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

async function rotate(p: Prompter, opts: RotateOptions): Promise<void> {
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

// --- serve ------------------------------------------------------------------------------------------------

interface ServeOptions {
  config?: string;
  dataDir?: string;
  dev?: boolean;
  host?: string;
  tcpPort?: number;
  httpPort?: number;
  http?: boolean;
  tcp?: boolean;
  headerLength?: number;
  tlsKey?: string;
  tlsCert?: string;
  tlsCa?: string;
  auditFile?: string;
  logLevel?: string;
  passphraseEnv?: string;
  unsealComponents?: number;
  json?: boolean;
}

/** Flags over the config file over defaults; only flags actually given override. */
async function serveConfig(opts: ServeOptions): Promise<HsmServiceConfigInput> {
  const { readHsmConfigFile } = await import('../hsm/service.js');
  const file = opts.config === undefined ? {} : await readHsmConfigFile(opts.config);
  const flags: Record<string, unknown> = {
    dataDir: opts.dataDir,
    dev: opts.dev,
    host: opts.host,
    tcpPort: opts.tcpPort,
    httpPort: opts.httpPort,
    headerLength: opts.headerLength,
    auditFile: opts.auditFile,
    logLevel: opts.logLevel,
    http: opts.http === false ? false : undefined,
    tcp: opts.tcp === false ? false : undefined,
  };
  const merged: Record<string, unknown> = { ...file };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) merged[k] = v;
  if (opts.tlsKey !== undefined || opts.tlsCert !== undefined || opts.tlsCa !== undefined) {
    merged.tls = { key: opts.tlsKey, cert: opts.tlsCert, ca: opts.tlsCa };
  }
  return merged as HsmServiceConfigInput;
}

async function serve(p: Prompter, opts: ServeOptions): Promise<void> {
  const config = await serveConfig(opts);
  const { startHsmService } = await import('../hsm/service.js');
  const service = await startHsmService(config, {
    secret: () => unsealSecret(p, opts),
    log: (line) => process.stderr.write(`${line}\n`),
    handleSignals: true,
  });
  p.close();
  const ready = {
    tcpPort: service.tcpPort,
    httpPort: service.httpPort,
    host: service.host,
    dev: service.dev,
    lmks: service.lmks,
  };
  if (opts.json) printJson(ready);
  else {
    const lines = [
      ...service.lmks.map(
        (l) => `LMK ${l.id} KCV ${l.kcv}${l.default ? ' (default)' : ''}${l.dev ? ' DEVELOPMENT' : ''}`,
      ),
      `tcp port: ${service.tcpPort ?? 'off'}`,
      `http port: ${service.httpPort ?? 'off'}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  await service.closed;
}

// --- audit, diag -------------------------------------------------------------------------------------

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

interface DiagOptions {
  host: string;
  port: number;
  headerLength: number;
  http?: string;
  tokenEnv: string;
  tlsCa?: string;
  json?: boolean;
}

/** GET <url>/diagnostics with the bearer token; https with an optional private CA. */
async function httpDiagnostics(opts: DiagOptions): Promise<Record<string, unknown>> {
  const token = process.env[opts.tokenEnv];
  if (token === undefined || token === '') {
    throw inputError(`set ${opts.tokenEnv} to an HSM API token`, '--token-env');
  }
  let url: URL;
  try {
    url = new URL('diagnostics', opts.http!.endsWith('/') ? opts.http : `${opts.http}/`);
  } catch (e) {
    throw new PoskeyError('POSKEY_ERR_CLI_OPTION', 'not a URL', { field: '--http', cause: e });
  }
  const ca = opts.tlsCa === undefined ? undefined : await readFile(opts.tlsCa);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolveBody, reject) => {
    const req = request(
      url,
      { headers: { authorization: `Bearer ${token}` }, ...(ca ? { ca } : {}) },
      (res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => {
          let body: Record<string, unknown>;
          try {
            body = JSON.parse(text) as Record<string, unknown>;
          } catch (e) {
            return reject(
              new PoskeyError(ERR_INPUT, `HTTP ${res.statusCode}: not JSON`, { field: '--http', cause: e }),
            );
          }
          if (res.statusCode !== 200) {
            const code = typeof body.code === 'string' ? body.code : `POSKEY_ERR_HTTP_${res.statusCode}`;
            return reject(
              new PoskeyError(code, String(body.message ?? 'request refused'), { field: '--http' }),
            );
          }
          resolveBody(body);
        });
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        new PoskeyError(ERR_INPUT, `cannot reach ${url.origin} (${e.code ?? e.message})`, {
          field: '--http',
          cause: e,
        }),
      ),
    );
    req.end();
  });
}

/** NC over the payShield interface: the default LMK's KCV and the version; the rest needs --http. */
async function tcpDiagnostics(opts: DiagOptions): Promise<Record<string, unknown>> {
  const { connectHsm } = await import('../hsm/client/tcp.js');
  const client = await connectHsm({
    host: opts.host,
    port: opts.port,
    headerLength: opts.headerLength,
    connectionsPerAddress: 1,
  });
  try {
    const started = performance.now();
    const d = await client.diagnostics();
    return {
      version: d.version.trim(),
      lmk: d.lmks[0]?.kcv,
      roundTripMs: Number((performance.now() - started).toFixed(2)),
      note: 'NC reports the default LMK and the version; use --http for every LMK, uptime and counters',
    };
  } finally {
    await client.close();
  }
}

async function diag(opts: DiagOptions): Promise<void> {
  const d = opts.http === undefined ? await tcpDiagnostics(opts) : await httpDiagnostics(opts);
  if (opts.json || opts.http === undefined) {
    if (opts.json) printJson(d);
    else printResult(d, false);
    return;
  }
  const lmks = (d.lmks ?? []) as { id: string; kcv: string; dev: boolean }[];
  const counters = Object.entries((d.counters ?? {}) as Record<string, number>).filter(([, v]) => v > 0);
  printResult(
    {
      version: d.version,
      uptime: `${d.uptimeSeconds} s`,
      lmks: lmks.map((l) => `${l.id} KCV ${l.kcv}${l.dev ? ' DEVELOPMENT' : ''}`),
      keyCache: d.keyCache,
      counters: counters.length === 0 ? 'none yet' : Object.fromEntries(counters),
      audit: d.audit,
      payShield: d.payShield === undefined ? undefined : { ...(d.payShield as object) },
    },
    false,
  );
}

// --- registration ---------------------------------------------------------------------------------------

const dataDirOption = () => new Option('--data-dir <dir>', 'HSM data directory').default(DEFAULT_DATA_DIR);

function registerLmk(hsm: Command): void {
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

function registerServe(hsm: Command): void {
  const port = (name: string) => intOption(name, 0, 65535);
  addSecretOptions(
    hsm
      .command('serve')
      .alias('start')
      .description('run the HSM: payShield TCP interface and HTTP API (refuses without a sealed LMK)')
      .option('--config <file>', 'JSON config file (flags override it)')
      .option('--data-dir <dir>', `HSM data directory (default ${DEFAULT_DATA_DIR})`)
      .option('--dev', 'development mode: a test LMK made and kept in the data directory (loud warning)')
      .option('--host <addr>', 'listen address (default 127.0.0.1)')
      .option('--tcp-port <port>', 'payShield TCP port (default 1500; 0 = any free port)', port('--tcp-port'))
      .option('--http-port <port>', 'HTTP API port (default 8443; 0 = any free port)', port('--http-port'))
      .option('--no-http', 'do not start the HTTP API')
      .option('--no-tcp', 'do not start the payShield TCP interface')
      .option(
        '--header-length <n>',
        'payShield message header length (default 4)',
        intOption('--header-length', 0, 255),
      )
      .option('--tls-key <file>', 'TLS private key (PEM) for both listeners')
      .option('--tls-cert <file>', 'TLS certificate (PEM)')
      .option('--tls-ca <file>', 'CA (PEM) that client certificates must chain to (mutual TLS)')
      .option('--audit-file <path>', `audit log (default <data-dir>/${AUDIT_FILE}); one writer per file`)
      .option('--log-level <level>', 'silent, error, warn, info (default) or debug; logs go to stderr'),
  )
    .option('--json', 'print one JSON object with the ports once listening')
    .action(withPrompter(serve));
}

/** Registers `poskey hsm` and its subcommands on `program`. */
export function registerHsmCommands(program: Command): void {
  const hsm = program.command('hsm').description('software payment HSM: LMK ceremony, service, audit');
  registerLmk(hsm);
  registerServe(hsm);
  hsm
    .command('audit')
    .description('audit log')
    .command('verify')
    .description('check the hash chain: exit 0 when intact, 1 naming the first bad line')
    .addOption(dataDirOption())
    .option('--file <path>', `the audit log (default <data-dir>/${AUDIT_FILE})`)
    .option('--json', 'print one JSON object')
    .action(action(auditVerify));
  hsm
    .command('diag')
    .description(
      'diagnostics of a running HSM: NC over TCP, or everything (LMK KCVs, uptime, counters) with --http',
    )
    .option('--host <addr>', 'HSM address', '127.0.0.1')
    .option('--port <port>', 'payShield TCP port', intOption('--port', 1, 65535), 1500)
    .option('--header-length <n>', 'message header length', intOption('--header-length', 0, 255), 4)
    .option('--http <url>', 'the HTTP API base URL, e.g. http://127.0.0.1:8443')
    .option('--token-env <var>', 'environment variable holding an API token', 'POSKEY_HSM_TOKEN')
    .option('--tls-ca <file>', 'CA (PEM) to trust for an https URL')
    .option('--json', 'print one JSON object')
    .action(action(diag));
}
