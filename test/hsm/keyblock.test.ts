import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { parseHeader, type Tr31Header, unwrapKeyBlock, wrapKeyBlock } from '../../src/crypto/tr31.js';
import { PoskeyError } from '../../src/errors.js';
import { KeyCache } from '../../src/hsm/key-cache.js';
import {
  DEV_BLOCK,
  isDevBlock,
  LMK_ID_BLOCK,
  lmkIdOfBlock,
  loadUnderLmk,
  resolveLmkKey,
  rewrapTable,
  rewrapToLmk,
  unwrapUnderLmk,
  wrapUnderLmk,
} from '../../src/hsm/keyblock.js';
import { formLmk, generateDevLmk, LmkSet, lmkKey } from '../../src/hsm/lmk.js';
import { toPayShieldError } from '../../src/hsm/payshield/errors.js';

const C1 = '000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F';
const C2 = '404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F';
const C3 = '603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4';
/** Double-length TDES keys (research keys.md §5 and UnionPay sample TPK). */
const TPK = '807A23AD32B36D457AE91FDF927570EA';
const TAK = '0123456789ABCDEFFEDCBA9876543210';

function lmks(): LmkSet {
  return new LmkSet([
    formLmk('00', [fromHex(C1), fromHex(C2)]).lmk,
    formLmk('01', [fromHex(C1), fromHex(C3)]).lmk,
  ]);
}

/** Asserts the poskey code and the payShield code the wire layer will answer with. */
function fails(expected: string, payShield?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, String(e));
    assert.equal(e.code, expected, e.message);
    if (payShield !== undefined) assert.equal(toPayShieldError(e), payShield);
    return true;
  };
}

const tpkSpec = { usage: 'P0', algorithm: 'T', modeOfUse: 'E', exportability: 'E', key: fromHex(TPK) };
const takSpec = { usage: 'M3', algorithm: 'T', modeOfUse: 'C', exportability: 'N', key: fromHex(TAK) };

