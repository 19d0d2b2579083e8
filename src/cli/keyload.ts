/**
 * Key injection from the command line:
 *
 *   poskey inject --port /dev/ttyUSB0 --tid 10000001 --data-dir ./data/host
 *   poskey inject --bulk ports.csv --data-dir ./data/host --report report.csv
 *   poskey doctor --port /dev/ttyUSB0 [--host 127.0.0.1:5000] [--hsm 127.0.0.1:1500]
 *   poskey device serve --pty /tmp/kl/b [--data-dir D --pinpad-passphrase-env VAR]
 *   poskey inject --port P --tid T --data-dir D --kld-cert kdh.pem --kld-key kdh.key --vendor-ca ca.pem
 *   poskey device serve --pty P --cert krd.pem --cert-key krd.key --vendor-ca ca.pem
 *
 * Registry and HSM of `inject`: the host's store (`--database`, or SQLite in `--data-dir`) or its
 * admin API (`--host-admin URL`), and either the development HSM of `--hsm-data-dir` (default: the
 * data dir) or a poskey/payShield HSM over TCP (`--hsm HOST:PORT`). The transport KBPK comes as components: from an environment
 * variable (`--kbpk-components-env`, default POSKEY_KBPK_COMPONENTS) or, in a lab only, on the
 * command line (`--kbpk-components`, warned about). With `--kld-cert --kld-key --vendor-ca` the
 * loader authenticates by certificate (cert-rsa) instead, and no KBPK is needed.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { fromHex, toHex, zeroize } from '../crypto/bytes.js';
import { combineComponents } from '../crypto/keys.js';
import { PoskeyError } from '../errors.js';
import type { HsmClient, KeyAlgorithm } from '../hsm/api.js';
import { AuditLog } from '../hsm/audit.js';
import { createInProcessClient } from '../hsm/client/in-process.js';
import { connectHsm } from '../hsm/client/tcp.js';
import { Hsm } from '../hsm/hsm.js';
import { ensureDevLmk } from '../hsm/seal.js';
import { formatBulkCsv, injectBulk, parsePortsCsv, progressBar } from '../keyload/bulk.js';
import { type CertIdentity, certIdentity } from '../keyload/cert-auth.js';
import { type DeviceEvent, KeyloadDevice } from '../keyload/device.js';
import { DIAGNOSES, type DoctorReport, diagnose, runDoctor } from '../keyload/doctor.js';
import {
  adminRegistry,
  type InjectOptions,
  injectTmk,
  type KeyloadRegistry,
  storeRegistry,
  type TransportKey,
} from '../keyload/loader.js';
import {
  KeyloadErrorCode,
  kbpkAuthenticator,
  keyloadError,
  REQUIRED_APP_ORDER,
  transportKeyHandle,
} from '../keyload/protocol.js';
import { type LinkOptions, parseHostPort, parseTarget } from '../keyload/transport.js';
import { derToPem } from '../keyload/x509.js';
import { openStore } from '../store/open.js';
import { PinPad } from '../terminal/pinpad.js';
import { PinPadStore } from '../terminal/pinpad-store.js';
import { describeError, EXIT_FAILURE, EXIT_USAGE, printJson, printResult } from './output.js';

export const KBPK_ENV = 'POSKEY_KBPK_COMPONENTS';
/** The injection audit log in the data directory (verify with `poskey hsm audit verify`). */
export const KEYLOAD_AUDIT_FILE = 'keyload-audit.log';

interface KbpkOptions {
  kbpkComponents?: string;
  kbpkComponentsEnv: string;
  kbpkAlgorithm: 'tdes' | 'aes';
}

/** cert-rsa files of the loader (`inject`, `doctor`). */
interface KldCertOptions {
  kldCert?: string;
  kldKey?: string;
  vendorCa?: string;
}

interface LineOptions {
  port?: string;
  tcp?: string;
  baud?: string;
  trace?: boolean;
  json?: boolean;
}

