/**
 * The slice of CMS (RFC 5652) TR-34 needs, built on our DER codec:
 *
 * - EnvelopedData with one KeyTransRecipientInfo (rid = IssuerAndSerialNumber). RSA recipients get
 *   RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 8017, parameters per RFC 4055) and AES-128-CBC
 *   content encryption (RFC 3565); SM2 recipients get SM2 encryption of the content key as a
 *   GM/T 0009 `SM2Cipher` and SM4-CBC content encryption (the GM/T 0010 algorithms, carried in the
 *   RFC 5652 structure and content-type OIDs).
 * - SignedData with one SignerInfo (sid = IssuerAndSerialNumber) and signed attributes: RSA signs
 *   with SHA-256 / PKCS#1 v1.5, SM2 with SM3 and Z for the default ID.
 *
 * `openssl cms` reads and writes the RSA forms (see test/keyload/cms.test.ts). Parsing is strict
 * DER; the error codes separate "not for me" (CMS_RECIPIENT) from "broken" (CMS_DECRYPT,
 * CMS_SIGNATURE) from "not the shape we expect" (CMS_FORMAT, CMS_ALGORITHM).
 */
import {
  constants,
  createHash,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import { constantTimeEqual, zeroize } from '../crypto/bytes.js';
import { type CipherAlgorithm, decrypt, encrypt } from '../crypto/cipher.js';
import { PoskeyError } from '../errors.js';
import {
  type Asn1,
  algorithmId,
  decodeDer,
  expectChildren,
  expectTag,
  explicit,
  integer,
  nullValue,
  octets,
  oid,
  readAlgorithmId,
  readOctets,
  readOid,
  readSmallInt,
  retag,
  seq,
  set,
  TAG,
  tlv,
} from './asn1.js';
import {
  type RandomSource,
  SM2_OID,
  sm2CipherFromDer,
  sm2CipherToDer,
  sm2Decrypt,
  sm2Encrypt,
} from './sm2.js';
import {
  type Certificate,
  issuerAndSerialNumber,
  type KeyAlgorithm,
  keyAlgorithmOf,
  signWith,
  verifyWith,
} from './x509.js';

export const CMS_OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  envelopedData: '1.2.840.113549.1.7.3',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  sha256: '2.16.840.1.101.3.4.2.1',
  sm3: SM2_OID.sm3,
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sm2WithSm3: SM2_OID.signWithSm3,
  /** GM/T 0006 "sm2-1", the SM2 signature OID some GM/T 0010 implementations write. */
  sm2Sign: '1.2.156.10197.1.301.1',
  rsaesOaep: '1.2.840.113549.1.1.7',
  mgf1: '1.2.840.113549.1.1.8',
  sm2Encrypt: SM2_OID.encrypt,
  aes128Cbc: '2.16.840.1.101.3.4.1.2',
  sm4Cbc: '1.2.156.10197.1.104.2',
} as const;

/** An attribute: its type and the DER of each value in its SET. */
export interface Attribute {
  type: string;
  values: Buffer[];
}

const formatError = (reason: string, field: string) =>
  new PoskeyError('POSKEY_ERR_CMS_FORMAT', reason, { field });
const algorithmError = (reason: string, field: string) =>
  new PoskeyError('POSKEY_ERR_CMS_ALGORITHM', reason, { field });

/** Per key algorithm: digest, content cipher and their OIDs. */
const SUITE: Readonly<
  Record<KeyAlgorithm, { digest: string; digestOid: string; cipher: CipherAlgorithm; cipherOid: string }>
> = {
  rsa: { digest: 'sha256', digestOid: CMS_OID.sha256, cipher: 'aes', cipherOid: CMS_OID.aes128Cbc },
  sm2: { digest: 'sm3', digestOid: CMS_OID.sm3, cipher: 'sm4', cipherOid: CMS_OID.sm4Cbc },
};

// ---------------------------------------------------------------------------------------------
// ContentInfo and attributes
// ---------------------------------------------------------------------------------------------

/** ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY } */
export function contentInfo(contentType: string, content: Uint8Array): Buffer {
  return seq(oid(contentType), explicit(0, content));
}

