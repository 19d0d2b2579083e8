/**
 * TR-34 (ASC X9 TR 34-2019) two-pass remote key loading, and the bind / rebind / unbind tokens
 * that tie a key receiving device (KRD) to one key distribution host (KDH).
 *
 * Two-pass key transport:
 *   1. KRD → KDH   RT-KRD: a fresh random nonce (`createKrdNonce`, 16 bytes).
 *   2. KDH → KRD   KT-KDH (`buildKeyToken`): ContentInfo(SignedData) signed by the KDH with signed
 *                  attributes content-type, message-digest, random nonce (1.2.840.113549.1.9.25.3)
 *                  and the key block header (id-data); the encapsulated content (eContentType
 *                  id-envelopedData) is an EnvelopedData to the KRD certificate over
 *                  KeyBlock ::= SEQUENCE { version INTEGER (1), idKDH IssuerAndSerialNumber,
 *                                          clearKey OCTET STRING,
 *                                          keyBlockHeader SEQUENCE { id-data, SET { OCTET STRING } } }
 *   3. KRD         `openKeyToken`: KDH certificate chains to the root and is marked KDH, the
 *                  signature verifies, the nonce is the one just issued, the envelope names this
 *                  device, the key block names the signer and repeats the signed header.
 *
 * Layouts follow clover/clover-tr34-host (Tr34TwoPassKeyToken, Tr34KeyBlock, Tr34KdhUnbindToken,
 * Tr34KdhRebindToken). `algorithm: 'sm2'` swaps in SM2/SM3/SM4 (see cms.ts); that variant is a
 * poskey choice, no public vendor specification exists for it.
 *
 * Binding (poskey profile, all KDH-signed and nonce-protected):
 *   bind    SignedData(KDH) ⊃ id-signedData: unsigned SignedData { certificates: [KDH cert],
 *           eContent: KRD IssuerAndSerialNumber }; an unbound KRD accepts it when the carried
 *           certificate is the signer's own.
 *   rebind  the same layout, signed by the currently bound KDH and carrying the new KDH cert
 *           (TR-34 RBT-KDH).
 *   unbind  SignedData(bound KDH) ⊃ id-data: KRD IssuerAndSerialNumber (TR-34 UBT-KDH).
 * A bound KRD accepts key tokens from its KDH only.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import { constantTimeEqual, zeroize } from '../crypto/bytes.js';
import { allowedKeyLengths, readHeader } from '../crypto/tr31-header.js';
import { PoskeyError } from '../errors.js';
import {
  decodeDer,
  expectChildren,
  expectTag,
  integer,
  octets,
  oid,
  readOctets,
  readOid,
  readSmallInt,
  seq,
  set,
  TAG,
} from './asn1.js';
import { asCertificate, type CertificateInput, verifyChain } from './ca.js';
import {
  attribute,
  attributeValue,
  buildEnvelopedData,
  buildSignedData,
  buildUnsignedSignedData,
  CMS_OID,
  findRecipient,
  openEnvelopedData,
  type ParsedSignedData,
  parseEnvelopedData,
  parseSignedData,
  type SignerInfo,
  verifySignerInfo,
} from './cms.js';
import type { RandomSource } from './sm2.js';
import {
  type Certificate,
  issuerAndSerialNumber,
  type KeyAlgorithm,
  keyAlgorithmOf,
  parseCertificate,
} from './x509.js';

export const TR34_OID = {
  /** pkcs-9-at-randomNonce */
  randomNonce: '1.2.840.113549.1.9.25.3',
  /** The key block header attribute is typed id-data. */
  keyBlockHeader: CMS_OID.data,
} as const;

/** RT-KRD nonce length poskey issues; tokens carrying 8–16 bytes are read (the ASC samples use both). */
export const TR34_NONCE_LENGTH = 16;
export const TR34_KEY_BLOCK_VERSION = 1;
/**
 * TR-31 headers of a TMK inside a TR-34 token (16 characters): the device reads usage and
 * algorithm from them. Remote key loading and certificate injection send the same.
 */
export const TR34_TMK_HEADER = Object.freeze({ TDES: 'A0000K0TB00E0000', SM4: 'D0000K04B00E0000' } as const);
/** Clear key lengths: TDES 2/3-key, AES-128/192/256, SM4. */
export const TR34_KEY_LENGTHS: readonly number[] = [16, 24, 32];

