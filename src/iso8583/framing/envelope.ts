/**
 * The layers inside a terminal-side frame payload (research iso8583.md §1.1, §2.1):
 *
 *   TPDU (5)  `60` + destination (2) + source (2); the host swaps the addresses in its reply
 *   LRI (33)  optional, dial-up only: `4C 52 49 00 1C` + 28 bytes, added by the NAC
 *   header (6) 12 BCD digits: app type n2, version n2, terminal status n1,
 *             processing requirement n1, sub-version n6
 *   body      the ISO 8583 message, MTI first
 *
 * Parsers return views into the payload (no copies); builders return fresh Buffers.
 */
import { asBuffer, FrameError, type FrameLayer } from './errors.js';

export const TPDU_ID = 0x60;
export const TPDU_LENGTH = 5;
export const TERMINAL_HEADER_LENGTH = 6;
/** `L` `R` `I`, then a 2-byte length (28) of what follows. */
export const LRI_MAGIC: readonly number[] = Object.freeze([0x4c, 0x52, 0x49]);
export const LRI_LENGTH = 33;

export interface Tpdu {
  /** Always 0x60. */
  readonly id: number;
  /** Destination address, 0–0xFFFF (often an NII such as 0x0003). */
  readonly destination: number;
  /** Source address, 0–0xFFFF. */
  readonly source: number;
}

/**
 * The 6-byte terminal header. Digit strings keep their leading zeros; they are read as nibbles, so an
 * acquirer's non-decimal nibble survives a parse/build round trip instead of failing the frame.
 */
export interface TerminalHeader {
  /** n2: `60` magstripe POS app, `61` IC card app. */
  readonly appType: string;
  /** n2: software master version, e.g. `31`. */
  readonly version: string;
  /** n1: 0 = normal. */
  readonly terminalStatus: number;
  /**
   * n1, set by the host in replies: 0 none, 1 download terminal parameters, 2 upload terminal
   * status, 3 sign in again, 4 update IC public keys, 5 download IC parameters, 6 TMS download
   * (9 contactless parameters at some acquirers).
   */
  readonly processingRequirement: number;
  /** n6: software sub-version. */
  readonly subVersion: string;
}

export const PROCESSING_REQUIREMENTS: Readonly<Record<number, string>> = Object.freeze({
  0: 'none',
  1: 'download terminal parameters',
  2: 'upload terminal status',
  3: 're-sign-in',
  4: 'update IC public keys',
  5: 'download IC parameters',
  6: 'TMS parameter download',
  9: 'download contactless parameters',
});

export interface TerminalEnvelope {
  tpdu: Tpdu;
  /** The 33-byte dial-up LRI, when present. */
  lri?: Buffer;
  header: TerminalHeader;
  /** The ISO 8583 message (MTI first). */
  body: Buffer;
}

/** How the parser treats a dial-up LRI after the TPDU: detect it, refuse it, or insist on it. */
export type LriMode = 'auto' | 'never' | 'require';

function fail(code: string, layer: FrameLayer, offset: number, reason: string): never {
  throw new FrameError(code, layer, offset, reason);
}

function needBytes(buf: Buffer, offset: number, length: number, layer: FrameLayer): void {
  if (buf.length < offset + length) {
    fail(
      'POSKEY_ERR_FRAME_TRUNCATED',
      layer,
      offset,
      `${layer} needs ${length} bytes, payload has ${Math.max(0, buf.length - offset)} left`,
    );
  }
}

function checkAddress(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffff) {
    fail('POSKEY_ERR_FRAME_TPDU', 'tpdu', 0, `${name} must be an integer from 0 to 0xFFFF`);
  }
  return value;
}

/** Reads the TPDU at `offset`; throws POSKEY_ERR_FRAME_TPDU unless it starts with 0x60. */
export function parseTpdu(payload: Uint8Array, offset = 0): Tpdu {
  const buf = asBuffer(payload, 'payload');
  needBytes(buf, offset, TPDU_LENGTH, 'tpdu');
  const id = buf[offset]!;
  if (id !== TPDU_ID) {
    fail('POSKEY_ERR_FRAME_TPDU', 'tpdu', offset, `TPDU id is 0x${hex2(id)}, expected 0x60`);
  }
  return { id, destination: buf.readUInt16BE(offset + 1), source: buf.readUInt16BE(offset + 3) };
}

/** The 5 TPDU bytes. */
export function encodeTpdu(tpdu: Tpdu): Buffer {
  if ((tpdu.id ?? TPDU_ID) !== TPDU_ID) fail('POSKEY_ERR_FRAME_TPDU', 'tpdu', 0, 'TPDU id must be 0x60');
  const out = Buffer.allocUnsafe(TPDU_LENGTH);
  out[0] = TPDU_ID;
  out.writeUInt16BE(checkAddress(tpdu.destination, 'destination'), 1);
  out.writeUInt16BE(checkAddress(tpdu.source, 'source'), 3);
  return out;
}

/** The TPDU a reply carries: destination and source swapped. */
export function replyTpdu(tpdu: Tpdu): Tpdu {
  return { id: tpdu.id, destination: tpdu.source, source: tpdu.destination };
}

const hex2 = (b: number) => b.toString(16).padStart(2, '0').toUpperCase();

/** Byte → two upper-case hex characters (header digits are read on every frame). */
const HEX_PAIR: readonly string[] = Array.from({ length: 256 }, (_, b) => hex2(b));

