/**
 * The host's configuration: one zod schema with defaults, unknown keys refused, checked once and
 * frozen (the fastify model). `poskey host serve` builds it from a JSON file and flags; tests and
 * `poskey start` pass objects. Secrets never go in it: ZMK components come from the environment
 * or the caller, the LMK passphrase from POSKEY_LMK_PASSPHRASE.
 *
 * Durations are milliseconds as a number, or text with a unit: `'24h'`, `'90s'`, `'500ms'`, `'2m'`.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { SM4_TPDU_DESTINATION } from '../protocol/unionpay-pos.js';
import { hostError } from './errors.js';

/** Defaults a bare `poskey host serve` runs with. */
export const DEFAULT_HOST_DATA_DIR = './data/host';
export const DEFAULT_TERMINAL_PORT = 5858;
export const DEFAULT_NETWORK_PORT = 5859;
/** Working keys older than this make the terminal sign in again. */
export const DEFAULT_MAX_TAK_AGE_MS = 24 * 60 * 60 * 1000;

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration in ms from a number (ms) or text such as `'24h'`.
 * @returns undefined when the text is not a duration
 */
export function parseDuration(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
  if (!m) return undefined;
  const ms = Number(m[1]) * UNITS[m[2] ?? 'ms']!;
  return Number.isSafeInteger(Math.round(ms)) ? Math.round(ms) : undefined;
}

const duration = (min = 0) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined || ms < min) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a duration of at least ${min} ms, e.g. 5000, '30s', '24h'`,
      });
      return z.NEVER;
    }
    return ms;
  });

const port = z.number().int().min(0).max(65535);
const address = z.string().min(1);

/** MAC algorithms a terminal profile may use on field 64. */
export const TERMINAL_MAC_ALGORITHMS = ['unionpay-ecb', 'x919'] as const;
export type TerminalMacAlgorithm = (typeof TERMINAL_MAC_ALGORITHMS)[number];

export const SIGN_IN_CODE_VALUES = ['001', '003', '004', '006'] as const;

const networkSchema = z.strictObject({
  /** The card network (or its simulator). */
  host: address.default('127.0.0.1'),
  port: port.default(DEFAULT_NETWORK_PORT),
  /** How long a forwarded request waits for its answer; then the terminal gets 98. */
  timeout: duration(1).default(5000),
  /** Time allowed to open the connection. */
  connectTimeout: duration(1).default(2000),
  /** Reconnect back-off: first delay, doubled up to the maximum. */
  reconnectMin: duration(1).default(100),
  reconnectMax: duration(1).default(5000),
  /** Requests in flight on the link before new ones are refused (96). */
  maxInFlight: z.number().int().min(1).max(900_000).default(50_000),
  /**
   * Several endpoints of the network, one link each, with failover (network-links.ts); when given,
   * `host` and `port` are not used.
   */
  endpoints: z
    .array(z.strictObject({ host: address, port: port.refine((p) => p > 0, 'must be 1 to 65535') }))
    .min(1)
    .max(16)
    .optional(),
  /** An echo test (0800 70 = 301) on a link idle this long; a failed echo drops the link. 0 = off. */
  echoInterval: duration(0).default(30_000),
  /** Sign on (0800 70 = 001, new zone keys) once the link is up. */
  signOn: z.boolean().default(true),
  /** Ask the network for new zone keys (0800 70 = 101) this often. 0 = only on demand. */
  rekeyInterval: duration(0).default(24 * 60 * 60 * 1000),
});

const zoneSchema = z.strictObject({
  /** The shared zone file: ZPK and ZAK as cryptograms under the ZMK, with KCVs (no clear keys). */
  file: z.string().min(1).optional(),
  /** Where the host keeps the imported zone keys as LMK key blocks; `<dataDir>/zone-keys.json` by default. */
  keysFile: z.string().min(1).optional(),
  /** Environment variable holding the ZMK components (hex, comma-separated). */
  componentsEnv: z.string().min(1).default('POSKEY_ZMK_COMPONENTS'),
});

const hsmSchema = z.discriminatedUnion('mode', [
  z.strictObject({
    /** The HSM runs inside the host process (fastest: no hop per PIN or MAC). */
    mode: z.literal('in-process'),
    /** The HSM data directory (its sealed or development LMK). */
    dataDir: z.string().min(1).default('./data/hsm'),
    /** Use (or make) the development LMK in dataDir. */
    dev: z.boolean().default(false),
    cacheSize: z.number().int().positive().optional(),
  }),
  z.strictObject({
    /** A poskey HSM service or a payShield over its host-command TCP interface. */
    mode: z.literal('tcp'),
    host: address.default('127.0.0.1'),
    port: port.default(1500),
    headerLength: z.number().int().min(0).max(255).default(4),
    timeout: duration(1).default(2000),
    connections: z.number().int().min(1).max(64).default(2),
  }),
]);

/** Store-and-forward towards the network (src/host/saf.ts): reversals and advices owed to it. */
const safSchema = z.strictObject({
  /** Run the sender (and crash recovery on start); a second server on one store turns it off. */
  enabled: z.boolean().default(true),
  /** Back-off after a failed attempt: first delay, doubled per attempt up to the maximum. */
  retryMin: duration(1).default(500),
  retryMax: duration(1).default(30_000),
  /** How often the queue is looked at when nothing new was queued. */
  poll: duration(10).default(1000),
  /** Entries sent together per round. */
  batch: z.number().int().min(1).max(1000).default(64),
});

const journalSchema = z.strictObject({
  /**
   * `write-ahead` (default): the request row is durable before the request is forwarded, so the
   * network never sees a request the host has no record of, and a repeated TID + batch + STAN is
   * caught by the database's unique key even when it reaches another host process.
   * `overlap`: the request row is written while the request is forwarded (one group-commit round
   * trip less on the critical path); a repeat reaching another process is caught only after it was
   * forwarded.
   * `outcome`: no request row; one row, written once with the outcome (one durable write and one
   * group-commit round trip per transaction). Repeats within a process are stopped by the in-memory
   * guard; one reaching another process is caught by the unique key only after it was forwarded
   * (94, as in `overlap`); a crash while the request is out leaves no row (docs/host.md).
   * In every mode no answer leaves before its outcome row is durable.
   */
  mode: z.enum(['write-ahead', 'overlap', 'outcome']).default('write-ahead'),
});

/** The host config; everything has a default except database, zone file and terminal overrides. */
export const hostConfigSchema = z.strictObject({
  /** SQLite database, PAN key and stored zone keys live here. */
  dataDir: z.string().min(1).default(DEFAULT_HOST_DATA_DIR),
  /** `postgres://…`, `sqlite:PATH` or a path; SQLite in dataDir by default. */
  database: z.string().min(1).optional(),
  /** PAN hash key file (needed with PostgreSQL: every host process must share it). */
  panKeyFile: z.string().min(1).optional(),
  /** Names this host process in journal rows; the host name by default. Keep it stable. */
  nodeId: z.string().min(1).max(64).optional(),
  /** Terminal listener. */
  host: address.default('127.0.0.1'),
  port: port.default(DEFAULT_TERMINAL_PORT),
  /** Connections beyond this are closed at once. */
  maxConnections: z.number().int().min(1).max(1_000_000).default(10_000),
  /** Requests in flight on one connection before the host stops reading from it. */
  maxInFlightPerConnection: z.number().int().min(1).max(10_000).default(64),
  /** A connection with nothing in flight and no traffic for this long is closed. */
  idleTimeout: duration(1).default(120_000),
  /** How long close() (SIGTERM) waits for in-flight transactions before cutting connections. */
  drainTimeout: duration(0).default(15_000),
  /** Largest terminal frame accepted (bytes after the length prefix). */
  maxFrameSize: z.number().int().min(64).max(65535).default(4096),
  /** Working keys older than this (or none) get A7: sign in again. */
  maxTakAge: duration(1).default(DEFAULT_MAX_TAK_AGE_MS),
  /**
   * Key freshness: working keys older than this (but still within maxTakAge) get a successful
   * reply with header processing requirement 3, so the terminal signs in (new TAK) afterwards.
   */
  keyRotationAge: duration(1).default(DEFAULT_MAX_TAK_AGE_MS / 2),
  /** How long a terminal record is served from memory before it is read again. */
  terminalCacheTtl: duration(0).default(5000),
  /** MAC on field 64 for terminals without an override. */
  macAlgorithm: z.enum(TERMINAL_MAC_ALGORITHMS).default('unionpay-ecb'),
  /** Per-terminal MAC profile (TID → algorithm), until the registry stores a profile. */
  terminalMac: z.record(z.string().length(8), z.enum(TERMINAL_MAC_ALGORITHMS)).default({}),
  /** TPDU destination addresses (NII) whose terminals speak the SM4 dialect (16-byte field 52). */
  sm4TpduDestinations: z.array(z.number().int().min(0).max(0xffff)).default([SM4_TPDU_DESTINATION]),
  /** 60.3 codes a sign-in may ask for. */
  signInCodes: z
    .array(z.enum(SIGN_IN_CODE_VALUES))
    .min(1)
    .default([...SIGN_IN_CODE_VALUES]),
  /** Field 32, acquiring institution ID (n..11). */
  acquirerId: z
    .string()
    .regex(/^\d{1,11}$/, 'must be 1 to 11 digits')
    .default('00010000'),
  /** One digit in every RRN naming this host process, so several processes never issue the same RRN. */
  rrnNode: z.number().int().min(0).max(9).default(0),
  journal: journalSchema.prefault({}),
  network: networkSchema.prefault({}),
  saf: safSchema.prefault({}),
  zone: zoneSchema.prefault({}),
  hsm: hsmSchema.prefault({ mode: 'in-process' }),
  /** pino level; logs go to stderr. */
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
});

