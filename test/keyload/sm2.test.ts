import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { PoskeyError } from '../../src/errors.js';
import {
  generateSm2KeyPair,
  isSm2Key,
  pointFromSpki,
  SM2_DEFAULT_ID,
  sm2CipherFromDer,
  sm2CipherToDer,
  sm2Decrypt,
  sm2Encrypt,
  sm2KeyPairFromScalar,
  sm2PrivateScalar,
  sm2PublicPoint,
  sm2Sign,
  sm2Spki,
  sm2Verify,
  sm2Z,
  sm3,
  sm3Kdf,
} from '../../src/keyload/sm2.js';
import { loadVectors } from '../helpers/vectors.js';

const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  return true;
};
const hex = (h: string) => Buffer.from(h, 'hex');
const fixed = (bytes: Buffer) => () => Buffer.from(bytes);

interface Sm3Vector {
  name: string;
  messageHex: string;
  digest: string;
}
interface Sm2Vector {
  name: string;
  kind: 'sign' | 'encrypt';
  privateKey: string;
  publicKey: string;
  id?: string;
  message: string;
  k: string;
  z?: string;
  e?: string;
  r?: string;
  s?: string;
  c1?: string;
  c3?: string;
  c2?: string;
  der?: string;
}

const sm3Vectors = loadVectors<Sm3Vector>('sm3.json').vectors;
const sm2Vectors = loadVectors<Sm2Vector>('sm2.json').vectors;
const signVector = sm2Vectors.find((v) => v.kind === 'sign')!;
const encVector = sm2Vectors.find((v) => v.kind === 'encrypt')!;

