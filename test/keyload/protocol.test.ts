/**
 * The key-loading protocol: frames and the decoder (at every split point, through noise), TLV
 * messages, the link's ACK/NAK/retry/duplicate rules on a line that corrupts and drops bytes, the
 * device's refusals, and the authentication proofs.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createKey } from '../../src/crypto/cipher.js';
import { fixParity } from '../../src/crypto/keys.js';
import { wrapKeyBlock } from '../../src/crypto/tr31.js';
import { KeyloadDevice } from '../../src/keyload/device.js';
import { authenticate, hello } from '../../src/keyload/loader.js';
import {
  ACK,
  checkAppOrder,
  DEVICE_ERRORS,
  decodeFields,
  decodeMessage,
  deriveAuthKey,
  describeAppOrder,
  ETX,
  encodeFields,
  encodeFrame,
  encodeMessage,
  FrameDecoder,
  type FrameEvent,
  fromDeviceError,
  KeyloadErrorCode,
  type KeyloadMessage,
  kbpkAuthenticator,
  lrc,
  MAX_PAYLOAD,
  NAK,
  proofInput,
  prove,
  REQUIRED_APP_ORDER,
  STX,
  transportKeyHandle,
  verifyProof,
} from '../../src/keyload/protocol.js';
import {
  type ByteTransport,
  Link,
  looksLikeText,
  parseHostPort,
  parseTarget,
  portOpenError,
  silenceError,
} from '../../src/keyload/transport.js';
import { bareTerminal } from './helpers.js';

const code = (c: string) => (e: unknown) => {
  assert.equal((e as { code?: string }).code, c, String(e));
  return true;
};

// ---------------------------------------------------------------------------------------------
// An in-memory line with faults

interface LineFaults {
  /** Flip a payload bit in the first n frames sent from a (b) end. */
  corruptFromA?: number;
  corruptFromB?: number;
  /** Swallow the first n writes from an end entirely. */
  dropFromA?: number;
  dropFromB?: number;
}

function memoryLine(faults: LineFaults = {}): [ByteTransport, ByteTransport] {
  type H = { data: (c: Buffer) => void; close: (e?: Error) => void };
  const handlers: (H | undefined)[] = [undefined, undefined];
  const left = {
    corrupt: [faults.corruptFromA ?? 0, faults.corruptFromB ?? 0],
    drop: [faults.dropFromA ?? 0, faults.dropFromB ?? 0],
  };
  let closed = false;
  const end = (me: 0 | 1): ByteTransport => ({
    name: me === 0 ? 'mem:a' : 'mem:b',
    attach(h) {
      handlers[me] = h;
    },
    async write(data) {
      if (closed) throw new Error('closed');
      let bytes = Buffer.from(data);
      if (bytes.length > 1 && left.drop[me]! > 0) {
        left.drop[me]!--;
        return;
      }
      if (bytes.length > 7 && left.corrupt[me]! > 0) {
        left.corrupt[me]!--;
        bytes = Buffer.from(bytes);
        bytes[5] = bytes[5]! ^ 0x01;
      }
      setImmediate(() => handlers[me === 0 ? 1 : 0]?.data(bytes));
    },
    async close() {
      if (closed) return;
      closed = true;
      setImmediate(() => {
        handlers[0]?.close();
        handlers[1]?.close();
      });
    },
  });
  return [end(0), end(1)];
}

const QUICK = { ackTimeoutMs: 50, responseTimeoutMs: 200, retries: 3, interByteTimeoutMs: 30 };
/** Timeouts long enough never to fire on a loaded machine: only NAKs cause resends. */
const PATIENT = { ackTimeoutMs: 2000, responseTimeoutMs: 4000, retries: 3, interByteTimeoutMs: 100 };

// ---------------------------------------------------------------------------------------------

