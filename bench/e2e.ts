/**
 * `npm run bench -- e2e`: the POSP host end to end on loopback, with its durable SQLite journal
 * (WAL, synchronous=FULL, group commit), its in-process HSM, and the card network simulator.
 *
 * Runs, in one go:
 *  1. full load against 1 host process: 256 terminals, each on its own persistent connection
 *     with one purchase in flight (a terminal does one thing at a time), for BENCH_MS;
 *  2. one request in flight (1 terminal), journal in write-ahead mode (the default: the request row
 *     durable before the network sees it), in overlap mode (written while the request is out) and
 *     in outcome mode (one row, written once with the outcome);
 *  3. full load again against a host with no journal, for the ratio (the cost of durability);
 *  4. full load against 2 host processes (256 terminals split between them; one SQLite file per
 *     process, research/perf.md §2.6);
 *  5. a sign-in storm: 10,000 registered terminals sign in at once against the 2 processes,
 *     multiplexed over 200 connections as through a NAC (TPDU routing); time until all signed in.
 * Targets on 2 cores: ≥ 15,000 purchases/s with 2 host processes and p99 ≤ 30 ms; ≥ 1,000/s with
 * p99 ≤ 3 ms at one in flight; 10,000 terminals signed in within 5 s.
 *
 * Every purchase goes the whole way: the host unpacks it, checks the TAK MAC in the HSM,
 * translates the PIN block TPK → ZPK, journals the request durably, forwards it to the network
 * (MACed under the ZAK), checks the answer's MAC, journals the outcome durably, MACs the 0210.
 *
 * What is not measured: the terminals are a lean driver in this process (requests built from a
 * template: STAN patched, UnionPay MAC computed per request; replies unpacked), as real terminals
 * have CPUs of their own; the network simulator runs here too, and by default answers from its MAC
 * check alone (`responseCode: '00'` fault: no PIN verification, no ledger write), because the card
 * network is not the system under test. POSKEY_BENCH_NETWORK=full uses its whole path (PVV check
 * and an in-memory ledger). Both share these 2 cores with the host processes, so host figures are
 * lower bounds for dedicated cores. POSKEY_BENCH_JOURNAL=overlap|outcome runs the full-load
 * measurements in that journal mode instead of write-ahead.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { toHex } from '../src/crypto/bytes.js';
import { createKey, type KeyHandle } from '../src/crypto/cipher.js';
import { combineComponents, generateKey } from '../src/crypto/keys.js';
import { generateMac } from '../src/crypto/mac.js';
import { encryptPinBlock } from '../src/crypto/pinblock.js';
import { parseHostConfig } from '../src/host/config.js';
import { NetworkLink } from '../src/host/network-link.js';
import { createHostServer } from '../src/host/server.js';
import { AuditLog } from '../src/hsm/audit.js';
import { createInProcessClient } from '../src/hsm/client/in-process.js';
import { Hsm } from '../src/hsm/hsm.js';
import { ensureDevLmk } from '../src/hsm/seal.js';
import {
  createFrameDecoder,
  encodeFrame,
  type IsoMessage,
  pack,
  splitKeyBlock,
  TERMINAL_PROFILE,
  unpack,
} from '../src/iso8583/index.js';
import { openNetworkSimulator } from '../src/network/setup.js';
import { importZoneKeys } from '../src/network/zone.js';
import { POS_DIALECT } from '../src/protocol/unionpay-pos.js';
import { withoutJournal } from '../src/start/platform.js';
import { openStore } from '../src/store/open.js';
import { track2Of } from '../src/terminal/cards.js';
import { benchMs, header } from './harness.js';

const ROLE_ENV = 'POSKEY_BENCH_E2E_ROLE';
const MID = '898310048990001';
const CARD = { pan: '6222021234567890128', expiry: '3012', pin: '123456' };
const FAST_KDF = { N: 1024, r: 8, p: 1 };
const FULL_LOAD_TERMINALS = 256;
const STORM_TERMINALS = 10_000;
const STORM_CONNECTIONS = 200;

// ---------------------------------------------------------------------------------------------
// A host process (forked by the bench)

type JournalMode = 'write-ahead' | 'overlap' | 'outcome';

interface HostChildConfig {
  hsmDir: string;
  dataDir: string;
  networkPort: number;
  zone: { zpk: string; zak: string };
  journal: boolean;
  /** The host's journal mode: request row durable before forwarding, written while forwarding, or none (one outcome row). */
  journalMode: JournalMode;
  rrnNode: number;
  tmk: { block: string; kcv: string };
  tids: string[];
}

