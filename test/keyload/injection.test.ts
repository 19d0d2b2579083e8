/**
 * Injection end to end over socat pty pairs: a bare terminal's PIN pad receives its TMK from the
 * key loading device (poskey), the registry is bound, the audit log has the record; then the
 * terminal signs in to the real host (test/host/helpers.ts world) and a purchase is approved.
 * Also: the host admin API as registry, TCP and SM4, every refusal, and the CLI end to end.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { toHex, xor } from '../../src/crypto/bytes.js';
import { createAdminApp, listenAdmin } from '../../src/host/admin/app.js';
import { Registry } from '../../src/host/registry.js';
import { verifyAuditLog } from '../../src/hsm/audit.js';
import { createInProcessClient } from '../../src/hsm/client/in-process.js';
import { createRootCa, issueCertificate } from '../../src/keyload/ca.js';
import { KeyloadDevice } from '../../src/keyload/device.js';
import { adminRegistry, type InjectOptions, injectTmk, storeRegistry } from '../../src/keyload/loader.js';
import {
  KeyloadErrorCode,
  type KeyloadMessage,
  kbpkAuthenticator,
  prove,
  REQUIRED_APP_ORDER,
  transportKeyHandle,
} from '../../src/keyload/protocol.js';
import { Link, openSerial } from '../../src/keyload/transport.js';
import { derToPem } from '../../src/keyload/x509.js';
import { PinPadStore } from '../../src/terminal/pinpad-store.js';
import { Terminal } from '../../src/terminal/terminal.js';
import { spawnPoskey } from '../helpers/cli.js';
import { CARDS, MID as HOST_MID, startWorld, swipe } from '../host/helpers.js';
import { sqliteFixture } from '../store/helpers.js';
import {
  bareTerminal,
  cleanupDirs,
  FAST_LINK,
  MID,
  makeWorld,
  type PtyPair,
  ptyPair,
  simulator,
  tempDir,
  transportKeyMaterial,
  type World,
} from './helpers.js';

let world: World;
const pairs: PtyPair[] = [];
const closers: (() => unknown)[] = [];

before(async () => {
  world = await makeWorld();
});
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  for (const p of pairs.splice(0)) await p.stop();
});
after(async () => {
  await world.close();
  cleanupDirs();
});

async function line(): Promise<PtyPair> {
  const p = await ptyPair();
  pairs.push(p);
  return p;
}

function options(port: string, tid: string, extra: Partial<InjectOptions> = {}): InjectOptions {
  return {
    target: { port },
    tid,
    hsm: world.hsm,
    registry: world.registry,
    transportKey: world.transportKey,
    link: FAST_LINK,
    audit: world.audit,
    ...extra,
  };
}

function fails(code: string) {
  return (e: unknown) => {
    assert.equal((e as { code?: string }).code, code, String(e));
    return true;
  };
}

describe('poskey inject over a serial line', () => {
  it('takes a bare terminal to an injected, registry-bound one that can open its sign-in keys', async () => {
    await world.register('10000001', { serial: 'SN-E2E-0001' });
    const { a, b } = await line();
    const dir = tempDir();
    const store = await PinPadStore.open(dir, 'device secret 1', { scrypt: { N: 1024, r: 8, p: 1 } });
    const pad = bareTerminal({ serial: 'SN-E2E-0001' });
    assert.equal(pad.slotInfo(0), undefined, 'bare: no TMK');
    const device = simulator(world.kbpk, { pad, store });
    const served = await device.listenSerial(b);
    closers.push(
      () => served.close(),
      () => device.destroy(),
      () => store.close(),
    );

    const steps: string[] = [];
    const report = await injectTmk(options(a, '10000001', { onStep: (s) => steps.push(s) }));
    assert.deepEqual(steps, [
      'open',
      'hello',
      'registry',
      'authenticate',
      'tmk',
      'load',
      'bind-registry',
      'bind-device',
      'audit',
    ]);
    assert.equal(report.serial, 'SN-E2E-0001');
    assert.equal(report.tmkSource, 'hsm');
    assert.equal(report.serialRecorded, true);

    // The pad holds the TMK, the registry the same key under the LMK.
    const slot = pad.slotInfo(0);
    assert.equal(slot?.role, 'tmk');
    assert.equal(slot?.kcv, report.kcv);
    const t = await world.store.terminals.get('10000001');
    assert.ok(t?.tmk);
    assert.equal(world.hsm.checkValue(t.tmk.block, 'legacy', 3).value, report.kcv);
    assert.equal(device.tid, '10000001');

    // The sealed store on disk has it too (a terminal run on this data dir starts injected).
    const reopened = await PinPadStore.open(dir, 'device secret 1');
    assert.equal(reopened.load()?.slotInfo(0)?.kcv, report.kcv);
    reopened.close();

    // Audit: one chained, verifiable record of the injection.
    const v = await verifyAuditLog(world.auditPath);
    assert.equal(v.ok, true);

    // Sign-in, cryptographically: the HSM's working keys under the registry TMK load into the pad.
    const keys = world.hsm.generateSignInKeys({ tmk: t.tmk.block, algorithm: 'tdes' });
    pad.loadWorkingKeySet([
      {
        slot: 1,
        under: 0,
        cryptogram: keys.tpk.underTmk,
        checkValue: keys.tpk.checkValue,
        role: 'pin',
        algorithm: 'tdes',
      },
      {
        slot: 2,
        under: 0,
        cryptogram: keys.tak.underTmk,
        checkValue: keys.tak.checkValue,
        role: 'mac',
        algorithm: 'des',
      },
    ]);
    const pinBlock = pad.encryptPin(1, { pin: '123456', pan: '6228480000000015' });
    assert.equal(pinBlock.length, 8);
  });

  it('re-injects the registry TMK into a replacement pad of the same serial (tmkSource auto)', async () => {
    await world.register('10000002', { serial: 'SN-RE-0002' });
    const first = await line();
    const d1 = simulator(world.kbpk, { padOptions: { serial: 'SN-RE-0002' } });
    const s1 = await d1.listenSerial(first.b);
    closers.push(() => s1.close());
    const r1 = await injectTmk(options(first.a, '10000002'));
    assert.equal(r1.tmkSource, 'hsm');
    const r2 = await injectTmk(options(first.a, '10000002'));
    assert.equal(r2.tmkSource, 'registry');
    assert.equal(r2.kcv, r1.kcv);
    const r3 = await injectTmk(options(first.a, '10000002', { tmkSource: 'hsm' }));
    assert.notEqual(r3.kcv, r1.kcv, 'a new TMK from the HSM');
    assert.equal(d1.pad.slotInfo(0)?.kcv, r3.kcv);
  });

  it('injects an SM4 TMK under an AES transport KBPK over TCP', async () => {
    const kbpk = Buffer.alloc(16, 0x3c);
    const c1 = Buffer.alloc(16, 0x11);
    const components = [toHex(c1), toHex(xor(kbpk, c1))];
    const kek = world.hsm.importKey({
      keyType: 'KEK',
      algorithm: 'aes128',
      source: { kind: 'components', components },
    });
    const h = transportKeyHandle('aes', kbpk);
    const auth = kbpkAuthenticator(h);
    h.destroy();
    await world.register('10000003', { keyAlgorithm: 'SM4' });
    const device = new KeyloadDevice({ pad: bareTerminal(), kbpk: { algorithm: 'aes', key: kbpk } });
    const server = await device.listenTcp();
    closers.push(
      () => new Promise((r) => server.close(r)),
      () => device.destroy(),
      () => auth.destroy(),
    );
    const port = (server.address() as { port: number }).port;
    const report = await injectTmk({
      ...options('unused', '10000003'),
      target: { tcp: `127.0.0.1:${port}` },
      transportKey: { kbpk: kek.keyBlock, auth },
    });
    assert.equal(report.port, `tcp:127.0.0.1:${port}`);
    assert.equal(device.pad.slotInfo(0)?.algorithm, 'sm4');
    assert.equal(report.serialRecorded, false, 'registered without a serial: the store cannot add one');
    const t = await world.store.terminals.get('10000003');
    assert.equal(world.hsm.checkValue(t!.tmk!.block, 'legacy', 3).value, report.kcv);
  });
});

describe('injection failures', () => {
  it('refuses a TID bound to another device (cloned or swapped terminal)', async () => {
    await world.register('10000010', { serial: 'SN-OWNER-10' });
    const { a, b } = await line();
    const device = simulator(world.kbpk, { padOptions: { serial: 'SN-OTHER-10' } });
    const s = await device.listenSerial(b);
    closers.push(() => s.close());
    await assert.rejects(injectTmk(options(a, '10000010')), fails(KeyloadErrorCode.SERIAL_MISMATCH));
    assert.equal(device.pad.slotInfo(0), undefined);
  });

  it('refuses an unregistered TID, and a registry source with no TMK', async () => {
    await world.register('10000011');
    const { a, b } = await line();
    const device = simulator(world.kbpk);
    const s = await device.listenSerial(b);
    closers.push(() => s.close());
    await assert.rejects(injectTmk(options(a, '99999999')), fails(KeyloadErrorCode.REGISTRY));
    await assert.rejects(
      injectTmk(options(a, '10000011', { tmkSource: 'registry' })),
      fails(KeyloadErrorCode.REGISTRY),
    );
  });

  it('fails with the HSM error when the HSM refuses (a KBPK block it cannot use)', async () => {
    await world.register('10000012');
    const { a, b } = await line();
    const device = simulator(world.kbpk);
    const s = await device.listenSerial(b);
    closers.push(() => s.close());
    const broken = { ...world.transportKey, kbpk: 'not a key block' };
    await assert.rejects(
      injectTmk(options(a, '10000012', { transportKey: broken })),
      fails(KeyloadErrorCode.HSM),
    );
    assert.equal(device.pad.slotInfo(0), undefined, 'nothing committed');
  });

  it('fails closed when the audit record cannot be written', async () => {
    await world.register('10000013');
    const { a, b } = await line();
    const device = simulator(world.kbpk);
    const s = await device.listenSerial(b);
    closers.push(() => s.close());
    const audit = { append: () => Promise.reject(new Error('disk full')) };
    await assert.rejects(injectTmk(options(a, '10000013', { audit })), fails(KeyloadErrorCode.AUDIT));
  });

  it('rejects bad options before opening anything', async () => {
    await assert.rejects(injectTmk(options('/nonexistent', 'short')), fails(KeyloadErrorCode.OPTION));
    await assert.rejects(
      injectTmk(options('/nonexistent', '10000001', { slot: 300 })),
      fails(KeyloadErrorCode.OPTION),
    );
    await assert.rejects(
      injectTmk(options('/nonexistent', '10000001', { tmkSource: 'x' as 'hsm' })),
      fails(KeyloadErrorCode.OPTION),
    );
  });

  it('refuses a device whose confirmed check value differs from the HSM one', async () => {
    await world.register('10000014');
    const { a, b } = await line();
    const fake = await buggyFirmwareDevice(b, world.kbpk);
    closers.push(() => fake.close());
    await assert.rejects(injectTmk(options(a, '10000014')), fails(KeyloadErrorCode.KCV_MISMATCH));
    const t = await world.store.terminals.get('10000014');
    assert.equal(t?.tmk, null, 'the registry is not bound');
  });
});

/**
 * A device whose firmware confirms a wrong check value: it authenticates properly (it holds the
 * KBPK) but answers LOAD_KEY with KCV 000000.
 */
