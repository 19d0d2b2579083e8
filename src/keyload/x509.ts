/**
 * X.509 v3 certificates (RFC 5280) for remote key loading: build and sign (RSA-2048+ with
 * sha256WithRSAEncryption, SM2 with SM2-with-SM3 per GM/T 0015), parse, and verify signatures.
 * Node's `X509Certificate` parses and verifies but cannot create certificates, hence this module.
 *
 * SM2 certificate signatures hash Z for the GM/T 0009 default ID "1234567812345678". OpenSSL
 * 3.0 (and so Node's `X509Certificate.verify`) uses an empty ID unless told otherwise: check our
 * SM2 certificates with `openssl verify -vfyopt distid:1234567812345678`.
 */
import { createHash, createPublicKey, type KeyObject, randomBytes, sign, verify } from 'node:crypto';
import { PoskeyError } from '../errors.js';
import {
  type Asn1,
  algorithmId,
  bitString,
  bool,
  decodeDer,
  expectChildren,
  expectTag,
  explicit,
  integer,
  nullValue,
  octets,
  oid,
  printable,
  readAlgorithmId,
  readBitString,
  readBoolean,
  readOctets,
  readOid,
  readSmallInt,
  readString,
  readTime,
  seq,
  set,
  TAG,
  time,
  tlv,
  utf8,
} from './asn1.js';
import { isSm2Key, pointFromSpki, SM2_OID, sm2Sign, sm2Verify } from './sm2.js';

/** Public-key algorithms poskey issues and accepts. */
export type KeyAlgorithm = 'rsa' | 'sm2';

export const X509_OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sm2WithSm3: SM2_OID.signWithSm3,
  ecPublicKey: SM2_OID.ecPublicKey,
  sm2Curve: SM2_OID.curve,
  commonName: '2.5.4.3',
  serialNumber: '2.5.4.5',
  country: '2.5.4.6',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
} as const;

/** The distinguished-name attributes poskey writes: CN, O, OU (the KDH/KRD role), SERIALNUMBER, C. */
export interface NameInput {
  cn: string;
  o?: string | undefined;
  ou?: string | undefined;
  /** X.520 serialNumber: the device serial number (PrintableString). */
  serialNumber?: string | undefined;
  c?: string | undefined;
}

/** A parsed Name: the DER (compared byte for byte when chaining) and the attributes poskey knows. */
export interface Name {
  der: Buffer;
  cn?: string;
  o?: string;
  ou?: string;
  serialNumber?: string;
  c?: string;
  /** RFC 4514-style text, most significant RDN first (C, O, OU, CN, SERIALNUMBER order as encoded). */
  text: string;
}

export const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
] as const;
export type KeyUsage = (typeof KEY_USAGE_BITS)[number];

/** A parsed certificate. Buffers are views into `der`. */
export interface Certificate {
  der: Buffer;
  /** The TBSCertificate encoding the signature covers. */
  tbs: Buffer;
  /** Serial number contents octets (as encoded, two's complement). */
  serialNumber: Buffer;
  issuer: Name;
  subject: Name;
  notBefore: Date;
  notAfter: Date;
  /** SubjectPublicKeyInfo DER. */
  spki: Buffer;
  keyAlgorithm: KeyAlgorithm;
  publicKey: KeyObject;
  signatureAlgorithm: string;
  signature: Buffer;
  basicConstraints: { ca: boolean; pathLength?: number } | undefined;
  keyUsage: KeyUsage[] | undefined;
  subjectKeyId: Buffer | undefined;
  authorityKeyId: Buffer | undefined;
  /** SHA-256 of the DER, upper-case hex. */
  fingerprint: string;
}

const formatError = (reason: string, field: string) =>
  new PoskeyError('POSKEY_ERR_CERT_FORMAT', reason, { field });
const inputError = (reason: string, field: string) =>
  new PoskeyError('POSKEY_ERR_CERT_INPUT', reason, { field });

// ---------------------------------------------------------------------------------------------
// Keys and signatures
// ---------------------------------------------------------------------------------------------

/**
 * 'rsa' or 'sm2' for a KeyObject (public or private).
 * @throws POSKEY_ERR_KEY_ALGORITHM for anything else (EC keys on other curves, Ed25519, …)
 */
