/**
 * cert-rsa key injection over socat ptys: the loader (KDH certificate) and the PIN pad (KRD
 * certificate) of one vendor CA authenticate each other by signatures, the TMK travels as a TR-34
 * token built by the HSM. Every cert-rsa error code is reproduced by a real fault: a certificate of
 * another CA or role, an expired or not yet valid certificate, a replayed or mismatched nonce, a
 * signature that does not verify.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { type CertificateAuthority, createRootCa, issueCertificate } from '../../src/keyload/ca.js';
import { type CertCredentials, type CertIdentity, certIdentity } from '../../src/keyload/cert-auth.js';
import { KeyloadDevice, type KeyloadDeviceOptions } from '../../src/keyload/device.js';
import { runDoctor } from '../../src/keyload/doctor.js';
import { authenticateCert, hello, type InjectOptions, injectTmk } from '../../src/keyload/loader.js';
import {
  AUTH_METHOD_CERT,
  DEVICE_ERRORS,
  KeyloadErrorCode,
  type KeyloadMessage,
} from '../../src/keyload/protocol.js';
import { TR34_TMK_HEADER } from '../../src/keyload/tr34.js';
import { Link, openSerial } from '../../src/keyload/transport.js';
import { type Certificate, derToPem } from '../../src/keyload/x509.js';
import { spawnPoskey } from '../helpers/cli.js';
import {
  bareTerminal,
  cleanupDirs,
  FAST_LINK,
  MID,
  makeWorld,
  type PtyPair,
  ptyPair,
  tempDir,
  type World,
} from './helpers.js';

const DAY = 86_400_000;
const pem = (der: Buffer) => derToPem(der, 'CERTIFICATE');
const keyPem = (k: { export(o: object): string | Buffer }) =>
  k.export({ type: 'pkcs8', format: 'pem' }) as string;

let world: World;
let vendor: CertificateAuthority;
let other: CertificateAuthority;
let loader: CertCredentials;
const pairs: PtyPair[] = [];
const closers: (() => unknown)[] = [];

/** A KDH (or, to test roles, KRD) certificate of `ca` with its key, as loader credentials. */
function loaderCreds(ca = vendor, opts: { role?: 'kdh' | 'krd'; notBefore?: Date } = {}): CertCredentials {
  const { cert, privateKey } = issueCertificate(ca, {
    role: opts.role ?? 'kdh',
    cn: 'poskey loader',
    ...(opts.notBefore ? { notBefore: opts.notBefore } : {}),
  });
  return { certificate: pem(cert.der), privateKey: privateKey!, vendorCa: pem(vendor.cert.der) };
}

/** Device options: a KRD certificate of `ca` for `serial`, trusting the vendor CA for loaders. */
function deviceCert(
  serial: string,
  ca = vendor,
  validity: { notBefore?: Date; notAfter?: Date } = {},
): Pick<KeyloadDeviceOptions, 'certificate' | 'certAuth'> {
  const { cert, privateKey } = issueCertificate(ca, {
    role: 'krd',
    cn: serial,
    deviceSerial: serial,
    ...validity,
  });
  return {
    certificate: pem(cert.der),
    certAuth: { privateKey: privateKey!, vendorCa: pem(vendor.cert.der) },
  };
}

