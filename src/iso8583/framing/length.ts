/**
 * Length prefixes in front of each TCP frame. The value counts the bytes after the prefix.
 *  - `binary2`: 2 bytes big-endian, the terminal link (research iso8583.md §1.1) and the default.
 *  - `bcd2`: 2 bytes packed BCD, 0–9999 (jPOS NCCChannel/BCDChannel style).
 *  - `ascii4`: 4 ASCII digits, the acquirer↔CUPS link, where `0000` is a heartbeat (§2.10).
 *  - `binary4`: 4 bytes big-endian (jPOS RawChannel style).
 */
import { FrameError } from './errors.js';

export type LengthPrefixKind = 'binary2' | 'bcd2' | 'ascii4' | 'binary4';

export interface LengthPrefix {
  readonly kind: LengthPrefixKind;
  /** Bytes taken by the prefix itself. */
  readonly size: number;
  /** Largest length the prefix can express. */
  readonly max: number;
  /** Reads the length at `offset`; throws POSKEY_ERR_FRAME_LENGTH on a malformed prefix. */
  read(buf: Buffer, offset: number, streamOffset: number): number;
  /** Writes `length` (already range-checked) at `offset`. */
  write(length: number, out: Buffer, offset: number): void;
}

function malformed(kind: string, streamOffset: number, what: string): FrameError {
  return new FrameError('POSKEY_ERR_FRAME_LENGTH', 'length', streamOffset, `${kind} length prefix ${what}`);
}

const binary2: LengthPrefix = {
  kind: 'binary2',
  size: 2,
  max: 0xffff,
  read: (buf, offset) => buf.readUInt16BE(offset),
  write: (length, out, offset) => {
    out.writeUInt16BE(length, offset);
  },
};

const binary4: LengthPrefix = {
  kind: 'binary4',
  size: 4,
  // Capped well below 2^32: a 4-byte prefix never legitimately announces gigabytes.
  max: 0x7fffffff,
  read: (buf, offset) => buf.readUInt32BE(offset),
  write: (length, out, offset) => {
    out.writeUInt32BE(length, offset);
  },
};

const bcd2: LengthPrefix = {
  kind: 'bcd2',
  size: 2,
  max: 9999,
  read: (buf, offset, streamOffset) => {
    let n = 0;
    for (let i = 0; i < 2; i++) {
      const b = buf[offset + i]!;
      const hi = b >> 4;
      const lo = b & 0x0f;
      if (hi > 9 || lo > 9)
        throw malformed('bcd2', streamOffset, `byte ${b.toString(16).padStart(2, '0')} is not BCD`);
      n = n * 100 + hi * 10 + lo;
    }
    return n;
  },
  write: (length, out, offset) => {
    const hi = Math.floor(length / 100);
    const lo = length % 100;
    out[offset] = (Math.floor(hi / 10) << 4) | (hi % 10);
    out[offset + 1] = (Math.floor(lo / 10) << 4) | (lo % 10);
  },
};

const ascii4: LengthPrefix = {
  kind: 'ascii4',
  size: 4,
  max: 9999,
  read: (buf, offset, streamOffset) => {
    let n = 0;
    for (let i = 0; i < 4; i++) {
      const d = buf[offset + i]! - 0x30;
      if (d < 0 || d > 9) throw malformed('ascii4', streamOffset, `byte ${i} is not an ASCII digit`);
      n = n * 10 + d;
    }
    return n;
  },
  write: (length, out, offset) => {
    out.write(String(length).padStart(4, '0'), offset, 4, 'latin1');
  },
};

const PREFIXES: Readonly<Record<LengthPrefixKind, LengthPrefix>> = Object.freeze({
  binary2,
  bcd2,
  ascii4,
  binary4,
});

/** The prefix codec for `kind`, or undefined for an unknown kind. */
export function lengthPrefix(kind: string): LengthPrefix | undefined {
  return Object.hasOwn(PREFIXES, kind) ? PREFIXES[kind as LengthPrefixKind] : undefined;
}

export const LENGTH_PREFIX_KINDS: readonly LengthPrefixKind[] = Object.freeze(
  Object.keys(PREFIXES) as LengthPrefixKind[],
);
