/**
 * `npm run bench -- iso8583`: the ISO 8583 codec against the npm package `iso_8583` (2.6.7, the
 * peer of research perf.md §2.4), in one process, on a typical 0200 purchase carrying fields 2, 3,
 * 4, 11, 14, 22, 25, 35, 41, 42, 49, 52, 60 and 64, built once.
 *
 * Each side runs its own closest form of that message: poskey the unionpay-pos dialect (BCD
 * numerics, binary bitmap, no length prefix); the peer its default formats (ASCII numerics, always a
 * secondary bitmap, field 52 as 16 hex characters, field 64 as 8 characters) through the calls
 * perf.md used, `new iso8583(msg).getBufferMessage()` and `getIsoJSON(buf)`, which include its
 * 2-byte length. Both round trips are checked before timing so two correct codecs are compared.
 *
 * Targets (issue): ≥ 150,000 unpacks/s on one core; ≥ 6× the peer on unpack + modify + pack.
 * BENCH_MS sets the time per measurement (default 2000 ms; 8 measurements).
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { encodeFrame, FrameDecoder, parseTerminalEnvelope } from '../src/iso8583/framing.js';
import { getDialect, type IsoMessage, pack, unpack } from '../src/iso8583/index.js';
import { compare, header, measure, report } from './harness.js';

const UNPACK_TARGET = 150_000;
const ROUND_TRIP_RATIO_TARGET = 6;

/** The peer's message: field number → string, 0 = MTI. */
type PeerJson = Record<string, string>;
interface PeerMessage {
  getBufferMessage(): Buffer | { error: string };
  getIsoJSON(buf: Buffer): PeerJson | { error: string };
}
type PeerConstructor = new (json?: PeerJson) => PeerMessage;

// iso_8583 is CommonJS without type declarations; it is a devDependency used only here.
const Iso8583Peer = createRequire(import.meta.url)('iso_8583') as PeerConstructor;

const PAN = '6225881234567890123';
const TYPICAL_0200 = {
  0: '0200',
  2: PAN,
  3: '000000',
  4: '000000012345',
  11: '000123',
  14: '2512',
  22: '021',
  25: '00',
  35: `${PAN}=25122011234567890`,
  41: '12345678',
  42: '123456789012345',
  49: '156',
  52: '0123456789ABCDEF',
  60: { 1: '22', 2: '000001', 3: '000', 4: '5', 5: '0' },
  64: '0123456789ABCDEF',
} as IsoMessage;

const PEER_0200: PeerJson = {
  0: '0200',
  2: PAN,
  3: '000000',
  4: '000000012345',
  11: '000123',
  14: '2512',
  22: '021',
  25: '00',
  35: `${PAN}D25122011234567890`,
  41: '12345678',
  42: '123456789012345',
  49: '156',
  52: '0123456789ABCDEF',
  60: '2200000100050',
  // The peer's default field 64 is 8 characters.
  64: '0123ABCD',
};

/** STANs to write in the modify step, precomputed so neither side pays for formatting them. */
const STANS = Array.from({ length: 1024 }, (_, i) => String(100000 + i));

function peerPack(json: PeerJson): Buffer {
  const out = new Iso8583Peer(json).getBufferMessage();
  if (!Buffer.isBuffer(out)) throw new Error(`iso_8583 pack failed: ${out.error}`);
  return out;
}

function peerUnpack(buf: Buffer): PeerJson {
  const out = new Iso8583Peer().getIsoJSON(buf);
  if ('error' in out && typeof out.error === 'string')
    throw new Error(`iso_8583 unpack failed: ${out.error}`);
  return out as PeerJson;
}

export async function run(): Promise<void> {
  header('ISO 8583: typical 0200 (fields 2 3 4 11 14 22 25 35 41 42 49 52 60 64)');
  const d = getDialect('unionpay-pos');
  const body = pack(d, TYPICAL_0200);
  const peerBuf = peerPack(PEER_0200);

  // Both codecs must round-trip their message before anything is timed.
  assert.deepEqual(unpack(d, body), TYPICAL_0200);
  assert.ok(pack(d, unpack(d, body)).equals(body));
  const peerBack = peerUnpack(peerBuf);
  for (const [k, v] of Object.entries(PEER_0200))
    assert.equal(String(peerBack[k]).toUpperCase(), v.toUpperCase(), `peer field ${k}`);
  assert.ok(peerPack(peerBack).equals(peerBuf));
  console.log(
    `message: poskey unionpay-pos ${body.length} B (BCD, binary bitmap); iso_8583 ${peerBuf.length} B incl. its 2-byte length` +
      ' (ASCII numerics, secondary bitmap, F52 as hex text, F64 8 chars)',
  );

  let i = 0;
  const ours = {
    unpack: measure('poskey unpack', () => unpack(d, body)),
    pack: measure('poskey pack', () => pack(d, TYPICAL_0200)),
    roundTrip: measure('poskey unpack + modify F11 + pack', () => {
      const m = unpack(d, body);
      m[11] = STANS[i++ & 1023]!;
      return pack(d, m);
    }),
  };
  const peer = {
    unpack: measure('iso_8583 unpack (getIsoJSON)', () => peerUnpack(peerBuf)),
    pack: measure('iso_8583 pack (getBufferMessage)', () => peerPack(PEER_0200)),
    roundTrip: measure('iso_8583 unpack + modify F11 + pack', () => {
      const m = peerUnpack(peerBuf);
      m[11] = STANS[i++ & 1023]!;
      return peerPack(m);
    }),
  };

  compare(ours.unpack, peer.unpack, UNPACK_TARGET);
  compare(ours.pack, peer.pack);
  compare(ours.roundTrip, peer.roundTrip);
  const ratio = ours.roundTrip.opsPerSec / peer.roundTrip.opsPerSec;
  console.log(
    `${'  round-trip target'.padEnd(52)} ≥ ${ROUND_TRIP_RATIO_TARGET}x the peer: ${ratio >= ROUND_TRIP_RATIO_TARGET ? 'met' : 'NOT MET'} (${ratio.toFixed(2)}x)`,
  );

  // For context, not compared: a whole terminal frame off the socket (length, TPDU, header, body).
  const wire = encodeFrame(Buffer.concat([Buffer.from('6000030000603100311001', 'hex'), body]));
  const decoder = new FrameDecoder();
  report(
    measure('poskey frame → message (decoder+TPDU+header+unpack)', () => {
      const [payload] = decoder.push(wire);
      return unpack(d, parseTerminalEnvelope(payload!).body);
    }),
  );
}
