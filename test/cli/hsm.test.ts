/**
 * `poskey hsm` end to end: the real CLI spawned as a process, stdin scripted. A spawn costs ~0.5 s,
 * so each test covers one flow and the negative cases share runs where they can.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AUDIT_FILE, DEFAULT_DATA_DIR, PASSPHRASE_ENV } from '../../src/cli/hsm.js';
import { toHex, xor } from '../../src/crypto/bytes.js';
import { createKey } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { KeyTable } from '../../src/hsm/http/key-table.js';
import { lmkIdOfBlock } from '../../src/hsm/keyblock.js';
import { loadSealedLmks, SEALED_LMK_FILE, SealSecret } from '../../src/hsm/seal.js';
import * as service from '../../src/hsm/service.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PASS = 'correct horse battery staple';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function poskey(args: string[], input = '', env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'hsm', ...args], {
      cwd: ROOT,
      env: { ...process.env, [PASSPHRASE_ENV]: '', POSKEY_HSM_TOKENS: '', ...env },
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
    child.stdin.end(input);
  });
}

/** Independent KCV: CMAC over a zero block, 5 bytes, through the crypto core (not the CLI's code path). */
function kcv(bytes: Uint8Array): string {
  const h = createKey('aes', bytes);
  try {
    return checkValue(h, { method: 'cmac', length: 5 }).value;
  } finally {
    h.destroy();
  }
}

function component(): Buffer {
  return randomBytes(32);
}

let base: string;
let n = 0;
const dir = () => join(base, `d${++n}`);

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'poskey-hsm-cli-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('constants mirrored in the CLI', () => {
  it('agree with the service module', () => {
    assert.equal(DEFAULT_DATA_DIR, service.DEFAULT_DATA_DIR);
    assert.equal(AUDIT_FILE, service.AUDIT_FILE);
    assert.equal(PASSPHRASE_ENV, service.PASSPHRASE_ENV);
  });
});

