import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { decryptPinBlock, encryptPinBlock } from '../../src/crypto/pinblock.js';
import { classify, type IsoMessage, joinKeyBlock, pack, unpack } from '../../src/iso8583/index.js';
import { POS_DIALECT, transformTrack } from '../../src/protocol/unionpay-pos.js';
import { readCard } from '../../src/terminal/cards.js';
import { resolveTerminalConfig, type TerminalConfig } from '../../src/terminal/config.js';
import { TerminalError } from '../../src/terminal/errors.js';
import {
  describeResponseCode,
  financialRequest,
  formatAmount,
  hostClock,
  parseBalances,
  reversalOf,
  type SecureOps,
  signInKeyPlan,
  signInRequest,
  signOffRequest,
} from '../../src/terminal/messages.js';
import { PinPad } from '../../src/terminal/pinpad.js';

const BASE: TerminalConfig = { tid: '12345678', mid: '123456789012345', host: '127.0.0.1', port: 5000 };
const TPK = '807A23AD32B36D457AE91FDF927570EA';
const TDK = '0123456789ABCDEFFEDCBA9876543210';
const TRACK = '6222021234567890128=30121010000000000';

function code(c: string) {
  return (e: unknown) => e instanceof TerminalError && e.code === c;
}

/** Known clear keys standing in for the PIN pad (the pad itself is tested in pinpad.test.ts). */
function ops(alg: 'tdes' | 'sm4' = 'tdes'): SecureOps {
  const pin = createKey(alg, fromHex(alg === 'sm4' ? 'F351D490994603795C6EBEE8FAEBB481' : TPK));
  const data = createKey(alg, fromHex(TDK));
  return {
    pinBlock: (p, pan) => toHex(encryptPinBlock(pin, { format: alg === 'sm4' ? 'sm4' : 0, pin: p, pan })),
    encryptTrack: (t) => transformTrack(t, alg === 'sm4' ? 16 : 8, (b) => data.ecbEncrypt(b)),
  };
}

/** Packs with a dummy MAC and unpacks, as the host would see the request. */
function onTheWire(msg: IsoMessage): IsoMessage {
  return unpack(POS_DIALECT, pack(POS_DIALECT, { ...msg, 64: '0000000000000000' }));
}

