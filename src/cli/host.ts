/**
 * `poskey host`: the POSP host.
 *
 *   serve | start   listen for terminals, forward to the card network, until SIGTERM/SIGINT
 *   network rekey | status   zone key exchange on a running host (through its admin API)
 *
 * Config: a JSON file (`--config`) with flags over it, checked by src/host/config.ts. Secrets are
 * never flags: the ZMK components come from POSKEY_ZMK_COMPONENTS (only needed the first time, or
 * after the zone changed), the LMK passphrase of the in-process HSM from POSKEY_LMK_PASSPHRASE.
 */
import type { Command } from 'commander';
import { PoskeyError } from '../errors.js';
import { registerDayEnd } from './host-day-end.js';
import { registerHostNetworkCommands } from './host-network.js';
import { action, printJson } from './output.js';

interface ServeOptions {
  config?: string;
  dataDir?: string;
  database?: string;
  panKeyFile?: string;
  nodeId?: string;
  host?: string;
  port?: number;
  network?: string;
  networkTimeout?: string;
  zoneFile?: string;
  hsm?: string;
  hsmDataDir?: string;
  dev?: boolean;
  maxTakAge?: string;
  maxConnections?: number;
  idleTimeout?: string;
  drainTimeout?: string;
  mac?: string;
  acquirerId?: string;
  journal?: string;
  logLevel?: string;
  json?: boolean;
  rklProfile?: string[];
  rklTlsCert?: string;
  rklTlsKey?: string;
  rklHost?: string;
  rklPort?: number;
}

function optionError(field: string, reason: string): PoskeyError {
  return new PoskeyError('POSKEY_ERR_CLI_OPTION', reason, { field });
}

function intOption(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max)
      throw optionError(name, `must be an integer from ${min} to ${max}`);
    return n;
  };
}

/** `host:port` → its parts. */
export function parseAddress(value: string, field: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port < 1 || port > 65535) throw optionError(field, 'must be host:port');
  return { host: m[1]!, port };
}

/** Flags over the config file; only flags actually given override. Exported for tests. */
export async function hostServeConfig(opts: ServeOptions): Promise<Record<string, unknown>> {
  const { readHostConfigFile } = await import('../host/config.js');
  const merged: Record<string, unknown> =
    opts.config === undefined ? {} : await readHostConfigFile(opts.config);
  const flags: Record<string, unknown> = {
    dataDir: opts.dataDir,
    database: opts.database,
    panKeyFile: opts.panKeyFile,
    nodeId: opts.nodeId,
    host: opts.host,
    port: opts.port,
    maxTakAge: opts.maxTakAge,
    maxConnections: opts.maxConnections,
    idleTimeout: opts.idleTimeout,
    drainTimeout: opts.drainTimeout,
    macAlgorithm: opts.mac,
    acquirerId: opts.acquirerId,
    logLevel: opts.logLevel,
  };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) merged[k] = v;
  const section = (name: string) => ({ ...((merged[name] as Record<string, unknown> | undefined) ?? {}) });
  if (opts.network !== undefined || opts.networkTimeout !== undefined) {
    const network = section('network');
    if (opts.network !== undefined) Object.assign(network, parseAddress(opts.network, '--network'));
    if (opts.networkTimeout !== undefined) network.timeout = opts.networkTimeout;
    merged.network = network;
  }
  if (opts.zoneFile !== undefined) merged.zone = { ...section('zone'), file: opts.zoneFile };
  if (opts.journal !== undefined) merged.journal = { ...section('journal'), mode: opts.journal };
  if (opts.hsm !== undefined && opts.hsm !== 'in-process') {
    merged.hsm = { mode: 'tcp', ...parseAddress(opts.hsm, '--hsm') };
  } else if (opts.hsm === 'in-process' || opts.hsmDataDir !== undefined || opts.dev !== undefined) {
    const hsm = section('hsm');
    merged.hsm = {
      ...(hsm.mode === 'in-process' ? hsm : {}),
      mode: 'in-process',
      ...(opts.hsmDataDir !== undefined ? { dataDir: opts.hsmDataDir } : {}),
      ...(opts.dev !== undefined ? { dev: opts.dev } : {}),
    };
  }
  return merged;
}

/** `--rkl-*` flags as the RKL config, or undefined (RKL off) without `--rkl-profile`. Exported for tests. */
export function rklServeConfig(opts: ServeOptions): Record<string, unknown> | undefined {
  if (opts.rklProfile === undefined || opts.rklProfile.length === 0) return undefined;
  if (opts.rklTlsCert === undefined || opts.rklTlsKey === undefined)
    throw optionError('--rkl-tls-cert', 'RKL needs --rkl-tls-cert and --rkl-tls-key');
  const profiles = opts.rklProfile.map((p) => {
    const [vendorCa, cert, key, ...rest] = p.split(',');
    if (!vendorCa || !cert || !key || rest.length > 0)
      throw optionError('--rkl-profile', 'must be VENDOR_CA.pem,KDH_CERT.pem,KDH_KEY.pem');
    return { vendorCa, kdh: { cert, key } };
  });
  return {
    host: opts.rklHost ?? '127.0.0.1',
    port: opts.rklPort ?? 8443,
    tls: { cert: opts.rklTlsCert, key: opts.rklTlsKey },
    profiles,
  };
}

