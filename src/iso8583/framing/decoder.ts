/**
 * Push-based TCP framer. Feed it whatever the socket delivers; it returns every complete frame
 * payload (the bytes after the length prefix), however the reads were split or coalesced. The
 * announced length is checked against `maxFrameSize` before any body byte is buffered, so a hostile
 * peer cannot make the host allocate more than that per connection.
 */
import { asBuffer, FrameError } from './errors.js';
import { type LengthPrefix, type LengthPrefixKind, lengthPrefix } from './length.js';

/** What to do with a frame whose length is 0 (the CUPS-style link uses it as a heartbeat). */
export type ZeroLengthPolicy = 'emit' | 'ignore' | 'error';

export interface FrameDecoderOptions {
  /** Length prefix kind; default `binary2` (2 bytes big-endian). */
  length?: LengthPrefixKind;
  /** Largest payload accepted, in bytes after the prefix; default 8192, at most what the prefix can express. */
  maxFrameSize?: number;
  /** Zero-length frames: `emit` an empty Buffer (heartbeat), `ignore` them, or fail; default `emit`. */
  zeroLength?: ZeroLengthPolicy;
}

/** Default payload limit: a terminal-side message is a few hundred bytes; LLL fields cap at 999. */
export const DEFAULT_MAX_FRAME_SIZE = 8192;

const ZERO_POLICIES: readonly ZeroLengthPolicy[] = ['emit', 'ignore', 'error'];

function optionError(reason: string): FrameError {
  return new FrameError('POSKEY_ERR_FRAME_OPTION', 'options', 0, reason);
}

/** Validates decoder/encoder options; shared with profiles. Extra keys (e.g. a whole profile) are ignored. */
export function resolveFrameOptions(options: FrameDecoderOptions = {}): {
  prefix: LengthPrefix;
  maxFrameSize: number;
  zeroLength: ZeroLengthPolicy;
} {
  const prefix = lengthPrefix(options.length ?? 'binary2');
  if (prefix === undefined) throw optionError(`unknown length prefix ${JSON.stringify(options.length)}`);
  const max = options.maxFrameSize ?? Math.min(DEFAULT_MAX_FRAME_SIZE, prefix.max);
  if (!Number.isSafeInteger(max) || max < 0 || max > prefix.max) {
    throw optionError(`maxFrameSize must be an integer from 0 to ${prefix.max} for ${prefix.kind}`);
  }
  const zeroLength = options.zeroLength ?? 'emit';
  if (!ZERO_POLICIES.includes(zeroLength)) {
    throw optionError(`zeroLength must be one of ${ZERO_POLICIES.join(', ')}`);
  }
  return { prefix, maxFrameSize: max, zeroLength };
}

/**
 * Reassembles frames from a byte stream. After any error the decoder is failed: every later call
 * throws POSKEY_ERR_FRAME_CLOSED and the caller should close the connection, because the frame
 * boundaries are lost.
 */
export class FrameDecoder {
  readonly lengthKind: LengthPrefixKind;
  readonly maxFrameSize: number;
  readonly zeroLength: ZeroLengthPolicy;
  readonly #prefix: LengthPrefix;
  readonly #prefixBuf: Buffer;
  #prefixFill = 0;
  #body: Buffer | null = null;
  #bodyFill = 0;
  /** Stream offset of the first byte of the next chunk. */
  #position = 0;
  #failure: FrameError | null = null;
  #ended = false;

  constructor(options: FrameDecoderOptions = {}) {
    const { prefix, maxFrameSize, zeroLength } = resolveFrameOptions(options);
    this.#prefix = prefix;
    this.lengthKind = prefix.kind;
    this.maxFrameSize = maxFrameSize;
    this.zeroLength = zeroLength;
    this.#prefixBuf = Buffer.alloc(prefix.size);
  }

  /** Bytes held for an incomplete frame (prefix and body so far). */
  get buffered(): number {
    return this.#body === null ? this.#prefixFill : this.#prefix.size + this.#bodyFill;
  }

  /** True once an error has made the stream unusable. */
  get failed(): boolean {
    return this.#failure !== null;
  }

