/**
 * `poskey host serve` as a process: config from flags, zone keys imported from the zone file and
 * POSKEY_ZMK_COMPONENTS on the first start and reused on the second, an unknown terminal refused
 * with 97, SIGTERM draining to exit 0; and the one-line errors for a bad flag or missing zone keys.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hostServeConfig, parseAddress } from '../../src/cli/host.js';
import { parseHostConfig } from '../../src/host/config.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { pack } from '../../src/iso8583/index.js';
import { type OpenedNetwork, openNetworkSimulator } from '../../src/network/setup.js';
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';
import { RawTerminal, signInMessage } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<number | null>;
  /** Resolves with the first stdout line. */
  firstLine: Promise<string>;
}

function poskey(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'host', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  const run = { child, stdout: '', stderr: '' } as Run;
  run.firstLine = new Promise((resolve) => {
    child.stdout!.on('data', (d: Buffer) => {
      run.stdout += d.toString();
      const nl = run.stdout.indexOf('\n');
      if (nl >= 0) resolve(run.stdout.slice(0, nl));
    });
  });
  child.stderr!.on('data', (d: Buffer) => {
    run.stderr += d.toString();
  });
  run.exit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  return run;
}

describe('poskey host serve', { timeout: 120_000 }, () => {
  let dir: string;
  let network: OpenedNetwork;
  let netPort: number;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'poskey-host-cli-'));
    network = await openNetworkSimulator({
      dataDir: join(dir, 'network'),
      hsm: new Hsm({ lmks: new LmkSet([generateDevLmk('01')]) }),
      zone: { allowCreate: true },
      simulator: { port: 0 },
    });
    netPort = (await network.simulator.listen()).port;
  });
  after(async () => {
    await network?.simulator.close();
  });

  const flags = () => [
    'serve',
    '--json',
    '--port',
    '0',
    '--data-dir',
    join(dir, 'host'),
    '--hsm-data-dir',
    join(dir, 'hsm'),
    '--dev',
    '--network',
    `127.0.0.1:${netPort}`,
    '--zone-file',
    join(dir, 'network', 'zone.json'),
    '--log-level',
    'silent',
  ];

  it('starts, refuses an unknown terminal with 97, drains on SIGTERM; restarts without components', async () => {
    const starts: Record<string, string>[] = [
      { POSKEY_ZMK_COMPONENTS: network.zone.zmkComponents!.join(',') },
      {},
    ];
    for (const env of starts) {
      const run = poskey(flags(), env);
      const ready = JSON.parse(await run.firstLine) as { port: number; database: string; journal: string };
      assert.equal(ready.database, 'sqlite');
      assert.equal(ready.journal, 'write-ahead');
      const raw = await RawTerminal.connect(ready.port);
      const reply = await raw.exchange(pack(POS_DIALECT, signInMessage('NOSUCH01', '000001', '003')));
      assert.equal(reply.msg[39], '97');
      raw.close();
      run.child.kill('SIGTERM');
      assert.equal(await run.exit, 0, run.stderr);
    }
  });

  it('fails with one line and exit 2 for a bad flag or when no zone keys can be had', async () => {
    const bad = poskey([...flags(), '--mac', 'md5']);
    assert.equal(await bad.exit, 2);
    assert.match(bad.stderr, /^poskey: POSKEY_ERR_HOST_CONFIG: macAlgorithm: /);
    const args = flags();
    args[args.indexOf('--data-dir') + 1] = join(dir, 'fresh');
    const noZone = poskey(args, { POSKEY_ZMK_COMPONENTS: '' });
    assert.equal(await noZone.exit, 2);
    assert.match(noZone.stderr, /^poskey: POSKEY_ERR_HOST_ZONE: /);
    const badAddress = poskey([...flags(), '--network', 'nowhere']);
    assert.equal(await badAddress.exit, 2);
    assert.match(badAddress.stderr, /POSKEY_ERR_CLI_OPTION: --network: must be host:port/);
  });

  it('merges flags over the config file section by section', async () => {
    const merged = await hostServeConfig({
      network: '10.0.0.1:7000',
      networkTimeout: '3s',
      hsm: '10.0.0.2:1500',
      journal: 'overlap',
      maxTakAge: '12h',
    });
    const c = parseHostConfig(merged);
    assert.deepEqual([c.network.host, c.network.port, c.network.timeout], ['10.0.0.1', 7000, 3000]);
    assert.equal(c.hsm.mode, 'tcp');
    assert.equal(c.journal.mode, 'overlap');
    assert.equal(c.maxTakAge, 12 * 3600_000);
    assert.deepEqual(parseAddress('host:1', 'x'), { host: 'host', port: 1 });
    assert.throws(() => parseAddress('host:0', 'x'), { code: 'POSKEY_ERR_CLI_OPTION' });
  });
});
