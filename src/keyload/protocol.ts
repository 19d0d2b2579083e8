/**
 * The key-loading protocol between poskey (the key loading device, "master POS", 母POS) and a
 * terminal's PIN pad ("child POS", 子POS) over a serial line or TCP. Spec: docs/key-injection.md.
 *
 * Frame: STX | type | seq | length (2 bytes, big-endian) | payload | ETX | LRC
 *   - length-delimited, so the payload needs no escaping; ETX after the declared length and the
 *     LRC (XOR of every byte from `type` through ETX) reject a frame cut or shifted by line noise,
 *     and the decoder resynchronises on the next STX.
 *   - a receiver answers each good frame with one ACK byte (06) and a bad one with NAK (15); both
 *     stand outside frames. The sender resends on NAK or silence (see transport.ts `Link`).
 *   - `seq` lets the device recognise a resent request and replay its answer instead of acting
 *     twice; an answer carries the seq of its request.
 * Payload: TLV fields (tag 1 byte, length 2 bytes, value); see FIELD_TAGS.
 *
 * Mutual authentication proves that both ends hold the same transport KBPK (the key the PIN pad
 * received at manufacture) without any key on the wire: each side MACs both nonces with an
 * authentication key derived from the KBPK (CMAC, NIST SP 800-108 counter KDF), the device first.
 * The TMK then travels as a TR-31 key block under the KBPK; KEY_LOADED and BIND carry MACs over
 * the session nonces too, so a confirmation cannot be replayed or forged on the line.
 */

import { constantTimeEqual } from '../crypto/bytes.js';
import { createKey, type KeyHandle } from '../crypto/cipher.js';
import { cmac, cmacCounterKdf } from '../crypto/cmac.js';
import { checkValue } from '../crypto/kcv.js';
import { PoskeyError } from '../errors.js';

export const STX = 0x02;
export const ETX = 0x03;
export const ACK = 0x06;
export const NAK = 0x15;
/** Largest payload accepted: a TR-31 TMK block is under 200 characters, a device certificate a few KB. */
export const MAX_PAYLOAD = 8192;
/** Frame bytes around the payload: STX, type, seq, 2 length bytes, ETX, LRC. */
export const FRAME_OVERHEAD = 7;
/** The protocol version this implementation speaks (HELLO / DEVICE_INFO `version`). */
export const PROTOCOL_VERSION = 1;
/** Authentication by the shared transport KBPK: CMAC over both nonces under a KBPK-derived key. */
export const AUTH_METHOD_KBPK = 'kbpk-cmac';
/**
 * Authentication by certificates of one vendor CA: each side signs both nonces and both
 * certificates' hashes with its RSA key; the TMK then travels as a TR-34 token (cert-auth.ts).
 */
export const AUTH_METHOD_CERT = 'cert-rsa';
/** Nonce length of each side, bytes. */
export const NONCE_BYTES = 16;

