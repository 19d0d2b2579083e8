/**
 * The terminal application, its connection, the fleet simulator and the CLI, against a scripted
 * POSP peer on an ephemeral loopback port. The peer is deliberately small: it makes sign-in keys
 * under each terminal's TMK, checks request MACs and PINs with the clear keys, and answers; a
 * test's `script` overrides any answer (bad MAC, silence, a decline). End-to-end runs against the
 * real host (src/host) belong to the integration tests.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { createKey, type KeyHandle } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { combineComponents } from '../../src/crypto/keys.js';
import { retailMac, unionPayMac } from '../../src/crypto/mac.js';
import { decryptPinBlock } from '../../src/crypto/pinblock.js';
import {
  buildFrame,
  createFrameDecoder,
  type Envelope,
  parseEnvelope,
  replyEnvelope,
  TERMINAL_PROFILE,
} from '../../src/iso8583/framing.js';
import {
  type Dialect,
  type IsoMessage,
  joinKeyBlock,
  pack,
  type Subfields,
  unpack,
} from '../../src/iso8583/index.js';
import {
  macBlock,
  POS_DIALECT,
  POS_SM4_DIALECT,
  SM4_TPDU_DESTINATION,
  transformTrack,
} from '../../src/protocol/unionpay-pos.js';
import { TEST_CARDS, testCard, track2Of } from '../../src/terminal/cards.js';
import type { TerminalConfig } from '../../src/terminal/config.js';
import { type FrameEvent, TerminalConnection } from '../../src/terminal/connection.js';
import { PinPadError, TerminalError } from '../../src/terminal/errors.js';
import {
  type FleetProgress,
  formatFleetReport,
  percentile,
  progressLine,
  runFleet,
  summarizeLatency,
  wrongPin,
} from '../../src/terminal/fleet.js';
import { PinPad } from '../../src/terminal/pinpad.js';
import { PinPadStore } from '../../src/terminal/pinpad-store.js';
import { FileReversalStore, MemoryReversalStore, REVERSAL_FILE } from '../../src/terminal/reversal-store.js';
import { FileStateStore } from '../../src/terminal/state-store.js';
import { Terminal } from '../../src/terminal/terminal.js';

// --- the scripted POSP peer -------------------------------------------------------------------

type Algorithm = 'tdes' | 'sm4';
interface HostTerminal {
  tmk: KeyHandle;
  algorithm: Algorithm;
  tpk?: KeyHandle;
  tak?: KeyHandle;
  tdk?: KeyHandle;
}
interface ReplySpec {
  message: IsoMessage;
  /** 'good' (default when the terminal has a TAK), 'bad' (one bit flipped) or 'none'. */
  mac?: 'good' | 'bad' | 'none';
  processingRequirement?: number;
}
/** A script returns a reply, `null` for silence, or undefined for the default answer. */
type Script = (
  req: IsoMessage,
  posp: FakePosp,
) => ReplySpec | null | undefined | Promise<ReplySpec | null | undefined>;

class FakePosp {
  readonly received: IsoMessage[] = [];
  readonly terminals = new Map<string, HostTerminal>();
  readonly pins = new Map(TEST_CARDS.map((c) => [c.pan, c.pin]));
  macAlgorithm: 'unionpay-ecb' | 'x919' = 'unionpay-ecb';
  batch = '000007';
  connections = 0;
  script: Script | undefined;
  badSignInCv = false;
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  #rrn = 0;
  port = 0;

  register(tid: string, tmk: Uint8Array, algorithm: Algorithm = 'tdes'): void {
    this.terminals.set(tid, { tmk: createKey(algorithm, tmk), algorithm });
  }

