/**
 * Field 90 (original data elements, n42) of the network dialect, as poskey uses it on follow-ups
 * (void, refund, pre-auth void, completion, completion void): the original's MTI (n4), its RRN
 * (n12), its transmission date and time MMDDhhmmss (n10), the acquirer ID (n11, zero-filled on the
 * left) and 5 zeros. ISO 8583:1987 puts the original STAN (n6) and a forwarding institution ID (n11)
 * there; the host journals the original's RRN, not its network STAN, and the RRN is what both ends
 * key an original by (the network simulator's ledger: acquirer ID + RRN), so the RRN takes the
 * STAN's place and the 5 digits left over are zeros.
 */
export interface OriginalData {
  mti: string;
  rrn: string;
  /** MMDDhhmmss (UTC). */
  transmitted: string;
  /** Zero-filled to 11 digits when decoded. */
  acquirerId: string;
}

const LAYOUT = /^(\d{4})(\d{12})(\d{10})(\d{11})00000$/;

/** Field 90 for an original. @throws RangeError when a part does not fit its slot */
export function encodeOriginalData(o: OriginalData): string {
  const text = `${o.mti}${o.rrn}${o.transmitted}${o.acquirerId.padStart(11, '0')}00000`;
  if (!LAYOUT.test(text)) throw new RangeError('original data does not fit field 90 (n4 n12 n10 n11)');
  return text;
}

/** The parts of field 90, or undefined when it does not have poskey's layout. */
export function decodeOriginalData(field90: string | undefined): OriginalData | undefined {
  const m = field90 === undefined ? null : LAYOUT.exec(field90);
  if (m === null) return undefined;
  return { mti: m[1]!, rrn: m[2]!, transmitted: m[3]!, acquirerId: m[4]! };
}

/** MMDDhhmmss in UTC for a time in ms (field 7's layout). */
export function transmissionTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}
