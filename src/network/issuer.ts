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
 * 0100 pre-authorisation (03xxxx): as a purchase, against the available balance, approved as a
 * hold (row status `held`) instead of a debit.
 * Follow-ups (void, refund, pre-auth void, completion and its advice, completion void; named by the
 * network catalogue) name their original by RRN in field 90 and are decided in
 * `Ledger.followUp` by the rules of follow-up.ts (25, 12, 13; field 90 missing → 30).
 * 0420 reversal: names its original by RRN in field 90 and undoes it once in `Ledger.reverse`
 * (0430 39 = 00 even for an unknown original, so the acquirer stops resending; 30 without 90).
 * A 0220 advice without card data (stored and forwarded by the acquirer) is the original's card.
 * 0800 echo (70 = 301), sign-on 001 and sign-off 002 → 0810 39 = 00 (a MAC, when the request
 * has one, must verify); a MACed sign-on and a key exchange (101/161, MAC required) also deliver a
 * new ZPK/ZAK pair under the ZMK in field 48 (src/protocol/network-keys.ts, zone-ring.ts); other 70
 * codes → 12. Any other request MTI → its response with 12.
 * The zone keys are a ring (zone-ring.ts): the pair whose ZAK verifies a request's MAC decrypts its
 * PIN and MACs its answer; an answer to a request without a usable MAC is MACed under the active
 * pair. A body that does not parse, or a response MTI, gets no answer.
 */
import { randomInt } from 'node:crypto';
import { isPoskeyError } from '../errors.js';
import type { HsmApi, LmkKeyBlock } from '../hsm/api.js';
import type { PinVerificationApi } from '../hsm/pvv.js';
import { classify, type IsoMessage, maskPan, pack, unpack } from '../iso8583/index.js';
import { encodeKeyDelivery, KEY_DELIVERY_CODES, NMI } from '../protocol/network-keys.js';
import {
  macField,
  NETWORK_DIALECT,
  NETWORK_MAC,
  NETWORK_PIN_FORMAT,
  networkMacBlock,
} from '../protocol/network-link.js';
import { decodeOriginalData } from '../protocol/original-data.js';
import { RC } from '../protocol/unionpay-pos.js';
import { decideFollowUp, type FollowUpKind, followUpKind } from './follow-up.js';
import type { AuthorisationFacts, AuthorisationOutcome, Card, Decision, Ledger } from './ledger.js';
import { ZoneKeyRing, type ZoneKeySet } from './zone-ring.js';

/** What the issuer asks of its HSM: MACs under the ZAK, PIN verification against the PVV. */
export type IssuerHsm = Pick<HsmApi, 'generateMac' | 'verifyMac'> &
  Pick<PinVerificationApi, 'verifyPinPvv'> &
  Partial<Pick<HsmApi, 'generateKey'>>;

/** Response codes the simulator answers with: the POS spec's field 39 codes, one table for both. */
export const ISSUER_CODES = RC;

/** Consecutive wrong PINs that block the PIN. */
export const DEFAULT_MAX_PIN_TRIES = 3;

export interface IssuerOptions {
  hsm: IssuerHsm;
  ledger: Ledger;
  /** The network side's zone keys (LMK key blocks), or a ring of them (key exchange, overlap). */
  zone: { zpk: LmkKeyBlock; zak: LmkKeyBlock } | ZoneKeyRing;
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
/** The fields a 0430 echoes from its 0420. */
const ECHO_0430 = [3, 4, 7, 11, 12, 13, 25, 32, 37, 41, 42, 49, 90] as const;
/** The fields an 0810 echoes. */
const ECHO_0810 = [7, 11, 32, 33, 70] as const;
const ZERO_MAC = '0000000000000000';

type Kind = 'purchase' | 'balance' | 'preauth';

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
  const kind: Kind | undefined =
    type === '00' ? 'purchase' : type === '31' ? 'balance' : type === '03' ? 'preauth' : undefined;
  // A pre-auth is a 0100 and nothing else is (follow-ups are read as a 0200 purchase).
  if (kind === undefined || (kind === 'preauth') !== (msg[0] === '0100')) {
    throw new Refusal(RC.INVALID_TRANSACTION, `processing code ${processingCode}`);
  }
  const amountText = text(msg, 4);
  if (kind !== 'balance' && amountText === undefined) throw new Refusal(RC.FORMAT_ERROR, 'field 4 missing');
  const amount = kind === 'balance' ? 0 : Number(amountText);
  if (kind !== 'balance' && amount <= 0) throw new Refusal(RC.INVALID_AMOUNT, 'zero amount');
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
  readonly #ring: ZoneKeyRing;
  readonly #clock: () => Date;
  readonly #maxPinTries: number;
  readonly #authCode: () => string;
  /** Each request's bytes as received, for its MAC check (no re-pack). */
  readonly #received = new WeakMap<IsoMessage, Uint8Array>();

