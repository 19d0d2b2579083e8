import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

/**
 * A terminal-side 0200 purchase frame, laid out by hand from research iso8583.md §1.1/§1.2/§2.2
 * (unionpay-pos: BCD numerics, LL/LLL prefixes in BCD counting digits for BCD values and bytes for
 * the others, field 22 and 60 left-aligned with pad nibble 0).
 */
const LAYOUT: [string, string][] = [
  ['0098', 'length 152'],
  ['6000030000', 'TPDU: 60, destination 0003, source 0000'],
  ['603100311001', 'header: app 60, version 31, status 0, processing requirement 0, sub-version 311001'],
  ['0200', 'MTI'],
  ['7024048020C09211', 'bitmap: 2 3 4 11 14 22 25 35 41 42 49 52 55 60 64'],
  ['1962258812345678901230', '2: LL 19 + PAN, pad 0'],
  ['000000', '3'],
  ['000000001000', '4: 10.00'],
  ['000123', '11: STAN'],
  ['2512', '14'],
  ['0210', '22: 021 left-aligned'],
  ['00', '25'],
  ['376225881234567890123D251220112345678900', '35: LL 37 + track 2, = as D, pad 0'],
  ['3132333435363738', '41: 12345678'],
  ['313233343536373839303132333435', '42'],
  ['313536', '49: 156'],
  ['0123456789ABCDEF', '52: PIN block'],
  ['0030', '55: LLL 30 bytes'],
  ['9F26080102030405060708', '55 9F26 ARQC'],
  ['5A0A6225881234567890123F', '55 5A PAN'],
  ['95050000000000', '55 95 TVR'],
  ['001322000001000500', '60: LLL 13 digits 22 000001 000 5 0, pad 0'],
  ['0123456789ABCDEF', '64: MAC'],
];
const FRAME = LAYOUT.map(([h]) => h).join('');
const PAN = '6225881234567890123';
const MASKED_PAN = '622588*********0123';

const work = mkdtempSync(join(tmpdir(), 'poskey-iso-cli-'));
after(() => rmSync(work, { recursive: true, force: true }));

function poskey(args: string[], input = ''): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    encoding: 'utf8',
    input,
    cwd: process.cwd(),
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A failing command: exit 2, nothing on stdout, exactly one stderr line with the code, no stack. */
function failsWith(r: ReturnType<typeof poskey>, code: string): string {
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.ok(lines[0]!.startsWith(`poskey: ${code}: `), lines[0]);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  return lines[0]!;
}