describe('LMK key blocks', () => {
  it('wraps a TR-31 version D storage block naming the LMK and unwraps it', () => {
    const set = lmks();
    const block = wrapUnderLmk(set, tpkSpec);
    const h = parseHeader(block);
    assert.equal(h.version, 'D');
    assert.equal(h.usage, 'P0');
    assert.equal(h.keyContext, '1');
    assert.deepEqual(
      h.optionalBlocks.map((b) => b.id),
      [LMK_ID_BLOCK, 'KP', 'PB'],
    );
    assert.equal(h.optionalBlocks[0]!.data, '00');
    assert.equal(h.optionalBlocks[1]!.data, `01${set.get('00').kcv}`);
    assert.ok(block.slice(16).startsWith(`900600KP1001${set.get('00').kcv}PB`));
    assert.equal(lmkIdOfBlock(block), '00');
    const out = unwrapUnderLmk(set, block, { usage: 'P0', algorithm: 'T', modeOfUse: 'E' });
    assert.equal(toHex(out.key), TPK);
    assert.equal(out.lmkId, '00');
    assert.equal(out.dev, false);
    // It is a plain TR-31 block: any TR-31 implementation holding the LMK opens it.
    assert.equal(toHex(unwrapKeyBlock({ kbpk: lmkKey(set.get('00')), block }).key), TPK);
    assert.ok(!block.includes(TPK));
  });

  it('wraps under a named LMK and carries extra optional blocks', () => {
    const set = lmks();
    const block = wrapUnderLmk(set, {
      ...takSpec,
      lmkId: '01',
      keyVersion: '07',
      optionalBlocks: [{ id: 'LB', data: 'TERM0001' }],
    });
    const out = unwrapUnderLmk(set, block);
    assert.equal(out.lmkId, '01');
    assert.equal(out.header.keyVersion, '07');
    assert.deepEqual(out.header.optionalBlocks[0], { id: 'LB', data: 'TERM0001' });
  });

  it('round-trips random AES and TDES keys (property)', () => {
    const set = lmks();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ algorithm: fc.constant('A'), key: fc.uint8Array({ minLength: 16, maxLength: 16 }) }),
          fc.record({ algorithm: fc.constant('A'), key: fc.uint8Array({ minLength: 32, maxLength: 32 }) }),
          fc.record({ algorithm: fc.constant('T'), key: fc.uint8Array({ minLength: 24, maxLength: 24 }) }),
        ),
        fc.constantFrom('00', '01'),
        ({ algorithm, key }, lmkId) => {
          const block = wrapUnderLmk(set, {
            usage: 'D0',
            algorithm,
            modeOfUse: 'B',
            exportability: 'S',
            key,
            lmkId,
          });
          const loaded = loadUnderLmk(set, block, { usage: 'D0', algorithm, modeOfUse: ['E', 'D'] });
          assert.deepEqual([...loaded.handle.exportKeyBytes()], [...key]);
          assert.equal(loaded.handle.algorithm, algorithm === 'A' ? 'aes' : 'tdes');
          loaded.handle.destroy();
        },
      ),
      { numRuns: 40 },
    );
  });

  it('refuses a TAK (M-usage) block where a PIN key (P0) is expected: A6', () => {
    const set = lmks();
    const tak = wrapUnderLmk(set, takSpec);
    assert.throws(() => unwrapUnderLmk(set, tak, { usage: 'P0' }), fails('POSKEY_ERR_KEY_USAGE', 'A6'));
  });

  it('enforces algorithm (A7), mode of use (A8) and exportability (AA)', () => {
    const set = lmks();
    const tpk = wrapUnderLmk(set, tpkSpec);
    const tak = wrapUnderLmk(set, takSpec);
    assert.throws(
      () => unwrapUnderLmk(set, tpk, { usage: 'P0', algorithm: 'A' }),
      fails('POSKEY_ERR_KEY_ALGORITHM', 'A7'),
    );
    assert.throws(
      () => unwrapUnderLmk(set, tpk, { usage: 'P0', modeOfUse: 'D' }),
      fails('POSKEY_ERR_KEY_MODE', 'A8'),
    );
    assert.throws(
      () => unwrapUnderLmk(set, tak, { exportable: true }),
      fails('POSKEY_ERR_KEY_NOT_EXPORTABLE', 'AA'),
    );
    assert.equal(toHex(unwrapUnderLmk(set, tpk, { exportable: true }).key), TPK);
  });

  it('detects a tampered block (A4), in the payload or in the header', () => {
    const set = lmks();
    const block = wrapUnderLmk(set, takSpec);
    const i = block.length - 40;
    const payload = block.slice(0, i) + (block[i] === '0' ? '1' : '0') + block.slice(i + 1);
    assert.throws(() => unwrapUnderLmk(set, payload), fails('POSKEY_ERR_TR31_MAC', 'A4'));
    const header = block.replace(/^(D\d{4})M3/, '$1P0');
    assert.throws(() => unwrapUnderLmk(set, header, { usage: 'P0' }), fails('POSKEY_ERR_TR31_MAC', 'A4'));
  });

  it('an unknown LMK id is POSKEY_ERR_LMK_UNKNOWN (13)', () => {
    const set = lmks();
    const block = wrapUnderLmk(set, { ...tpkSpec, lmkId: '01' });
    const only00 = new LmkSet([formLmk('00', [fromHex(C1), fromHex(C2)]).lmk]);
    assert.throws(() => unwrapUnderLmk(only00, block), fails('POSKEY_ERR_LMK_UNKNOWN', '13'));
    assert.throws(
      () => wrapUnderLmk(only00, { ...tpkSpec, lmkId: '05' }),
      fails('POSKEY_ERR_LMK_UNKNOWN', '13'),
    );
  });

  it('names a block made under a different LMK that shares the id (A3)', () => {
    const block = wrapUnderLmk(lmks(), tpkSpec);
    const other = new LmkSet([formLmk('00', [fromHex(C2), fromHex(C3)]).lmk]);
    assert.throws(() => unwrapUnderLmk(other, block), fails('POSKEY_ERR_LMK_BLOCK', 'A3'));
  });

  it('refuses blocks that are not LMK storage blocks', () => {
    const set = lmks();
    const kbpk = lmkKey(set.get('00'));
    const base: Tr31Header = {
      version: 'D',
      usage: 'P0',
      algorithm: 'T',
      modeOfUse: 'E',
      keyVersion: '00',
      exportability: 'E',
      keyContext: '1',
      optionalBlocks: [],
    };
    const noId = wrapKeyBlock({ kbpk, header: base, key: fromHex(TPK) });
    assert.throws(() => unwrapUnderLmk(set, noId), fails('POSKEY_ERR_LMK_BLOCK'));
    const exchange = wrapKeyBlock({
      kbpk,
      header: { ...base, keyContext: '2', optionalBlocks: [{ id: '90', data: '00' }] },
      key: fromHex(TPK),
    });
    assert.throws(() => unwrapUnderLmk(set, exchange), fails('POSKEY_ERR_LMK_BLOCK'));
    const badId = wrapKeyBlock({
      kbpk,
      header: { ...base, optionalBlocks: [{ id: '90', data: 'X' }] },
      key: fromHex(TPK),
    });
    assert.throws(() => unwrapUnderLmk(set, badId), fails('POSKEY_ERR_LMK_BLOCK'));
    const versionB = wrapKeyBlock({
      kbpk: createKey('tdes', fromHex(TAK)),
      header: { ...base, version: 'B', optionalBlocks: [{ id: '90', data: '00' }] },
      key: fromHex(TPK),
    });
    assert.throws(() => lmkIdOfBlock(versionB), fails('POSKEY_ERR_LMK_BLOCK'));
    assert.throws(() => unwrapUnderLmk(set, 'not a block'), fails('POSKEY_ERR_TR31_HEADER'));
  });

  it('refuses reserved optional block IDs in the caller blocks', () => {
    for (const id of ['90', '91', 'KP', 'PB']) {
      assert.throws(
        () => wrapUnderLmk(lmks(), { ...tpkSpec, optionalBlocks: [{ id, data: '00' }] }),
        fails('POSKEY_ERR_LMK_BLOCK'),
      );
    }
  });
});

