/**
 * Network sign-on and zone key exchange, everything real: the host's HSM and the network
 * simulator's own HSM, real TCP on loopback (through a recording or tampering proxy where the test
 * must see or change the 0810), real terminals doing purchases while keys rotate.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { type HostConfig, parseHostConfig } from '../../src/host/config.js';
import { loadZoneKeys, ZONE_KEYS_FILE } from '../../src/host/keys.js';
import { NetworkLink } from '../../src/host/network-link.js';
import { ZoneKeyManager } from '../../src/host/zone-keys.js';
import { buildFrame, createFrameDecoder, NETWORK_PROFILE, unpack } from '../../src/iso8583/index.js';
import { decodeKeyDelivery, encodeKeyDelivery } from '../../src/protocol/network-keys.js';
import {
  NETWORK_DIALECT,
  NETWORK_MAC,
  networkMacBlock,
  packNetworkWithMac,
} from '../../src/protocol/network-link.js';
import { sqliteFixture } from '../store/helpers.js';
import { CARDS, eventually, startWorld, swipe, type World } from './helpers.js';

const quiet = pino({ level: 'silent' });

/** A TCP proxy in front of the network that hands every network→host frame to `edit`. */
async function proxy(
  target: number,
  edit: (body: Buffer) => Buffer = (b) => b,
): Promise<{ port: number; close(): Promise<void> }> {
  const { connect } = await import('node:net');
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: target });
    sockets.add(client).add(upstream);
    const decoder = createFrameDecoder(NETWORK_PROFILE);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      for (const body of decoder.push(chunk)) client.write(buildFrame({ body: edit(body) }, NETWORK_PROFILE));
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** E_K(0) of a clear TDES key, 6 hex: the KCV computed by the test, outside both HSMs. */
function kcvOf(clear: Buffer): string {
  const k = createKey('tdes', clear);
  try {
    return toHex(k.ecbEncrypt(Buffer.alloc(8))).slice(0, 6);
  } finally {
    k.destroy();
  }
}

function decryptUnder(zmk: Buffer, cryptogramHex: string): Buffer {
  const k = createKey('tdes', zmk);
  try {
    return k.ecbDecrypt(fromHex(cryptogramHex));
  } finally {
    k.destroy();
  }
}

