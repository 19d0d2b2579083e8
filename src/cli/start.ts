/**
 * `poskey start` (= `npm start`): the whole platform on embedded defaults, in one process, until
 * Ctrl-C or SIGTERM (the first one drains and exits 0; a second one exits at once with 1).
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_PORTS, DEMO_PINPAD_SECRET, DEMO_PINPAD_SECRET_ENV } from '../start/layout.js';
import type { LogLevel } from '../start/platform.js';
import { action, printJson } from './output.js';

interface StartOptions {
  dataDir: string;
  host: string;
  port: number;
  networkPort: number;
  adminPort: number;
  hsmPort: number;
  hsmHttpPort: number;
  hsmService: boolean;
  admin: boolean;
  seed: boolean;
  database?: string;
  networkTimeout: number;
  logLevel: LogLevel;
  json?: boolean;
}

function portOption(v: string): number {
  const n = Number(v);
  if (!/^\d{1,5}$/.test(v) || n > 65535) throw new InvalidArgumentError('must be a port from 0 to 65535');
  return n;
}

function msOption(v: string): number {
  const n = Number(v);
  if (!/^\d{1,7}$/.test(v) || n < 1) throw new InvalidArgumentError('must be a whole number of milliseconds');
  return n;
}

/** Resolves on the first SIGINT/SIGTERM; a second one exits at once. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const on = (signal: NodeJS.Signals) => {
      if (seen) {
        process.stderr.write(`poskey: ${signal} again, exiting without draining\n`);
        process.exit(1);
      }
      seen = true;
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

async function start(opts: StartOptions): Promise<void> {
  // Loaded here, not at CLI start: the platform pulls in every service.
  const { startPlatform } = await import('../start/platform.js');
  const { bannerJson, bannerText } = await import('../start/banner.js');
  const platform = await startPlatform({
    dataDir: opts.dataDir,
    host: opts.host,
    terminalPort: opts.port,
    networkPort: opts.networkPort,
    adminPort: opts.admin ? opts.adminPort : false,
    hsmService: opts.hsmService,
    hsmTcpPort: opts.hsmPort,
    hsmHttpPort: opts.hsmHttpPort,
    seed: opts.seed,
    networkTimeoutMs: opts.networkTimeout,
    logLevel: opts.logLevel,
    ...(opts.database !== undefined ? { database: opts.database } : {}),
  });
  if (opts.json) printJson(bannerJson(platform));
  else process.stdout.write(`${bannerText(platform)}\n`);
  const signal = await untilSignal();
  process.stderr.write(`poskey: ${signal}, draining and stopping\n`);
  await platform.close();
  process.stderr.write('poskey: stopped\n');
  // Everything is closed; a handle some library left behind must not keep the process up.
  setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
}

const HELP = `
Ports (all on --host; 0 = any free port, shown in the banner):
  --port            ${DEFAULT_PORTS.terminal}   POSP host: terminals connect here (unionpay-pos, TPDU + header)
  --network-port    ${DEFAULT_PORTS.network}   card network simulator (network dialect; the host connects)
  --admin-port      ${DEFAULT_PORTS.admin}   admin API (HTTP JSON, Bearer token): merchants, terminals, journal
  --hsm-port        ${DEFAULT_PORTS.hsmTcp}   HSM payShield host commands (TCP, 4-byte header)
  --hsm-http-port   ${DEFAULT_PORTS.hsmHttp}   HSM HTTP API (Bearer token)

Paths (under --data-dir, default ./data; made on first start, reused after):
  hsm/        the host side's HSM: development LMK (lmk.dev.sealed.json), audit.log, hsm-keys.sqlite,
              api-token (HSM HTTP API token)
  host/       poskey.db (registry and journal; or --database), pan-hash.key, zone-keys.json
              (ZPK/ZAK under the host LMK), admin-token, admin-audit.log
  network/    the network's own HSM (lmk.dev.sealed.json: a separate LMK), ledger.sqlite (cards,
              PVK, zone key blocks), zone.json (ZPK/ZAK under the ZMK with KCVs; no clear key)
  terminals/  <TID>/pinpad.json: the sealed PIN pad of each demo terminal (device secret in
              ${DEMO_PINPAD_SECRET_ENV}=${DEMO_PINPAD_SECRET}), plus its STAN, batch and reversals

The ZMK joining the two HSMs is formed from components in memory on the first start and never
written; each side keeps only its LMK key blocks. Delete the data directory to start afresh.

Each part also runs alone: poskey hsm serve | poskey host serve | poskey network serve.

Examples:
  $ npm start
  $ poskey start --data-dir /tmp/poskey --port 0 --network-port 0 --admin-port 0 --no-hsm-service
  $ poskey start --database 'postgres://postgres@127.0.0.1:5432/poskey?schema=demo'
`;

/** Registers `poskey start`. */
export function registerStartCommands(program: Command): void {
  program
    .command('start')
    .description('run the whole platform on embedded defaults: HSM, POSP host, network simulator, demo data')
    .option('--data-dir <dir>', 'data directory', './data')
    .option('--host <addr>', 'listen address of every interface', '127.0.0.1')
    .option('--port <port>', 'POSP host terminal port', portOption, DEFAULT_PORTS.terminal)
    .option('--network-port <port>', 'card network simulator port', portOption, DEFAULT_PORTS.network)
    .option('--admin-port <port>', 'admin API port', portOption, DEFAULT_PORTS.admin)
    .option('--hsm-port <port>', 'HSM payShield TCP port', portOption, DEFAULT_PORTS.hsmTcp)
    .option('--hsm-http-port <port>', 'HSM HTTP API port', portOption, DEFAULT_PORTS.hsmHttp)
    .option('--no-hsm-service', 'do not serve the HSM over TCP/HTTP (the host still uses it in process)')
    .option('--no-admin', 'no admin API')
    .option('--no-seed', 'no demo merchant, terminals or cards')
    .option(
      '--database <url>',
      'host database: postgres://…?schema=x or sqlite:PATH (default SQLite in data/host)',
    )
    .option('--network-timeout <ms>', 'answer 98 when the network is silent this long', msOption, 5000)
    .addOption(
      new Option('--log-level <level>', 'component logs on stderr')
        .choices(['silent', 'error', 'warn', 'info', 'debug'])
        .default('warn'),
    )
    .option('--json', 'print the banner as one JSON object')
    .addHelpText('after', HELP)
    .action(action(start));
}
