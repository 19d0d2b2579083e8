/**
 * The operation table in process (no spawning): the generated commands match the table, the
 * docs cover it, every example runs, every CLI error code is produced, and batch lines give what
 * the operations give.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import fc from 'fast-check';
import { ERR_BATCH_LINE, ERR_INTERNAL, runBatch, runBatchLine } from '../../src/cli/crypto/batch.js';
import {
  defineOp,
  ERR_OPTION,
  flag,
  flagOf,
  hex,
  int,
  type Operation,
  oneOf,
  parseArgs,
  runOperation,
  text,
} from '../../src/cli/crypto/schema.js';
import { OPERATIONS, OPERATIONS_BY_PATH } from '../../src/cli/crypto/table.js';
import { buildProgram } from '../../src/cli/program.js';
import { PoskeyError } from '../../src/errors.js';

function op(path: string): Operation {
  const found = OPERATIONS_BY_PATH.get(path);
  assert.ok(found, `no operation ${path}`);
  return found;
}

function throwsCode(fn: () => unknown, code: string, field?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PoskeyError, String(e));
    assert.equal(e.code, code);
    if (field !== undefined) assert.equal(e.field, field);
    return true;
  });
}

/** Splits an example command line into raw option values the way commander would. */
function exampleArgs(o: Operation): Record<string, unknown> {
  const tokens = o.example.split(/\s+/).slice(o.path.split(' ').length);
  const raw: Record<string, unknown> = {};
  for (let i = 0; i < tokens.length; i++) {
    const name = tokens[i]!.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const spec = o.options[name];
    assert.ok(spec, `${o.path} example: unknown flag ${tokens[i]}`);
    if (spec.type === 'flag') raw[name] = true;
    else if (spec.repeated) raw[name] = [...((raw[name] as string[] | undefined) ?? []), tokens[++i]];
    else raw[name] = tokens[++i];
  }
  return raw;
}

function findCommand(root: Command, path: string[]): Command | undefined {
  let cmd: Command | undefined = root;
  for (const word of path) cmd = cmd?.commands.find((c) => c.name() === word);
  return cmd;
}

describe('crypto operation table', () => {
  it('has unique paths and options whose flags are the kebab-case of their batch keys', () => {
    assert.equal(OPERATIONS_BY_PATH.size, OPERATIONS.length);
    assert.equal(flagOf('keyType'), '--key-type');
    assert.equal(flagOf('toPan'), '--to-pan');
  });

  it('generates one commander command per operation with exactly the table options plus --json', () => {
    const program = buildProgram();
    for (const o of OPERATIONS) {
      const cmd = findCommand(program, ['crypto', ...o.path.split(' ')]);
      assert.ok(cmd, `no command for ${o.path}`);
      const attributes = cmd.options.map((x) => x.attributeName()).sort();
      assert.deepEqual(attributes, [...Object.keys(o.options), 'json'].sort(), o.path);
    }
    assert.ok(findCommand(program, ['crypto', 'batch']));
  });

  it('documents every operation in docs/crypto-cli.md', () => {
    const docs = readFileSync(new URL('../../docs/crypto-cli.md', import.meta.url), 'utf8');
    for (const o of OPERATIONS) {
      assert.ok(docs.includes(`poskey crypto ${o.path}`), `docs/crypto-cli.md lacks ${o.path}`);
      for (const name of Object.keys(o.options)) {
        assert.ok(docs.includes(flagOf(name)), `docs/crypto-cli.md lacks ${o.path} ${flagOf(name)}`);
      }
    }
    for (const code of [ERR_OPTION, ERR_BATCH_LINE, ERR_INTERNAL, 'POSKEY_ERR_CLI_USAGE']) {
      assert.ok(docs.includes(code), `docs/crypto-cli.md lacks ${code}`);
    }
  });

  for (const o of OPERATIONS) {
    it(`example of '${o.path}' runs`, () => {
      const result = runOperation(o, exampleArgs(o));
      assert.equal(typeof result, 'object');
      for (const v of Object.values(result)) {
        if (typeof v === 'string' && /^[0-9A-Fa-f]{6,}$/.test(v))
          assert.equal(v, v.toUpperCase(), 'hex is upper-case');
      }
    });
  }
});

