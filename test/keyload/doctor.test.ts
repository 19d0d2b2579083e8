/**
 * `poskey doctor`: every diagnosis is produced by creating its fault for real.
 *
 *   POSKEY_DOCTOR_SERIAL_DRIVER     the CLI in a child with LIBC=musl: node-gyp-build picks the musl
 *                                   prebuild of @serialport/bindings-cpp, which cannot load on glibc
 *                                   (the Alpine/musl failure, the other way round)
 *   POSKEY_DOCTOR_NO_PORT           a path that does not exist
 *   POSKEY_DOCTOR_PERMISSION        socat makes the pty root:dialout 0660 (like /dev/ttyS0) and the
 *                                   CLI runs as `nobody`, outside dialout (root ignores file modes)
 *   POSKEY_DOCTOR_PORT_OPEN         a regular file given as the port (terminal ioctls fail on it)
 *   POSKEY_DOCTOR_PORT_BUSY         the port is already open (and flock-ed) by another holder
 *   POSKEY_DOCTOR_DEVICE_UNREACHABLE a closed TCP port for --tcp
 *   POSKEY_DOCTOR_SILENT            a pty pair with nothing on the other end. A pty has no baud rate,
 *                                   so a real baud mismatch cannot be made on one; its two faces
 *                                   are silence and garbage, both made here
 *   POSKEY_DOCTOR_GARBLED           a peer that answers with binary garbage (what a UART at the wrong
 *                                   speed delivers)
 *   POSKEY_DOCTOR_WRONG_PROTOCOL    a modem-like peer answering "ERROR" to everything, and a peer of
 *                                   another "brand" answering STX/ETX frames of unknown types
 *   POSKEY_DOCTOR_CLOCK_SKEW        a simulator whose clock is three days behind
 *   POSKEY_DOCTOR_CERT_VALIDITY     a simulator presenting an X.509 certificate that expired
 *   POSKEY_DOCTOR_APP_ORDER/MISSING simulators with apps installed out of order / one missing
 *   POSKEY_DOCTOR_TAMPERED          a simulator that was tampered with
 *   POSKEY_DOCTOR_TRANSPORT_KEY     a simulator born with another transport KBPK
 *   POSKEY_DOCTOR_HOST/HSM_UNREACHABLE closed TCP ports
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fixParity } from '../../src/crypto/keys.js';
import { createRootCa, issueCertificate } from '../../src/keyload/ca.js';
import { DIAGNOSES, type DoctorCode, type DoctorReport, runDoctor } from '../../src/keyload/doctor.js';
import {
  encodeFrame,
  kbpkAuthenticator,
  REQUIRED_APP_ORDER,
  transportKeyHandle,
} from '../../src/keyload/protocol.js';
import { type ByteTransport, openSerial } from '../../src/keyload/transport.js';
import { derToPem } from '../../src/keyload/x509.js';
import { cleanupDirs, FAST_LINK, type PtyPair, ptyPair, simulator, tempDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const KBPK = fixParity(randomBytes(16));
const closers: (() => unknown)[] = [];
const pairs: PtyPair[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const p of pairs.splice(0)) await p.stop();
});
after(() => cleanupDirs());

async function line(aOptions = '', dir?: string): Promise<PtyPair> {
  const p = await ptyPair(dir, aOptions);
  pairs.push(p);
  return p;
}

function auth(key: Buffer = KBPK) {
  const h = transportKeyHandle('tdes', key);
  const a = kbpkAuthenticator(h);
  h.destroy();
  closers.push(() => a.destroy());
  return a;
}

function doctor(port: string, extra: Parameters<typeof runDoctor>[0] = {}): Promise<DoctorReport> {
  return runDoctor({ target: { port }, link: FAST_LINK, transportKey: auth(), ...extra });
}

/** The one failing check: its step and code (and that it carries cause and fix). */
function failure(report: DoctorReport): { step: string; code: DoctorCode; detail: string } {
  const failed = report.checks.filter((c) => c.status === 'fail');
  assert.equal(failed.length, 1, JSON.stringify(report.checks, null, 1));
  const f = failed[0]!;
  assert.equal(report.ok, false);
  assert.equal(f.cause, DIAGNOSES[f.code].cause);
  assert.ok(f.fix?.startsWith(DIAGNOSES[f.code].fix));
  return { step: f.step, code: f.code, detail: f.detail };
}

async function serveDevice(b: string, options: Parameters<typeof simulator>[1] = {}, key: Buffer = KBPK) {
  const device = simulator(key, options);
  const link = await device.listenSerial(b, FAST_LINK);
  closers.push(
    () => link.close(),
    () => device.destroy(),
  );
  return device;
}

/** A peer on the device end that answers every chunk it receives with `answer(chunk)`. */
async function peer(b: string, answer: (chunk: Buffer) => Buffer | undefined): Promise<ByteTransport> {
  const t = await openSerial(b);
  t.attach({
    data: (chunk) => {
      const out = answer(chunk);
      if (out !== undefined) void t.write(out).catch(() => undefined);
    },
    close: () => undefined,
  });
  closers.push(() => t.close());
  return t;
}