/** Keyload failures. Every code has a negative test in test/keyload. */
export const KeyloadErrorCode = Object.freeze({
  /** An option or input is invalid (TID, slot, port name, tolerance…). */
  OPTION: 'POSKEY_ERR_KEYLOAD_OPTION',
  /** The serial driver (`serialport` native binding) cannot be loaded on this platform. */
  SERIAL_DRIVER: 'POSKEY_ERR_KEYLOAD_SERIAL_DRIVER',
  /** No such serial port. */
  PORT_NOT_FOUND: 'POSKEY_ERR_KEYLOAD_PORT_NOT_FOUND',
  /** The port exists but this user may not open it (dialout group). */
  PORT_PERMISSION: 'POSKEY_ERR_KEYLOAD_PORT_PERMISSION',
  /** Another program holds the port. */
  PORT_BUSY: 'POSKEY_ERR_KEYLOAD_PORT_BUSY',
  /** The port could not be opened for another reason. */
  PORT_OPEN: 'POSKEY_ERR_KEYLOAD_PORT_OPEN',
  /** TCP connection to a key-loading port failed. */
  CONNECT: 'POSKEY_ERR_KEYLOAD_CONNECT',
  /** Nothing came back at all: wrong port, cable, baud rate, or the device is off or hung. */
  SILENT: 'POSKEY_ERR_KEYLOAD_SILENT',
  /** Bytes arrive but never form a frame: baud rate or line settings differ, or the line is noisy. */
  GARBLED: 'POSKEY_ERR_KEYLOAD_GARBLED',
  /** Something answered in another protocol or protocol version: wrong device or brand. */
  WRONG_PROTOCOL: 'POSKEY_ERR_KEYLOAD_WRONG_PROTOCOL',
  /** A frame cannot be built (payload too large). */
  FRAME: 'POSKEY_ERR_KEYLOAD_FRAME',
  /** A message is malformed or not the expected answer. */
  MESSAGE: 'POSKEY_ERR_KEYLOAD_MESSAGE',
  /** The device stopped answering in the middle of a session. */
  TIMEOUT: 'POSKEY_ERR_KEYLOAD_TIMEOUT',
  /** The link was closed. */
  CLOSED: 'POSKEY_ERR_KEYLOAD_CLOSED',
  /** The device refused a request for a reason without a code of its own. */
  DEVICE: 'POSKEY_ERR_KEYLOAD_DEVICE',
  /** Mutual authentication failed: the device and poskey hold different transport keys. */
  AUTH: 'POSKEY_ERR_KEYLOAD_AUTH',
  /** The device is in its tamper ("security attack") state. */
  TAMPERED: 'POSKEY_ERR_KEYLOAD_TAMPERED',
  /** The terminal's applications were installed in the wrong order. */
  APP_ORDER: 'POSKEY_ERR_KEYLOAD_APP_ORDER',
  /** A required application is not installed. */
  APP_MISSING: 'POSKEY_ERR_KEYLOAD_APP_MISSING',
  /** The PC's clock and the device's differ beyond the tolerance. */
  CLOCK_SKEW: 'POSKEY_ERR_KEYLOAD_CLOCK_SKEW',
  /** The device certificate is outside its validity period (or unreadable). */
  CERTIFICATE: 'POSKEY_ERR_KEYLOAD_CERTIFICATE',
  /** The device's check value of the loaded key differs from the HSM's. */
  KCV_MISMATCH: 'POSKEY_ERR_KEYLOAD_KCV_MISMATCH',
  /** The device could not open or use the TR-31 key block. */
  KEY_BLOCK: 'POSKEY_ERR_KEYLOAD_KEY_BLOCK',
  /** The TID is bound to another device serial in the registry. */
  SERIAL_MISMATCH: 'POSKEY_ERR_KEYLOAD_SERIAL_MISMATCH',
  /** The registry does not know the TID, or cannot be read or written. */
  REGISTRY: 'POSKEY_ERR_KEYLOAD_REGISTRY',
  /** The HSM refused or could not be reached. */
  HSM: 'POSKEY_ERR_KEYLOAD_HSM',
  /** The audit record of an injection could not be written. */
  AUDIT: 'POSKEY_ERR_KEYLOAD_AUDIT',
  /** A bulk ports file is malformed. */
  BULK_FILE: 'POSKEY_ERR_KEYLOAD_BULK_FILE',
  /** cert-rsa: a certificate is not issued by the trusted vendor CA, or has the wrong role. */
  CERT_UNTRUSTED: 'POSKEY_ERR_KEYLOAD_CERT_UNTRUSTED',
  /** cert-rsa: a certificate is expired or not yet valid (at the checking side's clock). */
  CERT_VALIDITY: 'POSKEY_ERR_KEYLOAD_CERT_VALIDITY',
  /** cert-rsa: a signature proof (authentication, KEY_LOADED, BIND, TR-34 token) does not verify. */
  CERT_SIGNATURE: 'POSKEY_ERR_KEYLOAD_CERT_SIGNATURE',
  /** An answer is bound to another nonce than this session's (replayed or for another session). */
  NONCE: 'POSKEY_ERR_KEYLOAD_NONCE',
});

export type KeyloadErrorCodeValue = (typeof KeyloadErrorCode)[keyof typeof KeyloadErrorCode];

export class KeyloadError extends PoskeyError {}

export function keyloadError(
  code: KeyloadErrorCodeValue,
  reason: string,
  field?: string,
  cause?: unknown,
): KeyloadError {
  return new KeyloadError(code, reason, { field, cause });
}

