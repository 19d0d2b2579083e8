/**
 * The TCP client's request encoders against the HSM's own command parsers (round trips: what the
 * client means is what the server reads), its response decoders against malformed answers, and a
 * negative test for every refusal the client raises before sending.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PoskeyError } from '../../src/errors.js';
import type { KeyAlgorithm, KeyType, MacRequest, TranslatePinRequest } from '../../src/hsm/api.js';
import {
  A0_RESPONSE,
  BU_RESPONSE,
  CA_RESPONSE,
  dataContext,
  encodeA0,
  encodeA4,
  encodeA6,
  encodeData,
  encodeM6,
  encodeM8,
  encodeTranslatePin,
  encodeY0,
  M0_RESPONSE,
  M6_RESPONSE,
  NC_RESPONSE,
  resolveKcvRequest,
  Y0_RESPONSE,
} from '../../src/hsm/client/codec.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { KEY_TYPES } from '../../src/hsm/key-types.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { M0 } from '../../src/hsm/payshield/commands/data.js';
import { A0 } from '../../src/hsm/payshield/commands/generate.js';
import { resolveAlgorithm, resolveKeyType } from '../../src/hsm/payshield/commands/keys.js';
import { M6, M8 } from '../../src/hsm/payshield/commands/mac.js';
import { CA, CC, G0 } from '../../src/hsm/payshield/commands/pin.js';
import { Y0 } from '../../src/hsm/payshield/commands/sign-in.js';
import { A4, A6 } from '../../src/hsm/payshield/commands/transfer.js';
import type { CommandHandler } from '../../src/hsm/payshield/commands/types.js';
import { FieldCursor } from '../../src/hsm/payshield/fields.js';

const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
const block = (keyType: KeyType, algorithm: KeyAlgorithm) => hsm.generateKey({ keyType, algorithm }).keyBlock;
const tpk = block('TPK', 'tdes2');
const zpk = block('ZPK', 'tdes2');
const aesZpk = block('ZPK', 'aes128');
const bdk = block('BDK', 'tdes2');
const tak = block('TAK', 'tdes2');
const aesTak = block('TAK', 'aes128');
const tdk = block('TDK', 'tdes2');
const aesDek = block('DEK', 'aes128');
const zmk = block('ZMK', 'tdes2');

/** Parses a body the way the server does, requiring that nothing is left over. */
function parse<R>(handler: CommandHandler<R, unknown>, body: string): R {
  const cursor = new FieldCursor(Buffer.from(body, 'latin1'));
  const req = handler.parse(cursor);
  assert.equal(cursor.finish(), undefined);
  return req;
}

function refuses(code: string, field?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, String(e));
    assert.equal(e.code, code, e.message);
    if (field !== undefined) assert.equal(e.field, field);
    return true;
  };
}

const hex = (bytes: number) =>
  fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString('hex'));
const digits = (min: number, max: number) => fc.stringMatching(new RegExp(`^\\d{${min},${max}}$`));

