/** `poskey hsm diag`: diagnostics of a running HSM over TCP (NC) or the HTTP API. */
import { readFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Command } from 'commander';
import { PoskeyError } from '../../errors.js';
import { action, printJson, printResult } from '../output.js';
import { ERR_INPUT, inputError, intOption } from './common.js';

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
  const { connectHsm } = await import('../../hsm/client/tcp.js');
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

/** Registers `poskey hsm diag`. */
export function registerDiag(hsm: Command): void {
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