describe('option parsing (POSKEY_ERR_CLI_OPTION)', () => {
  const schema = {
    key: hex('k', { required: true }),
    alg: oneOf(['tdes', 'aes'], 'a', { default: 'tdes' }),
    length: int('n', 1, 16),
    aes: flag('f'),
    pin: text('pin', 'p', { pattern: /^\d+$/, patternHint: 'digits only' }),
    component: hex('c', { repeated: true }),
  };

  it('accepts strings (command line) and numbers/booleans/arrays (batch) alike', () => {
    const a = parseArgs(schema, { key: '0A0b', length: '8', component: ['01', '02'] });
    const b = parseArgs(schema, { key: '0A0B', length: 8, component: ['01', '02'], aes: false });
    assert.deepEqual(a, b);
    assert.deepEqual(a.key, Buffer.from([0x0a, 0x0b]));
    assert.equal(a.alg, 'tdes');
    assert.equal(a.aes, false);
    assert.deepEqual(parseArgs(schema, { key: '00', component: '03' }).component, [Buffer.from([3])]);
  });

  const bad: [string, Record<string, unknown>, string, string][] = [
    ['missing required', {}, ERR_OPTION, '--key'],
    ['unknown key', { key: '00', colour: 'red' }, ERR_OPTION, '--colour'],
    ['enum outside list', { key: '00', alg: 'des' }, ERR_OPTION, '--alg'],
    ['int not a number', { key: '00', length: '8x' }, ERR_OPTION, '--length'],
    ['int out of range', { key: '00', length: 17 }, ERR_OPTION, '--length'],
    ['int not integral', { key: '00', length: 1.5 }, ERR_OPTION, '--length'],
    ['flag not boolean', { key: '00', aes: 'yes' }, ERR_OPTION, '--aes'],
    ['text pattern', { key: '00', pin: '12a4' }, ERR_OPTION, '--pin'],
    ['text empty', { key: '00', pin: '' }, ERR_OPTION, '--pin'],
    ['hex not a string', { key: 12 }, ERR_OPTION, '--key'],
    ['odd-length hex', { key: '012' }, 'POSKEY_ERR_HEX', '--key'],
    ['non-hex', { key: '0g' }, 'POSKEY_ERR_HEX', '--key'],
    [
      'bad element of a repeated option',
      { key: '00', component: ['00', 'zz'] },
      'POSKEY_ERR_HEX',
      '--component',
    ],
  ];
  for (const [name, raw, code, field] of bad) {
    it(`rejects ${name}`, () => throwsCode(() => parseArgs(schema, raw), code, field));
  }

  it('never echoes a rejected PIN', () => {
    assert.throws(
      () => parseArgs(schema, { key: '00', pin: '98x7' }),
      (e: Error) => !e.message.includes('98x7'),
    );
  });

  it('quotes a rejected enum value only when it cannot be key or PIN material', () => {
    const message = (alg: string) => {
      try {
        parseArgs(schema, { key: '00', alg });
      } catch (e) {
        return (e as Error).message;
      }
      assert.fail('no error');
    };
    assert.match(message('des'), /\(got 'des'\)/);
    assert.match(message('tdes3'), /\(got 'tdes3'\)/);
    for (const secret of ['0123456789ABCDEF', '1234', '123456', 'ABCDEF01']) {
      assert.ok(!message(secret).includes(secret), secret);
    }
  });

  it('rejects options that do not apply to the chosen variant', () => {
    throwsCode(
      () =>
        runOperation(op('encrypt'), {
          alg: 'aes',
          mode: 'ecb',
          key: '00'.repeat(16),
          data: '00'.repeat(16),
          iv: '00'.repeat(16),
        }),
      ERR_OPTION,
      '--iv',
    );
    throwsCode(
      () =>
        runOperation(op('mac'), {
          algorithm: 'cmac',
          alg: 'aes',
          key: '00'.repeat(16),
          data: '00',
          padding: 2,
        }),
      ERR_OPTION,
      '--padding',
    );
    throwsCode(
      () => runOperation(op('dukpt'), { bdk: '00'.repeat(16), ksn: '00'.repeat(10), keyAlg: 'aes128' }),
      ERR_OPTION,
      '--key-alg',
    );
    throwsCode(
      () => runOperation(op('dukpt'), { bdk: '00'.repeat(16), ksn: 'FF'.repeat(12) }),
      ERR_OPTION,
      '--ksn',
    );
  });

  it('renames module error fields to flags, counting repeated flags from one', () => {
    throwsCode(
      () =>
        runOperation(op('components combine'), { alg: 'tdes', component: ['00'.repeat(16), '00'.repeat(8)] }),
      'POSKEY_ERR_LENGTH',
      '--component #2',
    );
    throwsCode(
      () => runOperation(op('kcv'), { alg: 'tdes', key: '01'.repeat(16), length: 9 }),
      'POSKEY_ERR_LENGTH',
      '--length',
    );
    throwsCode(
      () => runOperation(op('dukpt'), { bdk: '00'.repeat(16), ksn: '00'.repeat(9) }),
      'POSKEY_ERR_KSN',
      '--ksn',
    );
  });
});

