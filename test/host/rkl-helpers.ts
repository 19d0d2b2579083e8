/**
 * The RKL test world on top of the host world (helpers.ts): an RSA and an SM2 vendor CA made with
 * poskey's CA code, a KDH certificate for each, a TLS certificate for 127.0.0.1 made by openssl, and
 * the real HTTPS RKL server over the host's own store and HSM.
 */
import { execFileSync } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRklServer, parseRklConfig, type RklServer } from '../../src/host/rkl/plugin.js';
import { AuditLog } from '../../src/hsm/audit.js';
import { type CertificateAuthority, createRootCa, issueCertificate } from '../../src/keyload/ca.js';
import { type Certificate, derToPem, type KeyAlgorithm } from '../../src/keyload/x509.js';
import type { World } from './helpers.js';

export interface Device {
  cert: Certificate;
  privateKey: KeyObject;
}

export interface RklWorld {
  url: string;
  tlsCa: Buffer;
  ca: Record<KeyAlgorithm, CertificateAuthority>;
  server: RklServer;
  auditPath: string;
  /** A device certificate (role KRD) for `serial`. */
  device(alg: KeyAlgorithm, serial: string, extra?: { notBefore?: Date; notAfter?: Date }): Device;
  close(): Promise<void>;
}

const DAY = 86_400_000;

export async function startRkl(host: World): Promise<RklWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-rkl-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'tls.key'),
      '-out',
      join(dir, 'tls.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const ca = {
    rsa: createRootCa({
      algorithm: 'rsa',
      cn: 'Vendor RSA Root',
      notBefore: new Date(Date.now() - 60 * DAY),
    }),
    sm2: createRootCa({
      algorithm: 'sm2',
      cn: 'Vendor SM2 Root',
      notBefore: new Date(Date.now() - 60 * DAY),
    }),
  };
  const profiles = (['rsa', 'sm2'] as const).map((alg) => {
    const kdh = issueCertificate(ca[alg], { role: 'kdh', cn: `KDH ${alg}` });
    const paths = {
      vendorCa: join(dir, `${alg}-ca.pem`),
      cert: join(dir, `${alg}-kdh.pem`),
      key: join(dir, `${alg}-kdh.key`),
    };
    writeFileSync(paths.vendorCa, derToPem(ca[alg].cert.der, 'CERTIFICATE'));
    writeFileSync(paths.cert, derToPem(kdh.cert.der, 'CERTIFICATE'));
    writeFileSync(paths.key, kdh.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string, {
      mode: 0o600,
    });
    return { vendorCa: paths.vendorCa, kdh: { cert: paths.cert, key: paths.key } };
  });
  const auditPath = join(dir, 'rkl-audit.log');
  const audit = await AuditLog.open(auditPath);
  const server = await createRklServer({
    config: parseRklConfig({
      port: 0,
      tls: { cert: join(dir, 'tls.pem'), key: join(dir, 'tls.key') },
      profiles,
    }),
    hsm: host.client,
    store: host.store,
    audit,
  });
  const { port } = await server.listen();
  return {
    url: `https://127.0.0.1:${port}`,
    tlsCa: readFileSync(join(dir, 'tls.pem')),
    ca,
    server,
    auditPath,
    device(alg, serial, extra = {}) {
      const { cert, privateKey } = issueCertificate(ca[alg], {
        role: 'krd',
        cn: 'PINPAD',
        deviceSerial: serial,
        ...extra,
      });
      return { cert, privateKey: privateKey! };
    },
    async close() {
      await server.close();
      await audit.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
