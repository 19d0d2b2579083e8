import assert from 'node:assert/strict';
import { createCipheriv, randomBytes, scryptSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { PoskeyError } from '../../src/errors.js';
import { formLmk, generateDevLmk, LmkSet, lmkKey } from '../../src/hsm/lmk.js';
import {
  DEFAULT_SCRYPT,
  DEV_LMK_FILE,
  DEV_PASSPHRASE,
  ensureDevLmk,
  loadSealedLmks,
  SEALED_LMK_FILE,
  SEALED_LMK_FORMAT,
  type SealedLmkFile,
  saveSealedLmks,
  sealKeyFromComponents,
  sealKeyFromPassphrase,
  sealLmks,
  unsealLmks,
} from '../../src/hsm/seal.js';

const C1 = '000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F';
const C2 = '404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F';
const C3 = '603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4';
const LMK_C1C2 = '40'.repeat(32);
/** Small scrypt cost so the suite stays fast; production uses DEFAULT_SCRYPT. */
const FAST = { kdf: { N: 1024, r: 8, p: 1 } };
const PASS = 'correct horse battery staple';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'poskey-seal-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function code(expected: string) {
  return (e: unknown) => e instanceof PoskeyError && e.code === expected;
}

function lmkSet(): LmkSet {
  const a = formLmk('00', [fromHex(C1), fromHex(C2)]).lmk;
  const b = formLmk('01', [fromHex(C1), fromHex(C3)]).lmk;
  return new LmkSet([a, b], '01');
}

/** Every secret that must never reach a file: the LMKs and the components, as hex and base64. */
function secretsOf(hexes: string[]): string[] {
  return hexes.flatMap((h) => [h, h.toLowerCase(), Buffer.from(h, 'hex').toString('base64')]);
}
const SECRETS = secretsOf([
  C1,
  C2,
  C3,
  LMK_C1C2,
  toHex(Buffer.from(fromHex(C1).map((x, i) => x ^ fromHex(C3)[i]!))),
]);

function assertNoSecretsIn(dir: string, extra: string[] = []): void {
  for (const name of readdirSync(dir)) {
    const text = readFileSync(join(dir, name), 'latin1');
    const bytes = readFileSync(join(dir, name));
    for (const s of [...SECRETS, ...extra]) assert.ok(!text.includes(s), `${name} contains a clear secret`);
    for (const h of [C1, C2, C3, LMK_C1C2])
      assert.equal(bytes.indexOf(fromHex(h)), -1, `${name} has raw secret bytes`);
  }
}

