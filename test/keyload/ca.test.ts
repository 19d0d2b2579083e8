import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PoskeyError } from '../../src/errors.js';
import {
  asCertificate,
  CA_CERT_FILE,
  CA_KEY_FILE,
  checkRole,
  createRootCa,
  generateKeyPair,
  initCaDir,
  issueCertificate,
  issueToDir,
  listIssued,
  loadCaDir,
  roleOf,
  verifyChain,
} from '../../src/keyload/ca.js';
import { buildCertificate, derToPem, parseCertificate } from '../../src/keyload/x509.js';

const code = (c: string, field?: string) => (e: unknown) => {
  assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  if (field !== undefined) assert.equal(e.field, field, e.message);
  return true;
};

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'poskey-ca-'));
after(() => rmSync(work, { recursive: true, force: true }));
const DAY = 86_400_000;

for (const algorithm of ['rsa', 'sm2'] as const) {
  describe(`${algorithm.toUpperCase()} CA: issue and verify`, () => {
    // The root starts well in the past so certificates back-dated under it stay inside its validity.
    const ca = createRootCa({
      algorithm,
      cn: `Root ${algorithm}`,
      o: 'Acquirer',
      notBefore: new Date(Date.now() - 60 * DAY),
    });
    const kdh = issueCertificate(ca, { role: 'kdh', cn: 'KMS host 1', o: 'Acquirer' });
    const krd = issueCertificate(ca, { role: 'krd', cn: 'PINPAD', deviceSerial: '82012345' });

    it('issues role-marked leaves with fresh keys of the CA algorithm', () => {
      assert.equal(ca.cert.keyAlgorithm, algorithm);
      assert.equal(kdh.cert.subject.ou, 'KDH');
      assert.equal(krd.cert.subject.ou, 'KRD');
      assert.equal(krd.cert.subject.serialNumber, '82012345');
      assert.deepEqual(kdh.cert.keyUsage, ['digitalSignature']);
      assert.deepEqual(krd.cert.keyUsage, ['digitalSignature', 'keyEncipherment']);
      assert.equal(roleOf(kdh.cert), 'kdh');
      assert.equal(roleOf(krd.cert), 'krd');
      assert.equal(roleOf(ca.cert), undefined);
      assert.ok(kdh.privateKey);
      assert.ok(
        Math.abs(krd.cert.notAfter.getTime() - krd.cert.notBefore.getTime() - 365 * DAY) < 10 * 60_000,
      );
      assert.ok(krd.cert.notBefore.getTime() < Date.now(), 'back-dated for clock skew');
    });

    it('verifyChain accepts each leaf in its role', () => {
      assert.deepEqual(verifyChain(kdh.cert, ca.cert, { role: 'kdh' }).der, kdh.cert.der);
      assert.deepEqual(
        verifyChain(krd.cert.der, derToPem(ca.cert.der, 'CERTIFICATE'), { role: 'krd' }).der,
        krd.cert.der,
      );
      verifyChain(krd.cert, ca.cert); // no role asked
    });

    it('Node X509Certificate sees the issuer link', () => {
      assert.equal(new X509Certificate(kdh.cert.der).checkIssued(new X509Certificate(ca.cert.der)), true);
    });

    it('POSKEY_ERR_CERT_ROLE: a KRD certificate posing as KDH, and the reverse', () => {
      assert.throws(() => verifyChain(krd.cert, ca.cert, { role: 'kdh' }), code('POSKEY_ERR_CERT_ROLE'));
      assert.throws(() => verifyChain(kdh.cert, ca.cert, { role: 'krd' }), code('POSKEY_ERR_CERT_ROLE'));
      assert.throws(() => checkRole(ca.cert, 'kdh'), code('POSKEY_ERR_CERT_ROLE'));
    });

    it('POSKEY_ERR_CERT_CHAIN: another root, a damaged signature, a leaf as root', () => {
      const other = createRootCa({ algorithm, cn: `Root ${algorithm}`, o: 'Acquirer' }); // same name, other key
      assert.throws(() => verifyChain(kdh.cert, other.cert, { role: 'kdh' }), code('POSKEY_ERR_CERT_CHAIN'));
      const stranger = createRootCa({ algorithm, cn: 'Stranger' });
      assert.throws(() => verifyChain(kdh.cert, stranger.cert), code('POSKEY_ERR_CERT_CHAIN', 'certificate'));
      assert.throws(() => verifyChain(kdh.cert, krd.cert), code('POSKEY_ERR_CERT_CHAIN', 'root'));
      const der = Buffer.from(kdh.cert.der);
      der[der.length - 3]! ^= 0x40;
      assert.throws(() => verifyChain(der, ca.cert), code('POSKEY_ERR_CERT_CHAIN'));
    });

    it('POSKEY_ERR_CERT_EXPIRED and POSKEY_ERR_CERT_NOT_YET_VALID, also via `at`', () => {
      const past = issueCertificate(ca, {
        role: 'kdh',
        cn: 'old host',
        notBefore: new Date(Date.now() - 30 * DAY),
        notAfter: new Date(Date.now() - DAY),
      });
      assert.throws(
        () => verifyChain(past.cert, ca.cert, { role: 'kdh' }),
        code('POSKEY_ERR_CERT_EXPIRED', 'certificate'),
      );
      verifyChain(past.cert, ca.cert, { role: 'kdh', at: new Date(Date.now() - 10 * DAY) });
      assert.throws(
        () => verifyChain(kdh.cert, ca.cert, { at: new Date(Date.now() - DAY) }),
        code('POSKEY_ERR_CERT_NOT_YET_VALID', 'certificate'),
      );
      assert.throws(
        () => verifyChain(kdh.cert, ca.cert, { at: new Date(Date.now() + 400 * DAY) }),
        code('POSKEY_ERR_CERT_EXPIRED'),
      );
      assert.throws(
        () => verifyChain(kdh.cert, ca.cert, { at: new Date(Date.now() + 4000 * DAY) }),
        code('POSKEY_ERR_CERT_EXPIRED', 'root'),
      );
    });

    it('issues for a device-generated public key (no private key returned)', () => {
      const device = generateKeyPair(algorithm);
      const issued = issueCertificate(ca, { role: 'krd', cn: 'self-keyed', publicKey: device.publicKey });
      assert.equal(issued.privateKey, undefined);
      assert.deepEqual(issued.cert.spki, device.publicKey.export({ type: 'spki', format: 'der' }));
    });
  });
}

