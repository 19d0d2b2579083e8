/**
 * "No clear key, PIN or LMK component appears in any log, error, response or file."
 *
 * One whole HSM session with clear values the test knows, run the way an operator runs it: the
 * real CLI (`poskey hsm lmk ceremony`, `serve`, `lmk add`, `lmk rotate`) spawned as processes,
 * the LMK formed from known components through the ceremony (not dev mode), the service at debug
 * log level with its stdout and stderr written to files in the data directory. Over HTTP: keys
 * imported from known components, a key generated (its clear value recovered by exporting it under
 * a known ZMK), PIN blocks with known clear forms translated, MACs, encryption, exports, the
 * lifecycle. Over the payShield TCP interface: a known key imported under the ZMK (A6), exported
 * again (A8), a PIN translated (CC), a MAC (M6), a malformed command. Then a second LMK is formed
 * and the key table rotated to it, and the service restarted on it and used again.
 *
 * Then every file under the data directory (sealed LMK file, audit log, key table and its -wal and
 * -shm, the logs), every CLI's stdout and stderr, every HTTP answer and every TCP response frame is
 * scanned, while the service runs and after it stopped, for: the LMK components and the LMKs, every
 * clear key and component (hex upper and lower case, raw bytes, base64, a JSON Buffer's byte list,
 * and each 8-byte part of longer keys), the clear PIN blocks, the seal passphrase and the API token.
 * A hit fails with the file and the offset.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { toHex, xor } from '../../src/crypto/bytes.js';
import { createKey, type KeyHandle } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { fixParity } from '../../src/crypto/keys.js';
import { retailMac } from '../../src/crypto/mac.js';
import { encodePinBlock } from '../../src/crypto/pinblock.js';
import { verifyAuditLog } from '../../src/hsm/audit.js';
import { KEY_TABLE_FILE } from '../../src/hsm/http/key-table.js';
import { splitResponse, TestClient } from './payshield-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PASS = `scan passphrase ${randomBytes(6).toString('hex')}`;
const TOKEN = `scan-token-${randomBytes(12).toString('base64url')}`;
const PAN = '4012345678909';
/** The 12 rightmost PAN digits without the check digit (payShield account number field). */
const ACCOUNT = '401234567890';
const PIN = '4829';
const MESSAGE = '00112233445566778899AABBCCDDEEFF0123456789ABCDEF';

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field
type Body = Record<string, any>;

// ---- The scanner ----------------------------------------------------------------------------------

interface Secret {
  label: string;
  bytes: Buffer;
}

interface Needle {
  label: string;
  bytes: Buffer;
}

/** Every form a secret could take in a file or a log line. */
function needlesOf(secret: Secret): Needle[] {
  const out: Needle[] = [];
  const add = (label: string, bytes: Buffer) => {
    if (bytes.length > 0) out.push({ label, bytes });
  };
  const forms = (label: string, b: Buffer) => {
    add(`${label} (hex upper)`, Buffer.from(b.toString('hex').toUpperCase(), 'latin1'));
    add(`${label} (hex lower)`, Buffer.from(b.toString('hex'), 'latin1'));
    add(`${label} (raw bytes)`, b);
  };
  const b = secret.bytes;
  forms(secret.label, b);
  add(`${secret.label} (base64)`, Buffer.from(b.toString('base64').replace(/=+$/, ''), 'latin1'));
  add(`${secret.label} (JSON byte list)`, Buffer.from(`[${[...b].join(',')}]`, 'latin1'));
  if (b.length > 8) {
    for (let i = 0; i + 8 <= b.length; i += 8)
      forms(`${secret.label} bytes ${i}-${i + 7}`, b.subarray(i, i + 8));
  }
  return out;
}

/** A text secret (passphrase, token): as written. */
function textSecret(label: string, text: string): Secret {
  return { label, bytes: Buffer.from(text, 'utf8') };
}

interface Hit {
  where: string;
  offset: number;
  label: string;
}

function scan(where: string, haystack: Buffer, needles: readonly Needle[]): Hit[] {
  const hits: Hit[] = [];
  for (const n of needles) {
    const offset = haystack.indexOf(n.bytes);
    if (offset >= 0) hits.push({ where, offset, label: n.label });
  }
  return hits;
}

