/**
 * poskey as the key loading device ("master POS"): injects a terminal master key into a PIN pad
 * over its key-loading port, and binds the terminal's registry entry in the same step.
 *
 *   open the line → HELLO / DEVICE_INFO → checks (protocol, clock, certificate, tamper, app order)
 *   → registry lookup (TID known, not bound to another device) → mutual authentication
 *   → TMK from the registry (exported) or new from the HSM, as TR-31 under the transport KBPK
 *   → LOAD_KEY / KEY_LOADED: the device's KCV must equal the HSM's
 *   → registry bind (TID, device serial, TMK block, KCV) → BIND / BIND_ACK (the device commits)
 *   → audit record.
 *
 * The registry is bound before the device commits: if the line drops in between, the registry
 * holds the new TMK and a re-run (`tmkSource: 'auto'` exports the registry's TMK) brings the
 * device to it. The clear TMK exists only inside the HSM and the PIN pad.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import { constantTimeEqual } from '../crypto/bytes.js';
import type { CheckValue } from '../crypto/kcv.js';
import { PoskeyError } from '../errors.js';
import type {
  ExportKeyRequest,
  ExportTr34Request,
  GeneratedKey,
  GenerateKeyRequest,
  KeyAlgorithm,
  LmkKeyBlock,
} from '../hsm/api.js';
import type { AuditEntry } from '../hsm/audit.js';
import type { Repository, StoredKey } from '../store/types.js';
import {
  type CertCredentials,
  type CertIdentity,
  certHash,
  certIdentity,
  checkPeerCertificate,
  signCertProof,
  verifyCertProof,
} from './cert-auth.js';
import {
  AUTH_METHOD_CERT,
  AUTH_METHOD_KBPK,
  checkAppOrder,
  describeAppOrder,
  fromDeviceError,
  type KeyloadAuthenticator,
  KeyloadError,
  KeyloadErrorCode,
  type KeyloadErrorCodeValue,
  type KeyloadMessage,
  keyloadError,
  type MessageOf,
  type MessageType,
  NONCE_BYTES,
  PROTOCOL_VERSION,
  prove,
  REQUIRED_APP_ORDER,
  verifyProof,
} from './protocol.js';
import { TR34_TMK_HEADER } from './tr34.js';
import {
  type ByteTransport,
  Link,
  type LinkOptions,
  type LinkTarget,
  openTarget,
  targetName,
} from './transport.js';
import type { Certificate } from './x509.js';

/** Default tolerance between the PC's clock and the device's. */
export const DEFAULT_CLOCK_TOLERANCE_MS = 5 * 60_000;
/** The PIN pad slot a terminal's TMK lives in (src/terminal/config.ts DEFAULT_SLOTS.tmk). */
export const DEFAULT_TMK_SLOT = 0;
const TID_RE = /^[\x21-\x7e]{8}$/;

/** The HSM operations injection needs; an `Hsm` or an `HsmClient` both fit. */
export interface KeyloadHsm {
  generateKey(req: GenerateKeyRequest, actor?: string): GeneratedKey | Promise<GeneratedKey>;
  exportKey(
    req: ExportKeyRequest,
    actor?: string,
  ): { cryptogram: string; kcv: CheckValue } | Promise<{ cryptogram: string; kcv: CheckValue }>;
  checkValue(
    keyBlock: LmkKeyBlock,
    method?: 'legacy' | 'cmac',
    length?: number,
  ): CheckValue | Promise<CheckValue>;
  /** cert-rsa only: the TMK as a TR-34 token to the device certificate, built inside the HSM. */
  exportKeyTr34?(
    req: ExportTr34Request,
    actor?: string,
  ): { token: string; kcv: CheckValue } | Promise<{ token: string; kcv: CheckValue }>;
}

/** A terminal as injection sees it. */
export interface TerminalRecord {
  tid: string;
  /** Device serial the TID is bound to, or null. */
  serial: string | null;
  keyAlgorithm: 'TDES' | 'SM4';
  tmk: StoredKey | null;
}

/** What injection binds: the TID to the device serial and the TMK the device confirmed. */
export interface Binding {
  tid: string;
  serial: string;
  /** The TMK as an LMK key block of poskey's HSM, with the HSM's KCV. */
  tmk: StoredKey;
  /**
   * The same TMK as the device received it, with the device's KCV: TR-31 under the transport KBPK
   * (kbpk-cmac) or a TR-34 token (cert-rsa; `tr34: true`).
   */
  delivered: { block: string; kcv: string; tr34?: boolean };
}

