/**
 * `startPlatform`: the whole acquiring platform in one process, on embedded defaults. `poskey
 * start` (= `npm start`) runs it until Ctrl-C; the end-to-end tests and the e2e benchmark run it
 * on port 0 and drive it.
 *
 * What runs, in start order (and closed in reverse):
 *  1. the host side's HSM service on the development LMK of `<data>/hsm` (made and sealed on first
 *     run), with its payShield TCP and HTTP interfaces unless `hsmService: false`;
 *  2. the card network simulator with its OWN HSM and development LMK in `<data>/network`, its
 *     ledger (PVK, cards, zone key blocks) and the demo cards;
 *  3. the zone between them: on the first start the network makes a ZMK from components in memory,
 *     generates the ZPK and ZAK under it (zone.json: cryptograms + KCVs) and both HSMs import them;
 *     each side persists only its own LMK blocks, and the components are never written, so later
 *     starts reuse the stored blocks;
 *  4. the store (SQLite in `<data>/host`, or PostgreSQL), the network link and the POSP host;
 *  5. the registry and its admin API (bearer token in `<data>/host/admin-token`);
 *  6. demo seeding: factory transport keys, a merchant, TDES and SM4 terminals with TMKs generated
 *     by the host's HSM and provisioned into sealed PIN pads under `<data>/terminals`, test cards.
 */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { type Logger, pino } from 'pino';
import { isPoskeyError, PoskeyError } from '../errors.js';
import { createAdminApp, listenAdmin } from '../host/admin/app.js';
import { type HostConfig, type HostConfigInput, parseHostConfig } from '../host/config.js';
import type { ZoneKeys } from '../host/context.js';
import { loadZoneKeys } from '../host/keys.js';
import { createNetworkLinks, type NetworkLinkPool } from '../host/network-links.js';
import { Registry } from '../host/registry.js';
import { createHostServer, type HostServer } from '../host/server.js';
import { ZoneKeyManager } from '../host/zone-keys.js';
import type { HsmClient } from '../hsm/api.js';
import { AuditLog } from '../hsm/audit.js';
import { createInProcessClient } from '../hsm/client/in-process.js';
import type { Hsm } from '../hsm/hsm.js';
import type { ScryptParams } from '../hsm/seal.js';
import { type HsmService, startHsmService } from '../hsm/service.js';
import type { Faults } from '../network/faults.js';
import { type OpenedNetwork, openNetworkSimulator } from '../network/setup.js';
import { openStore } from '../store/open.js';
import type { JournalStore, Repository } from '../store/types.js';
import { type DemoData, FACTORY_KEK, type FactoryKey, makeFactoryKey, seedDemo } from './demo.js';
import {
  type DataLayout,
  DEFAULT_PORTS,
  dataLayout,
  ensurePanKeyFile,
  ensureToken,
  makeLayout,
} from './layout.js';

export { DEFAULT_PORTS };

export type LogLevel = 'silent' | 'error' | 'warn' | 'info' | 'debug';

export interface PlatformOptions {
  /** Root data directory (default ./data). */
  dataDir?: string;
  /** Listen address of every interface (default 127.0.0.1). */
  host?: string;
  /** Terminal port of the host (default 5858; 0 = any free port). */
  terminalPort?: number;
  networkPort?: number;
  /** Admin API port (default 5860), or false for none. */
  adminPort?: number | false;
  /** Serve the HSM's payShield TCP and HTTP interfaces (default true). The host uses the HSM in process either way. */
  hsmService?: boolean;
  hsmTcpPort?: number;
  hsmHttpPort?: number;
  /** The host's database: `postgres://…?schema=x`, `sqlite:PATH` (default SQLite in `<data>/host`). */
  database?: string;
  /** Names this host process in journal rows. */
  nodeId?: string;
  /** Seed the demo merchant, terminals and cards (default true). */
  seed?: boolean;
  /** Demo terminals: TDES ones then SM4 ones (default 5 and 1). */
  demoTerminals?: { tdes: number; sm4: number };
  /** false: the host journals nothing (benchmark ratio only; never for real traffic). Default true. */
  journal?: boolean;
  /** The network ledger on disk (default) or in memory (benchmarks: not the system under test). */
  ledger?: 'file' | 'memory';
  /** How long the host waits for the network before answering 98 (ms, default 5000). */
  networkTimeoutMs?: number;
  /** Host config fields to override (`network` is merged with the platform's). */
  hostConfig?: Partial<HostConfigInput>;
  /** Network faults at start (tests change them later through `network.simulator.setFaults`). */
  faults?: Partial<Faults>;
  /** Log level of every component (pino, to stderr); default 'warn'. */
  logLevel?: LogLevel;
  /** scrypt cost of new development LMKs and PIN pad stores (tests pass a small one). */
  kdf?: ScryptParams;
  /** The host's clock (ms since the epoch): tests move it to age working keys. */
  clock?: () => number;
  /** Notices (the development LMK warnings); default: stderr unless logLevel is 'silent'. */
  notice?: (line: string) => void;
}

