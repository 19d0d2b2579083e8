/**
 * The issuer: what the card network answers to one message from an acquirer.
 *
 * 0200 (purchase 00xxxx, balance inquiry 31xxxx), in this order:
 *   1. MAC under the ZAK (field 128, or 64) — bad or missing → 0210 39 = A0, the ledger untouched;
 *   2. message checks — a missing field → 30, another processing code → 12, a zero purchase
 *      amount → 13, a track-2 PAN that contradicts field 2 → 14 (none of these is recorded);
 *   3. in one ledger transaction (`Ledger.authorise`), a retransmission of a recorded request gets
 *      the recorded answer; otherwise: unknown card 14; status other than active 62 (lost and stolen
 *      too: 41/43 would be the pick-up codes, but 62 is what the host passes through); presented
 *      expiry (field 14, else track 2) different from the card's, or the card's expiry month over,
 *      54; currency other than the card's 12; wrong-PIN count already at the limit 75; the PIN
 *      (field 52, format 0 under the ZPK) against the PVV — wrong → 55 and one more try, the try
 *      that reaches the limit (3) → 75, right → the count back to 0; a block that does not decode
 *      → 55 without counting a try (a key problem, not a guess); a balance inquiry without a PIN → 55;
 *      a purchase without a PIN is allowed (signature); funds short → 51; else approved: the debit,
 *      the auth code (38) and for inquiries the balance (54) are committed with the row before the
 *      answer is built.
 * 0800 echo (70 = 301), sign-on 001 and sign-off 002 → 0810 39 = 00 (a MAC, when the request
 * has one, must verify); other 70 codes → 12. Any other request MTI → its response with 12.
 * Every answer is MACed under the ZAK. A body that does not parse, or a response MTI, gets no answer.
 */
import { randomInt } from 'node:crypto';
import { isPoskeyError } from '../errors.js';
import type { HsmApi, LmkKeyBlock } from '../hsm/api.js';
import type { PinVerificationApi } from '../hsm/pvv.js';
import { type IsoMessage, maskPan, pack, unpack } from '../iso8583/index.js';
import {
  macField,
  NETWORK_DIALECT,
  NETWORK_MAC,
  NETWORK_PIN_FORMAT,
  networkMacBlock,
} from '../protocol/network-link.js';
import { RC } from '../protocol/unionpay-pos.js';
import type { AuthorisationFacts, AuthorisationOutcome, Card, Decision, Ledger } from './ledger.js';

/** What the issuer asks of its HSM: MACs under the ZAK, PIN verification against the PVV. */
export type IssuerHsm = Pick<HsmApi, 'generateMac' | 'verifyMac'> & Pick<PinVerificationApi, 'verifyPinPvv'>;

/** Response codes the simulator answers with: the POS spec's field 39 codes, one table for both. */
export const ISSUER_CODES = RC;

/** Consecutive wrong PINs that block the PIN. */
export const DEFAULT_MAX_PIN_TRIES = 3;

export interface IssuerOptions {
  hsm: IssuerHsm;
  ledger: Ledger;
  /** The network side's zone keys (LMK key blocks). */
  zone: { zpk: LmkKeyBlock; zak: LmkKeyBlock };
  /** The simulator's clock, for expiry. */
  clock?: () => Date;
  maxPinTries?: number;
  /** Authorisation codes (38), 6 characters; random digits by default. */
  authCode?: () => string;
}

/** What happened to one message, for the log (masked; no PIN block, no MAC). */
export interface IssuerEvent {
  mti: string;
  stan?: string | undefined;
  rrn?: string | undefined;
  pan?: string | undefined;
  responseCode?: string | undefined;
  replayed?: boolean;
  /** Why a message got no answer, or why it got the code it got. */
  reason?: string;
}

export type IssuerResult =
  | { kind: 'reply'; body: Buffer; response: IsoMessage; event: IssuerEvent }
  | { kind: 'ignored'; event: IssuerEvent };

/** The fields a 0210 echoes from its 0200 (docs/network-link.md). */
const ECHO_0210 = [3, 4, 7, 11, 12, 13, 25, 32, 37, 41, 42, 49] as const;
/** The fields an 0810 echoes. */
const ECHO_0810 = [7, 11, 32, 33, 70] as const;
const ZERO_MAC = '0000000000000000';

type Kind = 'purchase' | 'balance';

/** Why a 0200 is answered before the ledger is consulted. */
class Refusal {
  constructor(
    readonly code: string,
    readonly reason: string,
  ) {}
}

