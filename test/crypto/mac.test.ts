import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import {
  type CipherAlgorithm,
  createKey,
  decrypt,
  encrypt,
  type KeyHandle,
} from '../../src/crypto/cipher.js';
import { cmac } from '../../src/crypto/cmac.js';
import {
  cbcMac,
  generateMac,
  type MacAlgorithm,
  type MacOptions,
  type MacPadding,
  pad,
  retailMac,
  unionPayMac,
  verifyMac,
} from '../../src/crypto/mac.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

const code = (c: string) => (e: unknown) => e instanceof PoskeyError && e.code === c;
const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });

// ---------------------------------------------------------------------------------------------
// Micro reference: slow, obvious, one ECB block at a time through the one-shot API, so it shares
// no state or chaining logic with the code under test.
// ---------------------------------------------------------------------------------------------

function microPad(data: Uint8Array, bs: number, method: MacPadding): Buffer {
  const out = [...data];
  if (method === 2) out.push(0x80);
  while (out.length % bs !== 0) out.push(0);
  if (method === 1 && out.length === 0) for (let i = 0; i < bs; i++) out.push(0);
  if (method === 3) {
    const len: number[] = [];
    for (let bits = data.length * 8, i = 0; i < bs; i++, bits = Math.floor(bits / 256))
      len.unshift(bits % 256);
    out.unshift(...len);
  }
  return Buffer.from(out);
}

function microCbc(alg: CipherAlgorithm, key: Uint8Array, blocks: Uint8Array, bs: number): Buffer {
  let state: Buffer = Buffer.alloc(bs);
  for (let off = 0; off < blocks.length; off += bs) {
    const x = Buffer.from(blocks.subarray(off, off + bs).map((b, i) => b ^ state[i]!));
    state = encrypt(alg, 'ecb', key, x);
  }
  return state;
}

function microRetail(key: Uint8Array, data: Uint8Array, padding: MacPadding): Buffer {
  const kl = key.subarray(0, 8);
  const kr = key.subarray(8, 16);
  const h = microCbc('des', kl, microPad(data, 8, padding), 8);
  return encrypt('des', 'ecb', kl, decrypt('des', 'ecb', kr, h));
}

function microUnionPay(alg: CipherAlgorithm, key: Uint8Array, data: Uint8Array, bs: number): string {
  const blocks = microPad(data, bs, 1);
  const folded = Buffer.alloc(bs);
  for (let i = 0; i < blocks.length; i++) folded[i % bs]! ^= blocks[i]!;
  const expanded = Buffer.from(toHex(folded), 'ascii');
  const c = encrypt(alg, 'ecb', key, expanded.subarray(0, bs));
  const x = Buffer.from(c.map((b, i) => b ^ expanded[bs + i]!));
  return toHex(encrypt(alg, 'ecb', key, x));
}

// ---------------------------------------------------------------------------------------------

interface MacVector {
  algorithm: MacAlgorithm;
  keyAlg: CipherAlgorithm;
  key: string;
  data?: string;
  text?: string;
  padding?: MacPadding;
  length?: number;
  output?: 'hex' | 'binary';
  ascii?: string;
  mac: string;
  ref: string;
}

describe('MAC: published and worked vectors', () => {
  for (const v of loadVectors<MacVector>('mac.json').vectors) {
    const label = `${v.algorithm} ${v.keyAlg} ${v.padding ? `pad ${v.padding} ` : ''}${v.output ?? ''} → ${v.ascii ?? v.mac}`;
    it(label, () => {
      const key = createKey(v.keyAlg, fromHex(v.key));
      const data = v.text !== undefined ? Buffer.from(v.text, 'ascii') : fromHex(v.data ?? '');
      const opts: MacOptions = { padding: v.padding, length: v.length, output: v.output };
      const mac = generateMac(v.algorithm, key, data, opts);
      assert.equal(toHex(mac), v.mac);
      if (v.ascii) assert.equal(mac.toString('ascii'), v.ascii);
      assert.equal(verifyMac(v.algorithm, key, data, fromHex(v.mac), opts), true);
      // Same handle, second time: kept contexts and cached derived keys must not drift.
      assert.equal(toHex(generateMac(v.algorithm, key, data, opts)), v.mac);
    });
  }

  it('UnionPay SM4: keys.md 4934D110A1ECB3FB is the binary form; field 64 in hex form is its first 8 hex digits', () => {
    const key = createKey('sm4', fromHex('F351D490994603795C6EBEE8FAEBB481'));
    const data = fromHex(
      '0200302004C020C0981100000000000000005100183402100006324392260009942820D1312101120084393136363838303134303030303030303030303030303031313536ACF46E73838A82F92600000000000000000822000001',
    );
    const binary = unionPayMac(key, data, { output: 'binary' });
    const field64 = unionPayMac(key, data);
    assert.equal(binary.length, 8);
    assert.equal(field64.length, 8);
    assert.equal(field64.toString('ascii'), toHex(binary).slice(0, 8));
  });
});