async function serve(opts: ServeOptions): Promise<void> {
  const config = await hostServeConfig(opts);
  const { startHostService } = await import('../host/service.js');
  const rkl = rklServeConfig(opts);
  const service = await startHostService(config, { handleSignals: true, ...(rkl ? { rkl } : {}) });
  const ready = {
    host: service.config.host,
    port: service.port,
    network: `${service.config.network.host}:${service.config.network.port}`,
    database: service.store.dialect,
    journal: service.config.journal.mode,
    ...(service.rklPort === undefined ? {} : { rklPort: service.rklPort }),
  };
  if (opts.json) printJson(ready);
  else
    process.stdout.write(
      `terminal port: ${ready.port}\nnetwork: ${ready.network}\ndatabase: ${ready.database}\n${
        service.rklPort === undefined ? '' : `rkl port: ${service.rklPort}\n`
      }`,
    );
  await service.closed;
}

function registerServe(host: Command): void {
  host
    .command('serve')
    .alias('start')
    .description('run the POSP host: terminals in, card network out (SIGTERM drains)')
    .option('--config <file>', 'JSON config file (flags override it)')
    .option(
      '--data-dir <dir>',
      'host data directory: SQLite database, PAN key, zone keys (default ./data/host)',
    )
    .option('--database <url>', 'postgres://… or sqlite:PATH (default SQLite in the data directory)')
    .option(
      '--pan-key-file <file>',
      'PAN hash key (hex); required with PostgreSQL, shared by every host process',
    )
    .option('--node-id <id>', 'names this process in journal rows (default: the host name)')
    .option('--host <addr>', 'terminal listen address (default 127.0.0.1)')
    .option('--port <port>', 'terminal port (default 5858; 0 = any free port)', intOption('--port', 0, 65535))
    .option('--network <host:port>', 'the card network (default 127.0.0.1:5859)')
    .option(
      '--network-timeout <duration>',
      "answer 98 after this long without the network's answer (default 5s)",
    )
    .option(
      '--zone-file <file>',
      'zone file (ZPK/ZAK under the ZMK); ZMK components in POSKEY_ZMK_COMPONENTS',
    )
    .option('--hsm <mode>', "'in-process' (default) or host:port of a poskey HSM / payShield")
    .option('--hsm-data-dir <dir>', 'data directory of the in-process HSM (default ./data/hsm)')
    .option('--dev', 'in-process HSM on the development LMK (loud warning)')
    .option('--max-tak-age <duration>', 'working keys older than this get A7 (default 24h)')
    .option(
      '--max-connections <n>',
      'connections beyond this are refused (default 10000)',
      intOption('--max-connections', 1, 1_000_000),
    )
    .option('--idle-timeout <duration>', 'close idle terminal connections after this (default 2m)')
    .option('--drain-timeout <duration>', 'how long SIGTERM waits for in-flight transactions (default 15s)')
    .option('--mac <algorithm>', 'field 64 MAC: unionpay-ecb (default) or x919')
    .option('--acquirer-id <digits>', 'field 32 (default 00010000)')
    .option('--journal <mode>', 'write-ahead (default), overlap or outcome')
    .option('--log-level <level>', 'silent, error, warn, info (default), debug or trace; logs go to stderr')
    .option(
      '--rkl-profile <files>',
      'remote key loading: VENDOR_CA.pem,KDH_CERT.pem,KDH_KEY.pem (RSA or SM2; repeat for both)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--rkl-tls-cert <file>', 'HTTPS certificate of the RKL listener')
    .option('--rkl-tls-key <file>', 'HTTPS key of the RKL listener')
    .option('--rkl-host <addr>', 'RKL listen address (default 127.0.0.1)')
    .option(
      '--rkl-port <port>',
      'RKL HTTPS port (default 8443; 0 = any free port)',
      intOption('--rkl-port', 0, 65535),
    )
    .option('--json', 'print one JSON object with the port once listening')
    .action(action(serve));
}

/** Registers `poskey host` and its subcommands on `program`. */
export function registerHostCommands(program: Command): void {
  const host = program
    .command('host')
    .description('POSP host: terminal sign-in, purchase, balance, reversal');
  registerServe(host);
  registerDayEnd(host);
  registerHostNetworkCommands(host);
}
