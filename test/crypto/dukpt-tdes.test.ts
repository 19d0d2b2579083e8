import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey, encrypt } from '../../src/crypto/cipher.js';
import {
  DUKPT_TDES_MAX_COUNTER,
  DUKPT_TDES_VARIANTS,
  DukptTdesDevice,
  type DukptTdesKeyType,
  deriveHostKey,
  deriveIpek,
  deriveTransactionKey,
  deriveTransactionKeyFromBdk,
  deriveWorkingKey,
  initialKsn,
  ksnCounter,
  ksnWithCounter,
  nextCounter,
} from '../../src/crypto/dukpt-tdes.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

interface TdesRow {
  clause: 'A.4.2' | 'A.4.3';
  ksn: string;
  transactionKey: string;
  encryptedPinBlock: string;
  pinKey?: string;
  dataRequestKey?: string;
  requestMac?: string;
  responseMac?: string;
  dataRequest?: string;
  dataResponse?: string;
}

const file = loadVectors<TdesRow>('dukpt-tdes.json') as ReturnType<typeof loadVectors<TdesRow>> & {
  bdk: string;
  iksn: string;
  ipek: string;
  clearPinBlock: string;
  data: string;
};
const BDK = fromHex(file.bdk);
const IKSN = fromHex(file.iksn);
const IPEK = fromHex(file.ipek);
const CLEAR_PIN_BLOCK = fromHex(file.clearPinBlock);
const DATA = Buffer.from(file.data, 'ascii');
const initialRows = file.vectors.filter((v) => v.clause === 'A.4.2');
const rolloverRows = file.vectors.filter((v) => v.clause === 'A.4.3');

function fails(code: string, field?: string) {
  return (e: unknown) =>
    e instanceof PoskeyError && e.code === code && (field === undefined || e.field === field);
}

function zeroPad(data: Uint8Array, block: number): Buffer {
  const out = Buffer.alloc(Math.ceil(data.length / block) * block);
  out.set(data);
  return out;
}

/** ANSI X9.19 retail MAC (ISO 9797-1 alg 3, padding 1) from single-DES handles; mac.ts is not ours. */
function retailMac(key: Uint8Array, data: Uint8Array): Buffer {
  const kl = createKey('des', key.subarray(0, 8));
  const kr = createKey('des', key.subarray(8, 16));
  const chain = kl.cbcEncrypt(zeroPad(data, 8));
  return kl.ecbEncrypt(kr.ecbDecrypt(chain.subarray(chain.length - 8)));
}

