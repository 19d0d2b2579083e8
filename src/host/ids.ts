/**
 * Retrieval reference numbers (field 37, 12 digits): `hhmmss` of the host clock, one digit naming
 * the host process (`rrnNode`), and a 5-digit sequence. Within one second a process issues fewer
 * than 100,000 RRNs (the whole host targets ~15,000 transactions a second), and every second has
 * its own prefix, so an RRN is unique per process and day; the node digit keeps up to ten
 * processes apart. That is the scope acquirers look RRNs up in (with the TID and the date).
 */
import type { IdSource } from './context.js';

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

export class RrnSource implements IdSource {
  readonly #node: string;
  #seq: number;

  constructor(node: number) {
    if (!Number.isInteger(node) || node < 0 || node > 9) throw new RangeError('rrn node must be a digit');
    this.#node = String(node);
    this.#seq = Math.floor(Math.random() * 100_000);
  }

  rrn(now: number): string {
    const d = new Date(now);
    this.#seq = (this.#seq + 1) % 100_000;
    return `${pad2(d.getHours())}${pad2(d.getMinutes())}${pad2(d.getSeconds())}${this.#node}${String(this.#seq).padStart(5, '0')}`;
  }
}