describe('frames', () => {
  it('encodes STX | type | seq | length | payload | ETX | LRC', () => {
    const f = encodeFrame(0x11, 7, Buffer.from('AB'));
    assert.deepEqual([...f], [STX, 0x11, 7, 0, 2, 0x41, 0x42, ETX, 0x11 ^ 7 ^ 0 ^ 2 ^ 0x41 ^ 0x42 ^ ETX]);
    assert.equal(lrc(f.subarray(1, f.length - 1)), f.at(-1));
  });

  it('refuses a payload over MAX_PAYLOAD and a type or seq outside a byte (POSKEY_ERR_KEYLOAD_FRAME)', () => {
    assert.throws(() => encodeFrame(1, 1, Buffer.alloc(MAX_PAYLOAD + 1)), code(KeyloadErrorCode.FRAME));
    assert.throws(() => encodeFrame(256, 1, Buffer.alloc(0)), code(KeyloadErrorCode.FRAME));
    assert.throws(() => encodeFrame(1, -1, Buffer.alloc(0)), code(KeyloadErrorCode.FRAME));
  });

  it('decodes a stream split at every point into the same events', () => {
    const stream = Buffer.concat([
      Buffer.from([ACK]),
      encodeFrame(0x91, 3, Buffer.from('device info')),
      Buffer.from('noise'),
      Buffer.from([NAK]),
      encodeFrame(0x92, 4, Buffer.alloc(40, 0x02)), // payload full of STX bytes
    ]);
    const whole = new FrameDecoder().push(stream);
    assert.deepEqual(
      whole.map((e) => e.kind),
      ['ack', 'frame', 'noise', 'nak', 'frame'],
    );
    for (let cut = 1; cut < stream.length; cut++) {
      const d = new FrameDecoder();
      const events = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      assert.deepEqual(merge(events), merge(whole), `split at ${cut}`);
      assert.equal(d.pending, 0);
    }
  });

  it('reports a bad LRC as corrupt and keeps decoding after it', () => {
    const bad = encodeFrame(0x11, 1, Buffer.from('x'));
    bad[bad.length - 1]! ^= 0xff;
    const events = new FrameDecoder().push(Buffer.concat([bad, encodeFrame(0x11, 2, Buffer.from('y'))]));
    assert.deepEqual(
      events.map((e) => e.kind),
      ['corrupt', 'frame'],
    );
  });

  it('resynchronises on a real frame hidden behind a false STX', () => {
    const good = encodeFrame(0x11, 9, Buffer.from('hello'));
    // A false STX whose "length" runs into the real frame: no ETX where it should be.
    const events = new FrameDecoder().push(
      Buffer.concat([Buffer.from([STX, 0x41, 0x00, 0x00, 0x03, 0x10]), good]),
    );
    const frames = events.filter((e) => e.kind === 'frame');
    assert.equal(frames.length, 1);
    assert.equal((frames[0] as Extract<FrameEvent, { kind: 'frame' }>).frame.seq, 9);
  });

  it('gives an incomplete frame up on flush and reports it as noise', () => {
    const d = new FrameDecoder();
    assert.deepEqual(d.push(Buffer.from([STX, 0x11, 1, 0, 50, 7, 8])), []);
    assert.equal(d.pending, 7);
    const events = d.flush();
    assert.deepEqual(
      events.map((e) => e.kind),
      ['noise'],
    );
    assert.equal(d.pending, 0);
  });

  it('property: any frame round-trips through the decoder, whatever noise precedes it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ maxLength: 20 }).map((n) => n.filter((b) => b !== STX && b !== ACK && b !== NAK)),
        (type, seq, payload, noise) => {
          const events = new FrameDecoder().push(Buffer.concat([noise, encodeFrame(type, seq, payload)]));
          const f = events.find((e) => e.kind === 'frame') as
            | Extract<FrameEvent, { kind: 'frame' }>
            | undefined;
          return (
            f !== undefined && f.frame.type === type && f.frame.seq === seq && f.frame.payload.equals(payload)
          );
        },
      ),
    );
  });
});

function merge(events: FrameEvent[]): unknown[] {
  // Noise may arrive in several chunks; compare it joined.
  const out: unknown[] = [];
  for (const e of events) {
    const last = out.at(-1) as { kind: string; bytes: Buffer } | undefined;
    if (e.kind === 'noise' && last?.kind === 'noise') last.bytes = Buffer.concat([last.bytes, e.bytes]);
    else out.push(e.kind === 'noise' ? { kind: 'noise', bytes: Buffer.from(e.bytes) } : e);
  }
  return out;
}