async function buggyFirmwareDevice(path: string, kbpk: Buffer): Promise<Link> {
  const h = transportKeyHandle('tdes', kbpk);
  const auth = kbpkAuthenticator(h);
  h.destroy();
  const serial = Buffer.from('SN-BUGGY-01');
  let rl: Buffer = Buffer.alloc(0);
  let rd: Buffer = Buffer.alloc(0);
  const link = new Link(await openSerial(path), FAST_LINK);
  link.serve(async (m): Promise<KeyloadMessage> => {
    if (m.type === 'HELLO') {
      return {
        type: 'DEVICE_INFO',
        version: 1,
        vendor: 'poskey',
        model: 'BUGGY',
        serial: serial.toString(),
        firmware: '0.0.1',
        apps: [...REQUIRED_APP_ORDER],
        clock: new Date().toISOString(),
        tamper: 'none',
        authMethods: ['kbpk-cmac'],
      };
    }
    if (m.type === 'AUTH_CHALLENGE') {
      rl = m.nonce;
      rd = randomBytes(16);
      return { type: 'AUTH_RESPONSE', nonce: rd, proof: await prove(auth, 'device', [rl, rd, serial]) };
    }
    if (m.type === 'AUTH_CONFIRM') return { type: 'AUTH_OK' };
    if (m.type === 'LOAD_KEY') {
      const proof = await prove(auth, 'loaded', [rl, rd, Buffer.from([m.slot]), Buffer.from('000000')]);
      return { type: 'KEY_LOADED', slot: m.slot, kcv: '000000', algorithm: 'tdes', proof };
    }
    return { type: 'ERROR', code: 1, reason: 'unexpected' };
  });
  void link.done.then(() => auth.destroy());
  return link;
}

