import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { rklServeConfig } from '../../src/cli/host.js';
import { PoskeyError } from '../../src/errors.js';
import { parseRklConfig } from '../../src/host/rkl/plugin.js';
import { Tr34Krd } from '../../src/keyload/tr34.js';
import { derToPem } from '../../src/keyload/x509.js';
import { runFleet } from '../../src/terminal/fleet.js';
import { PinPad } from '../../src/terminal/pinpad.js';
import { postJson, type RklClientError, runRkl } from '../../src/terminal/rkl-client.js';
import { rklProvision, simulatedSerial } from '../../src/terminal/rkl-fleet.js';
import { Terminal } from '../../src/terminal/terminal.js';
import { sqliteFixture } from '../store/helpers.js';
import { CARDS, MID, startWorld, swipe, type World } from './helpers.js';
import { type Device, type RklWorld, startRkl } from './rkl-helpers.js';

let host: World;
let rkl: RklWorld;
before(async () => {
  host = await startWorld(await sqliteFixture());
  rkl = await startRkl(host);
});
after(async () => {
  await rkl.close();
  await host.close();
});

const DAY = 86_400_000;
const post = (path: string, body: unknown) => postJson(`${rkl.url}${path}`, body, { tlsCa: rkl.tlsCa });
const pem = (d: Device) => derToPem(d.cert.der, 'CERTIFICATE');

async function register(tid: string, keyAlgorithm: 'TDES' | 'SM4', serial?: string) {
  await host.store.terminals.create({ tid, mid: MID, keyAlgorithm, ...(serial ? { serial } : {}) });
}

async function signInAndBuy(tid: string, pad: PinPad, algorithm: 'tdes' | 'sm4') {
  const terminal = new Terminal(
    {
      tid,
      mid: MID,
      host: '127.0.0.1',
      port: host.port,
      algorithm,
      timeouts: { responseMs: 10_000, connectMs: 2000 },
    },
    { pinPad: pad },
  );
  try {
    const signIn = await terminal.signIn();
    assert.equal(signIn.approved, true, JSON.stringify(signIn));
    const r = await terminal.purchase(swipe(CARDS.good), 1234, CARDS.good.pin);
    assert.equal(r.outcome, 'approved', r.responseText);
    assert.equal(r.macVerified, true);
  } finally {
    await terminal.close();
  }
}

function rejects(code: string, status?: number) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, String(e));
    assert.equal(e.code, code, e.message);
    if (status !== undefined) assert.equal((e as RklClientError).status, status);
    return true;
  };
}

describe('remote key loading over HTTPS: bare terminal → TMK → signs in → buys', () => {
  for (const [alg, keyAlgorithm, padAlg] of [
    ['rsa', 'TDES', 'tdes'],
    ['sm2', 'SM4', 'sm4'],
  ] as const) {
    it(`${keyAlgorithm} terminal over ${alg.toUpperCase()}`, async () => {
      const tid = alg === 'rsa' ? 'RKL00001' : 'RKL00002';
      const serial = `SN-RKL-${alg}`;
      await register(tid, keyAlgorithm, serial);
      const pad = new PinPad({ serial });
      const device = rkl.device(alg, serial);
      const result = await runRkl({
        url: rkl.url,
        tlsCa: rkl.tlsCa,
        tid,
        pad,
        krd: device,
        vendorCa: rkl.ca[alg].cert,
        algorithm: padAlg,
      });
      assert.equal(result.tid, tid);
      assert.equal(result.tmkSource, 'hsm');
      const t = await host.store.terminals.get(tid);
      assert.ok(t?.tmk, 'the registry holds the TMK after confirmation');
      assert.equal(pad.slotInfo(0)?.kcv, result.kcv);
      await signInAndBuy(tid, pad, padAlg);
      // A second run loads the registry's TMK again (a replaced pad of the same serial).
      const again = await runRkl({
        url: rkl.url,
        tlsCa: rkl.tlsCa,
        tid,
        pad: new PinPad({ serial }),
        krd: device,
        vendorCa: rkl.ca[alg].cert,
        algorithm: padAlg,
      });
      assert.equal(again.tmkSource, 'registry');
      assert.equal(again.kcv, result.kcv);
      const audit = readFileSync(rkl.auditPath, 'utf8');
      assert.match(audit, /rkl\.confirm/);
    });
  }
});

