/**
 * Zone keys between two HSMs under different LMKs: a zone made on one side imports on the other
 * with the same keys (KCVs, MACs and PIN blocks agree across), the zone file round-trips and holds
 * no clear key, every zone error, the data-directory resolution, and the fault settings.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { toHex } from '../../src/crypto/bytes.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { NO_FAULTS, planFaults, resolveFaults } from '../../src/network/faults.js';
import { Ledger } from '../../src/network/ledger.js';
import { DEMO_CARDS, openNetworkSimulator, resolveZoneKeys, seedDemoCards } from '../../src/network/setup.js';
import {
  createZoneKeys,
  importZoneKeys,
  parseZmkComponents,
  parseZoneFile,
  readZoneFile,
  serializeZoneFile,
  writeZoneFile,
} from '../../src/network/zone.js';
import { tmpDir } from './acquirer.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = tmpDir('poskey-zone-');
  dirs.push(d);
  return d;
}

const newHsm = () => new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
const network = newHsm();
const host = newHsm();
const made = await createZoneKeys(network);
const fails = (code: string) => ({ code });

describe('zone keys across two trust domains', () => {
  it('the host imports what the network made: same KCVs, MACs and PINs agree, blocks differ', async () => {
    assert.equal(made.zmkComponents.length, 3);
    const hostKeys = await importZoneKeys(host, made.zmkComponents, made.zoneFile);
    assert.notEqual(hostKeys.zpk, made.keys.zpk);
    assert.equal(host.describeKey(hostKeys.zpk).kcv.value, made.zoneFile.zpk.kcv);
    assert.equal(host.describeKey(hostKeys.zak).kcv.value, made.zoneFile.zak.kcv);
    assert.equal(host.describeKey(hostKeys.zmk).kcv.value, made.zoneFile.zmkKcv);
    assert.equal(host.describeKey(hostKeys.zak).usage, 'M3');
    const data = toHex(Buffer.from('0200 message authentication block'));
    const req = { algorithm: 'retail' as const, padding: 1 as const, length: 8, data };
    const mac = host.generateMac({ ...req, key: { kind: 'key', keyBlock: hostKeys.zak } });
    assert.equal(network.verifyMac({ ...req, key: { kind: 'key', keyBlock: made.keys.zak }, mac }), true);
  });

  it('the zone file holds cryptograms and KCVs only, and round-trips', async () => {
    const text = serializeZoneFile(made.zoneFile);
    for (const c of made.zmkComponents) assert.ok(!text.includes(c));
    assert.deepEqual(parseZoneFile(JSON.parse(text)), made.zoneFile);
    const path = join(dir(), 'zone.json');
    await writeZoneFile(path, made.zoneFile);
    assert.deepEqual(await readZoneFile(path), made.zoneFile);
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).format, 'poskey-zone/1');
  });

  it('components parse from the environment form', () => {
    const env = made.zmkComponents.map((c) => c.toLowerCase()).join(' , ');
    assert.deepEqual(parseZmkComponents(env), made.zmkComponents);
  });

  it('a zone file without the ZMK KCV still imports (then the ZPK KCV catches wrong components)', async () => {
    const { zmkKcv: _kcv, ...bare } = made.zoneFile;
    await importZoneKeys(newHsm(), made.zmkComponents, bare);
    const wrong = [made.zmkComponents[0]!, made.zmkComponents[1]!, '0123456789ABCDEFFEDCBA9876543210'];
    await assert.rejects(importZoneKeys(newHsm(), wrong, bare), fails('POSKEY_ERR_ZONE_FILE'));
  });
});

describe('zone errors', () => {
  it('POSKEY_ERR_ZONE_COMPONENTS', async () => {
    assert.throws(() => parseZmkComponents(made.zmkComponents[0]!), fails('POSKEY_ERR_ZONE_COMPONENTS'));
    assert.throws(() => parseZmkComponents(['XYZ', 'ABC']), fails('POSKEY_ERR_ZONE_COMPONENTS'));
    assert.throws(
      () => parseZmkComponents([made.zmkComponents[0]!, `${made.zmkComponents[1]!}0123456789ABCDEF`]),
      fails('POSKEY_ERR_ZONE_COMPONENTS'),
    );
    const twice = [made.zmkComponents[0]!, made.zmkComponents[0]!];
    await assert.rejects(importZoneKeys(newHsm(), twice, made.zoneFile), fails('POSKEY_ERR_ZONE_COMPONENTS'));
    await assert.rejects(createZoneKeys(newHsm(), { components: 1 }), fails('POSKEY_ERR_ZONE_COMPONENTS'));
  });

  it('POSKEY_ERR_ZONE_ZMK_KCV for components of another ZMK', async () => {
    const other = await createZoneKeys(newHsm());
    await assert.rejects(
      importZoneKeys(newHsm(), other.zmkComponents, made.zoneFile),
      fails('POSKEY_ERR_ZONE_ZMK_KCV'),
    );
  });

  it('POSKEY_ERR_ZONE_FILE for malformed files and tampered KCVs', async () => {
    const f = made.zoneFile;
    assert.throws(() => parseZoneFile(null), fails('POSKEY_ERR_ZONE_FILE'));
    assert.throws(() => parseZoneFile({ ...f, format: 'other/1' }), fails('POSKEY_ERR_ZONE_FILE'));
    assert.throws(() => parseZoneFile({ zpk: f.zpk }), fails('POSKEY_ERR_ZONE_FILE'));
    assert.throws(
      () => parseZoneFile({ ...f, zpk: { ...f.zpk, underZmk: 'ABCD' } }),
      fails('POSKEY_ERR_ZONE_FILE'),
    );
    assert.throws(
      () => parseZoneFile({ ...f, zak: { ...f.zak, kcv: 'XYZ' } }),
      fails('POSKEY_ERR_ZONE_FILE'),
    );
    assert.throws(() => parseZoneFile({ ...f, zmkKcv: 7 }), fails('POSKEY_ERR_ZONE_FILE'));
    const flipped = f.zpk.kcv.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    await assert.rejects(
      importZoneKeys(newHsm(), made.zmkComponents, { ...f, zpk: { ...f.zpk, kcv: flipped } }),
      (e: Error & { code?: string; field?: string }) =>
        e.code === 'POSKEY_ERR_ZONE_FILE' && e.field === 'zpk',
    );
    const path = join(dir(), 'zone.json');
    await assert.rejects(readZoneFile(path), fails('POSKEY_ERR_ZONE_FILE'));
    writeFileSync(path, '{not json');
    await assert.rejects(readZoneFile(path), fails('POSKEY_ERR_ZONE_FILE'));
  });

  it('POSKEY_ERR_NETWORK_OPTION for a zone algorithm that is not TDES', async () => {
    await assert.rejects(
      createZoneKeys(newHsm(), { algorithm: 'aes128' as 'tdes2' }),
      fails('POSKEY_ERR_NETWORK_OPTION'),
    );
  });
});

describe('zone resolution and data directory', () => {
  it('creates in dev, reuses the stored blocks on restart, imports with components, refuses otherwise', async () => {
    const d = dir();
    const hsm = newHsm();
    const path = join(d, 'ledger.sqlite');
    const zoneFilePath = join(d, 'zone.json');
    let ledger = Ledger.open({ path, hsm });
    await assert.rejects(resolveZoneKeys(hsm, ledger, { zoneFilePath }), fails('POSKEY_ERR_ZONE_MISSING'));
    const created = await resolveZoneKeys(hsm, ledger, { zoneFilePath, allowCreate: true });
    assert.equal(created.source, 'created');
    assert.equal(created.zmkComponents?.length, 3);
    assert.deepEqual(await readZoneFile(zoneFilePath), created.zoneFile);
    ledger.close();
    ledger = Ledger.open({ path, hsm });
    const stored = await resolveZoneKeys(hsm, ledger, { zoneFilePath });
    assert.equal(stored.source, 'stored');
    assert.deepEqual(stored.keys, created.keys);
    const imported = await resolveZoneKeys(hsm, ledger, {
      zoneFilePath,
      zmkComponents: created.zmkComponents,
    });
    assert.equal(imported.source, 'components');
    assert.equal(hsm.describeKey(imported.keys.zpk).kcv.value, created.zoneFile.zpk.kcv);
    await assert.rejects(
      resolveZoneKeys(hsm, ledger, { zoneFile: made.zoneFile }),
      fails('POSKEY_ERR_ZONE_MISSING'),
      'a zone file that is not the stored zone needs components',
    );
    await assert.rejects(
      resolveZoneKeys(hsm, ledger, { zmkComponents: made.zmkComponents, zoneFilePath: join(d, 'none.json') }),
      fails('POSKEY_ERR_ZONE_MISSING'),
    );
    ledger.close();
  });

  it('openNetworkSimulator: dev LMK, ledger, zone and demo cards in a data directory; restart keeps them', async () => {
    const d = dir();
    const kdf = { N: 1024 };
    const first = await openNetworkSimulator({ dataDir: d, kdf, seed: 'demo', simulator: { port: 0 } });
    assert.equal(first.dev, true);
    assert.match(String(first.warning), /DEVELOPMENT/);
    assert.equal(first.zone.source, 'created');
    assert.equal(first.seeded, DEMO_CARDS.length);
    await first.simulator.close();
    assert.equal(first.ledger.closed, true);
    const second = await openNetworkSimulator({ dataDir: d, kdf, seed: 'demo', simulator: { port: 0 } });
    assert.equal(second.zone.source, 'stored');
    assert.equal(second.seeded, 0);
    assert.equal(seedDemoCards(second.ledger), 0);
    assert.deepEqual(second.zone.keys, first.zone.keys);
    await second.simulator.close();
    writeFileSync(join(d, 'lmk.sealed.json'), '{}');
    await assert.rejects(openNetworkSimulator({ dataDir: d }), fails('POSKEY_ERR_NETWORK_OPTION'));
  });
});

describe('faults', () => {
  it('validates settings and plans by the random source', () => {
    assert.deepEqual(resolveFaults({}), NO_FAULTS);
    for (const bad of [
      { delayMs: -1 },
      { jitterMs: 1.5 },
      { dropRate: 1.1 },
      { disconnectRate: Number.NaN },
      { responseCode: '9' },
      { nope: 1 } as never,
    ]) {
      assert.throws(() => resolveFaults(bad), fails('POSKEY_ERR_NETWORK_FAULTS'));
    }
    const f = resolveFaults({
      delayMs: 10,
      jitterMs: 10,
      dropRate: 0.5,
      disconnectRate: 0.5,
      responseCode: '96',
    });
    assert.deepEqual(
      planFaults(f, () => 0.99),
      { delayMs: 20, drop: false, disconnect: false, responseCode: '96' },
    );
    assert.deepEqual(
      planFaults(f, () => 0),
      { delayMs: 10, drop: true, disconnect: false, responseCode: '96' },
    );
    const cut = resolveFaults({ disconnectRate: 1 });
    assert.equal(planFaults(cut, () => 0.5).disconnect, true);
    assert.equal(planFaults(NO_FAULTS, () => 0).drop, false);
  });
});
