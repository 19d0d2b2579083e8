/**
 * The key distribution host (KDH) side of remote key loading (RKL), without HTTP: the two-pass
 * TR-34 flow of src/keyload/tr34.ts against the host's registry and HSM.
 *
 *   issue    device certificate + fresh nonce + TID → checks (nonce unseen, certificate chains to
 *            the vendor CA as a KRD and is valid now, TID registered, device serial the registry's,
 *            key algorithm fits the terminal) → TMK (the registry's, else a new one from the HSM)
 *            → KT-KDH token signed by the KDH, enveloped to the device, with its TR-31 header.
 *   confirm  the device's check value of the TMK it loaded, compared in constant time; only then
 *            is the registry entry bound (TID, device serial, TMK LMK block + KCV) and audited.
 *
 * The HSM builds the token around the TMK (`exportKeyTr34`), so the clear TMK exists only inside
 * the HSM and the device's PIN pad. Nothing clear is logged, returned or stored.
 */
import { randomBytes } from 'node:crypto';
import { constantTimeEqual } from '../../crypto/bytes.js';
import { isPoskeyError, PoskeyError } from '../../errors.js';
import type { ExportTr34Request, HsmClient, LmkKeyBlock } from '../../hsm/api.js';
import { asCertificate, type CertificateInput, verifyChain } from '../../keyload/ca.js';
import { type AuditSink, storeRegistry } from '../../keyload/loader.js';
import { TR34_TMK_HEADER, type Tr34Credentials } from '../../keyload/tr34.js';
import { type Certificate, type KeyAlgorithm, parseCertificate, pemToDer } from '../../keyload/x509.js';
import type { Repository } from '../../store/types.js';

export type RklErrorCode =
  | 'POSKEY_ERR_RKL_INPUT'
  | 'POSKEY_ERR_RKL_NONCE_REPLAY'
  | 'POSKEY_ERR_RKL_UNKNOWN_TID'
  | 'POSKEY_ERR_RKL_WRONG_DEVICE'
  | 'POSKEY_ERR_RKL_ALGORITHM'
  | 'POSKEY_ERR_RKL_SESSION'
  | 'POSKEY_ERR_RKL_KCV_MISMATCH'
  | 'POSKEY_ERR_RKL_HSM';

export class RklError extends PoskeyError {}

const rklError = (code: RklErrorCode, reason: string, field: string, cause?: unknown) =>
  new RklError(code, reason, { field, cause });

export interface RklServiceOptions {
  hsm: Pick<HsmClient, 'generateKey' | 'exportKeyTr34' | 'checkValue'>;
  store: Pick<Repository, 'terminals' | 'transaction'>;
  /** One per key algorithm the host loads over (RSA for TDES terminals, SM2 for SM4 ones). */
  profiles: readonly RklProfile[];
  audit?: AuditSink;
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
  /** How long an issued token waits for its confirmation; default 10 minutes. */
  sessionTtlMs?: number;
  /** Nonces remembered against replay (oldest forgotten first); default 100 000. */
  nonceMemory?: number;
}

/** A trusted vendor root (device certificates chain to it with role KRD) and the KDH that answers them. */
export interface RklProfile {
  vendorCa: CertificateInput;
  kdh: Tr34Credentials;
}

interface Profile {
  vendorCa: Certificate;
  kdh: Tr34Credentials;
}

export interface IssueRequest {
  tid: string;
  /** The device (KRD) certificate, PEM or base64 DER. */
  certificate: string;
  /** The RT-KRD nonce, hex (8 to 16 bytes). */
  nonce: string;
}

export interface IssuedToken {
  session: string;
  tid: string;
  /** KT-KDH, base64 DER. */
  token: string;
  keyBlockHeader: string;
  /** The legacy 3-byte check value the device should compute for the TMK. */
  kcv: string;
  tmkSource: 'hsm' | 'registry';
  expiresAt: string;
}

export interface ConfirmRequest {
  session: string;
  kcv: string;
}

export interface Confirmed {
  tid: string;
  serial: string;
  kcv: string;
  /** False when the registry keeps no serial for this TID (it was registered without one). */
  serialRecorded: boolean;
}

interface Pending {
  tid: string;
  serial: string;
  tmk: { block: LmkKeyBlock; kcv: string };
  deviceKcv: string;
  expires: number;
}

const TID_RE = /^[0-9A-Za-z]{8}$/;
const HEX_RE = /^(?:[0-9A-Fa-f]{2})+$/;

function text(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || v.length === 0)
    throw rklError('POSKEY_ERR_RKL_INPUT', 'must be a non-empty string', field);
  return v;
}