export interface PlatformPorts {
  terminal: number;
  network: number;
  admin?: number;
  hsmTcp?: number;
  hsmHttp?: number;
}

export interface Platform {
  readonly host: string;
  readonly ports: PlatformPorts;
  readonly paths: DataLayout;
  readonly adminToken: string;
  /** HSM HTTP API token (when the HSM service runs). */
  readonly hsmToken: string | undefined;
  /** The host side's HSM (its LMK is the one in `<data>/hsm`). */
  readonly hostHsm: Hsm;
  readonly hsmClient: HsmClient;
  readonly hsmService: HsmService;
  /** The card network simulator: its HSM, ledger, zone and `simulator.setFaults`. */
  readonly network: OpenedNetwork;
  readonly store: Repository;
  readonly hostConfig: HostConfig;
  readonly server: HostServer;
  readonly link: NetworkLinkPool;
  /** The zone keys at start; `zoneKeys` rotates them (the host's runtime holds the ones in force). */
  readonly zone: ZoneKeys;
  readonly zoneKeys: ZoneKeyManager;
  readonly registry: Registry;
  readonly admin: FastifyInstance | undefined;
  /** The simulated factory's transport keys (clear for simulated PIN pads, KEK blocks in the HSM). */
  readonly factory: { TDES: FactoryKey; SM4: FactoryKey };
  readonly demo: DemoData | undefined;
  readonly notices: readonly string[];
  /** Stops everything (drains the host first). Idempotent. */
  close(): Promise<void>;
}

type Closer = { name: string; close: () => unknown };

/**
 * The store with a journal that keeps nothing: every append "succeeds" at once. For the
 * benchmark's no-journal ratio only: duplicates are then caught only in memory.
 */
export function withoutJournal(store: Repository): Repository {
  const journal: JournalStore = {
    append: async (row) => row.id ?? store.journal.newId(),
    appendMany: async (rows) => rows.map((r) => ({ id: r.id ?? store.journal.newId() })),
    updateOutcome: async () => undefined,
    get: async () => undefined,
    getById: async () => undefined,
    list: async () => [],
    newId: () => store.journal.newId(),
    panHash: (pan) => store.journal.panHash(pan),
    flush: async () => undefined,
    stats: () => ({ commits: 0, failedCommits: 0, ops: 0, largestBatch: 0, queued: 0, inFlight: 0 }),
  };
  return {
    dialect: store.dialect,
    nodeId: store.nodeId,
    merchants: store.merchants,
    terminals: store.terminals,
    journal,
    saf: store.saf,
    transaction: (fn) => store.transaction(fn),
    schemaVersion: () => store.schemaVersion(),
    close: () => store.close(),
  };
}

function hostConfigOf(o: PlatformOptions, layout: DataLayout, host: string, networkPort: number): HostConfig {
  const overrides = o.hostConfig ?? {};
  const network = (overrides.network ?? {}) as Record<string, unknown>;
  return parseHostConfig({
    dataDir: layout.host,
    host,
    port: o.terminalPort ?? DEFAULT_PORTS.terminal,
    logLevel: o.logLevel ?? 'warn',
    ...(o.database !== undefined ? { database: o.database } : {}),
    ...(o.nodeId !== undefined ? { nodeId: o.nodeId } : {}),
    hsm: { mode: 'in-process', dataDir: layout.hsm, dev: true },
    ...overrides,
    network: {
      host: host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host,
      timeout: o.networkTimeoutMs ?? 5000,
      reconnectMin: 50,
      reconnectMax: 1000,
      ...network,
      port: networkPort,
    },
  });
}

