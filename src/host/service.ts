/**
 * The host as a running service (`poskey host serve`, and `poskey start` later): open the store,
 * the HSM (in process by default, or a poskey HSM / payShield over TCP), load the zone keys, start
 * the network link, then listen for terminals until closed.
 *
 * Shutdown (close() or SIGTERM/SIGINT with `handleSignals`) runs in reverse: drain the terminal
 * server (in-flight transactions finish and are answered), close the network link, close the store
 * (the journal's queue is committed first), close the HSM client, flush the HSM audit log.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Logger, pino } from 'pino';
import type { HsmClient } from '../hsm/api.js';
import { AuditLog } from '../hsm/audit.js';
import { createInProcessClient } from '../hsm/client/in-process.js';
import { connectHsm } from '../hsm/client/tcp.js';
import { HsmError } from '../hsm/errors.js';
import { Hsm } from '../hsm/hsm.js';
import type { LmkSet } from '../hsm/lmk.js';
import { ensureDevLmk, loadSealedLmks, SEALED_LMK_FILE, type SealSecretInput } from '../hsm/seal.js';
import type { ZoneFile } from '../network/zone.js';
import { openStore } from '../store/open.js';
import type { Repository } from '../store/types.js';
import { type HostConfig, type HostConfigInput, parseHostConfig } from './config.js';
import type { ZoneKeys } from './context.js';
import { loadZoneKeys } from './keys.js';
import { createNetworkLinks, type NetworkLinkPool } from './network-links.js';
import { createHostServer, type HostServer } from './server.js';
import { ZoneKeyManager } from './zone-keys.js';

/** The environment variable holding the LMK passphrase of an in-process HSM. */
export const PASSPHRASE_ENV = 'POSKEY_LMK_PASSPHRASE';
/** The in-process HSM's audit log in the host data directory. */
export const HSM_AUDIT_FILE = 'hsm-audit.log';
/** The remote key loading audit log in the host data directory. */
export const RKL_AUDIT_FILE = 'rkl-audit.log';

export interface StartHostServiceOptions {
  /** An HSM client to use instead of the configured one (`poskey start` shares its HSM). */
  hsm?: HsmClient;
  /** ZMK components (hex); default: the variable named by `zone.componentsEnv`. */
  zmkComponents?: string | readonly string[];
  /** The zone file's content instead of `zone.file`. */
  zoneFile?: ZoneFile;
  /** Zone keys already in `hsm` (skips loading them). */
  zone?: ZoneKeys;
  /** Seal secret of the in-process HSM's LMK; default POSKEY_LMK_PASSPHRASE. */
  secret?: SealSecretInput;
  /** Close gracefully on SIGTERM/SIGINT (the CLI sets this). */
  handleSignals?: boolean;
  logger?: Logger;
  clock?: () => number;
  env?: Record<string, string | undefined>;
  /** Remote key loading over HTTPS (src/host/rkl): off unless given; checked with `parseRklConfig`. */
  rkl?: unknown;
}

export interface HostService {
  readonly config: HostConfig;
  readonly server: HostServer;
  readonly port: number;
  readonly store: Repository;
  readonly hsm: HsmClient;
  readonly link: NetworkLinkPool;
  /** Sign-on and zone key rotation with the network. */
  readonly zoneKeys: ZoneKeyManager;
  /** The RKL HTTPS port, when `rkl` was configured. */
  readonly rklPort?: number;
  close(): Promise<void>;
  /** Resolves once closed (by close() or a signal). */
  readonly closed: Promise<void>;
}

type Closer = { name: string; close: () => unknown };

async function inProcessHsm(
  config: Extract<HostConfig['hsm'], { mode: 'in-process' }>,
  hostDataDir: string,
  options: StartHostServiceOptions,
  log: Logger,
  closers: Closer[],
): Promise<HsmClient> {
  const dataDir = resolve(config.dataDir);
  let lmks: LmkSet;
  if (config.dev) {
    const dev = await ensureDevLmk(dataDir);
    log.warn(dev.warning);
    lmks = dev.lmks;
  } else {
    const secret = options.secret ?? (options.env ?? process.env)[PASSPHRASE_ENV];
    if (secret === undefined || secret === '') {
      throw new HsmError(
        'POSKEY_ERR_LMK_PASSPHRASE',
        `no passphrase to unseal the LMK: set ${PASSPHRASE_ENV}`,
        {
          field: PASSPHRASE_ENV,
        },
      );
    }
    lmks = await loadSealedLmks(join(dataDir, SEALED_LMK_FILE), secret);
  }
  const audit = await AuditLog.open(join(hostDataDir, HSM_AUDIT_FILE));
  const hsm = new Hsm({ lmks, audit, ...(config.cacheSize ? { cacheSize: config.cacheSize } : {}) });
  closers.push({
    name: 'HSM',
    close: async () => {
      await audit.close();
      hsm.destroy();
      lmks.destroy();
    },
  });
  return createInProcessClient(hsm, { actor: 'host' });
}

