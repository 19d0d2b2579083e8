/**
 * Network management on the host ↔ card-network link (docs/network-link.md): the field 70 codes
 * and the layout of the zone keys a sign-on (001) or key exchange (101/161) delivers in field 48
 * of the 0810.
 *
 * Field 48 of the 0810 (ans LLLVAR, ASCII):
 *   `ZK1` ‖ key set n6 ‖ `P` ‖ ZPK: LL + cryptogram hex ‖ LL + KCV hex ‖ `A` ‖ ZAK: the same
 * The cryptograms are legacy ECB under the ZMK (32 or 48 hex: TDES double or triple length), the
 * KCVs legacy E_K(0) (6 hex). The key set names the pair (ZPK and ZAK change together) for logs and
 * the saved key file; the network tells the pairs apart by which ZAK verifies a message's MAC.
 */
import { PoskeyError } from '../errors.js';

/** Field 70 network management information codes the link uses. */
export const NMI = Object.freeze({
  SIGN_ON: '001',
  SIGN_OFF: '002',
  /** The acquirer asks for new zone keys. */
  KEY_EXCHANGE: '101',
  /** Key exchange, the network's code for it; the simulator answers it as 101. */
  KEY_EXCHANGE_NEW: '161',
  ECHO: '301',
} as const);

/** Codes whose 0810 carries new zone keys in field 48. */
export const KEY_DELIVERY_CODES: ReadonlySet<string> = new Set([
  NMI.SIGN_ON,
  NMI.KEY_EXCHANGE,
  NMI.KEY_EXCHANGE_NEW,
]);

/** One delivered zone key: its cryptogram under the ZMK and its check value (hex). */
export interface DeliveredKey {
  underZmk: string;
  kcv: string;
}

/** What field 48 of a key-delivering 0810 holds. */
export interface KeyDelivery {
  /** 6 digits naming the ZPK/ZAK pair. */
  keySet: string;
  zpk: DeliveredKey;
  zak: DeliveredKey;
}

const TAG = 'ZK1';

function deliveryError(reason: string): PoskeyError {
  return new PoskeyError('POSKEY_ERR_NETWORK_KEY_DELIVERY', reason, { field: '48' });
}

function part(value: string, what: string, lengths: readonly number[]): string {
  if (!/^[0-9A-F]*$/.test(value) || !lengths.includes(value.length)) {
    throw deliveryError(`${what} must be ${lengths.join(' or ')} upper-case hex digits`);
  }
  return String(value.length).padStart(2, '0') + value;
}

const CRYPTOGRAM_LENGTHS = [32, 48] as const;
const KCV_LENGTHS = [6] as const;

/** Field 48 text for a key delivery. */
export function encodeKeyDelivery(d: KeyDelivery): string {
  if (!/^\d{6}$/.test(d.keySet)) throw deliveryError('the key set must be 6 digits');
  const key = (tag: string, k: DeliveredKey, name: string) =>
    tag +
    part(k.underZmk, `the ${name} cryptogram`, CRYPTOGRAM_LENGTHS) +
    part(k.kcv, `the ${name} KCV`, KCV_LENGTHS);
  return TAG + d.keySet + key('P', d.zpk, 'ZPK') + key('A', d.zak, 'ZAK');
}

/**
 * Reads field 48 of a key-delivering 0810.
 * @throws POSKEY_ERR_NETWORK_KEY_DELIVERY (field 48) naming what is wrong
 */
export function decodeKeyDelivery(text: unknown): KeyDelivery {
  if (typeof text !== 'string') throw deliveryError('missing');
  let at = 0;
  const take = (n: number, what: string) => {
    if (at + n > text.length) throw deliveryError(`ends inside ${what}`);
    const s = text.slice(at, at + n);
    at += n;
    return s;
  };
  const sized = (what: string, lengths: readonly number[]) => {
    const len = take(2, `the length of ${what}`);
    if (!/^\d\d$/.test(len)) throw deliveryError(`the length of ${what} is not 2 digits`);
    const value = take(Number(len), what);
    if (!lengths.includes(value.length) || !/^[0-9A-F]+$/.test(value)) {
      throw deliveryError(`${what} must be ${lengths.join(' or ')} upper-case hex digits`);
    }
    return value;
  };
  const key = (tag: string, name: string): DeliveredKey => {
    if (take(1, `the ${name} tag`) !== tag) throw deliveryError(`expected the ${name} tag '${tag}'`);
    return {
      underZmk: sized(`the ${name} cryptogram`, CRYPTOGRAM_LENGTHS),
      kcv: sized(`the ${name} KCV`, KCV_LENGTHS),
    };
  };
  if (take(TAG.length, 'the tag') !== TAG) throw deliveryError(`must start with '${TAG}'`);
  const keySet = take(6, 'the key set');
  if (!/^\d{6}$/.test(keySet)) throw deliveryError('the key set must be 6 digits');
  const zpk = key('P', 'ZPK');
  const zak = key('A', 'ZAK');
  if (at !== text.length) throw deliveryError('has data after the ZAK');
  return { keySet, zpk, zak };
}
