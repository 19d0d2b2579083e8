import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type CipherAlgorithm, createKey } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { PoskeyError } from '../../src/errors.js';
import { decodeDer, integer, octets, oid, seq, set } from '../../src/keyload/asn1.js';
import { type CertificateAuthority, createRootCa, issueCertificate } from '../../src/keyload/ca.js';
import {
  attribute,
  buildEnvelopedData,
  buildSignedData,
  CMS_OID,
  contentInfo,
  parseEnvelopedData,
  parseSignedData,
} from '../../src/keyload/cms.js';
import {
  applyBindToken,
  buildBindToken,
  buildKeyToken,
  buildRebindToken,
  buildUnbindToken,
  createKrdNonce,
  type KrdBindState,
  openKeyToken,
  TR34_OID,
  Tr34Krd,
  UNBOUND,
} from '../../src/keyload/tr34.js';
import {
  type Certificate,
  derToPem,
  issuerAndSerialNumber,
  type KeyAlgorithm,
} from '../../src/keyload/x509.js';

const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  return true;
};

const DAY = 86_400_000;
const work = mkdtempSync(join(tmpdir(), 'poskey-tr34-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Party {
  cert: Certificate;
  privateKey: import('node:crypto').KeyObject;
}

interface World {
  alg: KeyAlgorithm;
  ca: CertificateAuthority;
  kdh1: Party;
  kdh2: Party;
  krdA: Party;
  krdB: Party;
  /** Expired a day ago. */
  kdhExpired: Party;
  /** A KDH certificate from another CA with the same root name. */
  kdhRogue: Party;
  header: string;
  cipher: CipherAlgorithm;
}

function party(
  ca: CertificateAuthority,
  role: 'kdh' | 'krd',
  cn: string,
  extra: { notBefore?: Date; notAfter?: Date } = {},
): Party {
  const { cert, privateKey } = issueCertificate(ca, { role, cn, ...extra });
  return { cert, privateKey: privateKey! };
}

function world(alg: KeyAlgorithm): World {
  const ca = createRootCa({ algorithm: alg, cn: 'RKL Root', notBefore: new Date(Date.now() - 60 * DAY) });
  const rogueCa = createRootCa({ algorithm: alg, cn: 'RKL Root' });
  return {
    alg,
    ca,
    kdh1: party(ca, 'kdh', 'KDH one'),
    kdh2: party(ca, 'kdh', 'KDH two'),
    krdA: party(ca, 'krd', 'PINPAD A'),
    krdB: party(ca, 'krd', 'PINPAD B'),
    kdhExpired: party(ca, 'kdh', 'KDH old', {
      notBefore: new Date(Date.now() - 30 * DAY),
      notAfter: new Date(Date.now() - DAY),
    }),
    kdhRogue: party(rogueCa, 'kdh', 'KDH one'),
    header: alg === 'rsa' ? 'A0000K0TB00E0000' : 'D0000K04B00E0000',
    cipher: alg === 'rsa' ? 'tdes' : 'sm4',
  };
}

const worlds = { rsa: world('rsa'), sm2: world('sm2') };

/** A fresh device for `w`, optionally bound. */
const device = (w: World, krd: Party = w.krdA, binding?: KrdBindState) =>
  new Tr34Krd({ cert: krd.cert, privateKey: krd.privateKey, caRoot: w.ca.cert, binding });

function keyToken(
  w: World,
  nonce: Buffer,
  opts: { kdh?: Party; krd?: Party; key?: Buffer; header?: string } = {},
) {
  return buildKeyToken({
    kdh: opts.kdh ?? w.kdh1,
    krdCert: (opts.krd ?? w.krdA).cert,
    nonce,
    keyBlockHeader: opts.header ?? w.header,
    clearKey: opts.key ?? randomBytes(16),
    algorithm: w.alg,
  });
}

function contains(haystack: Buffer, needle: Buffer): boolean {
  return haystack.indexOf(needle) >= 0;
}

for (const alg of ['rsa', 'sm2'] as const) {
  const w = worlds[alg];

  describe(`TR-34 two-pass key loading (${alg.toUpperCase()})`, () => {
    it('device nonce → host key token → device opens it; KCVs agree', () => {
      const krd = device(w);
      const nonce = krd.createNonce(); // RT-KRD
      assert.equal(nonce.length, 16);
      const tmk = randomBytes(16);
      const hostKcv = checkValue(createKey(w.cipher, tmk)).value;
      const token = buildKeyToken({
        kdh: w.kdh1,
        krdCert: w.krdA.cert,
        nonce,
        keyBlockHeader: w.header,
        clearKey: tmk,
        algorithm: alg,
      });
      const opened = krd.openKeyToken(token);
      assert.deepEqual(opened.clearKey, tmk);
      assert.equal(opened.header, w.header);
      assert.deepEqual(opened.kdhCert.der, w.kdh1.cert.der);
      assert.equal(checkValue(createKey(w.cipher, opened.clearKey)).value, hostKcv);
    });

    it('has the TR-34 layout: SignedData ⊃ EnvelopedData ⊃ KeyBlock, nonce and header signed', () => {
      const nonce = createKrdNonce();
      const tmk = randomBytes(16);
      const token = keyToken(w, nonce, { key: tmk });
      const sd = parseSignedData(token);
      assert.equal(sd.contentType, CMS_OID.envelopedData);
      assert.equal(sd.signers.length, 1);
      const types = sd.signers[0]!.signedAttrs!.map((a) => a.type).sort();
      assert.deepEqual(
        types,
        [CMS_OID.data, CMS_OID.contentType, CMS_OID.messageDigest, TR34_OID.randomNonce].sort(),
      );
      const nonceAttr = sd.signers[0]!.signedAttrs!.find((a) => a.type === TR34_OID.randomNonce)!;
      assert.deepEqual(decodeDer(nonceAttr.values[0]!).value, nonce);
      const env = parseEnvelopedData(sd.content!);
      assert.equal(
        env.recipients[0]!.keyEncryptionAlgorithm,
        alg === 'rsa' ? CMS_OID.rsaesOaep : CMS_OID.sm2Encrypt,
      );
      assert.equal(env.contentEncryptionAlgorithm, alg === 'rsa' ? CMS_OID.aes128Cbc : CMS_OID.sm4Cbc);
      const opened = openKeyToken({ token, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce });
      assert.deepEqual(opened.clearKey, tmk);
    });

    it('never carries the clear key in the token', () => {
      for (let i = 0; i < 8; i++) {
        const key = randomBytes(i % 2 === 0 ? 16 : alg === 'rsa' ? 24 : 16);
        const header = key.length === 24 ? 'A0000K0TB00E0000' : w.header;
        const token = keyToken(w, createKrdNonce(), { key, header });
        assert.equal(contains(token, key), false);
        for (let at = 0; at + 8 <= key.length; at += 8)
          assert.equal(contains(token, key.subarray(at, at + 8)), false, 'no 8-byte half');
        assert.equal(contains(token, Buffer.from(key.toString('hex'))), false);
        assert.equal(contains(token, Buffer.from(key.toString('hex').toUpperCase())), false);
      }
    });

    it('accepts 16-, 24- and 32-byte keys that fit the header algorithm', () => {
      const cases: [number, string][] =
        alg === 'rsa'
          ? [
              [16, 'A0000K0TB00E0000'],
              [24, 'A0000K0TB00E0000'],
              [32, 'D0000K1AB00E0000'],
            ]
          : [[16, 'D0000K04B00E0000']];
      for (const [length, header] of cases) {
        const krd = device(w);
        const key = randomBytes(length);
        assert.deepEqual(krd.openKeyToken(keyToken(w, krd.createNonce(), { key, header })).clearKey, key);
      }
    });

    it('POSKEY_ERR_TR34_NONCE: a replayed token, a used nonce, no nonce outstanding', () => {
      const krd = device(w);
      const first = krd.createNonce();
      const token = keyToken(w, first);
      krd.openKeyToken(token);
      assert.throws(() => krd.openKeyToken(token), code('POSKEY_ERR_TR34_NONCE'), 'nonce already consumed');
      krd.createNonce();
      assert.throws(
        () => krd.openKeyToken(token),
        code('POSKEY_ERR_TR34_NONCE'),
        'replay against a new nonce',
      );
      assert.throws(
        () => openKeyToken({ token, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: createKrdNonce() }),
        code('POSKEY_ERR_TR34_NONCE'),
      );
      // a failed attempt also consumes the nonce: the genuine token cannot be retried afterwards
      const n = krd.createNonce();
      const genuine = keyToken(w, n);
      assert.throws(() => krd.openKeyToken(keyToken(w, createKrdNonce())), code('POSKEY_ERR_TR34_NONCE'));
      assert.throws(() => krd.openKeyToken(genuine), code('POSKEY_ERR_TR34_NONCE'));
      assert.throws(
        () => keyToken(w, Buffer.alloc(7)),
        code('POSKEY_ERR_TR34_NONCE'),
        'host refuses a short nonce',
      );
      assert.throws(() => createKrdNonce(() => Buffer.alloc(8)), code('POSKEY_ERR_RANDOM'));
      assert.throws(
        () => openKeyToken({ token, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: Buffer.alloc(17) }),
        code('POSKEY_ERR_TR34_NONCE'),
      );
    });

    it('POSKEY_ERR_CERT_EXPIRED: a token signed by an expired KDH certificate', () => {
      const nonce = createKrdNonce();
      const token = keyToken(w, nonce, { kdh: w.kdhExpired });
      assert.throws(
        () => openKeyToken({ token, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce }),
        code('POSKEY_ERR_CERT_EXPIRED'),
      );
      // the same token was fine while the certificate was valid
      const opened = openKeyToken({
        token,
        krd: w.krdA,
        caRoot: w.ca.cert,
        expectedNonce: nonce,
        at: new Date(Date.now() - 10 * DAY),
      });
      assert.equal(opened.clearKey.length, 16);
      assert.throws(
        () =>
          openKeyToken({
            token,
            krd: w.krdA,
            caRoot: w.ca.cert,
            expectedNonce: nonce,
            at: new Date(Date.now() - 40 * DAY),
          }),
        code('POSKEY_ERR_CERT_NOT_YET_VALID'),
      );
    });

    it('POSKEY_ERR_TR34_RECIPIENT: a token enveloped for another device', () => {
      const krd = device(w, w.krdA);
      const nonce = krd.createNonce();
      const forB = keyToken(w, nonce, { krd: w.krdB });
      assert.throws(() => krd.openKeyToken(forB), code('POSKEY_ERR_TR34_RECIPIENT'));
    });

    it('POSKEY_ERR_CERT_CHAIN: a KDH certificate not issued by the root', () => {
      const nonce = createKrdNonce();
      const token = keyToken(w, nonce, { kdh: w.kdhRogue });
      assert.throws(
        () => openKeyToken({ token, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce }),
        code('POSKEY_ERR_CERT_CHAIN'),
      );
    });

    it('POSKEY_ERR_CERT_ROLE: a KRD certificate used to sign as KDH', () => {
      const nonce = createKrdNonce();
      const token = keyToken(w, nonce, { kdh: w.krdB });
      assert.throws(
        () => openKeyToken({ token, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce }),
        code('POSKEY_ERR_CERT_ROLE'),
      );
      assert.throws(
        () =>
          buildKeyToken({
            kdh: w.kdh1,
            krdCert: w.kdh2.cert,
            nonce,
            keyBlockHeader: w.header,
            clearKey: randomBytes(16),
            caRoot: w.ca.cert,
          }),
        code('POSKEY_ERR_CERT_ROLE'),
        'the host checks the KRD certificate when given the root',
      );
    });

    it('POSKEY_ERR_TR34_DECRYPT: the right certificate with the wrong private key', () => {
      const nonce = createKrdNonce();
      const token = keyToken(w, nonce);
      assert.throws(
        () =>
          openKeyToken({
            token,
            krd: { cert: w.krdA.cert, privateKey: w.krdB.privateKey },
            caRoot: w.ca.cert,
            expectedNonce: nonce,
          }),
        code('POSKEY_ERR_TR34_DECRYPT'),
      );
    });

    it('POSKEY_ERR_TR34_SIGNATURE: changed envelope, attributes or signature bytes', () => {
      const nonce = createKrdNonce();
      const token = keyToken(w, nonce);
      const sd = parseSignedData(token);
      const open = (t: Buffer) =>
        openKeyToken({ token: t, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce });
      const flipAt = (needle: Buffer, offset: number) => {
        const t = Buffer.from(token);
        const at = t.indexOf(needle);
        assert.ok(at >= 0);
        t[at + offset]! ^= 0x01;
        return t;
      };
      const env = sd.content!;
      assert.throws(
        () => open(flipAt(env, env.length - 5)),
        code('POSKEY_ERR_TR34_SIGNATURE'),
        'encrypted content',
      );
      assert.throws(
        () => open(flipAt(env, env.length - 40)),
        code('POSKEY_ERR_TR34_SIGNATURE'),
        'encrypted content',
      );
      const s = sd.signers[0]!;
      assert.throws(() => open(flipAt(s.signature, 20)), code('POSKEY_ERR_TR34_SIGNATURE'), 'signature');
      assert.throws(() => open(flipAt(nonce, 3)), code('POSKEY_ERR_TR34_SIGNATURE'), 'signed nonce');
      assert.throws(
        () => open(flipAt(Buffer.from(w.header), 5)),
        code('POSKEY_ERR_TR34_SIGNATURE'),
        'signed header',
      );
    });

    it('tampering anywhere fails closed with a PoskeyError, never opens', () => {
      const nonce = createKrdNonce();
      const token = keyToken(w, nonce);
      const allowed = new Set([
        'POSKEY_ERR_ASN1',
        'POSKEY_ERR_TR34_FORMAT',
        'POSKEY_ERR_TR34_SIGNATURE',
        'POSKEY_ERR_CERT_CHAIN',
        'POSKEY_ERR_CERT_FORMAT',
      ]);
      const seen = new Map<string, number>();
      // Every byte for RSA; SM2 verification runs in BigInt, so sample (TR34_FLIP_STEP=1 checks all).
      const step = Number(process.env.TR34_FLIP_STEP ?? (alg === 'rsa' ? 1 : 11));
      for (let i = 0; i < token.length; i += step) {
        const t = Buffer.from(token);
        t[i]! ^= i % 2 === 0 ? 0x01 : 0x80;
        try {
          openKeyToken({ token: t, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce });
          assert.fail(`token with byte ${i} flipped was accepted`);
        } catch (e) {
          assert.ok(e instanceof PoskeyError, `byte ${i}: ${String(e)}`);
          assert.ok(allowed.has(e.code), `byte ${i}: ${e.code} ${e.message}`);
          seen.set(e.code, (seen.get(e.code) ?? 0) + 1);
        }
      }
      assert.ok((seen.get('POSKEY_ERR_TR34_SIGNATURE') ?? 0) > 0);
      // truncation and extension
      for (const t of [token.subarray(0, token.length - 1), Buffer.concat([token, Buffer.from([0])])]) {
        assert.throws(
          () => openKeyToken({ token: t, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce }),
          code('POSKEY_ERR_ASN1'),
        );
      }
    });

    it('POSKEY_ERR_TR34_KEYBLOCK: bad header or key length, and a signed block that contradicts its attributes', () => {
      const nonce = createKrdNonce();
      assert.throws(
        () => keyToken(w, nonce, { header: 'A0000K0TB00E000' }),
        code('POSKEY_ERR_TR34_KEYBLOCK'),
      );
      assert.throws(() => keyToken(w, nonce, { key: randomBytes(8) }), code('POSKEY_ERR_TR34_KEYBLOCK'));
      assert.throws(
        () => keyToken(w, nonce, { key: randomBytes(32), header: 'A0000K0TB00E0000' }),
        code('POSKEY_ERR_TR34_KEYBLOCK'),
      );
      assert.throws(
        () => keyToken(w, nonce, { header: 'A0000K0TB00E0100' }),
        code('POSKEY_ERR_TR31_OPTIONAL_BLOCK'),
      );
      assert.throws(() => keyToken(w, nonce, { header: 'Z0000K0TB00E0000' }), code('POSKEY_ERR_TR31_HEADER'));
      // A KDH that signs a key block disagreeing with its signed header, or naming another KDH.
      const forged = (header: string, signedHeader: string, kdhId: Buffer) => {
        const block = seq(
          integer(1),
          kdhId,
          octets(randomBytes(16)),
          seq(oid(CMS_OID.data), set(octets(Buffer.from(header)))),
        );
        return buildSignedData({
          contentType: CMS_OID.envelopedData,
          content: buildEnvelopedData({ recipient: w.krdA.cert, content: block }),
          signer: w.kdh1,
          attributes: [
            attribute(TR34_OID.randomNonce, octets(nonce)),
            attribute(CMS_OID.data, octets(Buffer.from(signedHeader))),
          ],
        });
      };
      const open = (t: Buffer) =>
        openKeyToken({ token: t, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce });
      const other = w.header.replace('E0000', 'N0000');
      assert.throws(
        () => open(forged(w.header, other, issuerAndSerialNumber(w.kdh1.cert))),
        code('POSKEY_ERR_TR34_KEYBLOCK'),
      );
      assert.throws(
        () => open(forged(w.header, w.header, issuerAndSerialNumber(w.kdh2.cert))),
        code('POSKEY_ERR_TR34_KEYBLOCK'),
      );
      assert.deepEqual(
        open(forged(w.header, w.header, issuerAndSerialNumber(w.kdh1.cert))).header,
        w.header,
        'control',
      );
    });

    it('POSKEY_ERR_TR34_FORMAT: a bind token offered as key token, no signer certificate', () => {
      const nonce = createKrdNonce();
      const unbind = buildUnbindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce });
      assert.throws(
        () => openKeyToken({ token: unbind, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce }),
        code('POSKEY_ERR_TR34_FORMAT'),
      );
      const bare = buildSignedData({
        contentType: CMS_OID.envelopedData,
        content: buildEnvelopedData({ recipient: w.krdA.cert, content: Buffer.from('x') }),
        signer: w.kdh1,
        certificates: [],
        attributes: [attribute(TR34_OID.randomNonce, octets(nonce))],
      });
      assert.throws(
        () => openKeyToken({ token: bare, krd: w.krdA, caRoot: w.ca.cert, expectedNonce: nonce }),
        code('POSKEY_ERR_TR34_FORMAT'),
      );
      assert.throws(
        () =>
          openKeyToken({
            token: contentInfo(CMS_OID.data, octets(Buffer.from('x'))),
            krd: w.krdA,
            caRoot: w.ca.cert,
            expectedNonce: nonce,
          }),
        code('POSKEY_ERR_TR34_FORMAT'),
      );
    });

    it('POSKEY_ERR_TR34_ALGORITHM: keys of the other family', () => {
      const other = worlds[alg === 'rsa' ? 'sm2' : 'rsa'];
      const nonce = createKrdNonce();
      assert.throws(() => keyToken(w, nonce, { krd: other.krdA }), code('POSKEY_ERR_TR34_ALGORITHM'));
      assert.throws(
        () =>
          buildKeyToken({
            kdh: w.kdh1,
            krdCert: w.krdA.cert,
            nonce,
            keyBlockHeader: w.header,
            clearKey: randomBytes(16),
            algorithm: other.alg,
          }),
        code('POSKEY_ERR_TR34_ALGORITHM'),
      );
      assert.throws(
        () =>
          buildKeyToken({
            kdh: { cert: w.kdh1.cert, privateKey: other.kdh1.privateKey },
            krdCert: w.krdA.cert,
            nonce,
            keyBlockHeader: w.header,
            clearKey: randomBytes(16),
          }),
        code('POSKEY_ERR_TR34_ALGORITHM'),
      );
    });
  });

  describe(`TR-34 bind, rebind, unbind (${alg.toUpperCase()})`, () => {
    it('bind → only the bound KDH loads keys → rebind moves to the new KDH → unbind frees the device', () => {
      const krd = device(w);
      const load = (kdh: Party) => krd.openKeyToken(keyToken(w, krd.createNonce(), { kdh }));
      // unbound: any KDH of the root may load
      load(w.kdh2);
      // bind to KDH one
      const bound = krd.applyBindToken(
        buildBindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce: krd.createNonce() }),
      );
      assert.equal(bound.action, 'bind');
      assert.deepEqual(krd.binding.kdhCert, w.kdh1.cert.der);
      load(w.kdh1);
      assert.throws(() => load(w.kdh2), code('POSKEY_ERR_TR34_BINDING'));
      // rebind to KDH two, signed by KDH one
      const rebound = krd.applyBindToken(
        buildRebindToken({
          kdh: w.kdh1,
          newKdhCert: w.kdh2.cert,
          krdCert: w.krdA.cert,
          nonce: krd.createNonce(),
        }),
      );
      assert.equal(rebound.action, 'rebind');
      assert.deepEqual(krd.binding.kdhCert, w.kdh2.cert.der);
      load(w.kdh2);
      assert.throws(() => load(w.kdh1), code('POSKEY_ERR_TR34_BINDING'));
      // unbind by KDH two
      const unbound = krd.applyBindToken(
        buildUnbindToken({ kdh: w.kdh2, krdCert: w.krdA.cert, nonce: krd.createNonce() }),
      );
      assert.equal(unbound.action, 'unbind');
      assert.equal(krd.binding.kdhCert, null);
      load(w.kdh1);
    });

    it('the pure state function returns new states and leaves the input alone', () => {
      const nonce = createKrdNonce();
      const token = buildBindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce });
      const r = applyBindToken({
        state: UNBOUND,
        token,
        krd: { cert: w.krdA.cert },
        caRoot: w.ca.cert,
        expectedNonce: nonce,
      });
      assert.equal(UNBOUND.kdhCert, null);
      assert.ok(Object.isFrozen(r.state));
      const n2 = createKrdNonce();
      const keyTok = keyToken(w, n2, { kdh: w.kdh2 });
      assert.throws(
        () =>
          openKeyToken({
            token: keyTok,
            krd: w.krdA,
            caRoot: w.ca.cert,
            expectedNonce: n2,
            binding: r.state,
          }),
        code('POSKEY_ERR_TR34_BINDING'),
      );
    });

    it('POSKEY_ERR_TR34_BINDING: tokens that do not fit the state', () => {
      const bindTo = (state: KrdBindState, token: (nonce: Buffer) => Buffer) => {
        const nonce = createKrdNonce();
        return applyBindToken({
          state,
          token: token(nonce),
          krd: { cert: w.krdA.cert },
          caRoot: w.ca.cert,
          expectedNonce: nonce,
        });
      };
      const err = code('POSKEY_ERR_TR34_BINDING');
      // unbound device: an unbind, or a "bind" carrying someone else's certificate
      assert.throws(
        () => bindTo(UNBOUND, (nonce) => buildUnbindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce })),
        err,
      );
      assert.throws(
        () =>
          bindTo(UNBOUND, (nonce) =>
            buildRebindToken({ kdh: w.kdh1, newKdhCert: w.kdh2.cert, krdCert: w.krdA.cert, nonce }),
          ),
        err,
      );
      // bound to KDH one: another KDH cannot bind, rebind or unbind it
      const state = bindTo(UNBOUND, (nonce) =>
        buildBindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce }),
      ).state;
      assert.throws(
        () => bindTo(state, (nonce) => buildBindToken({ kdh: w.kdh2, krdCert: w.krdA.cert, nonce })),
        err,
      );
      assert.throws(
        () =>
          bindTo(state, (nonce) =>
            buildRebindToken({ kdh: w.kdh2, newKdhCert: w.kdh2.cert, krdCert: w.krdA.cert, nonce }),
          ),
        err,
      );
      assert.throws(
        () => bindTo(state, (nonce) => buildUnbindToken({ kdh: w.kdh2, krdCert: w.krdA.cert, nonce })),
        err,
      );
      // the bound KDH re-presenting itself is a no-op rebind
      const same = bindTo(state, (nonce) => buildBindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce }));
      assert.equal(same.action, 'rebind');
      assert.deepEqual(same.state.kdhCert, w.kdh1.cert.der);
    });

    it('bind tokens are authenticated like key tokens: nonce, recipient, chain, role, signature', () => {
      const krd = device(w);
      krd.createNonce();
      assert.throws(
        () =>
          krd.applyBindToken(buildBindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce: createKrdNonce() })),
        code('POSKEY_ERR_TR34_NONCE'),
      );
      assert.throws(
        () =>
          krd.applyBindToken(buildBindToken({ kdh: w.kdh1, krdCert: w.krdB.cert, nonce: krd.createNonce() })),
        code('POSKEY_ERR_TR34_RECIPIENT'),
      );
      assert.throws(
        () =>
          krd.applyBindToken(
            buildBindToken({ kdh: w.kdhRogue, krdCert: w.krdA.cert, nonce: krd.createNonce() }),
          ),
        code('POSKEY_ERR_CERT_CHAIN'),
      );
      assert.throws(
        () =>
          krd.applyBindToken(buildBindToken({ kdh: w.krdB, krdCert: w.krdA.cert, nonce: krd.createNonce() })),
        code('POSKEY_ERR_CERT_ROLE'),
      );
      assert.throws(
        () =>
          krd.applyBindToken(
            buildBindToken({ kdh: w.kdhExpired, krdCert: w.krdA.cert, nonce: krd.createNonce() }),
          ),
        code('POSKEY_ERR_CERT_EXPIRED'),
      );
      const nonce = krd.createNonce();
      const token = Buffer.from(buildBindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce }));
      const sig = parseSignedData(token).signers[0]!.signature;
      token[token.indexOf(sig) + 10]! ^= 1;
      assert.throws(() => krd.applyBindToken(token), code('POSKEY_ERR_TR34_SIGNATURE'));
      // a rebind to a KRD certificate is refused by role
      const bound = applyBindToken({
        state: UNBOUND,
        token: buildBindToken({ kdh: w.kdh1, krdCert: w.krdA.cert, nonce }),
        krd: { cert: w.krdA.cert },
        caRoot: w.ca.cert,
        expectedNonce: nonce,
      }).state;
      const n2 = createKrdNonce();
      assert.throws(
        () =>
          applyBindToken({
            state: bound,
            token: buildRebindToken({
              kdh: w.kdh1,
              newKdhCert: w.krdB.cert,
              krdCert: w.krdA.cert,
              nonce: n2,
            }),
            krd: { cert: w.krdA.cert },
            caRoot: w.ca.cert,
            expectedNonce: n2,
          }),
        code('POSKEY_ERR_CERT_ROLE'),
      );
      // unbind naming another device
      assert.throws(
        () =>
          applyBindToken({
            state: bound,
            token: buildUnbindToken({ kdh: w.kdh1, krdCert: w.krdB.cert, nonce: n2 }),
            krd: { cert: w.krdA.cert },
            caRoot: w.ca.cert,
            expectedNonce: n2,
          }),
        code('POSKEY_ERR_TR34_RECIPIENT'),
      );
    });
  });
}