describe('development LMK blocks', () => {
  it('blocks under a dev LMK carry the marker and say dev: true', () => {
    const set = new LmkSet([generateDevLmk('00')]);
    const block = wrapUnderLmk(set, tpkSpec);
    const h = parseHeader(block);
    assert.ok(isDevBlock(h));
    assert.deepEqual(
      h.optionalBlocks.find((b) => b.id === DEV_BLOCK),
      { id: DEV_BLOCK, data: 'DEV' },
    );
    assert.equal(unwrapUnderLmk(set, block).dev, true);
  });

  it('a marked block under a production LMK, or an unmarked one under a dev LMK, is refused', () => {
    const prod = lmks();
    const dev = new LmkSet([generateDevLmk('00')]);
    const header = (lmk: ReturnType<LmkSet['get']>, marked: boolean): Tr31Header => ({
      version: 'D',
      usage: 'P0',
      algorithm: 'T',
      modeOfUse: 'E',
      keyVersion: '00',
      exportability: 'E',
      keyContext: '1',
      optionalBlocks: [
        { id: '90', data: '00' },
        { id: 'KP', data: `01${lmk.kcv}` },
        ...(marked ? [{ id: '91', data: 'DEV' }] : []),
      ],
    });
    const marked = wrapKeyBlock({
      kbpk: lmkKey(prod.get()),
      header: header(prod.get(), true),
      key: fromHex(TPK),
    });
    assert.throws(() => unwrapUnderLmk(prod, marked), fails('POSKEY_ERR_LMK_DEV_BLOCK'));
    const unmarked = wrapKeyBlock({
      kbpk: lmkKey(dev.get()),
      header: header(dev.get(), false),
      key: fromHex(TPK),
    });
    assert.throws(() => unwrapUnderLmk(dev, unmarked), fails('POSKEY_ERR_LMK_DEV_BLOCK'));
  });

  it('keys never move between dev and production LMKs', () => {
    const set = lmks();
    set.add(generateDevLmk('09'));
    const devBlock = wrapUnderLmk(set, { ...tpkSpec, lmkId: '09' });
    assert.throws(() => rewrapToLmk(set, devBlock, '00'), fails('POSKEY_ERR_LMK_DEV_BLOCK'));
    const prodBlock = wrapUnderLmk(set, tpkSpec);
    assert.throws(() => rewrapToLmk(set, prodBlock, '09'), fails('POSKEY_ERR_LMK_DEV_BLOCK'));
  });
});