/** A device certificate as PEM or base64 DER. */
function readCertificate(value: string): Certificate {
  try {
    return parseCertificate(
      value.includes('-----BEGIN') ? pemToDer(value, 'CERTIFICATE') : Buffer.from(value, 'base64'),
    );
  } catch (e) {
    throw rklError(
      'POSKEY_ERR_RKL_INPUT',
      `not a certificate: ${isPoskeyError(e) ? e.reason : 'unreadable'}`,
      'certificate',
      e,
    );
  }
}

export function parseIssueRequest(body: unknown): IssueRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw rklError('POSKEY_ERR_RKL_INPUT', 'must be a JSON object', 'body');
  const b = body as Record<string, unknown>;
  const tid = text(b, 'tid');
  if (!TID_RE.test(tid)) throw rklError('POSKEY_ERR_RKL_INPUT', 'must be 8 letters or digits', 'tid');
  const nonce = text(b, 'nonce');
  if (!HEX_RE.test(nonce) || nonce.length < 16 || nonce.length > 32)
    throw rklError('POSKEY_ERR_RKL_INPUT', 'must be 8 to 16 bytes of hex', 'nonce');
  return { tid, nonce: nonce.toLowerCase(), certificate: text(b, 'certificate') };
}

export function parseConfirmRequest(body: unknown): ConfirmRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw rklError('POSKEY_ERR_RKL_INPUT', 'must be a JSON object', 'body');
  const b = body as Record<string, unknown>;
  const session = text(b, 'session');
  const kcv = text(b, 'kcv');
  if (!HEX_RE.test(kcv) || kcv.length > 16)
    throw rklError('POSKEY_ERR_RKL_INPUT', 'must be a hex check value', 'kcv');
  return { session, kcv: kcv.toUpperCase() };
}

/** Runs an HSM call; its failures become RKL_HSM (the HSM's own code stays in `cause`). */
async function hsmStep<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw rklError('POSKEY_ERR_RKL_HSM', `${what}: ${isPoskeyError(e) ? e.code : 'failed'}`, 'hsm', e);
  }
}

export class RklService {
  readonly #o: RklServiceOptions;
  readonly #profiles = new Map<KeyAlgorithm, Profile>();
  readonly #nonces = new Map<string, number>();
  readonly #pending = new Map<string, Pending>();
  readonly #registry: ReturnType<typeof storeRegistry>;

