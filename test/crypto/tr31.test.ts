import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { type CipherAlgorithm, createKey, type KeyHandle } from '../../src/crypto/cipher.js';
import { cmac } from '../../src/crypto/cmac.js';
import {
  assertKeyUsage,
  buildHeader,
  cipherAlgorithmOf,
  KEY_USAGES,
  parseHeader,
  readHeader,
  type Tr31Header,
  type Tr31OptionalBlock,
  type Tr31Version,
  unwrapKeyBlock,
  wrapKeyBlock,
} from '../../src/crypto/tr31.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

const code = (c: string, field?: string) => (e: unknown) => {
  assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  if (field !== undefined) assert.equal(e.field, field, e.message);
  return true;
};

const kbpkFor = (version: string, bytes: Uint8Array): KeyHandle =>
  createKey(version === 'D' ? 'aes' : bytes.length === 8 ? 'des' : 'tdes', bytes);

interface UnwrapVector {
  name: string;
  kbpk: string;
  block: string;
  key?: string;
  keyLength?: number;
  keyPrefix?: string;
  keySuffix?: string;
  keyMatchesCertificate?: 'pkcs1' | 'sec1';
  kcv?: string;
  kcvMethod?: 'legacy' | 'cmac';
  fixed: string;
  blocks: Tr31OptionalBlock[];
  blockIds?: string[];
}

const unwrapVectors = loadVectors<UnwrapVector>('tr31-unwrap.json').vectors;

/** The leaf certificate carried in a CT block: type 00 (one X.509, base64) or 02 (chain of 00 + length + base64). */
function leafCertificate(ct: string): X509Certificate {
  const b64 = ct.startsWith('02') ? ct.slice(8, 8 + Number.parseInt(ct.slice(4, 8), 16)) : ct.slice(2);
  return new X509Certificate(Buffer.from(b64, 'base64'));
}

