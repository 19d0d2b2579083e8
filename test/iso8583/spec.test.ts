import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DIALECT_NAMES,
  type DialectInput,
  defineDialect,
  defineField,
  dialectToJSON,
  Enc,
  fieldToJSON,
  getDialect,
  IsoError,
  IsoErrorCode,
  type IsoMessage,
  joinPositional,
  Prefix,
  pack,
  type SubfieldSpec,
  splitPositional,
  unpack,
} from '../../src/iso8583/index.js';
import { loadVectors } from '../helpers/vectors.js';

function dialectFails(fn: () => unknown, match: RegExp): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof IsoError && e.code === IsoErrorCode.DIALECT && match.test(e.message),
  );
}

describe('field specs', () => {
  it('name their parts and print as JSON', () => {
    const f = getDialect('unionpay-pos').fields[35]!;
    assert.deepStrictEqual(fieldToJSON(f), {
      length: 37,
      desc: 'track 2 data',
      enc: 'BCD.track',
      prefix: 'BCD.LL',
      pad: '0',
    });
    assert.equal(getDialect('unionpay-pos').fields[60]!.kind, 'composite');
    assert.equal(getDialect('unionpay-pos').fields[55]!.kind, 'tlv');
  });

  it('resolve parts given by name', () => {
    const f = defineField({ length: 6, desc: 'x', enc: 'BCD.left', prefix: 'BCD.LLL', pad: 'F' });
    assert.equal(f.enc, Enc.bcdLeft);
    assert.equal(f.prefix, Prefix.bcd.LLL);
    assert.equal(f.padNibble, 15);
    assert.ok(Object.isFrozen(f));
  });

  describe('POSKEY_ERR_ISO_DIALECT on invalid specs', () => {
    const base = { length: 5, desc: 'x', enc: Enc.ascii, prefix: Prefix.fixed };
    const cases: [string, object, RegExp][] = [
      ['unknown encoding', { ...base, enc: 'EBCDIC' }, /unknown encoding/],
      ['unknown prefix', { ...base, prefix: 'BCD.L' }, /unknown length prefix/],
      ['zero length', { ...base, length: 0 }, /positive integer/],
      [
        'maximum above the prefix',
        { ...base, length: 100, prefix: Prefix.bcd.LL },
        /does not fit prefix BCD.LL/,
      ],
      ['bad pad', { ...base, pad: 'E' }, /pad must be/],
      ['TLV on characters', { ...base, tlv: true }, /byte encoding/],
      [
        'TLV and subfields',
        { ...base, enc: Enc.binary, tlv: true, subfields: [{ id: 1, length: 5, desc: 'a' }] },
        /either TLV/,
      ],
      [
        'subfields on binary',
        { ...base, enc: Enc.binary, subfields: [{ id: 1, length: 5, desc: 'a' }] },
        /digit or character/,
      ],
      [
        'subfields not covering a fixed field',
        { ...base, subfields: [{ id: 1, length: 3, desc: 'a' }] },
        /cover 3 units, the field has 5/,
      ],
      [
        'subfields longer than the maximum',
        { ...base, prefix: Prefix.bcd.LL, subfields: [{ id: 1, length: 6, desc: 'a' }] },
        /more than 5/,
      ],
      [
        'duplicate subfield ids',
        {
          ...base,
          subfields: [
            { id: 1, length: 3, desc: 'a' },
            { id: 1, length: 2, desc: 'b' },
          ],
        },
        /distinct/,
      ],
      ['subfield length 0', { ...base, subfields: [{ id: 1, length: 0, desc: 'a' }] }, /subfield length/],
      [
        'variable subfield not last',
        {
          ...base,
          subfields: [
            { id: 1, length: 3, desc: 'a', variable: true },
            { id: 2, length: 2, desc: 'b' },
          ],
        },
        /only the last/,
      ],
    ];
    for (const [name, input, match] of cases)
      it(name, () => dialectFails(() => defineField(input as never, ['9']), match));

    const dialect = (over: Partial<DialectInput>): DialectInput => ({
      name: 't',
      desc: 't',
      mti: { length: 4, desc: 'MTI', enc: Enc.bcdRight, prefix: Prefix.fixed },
      bitmap: { enc: 'binary', secondary: false },
      fields: {},
      ...over,
    });
    it('bad bitmap encoding', () =>
      dialectFails(
        () => defineDialect(dialect({ bitmap: { enc: 'b64' as 'hex', secondary: false } })),
        /bitmap/,
      ));
    it('MTI not 4 fixed digits', () => {
      dialectFails(
        () =>
          defineDialect(dialect({ mti: { length: 4, desc: 'MTI', enc: Enc.ascii, prefix: Prefix.fixed } })),
        /MTI/,
      );
      dialectFails(
        () =>
          defineDialect(
            dialect({ mti: { length: 4, desc: 'MTI', enc: Enc.bcdRight, prefix: Prefix.bcd.LL } }),
          ),
        /MTI/,
      );
    });
    it('field number out of range', () => {
      dialectFails(
        () =>
          defineDialect(
            dialect({ fields: { 70: { length: 3, desc: 'x', enc: Enc.bcdRight, prefix: Prefix.fixed } } }),
          ),
        /2 to 64/,
      );
      dialectFails(
        () =>
          defineDialect(
            dialect({ fields: { 1: { length: 3, desc: 'x', enc: Enc.bcdRight, prefix: Prefix.fixed } } }),
          ),
        /2 to 64/,
      );
    });
    it('override key not an MTI', () =>
      dialectFails(() => defineDialect(dialect({ overrides: { '08x0': {} } })), /4-digit MTIs/));
    it('unknown dialect name', () =>
      dialectFails(() => getDialect('visa-base1'), /unknown dialect "visa-base1"/));
  });
});