describe('seal / unseal', () => {
  it('round trip through a file: same LMKs, KCVs, default; mode 0600; no temp files', async () => {
    const dir = tempDir();
    const path = join(dir, SEALED_LMK_FILE);
    const set = lmkSet();
    await saveSealedLmks(path, set, PASS, FAST);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), [SEALED_LMK_FILE]);
    const back = await loadSealedLmks(path, PASS);
    assert.deepEqual(back.toJSON(), set.toJSON());
    assert.equal(back.defaultId, '01');
    assert.equal(back.get('00').kcv, '5C03BEC53F');
    assertNoSecretsIn(dir);
  });

  it('writes the documented JSON shape', async () => {
    const doc = await sealLmks(lmkSet(), PASS, FAST);
    assert.equal(doc.format, SEALED_LMK_FORMAT);
    assert.deepEqual(Object.keys(doc.kdf).sort(), ['N', 'name', 'p', 'r', 'salt']);
    assert.equal(doc.kdf.name, 'scrypt');
    assert.equal(doc.kdf.N, 1024);
    assert.match(doc.kdf.salt, /^[0-9A-F]{32}$/);
    assert.equal(doc.lmks.length, 2);
    for (const r of doc.lmks) {
      assert.deepEqual(Object.keys(r).sort(), ['ciphertext', 'dev', 'id', 'iv', 'kcv', 'tag']);
      assert.match(r.iv, /^[0-9A-F]{24}$/);
      assert.match(r.ciphertext, /^[0-9A-F]{64}$/);
      assert.match(r.tag, /^[0-9A-F]{32}$/);
    }
  });

  it('seals a single Lmk too', async () => {
    const { lmk } = formLmk('03', [fromHex(C1), fromHex(C2)]);
    const back = await unsealLmks(await sealLmks(lmk, PASS, FAST), PASS);
    assert.deepEqual(back.ids(), ['03']);
    assert.equal(back.get().kcv, lmk.kcv);
  });

  it('uses scrypt N = 2^15 by default and that works', async () => {
    assert.deepEqual({ ...DEFAULT_SCRYPT }, { N: 32768, r: 8, p: 1 });
    const doc = await sealLmks(lmkSet(), PASS);
    assert.equal(doc.kdf.N, 32768);
    assert.equal((await unsealLmks(doc, PASS)).size, 2);
  });

  it('rejects a wrong passphrase with POSKEY_ERR_LMK_UNSEAL and no hint', async () => {
    const doc = await sealLmks(lmkSet(), PASS, FAST);
    await assert.rejects(unsealLmks(doc, 'wrong horse battery staple'), (e: unknown) => {
      return (
        e instanceof PoskeyError &&
        e.code === 'POSKEY_ERR_LMK_UNSEAL' &&
        e.message.includes('wrong passphrase or corrupted file')
      );
    });
  });

  it('rejects a tampered file: ciphertext, tag, iv, kcv, dev flag, id, default, kdf, salt', async () => {
    const doc = await sealLmks(lmkSet(), PASS, FAST);
    const flip = (hex: string) => (hex[0] === '0' ? '1' : '0') + hex.slice(1);
    const edits: ((d: SealedLmkFile) => void)[] = [
      (d) => (d.lmks[0]!.ciphertext = flip(d.lmks[0]!.ciphertext)),
      (d) => (d.lmks[1]!.tag = flip(d.lmks[1]!.tag)),
      (d) => (d.lmks[0]!.iv = flip(d.lmks[0]!.iv)),
      (d) => (d.lmks[0]!.kcv = flip(d.lmks[0]!.kcv)),
      (d) => (d.lmks[0]!.dev = true),
      (d) => (d.lmks[0]!.id = '09'),
      (d) => (d.default = '00'),
      (d) => (d.kdf.N = 2048),
      (d) => (d.kdf.salt = flip(d.kdf.salt)),
    ];
    for (const [i, edit] of edits.entries()) {
      const copy = structuredClone(doc);
      edit(copy);
      // allowDev so the dev-flag edit is caught by the tag, not by the dev check.
      await assert.rejects(
        unsealLmks(copy, PASS, { allowDev: true }),
        code('POSKEY_ERR_LMK_UNSEAL'),
        `edit ${i}`,
      );
    }
  });

  it('rejects a record whose KCV does not match the decrypted key even when the tag is valid', async () => {
    // Built by hand following the documented format, with a KCV that belongs to another key.
    const salt = randomBytes(16);
    const kdf = { name: 'scrypt' as const, N: 1024, r: 8, p: 1, salt: toHex(salt) };
    const key = scryptSync(Buffer.from(`poskey-seal-passphrase/1\0${PASS}`), salt, 32, {
      N: 1024,
      r: 8,
      p: 1,
    });
    const iv = randomBytes(12);
    const wrongKcv = '377822C093';
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(
      Buffer.from(
        JSON.stringify([SEALED_LMK_FORMAT, 'scrypt', 1024, 8, 1, kdf.salt, '00', '00', wrongKcv, false]),
      ),
    );
    const ct = Buffer.concat([cipher.update(Buffer.alloc(32, 0x40)), cipher.final()]);
    const doc = {
      format: SEALED_LMK_FORMAT,
      kdf,
      default: '00',
      lmks: [
        {
          id: '00',
          kcv: wrongKcv,
          dev: false,
          iv: toHex(iv),
          ciphertext: toHex(ct),
          tag: toHex(cipher.getAuthTag()),
        },
      ],
    };
    await assert.rejects(unsealLmks(doc, PASS), code('POSKEY_ERR_LMK_UNSEAL'));
    // The same record with the right KCV opens: the hand-built format is the real one.
    const ok = structuredClone(doc);
    ok.lmks[0]!.kcv = '5C03BEC53F';
    const c2 = createCipheriv('aes-256-gcm', key, iv);
    c2.setAAD(
      Buffer.from(
        JSON.stringify([SEALED_LMK_FORMAT, 'scrypt', 1024, 8, 1, kdf.salt, '00', '00', '5C03BEC53F', false]),
      ),
    );
    ok.lmks[0]!.ciphertext = toHex(Buffer.concat([c2.update(Buffer.alloc(32, 0x40)), c2.final()]));
    ok.lmks[0]!.tag = toHex(c2.getAuthTag());
    assert.equal((await unsealLmks(ok, PASS)).get().kcv, '5C03BEC53F');
  });

  it('rejects malformed documents with POSKEY_ERR_LMK_SEALED_FORMAT', async () => {
    const good = await sealLmks(lmkSet(), PASS, FAST);
    const bad: unknown[] = [
      null,
      [],
      { ...good, format: 'poskey-sealed-lmk/2' },
      { ...good, kdf: { ...good.kdf, name: 'pbkdf2' } },
      { ...good, kdf: { ...good.kdf, N: 1000 } },
      { ...good, kdf: { ...good.kdf, N: 2 ** 21 } },
      { ...good, kdf: { ...good.kdf, r: 0 } },
      { ...good, kdf: { ...good.kdf, p: 17 } },
      { ...good, kdf: { ...good.kdf, salt: 'XYZ' } },
      { ...good, lmks: [] },
      { ...good, lmks: ['x'] },
      { ...good, lmks: [{ ...good.lmks[0], kcv: '12' }] },
      { ...good, lmks: [{ ...good.lmks[0], dev: 'no' }] },
      { ...good, lmks: [{ ...good.lmks[0], ciphertext: 'AB' }] },
      { ...good, default: '77' },
    ];
    for (const [i, doc] of bad.entries()) {
      await assert.rejects(unsealLmks(doc, PASS), code('POSKEY_ERR_LMK_SEALED_FORMAT'), `case ${i}`);
    }
    await assert.rejects(
      unsealLmks({ ...good, lmks: [{ ...good.lmks[0], id: 'A' }] }, PASS),
      code('POSKEY_ERR_LMK_ID'),
    );
    const dir = tempDir();
    writeFileSync(join(dir, 'x.json'), '{not json');
    await assert.rejects(loadSealedLmks(join(dir, 'x.json'), PASS), code('POSKEY_ERR_LMK_SEALED_FORMAT'));
  });

  it('refuses to run without the file: POSKEY_ERR_LMK_MISSING', async () => {
    await assert.rejects(
      loadSealedLmks(join(tempDir(), SEALED_LMK_FILE), PASS),
      code('POSKEY_ERR_LMK_MISSING'),
    );
  });

  it('reports file system failures as POSKEY_ERR_LMK_IO', async () => {
    const dir = tempDir();
    await assert.rejects(loadSealedLmks(dir, PASS), code('POSKEY_ERR_LMK_IO'));
    await assert.rejects(
      saveSealedLmks(join(dir, 'no', 'such', SEALED_LMK_FILE), lmkSet(), PASS, FAST),
      code('POSKEY_ERR_LMK_IO'),
    );
  });

  it('rejects a short passphrase and bad scrypt parameters', async () => {
    await assert.rejects(sealLmks(lmkSet(), 'short', FAST), code('POSKEY_ERR_LMK_PASSPHRASE'));
    assert.throws(() => sealKeyFromPassphrase('1234567'), code('POSKEY_ERR_LMK_PASSPHRASE'));
    await assert.rejects(sealLmks(lmkSet(), PASS, { kdf: { N: 1000 } }), code('POSKEY_ERR_LMK_KDF'));
    await assert.rejects(sealLmks(lmkSet(), PASS, { kdf: { r: 0 } }), code('POSKEY_ERR_LMK_KDF'));
    await assert.rejects(sealLmks(lmkSet(), PASS, { kdf: { p: 99 } }), code('POSKEY_ERR_LMK_KDF'));
    await assert.rejects(sealLmks(new LmkSet(), PASS, FAST), code('POSKEY_ERR_LMK_UNKNOWN'));
  });

  it('normalises the passphrase (NFC) so composed and decomposed input agree', async () => {
    const doc = await sealLmks(lmkSet(), 'pass-phrase-\u00e9', FAST);
    assert.equal((await unsealLmks(doc, 'pass-phrase-e\u0301')).size, 2);
  });

  it('seals under the components re-entered, in any order', async () => {
    const dir = tempDir();
    const path = join(dir, SEALED_LMK_FILE);
    await saveSealedLmks(path, lmkSet(), sealKeyFromComponents([fromHex(C1), fromHex(C2)]), FAST);
    const back = await loadSealedLmks(path, sealKeyFromComponents([fromHex(C2), fromHex(C1)]));
    assert.equal(back.get('00').kcv, '5C03BEC53F');
    await assert.rejects(
      loadSealedLmks(path, sealKeyFromComponents([fromHex(C1), fromHex(C3)])),
      code('POSKEY_ERR_LMK_UNSEAL'),
    );
    assert.throws(() => sealKeyFromComponents([fromHex(C1)]), code('POSKEY_ERR_LMK_COMPONENTS'));
    assertNoSecretsIn(dir);
  });

  it('a component-derived secret never equals a passphrase-derived one', async () => {
    const doc = await sealLmks(lmkSet(), sealKeyFromComponents([fromHex(C1), fromHex(C2)]), FAST);
    const asText = Buffer.concat([fromHex(C1), fromHex(C2)]).toString('latin1');
    await assert.rejects(unsealLmks(doc, asText), code('POSKEY_ERR_LMK_UNSEAL'));
  });

  it('refuses a development LMK outside dev mode', async () => {
    const doc = await sealLmks(new LmkSet([generateDevLmk('00')]), PASS, FAST);
    await assert.rejects(unsealLmks(doc, PASS), code('POSKEY_ERR_LMK_DEV'));
    assert.equal((await unsealLmks(doc, PASS, { allowDev: true })).get().dev, true);
  });
});