describe('terminal messages: sign-in and sign-off', () => {
  it('0800 carries STAN, TID, MID, 60 = 00/batch/code, 63.1 operator, and no MAC', () => {
    const cfg = resolveTerminalConfig({ ...BASE, trackEncryption: true });
    const msg = unpack(POS_DIALECT, pack(POS_DIALECT, signInRequest(cfg, '000042', '000003')));
    assert.deepEqual(msg, {
      0: '0800',
      11: '000042',
      41: '12345678',
      42: '123456789012345',
      60: { 1: '00', 2: '000003', 3: '004' },
      63: { 1: '001' },
    });
    assert.equal(classify(POS_DIALECT, msg).name, 'sign-in');
    const off = signOffRequest(cfg, '000043', '000003');
    assert.deepEqual(off[60], { 1: '00', 2: '000003', 3: '002' });
    assert.equal(classify(POS_DIALECT, onTheWire(off)).name, 'sign-off');
  });

  it('an 0810 built from the published example keys (keys.md §3.2) loads through the plan', () => {
    const field62 = joinKeyBlock(
      {
        pik: '6701EAD6A9AD51E51AA406E2C27FCFA9',
        pikCv: '8D0A74B8',
        mak: 'B651F9E9BACE9AE10000000000000000',
        makCv: 'AB7153CA',
      },
      '003',
    );
    const response = unpack(
      POS_DIALECT,
      pack(POS_DIALECT, {
        0: '0810',
        11: '000001',
        12: '101112',
        13: '0304',
        32: '12345678',
        37: '000000000001',
        39: '00',
        41: '12345678',
        42: '123456789012345',
        60: { 1: '00', 2: '000009', 3: '003' },
        62: field62,
      } as IsoMessage),
    );
    const plan = signInKeyPlan(response[62], '003', { tmk: 0, pin: 1, mac: 2, data: 3 });
    assert.deepEqual(
      plan.map((k) => [k.name, k.slot, k.algorithm, k.cryptogram]),
      [
        ['pik', 1, 'tdes', '6701EAD6A9AD51E51AA406E2C27FCFA9'],
        ['mak', 2, 'des', 'B651F9E9BACE9AE1'],
      ],
    );
    const pad = new PinPad();
    pad.injectTmk(0, 'CA5D92598DCA48CE8A4C76361A9269E9', { algorithm: 'tdes' });
    assert.deepEqual(
      pad.loadWorkingKeySet(plan).map((s) => s.kcv),
      ['8D0A74', 'AB7153'],
    );
    const clock = hostClock(response, new Date(2031, 0, 1));
    assert.deepEqual(clock, new Date(2031, 2, 4, 10, 11, 12));
  });

  it('plans every sign-in layout: 001 single DES, 004 with TDK, 006 SM4, 003 with a double MAK', () => {
    const slots = { tmk: 0, pin: 1, mac: 2, data: 3 };
    const hex = (bytes: number) => 'AB'.repeat(bytes);
    const algs = (field62: string, c: '001' | '003' | '004' | '006') =>
      signInKeyPlan(field62, c, slots).map((k) => `${k.name}:${k.algorithm}:${k.cryptogram.length / 2}`);
    assert.deepEqual(algs(hex(24), '001'), ['pik:des:8', 'mak:des:8']);
    assert.deepEqual(algs(hex(40), '003'), ['pik:tdes:16', 'mak:tdes:16']);
    assert.deepEqual(algs(hex(60), '004'), ['pik:tdes:16', 'mak:tdes:16', 'tdk:tdes:16']);
    assert.deepEqual(algs(hex(60), '006'), ['pik:sm4:16', 'mak:sm4:16', 'tdk:sm4:16']);
    assert.throws(() => signInKeyPlan(hex(24), '003', slots), code('POSKEY_ERR_TERMINAL_SIGN_IN'));
    assert.throws(() => signInKeyPlan(undefined, '003', slots), code('POSKEY_ERR_TERMINAL_SIGN_IN'));
  });

  it('reads the host clock only when 12 and 13 are a real time', () => {
    const now = new Date(2030, 5, 1);
    assert.equal(hostClock({ 0: '0810', 12: '256000', 13: '0101' } as IsoMessage, now), undefined);
    assert.equal(hostClock({ 0: '0810', 12: '120000', 13: '0230' } as IsoMessage, now), undefined);
    assert.equal(hostClock({ 0: '0810' } as IsoMessage, now), undefined);
  });
});

