/**
 * `poskey terminal signin|balance|purchase` and `poskey simulate`: a POS terminal and a fleet of
 * them against any POSP, for people debugging one. The commands parse options, build a PIN pad and
 * a `Terminal` (src/terminal), run, and print; `--trace` writes every frame, decoded and masked, to
 * stderr, so `--json` output on stdout stays one object.
 *
 * Where the TMK comes from:
 *   --tmk-components HEX,HEX   laboratory injection: the components are XORed into the TMK and
 *                              written into the PIN pad (warned about: they are on the command line)
 *   --data-dir D --pinpad-passphrase-env VAR
 *                              a PIN pad sealed in D under a key derived from $VAR (saved there by an
 *                              earlier run with --tmk-components); STAN, batch and pending reversals
 *                              are kept in D too
 */
import { type Command, Option } from 'commander';
import { fromHex, zeroize } from '../crypto/bytes.js';
import { combineComponents } from '../crypto/keys.js';
import { PoskeyError } from '../errors.js';
import { describeEnvelope, describeMessage, formatDescription } from '../iso8583/describe.js';
import { TERMINAL_PROFILE } from '../iso8583/framing.js';
import type { BatchTotals } from '../protocol/settlement.js';
import { POS_DIALECT, type SignInCode } from '../protocol/unionpay-pos.js';
import { FileBatchStore } from '../terminal/batch-store.js';
import { type CardInput, TEST_CARDS, testCard, track2Of } from '../terminal/cards.js';
import { resolveTerminalConfig, type TerminalConfig } from '../terminal/config.js';
import type { FrameEvent } from '../terminal/connection.js';
import { PinPadErrorCode, TerminalErrorCode } from '../terminal/errors.js';
import {
  type FleetProgress,
  type FleetReport,
  formatFleetReport,
  progressLine,
  runFleet,
} from '../terminal/fleet.js';
import { MIX_NAMES, type MixName, seededRandom } from '../terminal/mix.js';
import { type MasterKeyAlgorithm, PinPad } from '../terminal/pinpad.js';
import { PinPadStore } from '../terminal/pinpad-store.js';
import {
  formatReconciliation,
  type ReconcileSources,
  type Reconciliation,
  reconcileFromSources,
} from '../terminal/reconcile.js';
import { FileReversalStore } from '../terminal/reversal-store.js';
import { FileStateStore } from '../terminal/state-store.js';
import { Terminal, type TransactionResult } from '../terminal/terminal.js';
import { describeError, EXIT_FAILURE, EXIT_USAGE, printJson, printResult } from './output.js';
import { registerFollowUpCommands } from './terminal-follow-up.js';
import { registerTerminalRkl } from './terminal-rkl.js';

/** Bad option values or combinations. */
export const ERR_OPTION = 'POSKEY_ERR_CLI_OPTION';

export interface CommonOptions {
  host: string;
  port: string;
  tid: string;
  mid: string;
  dataDir?: string;
  tmkComponents?: string;
  pinpadPassphraseEnv?: string;
  algorithm: 'tdes' | 'sm4';
  signInCode?: SignInCode;
  mac: 'unionpay-ecb' | 'x919';
  trackEncryption?: boolean;
  timeout: string;
  connection: 'persistent' | 'per-transaction';
  trace?: boolean;
  json?: boolean;
}

export interface CardOptions extends CommonOptions {
  pan?: string;
  expiry?: string;
  track2?: string;
  card?: string;
  pin?: string;
  amount?: string;
}

/** Errors that mean "you asked for something wrong" exit 2; everything else (host, keys) exits 1. */
const USAGE_CODES = new Set<string>([
  ERR_OPTION,
  'POSKEY_ERR_CLI_INPUT',
  TerminalErrorCode.CONFIG,
  TerminalErrorCode.INPUT,
  PinPadErrorCode.OPTION,
  PinPadErrorCode.KEY,
]);

