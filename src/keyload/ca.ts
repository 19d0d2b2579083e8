/**
 * A small certificate authority for remote key loading: one root (RSA-2048 or SM2) that issues
 * KDH (key distribution host) and KRD (key receiving device) certificates, and the chain check
 * both sides run on each other's certificate.
 *
 * TR-34 lets one CA serve both roles, so a rogue KRD with a valid certificate could pose as a KDH
 * (clover/clover-tr34-host README). Every certificate therefore carries its role: OU=KDH or OU=KRD
 * in the subject, with a matching key usage (KDH: digitalSignature, it signs tokens; KRD:
 * keyEncipherment, keys are enveloped to it), and `verifyChain(…, { role })` checks both.
 *
 * On disk (`initCaDir`/`issueToDir`): `ca.cert.pem`, `ca.key.pem` (PKCS#8, mode 0600) and
 * `issued/<role>-<cn>-<serial>.cert.pem|.key.pem`. A file CA is for development and tests; a
 * production root key belongs in an HSM.
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PoskeyError } from '../errors.js';
import { generateSm2KeyPair } from './sm2.js';
import {
  buildCertificate,
  type Certificate,
  derToPem,
  type KeyAlgorithm,
  type KeyUsage,
  keyAlgorithmOf,
  parseCertificate,
  verifyCertificateSignature,
} from './x509.js';

/** The two TR-34 roles a leaf certificate can have. */
export type CertRole = 'kdh' | 'krd';

/** Subject OU that marks each role. */
export const ROLE_MARKER: Readonly<Record<CertRole, string>> = { kdh: 'KDH', krd: 'KRD' };

/**
 * Key usage this CA puts in each role's certificates: a KRD also signs (its cert-rsa proofs in
 * serial injection, cert-auth.ts), so it gets digitalSignature beside keyEncipherment.
 */
export const ISSUED_KEY_USAGE: Readonly<Record<CertRole, readonly KeyUsage[]>> = {
  kdh: ['digitalSignature'],
  krd: ['keyEncipherment', 'digitalSignature'],
};

/** Key usage each role must carry. */
export const ROLE_KEY_USAGE: Readonly<Record<CertRole, KeyUsage>> = {
  kdh: 'digitalSignature',
  krd: 'keyEncipherment',
};

export const CA_CERT_FILE = 'ca.cert.pem';
export const CA_KEY_FILE = 'ca.key.pem';
export const ISSUED_DIR = 'issued';

/** Default lifetimes in days. */
export const DEFAULT_ROOT_DAYS = 3650;
export const DEFAULT_LEAF_DAYS = 365;

/** Certificates are back-dated by this much so a device whose clock is a little slow accepts them. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DAY_MS = 86_400_000;

/** A certificate authority in memory. */
export interface CertificateAuthority {
  algorithm: KeyAlgorithm;
  cert: Certificate;
  privateKey: KeyObject;
}

/** A certificate input: parsed, DER bytes or PEM text. */
export type CertificateInput = Certificate | Uint8Array | string;

const inputError = (reason: string, field: string) =>
  new PoskeyError('POSKEY_ERR_CA_INPUT', reason, { field });

/** Accepts a parsed certificate, DER or PEM. */
export function asCertificate(input: CertificateInput): Certificate {
  if (typeof input === 'string' || input instanceof Uint8Array) return parseCertificate(input);
  if (input && typeof input === 'object' && Buffer.isBuffer((input as Certificate).tbs)) return input;
  throw inputError('expected a certificate (parsed, DER or PEM)', 'certificate');
}

/** A fresh key pair: RSA-2048 or SM2. */
export function generateKeyPair(algorithm: KeyAlgorithm): { publicKey: KeyObject; privateKey: KeyObject } {
  if (algorithm === 'rsa') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  if (algorithm === 'sm2') return generateSm2KeyPair();
  throw new PoskeyError('POSKEY_ERR_KEY_ALGORITHM', `unknown algorithm '${String(algorithm)}'`, {
    field: 'algorithm',
  });
}

function validity(
  opts: { days?: number | undefined; notBefore?: Date | undefined; notAfter?: Date | undefined },
  defaultDays: number,
  now: Date,
) {
  const days = opts.days ?? defaultDays;
  if (!Number.isInteger(days) || days < 1 || days > 36500)
    throw inputError('days must be a whole number 1-36500', 'days');
  const notBefore = opts.notBefore ?? new Date(now.getTime() - CLOCK_SKEW_MS);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + CLOCK_SKEW_MS + days * DAY_MS);
  return { notBefore, notAfter };
}

export interface RootOptions {
  algorithm?: KeyAlgorithm;
  cn?: string;
  o?: string;
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  now?: Date;
}