/** The host's zone keys: imported when the network just made the zone, else the host's saved blocks. */
async function hostZone(
  hsm: HsmClient,
  config: HostConfig,
  network: OpenedNetwork,
  layout: DataLayout,
): Promise<ZoneKeys> {
  const z = network.zone;
  try {
    return await loadZoneKeys(hsm, config, {
      zoneFile: z.zoneFile,
      ...(z.zmkComponents !== undefined ? { zmkComponents: z.zmkComponents } : {}),
    });
  } catch (e) {
    if (!isPoskeyError(e) || e.code !== 'POSKEY_ERR_HOST_ZONE') throw e;
    throw new PoskeyError(
      'POSKEY_ERR_START_ZONE',
      `the network (${layout.network}) holds a zone the host has no keys for (${e.reason}); start once with POSKEY_ZMK_COMPONENTS set, or remove ${layout.network} to make a new zone`,
      { field: 'zone', cause: e },
    );
  }
}

/**
 * Starts the platform. On failure everything started so far is closed again.
 * @throws POSKEY_ERR_START_ZONE, POSKEY_ERR_START_TOKEN, POSKEY_ERR_ADMIN_LISTEN, and the
 *   services' own errors (POSKEY_ERR_HSM_LISTEN, POSKEY_ERR_HOST_LISTEN, POSKEY_ERR_STORE_*, …)
 */