describe('request encoders round-trip through the HSM command parsers', () => {
  it('A0: the key type, algorithm, exportability and LMK id the server reads are the ones asked for', () => {
    const apiTypes: KeyType[] = ['TMK', 'ZMK', 'TPK', 'ZPK', 'TAK', 'ZAK', 'TDK', 'ZEK', 'DEK', 'BDK'];
    const combos = apiTypes.flatMap((t) => KEY_TYPES[t].algorithms.map((a) => [t, a] as const));
    fc.assert(
      fc.property(
        fc.constantFrom(...combos),
        fc.constantFrom('E', 'N', 'S'),
        fc.option(fc.constantFrom('00', '07')),
        ([keyType, algorithm], exportability, lmkId) => {
          const plan = encodeA0({ keyType, algorithm, exportability, lmkId: lmkId ?? undefined });
          const req = parse(A0, plan.body);
          assert.equal(resolveKeyType(req.keyTypeCode, req.attrs, 'zone'), keyType);
          assert.equal(resolveAlgorithm(req.attrs, 'tdes2'), algorithm);
          assert.equal(req.attrs?.exportability, exportability);
          assert.equal(req.lmkId, lmkId ?? undefined);
        },
      ),
    );
    const req = parse(
      A0,
      encodeA0({ keyType: 'ZPK', algorithm: 'tdes2', exportUnder: { kek: zmk, format: 'legacy' } }).body,
    );
    assert.deepEqual([req.mode, req.kek, req.scheme], ['1', zmk, 'X']);
  });

  it('A6 and A4: TR-31 blocks keep their exportability unless tightened; legacy schemes follow the length', () => {
    const tr31 = parse(
      A6,
      encodeA6({ keyType: 'ZPK', algorithm: 'tdes3', kek: zmk, key: { kind: 'tr31', block: zpk } }),
    );
    assert.deepEqual(
      [tr31.key.scheme, tr31.key.value, tr31.attrs?.exportability, tr31.attrs?.algorithm],
      ['R', zpk, zpk[11], 'T3'],
    );
    for (const [bytes, scheme] of [
      [8, 'Z'],
      [16, 'X'],
      [24, 'Y'],
    ] as const) {
      const cryptogram = 'AB'.repeat(bytes);
      const req = parse(
        A6,
        encodeA6({
          keyType: 'TAK',
          algorithm: bytes === 8 ? 'des' : bytes === 16 ? 'tdes2' : 'tdes3',
          kek: zmk,
          key: { kind: 'legacy', cryptogram },
        }),
      );
      assert.deepEqual([req.key.scheme, req.key.value, req.keyTypeCode], [scheme, cryptogram, '003']);
    }
    const a4 = parse(
      A4,
      encodeA4({
        keyType: 'TMK',
        algorithm: 'tdes2',
        components: ['11'.repeat(16), '22'.repeat(16), '33'.repeat(16)],
      }),
    );
    assert.equal(a4.components.length, 3);
    assert.equal(resolveKeyType(a4.keyTypeCode, a4.attrs, 'zone'), 'TMK');
  });

  it('CA/CC/G0: PIN block, formats and the PAN digits each format uses reach the server unchanged', () => {
    const formats = fc.constantFrom<[0 | 1 | 3 | 4, 0 | 1 | 3 | 4]>(
      [0, 0],
      [0, 3],
      [3, 0],
      [1, 0],
      [0, 1],
      [4, 4],
      [0, 4],
    );
    fc.assert(
      fc.property(
        digits(13, 19),
        hex(8),
        formats,
        fc.boolean(),
        (pan, pinBlock, [fromFormat, toFormat], zpkSource) => {
          const aes = fromFormat === 4 || toFormat === 4;
          const source = zpkSource ? zpk : tpk;
          const req: TranslatePinRequest = {
            source: { kind: 'key', keyBlock: aes ? aesZpk : source },
            destination: aes ? aesZpk : zpk,
            pinBlock: aes ? pinBlock.repeat(2) : pinBlock,
            fromFormat,
            toFormat,
            pan,
          };
          const plan = encodeTranslatePin(req);
          assert.equal(plan.command, zpkSource || aes ? 'CC' : 'CA');
          const parsed = parse(plan.command === 'CA' ? CA : CC, plan.body);
          assert.deepEqual(
            [parsed.pinBlock, parsed.fromFormat, parsed.toFormat],
            [req.pinBlock.toUpperCase(), fromFormat, toFormat],
          );
          if (aes) assert.equal(parsed.pan, pan);
          else assert.equal(parsed.pan.slice(-13, -1), pan.slice(-13, -1));
        },
      ),
    );
    fc.assert(
      fc.property(hex(10), hex(8), (ksn, pinBlock) => {
        const plan = encodeTranslatePin({
          source: { kind: 'dukpt', bdk, ksn },
          destination: zpk,
          pinBlock,
          fromFormat: 0,
          toFormat: 0,
          pan: '4012345678909',
        });
        const parsed = parse(G0, plan.body);
        assert.deepEqual(parsed.source, { kind: 'dukpt', bdk, ksn: ksn.toUpperCase() });
      }),
    );
  });

  it('M6/M8: algorithm, padding, MAC size and message bytes the server reads are the request’s', () => {
    const algs = fc.constantFrom<[MacRequest['algorithm'], string]>(
      ['retail', tak],
      ['cbc', tak],
      ['cmac', aesTak],
    );
    fc.assert(
      fc.property(
        algs,
        fc.uint8Array({ minLength: 8, maxLength: 300 }),
        fc.constantFrom(1, 2, 3),
        fc.constantFrom(4, 8),
        ([algorithm, keyBlock], data, padding, length) => {
          const hex = Buffer.from(data).toString('hex');
          const req: MacRequest = {
            key: { kind: 'key', keyBlock },
            algorithm,
            data: hex,
            padding: padding as 1 | 2 | 3,
            length,
          };
          const m6 = parse(M6, encodeM6(req).body);
          assert.deepEqual(
            [m6.algorithm, m6.macBytes, m6.key, m6.data],
            [algorithm, length, keyBlock, hex.toUpperCase()],
          );
          // The same MAB given as bytes goes on the wire as the same hex.
          assert.equal(
            encodeM6({ ...req, data: Buffer.from(data) }).body,
            encodeM6({ ...req, data: hex.toUpperCase() }).body,
          );
          if (algorithm !== 'cmac') assert.equal(m6.padding, padding);
          const mac = 'AB'.repeat(length);
          const m8 = parse(M8, encodeM8({ ...req, mac }).body);
          assert.equal(m8.mac, mac);
        },
      ),
    );
  });

  it('M6: messages too long for a hex length field travel as binary', () => {
    const data = 'A5'.repeat(40_000);
    const parsed = parse(
      M6,
      encodeM6({ key: { kind: 'key', keyBlock: tak }, algorithm: 'retail', data, length: 8 }).body,
    );
    assert.equal(parsed.data, data);
  });

  it('M0/M2: mode, IV and data', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(tdk, aesDek),
        fc.integer({ min: 1, max: 20 }),
        fc.boolean(),
        (keyBlock, blocks, cbc) => {
          const size = keyBlock[7] === 'A' ? 16 : 8;
          const data = 'C3'.repeat(blocks * size);
          const req = { keyBlock, mode: cbc ? ('cbc' as const) : ('ecb' as const), data };
          const parsed = parse(M0, encodeData('encryptData', req));
          assert.deepEqual(
            [parsed.mode, parsed.iv, parsed.data],
            [req.mode, cbc ? '00'.repeat(size) : undefined, data],
          );
        },
      ),
    );
  });

  it('Y0: TDES defaults (double PIK, single MAK) and SM4', () => {
    const tmk = block('TMK', 'tdes2');
    assert.deepEqual(parse(Y0, encodeY0({ tmk, algorithm: 'tdes' })), {
      tmk,
      algorithm: 'tdes',
      pinKeyLength: 'double',
      makLength: 'single',
      withTdk: false,
    });
    assert.equal(parse(Y0, encodeY0({ tmk, algorithm: 'sm4', withTdk: true })).withTdk, true);
  });
});