/** Reads a ContentInfo; `content` is the element inside [0]. */
export function parseContentInfo(
  der: Uint8Array,
  field = 'contentInfo',
): { contentType: string; content: Asn1 } {
  const [type, wrapped] = expectChildren(decodeDer(der, field), TAG.SEQUENCE, field, 2);
  const [content] = expectChildren(wrapped, 0xa0, `${field}.content`, 1);
  return { contentType: readOid(type, `${field}.contentType`), content: content! };
}

/** Attribute ::= SEQUENCE { attrType OID, attrValues SET OF ANY } */
export function attribute(type: string, ...values: Uint8Array[]): Buffer {
  return seq(oid(type), set(...values));
}

function parseAttributes(node: Asn1, field: string): Attribute[] {
  const out: Attribute[] = [];
  for (const [i, a] of node.children.entries()) {
    const [type, values] = expectChildren(a, TAG.SEQUENCE, `${field}[${i}]`, 2);
    const t = readOid(type, `${field}[${i}].type`);
    if (out.some((x) => x.type === t)) throw formatError(`attribute ${t} appears twice`, field);
    out.push({
      type: t,
      values: expectTag(values, TAG.SET, `${field}[${i}].values`).children.map((v) => v.der),
    });
  }
  return out;
}

/** The single value of attribute `type`. @throws POSKEY_ERR_CMS_FORMAT when absent or multi-valued */
export function attributeValue(attrs: readonly Attribute[] | undefined, type: string, field: string): Asn1 {
  const a = attrs?.find((x) => x.type === type);
  if (a === undefined) throw formatError(`signed attribute ${type} is missing`, field);
  if (a.values.length !== 1) throw formatError(`signed attribute ${type} must have one value`, field);
  return decodeDer(a.values[0]!, field);
}

// ---------------------------------------------------------------------------------------------
// Content encryption (CBC with PKCS#7 padding, RFC 5652 §6.3)
// ---------------------------------------------------------------------------------------------

function pkcs7Pad(data: Uint8Array, block: number): Buffer {
  const n = block - (data.length % block);
  return Buffer.concat([data, Buffer.alloc(n, n)]);
}

function pkcs7Unpad(data: Buffer, block: number): Buffer {
  const n = data[data.length - 1] ?? 0;
  let bad = n === 0 || n > block ? 1 : 0;
  for (let i = 1; i <= block; i++) {
    const byte = data[data.length - i] ?? 0;
    if (i <= n && byte !== n) bad |= 1;
  }
  if (bad)
    throw new PoskeyError('POSKEY_ERR_CMS_DECRYPT', 'content padding is wrong', {
      field: 'encryptedContent',
    });
  return data.subarray(0, data.length - n);
}

// ---------------------------------------------------------------------------------------------
// EnvelopedData
// ---------------------------------------------------------------------------------------------

const OAEP_SHA256_PARAMS = seq(
  explicit(0, algorithmId(CMS_OID.sha256, nullValue())),
  explicit(1, algorithmId(CMS_OID.mgf1, algorithmId(CMS_OID.sha256, nullValue()))),
);

export interface EnvelopeSpec {
  /** The recipient certificate (RSA or SM2); its key algorithm picks the algorithm suite. */
  recipient: Certificate;
  content: Uint8Array;
  /** Inner content type; default id-data. */
  contentType?: string;
  /** Source for the content key and IV (tests only). */
  random?: RandomSource;
}

