/**
 * `poskey doctor`: walks the key-injection chain one link at a time and names each failure with
 * its cause and fix, instead of "key download failed". The old chain failed on (seed §1): one OS
 * version only, packages installed in the wrong order, the PC's date, the wiring, the COM port,
 * devices needing a restart, applications loaded in the wrong order, master and terminal of
 * different brands, a tampered terminal. Each step below catches one of those:
 *
 *   serial-driver   the serial binding loads on this OS (replaces "Windows 7 only", install order)
 *   port            the port exists, may be opened by this user, and is not held by another program
 *   link            something answers, in this protocol (wiring, COM port, baud, restart, brand)
 *   protocol        the device speaks this protocol version and authentication method (brand)
 *   clock           the device clock is within tolerance of the PC's (the date check)
 *   certificate     a device certificate, if any, is within its validity and (with a vendor CA)
 *                   is a KRD certificate signed by that CA
 *   apps            the applications are installed, in the required order
 *   tamper          the device is not in its "security attack" state
 *   transport-key   mutual authentication succeeds: with the transport KBPK (kbpk-cmac) or with
 *                   poskey's KDH certificate (cert-rsa)
 *   host, hsm       the POSP host and the HSM accept TCP connections
 *
 * Every result has a stable code POSKEY_DOCTOR_*; DIAGNOSES gives its cause and fix (also in
 * docs/doctor.md).
 */
