import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex } from '../../src/crypto/bytes.js';
import {
  describeEnvelope,
  describeMessage,
  EMV_TAG_NAMES,
  formatDescription,
  maskMessage,
  maskPan,
  maskTrack,
} from '../../src/iso8583/describe.js';
import { CUPS_PROFILE, parseTerminalEnvelope, TERMINAL_PROFILE } from '../../src/iso8583/framing.js';
import { getDialect, type IsoMessage, pack, unpack } from '../../src/iso8583/index.js';

const PAN = '6225881234567890123';
const TRACK2 = `${PAN}=25122011234567890`;
const MSG = {
  0: '0200',
  2: PAN,
  3: '000000',
  4: '000000001000',
  11: '000123',
  22: '021',
  25: '00',
  35: TRACK2,
  41: '12345678',
  42: '123456789012345',
  49: '156',
  52: '0123456789ABCDEF',
  55: [
    { tag: '9F26', value: '0102030405060708' },
    { tag: '5A', value: `${PAN}F` },
    { tag: '57', value: `${PAN}D2512201F` },
    { tag: '95', value: '0000000000' },
    { tag: 'DF7F', value: 'AA' },
  ],
  60: { 1: '22', 2: '000001', 3: '000' },
  64: '0123456789ABCDEF',
} as IsoMessage;

describe('maskPan', () => {
  it('keeps the first 6 and last 4 digits of 13–19 digit PANs', () => {
    assert.equal(maskPan(PAN), '622588*********0123');
    assert.equal(maskPan('4111111111111111'), '411111******1111');
    assert.equal(maskPan('4222222222222'), '422222***2222');
  });
  it('shows less of short values', () => {
    assert.equal(maskPan('123456789012'), '********9012');
    assert.equal(maskPan('12345678'), '****5678');
    assert.equal(maskPan('1234567'), '*******');
    assert.equal(maskPan(''), '');
  });
  it('property: length kept, at most 10 characters shown, the middle hidden', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^\d{0,19}$/), (pan) => {
        const m = maskPan(pan);
        assert.equal(m.length, pan.length);
        const shown = [...m].filter((c) => c !== '*').length;
        assert.ok(shown <= 10 && shown <= Math.max(0, pan.length - 3));
        if (pan.length >= 13) assert.equal(m.slice(6, -4), '*'.repeat(pan.length - 10));
      }),
    );
  });
});

describe('maskTrack', () => {
  it('masks track 2 after the separator but keeps the separator', () => {
    assert.equal(maskTrack(TRACK2), '622588*********0123=*****************');
  });
  it('handles the D separator of EMV tag 57, track 3 and track 1', () => {
    assert.equal(maskTrack(`${PAN}D2512201F`), '622588*********0123D********');
    assert.equal(maskTrack(`99${PAN}=156`), '996225***********0123=***');
    assert.equal(maskTrack('B4111111111111111^DOE/JOHN^2512'), 'B41111*******1111^********^****');
  });
  it('masks a separator-less value like a PAN', () => {
    assert.equal(maskTrack(PAN), maskPan(PAN));
  });
  it('property: nothing after the first separator survives except separators', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^\d{12,19}$/), fc.stringMatching(/^[0-9=]{0,20}$/), (pan, rest) => {
        const m = maskTrack(`${pan}=${rest}`);
        assert.equal(m.length, pan.length + 1 + rest.length);
        assert.match(m.slice(pan.length), /^[=*]*$/);
      }),
    );
  });
});

describe('maskMessage', () => {
  it('masks PAN, track, PIN block and card-data tags without touching the input', () => {
    const before = JSON.stringify(MSG);
    const m = maskMessage(MSG);
    assert.equal(JSON.stringify(MSG), before);
    assert.equal(m[2], '622588*********0123');
    assert.equal(m[35], '622588*********0123=*****************');
    assert.equal(m[52], '*'.repeat(16));
    const tags = Object.fromEntries((m[55] as { tag: string; value: string }[]).map((t) => [t.tag, t.value]));
    assert.equal(tags['5A'], '622588*********0123F');
    assert.equal(tags['57'], '622588*********0123D********');
    assert.equal(tags['9F26'], '0102030405060708');
    assert.deepEqual(m[60], MSG[60]);
    assert.equal(m[64], MSG[64]);
    assert.ok(!JSON.stringify(m).includes(PAN));
  });
  it('masks field 62 only in network-management messages (the 0810 key block)', () => {
    assert.equal(maskMessage({ 0: '0810', 62: 'AABBCCDD' } as IsoMessage)[62], '********');
    assert.equal(maskMessage({ 0: '0200', 62: '000123' } as IsoMessage)[62], '000123');
  });
});

