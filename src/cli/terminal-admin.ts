/**
 * `poskey terminal add|list|block|unblock`: the terminal registry, through the host's admin API
 * (so the HSM that holds the LMK is the running one, and every key operation lands in its audit log).
 *
 * The admin API is found with --admin (default http://127.0.0.1:5860) and its token in the
 * variable named by --token-env (default POSKEY_ADMIN_TOKEN) or, failing that, --token-file
 * (default ./data/host/admin-token, where `poskey start` keeps it).
 *
 * TMK sources for `add`:
 *   --components-env VAR [--kcvs K1,K2]   the key ceremony: clear components (hex, comma-separated)
 *                                         from the environment, each checked against its KCV
 *   --components-stdin [--kcvs …]          the same, one component per line on stdin
 *   --tr31 BLOCK --kek NAME|LMK-BLOCK      a TR-31 block under a KEK the HSM holds
 *   --generate --export-under NAME|BLOCK   the HSM generates it and returns it under that transport
 *                                          key (cryptogram + KCV) for injection into the PIN pad
 */
import { readFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import { PoskeyError } from '../errors.js';
import { action, printJson, printResult } from './output.js';

export const ADMIN_TOKEN_ENV = 'POSKEY_ADMIN_TOKEN';
const DEFAULT_ADMIN = 'http://127.0.0.1:5860';
const DEFAULT_TOKEN_FILE = './data/host/admin-token';

export interface AdminOptions {
  admin: string;
  tokenEnv: string;
  tokenFile: string;
  json?: boolean;
}

interface AddOptions extends AdminOptions {
  tid: string;
  mid: string;
  algorithm: 'tdes' | 'sm4';
  serial?: string;
  batch?: string;
  componentsEnv?: string;
  componentsStdin?: boolean;
  kcvs?: string;
  tr31?: string;
  kek?: string;
  generate?: boolean;
  exportUnder?: string;
}

function cliError(field: string, reason: string): PoskeyError {
  return new PoskeyError('POSKEY_ERR_CLI_OPTION', reason, { field });
}

async function token(o: AdminOptions): Promise<string> {
  const fromEnv = process.env[o.tokenEnv];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv.trim();
  try {
    return (await readFile(o.tokenFile, 'utf8')).trim();
  } catch {
    throw cliError(
      '--token-file',
      `no admin token: set ${o.tokenEnv} or give --token-file (cannot read ${o.tokenFile})`,
    );
  }
}

/** One admin API call; an error answer becomes a PoskeyError with the API's code and field. */
export async function adminRequest(
  o: AdminOptions,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const url = new URL(path, o.admin.endsWith('/') ? o.admin : `${o.admin}/`);
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${await token(o)}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (e) {
    if (e instanceof PoskeyError) throw e;
    throw new PoskeyError(
      'POSKEY_ERR_CLI_ADMIN',
      `cannot reach the admin API at ${o.admin} (is poskey start running?)`,
      {
        field: '--admin',
        cause: e,
      },
    );
  }
  const text = await res.text();
  let doc: unknown;
  try {
    doc = text === '' ? {} : JSON.parse(text);
  } catch {
    throw new PoskeyError(
      'POSKEY_ERR_CLI_ADMIN',
      `the admin API answered ${res.status} with something that is not JSON`,
    );
  }
  if (!res.ok) {
    const e = doc as { code?: string; field?: string; message?: string };
    throw new PoskeyError(e.code ?? 'POSKEY_ERR_CLI_ADMIN', e.message ?? `HTTP ${res.status}`, {
      field: e.field,
    });
  }
  return doc;
}

async function readStdinLines(): Promise<string[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .split(/\r?\n/)
    .map((l) => l.replace(/\s+/g, ''))
    .filter((l) => l !== '');
}

/** The TMK source the flags name (at most one). */
async function tmkSource(o: AddOptions): Promise<Record<string, unknown> | undefined> {
  const given = [
    o.componentsEnv !== undefined,
    o.componentsStdin === true,
    o.tr31 !== undefined,
    o.generate === true,
  ];
  if (given.filter(Boolean).length > 1) {
    throw cliError(
      '--components-env',
      'give one TMK source: --components-env, --components-stdin, --tr31 or --generate',
    );
  }
  const kcvs = o.kcvs?.split(',').map((k) => k.trim());
  if (o.componentsEnv !== undefined || o.componentsStdin) {
    let components: string[];
    if (o.componentsStdin) components = await readStdinLines();
    else {
      const v = process.env[o.componentsEnv!];
      if (v === undefined || v === '')
        throw cliError('--components-env', `environment variable ${o.componentsEnv} is not set`);
      components = v.split(',').map((c) => c.replace(/\s+/g, ''));
    }
    return kcvs === undefined ? { components } : { components, kcvs };
  }
  if (kcvs !== undefined) throw cliError('--kcvs', 'goes with --components-env or --components-stdin');
  if (o.tr31 !== undefined) {
    if (o.kek === undefined)
      throw cliError('--kek', 'a TR-31 block needs --kek (a KEK name or LMK key block)');
    return { tr31: o.tr31, kek: o.kek };
  }
  if (o.generate) {
    if (o.exportUnder === undefined)
      throw cliError('--export-under', '--generate needs --export-under (the transport KEK)');
    return { generate: true, exportUnder: o.exportUnder };
  }
  return undefined;
}

async function add(o: AddOptions): Promise<void> {
  const tmk = await tmkSource(o);
  const body: Record<string, unknown> = {
    tid: o.tid,
    mid: o.mid,
    keyAlgorithm: o.algorithm === 'sm4' ? 'SM4' : 'TDES',
  };
  if (o.serial !== undefined) body.serial = o.serial;
  if (o.batch !== undefined) {
    if (!/^\d{1,6}$/.test(o.batch) || Number(o.batch) < 1) throw cliError('--batch', 'must be 1 to 999999');
    body.batchNumber = Number(o.batch);
  }
  if (tmk !== undefined) body.tmk = tmk;
  const r = (await adminRequest(o, 'POST', 'terminals', body)) as {
    terminal: Record<string, unknown>;
    tmk?: { source: string; kcv: string; delivery?: { format: string; cryptogram: string; kcv: string } };
  };
  if (o.json) return printJson(r);
  const t = r.terminal;
  printResult(
    {
      terminal: t.tid,
      merchant: t.mid,
      algorithm: t.keyAlgorithm,
      state: t.state,
      'TMK KCV': r.tmk?.kcv ?? 'none (no TMK yet)',
      'TMK from': r.tmk?.source,
      'TMK under transport key': r.tmk?.delivery?.cryptogram,
    },
    false,
  );
}

async function list(o: AdminOptions & { mid?: string; state?: string }): Promise<void> {
  const q = new URLSearchParams();
  if (o.mid !== undefined) q.set('mid', o.mid);
  if (o.state !== undefined) q.set('state', o.state);
  const r = (await adminRequest(o, 'GET', `terminals${q.size ? `?${q}` : ''}`)) as {
    terminals: Record<string, unknown>[];
  };
  if (o.json) return printJson(r);
  if (r.terminals.length === 0) {
    process.stdout.write('no terminals\n');
    return;
  }
  for (const t of r.terminals) {
    const tmk = (t.tmk as { kcv: string } | null)?.kcv ?? '-';
    const keys =
      t.workingKeys === null ? 'not signed in' : `keys ${(t.workingKeys as { createdAt: string }).createdAt}`;
    process.stdout.write(
      `${t.tid}  ${t.mid}  ${String(t.keyAlgorithm).padEnd(4)}  ${String(t.state).padEnd(7)}  TMK ${tmk}  ${keys}\n`,
    );
  }
}

async function setState(o: AdminOptions & { tid: string }, state: 'blocked' | 'active'): Promise<void> {
  const t = (await adminRequest(o, 'PATCH', `terminals/${encodeURIComponent(o.tid)}`, { state })) as Record<
    string,
    unknown
  >;
  printResult({ terminal: t.tid, state: t.state }, o.json === true);
}

export function adminOptions(cmd: Command): Command {
  return cmd
    .option('--admin <url>', 'admin API of the host', DEFAULT_ADMIN)
    .option('--token-env <VAR>', 'environment variable holding the admin token', ADMIN_TOKEN_ENV)
    .option(
      '--token-file <file>',
      'file holding the admin token (when the variable is unset)',
      DEFAULT_TOKEN_FILE,
    )
    .option('--json', 'print one JSON object');
}

/** The `terminal` command: found (the terminal simulator registers it) or made. */
function terminalCommand(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'terminal') ??
    program.command('terminal').description('POS terminals: registry and simulator')
  );
}