export function keyAlgorithmOf(key: KeyObject, field = 'key'): KeyAlgorithm {
  if (key === null || typeof key !== 'object' || (key.type !== 'public' && key.type !== 'private')) {
    throw new PoskeyError('POSKEY_ERR_KEY_ALGORITHM', 'expected an asymmetric KeyObject', { field });
  }
  if (key.asymmetricKeyType === 'rsa') return 'rsa';
  if (isSm2Key(key)) return 'sm2';
  throw new PoskeyError(
    'POSKEY_ERR_KEY_ALGORITHM',
    `key type ${key.asymmetricKeyType ?? '?'} is neither RSA nor SM2`,
    {
      field,
    },
  );
}

/** SHA256withRSA (PKCS#1 v1.5) or SM2 (SM3, default ID) signature over `data`. */
export function signWith(privateKey: KeyObject, data: Uint8Array): Buffer {
  return keyAlgorithmOf(privateKey, 'privateKey') === 'rsa'
    ? sign('sha256', data, privateKey)
    : sm2Sign(privateKey, data);
}

/** The counterpart of `signWith`; false (never a throw) for a bad signature. */
export function verifyWith(publicKey: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  if (keyAlgorithmOf(publicKey, 'publicKey') === 'sm2') return sm2Verify(publicKey, data, signature);
  try {
    return verify('sha256', data, publicKey, signature);
  } catch {
    return false;
  }
}

function signatureAlgorithmFor(alg: KeyAlgorithm): Buffer {
  return alg === 'rsa' ? algorithmId(X509_OID.sha256WithRsa, nullValue()) : algorithmId(X509_OID.sm2WithSm3);
}