function text(msg: IsoMessage, field: number): string | undefined {
  const v = msg[field];
  return typeof v === 'string' ? v : undefined;
}

/** YYMM → months since year 0, counting the card valid through its expiry month. */
function monthIndex(yymm: string): number {
  return (2000 + Number(yymm.slice(0, 2))) * 12 + Number(yymm.slice(2, 4)) - 1;
}

/** True when the expiry month YYMM is over at `now` (UTC). */
export function isExpired(yymm: string, now: Date): boolean {
  return monthIndex(yymm) < now.getUTCFullYear() * 12 + now.getUTCMonth();
}

/** Field 54 for a balance: account type 10, amount type 02 (available), currency, C/D, 12 digits. */
export function balanceField(balance: number, currency: string): string {
  const sign = balance < 0 ? 'D' : 'C';
  return `1002${currency}${sign}${String(Math.abs(balance)).padStart(12, '0')}`;
}

function randomAuthCode(): string {
  return String(randomInt(0, 1_000_000)).padStart(6, '0');
}

/** What the request says, read once. */
interface Request {
  kind: Kind;
  facts: AuthorisationFacts;
  presentedExpiry: string | undefined;
  pinBlock: string | undefined;
}

/** The PAN and expiry of field 2 / 14, or of track 2 (`PAN=YYMM…`). */
function cardData(msg: IsoMessage): { pan: string; expiry: string | undefined } {
  const track = text(msg, 35);
  const sep = track?.indexOf('=') ?? -1;
  const trackPan = track !== undefined && sep > 0 ? track.slice(0, sep) : undefined;
  const trackExpiry = track !== undefined && sep > 0 ? track.slice(sep + 1, sep + 5) : undefined;
  const pan = text(msg, 2) ?? trackPan;
  if (pan === undefined || !/^\d{12,19}$/.test(pan)) throw new Refusal(RC.FORMAT_ERROR, 'no PAN');
  if (trackPan !== undefined && trackPan !== pan)
    throw new Refusal(RC.INVALID_CARD, 'track 2 PAN differs from field 2');
  const expiry =
    text(msg, 14) ?? (trackExpiry !== undefined && /^\d{4}$/.test(trackExpiry) ? trackExpiry : undefined);
  return { pan, expiry };
}

function readRequest(msg: IsoMessage): Request {
  for (const f of [3, 11, 32, 37, 49]) {
    if (text(msg, f) === undefined) throw new Refusal(RC.FORMAT_ERROR, `field ${f} missing`);
  }
  const processingCode = text(msg, 3) as string;
  const type = processingCode.slice(0, 2);
  const kind: Kind | undefined = type === '00' ? 'purchase' : type === '31' ? 'balance' : undefined;
  if (kind === undefined) throw new Refusal(RC.INVALID_TRANSACTION, `processing code ${processingCode}`);
  const amountText = text(msg, 4);
  if (kind === 'purchase' && amountText === undefined) throw new Refusal(RC.FORMAT_ERROR, 'field 4 missing');
  const amount = kind === 'balance' ? 0 : Number(amountText);
  if (kind === 'purchase' && amount <= 0) throw new Refusal(RC.INVALID_AMOUNT, 'zero amount');
  const { pan, expiry } = cardData(msg);
  return {
    kind,
    presentedExpiry: expiry,
    pinBlock: text(msg, 52),
    facts: {
      acquirerId: text(msg, 32) as string,
      stan: text(msg, 11) as string,
      rrn: text(msg, 37) as string,
      mti: msg[0],
      processingCode,
      pan,
      amount,
      currency: text(msg, 49) as string,
      tid: text(msg, 41) ?? '',
      mid: text(msg, 42) ?? '',
    },
  };
}

/** The issuer of the simulated network. Synchronous: one message is decided and committed in one call. */
export class Issuer {
  readonly #hsm: IssuerHsm;
  readonly #ledger: Ledger;
  readonly #zpk: LmkKeyBlock;
  readonly #zak: LmkKeyBlock;
  readonly #clock: () => Date;
  readonly #maxPinTries: number;
  readonly #authCode: () => string;
  /** Each request's bytes as received, for its MAC check (no re-pack). */
  readonly #received = new WeakMap<IsoMessage, Uint8Array>();

