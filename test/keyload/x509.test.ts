import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PoskeyError } from '../../src/errors.js';
import { decodeDer, explicit, integer, octets, oid, seq, tlv } from '../../src/keyload/asn1.js';
import { generateSm2KeyPair } from '../../src/keyload/sm2.js';
import {
  buildCertificate,
  type CertificateSpec,
  derToPem,
  encodeName,
  issuerAndSerialNumber,
  type KeyAlgorithm,
  keyAlgorithmOf,
  keyIdentifier,
  parseCertificate,
  pemToDer,
  verifyCertificateSignature,
} from '../../src/keyload/x509.js';

const code = (c: string, field?: string) => (e: unknown) => {
  assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  if (field !== undefined) assert.equal(e.field, field, e.message);
  return true;
};

const work = mkdtempSync(join(tmpdir(), 'poskey-x509-'));
after(() => rmSync(work, { recursive: true, force: true }));

const DAY = 86_400_000;
const NOW = new Date();
const keysFor = (alg: KeyAlgorithm) =>
  alg === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateSm2KeyPair();

function makePair(alg: KeyAlgorithm) {
  const rootKeys = keysFor(alg);
  const leafKeys = keysFor(alg);
  const root = parseCertificate(
    buildCertificate({
      subject: { cn: 'Test Root', o: 'poskey', c: 'CN' },
      publicKey: rootKeys.publicKey,
      selfSignKey: rootKeys.privateKey,
      notBefore: new Date(NOW.getTime() - DAY),
      notAfter: new Date(NOW.getTime() + 365 * DAY),
      keyUsage: ['keyCertSign', 'cRLSign'],
      ca: { pathLength: 0 },
    }),
  );
  const leaf = parseCertificate(
    buildCertificate({
      subject: { cn: 'PINPAD-0001', o: 'poskey', ou: 'KRD', serialNumber: 'PP0001' },
      publicKey: leafKeys.publicKey,
      serialNumber: Buffer.from('0102030405', 'hex'),
      issuer: { cert: root, privateKey: rootKeys.privateKey },
      notBefore: new Date('2026-01-01T00:00:00Z'),
      notAfter: new Date('2060-01-01T00:00:00Z'),
      keyUsage: ['keyEncipherment'],
    }),
  );
  return { root, rootKeys, leaf, leafKeys };
}

const write = (name: string, text: string | Buffer) => {
  const p = join(work, name);
  writeFileSync(p, text);
  return p;
};