describe('messages', () => {
  const samples: KeyloadMessage[] = [
    { type: 'HELLO', version: 1, loaderId: 'poskey@pc', time: '2026-01-01T00:00:00.000Z' },
    {
      type: 'DEVICE_INFO',
      version: 1,
      vendor: 'poskey',
      model: 'SIM',
      serial: 'SN1',
      firmware: '1.0',
      apps: ['a', 'b'],
      clock: '2026-01-01T00:00:00.000Z',
      tamper: 'none',
      authMethods: ['kbpk-cmac'],
      tid: '10000001',
      kbpkKcv: 'ABCDEF',
    },
    { type: 'AUTH_CHALLENGE', method: 'kbpk-cmac', nonce: Buffer.alloc(16, 1) },
    { type: 'AUTH_RESPONSE', nonce: Buffer.alloc(16, 2), proof: Buffer.alloc(8, 3) },
    { type: 'AUTH_CONFIRM', proof: Buffer.alloc(8, 4) },
    { type: 'AUTH_OK' },
    { type: 'LOAD_KEY', slot: 0, block: 'B0096K0TB00E0000…' },
    { type: 'KEY_LOADED', slot: 0, kcv: '08D7B4', algorithm: 'tdes', proof: Buffer.alloc(8) },
    { type: 'BIND', tid: '10000001', kcv: '08D7B4', proof: Buffer.alloc(8) },
    { type: 'BIND_ACK', tid: '10000001', slot: 0 },
    { type: 'ERROR', code: 5, reason: 'security attack' },
  ];

  it('round-trips every message type', () => {
    for (const m of samples) {
      const { type, payload } = encodeMessage(m);
      assert.deepEqual(decodeMessage({ type, seq: 0, payload }), m);
    }
  });

  it('skips unknown tags, refuses truncated and repeated fields (POSKEY_ERR_KEYLOAD_MESSAGE)', () => {
    const known = encodeFields({ tid: '10000001' });
    assert.deepEqual(decodeFields(Buffer.concat([Buffer.from([0x7f, 0, 1, 9]), known])), { tid: '10000001' });
    assert.throws(() => decodeFields(Buffer.from([0x17, 0])), code(KeyloadErrorCode.MESSAGE));
    assert.throws(() => decodeFields(Buffer.from([0x17, 0, 5, 1])), code(KeyloadErrorCode.MESSAGE));
    assert.throws(() => decodeFields(Buffer.concat([known, known])), code(KeyloadErrorCode.MESSAGE));
    assert.throws(() => decodeFields(Buffer.from([0x01, 0, 2, 1, 1])), code(KeyloadErrorCode.MESSAGE));
  });

  it('refuses a message without a required field, a bad nonce or tamper state', () => {
    const bind = encodeFields({ tid: '1' });
    assert.throws(() => decodeMessage({ type: 0x15, seq: 0, payload: bind }), code(KeyloadErrorCode.MESSAGE));
    const short = encodeMessage({ type: 'AUTH_CHALLENGE', method: 'kbpk-cmac', nonce: Buffer.alloc(8) });
    assert.throws(() => decodeMessage({ ...short, seq: 0 }), code(KeyloadErrorCode.MESSAGE));
    const info = encodeMessage(samples[1]!);
    const tampered = Buffer.concat([
      info.payload.subarray(0, 0),
      encodeFields({ ...(samples[1] as object), tamper: 'maybe' } as never),
    ]);
    assert.throws(
      () => decodeMessage({ type: info.type, seq: 0, payload: tampered }),
      code(KeyloadErrorCode.MESSAGE),
    );
  });

  it('calls an unknown type another protocol (POSKEY_ERR_KEYLOAD_WRONG_PROTOCOL)', () => {
    assert.throws(
      () => decodeMessage({ type: 0x41, seq: 0, payload: Buffer.alloc(0) }),
      code(KeyloadErrorCode.WRONG_PROTOCOL),
    );
  });

  it('maps every device error code to a loader error, unknown ones to POSKEY_ERR_KEYLOAD_DEVICE', () => {
    for (const [name, d] of Object.entries(DEVICE_ERRORS)) {
      const e = fromDeviceError({ type: 'ERROR', code: d.code, reason: 'r' });
      assert.equal(e.code, d.error, name);
      assert.match(e.message, new RegExp(name));
    }
    assert.equal(fromDeviceError({ type: 'ERROR', code: 0x77, reason: 'r' }).code, KeyloadErrorCode.DEVICE);
  });
});