import { readFile, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { PoskeyError } from '../errors.js';
import { type CertCredentials, type CertIdentity, certIdentity, checkPeerCertificate } from './cert-auth.js';
import {
  authenticate,
  authenticateCert,
  DEFAULT_CLOCK_TOLERANCE_MS,
  deviceFindings,
  hello,
} from './loader.js';
import {
  AUTH_METHOD_CERT,
  type KeyloadAuthenticator,
  KeyloadErrorCode,
  type KeyloadErrorCodeValue,
  keyloadError,
  type MessageOf,
  REQUIRED_APP_ORDER,
} from './protocol.js';
import {
  type ByteTransport,
  DEFAULT_CONNECT_TIMEOUT_MS,
  Link,
  type LinkOptions,
  type LinkTarget,
  loadSerialDriver,
  openTarget,
  parseHostPort,
  targetName,
} from './transport.js';
import { parseCertificate } from './x509.js';

/** What each diagnosis means and how to fix it. */
export const DIAGNOSES = Object.freeze({
  POSKEY_DOCTOR_OK: { title: 'ok', cause: '', fix: '' },
  POSKEY_DOCTOR_SKIPPED: {
    title: 'not checked',
    cause: 'an earlier step failed, or the option this step needs was not given',
    fix: 'fix the earlier failure, or give the option (--port/--tcp, --kbpk-…, --host, --hsm)',
  },
  POSKEY_DOCTOR_SERIAL_DRIVER: {
    title: 'the serial driver does not load on this system',
    cause:
      'the serialport native binding has no build for this OS/CPU/libc (e.g. Alpine musl) or failed to install',
    fix: 'run `npm rebuild @serialport/bindings-cpp` (needs a C++ toolchain), or use --tcp to reach the device through a serial-to-TCP bridge',
  },
  POSKEY_DOCTOR_NO_PORT: {
    title: 'no such serial port',
    cause: 'the port name is wrong, the USB-serial adapter is unplugged, or its driver is not loaded',
    fix: 'plug the cable in and list the ports: `ls /dev/serial/by-id/` (Linux), `ls /dev/cu.*` (macOS), Device Manager → Ports (Windows); then give that name to --port',
  },
  POSKEY_DOCTOR_PERMISSION: {
    title: 'no permission to open the serial port',
    cause: 'the port belongs to a group this user is not in (dialout on Debian/Ubuntu, uucp on Arch)',
    fix: "add yourself to the port's group: `sudo usermod -aG dialout $USER`, then log out and in again (or run `newgrp dialout`)",
  },
  POSKEY_DOCTOR_PORT_BUSY: {
    title: 'another program holds the serial port',
    cause: 'a terminal program, an old key-loading tool or another poskey has the port open',
    fix: 'close that program (`fuser -v PORT` or `lsof PORT` shows which), then retry',
  },
  POSKEY_DOCTOR_PORT_OPEN: {
    title: 'the serial port cannot be opened',
    cause:
      'the path is not a serial device (a file, /dev/null, a pty that closed), or the driver refused to open or configure it',
    fix: 'give the serial device itself (see /dev/serial/by-id/); unplug and replug the adapter; check `dmesg` for driver errors',
  },
  POSKEY_DOCTOR_DEVICE_UNREACHABLE: {
    title: 'the key-loading port does not accept TCP connections',
    cause: 'wrong address, the serial-to-TCP bridge or the terminal is off, or a firewall blocks the port',
    fix: 'check the address given to --tcp, that the bridge runs, and that the port is open',
  },
  POSKEY_DOCTOR_SILENT: {
    title: 'the port is open but the device is silent',
    cause:
      'wrong port (another device is on it), the cable is loose or not a null-modem/key-loading cable, the baud rate differs, or the terminal is off, hung or not in key-loading mode',
    fix: "check the cable and the port; set --baud to the terminal's key-loading speed; put the terminal into key-loading mode; power-cycle it and retry",
  },
  POSKEY_DOCTOR_GARBLED: {
    title: 'bytes arrive but never form a frame',
    cause:
      'the baud rate or line settings (8N1) differ between the two ends, or the line is noisy (bad cable, ground loop)',
    fix: "set --baud to the terminal's key-loading speed; try another cable; keep the cable short and away from power lines",
  },
  POSKEY_DOCTOR_WRONG_PROTOCOL: {
    title: 'a different protocol answered',
    cause:
      'the port leads to another device (a modem, a printer, a console) or to a terminal of another brand or protocol version',
    fix: "connect the terminal's key-loading port; for another brand use that vendor's loader or a poskey protocol adapter for it",
  },
  POSKEY_DOCTOR_CLOCK_SKEW: {
    title: 'the PC and the device disagree on the time',
    cause: "the PC's date or time (or the terminal's) is wrong; time zone or daylight-saving setting differs",
    fix: 'set the PC clock from the network (`timedatectl set-ntp true`, Windows: Settings → Time → Sync now); set the terminal clock in its system menu; or widen --clock-tolerance if you know why they differ',
  },
  POSKEY_DOCTOR_CERT_VALIDITY: {
    title: 'the device certificate is outside its validity',
    cause: 'the certificate expired or is not valid yet, or the PC clock is wrong',
    fix: 'check the PC clock first; if it is right, have the vendor renew the device certificate',
  },
  POSKEY_DOCTOR_CERT_OTHER_CA: {
    title: 'the certificate does not match: not issued by the trusted vendor CA',
    cause:
      'the device certificate (or, refused by the device, poskey’s loader certificate) was issued by another CA or for another role (KDH/KRD): another vendor, a test CA, or the wrong file',
    fix: 'give --vendor-ca the root of this device’s vendor and --kld-cert a KDH certificate issued by it; compare the issuer shown above with `poskey ca show`',
  },
  POSKEY_DOCTOR_CERT_SIGNATURE: {
    title: 'a certificate proof does not verify',
    cause:
      'one side signs with a private key that does not belong to its certificate (a replaced key or certificate file), or the line is tampered with',
    fix: 'pair each certificate with its own key (--kld-cert with --kld-key; on the device, have the vendor reissue the certificate for its key)',
  },
  POSKEY_DOCTOR_NONCE: {
    title: 'an answer is bound to another session',
    cause:
      'a recorded message was replayed, or something between poskey and the device relays another session',
    fix: 'connect poskey directly to the device (no bridge or hub you do not control) and retry; report repeated occurrences',
  },
  POSKEY_DOCTOR_APP_ORDER: {
    title: 'the applications were loaded in the wrong order',
    cause:
      'key injection needs: signature file, master controller, bank-card application, convenience-payment application, in that order',
    fix: "reload the applications in the required order with the vendor's download tool, then retry",
  },
  POSKEY_DOCTOR_APP_MISSING: {
    title: 'a required application is missing',
    cause: 'an application of the required set was never loaded, or was removed',
    fix: 'load the missing application (keeping the required order), then retry',
  },
  POSKEY_DOCTOR_TAMPERED: {
    title: 'the device is in its tamper ("security attack") state',
    cause: 'the terminal was opened or hit; it raised its alarm and erased its keys',
    fix: 'do not use it: report it, have the vendor inspect and unlock it, then inject it again',
  },
  POSKEY_DOCTOR_TRANSPORT_KEY: {
    title: 'the transport key does not match',
    cause:
      'the device holds another transport KBPK than the one given to poskey (another batch, vendor or environment)',
    fix: "use the KBPK of this device's batch (compare the KBPK check values), or have the vendor reload the transport key",
  },
  POSKEY_DOCTOR_HOST_UNREACHABLE: {
    title: 'the host cannot be reached',
    cause: 'the POSP host is not running, the address is wrong, or a firewall blocks it',
    fix: 'start the host (`poskey host start`) or correct --host; check the firewall',
  },
  POSKEY_DOCTOR_HSM_UNREACHABLE: {
    title: 'the HSM cannot be reached',
    cause: 'the HSM service is not running, the address is wrong, or a firewall blocks it',
    fix: 'start the HSM (`poskey hsm serve`) or correct --hsm; check the firewall',
  },
});

export type DoctorCode = keyof typeof DIAGNOSES;

export type DoctorStep =
  | 'serial-driver'
  | 'port'
  | 'link'
  | 'protocol'
  | 'clock'
  | 'certificate'
  | 'apps'
  | 'tamper'
  | 'transport-key'
  | 'host'
  | 'hsm';

export interface DoctorCheck {
  step: DoctorStep;
  status: 'pass' | 'fail' | 'skip';
  code: DoctorCode;
  /** What was found (pass) or what is wrong (fail). */
  detail: string;
  /** Present on failures. */
  cause?: string;
  fix?: string;
}

export interface DoctorReport {
  ok: boolean;
  platform: string;
  target?: string;
  device?: { vendor: string; model: string; serial: string; firmware: string; apps: string[]; clock: string };
  checks: DoctorCheck[];
}

export interface DoctorOptions {
  /** The key-loading port; device steps are skipped without it. */
  target?: LinkTarget;
  /** The POSP host, HOST:PORT. */
  host?: string;
  /** The HSM, HOST:PORT. */
  hsm?: string;
  /** The transport key, to test mutual authentication. */
  transportKey?: KeyloadAuthenticator;
  /** Vendor CA root (PEM) the device certificate must chain to (also taken from `certAuth`). */
  vendorCa?: string;
  /** poskey's KDH certificate and key, to test cert-rsa authentication (preferred over the KBPK). */
  certAuth?: CertCredentials | CertIdentity;
  clockToleranceMs?: number;
  requiredApps?: readonly string[];
  now?: () => Date;
  link?: LinkOptions;
  connectTimeoutMs?: number;
}

/** Loader error codes and the diagnosis each one is. */
const BY_ERROR: Readonly<Partial<Record<KeyloadErrorCodeValue, DoctorCode>>> = {
  [KeyloadErrorCode.SERIAL_DRIVER]: 'POSKEY_DOCTOR_SERIAL_DRIVER',
  [KeyloadErrorCode.PORT_NOT_FOUND]: 'POSKEY_DOCTOR_NO_PORT',
  [KeyloadErrorCode.PORT_PERMISSION]: 'POSKEY_DOCTOR_PERMISSION',
  [KeyloadErrorCode.PORT_BUSY]: 'POSKEY_DOCTOR_PORT_BUSY',
  [KeyloadErrorCode.PORT_OPEN]: 'POSKEY_DOCTOR_PORT_OPEN',
  [KeyloadErrorCode.CONNECT]: 'POSKEY_DOCTOR_DEVICE_UNREACHABLE',
  [KeyloadErrorCode.SILENT]: 'POSKEY_DOCTOR_SILENT',
  [KeyloadErrorCode.TIMEOUT]: 'POSKEY_DOCTOR_SILENT',
  [KeyloadErrorCode.CLOSED]: 'POSKEY_DOCTOR_SILENT',
  [KeyloadErrorCode.GARBLED]: 'POSKEY_DOCTOR_GARBLED',
  [KeyloadErrorCode.WRONG_PROTOCOL]: 'POSKEY_DOCTOR_WRONG_PROTOCOL',
  [KeyloadErrorCode.MESSAGE]: 'POSKEY_DOCTOR_WRONG_PROTOCOL',
  [KeyloadErrorCode.CLOCK_SKEW]: 'POSKEY_DOCTOR_CLOCK_SKEW',
  [KeyloadErrorCode.CERTIFICATE]: 'POSKEY_DOCTOR_CERT_VALIDITY',
  [KeyloadErrorCode.APP_ORDER]: 'POSKEY_DOCTOR_APP_ORDER',
  [KeyloadErrorCode.APP_MISSING]: 'POSKEY_DOCTOR_APP_MISSING',
  [KeyloadErrorCode.TAMPERED]: 'POSKEY_DOCTOR_TAMPERED',
  [KeyloadErrorCode.AUTH]: 'POSKEY_DOCTOR_TRANSPORT_KEY',
  [KeyloadErrorCode.CERT_UNTRUSTED]: 'POSKEY_DOCTOR_CERT_OTHER_CA',
  [KeyloadErrorCode.CERT_VALIDITY]: 'POSKEY_DOCTOR_CERT_VALIDITY',
  [KeyloadErrorCode.CERT_SIGNATURE]: 'POSKEY_DOCTOR_CERT_SIGNATURE',
  [KeyloadErrorCode.NONCE]: 'POSKEY_DOCTOR_NONCE',
};

/**
 * The diagnosis of an injection error, when it is one the doctor knows: `poskey inject` prints
 * its cause and fix under the error.
 */
export function diagnose(
  e: unknown,
): { code: DoctorCode; title: string; cause: string; fix: string } | undefined {
  if (!(e instanceof PoskeyError)) return undefined;
  const code = BY_ERROR[e.code as KeyloadErrorCodeValue];
  return code === undefined ? undefined : { code, ...DIAGNOSES[code] };
}

function pass(step: DoctorStep, detail: string): DoctorCheck {
  return { step, status: 'pass', code: 'POSKEY_DOCTOR_OK', detail };
}

function skip(step: DoctorStep, detail: string): DoctorCheck {
  return { step, status: 'skip', code: 'POSKEY_DOCTOR_SKIPPED', detail };
}

function fail(step: DoctorStep, code: DoctorCode, detail: string, extraFix = ''): DoctorCheck {
  const d = DIAGNOSES[code];
  return {
    step,
    status: 'fail',
    code,
    detail,
    cause: d.cause,
    fix: extraFix === '' ? d.fix : `${d.fix}. ${extraFix}`,
  };
}

function failFrom(step: DoctorStep, e: unknown, extraFix = ''): DoctorCheck {
  const d = diagnose(e);
  const detail = e instanceof Error ? e.message : String(e);
  if (d === undefined) throw e;
  return fail(step, d.code, detail, extraFix);
}

/** The group a device node belongs to, by name when /etc/group has it. */
async function portGroup(path: string): Promise<string | undefined> {
  try {
    const { gid } = await stat(path);
    const groups = await readFile('/etc/group', 'utf8').catch(() => '');
    const line = groups.split('\n').find((l) => l.split(':')[2] === String(gid));
    return line?.split(':')[0] ?? `gid ${gid}`;
  } catch {
    return undefined;
  }
}

/** Serial ports the driver lists, for the "no such port" fix. */
async function knownPorts(): Promise<string[]> {
  try {
    const { SerialPort } = await loadSerialDriver();
    return (await SerialPort.list()).map((p) => p.path);
  } catch {
    return [];
  }
}

async function portFix(e: unknown, path: string): Promise<string> {
  const code = (e as PoskeyError).code;
  if (code === KeyloadErrorCode.PORT_PERMISSION) {
    const group = await portGroup(path);
    return group === undefined ? '' : `${path} belongs to group '${group}'`;
  }
  if (code === KeyloadErrorCode.PORT_NOT_FOUND) {
    const ports = await knownPorts();
    return ports.length === 0 ? 'The driver lists no serial ports' : `Ports found: ${ports.join(', ')}`;
  }
  return '';
}

/** True when a TCP connection to HOST:PORT opens within the timeout. */
export function probeTcp(
  address: string,
  timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  const { host, port } = parseHostPort(address, 'address');
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, reason: `no connection within ${timeoutMs} ms` });
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: true });
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ ok: false, reason: e.code ?? e.message });
    });
  });
}

