/**
 * The terminal's messages, as the end-to-end contract (notes/e2e.md) and research iso8583.md
 * §1.3–§2.7 lay them out: 0800 sign-in, 0820 sign-off, 0200 purchase and balance, 0400 reversal;
 * and what the terminal reads back: the 0810 key block plan, field 54 balances, response texts.
 * Pure functions over message objects; the PIN pad operations are passed in.
 */

import { isPoskeyError } from '../errors.js';
import { type IsoMessage, type SignInKeys, type Subfields, splitKeyBlock } from '../iso8583/index.js';
import { RC, type SignInCode } from '../protocol/unionpay-pos.js';
import type { CardRead } from './cards.js';
import type { ResolvedTerminalConfig } from './config.js';
import { TerminalError, TerminalErrorCode } from './errors.js';
import type { PinPadAlgorithm, WorkingKeyLoad } from './pinpad.js';
import type { ReversalReason } from './reversal-store.js';

export type FinancialKind = 'purchase' | 'balance';

/** Transactions that refer to an original (61 + 37), and the pre-authorisation that starts a chain. */
export type FollowUpKind =
  | 'void'
  | 'refund'
  | 'preauth'
  | 'preauth-void'
  | 'completion'
  | 'completion-advice'
  | 'completion-void';

/** MTI, processing code, 25 and 60.1 of each (research iso8583.md §1.6). */
export const FOLLOW_UP_CODES: Readonly<
  Record<FollowUpKind, { mti: string; f3: string; f25: string; f601: string }>
> = Object.freeze({
  void: { mti: '0200', f3: '200000', f25: '00', f601: '23' },
  refund: { mti: '0220', f3: '200000', f25: '00', f601: '25' },
  preauth: { mti: '0100', f3: '030000', f25: '06', f601: '10' },
  'preauth-void': { mti: '0100', f3: '200000', f25: '06', f601: '11' },
  completion: { mti: '0200', f3: '000000', f25: '06', f601: '20' },
  'completion-advice': { mti: '0220', f3: '000000', f25: '06', f601: '24' },
  'completion-void': { mti: '0200', f3: '200000', f25: '06', f601: '21' },
});

/** What a follow-up names of its original: where it is (batch, trace, date) and its RRN (37). */
export interface OriginalRef {
  /** 61.1, 6 digits; the terminal's current batch when omitted. */
  batch?: string;
  /** 61.2, the original's STAN. */
  stan: string;
  /** 37 of the original's approval. */
  rrn: string;
  /** 61.3 MMDD; today when omitted. */
  date?: string;
  /** 38 of the original's approval, when it had one. */
  authCode?: string;
}

/** Fields of the original request a 0400 repeats (e2e contract; no PIN, no track; 61 for a void). */
const REVERSAL_FIELDS = [2, 3, 4, 11, 14, 22, 25, 41, 42, 49, 53, 60, 61] as const;

const MAX_AMOUNT = 999_999_999_999;

/** Field 4, n12 minor units (fen). */
export function formatAmount(amount: number | bigint | string): string {
  const n = typeof amount === 'string' && /^\d+$/.test(amount) ? Number(amount) : Number(amount);
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_AMOUNT) {
    throw new TerminalError(TerminalErrorCode.INPUT, 'amount must be a whole number of minor units from 1', {
      field: 'amount',
    });
  }
  return String(n).padStart(12, '0');
}

export function signInRequest(cfg: ResolvedTerminalConfig, stan: string, batch: string): IsoMessage {
  return {
    0: '0800',
    11: stan,
    41: cfg.tid,
    42: cfg.mid,
    60: { 1: '00', 2: batch, 3: cfg.signInCode },
    63: { 1: cfg.operator },
  } as IsoMessage;
}

export function signOffRequest(cfg: ResolvedTerminalConfig, stan: string, batch: string): IsoMessage {
  return { 0: '0820', 11: stan, 41: cfg.tid, 42: cfg.mid, 60: { 1: '00', 2: batch, 3: '002' } } as IsoMessage;
}

/** 53.2: 0 single DES (60.3 = 001), 6 double-length TDES, 4 SM4. */
function algorithmDigit(cfg: ResolvedTerminalConfig): '0' | '4' | '6' {
  if (cfg.algorithm === 'sm4') return '4';
  return cfg.signInCode === '001' ? '0' : '6';
}

/** What a 0200 needs from the PIN pad, so the builder never sees a key. */
export interface SecureOps {
  pinBlock(pin: string, pan: string): string;
  encryptTrack(track: string): string;
}

/**
 * A 0200 purchase (3 = 000000, 60.1 = 22) or balance inquiry (3 = 310000, 60.1 = 01, no amount),
 * without field 64. The clear PIN goes to the PIN pad; only the block lands in field 52.
 */
