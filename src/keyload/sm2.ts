/**
 * SM2 (GB/T 32918 = GM/T 0003-2012) on the recommended 256-bit curve: the digital signature of
 * part 2 with the user-ID value Z, and the public-key encryption of part 4 (ciphertext C1‖C3‖C2,
 * plus the GM/T 0009 ASN.1 `SM2Cipher` form). SM3 (GB/T 32905) comes from node:crypto.
 *
 * Why this exists although Node 20 knows the curve (checked on Node 20.20 / OpenSSL 3.0.19):
 * - `crypto.sign('sm3', m, key)` with a key from `generateKeyPairSync('ec', {namedCurve:'SM2'})`
 *   is plain ECDSA over the SM2 curve, not SM2;
 * - with a key imported from PKCS#8/SPKI it is SM2, but Z is computed over an EMPTY user ID
 *   (ENTL = 0) and Node offers no way to set one, so it rejects the GM/T 0003.5 Annex A vector
 *   signed with the GM/T 0009 default ID "1234567812345678" (see test/keyload/sm2.test.ts);
 * - there is no SM2 encryption (`publicEncrypt` fails on SM2 keys).
 *
 * Secret scalar multiplications (k·G, k·P_B, d_B·C1) run in OpenSSL through `createECDH('SM2')`.
 * ECDH only returns the x coordinate of d·R, while SM2 encryption needs y as well (KDF(x2‖y2),
 * C3 = SM3(x2‖M‖y2)); y is recovered as the one of ±y for which x(Q + S) equals x(d·(R + G)),
 * with S = d·G, which costs one more ECDH and one public-looking point addition in BigInt.
 * Only verification (all-public inputs) multiplies in BigInt here. BigInt arithmetic is not
 * constant time; the signature's s = (1+d)⁻¹(k − r·d) mod n is the one secret-dependent BigInt step.
 */
