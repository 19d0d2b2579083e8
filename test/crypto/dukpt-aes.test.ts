import assert from 'node:assert/strict';
import { createCipheriv, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { fromHex, toHex, xor } from '../../src/crypto/bytes.js';
import { createKey, encrypt } from '../../src/crypto/cipher.js';
import { cmac } from '../../src/crypto/cmac.js';
import {
  AES_DUKPT_KEY_TYPES,
  AES_DUKPT_USAGE_CODES,
  type AesDukptKeyType,
  type AesDukptKeyUsage,
  DUKPT_AES_MAX_COUNTER,
  DukptAesDevice,
  deriveDerivationKey,
  deriveHostKey,
  deriveInitialKey,
  deriveWorkingKey,
  initialKeyId,
  ksnCounter,
  makeKsn,
  nextCounter,
} from '../../src/crypto/dukpt-aes.js';
import { PoskeyError } from '../../src/errors.js';
import { loadVectors } from '../helpers/vectors.js';

interface WorkingKeyRow {
  usage: AesDukptKeyUsage;
  keyType: AesDukptKeyType;
  key: string;
}

interface AesRow {
  kind: 'initial-key' | 'transaction' | 'rejected';
  ref: string;
  bdk: string;
  initialKeyId?: string;
  initialKey?: string;
  ksn?: string;
  derivationKey?: string;
  workingKeys?: WorkingKeyRow[];
  encryptedPinBlock?: string;
  cmacRequest?: string;
  cmacResponse?: string;
  hmacRequest?: string;
  hmacResponse?: string;
  dataRequest?: string;
  dataResponse?: string;
}

const file = loadVectors<AesRow>('dukpt-aes.json') as ReturnType<typeof loadVectors<AesRow>> & {
  pinField: string;
  panField: string;
  data: string;
};
const DATA = Buffer.from(file.data, 'ascii');
const IKID = fromHex('1234567890123456');
const rows = (kind: AesRow['kind']) => file.vectors.filter((v) => v.kind === kind);
const initialKeyOf = (bdk: string) => fromHex(rows('initial-key').find((v) => v.bdk === bdk)!.initialKey!);
const BDK128 = fromHex(rows('initial-key')[0]!.bdk);
const IK128 = initialKeyOf(toHex(BDK128));
const firstEight = (bdk: string) =>
  rows('transaction').filter((v) => v.bdk === bdk && ksnCounter(fromHex(v.ksn!)) <= 8);

function fails(code: string, field?: string) {
  return (e: unknown) =>
    e instanceof PoskeyError && e.code === code && (field === undefined || e.field === field);
}

function zeroPad(data: Uint8Array, block: number): Buffer {
  const out = Buffer.alloc(Math.ceil(data.length / block) * block);
  out.set(data);
  return out;
}

/**
 * Slow, separately written reference of X9.24-3 6.3 for differential tests: derivation data built
 * as hex text, one fresh node:crypto cipher per block, and the derivation key defined recursively
 * (the key of a counter comes from the key of that counter minus its lowest one-bit).
 */
const reference = {
  block(key: string, dataHex: string): string {
    const c = createCipheriv(`aes-${key.length * 4}-ecb`, Buffer.from(key, 'hex'), null);
    c.setAutoPadding(false);
    return Buffer.concat([c.update(Buffer.from(dataHex, 'hex')), c.final()]).toString('hex');
  },
  derive(key: string, usage: number, algorithm: number, bits: number, ksnData: string): string {
    const hex = (n: number, digits: number) => n.toString(16).padStart(digits, '0');
    let out = '';
    for (let i = 1; i <= Math.ceil(bits / 128); i++) {
      out += reference.block(
        key,
        `01${hex(i, 2)}${hex(usage, 4)}${hex(algorithm, 4)}${hex(bits, 4)}${ksnData}`,
      );
    }
    return out.slice(0, bits / 4).toUpperCase();
  },
  aesType(key: string): { algorithm: number; bits: number } {
    return {
      32: { algorithm: 2, bits: 128 },
      48: { algorithm: 3, bits: 192 },
      64: { algorithm: 4, bits: 256 },
    }[key.length]!;
  },
  derivationKey(ik: string, ikid: string, counter: number): string {
    if (counter === 0) return ik;
    const parent = counter - ((counter & -counter) >>> 0);
    const t = reference.aesType(ik);
    const data = ikid.slice(8) + counter.toString(16).padStart(8, '0');
    return reference.derive(reference.derivationKey(ik, ikid, parent), 0x8000, t.algorithm, t.bits, data);
  },
};

describe('AES DUKPT: X9.24-3:2017 supplement vectors', () => {
  for (const v of rows('initial-key')) {
    it(`initial key: ${v.ref}`, () => {
      assert.equal(toHex(deriveInitialKey(fromHex(v.bdk), fromHex(v.initialKeyId!))), v.initialKey);
    });
  }

  for (const v of rows('transaction')) {
    it(`AES-${v.bdk.length * 2} BDK, KSN ${v.ksn}: derivation key${v.workingKeys ? ' and working keys' : ''}`, () => {
      const ksn = fromHex(v.ksn!);
      const dk = deriveDerivationKey(initialKeyOf(v.bdk), ksn);
      assert.equal(toHex(dk), v.derivationKey);
      for (const w of v.workingKeys ?? []) {
        assert.equal(toHex(deriveWorkingKey(dk, ksn, w.usage, w.keyType)), w.key, `${w.usage} ${w.keyType}`);
      }
    });
  }

  for (const v of rows('transaction').filter((r) => r.encryptedPinBlock !== undefined)) {
    it(`KSN ${v.ksn}: host keys reproduce the format 4 PIN block, CMACs, HMACs and data ciphertexts`, () => {
      const ksn = fromHex(v.ksn!);
      const host = deriveHostKey(fromHex(v.bdk), ksn, 'pin', 'aes128');
      assert.equal(toHex(host.initialKey), toHex(IK128));
      assert.equal(toHex(host.derivationKey), v.derivationKey);
      const pin = createKey('aes', host.key);
      const block = pin.ecbEncrypt(xor(pin.ecbEncrypt(fromHex(file.pinField)), fromHex(file.panField)));
      assert.equal(toHex(block), v.encryptedPinBlock);

      const wk = (usage: AesDukptKeyUsage, type: AesDukptKeyType) =>
        deriveWorkingKey(host.derivationKey, ksn, usage, type);
      assert.equal(toHex(cmac(createKey('aes', wk('mac-gen', 'aes128')), DATA)), v.cmacRequest);
      assert.equal(toHex(cmac(createKey('aes', wk('mac-verify', 'aes128')), DATA)), v.cmacResponse);
      const hmac = (k: Buffer) => toHex(createHmac('sha256', k).update(DATA).digest());
      assert.equal(hmac(wk('mac-gen', 'hmac128')), v.hmacRequest);
      assert.equal(hmac(wk('mac-verify', 'hmac128')), v.hmacResponse);
      const padded = zeroPad(DATA, 16);
      assert.equal(toHex(encrypt('aes', 'cbc', wk('data-encrypt', 'aes128'), padded)), v.dataRequest);
      assert.equal(toHex(encrypt('aes', 'cbc', wk('data-decrypt', 'aes128'), padded)), v.dataResponse);
    });
  }

  for (const v of rows('rejected')) {
    it(`rejects KSN ${v.ksn} (17 one-bits), whose key the slow reference reproduces`, () => {
      const ksn = fromHex(v.ksn!);
      assert.throws(() => deriveDerivationKey(initialKeyOf(v.bdk), ksn), fails('POSKEY_ERR_KSN', 'ksn'));
      assert.throws(
        () => deriveHostKey(fromHex(v.bdk), ksn, 'pin', 'aes128'),
        fails('POSKEY_ERR_KSN', 'ksn'),
      );
      // The published key is reachable by the algorithm itself; only the counter rule forbids it.
      const ik = toHex(initialKeyOf(v.bdk));
      assert.equal(reference.derivationKey(ik, toHex(IKID), ksnCounter(ksn)), v.derivationKey);
    });
  }
});

const allUsages = Object.keys(AES_DUKPT_USAGE_CODES) as AesDukptKeyUsage[];
const allTypes = Object.keys(AES_DUKPT_KEY_TYPES) as AesDukptKeyType[];
const aesKey = fc.constantFrom(16, 24, 32).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));
const validCounter = fc
  .integer({ min: 1, max: DUKPT_AES_MAX_COUNTER })
  .filter((c) => c.toString(2).replace(/0/g, '').length <= 16);

