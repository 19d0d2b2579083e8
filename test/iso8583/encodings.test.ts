import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Enc, type Encoding, IsoError, IsoErrorCode, Prefix } from '../../src/iso8583/index.js';

function enc(e: Encoding, value: string, pad = 0): string {
  const out = Buffer.alloc(64);
  const n = e.encode(value, out, 0, pad);
  return out.subarray(0, n).toString('hex').toUpperCase();
}

function dec(e: Encoding, hex: string, units: number): string {
  return e.decode(Buffer.from(hex, 'hex'), 0, units);
}

function throwsCode(fn: () => unknown, code: string, match?: RegExp): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof IsoError && e.code === code && (!match || match.test(e.message)),
  );
}

describe('value encodings', () => {
  const cases: [Encoding, string, number, string][] = [
    [Enc.bcdRight, '123', 0, '0123'],
    [Enc.bcdRight, '123', 15, 'F123'],
    [Enc.bcdRight, '000124', 0, '000124'],
    [Enc.bcdLeft, '021', 0, '0210'],
    [Enc.bcdLeft, '021', 15, '021F'],
    [Enc.bcdLeft, '6222021234567890123', 0, '62220212345678901230'],
    [Enc.track, '4392=1312', 15, '4392D1312F'],
    [Enc.track, '12AB=CEF9', 0, '12ABDCEF90'],
    [Enc.ascii, 'AB 1é', 0, '41422031E9'],
    [Enc.asciiNumeric, '0156', 0, '30313536'],
    [Enc.binary, '00FFA1', 0, '00FFA1'],
    [Enc.hexAscii, '0aFF', 0, '30614646'],
  ];
  for (const [e, value, pad, hex] of cases) {
    it(`${e.inspect} ${JSON.stringify(value)} pad ${pad} ↔ ${hex}`, () => {
      assert.equal(enc(e, value, pad), hex);
      assert.equal(dec(e, hex, e.unitsOf(value)), value);
      assert.equal(e.size(e.unitsOf(value)), hex.length / 2);
    });
  }

  it('binary packs lower-case hex and unpacks upper case', () => {
    assert.equal(enc(Enc.binary, 'abcd'), 'ABCD');
    assert.equal(dec(Enc.binary, 'abcd', 2), 'ABCD');
  });

  it("track accepts 'D' as an alias of '=' when packing", () => {
    assert.equal(enc(Enc.track, '12D4'), '12D4');
    assert.equal(dec(Enc.track, '12D4', 4), '12=4');
  });

  it('padAt reports the pad nibble of odd values only', () => {
    assert.equal(Enc.bcdLeft.padAt(Buffer.from('021F', 'hex'), 0, 3), 15);
    assert.equal(Enc.bcdRight.padAt(Buffer.from('0123', 'hex'), 0, 3), 0);
    assert.equal(Enc.bcdLeft.padAt(Buffer.from('0210', 'hex'), 0, 4), -1);
    assert.equal(Enc.ascii.padAt(Buffer.from('41', 'hex'), 0, 1), -1);
  });

  it('decoding a long binary or ASCII value takes the Buffer path', () => {
    const bytes = Buffer.alloc(100, 0xab);
    assert.equal(Enc.binary.decode(bytes, 0, 100), 'AB'.repeat(100));
    assert.equal(Enc.ascii.decode(Buffer.alloc(30, 0x41), 0, 30), 'A'.repeat(30));
  });

  describe('POSKEY_ERR_ISO_ENCODING on bad wire data', () => {
    it('BCD nibble above 9', () =>
      throwsCode(() => dec(Enc.bcdRight, '1A', 2), IsoErrorCode.ENCODING, /byte 1A is not BCD/));
    it('BCD left, odd, digit nibble above 9', () =>
      throwsCode(() => dec(Enc.bcdLeft, 'A0', 1), IsoErrorCode.ENCODING));
    it('BCD right, odd, low nibble above 9', () =>
      throwsCode(() => dec(Enc.bcdRight, '0A', 1), IsoErrorCode.ENCODING));
    it('pad nibble neither 0 nor F', () =>
      throwsCode(() => dec(Enc.bcdLeft, '0215', 3), IsoErrorCode.ENCODING, /pad nibble 5/));
    it('right-aligned pad nibble neither 0 nor F', () =>
      throwsCode(() => dec(Enc.bcdRight, '5123', 3), IsoErrorCode.ENCODING));
    it('ASCII numeric with a letter', () =>
      throwsCode(() => dec(Enc.asciiNumeric, '3141', 2), IsoErrorCode.ENCODING));
    it('hex text with a non-hex byte', () =>
      throwsCode(() => dec(Enc.hexAscii, '3047', 1), IsoErrorCode.ENCODING));
  });

  describe('POSKEY_ERR_ISO_PACK on bad values', () => {
    it('BCD with a letter', () => throwsCode(() => enc(Enc.bcdRight, '12a'), IsoErrorCode.PACK, /index 2/));
    it('track with a lower-case letter', () => throwsCode(() => enc(Enc.track, '12a'), IsoErrorCode.PACK));
    it('track with a non-ASCII character', () => throwsCode(() => enc(Enc.track, '1€'), IsoErrorCode.PACK));
    it('ASCII beyond latin1', () => throwsCode(() => enc(Enc.ascii, '银联'), IsoErrorCode.PACK, /latin1/));
    it('ASCII numeric with a space', () => throwsCode(() => enc(Enc.asciiNumeric, '1 2'), IsoErrorCode.PACK));
    it('binary with a non-hex character', () =>
      throwsCode(() => enc(Enc.binary, '0G'), IsoErrorCode.PACK, /index 1/));
    it('binary with a non-ASCII character', () =>
      throwsCode(() => enc(Enc.binary, 'é0'), IsoErrorCode.PACK, /index 0/));
    it('hex text with a non-hex character', () =>
      throwsCode(() => enc(Enc.hexAscii, 'XY'), IsoErrorCode.PACK));
    it('odd-length hex has no unit count', () => assert.equal(Enc.binary.unitsOf('ABC'), -1));
  });
});