before(async () => {
  world = await makeWorld();
  const since = new Date(Date.now() - 30 * DAY);
  vendor = createRootCa({ cn: 'Vendor Root CA', notBefore: since });
  other = createRootCa({ cn: 'Other Root CA', notBefore: since });
  loader = loaderCreds();
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

/** A device serving on a new pty; returns poskey's end. */
async function serve(options: Partial<KeyloadDeviceOptions> & { serial: string }): Promise<{
  port: string;
  device: KeyloadDevice;
}> {
  const { serial, ...rest } = options;
  const { a, b } = await line();
  const device = new KeyloadDevice({ pad: bareTerminal({ serial }), ...rest });
  const served = await device.listenSerial(b, FAST_LINK);
  closers.push(
    () => served.close(),
    () => device.destroy(),
  );
  return { port: a, device };
}

function options(port: string, tid: string, extra: Partial<InjectOptions> = {}): InjectOptions {
  return {
    target: { port },
    tid,
    hsm: world.hsm,
    registry: world.registry,
    certAuth: loader,
    link: FAST_LINK,
    ...extra,
  };
}

function fails(code: string, pattern?: RegExp) {
  return (e: unknown) => {
    assert.equal((e as { code?: string }).code, code, String(e));
    if (pattern) assert.match(String(e), pattern);
    return true;
  };
}

/** Sends AUTH_CHALLENGE with `creds` on a raw link; returns the link and the answer. */
/** A TR-34 token of a new TDES TMK (and its LMK block) from the loader `id` to `device`, answering `nonce`. */
function tmkToken(id: CertIdentity, device: Certificate, nonce: Buffer): { token: string; keyBlock: string } {
  const tmk = world.hsm.generateKey({ keyType: 'TMK', algorithm: 'tdes2' });
  const { token } = world.hsm.exportKeyTr34({
    keyBlock: tmk.keyBlock,
    token: {
      kdh: { cert: id.cert, privateKey: id.privateKey },
      krdCert: device,
      nonce,
      keyBlockHeader: TR34_TMK_HEADER.TDES,
    },
  });
  return { token, keyBlock: tmk.keyBlock };
}

async function rawChallenge(port: string, creds: CertCredentials) {
  const link = new Link(await openSerial(port), FAST_LINK);
  closers.push(() => link.close());
  const info = await hello(link);
  const nonce = randomBytes(16);
  const reply = await link.request({
    type: 'AUTH_CHALLENGE',
    method: AUTH_METHOD_CERT,
    nonce,
    loaderCertificate: creds.certificate,
  });
  return { link, info, nonce, reply };
}

describe('cert-rsa injection', () => {
  it('injects end to end: device holds the TMK, its KCV is the HSM’s, the registry is bound', async () => {
    await world.register('CERT0001', { serial: 'SN-CERT-1' });
    const { port, device } = await serve({
      serial: 'SN-CERT-1',
      kbpk: { algorithm: 'tdes', key: world.kbpk },
      ...deviceCert('SN-CERT-1'),
    });
    assert.deepEqual(device.info().authMethods, ['kbpk-cmac', 'cert-rsa']);
    const report = await injectTmk(options(port, 'CERT0001'));
    assert.equal(report.serial, 'SN-CERT-1');
    assert.equal(report.tmkSource, 'hsm');
    const t = await world.store.terminals.get('CERT0001');
    assert.ok(t?.tmk);
    assert.equal(world.hsm.checkValue(t.tmk.block, 'legacy', 3).value, report.kcv);
    assert.equal(device.pad.slotInfo(0)?.kcv, report.kcv);
    assert.equal(device.tid, 'CERT0001');

    // A re-run exports the registry's TMK in a fresh token (new nonces): the same key arrives.
    const again = await injectTmk(options(port, 'CERT0001', { tmkSource: 'registry' }));
    assert.equal(again.kcv, report.kcv);
    assert.equal(again.tmkSource, 'registry');
  });

  it('works with a certificate-only device (no transport KBPK), SM4 too', async () => {
    await world.register('CERT0002', { serial: 'SN-CERT-2', keyAlgorithm: 'SM4' });
    const { port, device } = await serve({ serial: 'SN-CERT-2', ...deviceCert('SN-CERT-2') });
    const info = device.info();
    assert.deepEqual(info.authMethods, ['cert-rsa']);
    assert.equal(info.kbpkKcv, undefined);
    const report = await injectTmk(options(port, 'CERT0002'));
    assert.equal(device.pad.slotInfo(0)?.kcv, report.kcv);
    assert.equal(device.pad.slotInfo(0)?.algorithm, 'sm4');

    // The KBPK path finds no method it speaks on this device.
    await assert.rejects(
      injectTmk(options(port, 'CERT0002', { certAuth: undefined, transportKey: world.transportKey })),
      fails(KeyloadErrorCode.WRONG_PROTOCOL, /kbpk-cmac/),
    );
  });

  it('POSKEY_ERR_KEYLOAD_OPTION: no credentials, both, a device without either, a key of another certificate', async () => {
    await assert.rejects(
      injectTmk(options('/nonexistent', 'CERT0003', { certAuth: undefined })),
      fails(KeyloadErrorCode.OPTION),
    );
    await assert.rejects(
      injectTmk(options('/nonexistent', 'CERT0003', { transportKey: world.transportKey })),
      fails(KeyloadErrorCode.OPTION),
    );
    assert.throws(() => new KeyloadDevice({ pad: bareTerminal() }), fails(KeyloadErrorCode.OPTION));
    const { certAuth } = deviceCert('SN-X');
    assert.throws(
      () => new KeyloadDevice({ pad: bareTerminal(), certAuth: certAuth! }),
      fails(KeyloadErrorCode.OPTION, /certificate/),
    );
    const mixed = { ...loader, privateKey: loaderCreds().privateKey };
    assert.throws(() => certIdentity(mixed, 'certAuth'), fails(KeyloadErrorCode.OPTION, /does not belong/));
  });
});

describe('cert-rsa refusals', () => {
  it('POSKEY_ERR_KEYLOAD_CERT_UNTRUSTED: the device rejects a loader certificate of another CA or role', async () => {
    await world.register('CERT0010');
    const { port } = await serve({ serial: 'SN-CERT-10', ...deviceCert('SN-CERT-10') });
    await assert.rejects(
      injectTmk(options(port, 'CERT0010', { certAuth: loaderCreds(other) })),
      fails(KeyloadErrorCode.CERT_UNTRUSTED, /device refused \(CERT_UNTRUSTED\).*Other Root CA/),
    );
    await assert.rejects(
      injectTmk(options(port, 'CERT0010', { certAuth: loaderCreds(vendor, { role: 'krd' }) })),
      fails(KeyloadErrorCode.CERT_UNTRUSTED, /KDH/),
    );
    assert.equal(DEVICE_ERRORS.CERT_UNTRUSTED.error, KeyloadErrorCode.CERT_UNTRUSTED);
  });

  it('POSKEY_ERR_KEYLOAD_CERT_UNTRUSTED: poskey rejects a device certificate of another CA, or none', async () => {
    await world.register('CERT0011');
    const { port, device } = await serve({ serial: 'SN-CERT-11', ...deviceCert('SN-CERT-11', other) });
    await assert.rejects(
      injectTmk(options(port, 'CERT0011')),
      fails(KeyloadErrorCode.CERT_UNTRUSTED, /device certificate/),
    );
    assert.equal(device.pad.slotInfo(0), undefined);
    const bare = await serve({ serial: 'SN-CERT-11B', kbpk: { algorithm: 'tdes', key: world.kbpk } });
    // A KBPK-only device does not offer cert-rsa: another protocol as far as this loader goes.
    await assert.rejects(injectTmk(options(bare.port, 'CERT0011')), fails(KeyloadErrorCode.WRONG_PROTOCOL));
  });

  it('POSKEY_ERR_KEYLOAD_CERT_VALIDITY: an expired device certificate; a loader certificate not yet valid', async () => {
    await world.register('CERT0012');
    const expired = deviceCert('SN-CERT-12', vendor, {
      notBefore: new Date(Date.now() - 20 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const { port } = await serve({ serial: 'SN-CERT-12', ...expired });
    await assert.rejects(
      injectTmk(options(port, 'CERT0012')),
      fails(KeyloadErrorCode.CERT_VALIDITY, /expired/),
    );

    const good = await serve({ serial: 'SN-CERT-12B', ...deviceCert('SN-CERT-12B') });
    const future = loaderCreds(vendor, { notBefore: new Date(Date.now() + DAY) });
    await assert.rejects(
      injectTmk(options(good.port, 'CERT0012', { certAuth: future })),
      fails(KeyloadErrorCode.CERT_VALIDITY, /device refused \(CERT_VALIDITY\)/),
    );
    assert.equal(DEVICE_ERRORS.CERT_VALIDITY.error, KeyloadErrorCode.CERT_VALIDITY);
  });

  it('POSKEY_ERR_KEYLOAD_NONCE: a replayed AUTH_CONFIRM; a device answering another nonce; a stale TR-34 token', async () => {
    const { port } = await serve({ serial: 'SN-CERT-13', ...deviceCert('SN-CERT-13') });
    // Session 1 authenticates properly; its AUTH_CONFIRM is recorded off the line.
    const first = new Link(await openSerial(port), FAST_LINK);
    closers.push(() => first.close());
    const info = await hello(first);
    const id = certIdentity(loader, 'certAuth');
    const session = await authenticateCert(first, id, info, new Date());
    // A new challenge starts a new session; a confirm of the old device nonce is a replay.
    const again = await first.request({
      type: 'AUTH_CHALLENGE',
      method: AUTH_METHOD_CERT,
      nonce: randomBytes(16),
      loaderCertificate: loader.certificate,
    });
    assert.equal(again.type, 'AUTH_RESPONSE');
    const replay = await first.request({
      type: 'AUTH_CONFIRM',
      proof: randomBytes(256),
      echo: session.deviceNonce,
    });
    assert.deepEqual(replay.type === 'ERROR' && replay.code, DEVICE_ERRORS.NONCE.code);

    // The TR-34 token must answer this session's device nonce, not an older one.
    const fresh = await authenticateCert(first, id, info, new Date());
    const stale = tmkToken(id, fresh.cert!.device, session.deviceNonce).token;
    const refused = await first.request({ type: 'LOAD_KEY', slot: 0, token: stale });
    assert.deepEqual(refused.type === 'ERROR' && [refused.code, /TR34_NONCE/.test(refused.reason)], [
      DEVICE_ERRORS.NONCE.code,
      true,
    ]);

    // A device (or a man in the middle) answering another loader nonce.
    const fake = await fakeDevice((m) =>
      m.type === 'AUTH_CHALLENGE'
        ? { type: 'AUTH_RESPONSE', nonce: randomBytes(16), proof: randomBytes(256), echo: randomBytes(16) }
        : undefined,
    );
    await world.register('CERT0013');
    await assert.rejects(injectTmk(options(fake, 'CERT0013')), fails(KeyloadErrorCode.NONCE));
  });

  it('POSKEY_ERR_KEYLOAD_CERT_SIGNATURE: a device proof, a loader proof and a BIND that do not verify', async () => {
    await world.register('CERT0014');
    // The device's signature is garbage (the nonce is echoed right).
    const fake = await fakeDevice((m) =>
      m.type === 'AUTH_CHALLENGE'
        ? { type: 'AUTH_RESPONSE', nonce: randomBytes(16), proof: randomBytes(256), echo: m.nonce }
        : undefined,
    );
    await assert.rejects(
      injectTmk(options(fake, 'CERT0014')),
      fails(KeyloadErrorCode.CERT_SIGNATURE, /signature/),
    );

    // poskey's AUTH_CONFIRM signature is garbage.
    const { port } = await serve({ serial: 'SN-CERT-14', ...deviceCert('SN-CERT-14') });
    const { link, reply } = await rawChallenge(port, loader);
    assert.equal(reply.type, 'AUTH_RESPONSE');
    const echo = (reply as { nonce: Buffer }).nonce;
    const refused = await link.request({ type: 'AUTH_CONFIRM', proof: randomBytes(256), echo });
    assert.equal(refused.type === 'ERROR' && refused.code, DEVICE_ERRORS.CERT_SIGNATURE.code);

    // A forged BIND after a genuine LOAD_KEY commits nothing.
    const id = certIdentity(loader, 'certAuth');
    const session = await authenticateCert(link, id, await hello(link), new Date());
    const { token, keyBlock } = tmkToken(id, session.cert!.device, session.deviceNonce);
    const loaded = await link.request({ type: 'LOAD_KEY', slot: 0, token });
    assert.equal(loaded.type, 'KEY_LOADED', JSON.stringify(loaded));
    const kcv = (loaded as { kcv: string }).kcv;
    assert.equal(kcv, world.hsm.checkValue(keyBlock, 'legacy', 3).value);
    const bind = await link.request({ type: 'BIND', tid: 'CERT0014', kcv, proof: randomBytes(256) });
    assert.equal(bind.type === 'ERROR' && bind.code, DEVICE_ERRORS.CERT_SIGNATURE.code);
    assert.equal(DEVICE_ERRORS.CERT_SIGNATURE.error, KeyloadErrorCode.CERT_SIGNATURE);
    // The genuine BIND does commit.
    const ok = await link.request({
      type: 'BIND',
      tid: 'CERT0014',
      kcv,
      proof: await session.proveBind('CERT0014', kcv),
    });
    assert.equal(ok.type, 'BIND_ACK');
  });
});

/**
 * A device whose answers `answer` overrides (undefined: a well-formed DEVICE_INFO offering
 * cert-rsa with a certificate of the vendor CA, else ERROR).
 */
async function fakeDevice(answer: (m: KeyloadMessage) => KeyloadMessage | undefined): Promise<string> {
  const { a, b } = await line();
  const real = new KeyloadDevice({ pad: bareTerminal({ serial: 'SN-FAKE' }), ...deviceCert('SN-FAKE') });
  const link = new Link(await openSerial(b), FAST_LINK);
  link.serve(
    async (m) => answer(m) ?? (m.type === 'HELLO' ? real.info() : { type: 'ERROR', code: 1, reason: 'fake' }),
  );
  closers.push(
    () => link.close(),
    () => real.destroy(),
  );
  return a;
}

describe('poskey doctor with --vendor-ca', () => {
  const doctor = (port: string, extra = {}) =>
    runDoctor({ target: { port }, vendorCa: pem(vendor.cert.der), link: FAST_LINK, ...extra });
  const failure = (r: Awaited<ReturnType<typeof runDoctor>>) => r.checks.find((c) => c.status === 'fail');

  it('passes a good certificate and cert-rsa authentication', async () => {
    const { port } = await serve({ serial: 'SN-DOC-1', ...deviceCert('SN-DOC-1') });
    const r = await doctor(port, { certAuth: loader });
    assert.equal(failure(r), undefined, JSON.stringify(r.checks));
    assert.equal(r.checks.find((c) => c.step === 'certificate')?.status, 'pass');
    assert.match(r.checks.find((c) => c.step === 'transport-key')?.detail ?? '', /cert-rsa/);
  });

  it('POSKEY_DOCTOR_CERT_OTHER_CA: the device certificate is of another CA', async () => {
    const { port } = await serve({ serial: 'SN-DOC-2', ...deviceCert('SN-DOC-2', other) });
    const f = failure(await doctor(port));
    assert.deepEqual([f?.step, f?.code], ['certificate', 'POSKEY_DOCTOR_CERT_OTHER_CA']);
    assert.ok(f?.cause && f.fix);
  });

  it('POSKEY_DOCTOR_CERT_VALIDITY: the device certificate expired', async () => {
    const expired = deviceCert('SN-DOC-3', vendor, {
      notBefore: new Date(Date.now() - 20 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const { port } = await serve({ serial: 'SN-DOC-3', ...expired });
    const f = failure(await doctor(port));
    assert.deepEqual([f?.step, f?.code], ['certificate', 'POSKEY_DOCTOR_CERT_VALIDITY']);
  });

  it('POSKEY_DOCTOR_CERT_SIGNATURE: the device cannot sign with its certificate’s key', async () => {
    const fake = await fakeDevice((m) =>
      m.type === 'AUTH_CHALLENGE'
        ? { type: 'AUTH_RESPONSE', nonce: randomBytes(16), proof: randomBytes(256), echo: m.nonce }
        : undefined,
    );
    const f = failure(await doctor(fake, { certAuth: loader }));
    assert.deepEqual([f?.step, f?.code], ['transport-key', 'POSKEY_DOCTOR_CERT_SIGNATURE']);
  });

  it('POSKEY_DOCTOR_NONCE: the device answers another nonce', async () => {
    const fake = await fakeDevice((m) =>
      m.type === 'AUTH_CHALLENGE'
        ? { type: 'AUTH_RESPONSE', nonce: randomBytes(16), proof: randomBytes(256), echo: randomBytes(16) }
        : undefined,
    );
    const f = failure(await doctor(fake, { certAuth: loader }));
    assert.deepEqual([f?.step, f?.code], ['transport-key', 'POSKEY_DOCTOR_NONCE']);
  });

  it('POSKEY_DOCTOR_CERT_OTHER_CA: the device rejects the loader certificate', async () => {
    const { port } = await serve({ serial: 'SN-DOC-5', ...deviceCert('SN-DOC-5') });
    const f = failure(await doctor(port, { certAuth: loaderCreds(other) }));
    assert.deepEqual([f?.step, f?.code], ['transport-key', 'POSKEY_DOCTOR_CERT_OTHER_CA']);
  });
});

describe('the CLI on the cert path', () => {
  function files(dir: string) {
    const device = issueCertificate(vendor, { role: 'krd', cn: 'SN-CLI-C', deviceSerial: 'SN-CLI-C' });
    const paths = {
      ca: join(dir, 'ca.pem'),
      kldCert: join(dir, 'kld.cert.pem'),
      kldKey: join(dir, 'kld.key.pem'),
      devCert: join(dir, 'dev.cert.pem'),
      devKey: join(dir, 'dev.key.pem'),
    };
    writeFileSync(paths.ca, pem(vendor.cert.der));
    writeFileSync(paths.kldCert, loader.certificate);
    writeFileSync(paths.kldKey, keyPem(loader.privateKey as never));
    writeFileSync(paths.devCert, pem(device.cert.der));
    writeFileSync(paths.devKey, keyPem(device.privateKey!));
    return paths;
  }

  it('poskey device serve --cert + poskey inject --kld-cert inject without any KBPK', async () => {
    const dir = tempDir('poskey-cli-cert-');
    const f = files(dir);
    const { a, b } = await line();
    const env = { POSKEY_KBPK_COMPONENTS: '' };
    const device = spawnPoskey(
      [
        'device',
        'serve',
        '--pty',
        b,
        '--serial',
        'SN-CLI-C',
        '--cert',
        f.devCert,
        '--cert-key',
        f.devKey,
        '--vendor-ca',
        f.ca,
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

    const hostDir = tempDir('poskey-cli-cert-host-');
    const { openStore } = await import('../../src/store/open.js');
    const store = await openStore({ dataDir: hostDir });
    await store.merchants.upsert({ mid: MID, name: 'CLI shop', mcc: '5411' });
    await store.terminals.create({ tid: 'CLIC0001', mid: MID, keyAlgorithm: 'TDES' });
    await store.close();

    const args = ['inject', '--port', a, '--tid', 'CLIC0001', '--data-dir', hostDir];
    const run = await spawnPoskey(
      [...args, '--kld-cert', f.kldCert, '--kld-key', f.kldKey, '--vendor-ca', f.ca, '--json'],
      env,
    ).done;
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { kcv: string };
    device.child.kill('SIGTERM');
    const served = await device.done;
    assert.match(served.stderr, new RegExp(`TMK committed to slot 0, KCV ${report.kcv}`));

    // Incomplete cert options: a usage error naming the missing flag.
    const partial = await spawnPoskey([...args, '--kld-cert', f.kldCert, '--vendor-ca', f.ca], env).done;
    assert.equal(partial.code, 2, partial.stderr);
    assert.match(partial.stderr, /POSKEY_ERR_KEYLOAD_OPTION.*--kld-key/);
    const noCa = await spawnPoskey(
      ['device', 'serve', '--pty', b, '--cert', f.devCert, '--cert-key', f.devKey],
      env,
    ).done;
    assert.equal(noCa.code, 2, noCa.stderr);
    assert.match(noCa.stderr, /--vendor-ca/);
  });
});