describe('application order', () => {
  it('accepts the required order with other apps anywhere, names what is missing or swapped', () => {
    assert.deepEqual(checkAppOrder(['os', ...REQUIRED_APP_ORDER, 'game']), { ok: true });
    assert.deepEqual(checkAppOrder(REQUIRED_APP_ORDER.slice(1)), {
      ok: false,
      problem: 'missing',
      missing: ['signature-file'],
    });
    const swapped = checkAppOrder([
      'signature-file',
      'master-controller',
      'convenience-payment',
      'bank-card',
    ]);
    assert.deepEqual(swapped, {
      ok: false,
      problem: 'order',
      app: 'convenience-payment',
      before: 'bank-card',
    });
    assert.match(
      describeAppOrder(swapped),
      /required order is signature-file → master-controller → bank-card → convenience-payment/,
    );
  });
});

describe('authentication', () => {
  const kbpk = transportKeyHandle('tdes', fixParity(randomBytes(16)));

  it('derives an authentication key different from the KBPK, the same on both ends', () => {
    const a = kbpkAuthenticator(kbpk);
    const b = kbpkAuthenticator(kbpk);
    const data = proofInput('device', [Buffer.alloc(16, 1), Buffer.alloc(16, 2), Buffer.from('SN')]);
    assert.deepEqual(a.mac(data), b.mac(data));
    const kak = deriveAuthKey(kbpk);
    assert.notDeepEqual(kak.exportKeyBytes(), kbpk.exportKeyBytes());
    kak.destroy();
    a.destroy();
    b.destroy();
  });

  it('binds role, nonces and serial: changing any one breaks the proof', async () => {
    const a = kbpkAuthenticator(kbpk);
    const parts = [Buffer.alloc(16, 1), Buffer.alloc(16, 2), Buffer.from('SN-1')];
    const proof = await prove(a, 'device', parts);
    assert.equal(await verifyProof(a, 'device', parts, proof), true);
    assert.equal(await verifyProof(a, 'loader', parts, proof), false);
    assert.equal(await verifyProof(a, 'device', [parts[1]!, parts[0]!, parts[2]!], proof), false);
    assert.equal(await verifyProof(a, 'device', [parts[0]!, parts[1]!, Buffer.from('SN-2')], proof), false);
    // Length prefixes: moving a byte between parts changes the input.
    assert.notDeepEqual(
      proofInput('bind', [Buffer.from('ab'), Buffer.from('c')]),
      proofInput('bind', [Buffer.from('a'), Buffer.from('bc')]),
    );
    a.destroy();
  });

  it('refuses a KBPK of another algorithm or length (POSKEY_ERR_KEYLOAD_OPTION)', () => {
    assert.throws(() => transportKeyHandle('sm4', Buffer.alloc(16)), code(KeyloadErrorCode.OPTION));
    assert.throws(() => transportKeyHandle('tdes', Buffer.alloc(8)), code(KeyloadErrorCode.OPTION));
    assert.throws(() => transportKeyHandle('aes', 'zz'), code(KeyloadErrorCode.OPTION));
    const sm4 = createKey('sm4', Buffer.alloc(16, 1));
    assert.throws(() => deriveAuthKey(sm4), code(KeyloadErrorCode.OPTION));
  });
});