describe('AES DUKPT: host derivation against the slow reference', () => {
  it('matches for every usage and allowed key type, any BDK length, any valid counter (property)', () => {
    fc.assert(
      fc.property(
        aesKey,
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        validCounter,
        fc.constantFrom(...allUsages),
        fc.constantFrom(...allTypes),
        (bdk, ikid, counter, usage, keyType) => {
          const spec = AES_DUKPT_KEY_TYPES[keyType];
          fc.pre(spec.bits <= bdk.length * 8);
          const ksn = makeKsn(ikid, counter);
          const host = deriveHostKey(bdk, ksn, usage, keyType);
          const t = reference.aesType(toHex(bdk));
          const ik = reference.derive(toHex(bdk), 0x8001, t.algorithm, t.bits, toHex(ikid));
          assert.equal(toHex(host.initialKey), ik);
          const dk = reference.derivationKey(ik, toHex(ikid), counter);
          assert.equal(toHex(host.derivationKey), dk);
          const data = toHex(ikid).slice(8) + counter.toString(16).padStart(8, '0');
          const expected = reference.derive(
            dk,
            AES_DUKPT_USAGE_CODES[usage],
            spec.algorithm,
            spec.bits,
            data,
          );
          assert.equal(toHex(host.key), expected);
          assert.equal(host.key.length * 8, spec.bits);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('derives TDES working keys of 16 and 24 bytes (tdes2 from AES-128, tdes3 from AES-192)', () => {
    const ksn = makeKsn(IKID, 1);
    const dk = deriveDerivationKey(IK128, ksn);
    const tdes2 = deriveWorkingKey(dk, ksn, 'pin', 'tdes2');
    assert.equal(tdes2.length, 16);
    // Same derivation data except the algorithm field, so it must differ from the AES-128 PIN key.
    assert.notEqual(toHex(tdes2), toHex(deriveWorkingKey(dk, ksn, 'pin', 'aes128')));
    const host192 = deriveHostKey(Buffer.alloc(24, 7), ksn, 'data', 'tdes3');
    assert.equal(host192.key.length, 24);
    assert.equal(host192.initialKey.length, 24);
  });

  it('does not modify caller buffers', () => {
    const ik = Buffer.from(IK128);
    const ksn = makeKsn(IKID, 5);
    const dk = deriveDerivationKey(ik, ksn);
    const dkCopy = Buffer.from(dk);
    deriveWorkingKey(dk, ksn, 'pin', 'aes128');
    assert.deepEqual(ik, IK128);
    assert.equal(toHex(ksn), '123456789012345600000005');
    assert.deepEqual(dk, dkCopy);
  });
});

describe('AES DUKPT: KSN handling', () => {
  it('reads the counter and the Initial Key ID', () => {
    const ksn = fromHex('1234567890123456FFFE2000');
    assert.equal(ksnCounter(ksn), 0xfffe2000);
    assert.equal(toHex(initialKeyId(ksn)), '1234567890123456');
    assert.equal(toHex(makeKsn(IKID, 0xffff0000)), '1234567890123456FFFF0000');
  });

  it('skips counters with more than 16 one-bits and ends after 0xFFFF0000', () => {
    assert.equal(nextCounter(0), 1);
    assert.equal(nextCounter(0x1fffe), 0x20000);
    assert.equal(nextCounter(0xfffe2000), 0xfffe4000);
    assert.equal(nextCounter(0xfffe8000), 0xffff0000);
    assert.throws(() => nextCounter(0xffff0000), fails('POSKEY_ERR_DUKPT_EXHAUSTED'));
  });
});

describe('AES DUKPT: device (intermediate derivation key registers)', () => {
  for (const bdk of [...new Set(rows('transaction').map((v) => v.bdk))]) {
    it(`AES-${bdk.length * 2} BDK: a fresh device yields the first eight KSNs and their working keys`, () => {
      const device = new DukptAesDevice(initialKeyOf(bdk), IKID);
      for (const v of firstEight(bdk)) {
        assert.equal(toHex(device.next()), v.ksn);
        for (const w of v.workingKeys!) assert.equal(toHex(device.workingKey(w.usage, w.keyType)), w.key);
      }
    });

    it(`AES-${bdk.length * 2} BDK: started mid-way, it steps over 0x1FFFF and ends at 0xFFFF0000`, () => {
      const ik = initialKeyOf(bdk);
      const checkRun = (list: AesRow[]) => {
        const device = new DukptAesDevice(ik, fromHex(list[0]!.ksn!));
        for (const v of list) {
          const { ksn, key } = device.nextKey('pin', 'aes128');
          assert.equal(toHex(ksn), v.ksn);
          assert.deepEqual(key, deriveWorkingKey(fromHex(v.derivationKey!), ksn, 'pin', 'aes128'));
        }
        return device;
      };
      const transactions = rows('transaction').filter((v) => v.bdk === bdk);
      checkRun(transactions.filter((v) => [0x1fffe, 0x20000, 0x20001].includes(ksnCounter(fromHex(v.ksn!)))));
      const last = checkRun(transactions.filter((v) => ksnCounter(fromHex(v.ksn!)) >= 0xfffe2000));
      assert.equal(last.exhausted, true);
      assert.throws(() => last.next(), fails('POSKEY_ERR_DUKPT_EXHAUSTED', 'ksn'));
    });
  }

  it('agrees with the host for random initial keys, start counters and runs (property)', () => {
    fc.assert(
      fc.property(
        aesKey,
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.oneof(fc.constant(0), validCounter),
        fc.integer({ min: 1, max: 20 }),
        (ik, ikid, start, steps) => {
          const device = new DukptAesDevice(ik, makeKsn(ikid, start));
          let expected = start === 0 ? 1 : start;
          for (let i = 0; i < steps && !device.exhausted; i++) {
            const ksn = device.next();
            assert.equal(ksnCounter(ksn), expected);
            const dk = deriveDerivationKey(ik, ksn);
            assert.deepEqual(device.workingKey('pin', 'aes128'), deriveWorkingKey(dk, ksn, 'pin', 'aes128'));
            assert.deepEqual(
              device.workingKey('mac', 'hmac128'),
              deriveWorkingKey(dk, ksn, 'mac', 'hmac128'),
            );
            if (expected === DUKPT_AES_MAX_COUNTER) break;
            expected = nextCounter(expected);
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('keeps keys out of JSON, inspect and toString', () => {
    const device = new DukptAesDevice(IK128, IKID);
    device.next();
    const shown = [JSON.stringify(device), inspect(device), String(device)].join(' ');
    assert.ok(!shown.includes(toHex(IK128).slice(0, 12)));
    for (const v of firstEight(toHex(BDK128))) assert.ok(!shown.includes(v.derivationKey!.slice(0, 12)));
    assert.deepEqual(device.toJSON(), {
      initialKeyId: '1234567890123456',
      keyBits: 128,
      nextCounter: 2,
      exhausted: false,
    });
  });

  it('hands out copies and exposes the KSN in progress', () => {
    const device = new DukptAesDevice(IK128, makeKsn(IKID, 0));
    assert.equal(device.ksn, undefined);
    const first = firstEight(toHex(BDK128))[0]!;
    const { key } = device.nextKey('pin', 'aes128');
    key.fill(0);
    assert.equal(toHex(device.workingKey('pin', 'aes128')), first.workingKeys![0]!.key);
    assert.equal(toHex(device.ksn!), first.ksn);
  });
});

describe('AES DUKPT: errors', () => {
  const ksn1 = makeKsn(IKID, 1);
  const dk1 = deriveDerivationKey(IK128, ksn1);

  it('POSKEY_ERR_KSN for KSNs that are not 12 bytes and Initial Key IDs that are not 8', () => {
    for (const bad of [Buffer.alloc(10), Buffer.alloc(13)]) {
      assert.throws(() => deriveDerivationKey(IK128, bad), fails('POSKEY_ERR_KSN', 'ksn'));
      assert.throws(() => deriveWorkingKey(dk1, bad, 'pin', 'aes128'), fails('POSKEY_ERR_KSN', 'ksn'));
    }
    assert.throws(() => deriveInitialKey(BDK128, Buffer.alloc(12)), fails('POSKEY_ERR_KSN', 'initialKeyId'));
    assert.throws(() => new DukptAesDevice(IK128, Buffer.alloc(10)), fails('POSKEY_ERR_KSN', 'initialKeyId'));
    assert.throws(() => makeKsn(IKID, 2 ** 32), fails('POSKEY_ERR_KSN', 'counter'));
  });

  it('POSKEY_ERR_KSN for a zero counter or one with more than 16 one-bits', () => {
    for (const c of [0, 0x1ffff, 0xffffffff]) {
      const ksn = makeKsn(IKID, c);
      assert.throws(() => deriveDerivationKey(IK128, ksn), fails('POSKEY_ERR_KSN', 'ksn'));
      assert.throws(() => deriveWorkingKey(dk1, ksn, 'pin', 'aes128'), fails('POSKEY_ERR_KSN', 'ksn'));
    }
    assert.throws(() => new DukptAesDevice(IK128, makeKsn(IKID, 0x1ffff)), fails('POSKEY_ERR_KSN', 'ksn'));
  });

  it('POSKEY_ERR_TYPE when a KSN is not bytes', () => {
    assert.throws(
      () => ksnCounter('123456789012345600000001' as unknown as Uint8Array),
      fails('POSKEY_ERR_TYPE'),
    );
  });

  it('POSKEY_ERR_LENGTH for BDKs and keys that are not AES keys', () => {
    assert.throws(() => deriveInitialKey(Buffer.alloc(20), IKID), fails('POSKEY_ERR_LENGTH', 'bdk'));
    assert.throws(() => deriveDerivationKey(Buffer.alloc(8), ksn1), fails('POSKEY_ERR_LENGTH', 'initialKey'));
    assert.throws(
      () => deriveWorkingKey(Buffer.alloc(15), ksn1, 'pin', 'aes128'),
      fails('POSKEY_ERR_LENGTH'),
    );
    assert.throws(() => new DukptAesDevice(Buffer.alloc(17), IKID), fails('POSKEY_ERR_LENGTH', 'initialKey'));
  });

  it('POSKEY_ERR_DUKPT_KEY_TYPE for working keys stronger than the BDK, or unknown types', () => {
    const tooStrong: [number, AesDukptKeyType[]][] = [
      [16, ['tdes3', 'aes192', 'aes256', 'hmac192', 'hmac256']],
      [24, ['aes256', 'hmac256']],
    ];
    for (const [length, types] of tooStrong) {
      const bdk = Buffer.alloc(length, 1);
      for (const t of types) {
        assert.throws(
          () => deriveHostKey(bdk, ksn1, 'pin', t),
          fails('POSKEY_ERR_DUKPT_KEY_TYPE', 'keyType'),
        );
      }
    }
    assert.throws(() => deriveWorkingKey(dk1, ksn1, 'pin', 'aes256'), fails('POSKEY_ERR_DUKPT_KEY_TYPE'));
    for (const t of ['des', 'constructor', '']) {
      assert.throws(
        () => deriveWorkingKey(dk1, ksn1, 'pin', t as AesDukptKeyType),
        (e: unknown) =>
          fails('POSKEY_ERR_DUKPT_KEY_TYPE', 'keyType')(e) &&
          !(e as Error).message.includes(toHex(dk1).slice(0, 8)),
      );
    }
  });

  it('POSKEY_ERR_DUKPT_KEY_USAGE for an unknown usage', () => {
    for (const u of ['cvv', 'toString']) {
      assert.throws(
        () => deriveWorkingKey(dk1, ksn1, u as AesDukptKeyUsage, 'aes128'),
        fails('POSKEY_ERR_DUKPT_KEY_USAGE', 'usage'),
      );
    }
  });

  it('a rejected nextKey() request does not move the device on', () => {
    const device = new DukptAesDevice(IK128, IKID);
    assert.throws(() => device.nextKey('pin', 'aes256'), fails('POSKEY_ERR_DUKPT_KEY_TYPE'));
    assert.throws(
      () => device.nextKey('nope' as AesDukptKeyUsage, 'aes128'),
      fails('POSKEY_ERR_DUKPT_KEY_USAGE'),
    );
    assert.equal(device.nextCounter, 1);
  });

  it('POSKEY_ERR_DUKPT_STATE before the first transaction', () => {
    const device = new DukptAesDevice(IK128, IKID);
    assert.throws(() => device.workingKey('pin', 'aes128'), fails('POSKEY_ERR_DUKPT_STATE'));
  });

  it('POSKEY_ERR_KEY_DESTROYED after destroy()', () => {
    const device = new DukptAesDevice(IK128, IKID);
    device.next();
    device.destroy();
    assert.throws(() => device.next(), fails('POSKEY_ERR_KEY_DESTROYED'));
    assert.throws(() => device.workingKey('pin', 'aes128'), fails('POSKEY_ERR_KEY_DESTROYED'));
  });
});
