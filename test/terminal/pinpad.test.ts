import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { createKey, encrypt } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { retailMac, unionPayMac } from '../../src/crypto/mac.js';
import { encryptPinBlock } from '../../src/crypto/pinblock.js';
import { transformTrack } from '../../src/protocol/unionpay-pos.js';
import { PinPadError } from '../../src/terminal/errors.js';
import { DEFAULT_SLOT_COUNT, MIN_SLOTS, PinPad } from '../../src/terminal/pinpad.js';

/**
 * Published sign-in example, DES era (code456.com "POS终端'密事'之工作密钥解密", shared research
 * keys.md §3.2): field 62 under the TMK, and the clear keys the page derives.
 */
const UP = {
  tmk: 'CA5D92598DCA48CE8A4C76361A9269E9',
  pikCryptogram: '6701EAD6A9AD51E51AA406E2C27FCFA9',
  pikCv: '8D0A74B8',
  makCryptogram: 'B651F9E9BACE9AE1',
  makCv: 'AB7153CA',
  tpk: '807A23AD32B36D457AE91FDF927570EA',
  tak: '5BB5C72CD00B7338',
};

/**
 * SM4 era (blog.csdn.net/M_Kerry/article/details/104625499, keys.md §3.2): TMK, work-key cryptogram
 * and check value (first 8 bytes of SM4(key, 0); the sign-in carries the first 4), the clear work
 * key, and the 16-byte PIN block of PIN 123654 / PAN 6230606601007726888 under it (computed, [C]).
 */
const SM4 = {
  tmk: '1234567890ABCDEFABCDEF0987654321',
  cryptogram: '3D66234C49E4296FF9C78D8BACBD6A76',
  cv8: '861E83E31FAEBF10',
  cv4: '861E83E3',
  clear: 'F351D490994603795C6EBEE8FAEBB481',
  pin: '123654',
  pan: '6230606601007726888',
  pinBlock: 'CD01D6AD8F0A484C52A9364A0595AD60',
};

function code(c: string) {
  return (e: unknown) => e instanceof PinPadError && e.code === c;
}

function unionPayPad(): PinPad {
  const pad = new PinPad({ serial: 'TEST0001' });
  pad.injectTmk(0, UP.tmk, { algorithm: 'tdes' });
  pad.loadWorkingKeySet([
    {
      name: 'pik',
      slot: 1,
      under: 0,
      role: 'pin',
      algorithm: 'tdes',
      cryptogram: UP.pikCryptogram,
      checkValue: UP.pikCv,
    },
    {
      name: 'mak',
      slot: 2,
      under: 0,
      role: 'mac',
      algorithm: 'des',
      cryptogram: UP.makCryptogram,
      checkValue: UP.makCv,
    },
  ]);
  return pad;
}

describe('PinPad: published sign-in examples', () => {
  it('loads the DES-era PIK and MAK of research keys.md §3.2 and uses them as the clear keys', () => {
    const pad = unionPayPad();
    assert.equal(pad.slotInfo(1)?.kcv, '8D0A74');
    assert.equal(pad.slotInfo(2)?.kcv, 'AB7153');
    assert.equal(pad.slotInfo(2)?.bits, 64);
    const tpk = createKey('tdes', fromHex(UP.tpk));
    const tak = createKey('des', fromHex(UP.tak));
    const pan = '6222021234567890128';
    assert.equal(
      toHex(pad.encryptPin(1, { pin: '123456', pan })),
      toHex(encryptPinBlock(tpk, { format: 0, pin: '123456', pan })),
    );
    const data = Buffer.from('0200 message authentication block');
    assert.deepEqual(pad.mac(2, 'unionpay-ecb', data), unionPayMac(tak, data));
    assert.deepEqual(pad.mac(2, 'x919', data), retailMac(tak, data));
  });

  it('loads the SM4 example with a 4-byte and an 8-byte check value and makes its PIN block', () => {
    for (const cv of [SM4.cv4, SM4.cv8]) {
      const pad = new PinPad();
      pad.injectTmk(0, SM4.tmk, { algorithm: 'sm4' });
      const info = pad.loadWorkingKey(1, {
        under: 0,
        cryptogram: SM4.cryptogram,
        checkValue: cv,
        role: 'pin',
        algorithm: 'sm4',
      });
      assert.equal(info.kcv, '861E83');
      assert.equal(toHex(pad.encryptPin(1, { pin: SM4.pin, pan: SM4.pan })), SM4.pinBlock);
    }
    const clear = createKey('sm4', fromHex(SM4.clear));
    assert.equal(toHex(encryptPinBlock(clear, { format: 'sm4', pin: SM4.pin, pan: SM4.pan })), SM4.pinBlock);
  });
});