describe('describeMessage', () => {
  const d = getDialect('unionpay-pos');
  const msg = unpack(d, pack(d, MSG));

  it('lists every field in order with its name, subfields and named TLV tags', () => {
    const desc = describeMessage(d, msg);
    assert.deepEqual(
      desc.fields.map((f) => f.field),
      ['2', '3', '4', '11', '22', '25', '35', '41', '42', '49', '52', '55', '60', '64'],
    );
    assert.equal(desc.mti, '0200');
    assert.equal(desc.transaction.name, 'purchase');
    const f2 = desc.fields[0]!;
    assert.equal(f2.name, d.fields[2]!.desc);
    assert.equal(f2.value, '622588*********0123');
    assert.equal(f2.length, 19);
    assert.equal(f2.masked, true);
    const f60 = desc.fields.find((f) => f.field === '60')!;
    assert.equal(f60.value, '22000001000');
    assert.deepEqual(
      f60.subfields!.map((s) => [s.field, s.value]),
      [
        ['60.1', '22'],
        ['60.2', '000001'],
        ['60.3', '000'],
      ],
    );
    const f55 = desc.fields.find((f) => f.field === '55')!;
    assert.equal(f55.value, undefined);
    assert.deepEqual(
      f55.tags!.map((t) => [t.tag, t.name, t.length, t.masked ?? false]),
      [
        ['9F26', EMV_TAG_NAMES['9F26'], 8, false],
        ['5A', EMV_TAG_NAMES['5A'], 10, true],
        ['57', EMV_TAG_NAMES['57'], 14, true],
        ['95', EMV_TAG_NAMES['95'], 5, false],
        ['DF7F', undefined, 1, false],
      ],
    );
    assert.equal(desc.fields.find((f) => f.field === '52')!.value, '*'.repeat(16));
    assert.equal(desc.masked, true);
    assert.ok(!JSON.stringify(desc).includes(PAN));
  });
  it('with unmask shows clear values and hands back the message itself', () => {
    const desc = describeMessage(d, msg, { unmask: true });
    assert.equal(desc.fields[0]!.value, PAN);
    assert.equal(desc.fields[0]!.masked, undefined);
    assert.equal(desc.masked, false);
    assert.deepEqual(pack(d, desc.message), pack(d, MSG));
  });
  it('the text form shows names and masked values, and clear ones only when unmasked', () => {
    const text = formatDescription(describeMessage(d, msg));
    assert.match(text, /^mti {5}0200 purchase request/m);
    assert.match(text, /9F26 +application cryptogram \(ARQC\) +\[8\] 0102030405060708/);
    assert.match(text, /60\.2 +batch number +000001/);
    assert.ok(text.includes('622588*********0123'));
    assert.ok(!text.includes(PAN));
    assert.ok(formatDescription(describeMessage(d, msg, { unmask: true })).includes(PAN));
    assert.match(text, /\(card data masked; --unmask shows it\)$/);
    const plain = formatDescription(describeMessage(d, { 0: '0800', 11: '000001' } as IsoMessage));
    assert.doesNotMatch(plain, /masked/);
  });
  it('property: no masked description or text contains a 13–19 digit PAN in clear', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[1-9]\d{12,18}$/), (pan) => {
        const m = unpack(
          d,
          pack(d, {
            ...MSG,
            2: pan,
            35: `${pan}=2512201`,
            55: [{ tag: '5A', value: pan.length & 1 ? `${pan}F` : pan }],
          } as IsoMessage),
        );
        const desc = describeMessage(d, m);
        assert.ok(!JSON.stringify(desc).includes(pan));
        assert.ok(!formatDescription(desc).includes(pan));
      }),
      { numRuns: 50 },
    );
  });
});

describe('describeEnvelope', () => {
  it('describes TPDU, LRI and header of a terminal frame', () => {
    const lri = `4C5249001C${'31'.repeat(28)}`;
    const env = parseTerminalEnvelope(fromHex(`6000030000${lri}6031033110010800`));
    const d = describeEnvelope(env, TERMINAL_PROFILE, 49);
    assert.deepEqual(d, {
      framing: 'terminal',
      bodyLength: 2,
      length: { kind: 'binary2', value: 49 },
      tpdu: { id: '60', destination: '0003', source: '0000' },
      lri,
      header: {
        hex: '603103311001',
        appType: '60',
        version: '31',
        terminalStatus: 0,
        processingRequirement: 3,
        processingRequirementName: 're-sign-in',
        subVersion: '311001',
      },
    });
    const text = formatDescription(
      describeMessage(getDialect('unionpay-pos'), { 0: '0800' } as IsoMessage),
      d,
    );
    assert.match(text, /^tpdu {4}60 destination 0003 source 0000$/m);
    assert.match(text, /processing requirement 3 \(re-sign-in\)/);
  });
  it('describes an opaque header and a bare body', () => {
    const header = Buffer.alloc(46, 0x41);
    assert.equal(
      describeEnvelope({ rawHeader: header, body: Buffer.alloc(3) }, CUPS_PROFILE).rawHeader,
      '41'.repeat(46),
    );
    assert.deepEqual(describeEnvelope({ body: Buffer.alloc(3) }, undefined), {
      framing: 'none',
      bodyLength: 3,
    });
  });
});