/** Registers `poskey terminal add|list|block|unblock` (after `registerTerminalCommands`). */
export function registerTerminalAdminCommands(program: Command): void {
  const terminal = terminalCommand(program);
  adminOptions(
    terminal
      .command('add')
      .description("register a terminal in the host's registry, with its TMK")
      .requiredOption('--tid <tid>', 'terminal ID, field 41 (8 characters)')
      .requiredOption('--mid <mid>', 'merchant ID, field 42 (15 characters); the merchant must exist')
      .addOption(new Option('--algorithm <alg>', 'key family').choices(['tdes', 'sm4']).default('tdes'))
      .option('--serial <serial>', 'device serial number')
      .option('--batch <n>', 'batch number to start with (default 1)')
      .option('--components-env <VAR>', 'TMK from clear components (hex, comma-separated) in this variable')
      .option('--components-stdin', 'TMK from clear components, one per line on stdin')
      .option('--kcvs <kcv,kcv>', 'the check value each component was issued with')
      .option('--tr31 <block>', 'TMK from a TR-31 key block (with --kek)')
      .option(
        '--kek <name|block>',
        'the KEK the TR-31 block is under: a name the host knows, or an LMK key block',
      )
      .option('--generate', 'the HSM generates the TMK (with --export-under)')
      .option(
        '--export-under <name|block>',
        "transport KEK to deliver the generated TMK under (poskey start: 'factory', 'factory-sm4')",
      ),
  )
    .addHelpText(
      'after',
      `
Examples:
  $ POSKEY_TMK='0123456789ABCDEFFEDCBA9876543210,40404040404040404040404040404040' \\
      poskey terminal add --tid T0000100 --mid 898310048990001 --components-env POSKEY_TMK
  $ poskey terminal add --tid T0000101 --mid 898310048990001 --generate --export-under factory
`,
    )
    .action(action(add));
  adminOptions(
    terminal
      .command('list')
      .description('the registered terminals: state, TMK KCV, working keys')
      .option('--mid <mid>', 'only this merchant')
      .addOption(new Option('--state <state>', 'only this state').choices(['new', 'active', 'blocked'])),
  ).action(action(list));
  adminOptions(
    terminal
      .command('block')
      .description('block a terminal: every request is then answered 97')
      .requiredOption('--tid <tid>', 'terminal ID'),
  ).action(action((o: AdminOptions & { tid: string }) => setState(o, 'blocked')));
  adminOptions(
    terminal
      .command('unblock')
      .description('unblock a terminal (its MAC failure count starts again)')
      .requiredOption('--tid <tid>', 'terminal ID'),
  ).action(action((o: AdminOptions & { tid: string }) => setState(o, 'active')));
}
