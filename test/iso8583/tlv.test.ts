import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeTlv,
  findTag,
  getDialect,
  IsoError,
  IsoErrorCode,
  type IsoMessage,
  pack,
  unpack,
  WIRE,
} from '../../src/iso8583/index.js';

const pos = getDialect('unionpay-pos');
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const tlv = (s: string) => {
  const b = hex(s);
  return decodeTlv(b, 0, b.length);
};

function tlvFails(s: string, path: string, offset: number, match: RegExp): void {
  assert.throws(
    () => tlv(s),
    (e: unknown) =>
      e instanceof IsoError &&
      e.code === IsoErrorCode.TLV &&
      e.fieldPath.join('.') === path &&
      e.offset === offset &&
      match.test(e.message),
  );
}

describe('BER-TLV (field 55)', () => {
  it('reads one-, two- and three-byte tags and keeps order and unknown tags', () => {
    assert.deepStrictEqual(tlv('9F2602AABB 95 01 00 DF810101FF 5F2A020156 DF6000'), [
      { tag: '9F26', value: 'AABB' },
      { tag: '95', value: '00' },
      { tag: 'DF8101', value: 'FF' },
      { tag: '5F2A', value: '0156' },
      { tag: 'DF60', value: '' },
    ]);
  });

  it('reads 81 and 82 long-form lengths', () => {
    const v = 'AB'.repeat(200);
    assert.deepStrictEqual(tlv(`72 81C8 ${v}`), [{ tag: '72', value: v }]);
    assert.deepStrictEqual(tlv(`72 8200C8 ${v}`), [{ tag: '72', value: v }]);
  });

  it('keeps duplicate tags, in order', () => {
    assert.deepStrictEqual(tlv('9F3701AA 9F3701BB'), [
      { tag: '9F37', value: 'AA' },
      { tag: '9F37', value: 'BB' },
    ]);
  });

  it('a non-minimal length form survives a round trip through the message', () => {
    const wire = hex('0200 0000000000000200 0009 9F2681020102 9501FF');
    const msg = unpack(pos, wire);
    assert.deepStrictEqual(msg[55], [
      { tag: '9F26', value: '0102' },
      { tag: '95', value: 'FF' },
    ]);
    assert.deepStrictEqual((msg as unknown as Record<symbol, unknown>)[WIRE], { 'tlv:55:0': '2' });
    assert.ok(pack(pos, msg).equals(wire));
    assert.equal(
      pack(pos, { ...msg })
        .toString('hex')
        .toUpperCase(),
      '020000000000000002000008' + '9F26020102' + '9501FF',
    );
  });

  it('packs lower-case tags and values as upper case', () => {
    const m = { 0: '0200', 55: [{ tag: '9f26', value: 'aabb' }] } as IsoMessage;
    assert.deepStrictEqual(unpack(pos, pack(pos, m))[55], [{ tag: '9F26', value: 'AABB' }]);
  });

  it('packs long values with a long-form length', () => {
    const m: IsoMessage = { 0: '0200', 55: [{ tag: '72', value: '00'.repeat(130) }] };
    const wire = pack(pos, m);
    assert.equal(wire.subarray(10, 15).toString('hex'), '0133728182');
    assert.deepStrictEqual(unpack(pos, wire), m);
  });

  describe('POSKEY_ERR_ISO_TLV', () => {
    it('tag byte 00 or FF', () => tlvFails('00 01 AA', '#0', 0, /not a valid tag/));
    it('tag runs past the end', () => tlvFails('9501AA 9F', '#1', 3, /tag runs past/));
    it('tag longer than 4 bytes', () => tlvFails('9F81818101 00', '#0', 0, /longer than 4/));
    it('length missing', () => tlvFails('9F26', '9F26', 2, /length missing/));
    it('indefinite or 4-byte length forms', () => {
      tlvFails('72 80 00', '72', 1, /length form 80/);
      tlvFails('72 84 00000001 00', '72', 1, /length form 84/);
    });
    it('long length runs past the end', () => tlvFails('72 82 01', '72', 1, /runs past/));
    it('value longer than the field', () =>
      tlvFails('9F26 08 0102', '9F26', 2, /value length 8 exceeds the 2 bytes left/));
  });

  describe('pack errors in field 55', () => {
    const bad: [string, unknown, string][] = [
      ['not an array', { tag: '95' }, '55'],
      ['item not an object', [null], '55.#0'],
      ['tag not a string', [{ tag: 95, value: '' }], '55.#0'],
      ['tag not hex', [{ tag: '9G', value: '' }], '55.#0'],
      ['tag too long', [{ tag: '9F81818101', value: '' }], '55.#0'],
      ['tag 9F without a second byte', [{ tag: '9F', value: '' }], '55.9F'],
      ['single-byte tag followed by more', [{ tag: '9501', value: '' }], '55.9501'],
      ['second tag byte with its continuation bit but no third', [{ tag: '9F81', value: '' }], '55.9F81'],
      ['tag 00', [{ tag: '00', value: '' }], '55.00'],
      ['odd value', [{ tag: '95', value: 'ABC' }], '55.95'],
      ['non-hex value', [{ tag: '95', value: 'ZZ' }], '55.95'],
    ];
    for (const [name, value, path] of bad) {
      it(name, () => {
        assert.throws(
          () => pack(pos, { 0: '0200', 55: value } as IsoMessage),
          (e: unknown) =>
            e instanceof IsoError && e.code === IsoErrorCode.PACK && e.fieldPath.join('.') === path,
        );
      });
    }
    it('more than 255 bytes', () => {
      assert.throws(
        () => pack(pos, { 0: '0200', 55: [{ tag: '72', value: '00'.repeat(300) }] }),
        (e: unknown) =>
          e instanceof IsoError && e.code === IsoErrorCode.PACK && /maximum 255/.test(e.message),
      );
    });
  });

  it('findTag looks a tag up case-insensitively', () => {
    const items = tlv('9F2602AABB 9501FF');
    assert.equal(findTag(items, '9f26')?.value, 'AABB');
    assert.equal(findTag(items, '9F27'), undefined);
    assert.equal(findTag(undefined, '95'), undefined);
  });
});