  constructor(options: IssuerOptions) {
    this.#hsm = options.hsm;
    this.#ledger = options.ledger;
    const zone = options.zone;
    this.#ring =
      zone instanceof ZoneKeyRing ? zone : new ZoneKeyRing({ initial: { keySet: '000000', ...zone } });
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
      if (mti === '0420' || mti === '0400') return this.#reversal(msg, responseMti, event);
      const followUp = mti === '0800' ? undefined : followUpKind(classify(NETWORK_DIALECT, msg).name);
      if (followUp !== undefined)
        return this.#followUp(msg, followUp, responseMti, event, options.responseCode);
      if (mti === '0200' || mti === '0100') {
        return this.#financial(msg, responseMti, event, options.responseCode);
      }
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
    const read = this.#authenticated(msg, response, event, () => readRequest(msg));
    if ('answer' in read) return read.answer;
    const { req, keys } = read;
    const pan = req.facts.pan;
    response[2] = pan;
    if (req.kind === 'balance' && response[4] === undefined) response[4] = '000000000000';
    event.pan = maskPan(pan);
    if (override !== undefined)
      return this.#reply(msg, response, override, event, 'fault: response code', keys);
    const outcome = this.#ledger.authorise(req.facts, (card) => this.#decide(card, req, keys));
    event.replayed = outcome.replayed;
    this.#fill(response, outcome, req);
    return this.#reply(msg, response, outcome.responseCode, event, undefined, keys);
  }