interface PadVector {
  method: MacPadding;
  blockSize: number;
  data: string;
  padded: string;
}

describe('MAC: ISO 9797-1 padding', () => {
  for (const v of loadVectors<PadVector>('mac-padding.json').vectors) {
    it(`method ${v.method}, ${v.blockSize}-byte blocks, '${v.data}' → ${v.padded}`, () => {
      const data = fromHex(v.data);
      assert.equal(toHex(pad(data, v.blockSize, v.method)), v.padded);
      assert.equal(toHex(data), v.data);
    });
  }

  it('matches the micro reference for every method and block size', () => {
    fc.assert(
      fc.property(
        bytes(0, 70),
        fc.constantFrom(4, 8, 16),
        fc.constantFrom<MacPadding>(1, 2, 3),
        (d, bs, m) => {
          assert.deepEqual(pad(d, bs, m), microPad(d, bs, m));
        },
      ),
    );
  });

  it('writes the bit length of long data big-endian across bytes', () => {
    const padded = pad(Buffer.alloc(0x1234), 8, 3);
    assert.equal(toHex(padded.subarray(0, 8)), '00000000000091A0');
  });

  it('POSKEY_ERR_MAC_PADDING for an unknown method; POSKEY_ERR_LENGTH for a bad block size', () => {
    assert.throws(() => pad(Buffer.alloc(3), 8, 4 as MacPadding), code('POSKEY_ERR_MAC_PADDING'));
    assert.throws(() => pad(Buffer.alloc(3), 0, 1), code('POSKEY_ERR_LENGTH'));
  });
});

const keyArb = (alg: CipherAlgorithm) => {
  const n = { des: [8], tdes: [16, 24], aes: [16, 24, 32], sm4: [16] }[alg];
  return fc.constantFrom(...n).chain((len) => bytes(len, len));
};
const padArb = fc.constantFrom<MacPadding>(1, 2, 3);

describe('MAC: cross-checks against the micro reference', () => {
  for (const alg of ['des', 'tdes', 'aes', 'sm4'] as const) {
    it(`cbcMac (${alg}) equals XOR-chained ECB over the padded data`, () => {
      fc.assert(
        fc.property(keyArb(alg), bytes(0, 100), padArb, (k, data, padding) => {
          const key = createKey(alg, k);
          const bs = key.blockSize;
          assert.deepEqual(cbcMac(key, data, { padding }), microCbc(alg, k, microPad(data, bs, padding), bs));
        }),
        { numRuns: 40 },
      );
    });
  }

  it('retailMac equals single-DES CBC under KL, then D(KR), E(KL)', () => {
    fc.assert(
      fc.property(keyArb('tdes'), bytes(0, 100), padArb, (k, data, padding) => {
        assert.deepEqual(retailMac(createKey('tdes', k), data, { padding }), microRetail(k, data, padding));
      }),
      { numRuns: 60 },
    );
  });

  for (const alg of ['des', 'tdes', 'sm4'] as const) {
    it(`unionPayMac (${alg}) equals the step-by-step definition`, () => {
      fc.assert(
        fc.property(keyArb(alg), bytes(0, 120), (k, data) => {
          const key = createKey(alg, k);
          const full = microUnionPay(alg, k, data, key.blockSize);
          assert.equal(unionPayMac(key, data).toString('ascii'), full.slice(0, 8));
          assert.equal(toHex(unionPayMac(key, data, { output: 'binary' })), full.slice(0, 16));
        }),
        { numRuns: 40 },
      );
    });
  }
});