/** A new self-signed root (basicConstraints cA, path length 0: it issues only leaf certificates). */
export function createRootCa(opts: RootOptions = {}): CertificateAuthority {
  const algorithm = opts.algorithm ?? 'rsa';
  const keys = generateKeyPair(algorithm);
  const der = buildCertificate({
    subject: { cn: opts.cn ?? 'poskey RKL Root CA', o: opts.o },
    publicKey: keys.publicKey,
    selfSignKey: keys.privateKey,
    ...validity(opts, DEFAULT_ROOT_DAYS, opts.now ?? new Date()),
    keyUsage: ['keyCertSign', 'cRLSign'],
    ca: { pathLength: 0 },
  });
  return { algorithm, cert: parseCertificate(der), privateKey: keys.privateKey };
}

export interface IssueOptions {
  role: CertRole;
  /** Subject common name (the host or device name). */
  cn: string;
  o?: string;
  /** Device serial number, written as the subject SERIALNUMBER attribute. */
  deviceSerial?: string;
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  now?: Date;
  /** The subject's own public key (a device that generated its key pair inside); else one is generated. */
  publicKey?: KeyObject;
}

/**
 * Issues a KDH or KRD certificate under `ca`. Without `publicKey` a key pair of the CA's
 * algorithm is generated and its private key returned.
 * @throws POSKEY_ERR_CA_INPUT for a bad role or lifetime, POSKEY_ERR_CERT_INPUT for bad names
 */
export function issueCertificate(
  ca: CertificateAuthority,
  opts: IssueOptions,
): { cert: Certificate; privateKey: KeyObject | undefined } {
  if (opts.role !== 'kdh' && opts.role !== 'krd') throw inputError(`role must be kdh or krd`, 'role');
  const keys = opts.publicKey === undefined ? generateKeyPair(ca.algorithm) : undefined;
  const publicKey = opts.publicKey ?? keys!.publicKey;
  if (keyAlgorithmOf(publicKey, 'publicKey') !== ca.algorithm) {
    throw inputError(`a ${ca.algorithm} CA issues ${ca.algorithm} certificates only`, 'publicKey');
  }
  const der = buildCertificate({
    subject: { cn: opts.cn, o: opts.o, ou: ROLE_MARKER[opts.role], serialNumber: opts.deviceSerial },
    publicKey,
    issuer: { cert: ca.cert, privateKey: ca.privateKey },
    ...validity(opts, DEFAULT_LEAF_DAYS, opts.now ?? new Date()),
    keyUsage: [...ISSUED_KEY_USAGE[opts.role]],
  });
  return { cert: parseCertificate(der), privateKey: keys?.privateKey };
}

// ---------------------------------------------------------------------------------------------
// Chain verification
// ---------------------------------------------------------------------------------------------

const chainError = (reason: string, field = 'certificate') =>
  new PoskeyError('POSKEY_ERR_CERT_CHAIN', reason, { field });

function checkDates(cert: Certificate, at: Date, field: string): void {
  if (at.getTime() < cert.notBefore.getTime()) {
    throw new PoskeyError(
      'POSKEY_ERR_CERT_NOT_YET_VALID',
      `not valid before ${cert.notBefore.toISOString()}`,
      { field },
    );
  }
  if (at.getTime() > cert.notAfter.getTime()) {
    throw new PoskeyError('POSKEY_ERR_CERT_EXPIRED', `expired ${cert.notAfter.toISOString()}`, { field });
  }
}

/**
 * Checks that `cert` was issued by `root` and, when `role` is given, that it is a leaf of that
 * role. Order: the root is a self-signed CA; issuer name, key identifier and signature link the
 * certificate to it; both are valid at `at` (default now); the role marker and key usage fit.
 * @returns the parsed certificate
 * @throws POSKEY_ERR_CERT_CHAIN, POSKEY_ERR_CERT_EXPIRED, POSKEY_ERR_CERT_NOT_YET_VALID, POSKEY_ERR_CERT_ROLE
 */
export function verifyChain(
  certInput: CertificateInput,
  rootInput: CertificateInput,
  opts: { at?: Date; role?: CertRole } = {},
): Certificate {
  const cert = asCertificate(certInput);
  const root = asCertificate(rootInput);
  const at = opts.at ?? new Date();
  if (!root.basicConstraints?.ca || !root.keyUsage?.includes('keyCertSign')) {
    throw chainError('the root is not a CA certificate', 'root');
  }
  if (!root.issuer.der.equals(root.subject.der) || !verifyCertificateSignature(root, root.publicKey)) {
    throw chainError('the root is not self-signed', 'root');
  }
  if (!cert.issuer.der.equals(root.subject.der))
    throw chainError(`issued by ${cert.issuer.text}, not by the root`);
  if (cert.authorityKeyId && root.subjectKeyId && !cert.authorityKeyId.equals(root.subjectKeyId)) {
    throw chainError('authority key identifier does not match the root');
  }
  if (!verifyCertificateSignature(cert, root.publicKey))
    throw chainError('signature does not verify under the root key');
  checkDates(root, at, 'root');
  checkDates(cert, at, 'certificate');
  if (opts.role !== undefined) checkRole(cert, opts.role);
  return cert;
}

