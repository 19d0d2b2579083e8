import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CryptoError, PoskeyError } from '../../src/errors.js';
import { HsmError } from '../../src/hsm/errors.js';
import {
  PAYSHIELD_ERRORS,
  POSKEY_TO_PAYSHIELD,
  payShieldCodeFor,
  payShieldErrorMeaning,
  toPayShieldError,
} from '../../src/hsm/payshield/errors.js';
import {
  buildResponse,
  createPayShieldDecoder,
  encodePayShieldFrame,
  parseCommand,
  responseCode,
} from '../../src/hsm/payshield/framing.js';

function code(expected: string) {
  return (e: unknown) => e instanceof PoskeyError && e.code === expected;
}

describe('payShield framing', () => {
  // Wire dumps from the pythales README (timgabets/pythales, header SSSS).
  it('pythales README example: 00 06 SSSS NC → 00 21 SSSS ND 00 <KCV> 0007-E000', () => {
    const wire = Buffer.from([0x00, 0x06, ...Buffer.from('SSSSNC', 'latin1')]);
    const decoder = createPayShieldDecoder();
    const [payload] = decoder.push(wire);
    const cmd = parseCommand(payload!, 4);
    assert.deepEqual(cmd, { header: 'SSSS', command: 'NC', body: Buffer.alloc(0) });
    const response = encodePayShieldFrame(
      buildResponse(cmd.header, cmd.command, '00', 'F4EDC8DEB67F6E280007-E000'),
    );
    assert.deepEqual([...response.subarray(0, 2)], [0x00, 0x21]);
    assert.equal(response.subarray(2).toString('latin1'), 'SSSSND00F4EDC8DEB67F6E280007-E000');
  });

  it('pythales README examples: DC → DD 00 and CY → CZ 00', () => {
    const dc =
      'SSSSDCUC4ED597EE0C9697104ED399BE6F8B8727336D50C47128D710DF450BCB2C6461B793AE62DFC8D24260140700000001013843';
    const cy = 'SSSSCYU1C1EB1090681CC9E6003E05217C7077E6404174070000000104;1712201';
    const wire = Buffer.concat([
      encodePayShieldFrame(Buffer.from(dc)),
      encodePayShieldFrame(Buffer.from(cy)),
    ]);
    assert.deepEqual([...wire.subarray(0, 2)], [0x00, 0x6a]);
    assert.deepEqual([...wire.subarray(108, 110)], [0x00, 0x42]);
    const [a, b] = createPayShieldDecoder()
      .push(wire)
      .map((p) => parseCommand(p, 4));
    assert.equal(a!.command, 'DC');
    assert.equal(a!.body.toString('latin1').slice(0, 33), 'UC4ED597EE0C9697104ED399BE6F8B872');
    assert.equal(b!.command, 'CY');
    assert.equal(
      encodePayShieldFrame(buildResponse(a!.header, a!.command, '00')).toString('hex'),
      '00085353535344443030',
    );
    assert.equal(
      encodePayShieldFrame(buildResponse(b!.header, b!.command, '00')).toString('hex'),
      '000853535353435a3030',
    );
  });

  it('response code increments the second character', () => {
    const cases: [string, string][] = [
      ['A0', 'A1'],
      ['CA', 'CB'],
      ['NC', 'ND'],
      ['M8', 'M9'],
      ['HC', 'HD'],
      ['BU', 'BV'],
      ['CY', 'CZ'],
      ['A9', 'AA'],
      ['QZ', 'Q0'],
    ];
    for (const [c, r] of cases) assert.equal(responseCode(c), r);
    for (const bad of ['nc', 'N', 'NCX', 'N-', ''])
      assert.throws(() => responseCode(bad), code('POSKEY_ERR_PAYSHIELD_COMMAND'));
  });

  it('parses header, command and body; the body is a copy', () => {
    const payload = Buffer.from('HDRA0002U', 'latin1');
    const cmd = parseCommand(payload, 3);
    assert.equal(cmd.header, 'HDR');
    assert.equal(cmd.command, 'A0');
    assert.equal(cmd.body.toString('latin1'), '002U');
    payload.fill(0);
    assert.equal(cmd.body.toString('latin1'), '002U');
    assert.deepEqual(parseCommand(Buffer.from('NC'), 0), {
      header: '',
      command: 'NC',
      body: Buffer.alloc(0),
    });
  });

  it('round trip: any header, command and body survive build → parse', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom(...'ABCXYZ0189'), minLength: 0, maxLength: 8 }),
        fc.stringMatching(/^[A-Z][A-Z0-8]$/),
        fc.uint8Array({ maxLength: 300 }),
        (header, command, body) => {
          const payload = buildResponse(header, command, '00', body);
          const back = parseCommand(payload, header.length);
          assert.equal(back.header, header);
          assert.equal(back.command, responseCode(command));
          assert.deepEqual([...back.body], [...Buffer.from('00'), ...body]);
        },
      ),
    );
  });

  it('rejects short frames with typed errors', () => {
    assert.throws(
      () => parseCommand(Buffer.from('SSSSN'), 4),
      (e: unknown) => {
        return e instanceof HsmError && e.code === 'POSKEY_ERR_PAYSHIELD_FRAME' && e.payShield === '15';
      },
    );
    assert.throws(
      () => parseCommand(Buffer.from('SS'), 4),
      (e: unknown) => {
        return e instanceof HsmError && e.code === 'POSKEY_ERR_PAYSHIELD_FRAME' && e.payShield === '51';
      },
    );
    assert.throws(() => parseCommand(Buffer.alloc(0), 0), code('POSKEY_ERR_PAYSHIELD_FRAME'));
    assert.throws(() => parseCommand(Buffer.from('SSSSn1'), 4), code('POSKEY_ERR_PAYSHIELD_COMMAND'));
    assert.throws(() => parseCommand('SSSSNC' as unknown as Buffer, 4), code('POSKEY_ERR_TYPE'));
    for (const h of [-1, 256, 1.5])
      assert.throws(() => parseCommand(Buffer.from('NC'), h), code('POSKEY_ERR_PAYSHIELD_HEADER'));
  });

  it('buildResponse validates header, error code and size', () => {
    assert.throws(() => buildResponse('\u0100', 'NC', '00'), code('POSKEY_ERR_PAYSHIELD_HEADER'));
    assert.throws(() => buildResponse('x'.repeat(256), 'NC', '00'), code('POSKEY_ERR_PAYSHIELD_HEADER'));
    for (const e of ['0', '000', 'a4', ''])
      assert.throws(() => buildResponse('', 'NC', e), code('POSKEY_ERR_PAYSHIELD_ERROR_CODE'));
    assert.throws(
      () => buildResponse('', 'NC', '00', Buffer.alloc(0x10000)),
      code('POSKEY_ERR_PAYSHIELD_FRAME'),
    );
    assert.equal(buildResponse('', 'CA', 'A4').toString('latin1'), 'CBA4');
  });

  it('the stream decoder reassembles frames split at every byte boundary', () => {
    const frames = [
      encodePayShieldFrame(Buffer.from('SSSSNC')),
      encodePayShieldFrame(Buffer.from('SSSSB2000548656C6C6F')),
    ];
    const wire = Buffer.concat(frames);
    for (let cut = 0; cut <= wire.length; cut++) {
      const d = createPayShieldDecoder();
      const got = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))].map((b) =>
        b.toString('latin1'),
      );
      assert.deepEqual(got, ['SSSSNC', 'SSSSB2000548656C6C6F']);
    }
    const byByte = createPayShieldDecoder();
    const got: string[] = [];
    for (const b of wire) got.push(...byByte.push(Buffer.from([b])).map((x) => x.toString('latin1')));
    assert.deepEqual(got, ['SSSSNC', 'SSSSB2000548656C6C6F']);
  });

  it('the decoder ignores zero-length frames and enforces its size limit', () => {
    const d = createPayShieldDecoder(16);
    assert.deepEqual(d.push(Buffer.from([0, 0, 0, 2, 0x4e, 0x43])).map(String), ['NC']);
    assert.throws(() => d.push(Buffer.from([0, 17])), code('POSKEY_ERR_FRAME_TOO_LARGE'));
  });
});