describe('development LMK', () => {
  it('is created once, persists across restarts and comes with a loud warning', async () => {
    const dir = join(tempDir(), 'data');
    const first = await ensureDevLmk(dir, { kdf: FAST.kdf });
    assert.equal(first.created, true);
    assert.equal(first.lmk.dev, true);
    assert.equal(first.path, join(dir, DEV_LMK_FILE));
    assert.match(first.warning, /DEVELOPMENT MODE/);
    assert.ok(first.warning.includes(first.lmk.kcv));
    assert.equal(statSync(first.path).mode & 0o777, 0o600);
    const clear = toHex(lmkKey(first.lmk).exportKeyBytes());
    first.lmks.destroy();

    const second = await ensureDevLmk(dir);
    assert.equal(second.created, false);
    assert.equal(second.lmk.kcv, first.lmk.kcv);
    assert.deepEqual(readdirSync(dir), [DEV_LMK_FILE]);
    assertNoSecretsIn(dir, secretsOf([clear]));
    // The dev file opens with the documented public passphrase, and only with allowDev.
    await assert.rejects(loadSealedLmks(first.path, DEV_PASSPHRASE), code('POSKEY_ERR_LMK_DEV'));
  });

  it('propagates errors other than a missing file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, DEV_LMK_FILE), 'garbage');
    await assert.rejects(ensureDevLmk(dir), code('POSKEY_ERR_LMK_SEALED_FORMAT'));
  });
});