  async start(): Promise<number> {
    this.#server = createServer((socket) => this.#serve(socket));
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as { port: number }).port;
    return this.port;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()));
  }

  /** Cuts every live connection (the "link drops" case). */
  stopSockets(): void {
    for (const s of this.#sockets) s.destroy();
  }

  reset(): void {
    this.received.length = 0;
    this.script = undefined;
    this.macAlgorithm = 'unionpay-ecb';
    this.badSignInCv = false;
    this.connections = 0;
  }

  mti(...mtis: string[]): IsoMessage[] {
    return this.received.filter((m) => mtis.includes(m[0]));
  }

  #serve(socket: Socket): void {
    this.connections++;
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = createFrameDecoder(TERMINAL_PROFILE);
    socket.on('data', (chunk) => {
      for (const payload of decoder.push(chunk)) {
        const env = parseEnvelope(payload, TERMINAL_PROFILE);
        const dialect = env.tpdu?.destination === SM4_TPDU_DESTINATION ? POS_SM4_DIALECT : POS_DIALECT;
        const req = unpack(dialect, env.body);
        this.received.push(req);
        void this.#answer(socket, env, req, dialect);
      }
    });
  }

  async #answer(socket: Socket, env: Envelope, req: IsoMessage, dialect: Dialect): Promise<void> {
    const scripted = await this.script?.(req, this);
    const reply = scripted === undefined ? this.answer(req) : scripted;
    if (reply === null || socket.destroyed) return;
    const t = this.terminals.get(req[41] as string);
    const msg = { ...reply.message };
    const mode =
      reply.mac ?? (t?.tak !== undefined && msg[0] !== '0810' && msg[0] !== '0830' ? 'good' : 'none');
    if (mode !== 'none' && t?.tak) {
      const mac = fromHex(this.mac(t.tak, macBlock(msg, dialect)));
      if (mode === 'bad') mac[7]! ^= 1;
      msg[64] = toHex(mac);
    }
    const out = replyEnvelope(
      env as Required<Pick<Envelope, 'tpdu' | 'header'>> & Envelope,
      pack(dialect, msg),
      reply.processingRequirement === undefined ? {} : { processingRequirement: reply.processingRequirement },
    );
    socket.write(buildFrame(out, TERMINAL_PROFILE));
  }

  mac(tak: KeyHandle, mab: Uint8Array): string {
    return toHex(this.macAlgorithm === 'x919' ? retailMac(tak, mab) : unionPayMac(tak, mab));
  }

  /** The default answer to each request. */
  answer(req: IsoMessage): ReplySpec {
    const t = this.terminals.get(req[41] as string);
    const base = this.#echo(req);
    if (t === undefined) return { message: { ...base, 39: '97' }, mac: 'none' };
    switch (req[0]) {
      case '0800':
        return this.#signIn(t, req, base);
      case '0820':
        return { message: { ...base, 0: '0830', 39: '00' } };
      case '0400':
        return { message: { ...base, 0: '0410', 39: '00' } };
      default:
        return this.#financial(t, req, base);
    }
  }

  #echo(req: IsoMessage): IsoMessage {
    const out = { 0: `${req[0].slice(0, 2)}${Number(req[0][2]) + 1}${req[0][3]}` } as IsoMessage;
    for (const f of [2, 3, 4, 11, 14, 25, 41, 42, 49, 53, 60]) if (req[f] !== undefined) out[f] = req[f]!;
    out[12] = '101112';
    out[13] = '0304';
    out[32] = '12345678';
    out[37] = String(++this.#rrn).padStart(12, '0');
    return out;
  }

  #signIn(t: HostTerminal, req: IsoMessage, base: IsoMessage): ReplySpec {
    const code = (req[60] as Subfields)[3] as '001' | '003' | '004' | '006';
    const wrap = (alg: 'des' | 'tdes' | 'sm4', bytes: number) => {
      const clear = randomBytes(bytes);
      const handle = createKey(alg, clear);
      const cv = checkValue(handle, { length: 4 }).value;
      return { handle, cryptogram: toHex(t.tmk.ecbEncrypt(clear)), cv: this.badSignInCv ? '00000000' : cv };
    };
    const sm4 = code === '006';
    const pik = sm4 ? wrap('sm4', 16) : code === '001' ? wrap('des', 8) : wrap('tdes', 16);
    const mak = sm4 ? wrap('sm4', 16) : wrap('des', 8);
    const tdk = code === '004' ? wrap('tdes', 16) : sm4 ? wrap('sm4', 16) : undefined;
    const keys = {
      pik: pik.cryptogram,
      pikCv: pik.cv,
      mak: code === '003' || code === '004' ? `${mak.cryptogram}${'0'.repeat(16)}` : mak.cryptogram,
      makCv: mak.cv,
      ...(tdk ? { tdk: tdk.cryptogram, tdkCv: tdk.cv } : {}),
    };
    t.tpk = pik.handle;
    t.tak = mak.handle;
    if (tdk) t.tdk = tdk.handle;
    const { 2: _p, 3: _c, 4: _a, 14: _e, 25: _k, 49: _y, 53: _s, ...rest } = base;
    return {
      message: {
        ...rest,
        39: '00',
        60: { 1: '00', 2: this.batch, 3: code },
        62: joinKeyBlock(keys, code),
      } as IsoMessage,
    };
  }

  #financial(t: HostTerminal, req: IsoMessage, base: IsoMessage): ReplySpec {
    if (!t.tak || !t.tpk) return { message: { ...base, 39: 'A7' }, mac: 'none' };
    const mab = macBlock(req, t.algorithm === 'sm4' ? POS_SM4_DIALECT : POS_DIALECT);
    if (req[64] !== this.mac(t.tak, mab)) return { message: { ...base, 39: 'A0' }, mac: 'none' };
    const sc = req[53] as Subfields | undefined;
    let track = req[35] as string | undefined;
    if (sc?.[3] === '1' && track !== undefined && t.tdk) {
      const tdk = t.tdk;
      track = transformTrack(track, tdk.blockSize as 8 | 16, (b) => tdk.ecbDecrypt(b));
    }
    if (track !== undefined && track.split('=')[0] !== req[2]) return { message: { ...base, 39: '96' } };
    if (req[52] !== undefined) {
      let pin: string;
      try {
        pin = decryptPinBlock(t.tpk, fromHex(req[52] as string), {
          format: t.algorithm === 'sm4' ? 'sm4' : 0,
          pan: req[2] as string,
        });
      } catch {
        return { message: { ...base, 39: '99' }, mac: 'none' };
      }
      if (pin !== this.pins.get(req[2] as string)) return { message: { ...base, 39: '55' } };
    }
    if (req[3] === '310000') return { message: { ...base, 39: '00', 54: '1002156C000000010000' } };
    return { message: { ...base, 39: '00', 38: '123456' } };
  }
}

// --- fixtures ---------------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'poskey-terminal-'));
let dirs = 0;
const newDir = () => join(work, `t${dirs++}`);
const posp = new FakePosp();
const TMK = fromHex('CA5D92598DCA48CE8A4C76361A9269E9');
const SM4_TMK = fromHex('1234567890ABCDEFABCDEF0987654321');
const DEBIT = testCard('unionpay-debit');
const SWIPE = { track2: track2Of(DEBIT) };

before(async () => {
  await posp.start();
});
after(async () => {
  await posp.stop();
  rmSync(work, { recursive: true, force: true });
});
beforeEach(() => posp.reset());

let tids = 0;
function newTerminal(
  patch: Partial<TerminalConfig> = {},
  deps: Partial<ConstructorParameters<typeof Terminal>[1]> = {},
  tmk: Buffer = patch.algorithm === 'sm4' ? SM4_TMK : TMK,
): Terminal {
  const tid = `T${String(++tids).padStart(7, '0')}`;
  posp.register(tid, tmk, patch.algorithm ?? 'tdes');
  const pad = deps.pinPad ?? new PinPad();
  if (deps.pinPad === undefined) pad.injectTmk(0, tmk, { algorithm: patch.algorithm ?? 'tdes' });
  return new Terminal(
    {
      tid,
      mid: '123456789012345',
      host: '127.0.0.1',
      port: posp.port,
      timeouts: { responseMs: 2000 },
      ...patch,
    },
    { ...deps, pinPad: pad },
  );
}

function isCode(c: string) {
  return (e: unknown) => (e instanceof TerminalError || e instanceof PinPadError) && e.code === c;
}

