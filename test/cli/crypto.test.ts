/**
 * `poskey crypto` end to end: the real CLI spawned as a process. Spawning costs ~0.4 s, so most
 * operations are covered by ONE `batch` run over many published vectors; then one spawn per
 * subcommand (text or --json form) and one per class of bad input.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadVectors } from '../helpers/vectors.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function poskey(args: string[], input = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'crypto', ...args], {
      cwd: ROOT,
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

/** `key: value` lines (the text form) into an object; nested sections are flattened by indentation. */
function parseText(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^\s*([A-Za-z0-9]+):\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Independent reference for expected values: 2-key TDES-ECB straight from node:crypto. */
function tdesEcb(key: string, data: string): string {
  const c = createCipheriv('des-ede-ecb', Buffer.from(key, 'hex'), null).setAutoPadding(false);
  return Buffer.concat([c.update(Buffer.from(data, 'hex')), c.final()])
    .toString('hex')
    .toUpperCase();
}

const hexOf = (text: string) => Buffer.from(text, 'latin1').toString('hex').toUpperCase();

// Published values (sources in test/vectors/*.json and shared research keys.md).
const X924_BDK = '0123456789ABCDEFFEDCBA9876543210'; // ANSI X9.24-1:2009 A.4
const X924_IPEK = '6AC292FAA1315B4D858AB3A3D7D5933A';
const AES_BDK = 'FEDCBA9876543210F1F1F1F1F1F1F1F1'; // X9.24-3:2017 supplement, AES-128 BDK
const AES_IK = '1273671EA26AC29AFA4D1084127652A1';
const TR31_A74 = {
  // TR-31:2018 A.7.4 (openemv/tr31 test/tr31_decrypt_test.c), AES KBPK, version D
  kbpk: '88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6',
  block:
    'D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34',
  key: '3F419E1CB7079442AA37474C2EFBF8B8',
};
const TR31_A721 = {
  // TR-31:2018 A.7.2.1, TDES KBPK, version A
  kbpk: '89E88CF7931444F334BD7547FC3F380C',
  block: 'A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701',
  key: 'F039121BEC83D26B169BDCD5B22AAF8F',
};

/** TR-31 unwrap vectors as listed in shared research keys.md 2.4 (from openemv/tr31 tr31_decrypt_test.c). */
const TR31_UNWRAP = [
  { source: 'TR-31:2018 A.7.2.1', ...TR31_A721, kcv: 'CB9DEA' },
  {
    source: 'TR-31:2018 A.7.2.2',
    kbpk: 'DD7515F2BFC17F85CE48F3CA25CB21F6',
    block: 'B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E',
    key: '3F419E1CB7079442AA37474C2EFBF8B8',
    kcv: '57C409',
  },
  {
    source: 'TR-31:2018 A.7.3.1',
    kbpk: 'B8ED59E0A279A295E9F5ED7944FD06B9',
    block: 'C0096B0TX12S0100KS1800604B120F9292800000BFB9B689CB567E66FC3FEE5AD5F52161FC6545B9D60989015D02155C',
    key: 'EDB380DD340BC2620247D445F5B8D678',
    kcv: 'F4B08D',
  },
  {
    source: 'TR-31:2018 A.7.3.2',
    kbpk: '1D22BF32387C600AD97F9B97A51311AC',
    block:
      'B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627',
    key: 'E8BC63E5479455E26577F715D587FE68',
    kcv: '9A4212',
  },
  { source: 'TR-31:2018 A.7.4', ...TR31_A74, kcv: '08793E' },
  {
    source: 'payShield 10k sample',
    kbpk: 'EFE0853B256B583D868F251CE99EA1D9',
    block: 'A0072K0TN00N0000F40D5672C6D0EC86F860BA88D44D00F0CA9A8CE8CD2F640287A9A9EB',
    key: '5DB50B454F8389ADCE573BE50861F2BF',
    kcv: '5C9405',
  },
];

type Result = Record<string, unknown>;
interface BatchCase {
  name: string;
  request: Result;
  check: (r: Result) => void;
}

function expectFields(expected: Result): (r: Result) => void {
  return (r) => {
    assert.equal(r.error, undefined, `unexpected error ${JSON.stringify(r.error)}`);
    for (const [k, v] of Object.entries(expected)) assert.deepEqual(r[k], v, k);
  };
}

function expectError(code: string, field?: string): (r: Result) => void {
  return (r) => {
    const error = r.error as { code: string; message: string; field?: string } | undefined;
    assert.ok(error, `expected an error, got ${JSON.stringify(r)}`);
    assert.equal(error.code, code);
    assert.equal(typeof error.message, 'string');
    if (field !== undefined) assert.equal(error.field, field);
  };
}

function vectorCases(): BatchCase[] {
  const cases: BatchCase[] = [];
  for (const v of loadVectors<{ alg: string; key: string; method: string; length: number; kcv: string }>(
    'kcv.json',
  ).vectors) {
    cases.push({
      name: `kcv ${v.alg} ${v.method} ${v.length} → ${v.kcv}`,
      request: { op: 'kcv', alg: v.alg, key: v.key, method: v.method, length: v.length },
      check: expectFields({ kcv: v.kcv, kcvMethod: v.method }),
    });
  }
  for (const v of loadVectors<{
    alg: string;
    mode: string;
    key: string;
    iv?: string;
    plain: string;
    cipher: string;
  }>('ciphers.json').vectors) {
    const base = { alg: v.alg, mode: v.mode, key: v.key, ...(v.iv ? { iv: v.iv } : {}) };
    cases.push({
      name: `encrypt ${v.alg} ${v.mode}`,
      request: { op: 'encrypt', ...base, data: v.plain },
      check: expectFields({ data: v.cipher }),
    });
    cases.push({
      name: `decrypt ${v.alg} ${v.mode}`,
      request: { op: 'decrypt', ...base, data: v.cipher },
      check: expectFields({ data: v.plain }),
    });
  }
  for (const v of loadVectors<{ alg: string; key: string; data: string; mac: string }>('cmac.json').vectors) {
    cases.push({
      name: `mac cmac ${v.alg} ${v.data.length / 2} bytes (RFC 4493 / SP 800-38B)`,
      request: { op: 'mac', algorithm: 'cmac', alg: v.alg, key: v.key, data: v.data },
      check: expectFields({ mac: v.mac }),
    });
  }
  type MacVector = {
    algorithm: string;
    keyAlg: string;
    key: string;
    data?: string;
    text?: string;
    padding?: number;
    length?: number;
    output?: string;
    ascii?: string;
    mac: string;
  };
  for (const v of loadVectors<MacVector>('mac.json').vectors) {
    const request: Result = {
      op: 'mac',
      algorithm: v.algorithm,
      alg: v.keyAlg,
      key: v.key,
      data: v.data ?? hexOf(v.text ?? ''),
    };
    if (v.padding !== undefined && (v.algorithm === 'cbc' || v.algorithm === 'retail'))
      request.padding = v.padding;
    if (v.length !== undefined) request.length = v.length;
    if (v.output !== undefined) request.output = v.output;
    cases.push({
      name: `mac ${v.algorithm} ${v.keyAlg} → ${v.ascii ?? v.mac}`,
      request,
      // The UnionPay 'hex' form is 8 ASCII characters, printed as they read in field 64.
      check: expectFields({ mac: v.ascii ?? v.mac }),
    });
  }
  type ComponentVector = {
    name: string;
    alg: string;
    kcvMethod: string;
    components: string[];
    componentKcvs: string[];
    key: string;
    kcv: string;
  };
  for (const v of loadVectors<ComponentVector>('components.json').vectors) {
    cases.push({
      name: `components combine: ${v.name}`,
      request: { op: 'components combine', alg: v.alg, component: v.components, kcvMethod: v.kcvMethod },
      check: expectFields({ key: v.key, kcv: v.kcv, kcvMethod: v.kcvMethod, components: v.componentKcvs }),
    });
  }
  type DukptVector = {
    clause: string;
    ksn: string;
    transactionKey: string;
    pinKey?: string;
    encryptedPinBlock: string;
  };
  for (const v of loadVectors<DukptVector>('dukpt-tdes.json').vectors.slice(0, 3)) {
    cases.push({
      name: `dukpt tdes ${v.ksn}`,
      request: { op: 'dukpt', bdk: X924_BDK, ksn: v.ksn, keyType: 'pin' },
      check: expectFields({
        ipek: X924_IPEK,
        transactionKey: v.transactionKey,
        ...(v.pinKey ? { key: v.pinKey } : {}),
      }),
    });
    if (v.pinKey) {
      // The A.4 encrypted PIN block is the ISO 0 block of PIN 1234 / PAN 4012345678909 under the PIN key.
      cases.push({
        name: `pinblock encrypt under the DUKPT PIN key of ${v.ksn}`,
        request: { op: 'pinblock encrypt', format: '0', key: v.pinKey, pin: '1234', pan: '4012345678909' },
        check: expectFields({ pinBlock: v.encryptedPinBlock }),
      });
    }
  }
  type ClearVector = { format: number | string; pin: string; pan?: string; block: string };
  for (const v of loadVectors<ClearVector>('pinblock-clear.json').vectors) {
    const pan = v.pan === undefined ? {} : { pan: v.pan };
    if (v.format !== 4) {
      // Format 4's PIN field carries random bytes: only decoding it is deterministic.
      cases.push({
        name: `pinblock encode format ${v.format} PIN of ${v.pin.length}`,
        request: { op: 'pinblock encode', format: String(v.format), pin: v.pin, ...pan },
        check: expectFields({ pinBlock: v.block }),
      });
    }
    cases.push({
      name: `pinblock decode format ${v.format} ${v.block}`,
      request: { op: 'pinblock decode', format: String(v.format), block: v.block, ...pan },
      check: expectFields({ pin: v.pin }),
    });
  }
  for (const v of loadVectors<ClearVector>('pinblock-decode.json').vectors) {
    cases.push({
      name: `pinblock decode format ${v.format} ${v.block}`,
      request: {
        op: 'pinblock decode',
        format: String(v.format),
        block: v.block,
        ...(v.pan ? { pan: v.pan } : {}),
      },
      check: expectFields({ pin: v.pin }),
    });
  }
  type EncryptedVector = ClearVector & { alg: string; key: string };
  for (const v of loadVectors<EncryptedVector>('pinblock-encrypted.json').vectors) {
    const base = { format: String(v.format), alg: v.alg, key: v.key, pan: v.pan };
    if (v.format !== 4) {
      cases.push({
        name: `pinblock encrypt format ${v.format} ${v.alg} → ${v.block}`,
        request: { op: 'pinblock encrypt', ...base, pin: v.pin },
        check: expectFields({ pinBlock: v.block }),
      });
    }
    cases.push({
      name: `pinblock decrypt format ${v.format} ${v.alg} ${v.block}`,
      request: { op: 'pinblock decrypt', ...base, block: v.block },
      check: expectFields({ pin: v.pin }),
    });
  }
  type AesDukptVector = {
    kind: string;
    bdk: string;
    ksn?: string;
    derivationKey?: string;
    workingKeys?: { usage: string; keyType: string; key: string }[];
  };
  for (const v of loadVectors<AesDukptVector>('dukpt-aes.json').vectors) {
    for (const w of v.workingKeys ?? []) {
      cases.push({
        name: `dukpt aes ${v.bdk.length * 4}-bit BDK ${v.ksn} ${w.usage} ${w.keyType}`,
        request: { op: 'dukpt', aes: true, bdk: v.bdk, ksn: v.ksn, keyType: w.usage, keyAlg: w.keyType },
        check: expectFields({ derivationKey: v.derivationKey, key: w.key }),
      });
    }
  }
  for (const v of TR31_UNWRAP) {
    cases.push({
      name: `tr31 unwrap ${v.source}`,
      request: { op: 'tr31 unwrap', kbpk: v.kbpk, block: v.block },
      check: (r) => {
        expectFields({ key: v.key })(r);
        assert.equal((r.header as Result).usage, v.block.slice(5, 7));
        assert.ok(String(r.kcv).startsWith(v.kcv), `kcv ${String(r.kcv)}`);
      },
    });
  }
  return cases;
}

function handWrittenCases(): BatchCase[] {
  return [
    {
      name: 'dukpt tdes initial KSN gives the IPEK only',
      request: { op: 'dukpt', bdk: X924_BDK, ksn: 'FFFF9876543210E00000' },
      check: (r) => {
        expectFields({ ipek: X924_IPEK })(r);
        assert.equal(r.key, undefined);
      },
    },
    {
      name: 'dukpt aes (X9.24-3 supplement, counter 1, PIN key)',
      request: {
        op: 'dukpt',
        aes: true,
        bdk: AES_BDK,
        ksn: '123456789012345600000001',
        keyType: 'pin',
        keyAlg: 'aes128',
      },
      check: expectFields({
        ipek: AES_IK,
        derivationKey: '4F21B565BAD9835E112B6465635EAE44',
        key: 'AF8CB133A78F8DC2D1359F18527593FB',
      }),
    },
    {
      name: 'pinblock encode ISO 0, 12-digit PIN, format as a number',
      request: { op: 'pinblock encode', format: 0, pin: '123456789012', pan: '5555555551234567' },
      check: expectFields({ pinBlock: '0C1261032D8226A9' }),
    },
    {
      name: 'pinblock translate the A.4 block from the DUKPT PIN key to a ZPK',
      request: {
        op: 'pinblock translate',
        format: '0',
        key: '042666B49184CF5C68DE9628D0397B36',
        toKey: '0123456789ABCDEFFEDCBA9876543210',
        block: '1B9C1845EB993A7A',
        pan: '4012345678909',
      },
      // Format 0 → 0 under one PAN re-encrypts the same clear block; reference: node:crypto directly.
      check: expectFields({ pinBlock: tdesEcb('0123456789ABCDEFFEDCBA9876543210', '041274EDCBA9876F') }),
    },
    {
      name: 'an id is echoed back',
      request: { op: 'kcv', id: 'inventory-7', alg: 'tdes', key: X924_BDK },
      check: expectFields({ id: 'inventory-7', kcv: '08D7B4' }),
    },
    {
      name: 'tr31 wrap (random padding: checked by shape and KCV)',
      request: { op: 'tr31 wrap', kbpk: TR31_A74.kbpk, header: 'D0000P0AE00E0000', key: TR31_A74.key },
      check: (r) => {
        assert.match(String(r.block), /^D0144P0AE00E0000[0-9A-F]{128}$/);
        assert.equal(r.kcv, '08793E25AB');
      },
    },
    // Failing lines: each gives an error object and the batch goes on.
    {
      name: 'tampered TR-31 block',
      request: { op: 'tr31 unwrap', kbpk: TR31_A721.kbpk, block: `${TR31_A721.block.slice(0, -1)}0` },
      check: expectError('POSKEY_ERR_TR31_MAC'),
    },
    {
      name: 'DUKPT KSN of the wrong length',
      request: { op: 'dukpt', bdk: X924_BDK, ksn: 'FFFF9876543210E000' },
      check: expectError('POSKEY_ERR_KSN', '--ksn'),
    },
    {
      name: 'odd-length hex',
      request: { op: 'kcv', alg: 'tdes', key: '0123456789ABCDEFFEDCBA987654321' },
      check: expectError('POSKEY_ERR_HEX', '--key'),
    },
    {
      name: 'wrong key length',
      request: { op: 'kcv', alg: 'aes', key: '0123456789ABCDEF' },
      check: expectError('POSKEY_ERR_LENGTH', '--key'),
    },
    {
      name: 'unknown PIN block format',
      request: { op: 'pinblock encode', format: '9', pin: '1234' },
      check: expectError('POSKEY_ERR_CLI_OPTION', '--format'),
    },
    {
      name: 'missing option',
      request: { op: 'encrypt', alg: 'aes', mode: 'ecb', key: TR31_A74.key },
      check: expectError('POSKEY_ERR_CLI_OPTION', '--data'),
    },
    {
      name: 'unknown option key',
      request: { op: 'kcv', alg: 'aes', key: TR31_A74.key, colour: 'red' },
      check: expectError('POSKEY_ERR_CLI_OPTION', '--colour'),
    },
    {
      name: 'unknown op, id still echoed',
      request: { op: 'kcv please', id: 3 },
      check: (r) => {
        expectError('POSKEY_ERR_CLI_BATCH_LINE', 'op')(r);
        assert.equal(r.id, 3);
      },
    },
    {
      name: 'a PIN block decrypted under the wrong key is refused (module error)',
      request: {
        op: 'pinblock decrypt',
        format: '0',
        key: '0123456789ABCDEFFEDCBA9876543210',
        block: '1B9C1845EB993A7A',
        pan: '4012345678909',
      },
      check: (r) => assert.match(String((r.error as Result).code), /^POSKEY_ERR_/),
    },
  ];
}

describe('poskey crypto batch', () => {
  const cases = [...vectorCases(), ...handWrittenCases()];
  let all: Result[] = [];
  let run: Run;

  before(async () => {
    // A blank line and a non-JSON line are mixed in: the blank one is skipped, the other fails.
    const lines = cases.map((c) => JSON.stringify(c.request));
    lines.splice(1, 0, '', 'this is not json');
    run = await poskey(['batch'], `${lines.join('\n')}\n`);
    all = run.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Result);
  });
  const resultOf = (i: number) => all[i === 0 ? 0 : i + 1];

  it('writes one result line per non-blank input line, in order, and exits 1 when some failed', () => {
    assert.equal(all.length, cases.length + 1);
    assert.equal(run.stderr, '');
    assert.equal(run.code, 1);
    expectError('POSKEY_ERR_CLI_BATCH_LINE')(all[1]!);
  });

  for (const [i, c] of cases.entries()) {
    it(c.name, () => {
      const r = resultOf(i);
      assert.ok(r, 'no result line');
      c.check(r);
    });
  }
});

