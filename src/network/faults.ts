/**
 * Faults the simulated network injects, for the host's tests of timeouts, retransmissions and
 * reversals. Each request draws its fate once, on arrival:
 *
 * - `delayMs` + up to `jitterMs` (uniform) before the request is processed: a slow network, and
 *   answers overtaking each other on one connection;
 * - `dropRate`: the request is processed (the ledger applies it) and the answer is lost — the case
 *   acquirer reversals exist for;
 * - `disconnectRate`: as drop, and the connection is closed instead of answering;
 * - `responseCode`: every MAC-valid 0200 is answered with this code and the ledger is not touched.
 *
 * Settings are replaced as a whole by `setFaults` (unset fields back to no fault).
 */
import { networkError } from './errors.js';

export interface Faults {
  delayMs: number;
  jitterMs: number;
  /** 0–1: share of requests left unanswered. */
  dropRate: number;
  /** 0–1: share of requests answered by closing the connection. */
  disconnectRate: number;
  /** Two characters; answers every MAC-valid 0200 with this code, the ledger untouched. */
  responseCode: string | undefined;
}

/** What happens to one request. */
export interface FaultPlan {
  delayMs: number;
  drop: boolean;
  disconnect: boolean;
  responseCode: string | undefined;
}

export const NO_FAULTS: Readonly<Faults> = Object.freeze({
  delayMs: 0,
  jitterMs: 0,
  dropRate: 0,
  disconnectRate: 0,
  responseCode: undefined,
});

/** Longest delay accepted (10 minutes): beyond any host timeout. */
export const MAX_DELAY_MS = 600_000;

const KEYS = new Set(Object.keys(NO_FAULTS));

function faultError(field: string, reason: string) {
  return networkError('POSKEY_ERR_NETWORK_FAULTS', reason, field);
}

function delay(value: unknown, field: string): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_DELAY_MS) {
    throw faultError(field, `must be an integer number of milliseconds from 0 to ${MAX_DELAY_MS}`);
  }
  return value;
}

function rate(value: unknown, field: string): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw faultError(field, 'must be a number from 0 to 1');
  }
  return value;
}

/**
 * Validates fault settings; absent fields are no fault.
 * @throws POSKEY_ERR_NETWORK_FAULTS naming the bad setting
 */
export function resolveFaults(input: Partial<Faults> | undefined = {}): Readonly<Faults> {
  if (typeof input !== 'object' || input === null) throw faultError('faults', 'must be an object');
  const extra = Object.keys(input).filter((k) => !KEYS.has(k));
  if (extra.length > 0) throw faultError(extra[0]!, 'unknown fault setting');
  const code = input.responseCode;
  if (code !== undefined && (typeof code !== 'string' || !/^[0-9A-Z]{2}$/.test(code))) {
    throw faultError('responseCode', 'must be two digits or capital letters');
  }
  return Object.freeze({
    delayMs: delay(input.delayMs, 'delayMs'),
    jitterMs: delay(input.jitterMs, 'jitterMs'),
    dropRate: rate(input.dropRate, 'dropRate'),
    disconnectRate: rate(input.disconnectRate, 'disconnectRate'),
    responseCode: code,
  });
}

/** Draws one request's fate. `random` returns [0, 1); a rate of 1 always fires, 0 never. */
export function planFaults(faults: Faults, random: () => number = Math.random): FaultPlan {
  const jitter = faults.jitterMs > 0 ? Math.floor(random() * (faults.jitterMs + 1)) : 0;
  const drop = faults.dropRate > 0 && random() < faults.dropRate;
  const disconnect = !drop && faults.disconnectRate > 0 && random() < faults.disconnectRate;
  return { delayMs: faults.delayMs + jitter, drop, disconnect, responseCode: faults.responseCode };
}