export async function startPlatform(o: PlatformOptions = {}): Promise<Platform> {
  const layout = dataLayout(o.dataDir);
  const host = o.host ?? '127.0.0.1';
  const level: LogLevel = o.logLevel ?? 'warn';
  const notices: string[] = [];
  const notice =
    o.notice ?? ((line: string) => (level === 'silent' ? undefined : process.stderr.write(`${line}\n`)));
  const log = (line: string) => {
    notices.push(line);
    notice(line);
  };
  const closers: Closer[] = [];
  const shutdown = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c.close();
      } catch (e) {
        if (level !== 'silent')
          process.stderr.write(`poskey: closing the ${c.name} failed: ${(e as Error).message}\n`);
      }
    }
  };
  try {
    await makeLayout(layout);
    const withHsmService = o.hsmService ?? true;
    const hsmToken = withHsmService ? await ensureToken(layout.hsmTokenFile) : undefined;
    const hsmService = await startHsmService(
      {
        dataDir: layout.hsm,
        dev: true,
        host,
        tcp: withHsmService,
        http: withHsmService,
        tcpPort: o.hsmTcpPort ?? DEFAULT_PORTS.hsmTcp,
        httpPort: o.hsmHttpPort ?? DEFAULT_PORTS.hsmHttp,
        tokens: hsmToken === undefined ? [] : [hsmToken],
        logLevel: level,
      },
      { log: (line) => log(`host side HSM (${layout.hsm}):\n${line}`) },
    );
    closers.push({ name: 'HSM service', close: () => hsmService.close() });
    const hsmClient = createInProcessClient(hsmService.hsm, { actor: 'host' });
    closers.push({ name: 'HSM client', close: () => hsmClient.close() });

    const base = pino({ level }, process.stderr);
    const network = await openNetworkSimulator({
      dataDir: layout.network,
      ...(o.ledger === 'memory' ? { ledgerPath: ':memory:', zone: { zoneFilePath: undefined } } : {}),
      ...(o.kdf ? { kdf: o.kdf } : {}),
      seed: 'demo',
      simulator: {
        host,
        port: o.networkPort ?? DEFAULT_PORTS.network,
        logger: base.child({ component: 'network' }),
        ...(o.faults ? { faults: o.faults } : {}),
      },
    });
    closers.push({ name: 'network HSM', close: () => network.hsm.destroy() });
    closers.push({ name: 'network simulator', close: () => network.simulator.close() });
    if (network.warning !== undefined) log(`network HSM (${layout.network}):\n${network.warning}`);
    const networkPort = (await network.simulator.listen()).port;

    const hostConfig = hostConfigOf(o, layout, host, networkPort);
    const hostLog: Logger = base.child({ component: 'host' });
    const isPostgres = /^postgres(ql)?:\/\//i.test(hostConfig.database ?? '');
    const store = await openStore(hostConfig.database ?? { dataDir: layout.host }, {
      ...(hostConfig.nodeId ? { nodeId: hostConfig.nodeId } : {}),
      ...(hostConfig.panKeyFile
        ? { panKeyFile: hostConfig.panKeyFile }
        : isPostgres
          ? { panKeyFile: await ensurePanKeyFile(layout.panKeyFile) }
          : {}),
    });
    closers.push({ name: 'store', close: () => store.close() });
    const zone = await hostZone(hsmClient, hostConfig, network, layout);
    const link = createNetworkLinks(hostConfig, hostLog, (r) =>
      hostLog.info({ mti: r.msg[0], networkStan: r.msg[11] }, 'late or unsolicited network message'),
    );
    link.start();
    closers.push({ name: 'network link', close: () => link.close() });
    await link.waitUntilUp(5000);
    const server = createHostServer({
      config: hostConfig,
      hsm: hsmClient,
      store: o.journal === false ? withoutJournal(store) : store,
      zone,
      link,
      logger: hostLog,
      ...(o.clock ? { clock: o.clock } : {}),
    });
    const zoneKeys = new ZoneKeyManager({
      hsm: hsmClient,
      link,
      runtime: server.runtime,
      config: hostConfig,
      log: hostLog,
      ...(o.clock ? { clock: o.clock } : {}),
    });
    zoneKeys.start();
    closers.push({ name: 'zone key manager', close: () => zoneKeys.close() });

    const factory = {
      TDES: await makeFactoryKey(hsmClient, 'tdes'),
      SM4: await makeFactoryKey(hsmClient, 'sm4'),
    };
    closers.push({ name: 'factory keys', close: () => [factory.TDES.key.fill(0), factory.SM4.key.fill(0)] });
    const audit = await AuditLog.open(layout.adminAuditFile);
    closers.push({ name: 'admin audit log', close: () => audit.close() });
    const registry = new Registry({
      store,
      hsm: hsmClient,
      keks: { [FACTORY_KEK.TDES]: factory.TDES.kek, [FACTORY_KEK.SM4]: factory.SM4.kek },
      audit: (entry) => audit.append(entry),
      onTerminalChange: (tid) => server.runtime.terminals.forget(tid),
    });
    const demo =
      o.seed === false
        ? undefined
        : await seedDemo({
            registry,
            store,
            ledger: network.ledger,
            factory,
            terminalsDir: layout.terminals,
            tdes: o.demoTerminals?.tdes ?? 5,
            sm4: o.demoTerminals?.sm4 ?? 1,
            ...(o.kdf ? { scrypt: o.kdf } : {}),
          });

    const terminalPort = (await server.listen()).port;
    closers.push({ name: 'host', close: () => server.close() });
    const adminToken = await ensureToken(layout.adminTokenFile);
    let admin: FastifyInstance | undefined;
    let adminPort: number | undefined;
    if (o.adminPort !== false) {
      const app = createAdminApp({
        registry,
        tokens: [adminToken],
        health: () => ({
          link: link.state,
          connections: server.metrics().connections,
          inFlight: server.metrics().inFlight,
        }),
        network: {
          status: async () => ({ keys: await zoneKeys.status(), links: link.describe() }),
          rekey: () => zoneKeys.rekey('on-demand'),
        },
        ...(level === 'silent' ? {} : { logger: { level, stream: process.stderr } }),
      });
      admin = app;
      closers.push({ name: 'admin API', close: () => app.close() });
      adminPort = await listenAdmin(app, host, o.adminPort ?? DEFAULT_PORTS.admin);
    }
    const ports: PlatformPorts = { terminal: terminalPort, network: networkPort };
    if (adminPort !== undefined) ports.admin = adminPort;
    if (hsmService.tcpPort !== undefined) ports.hsmTcp = hsmService.tcpPort;
    if (hsmService.httpPort !== undefined) ports.hsmHttp = hsmService.httpPort;
    let closing: Promise<void> | undefined;
    return {
      host,
      ports,
      paths: layout,
      adminToken,
      hsmToken,
      hostHsm: hsmService.hsm,
      hsmClient,
      hsmService,
      network,
      store,
      hostConfig,
      server,
      link,
      zone,
      zoneKeys,
      registry,
      admin,
      factory,
      demo,
      notices,
      close: () => {
        closing ??= shutdown();
        return closing;
      },
    };
  } catch (e) {
    await shutdown();
    throw e;
  }
}

/** Where a demo terminal's files are. */
export function terminalDir(layout: DataLayout, tid: string): string {
  return join(layout.terminals, tid);
}
