/**
 * `poskey host network rekey|status` against a running platform (`poskey start`): the CLI reaches
 * the host through its admin API, the host exchanges keys with the network simulator over TCP, and
 * transactions keep being approved under the new pair.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { track2Of } from '../../src/terminal/cards.js';
import { spawnPoskey } from '../helpers/cli.js';
import { CARDS, eventually, nextTid, startWorld, type World } from './helpers.js';

async function cli(args: string[], env: Record<string, string>) {
  return spawnPoskey(args, env).done;
}

describe('poskey host network rekey on a running host', { timeout: 180_000 }, () => {
  let w: World;
  let admin: string[];
  let env: Record<string, string>;

  before(async () => {
    w = await startWorld('sqlite');
    admin = ['--admin', `http://127.0.0.1:${w.platform.ports.admin}`];
    env = { POSKEY_ADMIN_TOKEN: w.platform.adminToken };
  });
  after(async () => {
    await w?.close();
  });

  async function purchase(): Promise<string | undefined> {
    const term = w.terminal(await w.registerKnown(nextTid('R')));
    try {
      const card = CARDS.good;
      return (
        await term.purchase(
          { track2: track2Of({ pan: card.pan, expiry: card.expiry, serviceCode: '101' }) },
          100,
          card.pin,
        )
      ).responseCode;
    } finally {
      await term.close();
    }
  }

  it('the host signed on at start: the network delivered a pair and it is in force', async () => {
    await eventually(async () => (await w.platform.zoneKeys.status()).signedOn, 10_000);
    assert.notEqual(w.platform.server.runtime.zone?.keySet, '000000');
    assert.equal(await purchase(), '00');
  });

  it('rekey rotates the keys of the running host; status shows the new key set and KCVs', async () => {
    const before = w.platform.server.runtime.zone!;
    const r = await cli(['host', 'network', 'rekey', ...admin, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, string>;
    const now = w.platform.server.runtime.zone!;
    assert.notEqual(now.zpk, before.zpk);
    assert.equal(out['key set'], now.keySet);
    assert.equal(out['ZPK KCV'], (await w.platform.hsmClient.checkValue(now.zpk, 'legacy')).value);
    assert.equal(out['ZAK KCV'], (await w.platform.hsmClient.checkValue(now.zak, 'legacy')).value);
    assert.equal(await purchase(), '00');
    assert.equal(w.platform.network.simulator.zoneKeys.active.keySet, now.keySet);

    const s = await cli(['host', 'network', 'status', ...admin, '--json'], env);
    assert.equal(s.code, 0, s.stderr);
    const status = JSON.parse(s.stdout) as {
      keys: { keySet: string; zpkKcv: string };
      links: { stats: { state: string } }[];
    };
    assert.equal(status.keys.keySet, now.keySet);
    assert.equal(status.keys.zpkKcv, out['ZPK KCV']);
    assert.equal(status.links[0]?.stats.state, 'up');
  });

  it('a wrong token: one line on stderr with the admin API code, exit 2, keys unchanged', async () => {
    const before = w.platform.server.runtime.zone;
    const r = await cli(['host', 'network', 'rekey', ...admin], {
      POSKEY_ADMIN_TOKEN: 'not-the-token-at-all',
    });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^poskey: POSKEY_ERR_UNAUTHORIZED/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.equal(w.platform.server.runtime.zone, before);
  });
});
