/**
 * `poskey ca …`: the small remote-key-loading CA (src/keyload/ca.ts) on the command line.
 *
 *   ca init   --dir D [--alg rsa|sm2] [--cn NAME] [--o ORG] [--days N]   create the root
 *   ca issue  --dir D --role kdh|krd --cn NAME [--serial SN] [--o ORG] [--days N]
 *             issue a host (KDH) or device (KRD) certificate with a fresh key pair
 *   ca show   --dir D                                                    the root and what it issued
 *
 * Files are PEM: ca.cert.pem, ca.key.pem and issued/<role>-<cn>-<serial>.{cert,key}.pem; private
 * keys are written with mode 0600 and never printed.
 */
import { type Command, Option } from 'commander';
import { type CertRole, initCaDir, issueToDir, listIssued, loadCaDir, roleOf } from '../keyload/ca.js';
import type { Certificate } from '../keyload/x509.js';
import { action, printResult } from './output.js';

function summary(cert: Certificate): Record<string, unknown> {
  return {
    subject: cert.subject.text,
    issuer: cert.issuer.text,
    algorithm: cert.keyAlgorithm,
    serialNumber: cert.serialNumber.toString('hex').toUpperCase(),
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    fingerprint: cert.fingerprint,
  };
}

/** `--days` as given: validation (a whole number of days) is the CA's. */
const days = (v: string | undefined) => (v === undefined ? undefined : Number(v));

/** Registers `poskey ca`. */
export function registerCaCommands(program: Command): void {
  const ca = program
    .command('ca')
    .description('certificate authority for remote key loading (TR-34): root, KDH and KRD certificates');

  ca.command('init')
    .description('create a root CA in a directory')
    .requiredOption('--dir <dir>', 'CA directory (created if missing)')
    .addOption(new Option('--alg <alg>', 'key algorithm').choices(['rsa', 'sm2']).default('rsa'))
    .option('--cn <name>', 'root common name', 'poskey RKL Root CA')
    .option('--o <org>', 'organization')
    .option('--days <n>', 'lifetime in days', '3650')
    .option('--json', 'print JSON')
    .action(
      action(
        (o: { dir: string; alg: 'rsa' | 'sm2'; cn: string; o?: string; days: string; json?: boolean }) => {
          const root = initCaDir(o.dir, { algorithm: o.alg, cn: o.cn, o: o.o, days: days(o.days) });
          printResult({ dir: o.dir, ...summary(root.cert) }, o.json === true);
        },
      ),
    );

  ca.command('issue')
    .description('issue a KDH (host) or KRD (device) certificate and key pair')
    .requiredOption('--dir <dir>', 'CA directory')
    .addOption(new Option('--role <role>', 'certificate role').choices(['kdh', 'krd']).makeOptionMandatory())
    .requiredOption('--cn <name>', 'subject common name (host or device name)')
    .option('--serial <sn>', 'device serial number (subject SERIALNUMBER)')
    .option('--o <org>', 'organization')
    .option('--days <n>', 'lifetime in days', '365')
    .option('--json', 'print JSON')
    .action(
      action(
        (o: {
          dir: string;
          role: CertRole;
          cn: string;
          serial?: string;
          o?: string;
          days: string;
          json?: boolean;
        }) => {
          const issued = issueToDir(o.dir, {
            role: o.role,
            cn: o.cn,
            o: o.o,
            deviceSerial: o.serial,
            days: days(o.days),
          });
          printResult(
            { role: o.role, ...summary(issued.cert), certFile: issued.certPath, keyFile: issued.keyPath },
            o.json === true,
          );
        },
      ),
    );

  ca.command('show')
    .description('show the root CA and the certificates it issued')
    .requiredOption('--dir <dir>', 'CA directory')
    .option('--json', 'print JSON')
    .action(
      action((o: { dir: string; json?: boolean }) => {
        const root = loadCaDir(o.dir);
        const now = Date.now();
        const issued = listIssued(o.dir).map(({ file, cert }) => ({
          role: roleOf(cert) ?? '?',
          subject: cert.subject.text,
          serialNumber: cert.serialNumber.toString('hex').toUpperCase(),
          notAfter: cert.notAfter.toISOString(),
          status:
            now > cert.notAfter.getTime()
              ? 'expired'
              : now < cert.notBefore.getTime()
                ? 'not yet valid'
                : 'valid',
          file,
        }));
        printResult({ dir: o.dir, root: summary(root.cert), issued }, o.json === true);
      }),
    );
}