function derSig(r: string, s: string): Buffer {
  const int = (h: string) => {
    let b = hex(h);
    if (b[0]! >= 0x80) b = Buffer.concat([Buffer.from([0]), b]);
    return Buffer.concat([Buffer.from([2, b.length]), b]);
  };
  const body = Buffer.concat([int(r), int(s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

const work = mkdtempSync(join(tmpdir(), 'poskey-sm2-'));
after(() => rmSync(work, { recursive: true, force: true }));

describe('SM3 (GB/T 32905 Appendix A)', () => {
  for (const v of sm3Vectors) {
    it(v.name, () => {
      assert.equal(sm3(hex(v.messageHex)).toString('hex'), v.digest);
      // split input gives the same hash
      const m = hex(v.messageHex);
      assert.equal(sm3(m.subarray(0, 1), m.subarray(1)).toString('hex'), v.digest);
    });
  }

  it('KDF output is SM3(Z ‖ ct) blocks, truncated', () => {
    const z = hex('00112233');
    const k = sm3Kdf(z, 40);
    assert.equal(k.length, 40);
    assert.deepEqual(k.subarray(0, 32), sm3(z, hex('00000001')));
    assert.deepEqual(k.subarray(32), sm3(z, hex('00000002')).subarray(0, 8));
  });
});

describe('SM2 signature (GM/T 0003.2, Annex A vector)', () => {
  const keys = sm2KeyPairFromScalar(hex(signVector.privateKey));

  it('derives the published public key and Z for the default ID', () => {
    assert.equal(sm2PublicPoint(keys.publicKey).toString('hex'), signVector.publicKey);
    assert.equal(sm2Z(keys.publicKey, signVector.id).toString('hex'), signVector.z);
    assert.equal(sm2Z(keys.publicKey).toString('hex'), signVector.z, 'default ID is 1234567812345678');
    assert.equal(SM2_DEFAULT_ID, signVector.id);
    assert.equal(sm3(hex(signVector.z!), Buffer.from(signVector.message)).toString('hex'), signVector.e);
  });

  it('signs to the published (r, s) with the published k', () => {
    const sig = sm2Sign(hex(signVector.privateKey), Buffer.from(signVector.message), {
      random: fixed(hex(signVector.k)),
    });
    assert.deepEqual(sig, derSig(signVector.r!, signVector.s!));
    const viaKeyObject = sm2Sign(keys.privateKey, Buffer.from(signVector.message), {
      random: fixed(hex(signVector.k)),
    });
    assert.deepEqual(viaKeyObject, sig);
  });

  it('verifies the published signature and rejects any change', () => {
    const sig = derSig(signVector.r!, signVector.s!);
    const msg = Buffer.from(signVector.message);
    assert.equal(sm2Verify(keys.publicKey, msg, sig), true);
    assert.equal(sm2Verify(hex(signVector.publicKey), msg, sig), true);
    assert.equal(sm2Verify(keys.publicKey, Buffer.from('message digesT'), sig), false);
    assert.equal(sm2Verify(keys.publicKey, msg, sig, { id: 'ALICE123@YAHOO.COM' }), false);
    assert.equal(sm2Verify(keys.publicKey, msg, derSig(signVector.s!, signVector.r!)), false);
    assert.equal(sm2Verify(keys.publicKey, msg, Buffer.from('3000', 'hex')), false, 'malformed DER');
    assert.equal(sm2Verify(keys.publicKey, msg, derSig('00', signVector.s!)), false, 'r = 0');
    const n = 'fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123';
    assert.equal(sm2Verify(keys.publicKey, msg, derSig(n, signVector.s!)), false, 'r = n');
  });

  it('documents Node 20: crypto.verify on SM2 keys uses an EMPTY user ID, not the GM/T 0009 default', () => {
    // An SM2 key imported from SPKI is an OpenSSL SM2 key: Node verifies SM2 with Z over ENTL = 0.
    const imported = createPublicKey({
      key: sm2Spki(hex(signVector.publicKey)),
      format: 'der',
      type: 'spki',
    });
    const msg = Buffer.from(signVector.message);
    assert.equal(
      verify('sm3', msg, imported, derSig(signVector.r!, signVector.s!)),
      false,
      'Node rejects the Annex A vector',
    );
    const nodeSig = sign('sm3', msg, keys.privateKey);
    assert.equal(sm2Verify(keys.publicKey, msg, nodeSig, { id: '' }), true, 'Node signs with an empty ID');
    assert.equal(sm2Verify(keys.publicKey, msg, nodeSig), false);
    // A freshly generated 'ec' key on the SM2 curve is not even SM2: Node does ECDSA with SM3.
    const ec = generateKeyPairSync('ec', { namedCurve: 'SM2' });
    assert.equal(ec.privateKey.asymmetricKeyType, 'ec');
    const ecdsa = sign('sm3', msg, ec.privateKey);
    assert.equal(sm2Verify(ec.publicKey, msg, ecdsa, { id: '' }), false);
    assert.equal(sm2Verify(ec.publicKey, msg, ecdsa), false);
  });

  it('signs and verifies random messages and IDs (property)', () => {
    const pair = generateSm2KeyPair();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.string({ maxLength: 20 }), (m, id) => {
        const sig = sm2Sign(pair.privateKey, m, { id });
        assert.equal(sm2Verify(pair.publicKey, m, sig, { id }), true);
        const other = Buffer.concat([m, Buffer.from([1])]);
        assert.equal(sm2Verify(pair.publicKey, other, sig, { id }), false);
      }),
      { numRuns: 25 },
    );
  });
});

describe('SM2 encryption (GM/T 0003.4, Annex C vector)', () => {
  const keys = sm2KeyPairFromScalar(hex(encVector.privateKey));
  const c1c3c2 = hex(encVector.c1! + encVector.c3! + encVector.c2!);

  it('encrypts to the published C1 ‖ C3 ‖ C2 with the published k', () => {
    const ct = sm2Encrypt(keys.publicKey, Buffer.from(encVector.message), {
      random: fixed(hex(encVector.k)),
    });
    assert.deepEqual(ct, c1c3c2);
  });

  it('converts to and from the GM/T 0009 SM2Cipher DER form', () => {
    assert.equal(sm2CipherToDer(c1c3c2).toString('hex'), encVector.der);
    assert.deepEqual(sm2CipherFromDer(hex(encVector.der!)), c1c3c2);
  });

  it('decrypts the published ciphertext', () => {
    assert.equal(sm2Decrypt(keys.privateKey, c1c3c2).toString(), encVector.message);
    assert.equal(sm2Decrypt(hex(encVector.privateKey), c1c3c2).toString(), encVector.message);
  });

  it('round trips random messages and rejects any altered byte (property)', () => {
    const pair = generateSm2KeyPair();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 100 }), fc.nat(), (m, pos) => {
        const ct = sm2Encrypt(pair.publicKey, m);
        assert.deepEqual(sm2Decrypt(pair.privateKey, ct), Buffer.from(m));
        const bad = Buffer.from(ct);
        const i = 65 + (pos % (bad.length - 65)); // C3 or C2: C1 changes are covered below
        bad[i]! ^= 0x01;
        assert.throws(() => sm2Decrypt(pair.privateKey, bad), code('POSKEY_ERR_SM2_DECRYPT'));
      }),
      { numRuns: 25 },
    );
  });

  it('interoperates with openssl pkeyutl in both directions (GM/T 0009 DER)', () => {
    const pair = generateSm2KeyPair();
    const keyPem = join(work, 'sm2.key.pem');
    const pubPem = join(work, 'sm2.pub.pem');
    writeFileSync(keyPem, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(pubPem, pair.publicKey.export({ type: 'spki', format: 'pem' }));
    const message = Buffer.from('TMK 0123456789ABCDEFFEDCBA9876543210');
    // ours → openssl
    writeFileSync(join(work, 'ours.der'), sm2CipherToDer(sm2Encrypt(pair.publicKey, message)));
    const plain = execFileSync('openssl', [
      'pkeyutl',
      '-decrypt',
      '-inkey',
      keyPem,
      '-in',
      join(work, 'ours.der'),
    ]);
    assert.deepEqual(plain, message);
    // openssl → ours
    writeFileSync(join(work, 'm.bin'), message);
    execFileSync('openssl', [
      'pkeyutl',
      '-encrypt',
      '-pubin',
      '-inkey',
      pubPem,
      '-in',
      join(work, 'm.bin'),
      '-out',
      join(work, 'theirs.der'),
    ]);
    const theirs = sm2CipherFromDer(readFileSync(join(work, 'theirs.der')));
    assert.deepEqual(sm2Decrypt(createPrivateKey(readFileSync(keyPem)), theirs), message);
  });
});