describe('link', () => {
  /** A device on one end of a memory line, poskey's link on the other. */
  function pair(faults: LineFaults = {}, device?: KeyloadDevice, timing = QUICK) {
    const [a, b] = memoryLine(faults);
    const dev =
      device ??
      new KeyloadDevice({
        pad: bareTerminal({ serial: 'SN-MEM' }),
        kbpk: { algorithm: 'tdes', key: Buffer.alloc(16, 0x2a) },
      });
    const served = dev.serve(b, timing);
    const link = new Link(a, timing);
    return { link, served, dev };
  }

  it('resends on NAK when a frame arrives corrupted, in both directions', async () => {
    const { link, served } = pair({ corruptFromA: 2, corruptFromB: 1 }, undefined, PATIENT);
    const info = await hello(link);
    assert.equal(info.serial, 'SN-MEM');
    const s = link.stats;
    assert.equal(s.naksIn, 2, 'the device NAKed two corrupted requests');
    assert.equal(s.naksOut, 1, 'poskey NAKed one corrupted answer');
    assert.equal(s.resends, 2);
    assert.equal(served.stats.resends, 1);
    await link.close();
  });

  it('resends when a request is lost, and the device answers a resent request once', async () => {
    let hellos = 0;
    const dev = new KeyloadDevice({
      pad: bareTerminal({ serial: 'SN-DUP' }),
      kbpk: { algorithm: 'tdes', key: Buffer.alloc(16, 0x2a) },
      onEvent: (e) => {
        if (e.kind === 'hello') hellos++;
      },
    });
    // The answer and the device's own resends are lost: poskey times out and resends the same
    // request; the device recognises it and replays its answer without acting again.
    const { link } = pair({ dropFromB: 1 + QUICK.retries }, dev);
    const info = await hello(link);
    assert.equal(info.serial, 'SN-DUP');
    assert.equal(hellos, 1, 'handled once, answered twice');
    assert.ok(link.stats.resends >= 1);
    await link.close();
  });

  it('TIMEOUT when a device that answered before stops answering', async () => {
    const [a, b] = memoryLine();
    const peer = new Link(b, QUICK);
    let first = true;
    peer.serve(async () => {
      if (first) {
        first = false;
        return { type: 'AUTH_OK' };
      }
      return new Promise<KeyloadMessage>(() => undefined); // hangs
    });
    const link = new Link(a, QUICK);
    await link.request({ type: 'AUTH_CONFIRM', proof: Buffer.alloc(8) });
    await assert.rejects(
      link.request({ type: 'AUTH_CONFIRM', proof: Buffer.alloc(8) }),
      code(KeyloadErrorCode.TIMEOUT),
    );
    await link.close();
  });

  it('CLOSED when the line closes with a request in flight, and for requests after close', async () => {
    const [a, b] = memoryLine();
    const peer = new Link(b, QUICK);
    peer.serve(() => new Promise<KeyloadMessage>(() => undefined));
    const link = new Link(a, { ...QUICK, responseTimeoutMs: 5000 });
    const pending = link.request({ type: 'AUTH_OK' });
    setTimeout(() => void b.close(), 20);
    await assert.rejects(pending, code(KeyloadErrorCode.CLOSED));
    await assert.rejects(link.request({ type: 'AUTH_OK' }), code(KeyloadErrorCode.CLOSED));
  });

  it('refuses a second request while one is in flight, and bad timings', async () => {
    const [a] = memoryLine();
    const link = new Link(a, QUICK);
    const first = link.request({ type: 'AUTH_OK' }).catch(() => undefined);
    await assert.rejects(link.request({ type: 'AUTH_OK' }), code(KeyloadErrorCode.MESSAGE));
    await first;
    assert.throws(() => new Link(memoryLine()[0], { retries: -1 }), code(KeyloadErrorCode.OPTION));
  });

  it('classifies what was heard when nothing usable came back', () => {
    const base = {
      bytesIn: 0,
      bytesOut: 9,
      framesIn: 0,
      framesOut: 1,
      acksIn: 0,
      naksIn: 0,
      naksOut: 0,
      corrupt: 0,
      noiseBytes: 0,
      noiseSample: Buffer.alloc(0),
      foreignFrames: 0,
      resends: 3,
    };
    assert.equal(silenceError(base, 'p', 1).code, KeyloadErrorCode.SILENT);
    assert.equal(silenceError({ ...base, bytesIn: 4, acksIn: 4 }, 'p', 1).code, KeyloadErrorCode.TIMEOUT);
    assert.equal(
      silenceError({ ...base, bytesIn: 5, noiseBytes: 5, noiseSample: Buffer.from('OK\r\n') }, 'p', 1).code,
      KeyloadErrorCode.WRONG_PROTOCOL,
    );
    assert.equal(
      silenceError({ ...base, bytesIn: 9, foreignFrames: 1 }, 'p', 1).code,
      KeyloadErrorCode.WRONG_PROTOCOL,
    );
    assert.equal(
      silenceError(
        { ...base, bytesIn: 3, noiseBytes: 3, noiseSample: Buffer.from([0xf8, 0x80, 0xfe]) },
        'p',
        1,
      ).code,
      KeyloadErrorCode.GARBLED,
    );
    assert.equal(looksLikeText(Buffer.from('AT+OK\r\n')), true);
    assert.equal(looksLikeText(Buffer.from([0, 1, 2])), false);
  });
});