describe('TR-34 key token read by openssl (RSA)', () => {
  it('openssl cms -verify yields the EnvelopedData, openssl cms -decrypt yields the KeyBlock', () => {
    const w = worlds.rsa;
    const nonce = createKrdNonce();
    const tmk = randomBytes(16);
    const token = keyToken(w, nonce, { key: tmk });
    const file = (name: string, data: string | Buffer) => {
      const p = join(work, name);
      writeFileSync(p, data);
      return p;
    };
    const root = file('root.pem', derToPem(w.ca.cert.der, 'CERTIFICATE'));
    const tok = file('token.der', token);
    const envelope = execFileSync(
      'openssl',
      ['cms', '-verify', '-inform', 'DER', '-in', tok, '-CAfile', root, '-purpose', 'any'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const envFile = file('env.der', contentInfo(CMS_OID.envelopedData, envelope));
    const krdPem = file('krd.pem', derToPem(w.krdA.cert.der, 'CERTIFICATE'));
    const krdKey = file('krd.key', w.krdA.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const keyBlock = execFileSync(
      'openssl',
      ['cms', '-decrypt', '-inform', 'DER', '-in', envFile, '-recip', krdPem, '-inkey', krdKey],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const [version, idKdh, clearKey, header] = decodeDer(keyBlock).children;
    assert.equal(version!.value[0], 1);
    assert.deepEqual(idKdh!.der, issuerAndSerialNumber(w.kdh1.cert));
    assert.deepEqual(clearKey!.value, tmk);
    assert.equal(header!.children[1]!.children[0]!.value.toString(), w.header);
    assert.equal(parseEnvelopedData(envelope).recipients.length, 1);
  });
});