describe('dialects', () => {
  it('getDialect returns the same frozen object for each name', () => {
    for (const name of DIALECT_NAMES) {
      assert.equal(getDialect(name), getDialect(name));
      assert.ok(Object.isFrozen(getDialect(name)));
      assert.equal(getDialect(name).name, name);
    }
  });

  it('per-MTI override: 62 is binary in 0810 only', () => {
    const d = getDialect('unionpay-pos');
    assert.equal(d.table('0810')[62]!.enc, Enc.binary);
    assert.equal(d.table('0800')[62]!.enc, Enc.ascii);
    assert.equal(d.table('0500')[48]!.kind, 'composite');
    assert.equal(d.table('0320')[48]!.kind, 'value');
  });

  it('the network dialect defines 2–64 and 66–128 with ASCII numerics', () => {
    const d = getDialect('network');
    for (let n = 2; n <= 128; n++) assert.equal(d.fields[n] === undefined, n === 65, `field ${n}`);
    assert.equal(d.fields[3]!.enc, Enc.asciiNumeric);
    assert.equal(d.fields[52]!.enc, Enc.binary);
    assert.equal(d.fields[128]!.enc, Enc.binary);
    assert.equal(d.mti.enc, Enc.asciiNumeric);
  });

  it('dialect JSON rebuilds an equivalent dialect (same bytes for every golden frame)', () => {
    const { vectors } = loadVectors<{ dialect: string; hex: string; message: IsoMessage }>(
      'iso8583-golden.json',
    );
    for (const v of vectors) {
      const original = getDialect(v.dialect);
      const json = JSON.parse(JSON.stringify(dialectToJSON(original))) as DialectInput;
      const rebuilt = defineDialect(json);
      assert.deepStrictEqual(dialectToJSON(rebuilt), dialectToJSON(original));
      assert.equal(pack(rebuilt, v.message).toString('hex').toUpperCase(), v.hex);
      assert.deepStrictEqual(unpack(rebuilt, Buffer.from(v.hex, 'hex')), v.message);
    }
  });
});

describe('positional subfields', () => {
  const subs: SubfieldSpec[] = [
    { id: 1, length: 2, desc: 'a' },
    {
      id: 2,
      length: 3,
      desc: 'b',
      subfields: [
        { id: 1, length: 1, desc: 'b1' },
        { id: 2, length: 2, desc: 'b2' },
      ],
    },
    {
      id: 3,
      length: 10,
      desc: 'c',
      variable: true,
      subfields: [
        { id: 1, length: 2, desc: 'c1' },
        { id: 2, length: 8, desc: 'c2', variable: true },
      ],
    },
  ];

  it('split and join, nested, trailing subfields optional', () => {
    assert.deepStrictEqual(splitPositional('', subs), {});
    assert.deepStrictEqual(splitPositional('12', subs), { 1: '12' });
    assert.deepStrictEqual(splitPositional('12345', subs), { 1: '12', 2: { 1: '3', 2: '45' } });
    assert.deepStrictEqual(splitPositional('1234567', subs), {
      1: '12',
      2: { 1: '3', 2: '45' },
      3: { 1: '67' },
    });
    assert.deepStrictEqual(splitPositional('123456789', subs), {
      1: '12',
      2: { 1: '3', 2: '45' },
      3: { 1: '67', 2: '89' },
    });
    for (const s of ['', '12', '12345', '1234567', '123456789'])
      assert.equal(joinPositional(splitPositional(s, subs), subs), s);
  });

  it('LENGTH errors name the subfield', () => {
    const fails = (s: string, path: string, match: RegExp) =>
      assert.throws(
        () => splitPositional(s, subs),
        (e: unknown) =>
          e instanceof IsoError &&
          e.code === IsoErrorCode.LENGTH &&
          e.fieldPath.join('.') === path &&
          match.test(e.message),
      );
    fails('1', '1', /ends after 1 of 2/);
    fails('1234', '2', /ends after 2 of 3/);
    fails('123456', '3.1', /ends after 1 of 2/);
    fails(`12345${'x'.repeat(11)}`, '3', /length 11 exceeds maximum 10/);
    const fixedOnly: SubfieldSpec[] = [{ id: 1, length: 2, desc: 'a' }];
    assert.throws(() => splitPositional('123', fixedOnly), /1 units follow the last subfield/);
  });

  it('PACK errors: empty nested or variable subfields, non-strings', () => {
    const fails = (v: unknown, path: string, match: RegExp) =>
      assert.throws(
        () => joinPositional(v, subs),
        (e: unknown) =>
          e instanceof IsoError &&
          e.code === IsoErrorCode.PACK &&
          e.fieldPath.join('.') === path &&
          match.test(e.message),
      );
    fails({ 1: '12', 2: { 1: '3', 2: '45' }, 3: {} }, '3', /empty/);
    fails({ 1: '12', 2: { 1: '3', 2: '45' }, 3: { 1: '67', 2: '' } }, '3.2', /empty/);
    fails({ 1: 12 }, '1', /must be a string/);
    fails({ 1: '12', 2: '345' }, '2', /object of subfields/);
    fails({ 1: '12', 2: { 1: '3', 2: '4' } }, '2.2', /expected 2/);
  });
});