describe('network sign-on and zone key exchange', { timeout: 180_000 }, () => {
  let w: World;
  let config: HostConfig;
  let zmkClear: Buffer;
  let seq = 0;
  const nextTid = () => `K${String(++seq).padStart(7, '0')}`;

  before(async () => {
    w = await startWorld(await sqliteFixture());
    config = parseHostConfig({
      ...w.config,
      network: { ...w.config.network, signOn: false, rekeyInterval: 0 },
    });
    zmkClear = w.network.zone.zmkComponents!.map((c) => fromHex(c)).reduce((a, b) => xor(a, b));
  });
  after(async () => {
    await w?.close();
  });

  async function linkVia(port: number): Promise<NetworkLink> {
    const link = new NetworkLink({ host: '127.0.0.1', port, timeoutMs: 3000, log: quiet });
    link.start();
    await link.waitUntilUp(5000);
    return link;
  }

  function manager(link = w.link, cfg = config): ZoneKeyManager {
    return new ZoneKeyManager({ hsm: w.client, link, runtime: w.server.runtime, config: cfg, log: quiet });
  }

  async function approves(): Promise<void> {
    const term = w.terminal(await w.register(nextTid()));
    try {
      const r = await term.purchase(swipe(CARDS.good), 100, CARDS.good.pin);
      assert.equal(r.responseCode, '00', r.responseText);
    } finally {
      await term.close();
    }
  }

  it('signs on: the 0810 delivers a ZPK and ZAK under the ZMK whose KCVs verify, and they go into force', async () => {
    const seen: string[] = [];
    const p = await proxy(portOf(w), (body) => {
      const msg = unpack(NETWORK_DIALECT, body);
      if (msg[0] === '0810' && typeof msg[48] === 'string') seen.push(msg[48]);
      return body;
    });
    const link = await linkVia(p.port);
    try {
      const before = w.server.runtime.zone!;
      const result = await manager(link).signOn();
      assert.equal(seen.length, 1);
      const delivery = decodeKeyDelivery(seen[0]);
      assert.equal(result.keySet, delivery.keySet);
      assert.notEqual(result.keySet, '000000');
      // The test opens the cryptograms with the clear ZMK and computes the KCVs itself.
      for (const [name, key] of [
        ['ZPK', delivery.zpk],
        ['ZAK', delivery.zak],
      ] as const) {
        assert.equal(kcvOf(decryptUnder(zmkClear, key.underZmk)), key.kcv, `${name} KCV`);
      }
      const now = w.server.runtime.zone!;
      assert.notEqual(now.zpk, before.zpk);
      assert.equal(now.keySet, delivery.keySet);
      assert.equal((await w.client.checkValue(now.zpk, 'legacy')).value, delivery.zpk.kcv);
      assert.equal((await w.client.checkValue(now.zak, 'legacy')).value, delivery.zak.kcv);
      // The new pair works end to end, and the network now holds it as its active pair.
      await approves();
      assert.equal(w.network.simulator.zoneKeys.active.keySet, delivery.keySet);
      // Saved atomically with the ZMK and the zone file pair it grew from: a restart uses it.
      const saved = JSON.parse(readFileSync(join(config.dataDir, ZONE_KEYS_FILE), 'utf8'));
      assert.equal(saved.keySet, delivery.keySet);
      assert.equal(typeof saved.zmk, 'string');
      const reloaded = await loadZoneKeys(w.client, config, { zoneFile: w.network.zone.zoneFile, env: {} });
      assert.equal(reloaded.zpk, now.zpk);
      assert.equal(reloaded.keySet, delivery.keySet);
      // The ZMK components given again (a start script that always sets them) must not put the
      // host back on the zone file's pair, which the network no longer uses.
      const warnings: string[] = [];
      const again = await loadZoneKeys(w.client, config, {
        zoneFile: w.network.zone.zoneFile,
        zmkComponents: w.network.zone.zmkComponents,
        env: {},
        warn: (m) => warnings.push(m),
      });
      assert.equal(again.zpk, now.zpk);
      assert.equal(again.keySet, delivery.keySet);
      assert.match(warnings.join('\n'), /ZMK components ignored.*key exchange/);
      assert.equal(
        JSON.parse(readFileSync(join(config.dataDir, ZONE_KEYS_FILE), 'utf8')).keySet,
        delivery.keySet,
      );
    } finally {
      await link.close();
      await p.close();
    }
  });

  it('refuses a delivered key whose KCV does not match (POSKEY_ERR_HOST_ZONE_KCV) and keeps the old keys', async () => {
    const net = w.network;
    // The proxy changes one KCV digit and re-MACs the 0810 under the network's ZAK, as a network
    // with a broken HSM would send it: only the KCV check can catch it.
    const p = await proxy(portOf(w), (body) => {
      const msg = unpack(NETWORK_DIALECT, body);
      if (msg[0] !== '0810' || typeof msg[48] !== 'string') return body;
      const d = decodeKeyDelivery(msg[48]);
      const flipped = (d.zak.kcv[0] === '0' ? '1' : '0') + d.zak.kcv.slice(1);
      msg[48] = encodeKeyDelivery({ ...d, zak: { ...d.zak, kcv: flipped } });
      const zak = net.simulator.zoneKeys.active.zak;
      const mac = net.hsm.generateMac({
        key: { kind: 'key', keyBlock: zak },
        algorithm: NETWORK_MAC.algorithm,
        padding: NETWORK_MAC.padding,
        length: NETWORK_MAC.length,
        data: toHex(networkMacBlock(msg)),
      });
      return packNetworkWithMac(msg, mac);
    });
    const link = await linkVia(p.port);
    try {
      const before = w.server.runtime.zone!;
      const file = readFileSync(join(config.dataDir, ZONE_KEYS_FILE), 'utf8');
      const m = manager(link);
      await assert.rejects(m.rekey(), (e: { code: string; field: string }) => {
        assert.equal(e.code, 'POSKEY_ERR_HOST_ZONE_KCV');
        assert.equal(e.field, 'zak.kcv');
        return true;
      });
      assert.equal(w.server.runtime.zone, before);
      assert.equal(readFileSync(join(config.dataDir, ZONE_KEYS_FILE), 'utf8'), file);
      assert.equal((await m.status()).lastError?.code, 'POSKEY_ERR_HOST_ZONE_KCV');
      // The network never saw the refused pair used: its active pair is still the host's.
      await approves();
      assert.equal(w.network.simulator.zoneKeys.active.keySet, before.keySet);
    } finally {
      await link.close();
      await p.close();
    }
  });

  it('refuses an 0810 whose MAC does not verify under the ZAK in force', async () => {
    const p = await proxy(portOf(w), (body) => {
      const msg = unpack(NETWORK_DIALECT, body);
      if (msg[0] !== '0810') return body;
      const out = Buffer.from(body);
      out[out.length - 1]! ^= 0x01;
      return out;
    });
    const link = await linkVia(p.port);
    try {
      const before = w.server.runtime.zone;
      await assert.rejects(manager(link).rekey(), { code: 'POSKEY_ERR_HOST_KEY_EXCHANGE', field: '128' });
      assert.equal(w.server.runtime.zone, before);
    } finally {
      await link.close();
      await p.close();
    }
  });

  it('rotates on a schedule (network.rekeyInterval)', async () => {
    const cfg = parseHostConfig({ ...config, network: { ...config.network, rekeyInterval: 200 } });
    const m = manager(w.link, cfg);
    const from = w.server.runtime.zone!.keySet;
    m.start();
    try {
      await eventually(async () => (await m.status()).rotations >= 2, 10_000);
      assert.notEqual(w.server.runtime.zone!.keySet, from);
      assert.equal((await m.status()).lastRotation?.reason, 'schedule');
    } finally {
      m.close();
    }
    await approves();
  });

  it('rotates keys several times during load with zero failed transactions', async () => {
    const m = manager();
    const terminals = await Promise.all(
      [0, 1, 2, 3].map(async () => w.terminal(await w.register(nextTid()))),
    );
    // Jitter lets requests signed under the old pair reach the issuer after ones under the new pair:
    // they then need the overlap.
    w.network.simulator.setFaults({ delayMs: 20, jitterMs: 80 });
    const codes: Record<string, number> = {};
    let running = true;
    const load = terminals.map(async (term) => {
      while (running) {
        const r = await term.purchase(swipe(CARDS.good), 1, CARDS.good.pin);
        const code = r.responseCode ?? r.outcome;
        codes[code] = (codes[code] ?? 0) + 1;
      }
    });
    const from = w.server.runtime.zone!.keySet;
    const rotated: string[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 300));
        rotated.push((await m.rekey()).keySet);
      }
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      running = false;
      await Promise.all(load);
      w.network.simulator.setFaults({});
      for (const t of terminals) await t.close();
    }
    assert.equal(new Set(rotated).size, 5);
    assert.notEqual(w.server.runtime.zone!.keySet, from);
    const total = Object.values(codes).reduce((a, b) => a + b, 0);
    assert.ok(total >= 10, `only ${total} transactions ran`);
    assert.deepEqual(Object.keys(codes), ['00'], JSON.stringify(codes));
  });
});

function portOf(w: World): number {
  return w.config.network.port;
}
