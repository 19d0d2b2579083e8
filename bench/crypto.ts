/**
 * `npm run bench -- crypto`: the calculator's hot primitives, each measured twice in one process:
 * poskey with kept key handles, and a naive baseline written inline here that builds a fresh
 * `createCipheriv` context on every call. Before timing, each pair is checked to give the same
 * answer, so the comparison is between two correct implementations.
 *
 * Targets (issue, one core, in process): PIN translation ≥ 200k/s, retail MAC over 200 B ≥ 80k/s,
 * AES-CMAC over 200 B ≥ 200k/s. BENCH_MS sets the time per measurement (default 2000 ms).
 */
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { fromHex, toHex } from '../src/crypto/bytes.js';
import { createKey } from '../src/crypto/cipher.js';
import { cmac, cmacSubkeys } from '../src/crypto/cmac.js';
import { retailMac } from '../src/crypto/mac.js';
import { encryptPinBlock, translatePinBlock } from '../src/crypto/pinblock.js';
import { compare, header, type Measurement, measure } from './harness.js';

interface Case {
  name: string;
  ours: () => Buffer;
  naive: () => Buffer;
  target?: number;
}

/** One fresh context, one update, one final: what code that does not keep handles pays per call. */
function naiveEcb(name: string, key: Buffer, data: Buffer, decrypt = false): Buffer {
  const ctx = decrypt ? createDecipheriv(name, key, null) : createCipheriv(name, key, null);
  ctx.setAutoPadding(false);
  const out = ctx.update(data);
  ctx.final();
  return out;
}

function naiveCbc(name: string, key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const ctx = createCipheriv(name, key, iv);
  ctx.setAutoPadding(false);
  const out = ctx.update(data);
  ctx.final();
  return out;
}

function tdesBlock(): Case {
  const keyBytes = fromHex('0123456789ABCDEFFEDCBA987654321089ABCDEF01234567');
  const key = createKey('tdes', keyBytes);
  const block = fromHex('4E6F772069732074');
  return {
    name: '3DES-ECB, one 8-byte block (3-key)',
    ours: () => key.ecbEncrypt(block),
    naive: () => naiveEcb('des-ede3-ecb', keyBytes, block),
  };
}

/** Format 0 PIN field check, inline as a hand-written translator would do it. */
function naiveFormat0Pin(clear: Buffer, panField: Buffer): string {
  const pinField = Buffer.allocUnsafe(8);
  for (let i = 0; i < 8; i++) pinField[i] = clear[i]! ^ panField[i]!;
  const digits = pinField.toString('hex');
  const n = pinField[0]! & 0x0f;
  if (pinField[0]! >> 4 !== 0 || n < 4 || n > 12) throw new Error('not a format 0 PIN block');
  const pin = digits.slice(2, 2 + n);
  if (!/^\d+$/.test(pin) || !/^f*$/.test(digits.slice(2 + n))) throw new Error('not a format 0 PIN block');
  return pin;
}

function pinTranslation(): Case {
  const zpkA = fromHex('0123456789ABCDEFFEDCBA9876543210');
  const zpkB = fromHex('89ABCDEF0123456776543210FEDCBA98');
  const pan = '5555555551234567';
  const src = createKey('tdes', zpkA);
  const dst = createKey('tdes', zpkB);
  const block = encryptPinBlock(src, { format: 0, pin: '1234', pan });
  const panField = Buffer.from(`0000${pan.slice(-13, -1)}`, 'hex');
  return {
    name: 'PIN translation, TDES→TDES, format 0',
    target: 200_000,
    ours: () => translatePinBlock(src, dst, block, { from: 0, to: 0, pan }),
    naive: () => {
      const clear = naiveEcb('des-ede-ecb', zpkA, block, true);
      naiveFormat0Pin(clear, panField);
      return naiveEcb('des-ede-ecb', zpkB, clear);
    },
  };
}

