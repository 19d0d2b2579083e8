/**
 * Settlement field 48 (research iso8583.md §2.8) through the unionpay-pos codec, the 0320 end
 * count, the domestic/foreign split, and the terminal's batch file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type IsoMessage, pack, unpack } from '../../src/iso8583/index.js';
import {
  addToTotals,
  type BatchTotals,
  emptyTotals,
  isForeignCard,
  parseTotals,
  parseUploadCount,
  totalsField,
  uploadCountField,
} from '../../src/protocol/settlement.js';
import { POS_DIALECT } from '../../src/protocol/unionpay-pos.js';
import { BATCH_FILE, type BatchRecord, FileBatchStore } from '../../src/terminal/batch-store.js';

const card = fc.record(
  {
    debitAmount: fc.integer({ min: 0, max: 999_999_999_999 }),
    debitCount: fc.integer({ min: 0, max: 999 }),
    creditAmount: fc.integer({ min: 0, max: 999_999_999_999 }),
    creditCount: fc.integer({ min: 0, max: 999 }),
  },
  { noNullPrototype: true },
);
const totals: fc.Arbitrary<BatchTotals> = fc.record(
  { domestic: card, foreign: card },
  { noNullPrototype: true },
);
const digit = fc.constantFrom('0', '1', '2', '3');

describe('settlement field 48', () => {
  it('round-trips any totals and result digits through a packed 0500/0510', () => {
    fc.assert(
      fc.property(totals, digit, digit, fc.constantFrom('0500', '0510'), (t, d, f, mti) => {
        const msg = { 0: mti, 11: '000001', 41: 'T0000001', 48: totalsField(t, d, f) } as IsoMessage;
        const back = parseTotals(unpack(POS_DIALECT, pack(POS_DIALECT, msg))[48]);
        assert.deepEqual(back, { ...t, domesticResult: d, foreignResult: f });
      }),
    );
  });

  it('refuses a field 48 that is absent, short, or not digits', () => {
    const full = totalsField(emptyTotals()) as Record<number, string>;
    assert.equal(parseTotals(undefined), undefined);
    assert.equal(parseTotals('0'.repeat(62)), undefined, 'plain text, not subfields');
    const { 10: _, ...short } = full;
    assert.equal(parseTotals(short), undefined);
    assert.equal(parseTotals({ ...full, 1: '00000000010' }), undefined, 'wrong width');
    assert.equal(parseTotals({ ...full, 2: '0a1' }), undefined);
  });

  it('splits domestic (62…) from foreign cards and debits from credits', () => {
    const t = emptyTotals();
    addToTotals(t, '6228480000000015', 1000, false);
    addToTotals(t, '622848******0015', 300, true);
    addToTotals(t, '4761739001010010', 700, false);
    assert.deepEqual(t, {
      domestic: { debitAmount: 1000, debitCount: 1, creditAmount: 300, creditCount: 1 },
      foreign: { debitAmount: 700, debitCount: 1, creditAmount: 0, creditCount: 0 },
    });
    assert.equal(isForeignCard(null), false);
    assert.equal(isForeignCard('5105105105105100'), true);
  });

  it('the 0320 end count is n4', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 9999 }), (n) => parseUploadCount(uploadCountField(n)) === n),
    );
    for (const bad of ['12', '12345', 'abcd', undefined]) assert.equal(parseUploadCount(bad), undefined);
  });
});

describe('terminal batch file', () => {
  const record = (stan: string, batch = '000001'): BatchRecord => ({
    batch,
    stan,
    messageType: '22',
    processingCode: '000000',
    amount: '000000001000',
    pan: '6228480000000015',
    credit: false,
  });

  it('keeps records across opens, removes one, clears a batch', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-batch-'));
    try {
      const a = await FileBatchStore.open(dir);
      await a.add(record('000001'));
      await a.add(record('000002'));
      await a.add(record('000003', '000002'));
      const b = await FileBatchStore.open(dir);
      assert.deepEqual(
        (await b.list('000001')).map((r) => r.stan),
        ['000001', '000002'],
      );
      await b.remove('000001', '000001');
      await b.clear('000002');
      const c = await FileBatchStore.open(dir);
      assert.deepEqual(
        (await c.list('000001')).map((r) => r.stan),
        ['000002'],
      );
      assert.deepEqual(await c.list('000002'), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a file that is not a batch file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-batch-'));
    try {
      for (const text of ['not json', '{"format":"other","records":[]}']) {
        writeFileSync(join(dir, BATCH_FILE), text);
        await assert.rejects(FileBatchStore.open(dir), (e: Error & { code?: string; field?: string }) => {
          assert.equal(e.code, 'POSKEY_ERR_TERMINAL_STATE');
          assert.equal(e.field, BATCH_FILE);
          return true;
        });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
