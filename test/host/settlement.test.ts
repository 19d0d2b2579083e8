/**
 * Settlement, batch upload and key freshness end to end: the terminal simulator (or a raw framer)
 * → host over TCP → network simulator, on SQLite and PostgreSQL. The host's totals come from its
 * journal; a batch is made unbalanced by changing the host's journal (a row reversed there) or by
 * giving the terminal a record the host lacks.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { IsoMessage } from '../../src/iso8583/index.js';
import { emptyTotals, totalsField } from '../../src/protocol/settlement.js';
import { getSettlement, isSettled, uploadedItems } from '../../src/store/settlement.js';
import type { Dialect } from '../../src/store/types.js';
import { MemoryBatchStore } from '../../src/terminal/batch-store.js';
import { Terminal } from '../../src/terminal/terminal.js';
import {
  assertPostgresReachable,
  postgresFixture,
  type StoreFixture,
  sqliteFixture,
} from '../store/helpers.js';
import {
  CARDS,
  MID,
  packMaced,
  type RawKeys,
  RawTerminal,
  rawSignIn,
  replyMacOk,
  startWorld,
  swipe,
  type World,
} from './helpers.js';

const FOREIGN_PAN = '4761739001010010';

function settlementMessage(tid: string, stan: string, batch: string, field48: unknown): IsoMessage {
  return {
    0: '0500',
    11: stan,
    41: tid,
    42: MID,
    48: field48,
    49: '156',
    60: { 1: '00', 2: batch, 3: '201' },
    63: { 1: '001' },
  } as IsoMessage;
}

function uploadMessage(
  tid: string,
  stan: string,
  batch: string,
  code: string,
  extra: Partial<IsoMessage> = {},
) {
  return {
    0: '0320',
    11: stan,
    41: tid,
    42: MID,
    60: { 1: '00', 2: batch, 3: code },
    ...extra,
  } as IsoMessage;
}

function settlementSuite(dialect: Dialect, makeFixture: () => Promise<StoreFixture>): void {
  describe(`settlement on ${dialect}`, { timeout: 180_000 }, () => {
    let w: World;
    let seq = 0;
    const nextTid = () => `ST${String(++seq).padStart(6, '0')}`;

    before(async () => {
      if (dialect === 'postgres') await assertPostgresReachable();
      w = await startWorld(await makeFixture());
    });
    after(async () => {
      await w?.close();
    });

    /** A raw terminal signed in, for the refusal tests. */
    async function rawTerminal(): Promise<{ tid: string; raw: RawTerminal; keys: RawKeys }> {
      const t = await w.register(nextTid());
      const raw = await RawTerminal.connect(w.port);
      const { keys } = await rawSignIn(raw, t, '000001');
      return { tid: t.tid, raw, keys };
    }

    it('balanced: closes the batch, marks its rows settled and advances the batch number', async () => {
      const t = await w.register(nextTid());
      const batch = new MemoryBatchStore();
      // The helper's terminal has no batch store of ours: rebuild it around one the test can see.
      const term = w.terminal(t);
      const withStore = new Terminal(term.config, { pinPad: term.pinPad, batch });
      await term.close();
      try {
        for (const amount of [1000, 2550]) {
          const r = await withStore.purchase(swipe(CARDS.good), amount, CARDS.good.pin);
          assert.equal(r.approved, true, r.responseText);
        }
        // A refund and a foreign-card purchase as the void/refund branch will journal them.
        const refund = { txnType: 'refund', amount: 300, pan: CARDS.good.pan, stan: 900001, mti: '0220' };
        const foreign = { txnType: 'purchase', amount: 7000, pan: FOREIGN_PAN, stan: 900002, mti: '0200' };
        for (const row of [refund, foreign]) {
          await w.store.journal.append({ tid: t.tid, mid: MID, batch: 1, status: 'approved', ...row });
        }
        await batch.add({
          batch: '000001',
          stan: '900001',
          messageType: '25',
          processingCode: '200000',
          amount: '000000000300',
          pan: CARDS.good.pan,
          credit: true,
        });
        await batch.add({
          batch: '000001',
          stan: '900002',
          messageType: '22',
          processingCode: '000000',
          amount: '000000007000',
          pan: FOREIGN_PAN,
          credit: false,
        });
        const s = await withStore.settle();
        assert.equal(s.approved, true, s.responseText);
        assert.equal(s.balanced, true);
        assert.equal(s.uploaded, 0);
        assert.equal(s.batch, '000001');
        assert.equal(s.newBatch, '000002');
        assert.deepEqual(s.hostTotals, {
          domestic: { debitAmount: 3550, debitCount: 2, creditAmount: 300, creditCount: 1 },
          foreign: { debitAmount: 7000, debitCount: 1, creditAmount: 0, creditCount: 0 },
        });
        assert.equal((await w.store.terminals.get(t.tid))?.batchNumber, 2);
        const rows = await w.store.journal.list({ tid: t.tid, batch: 1 });
        const sales = rows.filter((r) => r.txnType === 'purchase' || r.txnType === 'refund');
        assert.equal(sales.length, 4);
        assert.ok(sales.every(isSettled), 'every row of the settled batch is marked settled');
        assert.equal((await getSettlement(w.store, t.tid, 1))?.state, 'settled');
        assert.deepEqual(await batch.list('000001'), [], 'the terminal forgets the settled records');

        const next = await withStore.purchase(swipe(CARDS.good), 100, CARDS.good.pin);
        assert.equal(next.approved, true);
        const inNew = await w.store.journal.list({ tid: t.tid, batch: 2 });
        assert.equal(inNew.filter((r) => r.txnType === 'purchase').length, 1, 'the new batch is used');
        assert.equal(inNew.some(isSettled), false);
      } finally {
        await withStore.close();
      }
    });

    it('unbalanced: the terminal uploads the batch, the end message closes it, the batch advances', async () => {
      const t = await w.register(nextTid());
      const term = w.terminal(t);
      try {
        const stans: string[] = [];
        for (const amount of [1200, 3400, 5600]) {
          const r = await term.purchase(swipe(CARDS.good), amount, CARDS.good.pin);
          assert.equal(r.approved, true, r.responseText);
          stans.push(r.stan);
        }
        // The host's books differ: one of the three is reversed there and no longer counts.
        await w.fixture.exec(
          `UPDATE journal SET status = 'reversed' WHERE tid = '${t.tid}' AND stan = ${Number(stans[1])}`,
        );
        const s = await term.settle();
        assert.equal(s.approved, true, s.responseText);
        assert.equal(s.balanced, false);
        assert.deepEqual(s.hostTotals?.domestic, {
          debitAmount: 6800,
          debitCount: 2,
          creditAmount: 0,
          creditCount: 0,
        });
        assert.equal(s.terminalTotals.domestic.debitAmount, 10200);
        assert.equal(s.uploaded, 3);
        assert.equal(s.newBatch, '000002');
        assert.equal(term.batch, '000002');
        const items = await uploadedItems(w.store, t.tid, 1);
        assert.deepEqual(
          items.map((i) => [i.stan, i.amount]),
          stans.map((st, i) => [Number(st), [1200, 3400, 5600][i]]),
        );
        assert.ok(
          items.every((i) => i.journalId !== null),
          'each upload is linked to its journal row',
        );
        const settlement = await getSettlement(w.store, t.tid, 1);
        assert.equal(settlement?.state, 'settled');
        assert.equal(settlement?.uploaded, 3);
        assert.equal((await w.store.terminals.get(t.tid))?.batchNumber, 2);
        const rows = await w.store.journal.list({ tid: t.tid, batch: 1 });
        assert.ok(rows.filter((r) => r.txnType === 'purchase').every(isSettled));
      } finally {
        await term.close();
      }
    });

    it('a repeated settlement of a closed batch is answered balanced again', async () => {
      const { tid, raw, keys } = await rawTerminal();
      try {
        const zero = totalsField(emptyTotals());
        const first = await raw.exchange(packMaced(settlementMessage(tid, '000002', '000001', zero), keys));
        assert.equal(first.msg[39], '00');
        assert.equal((first.msg[48] as Record<number, string>)[5], '1');
        assert.equal((first.msg[60] as Record<number, string>)[2], '000002');
        assert.ok(replyMacOk(first, keys), 'the 0510 is MACed');
        const again = await raw.exchange(packMaced(settlementMessage(tid, '000003', '000001', zero), keys));
        assert.equal(again.msg[39], '00');
        assert.equal((again.msg[48] as Record<number, string>)[5], '1');
        assert.equal((await w.store.terminals.get(tid))?.batchNumber, 2, 'advanced once');
      } finally {
        raw.close();
      }
    });

    it('refuses a bad MAC (A0, no MAC, sign in again)', async () => {
      const { tid, raw, keys } = await rawTerminal();
      try {
        const msg = settlementMessage(tid, '000002', '000001', totalsField(emptyTotals()));
        const reply = await raw.exchange(packMaced(msg, keys, '0102030405060708'));
        assert.equal(reply.msg[39], 'A0');
        assert.equal(reply.msg[64], undefined);
        assert.equal(reply.envelope.header?.processingRequirement, 3);
        assert.equal(await getSettlement(w.store, tid, 1), undefined, 'nothing recorded');
      } finally {
        raw.close();
      }
    });

    it('refuses a malformed field 48 with 30 and a batch not in force with 12', async () => {
      const { tid, raw, keys } = await rawTerminal();
      try {
        const partial = { 1: '000000000100', 2: '001', 3: '000000000000', 4: '000', 5: '0' };
        const bad = await raw.exchange(packMaced(settlementMessage(tid, '000002', '000001', partial), keys));
        assert.equal(bad.msg[39], '30');
        assert.ok(replyMacOk(bad, keys), 'a refusal after a good MAC is MACed');
        const absent = settlementMessage(tid, '000003', '000001', undefined);
        delete absent[48];
        assert.equal((await raw.exchange(packMaced(absent, keys))).msg[39], '30');
        const zero = totalsField(emptyTotals());
        const other = await raw.exchange(packMaced(settlementMessage(tid, '000004', '000007', zero), keys));
        assert.equal(other.msg[39], '12');
        assert.equal((await w.store.terminals.get(tid))?.batchNumber, 1);
      } finally {
        raw.close();
      }
    });

    it('refuses uploads without an open settlement (12), an unreadable count (30) and a wrong count (12)', async () => {
      const { tid, raw, keys } = await rawTerminal();
      try {
        const detail = uploadMessage(tid, '000009', '000001', '201', {
          2: CARDS.good.pan,
          3: '000000',
          4: '000000000500',
        });
        assert.equal((await raw.exchange(packMaced(detail, keys))).msg[39], '12');
        const endNoSettlement = uploadMessage(tid, '000010', '000001', '202', { 48: '0001' });
        assert.equal((await raw.exchange(packMaced(endNoSettlement, keys))).msg[39], '12');
        // Open an unbalanced settlement: the terminal claims a sale the host never saw.
        const claims = emptyTotals();
        claims.domestic.debitAmount = 500;
        claims.domestic.debitCount = 1;
        const s = await raw.exchange(
          packMaced(settlementMessage(tid, '000011', '000001', totalsField(claims)), keys),
        );
        assert.equal(s.msg[39], '00');
        assert.equal((s.msg[48] as Record<number, string>)[5], '2');
        assert.equal((await raw.exchange(packMaced(detail, keys))).msg[39], '00');
        const badCount = uploadMessage(tid, '000012', '000001', '202', { 48: '12' });
        assert.equal((await raw.exchange(packMaced(badCount, keys))).msg[39], '30');
        const wrongCount = uploadMessage(tid, '000013', '000001', '202', { 48: '0002' });
        assert.equal((await raw.exchange(packMaced(wrongCount, keys))).msg[39], '12');
        assert.equal((await getSettlement(w.store, tid, 1))?.state, 'unbalanced');
        const items = await uploadedItems(w.store, tid, 1);
        assert.deepEqual(items, [{ stan: 9, amount: 500, journalId: null }], 'unknown to the journal');
        const end = await raw.exchange(
          packMaced(uploadMessage(tid, '000014', '000001', '202', { 48: '0001' }), keys),
        );
        assert.equal(end.msg[39], '00');
        assert.ok(replyMacOk(end, keys));
        assert.equal((end.msg[60] as Record<number, string>)[2], '000002');
        assert.equal((await getSettlement(w.store, tid, 1))?.state, 'settled');
        const bad = await raw.exchange(
          packMaced(uploadMessage(tid, '000015', '000002', '202', { 48: '0000' }), keys, '0000000000000000'),
        );
        assert.equal(bad.msg[39], 'A0');
      } finally {
        raw.close();
      }
    });

    it('key freshness: past keyRotationAge the purchase is approved and the terminal signs in with new keys', async () => {
      const t = await w.register(nextTid());
      const term = w.terminal(t);
      try {
        assert.equal((await term.signIn()).approved, true);
        const before = (await w.store.terminals.get(t.tid))?.workingKeys;
        const fresh = await term.purchase(swipe(CARDS.good), 100, CARDS.good.pin);
        assert.equal(fresh.approved, true);
        assert.equal(fresh.signIn, undefined, 'young keys: no sign-in asked');
        // Older than keyRotationAge (12 h by default), younger than maxTakAge (24 h).
        w.clock.offsetMs = 13 * 3600_000;
        const r = await term.purchase(swipe(CARDS.good), 200, CARDS.good.pin);
        assert.equal(r.approved, true, r.responseText);
        assert.equal(r.macVerified, true);
        assert.deepEqual(r.signIn, { approved: true, responseCode: '00' });
        const afterKeys = (await w.store.terminals.get(t.tid))?.workingKeys;
        assert.notEqual(afterKeys?.tak?.kcv, before?.tak?.kcv, 'a new TAK');
        assert.ok((afterKeys?.createdAt ?? 0) > (before?.createdAt ?? 0));
        const next = await term.purchase(swipe(CARDS.good), 300, CARDS.good.pin);
        assert.equal(next.approved, true, 'the new keys work');
        assert.equal(next.signIn, undefined, 'and are fresh');
      } finally {
        w.clock.offsetMs = 0;
        await term.close();
      }
    });
  });
}

