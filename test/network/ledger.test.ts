/**
 * The issuer's ledger on real SQLite files: cards issued through the HSM (PVV), atomic and
 * idempotent authorisations, durability across a reopen and a SIGKILL, no clear PIN in the file,
 * and every error code.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import {
  type AuthorisationFacts,
  type Decision,
  DUPLICATE_CODE,
  Ledger,
  SCHEMA_VERSION,
} from '../../src/network/ledger.js';
import { CARDS, tmpDir } from './acquirer.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = tmpDir('poskey-ledger-');
  dirs.push(d);
  return d;
}

const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });

function facts(pan: string, stan: string, amount = 100): AuthorisationFacts {
  return {
    acquirerId: '48020000',
    stan,
    rrn: `000000${stan}`,
    mti: '0200',
    processingCode: '000000',
    pan,
    amount,
    currency: '156',
    tid: '12345678',
    mid: '898310048160001',
  };
}

const approve = (amount: number) => (): Decision => ({
  responseCode: '00',
  authCode: 'AB1234',
  debit: amount,
});

function fails(code: string) {
  return { code };
}

describe('cards', () => {
  it('issues cards with a PVV, lists them masked, never keeps the PIN', () => {
    const path = join(dir(), 'ledger.sqlite');
    const ledger = Ledger.open({ path, hsm });
    for (const card of Object.values(CARDS)) ledger.addCard(card);
    const good = ledger.getCard(CARDS.good.pan);
    assert.match(String(good?.pvv), /^\d{4}$/);
    assert.equal(good?.pvki, '1');
    const list = ledger.listCards();
    assert.equal(list.length, Object.keys(CARDS).length);
    assert.ok(list.every((c) => /^\d{6}\*+\d{4}$/.test(c.pan)));
    assert.ok(list.every((c) => !('pvv' in c)));
    ledger.authorise(facts(CARDS.good.pan, '000001'), approve(100));
    ledger.close();
    const bytes = Buffer.concat([
      readFileSync(path),
      existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0),
    ]);
    for (const card of Object.values(CARDS)) {
      assert.equal(
        bytes.includes(Buffer.from(card.pin, 'latin1')),
        false,
        `PIN of ${card.pan.slice(-4)} found in the ledger file`,
      );
    }
    assert.ok(bytes.includes(Buffer.from(CARDS.good.pan, 'latin1')), 'the scan does see text in the file');
  });

  it('updates status and balance, resets PIN tries', () => {
    const ledger = Ledger.open({ path: join(dir(), 'l.sqlite'), hsm });
    ledger.addCard(CARDS.good);
    ledger.authorise(facts(CARDS.good.pan, '000001'), () => ({ responseCode: '55', pinTries: 2 }));
    assert.equal(ledger.getCard(CARDS.good.pan)?.pinTries, 2);
    const v = ledger.updateCard(CARDS.good.pan, { status: 'blocked', balance: 42, resetPinTries: true });
    assert.deepEqual([v.status, v.balance, v.pinTries], ['blocked', 42, 0]);
    ledger.close();
  });
});

describe('authorise', () => {
  it('applies a decision once: a matching retransmission replays it, other content gets 94', () => {
    const ledger = Ledger.open({ path: join(dir(), 'l.sqlite'), hsm });
    ledger.addCard(CARDS.good);
    let decided = 0;
    const decide = () => {
      decided++;
      return { responseCode: '00', authCode: 'X00001', debit: 250, reportBalance: true };
    };
    const first = ledger.authorise(facts(CARDS.good.pan, '000007', 250), decide);
    const again = ledger.authorise(facts(CARDS.good.pan, '000007', 250), decide);
    assert.deepEqual(first, { responseCode: '00', authCode: 'X00001', balance: 99_750, replayed: false });
    assert.deepEqual(again, { ...first, replayed: true });
    assert.equal(decided, 1);
    const other = ledger.authorise(facts(CARDS.good.pan, '000007', 251), decide);
    assert.deepEqual(other, { responseCode: DUPLICATE_CODE, replayed: false });
    assert.equal(ledger.balanceOf(CARDS.good.pan), 99_750);
    assert.equal(ledger.listAuthorisations().length, 1);
    ledger.close();
  });

  it('records declines for unknown cards (masked PAN, no card)', () => {
    const ledger = Ledger.open({ path: join(dir(), 'l.sqlite'), hsm });
    const out = ledger.authorise(facts('6228480000009999', '000001'), (card) => {
      assert.equal(card, undefined);
      return { responseCode: '14' };
    });
    assert.equal(out.responseCode, '14');
    const row = ledger.findAuthorisation({ acquirerId: '48020000', stan: '000001', rrn: '000000000001' });
    assert.equal(row?.panMasked, '622848******9999');
    assert.equal(row?.responseCode, '14');
    ledger.close();
  });

  it('a decision that throws writes nothing', () => {
    const ledger = Ledger.open({ path: join(dir(), 'l.sqlite'), hsm });
    ledger.addCard(CARDS.good);
    assert.throws(() =>
      ledger.authorise(facts(CARDS.good.pan, '000001'), () => {
        throw new Error('HSM down');
      }),
    );
    assert.equal(ledger.listAuthorisations().length, 0);
    ledger.close();
  });

  it('refuses a debit above the balance (and rolls the row back)', () => {
    const ledger = Ledger.open({ path: join(dir(), 'l.sqlite'), hsm });
    ledger.addCard(CARDS.low);
    assert.throws(
      () => ledger.authorise(facts(CARDS.low.pan, '000001', 501), approve(501)),
      fails('POSKEY_ERR_LEDGER_IO'),
    );
    assert.equal(ledger.balanceOf(CARDS.low.pan), 500);
    assert.equal(ledger.listAuthorisations().length, 0);
    ledger.close();
  });
});

describe('durability', () => {
  it('balances, PIN tries and authorisations survive a reopen; the PVK stays the same', () => {
    const path = join(dir(), 'ledger.sqlite');
    const first = Ledger.open({ path, hsm });
    first.addCard(CARDS.good);
    const pvk = first.pvk.keyBlock;
    first.authorise(facts(CARDS.good.pan, '000001', 1000), approve(1000));
    first.authorise(facts(CARDS.good.pan, '000002'), () => ({ responseCode: '55', pinTries: 1 }));
    first.close();
    const again = Ledger.open({ path, hsm });
    assert.equal(again.balanceOf(CARDS.good.pan), 99_000);
    assert.equal(again.getCard(CARDS.good.pan)?.pinTries, 1);
    assert.equal(again.listAuthorisations().length, 2);
    assert.equal(again.pvk.keyBlock, pvk);
    const db = new Database(path, { readonly: true });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    db.close();
    again.close();
  });

  it('an authorisation is on disk when authorise returns: SIGKILL right after loses nothing', async () => {
    const path = join(dir(), 'ledger.sqlite');
    const setup = Ledger.open({ path, hsm });
    setup.addCard(CARDS.good);
    setup.close();
    const script = join(dirs.at(-1)!, 'child.ts');
    const ledgerModule = fileURLToPath(new URL('../../src/network/ledger.ts', import.meta.url));
    writeFileSync(
      script,
      `import { Ledger } from ${JSON.stringify(ledgerModule)};
const ledger = Ledger.open({ path: ${JSON.stringify(path)} });
const facts = { acquirerId: '48020000', stan: '000009', rrn: '000000000009', mti: '0200', processingCode: '000000',
  pan: ${JSON.stringify(CARDS.good.pan)}, amount: 4321, currency: '156', tid: 't', mid: 'm' };
ledger.authorise(facts, () => ({ responseCode: '00', authCode: 'K00009', debit: 4321 }));
process.stdout.write('done\\n');
setInterval(() => {}, 1000);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('done')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`child exited early (${code})`)));
    });
    child.removeAllListeners('exit');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    assert.equal(await exited, null);
    const reopened = Ledger.open({ path });
    assert.equal(reopened.balanceOf(CARDS.good.pan), 100_000 - 4321);
    assert.equal(
      reopened.findAuthorisation({ acquirerId: '48020000', stan: '000009', rrn: '000000000009' })?.authCode,
      'K00009',
    );
    reopened.close();
  });
});

describe('ledger errors', () => {
  it('POSKEY_ERR_LEDGER_CARD for each malformed field', () => {
    const ledger = Ledger.open({ path: ':memory:', hsm });
    const ok = CARDS.good;
    assert.throws(() => ledger.addCard({ ...ok, pan: '12345' }), fails('POSKEY_ERR_LEDGER_CARD'));
    assert.throws(() => ledger.addCard({ ...ok, expiry: '3013' }), fails('POSKEY_ERR_LEDGER_CARD'));
    assert.throws(() => ledger.addCard({ ...ok, balance: -1 }), fails('POSKEY_ERR_LEDGER_CARD'));
    assert.throws(() => ledger.addCard({ ...ok, balance: 1.5 }), fails('POSKEY_ERR_LEDGER_CARD'));
    assert.throws(
      () => ledger.addCard({ ...ok, status: 'frozen' as 'active' }),
      fails('POSKEY_ERR_LEDGER_CARD'),
    );
    assert.throws(() => ledger.addCard({ ...ok, currency: 'CNY' }), fails('POSKEY_ERR_LEDGER_CARD'));
    assert.throws(() => ledger.addCard(null as never), fails('POSKEY_ERR_LEDGER_CARD'));
    ledger.close();
  });

  it('the HSM refuses a malformed PIN, and the message does not carry it', () => {
    const ledger = Ledger.open({ path: ':memory:', hsm });
    assert.throws(
      () => ledger.addCard({ ...CARDS.good, pin: '12' }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'POSKEY_ERR_PIN_LENGTH');
        return true;
      },
    );
    assert.throws(() => ledger.addCard({ ...CARDS.good, pin: '12ab56' }), fails('POSKEY_ERR_PIN_DIGITS'));
    ledger.close();
  });

  it('POSKEY_ERR_LEDGER_DUPLICATE and POSKEY_ERR_LEDGER_NOT_FOUND', () => {
    const ledger = Ledger.open({ path: ':memory:', hsm });
    ledger.addCard(CARDS.good);
    assert.throws(() => ledger.addCard(CARDS.good), fails('POSKEY_ERR_LEDGER_DUPLICATE'));
    assert.throws(() => ledger.balanceOf(CARDS.low.pan), fails('POSKEY_ERR_LEDGER_NOT_FOUND'));
    assert.throws(
      () => ledger.updateCard(CARDS.low.pan, { status: 'active' }),
      fails('POSKEY_ERR_LEDGER_NOT_FOUND'),
    );
    ledger.close();
  });

  it('POSKEY_ERR_LEDGER_PVK: no HSM to add cards, or a PVK under another LMK', () => {
    const path = join(dir(), 'l.sqlite');
    const bare = Ledger.open({ path });
    assert.throws(() => bare.pvk, fails('POSKEY_ERR_LEDGER_PVK'));
    assert.throws(() => bare.addCard(CARDS.good), fails('POSKEY_ERR_LEDGER_PVK'));
    bare.close();
    Ledger.open({ path, hsm }).close();
    const stranger = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
    assert.throws(() => Ledger.open({ path, hsm: stranger }), fails('POSKEY_ERR_LEDGER_PVK'));
  });

  it('POSKEY_ERR_LEDGER_IO for a schema newer than this build', () => {
    const path = join(dir(), 'l.sqlite');
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(() => Ledger.open({ path }), fails('POSKEY_ERR_LEDGER_IO'));
  });

  it('POSKEY_ERR_LEDGER_CLOSED and POSKEY_ERR_NETWORK_OPTION', () => {
    const ledger = Ledger.open({ path: ':memory:' });
    ledger.close();
    ledger.close();
    assert.throws(() => ledger.listCards(), fails('POSKEY_ERR_LEDGER_CLOSED'));
    assert.throws(() => Ledger.open({ path: '' }), fails('POSKEY_ERR_NETWORK_OPTION'));
    assert.throws(
      () => Ledger.open({ path: ':memory:', hsm, pvki: 'X' }),
      fails('POSKEY_ERR_NETWORK_OPTION'),
    );
  });
});