async function openHsm(
  config: HostConfig,
  options: StartHostServiceOptions,
  log: Logger,
  closers: Closer[],
): Promise<HsmClient> {
  if (options.hsm !== undefined) return options.hsm;
  const c = config.hsm;
  const client =
    c.mode === 'in-process'
      ? await inProcessHsm(c, config.dataDir, options, log, closers)
      : await connectHsm({
          host: c.host,
          port: c.port,
          headerLength: c.headerLength,
          timeoutMs: c.timeout,
          connectionsPerAddress: c.connections,
        });
  closers.push({ name: 'HSM client', close: () => client.close() });
  return client;
}

/**
 * Starts the host.
 * @throws POSKEY_ERR_HOST_CONFIG, POSKEY_ERR_HOST_ZONE, POSKEY_ERR_HOST_LISTEN, store errors
 *   (POSKEY_ERR_STORE_*), HSM errors (POSKEY_ERR_LMK_*), zone errors (POSKEY_ERR_ZONE_*)
 */
export async function startHostService(
  input: HostConfigInput | HostConfig,
  options: StartHostServiceOptions = {},
): Promise<HostService> {
  const config = parseHostConfig(input);
  const log = options.logger ?? pino({ level: config.logLevel, base: { component: 'host' } }, process.stderr);
  await mkdir(config.dataDir, { recursive: true });
  const closers: Closer[] = [];
  const shutdown = async () => {
    for (const c of closers.reverse()) {
      try {
        await c.close();
      } catch (e) {
        log.error({ err: e, what: c.name }, 'closing failed');
      }
    }
  };
  try {
    const store = await openStore(config.database ?? { dataDir: config.dataDir }, {
      ...(config.nodeId ? { nodeId: config.nodeId } : {}),
      ...(config.panKeyFile ? { panKeyFile: config.panKeyFile } : {}),
    });
    closers.push({ name: 'store', close: () => store.close() });
    const hsm = await openHsm(config, options, log, closers);
    const zone =
      options.zone ??
      (await loadZoneKeys(hsm, config, {
        ...(options.zmkComponents !== undefined ? { zmkComponents: options.zmkComponents } : {}),
        ...(options.zoneFile !== undefined ? { zoneFile: options.zoneFile } : {}),
        ...(options.env !== undefined ? { env: options.env } : {}),
        warn: (message) => log.warn({ field: 'zone' }, message),
      }));
    const link = createNetworkLinks(config, log, (r) =>
      log.warn({ mti: r.msg[0], networkStan: r.msg[11] }, 'unmatched network message'),
    );
    link.start();
    closers.push({ name: 'network link', close: () => link.close() });
    const server = createHostServer({
      config,
      hsm,
      store,
      zone,
      link,
      logger: log,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    const zoneKeys = new ZoneKeyManager({
      hsm,
      link,
      runtime: server.runtime,
      config,
      log,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    zoneKeys.start();
    closers.push({ name: 'zone key manager', close: () => zoneKeys.close() });
    const { port } = await server.listen();
    closers.push({ name: 'terminal server', close: () => server.close() });
    const rklPort =
      options.rkl === undefined ? undefined : await startRkl(options.rkl, config, hsm, store, closers);
    return makeService({ config, server, port, rklPort, store, hsm, link, zoneKeys, shutdown, options, log });
  } catch (e) {
    await shutdown();
    throw e;
  }
}

/** The RKL listener with its own audit log in the host data directory. */
async function startRkl(
  input: unknown,
  config: HostConfig,
  hsm: HsmClient,
  store: Repository,
  closers: Closer[],
): Promise<number> {
  const { createRklServer, parseRklConfig } = await import('./rkl/plugin.js');
  const audit = await AuditLog.open(join(config.dataDir, RKL_AUDIT_FILE));
  closers.push({ name: 'RKL audit log', close: () => audit.close() });
  const rkl = await createRklServer({ config: parseRklConfig(input), hsm, store, audit });
  const { port } = await rkl.listen();
  closers.push({ name: 'RKL server', close: () => rkl.close() });
  return port;
}

function makeService(parts: {
  config: HostConfig;
  server: HostServer;
  port: number;
  rklPort?: number | undefined;
  store: Repository;
  hsm: HsmClient;
  link: NetworkLinkPool;
  zoneKeys: ZoneKeyManager;
  shutdown: () => Promise<void>;
  options: StartHostServiceOptions;
  log: Logger;
}): HostService {
  let closing: Promise<void> | undefined;
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((r) => {
    markClosed = r;
  });
  const signals: NodeJS.Signals[] = parts.options.handleSignals ? ['SIGTERM', 'SIGINT'] : [];
  const onSignal = (signal: NodeJS.Signals) => {
    parts.log.info({ signal }, 'closing');
    void close();
  };
  const close = (): Promise<void> => {
    closing ??= (async () => {
      for (const s of signals) process.off(s, onSignal);
      await parts.shutdown();
      markClosed();
    })();
    return closing;
  };
  for (const s of signals) process.on(s, onSignal);
  return {
    config: parts.config,
    server: parts.server,
    port: parts.port,
    ...(parts.rklPort === undefined ? {} : { rklPort: parts.rklPort }),
    store: parts.store,
    hsm: parts.hsm,
    link: parts.link,
    zoneKeys: parts.zoneKeys,
    close,
    closed,
  };
}