/** Where terminals are registered: the host's store, or its admin API. */
export interface KeyloadRegistry {
  /** The terminal; `tmk` is null when the registry cannot hand out its TMK block (the admin API). */
  lookup(tid: string): Promise<TerminalRecord | undefined>;
  /** Records the TMK and, where the registry can, the device serial for the TID. */
  bind(binding: Binding): Promise<{ serialRecorded: boolean }>;
}

/** Somewhere to append audit records (src/hsm/audit.ts `AuditLog` fits). */
export interface AuditSink {
  append(entry: AuditEntry): Promise<unknown>;
}

/** The transport KBPK on poskey's side: in the HSM for TR-31 export, and an authenticator for the line. */
export interface TransportKey {
  /** LMK key block of the KBPK (a KEK) in the HSM. */
  kbpk: LmkKeyBlock;
  auth: KeyloadAuthenticator;
}

export type TmkSource = 'auto' | 'hsm' | 'registry';

export interface DeviceCheckOptions {
  /** The authentication method that will be used; undefined: any method poskey speaks. */
  method?: string;
  /** PC clock; default `new Date()`. */
  now?: () => Date;
  clockToleranceMs?: number;
  requiredApps?: readonly string[];
}

export interface InjectOptions extends DeviceCheckOptions {
  /** The key-loading port: a serial path, TCP, or an open transport. */
  target: LinkTarget | { transport: ByteTransport };
  tid: string;
  hsm: KeyloadHsm;
  registry: KeyloadRegistry;
  /** kbpk-cmac: the transport KBPK. Give this or `certAuth`. */
  transportKey?: TransportKey;
  /**
   * cert-rsa: poskey's KDH certificate and key, and the vendor CA root the device certificate
   * must chain to. The TMK then travels as a TR-34 token (the HSM needs `exportKeyTr34`).
   */
  certAuth?: CertCredentials | CertIdentity;
  /** 'auto' (default): the registry's TMK when it has one, else a new one from the HSM. */
  tmkSource?: TmkSource;
  slot?: number;
  link?: LinkOptions;
  audit?: AuditSink;
  /** Audit actor; default 'keyload'. */
  actor?: string;
  /** Named in HELLO; default `poskey@<hostname>`. */
  loaderId?: string;
  /** Called as each step starts (progress, --trace). */
  onStep?: (step: InjectStep) => void;
}

export type InjectStep =
  | 'open'
  | 'hello'
  | 'registry'
  | 'authenticate'
  | 'tmk'
  | 'load'
  | 'bind-registry'
  | 'bind-device'
  | 'audit';

/** What a successful injection reports. */
export interface InjectionReport {
  tid: string;
  port: string;
  vendor: string;
  model: string;
  serial: string;
  firmware: string;
  apps: string[];
  /** Device clock minus PC clock, ms. */
  clockSkewMs: number;
  slot: number;
  /** Legacy 3-byte check value of the TMK, as device and HSM both computed it. */
  kcv: string;
  tmkSource: 'hsm' | 'registry';
  /** False when the registry could not record the serial (it keeps the TMK either way). */
  serialRecorded: boolean;
  durationMs: number;
}

/** A problem found in DEVICE_INFO before anything is loaded. */
export interface DeviceFinding {
  code: KeyloadErrorCodeValue;
  reason: string;
}

/** Device clock minus `now`, ms. */
export function clockSkew(info: MessageOf<'DEVICE_INFO'>, now: Date): number {
  const device = Date.parse(info.clock);
  if (Number.isNaN(device))
    throw keyloadError(KeyloadErrorCode.MESSAGE, 'device clock is not a date', 'clock');
  return device - now.getTime();
}