const DEVICE_STEPS: readonly DoctorStep[] = [
  'link',
  'protocol',
  'clock',
  'certificate',
  'apps',
  'tamper',
  'transport-key',
];

/** Runs every step; never throws for a fault it diagnoses. */
export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const report: DoctorReport = {
    ok: false,
    platform: `${process.platform} ${process.arch}, Node ${process.versions.node}`,
    checks,
  };
  if (options.target === undefined) {
    checks.push(skip('port', 'no --port or --tcp given'));
  } else {
    report.target = targetName(options.target);
    await deviceChain(options, options.target, checks, report);
  }
  checks.push(
    await serviceCheck('host', options.host, 'POSKEY_DOCTOR_HOST_UNREACHABLE', options.connectTimeoutMs),
  );
  checks.push(
    await serviceCheck('hsm', options.hsm, 'POSKEY_DOCTOR_HSM_UNREACHABLE', options.connectTimeoutMs),
  );
  report.ok = checks.every((c) => c.status !== 'fail');
  return report;
}

async function serviceCheck(
  step: 'host' | 'hsm',
  address: string | undefined,
  code: DoctorCode,
  timeoutMs: number | undefined,
): Promise<DoctorCheck> {
  if (address === undefined) return skip(step, `no --${step} given`);
  const probe = await probeTcp(address, timeoutMs);
  return probe.ok
    ? pass(step, `${address} accepts connections`)
    : fail(step, code, `${address}: ${probe.reason}`);
}