describe('MAC: properties', () => {
  it('cbcMac is the last block of cbcEncrypt(pad(data)), truncated to length', () => {
    fc.assert(
      fc.property(
        keyArb('aes'),
        bytes(0, 80),
        padArb,
        fc.integer({ min: 1, max: 16 }),
        (k, data, padding, n) => {
          const key = createKey('aes', k);
          const chain = createKey('aes', k).cbcEncrypt(pad(data, 16, padding));
          assert.deepEqual(
            cbcMac(key, data, { padding, length: n }),
            chain.subarray(chain.length - 16).subarray(0, n),
          );
        },
      ),
      { numRuns: 40 },
    );
  });

  it('retail MAC with KL = KR equals single-DES CBC-MAC, and a DES key gives algorithm 1', () => {
    fc.assert(
      fc.property(bytes(8, 8), bytes(0, 80), padArb, (kl, data, padding) => {
        const tdes = createKey('tdes', Buffer.concat([kl, kl]));
        const des = createKey('des', kl);
        const expected = cbcMac(des, data, { padding });
        assert.deepEqual(retailMac(tdes, data, { padding }), expected);
        assert.deepEqual(retailMac(des, data, { padding }), expected);
      }),
      { numRuns: 40 },
    );
  });

  it('a 24-byte TDES key uses only K1 and K2 for the retail MAC', () => {
    fc.assert(
      fc.property(bytes(16, 16), bytes(8, 8), bytes(0, 40), (k12, k3, data) => {
        const three = createKey('tdes', Buffer.concat([k12, k3]));
        assert.deepEqual(retailMac(three, data), retailMac(createKey('tdes', k12), data));
      }),
      { numRuns: 20 },
    );
  });

  const cases: { algorithm: MacAlgorithm; alg: CipherAlgorithm; opts: MacOptions }[] = [
    { algorithm: 'cbc', alg: 'tdes', opts: { padding: 2 } },
    { algorithm: 'cbc', alg: 'aes', opts: {} },
    { algorithm: 'retail', alg: 'tdes', opts: { padding: 1 } },
    { algorithm: 'retail', alg: 'tdes', opts: { padding: 3, length: 4 } },
    { algorithm: 'cmac', alg: 'aes', opts: {} },
    { algorithm: 'cmac', alg: 'tdes', opts: { length: 4 } },
    { algorithm: 'unionpay-ecb', alg: 'des', opts: {} },
    { algorithm: 'unionpay-ecb', alg: 'sm4', opts: { output: 'binary' } },
  ];
  for (const c of cases) {
    it(`verifyMac ${c.algorithm} (${c.alg} ${JSON.stringify(c.opts)}) accepts the MAC and rejects any one-bit flip`, () => {
      fc.assert(
        fc.property(keyArb(c.alg), bytes(1, 90), fc.nat(), fc.nat(), (k, data, i, j) => {
          const key = createKey(c.alg, k);
          const mac = generateMac(c.algorithm, key, data, c.opts);
          assert.equal(verifyMac(c.algorithm, key, data, mac, c.opts), true);
          const badData = Buffer.from(data);
          badData[i % data.length]! ^= 1 << (j % 8);
          assert.equal(verifyMac(c.algorithm, key, badData, mac, c.opts), false);
          const badMac = Buffer.from(mac);
          badMac[i % mac.length]! ^= 1 << ((j >> 3) % 8);
          assert.equal(verifyMac(c.algorithm, key, data, badMac, c.opts), false);
          // A truncated MAC is not accepted: the length comes from opts, not from the MAC.
          assert.equal(verifyMac(c.algorithm, key, data, mac.subarray(0, 1), c.opts), false);
        }),
        { numRuns: 30 },
      );
    });
  }

  it('does not modify the caller data', () => {
    const key = createKey('tdes', fromHex('0123456789ABCDEFFEDCBA9876543210'));
    const data = Buffer.from('unaligned data!');
    for (const algorithm of ['cbc', 'retail', 'cmac', 'unionpay-ecb'] as const) {
      generateMac(algorithm, key, data, { padding: 2 });
      assert.equal(data.toString(), 'unaligned data!');
    }
  });

  it('interleaving algorithms on one handle keeps every result stable', () => {
    const k = fromHex('7CA110454A1A6E570131D9619DC1376E');
    const key = createKey('tdes', k);
    const data = Buffer.from('Hello World !!!!');
    const expected = {
      cbc: toHex(cbcMac(createKey('tdes', k), data)),
      retail: toHex(retailMac(createKey('tdes', k), data)),
      cmac: toHex(cmac(createKey('tdes', k), data)),
      unionpay: toHex(unionPayMac(createKey('tdes', k), data)),
    };
    for (let round = 0; round < 3; round++) {
      assert.equal(toHex(retailMac(key, data)), expected.retail);
      assert.equal(toHex(cmac(key, data)), expected.cmac);
      assert.equal(toHex(cbcMac(key, data)), expected.cbc);
      assert.equal(toHex(unionPayMac(key, data)), expected.unionpay);
    }
  });
});

