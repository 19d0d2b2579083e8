import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { unionPayMac } from '../../src/crypto/mac.js';
import { PoskeyError } from '../../src/errors.js';
import { getDialect, type IsoMessage, unpack } from '../../src/iso8583/index.js';
import { macField, networkMacBlock, packNetworkWithMac } from '../../src/protocol/network-link.js';
import {
  macBlock,
  packWithMac,
  readSecurityControl,
  securityControlDigits,
  transformTrack,
} from '../../src/protocol/unionpay-pos.js';
import { loadVectors } from '../helpers/vectors.js';

interface Golden {
  name: string;
  dialect: string;
  hex: string;
  message: IsoMessage;
}
const golden = loadVectors<Golden>('iso8583-golden.json').vectors;
const realWorld = golden.find((v) => v.name.startsWith('real-world 0200'))!;
const networkPurchase = golden.find((v) => v.name.startsWith('network 0200'))!;

describe('UnionPay POS MAC block', () => {
  it('is the published MAB of the worked example, and its MAC is the worked-example MAC', () => {
    const msg = unpack(getDialect('unionpay-pos'), fromHex(realWorld.hex));
    const mab = macBlock(msg);
    // The published bytes (blog.csdn.net/zhu244912654/article/details/80005341) are the MAB itself.
    assert.equal(toHex(mab), realWorld.hex.slice(0, -16));
    const tak = createKey('des', fromHex('C24A8FB57AA20123'));
    assert.equal(unionPayMac(tak, mab).toString('latin1'), '8A9E91B8');
    assert.equal(toHex(packWithMac(msg, msg[64] as string)), realWorld.hex);
  });

  it('ignores whatever MAC the message already carries', () => {
    const msg = unpack(getDialect('unionpay-pos'), fromHex(realWorld.hex));
    assert.deepEqual(macBlock({ ...msg, 64: 'FFFFFFFFFFFFFFFF' }), macBlock(msg));
  });
});

describe('field 53', () => {
  it('reads and writes the security control digits', () => {
    const sc = readSecurityControl('2610000000000000');
    assert.deepEqual(sc, { pinMethod: '2', algorithm: '6', trackEncrypted: true });
    assert.equal(securityControlDigits(sc!), '2610000000000000');
    assert.deepEqual(readSecurityControl({ 1: '2', 2: '4', 3: '0', 4: '0000000000000' }), {
      pinMethod: '2',
      algorithm: '4',
      trackEncrypted: false,
    });
    assert.equal(readSecurityControl(undefined), undefined);
  });
  it('rejects an unknown algorithm digit with POSKEY_ERR_POS_FIELD_53', () => {
    assert.throws(
      () => readSecurityControl('2900000000000000'),
      (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_POS_FIELD_53' && e.field === '53',
    );
  });
});

describe('network link MAC block', () => {
  it('covers the packed message up to the MAC in field 128', () => {
    const msg = unpack(getDialect('network'), fromHex(networkPurchase.hex));
    assert.equal(macField(msg), 128);
    const mab = networkMacBlock(msg);
    assert.equal(toHex(mab), networkPurchase.hex.slice(0, -16));
    assert.equal(toHex(packNetworkWithMac(msg, msg[128] as string)), networkPurchase.hex);
  });
  it('keeps the MAC in 64 for a message that carries it there, and defaults to 128', () => {
    assert.equal(macField({ 0: '0800', 11: '000001' } as IsoMessage), 128);
    const msg: IsoMessage = { 0: '0800', 11: '000001', 64: '0000000000000000' } as IsoMessage;
    assert.equal(macField(msg), 64);
    assert.equal(networkMacBlock(msg).length + 8, packNetworkWithMac(msg, '1111111111111111').length);
  });
});

describe('TDK track encryption', () => {
  const tdk = createKey('tdes', fromHex('0123456789ABCDEFFEDCBA9876543210'));
  const track = '6230606601007726888=25122010000012345';
  it('enciphers the 16 digits before the last one (odd length) and the host gets the track back', () => {
    const enc = transformTrack(track, 8, (b) => tdk.ecbEncrypt(b));
    assert.equal(enc.length, track.length);
    assert.equal(enc.slice(-1), track.slice(-1));
    assert.notEqual(enc, track);
    assert.equal(
      transformTrack(enc, 8, (b) => tdk.ecbDecrypt(b)),
      track,
    );
  });
  it('keeps the last two digits clear when the length is even', () => {
    const even = `${track}6`;
    const enc = transformTrack(even, 8, (b) => tdk.ecbEncrypt(b));
    assert.equal(enc.slice(-2), '56');
    assert.equal(
      transformTrack(enc, 8, (b) => tdk.ecbDecrypt(b)),
      even,
    );
  });
  it('refuses a track shorter than the block, or with other characters', () => {
    const code = (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_POS_TRACK';
    assert.throws(() => transformTrack('123456789=12', 8, (b) => b), code);
    assert.throws(() => transformTrack('62306066010077268&8=2512201000001234', 8, (b) => b), code);
    assert.throws(() => transformTrack(track, 8, () => Buffer.alloc(3)), code);
  });
});
