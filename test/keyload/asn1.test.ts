import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PoskeyError } from '../../src/errors.js';
import {
  type Asn1,
  algorithmId,
  bitString,
  bool,
  decodeDer,
  expectChildren,
  expectTag,
  explicit,
  implicit,
  integer,
  MAX_DEPTH,
  nullValue,
  octets,
  oid,
  printable,
  readAlgorithmId,
  readBitString,
  readBoolean,
  readInteger,
  readOctets,
  readOid,
  readSmallInt,
  readString,
  readTime,
  seq,
  set,
  TAG,
  time,
  tlv,
  utf8,
} from '../../src/keyload/asn1.js';

const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  return true;
};
const hex = (h: string) => Buffer.from(h, 'hex');
const asn1Err = code('POSKEY_ERR_ASN1');

describe('DER encoding of known values (X.690 examples)', () => {
  it('encodes INTEGERs minimally in two’s complement', () => {
    const cases: [bigint | number, string][] = [
      [0, '020100'],
      [127, '02017f'],
      [128, '02020080'],
      [256, '02020100'],
      [-1, '0201ff'],
      [-128, '020180'],
      [-129, '0202ff7f'],
      [0x7fffffffffffffffn, '02087fffffffffffffff'],
    ];
    for (const [v, want] of cases) {
      assert.equal(integer(v).toString('hex'), want, String(v));
      assert.equal(readInteger(decodeDer(integer(v)), 'i'), BigInt(v));
    }
  });

  it('encodes unsigned byte strings as positive INTEGERs (serial numbers, key values)', () => {
    assert.equal(integer(hex('80')).toString('hex'), '02020080');
    assert.equal(integer(hex('000001')).toString('hex'), '020101');
    assert.equal(integer(hex('0080')).toString('hex'), '02020080');
    assert.equal(integer(hex('')).toString('hex'), '020100');
  });

  it('encodes OIDs, including the X.690 2.999.3 example and large arcs', () => {
    assert.equal(oid('1.2.840.113549.1.7.2').toString('hex'), '06092a864886f70d010702');
    assert.equal(oid('2.999.3').toString('hex'), '0603883703');
    assert.equal(oid('1.2.156.10197.1.301').toString('hex'), '06082a811ccf5501822d');
    assert.equal(
      readOid(decodeDer(oid('2.25.340282366920938463463374607431768211455')), 'o'),
      '2.25.340282366920938463463374607431768211455',
    );
  });

  it('encodes lengths in short and long form', () => {
    assert.equal(octets(Buffer.alloc(127)).subarray(0, 2).toString('hex'), '047f');
    assert.equal(octets(Buffer.alloc(128)).subarray(0, 3).toString('hex'), '048180');
    assert.equal(octets(Buffer.alloc(256)).subarray(0, 4).toString('hex'), '04820100');
  });

  it('uses UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280 §4.1.2.5)', () => {
    assert.equal(time(new Date('2049-12-31T23:59:59Z')).toString('latin1').slice(2), '491231235959Z');
    assert.equal(time(new Date('2049-12-31T23:59:59Z'))[0], TAG.UTC_TIME);
    assert.equal(time(new Date('2050-01-01T00:00:00Z')).toString('latin1').slice(2), '20500101000000Z');
    assert.equal(time(new Date('1950-01-01T00:00:00Z')).toString('latin1').slice(2), '500101000000Z');
    assert.equal(time(new Date('1949-12-31T00:00:00Z'))[0], TAG.GENERALIZED_TIME);
    assert.deepEqual(
      readTime(decodeDer(tlv(TAG.UTC_TIME, Buffer.from('500101000000Z'))), 't'),
      new Date('1950-01-01T00:00:00Z'),
    );
    assert.deepEqual(
      readTime(decodeDer(tlv(TAG.UTC_TIME, Buffer.from('491231235959Z'))), 't'),
      new Date('2049-12-31T23:59:59Z'),
    );
    assert.deepEqual(
      readTime(decodeDer(tlv(TAG.GENERALIZED_TIME, Buffer.from('00040229120000Z'))), 't').getUTCFullYear(),
      4,
    );
  });

  it('orders SET OF by encoding, whatever the input order', () => {
    const a = integer(300);
    const b = integer(1);
    const c = octets(hex('00'));
    assert.deepEqual(set(a, b, c), set(c, b, a));
    assert.equal(set(a, b).toString('hex'), '31070201010202012c');
  });

  it('encodes the small types', () => {
    assert.equal(nullValue().toString('hex'), '0500');
    assert.equal(bool(true).toString('hex'), '0101ff');
    assert.equal(bool(false).toString('hex'), '010100');
    assert.equal(bitString(hex('ab')).toString('hex'), '030200ab');
    assert.equal(explicit(0, integer(2)).toString('hex'), 'a003020102');
    assert.equal(implicit(0, octets(hex('01'))).toString('hex'), '800101');
    assert.equal(implicit(1, seq(integer(1))).toString('hex'), 'a103020101');
    assert.equal(utf8('é').toString('hex'), '0c02c3a9');
    assert.equal(printable("A-z 0'()+,./:=?").length, 17);
    assert.equal(algorithmId('1.2.3', nullValue()).toString('hex'), '300606022a030500');
  });
});