/** A party's credentials: its certificate and private key. */
export interface Tr34Credentials {
  cert: CertificateInput;
  privateKey: KeyObject;
}

/** What a KRD keeps about its binding: the DER of the bound KDH certificate, or null. */
export interface KrdBindState {
  readonly kdhCert: Buffer | null;
}

export const UNBOUND: KrdBindState = Object.freeze({ kdhCert: null });

const fail = (code: string, reason: string, field: string, cause?: unknown) =>
  new PoskeyError(`POSKEY_ERR_TR34_${code}`, reason, { field, cause });

/** CMS-level failures become TR-34 ones so a caller matches one family of codes. */
const CMS_TO_TR34: Readonly<Record<string, string>> = {
  POSKEY_ERR_CMS_FORMAT: 'FORMAT',
  POSKEY_ERR_CMS_SIGNATURE: 'SIGNATURE',
  POSKEY_ERR_CMS_RECIPIENT: 'RECIPIENT',
  POSKEY_ERR_CMS_DECRYPT: 'DECRYPT',
  POSKEY_ERR_CMS_ALGORITHM: 'ALGORITHM',
};

function translated<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const mapped = e instanceof PoskeyError ? CMS_TO_TR34[e.code] : undefined;
    if (mapped !== undefined)
      throw fail(mapped, (e as PoskeyError).reason, (e as PoskeyError).field ?? 'token', e);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Nonces
// ---------------------------------------------------------------------------------------------

/** RT-KRD: 16 fresh random bytes the KDH must sign back. */
export function createKrdNonce(random: RandomSource = randomBytes): Buffer {
  const nonce = Buffer.from(random(TR34_NONCE_LENGTH));
  if (nonce.length !== TR34_NONCE_LENGTH)
    throw new PoskeyError('POSKEY_ERR_RANDOM', 'short random nonce', { field: 'random' });
  return nonce;
}

function checkNonce(nonce: unknown, field: string): Buffer {
  if (!(nonce instanceof Uint8Array) || nonce.length < 8 || nonce.length > 16) {
    throw fail('NONCE', 'a TR-34 nonce is 8 to 16 bytes', field);
  }
  return Buffer.from(nonce);
}

function nonceAttribute(nonce: Buffer): Buffer {
  return attribute(TR34_OID.randomNonce, octets(nonce));
}

/** The signed nonce must be the one this KRD issued for this exchange. */
function checkSignedNonce(signer: SignerInfo, expected: Buffer): void {
  const value = translated(() =>
    attributeValue(signer.signedAttrs, TR34_OID.randomNonce, 'signedAttrs.randomNonce'),
  );
  const nonce = expectTag(value, TAG.OCTET_STRING, 'signedAttrs.randomNonce').value;
  if (!constantTimeEqual(nonce, expected)) {
    throw fail('NONCE', 'the token answers another nonce (replayed or for another request)', 'randomNonce');
  }
}

// ---------------------------------------------------------------------------------------------
// Key token (KT-KDH, two-pass)
// ---------------------------------------------------------------------------------------------

function checkAlgorithm(
  algorithm: KeyAlgorithm | undefined,
  kdh: Certificate,
  krd: Certificate,
): KeyAlgorithm {
  const alg = algorithm ?? kdh.keyAlgorithm;
  if (alg !== 'rsa' && alg !== 'sm2') throw fail('ALGORITHM', `algorithm must be rsa or sm2`, 'algorithm');
  if (kdh.keyAlgorithm !== alg || krd.keyAlgorithm !== alg) {
    throw fail(
      'ALGORITHM',
      `KDH (${kdh.keyAlgorithm}) and KRD (${krd.keyAlgorithm}) keys must both be ${alg}`,
      'algorithm',
    );
  }
  return alg;
}

/** Validates a 16-character key block header and the key length it implies. */
function checkKeyBlock(header: string, clearKey: Uint8Array): void {
  if (typeof header !== 'string' || header.length !== 16) {
    throw fail('KEYBLOCK', 'the key block header is exactly 16 characters', 'keyBlockHeader');
  }
  const { header: parsed } = readHeader(header);
  if (parsed.optionalBlocks.length > 0)
    throw fail('KEYBLOCK', 'optional blocks do not fit a 16-character header', 'keyBlockHeader');
  if (!(clearKey instanceof Uint8Array) || !TR34_KEY_LENGTHS.includes(clearKey.length)) {
    throw fail('KEYBLOCK', `clear key must be ${TR34_KEY_LENGTHS.join(', ')} bytes`, 'clearKey');
  }
  const lengths = allowedKeyLengths(parsed.algorithm);
  if (lengths !== undefined && !lengths.includes(clearKey.length)) {
    throw fail(
      'KEYBLOCK',
      `header algorithm ${parsed.algorithm} does not take a ${clearKey.length}-byte key`,
      'clearKey',
    );
  }
}