export function run<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      process.stderr.write(`poskey: ${describeError(e)}\n`);
      const usage =
        e instanceof PoskeyError && (USAGE_CODES.has(e.code) || e.code.startsWith('POSKEY_ERR_HEX'));
      process.exitCode = usage ? EXIT_USAGE : EXIT_FAILURE;
    }
  };
}

export function optionError(flag: string, reason: string): PoskeyError {
  return new PoskeyError(ERR_OPTION, reason, { field: flag });
}

function integer(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max)
    throw optionError(flag, `must be a whole number from ${min} to ${max}`);
  return n;
}

/** "12.34" (major units, up to 2 decimals) → 1234 minor units. */
export function parseAmount(value: string): number {
  const m = /^(\d{1,10})(?:\.(\d{1,2}))?$/.exec(value ?? '');
  if (m === null)
    throw optionError('--amount', 'must be an amount such as 12.34 (major units, 2 decimals at most)');
  const minor = Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0'));
  if (minor < 1) throw optionError('--amount', 'must be more than 0');
  return minor;
}

/** "90", "90s", "2m", "500ms", "1h" → seconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value ?? '');
  if (m === null) throw optionError('--duration', 'must be a duration such as 60, 30s, 2m or 1h');
  const factor = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] ?? 's']!;
  const seconds = Number(m[1]) * factor;
  if (seconds <= 0) throw optionError('--duration', 'must be more than 0');
  return seconds;
}

/** XORs the lab components into a TMK; warns on stderr (components on a command line are not secret). */
function labTmk(components: string, algorithm: MasterKeyAlgorithm): Buffer {
  const parts = components.split(',').map((c, i) => fromHex(c.trim(), `--tmk-components[${i}]`));
  process.stderr.write(
    'poskey: warning: laboratory TMK injection from --tmk-components; never use production key components on a command line\n',
  );
  try {
    if (parts.length === 1) return Buffer.from(parts[0]!);
    return combineComponents(algorithm, parts).key;
  } finally {
    zeroize(...parts);
  }
}

/** The PIN pad: sealed in the data directory, and/or injected from lab components. */
async function preparePinPad(
  opts: CommonOptions,
  slot: number,
): Promise<{ pad: PinPad; store?: PinPadStore }> {
  let store: PinPadStore | undefined;
  if (opts.pinpadPassphraseEnv !== undefined) {
    if (opts.dataDir === undefined)
      throw optionError('--pinpad-passphrase-env', 'needs --data-dir to keep the PIN pad in');
    const secret = process.env[opts.pinpadPassphraseEnv];
    if (secret === undefined || secret === '') {
      throw optionError(
        '--pinpad-passphrase-env',
        `environment variable ${opts.pinpadPassphraseEnv} is not set`,
      );
    }
    store = await PinPadStore.open(opts.dataDir, secret);
  }
  const pad = store?.load() ?? new PinPad();
  if (opts.tmkComponents !== undefined) {
    const tmk = labTmk(opts.tmkComponents, opts.algorithm);
    try {
      const info = pad.injectTmk(slot, tmk, { algorithm: opts.algorithm });
      process.stderr.write(`poskey: TMK injected into PIN pad slot ${slot}, KCV ${info.kcv}\n`);
    } finally {
      zeroize(tmk);
    }
    await store?.save(pad);
  } else if (pad.slotInfo(slot) === undefined) {
    throw optionError(
      '--tmk-components',
      'the PIN pad has no TMK: give --tmk-components (lab), or --data-dir with --pinpad-passphrase-env for a pad provisioned earlier',
    );
  }
  return store === undefined ? { pad } : { pad, store };
}

