import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { PoskeyError } from '../../src/errors.js';
import { decodeDer, octets, readOid } from '../../src/keyload/asn1.js';
import { createRootCa, issueCertificate } from '../../src/keyload/ca.js';
import {
  attribute,
  attributeValue,
  buildEnvelopedData,
  buildSignedData,
  buildUnsignedSignedData,
  CMS_OID,
  contentInfo,
  openEnvelopedData,
  parseContentInfo,
  parseEnvelopedData,
  parseSignedData,
  verifySignerInfo,
} from '../../src/keyload/cms.js';
import { derToPem } from '../../src/keyload/x509.js';

const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  return true;
};

const work = mkdtempSync(join(tmpdir(), 'poskey-cms-'));
after(() => rmSync(work, { recursive: true, force: true }));
const path = (name: string) => join(work, name);

function party(alg: 'rsa' | 'sm2') {
  const ca = createRootCa({ algorithm: alg });
  const a = issueCertificate(ca, { role: 'krd', cn: `device A ${alg}` });
  const b = issueCertificate(ca, { role: 'krd', cn: `device B ${alg}` });
  const host = issueCertificate(ca, { role: 'kdh', cn: `host ${alg}` });
  return {
    ca,
    a: { cert: a.cert, privateKey: a.privateKey! },
    b: { cert: b.cert, privateKey: b.privateKey! },
    host: { cert: host.cert, privateKey: host.privateKey! },
  };
}

const rsa = party('rsa');
const sm2 = party('sm2');
writeFileSync(path('root.pem'), derToPem(rsa.ca.cert.der, 'CERTIFICATE'));
writeFileSync(path('a.pem'), derToPem(rsa.a.cert.der, 'CERTIFICATE'));
writeFileSync(path('a.key'), rsa.a.privateKey.export({ type: 'pkcs8', format: 'pem' }));
writeFileSync(path('host.pem'), derToPem(rsa.host.cert.der, 'CERTIFICATE'));
writeFileSync(path('host.key'), rsa.host.privateKey.export({ type: 'pkcs8', format: 'pem' }));

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });

describe('EnvelopedData, RSA-OAEP-SHA256 + AES-128-CBC', () => {
  it('openssl cms -decrypt opens what we build', () => {
    const content = Buffer.from('a key block of some length, not a multiple of 16');
    const env = buildEnvelopedData({ recipient: rsa.a.cert, content });
    writeFileSync(path('env.der'), contentInfo(CMS_OID.envelopedData, env));
    const out = openssl([
      'cms',
      '-decrypt',
      '-inform',
      'DER',
      '-in',
      path('env.der'),
      '-recip',
      path('a.pem'),
      '-inkey',
      path('a.key'),
    ]);
    assert.deepEqual(out, content);
    const parsed = parseEnvelopedData(env);
    assert.equal(parsed.recipients.length, 1);
    assert.equal(parsed.recipients[0]!.keyEncryptionAlgorithm, CMS_OID.rsaesOaep);
    assert.equal(parsed.contentEncryptionAlgorithm, CMS_OID.aes128Cbc);
    assert.equal(parsed.iv.length, 16);
  });

  it('we open what openssl cms -encrypt builds with OAEP SHA-256', () => {
    writeFileSync(path('plain.bin'), 'from openssl');
    openssl([
      'cms',
      '-encrypt',
      '-aes128',
      '-in',
      path('plain.bin'),
      '-recip',
      path('a.pem'),
      '-keyopt',
      'rsa_padding_mode:oaep',
      '-keyopt',
      'rsa_oaep_md:sha256',
      '-keyopt',
      'rsa_mgf1_md:sha256',
      '-outform',
      'DER',
      '-out',
      path('theirs.der'),
    ]);
    const { content, contentType } = openEnvelopedData(readFileSync(path('theirs.der')), rsa.a);
    assert.equal(content.toString(), 'from openssl');
    assert.equal(contentType, CMS_OID.data);
  });

  it('round trips any content (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (m) => {
        const env = buildEnvelopedData({
          recipient: rsa.a.cert,
          content: m,
          contentType: CMS_OID.signedData,
        });
        const opened = openEnvelopedData(env, rsa.a);
        assert.deepEqual(opened.content, Buffer.from(m));
        assert.equal(opened.contentType, CMS_OID.signedData);
      }),
      { numRuns: 20 },
    );
  });

  it('POSKEY_ERR_CMS_RECIPIENT when the envelope names another certificate', () => {
    const env = buildEnvelopedData({ recipient: rsa.a.cert, content: Buffer.from('x') });
    assert.throws(() => openEnvelopedData(env, rsa.b), code('POSKEY_ERR_CMS_RECIPIENT'));
  });

  it('POSKEY_ERR_CMS_DECRYPT for the wrong private key or a damaged key or content', () => {
    const env = buildEnvelopedData({ recipient: rsa.a.cert, content: Buffer.from('0123456789abcdef0123') });
    assert.throws(
      () => openEnvelopedData(env, { cert: rsa.a.cert, privateKey: rsa.b.privateKey }),
      code('POSKEY_ERR_CMS_DECRYPT'),
    );
    const parsed = parseEnvelopedData(env);
    const badKey = {
      ...parsed,
      recipients: [
        {
          ...parsed.recipients[0]!,
          encryptedKey: Buffer.from(parsed.recipients[0]!.encryptedKey).fill(1, 0, 1),
        },
      ],
    };
    assert.throws(() => openEnvelopedData(badKey, rsa.a), code('POSKEY_ERR_CMS_DECRYPT'));
    const ragged = { ...parsed, encryptedContent: parsed.encryptedContent.subarray(1) };
    assert.throws(() => openEnvelopedData(ragged, rsa.a), code('POSKEY_ERR_CMS_DECRYPT'));
    // A wrong padding byte: re-encrypting is not possible here, so damage the IV of a one-block
    // message at the position of the last padding byte (CBC: IV xor → plaintext xor).
    const short = parseEnvelopedData(
      buildEnvelopedData({ recipient: rsa.a.cert, content: Buffer.from('x') }),
    );
    const iv = Buffer.from(short.iv);
    iv[15]! ^= 0x20;
    assert.throws(() => openEnvelopedData({ ...short, iv }, rsa.a), code('POSKEY_ERR_CMS_DECRYPT'));
  });

  it('POSKEY_ERR_CMS_ALGORITHM for OAEP with SHA-1, or a key of the other family', () => {
    openssl([
      'cms',
      '-encrypt',
      '-aes128',
      '-in',
      path('plain.bin'),
      '-recip',
      path('a.pem'),
      '-keyopt',
      'rsa_padding_mode:oaep',
      '-outform',
      'DER',
      '-out',
      path('sha1.der'),
    ]);
    assert.throws(
      () => openEnvelopedData(readFileSync(path('sha1.der')), rsa.a),
      code('POSKEY_ERR_CMS_ALGORITHM'),
    );
    openssl([
      'cms',
      '-encrypt',
      '-aes256',
      '-in',
      path('plain.bin'),
      '-recip',
      path('a.pem'),
      '-keyopt',
      'rsa_padding_mode:oaep',
      '-keyopt',
      'rsa_oaep_md:sha256',
      '-keyopt',
      'rsa_mgf1_md:sha256',
      '-outform',
      'DER',
      '-out',
      path('aes256.der'),
    ]);
    assert.throws(
      () => openEnvelopedData(readFileSync(path('aes256.der')), rsa.a),
      code('POSKEY_ERR_CMS_ALGORITHM'),
    );
    const env = buildEnvelopedData({ recipient: rsa.a.cert, content: Buffer.from('x') });
    assert.throws(
      () => openEnvelopedData(env, { cert: rsa.a.cert, privateKey: sm2.a.privateKey }),
      code('POSKEY_ERR_CMS_ALGORITHM'),
    );
  });

  it('POSKEY_ERR_CMS_FORMAT for a ContentInfo of another type', () => {
    assert.throws(
      () => parseEnvelopedData(contentInfo(CMS_OID.data, octets(Buffer.from('x')))),
      code('POSKEY_ERR_CMS_FORMAT'),
    );
  });
});

