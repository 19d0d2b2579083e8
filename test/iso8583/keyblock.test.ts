import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  getDialect,
  IsoError,
  IsoErrorCode,
  joinKeyBlock,
  keyBlockLength,
  splitKeyBlock,
  unpack,
} from '../../src/iso8583/index.js';
import { loadVectors } from '../helpers/vectors.js';

describe('field 62 sign-in key block (research §1.4)', () => {
  it('lengths by 60.3', () => {
    assert.equal(keyBlockLength('001'), 24);
    assert.equal(keyBlockLength('003'), 40);
    assert.equal(keyBlockLength('004'), 60);
    assert.equal(keyBlockLength('006'), 60);
  });

  it('splits the golden 0810 key blocks and joins them back', () => {
    const { vectors } = loadVectors<{ hex: string; dialect: string }>('iso8583-golden.json');
    const d = getDialect('unionpay-pos');
    const responses = vectors
      .filter((v) => v.dialect === 'unionpay-pos')
      .map((v) => unpack(d, Buffer.from(v.hex, 'hex')))
      .filter((m) => m[0] === '0810');
    assert.equal(responses.length, 4);
    for (const m of responses) {
      const code = (m[60] as Record<number, string>)[3]!;
      const f62 = m[62] as string;
      const keys = splitKeyBlock(f62, code);
      assert.equal(keys.pikCv, 'A1A1A1A1');
      assert.equal(keys.makCv, 'B2B2B2B2');
      assert.equal(keys.tdkCv, code === '004' || code === '006' ? 'C3C3C3C3' : undefined);
      assert.equal(keys.pik.length, code === '001' ? 16 : 32);
      assert.equal(joinKeyBlock(keys, code), f62);
    }
  });

  it('003 carries the 8-byte MAK padded with 8 zero bytes in its 16-byte slot', () => {
    const block = `${'11'.repeat(16)}AAAAAAAA${'22'.repeat(8)}${'00'.repeat(8)}BBBBBBBB`;
    assert.equal(splitKeyBlock(block, '003').mak, `${'22'.repeat(8)}${'00'.repeat(8)}`);
  });

  it('errors: wrong length is LENGTH, unknown code and bad parts are PACK', () => {
    const is = (code: string) => (e: unknown) =>
      e instanceof IsoError && e.code === code && e.fieldPath.join() === '62';
    assert.throws(() => splitKeyBlock('00'.repeat(24), '003'), is(IsoErrorCode.LENGTH));
    assert.throws(() => splitKeyBlock('ZZ'.repeat(24), '001'), is(IsoErrorCode.LENGTH));
    assert.throws(() => keyBlockLength('002'), is(IsoErrorCode.PACK));
    assert.throws(
      () => joinKeyBlock({ pik: '00', pikCv: '00000000', mak: '00'.repeat(8), makCv: '00000000' }, '001'),
      is(IsoErrorCode.PACK),
    );
    assert.throws(
      () =>
        joinKeyBlock(
          { pik: '00'.repeat(16), pikCv: '00000000', mak: '00'.repeat(16), makCv: '00000000' },
          '004',
        ),
      is(IsoErrorCode.PACK),
    );
  });
});