interface CommandCase {
  args: string[];
  expect: Record<string, string | string[]>;
}

/** One spawn per subcommand; `--json` in args selects the JSON form, else the text form is parsed. */
const COMMANDS: CommandCase[] = [
  { args: ['kcv', '--alg', 'tdes', '--key', X924_BDK], expect: { kcv: '08D7B4', kcvMethod: 'legacy' } },
  {
    args: ['kcv', '--alg', 'aes', '--key', TR31_A74.key, '--method', 'cmac', '--json'],
    expect: { kcv: '08793E25AB', kcvMethod: 'cmac' },
  },
  {
    args: ['encrypt', '--alg', 'aes', '--mode', 'cbc', '--key', '2B7E151628AED2A6ABF7158809CF4F3C', '--iv'],
    expect: {},
  },
  {
    args: [
      'decrypt',
      '--alg',
      'des',
      '--mode',
      'ecb',
      '--key',
      '0123456789ABCDEF',
      '--data',
      '3FA40E8A984D4815',
    ],
    expect: { data: '4E6F772069732074' },
  },
  {
    args: ['pinblock', 'encode', '--format', '0', '--pin', '1234', '--pan', '5555555551234567', '--json'],
    expect: { pinBlock: '041261AAAAEDCBA9' },
  },
  {
    args: ['pinblock', 'decode', '--format', '0', '--block', '041261AAAAEDCBA9', '--pan', '5555555551234567'],
    expect: { pin: '1234' },
  },
  {
    args: [
      'pinblock',
      'encrypt',
      '--format',
      '0',
      '--alg',
      'tdes',
      '--key',
      '042666B49184CF5C68DE9628D0397B36',
      '--pin',
      '1234',
      '--pan',
      '4012345678909',
      '--json',
    ],
    expect: { pinBlock: '1B9C1845EB993A7A' },
  },
  {
    args: [
      'pinblock',
      'decrypt',
      '--format',
      '0',
      '--alg',
      'tdes',
      '--key',
      '042666B49184CF5C68DE9628D0397B36',
      '--block',
      '1B9C1845EB993A7A',
      '--pan',
      '4012345678909',
    ],
    expect: { pin: '1234' },
  },
  {
    args: [
      'pinblock',
      'translate',
      '--format',
      '0',
      '--key',
      '042666B49184CF5C68DE9628D0397B36',
      '--to-key',
      X924_BDK,
      '--block',
      '1B9C1845EB993A7A',
      '--pan',
      '4012345678909',
      '--json',
    ],
    expect: { pinBlock: tdesEcb(X924_BDK, '041274EDCBA9876F') },
  },
  {
    args: [
      'mac',
      '--algorithm',
      'retail',
      '--alg',
      'tdes',
      '--key',
      '7CA110454A1A6E570131D9619DC1376E',
      '--data',
      hexOf('Hello World !!!!'),
      '--json',
    ],
    expect: { mac: 'F09B856213BAB83B' },
  },
  {
    args: ['dukpt', '--bdk', X924_BDK, '--ksn', 'FFFF9876543210E00001'],
    expect: { ipek: X924_IPEK, key: '042666B49184CF5C68DE9628D0397B36' },
  },
  {
    args: [
      'dukpt',
      '--aes',
      '--bdk',
      AES_BDK,
      '--ksn',
      '123456789012345600000001',
      '--key-alg',
      'aes128',
      '--json',
    ],
    expect: { ipek: AES_IK, key: 'AF8CB133A78F8DC2D1359F18527593FB' },
  },
  {
    args: [
      'components',
      'combine',
      '--alg',
      'tdes',
      '--component',
      X924_BDK,
      '--component',
      '40404040404040404040404040404040',
      '--component',
      '1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C',
      '--json',
    ],
    expect: {
      key: '5D7F193BD5F791B3A280E6C42A086E4C',
      kcv: '0844CA',
      components: ['08D7B4', 'C4B738', '77800C'],
    },
  },
  {
    args: ['tr31', 'unwrap', '--kbpk', TR31_A721.kbpk, '--block', TR31_A721.block],
    expect: { key: TR31_A721.key, kcv: 'CB9DEA' },
  },
];

