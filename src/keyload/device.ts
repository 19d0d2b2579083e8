/**
 * The device side of key injection: the key-loading port of a simulated terminal. It wraps the
 * terminal's `PinPad` and answers the protocol of protocol.ts on a serial line (a pty in tests)
 * or TCP.
 *
 * What it simulates, because each is a way key injection fails in the field (seed §1, §5):
 *   - the factory transport KBPK it authenticates with and unwraps TR-31 blocks under;
 *   - the applications installed, in order: LOAD_KEY is refused unless they were installed in the
 *     required order (signature file, master controller, bank-card, convenience-payment);
 *   - a clock that can be off (`clockOffsetMs`), reported in DEVICE_INFO;
 *   - the tamper state: `tamper()` zeroises the pad and latches "security attack" until a
 *     manufacturer service reset (`serviceReset()`); a tampered device refuses authentication.
 *
 * Two phases: LOAD_KEY unwraps and stages the TMK and answers with its check value; only BIND
 * (after poskey compared the KCV with the HSM's and bound the registry) writes it into the PIN
 * pad and saves the pad's sealed store. A session that ends before BIND changes nothing.
 *
 * The KBPK is held here, outside the PinPad, because the pad can only use keys for PINs, MACs and
 * legacy cryptograms: it has no TR-31 unwrap or CMAC. The pad's sealed store persists the TMK; the
 * factory KBPK is given to the simulator at start.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { constantTimeEqual, zeroize } from '../crypto/bytes.js';
import { createKey, type KeyHandle } from '../crypto/cipher.js';
import { checkValue } from '../crypto/kcv.js';
import { unwrapKeyBlock } from '../crypto/tr31.js';
import { PoskeyError } from '../errors.js';
import type { MasterKeyAlgorithm, PinPad } from '../terminal/pinpad.js';
import {
  type CertCredentials,
  type CertIdentity,
  certFailureOf,
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
  deviceError,
  type KeyloadAuthenticator,
  KeyloadError,
  KeyloadErrorCode,
  type KeyloadMessage,
  kbpkAuthenticator,
  keyloadError,
  type MessageOf,
  NONCE_BYTES,
  PROTOCOL_VERSION,
  prove,
  REQUIRED_APP_ORDER,
  type TamperState,
  transportKeyHandle,
  verifyProof,
} from './protocol.js';
import { openKeyToken } from './tr34.js';
import { type ByteTransport, duplexTransport, Link, type LinkOptions, openSerial } from './transport.js';
import type { Certificate } from './x509.js';

export const DEFAULT_VENDOR = 'poskey';

export interface KeyloadDeviceOptions {
  /** The terminal's PIN pad (its serial, model, firmware, apps and clock are reported). */
  pad: PinPad;
  /**
   * The factory transport KBPK, clear: TDES (16/24 bytes) or AES (16/24/32 bytes). Optional when
   * `certAuth` is given: a device may be certificate-only.
   */
  kbpk?: { algorithm: 'tdes' | 'aes'; key: Uint8Array | string };
  /**
   * cert-rsa: the device's RSA private key and the vendor CA root it trusts key loading devices
   * from. Needs `certificate` (the device's KRD certificate, issued by that CA).
   */
  certAuth?: Omit<CertCredentials, 'certificate'>;
  /** Vendor name reported in DEVICE_INFO; default 'poskey'. */
  vendor?: string;
  /** Saves the pad after a TMK is committed (the terminal's sealed PIN pad store). */
  store?: { save(pad: PinPad): Promise<void> };
  /** The install order LOAD_KEY requires; default REQUIRED_APP_ORDER. */
  requiredApps?: readonly string[];
  /** Sets the pad's clock this far from the PC's (tests: a skewed device clock). */
  clockOffsetMs?: number;
  /** A device certificate (PEM) to report (and, with `certAuth`, to authenticate with). */
  certificate?: string;
  /** TID bound by an earlier injection. */
  tid?: string;
  /** Waits this long before every answer (tests: a slow device). */
  responseDelayMs?: number;
  /** Told about each step, for the simulator's log. Never given key material. */
  onEvent?: (event: DeviceEvent) => void;
}