describe('EnvelopedData, SM2 + SM4-CBC', () => {
  it('round trips and carries the GM/T 0009 SM2Cipher', () => {
    const content = Buffer.from('SM4 key block for a UnionPay terminal');
    const env = buildEnvelopedData({ recipient: sm2.a.cert, content });
    const parsed = parseEnvelopedData(env);
    assert.equal(parsed.recipients[0]!.keyEncryptionAlgorithm, CMS_OID.sm2Encrypt);
    assert.equal(parsed.contentEncryptionAlgorithm, CMS_OID.sm4Cbc);
    assert.equal(
      decodeDer(parsed.recipients[0]!.encryptedKey).children.length,
      4,
      'SM2Cipher has x, y, hash, cipherText',
    );
    assert.deepEqual(openEnvelopedData(env, sm2.a).content, content);
    assert.throws(() => openEnvelopedData(env, sm2.b), code('POSKEY_ERR_CMS_RECIPIENT'));
    assert.throws(
      () => openEnvelopedData(env, { cert: sm2.a.cert, privateKey: sm2.b.privateKey }),
      code('POSKEY_ERR_CMS_DECRYPT'),
    );
  });
});

describe('SignedData', () => {
  it('openssl cms -verify accepts what we sign (RSA), with our signed attributes', () => {
    const content = Buffer.from('signed content');
    const sd = buildSignedData({
      contentType: CMS_OID.data,
      content,
      signer: rsa.host,
      attributes: [attribute('1.2.840.113549.1.9.25.3', octets(Buffer.alloc(16, 7)))],
    });
    writeFileSync(path('sd.der'), sd);
    const out = openssl([
      'cms',
      '-verify',
      '-inform',
      'DER',
      '-in',
      path('sd.der'),
      '-CAfile',
      path('root.pem'),
      '-purpose',
      'any',
    ]);
    assert.deepEqual(out, content);
    const p = parseSignedData(sd);
    verifySignerInfo(p, p.signers[0]!, rsa.host.cert);
    assert.equal(
      readOid(attributeValue(p.signers[0]!.signedAttrs, CMS_OID.contentType, 'ct'), 'ct'),
      CMS_OID.data,
    );
    assert.equal(p.certificates.length, 1);
    assert.equal(decodeDer(sd).children[1]!.children[0]!.children[0]!.value[0], 1, 'version 1 for id-data');
  });

  it('openssl cms -verify accepts a non-data content type (version 3)', () => {
    const sd = buildSignedData({
      contentType: CMS_OID.envelopedData,
      content: Buffer.from('xyz'),
      signer: rsa.host,
    });
    writeFileSync(path('sd3.der'), sd);
    const ok = spawnSync('openssl', [
      'cms',
      '-verify',
      '-inform',
      'DER',
      '-in',
      path('sd3.der'),
      '-CAfile',
      path('root.pem'),
      '-purpose',
      'any',
    ]);
    assert.equal(ok.status, 0, ok.stderr.toString());
    assert.equal(decodeDer(sd).children[1]!.children[0]!.children[0]!.value[0], 3);
  });

  it('we verify what openssl cms -sign makes', () => {
    writeFileSync(path('msg.txt'), 'openssl signed');
    openssl([
      'cms',
      '-sign',
      '-nodetach',
      '-md',
      'sha256',
      '-in',
      path('msg.txt'),
      '-signer',
      path('host.pem'),
      '-inkey',
      path('host.key'),
      '-outform',
      'DER',
      '-out',
      path('osd.der'),
    ]);
    const p = parseSignedData(readFileSync(path('osd.der')));
    verifySignerInfo(p, p.signers[0]!, rsa.host.cert);
    assert.equal(p.content?.toString(), 'openssl signed');
  });

  it('SM2 signer: signs with SM3 and verifies', () => {
    const sd = buildSignedData({ contentType: CMS_OID.data, content: Buffer.from('sm2'), signer: sm2.host });
    const p = parseSignedData(sd);
    assert.equal(p.signers[0]!.digestAlgorithm, CMS_OID.sm3);
    assert.equal(p.signers[0]!.signatureAlgorithm, CMS_OID.sm2WithSm3);
    verifySignerInfo(p, p.signers[0]!, sm2.host.cert);
  });

  it('carries certificates without signers (unsigned SignedData)', () => {
    const bare = buildUnsignedSignedData({
      contentType: CMS_OID.data,
      content: Buffer.from('c'),
      certificates: [rsa.host.cert],
    });
    const p = parseSignedData(bare);
    assert.equal(p.signers.length, 0);
    assert.deepEqual(p.certificates[0], rsa.host.cert.der);
  });

  it('POSKEY_ERR_CMS_SIGNATURE for changed content, attributes, signature, or the wrong signer', () => {
    const sd = buildSignedData({
      contentType: CMS_OID.data,
      content: Buffer.from('original'),
      signer: rsa.host,
    });
    const p = parseSignedData(sd);
    const s = p.signers[0]!;
    const err = code('POSKEY_ERR_CMS_SIGNATURE');
    assert.throws(() => verifySignerInfo({ ...p, content: Buffer.from('originaL') }, s, rsa.host.cert), err);
    assert.throws(
      () => verifySignerInfo({ ...p, contentType: CMS_OID.envelopedData }, s, rsa.host.cert),
      err,
    );
    const sig = Buffer.from(s.signature);
    sig[10]! ^= 1;
    assert.throws(() => verifySignerInfo(p, { ...s, signature: sig }, rsa.host.cert), err);
    const attrs = Buffer.from(s.signedAttrsDer!);
    attrs[attrs.length - 1]! ^= 1;
    assert.throws(() => verifySignerInfo(p, { ...s, signedAttrsDer: attrs }, rsa.host.cert), err);
    assert.throws(() => verifySignerInfo(p, s, rsa.a.cert), err, 'another certificate');
    assert.throws(() => verifySignerInfo(p, { ...s, digestAlgorithm: CMS_OID.sm3 }, rsa.host.cert), err);
  });

  it('POSKEY_ERR_CMS_FORMAT without signed attributes, with a missing attribute, or the wrong ContentInfo', () => {
    openssl([
      'cms',
      '-sign',
      '-nodetach',
      '-noattr',
      '-md',
      'sha256',
      '-in',
      path('msg.txt'),
      '-signer',
      path('host.pem'),
      '-inkey',
      path('host.key'),
      '-outform',
      'DER',
      '-out',
      path('noattr.der'),
    ]);
    const p = parseSignedData(readFileSync(path('noattr.der')));
    assert.throws(() => verifySignerInfo(p, p.signers[0]!, rsa.host.cert), code('POSKEY_ERR_CMS_FORMAT'));
    assert.throws(() => attributeValue([], CMS_OID.messageDigest, 'x'), code('POSKEY_ERR_CMS_FORMAT'));
    assert.throws(
      () => parseSignedData(contentInfo(CMS_OID.envelopedData, octets(Buffer.alloc(1)))),
      code('POSKEY_ERR_CMS_FORMAT'),
    );
    assert.equal(
      parseContentInfo(contentInfo(CMS_OID.data, octets(Buffer.alloc(1)))).contentType,
      CMS_OID.data,
    );
  });

  it('POSKEY_ERR_CMS_ALGORITHM when the signing key does not fit the certificate', () => {
    assert.throws(
      () =>
        buildSignedData({
          contentType: CMS_OID.data,
          content: Buffer.from('x'),
          signer: { cert: rsa.host.cert, privateKey: sm2.host.privateKey },
        }),
      code('POSKEY_ERR_CMS_ALGORITHM'),
    );
  });
});