describe('terminal messages: 0200', () => {
  const card = readCard({ track2: TRACK });

  it('purchase, swiped with PIN: the e2e field set; the PIN block opens under the TPK', () => {
    const cfg = resolveTerminalConfig(BASE);
    const msg = onTheWire(
      financialRequest(cfg, 'purchase', {
        card,
        stan: '000005',
        batch: '000002',
        amount: formatAmount(1234),
        pin: '123456',
        ops: ops(),
      }),
    );
    const { 52: pinBlock, 64: _mac, ...rest } = msg;
    assert.deepEqual(rest, {
      0: '0200',
      2: '6222021234567890128',
      3: '000000',
      4: '000000001234',
      11: '000005',
      14: '3012',
      22: '021',
      25: '00',
      26: '12',
      35: TRACK,
      41: '12345678',
      42: '123456789012345',
      49: '156',
      53: { 1: '2', 2: '6', 3: '0', 4: '0000000000000' },
      60: { 1: '22', 2: '000002', 3: '000' },
    });
    const pin = decryptPinBlock(createKey('tdes', fromHex(TPK)), fromHex(pinBlock as string), {
      format: 0,
      pan: card.pan,
    });
    assert.equal(pin, '123456');
    assert.equal(classify(POS_DIALECT, msg).name, 'purchase');
  });

  it('balance inquiry: 310000, no amount, 60.1 = 01', () => {
    const cfg = resolveTerminalConfig(BASE);
    const msg = onTheWire(
      financialRequest(cfg, 'balance', { card, stan: '000006', batch: '000002', pin: '123456', ops: ops() }),
    );
    assert.equal(msg[3], '310000');
    assert.equal(msg[4], undefined);
    assert.deepEqual(msg[60], { 1: '01', 2: '000002', 3: '000' });
    assert.equal(classify(POS_DIALECT, msg).name, 'balance');
  });

  it('manual entry without PIN: 22 = 012, no 26, 35, 52 or 53', () => {
    const cfg = resolveTerminalConfig(BASE);
    const msg = financialRequest(cfg, 'purchase', {
      card: readCard({ pan: '6222021234567890128', expiry: '3012' }),
      stan: '000007',
      batch: '000001',
      amount: formatAmount(1),
      ops: ops(),
    });
    assert.equal(msg[22], '012');
    for (const f of [26, 35, 52, 53]) assert.equal(msg[f], undefined, String(f));
    assert.throws(
      () => financialRequest(cfg, 'purchase', { card, stan: '000008', batch: '000001', ops: ops() }),
      code('POSKEY_ERR_TERMINAL_INPUT'),
    );
  });

  it('track encryption sets 53.3 and enciphers one block of track 2; SM4 and single DES set 53.2', () => {
    const tdes = resolveTerminalConfig({ ...BASE, trackEncryption: true });
    const m = financialRequest(tdes, 'purchase', {
      card,
      stan: '000009',
      batch: '000001',
      amount: '000000000100',
      pin: '1234',
      ops: ops(),
    });
    assert.deepEqual(m[53], { 1: '2', 2: '6', 3: '1', 4: '0000000000000' });
    assert.notEqual(m[35], TRACK);
    const tdk = createKey('tdes', fromHex(TDK));
    assert.equal(
      transformTrack(m[35] as string, 8, (b) => tdk.ecbDecrypt(b)),
      TRACK,
    );
    assert.equal(onTheWire(m)[35], m[35]);
    const sm4 = resolveTerminalConfig({ ...BASE, algorithm: 'sm4' });
    const s = financialRequest(sm4, 'purchase', {
      card,
      stan: '000010',
      batch: '000001',
      amount: '000000000100',
      pin: '1234',
      ops: ops('sm4'),
    });
    assert.deepEqual(s[53], { 1: '2', 2: '4', 3: '0', 4: '0000000000000' });
    assert.equal((s[52] as string).length, 32);
    const des = resolveTerminalConfig({ ...BASE, signInCode: '001' });
    const d = financialRequest(des, 'purchase', {
      card,
      stan: '000011',
      batch: '000001',
      amount: '000000000100',
      pin: '1234',
      ops: ops(),
    });
    assert.equal((d[53] as Record<number, string>)[2], '0');
  });

  it('a reversal repeats the original data with the reason, never the PIN or the track', () => {
    const cfg = resolveTerminalConfig(BASE);
    const original = financialRequest(cfg, 'purchase', {
      card,
      stan: '000012',
      batch: '000004',
      amount: formatAmount(500),
      pin: '123456',
      ops: ops(),
    });
    const r = reversalOf(original, 'A0');
    assert.deepEqual(Object.keys(r).map(Number), [0, 2, 3, 4, 11, 14, 22, 25, 39, 41, 42, 49, 53, 60]);
    assert.equal(r[0], '0400');
    assert.equal(r[11], '000012');
    assert.equal(r[39], 'A0');
    assert.equal(classify(POS_DIALECT, onTheWire(r)).name, 'reversal');
    (r[60] as Record<number, string>)[2] = '999999';
    assert.equal((original[60] as Record<number, string>)[2], '000004');
  });
});