for (const alg of ['rsa', 'sm2'] as const) {
  describe(`${alg.toUpperCase()} certificates`, () => {
    const { root, rootKeys, leaf } = makePair(alg);

    it('parse back with the subject, validity, extensions and key identifiers', () => {
      assert.equal(leaf.subject.cn, 'PINPAD-0001');
      assert.equal(leaf.subject.o, 'poskey');
      assert.equal(leaf.subject.ou, 'KRD');
      assert.equal(leaf.subject.serialNumber, 'PP0001');
      assert.equal(leaf.subject.text, 'O=poskey, OU=KRD, CN=PINPAD-0001, SERIALNUMBER=PP0001');
      assert.equal(root.subject.text, 'C=CN, O=poskey, CN=Test Root');
      assert.deepEqual(leaf.issuer.der, root.subject.der);
      assert.deepEqual(leaf.notBefore, new Date('2026-01-01T00:00:00Z'));
      assert.deepEqual(leaf.notAfter, new Date('2060-01-01T00:00:00Z'), 'GeneralizedTime after 2049');
      assert.equal(leaf.serialNumber.toString('hex'), '0102030405');
      assert.equal(leaf.keyAlgorithm, alg);
      assert.deepEqual(leaf.keyUsage, ['keyEncipherment']);
      assert.deepEqual(leaf.basicConstraints, { ca: false });
      assert.deepEqual(root.basicConstraints, { ca: true, pathLength: 0 });
      assert.deepEqual(root.keyUsage, ['keyCertSign', 'cRLSign']);
      assert.deepEqual(leaf.authorityKeyId, root.subjectKeyId);
      assert.deepEqual(root.authorityKeyId, root.subjectKeyId);
      assert.deepEqual(leaf.subjectKeyId, keyIdentifier(leaf.spki));
      assert.equal(keyAlgorithmOf(leaf.publicKey), alg);
      assert.equal(root.serialNumber.length, 16);
      assert.ok(root.serialNumber[0]! < 0x80, 'random serials are positive');
    });

    it('verify under the issuer key and nothing else', () => {
      assert.equal(verifyCertificateSignature(leaf, root.publicKey), true);
      assert.equal(verifyCertificateSignature(root, rootKeys.publicKey), true);
      assert.equal(verifyCertificateSignature(leaf, leaf.publicKey), false);
      const tampered = Buffer.from(leaf.der);
      const at = tampered.indexOf(Buffer.from('PINPAD-0001'));
      tampered[at]! ^= 0x01; // 'P' → 'Q'
      assert.equal(verifyCertificateSignature(parseCertificate(tampered), root.publicKey), false);
    });

    it('are accepted by Node X509Certificate (parse, checkIssued, verify)', () => {
      const x = new X509Certificate(leaf.der);
      const xr = new X509Certificate(root.der);
      assert.equal(x.checkIssued(xr), true);
      assert.match(x.subject, /CN=PINPAD-0001/);
      assert.match(x.subject, /serialNumber=PP0001/);
      assert.equal(x.serialNumber, '0102030405');
      assert.equal(xr.ca, true);
      assert.deepEqual(new Date(x.validTo), new Date('2060-01-01T00:00:00Z'));
      assert.equal(x.fingerprint256.replace(/:/g, ''), leaf.fingerprint);
      // Node (OpenSSL 3.0) verifies SM2 with an empty user ID; our SM2 certificates use the
      // GM/T 0009 default ID, so only RSA passes here (openssl verify below proves the SM2 ones).
      assert.equal(x.verify(xr.publicKey), alg === 'rsa');
      assert.equal(xr.verify(xr.publicKey), alg === 'rsa');
    });

    it('are accepted by openssl x509 -text and openssl verify', () => {
      const rootPem = write(`${alg}-root.pem`, derToPem(root.der, 'CERTIFICATE'));
      const leafPem = write(`${alg}-leaf.pem`, derToPem(leaf.der, 'CERTIFICATE'));
      const text = execFileSync('openssl', ['x509', '-in', leafPem, '-noout', '-text'], { encoding: 'utf8' });
      assert.match(text, /Version: 3/);
      assert.match(text, /Subject: O ?= ?poskey, OU ?= ?KRD, CN ?= ?PINPAD-0001, serialNumber ?= ?PP0001/);
      assert.match(text, /Key Usage: critical\s+Key Encipherment/);
      assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
      assert.match(text, alg === 'rsa' ? /sha256WithRSAEncryption/ : /SM2-with-SM3/);
      const rootText = execFileSync('openssl', ['x509', '-in', rootPem, '-noout', '-text'], {
        encoding: 'utf8',
      });
      assert.match(rootText, /CA:TRUE, pathlen:0/);
      assert.match(rootText, /Certificate Sign, CRL Sign/);
      const args = alg === 'sm2' ? ['-vfyopt', 'distid:1234567812345678'] : [];
      const ok = spawnSync('openssl', ['verify', ...args, '-CAfile', rootPem, leafPem], { encoding: 'utf8' });
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, /: OK/);
      if (alg === 'sm2') {
        const noId = spawnSync('openssl', ['verify', '-CAfile', rootPem, leafPem], { encoding: 'utf8' });
        assert.notEqual(noId.status, 0, 'OpenSSL 3.0 defaults to an empty SM2 ID');
      }
    });

    it('round trip through PEM and give the CMS IssuerAndSerialNumber', () => {
      const pem = derToPem(leaf.der, 'CERTIFICATE');
      assert.match(pem, /^-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=]{64}\n)+/);
      assert.deepEqual(parseCertificate(pem).der, leaf.der);
      const ias = decodeDer(issuerAndSerialNumber(leaf));
      assert.deepEqual(ias.children[0]!.der, root.subject.der);
      assert.deepEqual(ias.children[1]!.value, leaf.serialNumber);
    });
  });
}