function formatSkew(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  const text =
    s >= 86400 ? `${(s / 86400).toFixed(1)} days` : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${s} s`;
  return `${text} ${ms > 0 ? 'ahead of' : 'behind'} the PC`;
}

/**
 * Everything DEVICE_INFO shows to be wrong, in the order a technician should fix it: protocol,
 * tamper, clock, certificate, applications.
 */
export function deviceFindings(
  info: MessageOf<'DEVICE_INFO'>,
  options: DeviceCheckOptions = {},
): DeviceFinding[] {
  const now = (options.now ?? (() => new Date()))();
  const tolerance = options.clockToleranceMs ?? DEFAULT_CLOCK_TOLERANCE_MS;
  const required = options.requiredApps ?? REQUIRED_APP_ORDER;
  const out: DeviceFinding[] = [];
  const methods = options.method === undefined ? [AUTH_METHOD_KBPK, AUTH_METHOD_CERT] : [options.method];
  if (info.version !== PROTOCOL_VERSION || !methods.some((m) => info.authMethods.includes(m))) {
    out.push({
      code: KeyloadErrorCode.WRONG_PROTOCOL,
      reason: `${info.vendor} ${info.model} speaks protocol version ${info.version} (${info.authMethods.join(', ') || 'no known authentication'}); poskey speaks ${PROTOCOL_VERSION} with ${methods.join(' or ')}`,
    });
  }
  if (info.tamper === 'attack') {
    out.push({
      code: KeyloadErrorCode.TAMPERED,
      reason: `${info.model} ${info.serial} reports a security attack (opened or hit) and has erased its keys`,
    });
  }
  const skew = clockSkew(info, now);
  if (Math.abs(skew) > tolerance) {
    out.push({
      code: KeyloadErrorCode.CLOCK_SKEW,
      reason: `the device clock (${info.clock}) is ${formatSkew(skew)} (${now.toISOString()}); tolerance ${Math.round(tolerance / 1000)} s`,
    });
  }
  if (info.certificate !== undefined) {
    const problem = certificateProblem(info.certificate, now);
    // On the cert path the certificate is the credential: its validity has the cert-rsa code.
    const code =
      options.method === AUTH_METHOD_CERT ? KeyloadErrorCode.CERT_VALIDITY : KeyloadErrorCode.CERTIFICATE;
    if (problem !== undefined) out.push({ code, reason: problem });
  }
  const order = checkAppOrder(info.apps, required);
  if (!order.ok) {
    out.push({
      code: order.problem === 'missing' ? KeyloadErrorCode.APP_MISSING : KeyloadErrorCode.APP_ORDER,
      reason: describeAppOrder(order, required),
    });
  }
  return out;
}

/** Why a device certificate is unusable at `now`, or undefined when it is within its validity. */
export function certificateProblem(pem: string, now: Date): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    return 'the device certificate cannot be parsed';
  }
  const from = new Date(cert.validFrom);
  const to = new Date(cert.validTo);
  if (now < from)
    return `the device certificate is not valid before ${from.toISOString()} (PC clock ${now.toISOString()})`;
  if (now > to)
    return `the device certificate expired on ${to.toISOString()} (PC clock ${now.toISOString()})`;
  return undefined;
}

function assertTid(tid: unknown): string {
  if (typeof tid !== 'string' || !TID_RE.test(tid)) {
    throw keyloadError(KeyloadErrorCode.OPTION, 'a TID is 8 printable characters', 'tid');
  }
  return tid;
}

function assertSlot(slot: unknown): number {
  if (!Number.isInteger(slot) || (slot as number) < 0 || (slot as number) > 254) {
    throw keyloadError(KeyloadErrorCode.OPTION, 'slot must be a whole number from 0 to 254', 'slot');
  }
  return slot as number;
}

/** Expects an answer of one type; an ERROR becomes the matching loader error. */
function expect<T extends MessageType>(reply: KeyloadMessage, type: T): MessageOf<T> {
  if (reply.type === 'ERROR') throw fromDeviceError(reply);
  if (reply.type !== type) {
    throw keyloadError(
      KeyloadErrorCode.MESSAGE,
      `expected ${type}, the device answered ${reply.type}`,
      'device',
    );
  }
  return reply as MessageOf<T>;
}

/** Runs an HSM or registry call, turning foreign errors into the stage's keyload error. */
async function stage<T>(code: KeyloadErrorCodeValue, what: string, run: () => T | Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof KeyloadError) throw e;
    const detail =
      e instanceof PoskeyError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
    throw keyloadError(code, `${what}: ${detail}`, code === KeyloadErrorCode.HSM ? 'hsm' : 'registry', e);
  }
}

const TMK_ALGORITHM: Readonly<Record<TerminalRecord['keyAlgorithm'], KeyAlgorithm>> = {
  TDES: 'tdes2',
  SM4: 'sm4',
};

/**
 * Injects the TMK of `tid` into the device on `target` and binds the registry entry.
 * @throws KeyloadError: _OPTION; line errors (_PORT_*, _CONNECT, _SERIAL_DRIVER, _SILENT, _GARBLED,
 *   _WRONG_PROTOCOL, _TIMEOUT, _CLOSED, _MESSAGE); device findings (_TAMPERED, _CLOCK_SKEW,
 *   _CERTIFICATE, _APP_ORDER, _APP_MISSING); _REGISTRY, _SERIAL_MISMATCH, _AUTH, _HSM, _KEY_BLOCK,
 *   _KCV_MISMATCH, _DEVICE, _AUDIT
 */
export async function injectTmk(options: InjectOptions): Promise<InjectionReport> {
  const started = Date.now();
  const tid = assertTid(options.tid);
  const slot = assertSlot(options.slot ?? DEFAULT_TMK_SLOT);
  const source = options.tmkSource ?? 'auto';
  if (!['auto', 'hsm', 'registry'].includes(source)) {
    throw keyloadError(KeyloadErrorCode.OPTION, "must be 'auto', 'hsm' or 'registry'", 'tmkSource');
  }
  const identity = loaderIdentity(options);
  const checks = { ...options, method: identity === undefined ? AUTH_METHOD_KBPK : AUTH_METHOD_CERT };
  const step = options.onStep ?? (() => undefined);
  step('open');
  const transport =
    'transport' in options.target ? options.target.transport : await openTarget(options.target);
  const port = 'transport' in options.target ? transport.name : targetName(options.target);
  const link = new Link(transport, options.link);
  let info: MessageOf<'DEVICE_INFO'> | undefined;
  try {
    step('hello');
    info = await hello(link, options);
    const findings = deviceFindings(info, checks);
    if (findings.length > 0) throw keyloadError(findings[0]!.code, findings[0]!.reason, 'device');
    const now = (options.now ?? (() => new Date()))();

    step('registry');
    const record = await stage(KeyloadErrorCode.REGISTRY, 'registry lookup', () =>
      options.registry.lookup(tid),
    );
    if (record === undefined) {
      throw keyloadError(
        KeyloadErrorCode.REGISTRY,
        `terminal ${tid} is not registered; register it on the host first`,
        'tid',
      );
    }
    if (record.serial !== null && record.serial !== info.serial) {
      throw keyloadError(
        KeyloadErrorCode.SERIAL_MISMATCH,
        `terminal ${tid} is bound to device ${record.serial}, this is ${info.serial}; unbind it in the registry if the device was replaced`,
        'serial',
      );
    }

    step('authenticate');
    const session =
      identity === undefined
        ? await authenticate(link, options.transportKey!.auth, info)
        : await authenticateCert(link, identity, info, now);

    step('tmk');
    const tmk = await tmkFor(options, record, source, session);

    step('load');
    const load = tmk.tr34 ? { token: tmk.block } : { block: tmk.block };
    const loaded = expect(await link.request({ type: 'LOAD_KEY', slot, ...load }), 'KEY_LOADED');
    if (loaded.slot !== slot || !(await session.verifyLoaded(loaded.slot, loaded.kcv, loaded.proof))) {
      throw keyloadError(
        identity === undefined ? KeyloadErrorCode.AUTH : KeyloadErrorCode.CERT_SIGNATURE,
        'KEY_LOADED is not authenticated by this session',
        'device',
      );
    }
    if (!constantTimeEqual(Buffer.from(loaded.kcv, 'ascii'), Buffer.from(tmk.deviceKcv, 'ascii'))) {
      throw keyloadError(
        KeyloadErrorCode.KCV_MISMATCH,
        `the device computed check value ${loaded.kcv}, the HSM ${tmk.deviceKcv}; nothing was committed`,
        'kcv',
      );
    }

    step('bind-registry');
    const bound = await stage(KeyloadErrorCode.REGISTRY, 'registry bind', () =>
      options.registry.bind({
        tid,
        serial: info!.serial,
        tmk: { block: tmk.lmkBlock, kcv: tmk.registryKcv },
        delivered: { block: tmk.block, kcv: loaded.kcv, ...(tmk.tr34 ? { tr34: true } : {}) },
      }),
    );

    step('bind-device');
    const proof = await session.proveBind(tid, loaded.kcv);
    expect(await link.request({ type: 'BIND', tid, kcv: loaded.kcv, proof }), 'BIND_ACK');

    const report: InjectionReport = {
      tid,
      port,
      vendor: info.vendor,
      model: info.model,
      serial: info.serial,
      firmware: info.firmware,
      apps: info.apps,
      clockSkewMs: clockSkew(info, now),
      slot,
      kcv: loaded.kcv,
      tmkSource: tmk.source,
      serialRecorded: bound.serialRecorded,
      durationMs: 0,
    };
    step('audit');
    await audit(options, { tid, result: 'ok', kcv: loaded.kcv, detail: auditDetail(report) });
    report.durationMs = Date.now() - started;
    return report;
  } catch (e) {
    if (
      info !== undefined &&
      options.audit !== undefined &&
      !(e instanceof KeyloadError && e.code === KeyloadErrorCode.AUDIT)
    ) {
      const code = e instanceof PoskeyError ? e.code : 'error';
      await audit(options, {
        tid,
        result: 'error',
        detail: `${code} serial ${info.serial} port ${port}`,
      }).catch(() => undefined);
    }
    throw e;
  } finally {
    await link.close().catch(() => undefined);
  }
}

/** HELLO: returns the device's DEVICE_INFO. */
export async function hello(
  link: Link,
  options: { now?: () => Date; loaderId?: string } = {},
): Promise<MessageOf<'DEVICE_INFO'>> {
  const now = (options.now ?? (() => new Date()))();
  const reply = await link.request({
    type: 'HELLO',
    version: PROTOCOL_VERSION,
    loaderId: options.loaderId ?? `poskey@${hostname()}`,
    time: now.toISOString(),
  });
  return expect(reply, 'DEVICE_INFO');
}

/** An authenticated session: its nonces, and the proofs of the method it was authenticated with. */
export interface AuthenticatedSession {
  method: string;
  loaderNonce: Buffer;
  deviceNonce: Buffer;
  /** Checks the device's KEY_LOADED proof. */
  verifyLoaded(slot: number, kcv: string, proof: Uint8Array): Promise<boolean>;
  /** poskey's BIND proof. */
  proveBind(tid: string, kcv: string): Promise<Buffer>;
  /** cert-rsa: the device certificate (the TR-34 recipient) and poskey's identity. */
  cert?: { device: Certificate; loader: CertIdentity };
}

/** Exactly one of `transportKey` and `certAuth`; cert credentials parsed once. */
function loaderIdentity(options: InjectOptions): CertIdentity | undefined {
  if ((options.transportKey === undefined) === (options.certAuth === undefined))
    throw keyloadError(
      KeyloadErrorCode.OPTION,
      'give transportKey (kbpk-cmac) or certAuth (cert-rsa)',
      'certAuth',
    );
  const c = options.certAuth;
  if (c === undefined) return undefined;
  return 'cert' in c ? c : certIdentity(c, 'certAuth');
}

/**
 * Mutual authentication: the device proves the KBPK over both nonces first, then poskey does.
 * @throws POSKEY_ERR_KEYLOAD_AUTH when the device's proof does not verify (different transport
 *   keys) or the device rejects poskey's
 */
export async function authenticate(
  link: Link,
  auth: KeyloadAuthenticator,
  info: MessageOf<'DEVICE_INFO'>,
): Promise<AuthenticatedSession> {
  const loaderNonce = randomBytes(NONCE_BYTES);
  const serial = Buffer.from(info.serial, 'utf8');
  const challenge = expect(
    await link.request({ type: 'AUTH_CHALLENGE', method: AUTH_METHOD_KBPK, nonce: loaderNonce }),
    'AUTH_RESPONSE',
  );
  const deviceNonce = challenge.nonce;
  if (!(await verifyProof(auth, 'device', [loaderNonce, deviceNonce, serial], challenge.proof))) {
    const theirs =
      info.kbpkKcv === undefined ? '' : ` (device KBPK KCV ${info.kbpkKcv}, poskey's ${auth.kbpkKcv})`;
    throw keyloadError(
      KeyloadErrorCode.AUTH,
      `transport key mismatch: the device does not hold poskey's KBPK${theirs}`,
      'transportKey',
    );
  }
  const proof = await prove(auth, 'loader', [deviceNonce, loaderNonce, serial]);
  expect(await link.request({ type: 'AUTH_CONFIRM', proof }), 'AUTH_OK');
  const both = (a: Uint8Array, b: Uint8Array) => [loaderNonce, deviceNonce, a, b];
  const slotKcv = (slot: number, kcv: string) => both(Buffer.from([slot]), Buffer.from(kcv, 'ascii'));
  return {
    method: AUTH_METHOD_KBPK,
    loaderNonce,
    deviceNonce,
    verifyLoaded: (slot, kcv, p) => verifyProof(auth, 'loaded', slotKcv(slot, kcv), p),
    proveBind: (tid, kcv) => prove(auth, 'bind', both(Buffer.from(tid, 'utf8'), Buffer.from(kcv, 'ascii'))),
  };
}