describe('bare terminal → injected → signs in → buys, against the real host', () => {
  it("injects over a pty with the host's own store and HSM, then signs in and is approved", async () => {
    const host = await startWorld(await sqliteFixture());
    closers.push(() => host.close());
    // The host's HSM learns the factory transport KBPK (a key ceremony would do this once).
    const { components } = transportKeyMaterial();
    const kbpkClear = Buffer.from(components[0]!, 'hex').map(
      (b, i) => b ^ Buffer.from(components[1]!, 'hex')[i]!,
    );
    const kek = host.hsm.importKey({
      keyType: 'KEK',
      algorithm: 'tdes2',
      source: { kind: 'components', components },
    });
    const h = transportKeyHandle('tdes', Buffer.from(kbpkClear));
    const auth = kbpkAuthenticator(h);
    h.destroy();
    closers.push(() => auth.destroy());
    await host.store.terminals.create({
      tid: 'E2E00001',
      mid: HOST_MID,
      keyAlgorithm: 'TDES',
      serial: 'SN-E2E-HOST',
    });

    const { a, b } = await line();
    const pad = bareTerminal({ serial: 'SN-E2E-HOST' });
    const device = simulator(Buffer.from(kbpkClear), { pad });
    const served = await device.listenSerial(b, FAST_LINK);
    closers.push(
      () => served.close(),
      () => device.destroy(),
    );

    const report = await injectTmk({
      target: { port: a },
      tid: 'E2E00001',
      hsm: host.client,
      registry: storeRegistry(host.store),
      transportKey: { kbpk: kek.keyBlock, auth },
      link: FAST_LINK,
    });
    assert.equal(report.serial, 'SN-E2E-HOST');

    const terminal = new Terminal(
      {
        tid: 'E2E00001',
        mid: HOST_MID,
        host: '127.0.0.1',
        port: host.port,
        algorithm: 'tdes',
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
  });
});

describe('the host admin API as the registry', () => {
  it('binds through PUT /terminals/:tid/tmk: the host imports the TR-31 block and confirms the KCV', async () => {
    const registry = new Registry({
      store: world.store,
      hsm: createInProcessClient(world.hsm),
      keks: { factory: world.transportKey.kbpk },
    });
    const token = 'admin-token-0123456789';
    const app = createAdminApp({ registry, tokens: [token] });
    const port = await listenAdmin(app, '127.0.0.1', 0);
    closers.push(() => app.close());
    await registry.addTerminal({ tid: '10000020', mid: MID });
    const { a, b } = await line();
    const device = simulator(world.kbpk);
    const s = await device.listenSerial(b);
    closers.push(() => s.close());
    const url = `http://127.0.0.1:${port}`;
    const report = await injectTmk(
      options(a, '10000020', { registry: adminRegistry({ url, token, kek: 'factory' }) }),
    );
    assert.equal(report.tmkSource, 'hsm');
    assert.equal(report.serialRecorded, false, 'the admin API cannot record a serial');
    const view = await registry.getTerminal('10000020');
    assert.equal(view.tmk?.kcv, report.kcv);
    assert.equal(device.pad.slotInfo(0)?.kcv, report.kcv);

    // An unknown TID, and a host that holds another transport KBPK, are registry failures.
    await assert.rejects(
      injectTmk(options(a, '10009999', { registry: adminRegistry({ url, token, kek: 'factory' }) })),
      fails(KeyloadErrorCode.REGISTRY),
    );
    const other = world.hsm.importKey({
      keyType: 'KEK',
      algorithm: 'tdes2',
      source: { kind: 'components', components: transportKeyMaterial().components },
    });
    registry.addKek('other', other.keyBlock);
    await assert.rejects(
      injectTmk(options(a, '10000020', { registry: adminRegistry({ url, token, kek: 'other' }) })),
      fails(KeyloadErrorCode.REGISTRY),
    );
  });
});

describe('the loader refuses a device that shows a fault, before loading anything', () => {
  const cases: [string, Parameters<typeof simulator>[1] & object, string][] = [
    ['tampered', {}, KeyloadErrorCode.TAMPERED],
    ['clock three days behind', { clockOffsetMs: -3 * 86400_000 }, KeyloadErrorCode.CLOCK_SKEW],
    [
      'apps out of order',
      { padOptions: { apps: ['bank-card', ...REQUIRED_APP_ORDER.filter((x) => x !== 'bank-card')] } },
      KeyloadErrorCode.APP_ORDER,
    ],
    [
      'an app missing',
      { padOptions: { apps: REQUIRED_APP_ORDER.slice(0, 2) } },
      KeyloadErrorCode.APP_MISSING,
    ],
    ['an expired certificate', { certificate: 'expired' }, KeyloadErrorCode.CERTIFICATE],
    ['another transport KBPK', { kbpkOverride: true } as never, KeyloadErrorCode.AUTH],
  ];
  for (const [name, opts, code] of cases) {
    it(`${code}: ${name}`, async () => {
      const tid = `3000${String(cases.findIndex((c) => c[0] === name)).padStart(4, '0')}`;
      await world.register(tid);
      const { a, b } = await line();
      const { kbpkOverride, certificate, ...rest } = opts as { kbpkOverride?: boolean; certificate?: string };
      const device = simulator(kbpkOverride ? transportKeyMaterial().clear : world.kbpk, {
        ...rest,
        ...(certificate ? { certificate: expiredCertificate() } : {}),
      });
      if (name === 'tampered') device.tamper();
      const s = await device.listenSerial(b);
      closers.push(() => s.close());
      await assert.rejects(injectTmk(options(a, tid)), fails(code));
      assert.equal(device.pad.slotInfo(0), undefined);
      assert.equal((await world.store.terminals.get(tid))?.tmk, null);
    });
  }

  it('names a missing port (POSKEY_ERR_KEYLOAD_PORT_NOT_FOUND)', async () => {
    await assert.rejects(
      injectTmk(options('/dev/ttyPOSKEY-NONE', '10000001')),
      fails(KeyloadErrorCode.PORT_NOT_FOUND),
    );
  });
});

function expiredCertificate(): string {
  const ca = createRootCa({ cn: 'Test root' });
  const { cert } = issueCertificate(ca, {
    role: 'krd',
    cn: 'terminal',
    notBefore: new Date(Date.UTC(2020, 0, 1)),
    notAfter: new Date(Date.UTC(2021, 0, 1)),
  });
  return derToPem(cert.der, 'CERTIFICATE');
}

const poskey = spawnPoskey;

describe('the CLI: poskey device serve + poskey inject over a socat pty', () => {
  it('injects a TDES TMK into a simulated terminal with a sealed PIN pad store', async () => {
    const hostDir = tempDir('poskey-cli-host-');
    const termDir = tempDir('poskey-cli-term-');
    const { a, b } = await line();
    const { components } = transportKeyMaterial();
    const env = { POSKEY_KBPK_COMPONENTS: components.join(','), PAD_SECRET: 'terminal secret 1' };
    const device = poskey(
      [
        'device',
        'serve',
        '--pty',
        b,
        '--serial',
        'SN-CLI-1',
        '--data-dir',
        termDir,
        '--pinpad-passphrase-env',
        'PAD_SECRET',
      ],
      env,
    );
    closers.push(async () => {
      device.child.kill('SIGTERM');
      await device.done;
    });
    for (let i = 0; i < 600 && !device.out().includes('serving key loading'); i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.match(device.out(), /serving key loading on/);

    // Register the terminal in the host's store (what `poskey terminal add` does).
    const { openStore } = await import('../../src/store/open.js');
    const store = await openStore({ dataDir: hostDir });
    await store.merchants.upsert({ mid: MID, name: 'CLI shop', mcc: '5411' });
    await store.terminals.create({ tid: 'CLI00001', mid: MID, keyAlgorithm: 'TDES' });
    await store.close();

    const run = await poskey(
      ['inject', '--port', a, '--tid', 'CLI00001', '--data-dir', hostDir, '--json'],
      env,
    ).done;
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { kcv: string; serial: string };
    assert.equal(report.serial, 'SN-CLI-1');

    device.child.kill('SIGTERM');
    const served = await device.done;
    assert.match(
      served.stderr,
      new RegExp(`TMK committed to slot 0, KCV ${report.kcv}, bound to TID CLI00001`),
    );
    const pads = await PinPadStore.open(termDir, 'terminal secret 1');
    assert.equal(pads.load()?.slotInfo(0)?.kcv, report.kcv);
    pads.close();
    const audit = await verifyAuditLog(join(hostDir, 'keyload-audit.log'));
    assert.equal(audit.ok, true);

    // A failure prints the doctor's cause and fix and exits 1.
    const silent = await line();
    const failed = await poskey(
      ['inject', '--port', silent.a, '--tid', 'CLI00001', '--data-dir', hostDir],
      env,
    ).done;
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /POSKEY_ERR_KEYLOAD_SILENT[\s\S]*cause: [\s\S]*fix: /);
  });

  it('binds through the host admin API with --host-admin (TCP device, own development HSM)', async () => {
    const registry = new Registry({
      store: world.store,
      hsm: createInProcessClient(world.hsm),
      keks: { factory: world.transportKey.kbpk },
    });
    const token = 'admin-token-abcdefghij';
    const app = createAdminApp({ registry, tokens: [token] });
    const adminPort = await listenAdmin(app, '127.0.0.1', 0);
    closers.push(() => app.close());
    await registry.addTerminal({ tid: 'CLI00002', mid: MID });
    const device = simulator(world.kbpk, { padOptions: { serial: 'SN-CLI-2' } });
    const server = await device.listenTcp();
    closers.push(() => new Promise((r) => server.close(r)));
    const { port } = server.address() as { port: number };
    const components = [world.kbpk.toString('hex')];
    const run = await poskey(
      [
        'inject',
        '--tcp',
        `127.0.0.1:${port}`,
        '--tid',
        'CLI00002',
        '--host-admin',
        `http://127.0.0.1:${adminPort}`,
        '--hsm-data-dir',
        tempDir('poskey-cli-hsm-'),
        '--json',
      ],
      { POSKEY_KBPK_COMPONENTS: components.join(','), POSKEY_ADMIN_TOKEN: token },
    ).done;
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { kcv: string; serialRecorded: boolean };
    assert.equal((await registry.getTerminal('CLI00002')).tmk?.kcv, report.kcv);
    assert.equal(device.pad.slotInfo(0)?.kcv, report.kcv);
    assert.equal(report.serialRecorded, false);
  });
});