describe('batch lines (in process)', () => {
  it('rejects non-JSON, non-objects and missing or unknown ops with POSKEY_ERR_CLI_BATCH_LINE', () => {
    for (const line of ['{', '[1,2]', '"kcv"', 'null', '{}', '{"op":7}', '{"op":"nope"}']) {
      const r = runBatchLine(line, OPERATIONS_BY_PATH) as { error?: { code: string } };
      assert.equal(r.error?.code, ERR_BATCH_LINE, line);
    }
  });

  it('reports a non-poskey failure as POSKEY_ERR_CLI_INTERNAL and goes on', async () => {
    const broken = defineOp({
      path: 'broken',
      summary: 'throws a plain error',
      options: {},
      example: 'broken',
      run() {
        throw new TypeError('boom');
      },
    });
    const table = new Map([
      ['broken', broken],
      ['kcv', op('kcv')],
    ]);
    const out: string[] = [];
    const lines = [
      '{"op":"broken","id":1}',
      '{"op":"kcv","alg":"tdes","key":"0123456789ABCDEFFEDCBA9876543210"}',
    ];
    async function* input() {
      yield* lines;
    }
    const counts = await runBatch(input(), table, (l) => {
      out.push(l);
    });
    assert.deepEqual(counts, { ok: 1, failed: 1 });
    assert.deepEqual(JSON.parse(out[0]!), { id: 1, error: { code: ERR_INTERNAL, message: 'boom' } });
    assert.equal((JSON.parse(out[1]!) as { kcv: string }).kcv, '08D7B4');
  });

  it('zeroises parsed hex arguments once the operation has run, even when it throws', () => {
    const seen: Buffer[] = [];
    const keep = (fail: boolean) =>
      defineOp({
        path: 'keep',
        summary: 'keeps references to its byte arguments',
        options: { key: hex('k', { required: true }), component: hex('c', { repeated: true }) },
        example: 'keep --key 00',
        run({ key, component }) {
          seen.push(key, ...component);
          if (fail) throw new PoskeyError('POSKEY_ERR_TEST', 'failed on purpose');
          return { ok: true };
        },
      });
    runOperation(keep(false), { key: 'A1B2', component: ['C3', 'D4'] });
    assert.throws(() => runOperation(keep(true), { key: 'E5F6' }));
    assert.equal(seen.length, 4);
    for (const b of seen) assert.ok(b.every((x) => x === 0));
  });

  it('normalises whitespace in the op path', () => {
    const r = runBatchLine(
      '{"op":"  pinblock   encode ","format":"2","pin":"1234"}',
      OPERATIONS_BY_PATH,
    ) as Record<string, unknown>;
    assert.equal(r.pinBlock, '241234FFFFFFFFFF');
  });

  it('gives the same result as the operation itself (property)', () => {
    const algKey = fc.constantFrom(
      ['des', 8] as const,
      ['tdes', 16] as const,
      ['tdes', 24] as const,
      ['aes', 16] as const,
      ['aes', 32] as const,
      ['sm4', 16] as const,
    );
    fc.assert(
      fc.property(algKey, fc.uint8Array({ minLength: 32, maxLength: 32 }), ([alg, n], bytes) => {
        const key = Buffer.from(bytes.subarray(0, n)).toString('hex');
        const direct = runOperation(op('kcv'), { alg, key });
        assert.deepEqual(runBatchLine(JSON.stringify({ op: 'kcv', alg, key }), OPERATIONS_BY_PATH), direct);
      }),
      { numRuns: 50 },
    );
  });
});

describe('round trips through the table (properties)', () => {
  it('decrypt(encrypt(x)) = x for every algorithm and mode', () => {
    const cases = fc.record({
      alg: fc.constantFrom('des', 'tdes', 'aes', 'sm4'),
      mode: fc.constantFrom('ecb', 'cbc'),
      blocks: fc.integer({ min: 1, max: 4 }),
      seed: fc.uint8Array({ minLength: 64 + 32 + 16, maxLength: 64 + 32 + 16 }),
    });
    fc.assert(
      fc.property(cases, ({ alg, mode, blocks, seed }) => {
        const bs = alg === 'aes' || alg === 'sm4' ? 16 : 8;
        const keyLength = alg === 'des' ? 8 : 16;
        const s = Buffer.from(seed);
        const args = {
          alg,
          mode,
          key: s.subarray(0, keyLength).toString('hex'),
          ...(mode === 'cbc' ? { iv: s.subarray(32, 32 + bs).toString('hex') } : {}),
        };
        const data = s
          .subarray(48, 48 + blocks * bs)
          .toString('hex')
          .toUpperCase();
        const enc = runOperation(op('encrypt'), { ...args, data }).data as string;
        assert.equal(runOperation(op('decrypt'), { ...args, data: enc }).data, data);
      }),
      { numRuns: 100 },
    );
  });

  it('pinblock decrypt(encrypt(pin)) = pin for every format', () => {
    const keys: Record<string, string> = {
      tdes: '0123456789ABCDEFFEDCBA9876543210',
      aes: '00112233445566778899AABBCCDDEEFF',
    };
    keys.sm4 = keys.tdes!;
    fc.assert(
      fc.property(
        fc.constantFrom('0', '1', '3', '4', 'sm4'),
        fc.stringMatching(/^\d{4,12}$/),
        fc.stringMatching(/^\d{13,19}$/),
        (format, pin, pan) => {
          const alg = format === '4' ? 'aes' : format === 'sm4' ? 'sm4' : 'tdes';
          const base = { format, key: keys[alg]!, pan };
          const { pinBlock } = runOperation(op('pinblock encrypt'), { ...base, pin });
          assert.equal(runOperation(op('pinblock decrypt'), { ...base, block: pinBlock }).pin, pin);
        },
      ),
      { numRuns: 100 },
    );
  });
});