export function financialRequest(
  cfg: ResolvedTerminalConfig,
  kind: FinancialKind,
  p: { card: CardRead; stan: string; batch: string; amount?: string; pin?: string; ops: SecureOps },
): IsoMessage {
  const { card, pin } = p;
  const msg = { 0: '0200', 2: card.pan, 3: kind === 'purchase' ? '000000' : '310000' } as IsoMessage;
  if (kind === 'purchase') {
    if (p.amount === undefined)
      throw new TerminalError(TerminalErrorCode.INPUT, 'missing', { field: 'amount' });
    msg[4] = p.amount;
  }
  msg[11] = p.stan;
  if (card.expiry !== undefined) msg[14] = card.expiry;
  msg[22] = `${card.entry === 'swiped' ? '02' : '01'}${pin === undefined ? '2' : '1'}`;
  msg[25] = '00';
  if (pin !== undefined) msg[26] = '12';
  if (card.track2 !== undefined) {
    msg[35] = cfg.trackEncryption ? p.ops.encryptTrack(card.track2) : card.track2;
  }
  msg[41] = cfg.tid;
  msg[42] = cfg.mid;
  msg[49] = cfg.currency;
  if (pin !== undefined) msg[52] = p.ops.pinBlock(pin, card.pan);
  const trackEncrypted = cfg.trackEncryption && card.track2 !== undefined;
  if (pin !== undefined || trackEncrypted) {
    msg[53] = {
      1: pin === undefined ? '0' : '2',
      2: algorithmDigit(cfg),
      3: trackEncrypted ? '1' : '0',
      4: '0000000000000',
    };
  }
  msg[60] = { 1: kind === 'purchase' ? '22' : '01', 2: p.batch, 3: '000' };
  return msg;
}

/**
 * A void, refund, pre-auth, pre-auth void, completion (online or advice) or completion void: the
 * purchase layout with its own MTI, 3, 25 and 60.1, and (all but the pre-auth) 37 and 61 naming
 * the original.
 * @throws POSKEY_ERR_TERMINAL_INPUT when the original is missing or malformed
 */
export function followUpRequest(
  cfg: ResolvedTerminalConfig,
  kind: FollowUpKind,
  p: Parameters<typeof financialRequest>[2] & { original?: OriginalRef; now?: Date },
): IsoMessage {
  const codes = FOLLOW_UP_CODES[kind];
  const msg = financialRequest(cfg, 'purchase', p);
  msg[0] = codes.mti;
  msg[3] = codes.f3;
  msg[25] = codes.f25;
  msg[60] = { 1: codes.f601, 2: p.batch, 3: '000' };
  if (kind === 'preauth') return msg;
  const o = p.original;
  const now = p.now ?? new Date();
  const date =
    o?.date ?? `${String(now.getMonth() + 1).padStart(2, '0')}${String(now.getDate()).padStart(2, '0')}`;
  const bad = (field: string, reason: string) =>
    new TerminalError(TerminalErrorCode.INPUT, reason, { field });
  if (o === undefined) throw bad('original', 'missing');
  const batch = o.batch ?? p.batch;
  if (!/^\d{6}$/.test(batch)) throw bad('original.batch', 'must be 6 digits');
  if (!/^\d{6}$/.test(o.stan)) throw bad('original.stan', 'must be 6 digits');
  if (!/^\d{4}$/.test(date)) throw bad('original.date', 'must be MMDD');
  if (!/^[0-9A-Za-z]{12}$/.test(o.rrn)) throw bad('original.rrn', 'must be 12 characters');
  msg[37] = o.rrn;
  if (o.authCode !== undefined) msg[38] = o.authCode;
  msg[61] = { 1: batch, 2: o.stan, 3: date };
  return msg;
}

/** The 0400 that reverses `original` (without field 64): its fields and 39 = `reason`. */
export function reversalOf(original: IsoMessage, reason: ReversalReason): IsoMessage {
  const msg = { 0: '0400' } as IsoMessage;
  for (const f of REVERSAL_FIELDS) {
    const v = original[f];
    if (v !== undefined) msg[f] = typeof v === 'string' ? v : (JSON.parse(JSON.stringify(v)) as Subfields);
  }
  msg[39] = reason;
  return msg;
}

/**
 * Field 62 of an 0810 as a PIN pad load plan: PIK, MAK and (004/006) TDK with their algorithms.
 * 001 keys are single DES; 003/004 carry a double-length PIK and an 8-byte MAK followed by 8 zero
 * bytes (a double-length MAK, whose second half is never zero, is accepted too); 006 keys are SM4.
 * @throws POSKEY_ERR_TERMINAL_SIGN_IN when the key block does not fit the layout of `code`
 */
