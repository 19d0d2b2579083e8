/**
 * Field 62 of the UnionPay 0810 sign-in response: the working keys encrypted under the TMK, each
 * followed by a 4-byte check value (research/iso8583.md §1.4, head-office layout):
 *
 * | 60.3 | bytes | layout |
 * |---|---|---|
 * | 001 | 24 | PIK(8) CV(4) MAK(8) CV(4) |
 * | 003 | 40 | PIK(16) CV(4) MAK(16) CV(4); the MAK is 8 bytes + 8 zero bytes |
 * | 004 | 60 | as 003, then TDK(16) CV(4) |
 * | 006 | 60 | SM4: PIK(16) CV(4) MAK(16) CV(4) TDK(16) CV(4) |
 *
 * This module only splits and joins the layout; decrypting and checking the CVs belongs to the key
 * management code. Regional variants (Hunan puts the MAK CV at offset 28) are not covered.
 */
import { IsoError, IsoErrorCode } from './errors.js';

/** Key ciphertexts and check values, upper-case hex. */
export interface SignInKeys {
  pik: string;
  pikCv: string;
  mak: string;
  makCv: string;
  tdk?: string;
  tdkCv?: string;
}

const LAYOUT: Record<string, { keyLength: number; tdk: boolean }> = {
  '001': { keyLength: 8, tdk: false },
  '003': { keyLength: 16, tdk: false },
  '004': { keyLength: 16, tdk: true },
  '006': { keyLength: 16, tdk: true },
};

function layoutFor(code: string) {
  const l = LAYOUT[code];
  if (!l)
    throw new IsoError(
      IsoErrorCode.PACK,
      `60.3 ${JSON.stringify(code)} is not a sign-in key layout (001, 003, 004, 006)`,
      ['62'],
    );
  return l;
}

/** Bytes field 62 takes for a sign-in with network management code `code` (60.3). */
export function keyBlockLength(code: string): number {
  const { keyLength, tdk } = layoutFor(code);
  return (keyLength + 4) * (tdk ? 3 : 2);
}

/** Splits field 62 (hex, as unpack returns it) by the 60.3 layout; a wrong length is POSKEY_ERR_ISO_LENGTH. */
export function splitKeyBlock(field62: string, code: string): SignInKeys {
  const { keyLength, tdk } = layoutFor(code);
  const want = keyBlockLength(code);
  if (typeof field62 !== 'string' || !/^[0-9A-Fa-f]*$/.test(field62) || field62.length !== want * 2) {
    const got = typeof field62 === 'string' ? field62.length / 2 : 0;
    throw new IsoError(IsoErrorCode.LENGTH, `key block is ${got} bytes, 60.3=${code} needs ${want}`, ['62']);
  }
  const hex = field62.toUpperCase();
  const k = keyLength * 2;
  const part = (i: number) => hex.slice(i * (k + 8), i * (k + 8) + k);
  const cv = (i: number) => hex.slice(i * (k + 8) + k, (i + 1) * (k + 8));
  const keys: SignInKeys = { pik: part(0), pikCv: cv(0), mak: part(1), makCv: cv(1) };
  if (tdk) {
    keys.tdk = part(2);
    keys.tdkCv = cv(2);
  }
  return keys;
}

/** Joins keys into field 62 for 60.3 = `code`; every part must have its layout length. */
export function joinKeyBlock(keys: SignInKeys, code: string): string {
  const { keyLength, tdk } = layoutFor(code);
  const parts: [string, unknown, number][] = [
    ['pik', keys.pik, keyLength],
    ['pikCv', keys.pikCv, 4],
    ['mak', keys.mak, keyLength],
    ['makCv', keys.makCv, 4],
  ];
  if (tdk) parts.push(['tdk', keys.tdk, keyLength], ['tdkCv', keys.tdkCv, 4]);
  for (const [name, v, bytes] of parts) {
    if (typeof v !== 'string' || v.length !== bytes * 2 || !/^[0-9A-Fa-f]*$/.test(v)) {
      throw new IsoError(IsoErrorCode.PACK, `${name} must be ${bytes} bytes of hex`, ['62']);
    }
  }
  return parts.map(([, v]) => (v as string).toUpperCase()).join('');
}