// ---------------------------------------------------------------------------------------------
// Frames

/** Message type codes: requests (poskey → device) 0x1n, answers (device → poskey) 0x9n. */
export const MESSAGE_TYPES = Object.freeze({
  HELLO: 0x11,
  DEVICE_INFO: 0x91,
  AUTH_CHALLENGE: 0x12,
  AUTH_RESPONSE: 0x92,
  AUTH_CONFIRM: 0x13,
  AUTH_OK: 0x93,
  LOAD_KEY: 0x14,
  KEY_LOADED: 0x94,
  BIND: 0x15,
  BIND_ACK: 0x95,
  ERROR: 0xee,
});

export type MessageType = keyof typeof MESSAGE_TYPES;

const TYPE_NAMES = new Map<number, MessageType>(
  Object.entries(MESSAGE_TYPES).map(([name, code]) => [code, name as MessageType]),
);

export interface Frame {
  type: number;
  seq: number;
  payload: Buffer;
}

/** XOR of all bytes: the longitudinal redundancy check of the frame. */
export function lrc(bytes: Uint8Array): number {
  let x = 0;
  for (const b of bytes) x ^= b;
  return x;
}

/**
 * Builds a frame.
 * @throws POSKEY_ERR_KEYLOAD_FRAME for a payload over MAX_PAYLOAD or a type/seq outside a byte
 */
export function encodeFrame(type: number, seq: number, payload: Uint8Array): Buffer {
  for (const [v, name] of [
    [type, 'type'],
    [seq, 'seq'],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 255)
      throw keyloadError(KeyloadErrorCode.FRAME, 'must be a byte', name);
  }
  if (payload.length > MAX_PAYLOAD) {
    throw keyloadError(
      KeyloadErrorCode.FRAME,
      `payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`,
      'payload',
    );
  }
  const out = Buffer.alloc(payload.length + FRAME_OVERHEAD);
  out[0] = STX;
  out[1] = type;
  out[2] = seq;
  out.writeUInt16BE(payload.length, 3);
  out.set(payload, 5);
  out[5 + payload.length] = ETX;
  out[6 + payload.length] = lrc(out.subarray(1, 6 + payload.length));
  return out;
}

/** What the decoder found in the byte stream. */
export type FrameEvent =
  | { kind: 'frame'; frame: Frame }
  | { kind: 'ack' }
  | { kind: 'nak' }
  /** A frame whose LRC or ETX is wrong (the receiver answers NAK). */
  | { kind: 'corrupt'; reason: string }
  /** Bytes outside any frame: another protocol, a wrong baud rate, line noise. */
  | { kind: 'noise'; bytes: Buffer };

/**
 * Push-based frame decoder: feed chunks as they arrive (any split), get events. A frame that
 * stays incomplete is given up by `flush()` (the link calls it after an inter-byte timeout), which
 * reports its bytes as noise and rescans them for a later STX.
 */
