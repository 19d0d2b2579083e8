/**
 * Length prefixers, in families of frozen singletons: `Prefix.fixed`, `Prefix.bcd.LL`,
 * `Prefix.ascii.LLL`, `Prefix.binary.L`… A prefix carries the value's length in the value
 * encoding's units (digits for BCD values, characters for ASCII, bytes for binary), which is the
 * UnionPay rule "a BCD prefix counts digits for BCD values and bytes otherwise".
 */
import { IsoError, IsoErrorCode } from './errors.js';

export interface Prefixer {
  /** e.g. 'BCD.LLL'; 'Fixed' for fixed-length fields. */
  readonly inspect: string;
  readonly fixed: boolean;
  /** Bytes the prefix itself takes. */
  readonly size: number;
  /** The largest length the prefix can express. */
  readonly max: number;
  /** Reads the length at `offset`; the caller guarantees `size` bytes are there. */
  decode(buf: Uint8Array, offset: number): number;
  /** Writes `length` at `offset` (capacity and range checked by the caller). */
  encode(length: number, out: Buffer, offset: number): void;
}

function badPrefix(detail: string, offset: number): IsoError {
  return new IsoError(IsoErrorCode.LENGTH, detail, [], offset);
}

const HEX = '0123456789ABCDEF';

function bcdPrefix(digits: 2 | 4, name: string): Prefixer {
  const size = digits / 2;
  return Object.freeze({
    inspect: `BCD.${name}`,
    fixed: false,
    size,
    max: name === 'LLL' ? 999 : 10 ** name.length - 1,
    decode(buf: Uint8Array, offset: number): number {
      let n = 0;
      for (let i = 0; i < size; i++) {
        const b = buf[offset + i]!;
        const hi = b >> 4;
        const lo = b & 15;
        if (hi > 9 || lo > 9)
          throw badPrefix(`length prefix byte ${HEX[hi]}${HEX[lo]} is not BCD`, offset + i);
        n = n * 100 + hi * 10 + lo;
      }
      return n;
    },
    encode(length: number, out: Buffer, offset: number): void {
      for (let i = size - 1, n = length; i >= 0; i--, n = Math.floor(n / 100)) {
        const two = n % 100;
        out[offset + i] = (Math.floor(two / 10) << 4) | (two % 10);
      }
    },
  });
}

function asciiPrefix(digits: number): Prefixer {
  return Object.freeze({
    inspect: `ASCII.${'L'.repeat(digits)}`,
    fixed: false,
    size: digits,
    max: 10 ** digits - 1,
    decode(buf: Uint8Array, offset: number): number {
      let n = 0;
      for (let i = 0; i < digits; i++) {
        const d = buf[offset + i]! - 48;
        if (d < 0 || d > 9) throw badPrefix('length prefix is not ASCII digits', offset + i);
        n = n * 10 + d;
      }
      return n;
    },
    encode(length: number, out: Buffer, offset: number): void {
      for (let i = digits - 1, n = length; i >= 0; i--, n = Math.floor(n / 10))
        out[offset + i] = 48 + (n % 10);
    },
  });
}

function binaryPrefix(bytes: 1 | 2): Prefixer {
  return Object.freeze({
    inspect: `Binary.${'L'.repeat(bytes)}`,
    fixed: false,
    size: bytes,
    max: bytes === 1 ? 0xff : 0xffff,
    decode: (buf: Uint8Array, offset: number): number =>
      bytes === 1 ? buf[offset]! : (buf[offset]! << 8) | buf[offset + 1]!,
    encode(length: number, out: Buffer, offset: number): void {
      if (bytes === 2) out[offset++] = length >> 8;
      out[offset] = length & 0xff;
    },
  });
}

/** No prefix: the length is the spec's `length`. */
export const fixed: Prefixer = Object.freeze({
  inspect: 'Fixed',
  fixed: true,
  size: 0,
  max: Number.MAX_SAFE_INTEGER,
  decode: (): number => {
    throw new IsoError(IsoErrorCode.DIALECT, 'a fixed prefix carries no length');
  },
  encode: (): void => {},
});

/**
 * The prefix families. BCD: LL = 1 byte (`37`), LLL = 2 bytes (`00 11`, at most 999), LLLL = 2 bytes
 * (at most 9999). ASCII: 2, 3 or 4 digit characters. Binary: 1 or 2 bytes, big-endian.
 */
export const Prefix = Object.freeze({
  fixed,
  bcd: Object.freeze({ LL: bcdPrefix(2, 'LL'), LLL: bcdPrefix(4, 'LLL'), LLLL: bcdPrefix(4, 'LLLL') }),
  ascii: Object.freeze({ LL: asciiPrefix(2), LLL: asciiPrefix(3), LLLL: asciiPrefix(4) }),
  binary: Object.freeze({ L: binaryPrefix(1), LL: binaryPrefix(2) }),
});

const BY_NAME: ReadonlyMap<string, Prefixer> = new Map<string, Prefixer>([
  [fixed.inspect, fixed],
  ...[Prefix.bcd, Prefix.ascii, Prefix.binary].flatMap((family) =>
    Object.values(family).map((p: Prefixer) => [p.inspect, p] as [string, Prefixer]),
  ),
]);

/** Looks a prefixer up by its `inspect` name (for specs loaded from JSON). */
export function prefixByName(name: string): Prefixer | undefined {
  return BY_NAME.get(name);
}