function encodeKeyBlock(kdh: Certificate, clearKey: Uint8Array, header: string): Buffer {
  return seq(
    integer(TR34_KEY_BLOCK_VERSION),
    issuerAndSerialNumber(kdh),
    octets(clearKey),
    seq(oid(TR34_OID.keyBlockHeader), set(octets(Buffer.from(header, 'latin1')))),
  );
}

export interface KeyTokenSpec {
  kdh: Tr34Credentials;
  krdCert: CertificateInput;
  /** The RT-KRD nonce received from the device. */
  nonce: Uint8Array;
  /** TR-31 header (16 characters) describing the transported key, e.g. "A0256K0TB00E0000". */
  keyBlockHeader: string;
  clearKey: Uint8Array;
  /** Must match both certificates' key algorithm; default the KDH's. */
  algorithm?: KeyAlgorithm;
  /** When given, the KRD certificate is checked against this root (role KRD) before use. */
  caRoot?: CertificateInput;
  at?: Date;
}

/**
 * KT-KDH: the two-pass key token (DER ContentInfo). See the module comment for the layout.
 * @throws POSKEY_ERR_TR34_NONCE, POSKEY_ERR_TR34_KEYBLOCK, POSKEY_ERR_TR34_ALGORITHM, POSKEY_ERR_TR31_HEADER,
 *   and the CERT_* codes when `caRoot` is given and the KRD certificate does not check out
 */
export function buildKeyToken(spec: KeyTokenSpec): Buffer {
  const nonce = checkNonce(spec.nonce, 'nonce');
  const kdhCert = asCertificate(spec.kdh.cert);
  const krdCert =
    spec.caRoot === undefined
      ? asCertificate(spec.krdCert)
      : verifyChain(spec.krdCert, spec.caRoot, { at: spec.at, role: 'krd' });
  checkAlgorithm(spec.algorithm, kdhCert, krdCert);
  if (keyAlgorithmOf(spec.kdh.privateKey, 'kdh.privateKey') !== kdhCert.keyAlgorithm) {
    throw fail('ALGORITHM', 'the KDH private key does not match its certificate', 'kdh.privateKey');
  }
  checkKeyBlock(spec.keyBlockHeader, spec.clearKey);
  const keyBlock = encodeKeyBlock(kdhCert, spec.clearKey, spec.keyBlockHeader);
  try {
    const envelope = buildEnvelopedData({ recipient: krdCert, content: keyBlock });
    return buildSignedData({
      contentType: CMS_OID.envelopedData,
      content: envelope,
      signer: { cert: kdhCert, privateKey: spec.kdh.privateKey },
      attributes: [
        nonceAttribute(nonce),
        attribute(TR34_OID.keyBlockHeader, octets(Buffer.from(spec.keyBlockHeader, 'latin1'))),
      ],
    });
  } finally {
    zeroize(keyBlock);
  }
}

/** The one SignerInfo of a token and the certificate it names (from the binding or the token). */
function signerOf(
  sd: ParsedSignedData,
  binding: KrdBindState | undefined,
): { signer: SignerInfo; cert: Certificate } {
  if (sd.signers.length !== 1)
    throw fail('FORMAT', `${sd.signers.length} signers, expected 1`, 'signerInfos');
  const signer = sd.signers[0]!;
  const names = (c: Certificate) =>
    signer.issuer.equals(c.issuer.der) && signer.serialNumber.equals(c.serialNumber);
  if (binding?.kdhCert) {
    const bound = parseCertificate(binding.kdhCert);
    if (!names(bound)) throw fail('BINDING', 'this KRD is bound to another KDH', 'signerInfo');
    return { signer, cert: bound };
  }
  for (const der of sd.certificates) {
    const cert = parseCertificate(der);
    if (names(cert)) return { signer, cert };
  }
  throw fail('FORMAT', 'the signer certificate is not in the token', 'certificates');
}