describe('PinPad: check values', () => {
  it('rejects a wrong check value and leaves the slot as it was', () => {
    const pad = unionPayPad();
    const before = pad.slotInfo(2);
    const data = Buffer.from('abc');
    const mac = pad.mac(2, 'unionpay-ecb', data);
    assert.throws(
      () =>
        pad.loadWorkingKey(2, {
          under: 0,
          role: 'mac',
          algorithm: 'des',
          cryptogram: '0011223344556677',
          checkValue: UP.makCv,
        }),
      (e: unknown) => code('POSKEY_ERR_PINPAD_KCV')(e) && (e as PinPadError).field === 'checkValue',
    );
    assert.deepEqual(pad.slotInfo(2), before);
    assert.deepEqual(pad.mac(2, 'unionpay-ecb', data), mac);
    assert.throws(
      () =>
        pad.loadWorkingKey(5, {
          under: 0,
          role: 'pin',
          algorithm: 'tdes',
          cryptogram: UP.pikCryptogram,
          checkValue: '8D0A74B9',
        }),
      code('POSKEY_ERR_PINPAD_KCV'),
    );
    assert.equal(pad.slotInfo(5), undefined);
  });

  it('loads a key set all or nothing, naming the key at fault', () => {
    const pad = unionPayPad();
    const before = pad.listSlots();
    assert.throws(
      () =>
        pad.loadWorkingKeySet([
          {
            name: 'pik',
            slot: 1,
            under: 0,
            role: 'pin',
            algorithm: 'tdes',
            cryptogram: UP.pikCryptogram,
            checkValue: UP.pikCv,
          },
          {
            name: 'mak',
            slot: 2,
            under: 0,
            role: 'mac',
            algorithm: 'des',
            cryptogram: UP.makCryptogram,
            checkValue: '00000000',
          },
        ]),
      (e: unknown) => code('POSKEY_ERR_PINPAD_KCV')(e) && (e as PinPadError).field === 'mak.checkValue',
    );
    assert.deepEqual(pad.listSlots(), before);
  });

  it('rejects malformed and too short check values with POSKEY_ERR_PINPAD_KCV', () => {
    const pad = new PinPad();
    for (const kcv of ['8D0A', 'XYZXYZ', '8D0A7', '8D0A74B8AABBCCDDEE']) {
      assert.throws(
        () => pad.injectTmk(0, UP.tmk, { algorithm: 'tdes', kcv }),
        code('POSKEY_ERR_PINPAD_KCV'),
      );
    }
    assert.throws(
      () => pad.injectTmk(0, UP.tmk, { algorithm: 'tdes', kcv: '000000' }),
      code('POSKEY_ERR_PINPAD_KCV'),
    );
    assert.equal(pad.slotInfo(0), undefined);
    const tmkKcv = checkValue(createKey('tdes', fromHex(UP.tmk))).value;
    assert.equal(pad.injectTmk(0, UP.tmk, { algorithm: 'tdes', kcv: tmkKcv }).kcv, tmkKcv);
  });

  it('property: a cryptogram loads iff its check value is right, and the loaded key is the clear key', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        (tmk, key, wrong) => {
          const pad = new PinPad();
          pad.injectTmk(0, tmk, { algorithm: 'tdes' });
          const cryptogram = encrypt('tdes', 'ecb', tmk, key);
          const cv = checkValue(createKey('tdes', key), { length: 4 }).value;
          const load = (checkValue: string) =>
            pad.loadWorkingKey(1, { under: 0, role: 'pin', algorithm: 'tdes', cryptogram, checkValue });
          if (toHex(wrong) !== cv) assert.throws(() => load(toHex(wrong)), code('POSKEY_ERR_PINPAD_KCV'));
          load(cv);
          const pan = '4000001234567899';
          assert.deepEqual(
            pad.encryptPin(1, { pin: '1234', pan }),
            encryptPinBlock(createKey('tdes', key), { format: 0, pin: '1234', pan }),
          );
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('PinPad: the TMK is write-only', () => {
  it('no method, property, JSON, string or inspect output reveals a key', () => {
    const tmk = randomBytes(16);
    const pad = new PinPad({ serial: 'SCAN0001', apps: ['bank-card'] });
    const info = pad.injectTmk(0, tmk, { algorithm: 'tdes' });
    const pik = randomBytes(16);
    const cv = checkValue(createKey('tdes', pik), { length: 4 }).value;
    pad.loadWorkingKey(1, {
      under: 0,
      role: 'pin',
      algorithm: 'tdes',
      cryptogram: encrypt('tdes', 'ecb', tmk, pik),
      checkValue: cv,
    });
    const secrets = [tmk, pik].flatMap((k) => [
      toHex(k),
      toHex(k).toLowerCase(),
      k.toString('base64'),
      toHex(k.subarray(0, 8)),
      toHex(k.subarray(8)),
    ]);
    const outputs: unknown[] = [
      info,
      JSON.stringify(pad),
      String(pad),
      inspect(pad, { showHidden: true, depth: Number.POSITIVE_INFINITY, getters: true }),
      pad.listSlots(),
      pad.slotInfo(0),
      pad.slotInfo(1),
      pad.device,
      pad.state,
      pad.toJSON(),
      Object.entries(pad),
      pad.seal(randomBytes(32)),
    ];
    // Every own or inherited property a caller can reach, called when it is a function.
    for (const name of Object.getOwnPropertyNames(PinPad.prototype)) {
      assert.doesNotMatch(name, /export|reveal|getKey|readKey|clearKey/i, name);
      const d = Object.getOwnPropertyDescriptor(PinPad.prototype, name)!;
      if (d.get) outputs.push(d.get.call(pad));
    }
    const text = outputs
      .map((o) => (typeof o === 'string' ? o : `${JSON.stringify(o)} ${inspect(o, { depth: 10 })}`))
      .join('\n');
    for (const s of secrets) assert.ok(!text.includes(s), 'a key leaked into an output');
    for (const o of outputs) {
      if (o instanceof Uint8Array) assert.ok(!Buffer.from(o).includes(tmk));
    }
  });

  it('copies the caller buffer and never changes it', () => {
    const tmk = fromHex(UP.tmk);
    const copy = Buffer.from(tmk);
    const pad = new PinPad();
    pad.injectTmk(0, tmk, { algorithm: 'tdes' });
    assert.deepEqual(tmk, copy);
    tmk.fill(0);
    assert.equal(pad.slotInfo(0)?.kcv, checkValue(createKey('tdes', copy)).value);
  });
});

describe('PinPad: slots', () => {
  it(`holds ${DEFAULT_SLOT_COUNT} double-length keys by default, each usable on its own`, () => {
    const pad = new PinPad();
    assert.ok(pad.slotCount >= MIN_SLOTS);
    const keys = Array.from({ length: pad.slotCount }, () => randomBytes(16));
    keys.forEach((k, slot) => {
      pad.injectTmk(slot, k, { algorithm: slot % 2 === 0 ? 'tdes' : 'sm4' });
    });
    assert.equal(pad.listSlots().length, pad.slotCount);
    keys.forEach((k, slot) => {
      const alg = slot % 2 === 0 ? 'tdes' : 'sm4';
      assert.equal(pad.slotInfo(slot)?.bits, 128);
      assert.equal(pad.slotInfo(slot)?.kcv, checkValue(createKey(alg, k)).value);
    });
  });

  it('accepts exactly 30 slots and refuses fewer (POSKEY_ERR_PINPAD_OPTION)', () => {
    assert.equal(new PinPad({ slots: 30 }).slotCount, 30);
    assert.throws(() => new PinPad({ slots: 29 }), code('POSKEY_ERR_PINPAD_OPTION'));
    assert.throws(() => new PinPad({ serial: '' }), code('POSKEY_ERR_PINPAD_OPTION'));
    assert.throws(() => new PinPad({ apps: ['a', 'a'] }), code('POSKEY_ERR_PINPAD_OPTION'));
    assert.throws(() => new PinPad().setClock(new Date(Number.NaN)), code('POSKEY_ERR_PINPAD_OPTION'));
  });

  it('rejects slot numbers outside the device and loads that would overwrite a master key', () => {
    const pad = unionPayPad();
    assert.throws(() => pad.injectTmk(32, UP.tmk, { algorithm: 'tdes' }), code('POSKEY_ERR_PINPAD_SLOT'));
    assert.throws(() => pad.injectTmk(-1, UP.tmk, { algorithm: 'tdes' }), code('POSKEY_ERR_PINPAD_SLOT'));
    assert.throws(
      () => pad.encryptPin(1.5, { pin: '1234', pan: '4000001234567899' }),
      code('POSKEY_ERR_PINPAD_SLOT'),
    );
    const load = (slot: number) =>
      pad.loadWorkingKey(slot, {
        under: 0,
        role: 'mac',
        algorithm: 'des',
        cryptogram: UP.makCryptogram,
        checkValue: UP.makCv,
      });
    assert.throws(() => load(0), code('POSKEY_ERR_PINPAD_SLOT'));
    pad.injectTmk(9, UP.tmk, { algorithm: 'tdes' });
    assert.throws(() => load(9), code('POSKEY_ERR_PINPAD_SLOT'));
    assert.throws(
      () =>
        pad.loadWorkingKeySet([
          {
            slot: 3,
            under: 0,
            role: 'mac',
            algorithm: 'des',
            cryptogram: UP.makCryptogram,
            checkValue: UP.makCv,
          },
          {
            slot: 3,
            under: 0,
            role: 'mac',
            algorithm: 'des',
            cryptogram: UP.makCryptogram,
            checkValue: UP.makCv,
          },
        ]),
      code('POSKEY_ERR_PINPAD_SLOT'),
    );
  });

  it('a new TMK erases the working keys loaded under the old one', () => {
    const pad = unionPayPad();
    pad.injectTmk(0, randomBytes(16), { algorithm: 'tdes' });
    assert.equal(pad.slotInfo(1), undefined);
    assert.throws(() => pad.mac(2, 'unionpay-ecb', Buffer.alloc(8)), code('POSKEY_ERR_PINPAD_EMPTY'));
  });

  it('erase zeroises one slot', () => {
    const pad = unionPayPad();
    pad.erase(1);
    assert.throws(
      () => pad.encryptPin(1, { pin: '1234', pan: '4000001234567899' }),
      code('POSKEY_ERR_PINPAD_EMPTY'),
    );
    assert.ok(pad.slotInfo(2));
  });
});

describe('PinPad: roles', () => {
  it('a MAC key cannot encrypt PINs, a PIN key cannot MAC, a TMK does neither', () => {
    const pad = unionPayPad();
    const entry = { pin: '1234', pan: '4000001234567899' };
    assert.throws(() => pad.encryptPin(2, entry), code('POSKEY_ERR_PINPAD_ROLE'));
    assert.throws(() => pad.encryptPin(0, entry), code('POSKEY_ERR_PINPAD_ROLE'));
    assert.throws(() => pad.mac(1, 'unionpay-ecb', Buffer.alloc(8)), code('POSKEY_ERR_PINPAD_ROLE'));
    assert.throws(
      () => pad.verifyMac(0, 'x919', Buffer.alloc(8), Buffer.alloc(8)),
      code('POSKEY_ERR_PINPAD_ROLE'),
    );
    assert.throws(
      () => pad.encryptTrack(1, '6222021234567890128=30121010000000000'),
      code('POSKEY_ERR_PINPAD_ROLE'),
    );
    assert.throws(
      () =>
        pad.loadWorkingKey(5, {
          under: 1,
          role: 'mac',
          algorithm: 'des',
          cryptogram: UP.makCryptogram,
          checkValue: UP.makCv,
        }),
      code('POSKEY_ERR_PINPAD_ROLE'),
    );
    assert.throws(
      () =>
        pad.loadWorkingKey(5, {
          under: 0,
          role: 'tmk' as never,
          algorithm: 'des',
          cryptogram: UP.makCryptogram,
          checkValue: UP.makCv,
        }),
      code('POSKEY_ERR_PINPAD_ROLE'),
    );
  });

  it('checks algorithms: SM4 keys only under an SM4 TMK, X9.19 only with DES keys, known PIN formats', () => {
    const pad = unionPayPad();
    assert.throws(
      () =>
        pad.loadWorkingKey(5, {
          under: 0,
          role: 'pin',
          algorithm: 'sm4',
          cryptogram: SM4.cryptogram,
          checkValue: SM4.cv4,
        }),
      code('POSKEY_ERR_PINPAD_ALGORITHM'),
    );
    assert.throws(
      () => pad.injectTmk(3, UP.tmk, { algorithm: 'aes' as never }),
      code('POSKEY_ERR_PINPAD_ALGORITHM'),
    );
    assert.throws(
      () => pad.encryptPin(1, { pin: '1234', pan: '4000001234567899', format: 'sm4' }),
      code('POSKEY_ERR_PINPAD_ALGORITHM'),
    );
    assert.throws(
      () => pad.encryptPin(1, { pin: '1234', pan: '4000001234567899', format: 2 }),
      code('POSKEY_ERR_PINPAD_ALGORITHM'),
    );
    assert.throws(() => pad.mac(2, 'cmac' as never, Buffer.alloc(8)), code('POSKEY_ERR_PINPAD_ALGORITHM'));
    const sm4 = new PinPad();
    sm4.injectTmk(0, SM4.tmk, { algorithm: 'sm4' });
    sm4.loadWorkingKey(2, {
      under: 0,
      role: 'mac',
      algorithm: 'sm4',
      cryptogram: SM4.cryptogram,
      checkValue: SM4.cv4,
    });
    assert.throws(() => sm4.mac(2, 'x919', Buffer.alloc(8)), code('POSKEY_ERR_PINPAD_ALGORITHM'));
    assert.deepEqual(
      sm4.mac(2, 'unionpay-ecb', Buffer.from('abc')),
      unionPayMac(createKey('sm4', fromHex(SM4.clear)), Buffer.from('abc')),
    );
  });

  it('rejects keys and cryptograms of the wrong length or not hex (POSKEY_ERR_PINPAD_KEY)', () => {
    const pad = unionPayPad();
    assert.throws(() => pad.injectTmk(3, '0011', { algorithm: 'tdes' }), code('POSKEY_ERR_PINPAD_KEY'));
    assert.throws(() => pad.injectTmk(3, 'not hex!', { algorithm: 'tdes' }), code('POSKEY_ERR_PINPAD_KEY'));
    assert.throws(
      () => pad.injectTmk(3, randomBytes(24), { algorithm: 'tdes' }),
      code('POSKEY_ERR_PINPAD_KEY'),
    );
    assert.throws(
      () =>
        pad.loadWorkingKey(5, {
          under: 0,
          role: 'mac',
          algorithm: 'tdes',
          cryptogram: UP.makCryptogram,
          checkValue: UP.makCv,
        }),
      code('POSKEY_ERR_PINPAD_KEY'),
    );
    assert.throws(() => pad.loadWorkingKeySet([]), code('POSKEY_ERR_PINPAD_KEY'));
  });
});

describe('PinPad: operations', () => {
  it('verifies MACs in both algorithms and encrypts track 2 as transformTrack does with the clear TDK', () => {
    const pad = unionPayPad();
    const tdk = randomBytes(16);
    const tmk = fromHex(UP.tmk);
    pad.loadWorkingKey(3, {
      under: 0,
      role: 'data',
      algorithm: 'tdes',
      cryptogram: encrypt('tdes', 'ecb', tmk, tdk),
      checkValue: checkValue(createKey('tdes', tdk), { length: 4 }).value,
    });
    const track = '6222021234567890128=30121010000000000';
    const clear = createKey('tdes', tdk);
    assert.equal(
      pad.encryptTrack(3, track),
      transformTrack(track, 8, (b) => clear.ecbEncrypt(b)),
    );
    assert.notEqual(pad.encryptTrack(3, track), track);
    const data = Buffer.from('response MAB');
    for (const alg of ['unionpay-ecb', 'x919'] as const) {
      const mac = pad.mac(2, alg, data);
      assert.equal(pad.verifyMac(2, alg, data, mac), true);
      const bad = Buffer.from(mac);
      bad[0]! ^= 1;
      assert.equal(pad.verifyMac(2, alg, data, bad), false);
    }
  });

  it('keeps device information: serial, model, firmware, applications in order, clock', () => {
    const pad = new PinPad({
      serial: 'NL-8810-0001',
      model: 'ME31',
      firmware: '2.3.1',
      apps: ['signature-file'],
    });
    pad.installApp('master-controller');
    pad.installApp('bank-card');
    assert.deepEqual(pad.device, {
      serial: 'NL-8810-0001',
      model: 'ME31',
      firmware: '2.3.1',
      apps: ['signature-file', 'master-controller', 'bank-card'],
    });
    assert.throws(() => pad.installApp('bank-card'), code('POSKEY_ERR_PINPAD_OPTION'));
    const when = new Date('2030-05-06T07:08:09Z');
    pad.setClock(when);
    assert.ok(Math.abs(pad.clock().getTime() - when.getTime()) < 1000);
  });
});

describe('PinPad: tamper', () => {
  it('zeroises every slot and answers every operation with "security attack" until re-injected', () => {
    const pad = unionPayPad();
    pad.tamper();
    assert.equal(pad.state, 'tampered');
    assert.deepEqual(pad.listSlots(), []);
    const attacks: (() => unknown)[] = [
      () => pad.encryptPin(1, { pin: '1234', pan: '4000001234567899' }),
      () => pad.mac(2, 'unionpay-ecb', Buffer.alloc(8)),
      () => pad.verifyMac(2, 'unionpay-ecb', Buffer.alloc(8), Buffer.alloc(8)),
      () => pad.encryptTrack(3, '6222021234567890128=30121010000000000'),
      () =>
        pad.loadWorkingKey(1, {
          under: 0,
          role: 'pin',
          algorithm: 'tdes',
          cryptogram: UP.pikCryptogram,
          checkValue: UP.pikCv,
        }),
      () => pad.provisionFromTransportCryptogram(0, 31, UP.pikCryptogram, UP.pikCv),
    ];
    for (const op of attacks) {
      assert.throws(
        op,
        (e: unknown) => code('POSKEY_ERR_PINPAD_TAMPERED')(e) && /security attack/.test(String(e)),
      );
    }
    // Re-injection is the way back; working keys are gone until the next sign-in.
    pad.injectTmk(0, UP.tmk, { algorithm: 'tdes' });
    assert.equal(pad.state, 'normal');
    assert.throws(
      () => pad.encryptPin(1, { pin: '1234', pan: '4000001234567899' }),
      code('POSKEY_ERR_PINPAD_EMPTY'),
    );
    pad.loadWorkingKey(1, {
      under: 0,
      role: 'pin',
      algorithm: 'tdes',
      cryptogram: UP.pikCryptogram,
      checkValue: UP.pikCv,
    });
    assert.equal(pad.encryptPin(1, { pin: '1234', pan: '4000001234567899' }).length, 8);
  });
});

describe('PinPad: remote provisioning under the factory transport key', () => {
  it('loads a TMK delivered as a cryptogram under the transport key, checking its KCV', () => {
    const transport = randomBytes(16);
    const tmk = fromHex(UP.tmk);
    const pad = new PinPad();
    pad.injectTransportKey(31, transport, { algorithm: 'tdes' });
    const cryptogram = toHex(encrypt('tdes', 'ecb', transport, tmk));
    const kcv = checkValue(createKey('tdes', tmk)).value;
    assert.throws(
      () => pad.provisionFromTransportCryptogram(0, 31, cryptogram, '000000'),
      (e: unknown) => code('POSKEY_ERR_PINPAD_KCV')(e) && (e as PinPadError).field === 'kcv',
    );
    assert.equal(pad.slotInfo(0), undefined);
    const info = pad.provisionFromTransportCryptogram(0, 31, cryptogram, kcv);
    assert.deepEqual([info.role, info.kcv, info.under], ['tmk', kcv, 31]);
    // The provisioned TMK opens the published sign-in keys.
    pad.loadWorkingKey(1, {
      under: 0,
      role: 'pin',
      algorithm: 'tdes',
      cryptogram: UP.pikCryptogram,
      checkValue: UP.pikCv,
    });
    assert.throws(
      () => pad.provisionFromTransportCryptogram(5, 0, cryptogram, kcv),
      code('POSKEY_ERR_PINPAD_ROLE'),
    );
    assert.throws(
      () => pad.provisionFromTransportCryptogram(31, 31, cryptogram, kcv),
      code('POSKEY_ERR_PINPAD_SLOT'),
    );
    assert.throws(
      () => pad.provisionFromTransportCryptogram(5, 7, cryptogram, kcv),
      code('POSKEY_ERR_PINPAD_EMPTY'),
    );
    assert.throws(
      () => pad.provisionFromTransportCryptogram(5, 31, cryptogram, kcv, { algorithm: 'sm4' }),
      code('POSKEY_ERR_PINPAD_ALGORITHM'),
    );
  });
});