export class FrameDecoder {
  #buf: Buffer = Buffer.alloc(0);

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.#buf.length;
  }

  push(chunk: Uint8Array): FrameEvent[] {
    this.#buf = this.#buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#buf, chunk]);
    return this.#drain(false);
  }

  /** Gives up on an incomplete frame: its STX becomes noise and the rest is scanned again. */
  flush(): FrameEvent[] {
    return this.#drain(true);
  }

  #drain(force: boolean): FrameEvent[] {
    const events: FrameEvent[] = [];
    let noise: number[] = [];
    const endNoise = () => {
      if (noise.length > 0) events.push({ kind: 'noise', bytes: Buffer.from(noise) });
      noise = [];
    };
    let i = 0;
    const buf = this.#buf;
    let giveUp = force;
    while (i < buf.length) {
      const b = buf[i]!;
      if (b === ACK || b === NAK) {
        endNoise();
        events.push({ kind: b === ACK ? 'ack' : 'nak' });
        i++;
        continue;
      }
      if (b !== STX) {
        noise.push(b);
        i++;
        continue;
      }
      const got = this.#frameAt(buf, i);
      if (got === 'incomplete') {
        if (!giveUp) break;
        giveUp = false; // only the first incomplete frame is given up; rescan after its STX
        noise.push(b);
        i++;
        continue;
      }
      if (got.kind === 'bad') {
        endNoise();
        events.push({ kind: 'corrupt', reason: got.reason });
        // Skip only the STX: the "frame" may have been noise that hides a real frame.
        i += got.skip;
        continue;
      }
      endNoise();
      events.push({ kind: 'frame', frame: got.frame });
      i += got.length;
    }
    endNoise();
    this.#buf = Buffer.from(buf.subarray(i));
    return events;
  }

  #frameAt(
    buf: Buffer,
    at: number,
  ):
    | 'incomplete'
    | { kind: 'bad'; reason: string; skip: number }
    | { kind: 'ok'; frame: Frame; length: number } {
    if (buf.length - at < 5) return 'incomplete';
    const length = buf.readUInt16BE(at + 3);
    if (length > MAX_PAYLOAD) return { kind: 'bad', reason: `declared length ${length} too large`, skip: 1 };
    const total = length + FRAME_OVERHEAD;
    if (buf.length - at < total) return 'incomplete';
    if (buf[at + 5 + length] !== ETX)
      return { kind: 'bad', reason: 'no ETX after the declared length', skip: 1 };
    if (lrc(buf.subarray(at + 1, at + 6 + length)) !== buf[at + 6 + length]) {
      return { kind: 'bad', reason: 'LRC mismatch', skip: total };
    }
    const frame = {
      type: buf[at + 1]!,
      seq: buf[at + 2]!,
      payload: Buffer.from(buf.subarray(at + 5, at + 5 + length)),
    };
    return { kind: 'ok', frame, length: total };
  }
}

// ---------------------------------------------------------------------------------------------
// Payload fields (TLV)

/** Field tags. Text is UTF-8; `apps` and `authMethods` repeat their tag, in order. */
export const FIELD_TAGS = Object.freeze({
  version: 0x01,
  loaderId: 0x02,
  time: 0x03,
  vendor: 0x10,
  model: 0x11,
  serial: 0x12,
  firmware: 0x13,
  apps: 0x14,
  clock: 0x15,
  tamper: 0x16,
  tid: 0x17,
  kbpkKcv: 0x18,
  certificate: 0x19,
  authMethods: 0x1a,
  nonce: 0x20,
  proof: 0x21,
  method: 0x22,
  /** cert-rsa: the loader's KDH certificate (PEM) in AUTH_CHALLENGE. */
  loaderCertificate: 0x23,
  /** cert-rsa: the nonce an answer is bound to, echoed (AUTH_RESPONSE: poskey's, AUTH_CONFIRM: the device's). */
  echo: 0x24,
  slot: 0x30,
  block: 0x31,
  kcv: 0x32,
  algorithm: 0x33,
  /** cert-rsa: the TMK as a TR-34 key token (DER, base64) instead of a TR-31 `block`. */
  token: 0x34,
  code: 0x40,
  reason: 0x41,
});

type FieldName = keyof typeof FIELD_TAGS;
type FieldKind = 'uint8' | 'text' | 'bytes' | 'list';

const FIELD_KINDS: Readonly<Record<FieldName, FieldKind>> = {
  version: 'uint8',
  loaderId: 'text',
  time: 'text',
  vendor: 'text',
  model: 'text',
  serial: 'text',
  firmware: 'text',
  apps: 'list',
  clock: 'text',
  tamper: 'text',
  tid: 'text',
  kbpkKcv: 'text',
  certificate: 'text',
  authMethods: 'list',
  nonce: 'bytes',
  proof: 'bytes',
  method: 'text',
  loaderCertificate: 'text',
  echo: 'bytes',
  slot: 'uint8',
  block: 'text',
  kcv: 'text',
  algorithm: 'text',
  token: 'text',
  code: 'uint8',
  reason: 'text',
};

const TAG_NAMES = new Map<number, FieldName>(
  Object.entries(FIELD_TAGS).map(([name, tag]) => [tag, name as FieldName]),
);

type FieldValue = string | number | Buffer | readonly string[];
type Fields = Partial<Record<FieldName, FieldValue>>;

function messageError(reason: string, field?: string): KeyloadError {
  return keyloadError(KeyloadErrorCode.MESSAGE, reason, field);
}