/** The role marker and key usage of a leaf. @throws POSKEY_ERR_CERT_ROLE */
export function checkRole(cert: Certificate, role: CertRole): void {
  const marker = ROLE_MARKER[role];
  const fail = (reason: string) => new PoskeyError('POSKEY_ERR_CERT_ROLE', reason, { field: 'certificate' });
  if (cert.basicConstraints?.ca) throw fail(`a CA certificate cannot act as ${marker}`);
  if (cert.subject.ou !== marker)
    throw fail(`subject role is ${cert.subject.ou ?? 'missing'}, expected ${marker}`);
  if (!cert.keyUsage?.includes(ROLE_KEY_USAGE[role]))
    throw fail(`a ${marker} certificate needs ${ROLE_KEY_USAGE[role]}`);
}

/** The role a certificate is marked with, if any. */
export function roleOf(cert: Certificate): CertRole | undefined {
  return cert.subject.ou === 'KDH' ? 'kdh' : cert.subject.ou === 'KRD' ? 'krd' : undefined;
}

// ---------------------------------------------------------------------------------------------
// Directory storage
// ---------------------------------------------------------------------------------------------

function writePrivate(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
}

/**
 * Creates a root CA in `dir` (made if missing).
 * @throws POSKEY_ERR_CA_EXISTS when `dir` already holds a CA
 */
export function initCaDir(dir: string, opts: RootOptions = {}): CertificateAuthority {
  if (existsSync(join(dir, CA_CERT_FILE)) || existsSync(join(dir, CA_KEY_FILE))) {
    throw new PoskeyError('POSKEY_ERR_CA_EXISTS', `${dir} already holds a CA`, { field: 'dir' });
  }
  const ca = createRootCa(opts);
  mkdirSync(join(dir, ISSUED_DIR), { recursive: true, mode: 0o700 });
  writePrivate(join(dir, CA_KEY_FILE), ca.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  writeFileSync(join(dir, CA_CERT_FILE), derToPem(ca.cert.der, 'CERTIFICATE'), { flag: 'wx' });
  return ca;
}

/** Loads the CA in `dir`. @throws POSKEY_ERR_CA_NOT_FOUND */
export function loadCaDir(dir: string): CertificateAuthority {
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(join(dir, CA_CERT_FILE), 'utf8');
    keyPem = readFileSync(join(dir, CA_KEY_FILE), 'utf8');
  } catch (e) {
    throw new PoskeyError('POSKEY_ERR_CA_NOT_FOUND', `no CA in ${dir} (run poskey ca init)`, {
      field: 'dir',
      cause: e,
    });
  }
  const cert = parseCertificate(certPem);
  const privateKey = createPrivateKey(keyPem);
  return { algorithm: cert.keyAlgorithm, cert, privateKey };
}

/** A file-system-safe stem for a certificate: role, common name, first 8 hex digits of the serial. */
function fileStem(role: CertRole, cert: Certificate): string {
  const slug = (cert.subject.cn ?? 'cert').replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 40);
  return `${role}-${slug}-${cert.serialNumber.toString('hex').slice(0, 8)}`;
}

/** Issues a certificate with the CA in `dir` and writes it (and the generated key) under `issued/`. */
export function issueToDir(
  dir: string,
  opts: IssueOptions,
): { cert: Certificate; privateKey: KeyObject | undefined; certPath: string; keyPath: string | undefined } {
  const ca = loadCaDir(dir);
  const { cert, privateKey } = issueCertificate(ca, opts);
  mkdirSync(join(dir, ISSUED_DIR), { recursive: true, mode: 0o700 });
  const stem = join(dir, ISSUED_DIR, fileStem(opts.role, cert));
  const certPath = `${stem}.cert.pem`;
  const keyPath = privateKey ? `${stem}.key.pem` : undefined;
  if (privateKey && keyPath)
    writePrivate(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  writeFileSync(certPath, derToPem(cert.der, 'CERTIFICATE'), { flag: 'wx' });
  return { cert, privateKey, certPath, keyPath };
}

/** The certificates under `dir/issued`, with their file names. */
export function listIssued(dir: string): { file: string; cert: Certificate }[] {
  const issued = join(dir, ISSUED_DIR);
  if (!existsSync(issued)) return [];
  return readdirSync(issued)
    .filter((f) => f.endsWith('.cert.pem'))
    .sort()
    .map((file) => ({
      file: join(issued, file),
      cert: parseCertificate(readFileSync(join(issued, file), 'utf8')),
    }));
}