/**
 * cert-rsa mutual authentication: poskey checks the device certificate against the vendor CA,
 * sends its own with a nonce; the device signs both nonces and both certificate hashes, then
 * poskey does. See docs/key-injection.md "cert-rsa".
 * @throws POSKEY_ERR_KEYLOAD_CERT_UNTRUSTED / _CERT_VALIDITY (either certificate),
 *   POSKEY_ERR_KEYLOAD_NONCE (the device answered another nonce), POSKEY_ERR_KEYLOAD_CERT_SIGNATURE
 */
export async function authenticateCert(
  link: Link,
  id: CertIdentity,
  info: MessageOf<'DEVICE_INFO'>,
  now: Date,
): Promise<AuthenticatedSession> {
  if (info.certificate === undefined)
    throw keyloadError(KeyloadErrorCode.CERT_UNTRUSTED, 'the device presents no certificate', 'certificate');
  const device = checkPeerCertificate(info.certificate, id.vendorCa, 'krd', now, 'device');
  const loaderNonce = randomBytes(NONCE_BYTES);
  const response = expect(
    await link.request({
      type: 'AUTH_CHALLENGE',
      method: AUTH_METHOD_CERT,
      nonce: loaderNonce,
      loaderCertificate: id.pem,
    }),
    'AUTH_RESPONSE',
  );
  if (response.echo === undefined || !constantTimeEqual(response.echo, loaderNonce)) {
    throw keyloadError(KeyloadErrorCode.NONCE, 'the device answered another nonce than poskey sent', 'nonce');
  }
  const deviceNonce = response.nonce;
  const parts = (...more: Uint8Array[]) => [
    loaderNonce,
    deviceNonce,
    certHash(id.cert),
    certHash(device),
    Buffer.from(info.serial, 'utf8'),
    ...more,
  ];
  if (!verifyCertProof(device, 'device', parts(), response.proof)) {
    throw keyloadError(
      KeyloadErrorCode.CERT_SIGNATURE,
      `the device's signature does not verify under its certificate (${device.subject.text}): it does not hold that certificate's key`,
      'certificate',
    );
  }
  const proof = signCertProof(id.privateKey, 'loader', parts());
  expect(await link.request({ type: 'AUTH_CONFIRM', proof, echo: deviceNonce }), 'AUTH_OK');
  const text = (v: string, enc: BufferEncoding) => Buffer.from(v, enc);
  return {
    method: AUTH_METHOD_CERT,
    loaderNonce,
    deviceNonce,
    cert: { device, loader: id },
    verifyLoaded: async (slot, kcv, p) =>
      verifyCertProof(device, 'loaded', parts(Buffer.from([slot]), text(kcv, 'ascii')), p),
    proveBind: async (tid, kcv) =>
      signCertProof(id.privateKey, 'bind', parts(text(tid, 'utf8'), text(kcv, 'ascii'))),
  };
}

