/**
 * Field readers (FieldCursor) and the dispatcher's robustness: every reader's error code, round
 * trips of key fields, and random bodies for every command never escaping as an exception or an
 * internal error.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PoskeyError } from '../../src/errors.js';
import { COMMANDS, executeCommand } from '../../src/hsm/payshield/commands/index.js';
import { formatWrapped } from '../../src/hsm/payshield/commands/keys.js';
import { FieldCursor, type KeyScheme } from '../../src/hsm/payshield/fields.js';
import { makeHsm } from './payshield-helpers.js';

const cursor = (text: string) => new FieldCursor(Buffer.from(text, 'latin1'));

/** Matches a PoskeyError with this code and payShield answer (and field, when given). */
function rejects(code: string, payShield: string, field?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PoskeyError, String(e));
    assert.equal(e.code, code);
    assert.equal((e as { payShield?: string }).payShield, payShield);
    if (field !== undefined) assert.equal(e.field, field);
    return true;
  };
}

/** A syntactically valid key block of `length` characters (content is not checked here). */
const block = (length = 48) => `D${String(length).padStart(4, '0')}P0TB00E0000${'A'.repeat(length - 16)}`;

describe('FieldCursor', () => {
  it('reads fixed fields of each character set', () => {
    const c = cursor('0aF1129X;AB12');
    assert.equal(c.hex('hex', 4), '0AF1');
    assert.equal(c.digits('num', 2), '12');
    assert.equal(c.oneOf('flag', 1, ['9']), '9');
    assert.equal(c.raw('any', 1), 'X');
    assert.equal(c.take(';'), true);
    assert.equal(c.take(';'), false);
    assert.equal(c.fixed('alnum', 4, 'alnum'), 'AB12');
    assert.equal(c.atEnd(), true);
    assert.equal(c.finish(), undefined);
  });

  it('names the field and gives 15 (or the field code) for bad or missing data', () => {
    assert.throws(
      () => cursor('0G').hex('pinBlock', 2),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15', 'pinBlock'),
    );
    assert.throws(
      () => cursor('12').hex('pinBlock', 4),
      rejects('POSKEY_ERR_PAYSHIELD_TRUNCATED', '15', 'pinBlock'),
    );
    assert.throws(
      () => cursor('1A').digits('account', 2),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15', 'account'),
    );
    assert.throws(
      () => cursor('7').oneOf('mode', 1, ['0', '1'], '02'),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', '02', 'mode'),
    );
    assert.throws(
      () => cursor('03').decimal('maxPinLength', 2, 4, 12),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15'),
    );
    assert.throws(
      () => cursor('0000').hexNumber('length', 4, 1, 10, '06'),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', '06'),
    );
    assert.throws(() => cursor('x').raw('n', -1), rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15'));
    assert.throws(
      () => cursor('a\u0001').fixed('t', 2, 'printable'),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15'),
    );
  });

  it('does not consume a field it rejects', () => {
    const c = cursor('7X');
    assert.throws(() => c.oneOf('mode', 1, ['0']));
    assert.equal(c.position, 0);
    assert.throws(() => c.decimal('n', 1, 0, 5));
    assert.equal(c.peek(2), '7X');
  });

  it('reads a key block by its 4-digit length and nothing more', () => {
    const b = block(40);
    const c = cursor(`S${b}0101`);
    assert.equal(c.lmkKey('key'), b);
    assert.equal(c.peek(4), '0101');
    assert.throws(
      () => cursor('SD00X').lmkKey('key'),
      rejects('POSKEY_ERR_PAYSHIELD_TRUNCATED', '15', 'key'),
    );
    assert.throws(() => cursor('SD00XXP0').lmkKey('key'), rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15', 'key'));
    assert.throws(() => cursor('SD0008P0TB').lmkKey('key'), rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15'));
    assert.throws(
      () => cursor(`S${block(40).slice(0, 30)}`).lmkKey('key'),
      rejects('POSKEY_ERR_PAYSHIELD_TRUNCATED', '15'),
    );
    assert.throws(
      () => cursor(`U${'1'.repeat(32)}`).lmkKey('zmk'),
      rejects('POSKEY_ERR_PAYSHIELD_KEY_SCHEME', '26', 'zmk'),
    );
    assert.throws(() => cursor('').lmkKey('zmk'), rejects('POSKEY_ERR_PAYSHIELD_TRUNCATED', '15', 'zmk'));
  });

  it('reads keys under a ZMK/TMK in every scheme, and refuses unknown schemes with 26', () => {
    assert.deepEqual(cursor(`X${'a'.repeat(32)}`).wrappedKey('k'), { scheme: 'X', value: 'A'.repeat(32) });
    assert.deepEqual(cursor(`T${'1'.repeat(48)}`).wrappedKey('k'), { scheme: 'T', value: '1'.repeat(48) });
    assert.deepEqual(cursor('0123456789abcdef').wrappedKey('k'), { scheme: 'Z', value: '0123456789ABCDEF' });
    assert.deepEqual(cursor(`R${block()}`).wrappedKey('k'), { scheme: 'R', value: block() });
    assert.throws(
      () => cursor(`Q${'1'.repeat(32)}`).wrappedKey('k'),
      rejects('POSKEY_ERR_PAYSHIELD_KEY_SCHEME', '26'),
    );
    assert.throws(
      () => cursor(`X${'1'.repeat(31)}`).wrappedKey('k'),
      rejects('POSKEY_ERR_PAYSHIELD_TRUNCATED', '15'),
    );
    assert.throws(
      () => cursor('Z1234567812345678').wrappedKey('k'),
      rejects('POSKEY_ERR_PAYSHIELD_KEY_SCHEME', '26'),
    );
    assert.throws(() => cursor('').wrappedKey('k'), rejects('POSKEY_ERR_PAYSHIELD_TRUNCATED', '15'));
    assert.throws(
      () => cursor('U').schemeFlag('keyScheme', ['S']),
      rejects('POSKEY_ERR_PAYSHIELD_KEY_SCHEME', '26'),
    );
  });

  it('wrapped keys round-trip through formatWrapped (property)', () => {
    const legacy = fc.constantFrom<[KeyScheme, number]>(
      ['X', 32],
      ['U', 32],
      ['Y', 48],
      ['T', 48],
      ['Z', 16],
    );
    fc.assert(
      fc.property(legacy, fc.uint8Array({ minLength: 24, maxLength: 24 }), ([scheme, hexLength], bytes) => {
        const value = Buffer.from(bytes).toString('hex').toUpperCase().slice(0, hexLength);
        const c = cursor(`${formatWrapped(scheme, value)}01`);
        assert.deepEqual(c.wrappedKey('k'), { scheme, value });
        assert.equal(c.peek(2), '01');
      }),
    );
  });

  it('reads the LMK identifier (13 when malformed) and # key block attributes with their A-codes', () => {
    assert.equal(cursor('%07').lmkId(), '07');
    assert.equal(cursor('#').lmkId(), undefined);
    assert.throws(() => cursor('%7').lmkId(), rejects('POSKEY_ERR_PAYSHIELD_TRUNCATED', '13'));
    assert.throws(() => cursor('%A1').lmkId(), rejects('POSKEY_ERR_LMK_ID', '13'));
    assert.deepEqual(cursor('#K0T2B00E00').keyBlockAttributes(), {
      usage: 'K0',
      algorithm: 'T2',
      modeOfUse: 'B',
      keyVersion: '00',
      exportability: 'E',
      optionalBlocks: 0,
    });
    assert.equal(cursor('K0').keyBlockAttributes(), undefined);
    assert.throws(
      () => cursor('#K!T2B00E00').keyBlockAttributes(),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', 'A6'),
    );
    assert.throws(
      () => cursor('#K0T!B00E00').keyBlockAttributes(),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', 'A7'),
    );
    assert.throws(
      () => cursor('#K0T2!00E00').keyBlockAttributes(),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', 'A8'),
    );
    assert.throws(
      () => cursor('#K0T2B!0E00').keyBlockAttributes(),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', 'A9'),
    );
    assert.throws(
      () => cursor('#K0T2B00Q00').keyBlockAttributes(),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', 'AA'),
    );
    assert.throws(
      () => cursor('#K0T2B00E02').keyBlockAttributes(),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', 'AB'),
    );
  });

  it('finish(): a trailing %nn and a 0x19 trailer are fine, anything else is 15', () => {
    assert.equal(cursor('%00').finish(), undefined);
    assert.equal(cursor('%00\x19abc').finish(), 'abc');
    assert.equal(cursor('\x19').finish(), '');
    assert.throws(() => cursor('x').finish(), rejects('POSKEY_ERR_PAYSHIELD_TRAILING', '15', 'body'));
    assert.throws(
      () => cursor(`\x19${'t'.repeat(33)}`).finish(),
      rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15', 'trailer'),
    );
    assert.throws(() => cursor('\x19\x00').finish(), rejects('POSKEY_ERR_PAYSHIELD_FIELD', '15', 'trailer'));
  });
});

describe('executeCommand robustness', () => {
  const hsm = makeHsm();
  const codes = [...COMMANDS.keys()];
  const tpk = hsm.generateKey({ keyType: 'TPK', algorithm: 'tdes2' }).keyBlock;

  it('random bodies for every command give a two-character code, never an exception or 41 (property)', () => {
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      // Start with a valid key so the readers after it are reached too.
      fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.concat([Buffer.from(`S${tpk}`, 'latin1'), b])),
      fc.stringMatching(/^[0-9A-FS;%#X]{0,80}$/).map((s) => Buffer.from(s, 'latin1')),
    );
    fc.assert(
      fc.property(fc.constantFrom(...codes), body, (command, b) => {
        const out = executeCommand(hsm, command, b);
        assert.match(out.errorCode, /^[0-9A-Z]{2}$/);
        assert.notEqual(out.errorCode, '41', `${command} answered 41: ${String(out.error)}`);
        if (out.errorCode !== '00') assert.match(out.fields, /^(\x19[\x20-\x7e]*)?$/);
      }),
      { numRuns: 2000 },
    );
  });

  it('an unknown command is 68 and touches nothing', () => {
    assert.deepEqual(executeCommand(hsm, 'QQ', Buffer.alloc(0)), { errorCode: '68', fields: '' });
  });

  it('every registered handler names its code and returns fields as text', () => {
    for (const [code, handler] of COMMANDS) {
      assert.equal(handler.code, code);
      assert.ok(handler.name.length > 0);
    }
    assert.deepEqual(
      codes.sort(),
      [
        'A0',
        'A4',
        'A6',
        'A8',
        'B2',
        'BU',
        'CA',
        'CC',
        'G0',
        'HA',
        'HC',
        'M0',
        'M2',
        'M6',
        'M8',
        'NC',
        'Y0',
      ].sort(),
    );
  });
});
