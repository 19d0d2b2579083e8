/**
 * The terminal side of remote key loading (RKL) over HTTPS (the host side is src/host/rkl):
 * RT-KRD nonce → POST /rkl/v1/token → open KT-KDH (KDH chain to the vendor CA, signature, nonce,
 * recipient, key block) → header fits the pad's algorithm → the PIN pad loads the TMK into its
 * write-only slot, checking the host's KCV → POST /rkl/v1/confirm with the pad's KCV.
 *
 * The device key pair and certificate are held next to the PinPad (the pad keeps only symmetric
 * keys for PINs and MACs), as the factory transport KBPK is in src/keyload/device.ts. The clear
 * TMK lives only between `openKeyToken` and `injectTmk`, then is zeroized.
 */
import { request } from 'node:https';
import { zeroize } from '../crypto/bytes.js';
import { PoskeyError } from '../errors.js';
import type { CertificateInput } from '../keyload/ca.js';
import { type Tr34Credentials, Tr34Krd } from '../keyload/tr34.js';
import { derToPem } from '../keyload/x509.js';
import type { MasterKeyAlgorithm, PinPad } from './pinpad.js';

export interface RklClientOptions {
  /** Base URL of the host's RKL listener, e.g. https://127.0.0.1:8443. */
  url: string;
  tid: string;
  pad: PinPad;
  /** The device (KRD) certificate and private key. */
  krd: Tr34Credentials;
  /** The vendor root the KDH certificate must chain to. */
  vendorCa: CertificateInput;
  /** PEM CA for the HTTPS certificate (default: the system's). */
  tlsCa?: string | Buffer;
  algorithm: MasterKeyAlgorithm;
  /** TMK slot; default 0. */
  slot?: number;
  timeoutMs?: number;
  /** Device clock for the certificate checks; default now. */
  at?: Date;
}

export interface RklResult {
  tid: string;
  serial: string;
  slot: number;
  kcv: string;
  tmkSource: 'hsm' | 'registry';
}

/** The header algorithm letter each pad algorithm takes (TR-31: T TDES, poskey's 4 SM4). */
const HEADER_ALGORITHM: Readonly<Record<MasterKeyAlgorithm, string>> = { tdes: 'T', sm4: '4' };

/** A failure the host answered with: its code, field and reason. */
export class RklClientError extends PoskeyError {
  readonly status: number;
  constructor(code: string, reason: string, field: string | undefined, status: number) {
    super(code, reason, { field });
    this.status = status;
  }
}

const clientError = (code: string, reason: string, field: string, cause?: unknown) =>
  new PoskeyError(code, reason, { field, cause });

export function postJson(
  url: string,
  body: unknown,
  opts: { tlsCa?: string | Buffer; timeoutMs?: number },
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body));
    const req = request(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
        ...(opts.tlsCa === undefined ? {} : { ca: opts.tlsCa }),
        timeout: opts.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          let json: Record<string, unknown> = {};
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
          } catch {
            // a non-JSON answer is reported by status below
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) =>
      reject(
        clientError(
          'POSKEY_ERR_RKL_UNREACHABLE',
          `${url}: ${(e as NodeJS.ErrnoException).code ?? e.message}`,
          'url',
          e,
        ),
      ),
    );
    req.end(payload);
  });
}

async function call(
  base: string,
  path: string,
  body: unknown,
  opts: RklClientOptions,
): Promise<Record<string, unknown>> {
  const { status, json } = await postJson(`${base}${path}`, body, opts);
  if (status >= 400 || status === 0) {
    const message = typeof json.message === 'string' ? json.message : `HTTP ${status}`;
    const field = typeof json.field === 'string' ? json.field : undefined;
    const reason =
      field !== undefined && message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
    throw new RklClientError(
      typeof json.code === 'string' ? json.code : 'POSKEY_ERR_RKL_HTTP',
      reason,
      field,
      status,
    );
  }
  return json;
}

function str(json: Record<string, unknown>, field: string): string {
  const v = json[field];
  if (typeof v !== 'string')
    throw clientError('POSKEY_ERR_RKL_RESPONSE', 'missing from the host answer', field);
  return v;
}

/**
 * Runs the two-pass flow for `opts.tid` and leaves the TMK active in the pad and the registry.
 * @throws RklClientError (the host's code), POSKEY_ERR_TR34_* / POSKEY_ERR_CERT_* (the token or the
 *   KDH certificate), POSKEY_ERR_RKL_HEADER, POSKEY_ERR_KCV_MISMATCH (the pad), POSKEY_ERR_RKL_UNREACHABLE
 */
export async function runRkl(opts: RklClientOptions): Promise<RklResult> {
  const base = opts.url.replace(/\/+$/, '');
  const slot = opts.slot ?? 0;
  const krd = new Tr34Krd({ cert: opts.krd.cert, privateKey: opts.krd.privateKey, caRoot: opts.vendorCa });
  const serial = krd.cert.subject.serialNumber;
  if (serial !== opts.pad.device.serial) {
    throw clientError(
      'POSKEY_ERR_RKL_DEVICE',
      `the certificate names device ${serial ?? 'none'}, this PIN pad is ${opts.pad.device.serial}`,
      'certificate',
    );
  }
  const nonce = krd.createNonce();
  const issued = await call(
    base,
    '/rkl/v1/token',
    { tid: opts.tid, certificate: derToPem(krd.cert.der, 'CERTIFICATE'), nonce: nonce.toString('hex') },
    opts,
  );
  const opened = krd.openKeyToken(Buffer.from(str(issued, 'token'), 'base64'), opts.at);
  let kcv: string;
  try {
    if (opened.header[7] !== HEADER_ALGORITHM[opts.algorithm]) {
      throw clientError(
        'POSKEY_ERR_RKL_HEADER',
        `the key block header ${opened.header} is not a ${opts.algorithm.toUpperCase()} key`,
        'keyBlockHeader',
      );
    }
    kcv = opts.pad.injectTmk(slot, opened.clearKey, {
      algorithm: opts.algorithm,
      kcv: str(issued, 'kcv'),
    }).kcv;
  } finally {
    zeroize(opened.clearKey);
  }
  const confirmed = await call(base, '/rkl/v1/confirm', { session: str(issued, 'session'), kcv }, opts);
  return {
    tid: str(confirmed, 'tid'),
    serial,
    slot,
    kcv,
    tmkSource: str(issued, 'tmkSource') === 'registry' ? 'registry' : 'hsm',
  };
}
