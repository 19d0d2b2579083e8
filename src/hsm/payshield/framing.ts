/**
 * payShield host-command framing (research hsm.md §2):
 *
 *   [2-byte big-endian length] [header, configurable length, echoed back] [command, 2 chars] [fields]
 *
 * The response carries the same header, the response code (the command code with its second
 * character incremented: A0→A1, CA→CB, NC→ND, M8→M9), a 2-character error code, then fields.
 * Example (pythales README): `00 06 'SSSS' 'NC'` → `00 21 'SSSS' 'ND' '00' <16-hex KCV> '0007-E000'`.
 *
 * The length-prefix stream decoder is the generic one from src/iso8583/framing.ts (`binary2`).
 */
import { PoskeyError } from '../../errors.js';
import { encodeFrame, FrameDecoder } from '../../iso8583/framing.js';
import { HsmError } from '../errors.js';

/** Largest payload a 2-byte length can announce. */
export const PAYSHIELD_MAX_FRAME = 0xffff;

/** Header lengths accepted (payShield's configurable message header is 1–255 characters; 0 = none). */
export const MAX_HEADER_LENGTH = 255;

const COMMAND_RE = /^[A-Z0-9]{2}$/;
const ERROR_CODE_RE = /^[A-Z0-9]{2}$/;

export interface PayShieldCommand {
  /** The message header, echoed back in the response (latin1). */
  header: string;
  /** Two-character command code, e.g. 'NC'. */
  command: string;
  /** Everything after the command code: the command's fields, with any trailer. A fresh Buffer. */
  body: Buffer;
}

function frameError(reason: string, field: string, payShield?: string): HsmError {
  return new HsmError('POSKEY_ERR_PAYSHIELD_FRAME', reason, { field, payShield });
}

function assertHeaderLength(headerLength: number): void {
  if (!Number.isInteger(headerLength) || headerLength < 0 || headerLength > MAX_HEADER_LENGTH) {
    throw new HsmError('POSKEY_ERR_PAYSHIELD_HEADER', `header length must be 0 to ${MAX_HEADER_LENGTH}`, {
      field: 'headerLength',
      payShield: '51',
    });
  }
}

/**
 * Splits one frame payload (the bytes after the 2-byte length) into header, command and body.
 * @throws POSKEY_ERR_PAYSHIELD_HEADER for a header length outside 0..255,
 *   POSKEY_ERR_PAYSHIELD_FRAME when the payload is shorter than header + command,
 *   POSKEY_ERR_PAYSHIELD_COMMAND when the command code is not two upper-case letters/digits
 */
export function parseCommand(payload: Uint8Array, headerLength: number): PayShieldCommand {
  if (!(payload instanceof Uint8Array)) {
    throw new PoskeyError('POSKEY_ERR_TYPE', 'must be bytes', { field: 'payload' });
  }
  assertHeaderLength(headerLength);
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (buf.length < headerLength + 2) {
    throw frameError(
      `frame of ${buf.length} bytes is shorter than header (${headerLength}) + command (2)`,
      'payload',
      buf.length < headerLength ? '51' : '15',
    );
  }
  const header = buf.toString('latin1', 0, headerLength);
  const command = buf.toString('latin1', headerLength, headerLength + 2);
  if (!COMMAND_RE.test(command)) {
    throw new HsmError(
      'POSKEY_ERR_PAYSHIELD_COMMAND',
      'command code must be two upper-case letters or digits',
      {
        field: 'command',
        payShield: '15',
      },
    );
  }
  return { header, command, body: Buffer.from(buf.subarray(headerLength + 2)) };
}

/** The successor of an alphanumeric character in 0–9, A–Z, wrapping Z to 0. */
const ALPHANUMERIC = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/**
 * The response code of a command: its second character incremented. Letters and digits count in
 * one cycle 0…9 A…Z, so `9` → `A` and `Z` → `0`. We know of no payShield host command ending in
 * 9 or Z (its response would have no successor), so the wrap only decides what we answer to unknown
 * codes; it never maps a code onto itself.
 * @throws POSKEY_ERR_PAYSHIELD_COMMAND unless `command` is two upper-case letters or digits
 */
export function responseCode(command: string): string {
  if (typeof command !== 'string' || !COMMAND_RE.test(command)) {
    throw new HsmError(
      'POSKEY_ERR_PAYSHIELD_COMMAND',
      'command code must be two upper-case letters or digits',
      {
        field: 'command',
        payShield: '15',
      },
    );
  }
  const next = ALPHANUMERIC[(ALPHANUMERIC.indexOf(command[1]!) + 1) % ALPHANUMERIC.length]!;
  return command[0]! + next;
}

/**
 * Builds a response payload (without the 2-byte length; see `encodePayShieldFrame`):
 * header ‖ response code ‖ error code ‖ body.
 * @param header the request's header, echoed unchanged (latin1)
 * @param command the request's command code; the response code is derived from it
 * @param errorCode two characters, e.g. '00'
 * @param body response fields, bytes or a latin1 string
 * @throws POSKEY_ERR_PAYSHIELD_COMMAND, POSKEY_ERR_PAYSHIELD_HEADER for a header that is not
 *   latin1 or longer than 255, POSKEY_ERR_PAYSHIELD_ERROR_CODE for a malformed error code,
 *   POSKEY_ERR_PAYSHIELD_FRAME when the result would not fit a 2-byte length
 */
export function buildResponse(
  header: string,
  command: string,
  errorCode: string,
  body: Uint8Array | string = Buffer.alloc(0),
): Buffer {
  const code = responseCode(command);
  if (typeof header !== 'string' || header.length > MAX_HEADER_LENGTH || !/^[\x00-\xff]*$/.test(header)) {
    throw new HsmError('POSKEY_ERR_PAYSHIELD_HEADER', 'header must be at most 255 latin1 characters', {
      field: 'header',
      payShield: '51',
    });
  }
  if (typeof errorCode !== 'string' || !ERROR_CODE_RE.test(errorCode)) {
    throw new HsmError(
      'POSKEY_ERR_PAYSHIELD_ERROR_CODE',
      'error code must be two upper-case letters or digits',
      {
        field: 'errorCode',
        payShield: '41',
      },
    );
  }
  const fields = typeof body === 'string' ? Buffer.from(body, 'latin1') : Buffer.from(body);
  const out = Buffer.concat([Buffer.from(header + code + errorCode, 'latin1'), fields]);
  if (out.length > PAYSHIELD_MAX_FRAME) {
    throw frameError(`response of ${out.length} bytes exceeds ${PAYSHIELD_MAX_FRAME}`, 'body', '15');
  }
  return out;
}

/** Prefixes a payload with its 2-byte big-endian length. */
export function encodePayShieldFrame(payload: Uint8Array): Buffer {
  return encodeFrame(payload, { length: 'binary2', maxFrameSize: PAYSHIELD_MAX_FRAME });
}

/**
 * A push-based decoder for a payShield TCP stream: feed socket chunks, get whole payloads.
 * Zero-length frames are ignored (nothing to answer).
 * @param maxFrameSize payload limit, default and maximum 65535
 */
export function createPayShieldDecoder(maxFrameSize = PAYSHIELD_MAX_FRAME): FrameDecoder {
  return new FrameDecoder({ length: 'binary2', maxFrameSize, zeroLength: 'ignore' });
}