/** Every file under a directory, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

// ---- The session's state ---------------------------------------------------------------------------

let base: string;
let dataDir: string;
let logDir: string;
const secrets: Secret[] = [];
/** HTTP answers and TCP response frames, as received. */
const captured: { where: string; data: Buffer }[] = [];
let runs = 0;

function secret(label: string, bytes: Buffer): Buffer {
  secrets.push({ label, bytes: Buffer.from(bytes) });
  return bytes;
}

/** Spawns `poskey hsm …`; stdout and stderr are kept and written to files in the log directory. */
function poskey(
  args: string[],
  stdin: string,
  name: string,
): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'hsm', ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      POSKEY_LMK_PASSPHRASE: PASS,
      POSKEY_HSM_TOKENS: TOKEN,
      USER: 'scan-operator',
    },
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  child.stdin!.end(stdin);
  const n = ++runs;
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', async (code) => {
      const stdout = Buffer.concat(out);
      const stderr = Buffer.concat(err);
      await writeFile(join(logDir, `${n}-${name}.stdout.log`), stdout);
      await writeFile(join(logDir, `${n}-${name}.stderr.log`), stderr);
      resolve({ code, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8') });
    });
  });
  return { child, done };
}

async function cli(args: string[], stdin: string, name: string): Promise<string> {
  const r = await poskey(args, stdin, name).done;
  assert.equal(r.code, 0, `${name}: ${r.stderr}`);
  return r.stdout;
}

interface Running {
  child: ChildProcess;
  http: (method: string, path: string, body?: unknown) => Promise<{ status: number; body: Body }>;
  tcp: TestClient;
  stop: () => Promise<void>;
}

/** `poskey hsm serve` on ports 0 at debug level; resolves once it printed its ports. */
async function serve(name: string): Promise<Running> {
  const { child, done } = poskey(
    ['serve', '--data-dir', dataDir, '--tcp-port', '0', '--http-port', '0', '--json', '--log-level', 'debug'],
    '',
    name,
  );
  const ready = await new Promise<{ tcpPort: number; httpPort: number }>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      const line = text.split('\n')[0]!;
      if (text.includes('\n')) resolve(JSON.parse(line) as { tcpPort: number; httpPort: number });
    });
    void done.then((r) => reject(new Error(`serve exited ${r.code}: ${r.stderr}`)));
  });
  let n = 0;
  const http = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${ready.httpPort}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    captured.push({
      where: `${name} HTTP answer ${++n} (${method} ${path})`,
      data: Buffer.from(text, 'utf8'),
    });
    return { status: res.status, body: JSON.parse(text) as Body };
  };
  const tcp = await TestClient.connect(ready.tcpPort);
  const stop = async () => {
    await tcp.close();
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 0, `${name} did not stop cleanly: ${r.stderr.slice(-2000)}`);
  };
  return { child, http, tcp, stop };
}

/** One payShield command; the raw response frame is kept for the scan. */
async function command(s: Running, text: string, what: string) {
  const frame = await s.tcp.send(`HDR1${text}`);
  captured.push({ where: `TCP response (${what})`, data: frame });
  return splitResponse(frame);
}