async function closedPort(): Promise<string> {
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return `127.0.0.1:${port}`;
}

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(
  args: string[],
  options: { env?: Record<string, string>; uid?: number; gid?: number } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, ...options.env },
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('poskey doctor: a healthy chain', () => {
  it('passes every step and reports the device', async () => {
    const { a, b } = await line();
    await serveDevice(b, { padOptions: { serial: 'SN-DOC-OK' } });
    const host = createServer((s) => s.destroy());
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => host.close(r)));
    const address = `127.0.0.1:${(host.address() as { port: number }).port}`;
    const report = await doctor(a, { host: address, hsm: address });
    assert.equal(report.ok, true, JSON.stringify(report.checks, null, 1));
    assert.deepEqual(
      report.checks.map((c) => [c.step, c.status]),
      [
        ['serial-driver', 'pass'],
        ['port', 'pass'],
        ['link', 'pass'],
        ['protocol', 'pass'],
        ['clock', 'pass'],
        ['certificate', 'skip'],
        ['apps', 'pass'],
        ['tamper', 'pass'],
        ['transport-key', 'pass'],
        ['host', 'pass'],
        ['hsm', 'pass'],
      ],
    );
    assert.equal(report.device?.serial, 'SN-DOC-OK');
  });
});

describe('poskey doctor: port faults', () => {
  it('POSKEY_DOCTOR_NO_PORT: the port does not exist', async () => {
    const report = await doctor('/dev/ttyPOSKEY-NO-SUCH-PORT');
    const f = failure(report);
    assert.deepEqual([f.step, f.code], ['port', 'POSKEY_DOCTOR_NO_PORT']);
    assert.ok(report.checks.filter((c) => c.status === 'skip').length >= 7, 'device steps skipped');
  });

  it('POSKEY_DOCTOR_PORT_OPEN: the path is not a serial device', async () => {
    const file = join(tempDir('poskey-file-'), 'not-a-tty');
    writeFileSync(file, 'plain file\n');
    const f = failure(await doctor(file));
    assert.deepEqual([f.step, f.code], ['port', 'POSKEY_DOCTOR_PORT_OPEN']);
    assert.match(f.detail, /ioctl/);
  });

  it('POSKEY_DOCTOR_PORT_BUSY: another program holds the port', async () => {
    const { a, b } = await line();
    await serveDevice(b);
    const holder = await openSerial(a);
    closers.push(() => holder.close());
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['port', 'POSKEY_DOCTOR_PORT_BUSY']);
  });

  it('POSKEY_DOCTOR_DEVICE_UNREACHABLE: nothing listens on the TCP key-loading port', async () => {
    const report = await runDoctor({ target: { tcp: await closedPort() }, link: FAST_LINK });
    const f = failure(report);
    assert.deepEqual([f.step, f.code], ['port', 'POSKEY_DOCTOR_DEVICE_UNREACHABLE']);
  });

  it('POSKEY_DOCTOR_PERMISSION: a root:dialout 0660 port, opened by a user outside dialout', async () => {
    const dir = tempDir('poskey-perm-');
    chmodSync(dir, 0o755); // nobody may reach the link, not the device node
    const { a } = await line('perm=0660,group=dialout', dir);
    const run = await cli(['doctor', '--port', a, '--json'], { uid: 65534, gid: 65534 });
    assert.equal(run.code, 1, run.stderr);
    const report = JSON.parse(run.stdout) as DoctorReport;
    const f = failure(report);
    assert.deepEqual([f.step, f.code], ['port', 'POSKEY_DOCTOR_PERMISSION']);
    const port = report.checks.find((c) => c.step === 'port')!;
    assert.match(port.fix ?? '', /group 'dialout'/);
  });

  it('POSKEY_DOCTOR_SERIAL_DRIVER: the serial binding does not load (musl build on glibc)', async () => {
    const run = await cli(['doctor', '--port', '/dev/null', '--json'], { env: { LIBC: 'musl' } });
    assert.equal(run.code, 1, run.stderr);
    const f = failure(JSON.parse(run.stdout) as DoctorReport);
    assert.deepEqual([f.step, f.code], ['serial-driver', 'POSKEY_DOCTOR_SERIAL_DRIVER']);
    assert.match(f.detail, /musl/);
  });
});

