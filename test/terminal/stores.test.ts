import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PinPadError, TerminalError } from '../../src/terminal/errors.js';
import { PinPad } from '../../src/terminal/pinpad.js';
import { PINPAD_STORE_FILE, PinPadStore, type PinPadStoreFile } from '../../src/terminal/pinpad-store.js';
import {
  FileReversalStore,
  MemoryReversalStore,
  type PendingReversal,
  REVERSAL_FILE,
} from '../../src/terminal/reversal-store.js';
import { FileStateStore, MemoryStateStore, STATE_FILE } from '../../src/terminal/state-store.js';

const work = mkdtempSync(join(tmpdir(), 'poskey-terminal-stores-'));
after(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const dir = () => join(work, `d${n++}`);

/** Cheap scrypt for tests; production uses N = 2^15. */
const FAST = { scrypt: { N: 1024, r: 8, p: 1 } };
const TMK = 'CA5D92598DCA48CE8A4C76361A9269E9';
const SECRET = 'correct horse battery';

function isCode(c: string) {
  return (e: unknown) => (e instanceof PinPadError || e instanceof TerminalError) && e.code === c;
}

function loadedPad(): PinPad {
  const pad = new PinPad({ serial: 'STORE001', apps: ['bank-card'] });
  pad.injectTmk(0, TMK, { algorithm: 'tdes' });
  pad.loadWorkingKey(1, {
    under: 0,
    role: 'pin',
    algorithm: 'tdes',
    cryptogram: '6701EAD6A9AD51E51AA406E2C27FCFA9',
    checkValue: '8D0A74B8',
  });
  return pad;
}

describe('PinPadStore', () => {
  it('round-trips the keys sealed under the device secret; the file holds no clear key', async () => {
    const d = dir();
    const pad = loadedPad();
    const store = await PinPadStore.open(d, SECRET, FAST);
    assert.equal(store.exists, false);
    assert.equal(store.load(), undefined);
    await store.save(pad);
    store.close();
    const text = readFileSync(join(d, PINPAD_STORE_FILE), 'utf8');
    for (const secret of [TMK, '807A23AD32B36D457AE91FDF927570EA']) {
      assert.ok(!text.toUpperCase().includes(secret));
    }
    assert.equal(statSync(join(d, PINPAD_STORE_FILE)).mode & 0o777, 0o600);
    const again = await PinPadStore.open(d, SECRET);
    const back = again.load()!;
    assert.deepEqual(back.listSlots(), pad.listSlots());
    assert.deepEqual(back.device, pad.device);
    const pan = '6222021234567890128';
    assert.deepEqual(back.encryptPin(1, { pin: '123456', pan }), pad.encryptPin(1, { pin: '123456', pan }));
  });

  it('refuses a wrong secret, an edited slot table or KDF, a short secret, a foreign file (POSKEY_ERR_PINPAD_STORE)', async () => {
    const d = dir();
    const store = await PinPadStore.open(d, SECRET, FAST);
    await store.save(loadedPad());
    await assert.rejects(
      async () => (await PinPadStore.open(d, 'wrong secret!')).load(),
      isCode('POSKEY_ERR_PINPAD_STORE'),
    );
    const path = join(d, PINPAD_STORE_FILE);
    const original = readFileSync(path, 'utf8');
    const edits: ((doc: PinPadStoreFile) => void)[] = [
      (doc) => {
        doc.pad.slots[1]!.role = 'mac';
      },
      (doc) => {
        doc.pad.device = { ...doc.pad.device, serial: 'OTHER001' };
      },
      (doc) => {
        doc.kdf.salt = '00'.repeat(16);
      },
      (doc) => {
        doc.pad.state = 'tampered';
      },
    ];
    for (const edit of edits) {
      const doc = JSON.parse(original);
      edit(doc);
      writeFileSync(path, JSON.stringify(doc));
      await assert.rejects(
        async () => (await PinPadStore.open(d, SECRET)).load(),
        isCode('POSKEY_ERR_PINPAD_STORE'),
      );
    }
    writeFileSync(path, '{"format":"something else"}');
    await assert.rejects(PinPadStore.open(d, SECRET), isCode('POSKEY_ERR_PINPAD_STORE'));
    writeFileSync(path, 'not json');
    await assert.rejects(PinPadStore.open(d, SECRET), isCode('POSKEY_ERR_PINPAD_STORE'));
    await assert.rejects(PinPadStore.open(dir(), 'short', FAST), isCode('POSKEY_ERR_PINPAD_STORE'));
    await assert.rejects(
      PinPadStore.open(dir(), SECRET, { scrypt: { N: 1000, r: 8, p: 1 } }),
      isCode('POSKEY_ERR_PINPAD_STORE'),
    );
    const closed = await PinPadStore.open(dir(), SECRET, FAST);
    closed.close();
    await assert.rejects(closed.save(loadedPad()), isCode('POSKEY_ERR_PINPAD_STORE'));
    assert.throws(() => loadedPad().seal(Buffer.alloc(16)), isCode('POSKEY_ERR_PINPAD_STORE'));
  });

  it('keeps the tamper state: a tampered pad stays tampered after a restart', async () => {
    const d = dir();
    const pad = loadedPad();
    pad.tamper();
    const store = await PinPadStore.open(d, SECRET, FAST);
    await store.save(pad);
    const back = (await PinPadStore.open(d, SECRET)).load()!;
    assert.equal(back.state, 'tampered');
    assert.deepEqual(back.listSlots(), []);
  });
});

function reversal(stan: string): PendingReversal {
  return {
    stan,
    message: { 0: '0400', 11: stan, 39: '98' } as never,
    reason: '98',
    createdAt: new Date(0).toISOString(),
    attempts: 0,
  };
}

describe('reversal stores', () => {
  it('memory: put, replace, list in order, remove', async () => {
    const s = new MemoryReversalStore();
    await s.put(reversal('000001'));
    await s.put(reversal('000002'));
    await s.put({ ...reversal('000001'), reason: 'A0' });
    assert.deepEqual(
      (await s.list()).map((r) => [r.stan, r.reason]),
      [
        ['000001', 'A0'],
        ['000002', '98'],
      ],
    );
    await s.remove('000001');
    await s.remove('999999');
    assert.deepEqual(
      (await s.list()).map((r) => r.stan),
      ['000002'],
    );
  });

  it('file: each change is on disk when put resolves, and survives a reopen', async () => {
    const d = dir();
    const s = await FileReversalStore.open(d);
    await s.put(reversal('000007'));
    const onDisk = JSON.parse(readFileSync(join(d, REVERSAL_FILE), 'utf8'));
    assert.deepEqual(
      onDisk.reversals.map((r: PendingReversal) => r.stan),
      ['000007'],
    );
    assert.equal(statSync(join(d, REVERSAL_FILE)).mode & 0o777, 0o600);
    await Promise.all([s.put(reversal('000008')), s.put(reversal('000009')), s.remove('000007')]);
    const again = await FileReversalStore.open(d);
    assert.deepEqual(
      (await again.list()).map((r) => r.stan),
      ['000008', '000009'],
    );
  });

  it('file: a foreign or broken file is POSKEY_ERR_TERMINAL_STATE', async () => {
    const d = dir();
    await FileReversalStore.open(d);
    writeFileSync(join(d, REVERSAL_FILE), '{"format":"poskey-reversals/1","reversals":[{"stan":"x"}]}');
    await assert.rejects(FileReversalStore.open(d), isCode('POSKEY_ERR_TERMINAL_STATE'));
    writeFileSync(join(d, REVERSAL_FILE), '[');
    await assert.rejects(FileReversalStore.open(d), isCode('POSKEY_ERR_TERMINAL_STATE'));
  });
});

describe('terminal state stores', () => {
  it('keep the STAN and batch, in memory and on disk', async () => {
    const m = new MemoryStateStore();
    assert.equal(await m.load(), undefined);
    await m.save({ stan: 41, batch: '000003' });
    assert.deepEqual(await m.load(), { stan: 41, batch: '000003' });
    const d = dir();
    const f = new FileStateStore(d);
    assert.equal(await f.load(), undefined);
    await f.save({ stan: 999999, batch: '123456' });
    assert.deepEqual(await new FileStateStore(d).load(), { stan: 999999, batch: '123456' });
  });

  it('a broken state file is POSKEY_ERR_TERMINAL_STATE', async () => {
    const d = dir();
    const f = new FileStateStore(d);
    await f.save({ stan: 1, batch: '000001' });
    writeFileSync(join(d, STATE_FILE), '{"format":"poskey-terminal-state/1","stan":-1,"batch":"000001"}');
    await assert.rejects(f.load(), isCode('POSKEY_ERR_TERMINAL_STATE'));
    writeFileSync(join(d, STATE_FILE), 'garbage');
    await assert.rejects(f.load(), isCode('POSKEY_ERR_TERMINAL_STATE'));
  });
});