describe('refusals before sending', () => {
  const pin: TranslatePinRequest = {
    source: { kind: 'key', keyBlock: tpk },
    destination: zpk,
    pinBlock: '0123456789ABCDEF',
    fromFormat: 0,
    toFormat: 0,
    pan: '4012345678909',
  };
  const mac: MacRequest = { key: { kind: 'key', keyBlock: tak }, algorithm: 'retail', data: '00'.repeat(16) };

  it('POSKEY_ERR_HSM_UNSUPPORTED names what the wire cannot carry', () => {
    const cases: (() => unknown)[] = [
      () => encodeA0({ keyType: 'KEK', algorithm: 'aes256' }),
      () => encodeA0({ keyType: 'ZPK', algorithm: 'tdes2', kcvMethod: 'cmac' }),
      () => encodeA0({ keyType: 'ZPK', algorithm: 'aes256', exportUnder: { kek: zmk, format: 'legacy' } }),
      () =>
        encodeA6({
          keyType: 'ZPK',
          algorithm: 'aes256',
          kek: zmk,
          key: { kind: 'legacy', cryptogram: 'AB'.repeat(32) },
        }),
      () => encodeA4({ keyType: 'ZPK', algorithm: 'aes256', components: ['AB'.repeat(32), 'CD'.repeat(32)] }),
      () =>
        encodeTranslatePin({
          ...pin,
          source: { kind: 'dukpt', bdk, ksn: '00'.repeat(12), aes: { keyType: 'aes256' } },
        }),
      () => encodeM6({ ...mac, key: { kind: 'dukpt', bdk, ksn: '00'.repeat(10), direction: 'request' } }),
      () => encodeM6({ ...mac, key: { kind: 'key', keyBlock: aesTak }, algorithm: 'cmac' }),
      () => encodeM6({ ...mac, length: 6 }),
      () => encodeData('encryptData', { keyBlock: tdk, mode: 'ecb', data: '' }),
      () => resolveKcvRequest(aesZpk, 'legacy', undefined),
      () => resolveKcvRequest(aesZpk, undefined, 12),
    ];
    for (const c of cases) assert.throws(c, refuses('POSKEY_ERR_HSM_UNSUPPORTED'));
  });

  it('inputs the HSM would refuse are refused with its codes', () => {
    const cases: [() => unknown, string, string][] = [
      [() => encodeA0({ keyType: 'XYZ' as KeyType, algorithm: 'tdes2' }), 'POSKEY_ERR_KEY_TYPE', 'keyType'],
      [
        () => encodeA0({ keyType: 'ZPK', algorithm: 'rsa' as KeyAlgorithm }),
        'POSKEY_ERR_KEY_ALGORITHM',
        'algorithm',
      ],
      [() => encodeA0({ keyType: 'ZPK', algorithm: 'des' }), 'POSKEY_ERR_KEY_ALGORITHM', 'algorithm'],
      [
        () => encodeA0({ keyType: 'ZPK', algorithm: 'tdes2', exportability: 'X' }),
        'POSKEY_ERR_EXPORTABILITY',
        'exportability',
      ],
      [() => encodeA0({ keyType: 'ZPK', algorithm: 'tdes2', lmkId: '1' }), 'POSKEY_ERR_LMK_ID', 'lmkId'],
      [
        () =>
          encodeA0({
            keyType: 'ZPK',
            algorithm: 'tdes2',
            exportUnder: { kek: 42 as unknown as string, format: 'tr31' },
          }),
        'POSKEY_ERR_TYPE',
        'exportUnder.kek',
      ],
      [
        () =>
          encodeA0({ keyType: 'ZPK', algorithm: 'tdes2', exportUnder: { kek: zmk, format: 'x' as 'tr31' } }),
        'POSKEY_ERR_TYPE',
        'exportUnder.format',
      ],
      [
        () =>
          encodeA6({
            keyType: 'ZPK',
            algorithm: 'tdes2',
            kek: zmk,
            key: { kind: 'legacy', cryptogram: 'XY' },
          }),
        'POSKEY_ERR_HEX',
        'source.cryptogram',
      ],
      [
        () => encodeA6({ keyType: 'ZPK', algorithm: 'tdes2', kek: zmk, key: { kind: 'tr31', block: '' } }),
        'POSKEY_ERR_TYPE',
        'source.block',
      ],
      [
        () => encodeA4({ keyType: 'ZPK', algorithm: 'tdes2', components: ['AB'.repeat(16)] }),
        'POSKEY_ERR_COMPONENT_COUNT',
        'source.components',
      ],
      [
        () => encodeA4({ keyType: 'ZPK', algorithm: 'tdes2', components: ['AB'.repeat(16), 'Q'] }),
        'POSKEY_ERR_HEX',
        'source.components[1]',
      ],
      [() => encodeTranslatePin({ ...pin, fromFormat: 7 as 0 }), 'POSKEY_ERR_PIN_BLOCK_FORMAT', 'fromFormat'],
      [() => encodeTranslatePin({ ...pin, toFormat: 2 }), 'POSKEY_ERR_PIN_BLOCK_TRANSLATION', 'toFormat'],
      [() => encodeTranslatePin({ ...pin, pan: '' }), 'POSKEY_ERR_PAN', 'pan'],
      [() => encodeTranslatePin({ ...pin, toFormat: 4, fromFormat: 4, pan: '12a' }), 'POSKEY_ERR_PAN', 'pan'],
      [() => encodeTranslatePin({ ...pin, pinBlock: 'ZZ' }), 'POSKEY_ERR_HEX', 'pinBlock'],
      [
        () => encodeTranslatePin({ ...pin, destination: 7 as unknown as string }),
        'POSKEY_ERR_TYPE',
        'destination',
      ],
      [
        () =>
          encodeTranslatePin({ ...pin, source: { kind: 'x' } as unknown as TranslatePinRequest['source'] }),
        'POSKEY_ERR_TYPE',
        'source.kind',
      ],
      [
        () => encodeTranslatePin({ ...pin, source: { kind: 'dukpt', bdk, ksn: 'KSN' } }),
        'POSKEY_ERR_HEX',
        'source.ksn',
      ],
      [() => encodeM6({ ...mac, algorithm: 'hmac' as 'cbc' }), 'POSKEY_ERR_MAC_ALGORITHM', 'algorithm'],
      [() => encodeM6({ ...mac, padding: 4 as 1 }), 'POSKEY_ERR_MAC_PADDING', 'padding'],
      [
        () => encodeM6({ ...mac, algorithm: 'unionpay-ecb', output: 'base64' as 'hex' }),
        'POSKEY_ERR_MAC_OUTPUT',
        'output',
      ],
      [() => encodeM6({ ...mac, algorithm: 'unionpay-ecb', length: 4 }), 'POSKEY_ERR_LENGTH', 'length'],
      [() => encodeM6({ ...mac, length: 3 }), 'POSKEY_ERR_LENGTH', 'length'],
      [() => encodeM6({ ...mac, data: 'ABC' }), 'POSKEY_ERR_HEX', 'data'],
      [() => encodeM8({ ...mac, mac: 'nothex' }), 'POSKEY_ERR_HEX', 'mac'],
      [
        () => encodeData('encryptData', { keyBlock: tdk, mode: 'ofb' as 'ecb', data: '00' }),
        'POSKEY_ERR_TYPE',
        'mode',
      ],
      [
        () => encodeData('encryptData', { keyBlock: tdk, mode: 'cbc', iv: '00', data: '00'.repeat(8) }),
        'POSKEY_ERR_LENGTH',
        'iv',
      ],
      [
        () => encodeData('encryptData', { keyBlock: tdk, mode: 'cbc', iv: 'QQ', data: '00'.repeat(8) }),
        'POSKEY_ERR_HEX',
        'iv',
      ],
      [() => encodeData('encryptData', { keyBlock: tdk, mode: 'ecb', data: '0' }), 'POSKEY_ERR_HEX', 'data'],
      [() => encodeY0({ tmk: zmk, algorithm: 'rsa' as 'tdes' }), 'POSKEY_ERR_TYPE', 'algorithm'],
      [
        () => encodeY0({ tmk: zmk, algorithm: 'tdes', makLength: 'triple' as 'single' }),
        'POSKEY_ERR_TYPE',
        'makLength',
      ],
      [() => resolveKcvRequest(zpk, 'sha' as 'cmac', undefined), 'POSKEY_ERR_KCV_METHOD', 'method'],
      [() => resolveKcvRequest(zpk, undefined, 9), 'POSKEY_ERR_LENGTH', 'length'],
    ];
    for (const [fn, code, field] of cases) assert.throws(fn, refuses(code, field), `${code} ${field}`);
  });

  it('a MAC of the wrong length is sent as zeros and reported as not verifying', () => {
    const plan = encodeM8({ ...mac, length: 8, mac: 'ABCD' });
    assert.equal(plan.wrongLength, true);
    assert.ok(plan.body.endsWith('0'.repeat(16)));
  });
});

