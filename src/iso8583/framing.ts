/**
 * ISO 8583 framing for TCP links: the length prefix (push-based `FrameDecoder`, `encodeFrame`), the
 * terminal envelope (TPDU, dial-up LRI, 6-byte header) and framing profiles that combine them.
 * Errors are `FrameError`s with a POSKEY_ERR_FRAME_* code, the layer and the offset.
 */
export {
  DEFAULT_MAX_FRAME_SIZE,
  encodeFrame,
  FrameDecoder,
  type FrameDecoderOptions,
  type ZeroLengthPolicy,
} from './framing/decoder.js';
export {
  buildTerminalEnvelope,
  encodeTerminalHeader,
  encodeTpdu,
  hasLri,
  LRI_LENGTH,
  LRI_MAGIC,
  type LriMode,
  PROCESSING_REQUIREMENTS,
  parseTerminalEnvelope,
  parseTerminalHeader,
  parseTpdu,
  replyEnvelope,
  replyTpdu,
  setProcessingRequirement,
  TERMINAL_HEADER_LENGTH,
  type TerminalEnvelope,
  type TerminalHeader,
  TPDU_ID,
  TPDU_LENGTH,
  type Tpdu,
} from './framing/envelope.js';
export { FrameError, type FrameLayer } from './framing/errors.js';
export {
  LENGTH_PREFIX_KINDS,
  type LengthPrefix,
  type LengthPrefixKind,
  lengthPrefix,
} from './framing/length.js';
export {
  buildEnvelope,
  buildFrame,
  CUPS_PROFILE,
  createFrameDecoder,
  defineFramingProfile,
  detectFraming,
  type Envelope,
  FRAMING_PROFILES,
  type FramingProfile,
  type HeaderLayout,
  NETWORK_PROFILE,
  parseEnvelope,
  parseFrame,
  TERMINAL_PROFILE,
} from './framing/profile.js';
