/**
 * `poskey start` as a user runs it: spawned as a process on a fresh data directory, it prints the
 * banner; the demo purchase command it prints is run as printed (with `npx poskey` standing for
 * this checkout's CLI) and is approved; `poskey terminal add|list|block` work against it; SIGTERM
 * stops it with exit code 0. A second start reuses the data directory.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];
const CWD = process.cwd();

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function startCli(args: string[]): Running {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: CWD, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function waitFor(r: Running, pattern: RegExp, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!pattern.test(r.stdout())) {
    if (r.child.exitCode !== null) throw new Error(`exited ${r.child.exitCode}: ${r.stderr()}`);
    if (Date.now() > until) throw new Error(`no ${pattern} within ${ms} ms; stderr: ${r.stderr()}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Runs a command line through the shell (it carries an environment assignment), with `npx poskey` → this CLI. */
function runShell(command: string): Promise<{ code: number | null; out: string; err: string }> {
  const local = command.replace('npx poskey', `${JSON.stringify(process.execPath)} ${CLI.join(' ')}`);
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', local], { cwd: CWD, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    child.once('exit', (code) => resolve({ code, out, err }));
  });
}

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return runShell(`npx poskey ${args.map((a) => `'${a}'`).join(' ')}`);
}

describe('poskey start', () => {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-start-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const args = [
    'start',
    '--data-dir',
    dir,
    '--port',
    '0',
    '--network-port',
    '0',
    '--admin-port',
    '0',
    '--hsm-port',
    '0',
    '--hsm-http-port',
    '0',
  ];

  it('comes up, prints ports and one demo purchase command that is approved, and stops on SIGTERM with 0', async () => {
    const started = Date.now();
    const r = startCli(args);
    try {
      await waitFor(r, /Ctrl-C stops everything/, 20_000);
      const upMs = Date.now() - started;
      const out = r.stdout();
      assert.match(out, /POSP host \(terminals\) +127\.0\.0\.1:\d+/);
      assert.match(out, /admin API +http:\/\/127\.0\.0\.1:\d+ +Bearer \S{16,}/);
      assert.match(out, /HSM payShield \(TCP\) +127\.0\.0\.1:\d+/);
      assert.match(out, /T0000001…T0000005/);
      const command = out
        .split('\n')
        .find((l) => l.includes('npx poskey terminal purchase'))
        ?.trim();
      assert.ok(command, 'the banner prints the demo command');
      const purchase = await runShell(command);
      assert.equal(purchase.code, 0, purchase.err);
      assert.match(purchase.out, /outcome: +approved/);
      assert.match(purchase.out, /response MAC: +verified/);

      const admin = out.match(/admin API +(http:\/\/\S+)/)![1]!;
      const adminArgs = ['--admin', admin, '--token-file', join(dir, 'host', 'admin-token')];
      const added = await cli([
        'terminal',
        'add',
        '--tid',
        'T0000200',
        '--mid',
        '898310048990001',
        '--generate',
        '--export-under',
        'factory',
        '--json',
        ...adminArgs,
      ]);
      assert.equal(added.code, 0, added.err);
      assert.match(JSON.parse(added.out).tmk.delivery.cryptogram, /^[0-9A-F]{32}$/);
      const blocked = await cli(['terminal', 'block', '--tid', 'T0000001', ...adminArgs]);
      assert.equal(blocked.code, 0, blocked.err);
      const list = await cli(['terminal', 'list', '--state', 'blocked', ...adminArgs]);
      assert.match(list.out, /^T0000001 .*blocked/m);
      const refused = await runShell(command);
      assert.equal(refused.code, 1);
      assert.match(refused.out, /97/);
      const unreachable = await cli([
        'terminal',
        'list',
        '--admin',
        'http://127.0.0.1:1',
        '--token-file',
        join(dir, 'host', 'admin-token'),
      ]);
      assert.equal(unreachable.code, 2);
      assert.match(unreachable.err, /POSKEY_ERR_CLI_ADMIN/);
      const noToken = await cli(['terminal', 'list', '--admin', admin, '--token-file', join(dir, 'nope')]);
      assert.match(noToken.err, /POSKEY_ERR_CLI_OPTION: --token-file/);

      r.child.kill('SIGTERM');
      assert.equal(await r.exited, 0, r.stderr());
      assert.match(r.stderr(), /stopped/);
      assert.ok(upMs < 20_000);
    } finally {
      r.child.kill('SIGKILL');
    }
  });

  it('restarts on the same data directory: no new keys, the pads still work', async () => {
    const started = performance.now();
    const r = startCli([...args, '--no-hsm-service', '--json']);
    try {
      await waitFor(r, /"demoCommand"/, 20_000);
      const upMs = performance.now() - started;
      const banner = JSON.parse(r.stdout().trim().split('\n').at(-1)!) as {
        demoCommand: string;
        ports: { hsmTcp?: number };
      };
      assert.equal(banner.ports.hsmTcp, undefined);
      const purchase = await runShell(
        banner.demoCommand
          .replace('--tid T0000001', '--tid T0000002')
          .replaceAll('terminals/T0000001', 'terminals/T0000002'),
      );
      assert.equal(purchase.code, 0, purchase.err + purchase.out);
      r.child.kill('SIGINT');
      assert.equal(await r.exited, 0);
      assert.ok(upMs < 10_000, `restart took ${upMs} ms`);
    } finally {
      r.child.kill('SIGKILL');
    }
  });

  it('--help documents every port and path', async () => {
    const help = await cli(['start', '--help']);
    assert.equal(help.code, 0);
    for (const word of [
      '--port',
      '--network-port',
      '--admin-port',
      '--hsm-port',
      '--hsm-http-port',
      'hsm/',
      'host/',
      'network/',
      'terminals/',
      'zone.json',
      'admin-token',
    ]) {
      assert.ok(help.out.includes(word), `help mentions ${word}`);
    }
  });
});
