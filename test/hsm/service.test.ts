/**
 * The HSM service: config, refusals, a restart on the sealed LMK, dev mode, shutdown. Real
 * listeners on ephemeral loopback ports, a real data directory, real sealed file and audit log.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { verifyAuditLog } from '../../src/hsm/audit.js';
import { formLmk } from '../../src/hsm/lmk.js';
import { SEALED_LMK_FILE, saveSealedLmks } from '../../src/hsm/seal.js';
import {
  AUDIT_FILE,
  ERR_CONFIG,
  ERR_LISTEN,
  type HsmService,
  hsmServiceConfigSchema,
  newApiToken,
  parseHsmServiceConfig,
  readHsmConfigFile,
  startHsmService,
} from '../../src/hsm/service.js';

const PASS = 'service test passphrase';
const TOKEN = newApiToken();
const quiet = { log: () => undefined };

let base: string;
let n = 0;
const dir = () => join(base, `d${++n}`);

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'poskey-hsm-service-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A data directory with a sealed production LMK (cheap scrypt for tests); returns its KCV. */
async function sealedDir(d: string): Promise<string> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(d, { recursive: true });
  const { lmk, kcv } = formLmk('00', [randomBytes(32), randomBytes(32)]);
  await saveSealedLmks(join(d, SEALED_LMK_FILE), lmk, PASS, { kdf: { N: 1024 } });
  lmk.destroy();
  return kcv;
}

function config(d: string, extra: Record<string, unknown> = {}) {
  return { dataDir: d, tcpPort: 0, httpPort: 0, tokens: [TOKEN], logLevel: 'silent' as const, ...extra };
}

/** One payShield command over a fresh connection; returns the response payload after the header. */
function payShield(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const body = Buffer.from(`HDR1${command}`, 'latin1');
    const frame = Buffer.concat([Buffer.from([body.length >> 8, body.length & 0xff]), body]);
    let got = Buffer.alloc(0);
    socket.on('connect', () => socket.write(frame));
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        socket.end();
        resolve(got.toString('latin1', 6, 2 + got.readUInt16BE(0)));
      }
    });
    socket.on('error', reject);
  });
}