function spkiOf(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' });
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Uint8Array): Buffer {
  const [, bits] = expectChildren(decodeDer(spki, 'spki'), TAG.SEQUENCE, 'spki', 2);
  return createHash('sha1').update(readBitString(bits, 'spki.subjectPublicKey')).digest();
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

const NAME_FIELDS: readonly { key: keyof NameInput; oid: string; label: string; printable: boolean }[] = [
  { key: 'c', oid: X509_OID.country, label: 'C', printable: true },
  { key: 'o', oid: X509_OID.organization, label: 'O', printable: false },
  { key: 'ou', oid: X509_OID.organizationalUnit, label: 'OU', printable: false },
  { key: 'cn', oid: X509_OID.commonName, label: 'CN', printable: false },
  { key: 'serialNumber', oid: X509_OID.serialNumber, label: 'SERIALNUMBER', printable: true },
];

/** Encodes a Name: one attribute per RDN in C, O, OU, CN, SERIALNUMBER order. */
export function encodeName(name: NameInput): Buffer {
  if (typeof name?.cn !== 'string' || name.cn.length === 0 || name.cn.length > 64) {
    throw inputError('common name must be 1-64 characters', 'subject.cn');
  }
  const rdns: Buffer[] = [];
  for (const f of NAME_FIELDS) {
    const value = name[f.key];
    if (value === undefined) continue;
    if (typeof value !== 'string' || value.length === 0 || value.length > 64) {
      throw inputError(`${f.label} must be 1-64 characters`, `subject.${f.key}`);
    }
    if (f.key === 'c' && !/^[A-Z]{2}$/.test(value))
      throw inputError('country must be two capital letters', 'subject.c');
    let encoded: Buffer;
    try {
      encoded = f.printable ? printable(value) : utf8(value);
    } catch {
      throw inputError(`${f.label} has characters outside PrintableString`, `subject.${f.key}`);
    }
    rdns.push(set(seq(oid(f.oid), encoded)));
  }
  return seq(...rdns);
}

/** Parses a Name; unknown attribute types are kept in `text` by OID. */
export function parseName(node: Asn1 | undefined, field: string): Name {
  const rdns = expectTag(node, TAG.SEQUENCE, field).children;
  const name: Name = { der: Buffer.from(node!.der), text: '' };
  const parts: string[] = [];
  for (const [i, rdn] of rdns.entries()) {
    for (const atv of expectTag(rdn, TAG.SET, `${field}[${i}]`).children) {
      const [type, value] = expectChildren(atv, TAG.SEQUENCE, `${field}[${i}]`, 2);
      const typeOid = readOid(type, `${field}[${i}].type`);
      const text = readString(value, `${field}[${i}].value`);
      const known = NAME_FIELDS.find((f) => f.oid === typeOid);
      if (known) (name as unknown as Record<string, string>)[known.key] = text;
      parts.push(`${known?.label ?? typeOid}=${text}`);
    }
  }
  name.text = parts.join(', ');
  return name;
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

export interface CertificateSpec {
  subject: NameInput;
  /** The subject's public key (a private KeyObject is accepted; only its public half is used). */
  publicKey: KeyObject;
  /** Certificate serial number bytes; default 16 random bytes (positive, non-zero). */
  serialNumber?: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  keyUsage: readonly KeyUsage[];
  /** Present for a CA certificate: basicConstraints cA = TRUE with an optional path length. */
  ca?: { pathLength?: number };
  /** The issuer; absent for a self-signed certificate (then `selfSignKey` signs it). */
  issuer?: { cert: Certificate; privateKey: KeyObject };
  /** The subject's own private key, for a self-signed (root) certificate. */
  selfSignKey?: KeyObject;
}

function extension(extnId: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(extnId), bool(true), octets(value)) : seq(oid(extnId), octets(value));
}

/** keyUsage as a DER named-bit BIT STRING (trailing zero bits dropped). */
function keyUsageBits(usages: readonly KeyUsage[]): Buffer {
  let mask = 0;
  for (const u of usages) {
    const bit = KEY_USAGE_BITS.indexOf(u);
    if (bit < 0) throw inputError(`unknown key usage '${String(u)}'`, 'keyUsage');
    mask |= 0x80 >> bit;
  }
  if (mask === 0) throw inputError('at least one key usage is required', 'keyUsage');
  let unused = 0;
  while (((mask >> unused) & 1) === 0) unused++;
  return tlv(TAG.BIT_STRING, Buffer.from([unused, mask]));
}

function randomSerial(): Buffer {
  const s = randomBytes(16);
  s[0] = (s[0]! & 0x7f) | 0x01;
  return s;
}

function checkValidity(notBefore: Date, notAfter: Date): void {
  for (const [d, f] of [
    [notBefore, 'notBefore'],
    [notAfter, 'notAfter'],
  ] as const) {
    if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw inputError('must be a valid Date', f);
  }
  if (notAfter.getTime() <= notBefore.getTime())
    throw inputError('notAfter must be after notBefore', 'notAfter');
}

/**
 * Builds and signs a certificate; returns its DER.
 * @throws POSKEY_ERR_CERT_INPUT for bad names, dates, usages or an RSA key under 2048 bits;
 *   POSKEY_ERR_KEY_ALGORITHM for keys that are neither RSA nor SM2
 */
export function buildCertificate(spec: CertificateSpec): Buffer {
  const subjectAlg = keyAlgorithmOf(spec.publicKey, 'publicKey');
  if (subjectAlg === 'rsa' && (spec.publicKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw inputError('RSA keys must be at least 2048 bits', 'publicKey');
  }
  checkValidity(spec.notBefore, spec.notAfter);
  const signer = spec.issuer?.privateKey ?? spec.selfSignKey;
  if (signer === undefined) throw inputError('need an issuer or a self-signing key', 'issuer');
  const signerAlg = keyAlgorithmOf(signer, 'issuer.privateKey');
  if (spec.issuer !== undefined && spec.issuer.cert.keyAlgorithm !== signerAlg) {
    throw inputError('issuer key does not match the issuer certificate', 'issuer.privateKey');
  }
  const serial = spec.serialNumber === undefined ? randomSerial() : Buffer.from(spec.serialNumber);
  if (serial.length === 0 || serial.length > 20 || serial.every((b) => b === 0)) {
    throw inputError('serial number must be 1-20 bytes and not zero', 'serialNumber');
  }
  const spki = spkiOf(spec.publicKey);
  const subject = encodeName(spec.subject);
  const ski = keyIdentifier(spki);
  const issuerName = spec.issuer ? spec.issuer.cert.subject.der : subject;
  const aki = spec.issuer ? (spec.issuer.cert.subjectKeyId ?? keyIdentifier(spec.issuer.cert.spki)) : ski;
  const pathLen = spec.ca?.pathLength;
  if (pathLen !== undefined && (!Number.isInteger(pathLen) || pathLen < 0 || pathLen > 10)) {
    throw inputError('path length must be 0-10', 'ca.pathLength');
  }
  const basic = spec.ca ? seq(bool(true), ...(pathLen === undefined ? [] : [integer(pathLen)])) : seq();
  const extensions = seq(
    extension(X509_OID.basicConstraints, true, basic),
    extension(X509_OID.keyUsage, true, keyUsageBits(spec.keyUsage)),
    extension(X509_OID.subjectKeyIdentifier, false, octets(ski)),
    extension(X509_OID.authorityKeyIdentifier, false, seq(tlv(0x80, aki))),
  );
  const sigAlg = signatureAlgorithmFor(signerAlg);
  const tbs = seq(
    explicit(0, integer(2)),
    integer(serial),
    sigAlg,
    issuerName,
    seq(time(spec.notBefore), time(spec.notAfter)),
    subject,
    spki,
    explicit(3, extensions),
  );
  return seq(tbs, sigAlg, bitString(signWith(signer, tbs)));
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

function keyAlgorithmOfSpki(spki: Asn1): KeyAlgorithm {
  const { oid: algOid, params } = readAlgorithmId(spki.children[0], 'subjectPublicKeyInfo.algorithm');
  if (algOid === X509_OID.rsaEncryption) return 'rsa';
  if (algOid === X509_OID.ecPublicKey && params && readOid(params, 'curve') === X509_OID.sm2Curve) {
    try {
      pointFromSpki(spki.der, 'subjectPublicKeyInfo');
    } catch (e) {
      throw new PoskeyError('POSKEY_ERR_CERT_FORMAT', 'invalid SM2 public key', {
        field: 'subjectPublicKeyInfo',
        cause: e,
      });
    }
    return 'sm2';
  }
  throw formatError(`unsupported public key algorithm ${algOid}`, 'subjectPublicKeyInfo');
}

interface Extensions {
  basicConstraints: Certificate['basicConstraints'];
  keyUsage: KeyUsage[] | undefined;
  subjectKeyId: Buffer | undefined;
  authorityKeyId: Buffer | undefined;
}

function parseKeyUsage(value: Buffer): KeyUsage[] {
  const bits = decodeDer(value, 'keyUsage');
  if (bits.tag !== TAG.BIT_STRING || bits.value.length < 2)
    throw formatError('malformed keyUsage', 'keyUsage');
  const out: KeyUsage[] = [];
  KEY_USAGE_BITS.forEach((u, i) => {
    if ((bits.value[1 + (i >> 3)]! & (0x80 >> (i & 7))) !== 0) out.push(u);
  });
  return out;
}

function parseExtensions(node: Asn1 | undefined): Extensions {
  const out: Extensions = {
    basicConstraints: undefined,
    keyUsage: undefined,
    subjectKeyId: undefined,
    authorityKeyId: undefined,
  };
  if (node === undefined) return out;
  const list = expectChildren(node, 0xa3, 'extensions', 1)[0];
  const seen = new Set<string>();
  for (const [i, ext] of expectTag(list, TAG.SEQUENCE, 'extensions').children.entries()) {
    const f = `extensions[${i}]`;
    const parts = expectChildren(ext, TAG.SEQUENCE, f, 2, 3);
    const id = readOid(parts[0], `${f}.extnID`);
    const critical = parts.length === 3 ? readBoolean(parts[1], `${f}.critical`) : false;
    const value = readOctets(parts[parts.length - 1], `${f}.extnValue`);
    if (seen.has(id)) throw formatError(`extension ${id} appears twice`, f);
    seen.add(id);
    switch (id) {
      case X509_OID.basicConstraints: {
        const bc = expectChildren(decodeDer(value, f), TAG.SEQUENCE, f, 0, 2);
        const ca = bc[0]?.tag === TAG.BOOLEAN ? readBoolean(bc[0], f) : false;
        const last = bc[bc.length - 1];
        const pathLength = last?.tag === TAG.INTEGER ? readSmallInt(last, f) : undefined;
        out.basicConstraints = pathLength === undefined ? { ca } : { ca, pathLength };
        break;
      }
      case X509_OID.keyUsage:
        out.keyUsage = parseKeyUsage(value);
        break;
      case X509_OID.subjectKeyIdentifier:
        out.subjectKeyId = readOctets(decodeDer(value, f), f);
        break;
      case X509_OID.authorityKeyIdentifier: {
        const first = expectTag(decodeDer(value, f), TAG.SEQUENCE, f).children[0];
        out.authorityKeyId = first?.tag === 0x80 ? first.value : undefined;
        break;
      }
      default:
        // RFC 5280 §4.2: a certificate with an unrecognised critical extension must be rejected.
        if (critical) throw formatError(`unsupported critical extension ${id}`, f);
    }
  }
  return out;
}

/** Strips a PEM armour with `label`; anything else is a POSKEY_ERR_PEM. */
export function pemToDer(text: string, label: string): Buffer {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`);
  const m = re.exec(text);
  if (!m) throw new PoskeyError('POSKEY_ERR_PEM', `no ${label} PEM block`, { field: label });
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

/** DER → PEM with 64-character lines. */
export function derToPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/**
 * Parses a certificate from DER bytes or PEM text. Only v3 RSA and SM2 certificates are accepted.
 * @throws POSKEY_ERR_ASN1 (malformed DER), POSKEY_ERR_CERT_FORMAT (not a v3 RSA/SM2 certificate),
 *   POSKEY_ERR_PEM (text without a CERTIFICATE block)
 */
export function parseCertificate(input: Uint8Array | string): Certificate {
  const der = typeof input === 'string' ? pemToDer(input, 'CERTIFICATE') : Buffer.from(input);
  const [tbsNode, sigAlgNode, sigNode] = expectChildren(
    decodeDer(der, 'certificate'),
    TAG.SEQUENCE,
    'certificate',
    3,
  );
  const tbs = expectChildren(tbsNode, TAG.SEQUENCE, 'tbsCertificate', 7, 10);
  const [versionNode, serialNode, innerSigAlg, issuerNode, validityNode, subjectNode, spkiNode, ...rest] =
    tbs;
  if (versionNode?.tag !== 0xa0 || readSmallInt(versionNode.children[0], 'version') !== 2) {
    throw formatError('only X.509 v3 certificates are supported', 'version');
  }
  const serialNumber = expectTag(serialNode, TAG.INTEGER, 'serialNumber').value;
  const signatureAlgorithm = readAlgorithmId(sigAlgNode, 'signatureAlgorithm').oid;
  if (!innerSigAlg?.der.equals(sigAlgNode!.der)) {
    throw formatError('signature algorithm differs inside and outside the TBS', 'signature');
  }
  const [nb, na] = expectChildren(validityNode, TAG.SEQUENCE, 'validity', 2);
  const spki = expectTag(spkiNode, TAG.SEQUENCE, 'subjectPublicKeyInfo');
  const keyAlgorithm = keyAlgorithmOfSpki(spki);
  const extNode = rest.find((n) => n.tag === 0xa3);
  const ext = parseExtensions(extNode);
  const spkiDer = Buffer.from(spki.der);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch (e) {
    throw new PoskeyError('POSKEY_ERR_CERT_FORMAT', 'the public key does not parse', {
      field: 'subjectPublicKeyInfo',
      cause: e,
    });
  }
  return {
    der,
    tbs: Buffer.from(tbsNode!.der),
    serialNumber: Buffer.from(serialNumber),
    issuer: parseName(issuerNode, 'issuer'),
    subject: parseName(subjectNode, 'subject'),
    notBefore: readTime(nb, 'validity.notBefore'),
    notAfter: readTime(na, 'validity.notAfter'),
    spki: spkiDer,
    keyAlgorithm,
    publicKey,
    signatureAlgorithm,
    signature: Buffer.from(readBitString(sigNode, 'signatureValue')),
    ...ext,
    fingerprint: createHash('sha256').update(der).digest('hex').toUpperCase(),
  };
}

/** The signature algorithm OID that goes with an issuer key algorithm. */
export function signatureOidFor(alg: KeyAlgorithm): string {
  return alg === 'rsa' ? X509_OID.sha256WithRsa : X509_OID.sm2WithSm3;
}

/** True when `issuerKey` verifies the certificate's signature with the algorithm it declares. */
export function verifyCertificateSignature(cert: Certificate, issuerKey: KeyObject): boolean {
  const alg = keyAlgorithmOf(issuerKey, 'issuerKey');
  if (cert.signatureAlgorithm !== signatureOidFor(alg)) return false;
  return verifyWith(issuerKey, cert.tbs, cert.signature);
}

/** CMS IssuerAndSerialNumber ::= SEQUENCE { issuer Name, serialNumber INTEGER } for a certificate. */
export function issuerAndSerialNumber(cert: Certificate): Buffer {
  return seq(cert.issuer.der, tlv(TAG.INTEGER, cert.serialNumber));
}
