import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DIALECT_NAMES, getDialect, pack, unpack } from '../../src/iso8583/index.js';
import { message } from './arbitraries.js';

describe('property: random valid messages round-trip', () => {
  for (const name of DIALECT_NAMES) {
    it(`${name}: unpack(pack(m)) deep-equals m, and pack(unpack(b)) equals b`, () => {
      const d = getDialect(name);
      fc.assert(
        fc.property(message(d), (m) => {
          const bytes = pack(d, m);
          const back = unpack(d, bytes);
          assert.deepStrictEqual(back, m);
          assert.ok(pack(d, back).equals(bytes));
        }),
        { numRuns: 400 },
      );
    });
  }

  it('pad F frames read under the pad-0 dialect repack to the same bytes', () => {
    const pad0 = getDialect('unionpay-pos');
    const padF = getDialect('unionpay-pos-padF');
    fc.assert(
      fc.property(message(padF), (m) => {
        const bytes = pack(padF, m);
        const back = unpack(pad0, bytes);
        assert.deepStrictEqual(back, m);
        assert.ok(pack(pad0, back).equals(bytes));
      }),
      { numRuns: 300 },
    );
  });

  it('network and network-hex carry the same message', () => {
    const bin = getDialect('network');
    const hex = getDialect('network-hex');
    fc.assert(
      fc.property(message(bin), (m) => {
        assert.deepStrictEqual(unpack(hex, pack(hex, m)), unpack(bin, pack(bin, m)));
      }),
      { numRuns: 100 },
    );
  });
});
