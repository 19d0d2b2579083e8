import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { type CipherAlgorithm, createKey, encrypt } from '../../src/crypto/cipher.js';
import { checkValue, type KcvMethod } from '../../src/crypto/kcv.js';
import {
  assertOddParity,
  assertStrongKey,
  combineComponents,
  fixParity,
  generateKey,
  hasOddParity,
  isWeakDesKey,
  type RandomSource,
} from '../../src/crypto/keys.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

const code = (c: string) => (e: unknown) => e instanceof PoskeyError && e.code === c;
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const popcount = (b: number) => b.toString(2).replaceAll('0', '').length;

describe('keys: parity', () => {
  it('recognises odd parity per byte', () => {
    assert.equal(hasOddParity(fromHex('0123456789ABCDEFFEDCBA9876543210')), true);
    assert.equal(hasOddParity(fromHex('0000000000000000')), false);
    assert.equal(hasOddParity(fromHex('0101010101010100')), false);
  });

  it('fixes parity in the LSB', () => {
    assert.equal(toHex(fixParity(fromHex('0000000000000000'))), '0101010101010101');
    assert.equal(toHex(fixParity(fromHex('FFFFFFFFFFFFFFFF'))), 'FEFEFEFEFEFEFEFE');
    assert.equal(toHex(fixParity(fromHex('0123456789ABCDEF'))), '0123456789ABCDEF');
  });

  it('fixParity gives odd parity, changes only LSBs, is idempotent and leaves the input alone', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 32 }), (key) => {
        const before = Buffer.from(key);
        const fixed = fixParity(key);
        assert.deepEqual(Buffer.from(key), before);
        for (let i = 0; i < key.length; i++) {
          assert.equal(popcount(fixed[i]!) % 2, 1);
          assert.equal(fixed[i]! & 0xfe, key[i]! & 0xfe);
        }
        assert.deepEqual(fixParity(fixed), fixed);
        assert.equal(hasOddParity(key), fixed.equals(key));
      }),
    );
  });

  it('assertOddParity throws POSKEY_ERR_KEY_PARITY naming the field', () => {
    const good = fromHex('0123456789ABCDEF');
    assert.equal(assertOddParity(good), good);
    assert.throws(
      () => assertOddParity(fromHex('0123456789ABCDEE'), 'tmk'),
      (e: unknown) => code('POSKEY_ERR_KEY_PARITY')(e) && (e as PoskeyError).field === 'tmk',
    );
  });

  it('POSKEY_ERR_TYPE for non-byte input', () => {
    assert.throws(() => hasOddParity('0101' as unknown as Uint8Array), code('POSKEY_ERR_TYPE'));
    assert.throws(() => fixParity([1, 2] as unknown as Uint8Array), code('POSKEY_ERR_TYPE'));
  });
});

interface WeakVector {
  key: string;
  kind: 'weak' | 'semi-weak';
  pair?: string;
}

describe('keys: weak and semi-weak DES keys', () => {
  const table = loadVectors<WeakVector>('keys-weak.json').vectors;
  const block = fromHex('0123456789ABCDEF');
  const e = (k: string, d: Uint8Array) => encrypt('des', 'ecb', fromHex(k), d);

  it('the table has 4 weak and 12 semi-weak keys', () => {
    assert.equal(table.filter((v) => v.kind === 'weak').length, 4);
    assert.equal(table.filter((v) => v.kind === 'semi-weak').length, 12);
  });

  for (const v of table) {
    it(`${v.kind} ${v.key}: detected, also without parity, and has the defining property`, () => {
      assert.equal(isWeakDesKey(fromHex(v.key)), true);
      const noParity = Buffer.from(fromHex(v.key).map((b) => b & 0xfe));
      assert.equal(isWeakDesKey(noParity), true);
      // Weak: encryption is an involution. Semi-weak: the pair key decrypts.
      assert.equal(toHex(e(v.pair ?? v.key, e(v.key, block))), toHex(block));
      assert.throws(() => assertStrongKey('des', fromHex(v.key)), code('POSKEY_ERR_WEAK_KEY'));
    });
  }

  it('ordinary keys are not weak', () => {
    assert.equal(isWeakDesKey(fromHex('0123456789ABCDEF')), false);
    assert.equal(isWeakDesKey(fromHex('5BB5C72CD00B7338')), false);
  });

  it('isWeakDesKey wants exactly 8 bytes', () => {
    assert.throws(() => isWeakDesKey(Buffer.alloc(16)), code('POSKEY_ERR_LENGTH'));
  });
});