interface PreparedTmk {
  /** TR-31 block under the transport KBPK, or (`tr34`) a TR-34 token, base64. */
  block: string;
  tr34?: boolean;
  /** LMK key block for the registry. */
  lmkBlock: LmkKeyBlock;
  /** The HSM's default KCV, for the registry. */
  registryKcv: string;
  /** Legacy 3-byte KCV the device must confirm. */
  deviceKcv: string;
  source: 'hsm' | 'registry';
}

async function tmkFor(
  options: InjectOptions,
  record: TerminalRecord,
  source: TmkSource,
  session: AuthenticatedSession,
): Promise<PreparedTmk> {
  if (source === 'registry' && record.tmk === null) {
    throw keyloadError(
      KeyloadErrorCode.REGISTRY,
      `terminal ${record.tid} has no TMK in the registry`,
      'tmkSource',
    );
  }
  if (session.cert !== undefined) return tr34Tmk(options, record, source, session);
  return tr31Tmk(options, record, source);
}

function tmkAlgorithm(record: TerminalRecord): KeyAlgorithm {
  const algorithm = TMK_ALGORITHM[record.keyAlgorithm];
  if (algorithm === undefined) {
    throw keyloadError(
      KeyloadErrorCode.REGISTRY,
      `unknown key algorithm ${String(record.keyAlgorithm)}`,
      'keyAlgorithm',
    );
  }
  return algorithm;
}