interface InjectCliOptions extends KbpkOptions, LineOptions, KldCertOptions {
  tid?: string;
  bulk?: string;
  report?: string;
  concurrency: string;
  dataDir?: string;
  database?: string;
  hsmDataDir?: string;
  hsm?: string;
  hostAdmin?: string;
  adminTokenEnv: string;
  hostKek: string;
  tmkSource: 'auto' | 'hsm' | 'registry';
  slot: string;
  clockTolerance: string;
}

interface DoctorCliOptions extends LineOptions, KldCertOptions {
  kbpkComponents?: string;
  kbpkComponentsEnv: string;
  kbpkAlgorithm: 'tdes' | 'aes';
  host?: string;
  hsm?: string;
  clockTolerance: string;
}

interface ServeCliOptions {
  pty?: string;
  port?: string;
  tcpListen?: string;
  baud?: string;
  kbpkComponents?: string;
  kbpkComponentsEnv: string;
  kbpkAlgorithm: 'tdes' | 'aes';
  serial?: string;
  model?: string;
  firmware?: string;
  apps?: string;
  clockOffset?: string;
  tampered?: boolean;
  dataDir?: string;
  pinpadPassphraseEnv?: string;
  cert?: string;
  certKey?: string;
  vendorCa?: string;
}

function optionError(flag: string, reason: string): PoskeyError {
  return keyloadError(KeyloadErrorCode.OPTION, reason, flag);
}

function integer(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^-?\d+$/.test(value ?? '') || n < min || n > max) {
    throw optionError(flag, `must be a whole number from ${min} to ${max}`);
  }
  return n;
}

/** Runs an action: errors become one stderr line (plus the doctor's cause and fix when known). */
function run<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      process.stderr.write(`poskey: ${describeError(e)}\n`);
      const d = diagnose(e);
      if (d !== undefined) process.stderr.write(`  cause: ${d.cause}\n  fix:   ${d.fix}\n`);
      const usage =
        e instanceof PoskeyError &&
        (e.code === KeyloadErrorCode.OPTION || e.code === KeyloadErrorCode.BULK_FILE);
      process.exitCode = usage ? EXIT_USAGE : EXIT_FAILURE;
    }
  };
}

/** The clear KBPK from components (env or lab flag), XORed. The caller zeroises it. */
function kbpkFrom(opts: KbpkOptions, required: boolean): { clear: Buffer; components: string[] } | undefined {
  let text = opts.kbpkComponents;
  if (text !== undefined) {
    process.stderr.write(
      'poskey: warning: transport key components on the command line (lab use only; use --kbpk-components-env)\n',
    );
  } else {
    text = process.env[opts.kbpkComponentsEnv];
    if (text === undefined || text === '') {
      if (!required) return undefined;
      throw optionError(
        '--kbpk-components-env',
        `set ${opts.kbpkComponentsEnv} to the transport KBPK components (hex, comma-separated)`,
      );
    }
  }
  const parts = text.split(',').map((c, i) => fromHex(c.trim(), `kbpk component ${i + 1}`));
  try {
    const alg = opts.kbpkAlgorithm;
    const clear = parts.length === 1 ? Buffer.from(parts[0]!) : combineComponents(alg, parts).key;
    return { clear, components: parts.map((p) => toHex(p)) };
  } finally {
    zeroize(...parts);
  }
}