/**
 * Authenticates a KDH-signed token: the signer chains to the root as a KDH, the signature
 * verifies and the signed nonce is `expectedNonce`.
 */
function authenticate(
  token: Uint8Array,
  caRoot: CertificateInput,
  expectedNonce: Buffer,
  at: Date | undefined,
  binding: KrdBindState | undefined,
): { sd: ParsedSignedData; signer: SignerInfo; kdhCert: Certificate } {
  const sd = translated(() => parseSignedData(token, 'token'));
  const { signer, cert } = signerOf(sd, binding);
  verifyChain(cert, caRoot, { at, role: 'kdh' });
  translated(() => verifySignerInfo(sd, signer, cert));
  checkSignedNonce(signer, expectedNonce);
  return { sd, signer, kdhCert: cert };
}

interface KeyBlock {
  kdhId: Buffer;
  clearKey: Buffer;
  header: string;
}

function decodeKeyBlock(der: Buffer): KeyBlock {
  const f = 'keyBlock';
  const [version, idKdh, clearKey, headerSeq] = expectChildren(decodeDer(der, f), TAG.SEQUENCE, f, 4);
  if (readSmallInt(version, `${f}.version`) !== TR34_KEY_BLOCK_VERSION) {
    throw fail('KEYBLOCK', 'unsupported key block version', `${f}.version`);
  }
  const [type, values] = expectChildren(headerSeq, TAG.SEQUENCE, `${f}.keyBlockHeader`, 2);
  if (readOid(type, `${f}.keyBlockHeader`) !== TR34_OID.keyBlockHeader) {
    throw fail('KEYBLOCK', 'key block header is not typed id-data', `${f}.keyBlockHeader`);
  }
  const [headerOctets] = expectChildren(values, TAG.SET, `${f}.keyBlockHeader`, 1);
  return {
    kdhId: Buffer.from(expectTag(idKdh, TAG.SEQUENCE, `${f}.idKDH`).der),
    clearKey: Buffer.from(readOctets(clearKey, `${f}.clearKey`)),
    header: readOctets(headerOctets, `${f}.keyBlockHeader`).toString('latin1'),
  };
}

export interface OpenKeyTokenSpec {
  token: Uint8Array;
  krd: Tr34Credentials;
  caRoot: CertificateInput;
  /** The nonce this KRD sent in RT-KRD for this exchange. */
  expectedNonce: Uint8Array;
  /** Validity check time; default now. */
  at?: Date;
  /** The KRD's binding: when bound, only the bound KDH's tokens are accepted. */
  binding?: KrdBindState;
}

export interface OpenedKeyToken {
  clearKey: Buffer;
  /** The 16-character TR-31 header the KDH signed. */
  header: string;
  kdhCert: Certificate;
}

/**
 * Device side of KT-KDH. Checks, in order: structure, KDH certificate (chain, validity, role,
 * binding), signature, nonce, recipient, then decrypts and checks the key block.
 * @throws POSKEY_ERR_ASN1 / POSKEY_ERR_TR34_FORMAT (malformed), POSKEY_ERR_CERT_* (KDH certificate),
 *   POSKEY_ERR_TR34_BINDING, POSKEY_ERR_TR34_SIGNATURE, POSKEY_ERR_TR34_NONCE, POSKEY_ERR_TR34_RECIPIENT,
 *   POSKEY_ERR_TR34_DECRYPT, POSKEY_ERR_TR34_ALGORITHM, POSKEY_ERR_TR34_KEYBLOCK
 */