function tlv(tag: number, value: Buffer): Buffer {
  if (value.length > 0xffff) throw keyloadError(KeyloadErrorCode.FRAME, 'field too long', TAG_NAMES.get(tag));
  const head = Buffer.alloc(3);
  head[0] = tag;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

/** Encodes fields in tag order of the object; undefined values are left out. */
export function encodeFields(fields: Fields): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(fields) as [FieldName, FieldValue | undefined][]) {
    if (value === undefined) continue;
    const tag = FIELD_TAGS[name];
    const kind = FIELD_KINDS[name];
    if (kind === 'list') {
      for (const item of value as readonly string[]) parts.push(tlv(tag, Buffer.from(item, 'utf8')));
    } else if (kind === 'uint8') {
      parts.push(tlv(tag, Buffer.from([value as number])));
    } else if (kind === 'bytes') {
      parts.push(tlv(tag, Buffer.from(value as Buffer)));
    } else {
      parts.push(tlv(tag, Buffer.from(value as string, 'utf8')));
    }
  }
  return Buffer.concat(parts);
}

/**
 * Decodes a TLV payload. Unknown tags are skipped (a later version may add fields).
 * @throws POSKEY_ERR_KEYLOAD_MESSAGE for a truncated field or a repeated single-valued field
 */
export function decodeFields(payload: Buffer): Fields {
  const out: Record<string, FieldValue> = {};
  let i = 0;
  while (i < payload.length) {
    if (payload.length - i < 3) throw messageError('truncated field header');
    const tag = payload[i]!;
    const length = payload.readUInt16BE(i + 1);
    if (payload.length - i - 3 < length) throw messageError('truncated field value');
    const raw = payload.subarray(i + 3, i + 3 + length);
    i += 3 + length;
    const name = TAG_NAMES.get(tag);
    if (name === undefined) continue;
    const kind = FIELD_KINDS[name];
    if (kind === 'list') {
      out[name] = [...((out[name] as string[] | undefined) ?? []), raw.toString('utf8')];
      continue;
    }
    if (out[name] !== undefined) throw messageError('field repeated', name);
    if (kind === 'uint8') {
      if (raw.length !== 1) throw messageError('must be one byte', name);
      out[name] = raw[0]!;
    } else if (kind === 'bytes') {
      out[name] = Buffer.from(raw);
    } else {
      out[name] = raw.toString('utf8');
    }
  }
  return out as Fields;
}

// ---------------------------------------------------------------------------------------------
// Messages

export type TamperState = 'none' | 'attack';

export type KeyloadMessage =
  | { type: 'HELLO'; version: number; loaderId: string; time: string }
  | {
      type: 'DEVICE_INFO';
      version: number;
      vendor: string;
      model: string;
      serial: string;
      firmware: string;
      /** Installed applications, in installation order. */
      apps: string[];
      /** The device clock, ISO 8601. */
      clock: string;
      tamper: TamperState;
      authMethods: string[];
      /** TID the device was bound to by an earlier injection. */
      tid?: string;
      /** Legacy KCV of the device's transport KBPK: tells which transport key it holds. */
      kbpkKcv?: string;
      /** Device certificate (PEM), when it has one. */
      certificate?: string;
    }
  | { type: 'AUTH_CHALLENGE'; method: string; nonce: Buffer; loaderCertificate?: string }
  | { type: 'AUTH_RESPONSE'; nonce: Buffer; proof: Buffer; echo?: Buffer }
  | { type: 'AUTH_CONFIRM'; proof: Buffer; echo?: Buffer }
  | { type: 'AUTH_OK' }
  /** `block` (TR-31, kbpk-cmac) or `token` (TR-34, cert-rsa). */
  | { type: 'LOAD_KEY'; slot: number; block?: string; token?: string }
  | { type: 'KEY_LOADED'; slot: number; kcv: string; algorithm: string; proof: Buffer }
  | { type: 'BIND'; tid: string; kcv: string; proof: Buffer }
  | { type: 'BIND_ACK'; tid: string; slot: number }
  | { type: 'ERROR'; code: number; reason: string };

export type MessageOf<T extends MessageType> = Extract<KeyloadMessage, { type: T }>;

