import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DIALECT_NAMES, getDialect, IsoError, IsoErrorCode, pack, unpack } from '../../src/iso8583/index.js';
import { loadVectors } from '../helpers/vectors.js';
import { message } from './arbitraries.js';

/** Deterministic xorshift32, so a failure reproduces from the printed iteration number. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

function mutate(seed: Uint8Array, r: (n: number) => number): Uint8Array {
  const b = Buffer.from(seed);
  const kind = r(7);
  if (b.length === 0 || kind === 0) return Buffer.from(Array.from({ length: r(300) }, () => r(256)));
  const at = r(b.length);
  switch (kind) {
    case 1: // flip one bit
      b[at]! ^= 1 << r(8);
      return b;
    case 2: // overwrite a few bytes
      for (let i = 0, n = 1 + r(4); i < n; i++) b[r(b.length)] = r(256);
      return b;
    case 3: // truncate
      return b.subarray(0, at);
    case 4: // append junk
      return Buffer.concat([b, Buffer.from(Array.from({ length: 1 + r(20) }, () => r(256)))]);
    case 5: // length-prefix style hits: 0x99, 0xFF, 0x00 at a random place
      b[at] = [0x00, 0x99, 0xff, 0x80, 0x81][r(5)]!;
      return b;
    default: // delete a slice
      return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + r(8)))]);
  }
}

const CODES = new Set<string>(Object.values(IsoErrorCode));

describe('fuzz: random and mutated frames', () => {
  it('100,000 frames give only typed errors, and whatever decodes repacks to the same bytes', () => {
    const dialects = DIALECT_NAMES.map((n) => getDialect(n));
    const { vectors } = loadVectors<{ dialect: string; hex: string }>('iso8583-golden.json');
    const seeds = dialects.map((d) => [
      ...vectors.filter((v) => v.dialect === d.name).map((v) => Buffer.from(v.hex, 'hex')),
      ...fc.sample(message(d), { numRuns: 40, seed: 7 }).map((m) => pack(d, m)),
    ]);
    const r = rng(0x8583);
    const seen = new Map<string, number>();
    const started = performance.now();
    let slowest = 0;
    for (let i = 0; i < 100_000; i++) {
      const which = i % dialects.length;
      const d = dialects[which]!;
      const pool = seeds[which]!;
      let frame = mutate(pool[r(pool.length)]!, r);
      if (r(4) === 0) frame = mutate(frame, r);
      const t0 = performance.now();
      try {
        const msg = unpack(d, frame);
        const again = pack(d, msg);
        assert.ok(
          again.equals(frame),
          `iteration ${i}: ${d.name} repacked ${Buffer.from(frame).toString('hex')} differently`,
        );
        seen.set('ok', (seen.get('ok') ?? 0) + 1);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(
          e instanceof IsoError,
          `iteration ${i}: untyped ${String(e)} for ${Buffer.from(frame).toString('hex')}`,
        );
        assert.ok(CODES.has(e.code), `iteration ${i}: unexpected code ${e.code}`);
        assert.ok(
          e.offset === undefined || (e.offset >= 0 && e.offset <= frame.length),
          `iteration ${i}: offset ${e.offset}`,
        );
        seen.set(e.code, (seen.get(e.code) ?? 0) + 1);
      }
      slowest = Math.max(slowest, performance.now() - t0);
    }
    const elapsed = performance.now() - started;
    if (process.env.FUZZ_STATS) console.log(JSON.stringify([...seen]), elapsed, slowest);
    assert.ok(elapsed < 60_000, `took ${elapsed} ms`);
    assert.ok(slowest < 250, `one frame took ${slowest} ms`);
    // The corpus must reach the interesting paths, not just fail at the MTI.
    for (const code of [
      'ok',
      IsoErrorCode.TRUNCATED,
      IsoErrorCode.LENGTH,
      IsoErrorCode.ENCODING,
      IsoErrorCode.BITMAP,
      IsoErrorCode.UNKNOWN_FIELD,
      IsoErrorCode.TLV,
      IsoErrorCode.MTI,
      IsoErrorCode.TRAILING,
    ]) {
      assert.ok((seen.get(code) ?? 0) > 0, `no frame produced ${code}: ${JSON.stringify([...seen])}`);
    }
  });
});