export function openKeyToken(spec: OpenKeyTokenSpec): OpenedKeyToken {
  const expected = checkNonce(spec.expectedNonce, 'expectedNonce');
  const krdCert = asCertificate(spec.krd.cert);
  const { sd, signer, kdhCert } = authenticate(spec.token, spec.caRoot, expected, spec.at, spec.binding);
  if (sd.contentType !== CMS_OID.envelopedData || sd.content === undefined) {
    throw fail('FORMAT', 'a key token encapsulates an EnvelopedData', 'eContentType');
  }
  const headerAttr = translated(() =>
    attributeValue(signer.signedAttrs, TR34_OID.keyBlockHeader, 'signedAttrs.keyBlockHeader'),
  );
  const signedHeader = expectTag(headerAttr, TAG.OCTET_STRING, 'signedAttrs.keyBlockHeader').value.toString(
    'latin1',
  );
  const envelope = translated(() => parseEnvelopedData(sd.content!, 'envelopedData'));
  if (findRecipient(envelope, krdCert) === undefined) {
    throw fail('RECIPIENT', 'the key is enveloped for another device', 'recipientInfos');
  }
  const { content } = translated(() =>
    openEnvelopedData(envelope, { cert: krdCert, privateKey: spec.krd.privateKey }),
  );
  let block: KeyBlock;
  try {
    block = decodeKeyBlock(content);
  } finally {
    zeroize(content);
  }
  if (!block.kdhId.equals(issuerAndSerialNumber(kdhCert))) {
    zeroize(block.clearKey);
    throw fail('KEYBLOCK', 'the key block names another KDH than the signer', 'keyBlock.idKDH');
  }
  if (block.header !== signedHeader) {
    zeroize(block.clearKey);
    throw fail('KEYBLOCK', 'the key block header differs from the signed header', 'keyBlock.keyBlockHeader');
  }
  try {
    checkKeyBlock(block.header, block.clearKey);
  } catch (e) {
    zeroize(block.clearKey);
    throw e;
  }
  return { clearKey: block.clearKey, header: block.header, kdhCert };
}

// ---------------------------------------------------------------------------------------------
// Bind, rebind, unbind
// ---------------------------------------------------------------------------------------------

export interface BindTokenSpec {
  /** The signing KDH: the one to bind (bind), or the currently bound one (rebind, unbind). */
  kdh: Tr34Credentials;
  krdCert: CertificateInput;
  nonce: Uint8Array;
}

function bindLayout(spec: BindTokenSpec, carried: Certificate): Buffer {
  const nonce = checkNonce(spec.nonce, 'nonce');
  const kdhCert = asCertificate(spec.kdh.cert);
  const krdCert = asCertificate(spec.krdCert);
  const inner = buildUnsignedSignedData({
    contentType: CMS_OID.data,
    content: issuerAndSerialNumber(krdCert),
    certificates: [carried],
  });
  return buildSignedData({
    contentType: CMS_OID.signedData,
    content: inner,
    signer: { cert: kdhCert, privateKey: spec.kdh.privateKey },
    attributes: [nonceAttribute(nonce)],
  });
}

/** Bind token: the KDH introduces its own certificate to an unbound KRD. */
export function buildBindToken(spec: BindTokenSpec): Buffer {
  return bindLayout(spec, asCertificate(spec.kdh.cert));
}

/** Rebind token (RBT-KDH): the bound KDH hands the KRD over to `newKdhCert`. */
export function buildRebindToken(spec: BindTokenSpec & { newKdhCert: CertificateInput }): Buffer {
  return bindLayout(spec, asCertificate(spec.newKdhCert));
}

/** Unbind token (UBT-KDH): the bound KDH releases the KRD. */
export function buildUnbindToken(spec: BindTokenSpec): Buffer {
  const nonce = checkNonce(spec.nonce, 'nonce');
  return buildSignedData({
    contentType: CMS_OID.data,
    content: issuerAndSerialNumber(asCertificate(spec.krdCert)),
    signer: { cert: asCertificate(spec.kdh.cert), privateKey: spec.kdh.privateKey },
    attributes: [nonceAttribute(nonce)],
  });
}

export interface ApplyBindTokenSpec {
  state: KrdBindState;
  token: Uint8Array;
  krd: { cert: CertificateInput };
  caRoot: CertificateInput;
  expectedNonce: Uint8Array;
  at?: Date;
}

export interface BindResult {
  state: KrdBindState;
  action: 'bind' | 'rebind' | 'unbind';
  /** The KDH the device is now bound to (bind, rebind) or was released by (unbind). */
  kdhCert: Certificate;
}

function checkKrdIdentity(content: Buffer | undefined, krdCert: Certificate): void {
  if (content === undefined || !content.equals(issuerAndSerialNumber(krdCert))) {
    throw fail('RECIPIENT', 'the token names another device', 'eContent');
  }
}

/**
 * Device side of bind, rebind and unbind tokens. Returns the new state; the input is not changed.
 * An unbound KRD accepts a bind token whose carried certificate is its signer's; a bound KRD
 * accepts rebind and unbind tokens signed by its KDH only.
 * @throws POSKEY_ERR_TR34_BINDING for a token that does not fit the state, plus the authentication
 *   errors of `openKeyToken` (CERT_*, TR34_SIGNATURE, TR34_NONCE, TR34_RECIPIENT, TR34_FORMAT, ASN1)
 */
