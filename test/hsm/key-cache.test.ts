import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createKey, type KeyHandle } from '../../src/crypto/cipher.js';
import { PoskeyError } from '../../src/errors.js';
import { type CachedKey, KeyCache } from '../../src/hsm/key-cache.js';

function entry(byte: number, lmkId = '00'): CachedKey<{ usage: string }> {
  return { handle: createKey('aes', Buffer.alloc(16, byte)), header: { usage: 'P0' }, lmkId };
}

function loader(made: KeyHandle[], lmkId = '00') {
  return (block: string) => {
    const e = entry(block.charCodeAt(0), lmkId);
    made.push(e.handle);
    return e;
  };
}

describe('KeyCache', () => {
  it('loads on a miss, returns the same entry on a hit, and counts both', () => {
    const cache = new KeyCache(4);
    const made: KeyHandle[] = [];
    const a1 = cache.get('A', loader(made));
    const a2 = cache.get('A', loader(made));
    assert.equal(a1, a2);
    assert.equal(made.length, 1);
    assert.deepEqual(cache.stats(), { size: 1, capacity: 4, hits: 1, misses: 1, evictions: 0 });
  });

  it('evicts the least recently used entry and zeroises its handle', () => {
    const cache = new KeyCache(2);
    const made: KeyHandle[] = [];
    const a = cache.get('A', loader(made));
    const b = cache.get('B', loader(made));
    cache.get('A', loader(made)); // A is now more recent than B
    const c = cache.get('C', loader(made));
    assert.equal(b.handle.destroyed, true);
    assert.throws(
      () => b.handle.exportKeyBytes(),
      (e: unknown) => e instanceof PoskeyError,
    );
    assert.equal(a.handle.destroyed, false);
    assert.equal(c.handle.destroyed, false);
    assert.equal(cache.has('B'), false);
    assert.deepEqual(cache.stats().evictions, 1);
  });

  it('a failing load caches nothing', () => {
    const cache = new KeyCache(2);
    assert.throws(() =>
      cache.get('X', () => {
        throw new Error('bad block');
      }),
    );
    assert.equal(cache.size, 0);
    assert.equal(cache.stats().misses, 1);
  });

  it('reloads an entry whose handle was destroyed behind its back', () => {
    const cache = new KeyCache(2);
    const made: KeyHandle[] = [];
    cache.get('A', loader(made)).handle.destroy();
    const again = cache.get('A', loader(made));
    assert.equal(again.handle.destroyed, false);
    assert.equal(made.length, 2);
  });

  it('delete, dropLmk and clear zeroise what they drop', () => {
    const cache = new KeyCache(10);
    const old: KeyHandle[] = [];
    const cur: KeyHandle[] = [];
    for (const b of ['A', 'B']) cache.get(b, loader(old, '00'));
    for (const b of ['C', 'D', 'E']) cache.get(b, loader(cur, '01'));
    assert.equal(cache.delete('E'), true);
    assert.equal(cache.delete('E'), false);
    assert.equal(cur[2]!.destroyed, true);
    assert.equal(cache.dropLmk('00'), 2);
    assert.ok(old.every((h) => h.destroyed));
    assert.equal(cache.peek('C')?.lmkId, '01');
    cache.clear();
    assert.ok(cur.every((h) => h.destroyed));
    assert.equal(cache.size, 0);
  });

  it('never holds more than its capacity, and every evicted handle is destroyed (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.constantFrom(...'ABCDEFGHIJKL'), { maxLength: 60 }),
        (cap, blocks) => {
          const cache = new KeyCache(cap);
          const made = new Map<string, KeyHandle[]>();
          for (const b of blocks) {
            cache.get(b, (blk) => {
              const e = entry(blk.charCodeAt(0));
              made.set(blk, [...(made.get(blk) ?? []), e.handle]);
              return e;
            });
            assert.ok(cache.size <= cap);
          }
          for (const [b, hs] of made) {
            const live = hs.filter((h) => !h.destroyed);
            // Only the cached handle of a block may still be alive.
            assert.ok(live.length <= 1);
            assert.equal(live.length === 1, cache.has(b));
          }
          const s = cache.stats();
          assert.equal(s.hits + s.misses, blocks.length);
        },
      ),
    );
  });

  it('rejects a capacity that is not a positive integer', () => {
    for (const c of [0, -1, 1.5, Number.NaN]) {
      assert.throws(
        () => new KeyCache(c),
        (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_CACHE_CAPACITY',
      );
    }
  });
});