describe('poskey hsm lmk ceremony', () => {
  it('forms the LMK from components typed on stdin, shows matching KCVs and seals it', async () => {
    const d = dir();
    const [c1, c2] = [component(), component()];
    // Custodian 1 types in groups with spaces, in lower case; custodian 2 in upper case.
    const typed1 = toHex(c1)
      .toLowerCase()
      .replace(/(.{8})/g, '$1 ');
    const r = await poskey(
      ['lmk', 'ceremony', '--data-dir', d, '--components', '2'],
      `${typed1}\ny\n${toHex(c2)}\nyes\n${PASS}\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    const lmkKcv = kcv(xor(c1, c2));
    assert.match(r.stdout, new RegExp(`component 1 KCV: ${kcv(c1)}`));
    assert.match(r.stdout, new RegExp(`component 2 KCV: ${kcv(c2)}`));
    assert.match(r.stdout, new RegExp(`LMK 00 KCV: ${lmkKcv}`));
    // Nothing secret on either stream, and none in the sealed file.
    const sealed = await readFile(join(d, SEALED_LMK_FILE), 'utf8');
    for (const secret of [c1, c2, xor(c1, c2)]) {
      for (const text of [sealed, r.stdout, r.stderr]) {
        assert.ok(!text.toUpperCase().includes(toHex(secret)), 'secret hex leaked');
      }
    }
    assert.ok(!sealed.includes(PASS) && !r.stderr.includes(PASS));
    const lmks = await loadSealedLmks(join(d, SEALED_LMK_FILE), PASS);
    assert.deepEqual(lmks.ids(), ['00']);
    assert.equal(lmks.get('00').kcv, lmkKcv);
    lmks.destroy();
    // The ceremony is audited, and the chain verifies.
    const v = await poskey(['audit', 'verify', '--data-dir', d]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^ok, 2 records/);
    // A second ceremony would replace the sealed file: refused.
    const again = await poskey(['lmk', 'ceremony', '--data-dir', d, '--components', '2', '--yes'], '');
    assert.equal(again.code, 2);
    assert.match(again.stderr, /POSKEY_ERR_LMK_EXISTS: .*lmk add/);
  });

  it('takes component files, seals with the components, and lists the LMK', async () => {
    const d = dir();
    const [c1, c2, c3] = [component(), component(), component()];
    const f1 = join(base, `c1-${n}.txt`);
    const f2 = join(base, `c2-${n}.txt`);
    await writeFile(f1, `${toHex(c1)}\n`);
    await writeFile(f2, `${toHex(c2).slice(0, 32)}\n${toHex(c2).slice(32)}\nKCV ${kcv(c2)}\n`);
    const r = await poskey(
      [
        'lmk',
        'ceremony',
        '--data-dir',
        d,
        '--id',
        '07',
        '--components',
        '3',
        '--component-file',
        f1,
        '--component-file',
        f2,
        '--seal-with-components',
        '--yes',
        '--json',
      ],
      `${toHex(c3)}\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      lmkId: string;
      kcv: string;
      componentKcvs: string[];
      sealedWith: string;
    };
    assert.equal(out.lmkId, '07');
    assert.equal(out.kcv, kcv(xor(xor(c1, c2), c3)));
    assert.deepEqual(out.componentKcvs, [kcv(c1), kcv(c2), kcv(c3)]);
    assert.equal(out.sealedWith, 'components');
    // Re-entered in another order, the components open it.
    const lmks = await loadSealedLmks(join(d, SEALED_LMK_FILE), SealSecret.components([c3, c1, c2]));
    assert.equal(lmks.get('07').kcv, out.kcv);
    lmks.destroy();
    const list = await poskey(['lmk', 'list', '--data-dir', d]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^07 {2}KCV ${out.kcv} {2}lmk.sealed.json {2}\\(default\\)`));
  });

  it('deals random components with --generate, each shown with its KCV', async () => {
    const d = dir();
    const r = await poskey(
      [
        'lmk',
        'ceremony',
        '--data-dir',
        d,
        '--components',
        '2',
        '--generate',
        '--passphrase-env',
        'TEST_PASS',
        '--json',
      ],
      '',
      { TEST_PASS: PASS },
    );
    assert.equal(r.code, 0, r.stderr);
    const dealt = [...r.stderr.matchAll(/component (\d): ([0-9A-F ]+) {2}KCV: ([0-9A-F]{10})/g)];
    assert.equal(dealt.length, 2);
    const comps = dealt.map((m) => Buffer.from(m[2]!.replace(/ /g, ''), 'hex'));
    for (const [i, m] of dealt.entries()) assert.equal(m[3], kcv(comps[i]!));
    assert.equal(JSON.parse(r.stdout).kcv, kcv(xor(comps[0]!, comps[1]!)));
    const lmks = await loadSealedLmks(join(d, SEALED_LMK_FILE), PASS);
    assert.equal(lmks.get('00').kcv, kcv(xor(comps[0]!, comps[1]!)));
    lmks.destroy();
  });

  it('refuses contradictory options', async () => {
    const r = await poskey([
      'lmk',
      'ceremony',
      '--data-dir',
      dir(),
      '--components',
      '2',
      '--seal-with-components',
      '--passphrase-env',
      'X',
    ]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /POSKEY_ERR_CLI_OPTION: --seal-with-components: choose --passphrase-env or --seal-with-components/,
    );
  });

  it('stops when a custodian does not confirm, input ends, or a component is malformed', async () => {
    const d = dir();
    const [c1, c2] = [component(), component()];
    const no = await poskey(['lmk', 'ceremony', '--data-dir', d, '--components', '2'], `${toHex(c1)}\nn\n`);
    assert.equal(no.code, 2);
    assert.match(no.stderr, /POSKEY_ERR_CLI_ABORTED: component 1: custodian 1 did not confirm/);
    const short = await poskey(
      ['lmk', 'ceremony', '--data-dir', d, '--components', '2', '--yes'],
      `${toHex(c1)}\n`,
    );
    assert.equal(short.code, 2);
    assert.match(short.stderr, /POSKEY_ERR_CLI_INPUT: stdin: input ended/);
    const bad = await poskey(
      ['lmk', 'ceremony', '--data-dir', d, '--components', '2', '--yes'],
      `${toHex(c1)}\n${toHex(c2).slice(2)}\n`,
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /POSKEY_ERR_LMK_COMPONENT: component 2: a component is 64 hex digits/);
    // Nothing was sealed by any of them.
    await assert.rejects(readFile(join(d, SEALED_LMK_FILE)), { code: 'ENOENT' });
  });

  it('refuses a component file whose KCV does not match, and a single component', async () => {
    const d = dir();
    const f = join(base, `bad-${n}.txt`);
    await writeFile(f, `${toHex(component())} KCV 0000000000\n`);
    const r = await poskey([
      'lmk',
      'ceremony',
      '--data-dir',
      d,
      '--component-file',
      f,
      '--component-file',
      f,
      '--yes',
    ]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /POSKEY_ERR_LMK_COMPONENT: --component-file 1: the KCV in the file does not match/,
    );
    const one = await poskey(['lmk', 'ceremony', '--data-dir', d, '--components', '1']);
    assert.equal(one.code, 2);
    assert.match(one.stderr, /POSKEY_ERR_LMK_COMPONENTS: --components: an LMK needs 2 to 9 components/);
  });
});

describe('poskey hsm serve', () => {
  it('refuses to start without a sealed LMK, naming the ceremony and --dev', async () => {
    const d = dir();
    const r = await poskey(['serve', '--data-dir', d, '--no-http', '--tcp-port', '0'], '', {
      [PASSPHRASE_ENV]: PASS,
    });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /POSKEY_ERR_LMK_MISSING: .*no sealed LMK in .*poskey hsm lmk ceremony.*--dev/);
    assert.equal(r.stdout, '');
  });
});

describe('poskey hsm serve --dev and diag', () => {
  it('prints its ports, answers diag over TCP, and exits 0 on SIGTERM', async () => {
    const d = dir();
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'hsm',
        'serve',
        '--dev',
        '--data-dir',
        d,
        '--tcp-port',
        '0',
        '--no-http',
        '--json',
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b;
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const ready = await new Promise<{ tcpPort: number; lmks: { kcv: string }[] }>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b;
        if (out.includes('\n')) resolve(JSON.parse(out));
      });
      child.on('exit', () => reject(new Error(stderr)));
    });
    assert.match(stderr, new RegExp(`DEVELOPMENT MODE[\\s\\S]*KCV ${ready.lmks[0]!.kcv}`));
    const diag = await poskey(['diag', '--port', String(ready.tcpPort), '--json']);
    assert.equal(diag.code, 0, diag.stderr);
    assert.equal(JSON.parse(diag.stdout).lmk, ready.lmks[0]!.kcv);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    const unreachable = await poskey(['diag', '--port', String(ready.tcpPort)]);
    assert.notEqual(unreachable.code, 0);
  });
});

describe('poskey hsm lmk add / rotate', () => {
  it('adds LMK 01, re-wraps the key table from 00 to 01 in one go; keys keep working and their KCVs', async () => {
    const d = dir();
    const env = { [PASSPHRASE_ENV]: PASS };
    const [a1, a2, b1, b2] = [component(), component(), component(), component()];
    const form = await poskey(
      ['lmk', 'ceremony', '--data-dir', d, '--components', '2', '--yes'],
      `${toHex(a1)}\n${toHex(a2)}\n`,
      env,
    );
    assert.equal(form.code, 0, form.stderr);
    const add = await poskey(
      ['lmk', 'add', '--data-dir', d, '--id', '01', '--components', '2', '--yes', '--json'],
      `${toHex(b1)}\n${toHex(b2)}\n`,
      env,
    );
    assert.equal(add.code, 0, add.stderr);
    const added = JSON.parse(add.stdout) as { kcv: string; lmks: string[]; default: string };
    assert.equal(added.kcv, kcv(xor(b1, b2)));
    assert.deepEqual(added.lmks, ['00', '01']);
    assert.equal(added.default, '00');

    // Keys made under LMK 00, stored in the HSM key table and in a host's file.
    const lmks = await loadSealedLmks(join(d, SEALED_LMK_FILE), PASS);
    const hsm = new Hsm({ lmks });
    const keys = (['TPK', 'ZPK', 'TAK'] as const).map((keyType) =>
      hsm.generateKey({ keyType, algorithm: 'tdes2' }),
    );
    const table = KeyTable.inDataDir(d);
    const ids = keys.map(
      (k) =>
        table.insert({
          keyBlock: k.keyBlock,
          keyType: k.info.keyType,
          usage: k.info.usage,
          algorithm: k.info.algorithm,
          modeOfUse: k.info.modeOfUse,
          exportability: k.info.exportability,
          kcv: k.info.kcv.value,
          kcvMethod: k.info.kcv.method,
          origin: 'POSKEY_HSM',
          enabled: true,
        }).id,
    );
    table.close();
    const hostFile = join(base, `host-${n}.txt`);
    await writeFile(hostFile, `${keys.map((k) => k.keyBlock).join('\n')}\nnot-a-key-block\n`);

    const rot = await poskey(
      ['lmk', 'rotate', '--data-dir', d, '--from', '00', '--to', '01', '--json'],
      '',
      env,
    );
    assert.equal(rot.code, 0, rot.stderr);
    const report = JSON.parse(rot.stdout) as {
      rewrapped: number;
      unchanged: number;
      failed: unknown[];
      default: string;
    };
    assert.equal(report.rewrapped, 3);
    assert.deepEqual(report.failed, []);
    assert.equal(report.default, '01');

    const after = KeyTable.inDataDir(d);
    for (const [i, id] of ids.entries()) {
      const block = after.get(id).keyBlock!;
      assert.equal(lmkIdOfBlock(block), '01');
      assert.notEqual(block, keys[i]!.keyBlock);
      // Same key: same KCV, same usage; it still works under the new LMK.
      assert.equal(hsm.checkValue(block, keys[i]!.info.kcv.method).value, keys[i]!.info.kcv.value);
      assert.equal(hsm.describeKey(block).keyType, keys[i]!.info.keyType);
    }
    after.close();
    // Running again finds nothing left under 00.
    const again = await poskey(
      ['lmk', 'rotate', '--data-dir', d, '--from', '00', '--to', '01', '--json'],
      '',
      env,
    );
    assert.equal(JSON.parse(again.stdout).rewrapped, 0);

    // The host's file: three blocks re-wrapped, the junk line reported (exit 1) and kept.
    const file = await poskey(
      ['lmk', 'rotate', '--data-dir', d, '--from', '00', '--to', '01', '--file', hostFile],
      '',
      env,
    );
    assert.equal(file.code, 1);
    assert.match(file.stdout, /re-wrapped 3 key block/);
    assert.match(file.stderr, /POSKEY_ERR_LMK_ROTATE: line 4: POSKEY_ERR_/);
    const lines = (await readFile(`${hostFile}.rewrapped`, 'utf8')).split('\n');
    assert.equal(lines[3], 'not-a-key-block');
    for (const [i, k] of keys.entries()) {
      assert.equal(lmkIdOfBlock(lines[i]!), '01');
      assert.equal(hsm.checkValue(lines[i]!, k.info.kcv.method).value, k.info.kcv.value);
    }
    hsm.destroy();
    lmks.destroy();
    // The sealed default moved to 01; once every table is rotated, LMK 00 is retired.
    const remove = await poskey(['lmk', 'remove', '--data-dir', d, '--id', '00', '--json'], '', env);
    assert.equal(remove.code, 0, remove.stderr);
    const reopened = await loadSealedLmks(join(d, SEALED_LMK_FILE), PASS);
    assert.deepEqual(reopened.ids(), ['01']);
    assert.equal(reopened.defaultId, '01');
    reopened.destroy();
    const last = await poskey(['lmk', 'remove', '--data-dir', d, '--id', '01'], '', env);
    assert.equal(last.code, 2);
    assert.match(last.stderr, /POSKEY_ERR_LMK_UNKNOWN: --id: LMK 01 is the only sealed LMK/);
  });
});

describe('poskey hsm audit verify', () => {
  it('exits 1 naming an edited or removed line', async () => {
    const d = dir();
    const [c1, c2] = [component(), component()];
    const form = await poskey(
      ['lmk', 'ceremony', '--data-dir', d, '--components', '2', '--yes'],
      `${toHex(c1)}\n${toHex(c2)}\n`,
      {
        [PASSPHRASE_ENV]: PASS,
      },
    );
    assert.equal(form.code, 0, form.stderr);
    const path = join(d, AUDIT_FILE);
    const text = await readFile(path, 'utf8');
    const edited = text.replace('sealed with passphrase', 'sealed with components');
    assert.notEqual(edited, text);
    await writeFile(path, edited);
    const r = await poskey(['audit', 'verify', '--file', path]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /POSKEY_ERR_AUDIT_CHAIN: .* line 2: edited \(1 records verified before it\)/);
    // The first line removed: the chain starts at seq 2.
    await writeFile(path, text.split('\n').slice(1).join('\n'));
    const removed = await poskey(['audit', 'verify', '--data-dir', d, '--json']);
    assert.equal(removed.code, 1);
    assert.deepEqual(JSON.parse(removed.stdout), {
      file: path,
      ok: false,
      line: 1,
      reason: 'removed',
      records: 0,
    });
  });
});