export type DeviceEvent =
  | { kind: 'hello' }
  | { kind: 'authenticated' }
  | { kind: 'refused'; code: number; reason: string }
  | { kind: 'staged'; slot: number; kcv: string }
  | { kind: 'bound'; tid: string; slot: number; kcv: string };

interface Staged {
  slot: number;
  algorithm: MasterKeyAlgorithm;
  key: Buffer;
  kcv: string;
}

/** One loader's conversation: starts at HELLO, ends when the line closes or the next HELLO. */
interface Session {
  hello: boolean;
  /** The method of the running authentication. */
  method?: string;
  loaderNonce?: Buffer;
  deviceNonce?: Buffer;
  /** cert-rsa: the loader's certificate, checked at AUTH_CHALLENGE. */
  loaderCert?: Certificate;
  authenticated: boolean;
  staged?: Staged;
}

const TMK_USAGES = ['K0', 'K1'];
const TMK_ALGORITHMS: Readonly<Record<string, MasterKeyAlgorithm>> = { T: 'tdes', '4': 'sm4' };

export class KeyloadDevice {
  readonly pad: PinPad;
  readonly vendor: string;
  readonly #kbpk: KeyHandle | undefined;
  readonly #auth: (KeyloadAuthenticator & { destroy(): void }) | undefined;
  readonly #identity: CertIdentity | undefined;
  readonly #store: KeyloadDeviceOptions['store'];
  readonly #required: readonly string[];
  readonly #certificate: string | undefined;
  readonly #delay: number;
  readonly #onEvent: KeyloadDeviceOptions['onEvent'];
  #tid: string | undefined;
  #tamperLatched: boolean;

  /** @throws POSKEY_ERR_KEYLOAD_OPTION for a bad KBPK or option */
  constructor(options: KeyloadDeviceOptions) {
    if (options?.pad === undefined)
      throw keyloadError(KeyloadErrorCode.OPTION, 'a PinPad is required', 'pad');
    this.pad = options.pad;
    if (options.kbpk === undefined && options.certAuth === undefined)
      throw keyloadError(KeyloadErrorCode.OPTION, 'give a transport KBPK, certAuth, or both', 'kbpk');
    this.#identity = deviceIdentity(options);
    this.#kbpk =
      options.kbpk === undefined ? undefined : transportKeyHandle(options.kbpk.algorithm, options.kbpk.key);
    this.#auth = this.#kbpk === undefined ? undefined : kbpkAuthenticator(this.#kbpk);
    this.vendor = options.vendor ?? DEFAULT_VENDOR;
    this.#store = options.store;
    this.#required = options.requiredApps ?? REQUIRED_APP_ORDER;
    this.#certificate = options.certificate;
    this.#delay = options.responseDelayMs ?? 0;
    this.#onEvent = options.onEvent;
    this.#tid = options.tid;
    this.#tamperLatched = this.pad.state === 'tampered';
    if (options.clockOffsetMs !== undefined) this.setClockOffset(options.clockOffsetMs);
  }

  get tid(): string | undefined {
    return this.#tid;
  }

  get tamperState(): TamperState {
    return this.#tamperLatched ? 'attack' : 'none';
  }

  /** Legacy KCV of the factory KBPK; undefined on a certificate-only device. */
  get kbpkKcv(): string | undefined {
    return this.#auth?.kbpkKcv;
  }

  /** The device is opened or hit: keys zeroised, "security attack" until a service reset. */
  tamper(): void {
    this.pad.tamper();
    this.#tamperLatched = true;
  }

  /** Manufacturer service: clears the latched alarm; the pad stays empty until the next injection. */
  serviceReset(): void {
    this.#tamperLatched = false;
  }

  /** Puts the device clock `ms` away from the PC's. */
  setClockOffset(ms: number): void {
    if (!Number.isFinite(ms))
      throw keyloadError(KeyloadErrorCode.OPTION, 'must be a number of ms', 'clockOffsetMs');
    this.pad.setClock(new Date(Date.now() + ms));
  }