function retail(): Case {
  const keyBytes = fromHex('7CA110454A1A6E570131D9619DC1376E');
  const key = createKey('tdes', keyBytes);
  const data = randomBytes(200);
  // Single DES is not in Node 20's default provider: CBC under KL runs as des-ede with KL‖KL, and
  // the final E(KL)·D(KR)·E(KL) of the last block is exactly 2-key TDES under KL‖KR.
  const kl = keyBytes.subarray(0, 8);
  const klkl = Buffer.concat([kl, kl]);
  const zero = Buffer.alloc(8);
  return {
    name: 'retail MAC (9797-1 alg 3), 200 bytes',
    target: 80_000,
    ours: () => retailMac(key, data),
    naive: () => {
      const chain = naiveCbc('des-ede-cbc', klkl, zero, data.subarray(0, 192));
      const last = Buffer.allocUnsafe(8);
      for (let i = 0; i < 8; i++) last[i] = data[192 + i]! ^ chain[184 + i]!;
      return naiveEcb('des-ede-ecb', keyBytes, last);
    },
  };
}

function aesCmac(): Case {
  const keyBytes = fromHex('2B7E151628AED2A6ABF7158809CF4F3C');
  const key = createKey('aes', keyBytes);
  const data = randomBytes(200);
  // The baseline keeps its subkeys (derived once); only the CBC context is fresh per call.
  const [, k2] = cmacSubkeys(createKey('aes', keyBytes)).map((k) => Buffer.from(k)) as [Buffer, Buffer];
  const zero = Buffer.alloc(16);
  return {
    name: 'AES-128-CMAC, 200 bytes',
    target: 200_000,
    ours: () => cmac(key, data),
    naive: () => {
      const padded = Buffer.alloc(208);
      data.copy(padded);
      padded[200] = 0x80;
      for (let i = 0; i < 16; i++) padded[192 + i]! ^= k2[i]!;
      return naiveCbc('aes-128-cbc', keyBytes, zero, padded).subarray(192);
    },
  };
}

function sm4Block(): Case {
  const keyBytes = fromHex('0123456789ABCDEFFEDCBA9876543210');
  const key = createKey('sm4', keyBytes);
  const block = fromHex('0123456789ABCDEFFEDCBA9876543210');
  return {
    name: 'SM4-ECB, one 16-byte block',
    ours: () => key.ecbEncrypt(block),
    naive: () => naiveEcb('sm4-ecb', keyBytes, block),
  };
}

interface Row {
  name: string;
  ours: Measurement;
  naive: Measurement;
  target: number | undefined;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

function summary(rows: Row[]): void {
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(
    `\n${'operation'.padEnd(w)}  ${'poskey'.padStart(11)}  ${'naive'.padStart(11)}  ratio   target`,
  );
  for (const { name, ours, naive, target } of rows) {
    const goal =
      target === undefined ? '-' : `≥ ${fmt(target)} ${ours.opsPerSec >= target ? 'met' : 'NOT MET'}`;
    console.log(
      `${name.padEnd(w)}  ${fmt(ours.opsPerSec).padStart(11)}  ${fmt(naive.opsPerSec).padStart(11)}  ${(
        ours.opsPerSec / naive.opsPerSec
      )
        .toFixed(2)
        .padStart(5)}x  ${goal}`,
    );
  }
  console.log('(ops/s, one core, in process; naive = a fresh createCipheriv per call)');
}

export async function run(): Promise<void> {
  header('crypto: kept key handles vs a fresh createCipheriv per call');
  const cases = [tdesBlock(), pinTranslation(), retail(), aesCmac(), sm4Block()];
  const rows: Row[] = [];
  for (const c of cases) {
    assert.equal(toHex(c.ours()), toHex(c.naive()), `${c.name}: poskey and the baseline disagree`);
    const ours = measure(c.name, c.ours);
    const naive = measure(`${c.name} (naive)`, c.naive);
    compare(ours, naive, c.target);
    rows.push({ name: c.name, ours, naive, target: c.target });
  }
  summary(rows);
}