function wrapContentKey(
  recipient: Certificate,
  cek: Buffer,
  random: RandomSource,
): { alg: Buffer; encryptedKey: Buffer } {
  if (recipient.keyAlgorithm === 'rsa') {
    const encryptedKey = publicEncrypt(
      { key: recipient.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      cek,
    );
    return { alg: algorithmId(CMS_OID.rsaesOaep, OAEP_SHA256_PARAMS), encryptedKey };
  }
  const ct = sm2Encrypt(recipient.publicKey, cek, { random });
  return { alg: algorithmId(CMS_OID.sm2Encrypt), encryptedKey: sm2CipherToDer(ct) };
}

/**
 * EnvelopedData (DER SEQUENCE, no ContentInfo around it) for one recipient.
 * @throws POSKEY_ERR_KEY_ALGORITHM for a recipient key that is neither RSA nor SM2
 */
export function buildEnvelopedData(spec: EnvelopeSpec): Buffer {
  const random = spec.random ?? randomBytes;
  const suite = SUITE[spec.recipient.keyAlgorithm];
  const cek = Buffer.from(random(16));
  const iv = Buffer.from(random(16));
  try {
    const { alg, encryptedKey } = wrapContentKey(spec.recipient, cek, random);
    const ktri = seq(integer(0), issuerAndSerialNumber(spec.recipient), alg, octets(encryptedKey));
    const ciphertext = encrypt(suite.cipher, 'cbc', cek, pkcs7Pad(spec.content, 16), iv);
    const eci = seq(
      oid(spec.contentType ?? CMS_OID.data),
      algorithmId(suite.cipherOid, octets(iv)),
      tlv(0x80, ciphertext),
    );
    return seq(integer(0), set(ktri), eci);
  } finally {
    zeroize(cek);
  }
}

export interface RecipientInfo {
  /** Issuer Name DER and serial number contents of the recipient certificate. */
  issuer: Buffer;
  serialNumber: Buffer;
  keyEncryptionAlgorithm: string;
  keyEncryptionParams: Asn1 | undefined;
  encryptedKey: Buffer;
}

export interface ParsedEnvelope {
  recipients: RecipientInfo[];
  contentType: string;
  contentEncryptionAlgorithm: string;
  iv: Buffer;
  encryptedContent: Buffer;
}

function parseIssuerAndSerial(
  node: Asn1 | undefined,
  field: string,
): { issuer: Buffer; serialNumber: Buffer } {
  const [issuer, serial] = expectChildren(node, TAG.SEQUENCE, field, 2);
  expectTag(issuer, TAG.SEQUENCE, `${field}.issuer`);
  return { issuer: issuer!.der, serialNumber: expectTag(serial, TAG.INTEGER, `${field}.serialNumber`).value };
}

/** Parses an EnvelopedData (bare, or inside a ContentInfo). Only KeyTransRecipientInfo is read. */
export function parseEnvelopedData(der: Uint8Array, field = 'envelopedData'): ParsedEnvelope {
  let node = decodeDer(der, field);
  if (node.children[0]?.tag === TAG.OID) {
    const ci = parseContentInfo(der, field);
    if (ci.contentType !== CMS_OID.envelopedData) throw formatError('not an EnvelopedData', field);
    node = ci.content;
  }
  const parts = expectChildren(node, TAG.SEQUENCE, field, 3, 5);
  if (parts[1]?.tag === 0xa0) throw formatError('originatorInfo is not supported', field);
  readSmallInt(parts[0], `${field}.version`);
  const recipients: RecipientInfo[] = [];
  for (const [i, ri] of expectTag(parts[1], TAG.SET, `${field}.recipientInfos`).children.entries()) {
    const f = `${field}.recipientInfos[${i}]`;
    if (ri.tag !== TAG.SEQUENCE) continue; // kari/kekri/pwri/ori are tagged: not ours
    const [version, rid, alg, ek] = expectChildren(ri, TAG.SEQUENCE, f, 4);
    if (readSmallInt(version, `${f}.version`) !== 0) continue; // rid by subjectKeyIdentifier
    const { oid: algOid, params } = readAlgorithmId(alg, `${f}.keyEncryptionAlgorithm`);
    recipients.push({
      ...parseIssuerAndSerial(rid, `${f}.rid`),
      keyEncryptionAlgorithm: algOid,
      keyEncryptionParams: params,
      encryptedKey: readOctets(ek, `${f}.encryptedKey`),
    });
  }
  const [type, cAlg, content] = expectChildren(parts[2], TAG.SEQUENCE, `${field}.encryptedContentInfo`, 2, 3);
  const { oid: cOid, params } = readAlgorithmId(cAlg, `${field}.contentEncryptionAlgorithm`);
  if (content === undefined) throw formatError('detached encrypted content is not supported', field);
  const encryptedContent =
    content.tag === 0x80
      ? content.value
      : content.tag === 0xa0
        ? Buffer.concat(content.children.map((c) => readOctets(c, field)))
        : undefined;
  if (encryptedContent === undefined)
    throw formatError('malformed encryptedContent', `${field}.encryptedContent`);
  return {
    recipients,
    contentType: readOid(type, `${field}.contentType`),
    contentEncryptionAlgorithm: cOid,
    iv: params === undefined ? Buffer.alloc(0) : readOctets(params, `${field}.iv`),
    encryptedContent,
  };
}

/** The RecipientInfo addressed to `cert` (issuer and serial number match), if any. */
export function findRecipient(env: ParsedEnvelope, cert: Certificate): RecipientInfo | undefined {
  return env.recipients.find(
    (r) => r.issuer.equals(cert.issuer.der) && r.serialNumber.equals(cert.serialNumber),
  );
}

function checkOaepParams(params: Asn1 | undefined): void {
  const sha256 = (node: Asn1 | undefined, f: string) => {
    const { oid: h, params: p } = readAlgorithmId(node, f);
    if (h !== CMS_OID.sha256 || (p !== undefined && p.tag !== TAG.NULL))
      throw algorithmError('OAEP must use SHA-256', f);
  };
  if (params === undefined)
    throw algorithmError('OAEP with default (SHA-1) parameters is not accepted', 'keyEncryptionAlgorithm');
  const fields = expectTag(params, TAG.SEQUENCE, 'oaepParams').children;
  const hash = fields.find((n) => n.tag === 0xa0);
  const mgf = fields.find((n) => n.tag === 0xa1);
  if (fields.some((n) => n.tag === 0xa2))
    throw algorithmError('OAEP labels are not supported', 'oaepParams.pSourceFunc');
  // Absent fields mean the RFC 8017 defaults, SHA-1 and MGF1-SHA-1: outside the TR-34 profile.
  if (hash === undefined || mgf === undefined) {
    throw algorithmError('OAEP must name SHA-256 and MGF1-SHA-256 (defaults are SHA-1)', 'oaepParams');
  }
  sha256(hash.children[0], 'oaepParams.hashFunc');
  const { oid: mgfOid, params: mgfHash } = readAlgorithmId(mgf.children[0], 'oaepParams.maskGenFunc');
  if (mgfOid !== CMS_OID.mgf1) throw algorithmError('mask generation must be MGF1', 'oaepParams.maskGenFunc');
  sha256(mgfHash, 'oaepParams.maskGenFunc.hash');
}

function unwrapContentKey(ri: RecipientInfo, privateKey: KeyObject): Buffer {
  const alg = keyAlgorithmOf(privateKey, 'privateKey');
  if (ri.keyEncryptionAlgorithm === CMS_OID.rsaesOaep && alg === 'rsa') {
    checkOaepParams(ri.keyEncryptionParams);
    try {
      return privateDecrypt(
        { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
        ri.encryptedKey,
      );
    } catch (e) {
      throw new PoskeyError('POSKEY_ERR_CMS_DECRYPT', 'content key does not decrypt', {
        field: 'encryptedKey',
        cause: e,
      });
    }
  }
  if (ri.keyEncryptionAlgorithm === CMS_OID.sm2Encrypt && alg === 'sm2') {
    try {
      return sm2Decrypt(privateKey, sm2CipherFromDer(ri.encryptedKey));
    } catch (e) {
      throw new PoskeyError('POSKEY_ERR_CMS_DECRYPT', 'content key does not decrypt', {
        field: 'encryptedKey',
        cause: e,
      });
    }
  }
  throw algorithmError(
    `key transport ${ri.keyEncryptionAlgorithm} does not fit a ${alg} key`,
    'keyEncryptionAlgorithm',
  );
}

const CONTENT_CIPHERS: Readonly<Record<string, CipherAlgorithm>> = {
  [CMS_OID.aes128Cbc]: 'aes',
  [CMS_OID.sm4Cbc]: 'sm4',
};

/**
 * Decrypts an EnvelopedData addressed to `recipient` with its private key.
 * @throws POSKEY_ERR_CMS_RECIPIENT when no RecipientInfo names this certificate;
 *   POSKEY_ERR_CMS_DECRYPT when the content key or content does not decrypt;
 *   POSKEY_ERR_CMS_ALGORITHM for algorithms or parameters outside the profile; POSKEY_ERR_ASN1/CMS_FORMAT when malformed
 */
export function openEnvelopedData(
  envelope: Uint8Array | ParsedEnvelope,
  recipient: { cert: Certificate; privateKey: KeyObject },
): { contentType: string; content: Buffer } {
  const env = envelope instanceof Uint8Array ? parseEnvelopedData(envelope) : envelope;
  const ri = findRecipient(env, recipient.cert);
  if (ri === undefined) {
    throw new PoskeyError('POSKEY_ERR_CMS_RECIPIENT', 'the envelope is not addressed to this certificate', {
      field: 'recipientInfos',
    });
  }
  const cipher = CONTENT_CIPHERS[env.contentEncryptionAlgorithm];
  if (cipher === undefined) {
    throw algorithmError(
      `content encryption ${env.contentEncryptionAlgorithm} is not supported`,
      'contentEncryptionAlgorithm',
    );
  }
  if (env.iv.length !== 16) throw formatError('IV must be 16 bytes', 'iv');
  if (env.encryptedContent.length === 0 || env.encryptedContent.length % 16 !== 0) {
    throw new PoskeyError('POSKEY_ERR_CMS_DECRYPT', 'encrypted content is not whole blocks', {
      field: 'encryptedContent',
    });
  }
  const cek = unwrapContentKey(ri, recipient.privateKey);
  try {
    if (cek.length !== 16) {
      throw new PoskeyError('POSKEY_ERR_CMS_DECRYPT', 'content key has the wrong length', {
        field: 'encryptedKey',
      });
    }
    const padded = decrypt(cipher, 'cbc', cek, env.encryptedContent, env.iv);
    const content = Buffer.from(pkcs7Unpad(padded, 16));
    zeroize(padded);
    return { contentType: env.contentType, content };
  } finally {
    zeroize(cek);
  }
}

// ---------------------------------------------------------------------------------------------
// SignedData
// ---------------------------------------------------------------------------------------------

export interface SignedDataSpec {
  contentType: string;
  content: Uint8Array;
  signer: { cert: Certificate; privateKey: KeyObject };
  /** Signed attributes besides content-type and message-digest (which are always added). */
  attributes?: readonly Buffer[];
  /** Certificates to include; default the signer's. */
  certificates?: readonly Certificate[];
}

function digest(alg: KeyAlgorithm, data: Uint8Array): Buffer {
  return createHash(SUITE[alg].digest).update(data).digest();
}

function signatureAlgorithmId(alg: KeyAlgorithm): Buffer {
  return alg === 'rsa' ? algorithmId(CMS_OID.rsaEncryption, nullValue()) : algorithmId(CMS_OID.sm2WithSm3);
}

/** Encapsulated content: SEQUENCE { eContentType, [0] EXPLICIT OCTET STRING }. */
function encapContent(contentType: string, content: Uint8Array | undefined): Buffer {
  return content === undefined ? seq(oid(contentType)) : seq(oid(contentType), explicit(0, octets(content)));
}

/**
 * A signed SignedData in a ContentInfo: one signer, signed attributes (content type, message
 * digest, then `attributes`), certificates = the signer's unless given.
 * @throws POSKEY_ERR_CMS_ALGORITHM when the private key does not match the signer certificate's algorithm
 */
export function buildSignedData(spec: SignedDataSpec): Buffer {
  const alg = spec.signer.cert.keyAlgorithm;
  if (keyAlgorithmOf(spec.signer.privateKey, 'signer.privateKey') !== alg) {
    throw algorithmError('signer key does not match the signer certificate', 'signer.privateKey');
  }
  const suite = SUITE[alg];
  const attrs = [
    attribute(CMS_OID.contentType, oid(spec.contentType)),
    attribute(CMS_OID.messageDigest, octets(digest(alg, spec.content))),
    ...(spec.attributes ?? []),
  ];
  const signedAttrs = set(...attrs);
  const signature = signWith(spec.signer.privateKey, signedAttrs);
  const signerInfo = seq(
    integer(1),
    issuerAndSerialNumber(spec.signer.cert),
    algorithmId(suite.digestOid),
    retag(decodeDer(signedAttrs), 0xa0),
    signatureAlgorithmId(alg),
    octets(signature),
  );
  const certs = (spec.certificates ?? [spec.signer.cert]).map((c) => c.der);
  // RFC 5652 §5.1: version 3 when the content is not id-data.
  const version = spec.contentType === CMS_OID.data ? 1 : 3;
  const sd = seq(
    integer(version),
    set(algorithmId(suite.digestOid)),
    encapContent(spec.contentType, spec.content),
    ...(certs.length > 0 ? [tlv(0xa0, ...certs)] : []),
    set(signerInfo),
  );
  return contentInfo(CMS_OID.signedData, sd);
}

/** A SignedData with no signers (a certificate carrier), as TR-34 rebind tokens nest one. Bare DER. */
export function buildUnsignedSignedData(spec: {
  contentType: string;
  content: Uint8Array;
  certificates: readonly Certificate[];
}): Buffer {
  return seq(
    integer(spec.contentType === CMS_OID.data ? 1 : 3),
    set(),
    encapContent(spec.contentType, spec.content),
    ...(spec.certificates.length > 0 ? [tlv(0xa0, ...spec.certificates.map((c) => c.der))] : []),
    set(),
  );
}

export interface SignerInfo {
  issuer: Buffer;
  serialNumber: Buffer;
  digestAlgorithm: string;
  /** Signed attributes, or undefined when the signature is over the content directly. */
  signedAttrs: Attribute[] | undefined;
  /** The signed attributes re-tagged as the SET the signature covers. */
  signedAttrsDer: Buffer | undefined;
  signatureAlgorithm: string;
  signature: Buffer;
}

export interface ParsedSignedData {
  contentType: string;
  /** The digestAlgorithms OIDs (unsigned, so checked against each signer's). */
  digestAlgorithms: string[];
  /** eContent octets; undefined when detached. */
  content: Buffer | undefined;
  /** DER of each certificate carried. */
  certificates: Buffer[];
  signers: SignerInfo[];
}

/**
 * An AlgorithmIdentifier whose parameters must be absent or NULL (digests and signatures here):
 * unsigned fields get no leeway, since nothing else would notice a change in them.
 */
function readPlainAlgorithm(node: Asn1 | undefined, field: string): string {
  const { oid: id, params } = readAlgorithmId(node, field);
  if (params !== undefined && params.tag !== TAG.NULL)
    throw formatError(`unexpected parameters for ${id}`, field);
  return id;
}

function parseSignerInfo(node: Asn1, field: string): SignerInfo {
  const parts = expectChildren(node, TAG.SEQUENCE, field, 5, 7);
  if (readSmallInt(parts[0], `${field}.version`) !== 1) {
    throw formatError(
      'only signers identified by issuer and serial number are supported',
      `${field}.version`,
    );
  }
  const sid = parseIssuerAndSerial(parts[1], `${field}.sid`);
  const digestAlgorithm = readPlainAlgorithm(parts[2], `${field}.digestAlgorithm`);
  let i = 3;
  let signedAttrs: Attribute[] | undefined;
  let signedAttrsDer: Buffer | undefined;
  if (parts[i]?.tag === 0xa0) {
    signedAttrs = parseAttributes(parts[i]!, `${field}.signedAttrs`);
    signedAttrsDer = retag(parts[i]!, TAG.SET);
    i++;
  }
  const signatureAlgorithm = readPlainAlgorithm(parts[i], `${field}.signatureAlgorithm`);
  const signature = readOctets(parts[i + 1], `${field}.signature`);
  if (parts.length > i + 3 || (parts[i + 2] !== undefined && parts[i + 2]!.tag !== 0xa1)) {
    throw formatError('unexpected elements after the signature', field);
  }
  return { ...sid, digestAlgorithm, signedAttrs, signedAttrsDer, signatureAlgorithm, signature };
}

/** Reads a SignedData from a ContentInfo (or a bare SignedData). */
export function parseSignedData(der: Uint8Array, field = 'signedData'): ParsedSignedData {
  let node = decodeDer(der, field);
  if (node.children[0]?.tag === TAG.OID) {
    const ci = parseContentInfo(der, field);
    if (ci.contentType !== CMS_OID.signedData) throw formatError('not a SignedData', field);
    node = ci.content;
  }
  const parts = expectChildren(node, TAG.SEQUENCE, field, 4, 6);
  const version = readSmallInt(parts[0], `${field}.version`);
  const digestAlgorithms = expectTag(parts[1], TAG.SET, `${field}.digestAlgorithms`).children.map((a, n) =>
    readPlainAlgorithm(a, `${field}.digestAlgorithms[${n}]`),
  );
  const [eType, eContent] = expectChildren(parts[2], TAG.SEQUENCE, `${field}.encapContentInfo`, 1, 2);
  const contentType = readOid(eType, `${field}.eContentType`);
  // RFC 5652 §5.1 with issuerAndSerialNumber signers and X.509 certificates only.
  if (version !== (contentType === CMS_OID.data ? 1 : 3)) {
    throw formatError(`version ${version} does not fit content type ${contentType}`, `${field}.version`);
  }
  const content =
    eContent === undefined
      ? undefined
      : readOctets(expectChildren(eContent, 0xa0, `${field}.eContent`, 1)[0], `${field}.eContent`);
  let certificates: Buffer[] = [];
  let i = 3;
  if (parts[i]?.tag === 0xa0) {
    certificates = parts[i]!.children.map((c) => {
      expectTag(c, TAG.SEQUENCE, `${field}.certificates`);
      return c.der;
    });
    i++;
  }
  if (parts[i]?.tag === 0xa1) i++; // CRLs: not used by poskey
  const signerSet = expectTag(parts[i], TAG.SET, `${field}.signerInfos`);
  if (i !== parts.length - 1) throw formatError('unexpected elements in SignedData', field);
  const signers = signerSet.children.map((s, n) => parseSignerInfo(s, `${field}.signerInfos[${n}]`));
  return { contentType, digestAlgorithms, content, certificates, signers };
}

const SIGNATURE_OIDS: Readonly<Record<KeyAlgorithm, readonly string[]>> = {
  rsa: [CMS_OID.rsaEncryption, CMS_OID.sha256WithRsa],
  sm2: [CMS_OID.sm2WithSm3, CMS_OID.sm2Sign],
};

const signatureError = (reason: string) =>
  new PoskeyError('POSKEY_ERR_CMS_SIGNATURE', reason, { field: 'signerInfo' });

/**
 * Verifies one SignerInfo against the signer certificate: the signer identifier names the
 * certificate, the algorithms fit its key, the content-type and message-digest attributes match
 * the content, and the signature over the signed attributes verifies.
 * @throws POSKEY_ERR_CMS_SIGNATURE on any mismatch; POSKEY_ERR_CMS_FORMAT without signed attributes
 */
export function verifySignerInfo(sd: ParsedSignedData, signer: SignerInfo, cert: Certificate): void {
  if (!signer.issuer.equals(cert.issuer.der) || !signer.serialNumber.equals(cert.serialNumber)) {
    throw signatureError('the signer identifier does not name this certificate');
  }
  const alg = cert.keyAlgorithm;
  if (
    signer.digestAlgorithm !== SUITE[alg].digestOid ||
    !SIGNATURE_OIDS[alg].includes(signer.signatureAlgorithm)
  ) {
    throw signatureError(
      `algorithms ${signer.digestAlgorithm}/${signer.signatureAlgorithm} do not fit a ${alg} signer`,
    );
  }
  if (!sd.digestAlgorithms.includes(signer.digestAlgorithm)) {
    throw signatureError('the signer digest algorithm is not among the SignedData digestAlgorithms');
  }
  if (signer.signedAttrs === undefined || signer.signedAttrsDer === undefined) {
    throw formatError('signed attributes are required', 'signedAttrs');
  }
  if (sd.content === undefined) throw formatError('detached content is not supported', 'eContent');
  const ct = readOid(
    attributeValue(signer.signedAttrs, CMS_OID.contentType, 'signedAttrs.contentType'),
    'contentType',
  );
  if (ct !== sd.contentType) throw signatureError('content-type attribute differs from the content type');
  const md = readOctets(
    attributeValue(signer.signedAttrs, CMS_OID.messageDigest, 'signedAttrs.messageDigest'),
    'messageDigest',
  );
  if (!constantTimeEqual(md, digest(alg, sd.content)))
    throw signatureError('message digest does not match the content');
  if (!verifyWith(cert.publicKey, signer.signedAttrsDer, signer.signature))
    throw signatureError('signature does not verify');
}