function nibbles(buf: Buffer, offset: number, count: number): string {
  let s = '';
  for (let i = 0; i < count / 2; i++) s += HEX_PAIR[buf[offset + i]!]!;
  return s;
}

/** Reads the 6-byte header at `offset`. */
export function parseTerminalHeader(payload: Uint8Array, offset = 0): TerminalHeader {
  const buf = asBuffer(payload, 'payload');
  needBytes(buf, offset, TERMINAL_HEADER_LENGTH, 'header');
  const status = buf[offset + 2]!;
  return {
    appType: nibbles(buf, offset, 2),
    version: nibbles(buf, offset + 1, 2),
    terminalStatus: status >> 4,
    processingRequirement: status & 0x0f,
    subVersion: nibbles(buf, offset + 3, 6),
  };
}

function digits(value: unknown, count: number, name: string): string {
  if (typeof value !== 'string' || value.length !== count || !/^[0-9A-Fa-f]+$/.test(value)) {
    fail('POSKEY_ERR_FRAME_HEADER', 'header', 0, `${name} must be ${count} digits`);
  }
  return value;
}

function nibble(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 15) {
    fail('POSKEY_ERR_FRAME_HEADER', 'header', 0, `${name} must be an integer from 0 to 15`);
  }
  return value;
}

/** The 6 header bytes. */
export function encodeTerminalHeader(header: TerminalHeader): Buffer {
  const text =
    digits(header.appType, 2, 'appType') +
    digits(header.version, 2, 'version') +
    nibble(header.terminalStatus, 'terminalStatus').toString(16) +
    nibble(header.processingRequirement, 'processingRequirement').toString(16) +
    digits(header.subVersion, 6, 'subVersion');
  return Buffer.from(text, 'hex');
}

/** A copy of `header` with the processing-requirement nibble set (the host's instruction to the terminal). */
export function setProcessingRequirement(header: TerminalHeader, value: number): TerminalHeader {
  return { ...header, processingRequirement: nibble(value, 'processingRequirement') };
}

/** True when an LRI starts at `offset` (its `LRI` magic is there). */
export function hasLri(payload: Uint8Array, offset = TPDU_LENGTH): boolean {
  return (
    payload.length >= offset + 3 &&
    payload[offset] === LRI_MAGIC[0] &&
    payload[offset + 1] === LRI_MAGIC[1] &&
    payload[offset + 2] === LRI_MAGIC[2]
  );
}

function checkLri(buf: Buffer, offset: number): void {
  if (!hasLri(buf, offset))
    fail('POSKEY_ERR_FRAME_LRI', 'lri', offset, 'no LRI (4C 52 49) where one is required');
  needBytes(buf, offset, 5, 'lri');
  if (buf.readUInt16BE(offset + 3) !== LRI_LENGTH - 5) {
    fail('POSKEY_ERR_FRAME_LRI', 'lri', offset, `LRI length word must be 00 1C (${LRI_LENGTH} bytes in all)`);
  }
  needBytes(buf, offset, LRI_LENGTH, 'lri');
}

/**
 * Splits a terminal frame payload into TPDU, optional LRI, header and body.
 * @throws FrameError POSKEY_ERR_FRAME_TPDU, _LRI, _TRUNCATED (with the layer and offset).
 */
export function parseTerminalEnvelope(
  payload: Uint8Array,
  options: { lri?: LriMode } = {},
): TerminalEnvelope {
  const buf = asBuffer(payload, 'payload');
  const tpdu = parseTpdu(buf, 0);
  let offset = TPDU_LENGTH;
  const mode = options.lri ?? 'auto';
  let lri: Buffer | undefined;
  if (mode === 'require' || (mode === 'auto' && hasLri(buf, offset))) {
    checkLri(buf, offset);
    lri = buf.subarray(offset, offset + LRI_LENGTH);
    offset += LRI_LENGTH;
  }
  const header = parseTerminalHeader(buf, offset);
  offset += TERMINAL_HEADER_LENGTH;
  const envelope: TerminalEnvelope = { tpdu, header, body: buf.subarray(offset) };
  if (lri) envelope.lri = lri;
  return envelope;
}

/** Joins TPDU, optional LRI, header and body into a frame payload (without the length prefix). */
export function buildTerminalEnvelope(parts: TerminalEnvelope): Buffer {
  const body = asBuffer(parts.body, 'body');
  const pieces = [encodeTpdu(parts.tpdu)];
  if (parts.lri !== undefined) {
    const lri = asBuffer(parts.lri, 'lri');
    checkLri(lri, 0);
    pieces.push(lri);
  }
  pieces.push(encodeTerminalHeader(parts.header), body);
  return Buffer.concat(pieces);
}

/**
 * The envelope of the host's reply to `request`: TPDU swapped, header echoed with the processing
 * requirement set (default: the request's). No LRI: the caller adds one if its NAC wants it back.
 */
export function replyEnvelope(
  request: Pick<TerminalEnvelope, 'tpdu' | 'header'>,
  body: Uint8Array,
  options: { processingRequirement?: number } = {},
): TerminalEnvelope {
  const header =
    options.processingRequirement === undefined
      ? request.header
      : setProcessingRequirement(request.header, options.processingRequirement);
  return { tpdu: replyTpdu(request.tpdu), header, body: asBuffer(body, 'body') };
}