export function applyBindToken(spec: ApplyBindTokenSpec): BindResult {
  const expected = checkNonce(spec.expectedNonce, 'expectedNonce');
  const krdCert = asCertificate(spec.krd.cert);
  const bound = spec.state?.kdhCert ?? null;
  const { sd, kdhCert } = authenticate(spec.token, spec.caRoot, expected, spec.at, spec.state);
  if (sd.contentType === CMS_OID.data) {
    if (bound === null) throw fail('BINDING', 'this KRD is not bound', 'state');
    checkKrdIdentity(sd.content, krdCert);
    return { state: UNBOUND, action: 'unbind', kdhCert };
  }
  if (sd.contentType !== CMS_OID.signedData || sd.content === undefined) {
    throw fail('FORMAT', 'not a bind, rebind or unbind token', 'eContentType');
  }
  const inner = translated(() => parseSignedData(sd.content!, 'inner'));
  if (inner.signers.length !== 0 || inner.certificates.length !== 1 || inner.contentType !== CMS_OID.data) {
    throw fail('FORMAT', 'the inner SignedData carries one certificate and no signers', 'inner');
  }
  checkKrdIdentity(inner.content, krdCert);
  const carried = verifyChain(inner.certificates[0]!, spec.caRoot, { at: spec.at, role: 'kdh' });
  if (bound === null && !carried.der.equals(kdhCert.der)) {
    throw fail('BINDING', 'an unbound KRD only accepts a KDH binding itself', 'inner.certificates');
  }
  return {
    state: Object.freeze({ kdhCert: Buffer.from(carried.der) }),
    action: bound === null ? 'bind' : 'rebind',
    kdhCert: carried,
  };
}

// ---------------------------------------------------------------------------------------------
// Device helper
// ---------------------------------------------------------------------------------------------

/**
 * A KRD's TR-34 session state: its credentials, the root it trusts, its binding and the nonce
 * of the exchange in progress. Each nonce answers one token: it is consumed by the first token
 * offered, valid or not, so a replayed or guessed token needs a nonce that no longer exists.
 */
export class Tr34Krd {
  readonly cert: Certificate;
  readonly caRoot: Certificate;
  #privateKey: KeyObject;
  #binding: KrdBindState;
  #pending: Buffer | undefined;
  #random: RandomSource;

  constructor(opts: {
    cert: CertificateInput;
    privateKey: KeyObject;
    caRoot: CertificateInput;
    binding?: KrdBindState;
    random?: RandomSource;
  }) {
    this.cert = asCertificate(opts.cert);
    this.caRoot = asCertificate(opts.caRoot);
    this.#privateKey = opts.privateKey;
    this.#binding = opts.binding ?? UNBOUND;
    this.#random = opts.random ?? randomBytes;
  }

  get binding(): KrdBindState {
    return this.#binding;
  }

  /** RT-KRD for the next exchange (replaces any unanswered one). */
  createNonce(): Buffer {
    this.#pending = createKrdNonce(this.#random);
    return Buffer.from(this.#pending);
  }

  #takeNonce(): Buffer {
    const nonce = this.#pending;
    this.#pending = undefined;
    if (nonce === undefined)
      throw fail('NONCE', 'no nonce outstanding (already used or never issued)', 'nonce');
    return nonce;
  }

  /** Opens a key token answering the outstanding nonce. */
  openKeyToken(token: Uint8Array, at?: Date): OpenedKeyToken {
    const nonce = this.#takeNonce();
    return openKeyToken({
      token,
      krd: { cert: this.cert, privateKey: this.#privateKey },
      caRoot: this.caRoot,
      expectedNonce: nonce,
      at,
      binding: this.#binding,
    });
  }

  /** Applies a bind, rebind or unbind token answering the outstanding nonce. */
  applyBindToken(token: Uint8Array, at?: Date): BindResult {
    const nonce = this.#takeNonce();
    const result = applyBindToken({
      state: this.#binding,
      token,
      krd: { cert: this.cert },
      caRoot: this.caRoot,
      expectedNonce: nonce,
      at,
    });
    this.#binding = result.state;
    return result;
  }
}