// The CBC case is filled in here so its expected value comes from ciphers.json (SP 800-38A F.2.1).
{
  const cbc = loadVectors<{ alg: string; mode: string; iv?: string; plain: string; cipher: string }>(
    'ciphers.json',
  ).vectors.find((v) => v.alg === 'aes' && v.mode === 'cbc')!;
  COMMANDS[2]!.args.push(cbc.iv!, '--data', cbc.plain, '--json');
  COMMANDS[2]!.expect = { data: cbc.cipher };
}

describe('poskey crypto subcommands', { concurrency: 4 }, () => {
  for (const c of COMMANDS) {
    const json = c.args.includes('--json');
    it(`${c.args.slice(0, c.args[0] === 'pinblock' || c.args[0] === 'tr31' || c.args[0] === 'components' ? 2 : 1).join(' ')} (${json ? 'json' : 'text'})`, async () => {
      const run = await poskey(c.args);
      assert.equal(run.stderr, '');
      assert.equal(run.code, 0);
      if (json) {
        const lines = run.stdout.split('\n');
        assert.equal(lines.length, 2, 'exactly one line');
        assert.equal(lines[1], '');
        const obj = JSON.parse(lines[0]!) as Result;
        assert.equal(typeof obj, 'object');
        for (const [k, v] of Object.entries(c.expect)) assert.deepEqual(obj[k], v, k);
      } else {
        const obj = parseText(run.stdout);
        for (const [k, v] of Object.entries(c.expect))
          assert.equal(obj[k], Array.isArray(v) ? v.join(', ') : v, k);
      }
    });
  }

  it('batch exits 0 when every line succeeds', async () => {
    const run = await poskey(['batch'], `${JSON.stringify({ op: 'kcv', alg: 'tdes', key: X924_BDK })}\n`);
    assert.equal(run.code, 0);
    assert.equal(run.stderr, '');
    assert.equal(run.stdout, '{"kcv":"08D7B4","kcvMethod":"legacy"}\n');
  });

  it('tr31 wrap (json) gives a block that unwraps to the same key', async () => {
    const header = 'D0000P0AE00E0000';
    const wrap = await poskey([
      'tr31',
      'wrap',
      '--kbpk',
      TR31_A74.kbpk,
      '--header',
      header,
      '--key',
      TR31_A74.key,
      '--json',
    ]);
    assert.equal(wrap.stderr, '');
    assert.equal(wrap.code, 0);
    const { block } = JSON.parse(wrap.stdout) as { block: string };
    assert.match(block, /^D\d{4}P0AE00E0000/);
    const unwrap = await poskey(['tr31', 'unwrap', '--kbpk', TR31_A74.kbpk, '--block', block, '--json']);
    assert.equal((JSON.parse(unwrap.stdout) as Result).key, TR31_A74.key);
  });
});