// --- terminal application ---------------------------------------------------------------------

describe('Terminal: sign-in', () => {
  it('loads the working keys from field 62 (each KCV checked) and takes the batch from 60.2', async () => {
    const t = newTerminal();
    const r = await t.signIn();
    assert.equal(r.approved, true);
    assert.equal(r.batch, '000007');
    assert.equal(t.batch, '000007');
    const host = posp.terminals.get(t.config.tid)!;
    assert.equal(r.keys?.pik, checkValue(host.tpk!).value);
    assert.equal(r.keys?.mak, checkValue(host.tak!).value);
    assert.equal(t.pinPad.slotInfo(2)?.algorithm, 'des');
    const [req] = posp.mti('0800');
    assert.equal(req![64], undefined);
    assert.deepEqual(req![60], { 1: '00', 2: '000001', 3: '003' });
    assert.equal(t.signedIn, true);
    await t.close();
  });

  it('reports a declined sign-in (97), and a transaction then fails with POSKEY_ERR_TERMINAL_SIGN_IN', async () => {
    const t = newTerminal();
    posp.terminals.delete(t.config.tid);
    const r = await t.signIn();
    assert.deepEqual([r.approved, r.responseCode], [false, '97']);
    await assert.rejects(t.purchase(SWIPE, 100, DEBIT.pin), isCode('POSKEY_ERR_TERMINAL_SIGN_IN'));
    await t.close();
  });

  it('refuses keys whose check value fails ("working key download failed") and keeps the old ones', async () => {
    const t = newTerminal();
    await t.signIn();
    const before = t.pinPad.listSlots();
    posp.badSignInCv = true;
    await assert.rejects(t.signIn(), isCode('POSKEY_ERR_PINPAD_KCV'));
    assert.deepEqual(t.pinPad.listSlots(), before);
    await t.close();
  });

  it('refuses an answer for another terminal (POSKEY_ERR_TERMINAL_RESPONSE)', async () => {
    const t = newTerminal();
    posp.script = (req, p) => {
      const a = p.answer(req);
      return { ...a, message: { ...a.message, 41: 'OTHER001' } };
    };
    await assert.rejects(t.signIn(), isCode('POSKEY_ERR_TERMINAL_RESPONSE'));
    await t.close();
  });

  it('needs a TMK of its algorithm in the PIN pad, and an untampered pad', async () => {
    const empty = newTerminal({}, { pinPad: new PinPad() });
    await assert.rejects(empty.signIn(), isCode('POSKEY_ERR_TERMINAL_CONFIG'));
    const sm4Pad = new PinPad();
    sm4Pad.injectTmk(0, SM4_TMK, { algorithm: 'sm4' });
    const wrong = newTerminal({}, { pinPad: sm4Pad });
    await assert.rejects(wrong.signIn(), isCode('POSKEY_ERR_TERMINAL_CONFIG'));
    const t = newTerminal();
    await t.signIn();
    t.pinPad.tamper();
    const sent = posp.received.length;
    await assert.rejects(t.purchase(SWIPE, 100, DEBIT.pin), isCode('POSKEY_ERR_PINPAD_TAMPERED'));
    assert.equal(posp.received.length, sent, 'nothing was sent');
    assert.equal(posp.connections, 1);
    await Promise.all([empty.close(), wrong.close(), t.close()]);
  });

  it('signs off: 0820 with 60.3 = 002, and the working keys are erased', async () => {
    const t = newTerminal();
    await t.signIn();
    const r = await t.signOff();
    assert.equal(r.approved, true);
    assert.deepEqual((posp.mti('0820')[0]![60] as Subfields)[3], '002');
    assert.equal(t.pinPad.slotInfo(1), undefined);
    assert.equal(t.signedIn, false);
    await t.close();
  });
});