function ok(res: { status: number; body: Body }, what: string): Body {
  assert.equal(res.status, 200, `${what}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** A block that follows `S` in a payShield field: its length is in its characters 1-4. */
function lmkBlockAt(text: string): string {
  assert.equal(text[0], 'S');
  const len = Number(text.slice(2, 6));
  return text.slice(1, 1 + len);
}

/** Key blocks from the key table, read the way a host holds them (the TCP interface is stateless). */
function tableBlocks(): Map<string, string> {
  const Database = createRequire(import.meta.url)('better-sqlite3') as new (
    p: string,
    o: { readonly: boolean },
  ) => { prepare(s: string): { all(): { id: string; key_block: string }[] }; close(): void };
  const db = new Database(join(dataDir, KEY_TABLE_FILE), { readonly: true });
  try {
    const rows = db.prepare('SELECT id, key_block FROM keys WHERE key_block IS NOT NULL').all();
    return new Map(rows.map((r) => [r.id, r.key_block]));
  } finally {
    db.close();
  }
}

// ---- Known keys -----------------------------------------------------------------------------------

interface KnownKey {
  name: string;
  components: Buffer[];
  clear: Buffer;
  handle: KeyHandle;
}

/** A TDES or AES key from random components, every one of them (and the XOR, as-is and parity-fixed) a secret. */
function knownKey(name: string, alg: 'tdes' | 'aes', parts: number, length = 16): KnownKey {
  const components = Array.from({ length: parts }, (_, i) =>
    secret(`${name} component ${i + 1}`, randomBytes(length)),
  );
  const sum = components.reduce((a, c) => xor(a, c));
  secret(`${name} XOR of components`, sum);
  const clear = alg === 'tdes' ? secret(`${name} clear key`, fixParity(sum)) : sum;
  return { name, components, clear, handle: createKey(alg, clear) };
}

function componentsBody(k: KnownKey, withKcvs = false): Body {
  const components = k.components.map((c) => toHex(c));
  if (!withKcvs) return { keyComponents: { components } };
  const kcvs = k.components.map((c) => checkValue(createKey('tdes', c), { method: 'legacy' }).value);
  return { keyComponents: { components, keyCheckValues: kcvs } };
}

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'poskey-secrets-scan-'));
  dataDir = join(base, 'hsm');
  logDir = join(dataDir, 'logs');
  await mkdir(logDir, { recursive: true, mode: 0o700 });
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('the scanner', () => {
  it('finds every form of a secret, with its offset, and nothing else', () => {
    const key = Buffer.from('0123456789ABCDEFFEDCBA9876543210', 'hex');
    const needles = needlesOf({ label: 'k', bytes: key });
    const plant = (form: Buffer) =>
      Buffer.concat([Buffer.from('some log text '), form, Buffer.from(' more')]);
    const forms = [
      Buffer.from('0123456789ABCDEFFEDCBA9876543210'),
      Buffer.from('0123456789abcdeffedcba9876543210'),
      key,
      Buffer.from(key.toString('base64')),
      Buffer.from(JSON.stringify(key)),
      Buffer.from('FEDCBA9876543210'),
    ];
    for (const form of forms) {
      const hits = scan('planted', plant(form), needles);
      assert.ok(hits.length > 0, `missed ${form.toString('latin1')}`);
      for (const h of hits)
        assert.ok(h.offset >= 14 && h.offset < 14 + form.length, `${h.label} at ${h.offset}`);
    }
    assert.deepEqual(scan('clean', Buffer.from('0123456789ABCDE FEDCBA987654321'), needles), []);
  });
});

describe('secrets scan of a whole HSM session', () => {
  it('finds no clear key, component, LMK, PIN block, passphrase or token anywhere', {
    timeout: 300_000,
  }, async () => {
    secrets.push(textSecret('seal passphrase', PASS), textSecret('API token', TOKEN));

    // 1. The LMK ceremony, from known components typed on stdin (no confirmations: --yes).
    const lmk0 = [
      secret('LMK 00 component 1', randomBytes(32)),
      secret('LMK 00 component 2', randomBytes(32)),
    ];
    secret('LMK 00', xor(lmk0[0]!, lmk0[1]!));
    await cli(
      ['lmk', 'ceremony', '--data-dir', dataDir, '--components', '2', '--yes'],
      `${toHex(lmk0[0]!)}\n${toHex(lmk0[1]!).toLowerCase()}\n`,
      'ceremony',
    );

    // 2. The service on the sealed LMK.
    const first = await serve('serve-1');
    const zmk = knownKey('ZMK', 'tdes', 2);
    const tpk = knownKey('TPK', 'tdes', 3);
    const zpk = knownKey('ZPK', 'tdes', 2);
    const tak = knownKey('TAK', 'tdes', 2);
    const dek = knownKey('DEK', 'tdes', 2);
    const zek = knownKey('ZEK', 'aes', 2);
    type Named = 'ZMK' | 'TPK' | 'ZPK' | 'TAK' | 'DEK' | 'ZEK' | 'generated';
    const ids = {} as Record<Named, string>;
    try {
      // 3. HTTP: imports from components, a generated key, the lifecycle.
      const imports: [KnownKey, string, string, boolean][] = [
        [zmk, 'ZMK', 'TDES_2KEY', false],
        [tpk, 'TPK', 'TDES_2KEY', true],
        [zpk, 'ZPK', 'TDES_2KEY', false],
        [tak, 'TAK', 'TDES_2KEY', false],
        [dek, 'DEK', 'TDES_2KEY', false],
        [zek, 'ZEK', 'AES_128', false],
      ];
      for (const [k, keyType, keyAlgorithm, kcvs] of imports) {
        const got = ok(
          await first.http('POST', '/keys/import', {
            keyType,
            keyAlgorithm,
            exportability: 'SENSITIVE',
            keyMaterial: componentsBody(k, kcvs),
          }),
          `import ${k.name}`,
        );
        ids[k.name as Named] = got.key.keyId;
        assert.equal(
          got.key.keyCheckValue,
          checkValue(k.handle, { method: keyAlgorithm === 'AES_128' ? 'cmac' : 'legacy' }).value,
        );
      }
      // A refused import carries components too (KCV mismatch).
      const refusedImport = await first.http('POST', '/keys/import', {
        keyType: 'ZPK',
        keyAlgorithm: 'TDES_2KEY',
        keyMaterial: {
          keyComponents: {
            components: zpk.components.map((c) => toHex(c)),
            keyCheckValues: ['000000', '000000'],
          },
        },
      });
      assert.equal(refusedImport.body.code, 'POSKEY_ERR_KCV_MISMATCH');

      // A generated key: its clear value is recovered by exporting it under the known ZMK.
      const generated = ok(
        await first.http('POST', '/keys', {
          keyType: 'ZPK',
          keyAlgorithm: 'TDES_2KEY',
          exportability: 'SENSITIVE',
          alias: 'alias/scan/zpk2',
        }),
        'generate',
      ).key;
      ids.generated = generated.keyId;
      const exported = ok(
        await first.http('POST', `/keys/${generated.keyId}/export`, {
          wrappingKeyIdentifier: ids.ZMK,
          format: 'legacy',
        }),
        'export generated',
      ).wrappedKey;
      const generatedClear = secret(
        'generated ZPK clear key',
        zmk.handle.ecbDecrypt(Buffer.from(exported.keyMaterial, 'hex')),
      );
      const generatedKey = createKey('tdes', generatedClear);
      assert.equal(exported.keyCheckValue, checkValue(generatedKey, { method: 'legacy' }).value);
      ok(
        await first.http('POST', `/keys/${ids.TPK}/export`, {
          wrappingKeyIdentifier: ids.ZMK,
          format: 'tr31',
        }),
        'export TPK',
      );

      // PIN translation, with known clear PIN blocks on both sides.
      const clearPin = secret('clear PIN block, ISO 0', encodePinBlock({ format: 0, pin: PIN, pan: PAN }));
      const underTpk = toHex(tpk.handle.ecbEncrypt(clearPin));
      const t0 = ok(
        await first.http('POST', '/pindata/translate', {
          incomingKeyIdentifier: ids.TPK,
          outgoingKeyIdentifier: 'alias/scan/zpk2',
          incomingPinBlockFormat: 'ISO_FORMAT_0',
          outgoingPinBlockFormat: 'ISO_FORMAT_0',
          primaryAccountNumber: PAN,
          encryptedPinBlock: underTpk,
        }),
        'translate 0→0',
      );
      assert.deepEqual(generatedKey.ecbDecrypt(Buffer.from(t0.pinBlock, 'hex')), clearPin);
      const t3 = ok(
        await first.http('POST', '/pindata/translate', {
          incomingKeyIdentifier: ids.TPK,
          outgoingKeyIdentifier: ids.ZPK,
          incomingPinBlockFormat: 'ISO_FORMAT_0',
          outgoingPinBlockFormat: 'ISO_FORMAT_3',
          primaryAccountNumber: PAN,
          encryptedPinBlock: underTpk,
        }),
        'translate 0→3',
      );
      secret('clear PIN block, ISO 3', zpk.handle.ecbDecrypt(Buffer.from(t3.pinBlock, 'hex')));

      // MAC, encryption, decryption.
      const mac = ok(
        await first.http('POST', '/mac/generate', {
          keyIdentifier: ids.TAK,
          messageData: MESSAGE,
          macAlgorithm: 'ISO9797_ALGORITHM3',
        }),
        'mac',
      ).mac;
      assert.equal(mac, toHex(retailMac(tak.handle, Buffer.from(MESSAGE, 'hex'))));
      ok(
        await first.http('POST', '/mac/verify', {
          keyIdentifier: ids.TAK,
          messageData: MESSAGE,
          macAlgorithm: 'ISO9797_ALGORITHM3',
          mac,
        }),
        'verify',
      );
      const enc = ok(
        await first.http('POST', `/keys/${ids.DEK}/encrypt`, { plainText: MESSAGE, mode: 'CBC' }),
        'encrypt',
      );
      assert.equal(enc.cipherText, toHex(dek.handle.cbcEncrypt(Buffer.from(MESSAGE, 'hex'))));
      ok(
        await first.http('POST', `/keys/${ids.DEK}/decrypt`, { cipherText: enc.cipherText, mode: 'CBC' }),
        'decrypt',
      );
      ok(
        await first.http('POST', `/keys/${ids.ZEK}/encrypt`, {
          plainText: MESSAGE.slice(0, 32),
          mode: 'ECB',
        }),
        'encrypt AES',
      );

      // The lifecycle, audited.
      ok(await first.http('POST', `/keys/${ids.ZPK}/stop-usage`), 'stop');
      ok(await first.http('POST', `/keys/${ids.ZPK}/start-usage`), 'start');
      ok(await first.http('DELETE', `/keys/${ids.ZEK}?deleteKeyInDays=3`), 'delete');
      ok(await first.http('POST', `/keys/${ids.ZEK}/restore`), 'restore');
      ok(await first.http('POST', '/aliases', { aliasName: 'alias/scan/tak', keyArn: ids.TAK }), 'alias');
      ok(
        await first.http('PUT', `/aliases/${encodeURIComponent('alias/scan/tak')}`, { keyArn: ids.DEK }),
        'update',
      );
      ok(await first.http('DELETE', `/aliases/${encodeURIComponent('alias/scan/tak')}`), 'alias delete');
      ok(await first.http('GET', '/diagnostics'), 'diagnostics');
      assert.equal((await first.http('GET', '/keys/key-00000000-0000-4000-8000-000000000000')).status, 404);

      // 4. payShield TCP: a known key imported under the ZMK (A6), exported back (A8), CC, M6.
      const blocks = tableBlocks();
      const zmkBlock = blocks.get(ids.ZMK)!;
      const k6 = secret('A6-imported ZPK clear key', fixParity(randomBytes(16)));
      const cryptogram = toHex(zmk.handle.ecbEncrypt(k6)).toUpperCase();
      const a6 = await command(first, `A6001S${zmkBlock}X${cryptogram}S#P0T2B00S00`, 'A6');
      assert.equal(a6.error, '00', `A6: ${a6.error}`);
      const k6Block = lmkBlockAt(a6.body);
      assert.equal(
        a6.body.slice(1 + k6Block.length),
        checkValue(createKey('tdes', k6), { method: 'legacy' }).value,
      );
      const a8 = await command(first, `A8001S${zmkBlock}S${k6Block}X`, 'A8');
      assert.equal(a8.error, '00', `A8: ${a8.error}`);
      assert.equal(a8.body.slice(0, 33), `X${cryptogram}`);
      const underZpk = toHex(zpk.handle.ecbEncrypt(clearPin));
      const cc = await command(
        first,
        `CCS${blocks.get(ids.ZPK)}S${k6Block}12${underZpk}0101${ACCOUNT}`,
        'CC',
      );
      assert.equal(cc.error, '00', `CC: ${cc.error}`);
      assert.deepEqual(createKey('tdes', k6).ecbDecrypt(Buffer.from(cc.body.slice(2, 18), 'hex')), clearPin);
      // Mode 0, hex input, 16 H MAC, ISO 9797-1 alg 3, padding 1, key type TAK; length in hex characters.
      const length = MESSAGE.length.toString(16).padStart(4, '0').toUpperCase();
      const m6 = await command(first, `M601131003S${blocks.get(ids.TAK)}${length}${MESSAGE}`, 'M6');
      assert.equal(m6.error, '00', `M6: ${m6.error}`);
      assert.equal(m6.body, mac);
      const bad = await command(first, `A6001S${zmkBlock}X${cryptogram.slice(0, 20)}`, 'malformed A6');
      assert.notEqual(bad.error, '00');
      assert.equal((await command(first, 'NC', 'NC')).error, '00');

      // 5. Scan while the service runs: the key table's -wal and -shm exist now.
      await assertClean('while serving');
    } finally {
      await first.stop();
    }

    // 6. A second LMK from known components, and the key table rotated to it, through the CLI.
    const lmk1 = [
      secret('LMK 01 component 1', randomBytes(32)),
      secret('LMK 01 component 2', randomBytes(32)),
    ];
    secret('LMK 01', xor(lmk1[0]!, lmk1[1]!));
    await cli(
      ['lmk', 'add', '--data-dir', dataDir, '--id', '01', '--components', '2', '--yes'],
      `${toHex(lmk1[0]!)}\n${toHex(lmk1[1]!)}\n`,
      'lmk-add',
    );
    const rotated = JSON.parse(
      await cli(
        ['lmk', 'rotate', '--data-dir', dataDir, '--from', '00', '--to', '01', '--json'],
        '',
        'rotate',
      ),
    ) as { rewrapped: number; failed: unknown[] };
    assert.equal(rotated.rewrapped, 7);
    assert.deepEqual(rotated.failed, []);

    // 7. The service again, on LMK 01: the same keys, the same answers.
    const second = await serve('serve-2');
    try {
      const got = ok(await second.http('GET', `/keys/${ids.TAK}`), 'get after rotation').key;
      assert.equal(got.lmkId, '01');
      const mac2 = ok(
        await second.http('POST', '/mac/generate', {
          keyIdentifier: ids.TAK,
          messageData: MESSAGE,
          macAlgorithm: 'ISO9797_ALGORITHM3',
        }),
        'mac after rotation',
      ).mac;
      assert.equal(mac2, toHex(retailMac(tak.handle, Buffer.from(MESSAGE, 'hex'))));
      const blocks = tableBlocks();
      const cc = await command(
        second,
        `CAS${blocks.get(ids.TPK)}S${blocks.get(ids.ZPK)}12${toHex(tpk.handle.ecbEncrypt(encodePinBlock({ format: 0, pin: PIN, pan: PAN })))}0101${ACCOUNT}`,
        'CA after rotation',
      );
      assert.equal(cc.error, '00', `CA: ${cc.error}`);
      assert.deepEqual(
        zpk.handle.ecbDecrypt(Buffer.from(cc.body.slice(2, 18), 'hex')),
        secrets.find((s) => s.label === 'clear PIN block, ISO 0')!.bytes,
      );
    } finally {
      await second.stop();
    }

    // 8. The audit chain holds and records the session; then the final scan.
    const audit = join(dataDir, 'audit.log');
    assert.equal((await verifyAuditLog(audit)).ok, true);
    const actions = new Set(
      (await readFile(audit, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { action: string }).action),
    );
    for (const a of [
      'lmk.form',
      'lmk.seal',
      'hsm.start',
      'key.import',
      'api.ImportKey',
      'api.DeleteKey',
      'lmk.rotate',
    ]) {
      assert.ok(actions.has(a), `audit log lacks ${a}`);
    }
    await assertClean('after the session');
  });
});

/** Scans every file under the data directory and everything captured; fails listing each hit. */
async function assertClean(when: string): Promise<void> {
  const needles = secrets.flatMap(needlesOf);
  const files = await filesUnder(dataDir);
  const names = files.map((f) => relative(dataDir, f));
  for (const expected of ['lmk.sealed.json', 'audit.log', KEY_TABLE_FILE]) {
    assert.ok(names.includes(expected), `${when}: no ${expected} to scan (${names.join(', ')})`);
  }
  assert.ok(names.some((n) => n.startsWith('logs/') && n.includes('ceremony')));
  const hits: Hit[] = [];
  let bytes = 0;
  for (const f of files) {
    const data = await readFile(f);
    bytes += data.length;
    hits.push(...scan(relative(dataDir, f), data, needles));
  }
  for (const c of captured) hits.push(...scan(c.where, c.data, needles));
  assert.ok(bytes > 0 && (await stat(join(dataDir, 'audit.log'))).size > 0);
  assert.deepEqual(
    hits.map((h) => `${h.where} at offset ${h.offset}: ${h.label}`),
    [],
    `${when}: secrets found`,
  );
}
