/**
 * Terminal configuration: checked once, defaults filled in, frozen (the fastify config model).
 * The algorithm, the sign-in code (60.3), the MAC algorithm and track encryption must agree: an SM4
 * terminal signs in with 006, track encryption needs a TDK (004 or 006), X9.19 needs DES keys.
 */
import type { TerminalHeader, Tpdu } from '../iso8583/framing.js';
import { isSignInCode, type SignInCode } from '../protocol/unionpay-pos.js';
import { TerminalError, TerminalErrorCode } from './errors.js';
import type { PinPadMacAlgorithm } from './pinpad.js';

export type ConnectionMode = 'persistent' | 'per-transaction';

/** PIN pad slots the terminal application uses. */
export interface TerminalSlots {
  tmk: number;
  pin: number;
  mac: number;
  data: number;
}

export interface TerminalConfig {
  /** Field 41, 8 characters. */
  tid: string;
  /** Field 42, 15 characters. */
  mid: string;
  host: string;
  port: number;
  /** Key family: 'tdes' (default) or 'sm4'. */
  algorithm?: 'tdes' | 'sm4';
  /** 60.3 of the sign-in: default 006 for SM4, 004 with track encryption, else 003. */
  signInCode?: SignInCode;
  /** Field 64 algorithm: 'unionpay-ecb' (default) or 'x919' (ISO 9797-1 alg. 3, DES keys). */
  macAlgorithm?: PinPadMacAlgorithm;
  /** Encrypt track 2 under the TDK (53.3 = 1). Default false. */
  trackEncryption?: boolean;
  timeouts?: { connectMs?: number; responseMs?: number };
  /** One connection for every request (default), or a new one per exchange. */
  connection?: ConnectionMode;
  /** 63.1 operator code of the sign-in, 3 characters; default '001'. */
  operator?: string;
  /** Field 49; default '156' (CNY). */
  currency?: string;
  tpdu?: Tpdu;
  header?: TerminalHeader;
  slots?: Partial<TerminalSlots>;
  /** Sign in again before a transaction once the working keys are older than this; default 24 h. */
  maxKeyAgeMs?: number;
  /** Send a reversal right after a timeout or a bad response MAC (default true), not only before the next transaction. */
  reverseImmediately?: boolean;
}

export interface ResolvedTerminalConfig {
  readonly tid: string;
  readonly mid: string;
  readonly host: string;
  readonly port: number;
  readonly algorithm: 'tdes' | 'sm4';
  readonly signInCode: SignInCode;
  readonly macAlgorithm: PinPadMacAlgorithm;
  readonly trackEncryption: boolean;
  readonly timeouts: { readonly connectMs: number; readonly responseMs: number };
  readonly connection: ConnectionMode;
  readonly operator: string;
  readonly currency: string;
  readonly tpdu: Tpdu | undefined;
  readonly header: TerminalHeader | undefined;
  readonly slots: Readonly<TerminalSlots>;
  readonly maxKeyAgeMs: number;
  readonly reverseImmediately: boolean;
}

export const DEFAULT_SLOTS: Readonly<TerminalSlots> = Object.freeze({ tmk: 0, pin: 1, mac: 2, data: 3 });
export const DEFAULT_RESPONSE_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_KEY_AGE_MS = 24 * 3600_000;

const KNOWN_KEYS = new Set([
  'tid',
  'mid',
  'host',
  'port',
  'algorithm',
  'signInCode',
  'macAlgorithm',
  'trackEncryption',
  'timeouts',
  'connection',
  'operator',
  'currency',
  'tpdu',
  'header',
  'slots',
  'maxKeyAgeMs',
  'reverseImmediately',
]);

function bad(field: string, reason: string): never {
  throw new TerminalError(TerminalErrorCode.CONFIG, reason, { field });
}

function text(value: unknown, length: number, field: string): string {
  if (typeof value !== 'string' || value.length !== length || !/^[\x20-\x7e]*$/.test(value)) {
    bad(field, `must be ${length} printable ASCII characters`);
  }
  return value;
}

function positive(value: unknown, fallback: number, field: string): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) {
    bad(field, 'must be a positive integer (milliseconds)');
  }
  return v;
}