  /** What HELLO is answered with. */
  info(): MessageOf<'DEVICE_INFO'> {
    const d = this.pad.device;
    const info: MessageOf<'DEVICE_INFO'> = {
      type: 'DEVICE_INFO',
      version: PROTOCOL_VERSION,
      vendor: this.vendor,
      model: d.model,
      serial: d.serial,
      firmware: d.firmware,
      apps: [...d.apps],
      clock: this.pad.clock().toISOString(),
      tamper: this.tamperState,
      authMethods: [...(this.#auth ? [AUTH_METHOD_KBPK] : []), ...(this.#identity ? [AUTH_METHOD_CERT] : [])],
    };
    if (this.#auth !== undefined) info.kbpkKcv = this.#auth.kbpkKcv;
    if (this.#tid !== undefined) info.tid = this.#tid;
    if (this.#certificate !== undefined) info.certificate = this.#certificate;
    return info;
  }

  /** Serves the protocol on a byte transport; returns the link (close it to stop). */
  serve(transport: ByteTransport, options: LinkOptions = {}): Link {
    const link = new Link(transport, options);
    const session: Session = { hello: false, authenticated: false };
    link.serve((msg) => this.#answer(session, msg));
    void link.done.then(() => this.#endSession(session));
    return link;
  }

  /** Serves on a serial port (a pty end in tests). */
  async listenSerial(path: string, options: LinkOptions & { baudRate?: number } = {}): Promise<Link> {
    const { baudRate, ...link } = options;
    return this.serve(await openSerial(path, baudRate), link);
  }

  /** Serves on TCP; each connection is a session. Resolves once listening. */
  listenTcp(options: { host?: string; port?: number } & LinkOptions = {}): Promise<Server> {
    const { host = '127.0.0.1', port = 0, ...link } = options;
    const server = createServer((socket: Socket) => {
      socket.setNoDelay(true);
      this.serve(duplexTransport(socket, `tcp:${socket.remoteAddress}:${socket.remotePort}`), link);
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(server));
    });
  }

  /** Zeroises the transport key material this object holds. */
  destroy(): void {
    this.#auth?.destroy();
    this.#kbpk?.destroy();
  }

  // --- protocol ------------------------------------------------------------------------------

  async #answer(session: Session, msg: KeyloadMessage): Promise<KeyloadMessage> {
    if (this.#delay > 0) await new Promise((r) => setTimeout(r, this.#delay));
    const reply = await this.#dispatch(session, msg);
    if (reply.type === 'ERROR') this.#onEvent?.({ kind: 'refused', code: reply.code, reason: reply.reason });
    return reply;
  }

  #dispatch(session: Session, msg: KeyloadMessage): Promise<KeyloadMessage> | KeyloadMessage {
    switch (msg.type) {
      case 'HELLO':
        return this.#hello(session, msg);
      case 'AUTH_CHALLENGE':
        return this.#challenge(session, msg);
      case 'AUTH_CONFIRM':
        return this.#confirm(session, msg);
      case 'LOAD_KEY':
        return this.#load(session, msg);
      case 'BIND':
        return this.#bind(session, msg);
      default:
        return deviceError('BAD_MESSAGE', `${msg.type} is not a request`);
    }
  }

  #hello(session: Session, msg: MessageOf<'HELLO'>): KeyloadMessage {
    this.#endSession(session);
    if (msg.version !== PROTOCOL_VERSION) {
      return deviceError(
        'VERSION',
        `protocol version ${msg.version} not supported (this device speaks ${PROTOCOL_VERSION})`,
      );
    }
    session.hello = true;
    this.#onEvent?.({ kind: 'hello' });
    return this.info();
  }

  async #challenge(session: Session, msg: MessageOf<'AUTH_CHALLENGE'>): Promise<KeyloadMessage> {
    if (!session.hello) return deviceError('SEQUENCE', 'HELLO first');
    if (this.#tamperLatched) return deviceError('TAMPERED', 'security attack: the device was opened or hit');
    this.#resetAuth(session);
    if (msg.method === AUTH_METHOD_KBPK && this.#auth !== undefined) {
      const { loaderNonce, deviceNonce } = this.#startAuth(session, msg);
      const proof = await prove(this.#auth, 'device', [loaderNonce, deviceNonce, this.#serial()]);
      return { type: 'AUTH_RESPONSE', nonce: deviceNonce, proof };
    }
    if (msg.method === AUTH_METHOD_CERT && this.#identity !== undefined)
      return this.#challengeCert(session, msg, this.#identity);
    return deviceError('AUTH_METHOD', `authentication method ${msg.method} not supported`);
  }

  #startAuth(
    session: Session,
    msg: MessageOf<'AUTH_CHALLENGE'>,
  ): { loaderNonce: Buffer; deviceNonce: Buffer } {
    session.method = msg.method;
    session.loaderNonce = Buffer.from(msg.nonce);
    session.deviceNonce = randomBytes(NONCE_BYTES);
    return { loaderNonce: session.loaderNonce, deviceNonce: session.deviceNonce };
  }

  /** cert-rsa: checks the loader's certificate at the device clock, then signs the session. */
  #challengeCert(session: Session, msg: MessageOf<'AUTH_CHALLENGE'>, id: CertIdentity): KeyloadMessage {
    if (msg.loaderCertificate === undefined)
      return deviceError('BAD_MESSAGE', 'cert-rsa: AUTH_CHALLENGE lacks the loader certificate');
    try {
      session.loaderCert = checkPeerCertificate(
        msg.loaderCertificate,
        id.vendorCa,
        'kdh',
        this.pad.clock(),
        'key loading device',
      );
    } catch (e) {
      return certRefusal(e);
    }
    const { loaderNonce } = this.#startAuth(session, msg);
    const proof = signCertProof(id.privateKey, 'device', this.#certParts(session));
    return { type: 'AUTH_RESPONSE', nonce: session.deviceNonce!, proof, echo: loaderNonce };
  }

  /** What every cert-rsa proof of the session covers: both nonces, both certificates, the serial. */
  #certParts(session: Session, ...more: Uint8Array[]): Uint8Array[] {
    return [
      session.loaderNonce!,
      session.deviceNonce!,
      certHash(session.loaderCert!),
      certHash(this.#identity!.cert),
      this.#serial(),
      ...more,
    ];
  }

  async #confirm(session: Session, msg: MessageOf<'AUTH_CONFIRM'>): Promise<KeyloadMessage> {
    const { loaderNonce, deviceNonce } = session;
    if (loaderNonce === undefined || deviceNonce === undefined)
      return deviceError('SEQUENCE', 'AUTH_CHALLENGE first');
    if (session.method === AUTH_METHOD_CERT) {
      const refused = this.#confirmCert(session, msg);
      if (refused !== undefined) return refused;
    } else {
      const ok = await verifyProof(
        this.#auth!,
        'loader',
        [deviceNonce, loaderNonce, this.#serial()],
        msg.proof,
      );
      if (!ok) {
        this.#resetAuth(session);
        return deviceError('AUTH_FAILED', 'the key loading device does not hold this device’s transport key');
      }
    }
    session.authenticated = true;
    this.#onEvent?.({ kind: 'authenticated' });
    return { type: 'AUTH_OK' };
  }

  /** cert-rsa AUTH_CONFIRM: must answer this session's nonce, signed by the checked loader key. */
  #confirmCert(session: Session, msg: MessageOf<'AUTH_CONFIRM'>): MessageOf<'ERROR'> | undefined {
    if (msg.echo === undefined || !constantTimeEqual(msg.echo, session.deviceNonce!)) {
      this.#resetAuth(session);
      return deviceError(
        'NONCE',
        'AUTH_CONFIRM answers another device nonce (replayed or from another session)',
      );
    }
    if (!verifyCertProof(session.loaderCert!, 'loader', this.#certParts(session), msg.proof)) {
      this.#resetAuth(session);
      return deviceError(
        'CERT_SIGNATURE',
        'the key loading device’s signature does not verify under its certificate',
      );
    }
    return undefined;
  }

  async #load(session: Session, msg: MessageOf<'LOAD_KEY'>): Promise<KeyloadMessage> {
    if (!session.authenticated) return deviceError('SEQUENCE', 'authenticate first');
    if (this.#tamperLatched) return deviceError('TAMPERED', 'security attack: the device was opened or hit');
    const order = checkAppOrder(this.pad.device.apps, this.#required);
    if (!order.ok) return deviceError('APP_ORDER', describeAppOrder(order, this.#required));
    if (!Number.isInteger(msg.slot) || msg.slot >= this.pad.slotCount) {
      return deviceError('SLOT', `slot must be from 0 to ${this.pad.slotCount - 1}`);
    }
    const staged = session.method === AUTH_METHOD_CERT ? this.#openToken(session, msg) : this.#unwrap(msg);
    if ('code' in staged) return staged;
    this.#dropStaged(session);
    session.staged = staged;
    const slotKcv = [Buffer.from([staged.slot]), Buffer.from(staged.kcv, 'ascii')];
    const proof =
      session.method === AUTH_METHOD_CERT
        ? signCertProof(this.#identity!.privateKey, 'loaded', this.#certParts(session, ...slotKcv))
        : await prove(this.#auth!, 'loaded', [session.loaderNonce!, session.deviceNonce!, ...slotKcv]);
    this.#onEvent?.({ kind: 'staged', slot: staged.slot, kcv: staged.kcv });
    return { type: 'KEY_LOADED', slot: staged.slot, kcv: staged.kcv, algorithm: staged.algorithm, proof };
  }

  #unwrap(msg: MessageOf<'LOAD_KEY'>): Staged | MessageOf<'ERROR'> {
    if (msg.block === undefined) return deviceError('KEY_BLOCK', 'kbpk-cmac: LOAD_KEY carries a TR-31 block');
    let opened: { header: { usage: string; algorithm: string }; key: Buffer };
    try {
      opened = unwrapKeyBlock({ kbpk: this.#kbpk!, block: msg.block });
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'error';
      return deviceError('KEY_BLOCK', `the TR-31 block does not open under the transport key (${code})`);
    }
    return this.#stage(msg.slot, opened.header, opened.key);
  }

  /**
   * cert-rsa: opens the TR-34 token enveloped to this device's certificate. It must be signed by
   * the loader authenticated in this session and answer this session's device nonce.
   */
  #openToken(session: Session, msg: MessageOf<'LOAD_KEY'>): Staged | MessageOf<'ERROR'> {
    if (msg.token === undefined) return deviceError('KEY_BLOCK', 'cert-rsa: LOAD_KEY carries a TR-34 token');
    const id = this.#identity!;
    let opened: ReturnType<typeof openKeyToken>;
    try {
      opened = openKeyToken({
        token: Buffer.from(msg.token, 'base64'),
        krd: { cert: id.cert, privateKey: id.privateKey },
        caRoot: id.vendorCa,
        expectedNonce: session.deviceNonce!,
        at: this.pad.clock(),
      });
    } catch (e) {
      return tokenRefusal(e);
    }
    if (!opened.kdhCert.der.equals(session.loaderCert!.der)) {
      zeroize(opened.clearKey);
      return deviceError(
        'CERT_UNTRUSTED',
        'the TR-34 token is signed by another KDH than the one authenticated',
      );
    }
    const header = { usage: opened.header.slice(5, 7), algorithm: opened.header.slice(7, 8) };
    return this.#stage(msg.slot, header, opened.clearKey);
  }

  /** Accepts a double-length TDES or SM4 TMK and computes its check value. */
  #stage(
    slot: number,
    header: { usage: string; algorithm: string },
    key: Buffer,
  ): Staged | MessageOf<'ERROR'> {
    const algorithm = TMK_ALGORITHMS[header.algorithm];
    if (!TMK_USAGES.includes(header.usage) || algorithm === undefined || key.length !== 16) {
      zeroize(key);
      return deviceError(
        'KEY_BLOCK',
        `the block holds a ${header.usage}/${header.algorithm} key of ${key.length} bytes, not a double-length TDES or SM4 TMK (K0/K1)`,
      );
    }
    const handle = createKey(algorithm, key);
    try {
      return {
        slot,
        algorithm,
        key,
        kcv: checkValue(handle, { method: 'legacy', length: 3 }).value,
      };
    } finally {
      handle.destroy();
    }
  }

  async #bind(session: Session, msg: MessageOf<'BIND'>): Promise<KeyloadMessage> {
    const staged = session.staged;
    if (!session.authenticated || staged === undefined)
      return deviceError('NOTHING_STAGED', 'LOAD_KEY first');
    const tidKcv = [Buffer.from(msg.tid, 'utf8'), Buffer.from(msg.kcv, 'ascii')];
    if (session.method === AUTH_METHOD_CERT) {
      if (!verifyCertProof(session.loaderCert!, 'bind', this.#certParts(session, ...tidKcv), msg.proof))
        return deviceError('CERT_SIGNATURE', 'BIND is not signed by the key loading device of this session');
    } else if (
      !(await verifyProof(
        this.#auth!,
        'bind',
        [session.loaderNonce!, session.deviceNonce!, ...tidKcv],
        msg.proof,
      ))
    ) {
      return deviceError('AUTH_FAILED', 'BIND is not authenticated by this session');
    }
    if (msg.kcv !== staged.kcv)
      return deviceError('KEY_BLOCK', 'BIND names another check value than the staged key');
    try {
      this.pad.injectTmk(staged.slot, staged.key, { algorithm: staged.algorithm, kcv: staged.kcv });
    } catch (e) {
      return deviceError('SLOT', (e as Error).message);
    } finally {
      this.#dropStaged(session);
    }
    this.#tid = msg.tid;
    if (this.#store !== undefined) {
      try {
        await this.#store.save(this.pad);
      } catch (e) {
        return deviceError(
          'STORAGE',
          `the key is loaded but the secure storage was not saved: ${(e as Error).message}`,
        );
      }
    }
    this.#onEvent?.({ kind: 'bound', tid: msg.tid, slot: staged.slot, kcv: staged.kcv });
    return { type: 'BIND_ACK', tid: msg.tid, slot: staged.slot };
  }

  #serial(): Buffer {
    return Buffer.from(this.pad.device.serial, 'utf8');
  }

  #dropStaged(session: Session): void {
    if (session.staged !== undefined) zeroize(session.staged.key);
    session.staged = undefined;
  }

  #resetAuth(session: Session): void {
    this.#dropStaged(session);
    session.authenticated = false;
    session.method = undefined;
    session.loaderNonce = undefined;
    session.deviceNonce = undefined;
    session.loaderCert = undefined;
  }

  #endSession(session: Session): void {
    this.#resetAuth(session);
    session.hello = false;
  }
}

/** The device's cert-rsa identity, checked at start. */
function deviceIdentity(options: KeyloadDeviceOptions): CertIdentity | undefined {
  if (options.certAuth === undefined) return undefined;
  if (options.certificate === undefined)
    throw keyloadError(KeyloadErrorCode.OPTION, 'certAuth needs the device certificate', 'certificate');
  return certIdentity({ ...options.certAuth, certificate: options.certificate }, 'certAuth');
}

/** A certificate check failure as the device's ERROR. */
function certRefusal(e: unknown): MessageOf<'ERROR'> {
  if (e instanceof KeyloadError && e.code === KeyloadErrorCode.CERT_UNTRUSTED)
    return deviceError('CERT_UNTRUSTED', e.reason);
  if (e instanceof KeyloadError && e.code === KeyloadErrorCode.CERT_VALIDITY)
    return deviceError('CERT_VALIDITY', e.reason);
  throw e;
}

/** A TR-34 token failure as the device's ERROR: nonce, signature and certificate get their own codes. */
function tokenRefusal(e: unknown): MessageOf<'ERROR'> {
  const code = e instanceof PoskeyError ? e.code : 'error';
  const reason = `the TR-34 token was refused (${code}): ${e instanceof PoskeyError ? e.reason : 'malformed'}`;
  if (code === 'POSKEY_ERR_TR34_NONCE') return deviceError('NONCE', reason);
  if (code === 'POSKEY_ERR_TR34_SIGNATURE') return deviceError('CERT_SIGNATURE', reason);
  const cert = certFailureOf(e);
  if (cert !== undefined && code !== 'POSKEY_ERR_ASN1') return deviceError(cert, reason);
  return deviceError('KEY_BLOCK', reason);
}
