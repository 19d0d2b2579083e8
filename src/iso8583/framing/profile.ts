/**
 * A framing profile is the whole wire layout of one link, as data the host configures: the length
 * prefix, the size limit, the zero-length policy, and which layers sit in front of the ISO body.
 *
 *  - `terminal`: 2-byte big-endian length + TPDU + (optional LRI) + 6-byte header (§1.1).
 *  - `network` (default for the network side): 2-byte big-endian length and the body right after it,
 *    which is what Wireshark's ISO 8583 dissector expects (MTI at offset 2, research §5).
 *  - `cups`: 4 ASCII digits of length (`0000` = heartbeat) + a 46-byte header kept as opaque bytes (§2.10).
 */
import {
  encodeFrame,
  FrameDecoder,
  type FrameDecoderOptions,
  resolveFrameOptions,
  type ZeroLengthPolicy,
} from './decoder.js';
import {
  buildTerminalEnvelope,
  LRI_LENGTH,
  type LriMode,
  parseTerminalEnvelope,
  TERMINAL_HEADER_LENGTH,
  type TerminalHeader,
  TPDU_ID,
  TPDU_LENGTH,
  type Tpdu,
} from './envelope.js';
import { asBuffer, FrameError } from './errors.js';
import type { LengthPrefixKind } from './length.js';
import { lengthPrefix } from './length.js';

/** The layers between the length prefix and the ISO body. */
export type HeaderLayout =
  | { readonly kind: 'none' }
  /** TPDU, optional LRI, 6-byte BCD header. */
  | { readonly kind: 'terminal'; readonly lri: LriMode }
  /** A fixed-size header the codec does not interpret (e.g. the CUPS 46-byte header). */
  | { readonly kind: 'opaque'; readonly length: number };

export interface FramingProfile {
  readonly name: string;
  readonly length: LengthPrefixKind;
  readonly maxFrameSize: number;
  readonly zeroLength: ZeroLengthPolicy;
  readonly header: HeaderLayout;
}

/** Every layer of one frame; present layers depend on the profile. */
export interface Envelope {
  tpdu?: Tpdu;
  lri?: Buffer;
  header?: TerminalHeader;
  /** The opaque header of an `opaque` layout. */
  rawHeader?: Buffer;
  body: Buffer;
}

const PROFILE_KEYS = ['name', 'length', 'maxFrameSize', 'zeroLength', 'header'];

function optionError(reason: string): FrameError {
  return new FrameError('POSKEY_ERR_FRAME_OPTION', 'options', 0, reason);
}

function checkHeader(header: unknown): HeaderLayout {
  const h = header as Record<string, unknown> | undefined;
  if (h === undefined) return Object.freeze({ kind: 'none' });
  if (h === null || typeof h !== 'object') throw optionError('header must be an object with a kind');
  const keys = Object.keys(h);
  const allow = (names: string[]) => {
    const extra = keys.filter((k) => !names.includes(k));
    if (extra.length) throw optionError(`header has unknown option(s) ${extra.join(', ')}`);
  };
  switch (h.kind) {
    case 'none':
      allow(['kind']);
      return Object.freeze({ kind: 'none' });
    case 'terminal': {
      allow(['kind', 'lri']);
      const lri = (h.lri ?? 'auto') as LriMode;
      if (!['auto', 'never', 'require'].includes(lri))
        throw optionError('header.lri must be auto, never or require');
      return Object.freeze({ kind: 'terminal', lri });
    }
    case 'opaque': {
      allow(['kind', 'length']);
      const n = h.length;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1024) {
        throw optionError('header.length must be an integer from 1 to 1024');
      }
      return Object.freeze({ kind: 'opaque', length: n });
    }
    default:
      throw optionError('header.kind must be none, terminal or opaque');
  }
}

/**
 * Validates a profile (defaults from `base`, no unknown keys) and freezes it.
 * @throws FrameError POSKEY_ERR_FRAME_OPTION naming the bad option.
 */