/** Required fields of each message, checked on decode. */
const REQUIRED: Readonly<Record<MessageType, readonly FieldName[]>> = {
  HELLO: ['version', 'loaderId', 'time'],
  DEVICE_INFO: ['version', 'vendor', 'model', 'serial', 'firmware', 'clock', 'tamper'],
  AUTH_CHALLENGE: ['method', 'nonce'],
  AUTH_RESPONSE: ['nonce', 'proof'],
  AUTH_CONFIRM: ['proof'],
  AUTH_OK: [],
  LOAD_KEY: ['slot'],
  KEY_LOADED: ['slot', 'kcv', 'algorithm', 'proof'],
  BIND: ['tid', 'kcv', 'proof'],
  BIND_ACK: ['tid', 'slot'],
  ERROR: ['code', 'reason'],
};

/** The frame type and payload of a message. */
export function encodeMessage(msg: KeyloadMessage): { type: number; payload: Buffer } {
  const { type, ...fields } = msg;
  return { type: MESSAGE_TYPES[type], payload: encodeFields(fields as Fields) };
}

/** Name of a type code, or undefined for a code this protocol does not have. */
export function messageTypeName(code: number): MessageType | undefined {
  return TYPE_NAMES.get(code);
}

/**
 * Decodes a frame into a message, checking required fields.
 * @throws POSKEY_ERR_KEYLOAD_WRONG_PROTOCOL for an unknown type code,
 *   POSKEY_ERR_KEYLOAD_MESSAGE for a malformed or incomplete payload
 */
export function decodeMessage(frame: Frame): KeyloadMessage {
  const type = TYPE_NAMES.get(frame.type);
  if (type === undefined) {
    throw keyloadError(
      KeyloadErrorCode.WRONG_PROTOCOL,
      `unknown message type 0x${frame.type.toString(16).padStart(2, '0')}`,
      'type',
    );
  }
  const fields = decodeFields(frame.payload);
  for (const name of REQUIRED[type]) {
    if (fields[name] === undefined) throw messageError(`${type} lacks ${name}`, name);
  }
  if (type === 'DEVICE_INFO') {
    fields.apps ??= [];
    fields.authMethods ??= [];
    if (fields.tamper !== 'none' && fields.tamper !== 'attack')
      throw messageError('unknown tamper state', 'tamper');
  }
  if (
    (type === 'AUTH_CHALLENGE' || type === 'AUTH_RESPONSE') &&
    (fields.nonce as Buffer).length !== NONCE_BYTES
  ) {
    throw messageError(`nonce must be ${NONCE_BYTES} bytes`, 'nonce');
  }
  if (type === 'LOAD_KEY' && (fields.block === undefined) === (fields.token === undefined))
    throw messageError('LOAD_KEY carries a block or a token', 'block');
  return { type, ...fields } as KeyloadMessage;
}

// ---------------------------------------------------------------------------------------------
// Device error codes (ERROR.code)

/** Codes the device puts in ERROR messages, with the loader error each becomes. */
export const DEVICE_ERRORS = Object.freeze({
  BAD_MESSAGE: { code: 0x01, error: KeyloadErrorCode.MESSAGE },
  VERSION: { code: 0x02, error: KeyloadErrorCode.WRONG_PROTOCOL },
  SEQUENCE: { code: 0x03, error: KeyloadErrorCode.MESSAGE },
  AUTH_FAILED: { code: 0x04, error: KeyloadErrorCode.AUTH },
  TAMPERED: { code: 0x05, error: KeyloadErrorCode.TAMPERED },
  APP_ORDER: { code: 0x06, error: KeyloadErrorCode.APP_ORDER },
  KEY_BLOCK: { code: 0x07, error: KeyloadErrorCode.KEY_BLOCK },
  SLOT: { code: 0x08, error: KeyloadErrorCode.KEY_BLOCK },
  NOTHING_STAGED: { code: 0x09, error: KeyloadErrorCode.MESSAGE },
  STORAGE: { code: 0x0a, error: KeyloadErrorCode.DEVICE },
  AUTH_METHOD: { code: 0x0b, error: KeyloadErrorCode.AUTH },
  CERT_UNTRUSTED: { code: 0x0c, error: KeyloadErrorCode.CERT_UNTRUSTED },
  CERT_VALIDITY: { code: 0x0d, error: KeyloadErrorCode.CERT_VALIDITY },
  CERT_SIGNATURE: { code: 0x0e, error: KeyloadErrorCode.CERT_SIGNATURE },
  NONCE: { code: 0x0f, error: KeyloadErrorCode.NONCE },
});