describe('terminal messages: helpers', () => {
  it('formats amounts as n12 minor units and rejects others with POSKEY_ERR_TERMINAL_INPUT', () => {
    assert.equal(formatAmount(1), '000000000001');
    assert.equal(formatAmount('999999999999'), '999999999999');
    assert.equal(formatAmount(12n), '000000000012');
    for (const bad of [0, -5, 1.5, 1e12, 'abc', Number.NaN]) {
      assert.throws(() => formatAmount(bad as number), code('POSKEY_ERR_TERMINAL_INPUT'), String(bad));
    }
  });

  it('parses field 54 balances', () => {
    assert.deepEqual(parseBalances('1002156C000000010000'), [
      {
        accountType: '10',
        amountType: '02',
        currency: '156',
        sign: 'C',
        amount: '000000010000',
        minor: 10000,
      },
    ]);
    assert.equal(parseBalances('1002156D000000000250')![0]!.minor, -250);
    assert.equal(parseBalances('1002156X000000010000'), undefined);
    assert.equal(parseBalances('short'), undefined);
    assert.equal(parseBalances(undefined), undefined);
  });

  it('describes response codes', () => {
    assert.equal(describeResponseCode('00'), 'approved');
    assert.equal(describeResponseCode('55'), 'wrong PIN');
    assert.match(describeResponseCode('A0'), /sign in again/);
    assert.equal(describeResponseCode('Z9'), 'declined (Z9)');
    assert.equal(describeResponseCode(undefined), 'no response code');
  });
});

describe('terminal configuration', () => {
  it('fills defaults and derives the sign-in code', () => {
    const c = resolveTerminalConfig(BASE);
    assert.deepEqual(
      [c.algorithm, c.signInCode, c.macAlgorithm, c.connection, c.operator, c.currency],
      ['tdes', '003', 'unionpay-ecb', 'persistent', '001', '156'],
    );
    assert.equal(resolveTerminalConfig({ ...BASE, algorithm: 'sm4' }).signInCode, '006');
    assert.equal(resolveTerminalConfig({ ...BASE, trackEncryption: true }).signInCode, '004');
    assert.ok(Object.isFrozen(c));
  });

  it('rejects inconsistent or malformed options with POSKEY_ERR_TERMINAL_CONFIG naming the option', () => {
    const cases: [Partial<TerminalConfig> & Record<string, unknown>, string][] = [
      [{ tid: '1234567' }, 'tid'],
      [{ mid: '12345' }, 'mid'],
      [{ port: 0 }, 'port'],
      [{ host: '' }, 'host'],
      [{ algorithm: 'aes' as never }, 'algorithm'],
      [{ algorithm: 'sm4', signInCode: '003' }, 'signInCode'],
      [{ signInCode: '006' }, 'signInCode'],
      [{ signInCode: '002' as never }, 'signInCode'],
      [{ trackEncryption: true, signInCode: '003' }, 'trackEncryption'],
      [{ algorithm: 'sm4', macAlgorithm: 'x919' }, 'macAlgorithm'],
      [{ timeouts: { responseMs: 0 } }, 'timeouts.responseMs'],
      [{ connection: 'pooled' as never }, 'connection'],
      [{ slots: { pin: 0 } }, 'slots'],
      [{ currency: 'CNY' }, 'currency'],
      [{ bogus: 1 }, 'bogus'],
    ];
    for (const [patch, field] of cases) {
      assert.throws(
        () => resolveTerminalConfig({ ...BASE, ...patch } as TerminalConfig),
        (e: unknown) => code('POSKEY_ERR_TERMINAL_CONFIG')(e) && (e as TerminalError).field === field,
        JSON.stringify(patch),
      );
    }
  });
});
