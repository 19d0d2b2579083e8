/**
 * `poskey terminal purchase|void|refund|preauth|complete|completion-void` as processes against a
 * real host and network simulator: STAN and batch kept in --data-dir between runs, --json output,
 * exit 1 on a decline, and the one-line exit-2 error for a bad --original-* option.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { toHex } from '../../src/crypto/bytes.js';
import { sqliteFixture } from '../store/helpers.js';
import { CARDS, MID, type RegisteredTerminal, startWorld, type World } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function poskey(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'terminal', ...args], {
    cwd: ROOT,
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out, err })));
}

/** A follow-up subcommand for `amount` naming its original. */
const followUp = (cmd: string, common: string[], amount: string, stan: string, rrn: string) =>
  poskey([cmd, ...common, '--amount', amount, '--original-stan', stan, '--original-rrn', rrn]);

describe('poskey terminal follow-ups', { timeout: 180_000 }, () => {
  let w: World;
  let t: RegisteredTerminal;
  let dir: string;
  let common: string[];

  before(async () => {
    w = await startWorld(await sqliteFixture());
    t = await w.register('C0000001');
    dir = mkdtempSync(join(tmpdir(), 'poskey-terminal-cli-'));
    common = [
      '--port',
      String(w.port),
      '--tid',
      t.tid,
      '--mid',
      MID,
      '--data-dir',
      dir,
      '--tmk-components',
      toHex(t.tmk),
      '--pan',
      CARDS.good.pan,
      '--expiry',
      CARDS.good.expiry,
      '--json',
    ];
  });
  after(async () => {
    await w?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('voids a purchase, refuses the second void (exit 1, 12), pre-authorises, completes and voids the completion', async () => {
    const start = w.network.ledger.balanceOf(CARDS.good.pan);
    const sale = await poskey(['purchase', ...common, '--amount', '12.34', '--pin', CARDS.good.pin]);
    assert.equal(sale.code, 0, sale.err);
    const s = JSON.parse(sale.out) as { stan: string; rrn: string; responseCode: string };
    assert.equal(s.responseCode, '00');
    const ref = ['--original-stan', s.stan, '--original-rrn', s.rrn];
    const voided = await poskey(['void', ...common, '--amount', '12.34', ...ref]);
    assert.equal(voided.code, 0, voided.err);
    const v = JSON.parse(voided.out) as { type: string; responseCode: string; stan: string };
    assert.equal(v.type, 'void');
    assert.equal(v.responseCode, '00');
    assert.ok(Number(v.stan) > Number(s.stan), 'the STAN carries on from the data directory');
    assert.equal(w.network.ledger.balanceOf(CARDS.good.pan), start);
    const again = await poskey(['void', ...common, '--amount', '12.34', ...ref]);
    assert.equal(again.code, 1);
    assert.equal(JSON.parse(again.out).responseCode, '12');

    const pre = await poskey(['preauth', ...common, '--amount', '5.00']);
    assert.equal(pre.code, 0, pre.err);
    const p = JSON.parse(pre.out) as { stan: string; rrn: string };
    const done = await followUp('complete', common, '4.00', p.stan, p.rrn);
    assert.equal(done.code, 0, done.err);
    const d = JSON.parse(done.out) as { stan: string; rrn: string };
    assert.equal(w.network.ledger.balanceOf(CARDS.good.pan), start - 400);
    const undone = await followUp('completion-void', common, '4.00', d.stan, d.rrn);
    assert.equal(undone.code, 0, undone.err);
    assert.equal(w.network.ledger.balanceOf(CARDS.good.pan), start);
  });

  it('refuses a malformed original with one line on stderr and exit 2', async () => {
    const bad = await followUp('refund', common, '1.00', '1', 'short');
    assert.equal(bad.code, 2);
    assert.equal(
      bad.err.trim(),
      'poskey: POSKEY_ERR_CLI_OPTION: --original-rrn: must be the 12-character RRN',
    );
    const date = await poskey([
      'void',
      ...common,
      '--amount',
      '1.00',
      '--original-stan',
      '1',
      '--original-rrn',
      '123456789012',
      '--original-date',
      '1340',
    ]);
    assert.equal(date.code, 2);
    assert.match(date.err, /^poskey: POSKEY_ERR_CLI_OPTION: --original-date: must be MMDD\n$/);
  });
});