  /**
   * Consumes one chunk and returns the payloads it completed, in order. Each payload is a fresh
   * Buffer; `chunk` is neither kept nor modified.
   * @throws FrameError POSKEY_ERR_FRAME_TOO_LARGE, _LENGTH, _EMPTY (policy `error`), _CLOSED; its
   *   `frames` holds payloads completed earlier in this chunk.
   */
  push(chunk: Uint8Array): Buffer[] {
    this.#assertOpen();
    const data = asBuffer(chunk, 'chunk');
    const frames: Buffer[] = [];
    try {
      this.#consume(data, frames);
    } catch (e) {
      if (e instanceof FrameError) {
        e.frames = frames;
        this.#failure = e;
      }
      throw e;
    }
    this.#position += data.length;
    return frames;
  }

  /**
   * Marks the end of the stream (the peer closed).
   * @throws FrameError POSKEY_ERR_FRAME_TRUNCATED when a frame was left incomplete.
   */
  end(): void {
    this.#assertOpen();
    this.#ended = true;
    if (this.buffered > 0) {
      const layer = this.#body === null ? 'length' : 'body';
      const need = this.#body === null ? this.#prefix.size : this.#body.length;
      const have = this.#body === null ? this.#prefixFill : this.#bodyFill;
      this.#failure = new FrameError(
        'POSKEY_ERR_FRAME_TRUNCATED',
        layer,
        this.#position,
        `stream ended inside a frame: ${layer} has ${have} of ${need} bytes`,
      );
      throw this.#failure;
    }
  }

  #assertOpen(): void {
    if (this.#failure !== null || this.#ended) {
      const why = this.#failure ? `an earlier ${this.#failure.code}` : 'end()';
      throw new FrameError(
        'POSKEY_ERR_FRAME_CLOSED',
        'stream',
        this.#position,
        `decoder is unusable after ${why}`,
      );
    }
  }

  #consume(data: Buffer, frames: Buffer[]): void {
    const n = data.length;
    const size = this.#prefix.size;
    let i = 0;
    while (i < n) {
      if (this.#body === null) {
        let length: number;
        const frameStart = this.#position + i - this.#prefixFill;
        if (this.#prefixFill === 0 && n - i >= size) {
          length = this.#prefix.read(data, i, frameStart);
          i += size;
        } else {
          const take = Math.min(size - this.#prefixFill, n - i);
          data.copy(this.#prefixBuf, this.#prefixFill, i, i + take);
          this.#prefixFill += take;
          i += take;
          if (this.#prefixFill < size) return;
          this.#prefixFill = 0;
          length = this.#prefix.read(this.#prefixBuf, 0, frameStart);
        }
        if (length > this.maxFrameSize) {
          throw new FrameError(
            'POSKEY_ERR_FRAME_TOO_LARGE',
            'length',
            frameStart,
            `frame announces ${length} bytes, more than maxFrameSize ${this.maxFrameSize}`,
          );
        }
        if (length === 0) {
          this.#onEmpty(frames, frameStart);
          continue;
        }
        if (n - i >= length) {
          // Whole body in this chunk: one copy, no reassembly buffer.
          frames.push(Buffer.from(data.subarray(i, i + length)));
          i += length;
          continue;
        }
        this.#body = Buffer.allocUnsafe(length);
        this.#bodyFill = 0;
      }
      const body = this.#body;
      const take = Math.min(body.length - this.#bodyFill, n - i);
      data.copy(body, this.#bodyFill, i, i + take);
      this.#bodyFill += take;
      i += take;
      if (this.#bodyFill === body.length) {
        frames.push(body);
        this.#body = null;
      }
    }
  }

  #onEmpty(frames: Buffer[], frameStart: number): void {
    if (this.zeroLength === 'emit') frames.push(Buffer.alloc(0));
    else if (this.zeroLength === 'error') {
      throw new FrameError('POSKEY_ERR_FRAME_EMPTY', 'length', frameStart, 'zero-length frame');
    }
  }
}

/**
 * Prefixes `payload` with its length.
 * @throws FrameError POSKEY_ERR_FRAME_TOO_LARGE when the payload exceeds `maxFrameSize`.
 */
export function encodeFrame(payload: Uint8Array, options: FrameDecoderOptions = {}): Buffer {
  const body = asBuffer(payload, 'payload');
  const { prefix, maxFrameSize } = resolveFrameOptions(options);
  if (body.length > maxFrameSize) {
    throw new FrameError(
      'POSKEY_ERR_FRAME_TOO_LARGE',
      'length',
      0,
      `payload of ${body.length} bytes exceeds maxFrameSize ${maxFrameSize}`,
    );
  }
  const out = Buffer.allocUnsafe(prefix.size + body.length);
  prefix.write(body.length, out, 0);
  body.copy(out, prefix.size);
  return out;
}