  #fill(response: IsoMessage, outcome: AuthorisationOutcome, req: Request): void {
    if (outcome.authCode !== undefined) response[38] = outcome.authCode;
    if (req.kind === 'balance' && outcome.balance !== undefined) {
      response[54] = balanceField(outcome.balance, req.facts.currency);
    }
  }

  /** The request read after its MAC verified, or the answer refusing it (A0, or the read's Refusal). */
  #authenticated(
    msg: IsoMessage,
    response: IsoMessage,
    event: IssuerEvent,
    read: () => Request,
  ): { req: Request; keys: ZoneKeySet } | { answer: IssuerResult } {
    const keys = this.#verifiedKeys(msg);
    if (keys === undefined) return { answer: this.#reply(msg, response, RC.MAC_FAILED, event, 'bad MAC') };
    try {
      return { req: read(), keys };
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      return { answer: this.#reply(msg, response, e.code, event, e.reason, keys) };
    }
  }

  /** The decision for a card, inside the ledger transaction (see the module comment for the order). */
  #decide(card: Card | undefined, req: Request, keys: ZoneKeySet): Decision {
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
      const pin = this.#verifyPin(card, req.pinBlock, keys.zpk);
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
    if (req.kind === 'preauth')
      return { responseCode: RC.APPROVED, authCode: this.#authCode(), status: 'held', ...tries };
    return { responseCode: RC.APPROVED, authCode: this.#authCode(), debit: req.facts.amount, ...tries };
  }

  /** A void, refund, pre-auth void, completion or completion void (src/network/follow-up.ts). */
  #followUp(
    msg: IsoMessage,
    kind: FollowUpKind,
    responseMti: string,
    event: IssuerEvent,
    override: string | undefined,
  ): IssuerResult {
    const response = this.#base(msg, responseMti, ECHO_0210);
    const original = decodeOriginalData(text(msg, 90));
    const read = this.#authenticated(msg, response, event, () => {
      if (original === undefined) throw new Refusal(RC.FORMAT_ERROR, 'field 90 missing or malformed');
      // Read as the purchase it resembles; its own processing code is put back below.
      return readRequest({
        ...msg,
        ...this.#adviceCard(msg, original.rrn),
        0: '0200',
        3: `00${(text(msg, 3) ?? '').slice(2)}`,
      });
    });
    if ('answer' in read) return read.answer;
    const { req, keys } = read;
    req.facts.processingCode = text(msg, 3) as string;
    response[2] = req.facts.pan;
    event.pan = maskPan(req.facts.pan);
    if (override !== undefined)
      return this.#reply(msg, response, override, event, 'fault: response code', keys);
    const outcome = this.#ledger.followUp(req.facts, { kind, originalRrn: original!.rrn }, (card, o) =>
      decideFollowUp(kind, req.facts.amount, card, o, this.#authCode),
    );
    event.replayed = outcome.replayed;
    if (outcome.authCode !== undefined) response[38] = outcome.authCode;
    return this.#reply(msg, response, outcome.responseCode, event, kind, keys);
  }

  /**
   * An advice (0220) the acquirer stored and forwarded carries no card data (the acquirer keeps no
   * PAN on disk): it is the card of the original it names.
   */
  #adviceCard(msg: IsoMessage, originalRrn: string): { 2?: string } {
    if (msg[0] !== '0220' || text(msg, 2) !== undefined || text(msg, 35) !== undefined) return {};
    const pan = this.#ledger.originalCardPan(text(msg, 32) ?? '', originalRrn);
    return pan === undefined ? {} : { 2: pan };
  }

  /**
   * A reversal (0420; 0400 is read the same way): MAC first, then 3, 11, 32, 37 and field 90
   * (the original's RRN) are required (30 otherwise); `Ledger.reverse` undoes the original once.
   * The card is the original's: the reversal carries no card data.
   */
  #reversal(msg: IsoMessage, responseMti: string, event: IssuerEvent): IssuerResult {
    const response = this.#base(msg, responseMti, ECHO_0430);
    const keys = this.#verifiedKeys(msg);
    if (keys === undefined) return this.#reply(msg, response, RC.MAC_FAILED, event, 'bad MAC');
    const missing = [3, 11, 32, 37, 49].find((f) => text(msg, f) === undefined);
    if (missing !== undefined)
      return this.#reply(msg, response, RC.FORMAT_ERROR, event, `field ${missing} missing`, keys);
    const original = decodeOriginalData(text(msg, 90));
    if (original === undefined)
      return this.#reply(msg, response, RC.FORMAT_ERROR, event, 'field 90 missing or malformed', keys);
    const amount = Number(text(msg, 4) ?? '0');
    const outcome = this.#ledger.reverse({
      acquirerId: text(msg, 32) as string,
      stan: text(msg, 11) as string,
      rrn: text(msg, 37) as string,
      mti: msg[0],
      processingCode: text(msg, 3) as string,
      amount: Number.isSafeInteger(amount) ? amount : 0,
      currency: text(msg, 49) as string,
      tid: text(msg, 41) ?? '',
      mid: text(msg, 42) ?? '',
      originalRrn: original.rrn,
    });
    event.replayed = outcome.replayed;
    return this.#reply(msg, response, outcome.responseCode, event, `reversal: ${outcome.effect}`, keys);
  }

  #verifyPin(card: Card, pinBlock: string, zpk: LmkKeyBlock): 'ok' | 'wrong' | 'unreadable' {
    try {
      const ok = this.#hsm.verifyPinPvv({
        zpk,
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
    const keys = hasMac ? this.#verifiedKeys(msg) : undefined;
    if (hasMac && keys === undefined) return this.#reply(msg, response, RC.MAC_FAILED, event, 'bad MAC');
    const code = text(msg, 70);
    if (code === undefined)
      return this.#reply(msg, response, RC.FORMAT_ERROR, event, 'field 70 missing', keys);
    const reason = `70=${code}`;
    if (code === NMI.ECHO || code === NMI.SIGN_OFF || (code === NMI.SIGN_ON && keys === undefined)) {
      return this.#reply(msg, response, RC.APPROVED, event, reason, keys);
    }
    if (!KEY_DELIVERY_CODES.has(code)) {
      return this.#reply(msg, response, RC.INVALID_TRANSACTION, event, reason, keys);
    }
    // A key exchange must be MACed: an unauthenticated peer does not get to rotate the zone.
    if (keys === undefined) return this.#reply(msg, response, RC.MAC_FAILED, event, `${reason}: no MAC`);
    const generateKey = this.#hsm.generateKey;
    if (!this.#ring.canExchange || generateKey === undefined) {
      return this.#reply(msg, response, RC.INVALID_TRANSACTION, event, `${reason}: no ZMK`, keys);
    }
    const delivery = this.#ring.exchange({ generateKey: generateKey.bind(this.#hsm) });
    response[48] = encodeKeyDelivery(delivery);
    return this.#reply(msg, response, RC.APPROVED, event, `${reason}: key set ${delivery.keySet}`, keys);
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

  /** The zone key pair whose ZAK verifies the message's MAC (see zone-ring.ts), or undefined. */
  #verifiedKeys(msg: IsoMessage): ZoneKeySet | undefined {
    const mac = text(msg, macField(msg));
    if (mac === undefined) return undefined;
    const data = this.#macBlock(msg);
    for (const keys of this.#ring.candidates()) {
      if (this.#macVerifies(keys.zak, data, mac)) {
        this.#ring.used(keys);
        return keys;
      }
    }
    return undefined;
  }

  #macVerifies(zak: LmkKeyBlock, data: Uint8Array, mac: string): boolean {
    try {
      return this.#hsm.verifyMac({
        key: { kind: 'key', keyBlock: zak },
        algorithm: NETWORK_MAC.algorithm,
        padding: NETWORK_MAC.padding,
        length: NETWORK_MAC.length,
        data,
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
    keys: ZoneKeySet = this.#ring.active,
  ): IssuerResult {
    response[39] = code;
    response[macField(request)] = ZERO_MAC;
    // Packed once with the placeholder (as networkMacBlock would), the MAC written in place.
    const body = pack(NETWORK_DIALECT, response);
    const mac = this.#hsm.generateMac({
      key: { kind: 'key', keyBlock: keys.zak },
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