function pick<T extends string>(value: unknown, allowed: readonly T[], fallback: T, field: string): T {
  const v = value ?? fallback;
  if (!allowed.includes(v as T)) bad(field, `must be one of ${allowed.join(', ')}`);
  return v as T;
}

function resolveSlots(slots: Partial<TerminalSlots> | undefined): TerminalSlots {
  const s = { ...DEFAULT_SLOTS, ...(slots ?? {}) };
  for (const [name, n] of Object.entries(s)) {
    if (!Number.isInteger(n) || n < 0 || n > 254) bad(`slots.${name}`, 'must be a slot number');
  }
  if (new Set(Object.values(s)).size !== 4) bad('slots', 'the TMK, PIN, MAC and data slots must differ');
  return s;
}

function resolveSignInCode(c: TerminalConfig, algorithm: 'tdes' | 'sm4', track: boolean): SignInCode {
  const code = c.signInCode ?? (algorithm === 'sm4' ? '006' : track ? '004' : '003');
  if (!isSignInCode(code)) bad('signInCode', 'must be 001, 003, 004 or 006');
  if ((code === '006') !== (algorithm === 'sm4')) {
    bad('signInCode', `sign-in code ${code} does not fit a ${algorithm} terminal (SM4 signs in with 006)`);
  }
  if (track && code !== '004' && code !== '006') {
    bad('trackEncryption', 'track encryption needs a TDK: sign in with 004 (TDES) or 006 (SM4)');
  }
  return code;
}

/**
 * Checks a terminal configuration and fills in the defaults.
 * @throws POSKEY_ERR_TERMINAL_CONFIG naming the option at fault
 */
export function resolveTerminalConfig(c: TerminalConfig): ResolvedTerminalConfig {
  if (c === null || typeof c !== 'object') bad('config', 'must be an object');
  const extra = Object.keys(c).filter((k) => !KNOWN_KEYS.has(k));
  if (extra.length > 0) bad(extra[0]!, 'unknown terminal option');
  if (typeof c.host !== 'string' || c.host.length === 0) bad('host', 'must be a host name or address');
  if (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535) bad('port', 'must be a TCP port (1-65535)');
  const algorithm = pick(c.algorithm, ['tdes', 'sm4'] as const, 'tdes', 'algorithm');
  const trackEncryption = c.trackEncryption ?? false;
  if (typeof trackEncryption !== 'boolean') bad('trackEncryption', 'must be true or false');
  const signInCode = resolveSignInCode(c, algorithm, trackEncryption);
  const macAlgorithm = pick(
    c.macAlgorithm,
    ['unionpay-ecb', 'x919'] as const,
    'unionpay-ecb',
    'macAlgorithm',
  );
  if (macAlgorithm === 'x919' && algorithm === 'sm4')
    bad('macAlgorithm', 'the X9.19 MAC needs DES/TDES keys');
  const currency = c.currency ?? '156';
  if (typeof currency !== 'string' || !/^\d{3}$/.test(currency)) bad('currency', 'must be 3 digits');
  return Object.freeze({
    tid: text(c.tid, 8, 'tid'),
    mid: text(c.mid, 15, 'mid'),
    host: c.host,
    port: c.port,
    algorithm,
    signInCode,
    macAlgorithm,
    trackEncryption,
    timeouts: Object.freeze({
      connectMs: positive(c.timeouts?.connectMs, DEFAULT_CONNECT_TIMEOUT_MS, 'timeouts.connectMs'),
      responseMs: positive(c.timeouts?.responseMs, DEFAULT_RESPONSE_TIMEOUT_MS, 'timeouts.responseMs'),
    }),
    connection: pick(c.connection, ['persistent', 'per-transaction'] as const, 'persistent', 'connection'),
    operator: text(c.operator ?? '001', 3, 'operator'),
    currency,
    tpdu: c.tpdu,
    header: c.header,
    slots: Object.freeze(resolveSlots(c.slots)),
    maxKeyAgeMs: positive(c.maxKeyAgeMs, DEFAULT_MAX_KEY_AGE_MS, 'maxKeyAgeMs'),
    reverseImmediately: c.reverseImmediately ?? true,
  });
}