describe('TDES DUKPT: X9.24-1:2009 A.4 host derivation', () => {
  it('derives the IPEK from the BDK and the initial KSN', () => {
    assert.equal(toHex(deriveIpek(BDK, IKSN)), file.ipek);
  });

  it('ignores the counter bits when deriving the IPEK', () => {
    for (const v of file.vectors) assert.equal(toHex(deriveIpek(BDK, fromHex(v.ksn))), file.ipek);
  });

  for (const v of file.vectors) {
    it(`${v.clause} ${v.ksn}: transaction key, PIN key, encrypted PIN block`, () => {
      const ksn = fromHex(v.ksn);
      const key = deriveTransactionKey(IPEK, ksn);
      assert.equal(toHex(key), v.transactionKey);
      assert.equal(toHex(deriveTransactionKeyFromBdk(BDK, ksn)), v.transactionKey);
      const pinKey = deriveWorkingKey(key, 'pin');
      if (v.pinKey) assert.equal(toHex(pinKey), v.pinKey);
      assert.equal(toHex(encrypt('tdes', 'ecb', pinKey, CLEAR_PIN_BLOCK)), v.encryptedPinBlock);
    });
  }

  for (const v of file.vectors.filter((r) => r.requestMac !== undefined)) {
    it(`${v.ksn}: MAC and data keys reproduce the request/response MACs and ciphertexts`, () => {
      const key = fromHex(v.transactionKey);
      if (v.dataRequestKey) assert.equal(toHex(deriveWorkingKey(key, 'data')), v.dataRequestKey);
      assert.equal(toHex(retailMac(deriveWorkingKey(key, 'mac'), DATA)), v.requestMac);
      assert.equal(toHex(retailMac(deriveWorkingKey(key, 'mac-response'), DATA)), v.responseMac);
      const padded = zeroPad(DATA, 8);
      assert.equal(toHex(encrypt('tdes', 'cbc', deriveWorkingKey(key, 'data'), padded)), v.dataRequest);
      assert.equal(
        toHex(encrypt('tdes', 'cbc', deriveWorkingKey(key, 'data-response'), padded)),
        v.dataResponse,
      );
    });
  }

  it('deriveHostKey returns the IPEK, transaction key and working key together', () => {
    const v = initialRows[0]!;
    const host = deriveHostKey(BDK, fromHex(v.ksn), 'pin');
    assert.equal(toHex(host.ipek), file.ipek);
    assert.equal(toHex(host.transactionKey), v.transactionKey);
    assert.equal(toHex(host.key), v.pinKey);
  });

  it('gives every working key type a distinct key, data keys differing from their plain variant', () => {
    const key = fromHex(initialRows[0]!.transactionKey);
    const types: DukptTdesKeyType[] = ['pin', 'mac', 'mac-response', 'data', 'data-response'];
    const keys = types.map((t) => toHex(deriveWorkingKey(key, t)));
    assert.equal(new Set(keys).size, types.length);
    // The one-way step must have run: the data keys are not the bare variants.
    assert.notEqual(keys[3], toHex(xor(key, fromHex(DUKPT_TDES_VARIANTS.data))));
    assert.notEqual(keys[4], toHex(xor(key, fromHex(DUKPT_TDES_VARIANTS['data-response']))));
    assert.equal(keys[0], toHex(xor(key, fromHex(DUKPT_TDES_VARIANTS.pin))));
  });

  it('does not modify caller buffers', () => {
    const ipek = Buffer.from(IPEK);
    const ksn = fromHex(initialRows[4]!.ksn);
    const before = toHex(ksn);
    const key = deriveTransactionKey(ipek, ksn);
    const copy = Buffer.from(key);
    deriveWorkingKey(key, 'data');
    assert.equal(toHex(ipek), file.ipek);
    assert.equal(toHex(ksn), before);
    assert.deepEqual(key, copy);
  });
});

describe('TDES DUKPT: KSN handling', () => {
  it('reads and replaces the 21-bit counter', () => {
    assert.equal(ksnCounter(fromHex('FFFF9876543210E00015')), 0x15);
    assert.equal(ksnCounter(fromHex('FFFF9876543210FFFFFF')), 0x1fffff);
    assert.equal(toHex(initialKsn(fromHex('FFFF9876543210EFF800'))), 'FFFF9876543210E00000');
    assert.equal(toHex(ksnWithCounter(IKSN, 0x1ff800)), 'FFFF9876543210FFF800');
  });

  it('steps through the A.4.2 and A.4.3 KSN sequences, skipping counters with more than 10 one-bits', () => {
    let c = 0;
    for (const v of initialRows) {
      c = nextCounter(c);
      assert.equal(toHex(ksnWithCounter(IKSN, c)), v.ksn);
    }
    c = ksnCounter(fromHex(rolloverRows[0]!.ksn));
    for (const v of rolloverRows.slice(1)) {
      c = nextCounter(c);
      assert.equal(toHex(ksnWithCounter(IKSN, c)), v.ksn);
    }
  });

  it('ends after 0x1FF800', () => {
    assert.equal(nextCounter(0x1ff7ff), DUKPT_TDES_MAX_COUNTER);
    assert.throws(() => nextCounter(DUKPT_TDES_MAX_COUNTER), fails('POSKEY_ERR_DUKPT_EXHAUSTED'));
  });
});

