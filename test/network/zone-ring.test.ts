/** The network's zone key ring with a real HSM: pending, promotion on first use, overlap expiry, persistence. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { createZoneKeys } from '../../src/network/zone.js';
import { ZoneKeyRing, type ZoneRingState } from '../../src/network/zone-ring.js';

async function ring(overlapMs = 1000) {
  const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('01')]) });
  const zone = await createZoneKeys(hsm);
  const clock = { now: 1_000_000 };
  const saved: ZoneRingState[] = [];
  const r = new ZoneKeyRing({
    initial: { keySet: '000000', zpk: zone.keys.zpk, zak: zone.keys.zak },
    zmk: zone.keys.zmk,
    overlapMs,
    clock: () => clock.now,
    persist: (s) => saved.push(structuredClone(s)),
  });
  return { hsm, r, clock, saved };
}

describe('zone key ring', () => {
  it('a delivered pair is pending until used, then active; the old pair is accepted for the overlap only', async () => {
    const { hsm, r, clock, saved } = await ring(1000);
    const first = r.active;
    const d = r.exchange(hsm);
    assert.equal(d.keySet, '000001');
    assert.equal(r.active.keySet, '000000');
    assert.deepEqual(
      r.candidates().map((k) => k.keySet),
      ['000000', '000001'],
    );
    const pending = r.candidates()[1]!;
    assert.equal(hsm.checkValue(pending.zpk, 'legacy').value, d.zpk.kcv);
    assert.equal(hsm.checkValue(pending.zak, 'legacy').value, d.zak.kcv);
    r.used(first);
    assert.equal(r.active.keySet, '000000', 'using the active pair promotes nothing');
    r.used(pending);
    assert.equal(r.active.keySet, '000001');
    assert.deepEqual(
      r.candidates().map((k) => k.keySet),
      ['000001', '000000'],
    );
    clock.now += 1000;
    assert.deepEqual(
      r.candidates().map((k) => k.keySet),
      ['000001'],
    );
    assert.equal(saved.length, 2, 'every change persisted');
    assert.equal(saved[1]!.active.keySet, '000001');
  });

  it('an unused pending pair (a lost 0810) is replaced by the next exchange; the old pair stays active', async () => {
    const { hsm, r } = await ring();
    r.exchange(hsm);
    const d2 = r.exchange(hsm);
    assert.equal(d2.keySet, '000002');
    assert.deepEqual(
      r.candidates().map((k) => k.keySet),
      ['000000', '000002'],
    );
  });

  it('restores a saved state', async () => {
    const { hsm, r } = await ring();
    r.exchange(hsm);
    const again = new ZoneKeyRing({ initial: r.state() });
    assert.deepEqual(again.candidates(), r.candidates());
    assert.equal(again.canExchange, false);
    assert.throws(() => again.exchange(hsm), { code: 'POSKEY_ERR_NETWORK_OPTION', field: 'zmk' });
    assert.throws(() => new ZoneKeyRing({ initial: r.state(), overlapMs: -1 }), {
      code: 'POSKEY_ERR_NETWORK_OPTION',
      field: 'keyOverlapMs',
    });
  });
});