/**
 * cert-rsa: the HSM envelopes the TMK (the registry's, or a new one) to the device certificate
 * and signs the token with poskey's KDH key; its nonce is the device's session nonce.
 */
async function tr34Tmk(
  options: InjectOptions,
  record: TerminalRecord,
  source: TmkSource,
  session: AuthenticatedSession,
): Promise<PreparedTmk> {
  const { hsm } = options;
  const actor = options.actor ?? 'keyload';
  const { device, loader } = session.cert!;
  if (hsm.exportKeyTr34 === undefined)
    throw keyloadError(KeyloadErrorCode.HSM, 'this HSM cannot build TR-34 tokens (cert-rsa)', 'hsm');
  const existing = source !== 'hsm' && record.tmk !== null ? record.tmk.block : undefined;
  const lmkBlock =
    existing ??
    (
      await stage(KeyloadErrorCode.HSM, 'HSM TMK generation', () =>
        hsm.generateKey({ keyType: 'TMK', algorithm: tmkAlgorithm(record) }, actor),
      )
    ).keyBlock;
  const token: ExportTr34Request['token'] = {
    kdh: { cert: loader.cert, privateKey: loader.privateKey },
    krdCert: device,
    nonce: session.deviceNonce,
    keyBlockHeader: TR34_TMK_HEADER[record.keyAlgorithm],
    caRoot: loader.vendorCa,
  };
  const out = await stage(KeyloadErrorCode.HSM, 'HSM TR-34 export of the TMK', () =>
    hsm.exportKeyTr34!({ keyBlock: lmkBlock, token }, actor),
  );
  const kcv = await stage(KeyloadErrorCode.HSM, 'HSM check value', () =>
    hsm.checkValue(lmkBlock, 'legacy', 3),
  );
  return {
    block: out.token,
    tr34: true,
    lmkBlock,
    registryKcv: out.kcv.value,
    deviceKcv: kcv.value,
    source: existing === undefined ? 'hsm' : 'registry',
  };
}