async function http(service: HsmService, method: string, path: string, body?: unknown, token = TOKEN) {
  const res = await fetch(`http://127.0.0.1:${service.httpPort}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('service config', () => {
  it('fills in the defaults', () => {
    const c = parseHsmServiceConfig({}, {});
    assert.equal(c.dataDir, './data/hsm');
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.tcpPort, 1500);
    assert.equal(c.httpPort, 8443);
    assert.equal(c.headerLength, 4);
    assert.equal(c.dev, false);
    assert.deepEqual(c.tokens, []);
    assert.ok(Object.isFrozen(c));
    assert.deepEqual(hsmServiceConfigSchema.parse({}), { ...c, tokens: [] });
  });

  it('adds tokens from POSKEY_HSM_TOKENS, once each', () => {
    const other = newApiToken();
    const c = parseHsmServiceConfig({ tokens: [TOKEN] }, { POSKEY_HSM_TOKENS: ` ${other} ,${TOKEN},` });
    assert.deepEqual(c.tokens, [TOKEN, other]);
  });

  it('names the bad field: unknown key, port out of range, short token, bad TLS block', () => {
    const bad: [unknown, Record<string, string>, string][] = [
      [{ bogus: 1 }, {}, 'config'],
      [{ tcpPort: 70000 }, {}, 'tcpPort'],
      [{ headerLength: -1 }, {}, 'headerLength'],
      [{ tokens: ['short'] }, {}, 'tokens.0'],
      [{ tls: { key: 'k.pem' } }, {}, 'tls.cert'],
      [{}, { POSKEY_HSM_TOKENS: 'short' }, 'POSKEY_HSM_TOKENS'],
    ];
    for (const [input, env, field] of bad) {
      assert.throws(
        () => parseHsmServiceConfig(input, env),
        (e: { code: string; field: string }) =>
          e.code === ERR_CONFIG && (e.field === field || field === 'config'),
        JSON.stringify(input),
      );
    }
  });

  it('reads a JSON config file, refusing unreadable, non-JSON and non-object files', async () => {
    const good = join(base, 'good.json');
    await writeFile(good, JSON.stringify({ tcpPort: 1600, dev: true }));
    assert.deepEqual(await readHsmConfigFile(good), { tcpPort: 1600, dev: true });
    const notJson = join(base, 'bad.json');
    await writeFile(notJson, '{ tcpPort: ');
    const array = join(base, 'array.json');
    await writeFile(array, '[1]');
    for (const path of [join(base, 'missing.json'), notJson, array]) {
      await assert.rejects(readHsmConfigFile(path), { code: ERR_CONFIG, field: 'config' });
    }
  });
});

describe('startHsmService refuses', () => {
  it('without a sealed LMK, before asking for the secret, naming the ceremony and --dev', async () => {
    let asked = false;
    await assert.rejects(
      startHsmService(config(dir()), {
        ...quiet,
        secret: () => {
          asked = true;
          return PASS;
        },
      }),
      (e: { code: string; message: string }) =>
        e.code === 'POSKEY_ERR_LMK_MISSING' &&
        /poskey hsm lmk ceremony/.test(e.message) &&
        /--dev/.test(e.message),
    );
    assert.equal(asked, false);
  });

  it('without a passphrase, and with a wrong one', async () => {
    const d = dir();
    await sealedDir(d);
    await assert.rejects(startHsmService(config(d), { ...quiet, env: {} }), {
      code: 'POSKEY_ERR_LMK_PASSPHRASE',
    });
    await assert.rejects(startHsmService(config(d), { ...quiet, secret: 'not the passphrase' }), {
      code: 'POSKEY_ERR_LMK_UNSEAL',
    });
  });

  it('HTTP without tokens outside dev mode, and TLS files that cannot be read', async () => {
    const d = dir();
    await sealedDir(d);
    await assert.rejects(startHsmService(config(d, { tokens: [] }), { ...quiet, secret: PASS, env: {} }), {
      code: 'POSKEY_ERR_HSM_TOKENS',
      field: 'tokens',
    });
    const tls = { key: join(d, 'no-key.pem'), cert: join(d, 'no-cert.pem') };
    await assert.rejects(startHsmService(config(d, { tls }), { ...quiet, secret: PASS }), {
      code: ERR_CONFIG,
      field: 'tls.key',
    });
  });

  it('a port in use, closing what it had opened', async () => {
    const d = dir();
    await sealedDir(d);
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const taken = (blocker.address() as { port: number }).port;
    try {
      await assert.rejects(startHsmService(config(d, { httpPort: taken }), { ...quiet, secret: PASS }), {
        code: ERR_LISTEN,
      });
      await assert.rejects(startHsmService(config(d, { tcpPort: taken }), { ...quiet, secret: PASS }), {
        code: 'POSKEY_ERR_PAYSHIELD_LISTEN',
      });
      // The failed starts released the audit log: a third start works.
      const s = await startHsmService(config(d, { http: false }), { ...quiet, secret: PASS });
      await s.close();
    } finally {
      blocker.close();
    }
  });
});

describe('startHsmService restart on the sealed LMK', () => {
  it('keys made before a restart still work after it, and the audit chain holds', async () => {
    const d = dir();
    const lmkKcv = await sealedDir(d);
    const first = await startHsmService(config(d), { ...quiet, secret: PASS });
    assert.deepEqual(first.lmks, [{ id: '00', kcv: lmkKcv, dev: false, default: true }]);
    assert.ok(first.tcpPort! > 0 && first.httpPort! > 0);
    assert.equal(
      await payShield(first.tcpPort!, 'NC'),
      `ND00${lmkKcv}000000${first.hsm.diagnostics().version.padEnd(9)}`,
    );
    // One key through the HTTP API (kept in the key table), one in process (kept by "the host").
    const created = await http(first, 'POST', '/keys', { keyType: 'TPK', keyAlgorithm: 'TDES_2KEY' });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const key = created.body.key as { keyArn: string; keyCheckValue: string };
    const held = first.hsm.generateKey({ keyType: 'TAK', algorithm: 'tdes2' });
    const unauth = await http(first, 'GET', '/keys', undefined, newApiToken());
    assert.equal(unauth.status, 401);
    // GET /diagnostics is the app's route, fed the service's diagnostics (payShield counters, audit).
    const diag = await http(first, 'GET', '/diagnostics');
    assert.equal(diag.status, 200);
    assert.equal((diag.body.payShield as { commands: Record<string, number> }).commands.NC, 1);
    assert.equal((diag.body.audit as { file: string }).file, join(d, AUDIT_FILE));
    assert.equal(diag.body.dev, false);
    await first.close();
    await first.close(); // idempotent
    await first.closed;

    // Restart: the passphrase from the environment this time.
    const second = await startHsmService(config(d), { ...quiet, env: { POSKEY_LMK_PASSPHRASE: PASS } });
    try {
      assert.equal(second.lmks[0]!.kcv, lmkKcv);
      const id = key.keyArn.split('/').pop()!;
      const got = await http(second, 'GET', `/keys/${id}`);
      assert.equal(got.status, 200);
      assert.equal((got.body.key as { keyCheckValue: string }).keyCheckValue, key.keyCheckValue);
      assert.equal(second.hsm.checkValue(held.keyBlock, held.info.kcv.method).value, held.info.kcv.value);
      assert.equal(second.hsm.describeKey(held.keyBlock).keyType, 'TAK');
    } finally {
      await second.close();
    }
    const v = await verifyAuditLog(join(d, AUDIT_FILE));
    assert.equal(v.ok, true);
    const records = (await readFile(join(d, AUDIT_FILE), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action: string; actor: string; keyId?: string; kcv?: string });
    const actions = records.map((r) => r.action);
    const api = records.find((r) => r.action === 'api.CreateKey')!;
    assert.equal(api.keyId, key.keyArn.split('/').pop());
    assert.equal(api.kcv, key.keyCheckValue);
    assert.match(api.actor, /^token:[0-9a-f]{12}$/);
    // The HTTP create is recorded twice: by the HSM (key.generate, by KCV) and by the API (api.CreateKey,
    // with the table's key id); the in-process key only by the HSM.
    assert.deepEqual(actions, [
      'hsm.start',
      'key.generate',
      'api.CreateKey',
      'key.generate',
      'hsm.stop',
      'hsm.start',
      'hsm.stop',
    ]);
  });
});

describe('startHsmService in development mode', () => {
  it('warns loudly with the KCV, marks its blocks, and makes an HTTP token for the run', async () => {
    const d = dir();
    const lines: string[] = [];
    const s = await startHsmService(
      { dataDir: d, dev: true, tcp: false, httpPort: 0, logLevel: 'silent' },
      { log: (l) => lines.push(l), env: {} },
    );
    try {
      assert.equal(s.dev, true);
      assert.equal(s.tcpPort, undefined);
      const kcv = s.lmks[0]!.kcv;
      assert.match(lines.join('\n'), new RegExp(`DEVELOPMENT MODE[\\s\\S]*KCV ${kcv}`));
      assert.equal(s.hsm.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' }).info.dev, true);
      const token = /HTTP API token for this run: (\S+)/.exec(lines.join('\n'))?.[1];
      assert.ok(token);
      assert.equal((await http(s, 'GET', '/keys', undefined, token)).status, 200);
      const diag = await http(s, 'GET', '/diagnostics', undefined, token);
      assert.equal(diag.status, 200);
      assert.deepEqual(diag.body.lmks, [{ id: '00', kcv, dev: true }]);
      assert.equal((diag.body.counters as Record<string, number>)['generateKey.ok'], 1);
      assert.equal((diag.body.audit as { lastSeq: number }).lastSeq, 2);
      assert.equal((await http(s, 'GET', '/diagnostics', undefined, newApiToken())).status, 401);
    } finally {
      await s.close();
    }
  });

  it('closes on SIGTERM when asked to handle signals', async () => {
    const d = dir();
    const s = await startHsmService(
      { dataDir: d, dev: true, http: false, tcpPort: 0, logLevel: 'silent' },
      { ...quiet, handleSignals: true },
    );
    assert.ok(process.listenerCount('SIGTERM') > 0);
    process.emit('SIGTERM', 'SIGTERM');
    await s.closed;
    await assert.rejects(payShield(s.tcpPort!, 'NC'));
  });
});