function traceFrame(e: FrameEvent): void {
  const arrow = e.direction === 'sent' ? '>>' : '<<';
  if (e.message === undefined || e.envelope === undefined) {
    process.stderr.write(
      `${arrow} ${e.direction} ${e.length} bytes: ${e.error ? describeError(e.error) : 'unreadable'}\n`,
    );
    return;
  }
  const note = e.unmatched ? ' (answers no request in flight)' : '';
  const text = formatDescription(
    describeMessage(POS_DIALECT, e.message),
    describeEnvelope(e.envelope, TERMINAL_PROFILE, e.length),
  );
  process.stderr.write(`${arrow} ${e.direction} ${e.message[0]}${note}\n${text}\n\n`);
}

function terminalConfig(opts: CommonOptions): TerminalConfig {
  const config: TerminalConfig = {
    tid: opts.tid,
    mid: opts.mid,
    host: opts.host,
    port: integer(opts.port, '--port', 1, 65535),
    algorithm: opts.algorithm,
    macAlgorithm: opts.mac,
    trackEncryption: opts.trackEncryption === true,
    timeouts: { responseMs: integer(opts.timeout, '--timeout', 1, 600_000) },
    connection: opts.connection,
  };
  if (opts.signInCode !== undefined) config.signInCode = opts.signInCode;
  return config;
}

export async function withTerminal(opts: CommonOptions, fn: (t: Terminal) => Promise<void>): Promise<void> {
  const config = terminalConfig(opts);
  const { pad, store } = await preparePinPad(opts, resolveTerminalConfig(config).slots.tmk);
  const dir = opts.dataDir;
  const terminal = new Terminal(config, {
    pinPad: pad,
    ...(dir === undefined
      ? {}
      : {
          state: new FileStateStore(dir),
          reversals: await FileReversalStore.open(dir),
          batch: await FileBatchStore.open(dir),
        }),
    ...(store === undefined ? {} : { pinPadStore: store }),
    ...(opts.trace ? { onFrame: traceFrame } : {}),
  });
  try {
    await fn(terminal);
  } finally {
    await terminal.close();
    store?.close();
  }
}

export function cardOf(opts: CardOptions): CardInput {
  const given = [opts.track2, opts.pan, opts.card].filter((x) => x !== undefined).length;
  if (given !== 1)
    throw optionError('--pan', 'give exactly one of --pan (with --expiry), --track2 or --card');
  if (opts.track2 !== undefined) return { track2: opts.track2 };
  if (opts.card !== undefined) return { track2: track2Of(testCard(opts.card)) };
  return opts.expiry === undefined ? { pan: opts.pan! } : { pan: opts.pan!, expiry: opts.expiry };
}

const money = (minor: number | string) => (Number(minor) / 100).toFixed(2);

export function resultText(r: TransactionResult, tid: string): Record<string, unknown> {
  const reversal = r.reversal
    ? `STAN ${r.reversal.stan} reason ${r.reversal.reason}: ${r.reversal.acknowledged ? 'acknowledged' : `pending${r.reversal.error ? ` (${r.reversal.error})` : ''}`}`
    : undefined;
  return {
    transaction: r.type,
    terminal: tid,
    outcome: r.outcome,
    response: r.responseCode === undefined ? r.responseText : `${r.responseCode} ${r.responseText}`,
    stan: r.stan,
    amount: r.amount === undefined ? undefined : money(r.amount),
    rrn: r.rrn,
    'auth code': r.authCode,
    balance: r.balances?.map(
      (b) => `${b.sign === 'D' ? '-' : ''}${money(b.amount)} (currency ${b.currency}, type ${b.amountType})`,
    ),
    'response MAC': r.macVerified === null ? 'none' : r.macVerified ? 'verified' : 'FAILED',
    'latency ms': r.latencyMs?.toFixed(1),
    reversal,
    'earlier reversals': r.earlierReversals?.map(
      (o) => `STAN ${o.stan}: ${o.acknowledged ? 'acknowledged' : 'pending'}`,
    ),
    'signed in again':
      r.signIn === undefined
        ? undefined
        : r.signIn.approved
          ? 'yes'
          : `failed (${r.signIn.error ?? r.signIn.responseCode})`,
  };
}