describe('SM2 keys and errors', () => {
  it('reads keys from KeyObjects generated by Node, imported, or from raw values', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'SM2' });
    const d = sm2PrivateScalar(ec.privateKey);
    assert.equal(d.length, 32);
    const rebuilt = sm2KeyPairFromScalar(d);
    assert.deepEqual(sm2PublicPoint(rebuilt.publicKey), sm2PublicPoint(ec.publicKey));
    assert.deepEqual(sm2PublicPoint(rebuilt.privateKey), sm2PublicPoint(ec.publicKey));
    assert.deepEqual(
      pointFromSpki(ec.publicKey.export({ type: 'spki', format: 'der' })),
      sm2PublicPoint(ec.publicKey),
    );
    assert.equal(isSm2Key(ec.publicKey), true);
    assert.equal(isSm2Key(rebuilt.privateKey), true);
    assert.equal(isSm2Key(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey), false);
    assert.equal(isSm2Key(generateKeyPairSync('ed25519').publicKey), false);
  });

  it('POSKEY_ERR_SM2_KEY for keys that are not SM2 keys', () => {
    const err = code('POSKEY_ERR_SM2_KEY');
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    assert.throws(() => sm2PublicPoint(p256.publicKey), err);
    assert.throws(() => sm2PrivateScalar(p256.privateKey), err);
    assert.throws(() => sm2PrivateScalar(hex('01')), err, 'short scalar');
    assert.throws(() => sm2PrivateScalar(Buffer.alloc(32)), err, 'zero scalar');
    assert.throws(() => sm2PrivateScalar(p256.publicKey), err, 'public key as private');
    const badPoint = Buffer.from(hex(signVector.publicKey));
    badPoint[64]! ^= 1;
    assert.throws(() => sm2PublicPoint(badPoint), err, 'point off the curve');
    assert.throws(() => sm2PublicPoint(hex(signVector.publicKey).subarray(1)), err, '64 bytes');
    assert.throws(() => sm2Encrypt(badPoint, hex('00')), err);
    assert.throws(() => pointFromSpki(hex('3000')), err);
    assert.throws(() => sm2Spki(badPoint), err);
  });

  it('POSKEY_ERR_SM2_DECRYPT for malformed ciphertexts and the wrong key', () => {
    const err = code('POSKEY_ERR_SM2_DECRYPT');
    const keys = sm2KeyPairFromScalar(hex(encVector.privateKey));
    const ct = hex(encVector.c1! + encVector.c3! + encVector.c2!);
    assert.throws(() => sm2Decrypt(keys.privateKey, ct.subarray(0, 97)), err, 'no C2');
    assert.throws(
      () => sm2Decrypt(keys.privateKey, Buffer.concat([hex('02'), ct.subarray(1)])),
      err,
      'compressed C1',
    );
    const offCurve = Buffer.from(ct);
    offCurve[10]! ^= 1;
    assert.throws(() => sm2Decrypt(keys.privateKey, offCurve), err, 'C1 off the curve');
    assert.throws(() => sm2Decrypt(generateSm2KeyPair().privateKey, ct), err, 'wrong key');
    assert.throws(() => sm2CipherFromDer(hex('3000')), err);
    assert.throws(() => sm2CipherToDer(hex('04')), err);
  });

  it('POSKEY_ERR_LENGTH for an empty plaintext and an oversized ID; POSKEY_ERR_RANDOM for a dead RNG', () => {
    const keys = generateSm2KeyPair();
    assert.throws(() => sm2Encrypt(keys.publicKey, Buffer.alloc(0)), code('POSKEY_ERR_LENGTH'));
    assert.throws(() => sm2Z(keys.publicKey, Buffer.alloc(8192)), code('POSKEY_ERR_LENGTH'));
    assert.throws(
      () => sm2Sign(keys.privateKey, hex('00'), { random: () => Buffer.alloc(32) }),
      code('POSKEY_ERR_RANDOM'),
    );
    assert.throws(
      () => sm2Encrypt(keys.publicKey, hex('00'), { random: () => Buffer.alloc(32, 0xff) }),
      code('POSKEY_ERR_RANDOM'),
    );
  });
});
