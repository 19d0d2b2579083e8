/**
 * The admin API and the registry behind it, over HTTP against the running platform: the three TMK
 * sources (components with KCVs, TR-31 under a KEK, generated and delivered for injection), the
 * HSM's audit of every key operation, state changes in the admin audit log, and one negative test
 * for every error code the admin API, the registry and the platform define.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createKey } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { generateKey } from '../../src/crypto/keys.js';
import { wrapKeyBlock } from '../../src/crypto/tr31.js';
import { createAdminApp, listenAdmin, statusOf } from '../../src/host/admin/app.js';
import { type Registry, RegistryError } from '../../src/host/registry.js';
import { verifyAuditLog } from '../../src/hsm/audit.js';
import { startPlatform } from '../../src/start/platform.js';
import { FAST_KDF, knownComponents, MID, nextTid, startWorld, type World } from './helpers.js';

describe('admin API and registry', () => {
  let w: World;
  before(async () => {
    w = await startWorld('sqlite');
  });
  after(async () => {
    await w?.close();
  });

  it('merchants: create (upsert), list, get; validation and 404', async () => {
    const m = { mid: '104110070110814', name: 'Second shop', mcc: '5812' };
    const created = await w.admin('POST', '/merchants', m);
    assert.equal(created.status, 201);
    assert.equal(created.body.mcc, '5812');
    assert.equal((await w.admin('POST', '/merchants', { ...m, name: 'Renamed' })).body.name, 'Renamed');
    const list = await w.admin('GET', '/merchants');
    assert.ok(list.body.merchants.some((x: { mid: string }) => x.mid === m.mid));
    assert.equal((await w.admin('GET', `/merchants/${m.mid}`)).body.name, 'Renamed');
    const missing = await w.admin('GET', '/merchants/999999999999999');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, 'POSKEY_ERR_REGISTRY_NOT_FOUND');
    const bad = await w.admin('POST', '/merchants', { ...m, mcc: '58' });
    assert.equal(bad.status, 400);
    assert.deepEqual([bad.body.code, bad.body.field], ['POSKEY_ERR_ADMIN_VALIDATION', 'mcc']);
  });

  it('TMK from components with KCVs: the KCV is the ceremony result; a wrong component KCV is refused', async () => {
    const { components, kcvs, clear } = knownComponents('TDES');
    const tid = nextTid('A');
    const r = await w.admin('POST', '/terminals', {
      tid,
      mid: MID,
      serial: `SN-${tid}`,
      tmk: { components, kcvs },
    });
    assert.equal(r.status, 201);
    assert.equal(r.body.tmk.source, 'components');
    assert.equal(r.body.tmk.kcv, checkValue(createKey('tdes', clear), { method: 'legacy', length: 3 }).value);
    assert.equal(r.body.terminal.serial, `SN-${tid}`);
    assert.equal(JSON.stringify(r.body).includes(components[0]!), false, 'components are not echoed');
    const wrong = await w.admin('POST', '/terminals', {
      tid: nextTid('A'),
      mid: MID,
      tmk: { components, kcvs: [kcvs[0], 'ABCDEF'] },
    });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.field, 'tmk.kcvs[1]');
    assert.match(wrong.body.code, /^POSKEY_ERR_KCV/);
    const taken = await w.admin('POST', '/terminals', { tid, mid: MID, tmk: { components, kcvs } });
    assert.equal(taken.status, 409);
    assert.deepEqual([taken.body.code, taken.body.field], ['POSKEY_ERR_STORE_DUPLICATE', 'tid']);
    const noMerchant = await w.admin('POST', '/terminals', { tid: nextTid('A'), mid: '000000000000000' });
    assert.deepEqual([noMerchant.status, noMerchant.body.code], [404, 'POSKEY_ERR_REGISTRY_NOT_FOUND']);
  });

  it('TMK from a TR-31 block under a KEK the HSM holds (by name)', async () => {
    const tmk = generateKey('tdes', 16);
    const block = wrapKeyBlock({
      kbpk: createKey('tdes', w.platform.factory.TDES.key),
      header: {
        version: 'B',
        usage: 'K0',
        algorithm: 'T',
        modeOfUse: 'B',
        keyVersion: '00',
        exportability: 'E',
        keyContext: '0',
        optionalBlocks: [],
      },
      key: tmk,
    });
    const r = await w.admin('POST', '/terminals', {
      tid: nextTid('B'),
      mid: MID,
      tmk: { tr31: block, kek: 'factory' },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.tmk.source, 'tr31');
    assert.equal(r.body.tmk.kcv, checkValue(createKey('tdes', tmk), { method: 'legacy', length: 3 }).value);
    const unknownKek = await w.admin('POST', '/terminals', {
      tid: nextTid('B'),
      mid: MID,
      tmk: { tr31: block, kek: 'nosuchkek' },
    });
    assert.deepEqual(
      [unknownKek.status, unknownKek.body.code, unknownKek.body.field],
      [400, 'POSKEY_ERR_REGISTRY_KEK', 'tmk.kek'],
    );
  });

  it('TMK generated by the HSM and delivered under the transport key: the cryptogram opens to the KCV', async () => {
    const r = await w.admin('POST', '/terminals', {
      tid: nextTid('D'),
      mid: MID,
      tmk: { generate: true, exportUnder: 'factory' },
    });
    assert.equal(r.status, 201);
    const d = r.body.tmk.delivery;
    assert.equal(d.format, 'legacy');
    const clear = createKey('tdes', w.platform.factory.TDES.key).ecbDecrypt(Buffer.from(d.cryptogram, 'hex'));
    assert.equal(checkValue(createKey('tdes', clear), { method: 'legacy', length: 3 }).value, d.kcv);
    assert.equal(d.kcv, r.body.tmk.kcv);
  });

  it('block / unblock are recorded in the admin audit log; TMK operations in the HSM audit log', async () => {
    const t = await w.registerKnown(nextTid('U'));
    assert.equal((await w.admin('PATCH', `/terminals/${t.tid}`, { state: 'blocked' })).body.state, 'blocked');
    assert.equal(
      (await w.admin('PATCH', `/terminals/${t.tid}`, { state: 'blocked' })).body.state,
      'blocked',
      'idempotent',
    );
    assert.equal((await w.admin('PATCH', `/terminals/${t.tid}`, { state: 'active' })).body.state, 'new');
    const bad = await w.admin('PATCH', `/terminals/${t.tid}`, { state: 'new' });
    assert.deepEqual(
      [bad.status, bad.body.code, bad.body.field],
      [400, 'POSKEY_ERR_ADMIN_VALIDATION', 'state'],
    );
    const adminLog = readFileSync(w.platform.paths.adminAuditFile, 'utf8');
    assert.match(adminLog, new RegExp(`"action":"terminal.block","keyId":"terminal:${t.tid}"`));
    assert.match(adminLog, /"actor":"admin:token:[0-9a-f]{12}"/);
    assert.equal((await verifyAuditLog(w.platform.paths.adminAuditFile)).ok, true);
    // The HSM audited the TMK import with the admin token as actor and the TMK's KCV.
    await new Promise((r) => setTimeout(r, 50));
    const hsmLog = readFileSync(join(w.platform.paths.hsm, 'audit.log'), 'utf8');
    assert.ok(
      hsmLog
        .split('\n')
        .some((l) => l.includes('"action":"key.import"') && l.includes(t.kcv) && l.includes('admin:token:')),
    );
  });

  it('journal: filters, validation', async () => {
    const ok = await w.admin('GET', '/journal?limit=5&order=desc&status=approved');
    assert.equal(ok.status, 200);
    assert.ok(Array.isArray(ok.body.entries));
    const bad = await w.admin('GET', '/journal?limit=abc');
    assert.deepEqual(
      [bad.status, bad.body.code, bad.body.field],
      [400, 'POSKEY_ERR_ADMIN_VALIDATION', 'limit'],
    );
    const extra = await w.admin('GET', '/journal?pan=6222021234567890128');
    assert.equal(extra.body.code, 'POSKEY_ERR_ADMIN_VALIDATION');
  });

  it('401 without or with a wrong token; 404 for an unknown route; /health needs none', async () => {
    assert.equal((await w.admin('GET', '/terminals', undefined, 'x'.repeat(32))).status, 401);
    const res = await fetch(`http://127.0.0.1:${w.platform.ports.admin}/terminals`);
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { code: string }).code, 'POSKEY_ERR_UNAUTHORIZED');
    const route = await w.admin('GET', '/nothing-here');
    assert.deepEqual([route.status, route.body.code], [404, 'POSKEY_ERR_ADMIN_ROUTE']);
    const health = await fetch(`http://127.0.0.1:${w.platform.ports.admin}/health`);
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { status: string; link: string }).link, 'up');
    const json = await fetch(`http://127.0.0.1:${w.platform.ports.admin}/merchants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${w.platform.adminToken}`, 'content-type': 'application/json' },
      body: '{"mid": 0123456789ABCDEF',
    });
    const jb = (await json.json()) as { code: string; message: string };
    assert.deepEqual([json.status, jb.code], [400, 'POSKEY_ERR_ADMIN_VALIDATION']);
    assert.equal(jb.message.includes('0123456789ABCDEF'), false, 'the body is not echoed');
  });

  it('registry errors for calls the API shape cannot express: REGISTRY_INPUT', async () => {
    const r = w.platform.registry;
    await assert.rejects(
      r.addTerminal({
        tid: nextTid('I'),
        mid: MID,
        tmk: { components: ['00'], tr31: 'x', kek: 'y' } as never,
      }),
      (e: unknown) =>
        e instanceof RegistryError && e.code === 'POSKEY_ERR_REGISTRY_INPUT' && e.field === 'tmk',
    );
    await assert.rejects(r.addTerminal({ tid: nextTid('I'), mid: MID, keyAlgorithm: 'AES' as never }), {
      code: 'POSKEY_ERR_REGISTRY_INPUT',
      field: 'keyAlgorithm',
    });
    await assert.rejects(r.setTerminalState('NOSUCH01', 'blocked'), {
      code: 'POSKEY_ERR_REGISTRY_NOT_FOUND',
    });
    assert.throws(() => r.addKek('bad name!', 'x'), { code: 'POSKEY_ERR_REGISTRY_INPUT' });
  });

  it('ADMIN_CONFIG for bad options, ADMIN_INTERNAL for a bug (fixed message), ADMIN_LISTEN for a taken port', async () => {
    assert.throws(() => createAdminApp({ registry: w.platform.registry, tokens: ['short'] }), {
      code: 'POSKEY_ERR_ADMIN_CONFIG',
    });
    assert.throws(() => createAdminApp({ registry: undefined as never, tokens: ['x'.repeat(20)] }), {
      code: 'POSKEY_ERR_ADMIN_CONFIG',
    });
    const broken = {
      listMerchants: async () => {
        throw new Error('key 0123456789ABCDEF0123 leaked');
      },
    } as unknown as Registry;
    const app = createAdminApp({ registry: broken, tokens: ['t'.repeat(20)] });
    const res = await app.inject({
      method: 'GET',
      url: '/merchants',
      headers: { authorization: `Bearer ${'t'.repeat(20)}` },
    });
    assert.equal(res.statusCode, 500);
    assert.deepEqual(res.json(), { code: 'POSKEY_ERR_ADMIN_INTERNAL', message: 'internal error' });
    await app.close();
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    const other = createAdminApp({ registry: w.platform.registry, tokens: ['t'.repeat(20)] });
    await assert.rejects(listenAdmin(other, '127.0.0.1', port), { code: 'POSKEY_ERR_ADMIN_LISTEN' });
    await other.close();
    blocker.close();
    assert.equal(statusOf('POSKEY_ERR_STORE_FAILED'), 503);
  });
});

describe('platform start errors', () => {
  it('START_TOKEN for a token file that does not hold a token; START_ZONE when the host lost its zone keys', async () => {
    const w = await startWorld('sqlite', { seed: false });
    const paths = w.platform.paths;
    const dir = paths.root;
    await w.platform.close();
    const base = {
      dataDir: dir,
      terminalPort: 0,
      networkPort: 0,
      adminPort: 0,
      hsmService: false,
      logLevel: 'silent' as const,
      kdf: FAST_KDF,
      seed: false,
    };
    // A restart reuses everything (zone included) without components.
    const again = await startPlatform(base);
    assert.equal(again.network.zone.source, 'stored');
    await again.close();
    writeFileSync(paths.adminTokenFile, 'not a token!\n');
    await assert.rejects(startPlatform(base), { code: 'POSKEY_ERR_START_TOKEN' });
    rmSync(paths.adminTokenFile);
    rmSync(join(paths.host, 'zone-keys.json'));
    await assert.rejects(startPlatform(base), { code: 'POSKEY_ERR_START_ZONE' });
    rmSync(dir, { recursive: true, force: true });
  });
});