async function signinCommand(opts: CommonOptions): Promise<void> {
  await withTerminal(opts, async (t) => {
    const r = await t.signIn();
    if (opts.json) printJson({ tid: t.config.tid, ...r });
    else {
      printResult(
        {
          terminal: t.config.tid,
          response: `${r.responseCode ?? '--'} ${r.responseText}`,
          stan: r.stan,
          batch: r.batch,
          'sign-in code': t.config.signInCode,
          'key KCVs': r.keys,
          'latency ms': r.latencyMs.toFixed(1),
        },
        false,
      );
    }
    if (!r.approved) process.exitCode = EXIT_FAILURE;
  });
}

const totalsText = (t: BatchTotals | undefined) =>
  t === undefined
    ? undefined
    : (['domestic', 'foreign'] as const).map(
        (c) =>
          `${c}: debits ${t[c].debitCount} / ${money(t[c].debitAmount)}, credits ${t[c].creditCount} / ${money(t[c].creditAmount)}`,
      );

async function settleCommand(opts: CommonOptions): Promise<void> {
  await withTerminal(opts, async (t) => {
    const r = await t.settle();
    if (opts.json) printJson({ tid: t.config.tid, ...r });
    else {
      printResult(
        {
          terminal: t.config.tid,
          response: `${r.responseCode ?? '--'} ${r.responseText}`,
          batch: r.batch,
          result: r.approved ? (r.balanced ? 'balanced' : `not balanced: ${r.uploaded} uploaded`) : 'refused',
          'new batch': r.newBatch,
          'terminal totals': totalsText(r.terminalTotals),
          'host totals': totalsText(r.hostTotals),
          'signed in again': r.signIn === undefined ? undefined : r.signIn.approved ? 'yes' : 'failed',
        },
        false,
      );
    }
    if (!r.approved) process.exitCode = EXIT_FAILURE;
  });
}

async function financialCommand(kind: 'balance' | 'purchase', opts: CardOptions): Promise<void> {
  const card = cardOf(opts);
  const amount = kind === 'purchase' ? parseAmount(opts.amount ?? '') : undefined;
  await withTerminal(opts, async (t) => {
    const r =
      kind === 'purchase' ? await t.purchase(card, amount!, opts.pin) : await t.balance(card, opts.pin);
    if (opts.json) printJson({ tid: t.config.tid, ...r });
    else printResult(resultText(r, t.config.tid), false);
    if (!r.approved) process.exitCode = EXIT_FAILURE;
  });
}

export function addTerminalOptions(cmd: Command): Command {
  return cmd
    .option('--host <host>', 'POSP host', '127.0.0.1')
    .requiredOption('--port <port>', 'POSP port')
    .requiredOption('--tid <tid>', 'terminal ID, field 41 (8 characters)')
    .requiredOption('--mid <mid>', 'merchant ID, field 42 (15 characters)')
    .option('--data-dir <dir>', 'keep STAN, batch, pending reversals (and the sealed PIN pad) here')
    .option('--tmk-components <hex,hex>', 'lab only: TMK components to XOR and inject into the PIN pad')
    .option(
      '--pinpad-passphrase-env <VAR>',
      'environment variable with the secret sealing the PIN pad in --data-dir',
    )
    .addOption(new Option('--algorithm <alg>', 'key family').choices(['tdes', 'sm4']).default('tdes'))
    .addOption(
      new Option(
        '--sign-in-code <code>',
        '60.3 of the sign-in (default 003, 004 with --track-encryption, 006 for SM4)',
      ).choices(['001', '003', '004', '006']),
    )
    .addOption(
      new Option('--mac <alg>', 'field 64 algorithm')
        .choices(['unionpay-ecb', 'x919'])
        .default('unionpay-ecb'),
    )
    .option('--track-encryption', 'encrypt track 2 under the TDK (53.3 = 1)')
    .option('--timeout <ms>', 'response timeout in milliseconds', '30000')
    .addOption(
      new Option('--connection <mode>', 'one connection, or one per exchange')
        .choices(['persistent', 'per-transaction'])
        .default('persistent'),
    )
    .option('--trace', 'print every frame, decoded with card data masked, on stderr')
    .option('--json', 'print exactly one JSON object');
}