describe('poskey doctor: line faults', () => {
  it('POSKEY_DOCTOR_SILENT: the port opens but nothing answers', async () => {
    const { a } = await line();
    const started = Date.now();
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['link', 'POSKEY_DOCTOR_SILENT']);
    assert.ok(Date.now() - started < 5000);
  });

  it('POSKEY_DOCTOR_GARBLED: bytes arrive that never form a frame (baud mismatch)', async () => {
    const { a, b } = await line();
    await peer(b, () => Buffer.from('f8e0fc80fe00f0e7c3f89e80', 'hex'));
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['link', 'POSKEY_DOCTOR_GARBLED']);
  });

  it('POSKEY_DOCTOR_WRONG_PROTOCOL: a modem answers AT-style text', async () => {
    const { a, b } = await line();
    await peer(b, () => Buffer.from('\r\nERROR\r\n'));
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['link', 'POSKEY_DOCTOR_WRONG_PROTOCOL']);
    assert.match(f.detail, /ERROR/);
  });

  it('POSKEY_DOCTOR_WRONG_PROTOCOL: a device of another brand answers frames of unknown types', async () => {
    const { a, b } = await line();
    await peer(b, () =>
      Buffer.concat([Buffer.from([0x06]), encodeFrame(0x41, 1, Buffer.from('BRAND-X LOADER V2'))]),
    );
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['link', 'POSKEY_DOCTOR_WRONG_PROTOCOL']);
  });
});

describe('poskey doctor: device faults', () => {
  it('POSKEY_DOCTOR_CLOCK_SKEW: the device clock is three days behind', async () => {
    const { a, b } = await line();
    await serveDevice(b, { clockOffsetMs: -3 * 86400_000 });
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['clock', 'POSKEY_DOCTOR_CLOCK_SKEW']);
    assert.match(f.detail, /3\.0 days behind/);
  });

  it('POSKEY_DOCTOR_CERT_VALIDITY: the device certificate expired', async () => {
    const ca = createRootCa({ cn: 'Test root' });
    const { cert } = issueCertificate(ca, {
      role: 'krd',
      cn: 'SIM-900 terminal',
      notBefore: new Date(Date.UTC(2020, 0, 1)),
      notAfter: new Date(Date.UTC(2021, 0, 1)),
    });
    const { a, b } = await line();
    await serveDevice(b, { certificate: derToPem(cert.der, 'CERTIFICATE') });
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['certificate', 'POSKEY_DOCTOR_CERT_VALIDITY']);
    assert.match(f.detail, /expired on 2021-01-01/);
  });

  it('POSKEY_DOCTOR_APP_ORDER: the bank-card application was loaded before the master controller', async () => {
    const { a, b } = await line();
    await serveDevice(b, {
      padOptions: { apps: ['signature-file', 'bank-card', 'master-controller', 'convenience-payment'] },
    });
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['apps', 'POSKEY_DOCTOR_APP_ORDER']);
    assert.match(f.detail, /'master-controller' was installed before 'bank-card'|'bank-card'/);
  });

  it('POSKEY_DOCTOR_APP_MISSING: the convenience-payment application is missing', async () => {
    const { a, b } = await line();
    await serveDevice(b, { padOptions: { apps: REQUIRED_APP_ORDER.slice(0, 3) } });
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['apps', 'POSKEY_DOCTOR_APP_MISSING']);
    assert.match(f.detail, /convenience-payment/);
  });

  it('POSKEY_DOCTOR_TAMPERED: the terminal was opened', async () => {
    const { a, b } = await line();
    const device = await serveDevice(b);
    device.tamper();
    const report = await doctor(a);
    const f = failure(report);
    assert.deepEqual([f.step, f.code], ['tamper', 'POSKEY_DOCTOR_TAMPERED']);
    assert.equal(report.checks.find((c) => c.step === 'transport-key')?.status, 'skip');
  });

  it('POSKEY_DOCTOR_TRANSPORT_KEY: the device holds another transport KBPK', async () => {
    const { a, b } = await line();
    await serveDevice(b, {}, fixParity(randomBytes(16)));
    const f = failure(await doctor(a));
    assert.deepEqual([f.step, f.code], ['transport-key', 'POSKEY_DOCTOR_TRANSPORT_KEY']);
    assert.match(f.detail, /KCV/);
  });
});

describe('poskey doctor: services', () => {
  it('POSKEY_DOCTOR_HOST_UNREACHABLE and POSKEY_DOCTOR_HSM_UNREACHABLE: closed ports', async () => {
    const report = await runDoctor({ host: await closedPort(), hsm: await closedPort() });
    const failed = report.checks.filter((c) => c.status === 'fail').map((c) => [c.step, c.code]);
    assert.deepEqual(failed, [
      ['host', 'POSKEY_DOCTOR_HOST_UNREACHABLE'],
      ['hsm', 'POSKEY_DOCTOR_HSM_UNREACHABLE'],
    ]);
    assert.match(report.checks.find((c) => c.step === 'host')!.detail, /ECONNREFUSED/);
  });

  it('every diagnosis is documented in docs/doctor.md', async () => {
    const { readFile } = await import('node:fs/promises');
    const doc = await readFile(new URL('../../docs/doctor.md', import.meta.url), 'utf8');
    for (const code of Object.keys(DIAGNOSES))
      assert.ok(doc.includes(code), `${code} missing from docs/doctor.md`);
  });
});