export function defineFramingProfile(
  options: Partial<FramingProfile> & { name: string },
  base: FramingProfile = NETWORK_PROFILE,
): FramingProfile {
  if (options === null || typeof options !== 'object') throw optionError('profile must be an object');
  const extra = Object.keys(options).filter((k) => !PROFILE_KEYS.includes(k));
  if (extra.length) throw optionError(`unknown profile option(s) ${extra.join(', ')}`);
  if (typeof options.name !== 'string' || options.name.length === 0)
    throw optionError('name must be a non-empty string');
  const length = options.length ?? base.length;
  const prefix = lengthPrefix(length);
  // A base's limit may not fit a narrower prefix; then default to the prefix's own bound.
  const inherited = prefix && base.maxFrameSize > prefix.max ? prefix.max : base.maxFrameSize;
  const resolved = resolveFrameOptions({
    length,
    maxFrameSize: options.maxFrameSize ?? inherited,
    zeroLength: options.zeroLength ?? base.zeroLength,
  });
  return Object.freeze({
    name: options.name,
    length: resolved.prefix.kind,
    maxFrameSize: resolved.maxFrameSize,
    zeroLength: resolved.zeroLength,
    header: checkHeader(options.header ?? base.header),
  });
}

export const NETWORK_PROFILE: FramingProfile = Object.freeze({
  name: 'network',
  length: 'binary2',
  maxFrameSize: 8192,
  zeroLength: 'ignore',
  header: Object.freeze({ kind: 'none' }),
});

export const TERMINAL_PROFILE: FramingProfile = defineFramingProfile({
  name: 'terminal',
  header: { kind: 'terminal', lri: 'auto' },
});

/** The CUPS-style acquirer link: `0000` heartbeats are emitted as empty payloads so the host can answer them. */
export const CUPS_PROFILE: FramingProfile = defineFramingProfile({
  name: 'cups',
  length: 'ascii4',
  zeroLength: 'emit',
  header: { kind: 'opaque', length: 46 },
});

/** The built-in profiles by name. */
export const FRAMING_PROFILES: Readonly<Record<string, FramingProfile>> = Object.freeze({
  terminal: TERMINAL_PROFILE,
  network: NETWORK_PROFILE,
  cups: CUPS_PROFILE,
});

/** A decoder configured from the profile's length prefix, limit and zero-length policy. */
export function createFrameDecoder(profile: FramingProfile): FrameDecoder {
  return new FrameDecoder(profile as FrameDecoderOptions);
}

/**
 * Splits a frame payload (after the length prefix) into its layers.
 * @throws FrameError POSKEY_ERR_FRAME_TPDU, _LRI, _TRUNCATED
 */
export function parseEnvelope(payload: Uint8Array, profile: FramingProfile): Envelope {
  const buf = asBuffer(payload, 'payload');
  const layout = profile.header;
  if (layout.kind === 'none') return { body: buf };
  if (layout.kind === 'terminal') return parseTerminalEnvelope(buf, { lri: layout.lri });
  if (buf.length < layout.length) {
    throw new FrameError(
      'POSKEY_ERR_FRAME_TRUNCATED',
      'header',
      0,
      `header needs ${layout.length} bytes, payload has ${buf.length}`,
    );
  }
  return { rawHeader: buf.subarray(0, layout.length), body: buf.subarray(layout.length) };
}

/** Joins the layers the profile calls for into a frame payload (without the length prefix). */
export function buildEnvelope(parts: Envelope, profile: FramingProfile): Buffer {
  const body = asBuffer(parts.body, 'body');
  const layout = profile.header;
  if (layout.kind === 'none') return Buffer.from(body);
  if (layout.kind === 'terminal') {
    if (parts.tpdu === undefined || parts.header === undefined) {
      throw optionError(`profile ${profile.name} needs a tpdu and a header`);
    }
    if (layout.lri === 'never' && parts.lri)
      throw optionError(`profile ${profile.name} does not allow an LRI`);
    if (layout.lri === 'require' && !parts.lri) throw optionError(`profile ${profile.name} requires an LRI`);
    return buildTerminalEnvelope({ ...parts, tpdu: parts.tpdu, header: parts.header, body });
  }
  const raw = asBuffer(parts.rawHeader, 'rawHeader');
  if (raw.length !== layout.length) {
    throw new FrameError(
      'POSKEY_ERR_FRAME_HEADER',
      'header',
      0,
      `header must be ${layout.length} bytes, got ${raw.length}`,
    );
  }
  return Buffer.concat([raw, body]);
}