export function addCardOptions(cmd: Command): Command {
  return cmd
    .option('--pan <pan>', 'keyed-in card number (entry mode 01x)')
    .option('--expiry <yymm>', 'expiry date with --pan')
    .option('--track2 <track>', "swiped track 2, 'PAN=YYMM…' (entry mode 02x)")
    .option('--card <name>', `a test card, swiped: ${TEST_CARDS.map((c) => c.name).join(', ')}`)
    .option('--pin <pin>', 'PIN, entered on the PIN pad (omit for no PIN)');
}

interface SimulateOptions {
  terminals: string;
  rate: string;
  duration: string;
  host: string;
  port: string;
  mid: string;
  tmkComponents?: string;
  tidPrefix: string;
  algorithm: 'tdes' | 'sm4';
  signInCode?: SignInCode;
  mac: 'unionpay-ecb' | 'x919';
  trackEncryption?: boolean;
  timeout: string;
  connection: 'persistent' | 'per-transaction';
  wrongPinRate: string;
  purchaseShare: string;
  mix: MixName;
  seed?: string;
  reconcileDb?: string;
  reconcileLedger?: string;
  progress: boolean;
  json?: boolean;
}

function progressWriter(): ((p: FleetProgress) => void) | undefined {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  return (p) => {
    if (tty) process.stderr.write(`\r${progressLine(p)}\x1b[K`);
    else if (p.elapsedSeconds - last >= 5 || p.inFlight === 0) {
      last = p.elapsedSeconds;
      process.stderr.write(`${progressLine(p)}\n`);
    }
  };
}

interface DayRun {
  fleet: { day?: 'realistic'; random?: () => number };
  sources?: Omit<ReconcileSources, 'drainMs'>;
}

/** `--mix`, `--seed` and the reconciliation sources of a realistic day. */
function dayOptions(opts: SimulateOptions): DayRun {
  const seed = opts.seed === undefined ? undefined : integer(opts.seed, '--seed', 0, 2 ** 32 - 1);
  const fleet = {
    ...(opts.mix === 'realistic' ? { day: 'realistic' as const } : {}),
    ...(seed === undefined ? {} : { random: seededRandom(seed) }),
  };
  if ((opts.reconcileDb === undefined) !== (opts.reconcileLedger === undefined))
    throw optionError('--reconcile-db', 'give both --reconcile-db and --reconcile-ledger');
  if (opts.reconcileDb === undefined) return { fleet };
  if (opts.mix !== 'realistic') throw optionError('--reconcile-db', 'reconciles a --mix realistic day');
  return {
    fleet,
    sources: { database: opts.reconcileDb, ledger: opts.reconcileLedger!, since: Date.now() - 1000 },
  };
}

function reconcileRun(report: FleetReport, run: DayRun): Promise<Reconciliation | undefined> {
  if (run.sources === undefined || report.day === undefined) return Promise.resolve(undefined);
  return reconcileFromSources(report.day.terminals, run.sources);
}

