/**
 * Day-end: the reconciliation files of a business date from a journal on SQLite and PostgreSQL
 * (approved and voided sales, voids, refunds in; reversed, declined and other days out), a second
 * run that changes nothing, and `poskey host day-end` as a process.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { dayEndDir, runDayEnd } from '../../src/host/day-end.js';
import { openStore } from '../../src/store/open.js';
import type { Dialect, NewJournalRow, Repository } from '../../src/store/types.js';
import {
  assertPostgresReachable,
  postgresFixture,
  type StoreFixture,
  sqliteFixture,
} from '../store/helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHOP = '898310048990001';
const CAFE = '104110070110814';
const QUIET = '104110070119999';
const DAY = Date.parse('2026-12-06T00:00:00Z');
const PAN = '6228480000000015';

let stan = 0;
function row(
  mid: string,
  txnType: string,
  status: NewJournalRow['status'],
  amount: number,
  at = DAY + 3600_000,
) {
  stan += 1;
  return {
    tid: mid === SHOP ? 'DE000001' : 'DE000002',
    mid,
    batch: 1,
    stan,
    mti: txnType === 'refund' ? '0220' : '0200',
    txnType,
    amount,
    pan: PAN,
    rrn: String(100000000000 + stan),
    status,
    createdAt: at + stan,
  } satisfies NewJournalRow;
}

async function seed(store: Repository): Promise<void> {
  for (const [mid, name] of [
    [SHOP, 'Shop'],
    [CAFE, 'Cafe'],
    [QUIET, 'Quiet'],
  ] as const) {
    await store.merchants.upsert({ mid, name, mcc: '5411' });
  }
  const rows = [
    row(SHOP, 'purchase', 'approved', 1000),
    row(SHOP, 'purchase', 'voided', 2500),
    row(SHOP, 'void', 'approved', 2500),
    row(SHOP, 'refund', 'approved', 300),
    row(SHOP, 'purchase', 'reversed', 9999),
    row(SHOP, 'purchase', 'declined', 8888),
    row(SHOP, 'balance', 'approved', 0),
    row(SHOP, 'purchase', 'approved', 7777, DAY - 60_000),
    row(SHOP, 'purchase', 'approved', 6666, DAY + 86_400_000),
    row(CAFE, 'completion', 'approved', 4200),
  ];
  for (const r of rows) await store.journal.append(r);
}

function daySuite(dialect: Dialect, makeFixture: () => Promise<StoreFixture>): void {
  describe(`day-end on ${dialect}`, { timeout: 60_000 }, () => {
    let fixture: StoreFixture;
    let store: Repository;
    let dir: string;

    before(async () => {
      if (dialect === 'postgres') await assertPostgresReachable();
      fixture = await makeFixture();
      store = await fixture.open();
      dir = mkdtempSync(join(tmpdir(), 'poskey-day-end-'));
      await seed(store);
    });
    after(async () => {
      await store?.close();
      await fixture?.cleanup();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('writes one file per merchant: transactions, voids, refunds and net of that date only', async () => {
      const r = await runDayEnd(store, { dataDir: dir, date: '2026-12-06' });
      assert.equal(r.alreadyClosed, false);
      assert.deepEqual(r.files, [`${CAFE}.csv`, `${QUIET}.csv`, `${SHOP}.csv`]);
      const shop = r.merchants.find((m) => m.mid === SHOP)!;
      assert.deepEqual(shop.transactions, { count: 2, amount: 3500 });
      assert.deepEqual(shop.voids, { count: 1, amount: 2500 });
      assert.deepEqual(shop.refunds, { count: 1, amount: 300 });
      assert.equal(shop.net, 700);
      const csv = readFileSync(join(dayEndDir(dir, '2026-12-06'), `${SHOP}.csv`), 'utf8')
        .trim()
        .split('\n');
      assert.equal(csv[0], 'kind,tid,batch,stan,rrn,pan,status,count,amount');
      assert.deepEqual(
        csv.slice(1, 5).map((l) => l.split(',').filter((_, i) => i === 0 || i === 5 || i === 6 || i === 8)),
        [
          ['transaction', '622848******0015', 'approved', '1000'],
          ['transaction', '622848******0015', 'voided', '2500'],
          ['void', '622848******0015', 'approved', '2500'],
          ['refund', '622848******0015', 'approved', '300'],
        ],
      );
      assert.deepEqual(csv.slice(5), [
        'total,transactions,,,,,,2,3500',
        'total,voids,,,,,,1,2500',
        'total,refunds,,,,,,1,300',
        'total,net,,,,,,,700',
      ]);
      assert.ok(!csv.join('\n').includes(PAN), 'no clear PAN in the file');
      const cafe = r.merchants.find((m) => m.mid === CAFE)!;
      assert.equal(cafe.net, 4200);
      const quiet = readFileSync(join(dayEndDir(dir, '2026-12-06'), `${QUIET}.csv`), 'utf8');
      assert.match(quiet, /total,net,,,,,,,0\n$/);
    });

    it('is idempotent: a second run for the closed date writes nothing and counts nothing twice', async () => {
      const path = join(dayEndDir(dir, '2026-12-06'), `${SHOP}.csv`);
      const before = readFileSync(path, 'utf8');
      await store.journal.append(row(SHOP, 'purchase', 'approved', 5000));
      const again = await runDayEnd(store, { dataDir: dir, date: '2026-12-06' });
      assert.equal(again.alreadyClosed, true);
      assert.deepEqual(again.merchants, []);
      assert.deepEqual(again.files, [`${CAFE}.csv`, `${QUIET}.csv`, `${SHOP}.csv`]);
      assert.equal(readFileSync(path, 'utf8'), before);
      assert.deepEqual(readdirSync(dayEndDir(dir, '2026-12-06')).sort(), again.files);
      // The date stays closed for another store handle (durable, not in memory).
      const other = await fixture.open();
      try {
        assert.equal((await runDayEnd(other, { dataDir: dir, date: '2026-12-06' })).alreadyClosed, true);
      } finally {
        await other.close();
      }
    });

    it('refuses a date that is not YYYY-MM-DD', async () => {
      for (const date of ['2026-13-01', '2026-02-30', '06/12/2026', '']) {
        await assert.rejects(runDayEnd(store, { dataDir: dir, date }), (e: Error & { code?: string }) => {
          assert.equal(e.code, 'POSKEY_ERR_HOST_CONFIG');
          return true;
        });
      }
    });
  });
}

daySuite('sqlite', sqliteFixture);
daySuite('postgres', postgresFixture);

describe('poskey host day-end', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-day-end-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'host', 'day-end', ...args], {
      cwd: ROOT,
      encoding: 'utf8',
    });

  it('closes a date once, then reports it closed; bad input exits 2 with one line', async () => {
    const store = await openStore({ dataDir: dir });
    try {
      await seed(store);
    } finally {
      await store.close();
    }
    const first = cli('--data-dir', dir, '--date', '2026-12-06', '--json');
    assert.equal(first.status, 0, first.stderr);
    const out = JSON.parse(first.stdout) as { status: string; files: string[]; merchants: { net: number }[] };
    assert.equal(out.status, 'closed');
    assert.equal(out.files.length, 3);
    const second = cli('--data-dir', dir, '--date', '2026-12-06', '--json');
    assert.equal(second.status, 0, second.stderr);
    assert.equal((JSON.parse(second.stdout) as { status: string }).status, 'already closed');
    const bad = cli('--data-dir', dir, '--date', '2026-12-32');
    assert.equal(bad.status, 2);
    assert.equal(bad.stderr, 'poskey: POSKEY_ERR_CLI_OPTION: --date: must be a calendar date YYYY-MM-DD\n');
  });
});