  constructor(options: RklServiceOptions) {
    this.#o = options;
    for (const p of options.profiles) {
      const kdh = { cert: asCertificate(p.kdh.cert), privateKey: p.kdh.privateKey };
      const alg = kdh.cert.keyAlgorithm;
      if (this.#profiles.has(alg))
        throw rklError('POSKEY_ERR_RKL_INPUT', `two profiles for ${alg.toUpperCase()}`, 'profiles');
      this.#profiles.set(alg, { vendorCa: asCertificate(p.vendorCa), kdh });
    }
    this.#registry = storeRegistry(options.store);
  }

  #now(): number {
    return (this.#o.clock ?? Date.now)();
  }

  /** Remembers the nonce; a nonce seen before is a replay. */
  #useNonce(nonce: string): void {
    if (this.#nonces.has(nonce))
      throw rklError('POSKEY_ERR_RKL_NONCE_REPLAY', 'this nonce was already answered', 'nonce');
    this.#nonces.set(nonce, this.#now());
    const max = this.#o.nonceMemory ?? 100_000;
    for (const key of this.#nonces.keys()) {
      if (this.#nonces.size <= max) break;
      this.#nonces.delete(key);
    }
  }

  /** Checks the request and answers it with a key token awaiting confirmation. */
  async issue(input: unknown): Promise<IssuedToken> {
    const req = parseIssueRequest(input);
    const cert = readCertificate(req.certificate);
    this.#useNonce(req.nonce);
    const at = new Date(this.#now());
    const profile = this.#profiles.get(cert.keyAlgorithm);
    if (profile === undefined) {
      throw rklError(
        'POSKEY_ERR_RKL_ALGORITHM',
        `this host loads no keys over ${cert.keyAlgorithm.toUpperCase()}`,
        'certificate',
      );
    }
    verifyChain(cert, profile.vendorCa, { at, role: 'krd' });
    const serial = cert.subject.serialNumber;
    if (serial === undefined)
      throw rklError('POSKEY_ERR_RKL_WRONG_DEVICE', 'the certificate names no device serial', 'certificate');
    const terminal = await this.#o.store.terminals.get(req.tid);
    if (terminal === undefined)
      throw rklError('POSKEY_ERR_RKL_UNKNOWN_TID', `terminal ${req.tid} is not registered`, 'tid');
    if (terminal.serial !== null && terminal.serial !== serial) {
      throw rklError(
        'POSKEY_ERR_RKL_WRONG_DEVICE',
        `terminal ${req.tid} is bound to device ${terminal.serial}, the certificate names ${serial}`,
        'certificate',
      );
    }
    const wanted = terminal.keyAlgorithm === 'SM4' ? 'sm2' : 'rsa';
    if (cert.keyAlgorithm !== wanted) {
      throw rklError(
        'POSKEY_ERR_RKL_ALGORITHM',
        `a ${terminal.keyAlgorithm} terminal loads over ${wanted.toUpperCase()}, the device key is ${cert.keyAlgorithm.toUpperCase()}`,
        'certificate',
      );
    }
    const header = TR34_TMK_HEADER[terminal.keyAlgorithm];
    const tmk = await this.#tmk(terminal.keyAlgorithm, terminal.tmk?.block, {
      kdh: profile.kdh,
      krdCert: cert,
      nonce: Buffer.from(req.nonce, 'hex'),
      keyBlockHeader: header,
      algorithm: wanted,
      caRoot: profile.vendorCa,
      at,
    });
    const session = randomBytes(16).toString('hex');
    const expires = this.#now() + (this.#o.sessionTtlMs ?? 600_000);
    this.#sweep();
    this.#pending.set(session, {
      tid: req.tid,
      serial,
      tmk: tmk.registry,
      deviceKcv: tmk.deviceKcv,
      expires,
    });
    await this.#audit(
      'rkl.issue',
      req.tid,
      tmk.registry.kcv,
      `token for device ${serial} from ${tmk.source}`,
    );
    return {
      session,
      tid: req.tid,
      token: tmk.token.toString('base64'),
      keyBlockHeader: header,
      kcv: tmk.deviceKcv,
      tmkSource: tmk.source,
      expiresAt: new Date(expires).toISOString(),
    };
  }

  /** The device's KCV activates the TMK: the registry entry is bound and audited. */
  async confirm(input: unknown): Promise<Confirmed> {
    const req = parseConfirmRequest(input);
    this.#sweep();
    const p = this.#pending.get(req.session);
    if (p === undefined)
      throw rklError('POSKEY_ERR_RKL_SESSION', 'no such session, or it expired', 'session');
    this.#pending.delete(req.session);
    if (
      !constantTimeEqual(Buffer.from(req.kcv, 'latin1'), Buffer.from(p.deviceKcv.toUpperCase(), 'latin1'))
    ) {
      await this.#audit(
        'rkl.confirm',
        p.tid,
        undefined,
        `device ${p.serial} confirmed another check value`,
        'error',
      );
      throw rklError(
        'POSKEY_ERR_RKL_KCV_MISMATCH',
        'the device loaded a key with another check value',
        'kcv',
      );
    }
    const bound = await this.#registry.bind({
      tid: p.tid,
      serial: p.serial,
      tmk: p.tmk,
      delivered: { block: '', kcv: p.deviceKcv },
    });
    await this.#audit('rkl.confirm', p.tid, p.tmk.kcv, `TMK active on device ${p.serial}`);
    return { tid: p.tid, serial: p.serial, kcv: p.deviceKcv, serialRecorded: bound.serialRecorded };
  }

  #sweep(): void {
    const now = this.#now();
    for (const [id, p] of this.#pending) if (p.expires <= now) this.#pending.delete(id);
  }

  /**
   * The TMK (from `registryBlock`, else new from the HSM) enveloped for the device by the HSM
   * itself: the clear key never leaves it.
   */
  async #tmk(
    keyAlgorithm: 'TDES' | 'SM4',
    registryBlock: LmkKeyBlock | undefined,
    token: ExportTr34Request['token'],
  ): Promise<{
    token: Buffer;
    registry: { block: LmkKeyBlock; kcv: string };
    deviceKcv: string;
    source: 'hsm' | 'registry';
  }> {
    const { hsm } = this.#o;
    const block =
      registryBlock ??
      (
        await hsmStep('HSM TMK generation', () =>
          hsm.generateKey({ keyType: 'TMK', algorithm: keyAlgorithm === 'SM4' ? 'sm4' : 'tdes2' }, 'rkl'),
        )
      ).keyBlock;
    const out = await hsmStep('HSM TR-34 export of the TMK', () =>
      hsm.exportKeyTr34({ keyBlock: block, token }, 'rkl'),
    );
    const device = await hsmStep('HSM check value', () => hsm.checkValue(block, 'legacy', 3));
    return {
      token: Buffer.from(out.token, 'base64'),
      registry: { block, kcv: out.kcv.value },
      deviceKcv: device.value,
      source: registryBlock === undefined ? 'hsm' : 'registry',
    };
  }

  async #audit(
    action: string,
    tid: string,
    kcv: string | undefined,
    detail: string,
    result: 'ok' | 'error' = 'ok',
  ) {
    if (this.#o.audit === undefined) return;
    await this.#o.audit.append({ actor: 'rkl', action, keyId: tid, result, detail, ...(kcv ? { kcv } : {}) });
  }
}
