/**
 * Several links to the network with failover, and echo tests on idle links: real TCP on loopback,
 * real network simulators (two endpoints of one network: same ledger, HSM and zone key ring).
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { parseHostConfig } from '../../src/host/config.js';
import { type LinkState, NetworkLink } from '../../src/host/network-link.js';
import { createNetworkLinks, NetworkLinkPool } from '../../src/host/network-links.js';
import { createHostServer } from '../../src/host/server.js';
import { createNetworkSimulator, type NetworkSimulator } from '../../src/network/server.js';
import { sqliteFixture } from '../store/helpers.js';
import { CARDS, eventually, startWorld, swipe, type World } from './helpers.js';

const quiet = pino({ level: 'silent' });

describe('network links: failover and echo tests', { timeout: 120_000 }, () => {
  let w: World;
  let seq = 0;
  const nextTid = () => `L${String(++seq).padStart(7, '0')}`;

  before(async () => {
    w = await startWorld(await sqliteFixture());
  });
  after(async () => {
    await w?.close();
  });

  /** Another endpoint of the world's network: its ledger, HSM and zone key ring. */
  async function endpoint(): Promise<{ sim: NetworkSimulator; port: number }> {
    const n = w.network;
    const sim = createNetworkSimulator({ hsm: n.hsm, ledger: n.ledger, zone: n.simulator.zoneKeys, port: 0 });
    return { sim, port: (await sim.listen()).port };
  }

  it('sends to every healthy link, and when one dies the other carries every transaction', async () => {
    const a = await endpoint();
    const b = await endpoint();
    const config = parseHostConfig({
      ...w.config,
      network: {
        ...w.config.network,
        endpoints: [
          { host: '127.0.0.1', port: a.port },
          { host: '127.0.0.1', port: b.port },
        ],
        reconnectMin: 20,
        reconnectMax: 200,
      },
    });
    const pool = createNetworkLinks(config, quiet);
    pool.start();
    const server = createHostServer({
      config,
      hsm: w.client,
      store: w.store,
      zone: w.server.runtime.zone!,
      link: pool,
      logger: quiet,
    });
    const { port } = await server.listen();
    const term = w.terminal(await w.register(nextTid()), { port });
    try {
      await eventually(() => pool.links.every((l) => l.state === 'up'), 5000);
      for (let i = 0; i < 6; i++) {
        assert.equal((await term.purchase(swipe(CARDS.good), 100, CARDS.good.pin)).responseCode, '00');
      }
      assert.ok(a.sim.stats().answered > 0 && b.sim.stats().answered > 0, 'both links carried traffic');
      await a.sim.close();
      await eventually(() => pool.links[0]!.state !== 'up', 5000);
      assert.equal(pool.state, 'up');
      const before = b.sim.stats().answered;
      for (let i = 0; i < 6; i++) {
        const r = await term.purchase(swipe(CARDS.good), 100, CARDS.good.pin);
        assert.equal(r.responseCode, '00', r.responseText);
      }
      assert.equal(b.sim.stats().answered - before, 6);
      assert.ok(pool.describe()[0]!.stats.state !== 'up');
    } finally {
      await term.close();
      await server.close();
      await pool.close();
      await b.sim.close();
      await a.sim.close();
    }
  });

  it('echo-tests an idle link; a failed echo marks the link down and it reconnects', async () => {
    // A peer that accepts and never answers: TCP stays up, only an echo can tell it is dead.
    const sockets = new Set<Socket>();
    const dead = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const address = dead.address();
    const deadPort = typeof address === 'object' && address ? address.port : 0;
    const states: LinkState[] = [];
    const link = new NetworkLink({
      host: '127.0.0.1',
      port: deadPort,
      timeoutMs: 300,
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
      log: quiet,
      onState: (s) => states.push(s),
    });
    const pool = new NetworkLinkPool([link], { intervalMs: 100, acquirerId: '00010000', log: quiet });
    pool.start();
    try {
      await eventually(
        () => (pool.describe()[0]!.echoes?.failed ?? 0) >= 1 && link.stats().connects >= 2,
        10_000,
      );
      const firstUp = states.indexOf('up');
      assert.ok(firstUp >= 0 && states.indexOf('down', firstUp) > firstUp, `states: ${states.join(',')}`);
    } finally {
      await pool.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => dead.close(() => r()));
    }
  });

  it('echo tests on a live idle link are answered and leave the link up', async () => {
    const a = await endpoint();
    const link = new NetworkLink({ host: '127.0.0.1', port: a.port, timeoutMs: 1000, log: quiet });
    const pool = new NetworkLinkPool([link], { intervalMs: 100, acquirerId: '00010000', log: quiet });
    pool.start();
    try {
      await eventually(() => (pool.describe()[0]!.echoes?.sent ?? 0) >= 3, 10_000);
      assert.equal(pool.describe()[0]!.echoes?.failed, 0);
      assert.equal(link.stats().connects, 1);
      assert.equal(link.state, 'up');
      assert.ok((a.sim.stats().codes['00'] ?? 0) >= 2);
    } finally {
      await pool.close();
      await a.sim.close();
    }
  });

  it('refuses an empty endpoint list in the config', () => {
    assert.throws(() => parseHostConfig({ network: { endpoints: [] } }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'network.endpoints',
    });
    assert.throws(() => parseHostConfig({ network: { endpoints: [{ host: 'x', port: 0 }] } }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'network.endpoints.0.port',
    });
  });
});