describe('Terminal: purchase and balance', () => {
  it('signs in first when needed, then purchases: approved, MAC checked both ways', async () => {
    const t = newTerminal();
    const r = await t.purchase(SWIPE, 1234, DEBIT.pin);
    assert.equal(r.outcome, 'approved');
    assert.deepEqual(
      [r.responseCode, r.authCode, r.amount, r.macVerified],
      ['00', '123456', '000000001234', true],
    );
    assert.deepEqual(
      posp.received.map((m) => [m[0], m[11]]),
      [
        ['0800', '000001'],
        ['0200', '000002'],
      ],
    );
    assert.equal(t.stan, '000002');
    assert.deepEqual(await t.pendingReversals(), []);
    assert.ok(r.latencyMs! > 0);
    await t.close();
  });

  it('stores the reversal on disk before the 0200 leaves, and drops it once the response verifies', async () => {
    const dir = newDir();
    const reversals = await FileReversalStore.open(dir);
    const t = newTerminal({}, { reversals });
    await t.signIn();
    let onDisk: string[] = [];
    posp.script = (req) => {
      if (req[0] === '0200') {
        const doc = JSON.parse(readFileSync(join(dir, REVERSAL_FILE), 'utf8'));
        onDisk = doc.reversals.map((r: { stan: string; reason: string }) => `${r.stan}/${r.reason}`);
      }
      return undefined;
    };
    const r = await t.purchase(SWIPE, 500, DEBIT.pin);
    assert.equal(r.approved, true);
    assert.deepEqual(onDisk, [`${r.stan}/98`]);
    assert.deepEqual(await reversals.list(), []);
    await t.close();
  });

  it('a response whose MAC fails: "response MAC failed", reversal 0400 with 39 = A0 sent and acknowledged', async () => {
    const t = newTerminal();
    await t.signIn();
    posp.script = (req, p) => (req[0] === '0200' ? { ...p.answer(req), mac: 'bad' } : undefined);
    const r = await t.purchase(SWIPE, 700, DEBIT.pin);
    assert.deepEqual(
      [r.outcome, r.responseText, r.macVerified, r.approved],
      ['mac-failed', 'response MAC failed', false, false],
    );
    const [rev] = posp.mti('0400');
    assert.deepEqual(
      [rev![11], rev![39], rev![4], rev![52], rev![35]],
      [r.stan, 'A0', '000000000700', undefined, undefined],
    );
    assert.equal(r.reversal?.acknowledged, true);
    assert.deepEqual(await t.pendingReversals(), []);
    await t.close();
  });

  it('an approval without a MAC is not accepted either', async () => {
    const t = newTerminal({ reverseImmediately: false });
    await t.signIn();
    posp.script = (req, p) => (req[0] === '0200' ? { ...p.answer(req), mac: 'none' } : undefined);
    const r = await t.purchase(SWIPE, 700, DEBIT.pin);
    assert.deepEqual([r.outcome, r.macVerified], ['mac-failed', null]);
    assert.deepEqual(
      (await t.pendingReversals()).map((p) => [p.stan, p.reason]),
      [[r.stan, 'A0']],
    );
    await t.close();
  });

  it('a timeout keeps the reversal (98); it is sent before the next transaction', async () => {
    const t = newTerminal({ reverseImmediately: false, timeouts: { responseMs: 150 } });
    await t.signIn();
    posp.script = (req) => (req[0] === '0200' ? null : undefined);
    const r = await t.purchase(SWIPE, 900, DEBIT.pin);
    assert.deepEqual([r.outcome, r.approved, r.latencyMs], ['timeout', false, undefined]);
    assert.deepEqual(r.reversal, { stan: r.stan, reason: '98', sent: false, acknowledged: false });
    posp.script = undefined;
    posp.received.length = 0;
    const next = await t.purchase(SWIPE, 100, DEBIT.pin);
    assert.equal(next.approved, true);
    assert.deepEqual(
      posp.received.map((m) => [m[0], m[11], m[39]]),
      [
        ['0400', r.stan, '98'],
        ['0200', next.stan, undefined],
      ],
    );
    assert.deepEqual(next.earlierReversals, [
      { stan: r.stan, reason: '98', sent: true, acknowledged: true, responseCode: '00' },
    ]);
    await t.close();
  });

  it('with reverseImmediately the reversal follows a timeout at once', async () => {
    const t = newTerminal({ timeouts: { responseMs: 150 } });
    await t.signIn();
    posp.script = (req) => (req[0] === '0200' ? null : undefined);
    const r = await t.purchase(SWIPE, 900, DEBIT.pin);
    assert.equal(r.reversal?.acknowledged, true);
    assert.deepEqual(
      posp.mti('0400').map((m) => m[39]),
      ['98'],
    );
    await t.close();
  });

  it('refuses the next transaction while a reversal cannot be delivered (POSKEY_ERR_TERMINAL_REVERSAL_PENDING)', async () => {
    const t = newTerminal({ reverseImmediately: false });
    await t.signIn();
    posp.script = (req, p) =>
      req[0] === '0200'
        ? { ...p.answer(req), mac: 'bad' }
        : req[0] === '0400'
          ? { ...p.answer(req), mac: 'bad' }
          : undefined;
    await t.purchase(SWIPE, 100, DEBIT.pin);
    const outcomes = await t.sendPendingReversals();
    assert.deepEqual(
      outcomes.map((o) => [o.acknowledged, o.error]),
      [[false, 'response MAC failed']],
    );
    posp.received.length = 0;
    await assert.rejects(t.purchase(SWIPE, 100, DEBIT.pin), isCode('POSKEY_ERR_TERMINAL_REVERSAL_PENDING'));
    assert.deepEqual(
      posp.received.map((m) => m[0]),
      ['0400'],
    );
    await t.close();
  });

  it('a link that drops with the request in flight is treated like a timeout', async () => {
    const t = newTerminal({ reverseImmediately: false });
    await t.signIn();
    posp.script = async (req) => {
      if (req[0] === '0200') posp.stopSockets();
      return null;
    };
    const r = await t.purchase(SWIPE, 100, DEBIT.pin);
    assert.equal(r.outcome, 'timeout');
    assert.match(r.responseText, /closed by the host/);
    assert.equal((await t.pendingReversals()).length, 1);
    await t.close();
  });

  for (const code of ['A0', '99', 'A7']) {
    it(`on ${code} the terminal reports the decline and signs in again at once`, async () => {
      const t = newTerminal();
      await t.signIn();
      posp.script = (req, p) =>
        req[0] === '0200' ? { message: { ...p.answer(req).message, 39: code }, mac: 'none' } : undefined;
      const r = await t.purchase(SWIPE, 100, DEBIT.pin);
      assert.deepEqual([r.outcome, r.responseCode, r.macVerified], ['declined', code, null]);
      assert.deepEqual(r.signIn, { approved: true, responseCode: '00' });
      assert.equal(posp.mti('0800').length, 2);
      assert.deepEqual(await t.pendingReversals(), []);
      await t.close();
    });
  }

  it('signs in again when the host sets processing requirement 3 in the header', async () => {
    const t = newTerminal();
    await t.signIn();
    posp.script = (req, p) =>
      req[0] === '0200' ? { ...p.answer(req), processingRequirement: 3 } : undefined;
    const r = await t.purchase(SWIPE, 100, DEBIT.pin);
    assert.equal(r.approved, true);
    assert.equal(r.signIn?.approved, true);
    await t.close();
  });

  it('a wrong PIN is an authenticated decline (55); a balance inquiry reads field 54 and stores no reversal', async () => {
    const reversals = new MemoryReversalStore();
    const t = newTerminal({}, { reversals });
    const declined = await t.purchase(SWIPE, 100, wrongPin(DEBIT.pin));
    assert.deepEqual(
      [declined.outcome, declined.responseCode, declined.macVerified],
      ['declined', '55', true],
    );
    let pendingDuringBalance = -1;
    posp.script = async (req) => {
      if (req[0] === '0200') pendingDuringBalance = (await reversals.list()).length;
      return undefined;
    };
    const b = await t.balance({ pan: DEBIT.pan, expiry: DEBIT.expiry }, DEBIT.pin);
    assert.equal(pendingDuringBalance, 0);
    assert.equal(b.approved, true);
    assert.equal(b.balances?.[0]?.minor, 10000);
    assert.equal(posp.mti('0200').at(-1)![22], '011');
    await t.close();
  });

  const profiles: [string, Partial<TerminalConfig>, 'unionpay-ecb' | 'x919'][] = [
    ['TDES 004 with track encryption', { trackEncryption: true }, 'unionpay-ecb'],

    ['single-DES 001', { signInCode: '001' }, 'unionpay-ecb'],
    ['X9.19 MAC', { macAlgorithm: 'x919' }, 'x919'],
    ['one connection per exchange', { connection: 'per-transaction' }, 'unionpay-ecb'],
  ];
  for (const [name, patch, mac] of profiles) {
    it(`works end to end: ${name}`, async () => {
      const t = newTerminal(patch);
      posp.macAlgorithm = mac;
      const r = await t.purchase({ track2: track2Of(testCard('sm4-example')) }, 4321, '123654');
      assert.equal(r.outcome, 'approved', r.responseText);
      const [req] = posp.mti('0200');
      if (patch.trackEncryption) assert.notEqual(req![35], track2Of(testCard('sm4-example')));
      if (patch.connection === 'per-transaction') assert.equal(posp.connections, 2);
      else assert.equal(posp.connections, 1);
      await t.close();
    });
  }

  it('works end to end: SM4 006 with track encryption, no PIN', async () => {
    const t = newTerminal({ algorithm: 'sm4', trackEncryption: true });
    const track = track2Of(testCard('sm4-example'));
    const r = await t.purchase({ track2: track }, 4321);
    assert.equal(r.outcome, 'approved', r.responseText);
    const [req] = posp.mti('0200');
    assert.notEqual(req![35], track);
    assert.deepEqual(req![53], { 1: '0', 2: '4', 3: '1', 4: '0000000000000' });
    assert.equal(req![22], '022');
    await t.close();
  });

  it('works end to end: SM4 006 with a PIN (SM4 dialect, routed by TPDU destination)', async () => {
    const t = newTerminal({ algorithm: 'sm4' });
    try {
      const r = await t.purchase({ track2: track2Of(testCard('sm4-example')) }, 4321, '123654');
      assert.equal(r.outcome, 'approved', r.responseText);
      assert.equal((posp.mti('0200')[0]![52] as string).length, 32);
    } finally {
      await t.close();
    }
  });

  it('keeps the STAN across restarts with a data directory, and wraps 999999 to 000001', async () => {
    const dir = newDir();
    const state = new FileStateStore(dir);
    await state.save({ stan: 999998, batch: '000001' });
    const t = newTerminal({}, { state });
    await t.signIn();
    assert.equal(t.stan, '999999');
    await t.purchase(SWIPE, 100, DEBIT.pin);
    assert.equal(t.stan, '000001');
    await t.close();
    assert.deepEqual(await new FileStateStore(dir).load(), { stan: 1, batch: '000007' });
  });

  it('a sealed PIN pad keeps the working keys: the next run transacts without signing in', async () => {
    const dir = newDir();
    const store = await PinPadStore.open(dir, 'device secret', { scrypt: { N: 1024, r: 8, p: 1 } });
    const first = newTerminal({}, { pinPadStore: store, state: new FileStateStore(dir) });
    await first.signIn();
    await first.close();
    const pad = (await PinPadStore.open(dir, 'device secret')).load()!;
    const second = new Terminal(
      { ...first.config, slots: { ...first.config.slots }, timeouts: { ...first.config.timeouts } },
      { pinPad: pad, state: new FileStateStore(dir) },
    );
    posp.received.length = 0;
    const r = await second.purchase(SWIPE, 100, DEBIT.pin);
    assert.equal(r.approved, true);
    assert.deepEqual(
      posp.received.map((m) => m[0]),
      ['0200'],
    );
    await second.close();
  });

  it('rejects bad card data and amounts before anything is sent (POSKEY_ERR_TERMINAL_INPUT)', async () => {
    const t = newTerminal();
    await assert.rejects(t.purchase({ pan: '12' }, 100, '1234'), isCode('POSKEY_ERR_TERMINAL_INPUT'));
    await assert.rejects(t.purchase(SWIPE, 0, '1234'), isCode('POSKEY_ERR_TERMINAL_INPUT'));
    assert.equal(posp.received.length, 0);
    await t.close();
    await assert.rejects(t.signIn(), isCode('POSKEY_ERR_TERMINAL_CLOSED'));
  });

  it('an unreachable host is POSKEY_ERR_TERMINAL_CONNECTION and leaves no reversal', async () => {
    const t = new Terminal(
      { tid: 'NOHOST01', mid: '123456789012345', host: '127.0.0.1', port: await closedPort() },
      { pinPad: new PinPad() },
    );
    t.pinPad.injectTmk(0, TMK, { algorithm: 'tdes' });
    await assert.rejects(t.signIn(), isCode('POSKEY_ERR_TERMINAL_CONNECTION'));
    await t.close();
  });
});

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// --- connection ---------------------------------------------------------------------------------