interface BadCase {
  name: string;
  args: string[];
  code: string;
  flag?: string;
}

const BAD_INPUT: BadCase[] = [
  {
    name: 'odd-length hex',
    args: ['kcv', '--alg', 'tdes', '--key', '0123456789ABCDEFFEDCBA987654321'],
    code: 'POSKEY_ERR_HEX',
    flag: '--key',
  },
  {
    name: 'non-hex characters',
    args: ['kcv', '--alg', 'tdes', '--key', 'XY23456789ABCDEFFEDCBA9876543210', '--json'],
    code: 'POSKEY_ERR_HEX',
    flag: '--key',
  },
  {
    name: 'wrong key length',
    args: [
      'encrypt',
      '--alg',
      'aes',
      '--mode',
      'ecb',
      '--key',
      '0123456789ABCDEF',
      '--data',
      '00000000000000000000000000000000',
    ],
    code: 'POSKEY_ERR_LENGTH',
    flag: '--key',
  },
  {
    name: 'unknown PIN block format',
    args: ['pinblock', 'encode', '--format', '5', '--pin', '1234'],
    code: 'POSKEY_ERR_CLI_OPTION',
    flag: '--format',
  },
  {
    name: 'missing option (--json does not move the error to stdout)',
    args: ['mac', '--algorithm', 'cmac', '--alg', 'aes', '--data', '00', '--json'],
    code: 'POSKEY_ERR_CLI_OPTION',
    flag: '--key',
  },
  {
    name: 'unknown flag (commander)',
    args: ['kcv', '--alg', 'tdes', '--kee', X924_BDK],
    code: 'POSKEY_ERR_CLI_USAGE',
  },
  {
    name: 'module error: PIN block of another PAN',
    args: ['pinblock', 'decode', '--format', '0', '--block', '041261AAAAEDCBA9', '--pan', '4012345678909'],
    code: 'POSKEY_ERR_',
  },
];