type ToChild = { type: 'start'; config: HostChildConfig } | { type: 'stop' } | { type: 'cpu' };
type FromChild =
  | { type: 'ready'; port: number }
  | { type: 'error'; message: string }
  | { type: 'stopped' }
  | { type: 'cpu'; micros: number };

async function hostChild(): Promise<void> {
  const send = (m: FromChild) => process.send?.(m);
  const config = await new Promise<HostChildConfig>((resolve) => {
    process.once('message', (m: ToChild) => {
      if (m.type === 'start') resolve(m.config);
    });
  });
  try {
    const lmks = (await ensureDevLmk(config.hsmDir)).lmks;
    await mkdir(config.dataDir, { recursive: true });
    const audit = await AuditLog.open(join(config.dataDir, 'hsm-audit.log'));
    const hsm = new Hsm({ lmks, audit });
    const client = createInProcessClient(hsm, { actor: 'host' });
    const store = await openStore({ dataDir: config.dataDir }, { nodeId: `bench-${config.rrnNode}` });
    await store.merchants.upsert({ mid: MID, name: 'bench shop', mcc: '5411' });
    await store.transaction(async (tx) => {
      for (const tid of config.tids)
        await tx.terminals.create({ tid, mid: MID, keyAlgorithm: 'TDES', tmk: config.tmk });
    });
    const log = pino({ level: 'silent' });
    const link = new NetworkLink({ host: '127.0.0.1', port: config.networkPort, timeoutMs: 5000, log });
    link.start();
    await link.waitUntilUp(5000);
    const server = createHostServer({
      config: parseHostConfig({
        dataDir: config.dataDir,
        port: 0,
        logLevel: 'silent',
        rrnNode: config.rrnNode,
        maxConnections: 20_000,
        terminalCacheTtl: 60_000,
        journal: { mode: config.journalMode },
        network: { port: config.networkPort },
      }),
      hsm: client,
      store: config.journal ? store : withoutJournal(store),
      zone: { ...config.zone, pinFormat: 0 },
      link,
      logger: log,
    });
    const { port } = await server.listen();
    process.on('message', async (m: ToChild) => {
      if (m.type === 'cpu') {
        const u = process.cpuUsage();
        send({ type: 'cpu', micros: u.user + u.system });
        return;
      }
      if (m.type !== 'stop') return;
      await server.close();
      await link.close();
      await store.close();
      await client.close();
      await audit.close();
      send({ type: 'stopped' });
      process.exit(0);
    });
    send({ type: 'ready', port });
  } catch (e) {
    send({ type: 'error', message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
    process.exit(1);
  }
}

interface HostHandle {
  port: number;
  /** CPU time the process has used so far, µs. */
  cpu(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Node flags of the host processes: this process's, plus
 * - POSKEY_BENCH_PROF=<dir>: a V8 CPU profile of every host process, for finding hot spots;
 * - POSKEY_BENCH_HOST_FLAGS='<flags>': V8/Node flags to try (e.g. `--max-semi-space-size=32`).
 */
function hostExecArgv(): string[] {
  const args = [...process.execArgv];
  const prof = process.env.POSKEY_BENCH_PROF;
  if (prof) args.push('--cpu-prof', `--cpu-prof-dir=${prof}`);
  const flags = process.env.POSKEY_BENCH_HOST_FLAGS?.trim();
  if (flags) args.push(...flags.split(/\s+/));
  return args;
}

function startHostProcess(config: HostChildConfig): Promise<HostHandle> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, [ROLE_ENV]: 'host' },
    execArgv: hostExecArgv(),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`host process exited with ${code}`)));
    child.once('message', (m: FromChild) => {
      if (m.type === 'error') return reject(new Error(m.message));
      if (m.type !== 'ready') return reject(new Error(`unexpected ${m.type}`));
      resolve({
        port: m.port,
        cpu: () =>
          new Promise<number>((done) => {
            const on = (r: FromChild) => {
              if (r.type !== 'cpu') return;
              child.off('message', on);
              done(r.micros);
            };
            child.on('message', on);
            child.send({ type: 'cpu' } satisfies ToChild);
          }),
        stop: () =>
          new Promise<void>((done) => {
            child.removeAllListeners('exit');
            child.once('exit', () => done());
            child.send({ type: 'stop' } satisfies ToChild);
          }),
      });
    });
    child.send({ type: 'start', config } satisfies ToChild);
  });
}