async function deviceChain(
  options: DoctorOptions,
  target: LinkTarget,
  checks: DoctorCheck[],
  report: DoctorReport,
): Promise<void> {
  const skipRest = (from: number, why: string) => {
    for (const s of DEVICE_STEPS.slice(from)) checks.push(skip(s, why));
  };
  if ('port' in target) {
    try {
      const { SerialPort } = await loadSerialDriver();
      checks.push(
        pass(
          'serial-driver',
          `serialport loaded (${typeof SerialPort === 'function' ? 'native binding' : '?'})`,
        ),
      );
    } catch (e) {
      checks.push(failFrom('serial-driver', e));
      checks.push(skip('port', 'no serial driver'));
      return skipRest(0, 'no serial driver');
    }
  }
  let transport: ByteTransport;
  try {
    transport = await openTarget(target, options.connectTimeoutMs);
    checks.push(pass('port', `${targetName(target)} opened`));
  } catch (e) {
    checks.push(failFrom('port', e, 'port' in target ? await portFix(e, target.port) : ''));
    return skipRest(0, 'the port did not open');
  }
  const link = new Link(transport, options.link);
  try {
    let info: MessageOf<'DEVICE_INFO'>;
    try {
      info = await hello(link, options);
      const s = link.stats;
      checks.push(
        pass(
          'link',
          `${info.vendor} ${info.model} answered${s.resends > 0 ? ` after ${s.resends} resends` : ''}`,
        ),
      );
    } catch (e) {
      checks.push(failFrom('link', e));
      return skipRest(1, 'no device answered');
    }
    report.device = {
      vendor: info.vendor,
      model: info.model,
      serial: info.serial,
      firmware: info.firmware,
      apps: info.apps,
      clock: info.clock,
    };
    const findings = deviceFindings(info, options);
    const finding = (code: KeyloadErrorCodeValue) => findings.find((f) => f.code === code);
    const wrong = finding(KeyloadErrorCode.WRONG_PROTOCOL);
    if (wrong !== undefined) {
      checks.push(fail('protocol', 'POSKEY_DOCTOR_WRONG_PROTOCOL', wrong.reason));
      return skipRest(2, 'another protocol');
    }
    checks.push(pass('protocol', `protocol version ${info.version}, ${info.authMethods.join(', ')}`));
    const skew = finding(KeyloadErrorCode.CLOCK_SKEW);
    checks.push(
      skew === undefined
        ? pass(
            'clock',
            `device clock ${info.clock} within ${Math.round((options.clockToleranceMs ?? DEFAULT_CLOCK_TOLERANCE_MS) / 1000)} s`,
          )
        : fail('clock', 'POSKEY_DOCTOR_CLOCK_SKEW', skew.reason),
    );
    checks.push(certificateCheck(info, finding(KeyloadErrorCode.CERTIFICATE), options));
    const apps = finding(KeyloadErrorCode.APP_MISSING) ?? finding(KeyloadErrorCode.APP_ORDER);
    const required = options.requiredApps ?? REQUIRED_APP_ORDER;
    checks.push(
      apps === undefined
        ? pass('apps', `${required.join(' → ')} in order`)
        : fail(
            'apps',
            apps.code === KeyloadErrorCode.APP_MISSING
              ? 'POSKEY_DOCTOR_APP_MISSING'
              : 'POSKEY_DOCTOR_APP_ORDER',
            apps.reason,
          ),
    );
    const tampered = finding(KeyloadErrorCode.TAMPERED);
    checks.push(
      tampered === undefined
        ? pass('tamper', 'no tamper alarm')
        : fail('tamper', 'POSKEY_DOCTOR_TAMPERED', tampered.reason),
    );
    if (options.transportKey === undefined && options.certAuth === undefined) {
      checks.push(skip('transport-key', 'no transport key or loader certificate given'));
    } else if (tampered !== undefined) {
      checks.push(skip('transport-key', 'a tampered device refuses authentication'));
    } else if (options.certAuth !== undefined) {
      checks.push(await certAuthCheck(link, info, options));
    } else if (options.transportKey !== undefined) {
      try {
        await authenticate(link, options.transportKey, info);
        checks.push(
          pass('transport-key', `mutual authentication with KBPK ${options.transportKey.kbpkKcv} succeeded`),
        );
      } catch (e) {
        checks.push(failFrom('transport-key', e));
      }
    }
  } finally {
    await link.close().catch(() => undefined);
  }
}

