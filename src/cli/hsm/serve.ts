/** `poskey hsm serve|start`: run the payShield TCP interface and the HTTP API. */
import type { Command } from 'commander';
import type { HsmServiceConfigInput } from '../../hsm/service.js';
import { printJson } from '../output.js';
import { AUDIT_FILE, DEFAULT_DATA_DIR, intOption } from './common.js';
import { type Prompter, withPrompter } from './prompt.js';
import { addSecretOptions, unsealSecret } from './secrets.js';

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
  const { readHsmConfigFile } = await import('../../hsm/service.js');
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
  const { startHsmService } = await import('../../hsm/service.js');
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

/** Registers `poskey hsm serve` (alias `start`). */
export function registerServe(hsm: Command): void {
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
