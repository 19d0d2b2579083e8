/**
 * Test cards for the terminal simulator: PAN, expiry (YYMM) and service code, turned into the
 * magnetic-stripe track 2 a swipe would read (`PAN=YYMM` + service code + discretionary data,
 * ISO/IEC 7813), and card input as the terminal application takes it (swiped or keyed).
 *
 * The PANs are Luhn-valid UnionPay-range numbers made up for testing; the PIN of each card is what
 * the simulated issuer should accept (the network simulator keeps its own card table; keep both in
 * step). None of them is a real card.
 */
import { TerminalError, TerminalErrorCode } from './errors.js';

export interface TestCard {
  name: string;
  pan: string;
  /** YYMM. */
  expiry: string;
  /** Three digits, e.g. 101 (magstripe, normal authorisation), 201 (chip card). */
  serviceCode: string;
  /** The PIN the issuer expects. */
  pin: string;
  /** Track 2 discretionary data; default fills the track to 37 characters with zeros. */
  discretionary?: string;
}

/** What the terminal reads: a swiped track 2, or a keyed-in PAN and expiry. */
export type CardInput = { track2: string } | { pan: string; expiry?: string };

/** A card read by the terminal: PAN and expiry, and the track when it was swiped. */
export interface CardRead {
  pan: string;
  expiry?: string;
  track2?: string;
  entry: 'swiped' | 'manual';
}

const MAX_TRACK2 = 37;

function inputError(reason: string, field: string): TerminalError {
  return new TerminalError(TerminalErrorCode.INPUT, reason, { field });
}

/** The Luhn (mod 10) check digit for `digits` (the PAN without its check digit). */
export function luhnCheckDigit(digits: string): string {
  if (!/^\d+$/.test(digits)) throw inputError('must be digits', 'pan');
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

export function isLuhnValid(pan: string): boolean {
  return /^\d{2,}$/.test(pan) && luhnCheckDigit(pan.slice(0, -1)) === pan.slice(-1);
}

/** Throws POSKEY_ERR_TERMINAL_INPUT unless `pan` is 12–19 digits. (The Luhn digit is the issuer's to check.) */
export function assertPan(pan: unknown, field = 'pan'): string {
  if (typeof pan !== 'string' || !/^\d{12,19}$/.test(pan))
    throw inputError('PAN must be 12 to 19 digits', field);
  return pan;
}

/** Throws POSKEY_ERR_TERMINAL_INPUT unless `expiry` is YYMM with a month 01–12. */
export function assertExpiry(expiry: unknown, field = 'expiry'): string {
  if (typeof expiry !== 'string' || !/^\d{2}(0[1-9]|1[0-2])$/.test(expiry)) {
    throw inputError('expiry must be YYMM', field);
  }
  return expiry;
}

/** Track 2 of a card: PAN '=' YYMM, service code, discretionary data (at most 37 characters). */
export function track2Of(card: Pick<TestCard, 'pan' | 'expiry' | 'serviceCode' | 'discretionary'>): string {
  assertPan(card.pan);
  assertExpiry(card.expiry);
  if (!/^\d{3}$/.test(card.serviceCode ?? ''))
    throw inputError('service code must be 3 digits', 'serviceCode');
  const base = `${card.pan}=${card.expiry}${card.serviceCode}`;
  const discretionary = card.discretionary ?? '0'.repeat(Math.max(0, MAX_TRACK2 - base.length));
  if (!/^\d*$/.test(discretionary) || base.length + discretionary.length > MAX_TRACK2) {
    throw inputError(
      `discretionary data must be digits and the track at most ${MAX_TRACK2}`,
      'discretionary',
    );
  }
  return base + discretionary;
}

/** Splits a clear track 2 into PAN, expiry, service code and discretionary data. */
export function parseTrack2(track: string): {
  pan: string;
  expiry: string;
  serviceCode: string;
  discretionary: string;
} {
  const m =
    typeof track === 'string' && track.length <= MAX_TRACK2
      ? /^(\d{12,19})[=D](\d{4})(\d{3})(\d*)$/.exec(track)
      : null;
  if (m === null)
    throw inputError('track 2 must be PAN=YYMM, service code and digits (37 at most)', 'track2');
  return { pan: m[1]!, expiry: assertExpiry(m[2], 'track2'), serviceCode: m[3]!, discretionary: m[4]! };
}

/** Reads card input the way the terminal does: a swipe gives the track, a keyed entry the PAN. */
export function readCard(input: CardInput): CardRead {
  if (input !== null && typeof input === 'object' && 'track2' in input && input.track2 !== undefined) {
    const track2 = input.track2.replaceAll('D', '=');
    const { pan, expiry } = parseTrack2(track2);
    return { pan, expiry, track2, entry: 'swiped' };
  }
  if (input === null || typeof input !== 'object' || !('pan' in input)) {
    throw inputError('give a track 2 or a PAN', 'card');
  }
  const read: CardRead = { pan: assertPan(input.pan), entry: 'manual' };
  if (input.expiry !== undefined) read.expiry = assertExpiry(input.expiry);
  return read;
}

/** Appends the Luhn check digit. */
export function withCheckDigit(digits: string): string {
  return digits + luhnCheckDigit(digits);
}

/** A random Luhn-valid PAN with `prefix`, `length` digits in all; `random` returns [0, 1). */
export function randomPan(prefix: string, length: number, random: () => number = Math.random): string {
  if (!/^\d*$/.test(prefix) || length < 12 || length > 19 || prefix.length >= length) {
    throw inputError('prefix must be digits, shorter than the PAN of 12 to 19 digits', 'prefix');
  }
  let body = prefix;
  while (body.length < length - 1) body += String(Math.floor(random() * 10));
  return withCheckDigit(body);
}

/** The simulator's cards; every one swipes (service code 101) and needs its PIN online. */
export const TEST_CARDS: readonly TestCard[] = Object.freeze(
  [
    { name: 'unionpay-debit', pan: withCheckDigit('622202123456789012'), expiry: '3012', pin: '123456' },
    { name: 'unionpay-credit', pan: withCheckDigit('625807000000001'), expiry: '2912', pin: '111111' },
    { name: 'unionpay-debit-2', pan: withCheckDigit('621700000000000001'), expiry: '3106', pin: '246810' },
    /** The PAN of the published SM4 PIN block example (research keys.md §3.2), PIN 123654. */
    { name: 'sm4-example', pan: '6230606601007726888', expiry: '3001', pin: '123654' },
  ].map((c) => Object.freeze({ ...c, serviceCode: '101' })),
);

/** A test card by name. */
export function testCard(name: string): TestCard {
  const card = TEST_CARDS.find((c) => c.name === name);
  if (card === undefined) throw inputError(`no test card named ${JSON.stringify(name)}`, 'card');
  return card;
}
