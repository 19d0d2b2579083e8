/**
 * `poskey network` end to end: the real CLI spawned as a process. A first `serve` makes a dev LMK
 * and a new zone and prints the components once on stderr; the test imports that zone into its own
 * HSM and transacts on a demo card; `card add|list|update` work on the same data directory; a
 * restart needs no components.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readZoneFile } from '../../src/network/zone.js';
import { Acquirer, LinkClient, tmpDir } from './acquirer.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dataDir = tmpDir('poskey-network-cli-');
after(() => rmSync(dataDir, { recursive: true, force: true }));

const ENV = { ...process.env, POSKEY_ZMK_COMPONENTS: '', POSKEY_NETWORK_LMK_PASSPHRASE: '' };

function start(args: string[], env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'network', ...args], {
    cwd: ROOT,
    env: { ...ENV, ...env },
  });
}

function run(args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = start(args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

interface Served {
  child: ChildProcessWithoutNullStreams;
  ready: { port: number; zoneKeys: string; seeded: number; dev: boolean; zoneFile: string };
  stderr: () => string;
}

function serve(extra: string[] = [], env: Record<string, string> = {}): Promise<Served> {
  const child = start(
    ['serve', '--port', '0', '--data-dir', dataDir, '--json', '--log-level', 'warn', ...extra],
    env,
  );
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl >= 0) resolve({ child, ready: JSON.parse(stdout.slice(0, nl)), stderr: () => stderr });
    });
    child.on('exit', (code) => reject(new Error(`serve exited (${code}): ${stderr}`)));
  });
}

function stop(served: Served): Promise<number | string | null> {
  served.child.removeAllListeners('exit');
  return new Promise((resolve) => {
    served.child.once('exit', (code, signal) => resolve(code ?? signal ?? null));
    served.child.kill('SIGTERM');
  });
}

describe('poskey network', () => {
  let components: string[] = [];

  it('serve: new dev zone, components printed once on stderr, a demo card approves', async () => {
    const served = await serve(['--seed', 'demo']);
    try {
      assert.equal(served.ready.zoneKeys, 'created');
      assert.equal(served.ready.dev, true);
      assert.equal(served.ready.seeded, 6);
      const err = served.stderr();
      assert.match(err, /DEVELOPMENT MODE/);
      assert.match(err, /NEW ZONE CREATED/);
      components = [...err.matchAll(/component \d: ([0-9A-F]{32})/g)].map((m) => m[1]!);
      assert.equal(components.length, 3);
      const acquirer = new Acquirer();
      await acquirer.importZone(components, await readZoneFile(served.ready.zoneFile));
      const client = await LinkClient.connect(served.ready.port);
      const msg = acquirer.request({ pan: '6228480000000015', amount: 2500, pin: '123456', stan: '000001' });
      const answer = await client.send(acquirer.sign(msg));
      assert.equal(answer?.[39], '00');
      assert.ok(acquirer.macVerifies(answer!));
      client.close();
    } finally {
      assert.equal(await stop(served), 0);
    }
  });

  it('card add (PIN from stdin), list (masked), update', async () => {
    const add = await run(
      [
        'card',
        'add',
        '--pan',
        '6228480000000072',
        '--expiry',
        '3106',
        '--balance',
        '12345',
        '--data-dir',
        dataDir,
        '--json',
      ],
      '864213\n',
    );
    assert.equal(add.code, 0, add.stderr);
    assert.equal(JSON.parse(add.stdout).pan, '622848******0072');
    assert.ok(!add.stdout.includes('864213') && !add.stderr.includes('864213'));
    const dup = await run(
      [
        'card',
        'add',
        '--pan',
        '6228480000000072',
        '--expiry',
        '3106',
        '--balance',
        '1',
        '--data-dir',
        dataDir,
      ],
      '864213\n',
    );
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /POSKEY_ERR_LEDGER_DUPLICATE/);
    const upd = await run([
      'card',
      'update',
      '6228480000000072',
      '--status',
      'blocked',
      '--data-dir',
      dataDir,
      '--json',
    ]);
    assert.equal(upd.code, 0, upd.stderr);
    assert.equal(JSON.parse(upd.stdout).status, 'blocked');
    const list = await run(['card', 'list', '--data-dir', dataDir, '--json']);
    const cards = JSON.parse(list.stdout).cards as { pan: string; balance: number; status: string }[];
    assert.equal(cards.length, 7);
    assert.ok(cards.every((c) => c.pan.includes('*')));
    const mine = cards.find((c) => c.pan.endsWith('0072'));
    assert.deepEqual([mine?.balance, mine?.status], [12345, 'blocked']);
    assert.equal(
      cards.find((c) => c.pan.endsWith('0015'))?.balance,
      10_000_000 - 2500,
      'the purchase persisted',
    );
  });

  it('restart: stored zone keys without components; with components the zone file is imported', async () => {
    const plain = await serve(['--response-code', '91']);
    assert.equal(plain.ready.zoneKeys, 'stored');
    assert.doesNotMatch(plain.stderr(), /NEW ZONE/);
    const acquirer = new Acquirer();
    await acquirer.importZone(components, await readZoneFile(plain.ready.zoneFile));
    const client = await LinkClient.connect(plain.ready.port);
    const answer = await client.send(
      acquirer.sign(acquirer.request({ pan: '6228480000000015', amount: 1, stan: '000002' })),
    );
    assert.equal(answer?.[39], '91', 'the fault flag is in force');
    client.close();
    assert.equal(await stop(plain), 0);
    const withEnv = await serve([], { POSKEY_ZMK_COMPONENTS: components.join(',') });
    assert.equal(withEnv.ready.zoneKeys, 'components');
    assert.equal(await stop(withEnv), 0);
  });

  it('bad flags and bad components exit 2 with one line', async () => {
    const rate = await run(['serve', '--drop-rate', '3', '--data-dir', dataDir]);
    assert.equal(rate.code, 2);
    assert.match(rate.stderr, /drop-rate/);
    const child = start(['serve', '--port', '0', '--data-dir', dataDir], { POSKEY_ZMK_COMPONENTS: 'ABCD' });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    assert.equal(code, 2);
  });
});