describe('CA input errors', () => {
  const ca = createRootCa({ algorithm: 'rsa' });

  it('POSKEY_ERR_CA_INPUT for bad roles, lifetimes, keys of the other algorithm and non-certificates', () => {
    const err = (field: string) => code('POSKEY_ERR_CA_INPUT', field);
    assert.throws(() => issueCertificate(ca, { role: 'ca' as never, cn: 'x' }), err('role'));
    assert.throws(() => issueCertificate(ca, { role: 'kdh', cn: 'x', days: 0 }), err('days'));
    assert.throws(() => issueCertificate(ca, { role: 'kdh', cn: 'x', days: 1.5 }), err('days'));
    assert.throws(() => issueCertificate(ca, { role: 'kdh', cn: 'x', days: Number.NaN }), err('days'));
    assert.throws(
      () => issueCertificate(ca, { role: 'kdh', cn: 'x', publicKey: generateKeyPair('sm2').publicKey }),
      err('publicKey'),
    );
    assert.throws(() => asCertificate({} as never), err('certificate'));
    assert.throws(() => createRootCa({ days: -1 }), err('days'));
  });

  it('POSKEY_ERR_KEY_ALGORITHM for an unknown algorithm', () => {
    assert.throws(() => generateKeyPair('dsa' as never), code('POSKEY_ERR_KEY_ALGORITHM'));
  });

  it('a root without CA basic constraints cannot anchor a chain', () => {
    const keys = generateKeyPair('rsa');
    const fake = parseCertificate(
      buildCertificate({
        subject: { cn: 'not a CA' },
        publicKey: keys.publicKey,
        selfSignKey: keys.privateKey,
        notBefore: new Date(Date.now() - DAY),
        notAfter: new Date(Date.now() + DAY),
        keyUsage: ['keyCertSign'],
      }),
    );
    assert.throws(() => verifyChain(fake, fake), code('POSKEY_ERR_CERT_CHAIN', 'root'));
  });
});

describe('CA directory', () => {
  it('init, load, issue to files, list; refuses to overwrite; keys are 0600', () => {
    const dir = join(work, 'lib-ca');
    const ca = initCaDir(dir, { algorithm: 'sm2', cn: 'Dir Root' });
    assert.equal(ca.cert.subject.cn, 'Dir Root');
    assert.equal(statSync(join(dir, CA_KEY_FILE)).mode & 0o777, 0o600);
    assert.throws(() => initCaDir(dir), code('POSKEY_ERR_CA_EXISTS', 'dir'));
    const loaded = loadCaDir(dir);
    assert.deepEqual(loaded.cert.der, ca.cert.der);
    assert.equal(loaded.algorithm, 'sm2');
    const issued = issueToDir(dir, { role: 'krd', cn: 'PINPAD #7', deviceSerial: 'SN7' });
    assert.ok(issued.certPath.endsWith('.cert.pem'));
    assert.match(issued.certPath, /issued\/krd-PINPAD_7-[0-9a-f]{8}\.cert\.pem$/);
    assert.equal(statSync(issued.keyPath!).mode & 0o777, 0o600);
    verifyChain(readFileSync(issued.certPath, 'utf8'), readFileSync(join(dir, CA_CERT_FILE), 'utf8'), {
      role: 'krd',
    });
    const list = listIssued(dir);
    assert.equal(list.length, 1);
    assert.equal(list[0]!.cert.subject.serialNumber, 'SN7');
    assert.deepEqual(listIssued(join(work, 'nothing-here')), []);
  });

  it('POSKEY_ERR_CA_NOT_FOUND for a directory without a CA', () => {
    assert.throws(() => loadCaDir(join(work, 'missing')), code('POSKEY_ERR_CA_NOT_FOUND', 'dir'));
    assert.throws(
      () => issueToDir(join(work, 'missing'), { role: 'kdh', cn: 'x' }),
      code('POSKEY_ERR_CA_NOT_FOUND'),
    );
  });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function poskey(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ca', ...args], {
      cwd: ROOT,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (c) => resolve({ code: c, stdout, stderr }));
  });
}