describe('device refusals', () => {
  const key = fixParity(randomBytes(16));
  const kbpk = () => transportKeyHandle('tdes', key);

  /** A raw session: HELLO and authentication done through the loader's own functions. */
  async function session(options: Partial<ConstructorParameters<typeof KeyloadDevice>[0]> = {}) {
    const [a, b] = memoryLine();
    const dev = new KeyloadDevice({
      pad: bareTerminal({ serial: 'SN-RAW' }),
      kbpk: { algorithm: 'tdes', key },
      ...options,
    });
    dev.serve(b, QUICK);
    const link = new Link(a, QUICK);
    const h = kbpk();
    const auth = kbpkAuthenticator(h);
    const info = await hello(link);
    return { link, dev, auth, info, h };
  }

  function tmkBlock(k: ReturnType<typeof kbpk>, usage = 'K0'): string {
    return wrapKeyBlock({
      kbpk: k,
      header: {
        version: 'B',
        usage,
        algorithm: 'T',
        modeOfUse: usage === 'K0' ? 'B' : 'E',
        keyVersion: '00',
        exportability: 'E',
        keyContext: '0',
        optionalBlocks: [],
      },
      key: fixParity(randomBytes(16)),
    });
  }

  async function refused(link: Link, msg: KeyloadMessage, name: keyof typeof DEVICE_ERRORS): Promise<void> {
    const reply = await link.request(msg);
    assert.equal(reply.type, 'ERROR', JSON.stringify(reply));
    assert.equal(
      (reply as { code: number }).code,
      DEVICE_ERRORS[name].code,
      (reply as { reason: string }).reason,
    );
  }

  it('SEQUENCE and NOTHING_STAGED: no key before authentication, no BIND before a key', async () => {
    const { link, h } = await session();
    await refused(link, { type: 'LOAD_KEY', slot: 0, block: tmkBlock(h) }, 'SEQUENCE');
    await refused(link, { type: 'AUTH_CONFIRM', proof: Buffer.alloc(8) }, 'SEQUENCE');
    await refused(
      link,
      { type: 'BIND', tid: '10000001', kcv: '000000', proof: Buffer.alloc(8) },
      'NOTHING_STAGED',
    );
    await refused(link, { type: 'AUTH_OK' }, 'BAD_MESSAGE');
    await link.close();
  });

  it('VERSION and AUTH_METHOD: another protocol version or authentication method', async () => {
    const { link } = await session();
    await refused(
      link,
      { type: 'HELLO', version: 9, loaderId: 'x', time: new Date().toISOString() },
      'VERSION',
    );
    await hello(link);
    await refused(link, { type: 'AUTH_CHALLENGE', method: 'tr34', nonce: Buffer.alloc(16) }, 'AUTH_METHOD');
    await link.close();
  });

  it('AUTH_FAILED: a loader proof made with another KBPK', async () => {
    const { link } = await session();
    const wrong = kbpkAuthenticator(transportKeyHandle('tdes', fixParity(randomBytes(16))));
    const challenge = await link.request({
      type: 'AUTH_CHALLENGE',
      method: 'kbpk-cmac',
      nonce: randomBytes(16),
    });
    assert.equal(challenge.type, 'AUTH_RESPONSE');
    await refused(
      link,
      { type: 'AUTH_CONFIRM', proof: await prove(wrong, 'loader', [Buffer.alloc(16)]) },
      'AUTH_FAILED',
    );
    await link.close();
  });

  it('KEY_BLOCK and SLOT: a block under another KBPK, a PIN key instead of a TMK, a slot off the pad', async () => {
    const { link, auth, info, h, dev } = await session();
    await authenticate(link, auth, info);
    const other = transportKeyHandle('tdes', fixParity(randomBytes(16)));
    await refused(link, { type: 'LOAD_KEY', slot: 0, block: tmkBlock(other) }, 'KEY_BLOCK');
    await refused(link, { type: 'LOAD_KEY', slot: 0, block: tmkBlock(h, 'P0') }, 'KEY_BLOCK');
    await refused(link, { type: 'LOAD_KEY', slot: 200, block: tmkBlock(h) }, 'SLOT');
    assert.equal(dev.pad.slotInfo(0), undefined);
    await link.close();
  });

  it('KEY_BLOCK and AUTH_FAILED at BIND: another KCV, a proof not of this session', async () => {
    const { link, auth, info, h, dev } = await session();
    const s = await authenticate(link, auth, info);
    const loaded = await link.request({ type: 'LOAD_KEY', slot: 0, block: tmkBlock(h) });
    assert.equal(loaded.type, 'KEY_LOADED');
    await refused(
      link,
      { type: 'BIND', tid: '10000001', kcv: (loaded as { kcv: string }).kcv, proof: Buffer.alloc(8) },
      'AUTH_FAILED',
    );
    const proof = await prove(auth, 'bind', [
      s.loaderNonce,
      s.deviceNonce,
      Buffer.from('10000001'),
      Buffer.from('ABCDEF'),
    ]);
    await refused(link, { type: 'BIND', tid: '10000001', kcv: 'ABCDEF', proof }, 'KEY_BLOCK');
    assert.equal(dev.pad.slotInfo(0), undefined, 'nothing committed');
    await link.close();
  });

  it('STORAGE: the key is committed but the secure storage cannot be saved', async () => {
    const store = { save: () => Promise.reject(new Error('read-only file system')) };
    const { link, auth, info, h } = await session({ store });
    const s = await authenticate(link, auth, info);
    const loaded = (await link.request({ type: 'LOAD_KEY', slot: 0, block: tmkBlock(h) })) as { kcv: string };
    const proof = await prove(auth, 'bind', [
      s.loaderNonce,
      s.deviceNonce,
      Buffer.from('10000001'),
      Buffer.from(loaded.kcv),
    ]);
    await refused(link, { type: 'BIND', tid: '10000001', kcv: loaded.kcv, proof }, 'STORAGE');
    await link.close();
  });

  it('TAMPERED and APP_ORDER: the device itself refuses, whatever the loader checked', async () => {
    const t = await session();
    t.dev.tamper();
    await refused(
      t.link,
      { type: 'AUTH_CHALLENGE', method: 'kbpk-cmac', nonce: randomBytes(16) },
      'TAMPERED',
    );
    t.dev.serviceReset();
    assert.equal(t.dev.tamperState, 'none');
    await t.link.close();

    const o = await session({
      pad: bareTerminal({
        apps: ['master-controller', 'signature-file', 'bank-card', 'convenience-payment'],
      }),
    });
    await authenticate(o.link, o.auth, o.info);
    await refused(o.link, { type: 'LOAD_KEY', slot: 0, block: tmkBlock(o.h) }, 'APP_ORDER');
    await o.link.close();
  });
});

