import { PoskeyError } from '../../errors.js';

/** The framing layer at fault, outermost first: length prefix, TPDU, dial-up LRI, 6-byte header, body. */
export type FrameLayer = 'length' | 'tpdu' | 'lri' | 'header' | 'body' | 'stream' | 'options';

/**
 * A framing failure. `code` is one of the POSKEY_ERR_FRAME_* codes, `layer` names the layer and
 * `offset` the byte offset where it went wrong: in the TCP stream for the decoder, in the frame
 * payload (the bytes after the length prefix) for the envelope parsers.
 */
export class FrameError extends PoskeyError {
  readonly layer: FrameLayer;
  readonly offset: number;
  /**
   * Frames the decoder completed earlier in the same chunk, before the fault. The caller may still
   * answer them; the stream itself is unusable.
   */
  frames: readonly Buffer[] = [];

  constructor(code: string, layer: FrameLayer, offset: number, reason: string) {
    super(code, `${reason} (at offset ${offset})`, { field: `frame.${layer}` });
    this.layer = layer;
    this.offset = offset;
  }
}

/** Rejects anything that is not a byte array, naming the argument. */
export function asBuffer(data: unknown, field: string): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new PoskeyError('POSKEY_ERR_TYPE', 'must be bytes (Buffer or Uint8Array)', { field });
}
