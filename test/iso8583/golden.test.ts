import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classify,
  getDialect,
  IsoErrorCode,
  type IsoMessage,
  pack,
  unpack,
} from '../../src/iso8583/index.js';
import { loadVectors } from '../helpers/vectors.js';

interface Golden {
  name: string;
  dialect: string;
  layout: [string, string][];
  hex: string;
  message: IsoMessage;
  classify: { name: string; direction: string; reverses?: string; variant?: string };
}

const { vectors } = loadVectors<Golden>('iso8583-golden.json');

describe('ISO 8583 golden frames (hand-built from the research field tables)', () => {
  for (const v of vectors) {
    describe(v.name, () => {
      const d = getDialect(v.dialect);
      const bytes = Buffer.from(v.hex, 'hex');

      it('hex is the concatenation of its hand-written layout', () => {
        assert.equal(v.layout.map(([h]) => h).join(''), v.hex);
      });

      it('unpacks to the expected message', () => {
        assert.deepStrictEqual(unpack(d, bytes), v.message);
      });

      it('packs the expected message to the same bytes', () => {
        assert.equal(pack(d, v.message).toString('hex').toUpperCase(), v.hex);
      });

      it('classifies', () => {
        const c = classify(d, unpack(d, bytes));
        assert.equal(c.name, v.classify.name);
        assert.equal(c.direction, v.classify.direction);
        if (v.classify.reverses) assert.equal(c.reverses, v.classify.reverses);
        if (v.classify.variant) assert.equal(c.variant, v.classify.variant);
      });
    });
  }

  it('the published UnionPay MAB alone stops at field 64 with TRUNCATED at offset 91', () => {
    const real = vectors.find((v) => v.name.startsWith('real-world'))!;
    const mab = Buffer.from(real.layout[0]![0], 'hex');
    assert.throws(
      () => unpack(getDialect('unionpay-pos'), mab),
      (e: { code: string; fieldPath: string[]; offset: number }) =>
        e.code === IsoErrorCode.TRUNCATED && e.fieldPath.join() === '64' && e.offset === 91,
    );
  });

  it('field 62 is binary in 0810 and ASCII elsewhere (per-MTI override)', () => {
    const d = getDialect('unionpay-pos');
    const resp = vectors.find((v) => v.message[0] === '0810')!;
    const asciiTwin = { ...unpack(d, Buffer.from(resp.hex, 'hex')), 0: '0830', 62: 'ABC' };
    const wire = pack(d, asciiTwin);
    assert.ok(wire.subarray(-5).equals(Buffer.from('0003414243', 'hex')));
    assert.equal(unpack(d, wire)[62], 'ABC');
  });
});