/** Length prefix + envelope: the bytes to write to the socket. */
export function buildFrame(parts: Envelope, profile: FramingProfile): Buffer {
  return encodeFrame(buildEnvelope(parts, profile), profile);
}

/**
 * Parses exactly one complete frame held in memory (a capture, a file, a test vector).
 * @throws FrameError POSKEY_ERR_FRAME_TRUNCATED when short, POSKEY_ERR_FRAME_TRAILING when bytes follow
 *   it, and every decoder and envelope error.
 */
export function parseFrame(frame: Uint8Array, profile: FramingProfile): Envelope {
  const buf = asBuffer(frame, 'frame');
  const decoder = createFrameDecoder({ ...profile, zeroLength: 'emit' });
  const payloads = decoder.push(buf);
  if (payloads.length === 0) {
    decoder.end();
    throw new FrameError('POSKEY_ERR_FRAME_TRUNCATED', 'length', 0, 'no frame in 0 bytes');
  }
  const size = lengthPrefix(profile.length)!.size;
  const used = size + payloads[0]!.length;
  if (payloads.length > 1 || used !== buf.length) {
    throw new FrameError(
      'POSKEY_ERR_FRAME_TRAILING',
      'length',
      used,
      `${buf.length - used} bytes follow the frame`,
    );
  }
  return parseEnvelope(payloads[0]!, profile);
}

/** True when two bytes at `at` read as a BCD MTI (`0x0v 0xvv`, version digit first). */
function bcdMtiAt(frame: Uint8Array, at: number): boolean {
  const a = frame[at];
  const b = frame[at + 1];
  return a !== undefined && b !== undefined && a <= 0x09 && b >> 4 <= 9 && (b & 0x0f) <= 9;
}

/**
 * Guesses the framing of a captured frame, in this order:
 *  1. a 2-byte binary or 4-digit ASCII length that matches the data exactly (then a TPDU right
 *     after it means terminal framing);
 *  2. a TPDU (0x60) at offset 0, which can never start a BCD or ASCII MTI: a terminal payload;
 *  3. a TPDU at offset 2 and a BCD MTI where the header ends (offset 13, or 46 after an LRI): a
 *     terminal frame whose length does not match, so `parseFrame` reports it truncated or long.
 * Anything else is taken as a bare network-side body. Returns the profile and whether the bytes
 * carry the length prefix.
 */
export function detectFraming(frame: Uint8Array): { profile: FramingProfile; prefixed: boolean } {
  const n = frame.length;
  if (n >= 2 && ((frame[0]! << 8) | frame[1]!) === n - 2) {
    return { profile: frame[2] === TPDU_ID ? TERMINAL_PROFILE : NETWORK_PROFILE, prefixed: true };
  }
  if (n >= 4 && /^\d{4}$/.test(Buffer.from(frame.subarray(0, 4)).toString('latin1'))) {
    const announced = Number(Buffer.from(frame.subarray(0, 4)).toString('latin1'));
    if (announced === n - 4) return { profile: CUPS_PROFILE, prefixed: true };
  }
  if (frame[0] === TPDU_ID) return { profile: TERMINAL_PROFILE, prefixed: false };
  const headerEnd = 2 + TPDU_LENGTH + TERMINAL_HEADER_LENGTH;
  if (frame[2] === TPDU_ID && (bcdMtiAt(frame, headerEnd) || bcdMtiAt(frame, headerEnd + LRI_LENGTH))) {
    return { profile: TERMINAL_PROFILE, prefixed: true };
  }
  return { profile: NETWORK_PROFILE, prefixed: false };
}