async function simulateCommand(opts: SimulateOptions): Promise<void> {
  if (opts.tmkComponents === undefined) {
    throw optionError(
      '--tmk-components',
      'standalone simulate gives every terminal one lab TMK: give --tmk-components (poskey start provisions through the host)',
    );
  }
  const share = Number(opts.purchaseShare);
  if (!(share >= 0 && share <= 100))
    throw optionError('--purchase-share', 'must be a percentage from 0 to 100');
  const wrong = Number(opts.wrongPinRate);
  if (!(wrong >= 0 && wrong <= 100))
    throw optionError('--wrong-pin-rate', 'must be a percentage from 0 to 100');
  const day = dayOptions(opts);
  const tmk = labTmk(opts.tmkComponents, opts.algorithm);
  const key = Buffer.from(tmk);
  zeroize(tmk);
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once('SIGINT', stop);
  const onProgress = opts.progress ? progressWriter() : undefined;
  try {
    const report = await runFleet({
      host: opts.host,
      port: integer(opts.port, '--port', 1, 65535),
      terminals: integer(opts.terminals, '--terminals', 1, 100_000),
      rate: Number(opts.rate),
      durationSeconds: parseDuration(opts.duration),
      tidPrefix: opts.tidPrefix,
      mix: { purchase: share, balance: 100 - share },
      ...day.fleet,
      wrongPinRate: wrong / 100,
      terminal: {
        algorithm: opts.algorithm,
        macAlgorithm: opts.mac,
        trackEncryption: opts.trackEncryption === true,
        timeouts: { responseMs: integer(opts.timeout, '--timeout', 1, 600_000) },
        connection: opts.connection,
        ...(opts.signInCode === undefined ? {} : { signInCode: opts.signInCode }),
      },
      provision: (tid) => ({ tid, mid: opts.mid, tmk: { kind: 'clear', key, algorithm: opts.algorithm } }),
      signal: abort.signal,
      ...(onProgress === undefined ? {} : { onProgress }),
    });
    if (onProgress !== undefined && process.stderr.isTTY) process.stderr.write('\n');
    const recon = await reconcileRun(report, day);
    if (opts.json) printJson(recon === undefined ? report : { ...report, reconciliation: recon });
    else {
      process.stdout.write(`${formatFleetReport(report)}\n`);
      if (recon !== undefined) process.stdout.write(`${formatReconciliation(recon)}\n`);
    }
    if (report.terminals.ready === 0 || report.errors.total > 0 || recon?.agreed === false)
      process.exitCode = EXIT_FAILURE;
  } finally {
    process.removeListener('SIGINT', stop);
    zeroize(key);
  }
}