/** The vendor CA root of the options, parsed. */
function vendorCaOf(options: DoctorOptions): CertIdentity['vendorCa'] | undefined {
  const c = options.certAuth;
  if (c !== undefined) return 'cert' in c ? c.vendorCa : certIdentity(c, '--kld-cert').vendorCa;
  if (options.vendorCa === undefined) return undefined;
  try {
    return parseCertificate(options.vendorCa);
  } catch (e) {
    throw keyloadError(KeyloadErrorCode.OPTION, 'is not a PEM certificate', '--vendor-ca', e);
  }
}

/** Validity first (a wrong PC clock explains both), then the chain to the vendor CA. */
function certificateCheck(
  info: MessageOf<'DEVICE_INFO'>,
  validity: { reason: string } | undefined,
  options: DoctorOptions,
): DoctorCheck {
  if (info.certificate === undefined) {
    return info.authMethods.includes(AUTH_METHOD_CERT)
      ? fail(
          'certificate',
          'POSKEY_DOCTOR_CERT_OTHER_CA',
          'the device offers cert-rsa but presents no certificate',
        )
      : skip('certificate', 'the device has no certificate');
  }
  if (validity !== undefined) return fail('certificate', 'POSKEY_DOCTOR_CERT_VALIDITY', validity.reason);
  const ca = vendorCaOf(options);
  if (ca === undefined)
    return pass('certificate', 'within its validity (no --vendor-ca: issuer not checked)');
  try {
    const now = (options.now ?? (() => new Date()))();
    const cert = checkPeerCertificate(info.certificate, ca, 'krd', now, 'device');
    return pass(
      'certificate',
      `KRD certificate ${cert.subject.text} of ${ca.subject.text}, within its validity`,
    );
  } catch (e) {
    return failFrom('certificate', e);
  }
}

async function certAuthCheck(
  link: Link,
  info: MessageOf<'DEVICE_INFO'>,
  options: DoctorOptions,
): Promise<DoctorCheck> {
  const c = options.certAuth!;
  const id = 'cert' in c ? c : certIdentity(c, '--kld-cert');
  try {
    await authenticateCert(link, id, info, (options.now ?? (() => new Date()))());
    return pass('transport-key', `mutual authentication with cert-rsa as ${id.cert.subject.text} succeeded`);
  } catch (e) {
    return failFrom('transport-key', e);
  }
}