describe('MAC: retail MAC keeps its KL and KL‖KR handles on the caller handle', () => {
  const halves = (key: KeyHandle) =>
    key.derived<[KeyHandle, KeyHandle]>('retail-mac', () =>
      assert.fail('retail-mac handles were not cached'),
    );

  it('derives KL and KL‖KR once and runs the CBC pass as one cbcEncrypt call', () => {
    const key = createKey('tdes', fromHex('41414141414141414242424242424242'));
    const data = Buffer.alloc(200, 0x5a);
    const first = retailMac(key, data);
    const [kl, kr] = halves(key);
    assert.equal(kl.algorithm, 'des');
    assert.equal(kr.algorithm, 'tdes');
    assert.equal(kr.length, 16);
    let calls = 0;
    const original = kl.cbcEncrypt.bind(kl);
    kl.cbcEncrypt = (d: Uint8Array, iv?: Uint8Array) => {
      calls++;
      return original(d, iv);
    };
    assert.deepEqual(retailMac(key, data), first);
    assert.equal(calls, 1);
    assert.deepEqual(halves(key), [kl, kr]);
  });

  it('destroying the caller handle destroys the derived halves', () => {
    const key = createKey('tdes', fromHex('0123456789ABCDEFFEDCBA9876543210'));
    retailMac(key, Buffer.from('x'));
    const [kl, kr] = halves(key);
    key.destroy();
    assert.equal(kl.destroyed && kr.destroyed, true);
    assert.throws(() => retailMac(key, Buffer.from('x')), code('POSKEY_ERR_KEY_DESTROYED'));
  });
});

describe('MAC: errors', () => {
  const tdes = () => createKey('tdes', fromHex('0123456789ABCDEFFEDCBA9876543210'));
  const data = Buffer.from('abc');

  it('POSKEY_ERR_MAC_ALGORITHM for an unknown algorithm', () => {
    assert.throws(() => generateMac('hmac' as MacAlgorithm, tdes(), data), code('POSKEY_ERR_MAC_ALGORITHM'));
    assert.throws(
      () => verifyMac('x9.9' as MacAlgorithm, tdes(), data, Buffer.alloc(8)),
      code('POSKEY_ERR_MAC_ALGORITHM'),
    );
  });

  it('POSKEY_ERR_ALGORITHM for a retail MAC with an AES or SM4 key, and a UnionPay MAC with AES', () => {
    assert.throws(() => retailMac(createKey('aes', Buffer.alloc(16)), data), code('POSKEY_ERR_ALGORITHM'));
    assert.throws(
      () => generateMac('retail', createKey('sm4', Buffer.alloc(16)), data),
      code('POSKEY_ERR_ALGORITHM'),
    );
    assert.throws(() => unionPayMac(createKey('aes', Buffer.alloc(16)), data), code('POSKEY_ERR_ALGORITHM'));
  });

  it('POSKEY_ERR_LENGTH for a MAC length outside 1..block size', () => {
    for (const length of [0, 9, 2.5]) {
      assert.throws(() => cbcMac(tdes(), data, { length }), code('POSKEY_ERR_LENGTH'));
      assert.throws(() => retailMac(tdes(), data, { length }), code('POSKEY_ERR_LENGTH'));
      assert.throws(() => generateMac('cmac', tdes(), data, { length }), code('POSKEY_ERR_LENGTH'));
    }
    assert.doesNotThrow(() => cbcMac(createKey('sm4', Buffer.alloc(16)), data, { length: 16 }));
  });

  it('POSKEY_ERR_MAC_PADDING for an unknown padding method', () => {
    assert.throws(() => cbcMac(tdes(), data, { padding: 0 as MacPadding }), code('POSKEY_ERR_MAC_PADDING'));
    assert.throws(
      () => retailMac(tdes(), data, { padding: 4 as MacPadding }),
      code('POSKEY_ERR_MAC_PADDING'),
    );
  });

  it('POSKEY_ERR_MAC_OUTPUT for an unknown UnionPay output form', () => {
    assert.throws(
      () => unionPayMac(tdes(), data, { output: 'base64' as 'hex' }),
      code('POSKEY_ERR_MAC_OUTPUT'),
    );
  });

  it('POSKEY_ERR_TYPE for data or MAC that are not bytes', () => {
    const notBytes = 'abc' as unknown as Uint8Array;
    for (const algorithm of ['cbc', 'retail', 'cmac', 'unionpay-ecb'] as const) {
      assert.throws(() => generateMac(algorithm, tdes(), notBytes), code('POSKEY_ERR_TYPE'), algorithm);
    }
    assert.throws(() => verifyMac('cbc', tdes(), data, notBytes), code('POSKEY_ERR_TYPE'));
  });
});
