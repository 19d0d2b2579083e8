/**
 * What `poskey start` prints once everything listens: the ports, the data paths, the tokens, the
 * demo data and one command that runs a demo purchase. `bannerJson` is the same as one object.
 */
import { isAbsolute, relative } from 'node:path';
import type { DemoTerminal } from './demo.js';
import type { Platform } from './platform.js';

/** A path as the user should type it: relative to the working directory when below it. */
export function shownPath(path: string, cwd = process.cwd()): string {
  const rel = relative(cwd, path);
  return rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

/** Single-quotes a shell word when it needs it. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/** The arguments of `poskey terminal purchase` for a demo terminal (after `poskey`). */
export function demoPurchaseArgs(p: Platform, t: DemoTerminal, cwd = process.cwd()): string[] {
  const args = ['terminal', 'purchase'];
  if (p.host !== '127.0.0.1')
    args.push('--host', p.host === '0.0.0.0' || p.host === '::' ? '127.0.0.1' : p.host);
  args.push('--port', String(p.ports.terminal), '--tid', t.tid, '--mid', p.demo!.merchant.mid);
  args.push('--data-dir', shownPath(t.dataDir, cwd), '--pinpad-passphrase-env', p.demo!.pinpadSecret.env);
  if (t.keyAlgorithm === 'SM4') args.push('--algorithm', 'sm4');
  args.push('--card', 'unionpay-debit');
  // SM4 PIN blocks are 16 bytes and do not fit field 52 yet: SM4 demo purchases go without PIN.
  if (t.keyAlgorithm !== 'SM4') args.push('--pin', '123456');
  args.push('--amount', '10.00');
  return args;
}

/** The copy-pasteable demo purchase: environment, then `npx poskey terminal purchase …`. */
export function demoCommand(p: Platform, t?: DemoTerminal, cwd = process.cwd()): string | undefined {
  const terminal = t ?? p.demo?.terminals.find((x) => x.keyAlgorithm === 'TDES') ?? p.demo?.terminals[0];
  if (terminal === undefined || p.demo === undefined) return undefined;
  const env = `${p.demo.pinpadSecret.env}=${shellWord(p.demo.pinpadSecret.value)}`;
  return `${env} npx poskey ${demoPurchaseArgs(p, terminal, cwd).map(shellWord).join(' ')}`;
}

function range(tids: string[]): string {
  if (tids.length <= 2) return tids.join(', ');
  return `${tids[0]}…${tids[tids.length - 1]}`;
}

/** The banner text. */
export function bannerText(p: Platform, cwd = process.cwd()): string {
  const h = p.host;
  const row = (name: string, value: string, note = '') =>
    `  ${name.padEnd(26)} ${value.padEnd(28)} ${note}`.trimEnd();
  const lines = ['', 'poskey is running (development LMKs: NOT FOR PRODUCTION)', ''];
  lines.push(
    row('POSP host (terminals)', `${h}:${p.ports.terminal}`, 'ISO 8583 unionpay-pos, TPDU + 6-byte header'),
  );
  if (p.ports.admin !== undefined)
    lines.push(row('admin API', `http://${h}:${p.ports.admin}`, `Bearer ${p.adminToken}`));
  lines.push(row('card network simulator', `${h}:${p.ports.network}`, 'ISO 8583 network dialect'));
  if (p.ports.hsmTcp !== undefined)
    lines.push(row('HSM payShield (TCP)', `${h}:${p.ports.hsmTcp}`, '4-byte header'));
  if (p.ports.hsmHttp !== undefined)
    lines.push(row('HSM HTTP API', `http://${h}:${p.ports.hsmHttp}`, `Bearer ${p.hsmToken}`));
  const dir = (x: string) => `${shownPath(x, cwd)}/`;
  lines.push('', `data in ${shownPath(p.paths.root, cwd)}`);
  lines.push(row(dir(p.paths.hsm), 'host HSM: dev LMK, audit.log, api-token'));
  lines.push(
    row(dir(p.paths.host), 'registry + journal (SQLite), zone-keys.json, admin-token, admin-audit.log'),
  );
  lines.push(row(dir(p.paths.network), 'network HSM dev LMK, ledger.sqlite, zone.json'));
  lines.push(row(dir(p.paths.terminals), 'sealed demo PIN pads, one directory per TID'));
  const demo = p.demo;
  if (demo !== undefined) {
    const tdes = demo.terminals.filter((t) => t.keyAlgorithm === 'TDES').map((t) => t.tid);
    const sm4 = demo.terminals.filter((t) => t.keyAlgorithm === 'SM4').map((t) => t.tid);
    lines.push('', `demo merchant ${demo.merchant.mid} "${demo.merchant.name}" (MCC ${demo.merchant.mcc})`);
    if (tdes.length) lines.push(`  TDES terminals ${range(tdes)}`);
    if (sm4.length) lines.push(`  SM4 terminals  ${range(sm4)}`);
    lines.push(`  PIN pad secret: ${demo.pinpadSecret.env}=${demo.pinpadSecret.value}`);
    lines.push('', 'test cards (test data; PINs published on purpose)');
    for (const c of demo.cards) {
      const name = c.name === '' ? '(--pan … --expiry …)' : `--card ${c.name}`;
      lines.push(
        `  ${c.pan.padEnd(20)} exp ${c.expiry}  PIN ${c.pin.padEnd(7)} ${name.padEnd(26)} ${c.note}`.trimEnd(),
      );
    }
    const cmd = demoCommand(p, undefined, cwd);
    if (cmd !== undefined)
      lines.push('', 'run a demo purchase (in another terminal, from this directory):', `  ${cmd}`);
  }
  lines.push('', 'Ctrl-C stops everything.', '');
  return lines.join('\n');
}

/** The banner as one JSON object. */
export function bannerJson(p: Platform, cwd = process.cwd()): Record<string, unknown> {
  return {
    host: p.host,
    ports: p.ports,
    paths: p.paths,
    adminToken: p.adminToken,
    hsmToken: p.hsmToken,
    demo:
      p.demo === undefined
        ? undefined
        : {
            merchant: p.demo.merchant,
            terminals: p.demo.terminals.map((t) => ({
              tid: t.tid,
              keyAlgorithm: t.keyAlgorithm,
              dataDir: t.dataDir,
              tmkKcv: t.tmkKcv,
            })),
            cards: p.demo.cards,
            pinpadSecret: p.demo.pinpadSecret,
          },
    demoCommand: demoCommand(p, undefined, cwd),
  };
}