describe('remote key loading refuses bad requests and keeps serving', () => {
  it('a replayed nonce, an unknown TID, a wrong device, an expired certificate, bad JSON', async () => {
    await register('RKLNEG01', 'TDES', 'SN-NEG-1');
    const good = rkl.device('rsa', 'SN-NEG-1');
    const nonce = 'a1'.repeat(16);
    const first = await post('/rkl/v1/token', { tid: 'RKLNEG01', certificate: pem(good), nonce });
    assert.equal(first.status, 201);
    const replay = await post('/rkl/v1/token', { tid: 'RKLNEG01', certificate: pem(good), nonce });
    assert.deepEqual(
      [replay.status, replay.json.code, replay.json.field],
      [409, 'POSKEY_ERR_RKL_NONCE_REPLAY', 'nonce'],
    );

    const unknown = await post('/rkl/v1/token', {
      tid: 'NOSUCH01',
      certificate: pem(good),
      nonce: 'b2'.repeat(16),
    });
    assert.deepEqual(
      [unknown.status, unknown.json.code, unknown.json.field],
      [404, 'POSKEY_ERR_RKL_UNKNOWN_TID', 'tid'],
    );

    const other = rkl.device('rsa', 'SN-OTHER');
    const wrong = await post('/rkl/v1/token', {
      tid: 'RKLNEG01',
      certificate: pem(other),
      nonce: 'c3'.repeat(16),
    });
    assert.deepEqual(
      [wrong.status, wrong.json.code, wrong.json.field],
      [409, 'POSKEY_ERR_RKL_WRONG_DEVICE', 'certificate'],
    );

    const old = rkl.device('rsa', 'SN-NEG-1', {
      notBefore: new Date(Date.now() - 30 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const expired = await post('/rkl/v1/token', {
      tid: 'RKLNEG01',
      certificate: pem(old),
      nonce: 'd4'.repeat(16),
    });
    assert.deepEqual([expired.status, expired.json.code], [403, 'POSKEY_ERR_CERT_EXPIRED']);

    const sm2 = rkl.device('sm2', 'SN-NEG-1');
    const alg = await post('/rkl/v1/token', {
      tid: 'RKLNEG01',
      certificate: pem(sm2),
      nonce: 'e5'.repeat(16),
    });
    assert.deepEqual([alg.status, alg.json.code], [400, 'POSKEY_ERR_RKL_ALGORITHM']);

    const bad = await fetchRaw('{"tid": ');
    assert.deepEqual([bad.status, bad.json.code, bad.json.field], [400, 'POSKEY_ERR_RKL_INPUT', 'body']);
    const noNonce = await post('/rkl/v1/token', { tid: 'RKLNEG01', certificate: pem(good) });
    assert.deepEqual(
      [noNonce.status, noNonce.json.code, noNonce.json.field],
      [400, 'POSKEY_ERR_RKL_INPUT', 'nonce'],
    );
    const notCert = await post('/rkl/v1/token', {
      tid: 'RKLNEG01',
      certificate: 'AAAA',
      nonce: 'f6'.repeat(16),
    });
    assert.deepEqual(
      [notCert.status, notCert.json.code, notCert.json.field],
      [400, 'POSKEY_ERR_RKL_INPUT', 'certificate'],
    );

    const session = await post('/rkl/v1/confirm', { session: 'nope', kcv: 'ABCDEF' });
    assert.deepEqual([session.status, session.json.code], [404, 'POSKEY_ERR_RKL_SESSION']);
    const kcv = await post('/rkl/v1/confirm', { session: first.json.session, kcv: '000000' });
    assert.deepEqual(
      [kcv.status, kcv.json.code, kcv.json.field],
      [400, 'POSKEY_ERR_RKL_KCV_MISMATCH', 'kcv'],
    );
    assert.equal(
      (await host.store.terminals.get('RKLNEG01'))?.tmk,
      null,
      'nothing bound without the right KCV',
    );

    // Still serving: the right device loads its key.
    const pad = new PinPad({ serial: 'SN-NEG-1' });
    await runRkl({
      url: rkl.url,
      tlsCa: rkl.tlsCa,
      tid: 'RKLNEG01',
      pad,
      krd: good,
      vendorCa: rkl.ca.rsa.cert,
      algorithm: 'tdes',
    });
    assert.ok((await host.store.terminals.get('RKLNEG01'))?.tmk);
  });

  it('the device rejects a tampered token; nothing is loaded or bound, and no clear key leaves the host', async () => {
    await register('RKLNEG02', 'TDES', 'SN-NEG-2');
    const dev = rkl.device('rsa', 'SN-NEG-2');
    const krd = new Tr34Krd({ cert: dev.cert, privateKey: dev.privateKey, caRoot: rkl.ca.rsa.cert });
    const nonce = krd.createNonce();
    const issued = await post('/rkl/v1/token', {
      tid: 'RKLNEG02',
      certificate: pem(dev),
      nonce: nonce.toString('hex'),
    });
    assert.equal(issued.status, 201);
    const token = Buffer.from(issued.json.token as string, 'base64');
    const tampered = Buffer.from(token);
    tampered[tampered.length - 40]! ^= 0x01;
    assert.throws(
      () => krd.openKeyToken(tampered),
      (e) => e instanceof PoskeyError && e.code.startsWith('POSKEY_ERR_'),
    );
    // The honest token with a fresh nonce opens; its clear key is nowhere in the answers or the audit log.
    const krd2 = new Tr34Krd({ cert: dev.cert, privateKey: dev.privateKey, caRoot: rkl.ca.rsa.cert });
    const n2 = krd2.createNonce();
    const honest = await post('/rkl/v1/token', {
      tid: 'RKLNEG02',
      certificate: pem(dev),
      nonce: n2.toString('hex'),
    });
    const opened = krd2.openKeyToken(Buffer.from(honest.json.token as string, 'base64'));
    const clearHex = opened.clearKey.toString('hex');
    for (const text of [
      JSON.stringify(issued.json),
      JSON.stringify(honest.json),
      readFileSync(rkl.auditPath, 'utf8'),
    ]) {
      assert.ok(!text.toLowerCase().includes(clearHex), 'clear TMK leaked');
      assert.ok(!text.includes(opened.clearKey.toString('base64')), 'clear TMK leaked');
    }
    assert.equal((await host.store.terminals.get('RKLNEG02'))?.tmk, null);
  });

  it('the client names the host error (code, field) and a device whose pad serial differs', async () => {
    const dev = rkl.device('rsa', 'SN-NEG-3');
    await assert.rejects(
      runRkl({
        url: rkl.url,
        tlsCa: rkl.tlsCa,
        tid: 'NOSUCH02',
        pad: new PinPad({ serial: 'SN-NEG-3' }),
        krd: dev,
        vendorCa: rkl.ca.rsa.cert,
        algorithm: 'tdes',
      }),
      rejects('POSKEY_ERR_RKL_UNKNOWN_TID', 404),
    );
    await assert.rejects(
      runRkl({
        url: rkl.url,
        tlsCa: rkl.tlsCa,
        tid: 'NOSUCH02',
        pad: new PinPad({ serial: 'SN-ELSE' }),
        krd: dev,
        vendorCa: rkl.ca.rsa.cert,
        algorithm: 'tdes',
      }),
      rejects('POSKEY_ERR_RKL_DEVICE'),
    );
  });
});

async function fetchRaw(body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(
      `${rkl.url}/rkl/v1/token`,
      { method: 'POST', ca: rkl.tlsCa, headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('fleet provisioning over RKL, no human step', () => {
  it('provisions 3 TDES terminals that sign in and transact', async () => {
    const report = await runFleet({
      host: '127.0.0.1',
      port: host.port,
      terminals: 3,
      rate: 6,
      durationSeconds: 1,
      tidPrefix: 'FLT',
      provision: rklProvision({
        url: rkl.url,
        tlsCa: rkl.tlsCa,
        vendorCa: rkl.ca.rsa,
        mid: MID,
        algorithm: 'tdes',
        register: (tid, serial) => register(tid, 'TDES', serial),
      }),
      terminal: { algorithm: 'tdes', timeouts: { responseMs: 10_000, connectMs: 2000 } },
    });
    assert.deepEqual(
      report.terminals,
      { requested: 3, ready: 3, failed: 0 },
      JSON.stringify(report.errors ?? report),
    );
    for (const tid of ['FLT00001', 'FLT00002', 'FLT00003']) {
      const t = await host.store.terminals.get(tid);
      assert.equal(t?.serial, simulatedSerial(tid));
      assert.ok(t?.tmk, `${tid} has its TMK`);
    }
    assert.ok(report.transactions.completed > 0);
  });
});

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the CLI', () => {
  it('poskey terminal rkl loads the TMK; bad input exits 2 with code and field', async () => {
    await register('RKLCLI01', 'SM4', 'SN-CLI-1');
    const dev = rkl.device('sm2', 'SN-CLI-1');
    const dir = mkdtempSync(join(tmpdir(), 'poskey-rkl-cli-'));
    try {
      const files = {
        cert: join(dir, 'krd.pem'),
        key: join(dir, 'krd.key'),
        ca: join(dir, 'ca.pem'),
        tls: join(dir, 'tls.pem'),
      };
      writeFileSync(files.cert, pem(dev));
      writeFileSync(files.key, dev.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, {
        mode: 0o600,
      });
      writeFileSync(files.ca, derToPem(rkl.ca.sm2.cert.der, 'CERTIFICATE'));
      writeFileSync(files.tls, rkl.tlsCa);
      const args = [
        'terminal',
        'rkl',
        '--url',
        rkl.url,
        '--cert',
        files.cert,
        '--key',
        files.key,
        '--vendor-ca',
        files.ca,
        '--tls-ca',
        files.tls,
        '--algorithm',
        'sm4',
      ];
      const ok = await cli([...args, '--tid', 'RKLCLI01', '--json']);
      assert.equal(ok.code, 0, ok.stderr);
      const out = JSON.parse(ok.stdout) as { tid: string; kcv: string };
      assert.equal(out.tid, 'RKLCLI01');
      assert.ok((await host.store.terminals.get('RKLCLI01'))?.tmk);
      const bad = await cli([...args, '--tid', 'RKLCLI01', '--slot', 'x']);
      assert.equal(bad.code, 2);
      assert.equal(bad.stderr.trim(), 'poskey: POSKEY_ERR_CLI_OPTION: --slot: must be a slot number');
      const unknown = await cli([...args, '--tid', 'NOSUCH03']);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /^poskey: POSKEY_ERR_RKL_UNKNOWN_TID: tid: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('poskey host serve --rkl-* flags make the RKL config; off without --rkl-profile', () => {
    assert.equal(rklServeConfig({}), undefined);
    assert.deepEqual(
      rklServeConfig({
        rklProfile: ['ca.pem,kdh.pem,kdh.key'],
        rklTlsCert: 't.pem',
        rklTlsKey: 't.key',
        rklPort: 0,
      }),
      {
        host: '127.0.0.1',
        port: 0,
        tls: { cert: 't.pem', key: 't.key' },
        profiles: [{ vendorCa: 'ca.pem', kdh: { cert: 'kdh.pem', key: 'kdh.key' } }],
      },
    );
    assert.throws(
      () => rklServeConfig({ rklProfile: ['ca.pem'], rklTlsCert: 't', rklTlsKey: 'k' }),
      rejects('POSKEY_ERR_CLI_OPTION'),
    );
    assert.throws(() => rklServeConfig({ rklProfile: ['a,b,c'] }), rejects('POSKEY_ERR_CLI_OPTION'));
    assert.throws(
      () => parseRklConfig({ tls: { cert: 'a', key: 'b' }, profiles: [] }),
      rejects('POSKEY_ERR_RKL_CONFIG'),
    );
  });
});