/** kbpk-cmac: the TMK as TR-31 under the transport KBPK. */
async function tr31Tmk(
  options: InjectOptions,
  record: TerminalRecord,
  source: TmkSource,
): Promise<PreparedTmk> {
  const { hsm } = options;
  const transportKey = options.transportKey!;
  const actor = options.actor ?? 'keyload';
  if (source !== 'hsm' && record.tmk !== null) {
    const lmkBlock = record.tmk.block;
    const out = await stage(KeyloadErrorCode.HSM, 'HSM export of the TMK', () =>
      hsm.exportKey({ keyBlock: lmkBlock, kek: transportKey.kbpk, format: 'tr31' }, actor),
    );
    const device = await stage(KeyloadErrorCode.HSM, 'HSM check value', () =>
      hsm.checkValue(lmkBlock, 'legacy', 3),
    );
    return {
      block: out.cryptogram,
      lmkBlock,
      registryKcv: out.kcv.value,
      deviceKcv: device.value,
      source: 'registry',
    };
  }
  const algorithm = tmkAlgorithm(record);
  const made = await stage(KeyloadErrorCode.HSM, 'HSM TMK generation', () =>
    hsm.generateKey(
      { keyType: 'TMK', algorithm, exportUnder: { kek: transportKey.kbpk, format: 'tr31' } },
      actor,
    ),
  );
  if (made.exported === undefined)
    throw keyloadError(KeyloadErrorCode.HSM, 'the HSM did not export the TMK', 'hsm');
  const device = await stage(KeyloadErrorCode.HSM, 'HSM check value', () =>
    hsm.checkValue(made.keyBlock, 'legacy', 3),
  );
  return {
    block: made.exported.cryptogram,
    lmkBlock: made.keyBlock,
    registryKcv: made.info.kcv.value,
    deviceKcv: device.value,
    source: 'hsm',
  };
}

function auditDetail(r: InjectionReport): string {
  return `TMK injected: serial ${r.serial} model ${r.model} slot ${r.slot} port ${r.port} from ${r.tmkSource}`.slice(
    0,
    1000,
  );
}

