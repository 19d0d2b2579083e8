/**
 * `poskey network …`: the card network and issuer simulator.
 *
 *   serve          run the simulator (TCP, network dialect) until SIGINT/SIGTERM
 *   card add       issue a card: the PIN is read at the prompt (or one stdin line) and kept as a PVV
 *   card list      the cards on file, PANs masked
 *   card update    status, balance, reset of the wrong-PIN count
 *
 * ZMK components come from POSKEY_ZMK_COMPONENTS (hex, comma-separated). Without them, a first
 * development start makes a new zone: the zone file (cryptograms only) is written and the
 * components are printed ONCE on stderr, for the host's operator. A sealed network LMK
 * (`<data-dir>/lmk.sealed.json`) is opened with POSKEY_NETWORK_LMK_PASSPHRASE; without one the
 * simulator runs on a development LMK and says so.
 */
import { join, resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { PoskeyError } from '../errors.js';
import { CARD_STATUSES, type CardStatus, DEFAULT_CURRENCY } from '../network/card.js';
import type { Faults } from '../network/faults.js';
import { action, printJson, printResult } from './output.js';

export const ERR_CLI_OPTION = 'POSKEY_ERR_CLI_OPTION';
const ZMK_ENV = 'POSKEY_ZMK_COMPONENTS';
const PASSPHRASE_ENV = 'POSKEY_NETWORK_LMK_PASSPHRASE';
const DEFAULT_DIR = './data/network';

function optionError(field: string, reason: string): PoskeyError {
  return new PoskeyError(ERR_CLI_OPTION, reason, { field });
}

/** Option parsers throw commander's error, so a bad flag is one usage line and exit 2. */
function intOption(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) {
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function rateOption(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new InvalidArgumentError('must be a number from 0 to 1');
  }
  return n;
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

interface ServeOptions {
  port?: number;
  host?: string;
  dataDir: string;
  zoneFile?: string;
  seed?: 'demo';
  delayMs?: number;
  jitterMs?: number;
  dropRate?: number;
  disconnectRate?: number;
  responseCode?: string;
  maxPinTries?: number;
  keyOverlapMs?: number;
  logLevel: string;
  json?: boolean;
}

function faultsOf(o: ServeOptions): Partial<Faults> {
  const f: Partial<Faults> = {};
  if (o.delayMs !== undefined) f.delayMs = o.delayMs;
  if (o.jitterMs !== undefined) f.jitterMs = o.jitterMs;
  if (o.dropRate !== undefined) f.dropRate = o.dropRate;
  if (o.disconnectRate !== undefined) f.disconnectRate = o.disconnectRate;
  if (o.responseCode !== undefined) f.responseCode = o.responseCode;
  return f;
}

/** The components banner: shown once, on stderr, never logged. */
function componentsBanner(components: string[], zoneFile: string, zmkKcv: string | undefined): string {
  const line = '!'.repeat(72);
  return [
    line,
    '!! NEW ZONE CREATED. The ZMK components below are shown ONCE and kept nowhere.',
    '!! Give them to the acquirer host out of band, e.g. as',
    `!!   ${ZMK_ENV}=<component 1>,<component 2>,…`,
    `!! Zone file (cryptograms only): ${zoneFile}${zmkKcv ? `   ZMK KCV ${zmkKcv}` : ''}`,
    ...components.map((c, i) => `!!   component ${i + 1}: ${c}`),
    line,
  ].join('\n');
}

async function serve(o: ServeOptions): Promise<void> {
  const { pino } = await import('pino');
  const { openNetworkSimulator } = await import('../network/setup.js');
  const dataDir = resolve(o.dataDir);
  const zoneFilePath = resolve(o.zoneFile ?? join(dataDir, 'zone.json'));
  const logger = pino({ level: o.logLevel, base: { component: 'network' } }, process.stderr);
  const simulatorOptions = {
    port: o.port ?? 5859,
    host: o.host ?? '127.0.0.1',
    faults: faultsOf(o),
    logger,
    ...(o.maxPinTries !== undefined ? { maxPinTries: o.maxPinTries } : {}),
    ...(o.keyOverlapMs !== undefined ? { keyOverlapMs: o.keyOverlapMs } : {}),
  };
  const net = await openNetworkSimulator({
    dataDir,
    passphrase: env(PASSPHRASE_ENV),
    zone: { zmkComponents: env(ZMK_ENV), zoneFilePath },
    ...(o.seed ? { seed: o.seed } : {}),
    simulator: simulatorOptions,
  });
  if (net.warning !== undefined) process.stderr.write(`${net.warning}\n`);
  if (net.zone.zmkComponents !== undefined) {
    process.stderr.write(
      `${componentsBanner(net.zone.zmkComponents, zoneFilePath, net.zone.zoneFile.zmkKcv)}\n`,
    );
  }
  // Signal handlers first: a supervisor may send SIGTERM the moment it reads the ready line.
  let closedNow: () => void = () => undefined;
  const closed = new Promise<void>((done) => {
    closedNow = done;
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void net.simulator.close().finally(closedNow);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const { host, port } = await net.simulator.listen();
  const ready = {
    host,
    port,
    dataDir,
    zoneFile: zoneFilePath,
    zoneKeys: net.zone.source,
    zpkKcv: net.zone.zoneFile.zpk.kcv,
    zakKcv: net.zone.zoneFile.zak.kcv,
    dev: net.dev,
    cards: net.ledger.listCards().length,
    seeded: net.seeded,
    faults: net.simulator.faults(),
  };
  if (o.json) printJson(ready);
  else printResult({ ...ready, faults: JSON.stringify(ready.faults) }, false);
  await closed;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
}

interface CardOptions {
  dataDir: string;
  json?: boolean;
}

async function openLedger(dataDir: string, withHsm: boolean) {
  const { Ledger } = await import('../network/ledger.js');
  const { loadNetworkHsm, LEDGER_FILE } = await import('../network/setup.js');
  const dir = resolve(dataDir);
  const hsm = withHsm ? (await loadNetworkHsm(dir, { passphrase: env(PASSPHRASE_ENV) })).hsm : undefined;
  return Ledger.open({ path: join(dir, LEDGER_FILE), ...(hsm ? { hsm } : {}) });
}

async function readPin(): Promise<string> {
  const { Prompter } = await import('./hsm.js');
  const p = new Prompter();
  try {
    const pin = await p.secret('PIN: ');
    if (p.tty && (await p.secret('PIN again: ')) !== pin) throw optionError('pin', 'the two PINs differ');
    return pin.trim();
  } finally {
    p.close();
  }
}

async function cardAdd(
  o: CardOptions & { pan: string; expiry: string; balance: number; status?: CardStatus; currency?: string },
) {
  const pin = await readPin();
  const ledger = await openLedger(o.dataDir, true);
  try {
    const card = ledger.addCard({
      pan: o.pan,
      expiry: o.expiry,
      pin,
      balance: o.balance,
      ...(o.status ? { status: o.status } : {}),
      currency: o.currency ?? DEFAULT_CURRENCY,
    });
    printResult({ ...card }, o.json === true);
  } finally {
    ledger.close();
  }
}

async function cardList(o: CardOptions) {
  const ledger = await openLedger(o.dataDir, false);
  try {
    const cards = ledger.listCards();
    if (o.json) printJson({ cards });
    else if (cards.length === 0) process.stdout.write('no cards\n');
    else
      for (const c of cards)
        process.stdout.write(
          `${c.pan}  ${c.expiry}  ${c.status.padEnd(10)} ${c.currency} ${c.balance}  PIN tries ${c.pinTries}\n`,
        );
  } finally {
    ledger.close();
  }
}

async function cardUpdate(
  pan: string,
  o: CardOptions & { status?: CardStatus; balance?: number; resetPinTries?: boolean },
) {
  const ledger = await openLedger(o.dataDir, false);
  try {
    const change: { status?: CardStatus; balance?: number; resetPinTries?: boolean } = {};
    if (o.status !== undefined) change.status = o.status;
    if (o.balance !== undefined) change.balance = o.balance;
    if (o.resetPinTries) change.resetPinTries = true;
    printResult({ ...ledger.updateCard(pan, change) }, o.json === true);
  } finally {
    ledger.close();
  }
}

const dataDirOption = () => new Option('--data-dir <dir>', 'network data directory').default(DEFAULT_DIR);
const statusOption = () => new Option('--status <status>', 'card status').choices(CARD_STATUSES);
const balanceOption = () =>
  new Option('--balance <minor>', 'balance in minor units (fen): 10000 = 100.00').argParser(
    intOption(0, 999_999_999_999),
  );

/** Registers `poskey network` and its subcommands on `program`. */
export function registerNetworkCommands(program: Command): void {
  const network = program.command('network').description('card network and issuer simulator');
  network
    .command('serve')
    .alias('start')
    .description(
      'run the simulator: 0200 purchase/balance, 0800 echo, sign-on and key exchange; PIN (PVV) and MAC under the zone keys',
    )
    .option('--port <port>', 'listen port (default 5859; 0 = any free port)', intOption(0, 65535))
    .option('--host <addr>', 'listen address (default 127.0.0.1)')
    .addOption(dataDirOption())
    .option('--zone-file <file>', 'zone file (default <data-dir>/zone.json)')
    .addOption(new Option('--seed <set>', 'add the demo cards (docs/network-simulator.md)').choices(['demo']))
    .option('--delay-ms <ms>', 'delay before each request is processed', intOption(0, 600_000))
    .option('--jitter-ms <ms>', 'extra random delay, 0 to this', intOption(0, 600_000))
    .option('--drop-rate <0..1>', 'share of requests processed but not answered', rateOption)
    .option('--disconnect-rate <0..1>', 'share of requests answered by closing the connection', rateOption)
    .option('--response-code <rc>', 'answer every MAC-valid 0200 with this code (no ledger change)')
    .option('--max-pin-tries <n>', 'consecutive wrong PINs before 75 (default 3)', intOption(1, 99))
    .option(
      '--key-overlap-ms <ms>',
      'after a key exchange, accept the old ZPK/ZAK this long (default 60000)',
      intOption(0, 86_400_000),
    )
    .option('--log-level <level>', 'silent, error, warn, info or debug; logs go to stderr', 'info')
    .option('--json', 'print one JSON object once listening')
    .action(action(serve));
  const card = network.command('card').description("the issuer's cards");
  card
    .command('add')
    .description('issue a card; the PIN is read at the prompt (one stdin line when piped) and kept as a PVV')
    .requiredOption('--pan <pan>', 'card number, 13-19 digits')
    .requiredOption('--expiry <yymm>', 'expiry YYMM')
    .addOption(balanceOption().makeOptionMandatory())
    .addOption(statusOption())
    .option('--currency <code>', `ISO 4217 numeric (default ${DEFAULT_CURRENCY})`)
    .addOption(dataDirOption())
    .option('--json', 'print one JSON object')
    .action(action(cardAdd));
  card
    .command('list')
    .description('the cards on file (PANs masked)')
    .addOption(dataDirOption())
    .option('--json', 'print one JSON object')
    .action(action(cardList));
  card
    .command('update <pan>')
    .description('change status or balance, or reset the wrong-PIN count')
    .addOption(statusOption())
    .addOption(balanceOption())
    .option('--reset-pin-tries', 'set the wrong-PIN count back to 0')
    .addOption(dataDirOption())
    .option('--json', 'print one JSON object')
    .action(action(cardUpdate));
}