function echoRequest(stan: string, tid = 'CONN0001'): IsoMessage {
  return {
    0: '0820',
    11: stan,
    41: tid,
    42: '123456789012345',
    60: { 1: '00', 2: '000001', 3: '301' },
  } as IsoMessage;
}

describe('TerminalConnection', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('carries several requests at once and matches answers by MTI and STAN, in any order', async () => {
    posp.register('CONN0001', TMK);
    posp.script = async (req, p) => {
      if (req[11] === '000001') await sleep(80);
      return p.answer(req);
    };
    const frames: FrameEvent[] = [];
    const conn = new TerminalConnection({
      host: '127.0.0.1',
      port: posp.port,
      onFrame: (e) => frames.push(e),
    });
    const order: string[] = [];
    const [a, b] = await Promise.all(
      ['000001', '000002'].map(async (stan) => {
        const req = echoRequest(stan);
        const ex = await conn.request(req, pack(POS_DIALECT, req), 2000);
        order.push(stan);
        return ex;
      }),
    );
    assert.deepEqual(order, ['000002', '000001']);
    assert.deepEqual([a!.message[11], b!.message[11], a!.message[0]], ['000001', '000002', '0830']);
    assert.equal(posp.connections, 1);
    assert.deepEqual(
      frames.map((f) => f.direction),
      ['sent', 'sent', 'received', 'received'],
    );
    // The reply envelope swaps the TPDU addresses.
    assert.deepEqual(a!.envelope.tpdu, { id: 0x60, destination: 0x0000, source: 0x0003 });
    await conn.close();
  });

  it('times out (POSKEY_ERR_TERMINAL_TIMEOUT) and reports the late answer as unmatched', async () => {
    posp.register('CONN0001', TMK);
    posp.script = async (req, p) => {
      await sleep(120);
      return p.answer(req);
    };
    const frames: FrameEvent[] = [];
    const conn = new TerminalConnection({
      host: '127.0.0.1',
      port: posp.port,
      onFrame: (e) => frames.push(e),
    });
    const req = echoRequest('000003');
    await assert.rejects(
      conn.request(req, pack(POS_DIALECT, req), 30),
      isCode('POSKEY_ERR_TERMINAL_TIMEOUT'),
    );
    await sleep(200);
    assert.equal(frames.at(-1)?.unmatched, true);
    await conn.close();
  });

  it('refuses a second request with the same MTI and STAN in flight (POSKEY_ERR_TERMINAL_DUPLICATE)', async () => {
    posp.register('CONN0001', TMK);
    posp.script = async (req, p) => {
      await sleep(50);
      return p.answer(req);
    };
    const conn = new TerminalConnection({ host: '127.0.0.1', port: posp.port });
    const req = echoRequest('000004');
    const first = conn.request(req, pack(POS_DIALECT, req), 2000);
    await assert.rejects(
      conn.request(req, pack(POS_DIALECT, req), 2000),
      isCode('POSKEY_ERR_TERMINAL_DUPLICATE'),
    );
    await first;
    await conn.close();
  });

  it('fails requests in flight when closed (POSKEY_ERR_TERMINAL_CLOSED) or when the host drops the link', async () => {
    posp.register('CONN0001', TMK);
    posp.script = () => null;
    const conn = new TerminalConnection({ host: '127.0.0.1', port: posp.port });
    const req = echoRequest('000005');
    const pending = conn.request(req, pack(POS_DIALECT, req), 2000).catch((e: unknown) => e);
    await sleep(30);
    await conn.close();
    assert.ok(isCode('POSKEY_ERR_TERMINAL_CLOSED')(await pending));
    await assert.rejects(
      conn.request(req, pack(POS_DIALECT, req), 2000),
      isCode('POSKEY_ERR_TERMINAL_CLOSED'),
    );
    const other = new TerminalConnection({ host: '127.0.0.1', port: posp.port });
    const inFlight = other.request(req, pack(POS_DIALECT, req), 2000).catch((e: unknown) => e);
    await sleep(30);
    posp.stopSockets();
    assert.ok(isCode('POSKEY_ERR_TERMINAL_CONNECTION')(await inFlight));
    // The next request opens a new connection.
    posp.script = undefined;
    const again = await other.request(req, pack(POS_DIALECT, req), 2000);
    assert.equal(again.message[39], '00');
    await other.close();
  });

  it('reports an unreadable frame and drops the link when framing is lost', async () => {
    const server = createServer((s) => {
      s.on('data', () => {
        s.write(Buffer.from('0005FF00000000', 'hex')); // a payload whose TPDU id is not 0x60
        setTimeout(() => s.write(Buffer.from('FFFF', 'hex')), 50); // a length beyond the frame limit
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const frames: FrameEvent[] = [];
    const conn = new TerminalConnection({
      host: '127.0.0.1',
      port: (server.address() as { port: number }).port,
      onFrame: (e) => frames.push(e),
    });
    const req = echoRequest('000006');
    await assert.rejects(
      conn.request(req, pack(POS_DIALECT, req), 2000),
      isCode('POSKEY_ERR_TERMINAL_CONNECTION'),
    );
    assert.equal(frames.filter((f) => f.error !== undefined).length, 2);
    await conn.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('rejects a response MTI as a request (POSKEY_ERR_TERMINAL_RESPONSE)', async () => {
    const conn = new TerminalConnection({ host: '127.0.0.1', port: posp.port });
    const req = { ...echoRequest('000007'), 0: '0810' } as IsoMessage;
    await assert.rejects(
      conn.request(req, pack(POS_DIALECT, req), 100),
      isCode('POSKEY_ERR_TERMINAL_RESPONSE'),
    );
    await conn.close();
  });
});

// --- fleet ------------------------------------------------------------------------------------

/** A small deterministic random source (LCG) for reproducible fleet runs. */
function seeded(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

describe('fleet simulator', () => {
  const transport = randomBytes(16);
  /** The host's side of provisioning: a fresh TMK per terminal, exported under the transport key. */
  const provision = (tid: string) => {
    const tmk = randomBytes(16);
    posp.register(tid, tmk);
    return {
      tid,
      mid: '123456789012345',
      tmk: {
        kind: 'transport' as const,
        cryptogram: toHex(createKey('tdes', transport).ecbEncrypt(tmk)),
        kcv: checkValue(createKey('tdes', tmk)).value,
      },
    };
  };

  it('provisions under the transport key, signs in, runs the mix at the rate and reports', async () => {
    const progress: FleetProgress[] = [];
    const report = await runFleet({
      host: '127.0.0.1',
      port: posp.port,
      terminals: 3,
      rate: 40,
      durationSeconds: 1.2,
      transportKey: { key: transport, algorithm: 'tdes' },
      tidPrefix: 'FLT',
      provision,
      wrongPinRate: 0,
      random: seeded(7),
      onProgress: (p) => progress.push(p),
    });
    assert.deepEqual(report.terminals, { requested: 3, ready: 3, failed: 0 });
    assert.equal(report.signIns.initial, 3);
    const { started, completed, skipped, purchase, balance } = report.transactions;
    assert.equal(started + skipped, 48, 'rate × duration');
    assert.equal(completed, started);
    assert.equal(purchase + balance, started);
    assert.ok(purchase > balance, 'the default mix is 80/20');
    assert.deepEqual(report.responseCodes, { '00': completed });
    assert.equal(report.outcomes.approved, completed);
    assert.equal(posp.mti('0200').length, completed);
    assert.ok(report.tps > 0);
    const l = report.latencyMs;
    assert.ok(l.p50 > 0 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max);
    assert.equal(report.errors.total, 0);
    assert.ok(progress.length >= 2);
    assert.equal(progress.at(-1)!.completed, completed);
    const text = formatFleetReport(report);
    for (const word of ['TPS:', 'p50', 'p95', 'p99', 'response codes: 00', 'errors:         0']) {
      assert.ok(text.includes(word), word);
    }
  });

  it('counts by response code: wrong PINs come back 55', async () => {
    const report = await runFleet({
      host: '127.0.0.1',
      port: posp.port,
      terminals: 2,
      rate: 30,
      durationSeconds: 0.4,
      transportKey: { key: transport, algorithm: 'tdes' },
      tidPrefix: 'PIN',
      provision,
      wrongPinRate: 1,
      random: seeded(3),
    });
    assert.ok(report.transactions.completed > 0);
    assert.deepEqual(report.responseCodes, { '55': report.transactions.completed });
    assert.equal(report.outcomes.declined, report.transactions.completed);
  });

  it('counts provisioning and sign-in failures, and skips transactions when every terminal is busy', async () => {
    posp.script = async (req, p) => {
      if (req[0] === '0200') await new Promise((r) => setTimeout(r, 150));
      return p.answer(req);
    };
    const report = await runFleet({
      host: '127.0.0.1',
      port: posp.port,
      terminals: 3,
      rate: 50,
      durationSeconds: 0.4,
      tidPrefix: 'BAD',
      transportKey: { key: transport, algorithm: 'tdes' },
      provision: (tid, i) => {
        if (i === 0) throw new Error('admin API down');
        if (i === 1)
          return {
            tid,
            mid: '123456789012345',
            tmk: { kind: 'clear', key: randomBytes(16), algorithm: 'tdes' },
          };
        return provision(tid);
      },
    });
    assert.deepEqual(report.terminals, { requested: 3, ready: 1, failed: 2 });
    assert.equal(report.signIns.failed, 1);
    assert.deepEqual(report.errors.byCode, { ERROR: 1, POSKEY_ERR_TERMINAL_SIGN_IN: 1 });
    assert.ok(report.transactions.skipped > 0);
    assert.ok(report.errors.samples.some((s) => s.includes('admin API down')));
  });

  it('rejects invalid options with POSKEY_ERR_TERMINAL_CONFIG', async () => {
    const base = {
      host: '127.0.0.1',
      port: posp.port,
      terminals: 1,
      rate: 1,
      durationSeconds: 1,
      provision,
    };
    for (const patch of [
      { rate: 0 },
      { terminals: 0 },
      { terminals: 1.5 },
      { durationSeconds: -1 },
      { tidPrefix: 'TOOLONG' },
      { mix: { purchase: 0, balance: 0 } },
      { wrongPinRate: 2 },
      { amount: { min: 10, max: 5 } },
      { cards: [] },
      { provision: undefined },
    ]) {
      await assert.rejects(
        runFleet({ ...base, ...patch } as never),
        isCode('POSKEY_ERR_TERMINAL_CONFIG'),
        JSON.stringify(patch),
      );
    }
    const noKey = await runFleet({ ...base, durationSeconds: 0.05, tidPrefix: 'NOKEY' });
    assert.deepEqual(noKey.errors.byCode, { POSKEY_ERR_TERMINAL_CONFIG: 1 });
  });

  it('percentiles are nearest-rank; the progress line shows rate, p95 and errors', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.deepEqual(
      [50, 95, 99, 100].map((p) => percentile(hundred, p)),
      [50, 95, 99, 100],
    );
    assert.equal(percentile([], 50), 0);
    assert.deepEqual(summarizeLatency([3, 1, 2]), { p50: 2, p95: 3, p99: 3, max: 3, mean: 2 });
    assert.equal(wrongPin('123459'), '234560');
    const line = progressLine({
      elapsedSeconds: 12.34,
      durationSeconds: 60,
      started: 120,
      completed: 118,
      inFlight: 2,
      tps: 9.56,
      p95Ms: 3.21,
      approved: 110,
      declined: 8,
      failed: 0,
      errors: 1,
      skipped: 0,
    });
    assert.equal(
      line,
      '[12.3s/60s] 118/120 tx  9.6 tps  p95 3.2 ms  approved 110  declined 8  failed 0  errors 1',
    );
  });
});

// --- CLI --------------------------------------------------------------------------------------

const COMPONENTS = ['0123456789ABCDEFFEDCBA9876543210', '40404040404040404040404040404040'];

function poskey(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: process.cwd(),
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('poskey terminal and poskey simulate', () => {
  const labTmk = combineComponents(
    'tdes',
    COMPONENTS.map((c) => fromHex(c)),
  ).key;
  const common = (tid: string) => [
    '--port',
    String(posp.port),
    '--tid',
    tid,
    '--mid',
    '123456789012345',
    '--tmk-components',
    COMPONENTS.join(','),
  ];

  it('signin --json: one JSON object on stdout, the lab warning on stderr', async () => {
    posp.register('CLI00001', labTmk);
    const r = await poskey(['terminal', 'signin', ...common('CLI00001'), '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual([out.tid, out.approved, out.batch], ['CLI00001', true, '000007']);
    assert.match(r.stderr, /warning: laboratory TMK injection/);
  });

  it('purchase --trace: frames decoded on stderr with card data masked; declines exit 1', async () => {
    posp.register('CLI00002', labTmk);
    const card = testCard('unionpay-debit');
    const r = await poskey([
      'terminal',
      'purchase',
      ...common('CLI00002'),
      '--card',
      'unionpay-debit',
      '--pin',
      card.pin,
      '--amount',
      '12.34',
      '--trace',
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /outcome: +approved/);
    assert.match(r.stdout, /amount: +12\.34/);
    assert.match(r.stderr, />> sent 0800/);
    assert.match(r.stderr, />> sent 0200/);
    assert.match(r.stderr, /<< received 0210/);
    assert.ok(r.stderr.includes('622202*********0128'), 'PAN masked');
    assert.ok(!r.stderr.includes(card.pan), 'no clear PAN in the trace');
    const pinBlock = posp.mti('0200')[0]![52] as string;
    assert.ok(!r.stderr.includes(pinBlock), 'no PIN block in the trace');
    const declined = await poskey([
      'terminal',
      'purchase',
      ...common('CLI00002'),
      '--card',
      'unionpay-debit',
      '--pin',
      wrongPin(card.pin),
      '--amount',
      '1',
      '--json',
    ]);
    assert.equal(declined.status, 1);
    assert.equal(JSON.parse(declined.stdout).responseCode, '55');
  });

  it('--data-dir with a sealed PIN pad: a second run needs no components and no sign-in', async () => {
    posp.register('CLI00003', labTmk);
    const dir = newDir();
    const env = { POSKEY_TEST_PINPAD: 'a device secret' };
    const sealed = ['--data-dir', dir, '--pinpad-passphrase-env', 'POSKEY_TEST_PINPAD'];
    const first = await poskey(['terminal', 'signin', ...common('CLI00003'), ...sealed], env);
    assert.equal(first.status, 0, first.stderr);
    posp.received.length = 0;
    const args = [
      'terminal',
      'balance',
      '--port',
      String(posp.port),
      '--tid',
      'CLI00003',
      '--mid',
      '123456789012345',
    ];
    const second = await poskey(
      [
        ...args,
        ...sealed,
        '--pan',
        testCard('unionpay-debit').pan,
        '--pin',
        testCard('unionpay-debit').pin,
        '--json',
      ],
      env,
    );
    assert.equal(second.status, 0, second.stderr);
    assert.equal(JSON.parse(second.stdout).balances[0].minor, 10000);
    assert.deepEqual(
      posp.received.map((m) => [m[0], m[11]]),
      [['0200', '000002']],
    );
    const wrong = await poskey([...args, ...sealed, '--card', 'unionpay-debit'], {
      POSKEY_TEST_PINPAD: 'not the secret',
    });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /^poskey: POSKEY_ERR_PINPAD_STORE: /);
  });

  it('usage errors exit 2 with one line; an unreachable host exits 1', async () => {
    const noTmk = await poskey([
      'terminal',
      'signin',
      '--port',
      String(posp.port),
      '--tid',
      'CLI00004',
      '--mid',
      '123456789012345',
    ]);
    assert.equal(noTmk.status, 2);
    assert.match(noTmk.stderr, /^poskey: POSKEY_ERR_CLI_OPTION: --tmk-components: the PIN pad has no TMK/);
    const badAmount = await poskey([
      'terminal',
      'purchase',
      ...common('CLI00004'),
      '--card',
      'unionpay-debit',
      '--amount',
      '1.234',
    ]);
    assert.equal(badAmount.status, 2);
    assert.equal(
      badAmount.stderr.trimEnd().split('\n').at(-1)?.startsWith('poskey: POSKEY_ERR_CLI_OPTION: --amount'),
      true,
    );
    const unreachable = await poskey([
      'terminal',
      'signin',
      ...common('CLI00004'),
      '--port',
      String(await closedPort()),
    ]);
    assert.equal(unreachable.status, 1);
    assert.match(unreachable.stderr, /POSKEY_ERR_TERMINAL_CONNECTION/);
  });

  it('simulate --json: the fleet report with TPS, percentiles and response codes', async () => {
    for (let i = 1; i <= 2; i++) posp.register(`CLS${String(i).padStart(5, '0')}`, labTmk);
    const r = await poskey([
      'simulate',
      '--terminals',
      '2',
      '--rate',
      '20',
      '--duration',
      '1s',
      '--port',
      String(posp.port),
      '--tid-prefix',
      'CLS',
      '--tmk-components',
      COMPONENTS.join(','),
      '--wrong-pin-rate',
      '0',
      '--json',
      '--no-progress',
    ]);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.terminals.ready, 2);
    assert.ok(report.transactions.completed > 10);
    assert.deepEqual(Object.keys(report.responseCodes), ['00']);
    assert.ok(report.tps > 0 && report.latencyMs.p99 >= report.latencyMs.p50);
    const missing = await poskey([
      'simulate',
      '--terminals',
      '1',
      '--rate',
      '1',
      '--duration',
      '1',
      '--port',
      '1',
    ]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--tmk-components/);
    const base = ['simulate', '--terminals', '1', '--rate', '1', '--duration', '1', '--port', '1'];
    const lab = ['--tmk-components', COMPONENTS.join(',')];
    const halfSources = await poskey([
      ...base,
      ...lab,
      '--mix',
      'realistic',
      '--reconcile-db',
      'sqlite:x.db',
    ]);
    assert.equal(halfSources.status, 2);
    assert.match(
      halfSources.stderr,
      /POSKEY_ERR_CLI_OPTION: --reconcile-db: give both --reconcile-db and --reconcile-ledger/,
    );
    const notADay = await poskey([
      ...base,
      ...lab,
      '--reconcile-db',
      'sqlite:x.db',
      '--reconcile-ledger',
      'l.db',
    ]);
    assert.equal(notADay.status, 2);
    assert.match(notADay.stderr, /--reconcile-db: reconciles a --mix realistic day/);
    const badMix = await poskey([...base, ...lab, '--mix', 'weekend']);
    assert.equal(badMix.status, 2);
    assert.match(badMix.stderr, /--mix/);
    const badSeed = await poskey([...base, ...lab, '--seed', '-4']);
    assert.equal(badSeed.status, 2);
    assert.match(badSeed.stderr, /--seed/);
  });
});