  constructor(options: IssuerOptions) {
    this.#hsm = options.hsm;
    this.#ledger = options.ledger;
    this.#zpk = options.zone.zpk;
    this.#zak = options.zone.zak;
    this.#clock = options.clock ?? (() => new Date());
    this.#maxPinTries = options.maxPinTries ?? DEFAULT_MAX_PIN_TRIES;
    this.#authCode = options.authCode ?? randomAuthCode;
  }

  /**
   * Answers one message body. `responseCode` (a fault for tests) answers a MAC-valid 0200 with that
   * code and leaves the ledger alone.
   */
  handle(body: Uint8Array, options: { responseCode?: string | undefined } = {}): IssuerResult {
    let msg: IsoMessage;
    try {
      msg = unpack(NETWORK_DIALECT, body);
    } catch (e) {
      return { kind: 'ignored', event: { mti: '????', reason: isPoskeyError(e) ? e.code : 'unparseable' } };
    }
    this.#received.set(msg, body);
    const mti = msg[0];
    const event: IssuerEvent = { mti, stan: text(msg, 11), rrn: text(msg, 37) };
    if (Number(mti[2]) % 2 === 1) return { kind: 'ignored', event: { ...event, reason: 'not a request' } };
    const responseMti = `${mti.slice(0, 2)}${Number(mti[2]) + 1}${mti[3]}`;
    try {
      if (mti === '0200') return this.#financial(msg, responseMti, event, options.responseCode);
      if (mti === '0800') return this.#management(msg, responseMti, event);
      return this.#reply(
        msg,
        this.#base(msg, responseMti, ECHO_0210),
        RC.INVALID_TRANSACTION,
        event,
        'unsupported MTI',
      );
    } catch (e) {
      const reason = isPoskeyError(e) ? e.code : 'internal error';
      return this.#reply(msg, this.#base(msg, responseMti, ECHO_0210), RC.SYSTEM_MALFUNCTION, event, reason);
    }
  }

  #financial(
    msg: IsoMessage,
    responseMti: string,
    event: IssuerEvent,
    override: string | undefined,
  ): IssuerResult {
    const response = this.#base(msg, responseMti, ECHO_0210);
    if (!this.#macVerifies(msg)) return this.#reply(msg, response, RC.MAC_FAILED, event, 'bad MAC');
    let req: Request;
    try {
      req = readRequest(msg);
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      return this.#reply(msg, response, e.code, event, e.reason);
    }
    const pan = req.facts.pan;
    response[2] = pan;
    if (req.kind === 'balance' && response[4] === undefined) response[4] = '000000000000';
    event.pan = maskPan(pan);
    if (override !== undefined) return this.#reply(msg, response, override, event, 'fault: response code');
    const outcome = this.#ledger.authorise(req.facts, (card) => this.#decide(card, req));
    event.replayed = outcome.replayed;
    this.#fill(response, outcome, req);
    return this.#reply(msg, response, outcome.responseCode, event);
  }

  #fill(response: IsoMessage, outcome: AuthorisationOutcome, req: Request): void {
    if (outcome.authCode !== undefined) response[38] = outcome.authCode;
    if (req.kind === 'balance' && outcome.balance !== undefined) {
      response[54] = balanceField(outcome.balance, req.facts.currency);
    }
  }

  /** The decision for a card, inside the ledger transaction (see the module comment for the order). */
  #decide(card: Card | undefined, req: Request): Decision {
    if (card === undefined) return { responseCode: RC.INVALID_CARD };
    if (card.status !== 'active') return { responseCode: RC.RESTRICTED_CARD };
    const presented = req.presentedExpiry;
    if ((presented !== undefined && presented !== card.expiry) || isExpired(card.expiry, this.#clock())) {
      return { responseCode: RC.EXPIRED_CARD };
    }
    if (req.facts.currency !== card.currency) return { responseCode: RC.INVALID_TRANSACTION };
    if (card.pinTries >= this.#maxPinTries) return { responseCode: RC.PIN_TRIES_EXCEEDED };
    let pinTries: number | undefined;
    if (req.pinBlock !== undefined) {
      const pin = this.#verifyPin(card, req.pinBlock);
      if (pin === 'unreadable') return { responseCode: RC.WRONG_PIN };
      if (pin === 'wrong') {
        const tries = card.pinTries + 1;
        return {
          responseCode: tries >= this.#maxPinTries ? RC.PIN_TRIES_EXCEEDED : RC.WRONG_PIN,
          pinTries: tries,
        };
      }
      if (card.pinTries > 0) pinTries = 0;
    } else if (req.kind === 'balance') {
      return { responseCode: RC.WRONG_PIN };
    }
    const tries = pinTries === undefined ? {} : { pinTries };
    if (req.kind === 'balance') {
      return { responseCode: RC.APPROVED, authCode: this.#authCode(), reportBalance: true, ...tries };
    }
    if (card.balance < req.facts.amount) return { responseCode: RC.INSUFFICIENT_FUNDS, ...tries };
    return { responseCode: RC.APPROVED, authCode: this.#authCode(), debit: req.facts.amount, ...tries };
  }

  #verifyPin(card: Card, pinBlock: string): 'ok' | 'wrong' | 'unreadable' {
    try {
      const ok = this.#hsm.verifyPinPvv({
        zpk: this.#zpk,
        pinBlock,
        format: NETWORK_PIN_FORMAT,
        pan: card.pan,
        pvk: this.#ledger.pvk.keyBlock,
        pvki: card.pvki,
        pvv: card.pvv,
      });
      return ok ? 'ok' : 'wrong';
    } catch (e) {
      // A block that does not decode under the ZPK is a key or format problem, not a PIN guess.
      if (isPoskeyError(e) && /^POSKEY_ERR_(PIN|PAN)/.test(e.code)) return 'unreadable';
      throw e;
    }
  }

  #management(msg: IsoMessage, responseMti: string, event: IssuerEvent): IssuerResult {
    const response = this.#base(msg, responseMti, ECHO_0810);
    const hasMac = msg[128] !== undefined || msg[64] !== undefined;
    if (hasMac && !this.#macVerifies(msg)) return this.#reply(msg, response, RC.MAC_FAILED, event, 'bad MAC');
    const code = text(msg, 70);
    if (code === undefined) return this.#reply(msg, response, RC.FORMAT_ERROR, event, 'field 70 missing');
    const known = code === '301' || code === '001' || code === '002';
    return this.#reply(msg, response, known ? RC.APPROVED : RC.INVALID_TRANSACTION, event, `70=${code}`);
  }

  /** The response skeleton: the request's echoed fields and a MAC placeholder where the request had its MAC. */
  #base(msg: IsoMessage, mti: string, echo: readonly number[]): IsoMessage {
    const response: IsoMessage = { 0: mti };
    for (const f of echo) if (msg[f] !== undefined) response[f] = msg[f];
    if (mti === '0210' && text(msg, 2) !== undefined) response[2] = msg[2];
    return response;
  }

  /**
   * The MAC block of a request: with the MAC in 128 (the last field), the bytes as received less
   * their last 8, as the sender MACed them (no re-pack); otherwise the re-packed message.
   */
  #macBlock(msg: IsoMessage): Uint8Array {
    const body = this.#received.get(msg);
    if (body === undefined || msg[128] === undefined || msg[64] !== undefined) return networkMacBlock(msg);
    return body.subarray(0, body.length - 8);
  }

  #macVerifies(msg: IsoMessage): boolean {
    const mac = text(msg, macField(msg));
    if (mac === undefined) return false;
    try {
      return this.#hsm.verifyMac({
        key: { kind: 'key', keyBlock: this.#zak },
        algorithm: NETWORK_MAC.algorithm,
        padding: NETWORK_MAC.padding,
        length: NETWORK_MAC.length,
        data: this.#macBlock(msg),
        mac,
      });
    } catch (e) {
      // A MAC the HSM cannot even compare (wrong length) is a bad MAC; a key failure is not.
      if (isPoskeyError(e) && (e.code === 'POSKEY_ERR_HEX' || e.code === 'POSKEY_ERR_LENGTH')) return false;
      throw e;
    }
  }

  #reply(
    request: IsoMessage,
    response: IsoMessage,
    code: string,
    event: IssuerEvent,
    reason?: string,
  ): IssuerResult {
    response[39] = code;
    response[macField(request)] = ZERO_MAC;
    // Packed once with the placeholder (as networkMacBlock would), the MAC written in place.
    const body = pack(NETWORK_DIALECT, response);
    const mac = this.#hsm.generateMac({
      key: { kind: 'key', keyBlock: this.#zak },
      algorithm: NETWORK_MAC.algorithm,
      padding: NETWORK_MAC.padding,
      length: NETWORK_MAC.length,
      data: body.subarray(0, body.length - 8),
    });
    body.write(mac, body.length - 8, 'hex');
    response[macField(response)] = mac;
    const done: IssuerEvent = { ...event, responseCode: code };
    if (reason !== undefined) done.reason = reason;
    return { kind: 'reply', body, response, event: done };
  }
}