export type DeviceErrorName = keyof typeof DEVICE_ERRORS;

const DEVICE_ERROR_NAMES = new Map<number, DeviceErrorName>(
  Object.entries(DEVICE_ERRORS).map(([name, e]) => [e.code, name as DeviceErrorName]),
);

export function deviceError(name: DeviceErrorName, reason: string): MessageOf<'ERROR'> {
  return { type: 'ERROR', code: DEVICE_ERRORS[name].code, reason };
}

/** The loader-side error for a device's ERROR message. */
export function fromDeviceError(msg: MessageOf<'ERROR'>): KeyloadError {
  const name = DEVICE_ERROR_NAMES.get(msg.code);
  const code = name === undefined ? KeyloadErrorCode.DEVICE : DEVICE_ERRORS[name].error;
  const label = name ?? `code 0x${msg.code.toString(16).padStart(2, '0')}`;
  return keyloadError(code, `device refused (${label}): ${msg.reason}`, 'device');
}

// ---------------------------------------------------------------------------------------------
// Authentication

/** Proof labels: who proves what. Each proof binds both nonces and the device serial. */
export type ProofRole = 'device' | 'loader' | 'loaded' | 'bind';

const PROOF_LABEL: Readonly<Record<ProofRole, string>> = {
  device: 'poskey-keyload/1 device',
  loader: 'poskey-keyload/1 loader',
  loaded: 'poskey-keyload/1 key-loaded',
  bind: 'poskey-keyload/1 bind',
};

const KDF_LABEL = Buffer.from('poskey-keyload/1 authentication key', 'ascii');

/**
 * The authentication key (KAK) both ends derive from the transport KBPK: CMAC counter-mode KDF
 * (SP 800-108), a label of its own, as long as the KBPK. Using the KBPK itself for both the key
 * block and the challenge MACs would let one serve as an oracle for the other.
 */
export function deriveAuthKey(kbpk: KeyHandle): KeyHandle {
  if (kbpk.algorithm !== 'tdes' && kbpk.algorithm !== 'aes') {
    throw keyloadError(
      KeyloadErrorCode.OPTION,
      'the transport KBPK must be TDES or AES (a TR-31 KBPK)',
      'kbpk',
    );
  }
  const bits = kbpk.length * 8;
  return cmacCounterKdf(kbpk, (counter) =>
    Buffer.concat([Buffer.from([counter]), KDF_LABEL, Buffer.from([0, bits >> 8, bits & 0xff])]),
  );
}

/** The MAC input of a proof: label, then each part with a 2-byte length (no ambiguity). */
export function proofInput(role: ProofRole, parts: readonly Uint8Array[]): Buffer {
  return labelledInput(PROOF_LABEL[role], parts);
}

/** A label, then each part with a 2-byte length: no two part lists give the same input. */
export function labelledInput(label: string, parts: readonly Uint8Array[]): Buffer {
  const chunks: Buffer[] = [Buffer.from(label, 'ascii')];
  for (const p of parts) {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(p.length);
    chunks.push(len, Buffer.from(p));
  }
  return Buffer.concat(chunks);
}

/** What poskey needs of the transport key: its KCV (to name it) and MACs under the derived KAK. */
export interface KeyloadAuthenticator {
  /** Legacy 3-byte KCV of the KBPK. */
  readonly kbpkKcv: string;
  mac(data: Uint8Array): Buffer | Promise<Buffer>;
}

/** Computes a proof with an authenticator. */
export async function prove(
  auth: KeyloadAuthenticator,
  role: ProofRole,
  parts: readonly Uint8Array[],
): Promise<Buffer> {
  return Buffer.from(await auth.mac(proofInput(role, parts)));
}

/** Checks a proof in constant time. */
export async function verifyProof(
  auth: KeyloadAuthenticator,
  role: ProofRole,
  parts: readonly Uint8Array[],
  proof: Uint8Array,
): Promise<boolean> {
  return constantTimeEqual(await prove(auth, role, parts), proof);
}