describe('TR-31: published key blocks unwrap', () => {
  for (const v of unwrapVectors) {
    it(v.name, () => {
      const { header, key } = unwrapKeyBlock({ kbpk: kbpkFor(v.block[0]!, fromHex(v.kbpk)), block: v.block });
      if (v.key) assert.equal(toHex(key), v.key);
      if (v.keyLength) assert.equal(key.length, v.keyLength);
      if (v.keyPrefix) assert.ok(toHex(key).startsWith(v.keyPrefix));
      if (v.keySuffix) assert.ok(toHex(key).endsWith(v.keySuffix));
      const fixed = [
        header.usage,
        header.algorithm,
        header.modeOfUse,
        header.keyVersion,
        header.exportability,
      ];
      assert.equal(fixed.join('') + header.keyContext, v.fixed);
      assert.equal(header.version, v.block[0]);
      const ids = header.optionalBlocks.map((b) => b.id);
      if (v.blockIds) {
        assert.deepEqual(ids, v.blockIds);
        for (const b of v.blocks)
          assert.deepEqual(
            header.optionalBlocks.find((x) => x.id === b.id),
            b,
          );
      } else {
        assert.deepEqual(header.optionalBlocks, v.blocks);
      }
      // The parsed header serialises back to the exact header text.
      assert.equal(buildHeader(header, v.block.length), v.block.slice(0, readHeader(v.block).headerLength));
      if (v.kcv) {
        const handle = createKey(cipherAlgorithmOf(header, key.length), key);
        const zeros = Buffer.alloc(handle.blockSize);
        const kcv = v.kcvMethod === 'cmac' ? cmac(handle, zeros) : handle.ecbEncrypt(zeros);
        assert.equal(toHex(kcv).slice(0, v.kcv.length), v.kcv);
      }
      if (v.keyMatchesCertificate) {
        const ct = header.optionalBlocks.find((b) => b.id === 'CT')!;
        const priv = createPrivateKey({ key, format: 'der', type: v.keyMatchesCertificate });
        const spki = (k: ReturnType<typeof createPublicKey>) => k.export({ type: 'spki', format: 'der' });
        assert.deepEqual(spki(createPublicKey(priv)), spki(leafCertificate(ct.data).publicKey));
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// A second, deliberately plain implementation of the key derivations, used only to recover the
// random padding of published blocks so that wrap can be compared with them byte for byte.

function oracleKeys(kbpk: Buffer, version: string): { kbek: KeyHandle; kbak: KeyHandle } {
  const alg: CipherAlgorithm = version === 'D' ? 'aes' : kbpk.length === 8 ? 'des' : 'tdes';
  if (version === 'A' || version === 'C') {
    return {
      kbek: createKey(alg, Buffer.from(kbpk.map((b) => b ^ 0x45))),
      kbak: createKey(alg, Buffer.from(kbpk.map((b) => b ^ 0x4d))),
    };
  }
  const root = createKey(alg, kbpk);
  const algCode = alg === 'aes' ? kbpk.length / 8 : kbpk.length === 16 ? 0 : 1;
  const derive = (usage: number) => {
    const out: Buffer[] = [];
    for (let i = 1; Buffer.concat(out).length < kbpk.length; i++) {
      out.push(
        cmac(
          root,
          Buffer.from([i, 0, usage, 0, 0, algCode, (kbpk.length * 8) >> 8, (kbpk.length * 8) & 0xff]),
        ),
      );
    }
    return createKey(alg, Buffer.concat(out).subarray(0, kbpk.length));
  };
  return { kbek: derive(0), kbak: derive(1) };
}

function oraclePayload(kbpk: Buffer, block: string): Buffer {
  const version = block[0]!;
  const macHex = { A: 8, B: 16, C: 8, D: 32 }[version]!;
  const headerLength = readHeader(block).headerLength;
  const enc = fromHex(block.slice(headerLength, block.length - macHex));
  const iv =
    version === 'A' || version === 'C'
      ? Buffer.from(block.slice(0, 8), 'ascii')
      : fromHex(block.slice(-macHex));
  return oracleKeys(kbpk, version).kbek.cbcDecrypt(enc, iv);
}

describe('TR-31: wrap reproduces every published block given its random padding', () => {
  for (const v of unwrapVectors) {
    it(v.name, () => {
      const kbpkBytes = fromHex(v.kbpk);
      const kbpk = kbpkFor(v.block[0]!, kbpkBytes);
      const { header, key } = unwrapKeyBlock({ kbpk, block: v.block });
      const payload = oraclePayload(kbpkBytes, v.block);
      const pad = payload.subarray(2 + key.length);
      const random = (n: number) => {
        assert.equal(n, pad.length);
        return Buffer.from(pad);
      };
      const wrapped = wrapKeyBlock({ kbpk, header, key, random, maskedKeyLength: payload.length - 2 });
      assert.equal(wrapped, v.block);
    });
  }
  it('the X9.143 8.1 block is reproduced with the default key-length masking', () => {
    const v = unwrapVectors.find((x) => x.name.startsWith('ANSI X9.143:2021 8.1'))!;
    const kbpkBytes = fromHex(v.kbpk);
    const kbpk = kbpkFor('D', kbpkBytes);
    const { header, key } = unwrapKeyBlock({ kbpk, block: v.block });
    const pad = oraclePayload(kbpkBytes, v.block).subarray(2 + key.length);
    assert.equal(wrapKeyBlock({ kbpk, header, key, random: () => Buffer.from(pad) }), v.block);
  });
});

describe('TR-31: malformed and unauthentic blocks', () => {
  for (const v of loadVectors<{
    kbpk: string;
    kbpkAlg: CipherAlgorithm;
    block: string;
    code: string;
    field?: string;
  }>('tr31-errors.json').vectors) {
    it(`${v.block.slice(0, 20)}… → ${v.code}`, () => {
      const kbpk = createKey(v.kbpkAlg, fromHex(v.kbpk));
      assert.throws(() => unwrapKeyBlock({ kbpk, block: v.block }), code(v.code, v.field));
    });
  }

  it('POSKEY_ERR_TR31_VERSION: an AES KBPK needs version D, a TDES KBPK cannot do D', () => {
    const aes = createKey('aes', Buffer.alloc(16, 7));
    const tdes = createKey('tdes', Buffer.alloc(16, 7));
    const a = unwrapVectors[3]!.block; // TR-31:2018 A.7.2.1 (version A)
    const d = unwrapVectors[7]!.block; // TR-31:2018 A.7.4 (version D)
    assert.throws(() => unwrapKeyBlock({ kbpk: aes, block: a }), code('POSKEY_ERR_TR31_VERSION'));
    assert.throws(() => unwrapKeyBlock({ kbpk: tdes, block: d }), code('POSKEY_ERR_TR31_VERSION'));
    assert.throws(
      () => wrapKeyBlock({ kbpk: aes, header: 'B0000P0TE00N0000', key: Buffer.alloc(16, 1) }),
      code('POSKEY_ERR_TR31_VERSION'),
    );
    assert.throws(() => parseHeader('E0084B0TV16N0000'), code('POSKEY_ERR_TR31_VERSION'));
  });

  it('a wrong KBPK fails authentication', () => {
    for (const v of unwrapVectors) {
      const wrong = fromHex(v.kbpk);
      wrong[0]! ^= 0x02;
      assert.throws(
        () => unwrapKeyBlock({ kbpk: kbpkFor(v.block[0]!, wrong), block: v.block }),
        code('POSKEY_ERR_TR31_MAC'),
      );
    }
  });

  it('lower-case hex in the body is refused, so one key block has one spelling', () => {
    const v = unwrapVectors[3]!;
    const lower = v.block.slice(0, 16) + v.block.slice(16).toLowerCase();
    assert.throws(
      () => unwrapKeyBlock({ kbpk: kbpkFor('A', fromHex(v.kbpk)), block: lower }),
      code('POSKEY_ERR_HEX'),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Header codec

const H = (over: Partial<Tr31Header> = {}): Tr31Header => ({
  version: 'B',
  usage: 'P0',
  algorithm: 'T',
  modeOfUse: 'E',
  keyVersion: '00',
  exportability: 'N',
  keyContext: '0',
  optionalBlocks: [],
  ...over,
});

describe('TR-31 header', () => {
  it('parses and rebuilds headers (psec header tests)', () => {
    assert.deepEqual(parseHeader('B0000P0TE00N0000xxxxxxxx'), H());
    assert.equal(buildHeader(H(), 16), 'B0016P0TE00N0000');
    assert.equal(buildHeader(H()), 'B0000P0TE00N0000');
    const ks = parseHeader('B0000P0TE00N0100KS1800604B120F9292800000xxxxxxxx');
    assert.deepEqual(ks.optionalBlocks, [{ id: 'KS', data: '00604B120F9292800000' }]);
    assert.equal(buildHeader(ks, 40), 'B0040P0TE00N0100KS1800604B120F9292800000');
    const multi = 'B0056P0TE00N0400KS1800604B120F9292800000T104T20600PB0600';
    assert.deepEqual(
      parseHeader(multi).optionalBlocks.map((b) => [b.id, b.data]),
      [
        ['KS', '00604B120F9292800000'],
        ['T1', ''],
        ['T2', '00'],
        ['PB', '00'],
      ],
    );
    assert.equal(buildHeader(parseHeader(multi), 56), multi);
  });

  it('reads the extended length form and writes it only when needed', () => {
    const ext = parseHeader('B0000P0TE00N0200KS00011600604B120F9292PB0A000000');
    assert.deepEqual(ext.optionalBlocks[0], { id: 'KS', data: '00604B120F9292' });
    assert.equal(buildHeader(ext), 'B0000P0TE00N0200KS1200604B120F9292PB0A000000');
    const long = `B0000P0TE00N0200KS0002010A${'P'.repeat(256)}PB0600`;
    const h = parseHeader(long);
    assert.equal(h.optionalBlocks[0]!.data, 'P'.repeat(256));
    assert.equal(buildHeader(h), long);
  });

  it('numeric (proprietary) usages and the SM4 algorithm code 4 are accepted', () => {
    assert.equal(parseHeader('D0000104N00E0000').usage, '10');
    assert.equal(parseHeader('D0000P04E00E0000').algorithm, '4');
    assert.equal(parseHeader('B0000P0TEc1E0000').keyVersion, 'c1');
  });

  const optionalBlockErrors = [
    'B0000P0TE00N0100',
    'B0000P0TE00N0100K',
    'B0000P0TE00N0100KS',
    'B0000P0TE00N0100KS1',
    'B0000P0TE00N0100KS1Y',
    'B0000P0TE00N0100KS02',
    'B0000P0TE00N0100KS071',
    'B0000P0TE00N0100KS00',
    'B0000P0TE00N0100KS001',
    'B0000P0TE00N0100KS001S',
    'B0000P0TE00N0100KS0000',
    'B0000P0TE00N0100KS0001',
    'B0000P0TE00N0100KS00010',
    'B0000P0TE00N0100KS00010H',
    'B0000P0TE00N0100KS000101',
    'B0000P0TE00N0100KS0001FF',
    'B0000P0TE00N0200KS07000T',
    'B0000P0TE00N0200KS0600TT',
    'B0000P0TE00N0200KS050TT1',
    'B0000P0TE00N0200KS04TT1X',
    'B0000P0TE00N0200KS04TT03',
    'B0000P0TE00N0200KS04TT05',
    'B0000P0TE00N0200KS04TT00',
    'B0000P0TE00N0200KS04TT0000',
    'B0000P0TE00N0200KS04TT000101',
    'B0000P0TE00N0200KS04TT00011F',
    'B0000P0TE00N0100**04',
    'B0000P0TE00N0200KS0600??04',
    'B0000P0TE00N0100KS05\x03',
    'B0000P0TE00N0200KS04TT05\xff',
  ];
  it('POSKEY_ERR_TR31_OPTIONAL_BLOCK for each malformed optional block (psec cases)', () => {
    for (const text of optionalBlockErrors) {
      assert.throws(() => parseHeader(text), code('POSKEY_ERR_TR31_OPTIONAL_BLOCK'), JSON.stringify(text));
    }
  });

  it('POSKEY_ERR_TR31_HEADER names the position at fault', () => {
    const cases: [string, string][] = [
      ['_0000P0TE00N0000', 'version'],
      ['', 'header'],
      ['B0000', 'header'],
      ['B00X0P0TE00N0000', 'length'],
      ['B0000P_TE00N0000', 'usage'],
      ['B0000Z9TE00N0000', 'usage'],
      ['B0000P0ZE00N0000', 'algorithm'],
      ['B0000P0TZ00N0000', 'modeOfUse'],
      ['B0000P0TE0_N0000', 'keyVersion'],
      ['B0000P0TE00X0000', 'exportability'],
      ['B0000P0TE00N0X00', 'optionalBlockCount'],
      ['B0000P0TE00N0030', 'keyContext'],
      ['B0000P0TE00N0001', 'reserved'],
    ];
    for (const [text, field] of cases)
      assert.throws(() => parseHeader(text), code('POSKEY_ERR_TR31_HEADER', field), text);
    const attrs: [Partial<Tr31Header>, string][] = [
      [{ version: '_' as Tr31Version }, 'version'],
      [{ version: 'B0' as Tr31Version }, 'version'],
      [{ usage: 'P_' }, 'usage'],
      [{ usage: 'P' }, 'usage'],
      [{ usage: 'P00' }, 'usage'],
      [{ algorithm: '' }, 'algorithm'],
      [{ algorithm: 'T0' }, 'algorithm'],
      [{ modeOfUse: 'EE' }, 'modeOfUse'],
      [{ modeOfUse: '_' }, 'modeOfUse'],
      [{ keyVersion: '0' }, 'keyVersion'],
      [{ keyVersion: '000' }, 'keyVersion'],
      [{ keyVersion: '0_' }, 'keyVersion'],
      [{ exportability: 'NN' }, 'exportability'],
      [{ exportability: '' }, 'exportability'],
      [{ keyContext: '3' }, 'keyContext'],
    ];
    for (const [over, field] of attrs) {
      assert.throws(() => buildHeader(H(over)), code('POSKEY_ERR_TR31_HEADER', field), JSON.stringify(over));
    }
  });

  it('POSKEY_ERR_TR31_OPTIONAL_BLOCK when building bad or too many blocks', () => {
    const many = Array.from({ length: 100 }, (_, i) => ({
      id: String(i % 100).padStart(2, '0'),
      data: 'PPPP',
    }));
    assert.throws(() => buildHeader(H({ optionalBlocks: many })), code('POSKEY_ERR_TR31_OPTIONAL_BLOCK'));
    assert.throws(
      () => buildHeader(H({ optionalBlocks: [{ id: 'LG', data: 'P'.repeat(70000) }] })),
      code('POSKEY_ERR_TR31_OPTIONAL_BLOCK'),
    );
    assert.throws(
      () => buildHeader(H({ optionalBlocks: [{ id: 'K', data: '' }] })),
      code('POSKEY_ERR_TR31_OPTIONAL_BLOCK'),
    );
    assert.throws(
      () => buildHeader(H({ optionalBlocks: [{ id: 'KS', data: 'é' }] })),
      code('POSKEY_ERR_TR31_OPTIONAL_BLOCK'),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Wrap

describe('TR-31 wrap', () => {
  for (const v of loadVectors<{
    version: Tr31Version;
    kbpkLength: number;
    keyLength: number;
    maskedKeyLength?: number;
    blockLength: number;
  }>('tr31-lengths.json').vectors) {
    it(`${v.version}: ${v.keyLength}-byte key masked to ${v.maskedKeyLength ?? 'default'} → ${v.blockLength}`, () => {
      const kbpk = createKey('tdes', Buffer.alloc(v.kbpkLength, 0x45));
      const key = Buffer.alloc(v.keyLength, 0x46);
      const block = wrapKeyBlock({
        kbpk,
        header: H({ version: v.version }),
        key,
        maskedKeyLength: v.maskedKeyLength,
      });
      assert.equal(block.length, v.blockLength);
      assert.equal(block.slice(1, 5), String(v.blockLength).padStart(4, '0'));
      assert.deepEqual(unwrapKeyBlock({ kbpk, block }).key, key);
    });
  }

  it('wraps from a header string (psec wrap/unwrap functions)', () => {
    const kbpk = createKey('tdes', Buffer.alloc(16, 0xab));
    const key = Buffer.alloc(16, 0xcd);
    const block = wrapKeyBlock({ kbpk, header: 'B0096P0TE00N0000', key });
    const out = unwrapKeyBlock({ kbpk, block });
    assert.deepEqual(out.key, key);
    assert.deepEqual(out.header, H());
  });

  it('adds PB so the optional blocks fill whole cipher blocks, replacing any PB given', () => {
    const kbpk = createKey('aes', Buffer.alloc(32, 1));
    const header = H({
      version: 'D',
      algorithm: 'A',
      optionalBlocks: [
        { id: 'KS', data: '00604B120F9292800000' },
        { id: 'PB', data: '' },
      ],
    });
    const block = wrapKeyBlock({ kbpk, header, key: Buffer.alloc(16, 2) });
    assert.ok(block.startsWith('D'));
    assert.equal(block.slice(12, 14), '02');
    assert.ok(block.slice(16).startsWith('KS1800604B120F9292800000PB080000'));
    assert.equal(readHeader(block).headerLength % 16, 0);
    const noPad = wrapKeyBlock({
      kbpk,
      header: H({ version: 'D', algorithm: 'A' }),
      key: Buffer.alloc(16, 2),
    });
    assert.equal(noPad.slice(12, 14), '00');
    // Gap of 1..3 characters: PB takes one more cipher block.
    const tdes = createKey('tdes', Buffer.alloc(16, 3));
    const odd = wrapKeyBlock({
      kbpk: tdes,
      header: H({ optionalBlocks: [{ id: 'LB', data: '1' }] }),
      key: Buffer.alloc(16, 2),
    });
    assert.ok(odd.slice(16).startsWith('LB051PB0B0000000'));
  });

  it('caches the derived KBEK/KBAK on the KBPK handle and drops them on destroy', () => {
    for (const [version, alg, name] of [
      ['A', 'tdes', 'tr31-variant'],
      ['B', 'tdes', 'tr31-cmac'],
      ['D', 'aes', 'tr31-cmac'],
    ] as const) {
      const kbpk = createKey(alg, Buffer.alloc(16, 9));
      const block = wrapKeyBlock({
        kbpk,
        header: H({ version, algorithm: alg === 'aes' ? 'A' : 'T' }),
        key: Buffer.alloc(16, 4),
      });
      const cached = kbpk.derived(name, () => assert.fail('derived keys were not cached'));
      assert.ok(cached);
      unwrapKeyBlock({ kbpk, block });
      kbpk.destroy();
      assert.throws(() => unwrapKeyBlock({ kbpk, block }), code('POSKEY_ERR_KEY_DESTROYED'));
    }
  });

  it('refuses keys that do not fit the algorithm, bad masking and blocks over 9999 characters', () => {
    const kbpk = createKey('tdes', Buffer.alloc(24, 5));
    assert.throws(
      () => wrapKeyBlock({ kbpk, header: H(), key: Buffer.alloc(15) }),
      code('POSKEY_ERR_TR31_KEY_LENGTH'),
    );
    assert.throws(
      () => wrapKeyBlock({ kbpk, header: H(), key: Buffer.alloc(0) }),
      code('POSKEY_ERR_TR31_KEY_LENGTH'),
    );
    const aes = createKey('aes', Buffer.alloc(32, 5));
    assert.throws(
      () => wrapKeyBlock({ kbpk: aes, header: H({ version: 'D', algorithm: 'A' }), key: Buffer.alloc(20) }),
      code('POSKEY_ERR_TR31_KEY_LENGTH'),
    );
    assert.throws(
      () => wrapKeyBlock({ kbpk, header: H(), key: Buffer.alloc(16), maskedKeyLength: -8 }),
      code('POSKEY_ERR_TR31_KEY_LENGTH'),
    );
    assert.throws(
      () =>
        wrapKeyBlock({
          kbpk,
          header: H({ optionalBlocks: [{ id: 'T0', data: 'P'.repeat(9990) }] }),
          key: Buffer.alloc(16),
        }),
      code('POSKEY_ERR_TR31_LENGTH'),
    );
    assert.throws(
      () => wrapKeyBlock({ kbpk, header: H({ usage: '??' }), key: Buffer.alloc(16) }),
      code('POSKEY_ERR_TR31_HEADER'),
    );
    assert.throws(
      () => wrapKeyBlock({ kbpk, header: H(), key: Buffer.alloc(16), random: () => Buffer.alloc(1) }),
      code('POSKEY_ERR_LENGTH'),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const printable = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 40,
});
const longPrintable = fc.oneof(
  printable,
  printable.map((s) => s.padEnd(300, 'x')),
);
const blockId = fc
  .tuple(
    fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'),
    fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'),
  )
  .map(([a, b]) => a + b)
  .filter((id) => id !== 'PB');
const optionalBlocks = fc.array(
  fc
    .tuple(blockId, fc.oneof({ weight: 5, arbitrary: printable }, { weight: 1, arbitrary: longPrintable }))
    .map(([id, data]) => ({ id, data })),
  { maxLength: 4 },
);

const keyFor = (algorithm: string): fc.Arbitrary<Uint8Array> => {
  const lengths = { T: [8, 16, 24], D: [8], A: [16, 24, 32], '4': [16], H: [20, 32, 64] }[algorithm]!;
  return fc.constantFrom(...lengths).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));
};

const caseArb = fc
  .constantFrom<Tr31Version>('A', 'B', 'C', 'D')
  .chain((version) => {
    const kbpkLengths = version === 'D' ? [16, 24, 32] : version === 'B' ? [16, 24] : [8, 16, 24];
    return fc.record({
      version: fc.constant(version),
      kbpk: fc.constantFrom(...kbpkLengths).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
      algorithm: fc.constantFrom('T', 'D', 'A', '4', 'H'),
      usage: fc.constantFrom(...Object.keys(KEY_USAGES), '10', '99'),
      modeOfUse: fc.constantFrom(...'BCDEGNSVXY'),
      keyVersion: fc.constantFrom('00', 'c1', '12', 'AB'),
      exportability: fc.constantFrom('E', 'N', 'S'),
      keyContext: fc.constantFrom('0', '1', '2'),
      optionalBlocks,
      masked: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
    });
  })
  .chain((c) => keyFor(c.algorithm).map((key) => ({ ...c, key })));

type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

function setup(c: Case) {
  const kbpk = kbpkFor(c.version, c.kbpk);
  const header: Tr31Header = {
    version: c.version,
    usage: c.usage,
    algorithm: c.algorithm,
    modeOfUse: c.modeOfUse,
    keyVersion: c.keyVersion,
    exportability: c.exportability,
    keyContext: c.keyContext,
    optionalBlocks: c.optionalBlocks,
  };
  return { kbpk, header };
}

describe('TR-31 properties', () => {
  it('unwrap(wrap(key, header)) gives back the key and header (PB aside), every version', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { kbpk, header } = setup(c);
        const block = wrapKeyBlock({ kbpk, header, key: c.key, maskedKeyLength: c.masked });
        assert.equal(Number(block.slice(1, 5)), block.length);
        const out = unwrapKeyBlock({ kbpk, block });
        assert.deepEqual(out.key, Buffer.from(c.key));
        assert.deepEqual(
          { ...out.header, optionalBlocks: out.header.optionalBlocks.filter((b) => b.id !== 'PB') },
          header,
        );
      }),
      { numRuns: 300 },
    );
  });

  const tamperCodes = new Set([
    'POSKEY_ERR_TR31_MAC',
    'POSKEY_ERR_TR31_HEADER',
    'POSKEY_ERR_TR31_LENGTH',
    'POSKEY_ERR_TR31_OPTIONAL_BLOCK',
    'POSKEY_ERR_TR31_VERSION',
    'POSKEY_ERR_HEX',
  ]);
  it('changing any one character never yields a key: MAC, header or length error', () => {
    fc.assert(
      fc.property(caseArb, fc.nat(), fc.integer({ min: 0x20, max: 0x7e }), (c, at, ch) => {
        const { kbpk, header } = setup(c);
        const block = wrapKeyBlock({ kbpk, header, key: c.key, maskedKeyLength: c.masked });
        const i = at % block.length;
        const replacement = String.fromCharCode(
          ch === block.charCodeAt(i) ? (ch === 0x7e ? 0x20 : ch + 1) : ch,
        );
        const tampered = block.slice(0, i) + replacement + block.slice(i + 1);
        assert.throws(
          () => unwrapKeyBlock({ kbpk, block: tampered }),
          (e: unknown) => e instanceof PoskeyError && tamperCodes.has(e.code),
        );
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Enforcement

describe('TR-31 enforcement', () => {
  it('assertKeyUsage passes what the block allows', () => {
    assertKeyUsage(H({ usage: 'K1', modeOfUse: 'B', exportability: 'E' }), {
      usage: ['K0', 'K1'],
      algorithm: 'T',
      modeOfUse: ['E', 'D'],
      exportable: true,
    });
    for (const [mode, ops] of [
      ['B', 'BED'],
      ['C', 'CGV'],
      ['N', 'BCDEGSVXY'],
      ['E', 'E'],
      ['G', 'G'],
    ] as const) {
      for (const op of ops) assertKeyUsage(H({ modeOfUse: mode }), { modeOfUse: op });
    }
    assertKeyUsage(H({ exportability: 'N' }), { exportable: false });
  });

  it('POSKEY_ERR_KEY_USAGE / _ALGORITHM / _MODE / _NOT_EXPORTABLE name block vs request', () => {
    assert.throws(
      () => assertKeyUsage(H(), { usage: 'M3' }),
      (e: unknown) => {
        code('POSKEY_ERR_KEY_USAGE', 'usage')(e);
        assert.match((e as Error).message, /P0.*M3/);
        return true;
      },
    );
    assert.throws(
      () => assertKeyUsage(H(), { algorithm: 'A' }),
      code('POSKEY_ERR_KEY_ALGORITHM', 'algorithm'),
    );
    assert.throws(
      () => assertKeyUsage(H({ modeOfUse: 'E' }), { modeOfUse: 'D' }),
      code('POSKEY_ERR_KEY_MODE', 'modeOfUse'),
    );
    assert.throws(
      () => assertKeyUsage(H({ modeOfUse: 'B' }), { modeOfUse: ['E', 'G'] }),
      code('POSKEY_ERR_KEY_MODE'),
    );
    assert.throws(
      () => assertKeyUsage(H({ modeOfUse: 'G' }), { modeOfUse: 'V' }),
      code('POSKEY_ERR_KEY_MODE'),
    );
    for (const x of ['N', 'S']) {
      assert.throws(
        () => assertKeyUsage(H({ exportability: x }), { exportable: true }),
        code('POSKEY_ERR_KEY_NOT_EXPORTABLE', 'exportability'),
      );
    }
  });

  it('cipherAlgorithmOf maps T/D/A/4 and refuses the rest', () => {
    assert.equal(cipherAlgorithmOf({ algorithm: 'T' }, 16), 'tdes');
    assert.equal(cipherAlgorithmOf({ algorithm: 'T' }, 24), 'tdes');
    assert.equal(cipherAlgorithmOf({ algorithm: 'T' }, 8), 'des');
    assert.equal(cipherAlgorithmOf({ algorithm: 'D' }, 8), 'des');
    assert.equal(cipherAlgorithmOf({ algorithm: 'A' }, 32), 'aes');
    assert.equal(cipherAlgorithmOf({ algorithm: '4' }, 16), 'sm4');
    for (const a of ['R', 'E', 'H', 'S']) {
      assert.throws(() => cipherAlgorithmOf({ algorithm: a }, 16), code('POSKEY_ERR_KEY_ALGORITHM'));
    }
    assert.throws(() => cipherAlgorithmOf({ algorithm: 'T' }, 15), code('POSKEY_ERR_TR31_KEY_LENGTH'));
    assert.throws(() => cipherAlgorithmOf({ algorithm: '4' }, 32), code('POSKEY_ERR_TR31_KEY_LENGTH'));
  });

  it('an SM4 key travels in a version D block with algorithm 4', () => {
    const kbpk = createKey('aes', Buffer.alloc(16, 0x11));
    const key = fromHex('F351D490994603795C6EBEE8FAEBB481');
    const block = wrapKeyBlock({ kbpk, header: H({ version: 'D', algorithm: '4', usage: 'P0' }), key });
    const out = unwrapKeyBlock({ kbpk, block });
    const handle = createKey(cipherAlgorithmOf(out.header, out.key.length), out.key);
    assert.equal(handle.algorithm, 'sm4');
    assert.equal(toHex(handle.ecbEncrypt(Buffer.alloc(16))).slice(0, 16), '861E83E31FAEBF10');
  });
});
