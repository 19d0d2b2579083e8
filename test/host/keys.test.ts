/**
 * Zone keys in the host's HSM: imported from the zone file + ZMK components and saved as LMK
 * blocks, reused on a restart without components, refused when they do not fit.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseHostConfig } from '../../src/host/config.js';
import { loadZoneKeys, ZONE_KEYS_FILE } from '../../src/host/keys.js';
import { createInProcessClient } from '../../src/hsm/client/in-process.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { createZoneKeys } from '../../src/network/zone.js';

const newHsm = () => new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });

describe('loadZoneKeys', () => {
  it('imports from components + zone file, saves the LMK blocks, and reuses them without components', async () => {
    const network = newHsm();
    const zone = await createZoneKeys(network);
    const hsm = createInProcessClient(newHsm());
    const dir = mkdtempSync(join(tmpdir(), 'poskey-zone-'));
    const config = parseHostConfig({ dataDir: dir });
    const keys = await loadZoneKeys(hsm, config, {
      zmkComponents: zone.zmkComponents,
      zoneFile: zone.zoneFile,
    });
    assert.equal(keys.pinFormat, 0);
    assert.equal((await hsm.describeKey(keys.zpk)).keyType, 'ZPK');
    assert.equal((await hsm.describeKey(keys.zak)).keyType, 'ZAK');
    assert.equal(statSync(join(dir, ZONE_KEYS_FILE)).mode & 0o777, 0o600);
    // Same keys as the network's: a MAC made by one verifies at the other.
    const data = 'A1B2C3D4E5F60718';
    const mac = network.generateMac({
      key: { kind: 'key', keyBlock: zone.keys.zak },
      algorithm: 'retail',
      data,
    });
    assert.equal(
      await hsm.verifyMac({ key: { kind: 'key', keyBlock: keys.zak }, algorithm: 'retail', data, mac }),
      true,
    );
    // Restart: no components, with or without the zone file.
    const again = await loadZoneKeys(hsm, config, { zoneFile: zone.zoneFile, env: {} });
    assert.deepEqual(again, keys);
    assert.deepEqual(await loadZoneKeys(hsm, config, { env: {} }), keys);
    // Components from the environment variable.
    const fromEnv = await loadZoneKeys(hsm, config, {
      zoneFile: zone.zoneFile,
      env: { POSKEY_ZMK_COMPONENTS: zone.zmkComponents.join(',') },
    });
    assert.equal(fromEnv.pinFormat, 0);
  });

  it('refuses (POSKEY_ERR_HOST_ZONE): nothing saved and no components; a zone file the saved keys are not; a broken or foreign file', async () => {
    const network = newHsm();
    const zone = await createZoneKeys(network);
    const hsm = createInProcessClient(newHsm());
    const dir = mkdtempSync(join(tmpdir(), 'poskey-zone-'));
    const config = parseHostConfig({ dataDir: dir });
    await assert.rejects(loadZoneKeys(hsm, config, { zoneFile: zone.zoneFile, env: {} }), {
      code: 'POSKEY_ERR_HOST_ZONE',
      field: 'zone',
    });
    await loadZoneKeys(hsm, config, { zmkComponents: zone.zmkComponents, zoneFile: zone.zoneFile });
    const rotated = await createZoneKeys(network);
    await assert.rejects(loadZoneKeys(hsm, config, { zoneFile: rotated.zoneFile, env: {} }), {
      code: 'POSKEY_ERR_HOST_ZONE',
      field: 'zone.zpk',
    });
    // Another HSM (another LMK) cannot open the saved blocks.
    await assert.rejects(loadZoneKeys(createInProcessClient(newHsm()), config, { env: {} }), {
      code: 'POSKEY_ERR_HOST_ZONE',
      field: 'zone.keysFile',
    });
    writeFileSync(join(dir, ZONE_KEYS_FILE), '{"format":"something else"}');
    await assert.rejects(loadZoneKeys(hsm, config, { env: {} }), {
      code: 'POSKEY_ERR_HOST_ZONE',
      field: 'zone.keysFile',
    });
    // Components of another zone: the zone module's own error passes through.
    await assert.rejects(
      loadZoneKeys(hsm, config, { zmkComponents: rotated.zmkComponents, zoneFile: zone.zoneFile }),
      { code: 'POSKEY_ERR_ZONE_ZMK_KCV' },
    );
  });
});