describe('poskey ca (CLI)', () => {
  it('init → issue kdh and krd → show; openssl verify accepts the issued certificates', async () => {
    const dir = join(work, 'cli-ca');
    const init = await poskey(['init', '--dir', dir, '--alg', 'rsa', '--cn', 'CLI Root', '--json']);
    assert.equal(init.code, 0, init.stderr);
    const root = JSON.parse(init.stdout) as { subject: string; algorithm: string; fingerprint: string };
    assert.equal(root.subject, 'CN=CLI Root');
    assert.equal(root.algorithm, 'rsa');

    const [kdh, krd] = await Promise.all([
      poskey(['issue', '--dir', dir, '--role', 'kdh', '--cn', 'host-1', '--days', '30', '--json']),
      poskey(['issue', '--dir', dir, '--role', 'krd', '--cn', 'pinpad-9', '--serial', 'A1B2C3']),
    ]);
    assert.equal(kdh.code, 0, kdh.stderr);
    const kdhOut = JSON.parse(kdh.stdout) as {
      certFile: string;
      keyFile: string;
      subject: string;
      notAfter: string;
    };
    assert.equal(kdhOut.subject, 'OU=KDH, CN=host-1');
    assert.ok(existsSync(kdhOut.keyFile));
    assert.ok(Math.abs(Date.parse(kdhOut.notAfter) - Date.now() - 30 * DAY) < 10 * 60_000);
    assert.equal(krd.code, 0, krd.stderr);
    assert.match(krd.stdout, /subject:\s+OU=KRD, CN=pinpad-9, SERIALNUMBER=A1B2C3/);
    assert.doesNotMatch(krd.stdout + kdh.stdout, /PRIVATE KEY/);

    const v = spawnSync('openssl', ['verify', '-CAfile', join(dir, CA_CERT_FILE), kdhOut.certFile], {
      encoding: 'utf8',
    });
    assert.equal(v.status, 0, v.stderr);
    verifyChain(readFileSync(kdhOut.certFile, 'utf8'), readFileSync(join(dir, CA_CERT_FILE), 'utf8'), {
      role: 'kdh',
    });

    const [show, text] = await Promise.all([
      poskey(['show', '--dir', dir, '--json']),
      poskey(['show', '--dir', dir]),
    ]);
    assert.equal(show.code, 0, show.stderr);
    const shown = JSON.parse(show.stdout) as {
      root: { fingerprint: string };
      issued: { role: string; status: string }[];
    };
    assert.equal(shown.root.fingerprint, root.fingerprint);
    assert.deepEqual(shown.issued.map((i) => i.role).sort(), ['kdh', 'krd']);
    assert.ok(shown.issued.every((i) => i.status === 'valid'));
    assert.match(text.stdout, /root:\n\s+subject:\s+CN=CLI Root/);
  });

  it('SM2 CA from the CLI verifies with openssl -vfyopt distid', async () => {
    const dir = join(work, 'cli-sm2');
    assert.equal((await poskey(['init', '--dir', dir, '--alg', 'sm2'])).code, 0);
    const krd = await poskey(['issue', '--dir', dir, '--role', 'krd', '--cn', 'sm2 pad', '--json']);
    const { certFile } = JSON.parse(krd.stdout) as { certFile: string };
    const v = spawnSync(
      'openssl',
      ['verify', '-vfyopt', 'distid:1234567812345678', '-CAfile', join(dir, CA_CERT_FILE), certFile],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(v.status, 0, v.stderr);
  });

  it('errors: one line with the code, exit 2', async () => {
    const dir = join(work, 'cli-err');
    assert.equal((await poskey(['init', '--dir', dir])).code, 0);
    const [again, days, role] = await Promise.all([
      poskey(['init', '--dir', dir]),
      poskey(['issue', '--dir', dir, '--role', 'kdh', '--cn', 'x', '--days', 'soon']),
      poskey(['issue', '--dir', dir, '--role', 'root', '--cn', 'x']),
    ]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /^poskey: POSKEY_ERR_CA_EXISTS: /);
    assert.equal(days.code, 2);
    assert.match(days.stderr, /POSKEY_ERR_CA_INPUT: days/);
    assert.equal(role.code, 2, 'commander rejects a role outside kdh|krd');
  });
});
