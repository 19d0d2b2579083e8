/**
 * The cert-rsa authentication method of key injection: both ends hold an RSA-2048 key and a
 * certificate of one vendor CA (ca.ts), the key loading device as KDH, the PIN pad as KRD, and
 * the CA root to check the other side's certificate against. Used when a device has no transport
 * KBPK from manufacture, or the vendor prefers certificates (docs/key-injection.md "cert-rsa").
 *
 * Every proof is an RSA-PSS (SHA-256) signature over a role label and length-prefixed parts:
 * both nonces and the SHA-256 of both certificates, so a signature made for one session, one
 * pair of certificates or one role cannot be used for another.
 */
import { constants, createHash, createPrivateKey, type KeyObject, sign, verify } from 'node:crypto';
import { PoskeyError } from '../errors.js';
import { type CertRole, verifyChain } from './ca.js';
import { type KeyloadError, KeyloadErrorCode, keyloadError, labelledInput } from './protocol.js';
import { type Certificate, parseCertificate } from './x509.js';

/** One side's cert-rsa credentials. */
export interface CertCredentials {
  /** This side's certificate, PEM. */
  certificate: string;
  /** Its RSA private key (a KeyObject or PKCS#8/PKCS#1 PEM). */
  privateKey: KeyObject | string;
  /** The vendor CA root (PEM) the other side's certificate must chain to. */
  vendorCa: string;
}

/** Credentials parsed once: a bad file fails at start, not in the middle of a session. */
export interface CertIdentity {
  cert: Certificate;
  privateKey: KeyObject;
  vendorCa: Certificate;
  /** The certificate as sent on the line. */
  pem: string;
}

/** Who signs what. `device`/`loaded` are device signatures, `loader`/`bind` the loader's. */
export type CertProofRole = 'device' | 'loader' | 'loaded' | 'bind';

const LABEL = 'poskey-keyload/1 cert-rsa';
const PSS = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } as const;

/**
 * Parses and checks credentials: the certificate and root parse, the key is RSA and belongs to
 * the certificate (a mismatch would only show as a failed signature on the peer's side).
 * @throws POSKEY_ERR_KEYLOAD_OPTION naming `field`
 */
export function certIdentity(creds: CertCredentials, field: string): CertIdentity {
  const option = (reason: string, sub: string, cause?: unknown) =>
    keyloadError(KeyloadErrorCode.OPTION, reason, `${field}.${sub}`, cause);
  let cert: Certificate;
  let vendorCa: Certificate;
  let privateKey: KeyObject;
  try {
    cert = parseCertificate(creds.certificate);
  } catch (e) {
    throw option('is not a PEM certificate', 'certificate', e);
  }
  try {
    vendorCa = parseCertificate(creds.vendorCa);
  } catch (e) {
    throw option('is not a PEM certificate', 'vendorCa', e);
  }
  try {
    privateKey = typeof creds.privateKey === 'string' ? createPrivateKey(creds.privateKey) : creds.privateKey;
  } catch (e) {
    throw option('is not a PEM private key', 'privateKey', e);
  }
  if (privateKey?.asymmetricKeyType !== 'rsa' || cert.keyAlgorithm !== 'rsa')
    throw option('cert-rsa needs an RSA key and certificate', 'privateKey');
  if (
    !verify('sha256', Buffer.from('probe'), cert.publicKey, sign('sha256', Buffer.from('probe'), privateKey))
  )
    throw option('the private key does not belong to the certificate', 'privateKey');
  return { cert, privateKey, vendorCa, pem: creds.certificate };
}

/** SHA-256 of a certificate's DER: what proofs bind instead of the whole certificate. */
export function certHash(cert: Certificate): Buffer {
  return createHash('sha256').update(cert.der).digest();
}

/** The signed input of a proof. */
export function certProofInput(role: CertProofRole, parts: readonly Uint8Array[]): Buffer {
  return labelledInput(`${LABEL} ${role}`, parts);
}

export function signCertProof(key: KeyObject, role: CertProofRole, parts: readonly Uint8Array[]): Buffer {
  return sign('sha256', certProofInput(role, parts), { key, ...PSS });
}

/** False (never a throw) for a bad or malformed signature. */
export function verifyCertProof(
  cert: Certificate,
  role: CertProofRole,
  parts: readonly Uint8Array[],
  signature: Uint8Array,
): boolean {
  try {
    return verify('sha256', certProofInput(role, parts), { key: cert.publicKey, ...PSS }, signature);
  } catch {
    return false;
  }
}

/** Chain and validity failures of ca.ts and the keyload code each one is. */
const CERT_FAILURES: Readonly<Record<string, 'CERT_UNTRUSTED' | 'CERT_VALIDITY'>> = {
  POSKEY_ERR_CERT_CHAIN: 'CERT_UNTRUSTED',
  POSKEY_ERR_CERT_ROLE: 'CERT_UNTRUSTED',
  POSKEY_ERR_CERT_FORMAT: 'CERT_UNTRUSTED',
  POSKEY_ERR_CERT_INPUT: 'CERT_UNTRUSTED',
  POSKEY_ERR_CERT_EXPIRED: 'CERT_VALIDITY',
  POSKEY_ERR_CERT_NOT_YET_VALID: 'CERT_VALIDITY',
  POSKEY_ERR_ASN1: 'CERT_UNTRUSTED',
};

/** Which certificate problem an error of ca.ts / x509.ts is, or undefined for another error. */
export function certFailureOf(e: unknown): 'CERT_UNTRUSTED' | 'CERT_VALIDITY' | undefined {
  return e instanceof PoskeyError ? CERT_FAILURES[e.code] : undefined;
}

/**
 * Checks the other side's certificate: chains to the vendor root, is valid at `at`, has `role`
 * and an RSA key.
 * @throws POSKEY_ERR_KEYLOAD_CERT_UNTRUSTED, POSKEY_ERR_KEYLOAD_CERT_VALIDITY
 */
export function checkPeerCertificate(
  pem: string,
  vendorCa: Certificate,
  role: CertRole,
  at: Date,
  whose: string,
): Certificate {
  let cert: Certificate;
  try {
    cert = verifyChain(pem, vendorCa, { at, role });
  } catch (e) {
    const kind = certFailureOf(e);
    if (kind === undefined) throw e;
    const detail = (e as PoskeyError).reason ?? (e as Error).message;
    const reason =
      kind === 'CERT_VALIDITY'
        ? `the ${whose} certificate is outside its validity at ${at.toISOString()}: ${detail}`
        : `the ${whose} certificate is not a ${role.toUpperCase()} certificate of the vendor CA ${vendorCa.subject.text}: ${detail}`;
    throw keyloadError(KeyloadErrorCode[kind], reason, 'certificate', e) as KeyloadError;
  }
  if (cert.keyAlgorithm !== 'rsa')
    throw keyloadError(
      KeyloadErrorCode.CERT_UNTRUSTED,
      `the ${whose} certificate has no RSA key`,
      'certificate',
    );
  return cert;
}