import {
  createECDH,
  createHash,
  createPrivateKey,
  createPublicKey,
  ECDH,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { constantTimeEqual, zeroize } from '../crypto/bytes.js';
import { PoskeyError } from '../errors.js';
import {
  decodeDer,
  expectChildren,
  integer,
  octets,
  readInteger,
  readOctets,
  readOid,
  seq,
  TAG,
} from './asn1.js';

/** The GM/T 0009-2012 default signer ID, used when the parties agree on nothing else. */
export const SM2_DEFAULT_ID = '1234567812345678';

/** OIDs (GM/T 0006): the SM2 curve, SM2 signature with SM3, SM2 encryption, SM3. */
export const SM2_OID = {
  curve: '1.2.156.10197.1.301',
  encrypt: '1.2.156.10197.1.301.3',
  signWithSm3: '1.2.156.10197.1.501',
  sm3: '1.2.156.10197.1.401',
  ecPublicKey: '1.2.840.10045.2.1',
} as const;

/** A random source: `n` fresh random bytes. Injected only by known-answer tests. */
export type RandomSource = (n: number) => Uint8Array;

/** A private key: a KeyObject holding an SM2 key, or the 32-byte scalar d. */
export type Sm2PrivateKeyInput = KeyObject | Uint8Array;
/** A public key: a KeyObject, or the 65-byte uncompressed point 04‖x‖y. */
export type Sm2PublicKeyInput = KeyObject | Uint8Array;

// Recommended curve parameters, GM/T 0003.5-2012.
const P = 0xfffffffeffffffffffffffffffffffffffffffff00000000ffffffffffffffffn;
const A = P - 3n;
const B = 0x28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93n;
const N = 0xfffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123n;
const GX = 0x32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7n;
const GY = 0xbc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0n;

const keyError = (reason: string, field: string) => new PoskeyError('POSKEY_ERR_SM2_KEY', reason, { field });
const decryptError = (reason: string) =>
  new PoskeyError('POSKEY_ERR_SM2_DECRYPT', reason, { field: 'ciphertext' });

// ---------------------------------------------------------------------------------------------
// Field and curve arithmetic (public values only, see the module comment)
// ---------------------------------------------------------------------------------------------

interface Affine {
  x: bigint;
  y: bigint;
}
type Jacobian = [bigint, bigint, bigint];

const mod = (x: bigint, m = P): bigint => {
  const r = x % m;
  return r < 0n ? r + m : r;
};

function invert(x: bigint, m: bigint): bigint {
  let [a, b, u, v] = [mod(x, m), m, 1n, 0n];
  while (b !== 0n) {
    const q = a / b;
    [a, b] = [b, a - q * b];
    [u, v] = [v, u - q * v];
  }
  if (a !== 1n) throw new PoskeyError('POSKEY_ERR_INTERNAL', 'value is not invertible', { field: 'sm2' });
  return mod(u, m);
}

const G: Affine = { x: GX, y: GY };

function onCurve(p: Affine): boolean {
  return (
    p.x >= 0n && p.x < P && p.y >= 0n && p.y < P && mod(p.y * p.y - (p.x * p.x * p.x + A * p.x + B)) === 0n
  );
}

function jDouble([x, y, z]: Jacobian): Jacobian {
  if (z === 0n || y === 0n) return [1n, 1n, 0n];
  const delta = mod(z * z);
  const gamma = mod(y * y);
  const beta = mod(x * gamma);
  const alpha = mod(3n * (x - delta) * (x + delta));
  const x3 = mod(alpha * alpha - 8n * beta);
  const z3 = mod((y + z) * (y + z) - gamma - delta);
  const y3 = mod(alpha * (4n * beta - x3) - 8n * gamma * gamma);
  return [x3, y3, z3];
}

function jAdd(p: Jacobian, q: Jacobian): Jacobian {
  const [x1, y1, z1] = p;
  const [x2, y2, z2] = q;
  if (z1 === 0n) return q;
  if (z2 === 0n) return p;
  const z1z1 = mod(z1 * z1);
  const z2z2 = mod(z2 * z2);
  const u1 = mod(x1 * z2z2);
  const u2 = mod(x2 * z1z1);
  const s1 = mod(y1 * z2 * z2z2);
  const s2 = mod(y2 * z1 * z1z1);
  if (u1 === u2) return s1 === s2 ? jDouble(p) : [1n, 1n, 0n];
  const h = mod(u2 - u1);
  const r = mod(s2 - s1);
  const h2 = mod(h * h);
  const h3 = mod(h * h2);
  const u1h2 = mod(u1 * h2);
  const x3 = mod(r * r - h3 - 2n * u1h2);
  const y3 = mod(r * (u1h2 - x3) - s1 * h3);
  return [x3, y3, mod(h * z1 * z2)];
}

function toAffine([x, y, z]: Jacobian): Affine | null {
  if (z === 0n) return null;
  const zi = invert(z, P);
  const zi2 = mod(zi * zi);
  return { x: mod(x * zi2), y: mod(y * zi2 * zi) };
}

const toJ = (p: Affine): Jacobian => [p.x, p.y, 1n];

/** u1·G + u2·Q (Shamir's trick); null for the point at infinity. Public inputs only. */
function doubleMultiply(u1: bigint, u2: bigint, q: Affine): Affine | null {
  const gq = jAdd(toJ(G), toJ(q));
  let acc: Jacobian = [1n, 1n, 0n];
  const bits = Math.max(u1.toString(2).length, u2.toString(2).length);
  for (let i = bits - 1; i >= 0; i--) {
    acc = jDouble(acc);
    const b1 = (u1 >> BigInt(i)) & 1n;
    const b2 = (u2 >> BigInt(i)) & 1n;
    if (b1 && b2) acc = jAdd(acc, gq);
    else if (b1) acc = jAdd(acc, toJ(G));
    else if (b2) acc = jAdd(acc, toJ(q));
  }
  return toAffine(acc);
}

// ---------------------------------------------------------------------------------------------
// Encodings and keys
// ---------------------------------------------------------------------------------------------

const toBigInt = (b: Uint8Array): bigint =>
  b.length === 0 ? 0n : BigInt(`0x${Buffer.from(b).toString('hex')}`);

function to32(n: bigint): Buffer {
  return Buffer.from(n.toString(16).padStart(64, '0'), 'hex');
}

function encodePoint(p: Affine): Buffer {
  return Buffer.concat([Buffer.from([4]), to32(p.x), to32(p.y)]);
}

function decodePoint(bytes: Uint8Array, field: string): Affine {
  if (bytes.length !== 65 || bytes[0] !== 4) throw keyError('point must be 65 bytes 04‖x‖y', field);
  const p = { x: toBigInt(bytes.subarray(1, 33)), y: toBigInt(bytes.subarray(33)) };
  // The cofactor is 1, so any point on the curve other than infinity is in the group of order n.
  if (!onCurve(p)) throw keyError('point is not on the SM2 curve', field);
  return p;
}

/** The 32-byte private scalar d of an SM2 key (from PKCS#8 when given a KeyObject). */
export function sm2PrivateScalar(key: Sm2PrivateKeyInput, field = 'privateKey'): Buffer {
  let d: Buffer;
  if (key instanceof Uint8Array) {
    if (key.length !== 32) throw keyError('an SM2 private key is 32 bytes', field);
    d = Buffer.from(key);
  } else {
    if (key?.type !== 'private') throw keyError('expected an SM2 private KeyObject', field);
    d = scalarFromPkcs8(key.export({ type: 'pkcs8', format: 'der' }), field);
  }
  const n = toBigInt(d);
  if (n < 1n || n > N - 2n) throw keyError('private scalar outside [1, n-2]', field);
  return d;
}

function scalarFromPkcs8(der: Buffer, field: string): Buffer {
  try {
    const [, alg, inner] = expectChildren(decodeDer(der, field), TAG.SEQUENCE, field, 3, 4);
    const [algOid, curve] = expectChildren(alg, TAG.SEQUENCE, field, 2);
    if (readOid(algOid, field) !== SM2_OID.ecPublicKey || readOid(curve, field) !== SM2_OID.curve) {
      throw keyError('not an SM2 key', field);
    }
    const ecKey = expectChildren(decodeDer(readOctets(inner, field), field), TAG.SEQUENCE, field, 2, 4);
    const d = readOctets(ecKey[1], field);
    return Buffer.concat([Buffer.alloc(Math.max(0, 32 - d.length)), d]);
  } catch (e) {
    if (e instanceof PoskeyError && e.code === 'POSKEY_ERR_SM2_KEY') throw e;
    throw keyError('not an SM2 private key', field);
  }
}

/** The 65-byte uncompressed public point 04‖x‖y (from SPKI when given a KeyObject). */
export function sm2PublicPoint(key: Sm2PublicKeyInput, field = 'publicKey'): Buffer {
  if (key instanceof Uint8Array) {
    decodePoint(key, field);
    return Buffer.from(key);
  }
  if (key?.type !== 'public' && key?.type !== 'private') throw keyError('expected an SM2 KeyObject', field);
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const spki = pub.export({ type: 'spki', format: 'der' });
  return pointFromSpki(spki, field);
}

/** The point inside an SM2 SubjectPublicKeyInfo (DER). */
export function pointFromSpki(spki: Uint8Array, field = 'publicKey'): Buffer {
  let point: Buffer;
  try {
    const [alg, bits] = expectChildren(decodeDer(spki, field), TAG.SEQUENCE, field, 2);
    const [algOid, curve] = expectChildren(alg, TAG.SEQUENCE, field, 2);
    if (readOid(algOid, field) !== SM2_OID.ecPublicKey || readOid(curve, field) !== SM2_OID.curve) {
      throw keyError('not an SM2 key', field);
    }
    const v = bits!.value;
    if (bits!.tag !== TAG.BIT_STRING || v[0] !== 0) throw keyError('malformed public key bits', field);
    point = Buffer.from(v.subarray(1));
  } catch (e) {
    if (e instanceof PoskeyError && e.code === 'POSKEY_ERR_SM2_KEY') throw e;
    throw keyError('not an SM2 public key', field);
  }
  decodePoint(point, field);
  return point;
}

/** SubjectPublicKeyInfo (DER) for an SM2 point: id-ecPublicKey with the SM2 curve OID (GM/T 0015). */
export function sm2Spki(point: Uint8Array): Buffer {
  const spkiPrefix = Buffer.from('3059301306072a8648ce3d020106082a811ccf5501822d034200', 'hex');
  decodePoint(point, 'publicKey');
  return Buffer.concat([spkiPrefix, point]);
}

/** A fresh SM2 key pair as KeyObjects (PKCS#8 / SPKI exportable). */
export function generateSm2KeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  for (;;) {
    const ecdh = createECDH('SM2');
    ecdh.generateKeys();
    // getPrivateKey drops leading zero bytes; d = n-1 is not a valid SM2 key (1 + d must be invertible).
    const d = to32(toBigInt(ecdh.getPrivateKey()));
    if (toBigInt(d) <= N - 2n) return sm2KeyPairFromScalar(d);
  }
}