/** Registers `poskey terminal signin|balance|purchase` and `poskey simulate`. */
export function registerTerminalCommands(program: Command): void {
  const terminal = program
    .command('terminal')
    .description('run a POS terminal (PIN pad included) against a POSP: sign-in, balance, purchase');

  addTerminalOptions(
    terminal.command('signin').description('sign in (0800): download and check the working keys'),
  )
    .addHelpText(
      'after',
      `
Example:
  $ poskey terminal signin --port 5000 --tid 12345678 --mid 123456789012345 \\
      --tmk-components 0123456789ABCDEFFEDCBA9876543210,40404040404040404040404040404040 --trace
`,
    )
    .action(run((opts: CommonOptions) => signinCommand(opts)));

  addCardOptions(
    addTerminalOptions(
      terminal.command('balance').description('balance inquiry (0200, processing code 310000)'),
    ),
  ).action(run((opts: CardOptions) => financialCommand('balance', opts)));

  addCardOptions(
    addTerminalOptions(terminal.command('purchase').description('purchase (0200, processing code 000000)')),
  )
    .requiredOption('--amount <amount>', 'amount in major units, e.g. 12.34')
    .addHelpText(
      'after',
      `
The terminal signs in first when its PIN pad holds no working keys, sends any pending reversal, then
the purchase. Exit code 0 when approved, 1 when declined, unanswered or the response MAC fails.

Example:
  $ poskey terminal purchase --port 5000 --tid 12345678 --mid 123456789012345 \\
      --tmk-components 0123456789ABCDEFFEDCBA9876543210,40404040404040404040404040404040 \\
      --card unionpay-debit --pin 123456 --amount 12.34 --trace
`,
    )
    .action(run((opts: CardOptions) => financialCommand('purchase', opts)));

  registerFollowUpCommands(terminal);

  addTerminalOptions(
    terminal
      .command('settle')
      .description('settle the batch (0500 totals; 0320 batch upload when the host is not balanced)'),
  )
    .addHelpText(
      'after',
      `
The totals come from the terminal's own records of the batch (<data-dir>/batch.json). Exit code 0
when the batch settled (the new batch is in force), 1 when the host refused.
`,
    )
    .action(run((opts: CommonOptions) => settleCommand(opts)));
  registerTerminalRkl(terminal);

  program
    .command('simulate')
    .description('a fleet of terminals: provision, sign in, run a transaction mix at a target rate, report')
    .requiredOption('--terminals <n>', 'number of terminals')
    .requiredOption('--rate <tps>', 'target transactions per second (all terminals)')
    .requiredOption('--duration <time>', 'how long: 60, 30s, 2m, 1h')
    .option('--host <host>', 'POSP host', '127.0.0.1')
    .requiredOption('--port <port>', 'POSP port')
    .option('--mid <mid>', 'merchant ID of every terminal', '123456789012345')
    .option('--tid-prefix <prefix>', 'TIDs are the prefix and a number, 8 characters', 'SIM')
    .option('--tmk-components <hex,hex>', 'lab only: one TMK for every terminal (the host must know it)')
    .addOption(new Option('--algorithm <alg>', 'key family').choices(['tdes', 'sm4']).default('tdes'))
    .addOption(
      new Option('--sign-in-code <code>', '60.3 of the sign-in').choices(['001', '003', '004', '006']),
    )
    .addOption(
      new Option('--mac <alg>', 'field 64 algorithm')
        .choices(['unionpay-ecb', 'x919'])
        .default('unionpay-ecb'),
    )
    .option('--track-encryption', 'encrypt track 2 under the TDK')
    .option('--timeout <ms>', 'response timeout in milliseconds', '10000')
    .addOption(
      new Option('--connection <mode>', 'connection mode')
        .choices(['persistent', 'per-transaction'])
        .default('persistent'),
    )
    .option('--purchase-share <percent>', 'share of purchases; the rest are balance inquiries', '80')
    .addOption(
      new Option(
        '--mix <name>',
        'purchases (and balance inquiries), or a realistic day that ends in settlement',
      )
        .choices([...MIX_NAMES])
        .default('purchases'),
    )
    .option('--seed <n>', 'replayable random choices')
    .option(
      '--reconcile-db <target>',
      "realistic day: the host's store (sqlite:PATH or postgres://…) to reconcile",
    )
    .option('--reconcile-ledger <path>', "realistic day: the network simulator's ledger file to reconcile")
    .option('--wrong-pin-rate <percent>', 'share of transactions with a wrong PIN', '2')
    .option('--no-progress', 'no live progress line on stderr')
    .option('--json', 'print the report as one JSON object')
    .addHelpText(
      'after',
      `
Ends with TPS, p50/p95/p99 latency, counts by response code and errors. Ctrl-C stops early and
reports what ran.

Example:
  $ poskey simulate --terminals 20 --rate 200 --duration 30s --port 5000 \\
      --tmk-components 0123456789ABCDEFFEDCBA9876543210,40404040404040404040404040404040

A realistic day (purchases, voids, refunds, reversals, balance inquiries, then settlement), checked
three ways: each terminal's settled totals against the host journal and the network ledger.
Exit code 1 when they disagree.
  $ poskey simulate --mix realistic --seed 7 --terminals 5 --rate 20 --duration 20s --port 5858 \\
      --tmk-components … --reconcile-db sqlite:data/host/poskey.db \\
      --reconcile-ledger data/network/ledger.sqlite
`,
    )
    .action(run((opts: SimulateOptions) => simulateCommand(opts)));
}