export function signInKeyPlan(
  field62: unknown,
  code: SignInCode,
  slots: { tmk: number; pin: number; mac: number; data: number },
): (WorkingKeyLoad & { slot: number; name: string })[] {
  let keys: SignInKeys;
  try {
    keys = splitKeyBlock(field62 as string, code);
  } catch (e) {
    const reason = isPoskeyError(e) ? e.reason : 'malformed';
    throw new TerminalError(TerminalErrorCode.SIGN_IN, `unusable key block: ${reason}`, {
      field: '62',
      cause: e,
    });
  }
  const single: PinPadAlgorithm = code === '006' ? 'sm4' : code === '001' ? 'des' : 'tdes';
  let mak = keys.mak;
  let makAlgorithm: PinPadAlgorithm = code === '001' ? 'des' : single;
  if ((code === '003' || code === '004') && /^0{16}$/.test(mak.slice(16))) {
    mak = mak.slice(0, 16);
    makAlgorithm = 'des';
  }
  const plan: (WorkingKeyLoad & { slot: number; name: string })[] = [
    {
      name: 'pik',
      slot: slots.pin,
      under: slots.tmk,
      role: 'pin',
      algorithm: single,
      cryptogram: keys.pik,
      checkValue: keys.pikCv,
    },
    {
      name: 'mak',
      slot: slots.mac,
      under: slots.tmk,
      role: 'mac',
      algorithm: makAlgorithm,
      cryptogram: mak,
      checkValue: keys.makCv,
    },
  ];
  if (keys.tdk !== undefined && keys.tdkCv !== undefined) {
    plan.push({
      name: 'tdk',
      slot: slots.data,
      under: slots.tmk,
      role: 'data',
      algorithm: single,
      cryptogram: keys.tdk,
      checkValue: keys.tdkCv,
    });
  }
  return plan;
}

/** The host's clock from an 0810/0210 (12 hhmmss, 13 MMDD), in the year of `now`; undefined when absent or invalid. */
export function hostClock(msg: IsoMessage, now: Date): Date | undefined {
  const time = msg[12];
  const date = msg[13];
  if (
    typeof time !== 'string' ||
    typeof date !== 'string' ||
    !/^\d{6}$/.test(time) ||
    !/^\d{4}$/.test(date)
  ) {
    return undefined;
  }
  const [mo, d, h, mi, s] = [
    date.slice(0, 2),
    date.slice(2),
    time.slice(0, 2),
    time.slice(2, 4),
    time.slice(4),
  ].map(Number) as [number, number, number, number, number];
  const t = new Date(now.getFullYear(), mo - 1, d, h, mi, s);
  const valid = t.getMonth() === mo - 1 && t.getDate() === d && h < 24 && mi < 60 && s < 60;
  return valid ? t : undefined;
}

/** One balance entry of field 54: account type n2, amount type n2, currency n3, sign C/D, amount n12. */
export interface Balance {
  accountType: string;
  amountType: string;
  currency: string;
  sign: 'C' | 'D';
  /** 12 digits, minor units. */
  amount: string;
  /** Signed minor units (negative for D). */
  minor: number;
}

/** Reads the balances in field 54 (20 characters each); undefined when the field is malformed. */
export function parseBalances(field54: unknown): Balance[] | undefined {
  if (typeof field54 !== 'string' || field54.length === 0 || field54.length % 20 !== 0) return undefined;
  const out: Balance[] = [];
  for (let i = 0; i < field54.length; i += 20) {
    const m = /^(\d{2})(\d{2})(\d{3})([CD])(\d{12})$/.exec(field54.slice(i, i + 20));
    if (m === null) return undefined;
    const sign = m[4] as 'C' | 'D';
    const minor = Number(m[5]) * (sign === 'D' ? -1 : 1);
    out.push({ accountType: m[1]!, amountType: m[2]!, currency: m[3]!, sign, amount: m[5]!, minor });
  }
  return out;
}

const RESPONSE_TEXT: Readonly<Record<string, string>> = Object.freeze({
  [RC.APPROVED]: 'approved',
  [RC.INVALID_TRANSACTION]: 'invalid transaction (already voided, completed or settled)',
  [RC.INVALID_AMOUNT]: 'invalid amount',
  [RC.FORMAT_ERROR]: 'format error',
  [RC.INVALID_CARD]: 'invalid card',
  [RC.ORIGINAL_NOT_FOUND]: 'original transaction not found',
  [RC.INSUFFICIENT_FUNDS]: 'insufficient funds',
  [RC.EXPIRED_CARD]: 'expired card',
  [RC.WRONG_PIN]: 'wrong PIN',
  [RC.RESTRICTED_CARD]: 'restricted card',
  [RC.PIN_TRIES_EXCEEDED]: 'PIN tries exceeded',
  [RC.DUPLICATE]: 'duplicate transaction',
  [RC.SYSTEM_MALFUNCTION]: 'system malfunction',
  [RC.TERMINAL_NOT_REGISTERED]: 'terminal not registered',
  [RC.ISSUER_TIMEOUT]: 'no response from the issuer',
  [RC.PIN_FORMAT_ERROR]: 'PIN format error (sign in again)',
  [RC.MAC_FAILED]: 'MAC verification failed at the host (sign in again)',
  [RC.SIGN_IN_REQUIRED]: 'working keys missing or too old (sign in again)',
});

/** A response code in words, for receipts and CLI output. */
export function describeResponseCode(code: string | undefined): string {
  if (code === undefined) return 'no response code';
  return RESPONSE_TEXT[code] ?? `declined (${code})`;
}