describe('DER decoding', () => {
  it('reads nested structures and typed values', () => {
    const der = seq(
      integer(5),
      seq(oid('1.2.3'), bool(true)),
      octets(hex('cafe')),
      bitString(hex('01')),
      utf8('x'),
      printable('y'),
    );
    const node = decodeDer(der);
    const [n, inner, o, b, u, p] = expectChildren(node, TAG.SEQUENCE, 'x', 6);
    assert.equal(readSmallInt(n, 'n'), 5);
    const [io, ib] = expectChildren(inner, TAG.SEQUENCE, 'inner', 2);
    assert.equal(readOid(io, 'oid'), '1.2.3');
    assert.equal(readBoolean(ib, 'bool'), true);
    assert.equal(readOctets(o, 'o').toString('hex'), 'cafe');
    assert.equal(readBitString(b, 'b').toString('hex'), '01');
    assert.equal(readString(u, 'u'), 'x');
    assert.equal(readString(p, 'p'), 'y');
    assert.equal(readString(decodeDer(tlv(TAG.BMP_STRING, hex('00410042'))), 'bmp'), 'AB');
    assert.deepEqual(readAlgorithmId(decodeDer(algorithmId('1.2.3')), 'alg'), {
      oid: '1.2.3',
      params: undefined,
    });
  });

  it('rejects non-DER and malformed encodings with POSKEY_ERR_ASN1', () => {
    const bad: [string, string][] = [
      ['3080020101 0000', 'indefinite length'],
      ['04810101', 'long form below 128'],
      ['0482000101', 'length with a leading zero'],
      ['0485ffffffffff', 'length of 5 octets'],
      ['0405 0102', 'content runs past the end'],
      ['04', 'truncated before length'],
      ['0481', 'truncated inside the length'],
      ['020101 00', 'trailing byte'],
      ['02020001', 'non-minimal positive INTEGER'],
      ['0202ff80', 'non-minimal negative INTEGER'],
      ['0200', 'empty INTEGER'],
      ['010101', 'BOOLEAN not 00/FF'],
      ['01020000', 'BOOLEAN of two octets'],
      ['050100', 'NULL with content'],
      ['030108', 'BIT STRING with 8 unused bits'],
      ['030101', 'empty BIT STRING with unused bits'],
      ['0600', 'empty OID'],
      ['060181', 'OID ending mid-arc'],
      ['1f2100', 'high tag number'],
      ['', 'empty input'],
    ];
    for (const [h, why] of bad) assert.throws(() => decodeDer(hex(h.replace(/ /g, ''))), asn1Err, why);
    assert.throws(() => readOid(decodeDer(hex('06028001')), 'o'), asn1Err, 'OID arc with leading 0x80');
    assert.throws(() => decodeDer('30' as unknown as Uint8Array), code('POSKEY_ERR_TYPE'));
  });

  it('refuses nesting deeper than MAX_DEPTH', () => {
    let der = octets(hex('00'));
    for (let i = 0; i <= MAX_DEPTH; i++) der = seq(der);
    assert.throws(() => decodeDer(der), asn1Err);
    let ok = octets(hex('00'));
    for (let i = 0; i < MAX_DEPTH; i++) ok = seq(ok);
    assert.ok(decodeDer(ok));
  });

  it('reports wrong tags, counts, times and strings with the field', () => {
    const node = decodeDer(seq(integer(1)));
    assert.throws(
      () => expectTag(node, TAG.SET, 'here'),
      (e: unknown) => asn1Err(e) && (e as PoskeyError).field === 'here',
    );
    assert.throws(() => expectTag(undefined, TAG.SET, 'missing'), asn1Err);
    assert.throws(() => expectChildren(node, TAG.SEQUENCE, 'n', 2), asn1Err);
    assert.throws(() => readTime(decodeDer(tlv(TAG.UTC_TIME, Buffer.from('991332000000Z'))), 't'), asn1Err);
    assert.throws(() => readTime(decodeDer(tlv(TAG.UTC_TIME, Buffer.from('9912312359Z'))), 't'), asn1Err);
    assert.throws(
      () => readTime(decodeDer(tlv(TAG.GENERALIZED_TIME, Buffer.from('20230229000000Z'))), 't'),
      asn1Err,
    );
    assert.throws(
      () => readTime(decodeDer(tlv(TAG.UTC_TIME, Buffer.from('230101000000+0100'))), 't'),
      asn1Err,
    );
    assert.throws(() => readTime(undefined, 't'), asn1Err);
    assert.throws(() => readString(decodeDer(integer(1)), 's'), asn1Err);
    assert.throws(() => readString(decodeDer(tlv(TAG.BMP_STRING, hex('00'))), 's'), asn1Err);
    assert.throws(() => readBitString(decodeDer(hex('03020180')), 'b'), asn1Err);
    assert.throws(() => readSmallInt(decodeDer(integer(-1)), 'n'), asn1Err);
  });

  it('refuses values it cannot encode', () => {
    assert.throws(() => oid('1.2.x'), asn1Err);
    assert.throws(() => oid('3.1'), asn1Err);
    assert.throws(() => oid('1.40'), asn1Err);
    assert.throws(() => printable('a@b'), asn1Err);
    assert.throws(() => time(new Date(Number.NaN)), asn1Err);
    assert.throws(() => time(new Date('+010000-01-01T00:00:00Z')), asn1Err);
    assert.throws(() => tlv(0x1f), asn1Err);
    assert.throws(() => tlv(256), asn1Err);
  });
});