describe('TDES DUKPT: device (future key registers)', () => {
  it('produces the 21 A.4.2 KSNs and transaction keys from a fresh IPEK load', () => {
    const device = new DukptTdesDevice(IPEK, IKSN);
    for (const v of initialRows) {
      const { ksn, key } = device.nextKey();
      assert.equal(toHex(ksn), v.ksn);
      assert.equal(toHex(key), v.transactionKey);
      assert.equal(
        toHex(encrypt('tdes', 'ecb', device.workingKey('pin'), CLEAR_PIN_BLOCK)),
        v.encryptedPinBlock,
      );
    }
    assert.equal(device.nextCounter, 0x16);
  });

  it('produces the A.4.3 rollover sequence when started at its first KSN', () => {
    const device = new DukptTdesDevice(IPEK, fromHex(rolloverRows[0]!.ksn));
    for (const v of rolloverRows) {
      const { ksn, key } = device.nextKey('pin');
      assert.equal(toHex(ksn), v.ksn);
      assert.equal(toHex(encrypt('tdes', 'ecb', key, CLEAR_PIN_BLOCK)), v.encryptedPinBlock);
      assert.equal(toHex(device.transactionKey()), v.transactionKey);
    }
  });

  it('uses 0x1FF800 last, then refuses with POSKEY_ERR_DUKPT_EXHAUSTED', () => {
    const device = new DukptTdesDevice(IPEK, ksnWithCounter(IKSN, 0x1ff000));
    const seen: number[] = [];
    while (!device.exhausted) seen.push(ksnCounter(device.next()));
    assert.equal(seen.length, 13); // 1FF000, then +1, +2, +4 … +400, then 1FF800 (same shape as A.4.3)
    assert.deepEqual(seen.slice(-3), [0x1ff200, 0x1ff400, 0x1ff800]);
    for (let i = 1; i < seen.length; i++) assert.equal(seen[i], nextCounter(seen[i - 1]!));
    assert.equal(device.nextCounter, undefined);
    assert.equal(
      toHex(device.transactionKey()),
      toHex(deriveTransactionKey(IPEK, ksnWithCounter(IKSN, 0x1ff800))),
    );
    assert.throws(() => device.next(), fails('POSKEY_ERR_DUKPT_EXHAUSTED', 'ksn'));
  });

  it('agrees with the host for random IPEKs, KSNs and start counters (property)', () => {
    const validCounter = fc
      .integer({ min: 0, max: DUKPT_TDES_MAX_COUNTER })
      .filter((c) => c.toString(2).replace(/0/g, '').length <= 10);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 10, maxLength: 10 }),
        validCounter,
        fc.integer({ min: 1, max: 24 }),
        (ipek, ksnBytes, start, steps) => {
          const base = ksnWithCounter(ksnBytes, start);
          const device = new DukptTdesDevice(ipek, base);
          let expected = start === 0 ? 1 : start;
          for (let i = 0; i < steps && !device.exhausted; i++) {
            const { ksn, key } = device.nextKey();
            assert.equal(ksnCounter(ksn), expected);
            assert.deepEqual(key, deriveTransactionKey(ipek, ksn));
            assert.deepEqual(device.workingKey('data'), deriveWorkingKey(key, 'data'));
            if (expected === DUKPT_TDES_MAX_COUNTER) break;
            expected = nextCounter(expected);
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('hands out copies: a caller zeroising its key does not disturb the device', () => {
    const device = new DukptTdesDevice(IPEK, IKSN);
    const first = device.nextKey().key;
    first.fill(0);
    assert.equal(toHex(device.transactionKey()), initialRows[0]!.transactionKey);
    assert.equal(toHex(device.nextKey().key), initialRows[1]!.transactionKey);
  });

  it('keeps keys out of JSON, inspect and toString', () => {
    const device = new DukptTdesDevice(IPEK, IKSN);
    device.next();
    const shown = [JSON.stringify(device), inspect(device), String(device)].join(' ');
    assert.ok(!shown.includes(file.ipek));
    for (const v of initialRows) assert.ok(!shown.includes(v.transactionKey.slice(0, 12)));
    assert.deepEqual(device.toJSON(), { iksn: file.iksn, nextCounter: 2, exhausted: false });
  });

  it('exposes the KSN in progress and nothing before the first transaction', () => {
    const device = new DukptTdesDevice(IPEK, IKSN);
    assert.equal(device.ksn, undefined);
    device.next();
    assert.equal(toHex(device.ksn!), initialRows[0]!.ksn);
  });
});

describe('TDES DUKPT: errors', () => {
  const key = fromHex(initialRows[0]!.transactionKey);

  it('POSKEY_ERR_KSN for KSNs that are not 10 bytes (short 8-byte KSNs included)', () => {
    for (const bad of [fromHex('9876543210E00001'), Buffer.alloc(11), Buffer.alloc(0)]) {
      assert.throws(() => deriveIpek(BDK, bad), fails('POSKEY_ERR_KSN', 'ksn'));
      assert.throws(() => deriveTransactionKey(IPEK, bad), fails('POSKEY_ERR_KSN', 'ksn'));
      assert.throws(() => new DukptTdesDevice(IPEK, bad), fails('POSKEY_ERR_KSN', 'ksn'));
    }
  });

  it('POSKEY_ERR_KSN for a zero counter or one with more than 10 one-bits', () => {
    assert.throws(() => deriveTransactionKey(IPEK, IKSN), fails('POSKEY_ERR_KSN', 'ksn'));
    const elevenBits = ksnWithCounter(IKSN, 0x7ff);
    assert.throws(() => deriveTransactionKey(IPEK, elevenBits), fails('POSKEY_ERR_KSN', 'ksn'));
    assert.throws(() => deriveHostKey(BDK, elevenBits, 'pin'), fails('POSKEY_ERR_KSN', 'ksn'));
    assert.throws(() => new DukptTdesDevice(IPEK, elevenBits), fails('POSKEY_ERR_KSN', 'ksn'));
  });

  it('POSKEY_ERR_KSN for counters outside 21 bits', () => {
    for (const c of [-1, 0x200000, 1.5]) {
      assert.throws(() => ksnWithCounter(IKSN, c), fails('POSKEY_ERR_KSN', 'counter'));
      assert.throws(() => nextCounter(c), fails('POSKEY_ERR_KSN', 'counter'));
    }
  });

  it('POSKEY_ERR_TYPE when a KSN is not bytes', () => {
    assert.throws(
      () => ksnCounter('FFFF9876543210E00001' as unknown as Uint8Array),
      fails('POSKEY_ERR_TYPE'),
    );
  });

  it('POSKEY_ERR_LENGTH for BDKs, IPEKs and transaction keys that are not 16 bytes', () => {
    assert.throws(() => deriveIpek(Buffer.alloc(24), IKSN), fails('POSKEY_ERR_LENGTH', 'bdk'));
    assert.throws(
      () => deriveTransactionKey(Buffer.alloc(8), fromHex('FFFF9876543210E00001')),
      fails('POSKEY_ERR_LENGTH', 'ipek'),
    );
    assert.throws(() => new DukptTdesDevice(Buffer.alloc(24), IKSN), fails('POSKEY_ERR_LENGTH', 'ipek'));
    assert.throws(
      () => deriveWorkingKey(Buffer.alloc(8), 'pin'),
      fails('POSKEY_ERR_LENGTH', 'transactionKey'),
    );
  });

  it('POSKEY_ERR_DUKPT_KEY_TYPE for an unknown working key type, without the key in the message', () => {
    for (const t of ['kek', 'toString', '']) {
      assert.throws(
        () => deriveWorkingKey(key, t as DukptTdesKeyType),
        (e: unknown) =>
          fails('POSKEY_ERR_DUKPT_KEY_TYPE', 'type')(e) &&
          !(e as Error).message.includes(toHex(key).slice(0, 8)),
      );
    }
  });

  it('POSKEY_ERR_DUKPT_STATE before the first transaction', () => {
    const device = new DukptTdesDevice(IPEK, IKSN);
    assert.throws(() => device.transactionKey(), fails('POSKEY_ERR_DUKPT_STATE'));
    assert.throws(() => device.workingKey('pin'), fails('POSKEY_ERR_DUKPT_STATE'));
  });

  it('POSKEY_ERR_KEY_DESTROYED after destroy()', () => {
    const device = new DukptTdesDevice(IPEK, IKSN);
    device.next();
    device.destroy();
    assert.throws(() => device.next(), fails('POSKEY_ERR_KEY_DESTROYED'));
    assert.throws(() => device.workingKey('pin'), fails('POSKEY_ERR_KEY_DESTROYED'));
  });
});
