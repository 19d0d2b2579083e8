import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { PoskeyError } from '../../src/errors.js';
import {
  buildEnvelope,
  buildFrame,
  buildTerminalEnvelope,
  CUPS_PROFILE,
  createFrameDecoder,
  defineFramingProfile,
  detectFraming,
  encodeFrame,
  encodeTerminalHeader,
  encodeTpdu,
  FrameDecoder,
  FrameError,
  LENGTH_PREFIX_KINDS,
  type LengthPrefixKind,
  NETWORK_PROFILE,
  parseEnvelope,
  parseFrame,
  parseTerminalEnvelope,
  parseTerminalHeader,
  replyEnvelope,
  replyTpdu,
  setProcessingRequirement,
  TERMINAL_PROFILE,
  type TerminalHeader,
} from '../../src/iso8583/framing.js';

/** Asserts a PoskeyError with `code` (and, for FrameErrors, the layer/offset when given). */
function throwsCode(fn: () => unknown, code: string, where: { layer?: string; offset?: number } = {}): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PoskeyError, `expected PoskeyError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (where.layer !== undefined) assert.equal((e as FrameError).layer, where.layer);
    if (where.offset !== undefined) assert.equal((e as FrameError).offset, where.offset);
    return true;
  });
}

// A terminal-side 0800 payload: TPDU 60 0003 0000, header 60 31 00 31 10 01, then MTI 0800 + bitmap.
const TPDU = '6000030000';
const HEADER = '603100311001';
const BODY = `08000020000000C00012${'00'.repeat(10)}`;
const PAYLOAD = fromHex(TPDU + HEADER + BODY);
const LRI = `4C5249001C${'31'.repeat(28)}`;

const payloads = [PAYLOAD, fromHex('01'), fromHex('AABBCC'), fromHex('00'.repeat(300))];
const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));

function decodeChunks(chunks: Uint8Array[], decoder = new FrameDecoder()): Buffer[] {
  const out = chunks.flatMap((c) => decoder.push(c));
  decoder.end();
  return out;
}

function sameFrames(actual: Buffer[], expected: Buffer[]): void {
  assert.deepEqual(actual.map(toHex), expected.map(toHex));
}

describe('length prefixes', () => {
  const cases: [LengthPrefixKind, string][] = [
    ['binary2', '012C'],
    ['bcd2', '0300'],
    ['ascii4', '30333030'],
    ['binary4', '0000012C'],
  ];
  for (const [kind, prefix] of cases) {
    it(`${kind} writes and reads 300`, () => {
      const frame = encodeFrame(Buffer.alloc(300, 7), { length: kind });
      assert.equal(toHex(frame.subarray(0, prefix.length / 2)), prefix);
      sameFrames(new FrameDecoder({ length: kind }).push(frame), [Buffer.alloc(300, 7)]);
    });
  }
  it('rejects a malformed BCD prefix', () => {
    throwsCode(() => new FrameDecoder({ length: 'bcd2' }).push(fromHex('0A00')), 'POSKEY_ERR_FRAME_LENGTH', {
      layer: 'length',
      offset: 0,
    });
  });
  it('rejects a non-digit ASCII prefix, naming the stream offset of that frame', () => {
    const d = new FrameDecoder({ length: 'ascii4' });
    throwsCode(() => d.push(Buffer.from('0001A00x1', 'latin1')), 'POSKEY_ERR_FRAME_LENGTH', { offset: 5 });
  });
  it('refuses to encode more than the limit', () => {
    throwsCode(() => encodeFrame(Buffer.alloc(10), { maxFrameSize: 9 }), 'POSKEY_ERR_FRAME_TOO_LARGE');
    throwsCode(
      () => encodeFrame(Buffer.alloc(10_000), { length: 'ascii4', maxFrameSize: 9999 }),
      'POSKEY_ERR_FRAME_TOO_LARGE',
    );
  });
  it('validates options', () => {
    throwsCode(() => new FrameDecoder({ length: 'binary3' as LengthPrefixKind }), 'POSKEY_ERR_FRAME_OPTION');
    throwsCode(() => new FrameDecoder({ length: 'ascii4', maxFrameSize: 10_000 }), 'POSKEY_ERR_FRAME_OPTION');
    throwsCode(() => new FrameDecoder({ maxFrameSize: -1 }), 'POSKEY_ERR_FRAME_OPTION');
    throwsCode(() => new FrameDecoder({ maxFrameSize: 1.5 }), 'POSKEY_ERR_FRAME_OPTION');
    throwsCode(() => new FrameDecoder({ zeroLength: 'drop' as 'emit' }), 'POSKEY_ERR_FRAME_OPTION');
  });
  it('rejects input that is not bytes', () => {
    throwsCode(() => new FrameDecoder().push('0001' as unknown as Buffer), 'POSKEY_ERR_TYPE');
    throwsCode(() => encodeFrame([1, 2] as unknown as Buffer), 'POSKEY_ERR_TYPE');
  });
});

describe('FrameDecoder: split and coalesced reads', () => {
  it('decodes the whole stream in one chunk (coalesced)', () => {
    sameFrames(decodeChunks([stream]), payloads);
  });
  it('decodes the stream fed byte by byte', () => {
    const d = new FrameDecoder();
    const out: Buffer[] = [];
    for (let i = 0; i < stream.length; i++) {
      out.push(...d.push(stream.subarray(i, i + 1)));
      // Nothing is emitted before the last byte of a frame, and the partial frame is accounted for.
      assert.ok(d.buffered <= 2 + 300);
    }
    d.end();
    sameFrames(out, payloads);
  });
  it('decodes the stream split in two at every point', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      sameFrames(decodeChunks([stream.subarray(0, cut), stream.subarray(cut)]), payloads);
    }
  });
  it('decodes the stream split in three at every pair of points (first 40 bytes)', () => {
    for (let a = 0; a <= 40; a++) {
      for (let b = a; b <= 40; b++) {
        const chunks = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)];
        sameFrames(decodeChunks(chunks), payloads);
      }
    }
  });
  it('returns copies: changing the chunk afterwards does not change a frame', () => {
    const chunk = Buffer.from(encodeFrame(fromHex('112233')));
    const [frame] = new FrameDecoder().push(chunk);
    chunk.fill(0);
    assert.equal(toHex(frame!), '112233');
  });
  it('leaves the caller chunk untouched', () => {
    const copy = Buffer.from(stream);
    decodeChunks([stream.subarray(0, 7), stream.subarray(7)]);
    assert.deepEqual(stream, copy);
  });
  it('accepts Uint8Array chunks', () => {
    sameFrames(decodeChunks([new Uint8Array(stream)]), payloads);
  });
  it('property: any payloads, any prefix kind, any chunking round trip', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...LENGTH_PREFIX_KINDS),
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 600 }), { maxLength: 6 }),
        fc.array(fc.integer({ min: 0, max: 4000 }), { maxLength: 8 }),
        (kind, parts, cuts) => {
          const frames = parts.map((p) => Buffer.from(p));
          const wire = Buffer.concat(frames.map((p) => encodeFrame(p, { length: kind })));
          const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((x, y) => x - y);
          const chunks: Buffer[] = [];
          let last = 0;
          for (const p of [...points, wire.length]) {
            chunks.push(wire.subarray(last, p));
            last = p;
          }
          sameFrames(decodeChunks(chunks, new FrameDecoder({ length: kind })), frames);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('FrameDecoder: limits and failures', () => {
  it('enforces maxFrameSize on the prefix alone, before any body byte arrives', () => {
    const d = new FrameDecoder({ maxFrameSize: 100 });
    assert.deepEqual(d.push(fromHex('00')), []);
    throwsCode(() => d.push(fromHex('65')), 'POSKEY_ERR_FRAME_TOO_LARGE', { layer: 'length', offset: 0 });
    assert.ok(d.failed);
  });
  it('accepts a frame of exactly maxFrameSize', () => {
    sameFrames(new FrameDecoder({ maxFrameSize: 100 }).push(encodeFrame(Buffer.alloc(100))), [
      Buffer.alloc(100),
    ]);
  });
  it('hands back the frames completed before the fault, with the offset of the bad frame', () => {
    const d = new FrameDecoder({ maxFrameSize: 10 });
    const good = encodeFrame(fromHex('0102'));
    try {
      d.push(Buffer.concat([good, fromHex('0FFF')]));
      assert.fail('should throw');
    } catch (e) {
      assert.ok(e instanceof FrameError);
      assert.equal(e.code, 'POSKEY_ERR_FRAME_TOO_LARGE');
      assert.equal(e.offset, 4);
      sameFrames([...e.frames], [fromHex('0102')]);
    }
  });
  it('is unusable after a failure', () => {
    const d = new FrameDecoder({ maxFrameSize: 1 });
    throwsCode(() => d.push(fromHex('0002')), 'POSKEY_ERR_FRAME_TOO_LARGE');
    throwsCode(() => d.push(fromHex('0001AA')), 'POSKEY_ERR_FRAME_CLOSED', { layer: 'stream' });
    throwsCode(() => d.end(), 'POSKEY_ERR_FRAME_CLOSED');
  });
  it('reports a stream that ends inside the length prefix or the body', () => {
    const inPrefix = new FrameDecoder();
    inPrefix.push(fromHex('00'));
    throwsCode(() => inPrefix.end(), 'POSKEY_ERR_FRAME_TRUNCATED', { layer: 'length', offset: 1 });
    const inBody = new FrameDecoder();
    inBody.push(fromHex('0003AA'));
    throwsCode(() => inBody.end(), 'POSKEY_ERR_FRAME_TRUNCATED', { layer: 'body', offset: 3 });
  });
  it('refuses pushes after end()', () => {
    const d = new FrameDecoder();
    d.end();
    throwsCode(() => d.push(fromHex('0001AA')), 'POSKEY_ERR_FRAME_CLOSED');
  });
  it('zero-length frames follow the policy', () => {
    const wire = fromHex('0000' + '0001AA' + '0000');
    sameFrames(new FrameDecoder().push(wire), [Buffer.alloc(0), fromHex('AA'), Buffer.alloc(0)]);
    sameFrames(new FrameDecoder({ zeroLength: 'ignore' }).push(wire), [fromHex('AA')]);
    throwsCode(() => new FrameDecoder({ zeroLength: 'error' }).push(wire), 'POSKEY_ERR_FRAME_EMPTY', {
      offset: 0,
    });
  });
  it('CUPS heartbeats (ASCII 0000) come out as empty payloads', () => {
    const d = createFrameDecoder(CUPS_PROFILE);
    sameFrames(d.push(Buffer.from('0000', 'latin1')), [Buffer.alloc(0)]);
  });
});

describe('terminal envelope', () => {
  it('parses TPDU, header and body', () => {
    const env = parseTerminalEnvelope(PAYLOAD);
    assert.deepEqual(env.tpdu, { id: 0x60, destination: 3, source: 0 });
    assert.deepEqual(env.header, {
      appType: '60',
      version: '31',
      terminalStatus: 0,
      processingRequirement: 0,
      subVersion: '311001',
    });
    assert.equal(toHex(env.body), BODY);
    assert.equal(env.lri, undefined);
  });
  it('round trips through buildTerminalEnvelope', () => {
    assert.equal(toHex(buildTerminalEnvelope(parseTerminalEnvelope(PAYLOAD))), toHex(PAYLOAD));
  });
  it('detects and skips a dial-up LRI (33 bytes, body offset 44 with the length)', () => {
    const withLri = fromHex(TPDU + LRI + HEADER + BODY);
    const env = parseTerminalEnvelope(withLri);
    assert.equal(toHex(env.lri!), LRI);
    assert.equal(env.header.appType, '60');
    assert.equal(toHex(env.body), BODY);
    assert.equal(encodeFrame(withLri).indexOf(fromHex(BODY)), 2 + 5 + 33 + 6);
    assert.equal(toHex(buildTerminalEnvelope(env)), toHex(withLri));
  });
  it('LRI modes: never reads those bytes as the header, require insists on one', () => {
    const withLri = fromHex(TPDU + LRI + HEADER + BODY);
    assert.equal(parseTerminalEnvelope(withLri, { lri: 'never' }).header.appType, '4C');
    throwsCode(() => parseTerminalEnvelope(PAYLOAD, { lri: 'require' }), 'POSKEY_ERR_FRAME_LRI', {
      layer: 'lri',
      offset: 5,
    });
  });
  it('rejects an LRI with the wrong length word, or a truncated one', () => {
    throwsCode(
      () => parseTerminalEnvelope(fromHex(`${TPDU}4C5249001D${'31'.repeat(28)}${HEADER}`)),
      'POSKEY_ERR_FRAME_LRI',
    );
    throwsCode(() => parseTerminalEnvelope(fromHex(`${TPDU}4C5249001C3131`)), 'POSKEY_ERR_FRAME_TRUNCATED', {
      layer: 'lri',
      offset: 5,
    });
    throwsCode(
      () => buildTerminalEnvelope({ ...parseTerminalEnvelope(PAYLOAD), lri: fromHex('4C5249001C00') }),
      'POSKEY_ERR_FRAME_TRUNCATED',
    );
  });
  it('rejects a bad TPDU id with the offset', () => {
    throwsCode(
      () => parseTerminalEnvelope(fromHex(`61${TPDU.slice(2)}${HEADER}${BODY}`)),
      'POSKEY_ERR_FRAME_TPDU',
      {
        layer: 'tpdu',
        offset: 0,
      },
    );
  });
  it('rejects a truncated TPDU and a truncated header', () => {
    throwsCode(() => parseTerminalEnvelope(fromHex('600003')), 'POSKEY_ERR_FRAME_TRUNCATED', {
      layer: 'tpdu',
    });
    throwsCode(() => parseTerminalEnvelope(fromHex(`${TPDU}603100`)), 'POSKEY_ERR_FRAME_TRUNCATED', {
      layer: 'header',
      offset: 5,
    });
  });
  it('the reply swaps TPDU addresses and echoes the header with the processing requirement', () => {
    const req = parseTerminalEnvelope(PAYLOAD);
    assert.deepEqual(replyTpdu(req.tpdu), { id: 0x60, destination: 0, source: 3 });
    const reply = replyEnvelope(req, fromHex('0810'), { processingRequirement: 3 });
    const bytes = buildTerminalEnvelope(reply);
    assert.equal(toHex(bytes), `6000000003${'603103311001'}0810`);
    assert.equal(
      toHex(buildTerminalEnvelope(replyEnvelope(req, fromHex('0810')))),
      `6000000003${HEADER}0810`,
    );
  });
  it('validates header and TPDU fields when building', () => {
    const h = parseTerminalHeader(fromHex(HEADER));
    throwsCode(() => setProcessingRequirement(h, 16), 'POSKEY_ERR_FRAME_HEADER', { layer: 'header' });
    throwsCode(() => encodeTerminalHeader({ ...h, subVersion: '12345' }), 'POSKEY_ERR_FRAME_HEADER');
    throwsCode(() => encodeTerminalHeader({ ...h, appType: 'XY' }), 'POSKEY_ERR_FRAME_HEADER');
    throwsCode(() => encodeTpdu({ id: 0x60, destination: 0x10000, source: 0 }), 'POSKEY_ERR_FRAME_TPDU');
    throwsCode(() => encodeTpdu({ id: 0x61, destination: 1, source: 0 }), 'POSKEY_ERR_FRAME_TPDU');
  });
  it('property: any TPDU, header, LRI choice and body round trip', () => {
    const hexDigits = (n: number) => fc.stringMatching(new RegExp(`^[0-9A-F]{${n}}$`));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.record<TerminalHeader>({
          appType: hexDigits(2),
          version: hexDigits(2),
          terminalStatus: fc.integer({ min: 0, max: 15 }),
          processingRequirement: fc.integer({ min: 0, max: 15 }),
          subVersion: hexDigits(6),
        }),
        fc.option(fc.uint8Array({ minLength: 28, maxLength: 28 })),
        fc.uint8Array({ maxLength: 200 }),
        (destination, source, header, lriTail, body) => {
          const lri = lriTail ? Buffer.concat([fromHex('4C5249001C'), lriTail]) : undefined;
          const env = {
            tpdu: { id: 0x60, destination, source },
            header: { ...header },
            body: Buffer.from(body),
            ...(lri ? { lri } : {}),
          };
          const frame = buildFrame(env, TERMINAL_PROFILE);
          const [payload] = createFrameDecoder(TERMINAL_PROFILE).push(frame);
          const back = parseTerminalEnvelope(payload!);
          assert.deepEqual(
            { ...back, body: toHex(back.body), lri: back.lri && toHex(back.lri) },
            {
              ...env,
              body: toHex(env.body),
              lri: lri && toHex(lri),
            },
          );
        },
      ),
    );
  });
});

describe('framing profiles', () => {
  it('network default: 2-byte big-endian length and the MTI right after it (Wireshark layout)', () => {
    assert.equal(NETWORK_PROFILE.length, 'binary2');
    assert.equal(NETWORK_PROFILE.header.kind, 'none');
    assert.equal(toHex(buildFrame({ body: fromHex(BODY) }, NETWORK_PROFILE)).slice(0, 8), '00140800');
  });
  it('CUPS: ASCII length and an opaque 46-byte header', () => {
    const header = Buffer.alloc(46, 0x2e);
    const frame = buildFrame({ rawHeader: header, body: Buffer.from('0800', 'latin1') }, CUPS_PROFILE);
    assert.equal(frame.subarray(0, 4).toString('latin1'), '0050');
    const env = parseFrame(frame, CUPS_PROFILE);
    assert.equal(toHex(env.rawHeader!), toHex(header));
    assert.equal(env.body.toString('latin1'), '0800');
    throwsCode(
      () => buildEnvelope({ rawHeader: Buffer.alloc(45), body: Buffer.alloc(1) }, CUPS_PROFILE),
      'POSKEY_ERR_FRAME_HEADER',
    );
    throwsCode(() => parseEnvelope(Buffer.alloc(45), CUPS_PROFILE), 'POSKEY_ERR_FRAME_TRUNCATED', {
      layer: 'header',
    });
  });
  it('terminal profile parses a whole frame', () => {
    const env = parseFrame(encodeFrame(PAYLOAD), TERMINAL_PROFILE);
    assert.equal(env.header?.version, '31');
    assert.equal(toHex(env.body), BODY);
  });
  it('parseFrame reports trailing bytes and short input', () => {
    throwsCode(
      () => parseFrame(Buffer.concat([encodeFrame(PAYLOAD), fromHex('00')]), TERMINAL_PROFILE),
      'POSKEY_ERR_FRAME_TRAILING',
    );
    throwsCode(
      () => parseFrame(encodeFrame(PAYLOAD).subarray(0, 10), TERMINAL_PROFILE),
      'POSKEY_ERR_FRAME_TRUNCATED',
      {
        layer: 'body',
      },
    );
    throwsCode(() => parseFrame(Buffer.alloc(0), TERMINAL_PROFILE), 'POSKEY_ERR_FRAME_TRUNCATED');
  });
  it('defineFramingProfile validates and freezes', () => {
    const p = defineFramingProfile({
      name: 'acq',
      length: 'bcd2',
      header: { kind: 'terminal', lri: 'never' },
    });
    assert.ok(Object.isFrozen(p));
    assert.equal(p.maxFrameSize, 8192);
    assert.equal(defineFramingProfile({ name: 'a4', length: 'ascii4' }).maxFrameSize, 8192);
    throwsCode(() => defineFramingProfile({ name: 'x', port: 1 } as never), 'POSKEY_ERR_FRAME_OPTION');
    throwsCode(() => defineFramingProfile({ name: '' }), 'POSKEY_ERR_FRAME_OPTION');
    throwsCode(
      () => defineFramingProfile({ name: 'x', header: { kind: 'tpdu' } as never }),
      'POSKEY_ERR_FRAME_OPTION',
    );
    throwsCode(
      () => defineFramingProfile({ name: 'x', header: { kind: 'opaque', length: 0 } }),
      'POSKEY_ERR_FRAME_OPTION',
    );
    throwsCode(
      () => defineFramingProfile({ name: 'x', header: { kind: 'terminal', lri: 'maybe' } as never }),
      'POSKEY_ERR_FRAME_OPTION',
    );
    throwsCode(
      () => defineFramingProfile({ name: 'x', header: { kind: 'none', n: 1 } as never }),
      'POSKEY_ERR_FRAME_OPTION',
    );
  });
  it('buildEnvelope enforces the terminal layers the profile asks for', () => {
    throwsCode(() => buildEnvelope({ body: Buffer.alloc(1) }, TERMINAL_PROFILE), 'POSKEY_ERR_FRAME_OPTION');
    const env = parseTerminalEnvelope(PAYLOAD);
    const never = defineFramingProfile({ name: 'n', header: { kind: 'terminal', lri: 'never' } });
    throwsCode(() => buildEnvelope({ ...env, lri: fromHex(LRI) }, never), 'POSKEY_ERR_FRAME_OPTION');
    const require = defineFramingProfile({ name: 'r', header: { kind: 'terminal', lri: 'require' } });
    throwsCode(() => buildEnvelope(env, require), 'POSKEY_ERR_FRAME_OPTION');
  });
  it('detectFraming recognises length prefixes and the TPDU', () => {
    const terminal = encodeFrame(PAYLOAD);
    assert.deepEqual(detectFraming(terminal), { profile: TERMINAL_PROFILE, prefixed: true });
    assert.deepEqual(detectFraming(PAYLOAD), { profile: TERMINAL_PROFILE, prefixed: false });
    assert.deepEqual(detectFraming(encodeFrame(fromHex(BODY))), { profile: NETWORK_PROFILE, prefixed: true });
    assert.deepEqual(detectFraming(fromHex(BODY)), { profile: NETWORK_PROFILE, prefixed: false });
    assert.deepEqual(detectFraming(Buffer.from('00040800', 'latin1')), {
      profile: CUPS_PROFILE,
      prefixed: true,
    });
    // A terminal frame cut short (or with bytes after it) is still recognised, so parseFrame can say so.
    assert.deepEqual(detectFraming(terminal.subarray(0, 20)), { profile: TERMINAL_PROFILE, prefixed: true });
    const withLri = encodeFrame(fromHex(TPDU + LRI + HEADER + BODY));
    assert.deepEqual(detectFraming(withLri.subarray(0, 50)), { profile: TERMINAL_PROFILE, prefixed: true });
    // A bare body whose bitmap starts 0x60 (fields 2 and 3) is not mistaken for a terminal frame.
    assert.deepEqual(detectFraming(fromHex(`0200600000000000000019${'62'.repeat(12)}`)), {
      profile: NETWORK_PROFILE,
      prefixed: false,
    });
  });
});