describe('LMK migration', () => {
  it('re-wraps a block to a new LMK; it survives the old LMK being unloaded', () => {
    const set = lmks();
    const old = wrapUnderLmk(set, { ...takSpec, optionalBlocks: [{ id: 'LB', data: 'MAK' }] });
    const moved = rewrapToLmk(set, old, '01');
    assert.equal(lmkIdOfBlock(moved), '01');
    const a = unwrapUnderLmk(set, old);
    const b = unwrapUnderLmk(set, moved);
    assert.equal(toHex(b.key), TAK);
    for (const f of ['usage', 'algorithm', 'modeOfUse', 'keyVersion', 'exportability'] as const) {
      assert.equal(b.header[f], a.header[f]);
    }
    assert.deepEqual(b.header.optionalBlocks[0], { id: 'LB', data: 'MAK' });
    set.remove('00');
    assert.equal(toHex(unwrapUnderLmk(set, moved).key), TAK);
    assert.throws(() => unwrapUnderLmk(set, old), fails('POSKEY_ERR_LMK_UNKNOWN'));
  });

  it('re-wraps to the default LMK when no id is given', () => {
    const set = lmks();
    set.setDefault('01');
    const block = wrapUnderLmk(set, { ...tpkSpec, lmkId: '00' });
    assert.equal(lmkIdOfBlock(rewrapToLmk(set, block)), '01');
  });

  it('re-wraps a whole key table, reporting the rows that fail', () => {
    const set = lmks();
    const good = [wrapUnderLmk(set, tpkSpec), wrapUnderLmk(set, takSpec)];
    const broken = `${good[0]!.slice(0, -1)}${good[0]!.endsWith('0') ? '1' : '0'}`;
    const { blocks, failures } = rewrapTable(set, [good[0]!, broken, good[1]!], '01');
    assert.deepEqual(failures, [{ index: 1, code: 'POSKEY_ERR_TR31_MAC' }]);
    assert.equal(blocks[1], broken);
    assert.deepEqual(
      blocks.map((b, i) => (i === 1 ? '-' : lmkIdOfBlock(b))),
      ['01', '-', '01'],
    );
    assert.equal(toHex(unwrapUnderLmk(set, blocks[2]!).key), TAK);
    assert.throws(() => rewrapTable(set, good, '42'), fails('POSKEY_ERR_LMK_UNKNOWN'));
  });
});

describe('keys through the cache', () => {
  it('unwraps once, then serves hits, enforcing the expectations on every call', () => {
    const set = lmks();
    const cache = new KeyCache<Tr31Header>(8);
    const tpk = wrapUnderLmk(set, tpkSpec);
    const a = resolveLmkKey(set, cache, tpk, { usage: 'P0', modeOfUse: 'E' });
    const b = resolveLmkKey(set, cache, tpk, { usage: 'P0' });
    assert.equal(a, b);
    assert.deepEqual({ hits: cache.stats().hits, misses: cache.stats().misses }, { hits: 1, misses: 1 });
    assert.throws(
      () => resolveLmkKey(set, cache, tpk, { usage: ['M1', 'M3'] }),
      fails('POSKEY_ERR_KEY_USAGE', 'A6'),
    );
    assert.equal(cache.stats().hits, 2);
  });

  it('a cached key whose LMK was unloaded is dropped and refused', () => {
    const set = lmks();
    const cache = new KeyCache<Tr31Header>(8);
    const block = wrapUnderLmk(set, { ...tpkSpec, lmkId: '01' });
    const entry = resolveLmkKey(set, cache, block);
    set.remove('01');
    assert.throws(() => resolveLmkKey(set, cache, block), fails('POSKEY_ERR_LMK_UNKNOWN'));
    assert.equal(entry.handle.destroyed, true);
    assert.equal(cache.size, 0);
  });

  it('a block that fails to unwrap is not cached', () => {
    const set = lmks();
    const cache = new KeyCache<Tr31Header>(8);
    const block = wrapUnderLmk(set, tpkSpec);
    const bad = `${block.slice(0, -1)}${block.endsWith('0') ? '1' : '0'}`;
    assert.throws(() => resolveLmkKey(set, cache, bad), fails('POSKEY_ERR_TR31_MAC'));
    assert.equal(cache.size, 0);
  });
});