export type HostConfigInput = z.input<typeof hostConfigSchema>;
export type HostConfig = Readonly<z.output<typeof hostConfigSchema>>;

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Checks a config, fills in defaults and freezes it.
 * @throws POSKEY_ERR_HOST_CONFIG naming the first bad field
 */
export function parseHostConfig(input: unknown): HostConfig {
  const parsed = hostConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw hostError('POSKEY_ERR_HOST_CONFIG', issue.message, issue.path.join('.') || 'config');
  }
  const config = parsed.data;
  if (config.network.reconnectMax < config.network.reconnectMin) {
    throw hostError('POSKEY_ERR_HOST_CONFIG', 'must not be below reconnectMin', 'network.reconnectMax');
  }
  return deepFreeze(config);
}

/**
 * Reads a JSON config file (checked later by `parseHostConfig`, after flags are merged in).
 * @throws POSKEY_ERR_HOST_CONFIG when it cannot be read or does not hold a JSON object
 */
export async function readHostConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw hostError('POSKEY_ERR_HOST_CONFIG', `cannot read ${path} (${code})`, 'config', e);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw hostError('POSKEY_ERR_HOST_CONFIG', `${path} is not valid JSON`, 'config', e);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw hostError('POSKEY_ERR_HOST_CONFIG', `${path} must hold a JSON object`, 'config');
  }
  return doc as Record<string, unknown>;
}