describe('certificates made by openssl', () => {
  it('parse and verify (RSA, self-signed by openssl req)', () => {
    const key = join(work, 'o-rsa.key');
    const crt = join(work, 'o-rsa.crt');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        crt,
        '-subj',
        '/C=CN/O=Acq/CN=ext host',
        '-days',
        '2',
        '-sha256',
      ],
      { stdio: 'ignore' },
    );
    const cert = parseCertificate(readFileSync(crt, 'utf8'));
    assert.equal(cert.subject.cn, 'ext host');
    assert.equal(cert.subject.c, 'CN');
    assert.equal(cert.basicConstraints?.ca, true);
    assert.equal(verifyCertificateSignature(cert, cert.publicKey), true);
  });

  it('parse and verify (SM2 with the default distinguishing ID)', () => {
    const key = join(work, 'o-sm2.key');
    const crt = join(work, 'o-sm2.crt');
    execFileSync(
      'openssl',
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:SM2', '-out', key],
      { stdio: 'ignore' },
    );
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-new',
        '-key',
        key,
        '-sm3',
        '-sigopt',
        'distid:1234567812345678',
        '-subj',
        '/CN=ext sm2',
        '-days',
        '2',
        '-out',
        crt,
      ],
      { stdio: 'ignore' },
    );
    const cert = parseCertificate(readFileSync(crt, 'utf8'));
    assert.equal(cert.keyAlgorithm, 'sm2');
    assert.equal(verifyCertificateSignature(cert, cert.publicKey), true);
    assert.equal(keyAlgorithmOf(createPrivateKey(readFileSync(key))), 'sm2');
  });
});