// ---------------------------------------------------------------------------------------------
// The lean terminal driver

const TPDU_HEADER = Buffer.from('6000030000603100000000', 'hex');

function frame(body: Buffer): Buffer {
  return encodeFrame(Buffer.concat([TPDU_HEADER, body]), TERMINAL_PROFILE);
}

/** One connection carrying the requests of one or more terminals; replies matched by TID (41) and STAN (11). */
class Line {
  readonly socket: Socket;
  readonly #waiting = new Map<string, (msg: IsoMessage) => void>();

  private constructor(socket: Socket) {
    this.socket = socket;
    const decoder = createFrameDecoder(TERMINAL_PROFILE);
    socket.on('data', (chunk: Buffer) => {
      for (const payload of decoder.push(chunk)) {
        const msg = unpack(POS_DIALECT, payload.subarray(TPDU_HEADER.length));
        const key = `${msg[41]}${msg[11]}`;
        const w = this.#waiting.get(key);
        if (w !== undefined) {
          this.#waiting.delete(key);
          w(msg);
        }
      }
    });
    socket.on('error', () => undefined);
  }

  static open(port: number): Promise<Line> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new Line(s)));
      s.setNoDelay(true);
      s.once('error', reject);
    });
  }

  exchange(tid: string, stan: string, body: Buffer): Promise<IsoMessage> {
    return new Promise((resolve) => {
      this.#waiting.set(`${tid}${stan}`, resolve);
      this.socket.write(frame(body));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A terminal that has signed in: its purchase template, patched with a new STAN and MAC each time. */
class LeanTerminal {
  readonly tid: string;
  readonly #line: Line;
  #tak: KeyHandle | undefined;
  #template: Buffer | undefined;
  #stanAt = -1;
  #stan = 1;

  constructor(tid: string, line: Line) {
    this.tid = tid;
    this.#line = line;
  }

  async signIn(tmk: KeyHandle): Promise<void> {
    const reply = await this.#line.exchange(this.tid, '000001', signInBody(this.tid, '000001'));
    if (reply[39] !== '00') throw new Error(`${this.tid}: sign-in answered ${String(reply[39])}`);
    const parts = splitKeyBlock(reply[62] as string, '003');
    const tpk = createKey('tdes', tmk.ecbDecrypt(Buffer.from(parts.pik, 'hex')));
    this.#tak = createKey('des', tmk.ecbDecrypt(Buffer.from(parts.mak.slice(0, 16), 'hex')));
    const pinBlock = toHex(encryptPinBlock(tpk, { format: 0, pin: CARD.pin, pan: CARD.pan }));
    const a = pack(POS_DIALECT, purchase(this.tid, '000000', pinBlock));
    const b = pack(POS_DIALECT, purchase(this.tid, '999999', pinBlock));
    this.#stanAt = a.findIndex((x, i) => x !== b[i]);
    this.#template = a;
  }

  /** One purchase; resolves with the response code and the round trip in ms. */
  async purchase(): Promise<{ rc: string; ms: number }> {
    this.#stan = this.#stan >= 999_999 ? 2 : this.#stan + 1;
    const stan = String(this.#stan).padStart(6, '0');
    const body = Buffer.from(this.#template!);
    body.write(stan, this.#stanAt, 'hex');
    generateMac('unionpay-ecb', this.#tak!, body.subarray(0, body.length - 8)).copy(body, body.length - 8);
    const t0 = performance.now();
    const reply = await this.#line.exchange(this.tid, stan, body);
    return { rc: reply[39] as string, ms: performance.now() - t0 };
  }
}

function signInBody(tid: string, stan: string): Buffer {
  return pack(POS_DIALECT, {
    0: '0800',
    11: stan,
    41: tid,
    42: MID,
    60: { 1: '00', 2: '000001', 3: '003' },
    63: { 1: '001' },
  } as IsoMessage);
}

function purchase(tid: string, stan: string, pinBlock: string): IsoMessage {
  return {
    0: '0200',
    2: CARD.pan,
    3: '000000',
    4: '000000000001',
    11: stan,
    14: CARD.expiry,
    22: '021',
    25: '00',
    26: '12',
    35: track2Of({ pan: CARD.pan, expiry: CARD.expiry, serviceCode: '101' }),
    41: tid,
    42: MID,
    49: '156',
    52: pinBlock,
    53: { 1: '2', 2: '6', 3: '0', 4: '0000000000000' },
    60: { 1: '22', 2: '000001', 3: '000' },
    64: '0000000000000000',
  } as IsoMessage;
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Result {
  label: string;
  hosts: number;
  journal: string;
  load: string;
  tps: number;
  p50: number;
  p99: number;
  declined: number;
  completed: number;
  /** CPU per transaction in the measured window, µs: the host processes (sum) and this process (driver + network). */
  cpu: { host: number; bench: number };
  target?: { tps: number; p99: number };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Every terminal loops purchases for `ms` after a warm-up; TPS and latency over the measured window. */
async function drive(
  terminals: LeanTerminal[],
  ms: number,
  warmMs: number,
  onStart: () => void,
): Promise<Omit<Result, 'label' | 'hosts' | 'journal' | 'load' | 'cpu'>> {
  const t0 = performance.now();
  const measureFrom = t0 + warmMs;
  const end = measureFrom + ms;
  const startTimer = setTimeout(onStart, warmMs);
  const latencies: number[] = [];
  let completed = 0;
  let declined = 0;
  await Promise.all(
    terminals.map(async (t) => {
      while (performance.now() < end) {
        const r = await t.purchase();
        if (performance.now() < measureFrom) continue;
        completed++;
        latencies.push(r.ms);
        if (r.rc !== '00') declined++;
      }
    }),
  );
  clearTimeout(startTimer);
  const elapsed = (performance.now() - measureFrom) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    tps: completed / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    declined,
    completed,
  };
}

interface World {
  dir: string;
  hsmDir: string;
  tmk: { block: string; kcv: string; clear: KeyHandle };
  networkPort: number;
  zone: { zpk: string; zak: string };
  close(): Promise<void>;
}

/** The shared parts: the host LMK, one TMK for every bench terminal, the network simulator and the zone. */
async function setUp(full: boolean): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'poskey-bench-e2e-'));
  const hsmDir = join(dir, 'hsm');
  const hsm = new Hsm({ lmks: (await ensureDevLmk(hsmDir, { kdf: FAST_KDF })).lmks });
  const parts = [generateKey('tdes', 16), generateKey('tdes', 16)];
  const clear = combineComponents('tdes', parts).key;
  const imported = hsm.importKey({
    keyType: 'TMK',
    algorithm: 'tdes2',
    source: { kind: 'components', components: parts.map((p) => toHex(p)) },
  });
  const kcv = hsm.checkValue(imported.keyBlock, 'legacy', 3).value;
  const network = await openNetworkSimulator({
    dataDir: join(dir, 'network'),
    ledgerPath: ':memory:',
    kdf: FAST_KDF,
    zone: { zoneFilePath: undefined },
    simulator: { port: 0, ...(full ? {} : { faults: { responseCode: '00' } }) },
  });
  network.ledger.addCard({ pan: CARD.pan, expiry: CARD.expiry, pin: CARD.pin, balance: 999_999_999_999 });
  const { port } = await network.simulator.listen();
  const keys = await importZoneKeys(hsm, network.zone.zmkComponents!, network.zone.zoneFile, {
    actor: 'bench',
  });
  return {
    dir,
    hsmDir,
    tmk: { block: imported.keyBlock, kcv, clear: createKey('tdes', clear) },
    networkPort: port,
    zone: { zpk: keys.zpk, zak: keys.zak },
    async close() {
      await network.simulator.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let runCounter = 0;

/** Starts `n` host processes, each with its own data directory and `perHost(i)` terminals. */
async function hosts(
  w: World,
  n: number,
  journal: boolean | 'overlap' | 'outcome',
  tids: (i: number) => string[],
): Promise<HostHandle[]> {
  const run = ++runCounter;
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      startHostProcess({
        hsmDir: w.hsmDir,
        dataDir: join(w.dir, `host-${run}-${i}`),
        networkPort: w.networkPort,
        zone: w.zone,
        journal: journal !== false,
        journalMode: journal === 'overlap' || journal === 'outcome' ? journal : 'write-ahead',
        rrnNode: i,
        tmk: { block: w.tmk.block, kcv: w.tmk.kcv },
        tids: tids(i),
      }),
    ),
  );
}

function tidList(prefix: string, from: number, count: number): string[] {
  return Array.from(
    { length: count },
    (_, k) => `${prefix}${String(from + k).padStart(8 - prefix.length, '0')}`,
  );
}

/** Full-load terminals split over the hosts, each on its own connection, signed in. */
async function fleet(
  w: World,
  running: HostHandle[],
  count: number,
  prefix: string,
): Promise<{ terminals: LeanTerminal[]; lines: Line[] }> {
  const per = Math.ceil(count / running.length);
  const lines: Line[] = [];
  const terminals: LeanTerminal[] = [];
  await Promise.all(
    running.map(async (h, i) => {
      for (const tid of tidList(`${prefix}${i}`, 1, per)) {
        const line = await Line.open(h.port);
        lines.push(line);
        terminals.push(new LeanTerminal(tid, line));
      }
    }),
  );
  for (let i = 0; i < terminals.length; i += 64)
    await Promise.all(terminals.slice(i, i + 64).map((t) => t.signIn(w.tmk.clear)));
  return { terminals, lines };
}

async function loadRun(
  w: World,
  opts: {
    hosts: number;
    journal: boolean | 'overlap' | 'outcome';
    terminals: number;
    ms: number;
    label: string;
    target?: Result['target'];
  },
): Promise<Result> {
  const prefix = `L${runCounter + 1}`;
  const per = Math.ceil(opts.terminals / opts.hosts);
  const running = await hosts(w, opts.hosts, opts.journal, (i) => tidList(`${prefix}${i}`, 1, per));
  try {
    const { terminals, lines } = await fleet(w, running, opts.terminals, prefix);
    const cpuAt = async () => ({
      host: (await Promise.all(running.map((h) => h.cpu()))).reduce((a, b) => a + b, 0),
      bench: process.cpuUsage().user + process.cpuUsage().system,
    });
    let first: Promise<{ host: number; bench: number }> | undefined;
    const r = await drive(terminals, opts.ms, Math.min(1000, opts.ms / 3), () => {
      first = cpuAt();
    });
    const last = await cpuAt();
    const start = await first!;
    const n = Math.max(1, r.completed);
    for (const l of lines) l.close();
    return {
      label: opts.label,
      hosts: opts.hosts,
      journal:
        opts.journal === false
          ? 'none'
          : opts.journal === true
            ? 'SQLite durable'
            : `SQLite, ${opts.journal}`,
      load: `${opts.terminals} × 1`,
      ...r,
      cpu: { host: (last.host - start.host) / n, bench: (last.bench - start.bench) / n },
      ...(opts.target ? { target: opts.target } : {}),
    };
  } finally {
    await Promise.all(running.map((h) => h.stop()));
  }
}

/** 10,000 registered terminals sign in at once over `STORM_CONNECTIONS` connections; time to the last 0810. */
async function storm(
  w: World,
  hostCount: number,
): Promise<{ seconds: number; p50: number; p99: number; failed: number; connectMs: number }> {
  const per = STORM_TERMINALS / hostCount;
  const running = await hosts(w, hostCount, true, (i) => tidList(`S${i}`, 1, per));
  try {
    const c0 = performance.now();
    const lines = await Promise.all(
      Array.from({ length: STORM_CONNECTIONS }, (_, k) => Line.open(running[k % hostCount]!.port)),
    );
    const connectMs = performance.now() - c0;
    const latencies: number[] = [];
    let failed = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: hostCount }, (_, i) =>
        Promise.all(
          tidList(`S${i}`, 1, per).map(async (tid, k) => {
            const line = lines[(k * hostCount + i) % STORM_CONNECTIONS]!;
            const s = performance.now();
            const reply = await line.exchange(tid, '000001', signInBody(tid, '000001'));
            latencies.push(performance.now() - s);
            if (reply[39] !== '00') failed++;
          }),
        ),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    for (const l of lines) l.close();
    latencies.sort((a, b) => a - b);
    return { seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), failed, connectMs };
  } finally {
    await Promise.all(running.map((h) => h.stop()));
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

function print(r: Result): void {
  const met =
    r.target === undefined
      ? ''
      : `   target ≥ ${fmt(r.target.tps)}/s, p99 ≤ ${r.target.p99} ms: ${r.tps >= r.target.tps && r.p99 <= r.target.p99 ? 'met' : 'NOT MET'}`;
  const declined = r.declined > 0 ? `   (${r.declined} not approved)` : '';
  console.log(
    `${r.label.padEnd(24)} ${String(r.hosts).padStart(2)} proc  ${r.journal.padEnd(14)} ${r.load.padStart(8)}  ${fmt(r.tps).padStart(7)} TPS   p50 ${r.p50.toFixed(2).padStart(6)} ms   p99 ${r.p99.toFixed(2).padStart(6)} ms   CPU/txn host ${fmt(r.cpu.host)} µs, driver+network ${fmt(r.cpu.bench)} µs${met}${declined}`,
  );
}

/** POSKEY_BENCH_JOURNAL=overlap|outcome: the full-load runs in that journal mode (default write-ahead). */
function fullLoadJournal(): true | 'overlap' | 'outcome' {
  const mode = process.env.POSKEY_BENCH_JOURNAL;
  return mode === 'overlap' || mode === 'outcome' ? mode : true;
}

type RunName = 'load1' | 'inflight' | 'overlap' | 'outcome' | 'none' | 'load2' | 'storm';
const RUN_NAMES: readonly RunName[] = ['load1', 'inflight', 'overlap', 'outcome', 'none', 'load2', 'storm'];

/** POSKEY_BENCH_E2E_ONLY=load2,inflight: only those runs (for profiling one scenario); all when unset. */
function selectedRuns(): RunName[] | undefined {
  const env = process.env.POSKEY_BENCH_E2E_ONLY?.trim();
  if (!env) return undefined;
  const names = env.split(',').map((n) => n.trim());
  const bad = names.filter((n) => !(RUN_NAMES as readonly string[]).includes(n));
  if (bad.length)
    throw new Error(
      `POSKEY_BENCH_E2E_ONLY: unknown run(s) ${bad.join(', ')}; known: ${RUN_NAMES.join(', ')}`,
    );
  return names as RunName[];
}

async function runSelected(w: World, names: RunName[], ms: number): Promise<void> {
  const inFlightMs = Math.max(1000, ms * 0.6);
  const inFlight = {
    hosts: 1,
    terminals: 1,
    ms: inFlightMs,
    label: 'one in flight',
    target: { tps: 1000, p99: 3 },
  };
  const full = { terminals: FULL_LOAD_TERMINALS, ms, label: 'full load' };
  for (const name of names) {
    if (name === 'load1') print(await loadRun(w, { ...full, hosts: 1, journal: fullLoadJournal() }));
    if (name === 'inflight') print(await loadRun(w, { ...inFlight, journal: true }));
    if (name === 'overlap') print(await loadRun(w, { ...inFlight, journal: 'overlap' }));
    if (name === 'outcome') print(await loadRun(w, { ...inFlight, journal: 'outcome' }));
    if (name === 'none')
      print(await loadRun(w, { ...full, hosts: 1, journal: false, label: 'full load, no journal' }));
    if (name === 'load2')
      print(
        await loadRun(w, { ...full, hosts: 2, journal: fullLoadJournal(), target: { tps: 15_000, p99: 30 } }),
      );
    if (name === 'storm') {
      const s = await storm(w, 2);
      console.log(`sign-in storm: ${s.seconds.toFixed(2)} s, ${s.failed} refused`);
    }
  }
}

export async function run(): Promise<void> {
  const full = process.env.POSKEY_BENCH_NETWORK === 'full';
  header(
    `e2e: POSP host on loopback, ${availableParallelism()} CPUs, network ${full ? 'full path (PVV + ledger)' : 'MAC-only answers'}`,
  );
  const ms = benchMs(5000);
  const only = selectedRuns();
  const w = await setUp(full);
  try {
    if (only) return await runSelected(w, only, ms);
    const durable1 = await loadRun(w, {
      hosts: 1,
      journal: fullLoadJournal(),
      terminals: FULL_LOAD_TERMINALS,
      ms,
      label: 'full load',
    });
    print(durable1);
    print(
      await loadRun(w, {
        hosts: 1,
        journal: true,
        terminals: 1,
        ms: Math.max(1000, ms * 0.6),
        label: 'one in flight',
        target: { tps: 1000, p99: 3 },
      }),
    );
    print(
      await loadRun(w, {
        hosts: 1,
        journal: 'overlap',
        terminals: 1,
        ms: Math.max(1000, ms * 0.6),
        label: 'one in flight',
        target: { tps: 1000, p99: 3 },
      }),
    );
    print(
      await loadRun(w, {
        hosts: 1,
        journal: 'outcome',
        terminals: 1,
        ms: Math.max(1000, ms * 0.6),
        label: 'one in flight',
        target: { tps: 1000, p99: 3 },
      }),
    );
    const none1 = await loadRun(w, {
      hosts: 1,
      journal: false,
      terminals: FULL_LOAD_TERMINALS,
      ms,
      label: 'full load, no journal',
    });
    print(none1);
    console.log(
      `${'  durable / no journal'.padEnd(24)} ${(durable1.tps / none1.tps).toFixed(2)}x throughput, ${(durable1.cpu.host / none1.cpu.host).toFixed(2)}x host CPU per purchase`,
    );
    print(
      await loadRun(w, {
        hosts: 2,
        journal: fullLoadJournal(),
        terminals: FULL_LOAD_TERMINALS,
        ms,
        label: 'full load',
        target: { tps: 15_000, p99: 30 },
      }),
    );
    const s = await storm(w, 2);
    const met = s.seconds <= 5 && s.failed === 0 ? 'met' : 'NOT MET';
    console.log(
      `${'sign-in storm, 10,000'.padEnd(24)}  2 proc  ${STORM_CONNECTIONS} connections (opened in ${fmt(s.connectMs)} ms): all signed in after ${s.seconds.toFixed(2)} s (${fmt(STORM_TERMINALS / s.seconds)}/s, p50 ${fmt(s.p50)} ms, p99 ${fmt(s.p99)} ms${s.failed ? `, ${s.failed} refused` : ''})   target ≤ 5 s: ${met}`,
    );
  } finally {
    await w.close();
  }
}

if (process.env[ROLE_ENV] === 'host') await hostChild();