async function audit(
  options: InjectOptions,
  e: { tid: string; result: 'ok' | 'error'; kcv?: string; detail: string },
): Promise<void> {
  if (options.audit === undefined) return;
  const entry: AuditEntry = {
    actor: options.actor ?? 'keyload',
    action: 'keyload.inject',
    keyId: e.tid,
    result: e.result,
    detail: e.detail,
  };
  if (e.kcv !== undefined) entry.kcv = e.kcv;
  try {
    await options.audit.append(entry);
  } catch (cause) {
    throw keyloadError(
      KeyloadErrorCode.AUDIT,
      `the audit record was not written: ${(cause as Error).message}`,
      'audit',
      cause,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Registries

/**
 * The host's store as a registry (src/store). A new TMK drops the terminal's working keys in the
 * same transaction (they were delivered under the old TMK: the terminal must sign in again). The
 * store cannot set the serial of an existing terminal, so one registered without a serial keeps
 * none (`serialRecorded: false`); one registered with a serial is checked against the device's.
 */
export function storeRegistry(store: Pick<Repository, 'terminals' | 'transaction'>): KeyloadRegistry {
  return {
    async lookup(tid) {
      const t = await store.terminals.get(tid);
      return t && { tid: t.tid, serial: t.serial, keyAlgorithm: t.keyAlgorithm, tmk: t.tmk };
    },
    async bind({ tid, serial, tmk }) {
      const t = await store.terminals.get(tid);
      if (t === undefined)
        throw keyloadError(KeyloadErrorCode.REGISTRY, `terminal ${tid} is not registered`, 'tid');
      if (t.serial !== null && t.serial !== serial) {
        throw keyloadError(
          KeyloadErrorCode.SERIAL_MISMATCH,
          `terminal ${tid} is bound to device ${t.serial}`,
          'serial',
        );
      }
      if (t.tmk?.block !== tmk.block) {
        await store.transaction(async (tx) => {
          await tx.terminals.setTmk(tid, tmk);
          await tx.terminals.setWorkingKeys(tid, {});
        });
      }
      return { serialRecorded: t.serial === serial };
    },
  };
}

export interface AdminRegistryOptions {
  /** Base URL of the host's admin API, e.g. http://127.0.0.1:8081. */
  url: string;
  /** Bearer token. */
  token: string;
  /** Name (or LMK block) of the transport KBPK in the host's registry (`poskey start`: 'factory'). */
  kek: string;
  /** Request timeout, ms (default 5000). */
  timeoutMs?: number;
}

/**
 * The host's admin API as a registry (src/host/admin): `GET /terminals/:tid` to look up, `PUT
 * /terminals/:tid/tmk { tmk: { tr31, kek } }` to bind: the host imports the very TR-31 block the
 * device received under its own copy of the transport KBPK, and must come to the same KCV. The
 * API hands out no key blocks and cannot set a serial: lookups have no TMK (injection makes a new
 * one) and `serialRecorded` is false, but a serial registered earlier is still checked.
 */
export function adminRegistry(options: AdminRegistryOptions): KeyloadRegistry {
  const base = options.url.replace(/\/+$/, '');
  const call = async (
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${options.token}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
    });
    const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.status >= 400 && res.status !== 404) {
      throw keyloadError(
        KeyloadErrorCode.REGISTRY,
        `admin API ${method} ${path}: ${res.status} ${String(json.code ?? '')} ${String(json.message ?? '')}`.trim(),
        'registry',
      );
    }
    return { status: res.status, json };
  };
  const path = (tid: string) => `/terminals/${encodeURIComponent(tid)}`;
  return {
    async lookup(tid) {
      const { status, json } = await call('GET', path(tid));
      if (status === 404) return undefined;
      return {
        tid,
        serial: (json.serial as string | null) ?? null,
        keyAlgorithm: json.keyAlgorithm as 'TDES' | 'SM4',
        tmk: null,
      };
    },
    async bind({ tid, delivered }) {
      if (delivered.tr34 === true) {
        throw keyloadError(
          KeyloadErrorCode.REGISTRY,
          'the admin API imports TR-31 blocks under a transport KBPK only; cert-rsa injection needs the host store',
          'registry',
        );
      }
      const { status, json } = await call('PUT', `${path(tid)}/tmk`, {
        tmk: { tr31: delivered.block, kek: options.kek },
      });
      if (status === 404)
        throw keyloadError(KeyloadErrorCode.REGISTRY, `terminal ${tid} is not registered`, 'tid');
      const kcv = (json.tmk as { kcv?: string } | undefined)?.kcv;
      if (typeof kcv !== 'string' || kcv.toUpperCase() !== delivered.kcv.toUpperCase()) {
        throw keyloadError(
          KeyloadErrorCode.KCV_MISMATCH,
          `the host registered check value ${kcv ?? 'none'}, the device ${delivered.kcv}: different transport KBPKs?`,
          'kcv',
        );
      }
      return { serialRecorded: false };
    },
  };
}