// ---------------------------------------------------------------------------------------------
// Application order (seed §1 cause 7)

/**
 * The order a terminal's applications must be installed in for key injection to work: signature
 * file, master controller (multi-application manager), bank-card application, convenience-payment
 * application.
 */
export const REQUIRED_APP_ORDER: readonly string[] = Object.freeze([
  'signature-file',
  'master-controller',
  'bank-card',
  'convenience-payment',
]);

export type AppOrderCheck =
  | { ok: true }
  | { ok: false; problem: 'missing'; missing: string[] }
  | { ok: false; problem: 'order'; app: string; before: string };

/**
 * Checks that every required app is installed and that they were installed in the required
 * relative order (other apps may sit anywhere).
 */
export function checkAppOrder(
  installed: readonly string[],
  required: readonly string[] = REQUIRED_APP_ORDER,
): AppOrderCheck {
  const missing = required.filter((a) => !installed.includes(a));
  if (missing.length > 0) return { ok: false, problem: 'missing', missing };
  const positions = required.map((a) => installed.indexOf(a));
  for (let i = 1; i < positions.length; i++) {
    if (positions[i]! < positions[i - 1]!) {
      return { ok: false, problem: 'order', app: required[i]!, before: required[i - 1]! };
    }
  }
  return { ok: true };
}

/** A one-line description of an order problem. */
export function describeAppOrder(
  check: AppOrderCheck,
  required: readonly string[] = REQUIRED_APP_ORDER,
): string {
  if (check.ok) return 'applications installed in the required order';
  if (check.problem === 'missing') return `missing application(s): ${check.missing.join(', ')}`;
  return `'${check.app}' was installed before '${check.before}'; the required order is ${required.join(' → ')}`;
}

// ---------------------------------------------------------------------------------------------
// Transport keys

/** Key lengths of a transport KBPK: TR-31 version B (TDES, double or triple length) or D (AES). */
export const KBPK_LENGTHS: Readonly<Record<'tdes' | 'aes', readonly number[]>> = {
  tdes: [16, 24],
  aes: [16, 24, 32],
};

/**
 * A KeyHandle for a clear transport KBPK (the factory key a simulated PIN pad holds, or lab
 * components on the poskey side). The caller's bytes are not kept.
 * @throws POSKEY_ERR_KEYLOAD_OPTION for an algorithm other than tdes/aes or a wrong length
 */
export function transportKeyHandle(algorithm: string, key: Uint8Array | string): KeyHandle {
  if (algorithm !== 'tdes' && algorithm !== 'aes') {
    throw keyloadError(
      KeyloadErrorCode.OPTION,
      "transport KBPK algorithm must be 'tdes' or 'aes'",
      'kbpk.algorithm',
    );
  }
  let bytes: Buffer;
  if (typeof key === 'string') {
    if (!/^(?:[0-9A-Fa-f]{2})+$/.test(key))
      throw keyloadError(KeyloadErrorCode.OPTION, 'must be hex', 'kbpk.key');
    bytes = Buffer.from(key, 'hex');
  } else if (key instanceof Uint8Array) {
    bytes = Buffer.from(key);
  } else {
    throw keyloadError(KeyloadErrorCode.OPTION, 'must be bytes or hex', 'kbpk.key');
  }
  try {
    if (!KBPK_LENGTHS[algorithm].includes(bytes.length)) {
      throw keyloadError(
        KeyloadErrorCode.OPTION,
        `a ${algorithm} KBPK is ${KBPK_LENGTHS[algorithm].join(' or ')} bytes, got ${bytes.length}`,
        'kbpk.key',
      );
    }
    return createKey(algorithm, bytes);
  } finally {
    bytes.fill(0);
  }
}

/**
 * The authenticator of a clear KBPK: derives the KAK once and keeps only it (and the KBPK's KCV).
 * `destroy()` zeroises the KAK.
 */
export function kbpkAuthenticator(kbpk: KeyHandle): KeyloadAuthenticator & { destroy(): void } {
  const kak = deriveAuthKey(kbpk);
  const kbpkKcv = checkValue(kbpk, { method: 'legacy', length: 3 }).value;
  return {
    kbpkKcv,
    mac: (data) => cmac(kak, data),
    destroy: () => kak.destroy(),
  };
}