describe('keys: assertStrongKey', () => {
  const k1 = '0123456789ABCDEF';
  const k2 = 'FEDCBA9876543210';
  const k3 = '89ABCDEF01234567';

  it('accepts sound DES, 2-key and 3-key TDES (K1 = K3 is ordinary 2-key TDES)', () => {
    const ok = (alg: CipherAlgorithm, hex: string) => {
      const key = fromHex(hex);
      assert.equal(assertStrongKey(alg, key), key);
    };
    ok('des', k1);
    ok('tdes', k1 + k2);
    ok('tdes', k1 + k2 + k3);
    ok('tdes', k1 + k2 + k1);
  });

  it('POSKEY_ERR_WEAK_KEY for a TDES key with a weak or semi-weak part', () => {
    for (const hex of [`${k1}0101010101010101`, `FEFEFEFEFEFEFEFE${k2}`, `${k1 + k2}01E001E001F101F1`]) {
      assert.throws(
        () => assertStrongKey('tdes', fromHex(hex), 'bdk'),
        (e: unknown) => {
          return code('POSKEY_ERR_WEAK_KEY')(e) && (e as PoskeyError).field === 'bdk';
        },
      );
    }
  });

  it('POSKEY_ERR_WEAK_KEY for TDES keys that degenerate to single DES', () => {
    const k1NoParity = toHex(fromHex(k1).map((b) => b ^ 0x01));
    for (const hex of [k1 + k1, k1 + k1NoParity, k1 + k2 + k2, k1 + k1 + k2]) {
      assert.throws(() => assertStrongKey('tdes', fromHex(hex)), code('POSKEY_ERR_WEAK_KEY'), hex);
    }
  });

  it('AES and SM4: only the length is checked (no standard defines weak keys), so all-zero passes', () => {
    assert.doesNotThrow(() => assertStrongKey('aes', Buffer.alloc(32)));
    assert.doesNotThrow(() => assertStrongKey('sm4', Buffer.alloc(16)));
  });

  it('POSKEY_ERR_LENGTH and POSKEY_ERR_ALGORITHM', () => {
    assert.throws(() => assertStrongKey('tdes', Buffer.alloc(8)), code('POSKEY_ERR_LENGTH'));
    assert.throws(() => assertStrongKey('sm4', Buffer.alloc(24)), code('POSKEY_ERR_LENGTH'));
    assert.throws(
      () => assertStrongKey('rc4' as CipherAlgorithm, Buffer.alloc(16)),
      code('POSKEY_ERR_ALGORITHM'),
    );
  });
});

/** A deterministic random source replaying `chunks`, then failing the test if asked for more. */
function replay(...chunks: string[]): RandomSource & { calls: number } {
  const source = Object.assign(
    (n: number) => {
      const next = chunks[source.calls++];
      assert.ok(next !== undefined, 'random source asked for more than the test provided');
      const out = fromHex(next);
      assert.equal(out.length, n);
      return out;
    },
    { calls: 0 },
  );
  return source;
}

