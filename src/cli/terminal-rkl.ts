/**
 * `poskey terminal rkl`: remote key loading from the terminal side (src/terminal/rkl-client.ts).
 * The device certificate and key come from files (`poskey ca issue --role krd`); the PIN pad is
 * new, or the sealed one in `--data-dir` (saved back with the TMK).
 */
import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import { PoskeyError } from '../errors.js';
import { parseCertificate } from '../keyload/x509.js';
import { type MasterKeyAlgorithm, PinPad } from '../terminal/pinpad.js';
import { PinPadStore } from '../terminal/pinpad-store.js';
import { runRkl } from '../terminal/rkl-client.js';
import { describeError, EXIT_FAILURE, EXIT_USAGE, printJson } from './output.js';

interface RklOptions {
  url: string;
  tid: string;
  cert: string;
  key: string;
  vendorCa: string;
  tlsCa?: string;
  algorithm: MasterKeyAlgorithm;
  slot: string;
  dataDir?: string;
  pinpadPassphraseEnv?: string;
  json?: boolean;
}

const optionError = (flag: string, reason: string) =>
  new PoskeyError('POSKEY_ERR_CLI_OPTION', reason, { field: flag });

async function read(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    throw optionError(flag, `cannot read ${path}`);
  }
}

async function openPad(opts: RklOptions, serial: string): Promise<{ pad: PinPad; store?: PinPadStore }> {
  if (opts.pinpadPassphraseEnv === undefined) return { pad: new PinPad({ serial }) };
  if (opts.dataDir === undefined)
    throw optionError('--pinpad-passphrase-env', 'needs --data-dir to keep the PIN pad in');
  const secret = process.env[opts.pinpadPassphraseEnv];
  if (secret === undefined || secret === '')
    throw optionError(
      '--pinpad-passphrase-env',
      `environment variable ${opts.pinpadPassphraseEnv} is not set`,
    );
  const store = await PinPadStore.open(opts.dataDir, secret);
  return { pad: store.load() ?? new PinPad({ serial }), store };
}

async function rklCommand(opts: RklOptions): Promise<void> {
  const slot = Number(opts.slot);
  if (!/^\d+$/.test(opts.slot) || slot > 255) throw optionError('--slot', 'must be a slot number');
  let cert: ReturnType<typeof parseCertificate>;
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    cert = parseCertificate(await read(opts.cert, '--cert'));
    privateKey = createPrivateKey(await read(opts.key, '--key'));
  } catch (e) {
    if (e instanceof PoskeyError && e.code === 'POSKEY_ERR_CLI_OPTION') throw e;
    throw optionError('--cert', 'not a PEM certificate and PKCS#8 key');
  }
  const vendorCa = await read(opts.vendorCa, '--vendor-ca');
  const tlsCa = opts.tlsCa === undefined ? undefined : await read(opts.tlsCa, '--tls-ca');
  const { pad, store } = await openPad(opts, cert.subject.serialNumber ?? '');
  const result = await runRkl({
    url: opts.url,
    tid: opts.tid,
    pad,
    krd: { cert, privateKey },
    vendorCa,
    algorithm: opts.algorithm,
    slot,
    ...(tlsCa === undefined ? {} : { tlsCa }),
  });
  await store?.save(pad);
  if (opts.json) printJson(result);
  else
    process.stdout.write(
      `TMK loaded into slot ${result.slot} of device ${result.serial} for ${result.tid}, KCV ${result.kcv} (${result.tmkSource})\n`,
    );
}

/** Registers `poskey terminal rkl` on the `terminal` command. */
export function registerTerminalRkl(terminal: Command): void {
  terminal
    .command('rkl')
    .description(
      'remote key loading: fetch the TMK from the host over HTTPS (TR-34 two-pass) into the PIN pad',
    )
    .requiredOption('--url <url>', 'the host RKL listener, e.g. https://127.0.0.1:8443')
    .requiredOption('--tid <tid>', 'terminal ID')
    .requiredOption('--cert <file>', 'device (KRD) certificate, PEM')
    .requiredOption('--key <file>', 'device private key, PKCS#8 PEM')
    .requiredOption('--vendor-ca <file>', 'vendor root the host (KDH) certificate must chain to')
    .option('--tls-ca <file>', 'CA of the HTTPS certificate (default: the system CAs)')
    .addOption(new Option('--algorithm <alg>', 'TMK family').choices(['tdes', 'sm4']).default('tdes'))
    .option('--slot <n>', 'TMK slot', '0')
    .option('--data-dir <dir>', 'where the sealed PIN pad is kept')
    .option('--pinpad-passphrase-env <name>', 'environment variable holding the PIN pad passphrase')
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: RklOptions) => {
      try {
        await rklCommand(opts);
      } catch (e) {
        process.stderr.write(`poskey: ${describeError(e)}\n`);
        process.exitCode =
          e instanceof PoskeyError && e.code === 'POSKEY_ERR_CLI_OPTION' ? EXIT_USAGE : EXIT_FAILURE;
      }
    });
}