/** KeyObjects for a known scalar d (tests, imports). */
export function sm2KeyPairFromScalar(d: Uint8Array): { privateKey: KeyObject; publicKey: KeyObject } {
  const scalar = sm2PrivateScalar(d, 'privateKey');
  const ecdh = createECDH('SM2');
  ecdh.setPrivateKey(scalar);
  const point = ecdh.getPublicKey();
  // PKCS#8 { 0, {ecPublicKey, sm2}, OCTET STRING ECPrivateKey { 1, d, [1] point } }
  const ecPrivateKey = seq(
    integer(1),
    octets(scalar),
    Buffer.concat([Buffer.from([0xa1, 0x44, 0x03, 0x42, 0x00]), point]),
  );
  const pkcs8 = seq(
    integer(0),
    Buffer.from('301306072a8648ce3d020106082a811ccf5501822d', 'hex'),
    octets(ecPrivateKey),
  );
  zeroize(scalar);
  return {
    privateKey: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: sm2Spki(point), format: 'der', type: 'spki' }),
  };
}

/** True when `key` is an SM2 KeyObject (Node reports SM2 keys as 'ec' or, once imported, as no type). */
export function isSm2Key(key: KeyObject): boolean {
  if (key.asymmetricKeyType === 'rsa') return false;
  try {
    sm2PublicPoint(key);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// SM3, Z value, KDF
// ---------------------------------------------------------------------------------------------

/** SM3 hash (GB/T 32905). */
export function sm3(...parts: Uint8Array[]): Buffer {
  const h = createHash('sm3');
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA) (GM/T 0003.2 §5.5); ENTL is the ID length in bits.
 */
export function sm2Z(publicKey: Sm2PublicKeyInput, id: string | Uint8Array = SM2_DEFAULT_ID): Buffer {
  const point = sm2PublicPoint(publicKey);
  const idBytes = typeof id === 'string' ? Buffer.from(id, 'utf8') : Buffer.from(id);
  if (idBytes.length > 8191) {
    throw new PoskeyError('POSKEY_ERR_LENGTH', 'user ID longer than 8191 bytes', { field: 'id' });
  }
  const entl = Buffer.alloc(2);
  entl.writeUInt16BE(idBytes.length * 8);
  return sm3(entl, idBytes, to32(A), to32(B), to32(GX), to32(GY), point.subarray(1));
}

/** KDF(Z, klen) of GM/T 0003.4 §5.4.3 with SM3: SM3(Z ‖ ct) for ct = 1, 2, … (32-bit big-endian). */
export function sm3Kdf(z: Uint8Array, length: number): Buffer {
  const blocks: Buffer[] = [];
  const ct = Buffer.alloc(4);
  for (let i = 1; blocks.length * 32 < length; i++) {
    ct.writeUInt32BE(i);
    blocks.push(sm3(z, ct));
  }
  return Buffer.concat(blocks).subarray(0, length);
}

function randomScalar(random: RandomSource): bigint {
  for (let i = 0; i < 64; i++) {
    const k = toBigInt(random(32));
    if (k >= 1n && k < N) return k;
  }
  throw new PoskeyError('POSKEY_ERR_RANDOM', 'random source produced no usable SM2 scalar', {
    field: 'random',
  });
}

// ---------------------------------------------------------------------------------------------
// Signature (GM/T 0003.2)
// ---------------------------------------------------------------------------------------------

export interface Sm2SignOptions {
  /** Signer ID hashed into Z; default "1234567812345678". */
  id?: string | Uint8Array;
  /** Source of the per-signature k (known-answer tests only). */
  random?: RandomSource;
}

/** The public point d·G, computed by OpenSSL. */
function publicOf(d: Buffer): Buffer {
  const ecdh = createECDH('SM2');
  ecdh.setPrivateKey(d);
  return ecdh.getPublicKey();
}

/**
 * SM2 signature of `message` (e = SM3(Z ‖ M)); returns DER SEQUENCE { r INTEGER, s INTEGER }.
 * @throws POSKEY_ERR_SM2_KEY for a key that is not SM2
 */
export function sm2Sign(
  privateKey: Sm2PrivateKeyInput,
  message: Uint8Array,
  opts: Sm2SignOptions = {},
): Buffer {
  const dBytes = sm2PrivateScalar(privateKey);
  try {
    const d = toBigInt(dBytes);
    const e = toBigInt(sm3(sm2Z(publicOf(dBytes), opts.id), message));
    const random = opts.random ?? randomBytes;
    const dInv = invert(1n + d, N);
    for (;;) {
      const k = randomScalar(random);
      const ecdh = createECDH('SM2');
      ecdh.setPrivateKey(to32(k));
      const x1 = toBigInt(ecdh.getPublicKey().subarray(1, 33));
      const r = mod(e + x1, N);
      if (r === 0n || r + k === N) continue;
      const s = mod(dInv * (k - r * d), N);
      if (s === 0n) continue;
      return seq(integer(r), integer(s));
    }
  } finally {
    zeroize(dBytes);
  }
}

/** Parses DER SEQUENCE { r, s }; null when malformed or out of [1, n-1]. */
function parseSignature(signature: Uint8Array): { r: bigint; s: bigint } | null {
  try {
    const [rn, sn] = expectChildren(decodeDer(signature, 'signature'), TAG.SEQUENCE, 'signature', 2);
    const r = readInteger(rn, 'signature.r');
    const s = readInteger(sn, 'signature.s');
    if (r < 1n || r >= N || s < 1n || s >= N) return null;
    return { r, s };
  } catch {
    return null;
  }
}

/** Verifies an SM2 signature (DER r, s) over `message` with Z for `opts.id`. Never throws on bad signatures. */
export function sm2Verify(
  publicKey: Sm2PublicKeyInput,
  message: Uint8Array,
  signature: Uint8Array,
  opts: { id?: string | Uint8Array } = {},
): boolean {
  const point = sm2PublicPoint(publicKey);
  const rs = parseSignature(signature);
  if (rs === null) return false;
  const t = mod(rs.r + rs.s, N);
  if (t === 0n) return false;
  const e = toBigInt(sm3(sm2Z(point, opts.id), message));
  const x1y1 = doubleMultiply(rs.s, t, decodePoint(point, 'publicKey'));
  if (x1y1 === null) return false;
  return mod(e + x1y1.x, N) === rs.r;
}

// ---------------------------------------------------------------------------------------------
// Encryption (GM/T 0003.4)
// ---------------------------------------------------------------------------------------------

/** Affine R + S for public-looking points; null at infinity. */
function addPoints(r: Affine, s: Affine): Affine | null {
  return toAffine(jAdd(toJ(r), toJ(s)));
}

/**
 * The full point d·R using OpenSSL for the multiplications (see the module comment):
 * x from ECDH(d, R); y the root for which x(Q + d·G) = x(ECDH(d, R + G)).
 */
function multiplyFull(d: Buffer, r: Affine): Affine {
  const ecdh = createECDH('SM2');
  ecdh.setPrivateKey(d);
  const s = decodePoint(ecdh.getPublicKey(), 'publicKey');
  const rg = addPoints(r, G);
  if (rg === null) throw decryptError('degenerate point');
  const x = ecdh.computeSecret(encodePoint(r));
  const xCheck = toBigInt(ecdh.computeSecret(encodePoint(rg)));
  const lifted = decodePoint(
    ECDH.convertKey(
      Buffer.concat([Buffer.from([2]), x]),
      'SM2',
      undefined,
      undefined,
      'uncompressed',
    ) as Buffer,
    'point',
  );
  zeroize(x);
  for (const candidate of [lifted, { x: lifted.x, y: mod(-lifted.y) }]) {
    const sum = addPoints(candidate, s);
    if (sum !== null && sum.x === xCheck) return candidate;
  }
  throw new PoskeyError('POSKEY_ERR_INTERNAL', 'could not recover the shared point', { field: 'sm2' });
}

export interface Sm2EncryptOptions {
  /** Source of the ephemeral k (known-answer tests only). */
  random?: RandomSource;
}

/**
 * SM2 encryption; returns C1 ‖ C3 ‖ C2 = (04 ‖ x1 ‖ y1) ‖ SM3(x2 ‖ M ‖ y2) ‖ (M ⊕ KDF(x2 ‖ y2)).
 * @throws POSKEY_ERR_SM2_KEY for an invalid public key, POSKEY_ERR_LENGTH for an empty message
 */
export function sm2Encrypt(
  publicKey: Sm2PublicKeyInput,
  plaintext: Uint8Array,
  opts: Sm2EncryptOptions = {},
): Buffer {
  const pb = decodePoint(sm2PublicPoint(publicKey), 'publicKey');
  if (!(plaintext instanceof Uint8Array) || plaintext.length === 0) {
    throw new PoskeyError('POSKEY_ERR_LENGTH', 'nothing to encrypt', { field: 'plaintext' });
  }
  const random = opts.random ?? randomBytes;
  for (;;) {
    const k = to32(randomScalar(random));
    const ecdh = createECDH('SM2');
    ecdh.setPrivateKey(k);
    const c1 = ecdh.getPublicKey();
    const q = multiplyFull(k, pb);
    const x2y2 = Buffer.concat([to32(q.x), to32(q.y)]);
    const t = sm3Kdf(x2y2, plaintext.length);
    zeroize(k);
    if (t.every((b) => b === 0)) continue;
    const c2 = Buffer.alloc(plaintext.length);
    for (let i = 0; i < c2.length; i++) c2[i] = plaintext[i]! ^ t[i]!;
    const c3 = sm3(x2y2.subarray(0, 32), plaintext, x2y2.subarray(32));
    zeroize(t, x2y2);
    return Buffer.concat([c1, c3, c2]);
  }
}

/**
 * SM2 decryption of C1 ‖ C3 ‖ C2.
 * @throws POSKEY_ERR_SM2_DECRYPT for a malformed ciphertext or a failed C3 check (wrong key or tampered)
 */
export function sm2Decrypt(privateKey: Sm2PrivateKeyInput, ciphertext: Uint8Array): Buffer {
  if (!(ciphertext instanceof Uint8Array) || ciphertext.length < 65 + 32 + 1 || ciphertext[0] !== 4) {
    throw decryptError('not an SM2 ciphertext C1‖C3‖C2');
  }
  let c1: Affine;
  try {
    c1 = decodePoint(ciphertext.subarray(0, 65), 'ciphertext');
  } catch {
    throw decryptError('C1 is not a point on the curve');
  }
  const c3 = ciphertext.subarray(65, 97);
  const c2 = ciphertext.subarray(97);
  const d = sm2PrivateScalar(privateKey);
  try {
    const q = multiplyFull(d, c1);
    const x2y2 = Buffer.concat([to32(q.x), to32(q.y)]);
    const t = sm3Kdf(x2y2, c2.length);
    if (t.every((b) => b === 0)) throw decryptError('KDF output is all zero');
    const m = Buffer.alloc(c2.length);
    for (let i = 0; i < m.length; i++) m[i] = c2[i]! ^ t[i]!;
    const u = sm3(x2y2.subarray(0, 32), m, x2y2.subarray(32));
    zeroize(t, x2y2);
    if (!constantTimeEqual(u, c3)) {
      zeroize(m);
      throw decryptError('C3 check failed (wrong key or altered ciphertext)');
    }
    return m;
  } finally {
    zeroize(d);
  }
}

/** C1‖C3‖C2 → GM/T 0009 `SM2Cipher ::= SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING, cipherText OCTET STRING }`. */
export function sm2CipherToDer(c1c3c2: Uint8Array): Buffer {
  if (c1c3c2.length < 98 || c1c3c2[0] !== 4) throw decryptError('not an SM2 ciphertext C1‖C3‖C2');
  return seq(
    integer(c1c3c2.subarray(1, 33)),
    integer(c1c3c2.subarray(33, 65)),
    octets(c1c3c2.subarray(65, 97)),
    octets(c1c3c2.subarray(97)),
  );
}

/** GM/T 0009 `SM2Cipher` DER → C1‖C3‖C2. @throws POSKEY_ERR_SM2_DECRYPT when malformed */
export function sm2CipherFromDer(der: Uint8Array): Buffer {
  try {
    const [x, y, hash, text] = expectChildren(decodeDer(der, 'ciphertext'), TAG.SEQUENCE, 'ciphertext', 4);
    const xi = readInteger(x, 'x');
    const yi = readInteger(y, 'y');
    const h = readOctets(hash, 'hash');
    const c2 = readOctets(text, 'cipherText');
    if (xi < 0n || yi < 0n || xi >= P || yi >= P || h.length !== 32 || c2.length === 0)
      throw new Error('range');
    return Buffer.concat([Buffer.from([4]), to32(xi), to32(yi), h, c2]);
  } catch {
    throw decryptError('not a GM/T 0009 SM2Cipher');
  }
}