describe('certificate errors', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const base = (over: Partial<CertificateSpec> = {}): CertificateSpec => ({
    subject: { cn: 'x' },
    publicKey: rsa.publicKey,
    selfSignKey: rsa.privateKey,
    notBefore: NOW,
    notAfter: new Date(NOW.getTime() + DAY),
    keyUsage: ['digitalSignature'],
    ...over,
  });

  it('POSKEY_ERR_CERT_INPUT for bad names, dates, usages, serials and weak RSA keys', () => {
    const err = (field: string) => code('POSKEY_ERR_CERT_INPUT', field);
    assert.throws(() => buildCertificate(base({ subject: { cn: '' } })), err('subject.cn'));
    assert.throws(() => buildCertificate(base({ subject: { cn: 'x'.repeat(65) } })), err('subject.cn'));
    assert.throws(() => buildCertificate(base({ subject: { cn: 'x', c: 'China' } })), err('subject.c'));
    assert.throws(
      () => buildCertificate(base({ subject: { cn: 'x', serialNumber: 'SN#1' } })),
      err('subject.serialNumber'),
    );
    assert.throws(() => buildCertificate(base({ subject: { cn: 'x', o: '' } })), err('subject.o'));
    assert.throws(() => buildCertificate(base({ notAfter: NOW })), err('notAfter'));
    assert.throws(() => buildCertificate(base({ notBefore: new Date(Number.NaN) })), err('notBefore'));
    assert.throws(() => buildCertificate(base({ keyUsage: [] })), err('keyUsage'));
    assert.throws(() => buildCertificate(base({ keyUsage: ['sign' as never] })), err('keyUsage'));
    assert.throws(() => buildCertificate(base({ serialNumber: Buffer.alloc(3) })), err('serialNumber'));
    assert.throws(() => buildCertificate(base({ serialNumber: Buffer.alloc(21, 1) })), err('serialNumber'));
    assert.throws(() => buildCertificate(base({ selfSignKey: undefined })), err('issuer'));
    assert.throws(() => buildCertificate(base({ ca: { pathLength: -1 } })), err('ca.pathLength'));
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    assert.throws(() => buildCertificate(base({ publicKey: weak.publicKey })), err('publicKey'));
    assert.throws(() => encodeName({ cn: 'x', ou: 'y'.repeat(65) }), err('subject.ou'));
    const sm2 = generateSm2KeyPair();
    const rsaRoot = parseCertificate(buildCertificate(base()));
    assert.throws(
      () =>
        buildCertificate(
          base({ selfSignKey: undefined, issuer: { cert: rsaRoot, privateKey: sm2.privateKey } }),
        ),
      err('issuer.privateKey'),
    );
  });

  it('POSKEY_ERR_KEY_ALGORITHM for keys that are neither RSA nor SM2', () => {
    const ed = generateKeyPairSync('ed25519');
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    assert.throws(
      () => buildCertificate(base({ publicKey: ed.publicKey })),
      code('POSKEY_ERR_KEY_ALGORITHM'),
    );
    assert.throws(
      () => buildCertificate(base({ selfSignKey: p256.privateKey })),
      code('POSKEY_ERR_KEY_ALGORITHM'),
    );
    assert.throws(() => keyAlgorithmOf({} as KeyObject), code('POSKEY_ERR_KEY_ALGORITHM'));
  });

  it('POSKEY_ERR_CERT_FORMAT for structures outside the profile', () => {
    const good = parseCertificate(buildCertificate(base()));
    const tbs = decodeDer(good.tbs).children;
    const [, sigAlg, sig] = decodeDer(good.der).children;
    const certWith = (tbsChildren: Buffer[]) => seq(seq(...tbsChildren), sigAlg!.der, sig!.der);
    // version v1
    const v1 = certWith([explicit(0, integer(0)), ...tbs.slice(1).map((c) => c.der)]);
    assert.throws(() => parseCertificate(v1), code('POSKEY_ERR_CERT_FORMAT', 'version'));
    // inner and outer signature algorithms differ
    const otherAlg = seq(oid('1.2.840.113549.1.1.5'), tlv(0x05));
    const mismatch = certWith(tbs.map((c, i) => (i === 2 ? otherAlg : c.der)));
    assert.throws(() => parseCertificate(mismatch), code('POSKEY_ERR_CERT_FORMAT', 'signature'));
    // an unknown critical extension
    const extNode = tbs[7]!;
    const critical = seq(oid('1.2.3.4'), tlv(0x01, Buffer.from([0xff])), octets(Buffer.from([5, 0])));
    const exts = explicit(3, seq(...extNode.children[0]!.children.map((c) => c.der), critical));
    const unknownExt = certWith([...tbs.slice(0, 7).map((c) => c.der), exts]);
    assert.throws(() => parseCertificate(unknownExt), code('POSKEY_ERR_CERT_FORMAT'));
    // a P-256 certificate from openssl
    const key = join(work, 'p256.key');
    const crt = join(work, 'p256.crt');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        crt,
        '-subj',
        '/CN=p256',
        '-days',
        '1',
      ],
      { stdio: 'ignore' },
    );
    assert.throws(
      () => parseCertificate(readFileSync(crt, 'utf8')),
      code('POSKEY_ERR_CERT_FORMAT', 'subjectPublicKeyInfo'),
    );
  });

  it('POSKEY_ERR_ASN1 for broken DER and POSKEY_ERR_PEM for text without a certificate', () => {
    const good = buildCertificate(base());
    assert.throws(() => parseCertificate(good.subarray(0, good.length - 1)), code('POSKEY_ERR_ASN1'));
    assert.throws(() => parseCertificate('hello'), code('POSKEY_ERR_PEM'));
    assert.throws(() => pemToDer(derToPem(good, 'CERTIFICATE'), 'PRIVATE KEY'), code('POSKEY_ERR_PEM'));
  });
});