settlementSuite('sqlite', sqliteFixture);
settlementSuite('postgres', postgresFixture);

describe('poskey terminal settle', { timeout: 120_000 }, () => {
  const COMPONENTS = ['0123456789ABCDEFFEDCBA9876543210', '40404040404040404040404040404040'];
  let w: World;
  let dir: string;
  before(async () => {
    w = await startWorld(await sqliteFixture());
    dir = mkdtempSync(join(tmpdir(), 'poskey-settle-cli-'));
  });
  after(async () => {
    await w?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'terminal', ...args], {
        cwd: fileURLToPath(new URL('../../', import.meta.url)),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      child.on('close', (status) => resolve({ status, stdout, stderr }));
    });

  it('settles the batch kept in --data-dir and moves to the next batch', async () => {
    const tmk = w.hsm.importKey({
      keyType: 'TMK',
      algorithm: 'tdes2',
      source: { kind: 'components', components: COMPONENTS },
    });
    await w.store.terminals.create({
      tid: 'CLISET01',
      mid: MID,
      keyAlgorithm: 'TDES',
      tmk: { block: tmk.keyBlock, kcv: tmk.info.kcv.value },
    });
    const common = ['--port', String(w.port), '--tid', 'CLISET01', '--mid', MID];
    const lab = ['--tmk-components', COMPONENTS.join(','), '--data-dir', dir];
    const card = ['--pan', CARDS.good.pan, '--expiry', CARDS.good.expiry, '--pin', CARDS.good.pin];
    const bought = await cli('purchase', ...common, ...lab, ...card, '--amount', '12.34', '--json');
    assert.equal(bought.status, 0, bought.stderr);
    const settled = await cli('settle', ...common, ...lab, '--json');
    assert.equal(settled.status, 0, settled.stderr);
    const out = JSON.parse(settled.stdout) as {
      approved: boolean;
      balanced: boolean;
      batch: string;
      newBatch: string;
      terminalTotals: { domestic: { debitAmount: number; debitCount: number } };
    };
    assert.deepEqual([out.approved, out.balanced, out.batch, out.newBatch], [true, true, '000001', '000002']);
    assert.deepEqual(
      [out.terminalTotals.domestic.debitAmount, out.terminalTotals.domestic.debitCount],
      [1234, 1],
    );
    const text = await cli('settle', ...common, ...lab);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /batch: +000002/);
    assert.match(text.stdout, /new batch: +000003/);
    assert.equal((await w.store.terminals.get('CLISET01'))?.batchNumber, 3);
  });
});