describe('payShield error codes', () => {
  it('the table has the codes from research hsm.md §2', () => {
    for (const c of [
      '00',
      '01',
      '10',
      '11',
      '15',
      '20',
      '23',
      '24',
      '27',
      '28',
      '29',
      '68',
      'A1',
      'A4',
      'A6',
      'A7',
      'A8',
      'AA',
      'BB',
      'BD',
    ]) {
      assert.ok(payShieldErrorMeaning(c), c);
    }
    assert.equal(payShieldErrorMeaning('A4'), 'Key block authentication failure');
    assert.equal(payShieldErrorMeaning('ZZ'), undefined);
    assert.equal(payShieldErrorMeaning('toString'), undefined);
    for (const c of Object.keys(PAYSHIELD_ERRORS)) assert.match(c, /^[0-9A-Z]{2}$/);
  });

  it('maps poskey errors to payShield codes', () => {
    const cases: [unknown, string][] = [
      [new PoskeyError('POSKEY_ERR_TR31_MAC', 'x'), 'A4'],
      [new PoskeyError('POSKEY_ERR_KEY_USAGE', 'x'), 'A6'],
      [new PoskeyError('POSKEY_ERR_KEY_ALGORITHM', 'x'), 'A7'],
      [new PoskeyError('POSKEY_ERR_KEY_MODE', 'x'), 'A8'],
      [new PoskeyError('POSKEY_ERR_KEY_NOT_EXPORTABLE', 'x'), 'AA'],
      [new PoskeyError('POSKEY_ERR_TR31_KEY_LENGTH', 'x'), 'A5'],
      [new PoskeyError('POSKEY_ERR_TR31_HEADER', 'x', { field: 'usage' }), 'A6'],
      [new PoskeyError('POSKEY_ERR_TR31_HEADER', 'x', { field: 'keyVersion' }), 'A9'],
      [new PoskeyError('POSKEY_ERR_TR31_HEADER', 'x', { field: 'reserved' }), '83'],
      [new PoskeyError('POSKEY_ERR_TR31_SOMETHING_NEW', 'x'), 'B2'],
      [new PoskeyError('POSKEY_ERR_PIN_BLOCK_FORMAT', 'x'), '23'],
      [new PoskeyError('POSKEY_ERR_PIN_LENGTH', 'x'), '24'],
      [new PoskeyError('POSKEY_ERR_PIN_DIGITS', 'x'), '20'],
      [new PoskeyError('POSKEY_ERR_PIN_SOMETHING_NEW', 'x'), '20'],
      [new PoskeyError('POSKEY_ERR_PAN', 'x'), '22'],
      [new CryptoError('POSKEY_ERR_LENGTH', 'x', { field: 'key' }), '27'],
      [new CryptoError('POSKEY_ERR_LENGTH', 'x', { field: 'components[1]' }), '15'],
      [new CryptoError('POSKEY_ERR_LENGTH', 'x', { field: 'data' }), '15'],
      [new CryptoError('POSKEY_ERR_HEX', 'x'), '15'],
      [new PoskeyError('POSKEY_ERR_LMK_UNKNOWN', 'x'), '13'],
      [new PoskeyError('POSKEY_ERR_NEVER_HEARD_OF_IT', 'x'), '15'],
      [new HsmError('POSKEY_ERR_ANYTHING', 'x', { payShield: '68' }), '68'],
      [new Error('boom'), '41'],
      ['not even an error', '41'],
    ];
    for (const [err, want] of cases) assert.equal(toPayShieldError(err), want, String(err));
  });

  it('parity errors depend on the role: 10 source, 11 destination', () => {
    const e = new CryptoError('POSKEY_ERR_KEY_PARITY', 'x', { field: 'key' });
    assert.equal(toPayShieldError(e), '10');
    assert.equal(toPayShieldError(e, 'source'), '10');
    assert.equal(toPayShieldError(e, 'destination'), '11');
    assert.equal(payShieldCodeFor('POSKEY_ERR_KEY_PARITY', 'destination'), '11');
    assert.equal(payShieldCodeFor('POSKEY_ERR_UNKNOWN_THING'), undefined);
  });

  it('every mapped code is in the payShield table', () => {
    for (const m of Object.values(POSKEY_TO_PAYSHIELD)) {
      for (const c of typeof m === 'string' ? [m] : [m.source, m.destination])
        assert.ok(payShieldErrorMeaning(c), c);
    }
  });
});