describe('poskey iso decode', () => {
  it('the golden frame matches its layout length', () => {
    assert.equal(Number.parseInt(FRAME.slice(0, 4), 16), FRAME.length / 2 - 2);
  });

  it('prints the layers and every field, card data masked by default', () => {
    const r = poskey(['iso', 'decode', FRAME]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    const out = r.stdout;
    assert.match(out, /^frame +terminal, length 152 \(binary2\), body 141 bytes$/m);
    assert.match(out, /^tpdu +60 destination 0003 source 0000$/m);
    assert.match(
      out,
      /^header +603100311001: app type 60, version 31, terminal status 0, processing requirement 0 \(none\)/m,
    );
    assert.match(out, /^mti +0200 purchase request/m);
    assert.match(out, new RegExp(`^ +2 +primary account number +${MASKED_PAN.replace(/\*/g, '\\*')}$`, 'm'));
    assert.match(out, /^ +35 +track 2 data +622588\*{9}0123=\*{17}$/m);
    assert.match(out, /^ +52 +PIN data +\*{16}$/m);
    assert.match(out, /^ +55 +ICC system related data +\(3 tags, 30 bytes\)$/m);
    assert.match(out, /^ +9F26 +application cryptogram \(ARQC\) +\[8\] 0102030405060708$/m);
    assert.match(out, /^ +95 +terminal verification results \(TVR\) +\[5\] 0000000000$/m);
    assert.match(out, /^ +5A +application PAN +\[10\] 622588\*{9}0123F$/m);
    assert.match(out, /^ +60\.2 +batch number +000001$/m);
    assert.ok(!out.includes(PAN), 'the clear PAN must not appear');
  });

  it('--unmask shows PAN, track, PIN block and tag 5A in clear', () => {
    const r = poskey(['iso', 'decode', '--unmask', FRAME]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^ +2 +primary account number +${PAN}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^ +35 +track 2 data +${PAN}=25122011234567890$`, 'm'));
    assert.match(r.stdout, /^ +52 +PIN data +0123456789ABCDEF$/m);
    assert.match(r.stdout, new RegExp(`\\[10\\] ${PAN}F$`, 'm'));
  });

  it('--json prints exactly one JSON object, masked', () => {
    const r = poskey(['iso', 'decode', '--json', FRAME]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1);
    const obj = JSON.parse(lines[0]!);
    assert.equal(typeof obj, 'object');
    assert.deepEqual(obj.frame.tpdu, { id: '60', destination: '0003', source: '0000' });
    assert.equal(obj.frame.header.hex, '603100311001');
    assert.equal(obj.mti, '0200');
    assert.equal(obj.transaction.name, 'purchase');
    assert.equal(obj.masked, true);
    assert.equal(obj.message['2'], MASKED_PAN);
    assert.equal(obj.fields.find((f: { field: string }) => f.field === '55').tags[0].tag, '9F26');
    assert.ok(!r.stdout.includes(PAN));
  });

  it('reads the frame from stdin and from --file, as hex text or binary', () => {
    const fromStdin = poskey(['iso', 'decode', '--json'], `${FRAME.match(/../g)!.join(' ')}\n`);
    assert.equal(fromStdin.status, 0, fromStdin.stderr);
    const hexFile = join(work, 'frame.hex');
    const binFile = join(work, 'frame.bin');
    writeFileSync(hexFile, `${FRAME}\n`);
    writeFileSync(binFile, Buffer.from(FRAME, 'hex'));
    const a = poskey(['iso', 'decode', '--json', '--file', hexFile]);
    const b = poskey(['iso', 'decode', '--json', '--file', binFile]);
    assert.equal(a.status, 0, a.stderr);
    assert.equal(b.stdout, a.stdout);
    assert.equal(fromStdin.stdout, a.stdout);
  });

  it('decodes the payload without the length, and a bare body with --framing none', () => {
    const payload = poskey(['iso', 'decode', '--json', FRAME.slice(4)]);
    assert.equal(payload.status, 0, payload.stderr);
    assert.equal(JSON.parse(payload.stdout).frame.length, undefined);
    const body = poskey(['iso', 'decode', '--json', '--framing', 'none', FRAME.slice(4 + 10 + 12)]);
    assert.equal(body.status, 0, body.stderr);
    const obj = JSON.parse(body.stdout);
    assert.equal(obj.frame.framing, 'none');
    assert.equal(obj.message['11'], '000123');
  });

  it('bad hex: exit 2, one line, no stack trace', () => {
    failsWith(poskey(['iso', 'decode', '0098ZZ']), 'POSKEY_ERR_HEX');
    failsWith(poskey(['iso', 'decode', '009']), 'POSKEY_ERR_HEX');
  });

  it('a body cut inside field 35 reports the codec error code, field and offset', () => {
    const cut = FRAME.slice(4, FRAME.indexOf('376225881234') + 20);
    const line = failsWith(poskey(['iso', 'decode', cut]), 'POSKEY_ERR_ISO_TRUNCATED');
    assert.match(line, /field 35: .* at offset \d+$/);
  });

  it('a frame shorter than its length prefix reports the framing layer', () => {
    const line = failsWith(poskey(['iso', 'decode', FRAME.slice(0, 80)]), 'POSKEY_ERR_FRAME_TRUNCATED');
    assert.match(line, /frame\.body/);
  });

  it('a bad TPDU id with --framing terminal names the TPDU layer', () => {
    failsWith(
      poskey(['iso', 'decode', '--framing', 'terminal', `0098${'61'}${FRAME.slice(6)}`]),
      'POSKEY_ERR_FRAME_TPDU',
    );
  });

  it('no input at all is a usage error', () => {
    failsWith(poskey(['iso', 'decode']), 'POSKEY_ERR_CLI_INPUT');
    failsWith(poskey(['iso', 'decode', '--file', join(work, 'missing.bin')]), 'POSKEY_ERR_CLI_INPUT');
    failsWith(poskey(['iso', 'decode', FRAME, '--file', join(work, 'x')]), 'POSKEY_ERR_CLI_OPTION');
  });

  it('an unknown dialect is refused with exit 2', () => {
    const r = poskey(['iso', 'decode', '--dialect', 'visa', FRAME]);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
  });
});

describe('poskey iso encode', () => {
  it('decode --json --unmask → encode → the same frame, through files', () => {
    const decoded = poskey(['iso', 'decode', '--json', '--unmask', FRAME]);
    assert.equal(decoded.status, 0, decoded.stderr);
    const jsonFile = join(work, 'decoded.json');
    const outFile = join(work, 'encoded.bin');
    writeFileSync(jsonFile, decoded.stdout);
    const enc = poskey(['iso', 'encode', '--json', jsonFile, '--out', outFile]);
    assert.equal(enc.status, 0, enc.stderr);
    assert.equal(enc.stdout, `${FRAME}\n`);
    assert.equal(readFileSync(outFile).toString('hex').toUpperCase(), FRAME);
    const again = poskey(['iso', 'decode', '--json', '--unmask', '--file', outFile]);
    assert.equal(again.stdout, decoded.stdout);
  });

  it('a bare message object takes the default TPDU and header, or the ones given', () => {
    const msgFile = join(work, 'msg.json');
    writeFileSync(
      msgFile,
      JSON.stringify({
        0: '0800',
        11: '000001',
        41: '12345678',
        42: '123456789012345',
        60: { 1: '00', 2: '000001', 3: '003' },
      }),
    );
    const plain = poskey(['iso', 'encode', '--json', msgFile]);
    assert.equal(plain.status, 0, plain.stderr);
    assert.match(plain.stdout, /^[0-9A-F]{4}6000000000603100000000 ?0800/);
    const custom = poskey([
      'iso',
      'encode',
      '--json',
      msgFile,
      '--tpdu',
      '60 0003 0000',
      '--header',
      '613200000000',
      '--processing-requirement',
      '3',
    ]);
    assert.equal(custom.status, 0, custom.stderr);
    assert.match(custom.stdout, /^[0-9A-F]{4}60000300006132030000000800/);
    const length = Number.parseInt(custom.stdout.slice(0, 4), 16);
    assert.equal(length, custom.stdout.trim().length / 2 - 2);
    const decoded = JSON.parse(poskey(['iso', 'decode', '--json', custom.stdout.trim()]).stdout);
    assert.equal(decoded.transaction.name, 'sign-in');
    assert.equal(decoded.frame.header.processingRequirement, 3);
  });

  it('--framing none prints the bare body; network prefixes only the length', () => {
    const msgFile = join(work, 'echo.json');
    writeFileSync(msgFile, JSON.stringify({ 0: '0800', 7: '1124103015', 11: '000001', 70: '301' }));
    const none = poskey(['iso', 'encode', '--dialect', 'network', '--framing', 'none', '--json', msgFile]);
    assert.equal(none.status, 0, none.stderr);
    assert.ok(none.stdout.startsWith(Buffer.from('0800').toString('hex').toUpperCase()));
    const net = poskey(['iso', 'encode', '--dialect', 'network', '--json', msgFile]);
    assert.equal(net.stdout.trim().slice(4), none.stdout.trim());
    const back = JSON.parse(
      poskey(['iso', 'decode', '--dialect', 'network', '--json', net.stdout.trim()]).stdout,
    );
    assert.equal(back.frame.framing, 'network');
    assert.equal(back.message['70'], '301');
    assert.equal(back.transaction.name, 'echo');
  });

  it('refuses masked JSON', () => {
    const masked = join(work, 'masked.json');
    writeFileSync(masked, poskey(['iso', 'decode', '--json', FRAME]).stdout);
    failsWith(poskey(['iso', 'encode', '--json', masked]), 'POSKEY_ERR_CLI_MASKED');
  });

  it('reports bad JSON, bad options and pack errors on one line', () => {
    const bad = join(work, 'bad.json');
    writeFileSync(bad, '{"0": "0200",');
    failsWith(poskey(['iso', 'encode', '--json', bad]), 'POSKEY_ERR_CLI_INPUT');
    const msgFile = join(work, 'short.json');
    writeFileSync(msgFile, JSON.stringify({ 0: '0200', 3: '00000' }));
    const line = failsWith(poskey(['iso', 'encode', '--json', msgFile]), 'POSKEY_ERR_ISO_PACK');
    assert.match(line, /field 3/);
    writeFileSync(msgFile, JSON.stringify({ 0: '0800', 11: '000001' }));
    failsWith(poskey(['iso', 'encode', '--json', msgFile, '--tpdu', '600003']), 'POSKEY_ERR_CLI_OPTION');
    failsWith(poskey(['iso', 'encode', '--json', msgFile, '--tpdu', '6100030000']), 'POSKEY_ERR_FRAME_TPDU');
    failsWith(
      poskey(['iso', 'encode', '--json', msgFile, '--processing-requirement', '16']),
      'POSKEY_ERR_CLI_OPTION',
    );
    failsWith(poskey(['iso', 'encode', '--json', msgFile, '--framing', 'cups']), 'POSKEY_ERR_CLI_OPTION');
    failsWith(poskey(['iso', 'encode', '--json', msgFile, '--lri', '4C5249']), 'POSKEY_ERR_CLI_OPTION');
  });

  it('cups framing: ASCII length and the 46-byte header given on the command line', () => {
    const msgFile = join(work, 'cups.json');
    writeFileSync(msgFile, JSON.stringify({ 0: '0800', 7: '1124103015', 11: '000001', 70: '301' }));
    const header = '2E'.repeat(46);
    const r = poskey([
      'iso',
      'encode',
      '--dialect',
      'network',
      '--framing',
      'cups',
      '--header',
      header,
      '--json',
      msgFile,
    ]);
    assert.equal(r.status, 0, r.stderr);
    const bytes = Buffer.from(r.stdout.trim(), 'hex');
    assert.equal(bytes.subarray(0, 4).toString('latin1'), String(bytes.length - 4).padStart(4, '0'));
    const back = JSON.parse(
      poskey(['iso', 'decode', '--dialect', 'network', '--json', r.stdout.trim()]).stdout,
    );
    assert.equal(back.frame.framing, 'cups');
    assert.equal(back.frame.rawHeader, header);
    assert.equal(back.message['11'], '000001');
  });
});