describe('length prefixes', () => {
  const cases: [typeof Prefix.bcd.LL, number, string][] = [
    [Prefix.bcd.LL, 37, '37'],
    [Prefix.bcd.LLL, 11, '0011'],
    [Prefix.bcd.LLL, 255, '0255'],
    [Prefix.bcd.LLLL, 9999, '9999'],
    [Prefix.ascii.LL, 16, '3136'],
    [Prefix.ascii.LLL, 104, '313034'],
    [Prefix.ascii.LLLL, 1234, '31323334'],
    [Prefix.binary.L, 200, 'C8'],
    [Prefix.binary.LL, 0x1234, '1234'],
  ];
  for (const [p, n, hex] of cases) {
    it(`${p.inspect} ${n} ↔ ${hex}`, () => {
      const out = Buffer.alloc(p.size);
      p.encode(n, out, 0);
      assert.equal(out.toString('hex').toUpperCase(), hex);
      assert.equal(p.decode(Buffer.from(hex, 'hex'), 0), n);
    });
  }

  it('fixed has no bytes and no length of its own', () => {
    assert.equal(Prefix.fixed.size, 0);
    Prefix.fixed.encode(5, Buffer.alloc(0), 0);
    throwsCode(() => Prefix.fixed.decode(Buffer.alloc(0), 0), IsoErrorCode.DIALECT);
  });

  it('a BCD prefix that is not BCD is POSKEY_ERR_ISO_LENGTH', () => {
    throwsCode(() => Prefix.bcd.LL.decode(Buffer.from('3A', 'hex'), 0), IsoErrorCode.LENGTH, /not BCD/);
    throwsCode(() => Prefix.bcd.LLL.decode(Buffer.from('00F1', 'hex'), 0), IsoErrorCode.LENGTH);
  });

  it('an ASCII prefix that is not digits is POSKEY_ERR_ISO_LENGTH', () => {
    throwsCode(() => Prefix.ascii.LL.decode(Buffer.from('3 ', 'latin1'), 0), IsoErrorCode.LENGTH);
  });
});