describe('poskey crypto bad input', { concurrency: 4 }, () => {
  for (const c of BAD_INPUT) {
    it(`${c.name}: exit 2, one stderr line, no stack trace`, async () => {
      const run = await poskey(c.args);
      assert.equal(run.code, 2);
      assert.equal(run.stdout, '');
      const lines = run.stderr.split('\n');
      assert.equal(lines.length, 2, `one line, got ${JSON.stringify(run.stderr)}`);
      assert.ok(lines[0]!.startsWith(`poskey: ${c.code}`), lines[0]);
      if (c.flag) assert.ok(lines[0]!.includes(` ${c.flag}: `), lines[0]);
      assert.doesNotMatch(run.stderr, /\bat .+:\d+:\d+/);
    });
  }
});

describe('docs/crypto-cli.md examples', () => {
  /** `$ poskey crypto …` lines in code blocks, each with the output printed under it. */
  function examples(): { argv: string[]; output: string }[] {
    const lines = readFileSync(new URL('../../docs/crypto-cli.md', import.meta.url), 'utf8').split('\n');
    const found: { argv: string[]; output: string }[] = [];
    for (let i = 0; i < lines.length; i++) {
      const m = /^\$ poskey crypto (.*)$/.exec(lines[i]!);
      if (!m) continue;
      const output: string[] = [];
      for (let j = i + 1; j < lines.length && !/^(\$ |```|$)/.test(lines[j]!); j++) output.push(lines[j]!);
      found.push({ argv: m[1]!.split(/\s+/), output: output.join('\n') });
    }
    return found;
  }

  it('print what the docs say they print (random outputs excepted)', async () => {
    const deterministic = examples().filter(
      ({ argv }) =>
        !argv.includes('wrap') &&
        !argv.includes('batch') &&
        !/--format 4 --pin|--to-format 4/.test(argv.join(' ')),
    );
    assert.ok(deterministic.length >= 20, `only ${deterministic.length} examples found`);
    // One child process runs every example through the real program, capturing its output.
    const script = `
      const { buildProgram } = await import('./src/cli/program.ts');
      const results = [];
      for (const argv of JSON.parse(process.env.EXAMPLES)) {
        let text = '';
        const capture = (chunk) => { text += chunk; return true; };
        const out = process.stdout.write, err = process.stderr.write;
        process.stdout.write = capture; process.stderr.write = capture;
        try { await buildProgram().parseAsync(['node', 'poskey', 'crypto', ...argv]); }
        finally { process.stdout.write = out; process.stderr.write = err; }
        results.push(text.trimEnd());
      }
      process.exitCode = 0;
      process.stdout.write(JSON.stringify(results));`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, EXAMPLES: JSON.stringify(deterministic.map((e) => e.argv)) },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    await new Promise((resolve) => child.on('close', resolve));
    assert.equal(stderr, '');
    const actual = JSON.parse(stdout) as string[];
    for (const [i, e] of deterministic.entries()) {
      assert.equal(actual[i], e.output, `poskey crypto ${e.argv.join(' ')}`);
    }
  });
});
