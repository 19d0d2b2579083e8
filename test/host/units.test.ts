/**
 * The host's small parts: config schema and durations, the duplicate guard, RRNs, the latency
 * histogram, the reply frame, response MTIs and terminal profiles.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  DEFAULT_MAX_TAK_AGE_MS,
  parseDuration,
  parseHostConfig,
  readHostConfigFile,
} from '../../src/host/config.js';
import { RrnSource } from '../../src/host/ids.js';
import { Histogram } from '../../src/host/metrics.js';
import { encodeReply } from '../../src/host/server.js';
import { DuplicateGuard } from '../../src/host/steps/duplicate.js';
import { responseMti } from '../../src/host/steps/journal.js';
import { TerminalDirectory } from '../../src/host/terminals.js';
import { parseFrame, TERMINAL_PROFILE } from '../../src/iso8583/index.js';
import type { Terminal, TerminalStore } from '../../src/store/types.js';

function configError(input: unknown): { code: string; field: string | undefined } {
  try {
    parseHostConfig(input);
  } catch (e) {
    const err = e as { code: string; field?: string };
    return { code: err.code, field: err.field };
  }
  assert.fail('expected POSKEY_ERR_HOST_CONFIG');
}

describe('host config', () => {
  it('fills every default and freezes the result', () => {
    const c = parseHostConfig({});
    assert.equal(c.port, 5858);
    assert.equal(c.maxTakAge, DEFAULT_MAX_TAK_AGE_MS);
    assert.equal(c.macAlgorithm, 'unionpay-ecb');
    assert.equal(c.journal.mode, 'write-ahead');
    assert.equal(c.network.port, 5859);
    assert.equal(c.network.timeout, 5000);
    assert.deepEqual(c.hsm, { mode: 'in-process', dataDir: './data/hsm', dev: false });
    assert.deepEqual([...c.signInCodes], ['001', '003', '004', '006']);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.network) && Object.isFrozen(c.signInCodes));
  });

  it('reads durations as ms or with a unit', () => {
    assert.equal(parseDuration('24h'), 86_400_000);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration(250), 250);
    assert.equal(parseDuration('soon'), undefined);
    assert.equal(parseDuration(-1), undefined);
    const c = parseHostConfig({
      maxTakAge: '1h',
      network: { timeout: '750ms' },
      hsm: { mode: 'tcp', port: 1600 },
    });
    assert.equal(c.maxTakAge, 3_600_000);
    assert.equal(c.network.timeout, 750);
    assert.equal(c.hsm.mode === 'tcp' && c.hsm.port, 1600);
  });

  it('refuses unknown keys and bad values, naming the field (POSKEY_ERR_HOST_CONFIG)', () => {
    assert.deepEqual(configError({ prot: 1 }), { code: 'POSKEY_ERR_HOST_CONFIG', field: 'config' });
    assert.deepEqual(configError({ port: 70000 }), { code: 'POSKEY_ERR_HOST_CONFIG', field: 'port' });
    assert.deepEqual(configError({ maxTakAge: 'forever' }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'maxTakAge',
    });
    assert.deepEqual(configError({ network: { timeout: 0 } }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'network.timeout',
    });
    assert.deepEqual(configError({ acquirerId: '12AB' }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'acquirerId',
    });
    assert.deepEqual(configError({ signInCodes: ['002'] }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'signInCodes.0',
    });
    assert.deepEqual(configError({ hsm: { mode: 'remote' } }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'hsm.mode',
    });
    assert.deepEqual(configError({ journal: { mode: 'lazy' } }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'journal.mode',
    });
    assert.deepEqual(configError({ network: { reconnectMin: 500, reconnectMax: 100 } }), {
      code: 'POSKEY_ERR_HOST_CONFIG',
      field: 'network.reconnectMax',
    });
  });

  it('reads a JSON config file, refusing unreadable, non-JSON and non-object files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poskey-host-config-'));
    writeFileSync(join(dir, 'ok.json'), '{"port": 0}');
    writeFileSync(join(dir, 'bad.json'), '{port');
    writeFileSync(join(dir, 'list.json'), '[1]');
    assert.deepEqual(await readHostConfigFile(join(dir, 'ok.json')), { port: 0 });
    for (const f of ['missing.json', 'bad.json', 'list.json']) {
      await assert.rejects(readHostConfigFile(join(dir, f)), {
        code: 'POSKEY_ERR_HOST_CONFIG',
        field: 'config',
      });
    }
  });
});

describe('DuplicateGuard', () => {
  it('refuses a key in flight or recently released, and forgets the oldest past its capacity', () => {
    const g = new DuplicateGuard(2);
    assert.equal(g.claim('a'), true);
    assert.equal(g.claim('a'), false);
    g.release('a');
    assert.equal(g.claim('a'), false, 'recent');
    for (const k of ['b', 'c']) {
      assert.equal(g.claim(k), true);
      g.release(k);
    }
    assert.equal(g.claim('a'), true, 'pushed out of the ring');
    assert.equal(g.inFlight, 1);
    g.release('never-claimed');
    assert.equal(g.inFlight, 1);
  });
});

describe('RrnSource', () => {
  it('gives 12 digits: hhmmss, the node digit, a sequence; unique within a second', () => {
    const ids = new RrnSource(7);
    const at = new Date(2026, 0, 2, 13, 4, 5).getTime();
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) {
      const rrn = ids.rrn(at);
      assert.ok(rrn.startsWith('1304057'));
      seen.add(rrn);
    }
    assert.equal(seen.size, 100_000);
    assert.throws(() => new RrnSource(10), RangeError);
  });
});

describe('Histogram', () => {
  it('reports percentiles within one bucket (about 9%) of the true value', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0.001, max: 5000, noNaN: true }), { minLength: 1, maxLength: 300 }),
        (ms) => {
          const h = new Histogram();
          for (const v of ms) h.record(v);
          const sorted = [...ms].sort((a, b) => a - b);
          const p99 = sorted[Math.max(0, Math.ceil(0.99 * ms.length) - 1)]! * 1000;
          const got = h.percentile(0.99);
          return got >= p99 * 0.999 - 1 && got <= Math.max(p99 * 1.13, 1.01);
        },
      ),
    );
    const empty = new Histogram().snapshot();
    assert.deepEqual(empty, { count: 0, meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 });
  });
});

describe('encodeReply', () => {
  it('swaps the TPDU addresses, echoes the header with the processing requirement, skips an LRI', () => {
    const lri = Buffer.concat([Buffer.from('4C5249001C', 'hex'), Buffer.alloc(28, 0x31)]);
    const header = Buffer.from('603100000000', 'hex');
    const payload = Buffer.concat([
      Buffer.from('6000120034', 'hex'),
      lri,
      header,
      Buffer.from('0810', 'hex'),
    ]);
    const frame = encodeReply(payload, 5 + 33, Buffer.from('08102000', 'hex'), 3);
    const env = parseFrame(frame, TERMINAL_PROFILE);
    assert.deepEqual(env.tpdu, { id: 0x60, destination: 0x0034, source: 0x0012 });
    assert.equal(env.header?.processingRequirement, 3);
    assert.equal(env.header?.appType, '60');
    assert.equal(env.lri, undefined);
    assert.equal(env.body.toString('hex'), '08102000');
    const keep = parseFrame(encodeReply(payload, 38, Buffer.from('0810', 'hex'), -1), TERMINAL_PROFILE);
    assert.equal(keep.header?.processingRequirement, 0);
  });

  it('responseMti adds one to the third digit', () => {
    assert.equal(responseMti('0200'), '0210');
    assert.equal(responseMti('0800'), '0810');
    assert.equal(responseMti('0400'), '0410');
  });
});

describe('TerminalDirectory', () => {
  const terminal = (tid: string, keyAlgorithm: 'TDES' | 'SM4'): Terminal =>
    ({ tid, mid: 'M', keyAlgorithm, version: 1 }) as unknown as Terminal;

  it('derives the profile from the key algorithm and the per-terminal MAC override', () => {
    const d = new TerminalDirectory({} as TerminalStore, {
      ttlMs: 1000,
      macAlgorithm: 'unionpay-ecb',
      terminalMac: { X9190001: 'x919', SM400001: 'x919' },
    });
    assert.deepEqual(d.profileOf(terminal('T0000001', 'TDES')), {
      mac: 'unionpay-ecb',
      pinFormat: 0,
      blockBytes: 8,
    });
    assert.equal(d.profileOf(terminal('X9190001', 'TDES')).mac, 'retail');
    assert.deepEqual(d.profileOf(terminal('SM400001', 'SM4')), {
      mac: 'unionpay-ecb',
      pinFormat: 'sm4',
      blockBytes: 16,
    });
  });

  it('serves a fresh record from memory, re-reads a stale one, and drops the oldest past its size', async () => {
    let reads = 0;
    const store = {
      get: async (tid: string) => {
        reads++;
        return tid === 'NONE0000' ? undefined : terminal(tid, 'TDES');
      },
    } as unknown as TerminalStore;
    const d = new TerminalDirectory(store, { ttlMs: 50, macAlgorithm: 'unionpay-ecb', maxEntries: 2 });
    const first = await d.lookup('A0000001');
    assert.equal(reads, 1);
    const again = d.lookup('A0000001');
    assert.ok(!(again instanceof Promise), 'synchronous while fresh');
    assert.equal(again, first);
    await new Promise((r) => setTimeout(r, 60));
    await d.lookup('A0000001');
    assert.equal(reads, 2);
    assert.equal(await d.lookup('NONE0000'), undefined);
    await d.lookup('B0000001');
    await d.lookup('C0000001');
    assert.equal(d.size, 2);
    d.forget('C0000001');
    assert.equal(d.size, 1);
  });
});