async function readPem(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw optionError(flag, `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * cert-rsa credentials from three files given together: a certificate, its key, the vendor CA
 * that must have issued the other side's. Undefined when none of the flags is given.
 * @throws POSKEY_ERR_KEYLOAD_OPTION naming the flag that is missing or unreadable
 */
async function certFiles(
  flags: readonly [cert: string, key: string, ca: string],
  paths: readonly [string | undefined, string | undefined, string | undefined],
): Promise<CertIdentity | undefined> {
  if (paths.every((p) => p === undefined)) return undefined;
  const missing = paths.indexOf(undefined);
  if (missing >= 0) throw optionError(flags[missing]!, `cert-rsa needs ${flags.join(', ')} together`);
  const [certificate, privateKey, vendorCa] = await Promise.all(paths.map((p, i) => readPem(p!, flags[i]!)));
  return certIdentity({ certificate: certificate!, privateKey: privateKey!, vendorCa: vendorCa! }, flags[0]);
}

const loaderCert = (o: KldCertOptions) =>
  certFiles(['--kld-cert', '--kld-key', '--vendor-ca'], [o.kldCert, o.kldKey, o.vendorCa]);

function linkOptions(opts: LineOptions): LinkOptions {
  return opts.trace ? { trace: (l) => process.stderr.write(`${l}\n`) } : {};
}

function lineTarget(opts: LineOptions) {
  if (opts.port !== undefined && opts.tcp !== undefined)
    throw optionError('--port', 'give --port or --tcp, not both');
  const baud = opts.baud === undefined ? undefined : integer(opts.baud, '--baud', 50, 4_000_000);
  if (opts.port !== undefined) return parseTarget(opts.port, baud);
  if (opts.tcp !== undefined) return parseTarget(`tcp:${opts.tcp}`);
  return undefined;
}

const KEK_ALGORITHM: Readonly<Record<string, KeyAlgorithm>> = {
  'tdes:16': 'tdes2',
  'tdes:24': 'tdes3',
  'aes:16': 'aes128',
  'aes:24': 'aes192',
  'aes:32': 'aes256',
};

interface InjectContext {
  hsm: HsmClient;
  registry: KeyloadRegistry;
  transportKey?: TransportKey;
  certAuth?: CertIdentity;
  audit?: AuditLog;
  close(): Promise<void>;
}

/** Opens the store, the HSM and the audit log, and imports the KBPK into the HSM. */
async function injectContext(opts: InjectCliOptions): Promise<InjectContext> {
  if (opts.hostAdmin === undefined && opts.dataDir === undefined && opts.database === undefined) {
    throw optionError('--data-dir', 'give --data-dir (the host data directory), --database or --host-admin');
  }
  if (
    opts.hostAdmin !== undefined &&
    opts.hsm === undefined &&
    opts.hsmDataDir === undefined &&
    opts.dataDir === undefined
  ) {
    throw optionError('--hsm', 'with --host-admin, give the HSM: --hsm HOST:PORT or --hsm-data-dir');
  }
  const token = opts.hostAdmin === undefined ? undefined : process.env[opts.adminTokenEnv];
  if (opts.hostAdmin !== undefined && (token === undefined || token === '')) {
    throw optionError('--admin-token-env', `set ${opts.adminTokenEnv} to the admin API token`);
  }
  const certAuth = await loaderCert(opts);
  if (certAuth !== undefined) {
    // cert-rsa delivers a TR-34 token: the admin API imports TR-31 only, the TCP HSM builds no tokens.
    if (opts.hostAdmin !== undefined)
      throw optionError(
        '--host-admin',
        'cert-rsa (--kld-cert) binds through the host store: give --data-dir or --database',
      );
    if (opts.hsm !== undefined)
      throw optionError(
        '--hsm',
        'cert-rsa (--kld-cert) needs the development HSM (TR-34 tokens): drop --hsm',
      );
  }
  const material = certAuth === undefined ? kbpkFrom(opts, true)! : undefined;
  const closers: (() => unknown)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c();
  };
  try {
    let registry: KeyloadRegistry;
    if (opts.hostAdmin !== undefined) {
      registry = adminRegistry({ url: opts.hostAdmin, token: token!, kek: opts.hostKek });
    } else {
      const store = await openStore(opts.database ?? { dataDir: opts.dataDir! });
      closers.push(() => store.close());
      registry = storeRegistry(store);
    }
    let hsm: HsmClient;
    if (opts.hsm !== undefined) {
      hsm = await connectHsm(parseHostPort(opts.hsm, '--hsm'));
    } else {
      const dev = await ensureDevLmk(opts.hsmDataDir ?? opts.dataDir ?? '.');
      process.stderr.write(`${dev.warning}\n`);
      const local = new Hsm({ lmks: dev.lmks });
      hsm = createInProcessClient(local, { actor: 'keyload' });
      closers.push(() => local.destroy());
    }
    closers.push(() => hsm.close());
    const ctx: InjectContext = { hsm, registry, close };
    if (certAuth !== undefined) ctx.certAuth = certAuth;
    else ctx.transportKey = await importKbpk(hsm, opts, material!.clear, closers);
    if (opts.dataDir !== undefined) {
      const audit = await AuditLog.open(join(opts.dataDir, KEYLOAD_AUDIT_FILE));
      closers.push(() => audit.close());
      ctx.audit = audit;
    }
    return ctx;
  } catch (e) {
    await close();
    throw e;
  } finally {
    if (material !== undefined) zeroize(material.clear);
  }
}

/** Imports the clear KBPK into the HSM as a KEK and makes its line authenticator. */
async function importKbpk(
  hsm: HsmClient,
  opts: KbpkOptions,
  clear: Buffer,
  closers: (() => unknown)[],
): Promise<TransportKey> {
  const handle = transportKeyHandle(opts.kbpkAlgorithm, clear);
  const auth = kbpkAuthenticator(handle);
  handle.destroy();
  closers.push(() => auth.destroy());
  const algorithm = KEK_ALGORITHM[`${opts.kbpkAlgorithm}:${clear.length}`]!;
  // Two components so the import never takes a clear key: the second is the key XOR a random first.
  const c1 = randomBytes(clear.length);
  const c2 = Buffer.from(clear.map((b, i) => b ^ c1[i]!));
  const kek = await hsm.importKey(
    { keyType: 'KEK', algorithm, source: { kind: 'components', components: [toHex(c1), toHex(c2)] } },
    'keyload',
  );
  zeroize(c1, c2);
  return { kbpk: kek.keyBlock, auth };
}

async function injectCommand(opts: InjectCliOptions): Promise<void> {
  const single = lineTarget(opts);
  if ((single === undefined) === (opts.bulk === undefined)) {
    throw optionError('--port', 'give one of --port, --tcp or --bulk');
  }
  if (single !== undefined && opts.tid === undefined)
    throw optionError('--tid', 'which terminal? give --tid');
  const entries = opts.bulk === undefined ? undefined : parsePortsCsv(await readFile(opts.bulk, 'utf8'));
  const ctx = await injectContext(opts);
  try {
    const common: Omit<InjectOptions, 'target' | 'tid'> = {
      hsm: ctx.hsm,
      registry: ctx.registry,
      ...(ctx.transportKey ? { transportKey: ctx.transportKey } : {}),
      ...(ctx.certAuth ? { certAuth: ctx.certAuth } : {}),
      tmkSource: opts.tmkSource,
      slot: integer(opts.slot, '--slot', 0, 254),
      clockToleranceMs: integer(opts.clockTolerance, '--clock-tolerance', 0, 10 * 365 * 86400) * 1000,
      link: linkOptions(opts),
      ...(ctx.audit ? { audit: ctx.audit } : {}),
    };
    if (entries === undefined) {
      const report = await injectTmk({ ...common, target: single!, tid: opts.tid! });
      printResult({ ...report }, opts.json === true);
      return;
    }
    const tty = process.stderr.isTTY === true;
    const bulk = await injectBulk({
      ...common,
      entries,
      concurrency: integer(opts.concurrency, '--concurrency', 1, 1024),
      onProgress: (p) => {
        if (tty) process.stderr.write(`\r${progressBar(p)}`);
        else if (p.last)
          process.stderr.write(
            `${progressBar(p)}  ${p.last.port} ${p.last.tid} ${p.last.status}${p.last.code ? ` ${p.last.code}` : ''}\n`,
          );
      },
    });
    if (tty) process.stderr.write('\n');
    const csv = formatBulkCsv(bulk.results);
    if (opts.report !== undefined) await writeFile(opts.report, csv);
    if (opts.json)
      printJson({ ok: bulk.ok, failed: bulk.failed, durationMs: bulk.durationMs, results: bulk.results });
    else if (opts.report === undefined) process.stdout.write(csv);
    else process.stdout.write(`${bulk.ok} injected, ${bulk.failed} failed; report in ${opts.report}\n`);
    if (bulk.failed > 0) process.exitCode = EXIT_FAILURE;
  } finally {
    await ctx.close();
  }
}

function formatDoctor(r: DoctorReport): string {
  const lines = [`poskey doctor (${r.platform})${r.target ? ` on ${r.target}` : ''}`];
  if (r.device)
    lines.push(
      `device: ${r.device.vendor} ${r.device.model}, serial ${r.device.serial}, firmware ${r.device.firmware}`,
    );
  for (const c of r.checks) {
    const mark = c.status === 'pass' ? 'ok  ' : c.status === 'fail' ? 'FAIL' : 'skip';
    lines.push(
      `  ${mark} ${c.step.padEnd(13)} ${c.status === 'fail' ? `${c.code}: ${DIAGNOSES[c.code].title}` : c.detail}`,
    );
    if (c.status === 'fail') {
      lines.push(`       found: ${c.detail}`, `       cause: ${c.cause}`, `       fix:   ${c.fix}`);
    }
  }
  lines.push(
    r.ok ? 'all checks passed' : `${r.checks.filter((c) => c.status === 'fail').length} problem(s) found`,
  );
  return `${lines.join('\n')}\n`;
}

async function doctorCommand(opts: DoctorCliOptions): Promise<void> {
  const target = lineTarget(opts);
  // --vendor-ca alone checks the device certificate; with --kld-cert/--kld-key it authenticates too.
  const certAuth =
    opts.kldCert === undefined && opts.kldKey === undefined ? undefined : await loaderCert(opts);
  const vendorCa = opts.vendorCa === undefined ? undefined : await readPem(opts.vendorCa, '--vendor-ca');
  const material = kbpkFrom(opts, false);
  let auth: ReturnType<typeof kbpkAuthenticator> | undefined;
  if (material !== undefined) {
    const h = transportKeyHandle(opts.kbpkAlgorithm, material.clear);
    zeroize(material.clear);
    auth = kbpkAuthenticator(h);
    h.destroy();
  }
  try {
    const report = await runDoctor({
      ...(target ? { target } : {}),
      ...(opts.host ? { host: opts.host } : {}),
      ...(opts.hsm ? { hsm: opts.hsm } : {}),
      ...(auth ? { transportKey: auth } : {}),
      ...(certAuth ? { certAuth } : {}),
      ...(vendorCa ? { vendorCa } : {}),
      clockToleranceMs: integer(opts.clockTolerance, '--clock-tolerance', 0, 10 * 365 * 86400) * 1000,
      link: linkOptions(opts),
    });
    if (opts.json) printJson(report);
    else process.stdout.write(formatDoctor(report));
    if (!report.ok) process.exitCode = EXIT_FAILURE;
  } finally {
    auth?.destroy();
  }
}

function describeEvent(e: DeviceEvent): string {
  switch (e.kind) {
    case 'hello':
      return 'key loading device connected';
    case 'authenticated':
      return 'mutual authentication ok';
    case 'refused':
      return `refused: ${e.reason}`;
    case 'staged':
      return `TMK received for slot ${e.slot}, KCV ${e.kcv}`;
    case 'bound':
      return `TMK committed to slot ${e.slot}, KCV ${e.kcv}, bound to TID ${e.tid}`;
  }
}

async function serveCommand(opts: ServeCliOptions): Promise<void> {
  const path = opts.pty ?? opts.port;
  if ((path === undefined) === (opts.tcpListen === undefined)) {
    throw optionError('--pty', 'give --pty PATH (or --port) or --tcp-listen [HOST:]PORT');
  }
  const cert = await certFiles(
    ['--cert', '--cert-key', '--vendor-ca'],
    [opts.cert, opts.certKey, opts.vendorCa],
  );
  // A certificate-only device needs no KBPK; with neither the device could not authenticate at all.
  const material = kbpkFrom(opts, cert === undefined);
  let store: PinPadStore | undefined;
  if (opts.pinpadPassphraseEnv !== undefined) {
    if (opts.dataDir === undefined) throw optionError('--pinpad-passphrase-env', 'needs --data-dir');
    const secret = process.env[opts.pinpadPassphraseEnv];
    if (secret === undefined || secret === '')
      throw optionError('--pinpad-passphrase-env', `${opts.pinpadPassphraseEnv} is not set`);
    store = await PinPadStore.open(opts.dataDir, secret);
  }
  const apps =
    opts.apps === undefined
      ? REQUIRED_APP_ORDER
      : opts.apps
          .split(',')
          .map((a) => a.trim())
          .filter((a) => a !== '');
  const pad =
    store?.load() ??
    new PinPad({
      ...(opts.serial ? { serial: opts.serial } : {}),
      model: opts.model ?? 'poskey-sim',
      firmware: opts.firmware ?? '1.0.0',
      apps,
    });
  const device = new KeyloadDevice({
    pad,
    ...(material ? { kbpk: { algorithm: opts.kbpkAlgorithm, key: material.clear } } : {}),
    ...(cert
      ? {
          certificate: cert.pem,
          certAuth: { privateKey: cert.privateKey, vendorCa: derToPem(cert.vendorCa.der, 'CERTIFICATE') },
        }
      : {}),
    ...(store ? { store } : {}),
    ...(opts.clockOffset !== undefined
      ? { clockOffsetMs: integer(opts.clockOffset, '--clock-offset', -1e9, 1e9) * 1000 }
      : {}),
    onEvent: (e) => process.stderr.write(`device ${pad.device.serial}: ${describeEvent(e)}\n`),
  });
  if (material !== undefined) zeroize(material.clear);
  if (opts.tampered) device.tamper();
  const stops: (() => Promise<unknown>)[] = [];
  if (path !== undefined) {
    const baud = opts.baud === undefined ? undefined : integer(opts.baud, '--baud', 50, 4_000_000);
    const link = await device.listenSerial(path, baud === undefined ? {} : { baudRate: baud });
    stops.push(() => link.close());
    process.stdout.write(
      `device ${pad.device.serial} (${pad.device.model}) serving key loading on ${path}\n`,
    );
  } else {
    const m = /^(?:(.+):)?(\d{1,5})$/.exec(opts.tcpListen!);
    if (m === null) throw optionError('--tcp-listen', 'must be [HOST:]PORT');
    const server = await device.listenTcp({ host: m[1] ?? '127.0.0.1', port: Number(m[2]) });
    const a = server.address() as { address: string; port: number };
    stops.push(() => new Promise((r) => server.close(r)));
    process.stdout.write(
      `device ${pad.device.serial} (${pad.device.model}) serving key loading on tcp:${a.address}:${a.port}\n`,
    );
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  for (const s of stops) await s().catch(() => undefined);
  device.destroy();
  store?.close();
}

function kbpkOptions(cmd: Command): Command {
  return cmd
    .option(
      '--kbpk-components-env <VAR>',
      'environment variable with the transport KBPK components (hex, comma-separated)',
      KBPK_ENV,
    )
    .option('--kbpk-components <HEX,HEX>', 'transport KBPK components on the command line (lab only)')
    .addOption(
      new Option('--kbpk-algorithm <alg>', 'transport KBPK algorithm')
        .choices(['tdes', 'aes'])
        .default('tdes'),
    );
}

function kldCertOptions(cmd: Command): Command {
  return cmd
    .option('--kld-cert <PEM>', "cert-rsa: poskey's KDH certificate (instead of a transport KBPK)")
    .option('--kld-key <PEM>', 'cert-rsa: the private key of --kld-cert')
    .option('--vendor-ca <PEM>', 'cert-rsa: the vendor CA root the device certificate must chain to');
}

/** Registers `inject`, `doctor` and `device serve`. */
export function registerKeyloadCommands(program: Command): void {
  kbpkOptions(
    kldCertOptions(program.command('inject'))
      .description('inject a terminal master key over the key-loading port (poskey as key loading device)')
      .option('--port <PATH>', 'serial port of the terminal (/dev/ttyUSB0, COM3)')
      .option('--tcp <HOST:PORT>', 'key-loading port over TCP')
      .option('--bulk <FILE>', 'CSV of port,tid[,baud]: inject all in parallel')
      .option('--tid <TID>', 'terminal ID to inject and bind')
      .option('--baud <N>', 'serial speed', '115200')
      .option('--data-dir <DIR>', 'host data directory (store, development HSM, keyload audit log)')
      .option('--database <URL>', 'host database instead of SQLite in --data-dir')
      .option('--host-admin <URL>', "the host's admin API as the registry instead of its store")
      .option(
        '--admin-token-env <VAR>',
        'environment variable with the admin API token',
        'POSKEY_ADMIN_TOKEN',
      )
      .option(
        '--host-kek <NAME>',
        "name of the transport KBPK in the host's registry (--host-admin)",
        'factory',
      )
      .option('--hsm-data-dir <DIR>', 'development HSM directory (default: --data-dir)')
      .option(
        '--hsm <HOST:PORT>',
        'HSM over TCP (poskey hsm serve / payShield) instead of the development HSM',
      )
      .addOption(
        new Option('--tmk-source <src>', 'where the TMK comes from')
          .choices(['auto', 'hsm', 'registry'])
          .default('auto'),
      )
      .option('--slot <N>', 'PIN pad slot of the TMK', '0')
      .option('--clock-tolerance <SECONDS>', 'largest accepted PC/device clock difference', '300')
      .option('--concurrency <N>', 'bulk: ports injected at once', '32')
      .option('--report <FILE>', 'bulk: write the per-device CSV report here')
      .option('--trace', 'print every frame and control byte on stderr')
      .option('--json', 'print JSON'),
  ).action(run(injectCommand));

  kbpkOptions(
    kldCertOptions(program.command('doctor'))
      .description('test the key-injection chain step by step and name each failure with its cause and fix')
      .option('--port <PATH>', 'serial port of the terminal')
      .option('--tcp <HOST:PORT>', 'key-loading port over TCP')
      .option('--baud <N>', 'serial speed', '115200')
      .option('--host <HOST:PORT>', 'POSP host terminal port to check')
      .option('--hsm <HOST:PORT>', 'HSM to check')
      .option('--clock-tolerance <SECONDS>', 'largest accepted PC/device clock difference', '300')
      .option('--trace', 'print every frame and control byte on stderr')
      .option('--json', 'print JSON'),
  ).action(run(doctorCommand));

  const device = program.command('device').description('simulated terminal devices');
  kbpkOptions(
    device
      .command('serve')
      .description("serve a simulated terminal's key-loading port (device side) on a pty or TCP")
      .option('--pty <PATH>', 'serial device to serve on (one end of a socat pty pair)')
      .option('--port <PATH>', 'same as --pty')
      .option('--tcp-listen <[HOST:]PORT>', 'serve on TCP instead')
      .option('--baud <N>', 'serial speed')
      .option('--serial <SN>', 'device serial number')
      .option('--model <NAME>', 'device model')
      .option('--firmware <VERSION>', 'firmware version')
      .option(
        '--apps <A,B,…>',
        `installed applications in install order (default ${REQUIRED_APP_ORDER.join(',')})`,
      )
      .option('--clock-offset <SECONDS>', 'device clock offset from the PC')
      .option('--tampered', 'start in the tamper ("security attack") state')
      .option('--data-dir <DIR>', 'terminal data directory (sealed PIN pad store)')
      .option('--pinpad-passphrase-env <VAR>', 'environment variable with the PIN pad store secret')
      .option('--cert <PEM>', "cert-rsa: the device's KRD certificate (a KBPK becomes optional)")
      .option('--cert-key <PEM>', 'cert-rsa: the private key of --cert')
      .option('--vendor-ca <PEM>', 'cert-rsa: the vendor CA root key loading devices must chain to'),
  ).action(run(serveCommand));
}