describe('keys: generateKey', () => {
  it('default lengths: des 8, tdes 16, aes 16, sm4 16', () => {
    for (const [alg, n] of [
      ['des', 8],
      ['tdes', 16],
      ['aes', 16],
      ['sm4', 16],
    ] as const) {
      assert.equal(generateKey(alg).length, n);
    }
    assert.equal(generateKey('tdes', 24).length, 24);
    assert.equal(generateKey('aes', 32).length, 32);
  });

  it('DES-family keys come out parity-fixed and strong; AES/SM4 bytes are used as drawn', () => {
    fc.assert(
      fc.property(bytes(24), (raw) => {
        fc.pre(isStrongRaw(raw));
        const tdes = generateKey('tdes', 24, () => Buffer.from(raw));
        assert.deepEqual(tdes, fixParity(raw));
        assert.equal(hasOddParity(tdes), true);
        assert.doesNotThrow(() => assertStrongKey('tdes', tdes));
        const aes = generateKey('aes', 24, () => Buffer.from(raw));
        assert.deepEqual(aes, Buffer.from(raw));
      }),
      { numRuns: 50 },
    );
  });

  it('is deterministic for an injected source and does not wipe the source buffer', () => {
    const fixed = fromHex('00112233445566778899AABBCCDDEEFF');
    const a = generateKey('sm4', undefined, () => fixed);
    const b = generateKey('sm4', undefined, () => fixed);
    assert.equal(toHex(a), '00112233445566778899AABBCCDDEEFF');
    assert.deepEqual(a, b);
    assert.equal(toHex(fixed), '00112233445566778899AABBCCDDEEFF');
  });

  it('draws again while the key is weak, semi-weak or degenerate', () => {
    const des = replay('0000000000000000', '011F011F010E010E', '0123456789ABCDEE');
    assert.equal(toHex(generateKey('des', 8, des)), '0123456789ABCDEF');
    assert.equal(des.calls, 3);
    const tdes = replay('0123456789ABCDEF0123456789ABCDEF', '0123456789ABCDEFFEDCBA9876543210');
    assert.equal(toHex(generateKey('tdes', 16, tdes)), '0123456789ABCDEFFEDCBA9876543210');
    assert.equal(tdes.calls, 2);
  });

  it('POSKEY_ERR_RANDOM for a source that returns the wrong length or only weak keys', () => {
    assert.throws(() => generateKey('aes', 16, () => Buffer.alloc(15)), code('POSKEY_ERR_RANDOM'));
    assert.throws(() => generateKey('des', 8, (n) => Buffer.alloc(n)), code('POSKEY_ERR_RANDOM'));
  });

  it('POSKEY_ERR_LENGTH and POSKEY_ERR_ALGORITHM', () => {
    assert.throws(() => generateKey('tdes', 8), code('POSKEY_ERR_LENGTH'));
    assert.throws(() => generateKey('sm4', 32), code('POSKEY_ERR_LENGTH'));
    assert.throws(() => generateKey('idea' as CipherAlgorithm), code('POSKEY_ERR_ALGORITHM'));
  });
});

function isStrongRaw(raw: Uint8Array): boolean {
  try {
    assertStrongKey('tdes', fixParity(raw));
    return true;
  } catch {
    return false;
  }
}

interface ComponentVector {
  name: string;
  alg: CipherAlgorithm;
  kcvMethod: KcvMethod;
  components: string[];
  componentKcvs: string[];
  componentParity?: boolean[];
  xor?: string;
  key: string;
  kcv: string;
}