describe('response decoders refuse malformed answers (POSKEY_ERR_HSM_PROTOCOL)', () => {
  const bad: [() => unknown, string][] = [
    [() => A0_RESPONSE.decode('X1234', '00', false), 'not an S key block'],
    [() => A0_RESPONSE.decode(`S${zpk}`, '00', false), 'kcv is cut short'],
    [() => A0_RESPONSE.decode('SDxxxx', '00', false), 'no readable key block length'],
    [() => BU_RESPONSE.decode('12345', '00', undefined), 'KCV'],
    [() => CA_RESPONSE.decode('04', '00', undefined), 'no PIN block'],
    [() => M6_RESPONSE.decode('ABCD', '00', { sizeFlag: '1', wireHex: 16, ascii: false }), 'MAC is 4'],
    [() => M6_RESPONSE.decode('ZZZZZZZZ', '00', { sizeFlag: '0', wireHex: 8, ascii: false }), 'not hex'],
    [
      () => M0_RESPONSE.decode('0010ABCD', '00', dataContext({ keyBlock: tdk, mode: 'ecb', data: 'AB' })),
      'cut short',
    ],
    [() => NC_RESPONSE.decode('XYZ', '00', undefined), 'lmkKcv'],
    [() => Y0_RESPONSE.decode(`S${zpk}`, '00', false), 'underTmk'],
  ];
  for (const [fn, message] of bad) {
    it(message, () => {
      assert.throws(
        fn,
        (e: unknown) =>
          e instanceof PoskeyError && e.code === 'POSKEY_ERR_HSM_PROTOCOL' && e.message.includes(message),
      );
    });
  }
});
