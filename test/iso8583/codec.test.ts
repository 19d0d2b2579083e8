import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PoskeyError } from '../../src/errors.js';
import {
  defineDialect,
  Enc,
  getDialect,
  getValue,
  IsoError,
  IsoErrorCode,
  type IsoMessage,
  isIsoError,
  Prefix,
  pack,
  packField,
  UNIONPAY_HEADER,
  unpack,
  unpackField,
  WIRE,
} from '../../src/iso8583/index.js';

const pos = getDialect('unionpay-pos');
const net = getDialect('network');
const netHex = getDialect('network-hex');
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function fails(fn: () => unknown, code: string, path?: string, offset?: number, match?: RegExp): IsoError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof IsoError, `expected an IsoError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (path !== undefined) assert.equal(caught.fieldPath.join('.'), path, caught.message);
  if (offset !== undefined) assert.equal(caught.offset, offset, caught.message);
  if (match) assert.match(caught.message, match);
  return caught;
}

/** A 0200 whose fields before 35 are all present, so field 35's prefix sits at offset 55. */
const PURCHASE: IsoMessage = {
  0: '0200',
  2: '6222021234567890123',
  3: '000000',
  4: '000000010000',
  11: '000124',
  12: '103015',
  13: '1124',
  14: '2512',
  15: '1125',
  22: '051',
  23: '001',
  25: '00',
  26: '12',
  32: '12345678901',
  35: '6222021234567890123=25122011234567890',
  41: '12345678',
  42: '898310048160001',
  60: { 1: '22', 2: '000001', 3: '000' },
};

describe('unpack errors: every code, with field, offset and reason', () => {
  it('field 35: length 41 exceeds maximum 37 (the issue example)', () => {
    const bytes = pack(pos, PURCHASE);
    bytes[55] = 0x41; // field 35's LL prefix
    const e = fails(() => unpack(pos, bytes), IsoErrorCode.LENGTH, '35', 55);
    assert.equal(e.message, 'field 35: length 41 exceeds maximum 37 at offset 55');
    assert.equal(e.field, '35');
    assert.equal(e.detail, 'length 41 exceeds maximum 37');
    assert.ok(isIsoError(e) && e instanceof PoskeyError);
    assert.deepStrictEqual(e.toJSON(), { code: 'POSKEY_ERR_ISO_LENGTH', field: '35', message: e.message });
    assert.ok(!isIsoError(new Error('x')));
  });

  it('TRUNCATED: the MTI, the bitmap, a prefix and a value', () => {
    fails(() => unpack(pos, hex('02')), IsoErrorCode.TRUNCATED, 'MTI', 0);
    fails(() => unpack(pos, hex('0200 3020')), IsoErrorCode.TRUNCATED, 'bitmap', 2);
    fails(
      () => unpack(pos, hex('0200 4000000000000000')),
      IsoErrorCode.TRUNCATED,
      '2',
      10,
      /length prefix needs 1 bytes, 0 left/,
    );
    fails(
      () => unpack(pos, hex('0200 4000000000000000 19 6222')),
      IsoErrorCode.TRUNCATED,
      '2',
      11,
      /value needs 10 bytes, 2 left/,
    );
    fails(
      () => unpack(net, Buffer.concat([Buffer.from('0800'), hex('8000000000000000 0000')])),
      IsoErrorCode.TRUNCATED,
      'bitmap',
      12,
    );
  });

  it('LENGTH: a length prefix that is not BCD', () => {
    fails(() => unpack(pos, hex('0200 4000000000000000 1A 00')), IsoErrorCode.LENGTH, '2', 10, /not BCD/);
  });

  it('LENGTH: a composite whose data ends inside a subfield', () => {
    // 60 with 9 digits: 60.1 (2) + 60.2 (6) + 1 digit of 60.3
    fails(
      () => unpack(pos, hex('0800 0000000000000010 0009 0000000100')),
      IsoErrorCode.LENGTH,
      '60.3',
      10,
      /ends after 1 of 3/,
    );
  });

  it('ENCODING: a BCD field holding A–F', () => {
    fails(() => unpack(pos, hex('0200 2000000000000000 00A000')), IsoErrorCode.ENCODING, '3', 11, /not BCD/);
  });

  it('ENCODING: a pad nibble that is neither 0 nor F', () => {
    fails(
      () => unpack(pos, hex('0200 0000040000000000 0215')),
      IsoErrorCode.ENCODING,
      '22',
      11,
      /pad nibble 5/,
    );
  });

  it('BITMAP: a secondary bitmap in a dialect without one, an empty secondary, bad hex', () => {
    fails(() => unpack(pos, hex('0200 C000000000000000')), IsoErrorCode.BITMAP, 'bitmap', 2, /secondary/);
    const empty = Buffer.concat([Buffer.from('0800'), hex('8000000000000000 0000000000000000')]);
    fails(() => unpack(net, empty), IsoErrorCode.BITMAP, 'bitmap', 12, /empty/);
    fails(() => unpack(netHex, Buffer.from('0800G000000000000000')), IsoErrorCode.BITMAP, 'bitmap', 4);
    fails(() => unpack(netHex, Buffer.from('08000020000000Z00000')), IsoErrorCode.BITMAP, 'bitmap', 14);
  });

  it('UNKNOWN_FIELD: a bit for a field the dialect does not define', () => {
    fails(() => unpack(pos, hex('0200 0800000000000000')), IsoErrorCode.UNKNOWN_FIELD, '5', 2, /no field 5/);
    // network: field 65 (tertiary bitmap) is not supported
    const f65 = Buffer.concat([Buffer.from('0800'), hex('8000000000000000 8000000000000000')]);
    fails(() => unpack(net, f65), IsoErrorCode.UNKNOWN_FIELD, '65');
  });

  it('TLV: malformed field 55 names the tag', () => {
    // 55 = 9F26 08 but only 2 value bytes
    fails(
      () => unpack(pos, hex('0200 0000000000000200 0005 9F26081122')),
      IsoErrorCode.TLV,
      '55.9F26',
      14,
      /exceeds the 2 bytes left/,
    );
  });

  it('MTI: not BCD digits', () => {
    fails(() => unpack(pos, hex('0A00 0000000000000000')), IsoErrorCode.MTI, 'MTI', 0);
    fails(() => unpack(net, Buffer.from('08x0')), IsoErrorCode.MTI, 'MTI', 0);
  });

  it('TRAILING: bytes after the last field', () => {
    fails(
      () => unpack(pos, hex('0800 2000000000000000 000001 FF')),
      IsoErrorCode.TRAILING,
      '',
      13,
      /1 bytes follow/,
    );
  });

  it('INPUT: not bytes', () => {
    fails(() => unpack(pos, '0200' as unknown as Uint8Array), IsoErrorCode.INPUT);
  });
});

describe('pack errors', () => {
  it('PACK: missing or malformed MTI', () => {
    fails(() => pack(pos, {} as IsoMessage), IsoErrorCode.PACK, 'MTI');
    fails(() => pack(pos, { 0: '200' }), IsoErrorCode.PACK, 'MTI');
    fails(() => pack(pos, { 0: '02a0' }), IsoErrorCode.PACK, 'MTI');
  });

  it('PACK: wrong length, fixed and variable', () => {
    fails(
      () => pack(pos, { 0: '0200', 3: '00000' }),
      IsoErrorCode.PACK,
      '3',
      undefined,
      /length 5, expected 6/,
    );
    fails(
      () => pack(pos, { 0: '0200', 2: '1'.repeat(20) }),
      IsoErrorCode.PACK,
      '2',
      undefined,
      /length 20, maximum 19/,
    );
    const e = fails(() => pack(pos, { 0: '0200', 3: '00000' }), IsoErrorCode.PACK);
    assert.equal(e.offset, undefined);
  });

  it('PACK: wrong value type or alphabet', () => {
    fails(
      () => pack(pos, { 0: '0200', 3: 123 as unknown as string }),
      IsoErrorCode.PACK,
      '3',
      undefined,
      /must be a string/,
    );
    fails(() => pack(pos, { 0: '0200', 3: '12345a' }), IsoErrorCode.PACK, '3', undefined, /index 5/);
    fails(() => pack(pos, { 0: '0200', 52: '0123' }), IsoErrorCode.PACK, '52');
    fails(() => pack(pos, { 0: '0200', 52: '0123456789ABCDE' }), IsoErrorCode.PACK, '52', undefined, /even/);
    fails(
      () => pack(pos, { 0: '0200', 60: '22000001' }),
      IsoErrorCode.PACK,
      '60',
      undefined,
      /object of subfields/,
    );
    fails(() => pack(pos, { 0: '0200', 55: 'abc' }), IsoErrorCode.PACK, '55');
  });

  it('PACK: subfield errors carry the subfield path', () => {
    fails(
      () => pack(pos, { 0: '0200', 60: { 1: '22', 3: '000' } }),
      IsoErrorCode.PACK,
      '60.3',
      undefined,
      /subfield 2 is absent/,
    );
    fails(() => pack(pos, { 0: '0200', 60: { 1: '2' } }), IsoErrorCode.PACK, '60.1', undefined, /expected 2/);
    fails(
      () => pack(pos, { 0: '0200', 60: { 1: '22', 9: 'x' } }),
      IsoErrorCode.PACK,
      '60.9',
      undefined,
      /unknown subfield/,
    );
    fails(() => pack(pos, { 0: '0200', 60: { 1: '2A' } }), IsoErrorCode.PACK, '60', undefined, /index 1/);
  });

  it('PACK: field 1, non-numeric keys', () => {
    fails(() => pack(pos, { 0: '0200', 1: '00' }), IsoErrorCode.PACK, '1', undefined, /computed/);
    fails(() => pack(pos, { 0: '0200', mti: 'x' } as unknown as IsoMessage), IsoErrorCode.PACK, 'mti');
    fails(() => pack(pos, { 0: '0200', 129: 'x' }), IsoErrorCode.PACK, '129');
  });

  it('only own keys count: inherited properties are neither packed nor refused', () => {
    const msg = Object.assign(Object.create({ note: 'x', 11: '000009' }) as IsoMessage, {
      0: '0800',
      41: '12345678',
    });
    assert.deepStrictEqual(unpack(pos, pack(pos, msg)), { 0: '0800', 41: '12345678' });
  });

  it('PACK: keys that only look like field numbers', () => {
    for (const key of ['01', '1.5', ' 2', '-1', '1e1', '']) {
      fails(
        () => pack(pos, { 0: '0200', [key]: 'x' } as unknown as IsoMessage),
        IsoErrorCode.PACK,
        key,
        undefined,
        /not a field number/,
      );
    }
  });

  it('UNKNOWN_FIELD: a field the dialect lacks', () => {
    fails(() => pack(pos, { 0: '0200', 5: '000000000001' }), IsoErrorCode.UNKNOWN_FIELD, '5');
    fails(() => pack(pos, { 0: '0200', 70: '301' }), IsoErrorCode.UNKNOWN_FIELD, '70');
  });

  it('INPUT: not an object', () => {
    fails(() => pack(pos, null as unknown as IsoMessage), IsoErrorCode.INPUT);
    fails(() => pack(pos, [] as unknown as IsoMessage), IsoErrorCode.INPUT);
  });

  it('undefined fields are left out; the bitmap is computed', () => {
    const a = pack(pos, { 0: '0800', 11: '000001', 39: undefined });
    assert.equal(a.toString('hex'), '08000020000000000000000001');
  });

  it('a pack error leaves no bytes behind for the next pack', () => {
    fails(() => pack(pos, { 0: '0200', 52: '1122334455667788', 53: '26' }), IsoErrorCode.PACK, '53');
    assert.equal(pack(pos, { 0: '0800', 11: '000001' }).toString('hex'), '08000020000000000000000001');
  });

  it('grows past the scratch size for big messages', () => {
    const big: IsoMessage = { 0: '0200' };
    for (const f of [46, 47, 48, 104, 105, 106, 107, 108, 109]) big[f] = 'x'.repeat(f === 104 ? 100 : 999);
    const bytes = pack(net, big);
    assert.ok(bytes.length > 8000);
    assert.deepStrictEqual(unpack(net, bytes), big);
  });
});

describe('round trips and wire spellings', () => {
  it('pad nibble F under the pad-0 dialect: tolerated, noted, repacked identically', () => {
    const wire = hex('0200 4000040000000000 19 6222021234567890123F 021F');
    const msg = unpack(pos, wire);
    assert.deepStrictEqual(msg, { 0: '0200', 2: '6222021234567890123', 22: '021' });
    assert.deepStrictEqual((msg as unknown as Record<symbol, unknown>)[WIRE], {
      'pad:2': 'F',
      'pad:22': 'F',
    });
    assert.ok(pack(pos, msg).equals(wire));
    assert.equal(JSON.stringify(msg), '{"0":"0200","2":"6222021234567890123","22":"021"}');
    // A copy drops the note and packs in the dialect's own pad
    assert.equal(pack(pos, { ...msg }).toString('hex'), '0200400004000000000019622202123456789012300210');
    // The pad-F dialect packs F and notes nothing
    const f = getDialect('unionpay-pos-padF');
    assert.ok(pack(f, { ...msg }).equals(wire));
    assert.equal((unpack(f, wire) as unknown as Record<symbol, unknown>)[WIRE], undefined);
  });

  it('lower-case hex bitmap is kept for repacking', () => {
    const bytes = Buffer.from(
      '0800a2200000020000000400000000000000' + '000000' + '1124103015' + '000129' + '00' + '301',
    );
    const msg = unpack(netHex, bytes);
    assert.equal(msg[39], '00');
    assert.ok(pack(netHex, msg).equals(bytes));
    assert.equal(
      pack(netHex, { ...msg })
        .subarray(4, 6)
        .toString(),
      'A2',
    );
  });

  it('unpack does not modify or keep the input buffer', () => {
    const wire = pack(pos, PURCHASE);
    const copy = Buffer.from(wire);
    const msg = unpack(pos, wire);
    assert.ok(wire.equals(copy));
    wire.fill(0);
    assert.equal(msg[2], '6222021234567890123');
  });

  it('works on a Uint8Array view at a non-zero offset', () => {
    const wire = pack(pos, PURCHASE);
    const padded = new Uint8Array(wire.length + 7);
    padded.set(wire, 7);
    assert.deepStrictEqual(unpack(pos, padded.subarray(7)), PURCHASE);
  });

  it('empty variable fields round-trip', () => {
    const m: IsoMessage = { 0: '0200', 2: '', 55: [], 60: {}, 63: {} };
    assert.deepStrictEqual(unpack(pos, pack(pos, m)), m);
  });

  it('getValue reads fields, subfields and TLV tags', () => {
    const m: IsoMessage = {
      ...PURCHASE,
      55: [{ tag: '9F26', value: '0102' }],
      53: { 1: '2', 2: '6', 3: '0', 4: '0'.repeat(13) },
    };
    assert.equal(getValue(m, 11), '000124');
    assert.equal(getValue(m, '60.3'), '000');
    assert.equal(getValue(m, '60.7'), undefined);
    assert.equal(getValue(m, '55.9f26'), '0102');
    assert.equal(getValue(m, '55.9F27'), undefined);
    assert.equal(getValue(m, 60), undefined);
    assert.equal(getValue(m, '11.1'), undefined);
  });
});

describe('single fields (for framing)', () => {
  it('the 6-byte UnionPay header is a positional composite', () => {
    const r = unpackField(UNIONPAY_HEADER, hex('603100310001'));
    assert.deepStrictEqual(r, { value: { 1: '60', 2: '31', 3: '0', 4: '0', 5: '310001' }, read: 6 });
    assert.equal(packField(UNIONPAY_HEADER, r.value).toString('hex'), '603100310001');
  });

  it('unpackField honours offset and end, names errors, reports the pad seen', () => {
    const spec = pos.fields[2]!;
    const r = unpackField(spec, hex('FFFF 03 123F'), { offset: 2 });
    assert.deepStrictEqual(r, { value: '123', read: 3, pad: 'F' });
    assert.equal(packField(spec, '123', { pad: 'F' }).toString('hex'), '03123f');
    fails(
      () => unpackField(UNIONPAY_HEADER, hex('6031'), { name: 'header' }),
      IsoErrorCode.TRUNCATED,
      'header',
      0,
    );
    fails(() => unpackField(spec, hex('03 123F'), { end: 2 }), IsoErrorCode.TRUNCATED, 'field');
    fails(() => packField(UNIONPAY_HEADER, { 1: '6' }, { name: 'header' }), IsoErrorCode.PACK, 'header.1');
    fails(() => unpackField(spec, 'x' as unknown as Uint8Array), IsoErrorCode.INPUT);
  });
});

describe('hex-text TLV fields', () => {
  const d = defineDialect({
    name: 'hex-tlv',
    desc: 'test: field 55 as hex text with a binary length',
    mti: { length: 4, desc: 'MTI', enc: 'ASCII.numeric', prefix: 'Fixed' },
    bitmap: { enc: 'hex', secondary: false },
    fields: { 55: { length: 255, desc: 'ICC', enc: Enc.hexAscii, prefix: Prefix.binary.L, tlv: true } },
  });

  it('round-trips and reports TLV errors at the field', () => {
    const m: IsoMessage = { 0: '0200', 55: [{ tag: '9F26', value: '0102' }] };
    const wire = pack(d, m);
    assert.equal(wire.toString('latin1'), '02000000000000000200\x059F26020102');
    assert.deepStrictEqual(unpack(d, wire), m);
    const broken = Buffer.concat([
      Buffer.from('02000000000000000200'),
      Buffer.from([3]),
      Buffer.from('9F2608'),
    ]);
    fails(() => unpack(d, broken), IsoErrorCode.TLV, '55.9F26', 21);
  });
});