describe('keys: combineComponents', () => {
  for (const v of loadVectors<ComponentVector>('components.json').vectors) {
    it(v.name, () => {
      const parts = v.components.map((c) => fromHex(c));
      const copies = parts.map((p) => Buffer.from(p));
      const r = combineComponents(v.alg, parts, { kcv: { method: v.kcvMethod } });
      assert.equal(toHex(r.key), v.key);
      assert.equal(r.kcv.value, v.kcv);
      assert.equal(r.kcv.method, v.kcvMethod);
      assert.deepEqual(
        r.components.map((c) => c.value),
        v.componentKcvs,
      );
      assert.deepEqual(r.componentParity, v.componentParity);
      assert.deepEqual(parts, copies, 'components must not be modified');
      if (v.xor) {
        const raw = parts.reduce<Buffer>((a, b) => xor(a, b), Buffer.alloc(parts[0]!.length));
        assert.equal(toHex(raw), v.xor);
        assert.equal(hasOddParity(raw), false);
      }
      // The reported KCV is the KCV of the returned key.
      assert.equal(checkValue(createKey(v.alg, r.key), { method: v.kcvMethod }).value, v.kcv);
    });
  }

  it('reports, but does not enforce, component parity', () => {
    const r = combineComponents('tdes', [
      fromHex('0123456789ABCDEFFEDCBA9876543210'),
      fromHex('00000000000000000000000000000001'),
    ]);
    assert.deepEqual(r.componentParity, [true, false]);
    assert.equal(hasOddParity(r.key), true);
    assert.equal(
      combineComponents('aes', [Buffer.alloc(16), Buffer.alloc(16, 1)]).componentParity,
      undefined,
    );
  });

  it('KCV options reach every value', () => {
    const r = combineComponents('sm4', [Buffer.alloc(16, 1), Buffer.alloc(16, 2)], { kcv: { length: 8 } });
    assert.equal(r.kcv.length, 8);
    assert.ok(r.components.every((c) => c.length === 8 && c.value.length === 16));
  });

  it('round trip: a key split into n random components combines back (odd-parity DES keys and AES keys)', () => {
    const algKey = fc.oneof(
      fc.tuple(
        fc.constant<CipherAlgorithm>('tdes'),
        bytes(16).map((k) => fixParity(k)),
      ),
      fc.tuple(fc.constant<CipherAlgorithm>('aes'), bytes(32)),
    );
    fc.assert(
      fc.property(
        algKey,
        fc.integer({ min: 2, max: 9 }),
        fc.infiniteStream(bytes(32)),
        ([alg, key], n, rnd) => {
          fc.pre(alg !== 'tdes' || isStrongRaw(key));
          const random = [...rnd.take(n - 1)].map((r) => Buffer.from(r.subarray(0, key.length)));
          const last = random.reduce<Buffer>((acc, r) => xor(acc, r), Buffer.from(key));
          const parts = [...random, last];
          const r = combineComponents(alg, parts);
          assert.deepEqual(r.key, Buffer.from(key));
          // XOR is commutative: order does not matter.
          assert.deepEqual(combineComponents(alg, [...parts].reverse()).key, r.key);
          assert.equal(r.components.length, n);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('POSKEY_ERR_COMPONENT_COUNT for fewer than 2 or more than 9 components', () => {
    const c = () => Buffer.alloc(16, 0x11);
    assert.throws(() => combineComponents('aes', [c()]), code('POSKEY_ERR_COMPONENT_COUNT'));
    assert.throws(() => combineComponents('aes', []), code('POSKEY_ERR_COMPONENT_COUNT'));
    assert.throws(
      () => combineComponents('aes', Array.from({ length: 10 }, c)),
      code('POSKEY_ERR_COMPONENT_COUNT'),
    );
    assert.doesNotThrow(() => combineComponents('aes', Array.from({ length: 9 }, c)));
  });

  it('POSKEY_ERR_LENGTH when lengths differ or do not fit the algorithm', () => {
    assert.throws(
      () => combineComponents('tdes', [Buffer.alloc(16, 0x13), Buffer.alloc(24, 0x15)]),
      (e: unknown) => code('POSKEY_ERR_LENGTH')(e) && (e as PoskeyError).field === 'components[1]',
    );
    assert.throws(
      () => combineComponents('tdes', [Buffer.alloc(8), Buffer.alloc(8)]),
      code('POSKEY_ERR_LENGTH'),
    );
    assert.throws(
      () => combineComponents('sm4', [Buffer.alloc(24), Buffer.alloc(24)]),
      code('POSKEY_ERR_LENGTH'),
    );
  });

  it('POSKEY_ERR_TYPE, POSKEY_ERR_ALGORITHM and POSKEY_ERR_KCV_METHOD', () => {
    assert.throws(() => combineComponents('aes', 'ab' as unknown as Uint8Array[]), code('POSKEY_ERR_TYPE'));
    assert.throws(
      () => combineComponents('aes', [Buffer.alloc(16), 'x' as unknown as Uint8Array]),
      code('POSKEY_ERR_TYPE'),
    );
    assert.throws(
      () => combineComponents('x' as CipherAlgorithm, [Buffer.alloc(16)]),
      code('POSKEY_ERR_ALGORITHM'),
    );
    assert.throws(
      () =>
        combineComponents('aes', [Buffer.alloc(16), Buffer.alloc(16)], {
          kcv: { method: 'md5' as KcvMethod },
        }),
      code('POSKEY_ERR_KCV_METHOD'),
    );
  });

  it('POSKEY_ERR_WEAK_KEY when the combined key is weak or degenerate', () => {
    const a = fromHex('0123456789ABCDEF');
    const weak = xor(a, fromHex('0101010101010101'));
    assert.throws(() => combineComponents('des', [a, weak]), code('POSKEY_ERR_WEAK_KEY'));
    const half = fromHex('0123456789ABCDEF0123456789ABCDEF');
    assert.throws(() => combineComponents('tdes', [half, Buffer.alloc(16)]), code('POSKEY_ERR_WEAK_KEY'));
  });
});
