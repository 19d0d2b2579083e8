/**
 * Journal row ids: ULID form (26 Crockford base-32 characters: 48-bit millisecond time, then 80
 * bits that start random each millisecond and count up within it). Ids made by one process sort in
 * the order they were made, ids from several processes sort by time to the millisecond, and they
 * need no round trip to the database, so the host knows a row's id before the row is durable.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** A valid id: what `createIdGenerator` makes (time part ≤ 7ZZZZZZZZZ). */
export const JOURNAL_ID_RE = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

const TWO_40 = 2 ** 40;

function encode(value: number, chars: number): string {
  let out = '';
  let n = value;
  for (let i = 0; i < chars; i++) {
    out = ALPHABET[n % 32]! + out;
    n = Math.floor(n / 32);
  }
  return out;
}

function random40(random: (n: number) => Buffer): number {
  const b = random(5);
  return b.readUIntBE(0, 5);
}

/**
 * A monotonic id generator. The clock may step back (NTP); ids keep increasing regardless, using
 * the last time seen until the clock catches up.
 */
export function createIdGenerator(
  now: () => number = Date.now,
  random: (n: number) => Buffer = randomBytes,
): () => string {
  let lastMs = -1;
  let hi = 0;
  let lo = 0;
  return () => {
    const t = now();
    if (t > lastMs) {
      lastMs = t;
      hi = random40(random);
      lo = random40(random);
    } else if (++lo === TWO_40) {
      lo = 0;
      if (++hi === TWO_40) {
        // 2^80 ids in one millisecond cannot happen; borrow the next millisecond rather than wrap.
        lastMs++;
        hi = random40(random);
      }
    }
    return encode(lastMs, 10) + encode(hi, 8) + encode(lo, 8);
  };
}

/** The millisecond time an id was made at. */
export function idTime(id: string): number {
  let ms = 0;
  for (let i = 0; i < 10; i++) ms = ms * 32 + ALPHABET.indexOf(id[i]!);
  return ms;
}
