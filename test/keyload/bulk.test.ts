/**
 * Bulk injection: 20 simulated terminals on 20 socat pty pairs, one of them faulty (born with
 * another transport KBPK, and slow). The report has 19 ok rows and 1 failed row with the reason,
 * and the 19 finished while the faulty one was still failing: nobody waited for it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fixParity } from '../../src/crypto/keys.js';
import {
  type BulkProgress,
  formatBulkCsv,
  injectBulk,
  parsePortsCsv,
  progressBar,
  REPORT_COLUMNS,
} from '../../src/keyload/bulk.js';
import type { KeyloadDevice } from '../../src/keyload/device.js';
import { KeyloadErrorCode } from '../../src/keyload/protocol.js';
import type { Link } from '../../src/keyload/transport.js';
import {
  cleanupDirs,
  FAST_LINK,
  makeWorld,
  type PtyPair,
  ptyPair,
  simulator,
  tempDir,
  type World,
} from './helpers.js';

const N = 20;
const FAULTY = 13;
const SLOW_MS = 1000;

let world: World;
const pairs: PtyPair[] = [];
const devices: KeyloadDevice[] = [];
const links: Link[] = [];

before(async () => {
  world = await makeWorld();
  pairs.push(...(await Promise.all(Array.from({ length: N }, () => ptyPair()))));
  for (let i = 0; i < N; i++) {
    const tid = `2000${String(i).padStart(4, '0')}`;
    await world.register(tid, { serial: `SN-BULK-${i}` });
    const faulty = i === FAULTY;
    const device = simulator(faulty ? fixParity(randomBytes(16)) : world.kbpk, {
      padOptions: { serial: `SN-BULK-${i}` },
      ...(faulty ? { responseDelayMs: SLOW_MS } : {}),
    });
    devices.push(device);
    links.push(await device.listenSerial(pairs[i]!.b, FAST_LINK));
  }
});

after(async () => {
  for (const l of links) await l.close();
  for (const d of devices) d.destroy();
  await Promise.all(pairs.map((p) => p.stop()));
  await world.close();
  cleanupDirs();
});

describe('poskey inject --bulk', () => {
  it('injects 19 of 20 terminals in parallel; the faulty one fails alone, with its reason', async () => {
    const dir = tempDir();
    const file = join(dir, 'ports.csv');
    const lines = pairs.map((p, i) => `${p.a},2000${String(i).padStart(4, '0')}`);
    writeFileSync(file, `# rack 1\nport,tid\n${lines.join('\n')}\n`);
    const entries = parsePortsCsv((await import('node:fs')).readFileSync(file, 'utf8'));
    assert.equal(entries.length, N);

    const progress: BulkProgress[] = [];
    const report = await injectBulk({
      entries,
      hsm: world.hsm,
      registry: world.registry,
      transportKey: world.transportKey,
      link: FAST_LINK,
      audit: world.audit,
      onProgress: (p) => progress.push(p),
    });
    assert.equal(report.ok, N - 1);
    assert.equal(report.failed, 1);

    const failed = report.results.filter((r) => r.status === 'failed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.port, pairs[FAULTY]!.a);
    assert.equal(failed[0]!.code, KeyloadErrorCode.AUTH);
    assert.match(failed[0]!.reason ?? '', /transport key mismatch/);

    // Not blocked: every good terminal finished before the faulty one did, and all started at once.
    const faultyEnd = failed[0]!.startedMs + failed[0]!.durationMs;
    assert.ok(failed[0]!.durationMs >= 2 * SLOW_MS, `faulty took ${failed[0]!.durationMs} ms`);
    for (const r of report.results.filter((x) => x.status === 'ok')) {
      assert.ok(r.startedMs < SLOW_MS, `${r.port} started at ${r.startedMs} ms`);
      assert.ok(r.startedMs + r.durationMs < faultyEnd, `${r.port} ended after the faulty device`);
    }
    assert.ok(progress.at(-1)?.last?.status === 'failed', 'the faulty device finishes last');
    assert.ok(report.durationMs < faultyEnd + 500);

    // The good ones really are injected and bound; the faulty one is untouched.
    for (let i = 0; i < N; i++) {
      const slot = devices[i]!.pad.slotInfo(0);
      const t = await world.store.terminals.get(`2000${String(i).padStart(4, '0')}`);
      if (i === FAULTY) {
        assert.equal(slot, undefined);
        assert.equal(t?.tmk, null);
      } else {
        assert.equal(slot?.kcv, world.hsm.checkValue(t!.tmk!.block, 'legacy', 3).value);
      }
    }

    // The CSV report: header, 20 rows in file order, 19 ok and 1 failed with code and reason.
    const csv = formatBulkCsv(report.results).trim().split('\n');
    assert.equal(csv[0], REPORT_COLUMNS.join(','));
    assert.equal(csv.length, N + 1);
    assert.equal(csv.filter((l) => l.includes(',ok,')).length, N - 1);
    const bad = csv.filter((l) => l.includes(',failed,'));
    assert.equal(bad.length, 1);
    assert.ok(
      bad[0]!.startsWith(
        `${pairs[FAULTY]!.a},2000${String(FAULTY).padStart(4, '0')},failed,,,,${KeyloadErrorCode.AUTH},`,
      ),
    );
    assert.match(progressBar(progress.at(-1)!), /^\[#+\] 20\/20 {2}ok 19 {2}failed 1 {2}running 0$/);
  });
});

describe('ports file', () => {
  it('accepts serial paths, tcp targets, baud rates, quotes and comments', () => {
    const entries = parsePortsCsv(
      'port,tid,baud\n# comment\n\n/dev/ttyUSB0,10000001,9600\n"tcp:10.0.0.7:4001",10000002,\n',
    );
    assert.deepEqual(
      entries.map((e) => [e.target, e.tid, e.line]),
      [
        [{ port: '/dev/ttyUSB0', baudRate: 9600 }, '10000001', 4],
        [{ tcp: '10.0.0.7:4001' }, '10000002', 5],
      ],
    );
  });

  it('rejects malformed files with POSKEY_ERR_KEYLOAD_BULK_FILE and the line', () => {
    const bad = [
      '',
      'tid,port\n/dev/a,1',
      'port,tid\n',
      'port,tid\n/dev/a,10000001\n/dev/a,10000002',
      'port,tid\n/dev/a,10000001\n/dev/b,10000001',
      'port,tid\n/dev/a',
      'port,tid,baud\n/dev/a,10000001,fast',
      'port,tid\n/dev/a,10000001,extra',
      'port,tid\ntcp:host-without-port,10000001',
    ];
    for (const text of bad) {
      assert.throws(
        () => parsePortsCsv(text),
        (e: unknown) =>
          (e as { code?: string }).code === KeyloadErrorCode.BULK_FILE && /line \d+/.test(String(e)),
        JSON.stringify(text),
      );
    }
  });

  it('quotes report cells that hold commas or quotes', () => {
    const csv = formatBulkCsv([
      {
        port: '/dev/a',
        tid: '1',
        status: 'failed',
        code: 'X',
        reason: 'a, "b"',
        startedMs: 0,
        durationMs: 1,
      },
    ]);
    assert.equal(csv.split('\n')[1], '/dev/a,1,failed,,,,X,"a, ""b""",0,1');
  });

  it('refuses a bad concurrency', async () => {
    await assert.rejects(
      injectBulk({
        entries: [],
        concurrency: 0,
        hsm: world.hsm,
        registry: world.registry,
        transportKey: world.transportKey,
      }),
      (e: unknown) => (e as { code?: string }).code === KeyloadErrorCode.OPTION,
    );
  });
});