// A random DER tree: primitive leaves with arbitrary contents under universal or context tags,
// constructed nodes (SEQUENCE, SET, [n]) over children.
type Tree = { tag: number; content: Uint8Array } | { tag: number; children: Tree[] };

const leafTag = fc.constantFrom(TAG.OCTET_STRING, TAG.UTF8_STRING, TAG.PRINTABLE_STRING, 0x80, 0x81, 0x9e);
const treeArb: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ tag: leafTag, content: fc.uint8Array({ maxLength: 300 }) }),
    fc.record({
      tag: fc.constantFrom(TAG.SEQUENCE, 0xa0, 0xa3, 0xbe),
      children: fc.array(tie('tree'), { maxLength: 5 }),
    }),
  ),
})).tree;

function encodeTree(t: Tree): Buffer {
  return 'content' in t ? tlv(t.tag, t.content) : tlv(t.tag, ...t.children.map(encodeTree));
}

function reencode(n: Asn1): Buffer {
  return n.constructed ? tlv(n.tag, ...n.children.map(reencode)) : tlv(n.tag, n.value);
}

describe('DER round trips (property)', () => {
  it('decode ∘ encode is the identity on trees', () => {
    fc.assert(
      fc.property(treeArb, (t) => {
        const der = encodeTree(t);
        assert.deepEqual(reencode(decodeDer(der)), der);
      }),
      { numRuns: 300 },
    );
  });

  it('INTEGERs round trip for any bigint', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 600n), max: 1n << 600n }), (n) => {
        assert.equal(readInteger(decodeDer(integer(n)), 'n'), n);
      }),
    );
  });

  it('unsigned byte strings round trip as non-negative INTEGERs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), (b) => {
        const n = readInteger(decodeDer(integer(b)), 'n');
        assert.equal(n, BigInt(`0x${Buffer.from(b).toString('hex')}`));
      }),
    );
  });

  it('OIDs round trip', () => {
    const arc = fc.bigInt({ min: 0n, max: 1n << 70n });
    const oidArb = fc
      .tuple(fc.constantFrom(0, 1, 2), fc.integer({ min: 0, max: 39 }), fc.array(arc, { maxLength: 8 }))
      .map(([a, b, rest]) => [a, b, ...rest].join('.'));
    fc.assert(fc.property(oidArb, (o) => assert.equal(readOid(decodeDer(oid(o)), 'o'), o)));
  });

  it('times round trip at seconds precision (years 1–9999)', () => {
    fc.assert(
      fc.property(
        fc.date({
          min: new Date('0001-01-01T00:00:00Z'),
          max: new Date('9999-12-31T23:59:59Z'),
          noInvalidDate: true,
        }),
        (d) => {
          const s = new Date(Math.floor(d.getTime() / 1000) * 1000);
          assert.deepEqual(readTime(decodeDer(time(s)), 't'), s);
        },
      ),
    );
  });

  it('SET OF is the same for any permutation of its elements', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 20 }), { minLength: 1, maxLength: 6 }), (items) => {
        const encoded = items.map((b) => octets(b));
        const reversed = [...encoded].reverse();
        assert.deepEqual(set(...encoded), set(...reversed));
      }),
    );
  });

  it('arbitrary bytes either decode or fail with POSKEY_ERR_ASN1, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        try {
          const n = decodeDer(b);
          assert.deepEqual(n.der, Buffer.from(b));
        } catch (e) {
          assert.ok(asn1Err(e));
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('flipping any byte of a valid encoding never throws anything but POSKEY_ERR_ASN1', () => {
    const der = seq(
      integer(12345),
      oid('1.2.840.113549.1.9.25.3'),
      set(octets(hex('0011')), bool(true)),
      explicit(0, utf8('abc')),
    );
    for (let i = 0; i < der.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const t = Buffer.from(der);
        t[i]! ^= mask;
        try {
          decodeDer(t);
        } catch (e) {
          assert.ok(asn1Err(e));
        }
      }
    }
  });
});