describe('targets', () => {
  it('parses serial paths, tcp targets and host:port, refusing bad ones (POSKEY_ERR_KEYLOAD_OPTION)', () => {
    assert.deepEqual(parseTarget('/dev/ttyUSB0', 9600), { port: '/dev/ttyUSB0', baudRate: 9600 });
    assert.deepEqual(parseTarget('COM3'), { port: 'COM3' });
    assert.deepEqual(parseTarget('tcp://[::1]:4001'), { tcp: '[::1]:4001' });
    assert.deepEqual(parseHostPort('[::1]:4001', 'x'), { host: '::1', port: 4001 });
    assert.throws(() => parseTarget(''), code(KeyloadErrorCode.OPTION));
    assert.throws(() => parseTarget('tcp:host'), code(KeyloadErrorCode.OPTION));
    assert.throws(() => parseHostPort('host:70000', 'x'), code(KeyloadErrorCode.OPTION));
  });

  it('maps open failures to port errors; an unknown one is POSKEY_ERR_KEYLOAD_PORT_OPEN', () => {
    const errno = (c: string) => Object.assign(new Error(c), { code: c });
    assert.equal(portOpenError('/dev/x', errno('ENOENT')).code, KeyloadErrorCode.PORT_NOT_FOUND);
    assert.equal(portOpenError('/dev/x', errno('EACCES')).code, KeyloadErrorCode.PORT_PERMISSION);
    assert.equal(
      portOpenError('/dev/x', new Error('Error Resource temporarily unavailable Cannot lock port')).code,
      KeyloadErrorCode.PORT_BUSY,
    );
    assert.equal(
      portOpenError('/dev/x', new Error('Error: Inappropriate ioctl for device, cannot set')).code,
      KeyloadErrorCode.PORT_OPEN,
    );
  });
});
