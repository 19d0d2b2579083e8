/** Field 48 of a key-delivering 0810: round trips and every refusal. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeKeyDelivery, encodeKeyDelivery, type KeyDelivery } from '../../src/protocol/network-keys.js';

const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9A-F]{${n}}$`));
const key = fc.record({ underZmk: fc.oneof(hex(32), hex(48)), kcv: hex(6) });
const delivery = fc.record({ keySet: fc.stringMatching(/^\d{6}$/), zpk: key, zak: key });

const sample: KeyDelivery = {
  keySet: '000007',
  zpk: { underZmk: '0123456789ABCDEF0123456789ABCDEF', kcv: 'ABC123' },
  zak: { underZmk: 'FEDCBA9876543210FEDCBA9876543210', kcv: '00FF00' },
};

describe('network key delivery (field 48)', () => {
  it('round-trips every well-formed delivery', () => {
    fc.assert(
      fc.property(delivery, (d) =>
        assert.deepEqual(decodeKeyDelivery(encodeKeyDelivery(d)), JSON.parse(JSON.stringify(d))),
      ),
    );
  });

  it('has the documented layout', () => {
    assert.equal(
      encodeKeyDelivery(sample),
      'ZK1000007P320123456789ABCDEF0123456789ABCDEF06ABC123A32FEDCBA9876543210FEDCBA987654321006' + '00FF00',
    );
  });

  it('refuses malformed field 48 with POSKEY_ERR_NETWORK_KEY_DELIVERY naming field 48', () => {
    const good = encodeKeyDelivery(sample);
    for (const bad of [
      undefined,
      '',
      `XX1${good.slice(3)}`,
      good.replace('000007', '00000A'),
      good.replace('P32', 'Q32'),
      good.replace('A32', 'B32'),
      good.replace('P32', 'P3X'),
      good.slice(0, -2),
      `${good}00`,
      good.replace('06ABC123', '04ABC1'),
      good.replace('0123456789ABCDEF0123456789ABCDEF', '0123456789abcdef0123456789abcdef'),
    ]) {
      assert.throws(
        () => decodeKeyDelivery(bad),
        { code: 'POSKEY_ERR_NETWORK_KEY_DELIVERY', field: '48' },
        String(bad),
      );
    }
    assert.throws(() => encodeKeyDelivery({ ...sample, keySet: '7' }), {
      code: 'POSKEY_ERR_NETWORK_KEY_DELIVERY',
    });
    assert.throws(() => encodeKeyDelivery({ ...sample, zpk: { ...sample.zpk, kcv: 'abc' } }), {
      code: 'POSKEY_ERR_NETWORK_KEY_DELIVERY',
    });
  });
});
